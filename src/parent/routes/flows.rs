//! QR login flows (issue 12 §3(b)): admins ask a node to log in, watch the QR code and type a
//! WeRead OTP; nodes start flows of their own and report each step.

use crate::parent::AppState;
use crate::parent::auth::{AdminAuth, NodeAuth};
use crate::parent::error::ApiResult;
use crate::parent::extract::{Json, Path, QueryParams};
use crate::parent::ops::flows;
use crate::protocol::Envelope;
use crate::protocol::wire::{LoginFlowStep, LoginOtp, StartLogin};
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

fn ok(message: &str, data: Value) -> Reply<Value> {
    Ok(axum::Json(Envelope::ok(message, data)))
}

/// `POST {P}/nodes/{id}/logins`: 202 with the new flow, 200 with the one already running.
pub(super) async fn request(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(node_id): Path<String>,
    Json(req): Json<StartLogin>,
) -> ApiResult<(StatusCode, axum::Json<Envelope<Value>>)> {
    let (flow, created) = flows::request(&state, &node_id, req).await?;
    let (status, message) = if created {
        (StatusCode::ACCEPTED, "login requested")
    } else {
        (StatusCode::OK, "a login of this kind is already running")
    };
    Ok((status, axum::Json(Envelope::ok(message, flow))))
}

/// `GET {P}/login-flows`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct FlowFilter {
    /// Only this node's flows (empty: every node's).
    node_id: Option<String>,
}

/// `GET {P}/login-flows`: the 50 newest flows.
pub(super) async fn list(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<FlowFilter>,
) -> Reply<Value> {
    let node_id = q.node_id.filter(|s| !s.trim().is_empty());
    let list = state.store.list_login_flows(node_id, 50).await?;
    ok("success", list.iter().map(flows::view).collect())
}

/// `GET {P}/login-flows/{id}`.
pub(super) async fn get(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<Value> {
    let flow = state.store.get_login_flow(&id).await?;
    ok("success", flows::view(&flow))
}

/// `DELETE {P}/login-flows/{id}`: the node stops at its next step.
pub(super) async fn cancel(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<Value> {
    let flow = state
        .store
        .cancel_login_flow(&id, state.clock.now())
        .await?;
    ok("success", flows::view(&flow))
}

/// `POST {P}/login-flows/{id}/otp`.
pub(super) async fn otp(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
    Json(req): Json<LoginOtp>,
) -> Reply<Value> {
    ok("success", flows::otp(&state, &id, &req.code).await?)
}

/// `POST {P}/login-flows` (node).
pub(super) async fn start(
    State(state): State<AppState>,
    node: NodeAuth,
    Json(req): Json<StartLogin>,
) -> Reply<Value> {
    ok(
        "success",
        flows::start_by_node(&state, &node.node_id, req).await?,
    )
}

/// `POST {P}/login-flows/{id}/progress` (node).
pub(super) async fn progress(
    State(state): State<AppState>,
    // The path first: a malformed id is a 400 whoever asks.
    Path(id): Path<String>,
    node: NodeAuth,
    Json(step): Json<LoginFlowStep>,
) -> Reply<Value> {
    ok(
        "success",
        flows::progress(&state, &node.node_id, &id, step).await?,
    )
}
