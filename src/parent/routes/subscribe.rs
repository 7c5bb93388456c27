//! Subscribing by name (a search a node runs) or by article link (issue 13 §6).

use crate::parent::AppState;
use crate::parent::auth::{AdminAuth, NodeAuth};
use crate::parent::error::ApiResult;
use crate::parent::extract::{Json, Path, QueryParams};
use crate::parent::ops::subscribe;
use crate::parent::views::FeedView;
use crate::protocol::Envelope;
use crate::protocol::wire::CommandAnswer;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

/// `POST {P}/feeds/search`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct SearchQuery {
    /// The account name to look for.
    q: Option<String>,
    /// Candidates to return, 1–20 (default 10).
    limit: Option<i64>,
}

/// `POST {P}/feeds/search?q=&limit=`.
pub(super) async fn search(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<SearchQuery>,
) -> Reply<Value> {
    let found = subscribe::search(&state, q.q.as_deref(), q.limit).await?;
    Ok(axum::Json(Envelope::ok("success", found)))
}

/// `POST {P}/feeds/resolve`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct ResolveQuery {
    /// A WeChat article link (`https://mp.weixin.qq.com/s…`).
    url: Option<String>,
    /// The new feed's name (default: the account name the article page gives, else its id).
    name: Option<String>,
}

/// `POST {P}/feeds/resolve?url=&name=`: 201 with a new feed, 200 with the one that existed.
pub(super) async fn resolve(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<ResolveQuery>,
) -> ApiResult<(StatusCode, axum::Json<Envelope<Value>>)> {
    let (feed, created) = subscribe::resolve(&state, q.url.as_deref(), q.name.as_deref()).await?;
    let mut data = serde_json::to_value(FeedView::from(feed))
        .map_err(|e| crate::parent::error::ApiError::internal(&e))?;
    data["created"] = json!(created);
    let (status, message) = if created {
        (StatusCode::CREATED, "subscribed")
    } else {
        (StatusCode::OK, "already subscribed")
    };
    Ok((status, axum::Json(Envelope::ok(message, data))))
}

/// `POST {P}/node-commands/{id}/answer` (node).
pub(super) async fn answer(
    State(state): State<AppState>,
    // The path first: a malformed id is a 400 whoever asks.
    Path(id): Path<String>,
    node: NodeAuth,
    Json(body): Json<CommandAnswer>,
) -> Reply<Value> {
    let done = subscribe::answer(&state, &node.node_id, &id, body).await?;
    Ok(axum::Json(Envelope::ok("success", done)))
}
