//! Operations behind the handlers: validation of admin input, accounts and login, node
//! credentials, heartbeats and test-connection. Shared by HTTP and the CLI.

pub mod alloc;
pub mod allocations;
pub mod articles;
mod catalog;
mod claim;
pub mod flows;
pub mod fresh;
mod heartbeat;
pub mod placement;
pub mod plan;
pub mod sources;
pub mod subscribe;

pub use catalog::{feed_update, new_feed, task_fields};
pub use heartbeat::heartbeat;

use super::AppState;
use super::callback::CallError;
use super::error::{ApiError, ApiResult};
use crate::clock::Clock;
use crate::config::Config;
use crate::protocol::credentials::{Secret, generate_pair, random_token, sha256_hex};
use crate::protocol::time::to_wire;
use crate::protocol::wire::{CreateNode, LoginForm, UpdateNode};
use crate::store::{NewNode, NodeUpdate, Page, Store};
use crate::telemetry::{untrusted, untrusted_error};
use anyhow::Context;
use serde_json::{Value, json};

/// Protocol extensions this parent implements, advertised in heartbeat responses.
pub const FEATURES: &[&str] = &[
    "wait",
    "limit",
    "lease_token",
    "release",
    "reason",
    "held",
    "kinds",
    "commands",
    "gzip",
];

/// Fetcher kinds a node may report.
pub const FETCHER_KINDS: &[&str] = &["wechat", "rss"];

/// Hashes `password` with bcrypt off the async runtime.
///
/// # Errors
/// Only if bcrypt rejects the cost.
pub async fn hash_password(password: String, cost: u32) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .context("while hashing a password")?
        .context("while hashing a password")
}

/// Creates an admin account.
///
/// # Errors
/// An existing username (`store::Error::Conflict`) or a database failure.
pub async fn create_admin(
    store: &Store,
    username: &str,
    password: &str,
    cost: u32,
    clock: &Clock,
) -> anyhow::Result<()> {
    if username.trim().is_empty() || password.is_empty() {
        anyhow::bail!("an admin needs a username and a non-empty password");
    }
    let hash = hash_password(password.to_string(), cost).await?;
    store
        .create_user(username.trim(), &hash, clock.now())
        .await?;
    Ok(())
}

/// Sets an admin's password (`cascade admin passwd`) and records it in the audit log as the
/// `cli`'s (a failed audit write is logged; the password stays changed).
///
/// # Errors
/// An empty password, an unknown username, or a database failure.
pub async fn set_admin_password(
    store: &Store,
    username: &str,
    password: &str,
    cost: u32,
    clock: &Clock,
) -> anyhow::Result<()> {
    if password.is_empty() {
        anyhow::bail!("the new password must not be empty");
    }
    let hash = hash_password(password.to_string(), cost).await?;
    match store
        .set_password(username.trim(), &hash, clock.now())
        .await
    {
        Err(crate::store::Error::NotFound(_)) => anyhow::bail!("no admin named '{username}'"),
        other => other?,
    }
    let entry = crate::store::AuditEntry {
        actor: "cli".into(),
        action: "passwd".into(),
        target: Some(username.trim().to_string()),
        detail: None,
    };
    if let Err(e) = store.record_audit(entry, clock.now()).await {
        tracing::warn!(error = %e, "could not write the audit log");
    }
    Ok(())
}

/// On a database with no admin, creates one from `CASCADE_ADMIN_USERNAME` (default `admin`)
/// and `CASCADE_ADMIN_PASSWORD`; without a password it generates one and prints it once.
///
/// # Errors
/// Database failures.
pub async fn ensure_admin(store: &Store, config: &Config, clock: &Clock) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let username = std::env::var("CASCADE_ADMIN_USERNAME")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "admin".into());
    let (password, generated) = match std::env::var("CASCADE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (random_token()[..20].to_string(), true),
    };
    create_admin(store, &username, &password, config.bcrypt_cost, clock).await?;
    tracing::info!(user = %untrusted(&username), "created the first admin account");
    if generated {
        // Shown once, to the operator's terminal only (never to the log).
        eprintln!(
            "\n  Created admin '{username}' with password: {password}\n  (shown once; set CASCADE_ADMIN_PASSWORD to choose it)\n"
        );
    }
    Ok(())
}

