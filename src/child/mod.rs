//! The child node (DESIGN §7): heartbeats, claims (long-poll and batches when the parent
//! advertises them), runs up to `capacity` feeds at once with the fetcher of their kind,
//! uploads, reports per-feed results, and on shutdown finishes or gives back what it holds.
//! Talks to the parent only through [`client::ParentClient`].

mod bursts;
pub mod client;
mod content;
mod fetch;
mod flows;
pub mod notify;
mod search;

use crate::config::Config;
use crate::fetch::pacer::Pacer;
use crate::fetch::rss::RssFetcher;
use crate::fetch::{Article, FetchError, Fetched};
use crate::logins::{LoginKind, LoginState, LoginStore};
use crate::protocol::SERVER_VERSION;
use crate::protocol::wire::{PackageFeed, TaskPackage};
use crate::telemetry::{untrusted, untrusted_error};
use anyhow::Context;
use client::ParentClient;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The command channel extension: login requests in heartbeat answers.
const COMMANDS: &str = "commands";

/// Extensions this child understands (sent in heartbeats).
const FEATURES: &[&str] = &[
    "wait",
    "limit",
    "lease_token",
    "release",
    "reason",
    "held",
    COMMANDS,
];

struct Shared {
    client: ParentClient,
    config: Config,
    http: reqwest::Client,
    /// Whether `wechat` is among the configured fetchers.
    wechat: bool,
    /// The child's logins; WeChat fetches take one per feed from here.
    logins: Arc<LoginStore>,
    /// One pacer per login id: WeChat limits each account, not the node.
    pacers: Mutex<HashMap<String, Arc<Pacer>>>,
    /// `mp` logins the MP list refused as closed, with no success since: a `200013` of theirs
    /// is the same refusal, not throttling.
    mp_refused: Mutex<std::collections::HashSet<String>>,
    /// The MP list requests of each login in flight, and their successes.
    mp_requests: bursts::MpRequests,
    rss: Option<RssFetcher>,
    held: Mutex<HashMap<String, TaskPackage>>,
    done: Notify,
    wake: Arc<Notify>,
    /// Sends the next heartbeat now (a QR login just saved a login).
    beat_now: Notify,
    /// The child's time for logins (cooldowns, budgets); tests inject a manual clock.
    clock: crate::clock::Clock,
    /// Article page fetches stopped by human checks, per login (or this node).
    page_blocks: content::PageBlocks,
}

/// A configured child, ready to run.
pub struct Child {
    shared: Arc<Shared>,
    listener: Option<tokio::net::TcpListener>,
}

impl Child {
    /// Builds a child from configuration.
    ///
    /// # Errors
    /// Missing AK/SK, an HTTP client that cannot be built, or an unreadable login store
    /// (`<data_dir>/logins.json`).
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let c = &config.cascade;
        if c.api_key.trim().is_empty() || c.api_secret.is_empty() {
            anyhow::bail!(
                "cascade.api_key and cascade.api_secret are required (create them on the parent: POST /nodes/{{id}}/credentials)"
            );
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Below the parent's `idle_timeout` (75 s), so a pooled connection is not reused
            // just as the parent closes it.
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("while building the HTTP client")?;
        let client = ParentClient::new(
            http.clone(),
            &c.parent_api_url,
            c.api_key.trim(),
            &c.api_secret,
        );
        let rss = c
            .fetchers
            .iter()
            .any(|f| f == "rss")
            .then(|| RssFetcher::new(http.clone()));
        let logins = LoginStore::open(std::path::Path::new(&c.data_dir))?;
        logins.adopt_config(&c.wechat_token, &c.wechat_cookie);
        logins.set_budgets(crate::logins::budget::Budgets::from_config(c));
        let shared = Shared {
            client,
            http,
            wechat: c.fetchers.iter().any(|f| f == "wechat"),
            logins: Arc::new(logins),
            pacers: Mutex::default(),
            mp_refused: Mutex::default(),
            mp_requests: bursts::MpRequests::default(),
            config,
            rss,
            held: Mutex::default(),
            done: Notify::new(),
            wake: Arc::new(Notify::new()),
            beat_now: Notify::new(),
            clock: crate::clock::Clock::system(),
            page_blocks: content::PageBlocks::default(),
        };
        Ok(Self {
            shared: Arc::new(shared),
            listener: None,
        })
    }

