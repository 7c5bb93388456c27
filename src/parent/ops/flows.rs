//! QR logins run by nodes for the parent (issue 12 §3(b)), over the node command channel: an
//! admin asks a node to log in (`POST {P}/nodes/{id}/logins`), or a node whose login expired
//! starts a flow itself (`auto_login`); the node finds the request in its heartbeat answer's
//! `commands` (an extension, sent only to nodes that report the `commands` feature), runs the
//! flow, and reports each step with the QR text to scan. Admins read the flow (with the QR
//! drawn as a module matrix the dashboard paints) and may type a WeRead OTP code or cancel it.
//!
//! The QR text is a credential in the making (whoever polls a WeRead `uid` receives the
//! session): it is shown only to admins, never logged, and dropped when the flow ends.

use crate::logins::LoginKind;
use crate::parent::AppState;
use crate::parent::alerts::{self, Alert};
use crate::parent::error::{ApiError, ApiResult};
use crate::protocol::time::to_wire;
use crate::protocol::wire::{LoginFlowStep, StartLogin};
use crate::store::{FLOW_STATES, FlowProgress, LoginFlow, NewLoginFlow};
use chrono::TimeDelta;
use serde_json::{Value, json};

/// The feature a node reports when it takes commands.
pub const COMMANDS_FEATURE: &str = "commands";

/// An open flow without a step for this long ends as timed out when another is asked for.
const STALE_AFTER: TimeDelta = TimeDelta::minutes(15);

/// Closed flows are kept this long.
const KEEP_CLOSED: TimeDelta = TimeDelta::days(7);

/// Longest QR text kept (a WeRead confirm URL or an MP QR URL is far shorter).
const MAX_QR_TEXT: usize = 2048;

fn kind_of(raw: &str) -> ApiResult<LoginKind> {
    LoginKind::parse(raw.trim())
        .ok_or_else(|| ApiError::bad_field("kind", "kind must be mp or weread"))
}

async fn open_flow(
    state: &AppState,
    node_id: &str,
    kind: LoginKind,
    origin: &str,
) -> ApiResult<(LoginFlow, bool)> {
    let now = state.clock.now();
    let new = NewLoginFlow {
        id: uuid::Uuid::new_v4().to_string(),
        node_id: node_id.to_string(),
        kind: kind.as_str().to_string(),
        origin: origin.to_string(),
        stale_before: now - STALE_AFTER,
        prune_before: now - KEEP_CLOSED,
    };
    let (flow, created) = state.store.create_login_flow(new, now).await?;
    if created {
        tracing::info!(node.id = %node_id, flow.id = %flow.id, kind = kind.as_str(), origin, "login flow requested");
    }
    Ok((flow, created))
}

/// `POST {P}/nodes/{id}/logins`: asks a node to run a QR login of `kind`. A second request
/// while one runs returns the running flow.
///
/// # Errors
/// 400 for a bad kind, 404 for an unknown node, 409 for a deactivated node or one that does
/// not take commands (a stock WeRSS node, or ours before this version).
pub async fn request(state: &AppState, node_id: &str, req: StartLogin) -> ApiResult<(Value, bool)> {
    let kind = kind_of(&req.kind)?;
    let node = state.store.get_node(node_id).await?;
    if !node.is_active {
        return Err(ApiError::conflict("the node is deactivated"));
    }
    let takes_commands = node
        .features
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == COMMANDS_FEATURE);
    if !takes_commands {
        return Err(ApiError::conflict(
            "the node does not take login commands (it reports no 'commands' feature): \
             run `cascade child login` on it",
        ));
    }
    let (flow, created) = open_flow(state, node_id, kind, "admin").await?;
    // A long-poll of the node held here answers at once and the node heartbeats for the
    // command; otherwise its next heartbeat carries it.
    state.notifier.command_for(node_id);
    Ok((view(&flow), created))
}

/// `POST {P}/login-flows` (node): the node starts a flow itself (its login expired and
/// `auto_login` is on). Joins an open flow of that kind.
///
/// # Errors
/// 400 for a bad kind.
pub async fn start_by_node(state: &AppState, node_id: &str, req: StartLogin) -> ApiResult<Value> {
    let kind = kind_of(&req.kind)?;
    let (flow, _) = open_flow(state, node_id, kind, "auto").await?;
    Ok(node_view(&flow))
}

/// Parses a time a node sent (RFC 3339 or the wire format).
fn time(field: &str, raw: Option<&str>) -> ApiResult<Option<chrono::NaiveDateTime>> {
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.naive_utc())
        .ok()
        .or_else(|| crate::protocol::time::parse(s))
        .map(crate::protocol::time::truncate_micros)
        .map(Some)
        .ok_or_else(|| ApiError::bad_field(field, format!("{field} is not a time")))
}

/// Bounded text without control characters.
fn text(v: Option<String>, max: usize) -> Option<String> {
    v.map(|s| s.chars().filter(|c| !c.is_control()).take(max).collect())
}

