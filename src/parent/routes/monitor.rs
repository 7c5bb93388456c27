//! Admin dispatch, monitoring and scheduler routes (PROTOCOL §9).

use crate::parent::AppState;
use crate::parent::auth::AdminAuth;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::QueryParams;
use crate::parent::ops;
use crate::parent::views::{AllocationView, FeedStatusView, Paged};
use crate::protocol::Envelope;
use crate::store::{AllocationFilter, Counters, STATUSES};
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

#[derive(Deserialize)]
pub(super) struct DispatchQuery {
    task_id: Option<String>,
}

pub(super) async fn dispatch_task(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<DispatchQuery>,
) -> Reply<Value> {
    let data =
        ops::alloc::dispatch_task(&state, q.task_id.as_deref().filter(|t| !t.is_empty())).await?;
    Ok(axum::Json(Envelope::ok("任务分发完成", data)))
}

pub(super) async fn check_feed(
    State(state): State<AppState>,
    _: AdminAuth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Reply<Value> {
    let data = ops::fresh::check_now(&state, &id).await?;
    Ok(axum::Json(Envelope::ok("success", data)))
}

#[derive(Deserialize)]
pub(super) struct AllocationQuery {
    task_id: Option<String>,
    node_id: Option<String>,
    status: Option<String>,
    schedule_run_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn allocations(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<AllocationQuery>,
) -> Reply<Paged<AllocationView>> {
    let page = ops::page(q.limit, q.offset)?;
    if q.status.as_deref().is_some_and(|s| !STATUSES.contains(&s)) {
        return Err(ApiError::bad_field("status", "invalid field 'status'"));
    }
    let filter = AllocationFilter {
        task_id: q.task_id,
        node_id: q.node_id,
        status: q.status,
        schedule_run_id: q.schedule_run_id,
    };
    let (rows, total) = state.store.list_allocations(filter, page).await?;
    let list = rows.into_iter().map(AllocationView::from).collect();
    Ok(axum::Json(Envelope::ok(
        "success",
        Paged::new(list, total, page),
    )))
}

pub(super) async fn pending_allocations(
    State(state): State<AppState>,
    _: AdminAuth,
) -> Reply<Counters> {
    let c = &state.config.cascade;
    let offline_after = i64::try_from(c.offline_after).unwrap_or(180);
    let counters = state
        .store
        .counters(state.clock.now(), offline_after, c.default_max_capacity)
        .await?;
    Ok(axum::Json(Envelope::ok("success", counters)))
}

#[derive(Deserialize)]
pub(super) struct FeedStatusQuery {
    feed_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn feed_status(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<FeedStatusQuery>,
) -> Reply<Paged<FeedStatusView>> {
    let page = ops::page(q.limit, q.offset)?;
    let now = state.clock.now();
    let (rows, total) = state.store.feed_status(q.feed_id, page, now).await?;
    let list = rows
        .into_iter()
        .map(|f| FeedStatusView::new(f, now))
        .collect();
    Ok(axum::Json(Envelope::ok(
        "success",
        Paged::new(list, total, page),
    )))
}

#[derive(Deserialize)]
pub(super) struct PlanQuery {
    target: Option<String>,
    days: Option<i64>,
    per_login_day: Option<f64>,
    calls_per_check: Option<f64>,
}

pub(super) async fn plan(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<PlanQuery>,
) -> Reply<Value> {
    let ask = ops::plan::PlanAsk {
        target: q.target,
        days: q.days,
        per_login_day: q.per_login_day,
        calls_per_check: q.calls_per_check,
    };
    let data = ops::plan::plan(&state, ask).await?;
    Ok(axum::Json(Envelope::ok("success", data)))
}

async fn scheduler_state(state: &AppState) -> ApiResult<Value> {
    let jobs = crate::parent::scheduler::jobs(state).await?;
    let running = crate::parent::scheduler::running(state).await?;
    Ok(json!({ "running": running, "jobs": jobs }))
}

pub(super) async fn start_scheduler(State(state): State<AppState>, _: AdminAuth) -> Reply<Value> {
    crate::parent::scheduler::set_running(&state, true).await?;
    Ok(axum::Json(Envelope::ok(
        "定时调度服务已启动",
        scheduler_state(&state).await?,
    )))
}

pub(super) async fn stop_scheduler(State(state): State<AppState>, _: AdminAuth) -> Reply<Value> {
    crate::parent::scheduler::set_running(&state, false).await?;
    Ok(axum::Json(Envelope::ok(
        "定时调度服务已停止",
        scheduler_state(&state).await?,
    )))
}

pub(super) async fn reload_scheduler(State(state): State<AppState>, _: AdminAuth) -> Reply<Value> {
    crate::parent::scheduler::reload(&state).await?;
    Ok(axum::Json(Envelope::ok(
        "定时调度任务已重载",
        scheduler_state(&state).await?,
    )))
}
