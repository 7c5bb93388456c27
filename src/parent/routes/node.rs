//! Node routes (child → parent): heartbeat and report-result (PROTOCOL §8.1, §8.7).

use crate::parent::AppState;
use crate::parent::auth::NodeAuth;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::{Json, Lenient};
use crate::parent::ops;
use crate::protocol::Envelope;
use crate::protocol::wire::{Heartbeat, ReportResult};
use axum::extract::State;
use serde_json::Value;

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

pub(super) async fn heartbeat(
    State(state): State<AppState>,
    node: NodeAuth,
    Lenient(beat): Lenient<Heartbeat>,
) -> Reply<Value> {
    let data = ops::heartbeat(&state, &node.node_id, beat).await?;
    Ok(axum::Json(Envelope::ok("success", data)))
}

pub(super) async fn report_result(
    State(state): State<AppState>,
    node: NodeAuth,
    Json(req): Json<ReportResult>,
) -> Reply<()> {
    let count = i64::try_from(req.results.len()).unwrap_or(i64::MAX);
    state
        .store
        .report_result(&node.node_id, &req.task_id, count, state.clock.now())
        .await?;
    Ok(axum::Json(Envelope::ok("结果上报成功", ())))
}

/// A parent receives no notifications (PROTOCOL §3.3).
pub(super) async fn notify() -> ApiError {
    ApiError::bad_request("仅子节点可接收通知")
}