    /// The child's login store (QR flows add logins to it).
    pub fn logins(&self) -> Arc<LoginStore> {
        self.shared.logins.clone()
    }

    /// Serves the notify listener on `listener` instead of binding `port` (tests bind port 0
    /// first, so the callback URL is known).
    pub fn with_notify_listener(mut self, listener: tokio::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Uses `clock` for the logins' time (cooldowns, budgets) instead of the system clock:
    /// tests move budgets' windows by advancing it.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.clock = clock;
        }
        self
    }

    /// Sends one heartbeat: proves the parent is reachable and the credentials work.
    ///
    /// # Errors
    /// The parent's refusal or unreachability, with context.
    pub async fn check(&self) -> anyhow::Result<Value> {
        let url = &self.shared.config.cascade.parent_api_url;
        self.shared
            .heartbeat()
            .await
            .with_context(|| format!("while contacting the parent at {url}"))
    }

    /// Runs until `shutdown`: then stops claiming, finishes within `shutdown_grace`, releases
    /// the rest and returns.
    ///
    /// # Errors
    /// Only start-up failures (see [`Child::check`]).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.check().await?;
        let c = &self.shared.config;
        let listener = match self.listener {
            Some(l) => Some(l),
            None if !c.cascade.callback_url.is_empty() => {
                // WeRSS's child listens on 8002 when `port` keeps the parent's default.
                let port = if c.port == 8001 { 8002 } else { c.port };
                let addr = std::net::SocketAddr::new(c.bind, port);
                Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("while binding the notify listener on {addr}"))?,
                )
            }
            None => None,
        };
        let shared = self.shared;
        // Helpers live in a JoinSet: however `run` ends (even dropped mid-way), they stop with it.
        let mut helpers = JoinSet::new();
        if let Some(listener) = listener {
            let (key, secret) = (
                shared.config.cascade.api_key.trim().to_string(),
                shared.config.cascade.api_secret.expose().to_string(),
            );
            let (wake, token) = (shared.wake.clone(), shutdown.clone());
            helpers.spawn(async move {
                if let Err(e) = notify::serve(listener, key, secret, wake, token).await {
                    tracing::warn!(error = %e, "notify listener stopped");
                }
            });
        }
        helpers.spawn(heartbeat_loop(shared.clone(), shutdown.clone()));
        let keeper = crate::logins::keeper::Keeper::new(
            shared.logins.clone(),
            shared.http.clone(),
            &shared.config.cascade,
        );
        helpers.spawn(keeper.run(shutdown.clone()));
        let mut running = JoinSet::new();
        claim_loop(&shared, &mut running, &shutdown).await;
        let grace = Duration::from_secs(shared.config.cascade.shutdown_grace);
        let drained = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            running.abort_all();
        }
        let left: Vec<TaskPackage> = shared
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, p)| p)
            .collect();
        if let Err(e) = shared.client.release(&left).await {
            tracing::warn!(error = %untrusted_error(&e), "could not release held work; its leases will expire");
        }
        helpers.abort_all();
        if let Err(e) = shared.logins.flush() {
            tracing::warn!(error = %e, "could not save the login store");
        }
        tracing::info!(released = left.len(), "child stopped");
        Ok(())
    }
}

