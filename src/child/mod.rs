//! The child node (DESIGN §7): heartbeats, claims (long-poll and batches when the parent
//! advertises them), runs up to `capacity` feeds at once with the fetcher of their kind,
//! uploads, reports per-feed results, and on shutdown finishes or gives back what it holds.
//! Talks to the parent only through [`client::ParentClient`].

pub mod client;
pub mod notify;

use crate::config::Config;
use crate::fetch::pacer::Pacer;
use crate::fetch::rss::RssFetcher;
use crate::fetch::wechat::WechatFetcher;
use crate::fetch::{Article, FetchError, Fetched};
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

/// Extensions this child understands (sent in heartbeats).
const FEATURES: &[&str] = &["wait", "limit", "lease_token", "release", "reason", "held"];

/// Why WeChat work is paused on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WechatBlock {
    RateLimited(tokio::time::Instant),
    SessionExpired,
}

struct Shared {
    client: ParentClient,
    config: Config,
    wechat: Option<WechatFetcher>,
    rss: Option<RssFetcher>,
    held: Mutex<HashMap<String, TaskPackage>>,
    block: Mutex<Option<WechatBlock>>,
    done: Notify,
    wake: Arc<Notify>,
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
    /// Missing AK/SK, or an HTTP client that cannot be built.
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
        let wechat =
            (c.fetchers.iter().any(|f| f == "wechat") && !c.wechat_token.is_empty()).then(|| {
                let pacer = Arc::new(Pacer::new(
                    Duration::from_millis(c.wechat_gap_ms),
                    Duration::from_millis(c.wechat_gap_jitter_ms),
                ));
                WechatFetcher::new(
                    http,
                    &c.wechat_base_url,
                    c.wechat_token.clone(),
                    c.wechat_cookie.clone(),
                    pacer,
                )
            });
        let shared = Shared {
            client,
            config,
            wechat,
            rss,
            held: Mutex::default(),
            block: Mutex::default(),
            done: Notify::new(),
            wake: Arc::new(Notify::new()),
        };
        Ok(Self {
            shared: Arc::new(shared),
            listener: None,
        })
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
        tracing::info!(released = left.len(), "child stopped");
        Ok(())
    }
}

impl Shared {
    /// The WeChat login's block now (an ended cooldown is cleared).
    fn wechat_block(&self) -> Option<WechatBlock> {
        let mut block = self.block.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*block, Some(WechatBlock::RateLimited(until)) if until <= tokio::time::Instant::now())
        {
            *block = None;
        }
        *block
    }

    /// The fetcher kinds to claim now, or `None` when this child should not claim at all.
    /// A parent that takes `kinds` is told them; any other parent (a stock WeRSS parent hands
    /// out WeChat work only and marks it completed whatever the results) is asked only while
    /// the WeChat login, if this child reports one, is usable.
    fn claimable_kinds(&self) -> Option<Vec<&'static str>> {
        let wechat_ok = self.wechat.is_some() && self.wechat_block().is_none();
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
        let session = match (
            *self.block.lock().unwrap_or_else(|p| p.into_inner()),
            &self.wechat,
        ) {
            (_, None) => "none",
            (Some(WechatBlock::SessionExpired), _) => "expired",
            _ => "valid",
        };
        let mut body = json!({"capacity": c.capacity, "in_use": self.in_use(), "fetchers": c.fetchers, "wechat_session": session,
                              "held": held, "version": SERVER_VERSION, "features": FEATURES});
        if !c.callback_url.is_empty() {
            body["callback_url"] = json!(c.callback_url);
        }
        self.client.heartbeat(&body).await
    }
}

async fn heartbeat_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut period = shared.config.cascade.heartbeat_interval.max(1);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(period)) => {}
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
                tracing::warn!(block = ?shared.wechat_block(), "no usable source; not claiming");
                idle_since_logged = true;
            }
            let until = match shared.wechat_block() {
                Some(WechatBlock::RateLimited(until)) => until,
                _ => tokio::time::Instant::now() + MAX_CLAIM_BACKOFF,
            };
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
        let outcome = fetch_feed(&shared, feed).await;
        results.push(result_item(feed, &outcome));
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

async fn fetch_feed(shared: &Shared, feed: &PackageFeed) -> Result<Fetched, FetchError> {
    match (feed.source.as_deref().unwrap_or("wechat"), &shared.rss) {
        ("wechat", _) => {}
        ("rss", Some(rss)) => return rss.fetch(feed, chrono::Utc::now().timestamp()).await,
        (other, _) => {
            return Err(FetchError::Network(format!(
                "this node has no fetcher for {other}"
            )));
        }
    }
    let Some(fetcher) = &shared.wechat else {
        return Err(FetchError::SessionExpired(
            "no WeChat session configured".into(),
        ));
    };
    let blocked = *shared.block.lock().unwrap_or_else(|p| p.into_inner());
    match blocked {
        Some(WechatBlock::SessionExpired) => {
            return Err(FetchError::SessionExpired("session expired earlier".into()));
        }
        Some(WechatBlock::RateLimited(until)) if tokio::time::Instant::now() < until => {
            let left = until
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs();
            return Err(FetchError::RateLimited {
                retry_after: Some(i64::try_from(left).unwrap_or(0)),
            });
        }
        _ => {}
    }
    let outcome = fetcher.fetch(feed).await;
    let mut block = shared.block.lock().unwrap_or_else(|p| p.into_inner());
    match &outcome {
        Err(FetchError::SessionExpired(_)) => *block = Some(WechatBlock::SessionExpired),
        Err(FetchError::RateLimited { .. }) => {
            let cooldown = Duration::from_secs(shared.config.cascade.cooldown_base);
            *block = Some(WechatBlock::RateLimited(
                tokio::time::Instant::now() + cooldown,
            ));
        }
        Ok(_) => *block = None,
        Err(_) => {}
    }
    outcome
}

fn result_item(feed: &PackageFeed, outcome: &Result<Fetched, FetchError>) -> Value {
    match outcome {
        Ok(f) => {
            json!({"feed_id": feed.id, "mp_id": feed.id, "mp_name": feed.mp_name, "success": true, "status": "success",
                         "article_count": f.articles.len(), "etag": f.etag, "last_modified": f.last_modified})
        }
        Err(e) => {
            json!({"feed_id": feed.id, "mp_id": feed.id, "mp_name": feed.mp_name, "success": false, "status": "failed",
                          "article_count": 0, "error": e.to_string(), "reason": e.reason(), "retry_after": e.retry_after()})
        }
    }
}
