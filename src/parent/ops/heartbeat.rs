//! A node's heartbeat (PROTOCOL §5): its liveness, load, logins and callback URL recorded,
//! and the parent's settings and features in the answer.

use super::{FEATURES, FETCHER_KINDS, flows, sources, subscribe};
use crate::parent::AppState;
use crate::parent::callback::{self, Refused};
use crate::parent::error::{ApiError, ApiResult};
use crate::protocol::SERVER_VERSION;
use crate::protocol::time::to_wire;
use crate::protocol::wire::Heartbeat;
use crate::store::{HeartbeatUpdate, LeasePolicy, ReportedLogin};
use serde_json::{Value, json};

/// Records a heartbeat and answers with the parent's settings and features.
///
/// # Errors
/// Database failures (the node exists: it just authenticated).
pub async fn heartbeat(state: &AppState, node_id: &str, beat: Heartbeat) -> ApiResult<Value> {
    let mut warnings = Vec::new();
    let callback_url = match beat.callback_url.as_deref() {
        Some(u) if !u.trim().is_empty() => callback_url(state, u, &mut warnings)?,
        _ => None,
    };
    let fetchers = beat.fetchers.map(|list| {
        let (known, unknown): (Vec<_>, Vec<_>) = list
            .into_iter()
            .map(|f| f.trim().to_ascii_lowercase())
            .partition(|f| FETCHER_KINDS.contains(&f.as_str()));
        for f in unknown {
            warnings.push(format!("unknown fetcher '{f}' ignored"));
        }
        known
    });
    let session_state = match beat.wechat_session.as_deref() {
        None => None,
        Some(s @ ("valid" | "expired" | "none")) => Some(s.to_string()),
        Some(other) => {
            warnings.push(format!("unknown wechat_session '{other}' ignored"));
            None
        }
    };
    let logins = beat.logins.map(|list| reported_logins(list, &mut warnings));
    let reported_features = beat.features.clone().unwrap_or_default();
    let reports_logins = logins.is_some();
    let update = HeartbeatUpdate {
        callback_url,
        capacity: beat.capacity.map(i64::from),
        in_use: beat.in_use.map(i64::from),
        fetchers,
        session_state,
        version: beat.version,
        features: beat.features,
        held: beat.held,
        logins,
    };
    let c = &state.config.cascade;
    let lease = LeasePolicy {
        lease_seconds: i64::try_from(c.lease_seconds).unwrap_or(300),
    };
    let outcome = state
        .store
        .heartbeat(node_id, update, state.clock.now(), lease)
        .await?;
    // Its session, capacity or holdings may have changed: its blocked claims look again.
    state.notifier.wake_node(node_id);
    if reports_logins && let Err(e) = crate::parent::reminders::check(state, Some(node_id)).await {
        tracing::warn!(node.id = %node_id, error = %e, "login reminders not evaluated");
    }
    let takes_commands = reported_features
        .iter()
        .any(|f| f == flows::COMMANDS_FEATURE);
    let commands = if takes_commands {
        let mut commands = flows::commands(state, node_id).await?;
        commands.extend(subscribe::commands(state, node_id).await?);
        commands
    } else {
        Vec::new()
    };
    let mut answer = json!({
        "status": "alive",
        "node_id": node_id,
        "server": SERVER_VERSION,
        "features": FEATURES,
        "lease_seconds": c.lease_seconds,
        "heartbeat_interval": (c.offline_after / 3).clamp(1, 60),
        "max_wait": c.max_wait,
        "max_claim_batch": c.max_claim_batch,
        "lost": outcome.lost,
        "session_state": outcome.session_state,
        "cooldown_until": outcome.cooldown_until.map(to_wire),
        "warnings": warnings,
    });
    // The command channel (an extension): only nodes that report `commands` get the field.
    if takes_commands {
        answer["commands"] = json!(commands);
        answer["closed_sources"] = json!(sources::closed_sources(state).await?);
    }
    Ok(answer)
}

/// Most logins kept per node from one heartbeat.
const MAX_REPORTED_LOGINS: usize = 100;

/// A heartbeat's `logins`, checked: entries without a usable id, kind or state are dropped
/// with a warning; text is bounded; times are read as UTC. Nothing but these fields is kept,
/// whatever else an entry carries.
fn reported_logins(list: Vec<Value>, warnings: &mut Vec<String>) -> Vec<ReportedLogin> {
    fn text(v: &Value, max: usize) -> Option<String> {
        v.as_str()
            .map(|s| s.chars().filter(|c| !c.is_control()).take(max).collect())
    }
    fn time(v: &Value) -> Option<chrono::NaiveDateTime> {
        let s = v.as_str()?;
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.naive_utc())
            .ok()
            .or_else(|| crate::protocol::time::parse(s))
            .map(crate::protocol::time::truncate_micros)
    }
    let mut out: Vec<ReportedLogin> = Vec::new();
    if list.len() > MAX_REPORTED_LOGINS {
        warnings.push(format!(
            "only the first {MAX_REPORTED_LOGINS} logins are kept"
        ));
    }
    for (i, l) in list.iter().take(MAX_REPORTED_LOGINS).enumerate() {
        let id = text(&l["id"], 255).filter(|s| !s.trim().is_empty());
        let kind = l["kind"].as_str().and_then(crate::logins::LoginKind::parse);
        let state = l["state"]
            .as_str()
            .and_then(crate::logins::LoginState::parse);
        let (Some(id), Some(kind), Some(state)) = (id, kind, state) else {
            warnings.push(format!(
                "logins[{i}] ignored: it needs an id, a kind (mp, weread) and a state"
            ));
            continue;
        };
        if out.iter().any(|o| o.login_id == id) {
            warnings.push(format!("logins[{i}] ignored: duplicate id"));
            continue;
        }
        out.push(ReportedLogin {
            login_id: id,
            kind: kind.as_str().to_string(),
            name: text(&l["name"], 255).unwrap_or_default(),
            state: state.as_str().to_string(),
            expires_at: time(&l["expires_at"]),
            cooldown_until: time(&l["cooldown_until"]),
            last_ok_at: time(&l["last_ok_at"]),
            last_error: text(&l["last_error"], 500),
            budget: l["budget"].as_object().map(|b| crate::store::LoginBudget {
                hour_left: b.get("hour_left").and_then(Value::as_i64),
                day_left: b.get("day_left").and_then(Value::as_i64),
                resets_at: b.get("resets_at").and_then(time),
            }),
        });
    }
    out
}

/// A heartbeat's `callback_url`, normalised for storage. An unusable URL is only a warning (a
/// stock child still comes online), an internal address too (stored: the operator may allow
/// it later); control characters and userinfo are refused outright.
fn callback_url(
    state: &AppState,
    raw: &str,
    warnings: &mut Vec<String>,
) -> ApiResult<Option<String>> {
    match callback::normalise(raw) {
        Ok(url) => {
            if let Err(why) = state.callbacks.policy().check(url.as_str()) {
                warnings.push(format!("{why}; notifications will not be sent to it"));
            }
            Ok(Some(url.to_string()))
        }
        Err(why @ (Refused::ControlCharacters | Refused::UserInfo)) => {
            Err(ApiError::bad_field("callback_url", why.to_string()))
        }
        Err(_) => {
            let shown: String = raw.trim().chars().take(200).collect();
            warnings.push(format!(
                "callback_url '{shown}' is not an absolute http(s) URL; ignored"
            ));
            Ok(None)
        }
    }
}
