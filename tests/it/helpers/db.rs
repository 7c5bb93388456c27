//! Test databases on either backend. SQLite: a file in the test's temporary folder.
//! PostgreSQL: a database of its own on the server named by `CASCADE_TEST_PG_URL`, created for
//! the test and dropped after it. Without that variable PostgreSQL tests are skipped (said
//! once on stderr), unless `CASCADE_REQUIRE_PG=1`, which turns a skip into a failure.

use sqlx::{Connection, Executor, PgConnection};
use std::io::Write;
use std::sync::Once;
use tempfile::TempDir;

/// Which store a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    /// The server's URL (any database on it; tests create their own).
    Postgres(String),
}

static SKIP_NOTICE: Once = Once::new();

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
                SKIP_NOTICE.call_once(|| {
                    // Written past the test harness's capture, so `cargo test` shows it.
                    let _ = writeln!(
                        std::io::stderr(),
                        "note: PostgreSQL tests SKIPPED (set CASCADE_TEST_PG_URL=postgres://… to run them; \
                         CASCADE_REQUIRE_PG=1 makes a skip fail)"
                    );
                });
                None
            }
        }
    }
}

/// A database for one test; a PostgreSQL one is dropped when this is.
pub struct TestDb {
    pub url: String,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn create(backend: &Backend, dir: &TempDir) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite:///{}", dir.path().join("cascade.db").display()),
                pg: None,
            },
            Backend::Postgres(server) => {
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut admin = PgConnection::connect(server)
                    .await
                    .expect("PostgreSQL server at CASCADE_TEST_PG_URL answers");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("test database created");
                admin.close().await.ok();
                Self {
                    url: with_database(server, &name),
                    pg: Some((server.clone(), name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((server, name)) = self.pg.take() else {
            return;
        };
        // Drop may run inside a runtime, so the drop gets a thread and a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database could not be dropped: {dropped:?}");
        }
    }
}

/// `server` with its database replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = server.split_once('?').map_or((server, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
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

#[test]
fn database_is_swapped_in_the_url() {
    assert_eq!(
        with_database("postgres://u@h:5/base?sslmode=disable", "t_1"),
        "postgres://u@h:5/t_1?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://u@h:5", "t_1"),
        "postgres://u@h:5/t_1"
    );
}
