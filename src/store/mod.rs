//! Persistence: one [`Store`] API over the backends (SQLite today), domain types in and out.
//! SQL text lives only in the backend modules; transactions never leave the store. The store
//! knows nothing of HTTP.

mod adopt;
mod alloc_types;
pub(crate) mod commands;
pub(crate) mod db;
mod dedup;
mod engine;
pub(crate) mod flows;
mod ops;
mod pg;
mod rows;
mod schema;
mod scratch;
pub(crate) mod sources;
mod sqlite;
mod types;
mod url;

pub use alloc_types::*;
pub use commands::{NewNodeCommand, NodeCommand};
pub use flows::{FLOW_STATES, FlowProgress, LoginFlow, NewLoginFlow, flow_state_is_final};
pub use scratch::ScratchDb;
pub use sources::SourceRow;
pub use types::*;
pub use url::{DbUrl, parse_db_url, redact_url, with_database};

use chrono::NaiveDateTime;

/// Store errors. `Database` details are logged by the caller's edge and never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule was violated (e.g. a duplicate feed).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The URL names a backend this build cannot use.
    #[error("{0}")]
    Unsupported(String),
    /// The node was deactivated or removed after it authenticated.
    #[error("node is deactivated")]
    NodeInactive,
    /// The caller does not hold the allocation, or its lease token is stale.
    #[error("allocation is not held by this node")]
    LeaseLost,
    /// The state machine forbids the change; carries the current status.
    #[error("allocation is {0}")]
    InvalidTransition(String),
    /// A request that contradicts stored state (e.g. a `task_id` that does not match).
    #[error("{0}")]
    Invalid(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(String),
    /// A SQLite failure: its extended result code and message.
    #[error("database error: {message}")]
    Sqlite {
        /// SQLite's extended result code.
        code: i32,
        /// What SQLite said.
        message: String,
    },
}

/// Why the database refuses work for now: conditions that are not the request's fault and
/// that time (or an operator) may clear. See [`Error::unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Another writer holds the database, or a transaction lost a race: retry shortly
    /// (SQLite `SQLITE_BUSY`/`SQLITE_LOCKED`; PostgreSQL 40001, 40P01, 55P03; a pool that
    /// found no free connection in time).
    Busy,
    /// The disk or the database is full (SQLite 13 `SQLITE_FULL`; PostgreSQL 53100).
    DiskFull,
    /// The database takes no writes (SQLite 8 `SQLITE_READONLY`; PostgreSQL 25006).
    ReadOnly,
    /// The storage failed to read or write (SQLite 10 `SQLITE_IOERR`; PostgreSQL 58030).
    Io,
    /// The database cannot be reached: connection lost or refused, server shutting down or
    /// out of connections, the pool closed.
    Unreachable,
}

impl Unavailable {
    /// A short machine-readable name (`database_busy`, `disk_full`, `read_only`, `io_error`,
    /// `database_unreachable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "database_busy",
            Self::DiskFull => "disk_full",
            Self::ReadOnly => "read_only",
            Self::Io => "io_error",
            Self::Unreachable => "database_unreachable",
        }
    }

    /// A sentence for people; names the condition, never SQL.
    pub fn message(self) -> &'static str {
        match self {
            Self::Busy => "the database is busy; retry shortly",
            Self::DiskFull => {
                "the database's disk is full; writes are refused until space is freed"
            }
            Self::ReadOnly => "the database is read-only; writes are refused",
            Self::Io => "the database's storage reported an I/O error",
            Self::Unreachable => "the database cannot be reached",
        }
    }
}

