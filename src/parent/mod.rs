//! The parent node: the axum server with admin and node APIs, its state and start-up.
//! Handlers are thin (parse, authorize, one call into `ops` or the store, envelope).

pub mod alerts;
mod audit;
pub mod auth;
pub mod callback;
pub mod client_addr;
pub mod error;
pub mod extract;
pub mod lockout;
pub mod metrics;
pub mod notifier;
pub mod ops;
pub mod outputs;
pub mod reaper;
pub mod reminders;
mod routes;
pub mod sampler;
pub mod scheduler;
pub mod server;
pub mod views;
pub mod webhooks;

use crate::clock::Clock;
use crate::config::{Config, WERSS_DEFAULT_SECRETS};
use crate::protocol::credentials::random_token;
use crate::store::{self, Store};
use anyhow::Context;
use auth::{Jwt, Lockout};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Store,
    /// Loaded configuration.
    pub config: Arc<Config>,
    /// Injected time.
    pub clock: Clock,
    /// Admin token signing.
    pub jwt: Jwt,
    /// Login lockout, per process.
    pub lockout: Arc<Lockout>,
    /// Outbound client (webhooks): no redirects, short timeout.
    pub http: reqwest::Client,
    /// Calls to node callbacks (notify, test-connection) under `cascade.callback_allow`.
    pub callbacks: callback::Callbacks,
    /// `cascade.trusted_proxies`: whose forwarded headers are believed.
    pub trusted_proxies: Arc<client_addr::TrustedProxies>,
    /// `cascade.public_url` without a trailing `/`, when set: the base of feed self-links.
    pub public_url: Option<Arc<str>>,
    /// Cancelled when the parent shuts down.
    pub shutdown: CancellationToken,
    /// A bcrypt hash of a random value, checked for unknown users (equal timing).
    pub dummy_hash: Arc<str>,
    /// Wakes long-polls.
    pub notifier: Arc<notifier::Notifier>,
    /// Event metrics for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Wakes the webhook sender when an upload queued webhooks.
    pub webhook_wake: Arc<tokio::sync::Notify>,
    /// Alerts being sent ([`alerts::raise`]); waited for at shutdown.
    pub alert_tasks: tokio_util::task::TaskTracker,
    /// Whether cron firings dispatch (start/stop-scheduler).
    /// KiB of upload bodies being read or stored at once (see [`extract::upload_budget`]).
    pub upload_budget: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Builds the state; takes the JWT secret from config or the one kept in the database
    /// (generated on first start).
    ///
    /// # Errors
    /// Database failures or an HTTP client that cannot be built.
    pub async fn new(
        config: Config,
        store: Store,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let secret = match &config.secret {
            Some(s) => {
                if WERSS_DEFAULT_SECRETS.contains(&s.expose()) {
                    tracing::warn!(
                        "the configured secret is a published WeRSS default; set your own"
                    );
                }
                s.expose().to_string()
            }
            None => store
                .setting_or_insert(
                    "jwt_secret",
                    &format!("{}{}", random_token(), random_token()),
                )
                .await
                .context("while loading the JWT secret")?,
        };
        crate::dispatch::freshness::DispatchMode::parse(&config.cascade.dispatch_mode)
            .map_err(anyhow::Error::msg)?;
        crate::dispatch::capacity::is_auto(&config.cascade.node_capacity)
            .map_err(anyhow::Error::msg)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.cascade.notify_timeout.max(1)))
            .build()
            .context("while building the HTTP client")?;
        let callbacks = callback::Callbacks::from_config(&config)?;
        let trusted_proxies =
            client_addr::TrustedProxies::from_config(&config.cascade.trusted_proxies)?;
        let public_url = public_url(&config.cascade.public_url)?;
        let dummy_hash = ops::hash_password(random_token(), config.bcrypt_cost).await?;
        Ok(Self {
            dummy_hash: dummy_hash.into(),
            notifier: Arc::new(notifier::Notifier::new(store.clone())),
            metrics: Arc::default(),
            webhook_wake: Arc::default(),
            alert_tasks: tokio_util::task::TaskTracker::new(),
            upload_budget: extract::upload_budget(config.cascade.max_upload_bytes),
            jwt: Jwt::new(&secret, config.token_expire_minutes),
            store,
            config: Arc::new(config),
            clock,
            lockout: Arc::new(Lockout::default()),
            http,
            callbacks,
            trusted_proxies: Arc::new(trusted_proxies),
            public_url,
            shutdown,
        })
    }
}

/// `cascade.public_url` checked (an absolute http(s) URL, no query) and without a trailing `/`.
fn public_url(raw: &str) -> anyhow::Result<Option<Arc<str>>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let url = reqwest::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .filter(|u| u.query().is_none() && u.fragment().is_none() && u.username().is_empty())
        .with_context(|| {
            format!("config key 'cascade.public_url': '{raw}' is not an absolute http(s) URL")
        })?;
    Ok(Some(url.as_str().trim_end_matches('/').into()))
}

/// Serves only the HTTP routes (no webhook sender, no listener for other parents), for a
/// short-lived in-process parent such as the operator commands' own.
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve_routes(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let limits = server::Limits::from_config(&state.config.cascade);
    let shutdown = state.shutdown.clone();
    let alert_tasks = state.alert_tasks.clone();
    let served = server::serve(listener, routes::router(state), limits, shutdown.clone()).await;
    shutdown.cancel();
    alert_tasks.close();
    alert_tasks.wait().await;
    served
}

/// Serves HTTP on `listener` until `shutdown` is cancelled, then drains in-flight requests
/// (connection limits and timeouts: [`server`]).
///
/// # Errors
/// I/O errors of the listener.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let peers = tokio::spawn(notifier::listen_to_peers(state.clone()));
    let webhooks = tokio::spawn(webhooks::Sender::new(state.clone()).run(shutdown.clone()));
    let reminders = tokio::spawn(reminders::run(state.clone(), shutdown.clone()));
    let alert_tasks = state.alert_tasks.clone();
    let limits = server::Limits::from_config(&state.config.cascade);
    let served = server::serve(listener, routes::router(state), limits, shutdown.clone()).await;
    shutdown.cancel();
    let _ = peers.await;
    let _ = webhooks.await;
    let _ = reminders.await;
    alert_tasks.close();
    alert_tasks.wait().await;
    served
}

/// Runs a parent from configuration: opens the store, makes sure an admin exists, binds and
/// serves until `shutdown`.
///
/// # Errors
/// Start-up failures (database, bind), with context.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = Store::connect(&config.db).await.with_context(|| {
        format!(
            "while opening the database {}",
            store::redact_url(&config.db)
        )
    })?;
    ops::ensure_admin(&store, &config, &Clock::system()).await?;
    let addr_ip = config.bind;
    let port = config.port;
    let state = AppState::new(config, store, Clock::system(), shutdown).await?;
    let addr = std::net::SocketAddr::new(addr_ip, port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("while binding {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "parent listening");
    let loops = tokio_util::task::TaskTracker::new();
    loops.spawn(reaper::Reaper::new(state.clone()).run(state.shutdown.clone()));
    loops.spawn(scheduler::Scheduler::new(state.clone()).run(state.shutdown.clone()));
    loops.spawn(sampler::Sampler::new(state.clone()).run(state.shutdown.clone()));
    loops.close();
    let served = serve(listener, state.clone()).await;
    state.shutdown.cancel();
    loops.wait().await;
    served.context("while serving HTTP")?;
    tracing::info!("parent stopped");
    Ok(())
}