/// Checks a login from the client address `client` (its throttling key) and issues a JWT;
/// `(token, expires_in)`.
///
/// # Errors
/// 400 missing fields, 401/40101 wrong credentials, 429 locked.
pub async fn login(
    state: &AppState,
    form: LoginForm,
    client: std::net::IpAddr,
) -> ApiResult<(String, i64)> {
    let username = form
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::bad_field("username", "missing field 'username'"))?;
    let password = form
        .password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_field("password", "missing field 'password'"))?;
    if username.chars().count() > 255 {
        return Err(ApiError::bad_field("username", "username is too long"));
    }
    if form.grant_type.as_deref().is_some_and(|g| g != "password") {
        return Err(ApiError::invalid_field("grant_type"));
    }
    let now = state.clock.now();
    // Reserved before the (slow) check, so concurrent guesses cannot outrun the budget.
    let attempt = state.lockout.reserve(&username, client, now)?;
    let user = state.store.find_user(&username).await?;
    // Unknown and inactive users are checked against a dummy hash of the same cost, so the
    // answer's timing does not tell which usernames exist.
    let (hash, known) = match user {
        Some(u) if u.is_active => (u.password_hash, true),
        _ => (state.dummy_hash.to_string(), false),
    };
    let matches =
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
    let ok = known && matches;
    if !ok {
        tracing::info!(user = %untrusted(&username), client = %client, "login failed");
        return Err(attempt.failed(now));
    }
    attempt.succeeded();
    let token = state.jwt.issue(&username, now)?;
    super::audit::login(state, &username).await;
    Ok((token, state.jwt.lifetime_seconds()))
}

/// Validates `sync_config`: an object; `max_capacity` int ≥ 0; `feed_quota` object of ints ≥ 0.
///
/// # Errors
/// 400 naming the offending key.
pub fn validate_sync_config(value: Value) -> ApiResult<Value> {
    let Value::Object(map) = value else {
        return Err(ApiError::bad_field(
            "sync_config",
            "sync_config must be an object",
        ));
    };
    if let Some(cap) = map.get("max_capacity")
        && cap.as_u64().is_none_or(|n| i64::try_from(n).is_err())
    {
        return Err(ApiError::bad_field(
            "sync_config.max_capacity",
            "sync_config.max_capacity must be an integer ≥ 0",
        ));
    }
    if let Some(quota) = map.get("feed_quota") {
        let ok = quota.as_object().is_some_and(|q| {
            q.values()
                .all(|v| v.as_u64().is_some_and(|n| i64::try_from(n).is_ok()))
        });
        if !ok {
            return Err(ApiError::bad_field(
                "sync_config.feed_quota",
                "sync_config.feed_quota must map feed ids to integers ≥ 0",
            ));
        }
    }
    Ok(Value::Object(map))
}

fn node_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::bad_field("name", "name must be 1–255 characters"));
    }
    Ok(name.to_string())
}

/// Validates a node creation request.
///
/// # Errors
/// 400 naming the field.
pub fn new_node(req: CreateNode) -> ApiResult<NewNode> {
    if !(0..=1).contains(&req.node_type) {
        return Err(ApiError::bad_field(
            "node_type",
            "node_type must be 0 (parent) or 1 (child)",
        ));
    }
    Ok(NewNode {
        node_type: req.node_type,
        name: node_name(&req.name)?,
        description: req.description.unwrap_or_default(),
        api_url: req.api_url.filter(|u| !u.is_empty()),
        sync_config: validate_sync_config(req.sync_config.unwrap_or_else(|| json!({})))?,
    })
}

/// Validates a node update request.
///
/// # Errors
/// 400 naming the field.
pub fn node_update(req: UpdateNode) -> ApiResult<NodeUpdate> {
    Ok(NodeUpdate {
        name: req.name.as_deref().map(node_name).transpose()?,
        description: req.description,
        api_url: req.api_url,
        is_active: req.is_active,
        sync_config: req.sync_config.map(validate_sync_config).transpose()?,
        reset_state: req.reset_state,
    })
}

