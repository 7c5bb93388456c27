//! Persistence: one [`Store`] API over the backends (SQLite today), domain types in and out.
//! SQL text lives only in the backend modules; transactions never leave the store. The store
//! knows nothing of HTTP.

mod adopt;
mod alloc_status;
mod alloc_types;
pub(crate) mod commands;
mod creds;
pub(crate) mod db;
mod dedup;
mod engine;
pub(crate) mod flows;
mod login_types;
mod ops;
mod rows;
mod schema;
mod scratch;
pub(crate) mod sources;
mod types;
mod url;

pub use alloc_status::AllocStatus;
pub use alloc_types::*;
pub use commands::{NewNodeCommand, NodeCommand};
pub use flows::{FLOW_STATES, FlowProgress, LoginFlow, NewLoginFlow, flow_state_is_final};
pub use login_types::*;
pub use ops::attempts::{AllocationDetail, AllocationFeed, AttemptRecord};
pub use ops::bulk::{BULK_MAX, BulkOutcome, CANCELLABLE_STATUSES, RETRYABLE_STATUSES, Selection};
pub use ops::console::{
    AgeCount, AuditEntry, AuditFilter, AuditRecord, FEED_AGE_LABELS, NodeHealth, NodeSample,
    SAMPLE_RETENTION, SampleOutcome, Stats, Throughput, floor_minute,
};
pub use ops::due::DueFeed;
pub use ops::monitor::{FeedStatusFilter, PlanFacts};
pub use scratch::ScratchDb;
pub use sources::SourceRow;
pub use types::*;
pub use url::{DbUrl, parse_db_url, redact_url, with_database};

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

/// The channel parents use to wake each other's long-polls (PostgreSQL `NOTIFY`).
const WAKE_CHANNEL: &str = "cascade_wake";

/// The persistence handle: cheap to clone, shared by handlers and loops. Its operations are
/// written once in [`ops`] and run on either backend through [`db::Db`].
#[derive(Clone)]
pub struct Store {
    db: db::Db,
    creds: std::sync::Arc<creds::CredCache>,
    sources: std::sync::Arc<sources::SourceCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend_name())
    }
}

impl Store {
    /// Opens (creating if needed) the database named by a WeRSS-style URL and migrates it.
    ///
    /// # Errors
    /// An unsupported or malformed URL, an unreachable database or a failed migration.
    pub async fn connect(url: &str) -> Result<Self> {
        let db = match parse_db_url(url)? {
            DbUrl::Sqlite(target) => db::Db::Sqlite(std::sync::Arc::new(
                db::sqlite::SqliteDb::open(target.as_deref())?,
            )),
            DbUrl::Postgres(url) => db::Db::Pg(db::PgDb::open(&url).await?),
        };
        ops::migrate::run(&db).await?;
        Ok(Self {
            db,
            creds: std::sync::Arc::default(),
            sources: std::sync::Arc::default(),
        })
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.db.dialect() {
            db::Dialect::Sqlite => "sqlite",
            db::Dialect::Postgres => "postgres",
        }
    }

    /// How SQLite's writer grouped the writes so far: (groups committed, requests in them);
    /// `None` on PostgreSQL.
    pub fn write_grouping(&self) -> Option<(u64, u64)> {
        match &self.db {
            db::Db::Sqlite(s) => Some(s.grouping()),
            db::Db::Pg(_) => None,
        }
    }

    /// Whether other parents may share this database (PostgreSQL), so wake-ups must cross.
    pub fn has_peers(&self) -> bool {
        self.db.pg_pool().is_some()
    }

    /// Tells the other parents on a shared database that work may have appeared (PostgreSQL
    /// `NOTIFY`); a no-op on SQLite, where there is only one parent.
    ///
    /// # Errors
    /// A database failure.
    pub async fn wake_peers(&self) -> Result<()> {
        if let Some(pool) = self.db.pg_pool() {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(WAKE_CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A listener for the wake-ups of [`Store::wake_peers`], or `None` when the backend has
    /// no peers.
    ///
    /// # Errors
    /// A database failure.
    pub async fn wake_listener(&self) -> Result<Option<WakeListener>> {
        let Some(pool) = self.db.pg_pool() else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(Some(WakeListener(listener)))
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
