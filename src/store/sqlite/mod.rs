//! SQLite backend: WAL, busy timeout, one write connection (the single writer path) and a small
//! read pool. Every write request is one transaction on the write connection.

mod articles;
mod beats;
mod catalog;
mod commands;
mod flows;
mod lifecycle;
mod migrate;
mod monitor;
mod nodes;
mod recovery;
mod row;
mod sources;

use super::{Error, Page, Result, SyncLog, SyncLogFilter, User};
use crate::protocol::time::to_db;
use crate::store::rows::{self, RowExt, sync_log_from_row};
use chrono::NaiveDateTime;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::PathBuf;
use std::time::Duration;

/// The SQLite implementation of the store.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    beats: std::sync::Arc<beats::BeatBuffer>,
}

impl SqliteStore {
    /// Opens `path` (or memory), creating the file and its folder, and migrates.
    pub(crate) async fn open(path: Option<PathBuf>) -> Result<Self> {
        let base = SqliteConnectOptions::new()
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(false);
        let Some(path) = path else {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base.in_memory(true))
                .await?;
            migrate::run(&pool).await?;
            return Ok(Self {
                write: pool.clone(),
                read: pool,
                beats: Default::default(),
            });
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Unsupported(format!("cannot create folder {}: {e}", dir.display()))
            })?;
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(base.clone().filename(&path).create_if_missing(true))
            .await?;
        migrate::run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(base.filename(&path).read_only(true))
            .await?;
        Ok(Self {
            write,
            read,
            beats: Default::default(),
        })
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>> {
        // The read pool: the scheduler reads a setting every second, never queued behind a
        // write.
        let value = sqlx::query_scalar("SELECT value FROM cascade_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        Ok(value)
    }

    pub(crate) async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        // Read first: a database at rest (another process writing, a local command beside a
        // running parent) is not written to for a key that exists.
        if let Some(stored) = self.setting(key).await? {
            return Ok(stored);
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO cascade_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM cascade_settings WHERE key = $1")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub(crate) async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(rows::SET_SETTING)
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub(crate) async fn probe_write(&self, now: NaiveDateTime) -> Result<()> {
        self.set_setting("readiness_probe", &crate::protocol::time::to_db(now))
            .await
    }

    pub(crate) async fn count_users(&self) -> Result<i64> {
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM we_users")
            .fetch_one(&self.write)
            .await?;
        Ok(n)
    }

    pub(crate) async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO we_users (id, username, password_hash, is_active, created_at, updated_at)
             VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(username)
        .bind(password_hash)
        .bind(to_db(now))
        .execute(&self.write)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::Conflict(format!("user '{username}' already exists")));
        }
        Ok(())
    }

    pub(crate) async fn find_user(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT username, password_hash, is_active FROM we_users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(User {
                username: r.text("username")?,
                password_hash: r.text("password_hash")?,
                is_active: r.flag("is_active")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn report_result(
        &self,
        node_id: &str,
        task_id: &str,
        result_count: i64,
        now: NaiveDateTime,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        nodes::touch(&mut tx, node_id, now).await?;
        let extra = serde_json::json!({ "task_id": task_id, "result_count": result_count });
        insert_sync_log(
            &mut tx,
            node_id,
            "report_result",
            "push",
            1,
            result_count,
            None,
            &extra,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_sync_logs(
        &self,
        filter: SyncLogFilter,
        page: Page,
    ) -> Result<(Vec<SyncLog>, i64)> {
        const WHERE: &str = "WHERE ($1 IS NULL OR node_id = $1) AND ($2 IS NULL OR operation = $2)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM we_cascade_sync_logs {WHERE}"
        )))
        .bind(&filter.node_id)
        .bind(&filter.operation)
        .fetch_one(&self.read)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM we_cascade_sync_logs {WHERE} ORDER BY started_at DESC, id DESC LIMIT $3 OFFSET $4"
        )))
        .bind(&filter.node_id)
        .bind(&filter.operation)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.read)
        .await?;
        let logs = rows
            .iter()
            .map(sync_log_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((logs, total))
    }
}

/// Inserts one complete sync log inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_sync_log(
    tx: &mut sqlx::SqliteConnection,
    node_id: &str,
    operation: &str,
    direction: &str,
    status: i64,
    data_count: i64,
    error_message: Option<&str>,
    extra: &serde_json::Value,
    now: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO we_cascade_sync_logs
           (id, node_id, operation, direction, status, data_count, error_message, extra_data, started_at, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(node_id)
    .bind(operation)
    .bind(direction)
    .bind(status)
    .bind(data_count)
    .bind(error_message)
    .bind(extra.to_string())
    .bind(to_db(now))
    .execute(tx)
    .await?;
    Ok(())
}
