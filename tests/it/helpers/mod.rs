//! Test harness: `TestParent::spawn()` starts a real parent and gives typed access to it.

pub mod alloc;
pub mod browser;
pub mod db;
pub mod process;
pub mod skips;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::LazyLock;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use werss_cascade::clock::Clock;
use werss_cascade::config::Config;
use werss_cascade::parent::{self, AppState};
use werss_cascade::store::Store;

pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "correct horse";

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("CASCADE_TEST_LOG").is_some() {
        werss_cascade::telemetry::init();
    }
});

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    AkSk(String, String),
    Raw(String),
}

/// A response: status, parsed body (or `Value::Null`), headers.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// Asserts success by the WeRSS rule (2xx and code 0) and returns `data`.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(
            self.status.is_success() && self.body["code"] == 0,
            "expected success, got {} {}",
            self.status,
            self.text
        );
        self.data()
    }

    /// Asserts an error envelope with `status` and returns `data.error`.
    #[track_caller]
    pub fn err(&self, status: u16) -> &str {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert!(
            self.body["code"].as_i64().is_some_and(|c| c != 0),
            "code must be non-zero: {}",
            self.text
        );
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "message: {}",
            self.text
        );
        self.body["data"]["error"].as_str().unwrap_or_default()
    }
}

/// A child node registered on a parent, with its credentials.
#[derive(Clone, Debug)]
pub struct TestNode {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl TestNode {
    pub fn auth(&self) -> Auth {
        Auth::AkSk(self.key.clone(), self.secret.clone())
    }
}

pub struct TestParent {
    pub addr: SocketAddr,
    pub store: Store,
    pub clock: Clock,
    pub client: reqwest::Client,
    pub token: String,
    pub dir: TempDir,
    pub state: AppState,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    /// Last, so the database outlives the server (a PostgreSQL one is dropped here).
    _db: Option<db::TestDb>,
}

pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config {
        db: format!("sqlite:///{}", dir.path().join("cascade.db").display()),
        port: 0,
        bcrypt_cost: 4,
        ..Config::default()
    };
    config.cascade.notify_timeout = 2;
    // Article pages: never the real WeChat (a closed local port unless a test points it at a
    // fake), and no pacing between them.
    config.cascade.mp_page_base_url = "http://127.0.0.1:1".into();
    config.cascade.content_gap_ms = 0;
    // A child's own files (its login store) stay in the test's directory.
    config.cascade.data_dir = dir.path().join("child-data").display().to_string();
    config
}

impl TestParent {
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_with(test_config(&dir), dir).await
    }

    /// A parent on a fresh database of `backend`.
    pub async fn on(backend: db::Backend) -> Self {
        Self::on_with(backend, |_| {}).await
    }

    /// A parent on a fresh database of `backend`, its test config changed by `change`.
    pub async fn on_with(backend: db::Backend, change: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = db::TestDb::create(&backend, &dir).await;
        let mut config = test_config(&dir);
        config.db = database.url.clone();
        change(&mut config);
        let mut parent = Self::spawn_with(config, dir).await;
        parent._db = Some(database);
        parent
    }

    pub async fn spawn_with(config: Config, dir: TempDir) -> Self {
        Self::spawn_on_clock(config, dir, Clock::manual(Utc::now().naive_utc())).await
    }

    /// Another parent on the database of `first`, sharing its clock (several parents behind
    /// one load balancer).
    pub async fn join(first: &Self) -> Self {
        Self::join_with(first, |_| {}).await
    }

    /// [`TestParent::join`] with its test config changed by `change`.
    pub async fn join_with(first: &Self, change: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(&dir);
        config.db = first.state.config.db.clone();
        change(&mut config);
        Self::spawn_on_clock(config, dir, first.clock.clone()).await
    }

    pub async fn spawn_on_clock(config: Config, dir: TempDir, clock: Clock) -> Self {
        LazyLock::force(&TRACING);
        let store = Store::connect(&config.db).await.expect("store opens");
        if store.find_user(ADMIN).await.expect("users read").is_none() {
            parent::ops::create_admin(&store, ADMIN, PASSWORD, 4, &clock)
                .await
                .expect("admin created");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let state = AppState::new(config, store.clone(), clock.clone(), shutdown.clone())
            .await
            .expect("state");
        let handle = tokio::spawn(parent::serve(listener, state.clone()));
        let client = http_client();
        let mut parent = Self {
            addr,
            store,
            clock,
            client,
            token: String::new(),
            dir,
            state,
            shutdown,
            handle: Some(handle),
            _db: None,
        };
        parent.token = parent.login(ADMIN, PASSWORD).await.ok()["access_token"]
            .as_str()
            .expect("token")
            .to_string();
        parent
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin(&self) -> Auth {
        Auth::Bearer(self.token.clone())
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        req = match auth {
            Auth::None => req,
            Auth::Bearer(t) => req.header("Authorization", format!("Bearer {t}")),
            Auth::AkSk(k, s) => req.header("Authorization", format!("AK-SK {k}:{s}")),
            Auth::Raw(v) => req.header("Authorization", v),
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await.expect("request sent")).await
    }

    pub async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            text,
            headers,
        }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Reply {
        self.send(Method::GET, path, auth, None).await
    }

    pub async fn post(&self, path: &str, auth: &Auth, body: Value) -> Reply {
        self.send(Method::POST, path, auth, Some(body)).await
    }

    pub async fn put(&self, path: &str, auth: &Auth, body: Value) -> Reply {
        self.send(Method::PUT, path, auth, Some(body)).await
    }

    pub async fn delete(&self, path: &str, auth: &Auth) -> Reply {
        self.send(Method::DELETE, path, auth, None).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        let resp = self
            .client
            .post(self.url("/api/v1/wx/auth/login"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .expect("login sent");
        Self::reply(resp).await
    }

    /// Creates a child node with credentials.
    pub async fn add_node(&self, name: &str) -> TestNode {
        let created = self
            .post(
                &cascade("/nodes"),
                &self.admin(),
                json!({"node_type": 1, "name": name}),
            )
            .await;
        let id = created.ok()["node_id"]
            .as_str()
            .expect("node id")
            .to_string();
        let cred = self
            .post(
                &cascade(&format!("/nodes/{id}/credentials")),
                &self.admin(),
                json!({}),
            )
            .await;
        let d = cred.ok();
        TestNode {
            id,
            key: d["api_key"].as_str().expect("key").into(),
            secret: d["api_secret"].as_str().expect("secret").into(),
        }
    }

    /// Stops the server and asserts it exited cleanly.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    /// Stops the server like [`TestParent::shutdown`] but keeps the database (a restart:
    /// [`TestParent::join`] it).
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("server task joined")
                .expect("server exited cleanly");
        }
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A path under WeRSS's real cascade prefix.
pub fn cascade(path: &str) -> String {
    format!("/api/v1/wx/cascade{path}")
}

/// A path under the documented prefix.
pub fn cascade_doc(path: &str) -> String {
    format!("/api/v1/cascade{path}")
}

/// An HTTP client for tests (installs the TLS provider reqwest needs first).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("client")
}
