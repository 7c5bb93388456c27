//! A fake feed server on `127.0.0.1:0` (UPSTREAMS §5): feeds as RSS 2.0, Atom or JSON Feed,
//! strong ETags and Last-Modified with `304`s, scripted 429/503 with `Retry-After`, and a log
//! of what each request sent.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A feed's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RSS 2.0.
    Rss,
    /// Atom 1.0.
    Atom,
    /// JSON Feed 1.1.
    Json,
}

/// One entry.
#[derive(Debug, Clone)]
pub struct FakeEntry {
    /// guid / id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Link.
    pub link: String,
    /// Epoch seconds.
    pub published: i64,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct FeedRequest {
    /// Feed name.
    pub name: String,
    /// Status served.
    pub status: u16,
    /// `If-None-Match` sent.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since` sent.
    pub if_modified_since: Option<String>,
    /// `Cookie` sent (must be none).
    pub cookie: Option<String>,
}

struct Feed {
    format: Format,
    entries: Vec<FakeEntry>,
    faults: Vec<(u16, Option<String>)>,
}

#[derive(Default)]
struct Inner {
    feeds: HashMap<String, Feed>,
    log: Vec<FeedRequest>,
}

/// Handle to a running fake feed server.
#[derive(Clone)]
pub struct FakeFeeds {
    base: String,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

fn http_date(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn render(feed: &Feed, name: &str) -> (String, &'static str) {
    match feed.format {
        Format::Rss => {
            let items: String = feed.entries.iter().map(|e| format!(
                "<item><guid>{}</guid><title>{}</title><link>{}</link><pubDate>{}</pubDate><description>{}</description></item>",
                escape(&e.id), escape(&e.title), escape(&e.link), http_date(e.published), escape(&e.title))).collect();
            (
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{name}</title><link>http://example.org/</link><description>fake</description>{items}</channel></rss>"#
                ),
                "application/rss+xml",
            )
        }
        Format::Atom => {
            let entries: String = feed.entries.iter().map(|e| format!(
                r#"<entry><id>{}</id><title>{}</title><link rel="alternate" href="{}"/><updated>{}</updated><published>{}</published></entry>"#,
                escape(&e.id), escape(&e.title), escape(&e.link), rfc3339(e.published), rfc3339(e.published))).collect();
            (
                format!(
                    r#"<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><id>urn:{name}</id><title>{name}</title><updated>{}</updated>{entries}</feed>"#,
                    rfc3339(feed.entries.iter().map(|e| e.published).max().unwrap_or(0))
                ),
                "application/atom+xml",
            )
        }
        Format::Json => {
            let items: Vec<serde_json::Value> = feed.entries.iter().map(|e| serde_json::json!({
                "id": e.id, "title": e.title, "url": e.link, "content_text": e.title, "date_published": rfc3339(e.published)})).collect();
            (serde_json::json!({"version": "https://jsonfeed.org/version/1.1", "title": name, "items": items}).to_string(), "application/feed+json")
        }
    }
}

async fn serve_feed(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let text = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let inner = &mut *guard;
    let mut entry = FeedRequest {
        name: name.clone(),
        status: 404,
        if_none_match: text(header::IF_NONE_MATCH),
        if_modified_since: text(header::IF_MODIFIED_SINCE),
        cookie: text(header::COOKIE),
    };
    let Some(feed) = inner.feeds.get_mut(&name) else {
        inner.log.push(entry);
        return StatusCode::NOT_FOUND.into_response();
    };
    if !feed.faults.is_empty() {
        let (status, retry_after) = feed.faults.remove(0);
        entry.status = status;
        inner.log.push(entry);
        let mut resp = StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
        if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let (body, content_type) = render(feed, &name);
    let etag = format!(
        "\"{}\"",
        &crate::protocol::credentials::sha256_hex(&body)[..16]
    );
    let last_modified = http_date(feed.entries.iter().map(|e| e.published).max().unwrap_or(0));
    let not_modified = entry.if_none_match.as_deref() == Some(etag.as_str())
        || entry
            .if_modified_since
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc2822(s).ok())
            .is_some_and(|since| {
                chrono::DateTime::parse_from_rfc2822(&last_modified).is_ok_and(|lm| since >= lm)
            });
    entry.status = if not_modified { 304 } else { 200 };
    inner.log.push(entry);
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type)], body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&last_modified) {
        resp.headers_mut().insert(header::LAST_MODIFIED, v);
    }
    resp
}

impl FakeFeeds {
    /// Starts an empty server on `127.0.0.1:0`.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route("/feeds/{name}", get(serve_feed))
            .with_state(inner.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Self { base, inner, stop })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `entries` at `/feeds/<name>` in `format`; returns its URL.
    pub fn add_feed(&self, name: &str, format: Format, entries: Vec<FakeEntry>) -> String {
        self.lock().feeds.insert(
            name.to_string(),
            Feed {
                format,
                entries,
                faults: Vec::new(),
            },
        );
        format!("{}/feeds/{name}", self.base)
    }

    /// Adds an entry at the top of a feed.
    pub fn push_entry(&self, name: &str, entry: FakeEntry) {
        if let Some(f) = self.lock().feeds.get_mut(name) {
            f.entries.insert(0, entry);
        }
    }

    /// The next request of `name` answers `status` with an optional `Retry-After`.
    pub fn fail_next(&self, name: &str, status: u16, retry_after: Option<&str>) {
        if let Some(f) = self.lock().feeds.get_mut(name) {
            f.faults.push((status, retry_after.map(str::to_string)));
        }
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<FeedRequest> {
        self.lock().log.clone()
    }

    /// Stops the server.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
