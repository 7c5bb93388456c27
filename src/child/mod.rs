//! The child node (DESIGN §7): heartbeats, claims (long-poll and batches when the parent
//! advertises them), runs up to `capacity` feeds at once with the fetcher of their kind,
//! uploads, reports per-feed results, and on shutdown finishes or gives back what it holds.
//! Talks to the parent only through [`client::ParentClient`].

pub mod client;
mod flows;
pub mod notify;

use crate::config::Config;
use crate::fetch::pacer::Pacer;
use crate::fetch::rss::RssFetcher;
use crate::fetch::wechat::WechatFetcher;
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
    rss: Option<RssFetcher>,
    held: Mutex<HashMap<String, TaskPackage>>,
    done: Notify,
    wake: Arc<Notify>,
    /// Sends the next heartbeat now (a QR login just saved a login).
    beat_now: Notify,
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
        let shared = Shared {
            client,
            http,
            wechat: c.fetchers.iter().any(|f| f == "wechat"),
            logins: Arc::new(logins),
            pacers: Mutex::default(),
            config,
            rss,
            held: Mutex::default(),
            done: Notify::new(),
            wake: Arc::new(Notify::new()),
            beat_now: Notify::new(),
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
    /// Whether a login that reads WeChat feeds (`mp`, or `weread` through WeRead) is usable
    /// now.
    fn wechat_usable(&self) -> bool {
        let now = chrono::Utc::now();
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

    /// When a cooling WeChat-reading login may serve again, while none is usable.
    fn wechat_cooldown_end(&self) -> Option<tokio::time::Instant> {
        let until = [LoginKind::Mp, LoginKind::Weread]
            .into_iter()
            .filter_map(|k| self.logins.next_cooldown_end(k))
            .min()?;
        let left = (until - chrono::Utc::now()).to_std().unwrap_or_default();
        Some(tokio::time::Instant::now() + left)
    }

    /// The node-level WeChat session state reported in heartbeats: `none` without any login
    /// that reads WeChat feeds (`mp` or `weread`), `valid` while one is not expired (a cooling
    /// one included), else `expired`.
    fn wechat_session(&self) -> &'static str {
        let now = chrono::Utc::now();
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
                              "logins": self.logins.views()});
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
                let pause = match shared.client.claim(1, c.claim_wait.max(1), &[]).await {
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
    for feed in &package.feeds {
        let (source, refused, outcome) = fetch_through_chain(&shared, feed).await;
        let mut item = result_item(feed, source, &outcome);
        if !refused.is_empty() {
            item["refused"] = json!(refused);
        }
        results.push(item);
        if let Ok(found) = outcome {
            articles.extend(found.articles);
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
/// usable (today's behaviour), else `weread_list` when a `weread` login is usable, else
/// `mp_list` (which reports why no login serves). `None` for a source this child lacks.
fn choose_source(shared: &Shared, feed: &PackageFeed) -> Result<Option<WechatSource>, String> {
    let now = chrono::Utc::now();
    let source = feed.source.as_deref().unwrap_or("wechat");
    let chosen = match source {
        "rss" if shared.rss.is_some() => return Ok(None),
        "mp_list" => WechatSource::MpList,
        "weread_list" => WechatSource::WereadList,
        "weread_cover" => WechatSource::WereadCover,
        "wechat" => {
            if !shared.logins.any_usable(LoginKind::Mp, now)
                && shared.logins.any_usable(LoginKind::Weread, now)
            {
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
async fn fetch_through_chain(
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
    let now = chrono::Utc::now();
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
            outcome => return (source.name(), refused, outcome),
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
            Some(rss) => ("rss", rss.fetch(feed, chrono::Utc::now().timestamp()).await),
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
        let now = chrono::Utc::now();
        let Some(login) = shared.logins.pick(LoginKind::Mp, now) else {
            break;
        };
        if tried.contains(&login.id) {
            break;
        }
        tried.push(login.id.clone());
        let fetcher = WechatFetcher::new(
            shared.http.clone(),
            &shared.config.cascade.wechat_base_url,
            login.secrets.token.clone().unwrap_or_default(),
            login.secrets.cookie_header(),
            shared.pacer(&login.id),
        );
        let outcome = fetcher.fetch(feed).await;
        let now = chrono::Utc::now();
        // Another process may have replaced this login meanwhile (a new scan): the outcome
        // concerns the secrets used, so it is recorded only while they are still the login's.
        let same = shared
            .logins
            .get(&login.id)
            .is_some_and(|l| l.secrets == login.secrets);
        match &outcome {
            _ if !same => {}
            Ok(_) => shared.logins.mark_ok(&login.id, now),
            Err(e @ FetchError::SessionExpired(_)) => {
                tracing::warn!(login.id = %login.id, error = %e, "WeChat login expired");
                shared.logins.mark_expired(&login.id, &e.to_string());
            }
            Err(e @ FetchError::RateLimited { retry_after }) => {
                let base = shared.config.cascade.cooldown_base;
                let secs = retry_after
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(base)
                    .max(1);
                let until =
                    now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000));
                tracing::warn!(login.id = %login.id, cooldown_s = secs, "WeChat login rate limited; cooling");
                shared.logins.mark_cooling(&login.id, until, &e.to_string());
            }
            Err(e) => shared.logins.mark_error(&login.id, &e.to_string()),
        }
        let rest = shared.config.cascade.mp_closure_rest;
        let rested = rest > 0
            && login
                .last_used_at
                .is_none_or(|t| (now - t).num_seconds() >= i64::try_from(rest).unwrap_or(i64::MAX));
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
            Err(e @ (FetchError::SessionExpired(_) | FetchError::RateLimited { .. })) => {
                last = Some(e);
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| {
        if shared.logins.next_cooldown_end(LoginKind::Mp).is_some() {
            let left = shared
                .wechat_cooldown_end()
                .map(|t| {
                    t.saturating_duration_since(tokio::time::Instant::now())
                        .as_secs()
                })
                .unwrap_or(0);
            FetchError::RateLimited {
                retry_after: Some(i64::try_from(left).unwrap_or(0)),
            }
        } else {
            FetchError::SessionExpired("no usable WeChat login".into())
        }
    }))
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
        let now = chrono::Utc::now();
        let Some(login) = shared.logins.pick(LoginKind::Weread, now) else {
            break;
        };
        if tried.contains(&login.id) {
            break;
        }
        tried.push(login.id.clone());
        let (used, outcome) = weread_once(shared, &login, feed, cover).await;
        let now = chrono::Utc::now();
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
            Err(e @ FetchError::Closed(_)) => {
                tracing::warn!(login.id = %login.id, feed.id = %feed.id, error = %e, "WeRead refuses the list");
                shared.logins.mark_error(&login.id, &e.to_string());
            }
            Err(e) => shared.logins.mark_error(&login.id, &e.to_string()),
        }
        match outcome {
            Err(
                e @ (FetchError::SessionExpired(_)
                | FetchError::SkeyExpired(_)
                | FetchError::RateLimited { .. }),
            ) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(
        || match shared.logins.next_cooldown_end(LoginKind::Weread) {
            Some(until) => FetchError::RateLimited {
                retry_after: Some((until - chrono::Utc::now()).num_seconds().max(0)),
            },
            None => FetchError::SessionExpired("no usable WeRead login".into()),
        },
    ))
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
    let run = |jar: WereadJar| {
        let f = WereadFetcher::new(shared.http.clone(), opts.clone(), jar, pacer.clone());
        async move {
            if cover {
                f.cover(feed, chrono::Utc::now().timestamp()).await
            } else {
                f.list(feed).await
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
                        .replace_secrets(&login.id, secrets.clone(), chrono::Utc::now())
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

impl Shared {
    /// The pacer of one `weread` login (`weread_page_gap_ms` apart), made on first use.
    fn weread_pacer(&self, login_id: &str) -> Arc<Pacer> {
        let gap = Duration::from_millis(self.config.cascade.weread_page_gap_ms);
        self.pacers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("weread:{login_id}"))
            .or_insert_with(|| Arc::new(Pacer::new(gap, Duration::ZERO)))
            .clone()
    }

    /// The pacer of one login, made on first use.
    fn pacer(&self, login_id: &str) -> Arc<Pacer> {
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

/// A feed's result item; `source` (the fetcher used) and `backlog_incomplete` (the WeRead page
/// cap came before the articles the parent has) are additive fields.
fn result_item(feed: &PackageFeed, source: &str, outcome: &Result<Fetched, FetchError>) -> Value {
    match outcome {
        Ok(f) => {
            let mut item = json!({"feed_id": feed.id, "mp_id": feed.id, "mp_name": feed.mp_name, "success": true, "status": "success",
                         "article_count": f.articles.len(), "etag": f.etag, "last_modified": f.last_modified, "source": source});
            if f.backlog_incomplete {
                item["backlog_incomplete"] = json!(true);
            }
            item
        }
        Err(e) => {
            json!({"feed_id": feed.id, "mp_id": feed.id, "mp_name": feed.mp_name, "success": false, "status": "failed",
                          "article_count": 0, "error": e.to_string(), "reason": e.reason(), "retry_after": e.retry_after(), "source": source})
        }
    }
}
