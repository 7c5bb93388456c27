//! Configuration: WeRSS's `config.yaml` layout, `${VAR}` / `${VAR:-default}` interpolation and
//! WeRSS's value coercion, then `CASCADE_<KEY>` env overrides and CLI flags, applied in one
//! place ([`load`]). The loader only reads; it never writes files.

use crate::protocol::credentials::Secret;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::net::IpAddr;
use std::path::Path;

/// Configuration errors, each naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A key has a value of the wrong kind.
    #[error("config key '{key}': {message}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// What was wrong.
        message: String,
    },
}

/// The WeRSS keys under `cascade:` plus ours; each is overridable as env `CASCADE_<KEY>`.
const CASCADE_KEYS: &[&str] = &[
    "enabled",
    "node_type",
    "parent_api_url",
    "api_key",
    "api_secret",
    "sync_interval",
    "heartbeat_interval",
    "task_poll_interval",
    "callback_url",
    "claim_interval",
    "lease_seconds",
    "max_run_seconds",
    "offline_after",
    "max_attempts",
    "retry_base",
    "retry_max",
    "cooldown_base",
    "cooldown_max",
    "default_max_capacity",
    "feeds_per_allocation",
    "steal_after",
    "max_wait",
    "max_claim_batch",
    "reap_interval",
    "notify_timeout",
    "webhook_timeout",
    "webhook_attempts",
    "webhook_backoff_ms",
    "max_upload_bytes",
    "scheduler",
    "timezone",
    "capacity",
    "fetchers",
    "wechat_token",
    "wechat_cookie",
    "claim_wait",
    "shutdown_grace",
    "wechat_base_url",
    "wechat_gap_ms",
    "wechat_gap_jitter_ms",
    "callback_allow",
    "public_url",
    "trusted_proxies",
    "header_read_timeout",
    "request_timeout",
    "idle_timeout",
    "max_connections",
    "data_dir",
    "login_poll_ms",
    "login_qr_refreshes",
    "login_timeout",
    "weread_base_url",
    "weread_login_timeout_means",
    "weread_qr_seconds",
    "weread_renew_every",
    "auto_login",
    "alert_webhook_url",
    "weread_max_pages",
    "weread_page_gap_ms",
    "weread_tilde_rewrite",
    "source_chain",
    "source_probe_every",
    "dedup_window_minutes",
    "mp_closure_rest",
    "weread_gap_ms",
    "budget_per_hour",
    "budget_per_day",
    "weread_ticket",
    "search_timeout",
    "full_text",
    "content_gap_ms",
    "content_max_per_feed",
    "content_block_seconds",
    "mp_page_base_url",
    "check_min_interval",
    "check_max_interval",
    "dispatch_mode",
    "check_aging_step",
    "node_capacity",
    "capacity_horizon",
];

/// Top-level keys and the WeRSS env variable each falls back to when absent from the file.
const TOP_LEVEL_ENV: &[(&str, &str)] = &[
    ("db", "DB"),
    ("port", "PORT"),
    ("secret", "SECRET_KEY"),
    ("token_expire_minutes", "TOKEN_EXPIRE_MINUTES"),
];

/// WeRSS's published default secrets; a parent configured with one warns.
pub const WERSS_DEFAULT_SECRETS: &[&str] = &["we-mp-rss", "csol2025"];

/// The sample AK/SK pair in WeRSS's `config-node.yaml` (its defaults for
/// `CASCADE_API_KEY`/`CASCADE_API_SECRET`): published, so anyone can use it.
pub const WERSS_SAMPLE_CREDENTIALS: (&str, &str) = (
    "CNfst304B9L603OXjL9gW0F2R38sKr3-L1",
    "CSWAKhQc-LvCxOow5Iu_e3Sqoyk3Ps1PeI",
);

/// The role a process runs as: its subcommand decides, whatever the config says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `cascade parent`.
    Parent,
    /// `cascade child`.
    Child,
}

