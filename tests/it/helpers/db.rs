//! Test databases on either backend. SQLite: a file in the test's temporary folder.
//! PostgreSQL: a database of its own on the server named by `CASCADE_TEST_PG_URL`, created for
//! the test and dropped after it. Without that variable PostgreSQL tests are skipped (said
//! once on stderr with their number, see `skips`), unless `CASCADE_REQUIRE_PG=1`, which turns
//! a skip into a failure.

use tempfile::TempDir;
use werss_cascade::store::ScratchDb;

/// Which store a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// The server's URL (any database on it; tests create their own).
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when configured; `None` (the test is skipped) otherwise.
    pub fn postgres() -> Option<Self> {
        match std::env::var("CASCADE_TEST_PG_URL") {
            Ok(url) if !url.trim().is_empty() => Some(Self::Postgres(url)),
            _ => {
                assert!(
                    std::env::var("CASCADE_REQUIRE_PG").as_deref() != Ok("1"),
                    "CASCADE_REQUIRE_PG=1 but CASCADE_TEST_PG_URL is not set"
                );
                super::skips::note(super::skips::Skip::Postgres);
                None
            }
        }
    }
}

/// A database for one test; a PostgreSQL one is dropped when this is.
pub struct TestDb {
    pub url: String,
    _pg: Option<ScratchDb>,
}

impl TestDb {
    pub async fn create(backend: &Backend, dir: &TempDir) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite:///{}", dir.path().join("cascade.db").display()),
                _pg: None,
            },
            Backend::Postgres(server) => {
                let db = ScratchDb::create(server, "t")
                    .await
                    .expect("a test database on the server at CASCADE_TEST_PG_URL");
                Self {
                    url: db.url.clone(),
                    _pg: Some(db),
                }
            }
        }
    }
}

/// Runs a test once per backend, as `name::sqlite` and `name::postgres`. The body sees the
/// backend under the name given in the signature; attributes (the `tokio::test` flavour) go
/// on both.
macro_rules! on_both {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            async fn sqlite() {
                let $backend = $crate::helpers::db::Backend::Sqlite;
                $body
            }

            $(#[$meta])*
            async fn postgres() {
                let Some($backend) = $crate::helpers::db::Backend::postgres() else {
                    return;
                };
                $body
            }
        }
    };
}
pub(crate) use on_both;

/// Runs `sql` (several statements allowed) on the database at `url`, on a connection of its
/// own, as another program would.
pub async fn execute(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    match werss_cascade::store::parse_db_url(url).expect("database URL") {
        werss_cascade::store::DbUrl::Sqlite(Some(path)) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite");
            c.execute(sqlx::AssertSqlSafe(sql.to_string()))
                .await
                .expect("statements run");
        }
        werss_cascade::store::DbUrl::Sqlite(None) => panic!("an in-memory database is private"),
        werss_cascade::store::DbUrl::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("pg");
            c.execute(sqlx::AssertSqlSafe(sql.to_string()))
                .await
                .expect("statements run");
        }
    }
}

/// The rows of the query `sql` on the database at `url`, read on a connection of its own
/// (as another program would), each decoded as `T` (a tuple: cast columns so both backends
/// agree, e.g. `CAST(n AS BIGINT)`).
pub async fn query<T>(url: &str, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + Send
        + Unpin,
{
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match werss_cascade::store::parse_db_url(url).expect("database URL") {
        werss_cascade::store::DbUrl::Sqlite(Some(path)) => {
            let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite");
            sqlx::query_as(sql).fetch_all(&mut c).await.expect("rows")
        }
        werss_cascade::store::DbUrl::Sqlite(None) => panic!("an in-memory database is private"),
        werss_cascade::store::DbUrl::Postgres(url) => {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("pg");
            sqlx::query_as(sql).fetch_all(&mut c).await.expect("rows")
        }
    }
}
