//! Node records: CRUD, credentials, heartbeats and the holdings that follow a node's state.

use super::SqliteStore;
use crate::protocol::time::to_db;
use crate::store::rows::{RowExt, login_reminder_from_row, node_from_row, node_login_from_row};
use crate::store::{Error, LoginReminder, NewNode, Node, NodeCredential, NodeUpdate, Result};
use chrono::{NaiveDateTime, TimeDelta};
use sqlx::SqliteConnection;

const SELECT_NODE: &str = "SELECT n.*,
    (SELECT COALESCE(SUM(a.feed_count), 0) FROM we_cascade_task_allocations a
      WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing')) AS held_feeds
  FROM we_cascade_nodes n";

/// Reads a node inside the caller's transaction.
pub(super) async fn node_in(tx: &mut SqliteConnection, id: &str) -> Result<Node> {
    let sql = format!("{SELECT_NODE} WHERE n.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or(Error::NotFound("node"))?;
    node_from_row(&row)
}

/// Marks a node alive; part of every successful node write (PROTOCOL §4.4). A node
/// deactivated or removed since it authenticated is refused here, inside the write's
/// transaction, so it neither gets work nor comes back online.
pub(super) async fn touch(
    tx: &mut SqliteConnection,
    node_id: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE we_cascade_nodes SET last_heartbeat_at = $2, status = 1
          WHERE id = $1 AND is_active <> 0",
    )
    .bind(node_id)
    .bind(to_db(now))
    .execute(tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NodeInactive);
    }
    Ok(())
}

