//! The admin API session of the operator commands: a running parent (`--url`, logging in with
//! `--user`/`--password` and reusing the token cached by an earlier command, see
//! `token_cache`), or the local database, served for the command's duration by an
//! in-process parent on a loopback port (so both paths run the same validation and state
//! machine).

use super::admin::Target;
use super::token_cache::TokenCache;
use crate::clock::Clock;
use crate::config::Config;
use crate::parent::{self, AppState};
use crate::store::{Store, redact_url};
use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a request carries.
pub(super) enum Payload {
    /// Nothing.
    Empty,
    /// A JSON body.
    Json(Value),
    /// An OPML document.
    Opml(String),
}

/// The login to a parent reached over HTTP, kept to log in again when its token goes stale.
struct Remote {
    user: String,
    password: Option<String>,
    cache: Option<TokenCache>,
    /// Whether the token in use came from the cache: a 401 then means it went stale.
    from_cache: AtomicBool,
}

impl Remote {
    /// Logs in at `base` and caches the new token; `why` says why a login is needed.
    async fn login(&self, http: &reqwest::Client, base: &str, why: &str) -> anyhow::Result<String> {
        let password = self
            .password
            .as_deref()
            .with_context(|| format!("--password (or CASCADE_PASSWORD) is needed: {why}"))?;
        let reply: Value = http
            .post(format!("{base}/api/v1/wx/auth/login"))
            .form(&[("username", self.user.as_str()), ("password", password)])
            .send()
            .await
            .with_context(|| format!("while reaching {base}"))?
            .json()
            .await
            .context("the parent's login answer is not JSON")?;
        let token = reply["data"]["access_token"]
            .as_str()
            .with_context(|| format!("login refused: {}", reply["message"]))?;
        if let Some(cache) = &self.cache
            && let Err(e) = cache.store(token)
        {
            tracing::warn!(error = %e, "could not cache the login token");
        }
        Ok(token.to_string())
    }
}

/// An admin API session.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Mutex<String>,
    /// The login, when talking to a parent over HTTP.
    remote: Option<Remote>,
    local: Option<CancellationToken>,
    /// The local database URL, when serving it in-process.
    local_db: Option<String>,
    /// The parent's address as children should use it.
    public: String,
    /// The `timezone` setting cron expressions are read in, when the configuration is ours.
    cron_zone: Option<String>,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(stop) = &self.local {
            stop.cancel();
        }
    }
}

