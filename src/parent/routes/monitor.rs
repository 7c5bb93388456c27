//! Admin dispatch, monitoring and scheduler routes (PROTOCOL §9).

use crate::parent::AppState;
use crate::parent::auth::AdminAuth;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::{Json, Path, QueryParams};
use crate::parent::ops;
use crate::parent::views::{AllocationDetailView, AllocationView, FeedStatusView, Paged};
use crate::protocol::Envelope;
use crate::protocol::wire::AllocationAction;
use crate::store::{AllocationFilter, BulkOutcome, Counters, FeedStatusFilter, STATUSES};
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

/// `POST {P}/dispatch-task`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct DispatchQuery {
    /// The task to dispatch (absent or empty: every enabled task).
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

/// `GET {P}/allocations`: filters match exactly.
#[derive(Deserialize, JsonSchema)]
pub(super) struct AllocationQuery {
    /// Message task.
    task_id: Option<String>,
    /// Holder.
    node_id: Option<String>,
    /// `pending`, `claimed`, `executing`, `completed`, `failed` or `timeout`.
    status: Option<String>,
    /// The dispatch run that created it.
    schedule_run_id: Option<String>,
    /// A feed among its `feed_ids`.
    feed_id: Option<String>,
    /// Last failure reason (`rate_limited`, `lease_expired`, `cancelled`, …).
    reason: Option<String>,
    /// Page size, 1–200 (default 50).
    limit: Option<i64>,
    /// Items to skip (default 0).
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
    ops::allocations::check_reason("reason", q.reason.as_deref())?;
    let filter = AllocationFilter {
        task_id: q.task_id,
        node_id: q.node_id,
        status: q.status,
        schedule_run_id: q.schedule_run_id,
        feed_id: q.feed_id,
        reason: q.reason,
    };
    let (rows, total) = state.store.list_allocations(filter, page).await?;
    let list = rows.into_iter().map(AllocationView::from).collect();
    Ok(axum::Json(Envelope::ok(
        "success",
        Paged::new(list, total, page),
    )))
}

/// `GET {P}/allocations/{id}`: one allocation with its feeds and attempt history.
pub(super) async fn allocation(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<AllocationDetailView> {
    let detail = state.store.allocation_detail(&id).await?;
    Ok(axum::Json(Envelope::ok("success", detail.into())))
}

/// `POST {P}/allocations/retry`.
pub(super) async fn retry_allocations(
    State(state): State<AppState>,
    _: AdminAuth,
    Json(action): Json<AllocationAction>,
) -> Reply<BulkOutcome> {
    let out = ops::allocations::retry(&state, action).await?;
    Ok(axum::Json(Envelope::ok("success", out)))
}

/// `POST {P}/allocations/cancel`.
pub(super) async fn cancel_allocations(
    State(state): State<AppState>,
    admin: AdminAuth,
    Json(action): Json<AllocationAction>,
) -> Reply<BulkOutcome> {
    let out = ops::allocations::cancel(&state, &admin.username, action).await?;
    Ok(axum::Json(Envelope::ok("success", out)))
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

/// `GET {P}/feed-status`: empty values filter nothing.
#[derive(Deserialize, JsonSchema)]
pub(super) struct FeedStatusQuery {
    /// One feed.
    feed_id: Option<String>,
    /// Part of the feed's name or id (at most 255 characters).
    q: Option<String>,
    /// `wechat` or `rss`.
    source: Option<String>,
    /// `enabled` or `paused`.
    state: Option<String>,
    /// Page size, 1–200 (default 50).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

/// Feed sources `feed-status` filters by.
const FEED_SOURCES: &[&str] = &["wechat", "rss"];

impl FeedStatusQuery {
    /// The store's filter; an unknown `source` or `state`, or a `q` over 255 characters, is
    /// a 400 naming it. Empty values filter nothing.
    fn filter(&self) -> ApiResult<FeedStatusFilter> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let q = given(&self.q);
        if q.is_some_and(|q| q.chars().count() > 255) {
            return Err(ApiError::bad_field("q", "q must be at most 255 characters"));
        }
        let source = given(&self.source);
        if source.is_some_and(|s| !FEED_SOURCES.contains(&s)) {
            return Err(ApiError::bad_field(
                "source",
                "source must be wechat or rss",
            ));
        }
        let enabled = match given(&self.state) {
            None => None,
            Some("enabled") => Some(true),
            Some("paused") => Some(false),
            Some(_) => {
                return Err(ApiError::bad_field(
                    "state",
                    "state must be enabled or paused",
                ));
            }
        };
        Ok(FeedStatusFilter {
            feed_id: self.feed_id.clone(),
            q: q.map(str::to_string),
            source: source.map(str::to_string),
            enabled,
        })
    }
}

pub(super) async fn feed_status(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<FeedStatusQuery>,
) -> Reply<Paged<FeedStatusView>> {
    let page = ops::page(q.limit, q.offset)?;
    let now = state.clock.now();
    let (rows, total) = state.store.feed_status(q.filter()?, page, now).await?;
    let list = rows
        .into_iter()
        .map(|f| FeedStatusView::new(f, now))
        .collect();
    Ok(axum::Json(Envelope::ok(
        "success",
        Paged::new(list, total, page),
    )))
}

/// `GET {P}/plan`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct PlanQuery {
    /// The p95 age of an article when read to plan for (`30m`, `1h`, `2d`).
    target: Option<String>,
    /// Days of articles to measure publishing rates over (1–365, default 28).
    days: Option<i64>,
    /// Calls one WeRead login may make a day (default: the `budget_per_day` setting).
    per_login_day: Option<f64>,
    /// Login calls one check of a feed costs (default 1).
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

pub(super) async fn scheduler(State(state): State<AppState>, _: AdminAuth) -> Reply<Value> {
    Ok(axum::Json(Envelope::ok(
        "success",
        scheduler_state(&state).await?,
    )))
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