/// Returns what a node holds to `pending` without spending an attempt, and frees what was
/// assigned to it, so other nodes can take the work at once.
async fn requeue_holdings(
    tx: &mut SqliteConnection,
    node_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "UPDATE we_cascade_task_allocations
            SET status = 'pending', node_id = NULL, assigned_node_id = NULL, lease_token = NULL,
                lease_expires_at = NULL, run_deadline = NULL, reason = $2,
                attempt = MAX(attempt - 1, 0), available_at = $3, updated_at = $3
          WHERE node_id = $1 AND status IN ('claimed', 'executing')",
    )
    .bind(node_id)
    .bind(reason)
    .bind(to_db(now))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE we_cascade_task_allocations SET assigned_node_id = NULL, updated_at = $2
          WHERE assigned_node_id = $1 AND status = 'pending'",
    )
    .bind(node_id)
    .bind(to_db(now))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn notify_targets(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
    ) -> Result<Vec<crate::store::NotifyTarget>> {
        let rows = sqlx::query(
            "SELECT id, callback_url, api_key, api_secret_hash FROM we_cascade_nodes
              WHERE node_type = 1 AND is_active = 1 AND last_heartbeat_at >= $1
                AND callback_url IS NOT NULL AND callback_url <> ''
                AND api_key IS NOT NULL AND api_secret_hash IS NOT NULL",
        )
        .bind(to_db(now - TimeDelta::seconds(offline_after)))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::store::NotifyTarget {
                    node_id: r.text("id")?,
                    callback_url: r.text("callback_url")?,
                    api_key: r.text("api_key")?,
                    secret_hash: r.text("api_secret_hash")?,
                })
            })
            .collect()
    }

    pub(crate) async fn create_node(&self, node: NewNode, now: NaiveDateTime) -> Result<Node> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO we_cascade_nodes
               (id, node_type, name, description, api_url, status, sync_config, is_active,
                session_state, cooldown_level, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6, 1, 'unknown', 0, $7, $7)",
        )
        .bind(&id)
        .bind(node.node_type)
        .bind(&node.name)
        .bind(&node.description)
        .bind(&node.api_url)
        .bind(node.sync_config.to_string())
        .bind(to_db(now))
        .execute(&self.write)
        .await?;
        self.get_node_on(&self.write, &id).await
    }

    pub(crate) async fn list_nodes(&self, node_type: Option<i64>) -> Result<Vec<Node>> {
        let sql = format!(
            "{SELECT_NODE} WHERE ($1 IS NULL OR n.node_type = $1) ORDER BY n.created_at, n.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(node_type)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    pub(crate) async fn list_node_logins(
        &self,
        node_id: Option<String>,
    ) -> Result<Vec<crate::store::NodeLogin>> {
        let rows = sqlx::query(
            "SELECT l.*, n.name AS node_name FROM cascade_node_logins l
               JOIN we_cascade_nodes n ON n.id = l.node_id
              WHERE $1 IS NULL OR l.node_id = $1
              ORDER BY n.name, l.node_id, l.kind, l.login_id",
        )
        .bind(node_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(node_login_from_row).collect()
    }

    pub(crate) async fn login_reminders(
        &self,
        node_id: Option<String>,
    ) -> Result<Vec<LoginReminder>> {
        let rows = sqlx::query(
            "SELECT l.*, n.name AS node_name FROM cascade_node_logins l
               JOIN we_cascade_nodes n ON n.id = l.node_id
              WHERE ($1 IS NULL OR l.node_id = $1) AND n.is_active <> 0
              ORDER BY l.node_id, l.login_id",
        )
        .bind(node_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(login_reminder_from_row).collect()
    }

    pub(crate) async fn set_login_reminder(
        &self,
        seen: LoginReminder,
        stage: i64,
        stage_expires_at: Option<NaiveDateTime>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE cascade_node_logins SET reminded_stage = $7, reminded_expires_at = $8
              WHERE node_id = $1 AND login_id = $2 AND state = $3 AND expires_at IS $4
                AND reminded_stage = $5 AND reminded_expires_at IS $6",
        )
        .bind(&seen.login.node_id)
        .bind(&seen.login.login_id)
        .bind(&seen.login.state)
        .bind(seen.login.expires_at.map(to_db))
        .bind(seen.stage)
        .bind(seen.stage_expires_at.map(to_db))
        .bind(stage)
        .bind(stage_expires_at.map(to_db))
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn get_node(&self, id: &str) -> Result<Node> {
        self.get_node_on(&self.read, id).await
    }

    async fn get_node_on(&self, pool: &sqlx::SqlitePool, id: &str) -> Result<Node> {
        let sql = format!("{SELECT_NODE} WHERE n.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .ok_or(Error::NotFound("node"))?;
        node_from_row(&row)
    }

    pub(crate) async fn update_node(
        &self,
        id: &str,
        update: NodeUpdate,
        now: NaiveDateTime,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let (set_api_url, api_url) = match update.api_url {
            Some(v) => (true, v),
            None => (false, None),
        };
        let result = sqlx::query(
            "UPDATE we_cascade_nodes SET
                name = COALESCE($2, name),
                description = COALESCE($3, description),
                api_url = CASE WHEN $4 THEN $5 ELSE api_url END,
                status = CASE WHEN $6 IS NULL THEN status
                              WHEN $6 = 0 THEN 2
                              WHEN is_active = 0 THEN 0 ELSE status END,
                is_active = COALESCE($6, is_active),
                sync_config = COALESCE($7, sync_config),
                cooldown_until = CASE WHEN $8 THEN NULL ELSE cooldown_until END,
                cooldown_level = CASE WHEN $8 THEN 0 ELSE cooldown_level END,
                session_state = CASE WHEN $8 THEN 'unknown' ELSE session_state END,
                updated_at = $9
              WHERE id = $1",
        )
        .bind(id)
        .bind(update.name)
        .bind(update.description)
        .bind(set_api_url)
        .bind(api_url)
        .bind(update.is_active)
        .bind(update.sync_config.map(|v| v.to_string()))
        .bind(update.reset_state)
        .bind(to_db(now))
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("node"));
        }
        if update.is_active == Some(false) {
            requeue_holdings(&mut tx, id, "node_disabled", now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn delete_node(&self, id: &str, now: NaiveDateTime) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let result = sqlx::query("DELETE FROM we_cascade_nodes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("node"));
        }
        sqlx::query("DELETE FROM cascade_node_logins WHERE node_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        requeue_holdings(&mut tx, id, "node_disabled", now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn set_node_credentials(
        &self,
        id: &str,
        api_key: &str,
        secret_hash: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let result = sqlx::query(
            "UPDATE we_cascade_nodes SET api_key = $2, api_secret_hash = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(api_key)
        .bind(secret_hash)
        .bind(to_db(now))
        .execute(&self.write)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("node"));
        }
        Ok(())
    }

    pub(crate) async fn find_node_credential(
        &self,
        api_key: &str,
    ) -> Result<Option<NodeCredential>> {
        let row = sqlx::query(
            "SELECT id, name, node_type, is_active, api_secret_hash FROM we_cascade_nodes WHERE api_key = $1",
        )
        .bind(api_key)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(NodeCredential {
                node_id: r.text("id")?,
                name: r.text("name")?,
                node_type: r.int("node_type")?,
                is_active: r.flag("is_active")?,
                secret_hash: r.text("api_secret_hash")?,
            })
        })
        .transpose()
    }
}
