//! How a child reads one feed (issue 13 §1–§2): the WeChat sources it can run, the chain
//! the parent lists per feed with its fall-through on refusals, and each source's use of the
//! child's logins (least recently used first, a cooling or expired login handing the feed to
//! the next), with one pacer per login.

use super::Shared;
use super::bursts::MP_SIBLINGS_WAIT;
use crate::fetch::pacer::Pacer;
use crate::fetch::wechat::WechatFetcher;
use crate::fetch::{FetchError, Fetched, Reserve};
use crate::logins::LoginKind;
use crate::protocol::wire::PackageFeed;
use crate::telemetry::untrusted;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The WeChat sources a child can run (issue 13 §1), by the package feed's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WechatSource {
    /// The MP backend list `appmsgpublish`, with an `mp` login.
    MpList,
    /// WeRead's `/web/mp/articles`, with a `weread` login.
    WereadList,
    /// WeRead's `/api/mp/cover` (newest article only), with a `weread` login.
    WereadCover,
}

impl WechatSource {
    fn parse(name: &str) -> Option<Self> {
        match name.trim() {
            "mp_list" => Some(Self::MpList),
            "weread_list" => Some(Self::WereadList),
            "weread_cover" => Some(Self::WereadCover),
            _ => None,
        }
    }

    fn login_kind(self) -> LoginKind {
        match self {
            Self::MpList => LoginKind::Mp,
            Self::WereadList | Self::WereadCover => LoginKind::Weread,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::MpList => "mp_list",
            Self::WereadList => "weread_list",
            Self::WereadCover => "weread_cover",
        }
    }
}

/// The source a feed is read through: `rss` for RSS feeds; the named one for `mp_list`,
/// `weread_list`, `weread_cover`; for a plain `wechat` feed `mp_list` while an `mp` login is
/// usable (today's behaviour), else `weread_list` when a `weread` login is usable (or only
/// `weread` logins are held: they may be waiting for their budgets), else
/// `mp_list` (which reports why no login serves). `None` for a source this child lacks.
fn choose_source(shared: &Shared, feed: &PackageFeed) -> Result<Option<WechatSource>, String> {
    let now = shared.now();
    let source = feed.source.as_deref().unwrap_or("wechat");
    let chosen = match source {
        "rss" if shared.rss.is_some() => return Ok(None),
        "mp_list" => WechatSource::MpList,
        "weread_list" => WechatSource::WereadList,
        "weread_cover" => WechatSource::WereadCover,
        "wechat" => {
            // WeRead also while its logins wait for their budgets, when no `mp` login is held
            // (an `mp_list` without a login would report the session gone).
            let weread = shared.logins.any_usable(LoginKind::Weread, now)
                || (shared.logins.has_kind(LoginKind::Weread)
                    && !shared.logins.has_kind(LoginKind::Mp));
            if !shared.logins.any_usable(LoginKind::Mp, now) && weread {
                WechatSource::WereadList
            } else {
                WechatSource::MpList
            }
        }
        other => return Err(other.to_string()),
    };
    if shared.wechat {
        Ok(Some(chosen))
    } else {
        Err("wechat".into())
    }
}