/// Replaces a node's credentials with a fresh pair and returns it (only the hash is kept).
///
/// # Errors
/// Unknown node or database failure.
pub async fn issue_credentials(
    store: &Store,
    id: &str,
    now: chrono::NaiveDateTime,
) -> crate::store::Result<(String, Secret)> {
    let (key, secret) = generate_pair();
    store
        .set_node_credentials(id, &key, &sha256_hex(secret.expose()), now)
        .await?;
    Ok((key, secret))
}

/// Generates and stores a new credential pair for a child; the secret is returned only here.
///
/// # Errors
/// 404 unknown node; 400 for a parent record.
pub async fn generate_credentials(state: &AppState, id: &str) -> ApiResult<Value> {
    let node = state.store.get_node(id).await?;
    if node.node_type != 1 {
        return Err(ApiError::bad_request("只有子节点需要凭证"));
    }
    let (key, secret) = issue_credentials(&state.store, id, state.clock.now()).await?;
    tracing::info!(node.id = %id, "node credentials generated");
    Ok(json!({ "node_id": id, "api_key": key, "api_secret": secret.expose() }))
}

/// Pings the node's registered `callback_url` (never any other URL), under the callback
/// policy. `data` says whether the callback accepted the ping, never the remote status or
/// timing (that would make this a probe of other hosts); the details go to the log.
///
/// # Errors
/// 404 unknown node.
pub async fn test_connection(state: &AppState, id: &str) -> ApiResult<(bool, Value)> {
    let node = state.store.get_node(id).await?;
    let now = state.clock.now();
    let online = node.is_online(now, state.config.cascade.offline_after);
    let mut data = json!({
        "connected": false,
        "target": node.callback_url,
        "online": online,
        "last_heartbeat_at": node.last_heartbeat_at.map(to_wire),
    });
    let Some(url) = node.callback_url.clone() else {
        data["error"] = json!("node has no callback_url");
        return Ok((false, data));
    };
    let cred = match &node.api_key {
        Some(key) => state.store.find_node_credential(key).await?,
        None => None,
    };
    let Some(cred) = cred.filter(|c| !c.secret_hash.is_empty()) else {
        data["error"] = json!("node has no credentials");
        return Ok((false, data));
    };
    let auth = notify_authorization(
        node.api_key.as_deref().unwrap_or_default(),
        &cred.secret_hash,
    );
    let ping = json!({ "type": "ping", "timestamp": to_wire(now) });
    let error = match state.callbacks.post(&url, &auth, &ping).await {
        Ok(status) if status.is_success() => {
            data["connected"] = json!(true);
            return Ok((true, data));
        }
        Err(CallError::Refused(why)) => why.to_string(),
        Ok(status) => {
            tracing::info!(node.id = %id, status = status.as_u16(), "test-connection: callback refused the ping");
            UNREACHABLE.into()
        }
        Err(CallError::Failed(e)) => {
            tracing::info!(node.id = %id, error = %untrusted_error(&e), "test-connection: callback not reachable");
            UNREACHABLE.into()
        }
    };
    data["error"] = json!(error);
    Ok((false, data))
}

/// What test-connection says of any failure past the policy.
const UNREACHABLE: &str = "callback not reachable or did not accept the ping";

/// The header of a call to a node's callback (PROTOCOL §3.4): WeRSS's form, the key and the
/// SHA-256 of the secret the parent keeps. It authenticates nothing on the parent (a node
/// presents its secret, not the hash) and is only ever sent to a callback the policy allows.
pub fn notify_authorization(api_key: &str, secret_hash: &str) -> String {
    format!("AK-SK {api_key}:{secret_hash}")
}

/// Validates `limit` (1–200, default 50) and `offset` (≥ 0).
///
/// # Errors
/// 400 naming the parameter.
pub fn page(limit: Option<i64>, offset: Option<i64>) -> ApiResult<Page> {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    if offset < 0 {
        return Err(ApiError::bad_field("offset", "offset must be ≥ 0"));
    }
    Ok(Page { limit, offset })
}
