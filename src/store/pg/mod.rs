//! PostgreSQL backend, for several parents on one database (DESIGN §6). Every write request is
//! one transaction. Node-scoped writes lock the node row first, then allocations, then feeds,
//! so concurrent parents never deadlock on each other; claims skip rows another transaction
//! holds (`FOR UPDATE SKIP LOCKED`); dispatch locks the feeds it opens in id order.

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

use super::rows::{self, RowExt, sync_log_from_row};
use super::{Error, Page, Result, SyncLog, SyncLogFilter, User};
use chrono::NaiveDateTime;
use sqlx::PgConnection;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::time::Duration;

/// The channel parents use to wake each other's long-polls.
const WAKE_CHANNEL: &str = "cascade_wake";

/// The PostgreSQL implementation of the store.
#[derive(Clone)]
pub(crate) struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (a `postgres://` URL) and migrates.
    pub(crate) async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        migrate::run(&pool).await?;
        Ok(Self { pool })
    }

    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Tells every parent's listener that work may have appeared.
    pub(crate) async fn wake_peers(&self) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(WAKE_CHANNEL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A listener on the wake channel.
    pub(crate) async fn wake_listener(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(listener)
    }

    pub(crate) async fn setting(&self, key: &str) -> Result<Option<String>> {
        let value = sqlx::query_scalar("SELECT value FROM cascade_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    pub(crate) async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        if let Some(stored) = self.setting(key).await? {
            return Ok(stored);
        }
        sqlx::query(
            "INSERT INTO cascade_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT value FROM cascade_settings WHERE key = $1")
                .bind(key)
                .fetch_one(&self.pool)
                .await?;
        Ok(stored)
    }

    pub(crate) async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(rows::SET_SETTING)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(crate) async fn probe_write(&self, now: NaiveDateTime) -> Result<()> {
        self.set_setting("readiness_probe", &crate::protocol::time::to_db(now))
            .await
    }

    pub(crate) async fn count_users(&self) -> Result<i64> {
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM we_users")
            .fetch_one(&self.pool)
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
             VALUES ($1, $2, $3, TRUE, $4, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .execute(&self.pool)
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
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await?;
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
        const WHERE: &str =
            "WHERE ($1::text IS NULL OR node_id = $1) AND ($2::text IS NULL OR operation = $2)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM we_cascade_sync_logs {WHERE}"
        )))
        .bind(&filter.node_id)
        .bind(&filter.operation)
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM we_cascade_sync_logs {WHERE} ORDER BY started_at DESC, id DESC LIMIT $3 OFFSET $4"
        )))
        .bind(&filter.node_id)
        .bind(&filter.operation)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.pool)
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
    tx: &mut PgConnection,
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
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}