/// The whole configuration of a parent or child.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Database URL (`sqlite://…`, SQLAlchemy forms accepted).
    #[serde(deserialize_with = "lenient_string")]
    pub db: String,
    /// HTTP port of the parent.
    #[serde(deserialize_with = "lenient_u16")]
    pub port: u16,
    /// Address the parent binds (ours; not a WeRSS key).
    #[serde(deserialize_with = "lenient_ip")]
    pub bind: IpAddr,
    /// JWT signing key; `None` means "use the one kept in the database".
    #[serde(deserialize_with = "optional_secret")]
    pub secret: Option<Secret>,
    /// JWT lifetime in minutes.
    #[serde(deserialize_with = "lenient_u64")]
    pub token_expire_minutes: u64,
    /// The `cascade:` section.
    pub cascade: CascadeConfig,
    /// bcrypt cost for new admin passwords (not a file key; tests lower it).
    #[serde(skip)]
    pub bcrypt_cost: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            db: "sqlite://data/cascade.db".into(),
            port: 8001,
            bind: IpAddr::from([127, 0, 0, 1]),
            secret: None,
            token_expire_minutes: 4320,
            cascade: CascadeConfig::default(),
            bcrypt_cost: bcrypt::DEFAULT_COST,
        }
    }
}

macro_rules! cascade_config {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $default:expr, $de:literal; )*) => {
        /// The `cascade:` section: WeRSS's keys and ours (durations in seconds).
        #[derive(Debug, Clone, Deserialize)]
        #[serde(default)]
        pub struct CascadeConfig {
            $( $(#[$doc])* #[serde(deserialize_with = $de)] pub $name: $ty, )*
        }
        impl Default for CascadeConfig {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }
    };
}

cascade_config! {
    /// WeRSS: starts the child worker; here only checked for a warning.
    enabled: bool = false, "lenient_bool";
    /// WeRSS role name (`parent` or `child`).
    node_type: String = "child".into(), "lenient_string";
    /// Base URL of the parent, for a child.
    parent_api_url: String = "http://localhost:8001".into(), "lenient_string";
    /// Child AK.
    api_key: String = String::new(), "lenient_string";
    /// Child SK.
    api_secret: Secret = Secret::default(), "lenient_secret";
    /// WeRSS full-sync period (unused).
    sync_interval: u64 = 300, "lenient_u64";
    /// Child heartbeat period.
    heartbeat_interval: u64 = 60, "lenient_u64";
    /// Child sleep after an empty claim without long-poll.
    task_poll_interval: u64 = 30, "lenient_u64";
    /// Child notify URL sent in heartbeats.
    callback_url: String = String::new(), "lenient_string";
    /// WeRSS: read, unused.
    claim_interval: u64 = 30, "lenient_u64";
    /// Lease length after claim and each renewal.
    lease_seconds: u64 = 300, "lenient_u64";
    /// Upper bound of a lease counted from the claim.
    max_run_seconds: u64 = 1800, "lenient_u64";
    /// Heartbeat silence after which a node is offline.
    offline_after: u64 = 180, "lenient_u64";
    /// Attempts before an allocation fails for good.
    max_attempts: u64 = 5, "lenient_u64";
    /// Base of the retry backoff.
    retry_base: u64 = 30, "lenient_u64";
    /// Cap of the retry backoff.
    retry_max: u64 = 1800, "lenient_u64";
    /// Base of the WeChat cooldown.
    cooldown_base: u64 = 900, "lenient_u64";
    /// Cap of the WeChat cooldown.
    cooldown_max: u64 = 21600, "lenient_u64";
    /// Capacity of a node whose `sync_config` names none.
    default_max_capacity: u64 = 10, "lenient_u64";
    /// Feeds per allocation at dispatch.
    feeds_per_allocation: u64 = 1, "lenient_u64";
    /// Delay after which other nodes may take an unclaimed assigned allocation.
    steal_after: u64 = 60, "lenient_u64";
    /// Longest long-poll a claim may ask for.
    max_wait: u64 = 25, "lenient_u64";
    /// Largest `limit` on a claim.
    max_claim_batch: u64 = 10, "lenient_u64";
    /// Reaper period.
    reap_interval: u64 = 15, "lenient_u64";
    /// Timeout of a notify or test-connection call.
    notify_timeout: u64 = 5, "lenient_u64";
    /// Timeout of one webhook call.
    webhook_timeout: u64 = 10, "lenient_u64";
    /// Tries per webhook (1 = no retry).
    webhook_attempts: u64 = 4, "lenient_u64";
    /// Wait before the first webhook retry; doubles each time.
    webhook_backoff_ms: u64 = 2000, "lenient_u64";
    /// Body limit of `upload-articles`; twice this many bytes of uploads are read at once.
    max_upload_bytes: u64 = 8 * 1024 * 1024, "lenient_u64";
    /// Whether the cron scheduler starts running.
    scheduler: bool = true, "lenient_bool";
    /// Zone cron expressions are evaluated in; empty = process local zone.
    timezone: String = String::new(), "lenient_string";
    /// Child: feeds crawled at once.
    capacity: u64 = 4, "lenient_u64";
    /// Child: fetcher kinds (`wechat`, `rss`), list or comma string.
    fetchers: Vec<String> = vec!["wechat".into()], "string_list";
    /// Child: WeChat session token.
    wechat_token: Secret = Secret::default(), "lenient_secret";
    /// Child: WeChat session cookie.
    wechat_cookie: Secret = Secret::default(), "lenient_secret";
    /// Child: base URL of the WeChat MP platform (tests and the demo point it at a fake).
    wechat_base_url: String = "https://mp.weixin.qq.com".into(), "lenient_string";
    /// Child: least milliseconds between two list requests of the login.
    wechat_gap_ms: u64 = 15_000, "lenient_u64";
    /// Child: random extra milliseconds added to each gap.
    wechat_gap_jitter_ms: u64 = 15_000, "lenient_u64";
    /// Child: long-poll seconds asked on claim.
    claim_wait: u64 = 25, "lenient_u64";
    /// Child: seconds to finish held work on shutdown before releasing it.
    shutdown_grace: u64 = 30, "lenient_u64";
    /// Parent: hosts, addresses and CIDRs the parent may call back although they are
    /// loopback, private, link-local or otherwise internal (`callback_url`, test-connection).
    callback_allow: Vec<String> = Vec::new(), "string_list";
    /// Parent: public base URL used in feed self-links; empty = the request's `Host` (and
    /// forwarded headers only from a trusted proxy).
    public_url: String = String::new(), "lenient_string";
    /// Parent: addresses or CIDRs of reverse proxies whose `X-Forwarded-*` headers are
    /// believed (client address for login throttling, self-links when `public_url` is empty).
    trusted_proxies: Vec<String> = Vec::new(), "string_list";
    /// Parent: seconds a client has to send a request's headers.
    header_read_timeout: u64 = 10, "lenient_u64";
    /// Parent: seconds one request may take (the long-poll claim has its own bound).
    request_timeout: u64 = 60, "lenient_u64";
    /// Parent: seconds an idle keep-alive connection is kept open.
    idle_timeout: u64 = 75, "lenient_u64";
    /// Parent: most connections open at once; more wait in the listen backlog.
    max_connections: u64 = 1024, "lenient_u64";
    /// Child: directory of the child's own files (the login store `logins.json`).
    data_dir: String = "./data".into(), "lenient_string";
    /// Child: milliseconds between two polls of a QR login (`ask`).
    login_poll_ms: u64 = 2000, "lenient_u64";
    /// Child: new QR codes fetched after an expired one before a QR login gives up.
    login_qr_refreshes: u64 = 3, "lenient_u64";
    /// Child: seconds a QR login may take, scan included.
    login_timeout: u64 = 600, "lenient_u64";
    /// Child: base URL of WeRead's web API (tests and the demo point it at a fake).
    weread_base_url: String = "https://weread.qq.com".into(), "lenient_string";
    /// Child: what WeRead's `LOGIN_TIMEOUT` during a QR login means: `retry` (the end of
    /// one long poll: poll again until `weread_qr_seconds`, then a new QR) or `expired` (the
    /// QR expired: a new QR at once).
    weread_login_timeout_means: String = "retry".into(), "lenient_string";
    /// Child: seconds one WeRead QR code is polled before a new one is fetched.
    weread_qr_seconds: u64 = 240, "lenient_u64";
    /// Child: seconds between WeRead `wr_skey` renewals (the key lives about 1–2 h).
    weread_renew_every: u64 = 3600, "lenient_u64";
    /// Child: when a login expires, start one QR login of its kind and show it at the parent
    /// (the Logins view, and the operator's alert webhook).
    auto_login: bool = true, "lenient_bool";
    /// Parent: where operator alerts (login expiry reminders, …) are posted, rendered for
    /// the platform of the URL like task webhooks; empty = alerts are only logged.
    alert_webhook_url: String = String::new(), "lenient_string";
    /// Child: WeRead list pages read per feed at most; when the cap comes before the
    /// articles the parent has, the feed's result says `backlog_incomplete`.
    weread_max_pages: u64 = 20, "lenient_u64";
    /// Child: least milliseconds between two WeRead requests of one login (list pages,
    /// covers), from however many feeds at once; `weread_gap_ms` wins when set.
    weread_page_gap_ms: u64 = 10_000, "lenient_u64";
    /// Child: write a `~` in a WeRead article token as `_` in its link
    /// (`https://mp.weixin.qq.com/s/<token>`).
    weread_tilde_rewrite: bool = true, "lenient_bool";
    /// Parent: the sources a WeChat feed is read through, in order (`weread_list`,
    /// `weread_cover`, `mp_list`); a source found closed is skipped until it reopens.
    source_chain: Vec<String> = vec!["weread_list".into(), "weread_cover".into(), "mp_list".into()], "string_list";
    /// Parent: seconds between two probes of a closed source (one feed tries it first).
    source_probe_every: u64 = 1800, "lenient_u64";
    /// Parent: minutes apart two publish times of one title in a feed may be for an upload
    /// to be the article the feed already has under another id (read through another source,
    /// when no link matches); 0 = links only.
    dedup_window_minutes: u64 = 10, "lenient_u64";
    /// Child: a `200013` on an `mp` login's first request after at least this many seconds
    /// of rest (or its first request ever) is reported as `closed`, not `rate_limited`: the MP
    /// list refuses other accounts that way since 2026-07 (the parent decides across nodes);
    /// 0 = always `rate_limited`.
    mp_closure_rest: u64 = 600, "lenient_u64";
    /// Child: least milliseconds between any two WeRead calls of one login (list pages,
    /// covers, shelf), from however many feeds at once; unset = `weread_page_gap_ms` (the
    /// older name of the same gap).
    weread_gap_ms: Option<u64> = None, "optional_u64";
    /// Child: upstream calls one login may make in any hour, per login kind
    /// (`{weread: 6, mp: 0}`, or `weread:6,mp:0`); a kind left out keeps its default
    /// (WeRead 6, MP none), 0 = no cap.
    budget_per_hour: PerKind = PerKind::default(), "per_kind";
    /// Child: upstream calls one login may make in any 24 hours, per login kind
    /// (`{weread: 25, mp: 0}`); a kind left out keeps its default (WeRead 25, MP none),
    /// 0 = no cap.
    budget_per_day: PerKind = PerKind::default(), "per_kind";
    /// Child: send `x-wr-ticket` (the login's `wr_skey`) with WeRead calls; older clients
    /// needed it, upstream later made it optional (SOURCES.md §2).
    weread_ticket: bool = false, "lenient_bool";
    /// Parent: seconds an admin's search by name (`POST {P}/feeds/search`) waits for the
    /// node that runs it, then 504; at least 1.
    search_timeout: u64 = 20, "lenient_u64";
    /// Child: fetch each new WeChat article's body (WeRead `/web/mp/content` or the MP
    /// article page) and upload it; a task's `full_text: false` turns it off for that task.
    full_text: bool = true, "lenient_bool";
    /// Child: least milliseconds between two article page fetches of one login (WeRead) or of
    /// this node (anonymous MP pages), from however many feeds at once.
    content_gap_ms: u64 = 2000, "lenient_u64";
    /// Child: article bodies fetched per feed and run at most (the newest first); the rest
    /// are uploaded without a body. 0 = none.
    content_max_per_feed: u64 = 20, "lenient_u64";
    /// Child: seconds page fetches stop on a login (or, for MP pages, on this node) after a
    /// human-check page; doubled on each further one, up to 6 hours.
    content_block_seconds: u64 = 900, "lenient_u64";
    /// Child: where MP article pages (`https://mp.weixin.qq.com/s…`) are fetched from (the
    /// links keep their host; a test points this at a fake).
    mp_page_base_url: String = "https://mp.weixin.qq.com".into(), "lenient_string";
    /// Parent: the shortest time, in seconds (1 s–30 d), between two checks of one feed, for
    /// per-feed schedules and the planner (`GET {P}/plan`).
    check_min_interval: u64 = 1800, "lenient_u64";
    /// Parent: the longest time, in seconds (up to 365 d), between two checks of one feed
    /// that answers, and the longest error backoff; a silent feed is checked this often.
    check_max_interval: u64 = 86_400, "lenient_u64";
    /// Parent: how feeds are dispatched: `cron` (WeRSS: each task's cron dispatches all its
    /// feeds) or `freshness` (due feeds continuously, the longest due first, within the free
    /// capacity and the logins' daily budgets; a task's cron then makes its feeds due, a
    /// bound on how long a feed waits).
    dispatch_mode: String = "cron".into(), "lenient_string";
    /// Parent: seconds (1 s–1 d) one step of priority moves a feed or an allocation ahead: a
    /// priority-2 feed goes before feeds due up to two steps before it, never before older
    /// ones.
    check_aging_step: u64 = 1800, "lenient_u64";
    /// Parent: how many feeds placement gives a node: `static` (its `max_capacity` or
    /// reported `capacity`) or `auto` (what it finished in `capacity_horizon` at its rate
    /// measured over the last 10–20 minutes, within that static capacity).
    node_capacity: String = "static".into(), "lenient_string";
    /// Parent: seconds of work `node_capacity: auto` gives a node at its measured rate.
    capacity_horizon: u64 = 300, "lenient_u64";
}

/// A number per login kind (`budget_per_hour`, `budget_per_day`); `None` = the kind's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerKind {
    /// For `mp` logins.
    pub mp: Option<u64>,
    /// For `weread` logins.
    pub weread: Option<u64>,
}