impl Error {
    /// Whether this failure is a condition of the database rather than of the request:
    /// busy, full, read-only, failing storage or unreachable. Such failures are answered
    /// 503, never 500.
    pub fn unavailable(&self) -> Option<Unavailable> {
        if let Self::Sqlite { code, .. } = self {
            return sqlite_unavailable(&code.to_string());
        }
        let Self::Database(e) = self else {
            return None;
        };
        match e {
            sqlx::Error::PoolTimedOut => Some(Unavailable::Busy),
            sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                Some(Unavailable::Unreachable)
            }
            sqlx::Error::Database(db) => {
                let code = db.code()?;
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    sqlite_unavailable(&code)
                } else if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    pg_unavailable(&code)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

impl Error {
    /// The same failure again, for a second caller (a group commit answers each of its
    /// requests with the group's failure). Details that cannot be copied become text.
    pub(crate) fn again(&self) -> Self {
        match self {
            Self::NotFound(what) => Self::NotFound(what),
            Self::Conflict(m) => Self::Conflict(m.clone()),
            Self::Unsupported(m) => Self::Unsupported(m.clone()),
            Self::NodeInactive => Self::NodeInactive,
            Self::LeaseLost => Self::LeaseLost,
            Self::InvalidTransition(s) => Self::InvalidTransition(s.clone()),
            Self::Invalid(m) => Self::Invalid(m.clone()),
            Self::Migrate(m) => Self::Migrate(m.clone()),
            Self::Sqlite { code, message } => Self::Sqlite {
                code: *code,
                message: message.clone(),
            },
            Self::Database(e) => Self::Sqlite {
                code: 1,
                message: e.to_string(),
            },
        }
    }
}

/// SQLite's (extended) result code: the primary code is its low byte.
fn sqlite_unavailable(code: &str) -> Option<Unavailable> {
    let primary = code.parse::<i64>().ok()? & 0xff;
    match primary {
        5 | 6 => Some(Unavailable::Busy),
        13 => Some(Unavailable::DiskFull),
        8 => Some(Unavailable::ReadOnly),
        10 => Some(Unavailable::Io),
        _ => None,
    }
}

/// PostgreSQL's SQLSTATE.
fn pg_unavailable(code: &str) -> Option<Unavailable> {
    match code {
        "40001" | "40P01" | "55P03" => Some(Unavailable::Busy),
        "53100" => Some(Unavailable::DiskFull),
        "25006" => Some(Unavailable::ReadOnly),
        "58030" => Some(Unavailable::Io),
        "57P01" | "57P02" | "57P03" | "53300" => Some(Unavailable::Unreachable),
        c if c.starts_with("08") => Some(Unavailable::Unreachable),
        _ => None,
    }
}

/// `Result` with the store's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(pg::PgStore),
}

/// The persistence handle: cheap to clone, shared by handlers and loops.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    db: db::Db,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(_) => f.write_str("Store(sqlite)"),
            Backend::Postgres(_) => f.write_str("Store(postgres)"),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database named by a WeRSS-style URL and migrates it.
    ///
    /// # Errors
    /// An unsupported or malformed URL, an unreachable database or a failed migration.
    pub async fn connect(url: &str) -> Result<Self> {
        match parse_db_url(url)? {
            DbUrl::Sqlite(target) => {
                let old = sqlite::SqliteStore::open(target.clone()).await?;
                let db = db::sqlite::SqliteDb::open(target.as_deref())?;
                Ok(Self {
                    backend: Backend::Sqlite(old),
                    db: db::Db::Sqlite(std::sync::Arc::new(db)),
                })
            }
            DbUrl::Postgres(url) => {
                let old = pg::PgStore::open(&url).await?;
                let db = db::Db::Pg(db::PgDb {
                    pool: old.pool.clone(),
                });
                Ok(Self {
                    backend: Backend::Postgres(old),
                    db,
                })
            }
        }
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether other parents may share this database (PostgreSQL), so wake-ups must cross.
    pub fn has_peers(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Tells the other parents on a shared database that work may have appeared (PostgreSQL
    /// `NOTIFY`); a no-op on SQLite, where there is only one parent.
    ///
    /// # Errors
    /// A database failure.
    pub async fn wake_peers(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(s) => s.wake_peers().await,
        }
    }

    /// A listener for the wake-ups of [`Store::wake_peers`], or `None` when the backend has
    /// no peers.
    ///
    /// # Errors
    /// A database failure.
    pub async fn wake_listener(&self) -> Result<Option<WakeListener>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(s) => Ok(Some(WakeListener(s.wake_listener().await?))),
        }
    }
}

/// Receives other parents' wake-ups.
pub struct WakeListener(sqlx::postgres::PgListener);

impl WakeListener {
    /// Waits for the next wake-up. After a lost connection the listener reconnects and
    /// reports one wake-up, since notifications may have been missed meanwhile.
    ///
    /// # Errors
    /// A database failure while reconnecting.
    pub async fn next(&mut self) -> Result<()> {
        self.0.try_recv().await?;
        Ok(())
    }
}

