//! The WeRead sources (SOURCES.md §2–§3), each run with one `weread` login's cookie jar and
//! that login's pacer:
//! - `weread_list`: `GET /web/mp/articles?bookId=&offset=`, paged by **group** offset back to
//!   what the parent already has (`since`), at most `weread_max_pages` pages; when the cap
//!   comes first the result says `backlog_incomplete`.
//! - `weread_cover`: `GET /api/mp/cover?bookId=`, the newest article only, without a publish
//!   time (the time it is first seen is used); an HTTP 499 with `data.errcode` is an error.
//!
//! WeRead's error codes map to typed reasons: `-2041` → `closed`, `-2012` → a renewable
//! [`FetchError::SkeyExpired`], `-2010`/`-12013` → `session_expired`, `-2014` →
//! `rate_limited`.

use super::links;
use super::pacer::Pacer;
use super::{Article, FetchError, Fetched, Reserve};
use crate::config::CascadeConfig;
use crate::logins::weread::{WereadJar, authenticated, error_envelope};
use crate::protocol::ids::{article_id, feed_id_from_faker_id};
use crate::protocol::wire::{Backlog, PackageFeed};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How the WeRead fetchers run (the child's settings).
#[derive(Debug, Clone)]
pub struct WereadOptions {
    /// API base URL (`https://weread.qq.com` or a fake), without a trailing `/`.
    pub base_url: String,
    /// List pages read per feed at most (`weread_max_pages`, at least 1).
    pub max_pages: usize,
    /// Whether a `~` in a token is written `_` in the article link (`weread_tilde_rewrite`).
    pub tilde_rewrite: bool,
}

impl WereadOptions {
    /// The options from `weread_base_url`, `weread_max_pages`, `weread_tilde_rewrite`.
    pub fn from_config(c: &CascadeConfig) -> Self {
        Self {
            base_url: crate::config::normalize_url(&c.weread_base_url),
            max_pages: usize::try_from(c.weread_max_pages.max(1)).unwrap_or(usize::MAX),
            tilde_rewrite: c.weread_tilde_rewrite,
        }
    }
}

/// One `weread` login's fetchers.
#[derive(Clone)]
pub struct WereadFetcher {
    http: reqwest::Client,
    opts: WereadOptions,
    jar: WereadJar,
    pacer: Arc<Pacer>,
    reserve: Option<Reserve>,
    ticket: bool,
}

/// Longest wait for one WeRead answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The WeRead book id of a WeChat feed: `MP_WXS_<digits>`, the feed id itself or derived
/// from its `faker_id`.
///
/// # Errors
/// `not_found` when neither gives one.
pub fn book_id(feed: &PackageFeed) -> Result<String, FetchError> {
    if crate::protocol::ids::faker_id_from_feed_id(&feed.id).is_some() {
        return Ok(feed.id.clone());
    }
    feed.faker_id
        .as_deref()
        .and_then(feed_id_from_faker_id)
        .ok_or_else(|| FetchError::NotFound(format!("feed {} has no WeRead book id", feed.id)))
}

impl WereadFetcher {
    /// A fetcher for one login (its jar) sharing that login's `pacer`.
    pub fn new(
        http: reqwest::Client,
        opts: WereadOptions,
        jar: WereadJar,
        pacer: Arc<Pacer>,
    ) -> Self {
        Self {
            http,
            opts,
            jar,
            pacer,
            reserve: None,
            ticket: false,
        }
    }

    /// Every call first reserves one unit of the login's budget (issue 13 §7).
    #[must_use]
    pub fn with_budget(mut self, reserve: Reserve) -> Self {
        self.reserve = Some(reserve);
        self
    }

    /// Whether calls carry `x-wr-ticket` (the login's `wr_skey`; older clients needed it,
    /// upstream later made it optional: `weread_ticket`).
    #[must_use]
    pub fn with_ticket(mut self, on: bool) -> Self {
        self.ticket = on;
        self
    }

    /// `POST /mp/shelf/addToShelf`: puts `book` on the login's shelf (idempotent upstream).
    ///
    /// # Errors
    /// A typed [`FetchError`]; a full shelf (`-2001`) is a `network` error naming it.
    pub async fn add_to_shelf(&self, book: &str) -> Result<(), FetchError> {
        self.admit().await?;
        let url = format!("{}/mp/shelf/addToShelf", self.opts.base_url);
        let req = self
            .http
            .post(url)
            .json(&serde_json::json!({"bookIds": [book]}))
            .timeout(TIMEOUT);
        let text = self.send(req).await?;
        let body = json(&text)?;
        if let Some((-2001, msg)) = error_envelope(&body) {
            return Err(FetchError::Network(format!(
                "WeRead -2001 shelf full: {msg}"
            )));
        }
        check_envelope(&body)?;
        Ok(())
    }

    /// Waits for the login's pacer, then reserves the call in its budget.
    async fn admit(&self) -> Result<(), FetchError> {
        self.pacer.wait_turn().await;
        match &self.reserve {
            Some(reserve) => reserve(),
            None => Ok(()),
        }
    }

    /// `weread_list`: articles of `feed` newer than its `since` (every page up to the cap
    /// without one), newest first.
    ///
    /// # Errors
    /// A typed [`FetchError`]; articles of earlier pages are dropped with it.
    pub async fn list(&self, feed: &PackageFeed) -> Result<Fetched, FetchError> {
        let book = book_id(feed)?;
        let mut articles: Vec<Article> = Vec::new();
        let mut pages_left = self.opts.max_pages;
        // The new articles, newest first, back to the first one the parent has.
        let mut offset = 0;
        let mut new_groups = 0usize;
        let mut reached = false;
        while pages_left > 0 {
            pages_left -= 1;
            let groups = match self.list_page(&book, offset).await {
                // The budget ran out after some pages: what was read is kept, the rest waits
                // (an incomplete backlog, gone on with next time).
                Err(FetchError::OutOfBudget { .. }) if offset > 0 => {
                    tracing::info!(feed.id = %feed.id, "WeRead login budget spent mid-list: backlog incomplete");
                    break;
                }
                other => other?,
            };
            if groups.is_empty() {
                reached = true;
                break;
            }
            offset += groups.len();
            for group in groups {
                let mut all_new = true;
                for item in group {
                    match feed.since {
                        Some(since) if item.publish_time <= since => {
                            reached = true;
                            all_new = false;
                        }
                        _ => articles.push(owned(feed, item)),
                    }
                }
                new_groups += usize::from(all_new);
            }
            if reached {
                break;
            }
        }
        let mut out = Fetched::default();
        if !reached {
            out.backlog_incomplete = true;
            // With a known `since` the gap is worth going back to; a new feed's depth is the cap.
            let until = feed.backlog.map(|b| b.until).or(feed.since);
            out.backlog_next = until.map(|until| Backlog {
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                until,
            });
            tracing::warn!(
                feed.id = %feed.id,
                pages = self.opts.max_pages,
                "WeRead list stopped (page cap or budget) before the articles the parent has: backlog incomplete"
            );
        } else if let Some(backlog) = feed.backlog {
            // An earlier read stopped at its cap: go on from where it stopped, shifted by the
            // groups published since, down to the article the gap ends at.
            let mut at = usize::try_from(backlog.offset.max(0))
                .unwrap_or(usize::MAX)
                .saturating_add(new_groups);
            let mut done = false;
            while pages_left > 0 {
                pages_left -= 1;
                // Whatever stops the backlog (budget, refusal, network) keeps the new
                // articles read above: the backlog is gone on with next time.
                let groups = match self.list_page(&book, at).await {
                    Ok(groups) => groups,
                    Err(e) => {
                        tracing::info!(feed.id = %feed.id, error = %e, "WeRead backlog read stopped; kept for next time");
                        break;
                    }
                };
                if groups.is_empty() {
                    done = true;
                    break;
                }
                at += groups.len();
                for item in groups.into_iter().flatten() {
                    if item.publish_time <= backlog.until {
                        done = true;
                    } else if !articles.iter().any(|a| a.url == item.url) {
                        articles.push(owned(feed, item));
                    }
                }
                if done {
                    break;
                }
            }
            if done {
                out.backlog_done = true;
            } else {
                out.backlog_incomplete = true;
                out.backlog_next = Some(Backlog {
                    offset: i64::try_from(at).unwrap_or(i64::MAX),
                    until: backlog.until,
                });
            }
        }
        out.articles = articles;
        Ok(out)
    }

    /// `weread_cover`: the newest article of `feed`, dated `now` (the cover has no time).
    ///
    /// # Errors
    /// A typed [`FetchError`] (an HTTP 499 with `data.errcode` included).
    pub async fn cover(&self, feed: &PackageFeed, now: i64) -> Result<Fetched, FetchError> {
        let book = book_id(feed)?;
        let url = format!("{}/api/mp/cover", self.opts.base_url);
        let text = self.get(&url, &[("bookId", book.as_str())]).await?;
        let articles = parse_cover(&text, &book, self.opts.tilde_rewrite, now)?
            .into_iter()
            .map(|item| Article {
                id: article_id(&feed.id, &item.id),
                mp_id: feed.id.clone(),
                ..item
            })
            .collect();
        Ok(Fetched {
            articles,
            ..Fetched::default()
        })
    }

    /// One list page: its groups, each a list of articles (ids not yet normalised).
    async fn list_page(&self, book: &str, offset: usize) -> Result<Vec<Vec<Article>>, FetchError> {
        let url = format!("{}/web/mp/articles", self.opts.base_url);
        let offset = offset.to_string();
        let text = self
            .get(&url, &[("bookId", book), ("offset", offset.as_str())])
            .await?;
        parse_list(&text, book, self.opts.tilde_rewrite)
    }

    /// A paced, authenticated GET; the body of any answer but a 5xx (a 499 carries an error
    /// envelope that the parsers read).
    async fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<String, FetchError> {
        self.admit().await?;
        let req = self.http.get(url).query(query).timeout(TIMEOUT);
        self.send(req).await
    }

    /// Sends an authenticated request; the body of any answer but a 5xx.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, FetchError> {
        let mut req = authenticated(req, &self.opts.base_url, &self.jar);
        if self.ticket
            && let Some(skey) = self.jar.get("wr_skey")
        {
            req = req.header("x-wr-ticket", skey.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| FetchError::Network(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(FetchError::Network(format!("HTTP {status}")));
        }
        let text = super::answer_text(resp).await?;
        if !status.is_success() {
            // The envelope decides when there is one; else the status does.
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            check_envelope(&body)?;
            return Err(match status.as_u16() {
                429 => FetchError::RateLimited { retry_after: None },
                401 | 403 => FetchError::SessionExpired(format!("HTTP {status}")),
                404 => FetchError::NotFound(format!("HTTP {status}")),
                _ => FetchError::Network(format!("HTTP {status}")),
            });
        }
        Ok(text)
    }
}

/// Maps WeRead's error envelope (top level or under `data`) to a reason; `Ok` without one.
///
/// # Errors
/// `-2041` → `closed`, `-2012` → [`FetchError::SkeyExpired`], `-2010`/`-12013` →
/// `session_expired`, `-2014` → `rate_limited`, anything else → `network`.
pub fn check_envelope(body: &Value) -> Result<(), FetchError> {
    let Some((code, msg)) = error_envelope(body) else {
        return Ok(());
    };
    let what = format!("WeRead {code} {msg}");
    Err(match code {
        -2041 => FetchError::Closed(what),
        -2012 => FetchError::SkeyExpired(what),
        -2010 | -12013 => FetchError::SessionExpired(what),
        -2014 => FetchError::RateLimited { retry_after: None },
        _ => FetchError::Network(what),
    })
}

fn json(text: &str) -> Result<Value, FetchError> {
    serde_json::from_str(text).map_err(|_| FetchError::Parse("WeRead answer is not JSON".into()))
}

/// Reads one `/web/mp/articles` answer (SOURCES.md §2): groups newest first, each with its
/// `subReviews`, or flat (`review` without `subReviews`). Articles without a token nor a
/// `doc_url` are skipped.
///
/// # Errors
/// The reason an error envelope carries, or `parse`.
pub fn parse_list(
    text: &str,
    book: &str,
    tilde_rewrite: bool,
) -> Result<Vec<Vec<Article>>, FetchError> {
    let body = json(text)?;
    check_envelope(&body)?;
    let groups = body["reviews"]
        .as_array()
        .ok_or_else(|| FetchError::Parse("no reviews in the WeRead list".into()))?;
    Ok(groups
        .iter()
        .map(|group| {
            let group_time = epoch(&group["createTime"]);
            let reviews: Vec<&Value> = match group["subReviews"].as_array() {
                Some(subs) => subs.iter().map(|s| &s["review"]).collect(),
                None => vec![&group["review"]],
            };
            reviews
                .into_iter()
                .filter_map(|r| review_article(r, book, group_time, tilde_rewrite))
                .collect()
        })
        .collect())
}

/// One review as an article (id not yet normalised): link from the token, publish time
/// `mpInfo.time`, else the review's, else the group's `createTime`.
fn review_article(
    r: &Value,
    book: &str,
    group_time: Option<i64>,
    tilde_rewrite: bool,
) -> Option<Article> {
    let info = &r["mpInfo"];
    let text = |v: &Value| {
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let token = text(&info["originalId"]).or_else(|| {
        text(&r["reviewId"]).and_then(|id| id.strip_prefix(&format!("{book}_")).map(str::to_string))
    });
    let doc_url = text(&info["doc_url"]);
    let url = match (&token, &doc_url) {
        (Some(t), _) => links::short_link(t, tilde_rewrite),
        (None, Some(d)) => d.clone(),
        (None, None) => return None,
    };
    // The MP list's id when the long link tells it, so either source gives the same id.
    let id = doc_url
        .as_deref()
        .and_then(links::mp_item_id)
        .or_else(|| token.clone())?;
    Some(Article {
        id,
        mp_id: String::new(),
        title: text(&info["title"]).unwrap_or_default(),
        url,
        pic_url: text(&info["pic_url"]),
        description: text(&info["content"]),
        content: String::new(),
        publish_time: epoch(&info["time"])
            .or_else(|| epoch(&r["createTime"]))
            .or(group_time)
            .unwrap_or(0),
        status: 1,
        doc_url,
        read_num: parse_count(&info["readNum"]),
        like_num: parse_count(&info["likeNum"]),
        time_estimated: false,
        review_id: text(&r["reviewId"]).or_else(|| token.as_ref().map(|t| format!("{book}_{t}"))),
    })
}

/// Reads one `/api/mp/cover` answer (SOURCES.md §3): the newest article, dated `now`;
/// none when the answer names no article.
///
/// # Errors
/// The reason an error envelope carries (top level or under `data`), or `parse`.
pub fn parse_cover(
    text: &str,
    book: &str,
    tilde_rewrite: bool,
    now: i64,
) -> Result<Vec<Article>, FetchError> {
    let body = json(text)?;
    check_envelope(&body)?;
    let text = |k: &str| {
        body[k]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let Some(review_id) = text("reviewId") else {
        return Ok(Vec::new());
    };
    let token = review_id
        .strip_prefix(&format!("{book}_"))
        .unwrap_or(&review_id)
        .to_string();
    Ok(vec![Article {
        id: token.clone(),
        mp_id: String::new(),
        title: text("title").unwrap_or_default(),
        url: links::short_link(&token, tilde_rewrite),
        pic_url: text("pic"),
        description: text("digest"),
        content: String::new(),
        publish_time: now,
        status: 1,
        doc_url: None,
        read_num: None,
        like_num: None,
        time_estimated: true,
        review_id: Some(review_id.clone()),
    }])
}

/// A listed item as an article of `feed` (its id normalised).
fn owned(feed: &PackageFeed, item: Article) -> Article {
    Article {
        id: article_id(&feed.id, &item.id),
        mp_id: feed.id.clone(),
        ..item
    }
}

/// Epoch seconds from a number or a numeric string.
fn epoch(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str()?.trim().parse().ok())
        .filter(|t| *t > 0)
}

/// A count as WeRead writes it: a number, or a string like `"1.2万"`, `"10万+"`, `"3亿"`,
/// `"1.5w"`, `"1,234"`; `None` when it reads as none of them.
pub fn parse_count(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n.max(0));
    }
    if let Some(f) = v.as_f64() {
        return Some(f.max(0.0).round() as i64);
    }
    let s = v.as_str()?.trim().trim_end_matches('+').replace(',', "");
    let (number, scale) =
        if let Some(n) = s.strip_suffix('万').or_else(|| s.strip_suffix(['w', 'W'])) {
            (n, 10_000.0)
        } else if let Some(n) = s.strip_suffix('亿') {
            (n, 100_000_000.0)
        } else if let Some(n) = s.strip_suffix(['k', 'K']) {
            (n, 1_000.0)
        } else {
            (s.as_str(), 1.0)
        };
    let n: f64 = number.trim().parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * scale).round() as i64)
}

#[cfg(test)]
mod tests;