impl Shared {
    /// The child's time (the system clock unless a test injected one).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now().and_utc()
    }

    /// Whether a login that reads WeChat feeds (`mp`, or `weread` through WeRead) is usable
    /// now.
    fn wechat_usable(&self) -> bool {
        let now = self.now();
        self.wechat
            && [LoginKind::Mp, LoginKind::Weread]
                .into_iter()
                .any(|k| self.kind_serves(k) && self.logins.any_usable(k, now))
    }

    /// Whether logins of `kind` read through some source the parent has not found closed
    /// (`closed_sources` in its heartbeat answer; a stock parent closes none).
    fn kind_serves(&self, kind: LoginKind) -> bool {
        let closed = self.client.closed_sources();
        let sources: &[&str] = match kind {
            LoginKind::Mp => &["mp_list"],
            LoginKind::Weread => &["weread_list", "weread_cover"],
        };
        sources.iter().any(|s| !closed.iter().any(|c| c == s))
    }

    /// When a cooling WeChat-reading login may serve again, or one out of budget gets a call
    /// back, while none is usable.
    fn wechat_cooldown_end(&self) -> Option<tokio::time::Instant> {
        let now = self.now();
        let until = [LoginKind::Mp, LoginKind::Weread]
            .into_iter()
            .flat_map(|k| {
                [
                    self.logins.next_cooldown_end(k),
                    self.logins.next_budget_free(k, now),
                ]
            })
            .flatten()
            .min()?;
        let left = (until - self.now()).to_std().unwrap_or_default();
        Some(tokio::time::Instant::now() + left)
    }

    /// The node-level WeChat session state reported in heartbeats: `none` without any login
    /// that reads WeChat feeds (`mp` or `weread`), `valid` while one is not expired (a cooling
    /// one included), else `expired`.
    fn wechat_session(&self) -> &'static str {
        let now = self.now();
        let views = self.logins.views();
        let mut readers = views
            .iter()
            .filter(|l| matches!(l.kind, LoginKind::Mp | LoginKind::Weread))
            .peekable();
        if !self.wechat || readers.peek().is_none() {
            return "none";
        }
        let alive = readers.any(|l| {
            matches!(
                l.state,
                LoginState::Valid | LoginState::Expiring | LoginState::Cooling
            ) && l.expires_at.is_none_or(|t| t > now)
        });
        if alive { "valid" } else { "expired" }
    }

    /// The fetcher kinds to claim now, or `None` when this child should not claim at all.
    /// A parent that takes `kinds` is told them; any other parent (a stock WeRSS parent hands
    /// out WeChat work only and marks it completed whatever the results) is asked only while
    /// the WeChat login, if this child reports one, is usable.
    fn claimable_kinds(&self) -> Option<Vec<&'static str>> {
        let wechat_ok = self.wechat_usable();
        let mut kinds = Vec::new();
        if wechat_ok {
            kinds.push("wechat");
        }
        if self.rss.is_some() {
            kinds.push("rss");
        }
        let reports_wechat = self.config.cascade.fetchers.iter().any(|f| f == "wechat");
        let usable = if self.client.has("kinds") {
            !kinds.is_empty()
        } else {
            wechat_ok || (!reports_wechat && !kinds.is_empty())
        };
        usable.then_some(kinds)
    }

    fn in_use(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| p.feeds.len().max(1))
            .sum()
    }

    async fn heartbeat(&self) -> Result<Value, client::ClientError> {
        let c = &self.config.cascade;
        let held: Vec<String> = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let session = self.wechat_session();
        // `logins`: every login without its secrets (an additive field; a stock parent
        // ignores it).
        let mut body = json!({"capacity": c.capacity, "in_use": self.in_use(), "fetchers": c.fetchers, "wechat_session": session,
                              "held": held, "version": SERVER_VERSION, "features": FEATURES,
                              "logins": self.logins.views_at(self.now())});
        if !c.callback_url.is_empty() {
            body["callback_url"] = json!(c.callback_url);
        }
        self.client.heartbeat(&body).await
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut period = shared.config.cascade.heartbeat_interval.max(1);
    // QR logins run for the parent; dropped (and so stopped) with this loop.
    let mut flows = flows::Flows::default();
    // Account searches run for the parent; stopped with this loop.
    let mut searches = search::Searches::default();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(period)) => {}
            () = shared.beat_now.notified() => {}
        }
        // Logins another process saved (`cascade child login`) are served from now on.
        if let Err(e) = shared.logins.reload() {
            tracing::warn!(error = %e, "could not re-read the login store");
        }
        match shared.heartbeat().await {
            Ok(data) => {
                if let Some(advertised) = data["heartbeat_interval"].as_u64() {
                    period = shared
                        .config
                        .cascade
                        .heartbeat_interval
                        .min(advertised)
                        .max(1);
                }
                for lost in data["lost"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    shared
                        .held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(lost);
                }
                flows.take_commands(&shared, &data, &shutdown);
                searches.take_commands(&shared, &data, &shutdown);
                flows.auto_login(&shared, &shutdown).await;
            }
            Err(e) => tracing::warn!(error = %untrusted_error(&e), "heartbeat failed"),
        }
    }
}