/// Fetches one feed through the sources the parent lists for it (`sources`, in order): a
/// source this child has no usable login for is skipped, one that refuses (`closed`) hands
/// the feed to the next at once, in this same allocation. Returns the source of the outcome
/// and the refusals met on the way (`[{source, error}]`, for the parent's closure count).
/// Without a list (a stock parent, an RSS feed) the feed is fetched as [`fetch_feed`] says.
pub(super) async fn fetch_through_chain(
    shared: &Shared,
    feed: &PackageFeed,
) -> (&'static str, Vec<Value>, Result<Fetched, FetchError>) {
    let mut refused = Vec::new();
    let listed: Vec<WechatSource> = feed
        .sources
        .iter()
        .flatten()
        .filter_map(|s| WechatSource::parse(s))
        .collect();
    if listed.is_empty() || !shared.wechat || feed.source.as_deref().unwrap_or("wechat") != "wechat"
    {
        let (source, outcome) = fetch_feed(shared, feed).await;
        return (source, refused, outcome);
    }
    let now = shared.now();
    let usable: Vec<WechatSource> = listed
        .iter()
        .copied()
        .filter(|s| shared.logins.any_usable(s.login_kind(), now))
        .collect();
    if usable.is_empty() {
        // No usable login for any listed source: the first one this child has logins of
        // (cooling or expired) reports why, so the parent learns the cooldown or expiry.
        let first = listed
            .iter()
            .copied()
            .find(|s| shared.logins.has_kind(s.login_kind()))
            .unwrap_or(listed[0]);
        return (
            first.name(),
            refused,
            fetch_source(shared, feed, first).await,
        );
    }
    let mut last = None;
    for source in usable {
        match fetch_source(shared, feed, source).await {
            Err(e @ FetchError::Closed(_)) => {
                tracing::info!(feed = %untrusted(&feed.id), source = source.name(), error = %e, "source refused; trying the next");
                refused.push(json!({"source": source.name(), "error": e.to_string()}));
                last = Some((source.name(), Err(e)));
            }
            outcome => {
                // A WeRead login throttled or checked after the list refused it: the refusal
                // may be that check, so it is no evidence of the list's closure.
                if source.login_kind() == LoginKind::Weread
                    && matches!(outcome, Err(FetchError::RateLimited { .. }))
                {
                    refused.retain(|r| r["source"] != "weread_list");
                }
                return (source.name(), refused, outcome);
            }
        }
    }
    let (source, outcome) = last.unwrap_or(("none", Err(FetchError::Network("no source".into()))));
    // Every source refused: the last refusal is the feed's outcome; it is not listed twice.
    refused.pop();
    (source, refused, outcome)
}

/// Fetches one feed with one WeChat source.
async fn fetch_source(
    shared: &Shared,
    feed: &PackageFeed,
    source: WechatSource,
) -> Result<Fetched, FetchError> {
    match source {
        WechatSource::MpList => fetch_mp(shared, feed).await,
        s => fetch_weread(shared, feed, s == WechatSource::WereadCover).await,
    }
}

/// Fetches one feed; also names the source used (for the result item).
async fn fetch_feed(
    shared: &Shared,
    feed: &PackageFeed,
) -> (&'static str, Result<Fetched, FetchError>) {
    match choose_source(shared, feed) {
        Err(kind) => (
            "none",
            Err(FetchError::Network(format!(
                "this node has no fetcher for {kind}"
            ))),
        ),
        Ok(None) => match &shared.rss {
            Some(rss) => ("rss", rss.fetch(feed, shared.now().timestamp()).await),
            None => (
                "none",
                Err(FetchError::Network(
                    "this node has no fetcher for rss".into(),
                )),
            ),
        },
        Ok(Some(WechatSource::MpList)) => ("mp_list", fetch_mp(shared, feed).await),
        Ok(Some(s)) => (
            s.name(),
            fetch_weread(shared, feed, s == WechatSource::WereadCover).await,
        ),
    }
}