impl CascadeConfig {
    /// The least gap between two WeRead calls of one login: `weread_gap_ms`, else
    /// `weread_page_gap_ms`.
    pub fn weread_gap(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.weread_gap_ms.unwrap_or(self.weread_page_gap_ms))
    }
}

impl Config {
    /// What the operator should fix in this configuration before running as `role`
    /// (PROTOCOL §13), a sentence each: a `node_type` or `enabled` that contradicts the role,
    /// WeRSS's published sample credentials, WeRSS's unread `CASCADE_PARENT_URL`. `env` is the
    /// environment (tests pass a map). Secrets are never quoted.
    pub fn warnings(&self, role: Role, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let c = &self.cascade;
        let node_type = c.node_type.trim().to_ascii_lowercase();
        let mut out = Vec::new();
        if !matches!(node_type.as_str(), "" | "parent" | "child") {
            out.push(format!(
                "cascade.node_type is '{node_type}', neither 'parent' nor 'child'; \
                 the subcommand decides the role"
            ));
        }
        match role {
            Role::Parent => {
                if c.enabled && node_type == "child" {
                    out.push(
                        "cascade.node_type is 'child' and cascade.enabled is true (WeRSS would \
                         run this config as a child), but this process runs as a parent"
                            .into(),
                    );
                }
            }
            Role::Child => {
                if node_type == "parent" {
                    out.push(
                        "cascade.node_type is 'parent', but this process runs as a child".into(),
                    );
                }
                if !c.enabled {
                    out.push("cascade.enabled is false; running as a child anyway".into());
                }
                let (key, secret) = WERSS_SAMPLE_CREDENTIALS;
                if c.api_key.trim() == key || c.api_secret.expose().trim() == secret {
                    out.push(
                        "cascade.api_key/api_secret is the sample pair published in WeRSS's \
                         config-node.yaml, which anyone can use: give this node credentials of \
                         its own (`cascade node add` on the parent)"
                            .into(),
                    );
                }
                let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
                if set("CASCADE_PARENT_URL") && !set("CASCADE_PARENT_API_URL") {
                    out.push(
                        "CASCADE_PARENT_URL is set but never read (WeRSS does not read it \
                         either); set CASCADE_PARENT_API_URL or cascade.parent_api_url"
                            .into(),
                    );
                }
            }
        }
        out
    }
}

