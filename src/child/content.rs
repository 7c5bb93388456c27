//! Full text (issue 13 §5): after a feed's list is read, the body of each new article is
//! fetched on its own pacing (`content_gap_ms` per page-fetch identity) and budget
//! (`content_max_per_feed`): `weread_list` articles through WeRead's `/web/mp/content` with a
//! `weread` login (the usable ones in turn), the others through their MP page, fetched
//! anonymously (the identity is this node). A human-check page stops page fetches of that
//! identity for `content_block_seconds`, doubling up to [`MAX_BLOCK`]; the articles left are
//! uploaded without a body and the feed is not failed. An error page gives status 1000.

use super::Shared;
use crate::fetch::content::{PageOutcome, fetch_page, page_url};
use crate::fetch::pacer::Pacer;
use crate::fetch::{Article, FetchError};
use crate::logins::{Login, LoginKind};
use crate::protocol::wire::PackageFeed;
use crate::telemetry::untrusted;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest a human check stops page fetches (SOURCES.md §6: 15 min doubling to 3–6 h).
pub const MAX_BLOCK: Duration = Duration::from_secs(6 * 3600);

/// The page-fetch identity of anonymous MP page fetches: this node.
const NODE: &str = "node";

/// Largest body uploaded: an article must fit one upload under the parent's 1 MiB request
/// limit with room for JSON escaping and its other fields; a larger one goes without it.
const MAX_BODY_BYTES: usize = 400 * 1024;

/// Where page fetches stand per identity (a `weread` login id, or [`NODE`]).
#[derive(Debug, Default)]
pub(super) struct PageBlocks {
    inner: Mutex<HashMap<String, Block>>,
}

#[derive(Debug, Default, Clone)]
struct Block {
    /// Page fetches wait until then.
    until: Option<DateTime<Utc>>,
    /// Human checks met in a row (the next block is `base · 2^level`).
    level: u32,
    /// The last page fetch, for taking logins in turn.
    last_fetch: Option<DateTime<Utc>>,
}

impl PageBlocks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Block>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `identity` may fetch a page at `now`.
    fn open(&self, identity: &str, now: DateTime<Utc>) -> bool {
        self.lock()
            .get(identity)
            .and_then(|b| b.until)
            .is_none_or(|until| until <= now)
    }

    /// A human check met by `identity`: no page fetches for `base · 2^level` (at most
    /// [`MAX_BLOCK`]); returns that duration.
    fn human_check(&self, identity: &str, base: Duration, now: DateTime<Utc>) -> Duration {
        let mut map = self.lock();
        let b = map.entry(identity.to_string()).or_default();
        let block = base
            .checked_mul(2u32.saturating_pow(b.level))
            .unwrap_or(MAX_BLOCK)
            .min(MAX_BLOCK)
            .max(Duration::from_secs(1));
        b.level = b.level.saturating_add(1).min(16);
        b.until = Some(now + chrono::Duration::from_std(block).unwrap_or(chrono::Duration::MAX));
        block
    }

    /// A page read by `identity`: its human-check doubling starts over.
    fn fetched(&self, identity: &str, now: DateTime<Utc>) {
        let mut map = self.lock();
        let b = map.entry(identity.to_string()).or_default();
        b.last_fetch = Some(now);
        if b.until.is_none_or(|u| u <= now) {
            b.level = 0;
            b.until = None;
        }
    }

    fn last_fetch(&self, identity: &str) -> Option<DateTime<Utc>> {
        self.lock().get(identity).and_then(|b| b.last_fetch)
    }
}

/// Fetches the bodies of `articles` (read through `source` for `feed`), newest first, at
/// most `content_max_per_feed`; never fails: an article whose body cannot be had keeps
/// an empty one.
pub(super) async fn fill_bodies(
    shared: &Shared,
    feed: &PackageFeed,
    source: &str,
    articles: &mut [Article],
) {
    let c = &shared.config.cascade;
    let cap = usize::try_from(c.content_max_per_feed).unwrap_or(usize::MAX);
    let mut order: Vec<usize> = (0..articles.len())
        .filter(|&i| articles[i].status != 1000 && articles[i].content.is_empty())
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(articles[i].publish_time));
    if order.len() > cap {
        tracing::info!(feed = %untrusted(&feed.id), left = order.len() - cap, cap, "article bodies capped for this run");
        order.truncate(cap);
    }
    for i in order {
        let a = &mut articles[i];
        let outcome = match (source, a.review_id.clone()) {
            ("weread_list", Some(review)) => weread_body(shared, &review).await,
            _ => mp_body(shared, a.doc_url.as_deref().unwrap_or(&a.url)).await,
        };
        match outcome {
            Some(Ok(PageOutcome::Body(b))) if b.html.len() > MAX_BODY_BYTES => {
                tracing::warn!(feed = %untrusted(&feed.id), article = %untrusted(&a.id), bytes = b.html.len(), "article body too large to upload; uploaded without it");
            }
            Some(Ok(PageOutcome::Body(b))) => a.content = b.html,
            Some(Ok(PageOutcome::Gone(why))) => {
                tracing::info!(feed = %untrusted(&feed.id), article = %untrusted(&a.id), ?why, "article page gone: status 1000");
                a.status = 1000;
                a.content.clear();
            }
            Some(Ok(PageOutcome::HumanCheck)) => {}
            Some(Err(e)) => {
                tracing::info!(feed = %untrusted(&feed.id), article = %untrusted(&a.id), error = %e, "article body not read; uploaded without it");
            }
            // No identity may fetch pages now.
            None => {}
        }
    }
}