/// `mp_list`: the MP backend list with the child's `mp` logins.
async fn fetch_mp(shared: &Shared, feed: &PackageFeed) -> Result<Fetched, FetchError> {
    // Each usable login gets at most one try at this feed: a rate-limited or dead login hands
    // the feed to the next; the last login's failure is the feed's.
    let mut tried = Vec::new();
    let mut last = None;
    loop {
        let now = shared.now();
        let Some(login) = shared.logins.pick(LoginKind::Mp, now) else {
            break;
        };
        if tried.contains(&login.id) {
            break;
        }
        tried.push(login.id.clone());
        let rest = shared.config.cascade.mp_closure_rest;
        let after_rest = rest > 0
            && login
                .last_used_at
                .is_none_or(|t| (now - t).num_seconds() >= i64::try_from(rest).unwrap_or(i64::MAX));
        let request = shared.mp_requests.start(&login.id, after_rest);
        let fetcher = WechatFetcher::new(
            shared.http.clone(),
            &shared.config.cascade.wechat_base_url,
            login.secrets.token.clone().unwrap_or_default(),
            login.secrets.cookie_header(),
            shared.pacer(&login.id),
        )
        .with_budget(shared.reserve_for(&login.id));
        let outcome = fetcher.fetch(feed).await;
        let burst = request.finish(outcome.is_ok());
        let now = shared.now();
        // Another process may have replaced this login meanwhile (a new scan): the outcome
        // concerns the secrets used, so it is recorded only while they are still the login's.
        let same = shared
            .logins
            .get(&login.id)
            .is_some_and(|l| l.secrets == login.secrets);
        let refused_before = shared
            .mp_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&login.id);
        // A refusal in a burst that began after a rest, with no success in it (requests sent
        // alongside may have reached WeChat first and spent what the login allows).
        let rested = refused_before
            || (matches!(outcome, Err(FetchError::RateLimited { .. }))
                && shared
                    .mp_requests
                    .closure(&login.id, burst, MP_SIBLINGS_WAIT)
                    .await);
        {
            let mut refused = shared.mp_refused.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Ok(_) => {
                    refused.remove(&login.id);
                }
                Err(FetchError::RateLimited { .. }) if rested => {
                    refused.insert(login.id.clone());
                }
                Err(_) => {}
            }
        }
        match &outcome {
            _ if !same => {}
            Ok(_) => shared.logins.mark_ok(&login.id, now),
            // The source refuses, not this login: it does not cool (the parent counts nodes
            // before it calls the source closed, and then stops asking it).
            Err(e @ FetchError::RateLimited { .. }) if rested => {
                shared.logins.mark_error(&login.id, &e.to_string());
            }
            Err(e @ FetchError::SessionExpired(_)) => {
                tracing::warn!(login.id = %login.id, error = %e, "WeChat login expired");
                shared.logins.mark_expired(&login.id, &e.to_string());
            }
            Err(e @ FetchError::RateLimited { retry_after }) => {
                let base = shared.config.cascade.cooldown_base;
                // A day at most: a huge setting or hint cannot overflow the clock.
                let secs = retry_after
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(base)
                    .clamp(1, 86_400);
                let until = now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(86_400));
                tracing::warn!(login.id = %login.id, cooldown_s = secs, "WeChat login rate limited; cooling");
                shared.logins.mark_cooling(&login.id, until, &e.to_string());
            }
            // Spent by other feeds between the pick and the call: nothing wrong with the login.
            Err(FetchError::OutOfBudget { .. }) => {}
            Err(e) => shared.logins.mark_error(&login.id, &e.to_string()),
        }
        match outcome {
            // Refused on the first request after a rest: what the closure of the MP list
            // looks like (SOURCES.md §1). The feed goes to the next source; the parent
            // counts nodes before it calls the source closed.
            Err(FetchError::RateLimited { .. }) if rested => {
                return Err(FetchError::Closed(
                    "WeChat 200013 on the login's first request after a rest: the MP list \
                     refuses this account's reads"
                        .into(),
                ));
            }
            Err(
                e @ (FetchError::SessionExpired(_)
                | FetchError::RateLimited { .. }
                | FetchError::OutOfBudget { .. }),
            ) => {
                last = Some(e);
            }
            other => return other,
        }
    }
    Err(no_login_left(shared, LoginKind::Mp, last))
}

/// The outcome when no login of `kind` is left for a feed: the last login's failure, unless
/// it was a spent budget or there was none; then a spent budget (every otherwise usable login
/// out of it: wait for the first to free), a cooldown (wait for its end), or no usable login.
fn no_login_left(shared: &Shared, kind: LoginKind, last: Option<FetchError>) -> FetchError {
    let now = shared.now();
    let secs = |t: chrono::DateTime<chrono::Utc>| Some((t - now).num_seconds().max(1));
    match last {
        Some(e) if !matches!(e, FetchError::OutOfBudget { .. }) => e,
        last => {
            if let Some(free) = shared.logins.next_budget_free(kind, now) {
                FetchError::OutOfBudget {
                    retry_after: secs(free),
                }
            } else if let Some(end) = shared.logins.next_cooldown_end(kind) {
                FetchError::RateLimited {
                    retry_after: Some((end - now).num_seconds().max(0)),
                }
            } else if let Some(e) = last {
                e
            } else {
                FetchError::SessionExpired(format!("no usable {} login", kind.as_str()))
            }
        }
    }
}

