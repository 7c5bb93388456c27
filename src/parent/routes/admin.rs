//! Admin routes for nodes and sync logs (PROTOCOL §6, §9.2).

use crate::parent::AppState;
use crate::parent::auth::AdminAuth;
use crate::parent::error::ApiResult;
use crate::parent::extract::{Json, Path, QueryParams};
use crate::parent::ops;
use crate::parent::views::{NodeView, Paged, SyncLogView};
use crate::protocol::Envelope;
use crate::protocol::time::to_wire;
use crate::protocol::wire::{CreateNode, UpdateNode};
use crate::store::SyncLogFilter;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

fn ok<T>(message: &str, data: T) -> Reply<T> {
    Ok(axum::Json(Envelope::ok(message, data)))
}

fn view(state: &AppState, node: crate::store::Node) -> NodeView {
    let c = &state.config.cascade;
    NodeView::new(
        node,
        state.clock.now(),
        c.offline_after,
        c.default_max_capacity,
    )
}

pub(super) async fn create_node(
    State(state): State<AppState>,
    _: AdminAuth,
    Json(req): Json<CreateNode>,
) -> Reply<Value> {
    let node = state
        .store
        .create_node(ops::new_node(req)?, state.clock.now())
        .await?;
    tracing::info!(node.id = %node.id, "node created");
    let data = json!({ "node_id": node.id, "node_type": node.node_type, "name": node.name,
                       "is_active": node.is_active, "created_at": to_wire(node.created_at) });
    ok("节点创建成功", data)
}

/// `GET {P}/nodes`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct NodeFilter {
    /// Only records of this type: 0 parent, 1 child.
    node_type: Option<i64>,
}

pub(super) async fn list_nodes(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<NodeFilter>,
) -> Reply<Vec<NodeView>> {
    let nodes = state.store.list_nodes(q.node_type).await?;
    ok(
        "success",
        nodes.into_iter().map(|n| view(&state, n)).collect(),
    )
}

/// `GET {P}/logins`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct LoginFilter {
    /// Only this node's logins (empty: every node's).
    node_id: Option<String>,
}

/// `GET {P}/sources`: each WeChat source of the chain, open or closed, and what serves it.
pub(super) async fn list_sources(State(state): State<AppState>, _: AdminAuth) -> Reply<Vec<Value>> {
    ok("success", ops::sources::list(&state).await?)
}

/// `GET {P}/logins`: every login the nodes reported in their heartbeats, secrets never kept.
pub(super) async fn list_logins(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<LoginFilter>,
) -> Reply<Vec<crate::store::NodeLogin>> {
    let node_id = q.node_id.filter(|s| !s.trim().is_empty());
    ok("success", state.store.list_node_logins(node_id).await?)
}

pub(super) async fn get_node(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<NodeView> {
    let node = state.store.get_node(&id).await?;
    ok("success", view(&state, node))
}

pub(super) async fn update_node(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
    Json(req): Json<UpdateNode>,
) -> Reply<()> {
    state
        .store
        .update_node(&id, ops::node_update(req)?, state.clock.now())
        .await?;
    // Its held long-polls re-check (a disabled node is refused); returned work is claimable.
    state.notifier.wake_node(&id);
    state.notifier.wake_all();
    ok("节点更新成功", ())
}

pub(super) async fn delete_node(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<()> {
    state.store.delete_node(&id, state.clock.now()).await?;
    state.notifier.wake_node(&id);
    state.notifier.wake_all();
    tracing::info!(node.id = %id, "node deleted");
    ok("节点删除成功", ())
}

pub(super) async fn credentials(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<Value> {
    ok(
        "凭证生成成功",
        ops::generate_credentials(&state, &id).await?,
    )
}

pub(super) async fn test_connection(
    State(state): State<AppState>,
    _: AdminAuth,
    Path(id): Path<String>,
) -> Reply<Value> {
    let (connected, data) = ops::test_connection(&state, &id).await?;
    ok(
        if connected {
            "连接测试成功"
        } else {
            "连接测试失败"
        },
        data,
    )
}

/// `GET {P}/sync-logs`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct SyncLogQuery {
    /// Only this node's logs.
    node_id: Option<String>,
    /// Only this operation.
    operation: Option<String>,
    /// Page size, 1–200 (default 50).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

pub(super) async fn sync_logs(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<SyncLogQuery>,
) -> Reply<Paged<SyncLogView>> {
    let page = ops::page(q.limit, q.offset)?;
    let filter = SyncLogFilter {
        node_id: q.node_id,
        operation: q.operation,
    };
    let (logs, total) = state.store.list_sync_logs(filter, page).await?;
    let list = logs.into_iter().map(SyncLogView::from).collect();
    ok("success", Paged::new(list, total, page))
}