/// `POST {P}/login-flows/{id}/progress` (node): one step of a flow the node runs. Answers
/// the flow's state (a cancelled flow tells the node to stop) and an OTP code once typed.
///
/// # Errors
/// 400 for a bad step, 404 for a flow of another node.
pub async fn progress(
    state: &AppState,
    node_id: &str,
    flow_id: &str,
    step: LoginFlowStep,
) -> ApiResult<Value> {
    let s = step.state.trim();
    if s == "requested" || !FLOW_STATES.contains(&s) {
        return Err(ApiError::bad_field(
            "state",
            "state must be pending_scan, scanned, need_otp, confirmed or failed",
        ));
    }
    if s == "cancelled" {
        return Err(ApiError::bad_field(
            "state",
            "a node ends a flow with failed",
        ));
    }
    let qr_text = match step.qr_text {
        Some(t) if t.len() > MAX_QR_TEXT || t.chars().any(char::is_control) => {
            return Err(ApiError::bad_field(
                "qr_text",
                format!("qr_text must be at most {MAX_QR_TEXT} bytes of printable text"),
            ));
        }
        t => t.filter(|t| !t.is_empty()),
    };
    if s == "pending_scan" && qr_text.is_none() {
        return Err(ApiError::bad_field(
            "qr_text",
            "pending_scan needs the QR code's text",
        ));
    }
    let progress = FlowProgress {
        state: s.to_string(),
        qr_text,
        qr_number: step.qr_number.map(|n| n.clamp(0, 1000)),
        qr_expires_at: time("qr_expires_at", step.qr_expires_at.as_deref())?,
        login_id: text(step.login_id, 255),
        account_name: text(step.account_name, 255),
        login_expires_at: time("expires_at", step.expires_at.as_deref())?,
        error: text(step.error, 500),
    };
    let before = state.store.get_login_flow(flow_id).await;
    let flow = state
        .store
        .progress_login_flow(node_id, flow_id, progress, state.clock.now())
        .await?;
    let before = before.ok();
    if before.as_ref().is_some_and(|b| b.state != flow.state) {
        tracing::info!(node.id = %node_id, flow.id = %flow.id, kind = %flow.kind, state = %flow.state, "login flow step");
    }
    let new_code = before.is_some_and(|b| b.qr_number != flow.qr_number);
    if flow.origin == "auto" && flow.state == "pending_scan" && new_code {
        alerts::raise(state, scan_alert(state, &flow));
    }
    Ok(node_view(&flow))
}

/// The alert for a login that expired and waits for a scan (`auto_login`): the dashboard's
/// address (with `public_url`) and, for `mp`, the QR link itself. A WeRead QR is never sent:
/// its `uid` lets whoever polls it first take the session.
fn scan_alert(state: &AppState, flow: &LoginFlow) -> Alert {
    let node = if flow.node_name.is_empty() {
        &flow.node_id
    } else {
        &flow.node_name
    };
    let mut text = format!(
        "A {} login of node {node} expired; a new QR code waits to be scanned.",
        flow.kind
    );
    let public = state.config.cascade.public_url.trim().trim_end_matches('/');
    if !public.is_empty() {
        text.push_str(&format!("\nScan it in the dashboard: {public}/#logins"));
    }
    if let (Some(qr), "mp") = (&flow.qr_text, flow.kind.as_str()) {
        text.push_str(&format!("\nOr open this QR link with WeChat: {qr}"));
    }
    Alert::new(
        "login_scan_needed",
        format!("{} login of {node} needs a scan", flow.kind),
        text,
    )
    .field("node_id", flow.node_id.clone())
    .field("node_name", flow.node_name.clone())
    .field("kind", flow.kind.clone())
    .field("flow_id", flow.id.clone())
}

/// The flow as its node sees it: the state, an OTP code typed for it.
fn node_view(flow: &LoginFlow) -> Value {
    json!({
        "id": flow.id,
        "kind": flow.kind,
        "state": flow.state,
        "open": flow.open,
        "otp": flow.otp_code,
    })
}

/// The commands waiting for a node that takes them: `[{id, type: "login", kind}]`.
///
/// # Errors
/// Database failures.
pub async fn commands(state: &AppState, node_id: &str) -> ApiResult<Vec<Value>> {
    let flows = state.store.login_commands(node_id).await?;
    Ok(flows
        .iter()
        .map(|f| json!({"id": f.id, "type": "login", "kind": f.kind, "origin": f.origin}))
        .collect())
}

/// The QR code of `text` as rows of `0`/`1` (dark) modules, for the dashboard to paint.
fn modules(text: &str) -> Option<Vec<String>> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    Some(
        colors
            .chunks(width)
            .map(|row| {
                row.iter()
                    .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
                    .collect()
            })
            .collect(),
    )
}

/// A flow as admins see it: with the QR text and its modules while it waits for a scan.
pub fn view(flow: &LoginFlow) -> Value {
    let qr = flow.qr_text.as_deref().filter(|_| flow.open).map(|text| {
        json!({
            "text": text,
            "number": flow.qr_number,
            "expires_at": flow.qr_expires_at.map(to_wire),
            "modules": modules(text),
        })
    });
    json!({
        "id": flow.id,
        "node_id": flow.node_id,
        "node_name": flow.node_name,
        "kind": flow.kind,
        "origin": flow.origin,
        "state": flow.state,
        "open": flow.open,
        "qr": qr,
        "login_id": flow.login_id,
        "account_name": flow.account_name,
        "login_expires_at": flow.login_expires_at.map(to_wire),
        "error": flow.error,
        "created_at": to_wire(flow.created_at),
        "updated_at": to_wire(flow.updated_at),
    })
}

/// `POST {P}/login-flows/{id}/otp`: the code the phone shows, for the node to send.
///
/// # Errors
/// 400 for a code that is not 4–8 digits, 404, 409 when the flow does not wait for one.
pub async fn otp(state: &AppState, flow_id: &str, code: &str) -> ApiResult<Value> {
    let code = code.trim();
    if !(4..=8).contains(&code.len()) || !code.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::bad_field(
            "code",
            "code must be the digits shown on the phone",
        ));
    }
    let flow = state
        .store
        .set_login_flow_otp(flow_id, code, state.clock.now())
        .await?;
    Ok(view(&flow))
}