/// Generates `impl Store` methods that forward to the active backend.
macro_rules! delegate {
    ($( $(#[$meta:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.backend {
                        Backend::Sqlite(s) => s.$name($($arg),*).await,
                        Backend::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {

    /// Creates a node record.
    fn create_node(&self, node: NewNode, now: NaiveDateTime) -> Result<Node>;
    /// Lists nodes, optionally of one type.
    fn list_nodes(&self, node_type: Option<i64>) -> Result<Vec<Node>>;
    /// The logins nodes reported (of one node when given), by node name, kind and id.
    fn list_node_logins(&self, node_id: Option<String>) -> Result<Vec<NodeLogin>>;
    /// The logins of active nodes (of one node when given) with their reminder columns.
    fn login_reminders(&self, node_id: Option<String>) -> Result<Vec<LoginReminder>>;
    /// Sets a login's reminder columns only if its row still holds what `seen` read (state,
    /// `expires_at`, reminder columns): a compare-and-set, so of several parents evaluating
    /// the same login one wins. Whether it was applied.
    fn set_login_reminder(&self, seen: LoginReminder, stage: i64, stage_expires_at: Option<NaiveDateTime>) -> Result<bool>;
    /// One node.
    fn get_node(&self, id: &str) -> Result<Node>;
    /// Applies an admin update; deactivation returns holdings to `pending`.
    fn update_node(&self, id: &str, update: NodeUpdate, now: NaiveDateTime) -> Result<()>;
    /// Deletes a node; its holdings return to `pending`, its history stays.
    fn delete_node(&self, id: &str, now: NaiveDateTime) -> Result<()>;
    /// Replaces a child's credentials (key in clear, secret as SHA-256 hex).
    fn set_node_credentials(&self, id: &str, api_key: &str, secret_hash: &str, now: NaiveDateTime) -> Result<()>;
    /// The credential record of an api key, for authentication (reads only).
    fn find_node_credential(&self, api_key: &str) -> Result<Option<NodeCredential>>;
    /// Records a heartbeat and renews leases in one transaction.
    fn heartbeat(&self, node_id: &str, beat: HeartbeatUpdate, now: NaiveDateTime, lease: LeasePolicy) -> Result<HeartbeatOutcome>;

    /// Creates a feed; `Conflict` if its id exists.
    fn create_feed(&self, feed: NewFeed, now: NaiveDateTime) -> Result<Feed>;
    /// Creates many feeds in one transaction, skipping existing ids; returns how many were new.
    fn create_feeds(&self, feeds: Vec<NewFeed>, now: NaiveDateTime) -> Result<u64>;
    /// Feeds ordered by id, paged when `page` is given.
    fn list_feeds(&self, page: Option<Page>) -> Result<Vec<Feed>>;
    /// One feed.
    fn get_feed(&self, id: &str) -> Result<Feed>;
    /// Updates a feed.
    fn update_feed(&self, id: &str, update: FeedUpdate, now: NaiveDateTime) -> Result<Feed>;
    /// Deletes a feed (its articles stay).
    fn delete_feed(&self, id: &str) -> Result<()>;

    /// Creates a message task.
    fn create_task(&self, task: TaskFields, now: NaiveDateTime) -> Result<MessageTask>;
    /// Lists message tasks, optionally of one status.
    fn list_tasks(&self, status: Option<i64>) -> Result<Vec<MessageTask>>;
    /// One message task.
    fn get_task(&self, id: &str) -> Result<MessageTask>;
    /// Enabled tasks with a cron expression: only what the scheduler needs.
    fn cron_jobs(&self) -> Result<Vec<CronJob>>;
    /// Replaces a task's fields.
    fn update_task(&self, id: &str, task: TaskFields, now: NaiveDateTime) -> Result<MessageTask>;
    /// Deletes a task; its pending allocations fail with `not_found`.
    fn delete_task(&self, id: &str, now: NaiveDateTime) -> Result<()>;

    /// Applies a holder's report (status, completion, failure) by the state machine.
    fn report(&self, node_id: &str, allocation_id: &str, token: Option<String>, report: Report, now: NaiveDateTime, policy: LifecyclePolicy) -> Result<ReportOutcome>;
    /// Upserts uploaded articles for an allocation the node holds (or completed); an item of
    /// a WeChat feed that has the same article under another id fills that one in (`dedup`).
    fn upload_articles(&self, node_id: &str, allocation_id: &str, token: Option<String>, items: Vec<ArticleIn>, now: NaiveDateTime, policy: UploadPolicy) -> Result<UploadOutcome>;
    /// Articles of the given feeds (all feeds when `None`), newest first.
    fn list_articles(&self, feed_ids: Option<Vec<String>>, page: Page) -> Result<Vec<StoredArticle>>;
    /// The named articles, newest first.
    fn get_articles(&self, ids: Vec<String>) -> Result<Vec<StoredArticle>>;
    /// Claims up to `limit` due webhooks for `lease_seconds` (another parent takes them after
    /// that if this one stops), counting the try.
    fn claim_webhooks(&self, now: NaiveDateTime, limit: i64, lease_seconds: i64) -> Result<Vec<WebhookJob>>;
    /// Records how a webhook try ended.
    fn finish_webhook(&self, id: &str, result: WebhookResult, now: NaiveDateTime) -> Result<()>;
    /// Returns held allocations to `pending` without spending an attempt.
    fn release(&self, node_id: &str, items: Vec<(String, Option<String>)>, now: NaiveDateTime) -> Result<(Vec<String>, Vec<(String, &'static str)>)>;
    /// Expires leases and takes work from silent nodes.
    fn reap(&self, now: NaiveDateTime, offline_after: i64, policy: LifecyclePolicy) -> Result<ReapOutcome>;
    /// Allocations, newest dispatch first.
    fn list_allocations(&self, filter: AllocationFilter, page: Page) -> Result<(Vec<Allocation>, i64)>;
    /// Allocations by status.
    fn allocation_counts(&self) -> Result<Vec<(String, i64)>>;
    /// Webhook outbox rows by status (`pending`, `sent`, `failed`).
    fn webhook_counts(&self) -> Result<Vec<(String, i64)>>;
    /// The `pending-allocations` counters.
    fn counters(&self, now: NaiveDateTime, offline_after: i64, default_capacity: u64) -> Result<Counters>;
    /// Feed freshness, stalest first.
    fn feed_status(&self, feed_id: Option<String>, page: Page, now: NaiveDateTime) -> Result<(Vec<FeedStatus>, i64)>;

    /// Enabled nodes online with a callback URL and credentials.
    fn notify_targets(&self, now: NaiveDateTime, offline_after: i64) -> Result<Vec<NotifyTarget>>;
    /// Moves a task's `next_run_at` from `expected` to `next` only if it is still `expected`
    /// (claims a cron firing); `fired_at` also records `last_run_at`.
    fn set_next_run(&self, id: &str, expected: Option<NaiveDateTime>, next: Option<NaiveDateTime>, fired_at: Option<NaiveDateTime>) -> Result<bool>;


    /// Opens a QR login flow on a node, or returns the open one of that kind (`false`).
    fn create_login_flow(&self, new: NewLoginFlow, now: NaiveDateTime) -> Result<(LoginFlow, bool)>;
    /// One login flow.
    fn get_login_flow(&self, id: &str) -> Result<LoginFlow>;
    /// The newest login flows, of one node when given.
    fn list_login_flows(&self, node_id: Option<String>, limit: i64) -> Result<Vec<LoginFlow>>;
    /// Login flows a node was asked to start and has not reported on.
    fn login_commands(&self, node_id: &str) -> Result<Vec<LoginFlow>>;
    /// Applies a node's step to its own open flow (an OTP code waiting for it is handed out once).
    fn progress_login_flow(&self, node_id: &str, id: &str, step: FlowProgress, now: NaiveDateTime) -> Result<LoginFlow>;
    /// Cancels an open login flow.
    fn cancel_login_flow(&self, id: &str, now: NaiveDateTime) -> Result<LoginFlow>;
    /// Keeps the OTP code typed for a flow that asks for one.
    fn set_login_flow_otp(&self, id: &str, code: &str, now: NaiveDateTime) -> Result<LoginFlow>;
    /// Records a node command (see [`commands`]).
    fn create_node_command(&self, new: NewNodeCommand, now: NaiveDateTime) -> Result<()>;
    /// One node command.
    fn get_node_command(&self, id: &str) -> Result<NodeCommand>;
    /// Hands a node its unanswered commands (pending ones become sent).
    fn deliver_node_commands(&self, node_id: &str, now: NaiveDateTime) -> Result<Vec<NodeCommand>>;
    /// Whether a command waits for a node, not yet handed out.
    fn node_command_pending(&self, node_id: &str, now: NaiveDateTime) -> Result<bool>;
    /// A node's answer to its own command.
    fn answer_node_command(&self, node_id: &str, id: &str, answer: Option<String>, error: Option<String>, now: NaiveDateTime) -> Result<NodeCommand>;
    /// Ends a command nobody waits for.
    fn expire_node_command(&self, id: &str, now: NaiveDateTime) -> Result<()>;
    /// The nodes that can run a search now, best first.
    fn search_nodes(&self, online_since: NaiveDateTime, now: NaiveDateTime) -> Result<Vec<String>>;

    /// Every WeChat source with a record.
    fn source_rows(&self) -> Result<Vec<SourceRow>>;
    /// A success of a source; `true` when it reopened (one caller).
    fn source_ok(&self, source: &str, now: NaiveDateTime) -> Result<bool>;
    /// A refusal of a source to a node's login; `true` when it closed (one caller).
    fn source_refused(&self, source: &str, node_id: &str, error: &str, needed: i64, now: NaiveDateTime, probe_at: NaiveDateTime) -> Result<bool>;
    /// Takes a closed source's due probe (one caller).
    fn take_source_probe(&self, source: &str, now: NaiveDateTime, next: NaiveDateTime) -> Result<bool>;
    /// Records the source that read these feeds.
    fn feeds_read_by(&self, source: &str, feed_ids: Vec<String>, now: NaiveDateTime) -> Result<()>;
    /// Feeds each source read last.
    fn feeds_by_source(&self) -> Result<Vec<(String, i64)>>;
    /// Active nodes with a usable login, by kind.
    fn nodes_with_usable_logins(&self) -> Result<Vec<(String, i64)>>;
    /// Usable logins of active nodes, by kind.
    fn usable_logins(&self) -> Result<Vec<(String, i64)>>;
}
