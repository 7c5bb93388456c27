//! The `rss` fetcher (UPSTREAMS §5): RSS, Atom and JSON Feed through feed-rs, conditional GET
//! with the validators the parent stored, 429/503 `Retry-After` honoured, stable article ids.

use super::{Article, FetchError, Fetched};
use crate::protocol::credentials::sha256_hex;
use crate::protocol::ids::article_id;
use crate::protocol::wire::PackageFeed;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER};
use std::time::Duration;

/// Largest body read (16 MiB) and entries kept per fetch.
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_ENTRIES: usize = 200;

/// Fetches feeds over HTTP; holds no credentials.
#[derive(Clone)]
pub struct RssFetcher {
    http: reqwest::Client,
}

impl RssFetcher {
    /// A fetcher on `http` (a client without cookies).
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// New entries of `feed`, or none on `304`.
    ///
    /// # Errors
    /// A typed [`FetchError`] by the table of UPSTREAMS §5.
    pub async fn fetch(&self, feed: &PackageFeed, now: i64) -> Result<Fetched, FetchError> {
        let url = feed
            .url
            .as_deref()
            .ok_or_else(|| FetchError::NotFound(format!("feed {} has no url", feed.id)))?;
        let mut req = self
            .http
            .get(url)
            .timeout(Duration::from_secs(30))
            .header("User-Agent", crate::protocol::SERVER_VERSION)
            .header("Accept", "application/rss+xml, application/atom+xml, application/feed+json, application/json, application/xml, text/xml, */*;q=0.5");
        if let Some(etag) = &feed.etag {
            req = req.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &feed.last_modified {
            req = req.header(IF_MODIFIED_SINCE, modified);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| FetchError::Network(e.without_url().to_string()))?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        match resp.status() {
            StatusCode::NOT_MODIFIED => {
                return Ok(Fetched {
                    articles: Vec::new(),
                    etag: etag.or_else(|| feed.etag.clone()),
                    last_modified: last_modified.or_else(|| feed.last_modified.clone()),
                    ..Fetched::default()
                });
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                let retry_after = header(RETRY_AFTER)
                    .and_then(|v| retry_after_seconds(&v, now))
                    .unwrap_or(900)
                    .clamp(1, 21_600);
                return Err(FetchError::RateLimited {
                    retry_after: Some(retry_after),
                });
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(FetchError::NotFound(format!("HTTP {}", resp.status())));
            }
            s if !s.is_success() => return Err(FetchError::Network(format!("HTTP {s}"))),
            _ => {}
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Network(e.without_url().to_string()))?;
        if body.len() > MAX_BODY {
            return Err(FetchError::Parse("feed larger than 16 MiB".into()));
        }
        let articles = parse_entries(&feed.id, &body, now)?
            .into_iter()
            .filter(|a| feed.since.is_none_or(|since| a.publish_time > since))
            .collect();
        Ok(Fetched {
            articles,
            etag,
            last_modified,
            ..Fetched::default()
        })
    }
}

/// `Retry-After` as seconds or an HTTP-date.
fn retry_after_seconds(value: &str, now: i64) -> Option<i64> {
    if let Ok(secs) = value.trim().parse::<i64>() {
        return Some(secs);
    }
    chrono::DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.timestamp() - now)
}

/// Entries of an RSS, Atom or JSON Feed body as articles of `feed_id`.
///
/// # Errors
/// `parse` when the body is no feed.
pub fn parse_entries(feed_id: &str, body: &[u8], now: i64) -> Result<Vec<Article>, FetchError> {
    let parsed = feed_rs::parser::parse(body).map_err(|e| FetchError::Parse(e.to_string()))?;
    Ok(parsed
        .entries
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|e| {
            let link = e.links.first().map(|l| l.href.clone()).unwrap_or_default();
            let identity = if e.id.trim().is_empty() {
                link.clone()
            } else {
                e.id.trim().to_string()
            };
            let summary = e.summary.map(|s| s.content);
            let content = e
                .content
                .and_then(|c| c.body)
                .or_else(|| summary.clone())
                .unwrap_or_default();
            Article {
                id: article_id(feed_id, &sha256_hex(&identity)[..16]),
                mp_id: feed_id.to_string(),
                title: e
                    .title
                    .map(|t| t.content.trim().to_string())
                    .unwrap_or_default(),
                url: link,
                pic_url: None,
                description: summary.map(|s| s.chars().take(200).collect()),
                content,
                publish_time: e.published.or(e.updated).map_or(now, |t| t.timestamp()),
                status: 1,
                doc_url: None,
                read_num: None,
                like_num: None,
                time_estimated: false,
                review_id: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_feed_scoped() {
        let rss = br#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
            <item><guid>g-1</guid><title>One</title><link>https://e.org/1</link><pubDate>Sun, 22 Nov 2026 14:43:11 GMT</pubDate></item>
            </channel></rss>"#;
        let a = parse_entries("RSS_aaaa", rss, 0).expect("parsed");
        let b = parse_entries("RSS_bbbb", rss, 0).expect("parsed");
        assert_eq!(
            a[0].id,
            parse_entries("RSS_aaaa", rss, 0).expect("parsed")[0].id
        );
        assert!(a[0].id.starts_with("RSS_aaaa-") && a[0].id.len() == "RSS_aaaa-".len() + 16);
        assert_ne!(a[0].id, b[0].id);
        assert_eq!(a[0].publish_time, 1_795_358_591);
        assert_eq!(a[0].title, "One");
        assert_eq!(
            parse_entries("RSS_a", b"not a feed", 0)
                .expect_err("bad")
                .reason(),
            "parse"
        );
        assert_eq!(retry_after_seconds("120", 0), Some(120));
        assert_eq!(
            retry_after_seconds("Sun, 22 Nov 2026 14:45:11 GMT", 1_795_358_591),
            Some(120)
        );
    }
}
