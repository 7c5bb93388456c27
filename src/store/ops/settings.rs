//! Settings, admin accounts, result reports and sync logs.

use crate::store::db::{Tx, args};
use crate::store::rows::{self, RowExt, sync_log_from_row};
use crate::store::{Error, Page, Result, Store, SyncLog, SyncLogFilter, User};
use chrono::NaiveDateTime;

impl Store {
    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.db
            .read(|tx| Box::pin(async move { tx.exec("SELECT 1", &[]).await.map(drop) }))
            .await
    }

    /// Reads a parent setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.db
            .read(move |tx| Box::pin(async move { setting(tx, &key).await }))
            .await
    }

    /// Stores `value` under `key` unless one exists; returns the value now stored. Writes
    /// only when the key is missing (a database at rest, another process writing or a local
    /// command beside a running parent, is not written to for a key that exists).
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        if let Some(stored) = self.setting(key).await? {
            return Ok(stored);
        }
        let (key, value) = (key.to_string(), value.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "INSERT INTO cascade_settings (key, value) VALUES ($1, $2)
                         ON CONFLICT (key) DO NOTHING",
                        args![&key, &value],
                    )
                    .await?;
                    Ok(setting(tx, &key).await?.unwrap_or(value))
                })
            })
            .await
    }

    /// Stores `value` under `key`, replacing any.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(rows::SET_SETTING, args![key, value])
                        .await
                        .map(drop)
                })
            })
            .await
    }

    /// Writes one tiny row (the readiness probe): fails when the database cannot write.
    pub async fn probe_write(&self, now: NaiveDateTime) -> Result<()> {
        self.set_setting("readiness_probe", &crate::protocol::time::to_db(now))
            .await
    }

    /// Number of admin accounts.
    pub async fn count_users(&self) -> Result<i64> {
        self.db
            .read(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .int("SELECT COUNT(*) FROM we_users", &[])
                        .await?
                        .unwrap_or(0))
                })
            })
            .await
    }

    /// Creates an admin; `Conflict` if the username exists.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let (username, hash) = (username.to_string(), password_hash.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let added = tx
                        .exec(
                            "INSERT INTO we_users
                               (id, username, password_hash, is_active, created_at, updated_at)
                             VALUES ($1, $2, $3, {true}, $4, $4) ON CONFLICT (username) DO NOTHING",
                            args![uuid::Uuid::new_v4().to_string(), &username, hash, now],
                        )
                        .await?;
                    if added == 0 {
                        return Err(Error::Conflict(format!("user '{username}' already exists")));
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Replaces an admin's password hash; `NotFound` for an unknown username.
    pub async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let (username, hash) = (username.to_string(), password_hash.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let changed = tx
                        .exec(
                            "UPDATE we_users SET password_hash = $2, updated_at = $3
                              WHERE username = $1",
                            args![&username, hash, now],
                        )
                        .await?;
                    if changed == 0 {
                        return Err(Error::NotFound("user"));
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Looks an admin up by username.
    pub async fn find_user(&self, username: &str) -> Result<Option<User>> {
        let username = username.to_string();
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let row = tx
                        .opt(
                            "SELECT username, password_hash, is_active FROM we_users
                              WHERE username = $1",
                            args![username],
                        )
                        .await?;
                    row.map(|r| {
                        Ok(User {
                            username: r.text("username")?,
                            password_hash: r.text("password_hash")?,
                            is_active: r.flag("is_active")?,
                        })
                    })
                    .transpose()
                })
            })
            .await
    }

    /// Writes a `report_result` sync log and marks the node alive, in one transaction.
    pub async fn report_result(
        &self,
        node_id: &str,
        task_id: &str,
        result_count: i64,
        now: NaiveDateTime,
    ) -> Result<()> {
        let (node_id, task_id) = (node_id.to_string(), task_id.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    super::nodes::touch(tx, &node_id, now).await?;
                    let extra =
                        serde_json::json!({ "task_id": task_id, "result_count": result_count });
                    let log = SyncLogRow {
                        node_id: &node_id,
                        operation: "report_result",
                        direction: "push",
                        status: 1,
                        data_count: result_count,
                        error_message: None,
                        extra: &extra,
                    };
                    insert_sync_log(tx, &log, now).await
                })
            })
            .await
    }

    /// Sync logs, newest first.
    pub async fn list_sync_logs(
        &self,
        filter: SyncLogFilter,
        page: Page,
    ) -> Result<(Vec<SyncLog>, i64)> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    const WHERE: &str = "WHERE (CAST($1 AS TEXT) IS NULL OR node_id = $1)
                        AND (CAST($2 AS TEXT) IS NULL OR operation = $2)";
                    let filter_args = args![&filter.node_id, &filter.operation];
                    let total = tx
                        .int(
                            &format!("SELECT COUNT(*) FROM we_cascade_sync_logs {WHERE}"),
                            filter_args,
                        )
                        .await?
                        .unwrap_or(0);
                    let rows = tx
                        .rows(
                            &format!(
                                "SELECT * FROM we_cascade_sync_logs {WHERE}
                                  ORDER BY started_at DESC, id DESC LIMIT CAST($3 AS BIGINT) OFFSET CAST($4 AS BIGINT)"
                            ),
                            args![&filter.node_id, &filter.operation, page.limit, page.offset],
                        )
                        .await?;
                    let logs = rows.iter().map(sync_log_from_row).collect::<Result<_>>()?;
                    Ok((logs, total))
                })
            })
            .await
    }
}

async fn setting(tx: &mut Tx, key: &str) -> Result<Option<String>> {
    tx.text(
        "SELECT value FROM cascade_settings WHERE key = $1",
        args![key],
    )
    .await
}

/// A complete sync log, written inside the caller's transaction.
pub(crate) struct SyncLogRow<'a> {
    pub(crate) node_id: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) direction: &'a str,
    pub(crate) status: i64,
    pub(crate) data_count: i64,
    pub(crate) error_message: Option<&'a str>,
    pub(crate) extra: &'a serde_json::Value,
}

/// Inserts one complete sync log inside the caller's transaction.
pub(crate) async fn insert_sync_log(
    tx: &mut Tx,
    log: &SyncLogRow<'_>,
    now: NaiveDateTime,
) -> Result<()> {
    tx.exec(
        "INSERT INTO we_cascade_sync_logs
           (id, node_id, operation, direction, status, data_count, error_message, extra_data,
            started_at, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        args![
            uuid::Uuid::new_v4().to_string(),
            log.node_id,
            log.operation,
            log.direction,
            log.status,
            log.data_count,
            log.error_message,
            log.extra.to_string(),
            now,
        ],
    )
    .await?;
    Ok(())
}
