//! Feed outputs at WeRSS's paths (`/rss/{id}`, `/feed/{id}.{ext}`, `/feed/all.{ext}`,
//! `/feed/task/{id}.{ext}`), public like WeRSS's, with ETag/Last-Modified and 304; OPML
//! export (`/opml`) and import (admins).

use crate::parent::AppState;
use crate::parent::auth::AdminAuth;
use crate::parent::client_addr::{ClientAddr, forwarded_last};
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::{Path, QueryParams, TextBody};
use crate::parent::ops;
use crate::parent::outputs::{Channel, Format, opml_export, opml_import, split_file};
use crate::protocol::Envelope;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The page of articles a document shows, newest first.
#[derive(Deserialize, JsonSchema)]
pub(super) struct OutputQuery {
    /// Articles, 1–200 (default 20).
    limit: Option<i64>,
    /// Articles to skip (default 0).
    offset: Option<i64>,
}

/// What a document covers.
enum Scope {
    Feed(String),
    All,
    Task(String),
}

/// The base of self-links: `cascade.public_url` when set; else from the request: the
/// `X-Forwarded-Host`/`-Proto` a trusted proxy wrote, or the `Host` header over plain http.
/// `from_request` says that the base came from the request, so shared caches must not keep
/// the document for others.
struct LinkBase {
    url: String,
    from_request: bool,
}

fn link_base(state: &AppState, client: ClientAddr, headers: &HeaderMap) -> LinkBase {
    if let Some(public) = &state.public_url {
        return LinkBase {
            url: public.to_string(),
            from_request: false,
        };
    }
    let forwarded = |name| {
        client
            .via_trusted_proxy
            .then(|| forwarded_last(headers, name))
            .flatten()
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    let scheme = match forwarded("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    // Only a bare host[:port] is used; anything else falls back to `localhost`.
    let url = host
        .and_then(|h| reqwest::Url::parse(&format!("{scheme}://{h}/")).ok())
        .filter(|u| u.path() == "/" && u.username().is_empty() && u.password().is_none())
        .filter(|u| u.query().is_none() && u.fragment().is_none())
        .map_or_else(
            || format!("{scheme}://localhost"),
            |u| u.origin().ascii_serialization(),
        );
    LinkBase {
        url,
        from_request: true,
    }
}

pub(super) async fn rss(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(feed_id): Path<String>,
    QueryParams(q): QueryParams<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let path = format!("/rss/{feed_id}");
    let base = link_base(&state, client, &headers);
    serve(
        &state,
        Scope::Feed(feed_id),
        Format::Rss,
        q,
        &headers,
        &base,
        &path,
    )
    .await
}

pub(super) async fn feed(
    State(state): State<AppState>,
    client: ClientAddr,
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
    let base = link_base(&state, client, &headers);
    serve(
        &state,
        scope,
        format,
        q,
        &headers,
        &base,
        &format!("/feed/{file}"),
    )
    .await
}

pub(super) async fn task_feed(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(file): Path<String>,
    QueryParams(q): QueryParams<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (name, format) = split_file(&file)
        .ok_or_else(|| ApiError::not_found("use /feed/task/{id}.rss|xml|atom|json"))?;
    let scope = Scope::Task(name.to_string());
    let base = link_base(&state, client, &headers);
    serve(
        &state,
        scope,
        format,
        q,
        &headers,
        &base,
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
    base: &LinkBase,
    path: &str,
) -> ApiResult<Response> {
    let page = ops::page(Some(q.limit.unwrap_or(20)), q.offset)?;
    let mut home_url = format!("{}/", base.url);
    let (title, description, feed_ids) = match scope {
        Scope::Feed(id) => {
            let feed = state.store.get_feed(&id).await?;
            let intro = feed
                .mp_intro
                .clone()
                .unwrap_or_else(|| feed.mp_name.clone());
            if let Some(page) = own_page(&feed) {
                home_url = page;
            }
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
        self_url: format!("{}{path}", base.url),
        home_url,
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
        HeaderValue::from_static(if base.from_request {
            "private, max-age=60"
        } else {
            "public, max-age=60"
        }),
    );
    Ok(response)
}

pub(super) async fn opml(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
) -> ApiResult<Response> {
    opml_response(&state, &link_base(&state, client, &headers), false).await
}

async fn opml_response(state: &AppState, base: &LinkBase, upstream: bool) -> ApiResult<Response> {
    let feeds = state.store.list_feeds(None).await?;
    let body = opml_export(&feeds, &base.url, upstream);
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
    client: ClientAddr,
    headers: HeaderMap,
) -> ApiResult<Response> {
    opml_response(&state, &link_base(&state, client, &headers), true).await
}

/// The result of an OPML import.
#[derive(Debug, Serialize, JsonSchema)]
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

/// OPML documents parsed at once: each parse runs on the blocking pool, off the async
/// workers, and holds up to a body's worth of memory.
static OPML_PARSES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub(super) async fn import_opml(
    State(state): State<AppState>,
    _: AdminAuth,
    TextBody(body): TextBody,
) -> ApiResult<axum::Json<Envelope<Imported>>> {
    let permit = OPML_PARSES
        .acquire()
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let parsed = tokio::task::spawn_blocking(move || opml_import(&body))
        .await
        .map_err(|e| ApiError::internal(&e))?;
    drop(permit);
    let (feeds, skipped) = parsed.map_err(ApiError::bad_request)?;
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

/// A feed's own page, for its channel's `<link>`: a WeChat account's profile page (by its
/// `__biz`, the faker id), an RSS feed's URL; `None` when neither is known.
fn own_page(feed: &crate::store::Feed) -> Option<String> {
    if feed.source == "rss" {
        return feed.url.clone().filter(|u| !u.is_empty());
    }
    let biz = feed.faker_id.as_deref().filter(|f| !f.is_empty())?;
    let mut url = reqwest::Url::parse("https://mp.weixin.qq.com/mp/profile_ext").ok()?;
    url.query_pairs_mut()
        .append_pair("action", "home")
        .append_pair("__biz", biz);
    Some(url.into())
}
