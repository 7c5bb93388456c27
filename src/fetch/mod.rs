//! Fetchers: what a child runs per feed. Each maps upstream trouble to a typed failure reason
//! (PROTOCOL §4.2) so the parent can re-place or retry. Knows nothing of the parent.

pub mod content;
pub mod links;
pub mod pacer;
pub mod rss;
pub mod wechat;
pub mod weread;

use serde::Serialize;

/// Why a fetch failed, as the parent's `reason` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// WeChat `200013` or HTTP 429/503: this login (or feed) must wait.
    #[error("rate limited{}", retry_after.map(|s| format!(" (retry after {s} s)")).unwrap_or_default())]
    RateLimited {
        /// Seconds to wait, when known.
        retry_after: Option<i64>,
    },
    /// The logins that could serve have spent their budgets (issue 13 §7): reported as
    /// `rate_limited` with `budget: true`, so the parent waits `retry_after` without cooling
    /// the node or spending an attempt.
    #[error("login budget spent{}", retry_after.map(|s| format!(" (next call in {s} s)")).unwrap_or_default())]
    OutOfBudget {
        /// Seconds until a login has a call left, when known.
        retry_after: Option<i64>,
    },
    /// WeChat `200003`/`200040`, WeRead `-2010`, or a login page: the session is gone.
    #[error("session expired: {0}")]
    SessionExpired(String),
    /// WeRead `-2012`: the login's `wr_skey` expired. The child renews it and tries again;
    /// reported to the parent as `session_expired` when the renewal does not help.
    #[error("session key expired: {0}")]
    SkeyExpired(String),
    /// The source refuses to list at all (WeRead `-2041`, SOURCES.md §1–§2), whoever asks:
    /// not a throttle, so no cooldown is taken for it here.
    #[error("source closed: {0}")]
    Closed(String),
    /// The account or feed does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Transport failure, 5xx, or an unexpected `ret`.
    #[error("network: {0}")]
    Network(String),
    /// An answer that could not be read.
    #[error("parse: {0}")]
    Parse(String),
}

impl FetchError {
    /// The wire reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } | Self::OutOfBudget { .. } => "rate_limited",
            Self::SessionExpired(_) | Self::SkeyExpired(_) => "session_expired",
            Self::Closed(_) => "closed",
            Self::NotFound(_) => "not_found",
            Self::Network(_) => "network",
            Self::Parse(_) => "parse",
        }
    }

    /// Whether retrying the same feed later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::NotFound(_))
    }

    /// Seconds the upstream asked to wait.
    pub fn retry_after(&self) -> Option<i64> {
        match self {
            Self::RateLimited { retry_after } | Self::OutOfBudget { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Reserves one upstream call of a login (its budget) just before it is sent, after the
/// login's pacer; [`FetchError::OutOfBudget`] when none is left.
pub type Reserve = std::sync::Arc<dyn Fn() -> Result<(), FetchError> + Send + Sync>;

/// An article as uploaded to the parent (PROTOCOL §8.5 field names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Article {
    /// Normalised id `<feed key>-<item id>`.
    pub id: String,
    /// Feed id.
    pub mp_id: String,
    /// Title.
    pub title: String,
    /// Link.
    pub url: String,
    /// Cover.
    pub pic_url: Option<String>,
    /// Summary.
    pub description: Option<String>,
    /// Body (empty when not fetched).
    pub content: String,
    /// Epoch seconds.
    pub publish_time: i64,
    /// 1, or 1000 for deleted (WeRSS `DELETED`).
    pub status: i64,
    /// The long `?__biz=&mid=&idx=&sn=` link when the source gives one besides `url` (WeRead's
    /// `doc_url`), for matching the same article read through another source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
    /// Reads, when the source tells (WeRead `readNum`, `"1.2万"` read leniently).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_num: Option<i64>,
    /// Likes, when the source tells (WeRead `likeNum`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub like_num: Option<i64>,
    /// `publish_time` is the time the article was first seen, not its own (WeRead's cover has
    /// none): the parent does not page back to it and takes the real time when a list gives it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub time_estimated: bool,
    /// WeRead's `reviewId`, for fetching the body through `/web/mp/content` (not uploaded).
    #[serde(skip)]
    pub review_id: Option<String>,
}

/// What a fetch found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// New articles (newer than the package's `since`).
    pub articles: Vec<Article>,
    /// HTTP validators to report (RSS).
    pub etag: Option<String>,
    /// HTTP validators to report (RSS).
    pub last_modified: Option<String>,
    /// The page cap was hit before reaching what the parent already has: older articles
    /// were left unread (reported as `backlog_incomplete` in the feed's result item).
    pub backlog_incomplete: bool,
    /// Where to go on next time (a WeRead list read with a known `since` that stopped at its
    /// page cap), reported with `backlog_incomplete`.
    pub backlog_next: Option<crate::protocol::wire::Backlog>,
    /// The package's backlog was read to its end (reported as `backlog_incomplete: false`).
    pub backlog_done: bool,
}

/// Most bytes of one JSON answer read from WeChat or WeRead (real ones are tens of KiB).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The body of `resp`, read chunk by chunk up to `max` bytes (a larger one is a `parse`
/// error, never held in memory whole).
///
/// # Errors
/// `network` when the connection fails, `parse` when the body passes `max`.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Network(e.without_url().to_string()))?
    {
        if bytes.len() + chunk.len() > max {
            return Err(FetchError::Parse(format!("answer larger than {max} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// [`read_capped`] with [`MAX_ANSWER_BYTES`], as text.
///
/// # Errors
/// As [`read_capped`].
pub async fn answer_text(resp: reqwest::Response) -> Result<String, FetchError> {
    let bytes = read_capped(resp, MAX_ANSWER_BYTES).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
