//! The child's notify listener (PROTOCOL §10): accepts the parent's
//! `Authorization: AK-SK <key>:<sha256 hex of the secret>` (WeRSS's form), answers
//! `通知已接收` and wakes the claim loop; anything else gets 401.

use crate::protocol::credentials::{ct_eq, sha256_hex};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Listener {
    key: String,
    secret_hash: String,
    wake: Arc<Notify>,
}

async fn notify(
    State(l): State<Listener>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = auth
        .strip_prefix("AK-SK ")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(key, hash)| {
            ct_eq(key, &l.key) & ct_eq(&hash.to_ascii_lowercase(), &l.secret_hash)
        });
    if !ok {
        let body = json!({"code": 401, "message": "Could not validate credentials", "data": {"error": "unauthorized"}});
        return (StatusCode::UNAUTHORIZED, Json(body));
    }
    let kind = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string));
    if kind.as_deref() == Some("new_task") {
        l.wake.notify_one();
    }
    (
        StatusCode::OK,
        Json(json!({"code": 0, "message": "通知已接收", "data": null})),
    )
}

/// Serves the notify routes on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    key: String,
    secret: String,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Listener {
        key,
        secret_hash: sha256_hex(&secret),
        wake,
    };
    let app = Router::new()
        .route("/api/v1/wx/cascade/notify", post(notify))
        .route("/api/v1/cascade/notify", post(notify))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