/// `weread_list` or `weread_cover` with the child's `weread` logins: each usable login gets
/// one try (a `-2012` renews its `wr_skey` once and tries again); a rate-limited or dead
/// login hands the feed to the next; `closed` (`-2041`) ends the feed's fetch at once (the
/// source refuses, another login would only spend its budget).
async fn fetch_weread(
    shared: &Shared,
    feed: &PackageFeed,
    cover: bool,
) -> Result<Fetched, FetchError> {
    let mut tried = Vec::new();
    let mut last = None;
    loop {
        let now = shared.now();
        let Some(login) = shared.logins.pick(LoginKind::Weread, now) else {
            break;
        };
        if tried.contains(&login.id) {
            break;
        }
        tried.push(login.id.clone());
        let (used, outcome) = weread_once(shared, &login, feed, cover).await;
        let now = shared.now();
        let same = shared
            .logins
            .get(&login.id)
            .is_some_and(|l| l.secrets == used);
        match &outcome {
            _ if !same => {}
            Ok(_) => shared.logins.mark_ok(&login.id, now),
            Err(e @ FetchError::SessionExpired(_)) => {
                tracing::warn!(login.id = %login.id, error = %e, "WeRead login expired");
                shared.logins.mark_expired(&login.id, &e.to_string());
            }
            Err(e @ FetchError::RateLimited { .. }) => {
                let secs = shared.config.cascade.cooldown_base.max(1);
                let until =
                    now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000));
                tracing::warn!(login.id = %login.id, cooldown_s = secs, "WeRead login rate limited; cooling");
                shared.logins.mark_cooling(&login.id, until, &e.to_string());
            }
            Err(FetchError::Closed(why)) if cover => {
                // The cover answers everyone while the list is closed: a `-2041` here is a
                // check on this login (a captcha, SOURCES.md §6–§7), not the source's closure.
                let secs = shared.config.cascade.cooldown_base.max(1);
                let until =
                    now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000));
                tracing::warn!(login.id = %login.id, cooldown_s = secs, error = %why, "WeRead checks this login (captcha?); cooling");
                shared.logins.mark_cooling(
                    &login.id,
                    until,
                    &format!("WeRead refuses this login everywhere (captcha?): {why}"),
                );
            }
            Err(e @ FetchError::Closed(_)) => {
                tracing::warn!(login.id = %login.id, feed.id = %feed.id, error = %e, "WeRead refuses the list");
                shared.logins.mark_error(&login.id, &e.to_string());
            }
            // Spent by other feeds between the pick and the call: nothing wrong with the login.
            Err(FetchError::OutOfBudget { .. }) => {}
            Err(e) => shared.logins.mark_error(&login.id, &e.to_string()),
        }
        match outcome {
            Err(FetchError::Closed(_)) if cover => {
                last = Some(FetchError::RateLimited { retry_after: None });
            }
            Err(
                e @ (FetchError::SessionExpired(_)
                | FetchError::SkeyExpired(_)
                | FetchError::RateLimited { .. }
                | FetchError::OutOfBudget { .. }),
            ) => last = Some(e),
            other => return other,
        }
    }
    // A login cooling for a captcha: the feed waits for its cooldown like a throttle.
    let last = match last {
        Some(FetchError::RateLimited { retry_after: None }) => {
            match shared.logins.next_cooldown_end(LoginKind::Weread) {
                Some(end) => Some(FetchError::RateLimited {
                    retry_after: Some((end - shared.now()).num_seconds().max(0)),
                }),
                None => Some(FetchError::RateLimited { retry_after: None }),
            }
        }
        other => other,
    };
    Err(no_login_left(shared, LoginKind::Weread, last))
}