impl Api {
    /// Connects to `--url` (with the cached token of this URL and user when there is one),
    /// or serves the local database in-process.
    ///
    /// # Errors
    /// Login refused, parent unreachable, database unusable.
    pub async fn connect(target: &Target, config: Config) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        if let Some(url) = &target.url {
            let base = url.trim_end_matches('/').to_string();
            let remote = Remote {
                user: target.user.clone(),
                password: target.password.clone(),
                cache: TokenCache::locate(&base, &target.user),
                from_cache: AtomicBool::new(false),
            };
            let token = match remote.cache.as_ref().and_then(TokenCache::load) {
                Some(token) => {
                    remote.from_cache.store(true, Ordering::Relaxed);
                    token
                }
                None => remote.login(&http, &base, "--url logs in").await?,
            };
            return Ok(Self {
                http,
                public: base.clone(),
                base,
                token: Mutex::new(token),
                remote: Some(remote),
                local: None,
                local_db: None,
                cron_zone: None,
            });
        }
        let db = config.db.clone();
        let public = format!("http://{}:{}", config.bind, config.port);
        let cron_zone = Some(config.cascade.timezone.clone());
        let store = match Store::connect(&db).await {
            Ok(store) => store,
            Err(e) => {
                let e = anyhow::Error::new(e);
                return Err(match busy_hint(&e, &db, &public) {
                    Some(hint) => anyhow::anyhow!(hint),
                    None => e.context(format!("while opening the database {}", redact_url(&db))),
                });
            }
        };
        let clock = Clock::system();
        match store.find_user(&target.user).await? {
            Some(u) if u.is_active => {}
            _ => bail!(
                "no active admin '{}' in {}: run `cascade init` first",
                target.user,
                redact_url(&db)
            ),
        }
        let stop = CancellationToken::new();
        // Nobody logs in to this in-process parent: its timing-equaliser hash may be cheap.
        let config = Config {
            bcrypt_cost: 4,
            ..config
        };
        let state = match AppState::new(config, store, clock.clone(), stop.clone()).await {
            Ok(state) => state,
            Err(e) => {
                return Err(match busy_hint(&e, &db, &public) {
                    Some(hint) => anyhow::anyhow!(hint),
                    None => e,
                });
            }
        };
        let token = state
            .jwt
            .issue(&target.user, clock.now())
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(parent::serve_routes(listener, state));
        Ok(Self {
            http,
            base,
            token: Mutex::new(token),
            remote: None,
            local: Some(stop),
            local_db: Some(db),
            public,
            cron_zone,
        })
    }

    /// Whether this session serves the local database in-process.
    pub(super) fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The parent's address as children should use it.
    pub(super) fn public(&self) -> &str {
        &self.public
    }

    /// The configured `timezone` of cron expressions (empty: the parent's local zone), when
    /// the parent's configuration is known here (not over `--url`).
    pub(super) fn cron_zone(&self) -> Option<&str> {
        self.cron_zone.as_deref()
    }

    /// Sends a request to `path` under the cascade prefix. Over `--url`, a 401 to a cached
    /// token logs in again (replacing the cached token) and sends the request once more.
    ///
    /// # Errors
    /// The parent is unreachable, or the new login is refused.
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        payload: &Payload,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}/api/v1/wx/cascade{path}", self.base);
        let resp = self.request(method.clone(), &url, payload).send().await?;
        let Some(remote) = &self.remote else {
            return Ok(resp);
        };
        if resp.status() != StatusCode::UNAUTHORIZED
            || !remote.from_cache.swap(false, Ordering::Relaxed)
        {
            return Ok(resp);
        }
        if let Some(cache) = &remote.cache {
            cache.remove();
        }
        let why = format!(
            "the cached login of '{}' at {} expired",
            remote.user, self.base
        );
        let token = remote.login(&self.http, &self.base, &why).await?;
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
        Ok(self.request(method, &url, payload).send().await?)
    }

    fn request(&self, method: Method, url: &str, payload: &Payload) -> reqwest::RequestBuilder {
        let token = self
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let req = self.http.request(method, url).bearer_auth(token);
        match payload {
            Payload::Empty => req,
            Payload::Json(body) => req.json(body),
            Payload::Opml(xml) => req.header("content-type", "text/x-opml").body(xml.clone()),
        }
    }

    /// Sends an admin request and returns `data`, or the envelope's message as the error.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let payload = body.map_or(Payload::Empty, Payload::Json);
        let resp = self.send(method, path, &payload).await?;
        if let Some(db) = &self.local_db
            && resp.status() == StatusCode::SERVICE_UNAVAILABLE
        {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if body["data"]["reason"] == crate::store::Unavailable::Busy.as_str() {
                bail!(busy_message(db, &self.public));
            }
            bail!(
                "503: {}",
                body["message"].as_str().unwrap_or("service unavailable")
            );
        }
        envelope(resp).await
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// The advice for a local database another process keeps busy (`public`: the parent's
/// address from the configuration).
fn busy_message(db: &str, public: &str) -> String {
    format!(
        "the database {} stayed busy: another process (a running parent?) is writing to it. \
         Run the command through that parent instead: --url {public} (with --user and \
         --password or CASCADE_PASSWORD)",
        redact_url(db)
    )
}

/// [`busy_message`] when `e` comes from a busy database.
pub(super) fn busy_hint(e: &anyhow::Error, db: &str, public: &str) -> Option<String> {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<crate::store::Error>())
        .any(|e| e.unavailable() == Some(crate::store::Unavailable::Busy))
        .then(|| busy_message(db, public))
}

/// The `data` of a WeRSS envelope, or its status and message as the error.
///
/// # Errors
/// A non-2xx status or a non-zero `code`.
pub(super) async fn envelope(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() && body["code"] == 0 {
        return Ok(body["data"].clone());
    }
    let field = body["data"]["field"]
        .as_str()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    bail!(
        "{}: {}{field}",
        status.as_u16(),
        body["message"].as_str().unwrap_or("request failed")
    )
}
