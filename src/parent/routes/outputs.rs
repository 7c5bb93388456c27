//! Feed outputs at WeRSS's paths (`/rss/{id}`, `/feed/{id}.{ext}`, `/feed/all.{ext}`,
//! `/feed/task/{id}.{ext}`), public like WeRSS's, with ETag/Last-Modified and 304; OPML
//! export (`/opml`) and import (admins).

use crate::parent::AppState;
use crate::parent::auth::AdminAuth;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::{Path, QueryParams, TextBody};
use crate::parent::ops;
use crate::parent::outputs::{Channel, Format, opml_export, opml_import, split_file};
use crate::protocol::Envelope;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub(super) struct OutputQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// What a document covers.
enum Scope {
    Feed(String),
    All,
    Task(String),
}

/// The public base URL of this request (`X-Forwarded-Proto` and `Host`).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

pub(super) async fn rss(
    State(state): State<AppState>,
    Path(feed_id): Path<String>,
    QueryParams(q): QueryParams<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = format!("/rss/{feed_id}");
    serve(
        &state,
        Scope::Feed(feed_id),
        Format::Rss,
        q,
        &headers,
        &path,
    )
    .await
}

pub(super) async fn feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
    QueryParams(q): QueryParams<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (name, format) =
        split_file(&file).ok_or_else(|| ApiError::not_found("use /feed/{id}.rss|xml|atom|json"))?;
    let scope = if name == "all" {
        Scope::All
    } else {
        Scope::Feed(name.to_string())
    };
    serve(&state, scope, format, q, &headers, &format!("/feed/{file}")).await
}

pub(super) async fn task_feed(
    State(state): State<AppState>,
    Path(file): Path<String>,
    QueryParams(q): QueryParams<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (name, format) = split_file(&file)
        .ok_or_else(|| ApiError::not_found("use /feed/task/{id}.rss|xml|atom|json"))?;
    let scope = Scope::Task(name.to_string());
    serve(
        &state,
        scope,
        format,
        q,
        &headers,
        &format!("/feed/task/{file}"),
    )
    .await
}

async fn serve(
    state: &AppState,
    scope: Scope,
    format: Format,
    q: OutputQuery,
    headers: &HeaderMap,
    path: &str,
) -> ApiResult<Response> {
    let page = ops::page(Some(q.limit.unwrap_or(20)), q.offset)?;
    let base = base_url(headers);
    let (title, description, feed_ids) = match scope {
        Scope::Feed(id) => {
            let feed = state.store.get_feed(&id).await?;
            let intro = feed
                .mp_intro
                .clone()
                .unwrap_or_else(|| feed.mp_name.clone());
            (feed.mp_name, intro, Some(vec![feed.id]))
        }
        Scope::All => (
            "All feeds".to_string(),
            "Every feed of this parent".to_string(),
            None,
        ),
        Scope::Task(id) => {
            let task = state.store.get_task(&id).await?;
            let ids = task.fields.feed_ids();
            let name = task.fields.name;
            (
                name.clone(),
                format!("Feeds of the message task {name}"),
                Some(ids),
            )
        }
    };
    let channel = Channel {
        title,
        description,
        self_url: format!("{base}{path}"),
        home_url: format!("{base}/"),
        articles: state.store.list_articles(feed_ids, page).await?,
    };
    let etag = channel.etag(format);
    let modified = channel.last_modified();
    let fresh = match headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        Some(tags) => tags
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*"),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .zip(modified)
            .is_some_and(|(since, m)| m <= since),
    };
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, format.content_type())],
            channel.render(format),
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = modified
        .map(|m| m.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .and_then(|m| HeaderValue::from_str(&m).ok())
    {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(response)
}

pub(super) async fn opml(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    opml_response(&state, &headers, false).await
}

async fn opml_response(
    state: &AppState,
    headers: &HeaderMap,
    upstream: bool,
) -> ApiResult<Response> {
    let feeds = state.store.list_feeds(None).await?;
    let body = opml_export(&feeds, &base_url(headers), upstream);
    Ok((
        [
            (header::CONTENT_TYPE, "text/x-opml; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"feeds.opml\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The same export under the admin API.
pub(super) async fn opml_admin(
    State(state): State<AppState>,
    _: AdminAuth,
    headers: HeaderMap,
) -> ApiResult<Response> {
    opml_response(&state, &headers, true).await
}

/// The result of an OPML import.
#[derive(Debug, Serialize)]
pub(super) struct Imported {
    /// Feeds the document named.
    received: usize,
    /// Of them, new.
    created: u64,
    /// Of them, already present (kept unchanged).
    existing: u64,
    /// Outlines that named no usable feed.
    skipped: usize,
}

pub(super) async fn import_opml(
    State(state): State<AppState>,
    _: AdminAuth,
    TextBody(body): TextBody,
) -> ApiResult<axum::Json<Envelope<Imported>>> {
    let (feeds, skipped) = opml_import(&body).map_err(ApiError::bad_request)?;
    let received = feeds.len();
    let created = state.store.create_feeds(feeds, state.clock.now()).await?;
    let existing = u64::try_from(received).unwrap_or(u64::MAX) - created;
    Ok(axum::Json(Envelope::ok(
        "导入成功",
        Imported {
            received,
            created,
            existing,
            skipped,
        },
    )))
}