/// One login's try at a feed: on `-2012` its `wr_skey` is renewed (saved at once) and the
/// fetch repeated once. Returns the secrets the outcome concerns.
async fn weread_once(
    shared: &Shared,
    login: &crate::logins::Login,
    feed: &PackageFeed,
    cover: bool,
) -> (crate::logins::LoginSecrets, Result<Fetched, FetchError>) {
    use crate::fetch::weread::{WereadFetcher, WereadOptions};
    use crate::logins::weread::{RenewOutcome, WereadJar, renew};
    let opts = WereadOptions::from_config(&shared.config.cascade);
    let pacer = shared.weread_pacer(&login.id);
    let reserve = shared.reserve_for(&login.id);
    let ticket = shared.config.cascade.weread_ticket;
    let run = |jar: WereadJar| {
        let f = WereadFetcher::new(shared.http.clone(), opts.clone(), jar, pacer.clone())
            .with_budget(reserve.clone())
            .with_ticket(ticket);
        async move {
            if cover {
                f.cover(feed, shared.now().timestamp()).await
            } else {
                list_shelving(shared, &login.id, &f, feed).await
            }
        }
    };
    let jar = WereadJar::from_pairs(login.secrets.cookies.iter().cloned());
    let first = run(jar.clone()).await;
    let Err(FetchError::SkeyExpired(why)) = first else {
        return (login.secrets.clone(), first);
    };
    match renew(&shared.http, &opts.base_url, &jar).await {
        Ok(RenewOutcome::Renewed { jar: renewed, .. }) => {
            let secrets = crate::logins::LoginSecrets {
                token: login.secrets.token.clone(),
                cookies: renewed.pairs().to_vec(),
            };
            // Saved only while the login still has the secrets renewed (not a new scan).
            let current = shared
                .logins
                .get(&login.id)
                .is_some_and(|l| l.secrets == login.secrets);
            if current
                && let Err(e) =
                    shared
                        .logins
                        .replace_secrets(&login.id, secrets.clone(), shared.now())
            {
                tracing::warn!(login.id = %login.id, error = %e, "could not save the renewed WeRead login");
            }
            tracing::info!(login.id = %login.id, "WeRead wr_skey renewed after -2012");
            (secrets, run(renewed).await)
        }
        Ok(RenewOutcome::ScanNeeded { message }) => (
            login.secrets.clone(),
            Err(FetchError::SessionExpired(format!(
                "WeRead web login expired (-12013): {message}"
            ))),
        ),
        Ok(RenewOutcome::Refused { code, .. }) => (
            login.secrets.clone(),
            Err(FetchError::SkeyExpired(format!(
                "{why}; renewal refused ({code})"
            ))),
        ),
        Ok(RenewOutcome::Unconfirmed) => (
            login.secrets.clone(),
            Err(FetchError::SkeyExpired(format!(
                "{why}; renewal sent no new wr_skey"
            ))),
        ),
        Err(e) => (
            login.secrets.clone(),
            Err(FetchError::SkeyExpired(format!(
                "{why}; renewal failed: {e}"
            ))),
        ),
    }
}

/// `weread_list` with one login: a `-2041` for a book this login never shelved may be the
/// refusal of a book off its shelf (SOURCES.md §5), so the book is shelved (`addToShelf`,
/// once per login and book, remembered in the login store) and the list asked once more.
async fn list_shelving(
    shared: &Shared,
    login_id: &str,
    f: &crate::fetch::weread::WereadFetcher,
    feed: &PackageFeed,
) -> Result<Fetched, FetchError> {
    let first = f.list(feed).await;
    let Err(FetchError::Closed(why)) = first else {
        return first;
    };
    let book = crate::fetch::weread::book_id(feed)?;
    if shared.logins.is_shelved(login_id, &book) {
        return Err(FetchError::Closed(why));
    }
    f.add_to_shelf(&book).await?;
    shared.logins.mark_shelved(login_id, &book);
    tracing::info!(login.id = %login_id, feed.id = %untrusted(&feed.id), "WeRead book shelved after a refused list; asking again");
    f.list(feed).await
}

impl Shared {
    /// The pacer of one `weread` login (`weread_gap_ms` apart), made on first use.
    pub(super) fn weread_pacer(&self, login_id: &str) -> Arc<Pacer> {
        let gap = self.config.cascade.weread_gap();
        self.pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("weread:{login_id}"))
            .or_insert_with(|| Arc::new(Pacer::new(gap, Duration::ZERO)))
            .clone()
    }

    /// Reserves one call of login `id` in its budget at the child's time (issue 13 §7).
    pub(super) fn reserve_for(&self, id: &str) -> Reserve {
        let (logins, clock, id) = (self.logins.clone(), self.clock.clone(), id.to_string());
        Arc::new(move || {
            let now = clock.now().and_utc();
            logins.reserve(&id, now).map_err(|free| {
                tracing::info!(login.id = %id, next_at = %free, "login budget spent");
                FetchError::OutOfBudget {
                    retry_after: Some((free - now).num_seconds().max(1)),
                }
            })
        })
    }

    /// The pacer of one login, made on first use.
    pub(super) fn pacer(&self, login_id: &str) -> Arc<Pacer> {
        let c = &self.config.cascade;
        self.pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(login_id.to_string())
            .or_insert_with(|| {
                Arc::new(Pacer::new(
                    Duration::from_millis(c.wechat_gap_ms),
                    Duration::from_millis(c.wechat_gap_jitter_ms),
                ))
            })
            .clone()
    }
}