/// Overrides given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--db`.
    pub db: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--bind`.
    pub bind: Option<IpAddr>,
}

/// Loads the configuration: defaults < file < env < flags.
///
/// `path` = `None` reads `config.yaml` if it exists; an explicit path must exist.
///
/// # Errors
/// Unreadable file, invalid YAML or a key of the wrong kind.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, Error> {
    let (text, name) = match path {
        Some(p) => (read(p)?, p.display().to_string()),
        None if Path::new("config.yaml").is_file() => {
            (read(Path::new("config.yaml"))?, "config.yaml".into())
        }
        None => (String::new(), "(none)".into()),
    };
    let mut config = from_yaml_str(&text, &name, &|k| std::env::var(k).ok())?;
    apply_overrides(&mut config, overrides);
    Ok(config)
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Applies CLI flags on top of a loaded configuration.
pub fn apply_overrides(config: &mut Config, overrides: &Overrides) {
    if let Some(db) = &overrides.db {
        config.db = db.clone();
    }
    if let Some(port) = overrides.port {
        config.port = port;
    }
    if let Some(bind) = overrides.bind {
        config.bind = bind;
    }
}

/// Parses YAML text with `env` as the environment (pure: tests pass a map).
///
/// # Errors
/// Invalid YAML or a key of the wrong kind.
pub fn from_yaml_str(
    text: &str,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Error> {
    let tree: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        yaml_serde::from_str(text).map_err(|e| Error::Yaml {
            path: name.to_string(),
            message: e.to_string(),
        })?
    };
    let mut root = match resolve(tree, env) {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => {
            return Err(Error::Invalid {
                key: "(root)".into(),
                message: "expected a mapping of keys".into(),
            });
        }
    };
    for (key, var) in TOP_LEVEL_ENV {
        if !root.contains_key(*key)
            && let Some(v) = env(var).filter(|v| !v.is_empty())
        {
            root.insert((*key).into(), coerce(v));
        }
    }
    let cascade = root
        .entry("cascade")
        .or_insert_with(|| Value::Object(Map::new()));
    if cascade.is_null() {
        *cascade = Value::Object(Map::new());
    }
    if let Value::Object(section) = cascade {
        for key in CASCADE_KEYS {
            let var = format!("CASCADE_{}", key.to_ascii_uppercase());
            if let Some(v) = env(&var).filter(|v| !v.is_empty()) {
                section.insert((*key).into(), coerce(v));
            }
        }
    }
    let mut config: Config =
        serde_path_to_error::deserialize(Value::Object(root)).map_err(|e| Error::Invalid {
            key: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    config.cascade.parent_api_url = normalize_url(&config.cascade.parent_api_url);
    if let Err(message) = config
        .cascade
        .weread_login_timeout_means
        .parse::<crate::logins::weread::TimeoutMeans>()
    {
        return Err(Error::Invalid {
            key: "cascade.weread_login_timeout_means".into(),
            message,
        });
    }
    clamp_durations(&mut config);
    Ok(config)
}

/// Ten years: longer durations are clamped so time arithmetic cannot overflow.
const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

fn clamp_durations(config: &mut Config) {
    config.token_expire_minutes = config.token_expire_minutes.min(MAX_SECONDS / 60);
    let c = &mut config.cascade;
    for v in [
        &mut c.lease_seconds,
        &mut c.max_run_seconds,
        &mut c.offline_after,
        &mut c.retry_base,
        &mut c.retry_max,
        &mut c.cooldown_base,
        &mut c.cooldown_max,
        &mut c.steal_after,
        &mut c.max_wait,
        &mut c.reap_interval,
        &mut c.notify_timeout,
        &mut c.webhook_timeout,
        &mut c.heartbeat_interval,
        &mut c.task_poll_interval,
        &mut c.shutdown_grace,
        &mut c.claim_wait,
        &mut c.weread_qr_seconds,
        &mut c.weread_renew_every,
    ] {
        *v = (*v).min(MAX_SECONDS);
    }
}

/// Substitutes `${VAR}` / `${VAR:-default}` in every string, then coerces it as WeRSS does.
fn resolve(value: Value, env: &dyn Fn(&str) -> Option<String>) -> Value {
    match value {
        Value::String(s) => coerce(interpolate(&s, env)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| resolve(v, env)).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, resolve(v, env))).collect())
        }
        other => other,
    }
}

/// Replaces `${VAR}` (unset → empty) and `${VAR:-default}` (unset or empty → default).
pub fn interpolate(s: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let value = match inner.split_once(":-") {
            Some((var, default)) => env(var)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()),
            None => env(inner).unwrap_or_default(),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// WeRSS's coercion: `true`/`false` (any case) → bool, digits → integer, `d.d` → float.
pub fn coerce(s: String) -> Value {
    let lower = s.to_ascii_lowercase();
    if lower == "true" || lower == "false" {
        return Value::Bool(lower == "true");
    }
    let is_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if is_digits(&s)
        && let Ok(n) = s.parse::<u64>()
    {
        return Value::from(n);
    }
    if let Some((a, b)) = s.split_once('.')
        && is_digits(a)
        && is_digits(b)
        && let Ok(f) = s.parse::<f64>()
    {
        return Value::from(f);
    }
    Value::String(s)
}

/// Trims, strips quotes, adds `http://` when there is no scheme, drops a trailing `/`.
pub fn normalize_url(raw: &str) -> String {
    let s = raw.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    let with_scheme = if s.contains("://") || s.is_empty() {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    with_scheme.trim_end_matches('/').to_string()
}

mod de;
use de::*;

#[cfg(test)]
mod tests;
