//! Throwaway PostgreSQL databases for tests and benchmarks: created on a server, dropped
//! (with their connections) when the handle is dropped.

use super::url::with_database;
use super::{Error, Result, parse_db_url};
use sqlx::{Connection, Executor, PgConnection};

/// A database of its own on a PostgreSQL server; dropped with this handle.
pub struct ScratchDb {
    /// Its URL.
    pub url: String,
    server: String,
    name: String,
}

impl ScratchDb {
    /// Creates `<prefix>_<random>` on the server of `server_url` (any database on it).
    ///
    /// # Errors
    /// Not a PostgreSQL URL, or the server refused.
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self> {
        let super::DbUrl::Postgres(server) = parse_db_url(server_url)? else {
            return Err(Error::Unsupported(
                "scratch databases need a postgresql:// URL".into(),
            ));
        };
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        admin.close().await?;
        Ok(Self {
            url: with_database(&server, &name),
            server,
            name,
        })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime, so the drop gets a thread and a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server).await?;
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await?;
                admin.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "scratch database could not be dropped");
        }
    }
}
