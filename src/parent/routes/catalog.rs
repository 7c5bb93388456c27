//! Feeds and message tasks (PROTOCOL §7): admins manage them; nodes get restricted views.

use crate::parent::AppState;
use crate::parent::auth::{AdminAuth, AnyAuth};
use crate::parent::error::ApiResult;
use crate::parent::extract::{Json, ListJson, Path, QueryParams};
use crate::parent::ops;
use crate::parent::views::{FeedView, TaskView};
use crate::protocol::Envelope;
use crate::protocol::wire::{CreateFeed, TaskBody, UpdateFeed};
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

fn ok<T>(message: &str, data: T) -> Reply<T> {
    Ok(axum::Json(Envelope::ok(message, data)))
}

/// `GET {P}/feeds`: every feed unless `limit` or `offset` is given.
#[derive(Deserialize, JsonSchema)]
pub(super) struct FeedQuery {
    /// Page size, 1–200 (default 50 once paging).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

pub(super) async fn list_feeds(
    State(state): State<AppState>,
    _: AnyAuth,
    QueryParams(q): QueryParams<FeedQuery>,
) -> Reply<Vec<FeedView>> {
    let page = match (q.limit, q.offset) {
        (None, None) => None,
        (limit, offset) => Some(ops::page(limit, offset)?),
    };
    let feeds = state.store.list_feeds(page).await?;
    ok("success", feeds.into_iter().map(FeedView::from).collect())
}

pub(super) async fn create_feed(
    State(state): State<AppState>,
    _: AdminAuth,
    Json(req): Json<CreateFeed>,
) -> Reply<FeedView> {
    let feed = state
        .store
        .create_feed(ops::new_feed(req)?, state.clock.now())
        .await?;
    ok("success", feed.into())
}

pub(super) async fn get_feed(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<FeedView> {
    ok("success", state.store.get_feed(&id).await?.into())
}

pub(super) async fn update_feed(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
    Json(req): Json<UpdateFeed>,
) -> Reply<FeedView> {
    let feed = state
        .store
        .update_feed(
            &id,
            ops::feed_update(
                req,
                crate::parent::reaper::aging_step(&state.config.cascade),
            )?,
            state.clock.now(),
        )
        .await?;
    ok("success", feed.into())
}

pub(super) async fn delete_feed(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<()> {
    state.store.delete_feed(&id).await?;
    ok("success", ())
}

/// `GET {P}/message-tasks`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct TaskQuery {
    /// Admins: only tasks of this status (1 enabled, 0 disabled); nodes always get enabled ones.
    status: Option<i64>,
}

pub(super) async fn list_tasks(
    State(state): State<AppState>,
    auth: AnyAuth,
    QueryParams(q): QueryParams<TaskQuery>,
) -> Reply<Vec<TaskView>> {
    let views = match auth {
        AnyAuth::Admin(_) => state
            .store
            .list_tasks(q.status)
            .await?
            .into_iter()
            .map(|t| TaskView::admin(t, &state.config.cascade.timezone))
            .collect(),
        AnyAuth::Node(_) => state
            .store
            .list_tasks(Some(1))
            .await?
            .into_iter()
            .map(TaskView::node)
            .collect(),
    };
    ok("success", views)
}

pub(super) async fn create_task(
    State(state): State<AppState>,
    _: AdminAuth,
    ListJson(body): ListJson<TaskBody>,
) -> Reply<TaskView> {
    let fields = ops::task_fields(None, body)?;
    let task = state.store.create_task(fields, state.clock.now()).await?;
    ok(
        "success",
        TaskView::admin(task, &state.config.cascade.timezone),
    )
}

pub(super) async fn get_task(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<TaskView> {
    let task = state.store.get_task(&id).await?;
    ok(
        "success",
        TaskView::admin(task, &state.config.cascade.timezone),
    )
}

pub(super) async fn update_task(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
    ListJson(body): ListJson<TaskBody>,
) -> Reply<TaskView> {
    let current = state.store.get_task(&id).await?;
    let fields = ops::task_fields(Some(current.fields), body)?;
    let task = state
        .store
        .update_task(&id, fields, state.clock.now())
        .await?;
    ok(
        "success",
        TaskView::admin(task, &state.config.cascade.timezone),
    )
}

pub(super) async fn delete_task(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<()> {
    state.store.delete_task(&id, state.clock.now()).await?;
    ok("success", ())
}