/// The body through WeRead `/web/mp/content`, with the usable `weread` logins in turn (the
/// one that fetched longest ago first); a login meeting the human check is blocked and the
/// next one tries. `None` when no login may fetch pages now.
async fn weread_body(shared: &Shared, review_id: &str) -> Option<Result<PageOutcome, FetchError>> {
    use crate::logins::weread::{WereadJar, authenticated};
    let c = &shared.config.cascade;
    let base = crate::config::normalize_url(&c.weread_base_url);
    let mut tried: Vec<String> = Vec::new();
    loop {
        let now = Utc::now();
        let login = next_login(shared, &tried, now)?;
        tried.push(login.id.clone());
        let identity = format!("weread:{}", login.id);
        // Bodies have their own budget (`content_gap_ms`, `content_max_per_feed`), so full text
        // never starves the lists; but a login resting because its list budget is spent makes
        // no call at all, and its WeRead gap holds between any two of its calls.
        let spent = shared
            .logins
            .budget(&login.id, shared.now())
            .is_some_and(|b| b.resets_at.is_some());
        if spent {
            continue;
        }
        shared.weread_pacer(&login.id).wait_turn().await;
        pacer(shared, &identity).wait_turn().await;
        let jar = WereadJar::from_pairs(login.secrets.cookies.iter().cloned());
        let req = shared
            .http
            .get(format!("{base}/web/mp/content"))
            .query(&[("reviewId", review_id)]);
        let outcome = fetch_page(authenticated(req, &base, &jar)).await;
        let now = Utc::now();
        if outcome == Ok(PageOutcome::HumanCheck) {
            blocked(
                shared,
                &identity,
                &format!("WeRead login {}", login.id),
                now,
            );
            continue;
        }
        shared.page_blocks.fetched(&identity, now);
        return Some(outcome);
    }
}

/// The usable `weread` login not yet tried whose page fetches are open, the one that fetched
/// a page longest ago first.
fn next_login(shared: &Shared, tried: &[String], now: DateTime<Utc>) -> Option<Login> {
    shared
        .logins
        .all()
        .into_iter()
        .filter(|l| l.kind == LoginKind::Weread && l.usable(now) && !tried.contains(&l.id))
        .filter(|l| shared.page_blocks.open(&format!("weread:{}", l.id), now))
        .min_by_key(|l| {
            (
                shared.page_blocks.last_fetch(&format!("weread:{}", l.id)),
                l.id.clone(),
            )
        })
}

/// The body through the article's MP page, fetched anonymously. `None` while this node's
/// page fetches are stopped.
async fn mp_body(shared: &Shared, link: &str) -> Option<Result<PageOutcome, FetchError>> {
    if !shared.page_blocks.open(NODE, Utc::now()) {
        return None;
    }
    pacer(shared, NODE).wait_turn().await;
    // Only WeChat's article pages: a link elsewhere (upstream data) is never fetched.
    let Some(url) = page_url(link, &shared.config.cascade.mp_page_base_url) else {
        return Some(Err(FetchError::Parse(
            "not a WeChat article link; body not fetched".into(),
        )));
    };
    let req = shared.http.get(url).header(
        reqwest::header::USER_AGENT,
        crate::fetch::content::BROWSER_UA,
    );
    let outcome = fetch_page(req).await;
    let now = Utc::now();
    if outcome == Ok(PageOutcome::HumanCheck) {
        blocked(shared, NODE, "MP article pages on this node", now);
    } else {
        shared.page_blocks.fetched(NODE, now);
    }
    Some(outcome)
}

fn blocked(shared: &Shared, identity: &str, who: &str, now: DateTime<Utc>) {
    let base = Duration::from_secs(shared.config.cascade.content_block_seconds);
    let block = shared.page_blocks.human_check(identity, base, now);
    tracing::warn!(
        identity = who,
        block_s = block.as_secs(),
        "human-check page: article page fetches stop"
    );
}

/// The page pacer of one identity (`content_gap_ms` apart), made on first use.
fn pacer(shared: &Shared, identity: &str) -> Arc<Pacer> {
    let gap = Duration::from_millis(shared.config.cascade.content_gap_ms);
    shared
        .pacers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(format!("content:{identity}"))
        .or_insert_with(|| Arc::new(Pacer::new(gap, Duration::ZERO)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_human_check_blocks_for_the_base_doubling_to_the_cap_and_a_read_page_resets_it() {
        let blocks = PageBlocks::default();
        let t0 = DateTime::from_timestamp(1_000_000, 0).expect("time");
        let base = Duration::from_secs(900);
        assert!(blocks.open("a", t0));
        assert_eq!(blocks.human_check("a", base, t0), base);
        assert!(!blocks.open("a", t0 + chrono::Duration::seconds(899)));
        assert!(blocks.open("b", t0), "another identity is not blocked");
        assert!(blocks.open("a", t0 + chrono::Duration::seconds(900)));
        assert_eq!(blocks.human_check("a", base, t0), base * 2);
        for _ in 0..10 {
            blocks.human_check("a", base, t0);
        }
        assert_eq!(blocks.human_check("a", base, t0), MAX_BLOCK);
        let later = t0 + chrono::Duration::seconds(7 * 3600);
        blocks.fetched("a", later);
        assert_eq!(blocks.human_check("a", base, later), base);
    }
}
