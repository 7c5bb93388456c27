//! Node routes for allocations (PROTOCOL §8.2–§8.8): claim, status, upload, completion, release.

use crate::parent::AppState;
use crate::parent::auth::NodeAuth;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::{Json, MAX_UPLOAD_ARTICLES, QueryParams, UploadJson};
use crate::parent::ops::alloc as ops;
use crate::parent::ops::articles::parse_articles;
use crate::protocol::Envelope;
use crate::protocol::time::to_wire;
use crate::protocol::wire::{ClaimQuery, Release, ReportCompletion, TaskStatus, UploadArticles};
use crate::store::{ReportOutcome, UploadOutcome, UploadPolicy};
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

/// The claim's envelope; a blocked node also gets `retry_after` (seconds, an additive
/// envelope field) and the same value as `Retry-After`.
async fn claim(
    state: &AppState,
    node: &NodeAuth,
    q: ClaimQuery,
    success: &str,
) -> ApiResult<axum::response::Response> {
    let answer = ops::claim(state, &node.node_id, q).await?;
    let message = if answer.got {
        success.to_string()
    } else {
        format!("暂无待处理任务{}", answer.suffix)
    };
    let mut body = serde_json::to_value(Envelope::ok(message, answer.data))
        .map_err(|e| crate::parent::error::ApiError::internal(&e))?;
    if answer.commands_pending {
        body["commands_pending"] = json!(true);
    }
    let response = match answer.retry_after {
        Some(secs) => {
            body["retry_after"] = json!(secs);
            let mut r = axum::Json(body).into_response();
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
            r
        }
        None => axum::Json(body).into_response(),
    };
    Ok(response)
}

pub(super) async fn claim_task(
    State(state): State<AppState>,
    node: NodeAuth,
    QueryParams(q): QueryParams<ClaimQuery>,
) -> ApiResult<axum::response::Response> {
    claim(&state, &node, q, "认领任务成功").await
}

pub(super) async fn pending_tasks(
    State(state): State<AppState>,
    node: NodeAuth,
    QueryParams(q): QueryParams<ClaimQuery>,
) -> ApiResult<axum::response::Response> {
    claim(&state, &node, q, "获取任务成功").await
}

fn outcome(o: &ReportOutcome) -> Value {
    json!({ "allocation_id": o.allocation_id, "status": o.status, "attempt": o.attempt,
            "available_at": o.available_at.map(to_wire), "lease_expires_at": o.lease_expires_at.map(to_wire) })
}

pub(super) async fn task_status(
    State(state): State<AppState>,
    node: NodeAuth,
    Json(req): Json<TaskStatus>,
) -> Reply<Value> {
    let o = ops::task_status(&state, &node.node_id, req).await?;
    Ok(axum::Json(Envelope::ok("状态更新成功", outcome(&o))))
}

pub(super) async fn report_completion(
    State(state): State<AppState>,
    node: NodeAuth,
    Json(req): Json<ReportCompletion>,
) -> Reply<Value> {
    let o = ops::report_completion(&state, &node.node_id, req).await?;
    Ok(axum::Json(Envelope::ok(
        "任务完成上报成功",
        json!({ "allocation_id": o.allocation_id, "status": o.status }),
    )))
}

pub(super) async fn upload_articles(
    State(state): State<AppState>,
    node: NodeAuth,
    UploadJson(req, _budget): UploadJson<UploadArticles>,
) -> Reply<UploadOutcome> {
    if req.articles.len() > MAX_UPLOAD_ARTICLES {
        return Err(ApiError::too_large(format!(
            "too many articles in one upload: {} (the limit is {MAX_UPLOAD_ARTICLES}); split it",
            req.articles.len()
        )));
    }
    let items = parse_articles(req.articles);
    let seconds = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let policy = UploadPolicy {
        lease_seconds: seconds(state.config.cascade.lease_seconds),
        dedup_window_seconds: seconds(state.config.cascade.dedup_window_minutes.saturating_mul(60)),
    };
    let out = state
        .store
        .upload_articles(
            &node.node_id,
            &req.allocation_id,
            req.lease_token,
            items,
            state.clock.now(),
            policy,
        )
        .await?;
    if !out.new_ids.is_empty() {
        state.webhook_wake.notify_one();
    }
    Ok(axum::Json(Envelope::ok("文章数据上行成功", out)))
}

pub(super) async fn release(
    State(state): State<AppState>,
    node: NodeAuth,
    Json(req): Json<Release>,
) -> Reply<Value> {
    let items = req
        .allocations
        .into_iter()
        .map(|i| (i.allocation_id, i.lease_token))
        .collect();
    let (released, rejected) = state
        .store
        .release(&node.node_id, items, state.clock.now())
        .await?;
    if !released.is_empty() {
        state.notifier.wake_all();
        state.notifier.wake_node(&node.node_id);
    }
    let rejected: Vec<Value> = rejected
        .into_iter()
        .map(|(id, e)| json!({ "allocation_id": id, "error": e }))
        .collect();
    Ok(axum::Json(Envelope::ok(
        "success",
        json!({ "released": released, "rejected": rejected }),
    )))
}