/// Longest pause after a failed claim (the pause doubles from one second).
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(60);

async fn claim_loop(shared: &Arc<Shared>, running: &mut JoinSet<()>, shutdown: &CancellationToken) {
    let c = &shared.config.cascade;
    let capacity = usize::try_from(c.capacity.max(1)).unwrap_or(1);
    let mut backoff = Duration::from_secs(1);
    let mut idle_since_logged = false;
    while !shutdown.is_cancelled() {
        while running.try_join_next().is_some() {}
        let free = capacity.saturating_sub(shared.in_use());
        if free == 0 {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.done.notified() => continue,
            }
        }
        let Some(kinds) = shared.claimable_kinds() else {
            // No login or fetcher can take work now: ask for none, and look again when the
            // WeChat block ends or running work changes it.
            if !idle_since_logged {
                tracing::warn!(
                    wechat_session = shared.wechat_session(),
                    "no usable source; not claiming"
                );
                idle_since_logged = true;
            }
            if shared.client.has("kinds")
                && shared.client.has(COMMANDS)
                && shared.client.has("wait")
            {
                // A claim for no kind is held by the parent (`wait`) and answered early
                // when a command (a login request) waits: the way a node without any
                // usable login hears of one at once. At most one such claim a second.
                let held = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = shared.client.claim(1, c.claim_wait.max(1), &[]) => r,
                };
                let pause = match held {
                    Ok(claimed) => {
                        backoff = Duration::from_secs(1);
                        if claimed.commands_pending {
                            shared.beat_now.notify_one();
                        }
                        if !claimed.packages.is_empty() {
                            shared.client.release(&claimed.packages).await.ok();
                        }
                        Duration::from_secs(1)
                    }
                    Err(e) => {
                        tracing::warn!(error = %untrusted_error(&e), retry_in = ?backoff, "claim failed");
                        let pause = backoff;
                        backoff = (backoff * 2).min(MAX_CLAIM_BACKOFF);
                        pause
                    }
                };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            let until = shared
                .wechat_cooldown_end()
                .unwrap_or_else(|| tokio::time::Instant::now() + MAX_CLAIM_BACKOFF)
                .min(tokio::time::Instant::now() + MAX_CLAIM_BACKOFF);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.done.notified() => {}
                () = tokio::time::sleep_until(until) => {}
            }
            continue;
        };
        idle_since_logged = false;
        let pause = match shared
            .client
            .claim(free.min(10), c.claim_wait, &kinds)
            .await
        {
            Ok(claimed) => {
                backoff = Duration::from_secs(1);
                if claimed.commands_pending {
                    shared.beat_now.notify_one();
                }
                let empty = claimed.packages.is_empty();
                for package in claimed.packages {
                    shared
                        .held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(package.allocation_id.clone(), package.clone());
                    running.spawn(execute(shared.clone(), package));
                }
                match claimed.retry_after {
                    // The parent says this node may not claim now: ask again when it says.
                    Some(after) if empty => Some(after),
                    _ if empty && !shared.client.has("wait") => {
                        Some(Duration::from_secs(c.task_poll_interval.max(1)))
                    }
                    _ => None,
                }
            }
            Err(e) => {
                tracing::warn!(error = %untrusted_error(&e), retry_in = ?backoff, "claim failed");
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_CLAIM_BACKOFF);
                Some(pause)
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Crawls one allocation and reports it.
async fn execute(shared: Arc<Shared>, package: TaskPackage) {
    let id = package.allocation_id.clone();
    if let Err(e) = shared
        .client
        .task_status(&package, "executing", json!({}))
        .await
    {
        tracing::info!(allocation.id = %untrusted(&id), error = %untrusted_error(&e), "cannot start");
        if e.is_lost() {
            forget(&shared, &id);
            return;
        }
    }
    let mut articles: Vec<Article> = Vec::new();
    let mut results = Vec::new();
    // Full text: on unless this node or the task turns it off (issue 13 §5).
    let full_text = shared.config.cascade.full_text && package.full_text.unwrap_or(true);
    for feed in &package.feeds {
        let (source, refused, outcome) = fetch::fetch_through_chain(&shared, feed).await;
        let mut item = result_item(feed, source, &outcome);
        if !refused.is_empty() {
            item["refused"] = json!(refused);
        }
        results.push(item);
        if let Ok(found) = outcome {
            let mut found = found.articles;
            if full_text && matches!(source, "mp_list" | "weread_list" | "weread_cover") {
                content::fill_bodies(&shared, feed, source, &mut found).await;
            }
            articles.extend(found);
        }
    }
    if !articles.is_empty()
        && let Err(e) = shared.client.upload(&package, &articles).await
    {
        tracing::warn!(allocation.id = %untrusted(&id), error = %untrusted_error(&e), "upload failed");
    }
    // Keep the result until it is delivered, while the lease may still be alive.
    let mut delay = Duration::from_millis(500);
    for _ in 0..8 {
        match shared
            .client
            .complete(&package, results.clone(), articles.len())
            .await
        {
            Ok(_) => break,
            Err(e) if e.is_lost() => break,
            Err(e) => {
                tracing::warn!(allocation.id = %untrusted(&id), error = %untrusted_error(&e), "completion not delivered; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    forget(&shared, &id);
}

fn forget(shared: &Shared, id: &str) {
    shared
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    shared.done.notify_one();
}

/// A feed's result item; `source` (the fetcher used), `backlog_incomplete` (the WeRead page
/// cap came before the articles the parent has; `false` once a given backlog is read) and
/// `backlog` (where to go on) are additive fields.
fn result_item(feed: &PackageFeed, source: &str, outcome: &Result<Fetched, FetchError>) -> Value {
    match outcome {
        Ok(f) => {
            let mut item = json!({"feed_id": feed.id, "mp_id": feed.id, "mp_name": feed.mp_name, "success": true, "status": "success",
                         "article_count": f.articles.len(), "etag": f.etag, "last_modified": f.last_modified, "source": source});
            if f.backlog_incomplete {
                item["backlog_incomplete"] = json!(true);
                if let Some(next) = f.backlog_next {
                    item["backlog"] = json!(next);
                }
            } else if f.backlog_done {
                item["backlog_incomplete"] = json!(false);
            }
            item
        }
        Err(e) => {
            let mut item = json!({"feed_id": feed.id, "mp_id": feed.id, "mp_name": feed.mp_name, "success": false, "status": "failed",
                          "article_count": 0, "error": e.to_string(), "reason": e.reason(), "retry_after": e.retry_after(), "source": source});
            // Additive: the logins' budgets are spent, nothing is wrong upstream (issue 13 §7).
            if matches!(e, FetchError::OutOfBudget { .. }) {
                item["budget"] = json!(true);
            }
            item
        }
    }
}
