//! Node records: CRUD, credentials and the holdings that follow a node's state.

use super::attempts::{Ended, Ending, record};
use crate::store::db::{Tx, args};
use crate::store::rows::{RowExt, login_reminder_from_row, node_from_row, node_login_from_row};
use crate::store::{
    Error, LoginReminder, NewNode, Node, NodeCredential, NodeLogin, NodeUpdate, NotifyTarget,
    Result, Store,
};
use chrono::{NaiveDateTime, TimeDelta};

/// Locks a node's row for the rest of the transaction (PostgreSQL; SQLite has one writer).
/// Every node-scoped write takes this lock first, so writes for one node are serialized
/// across parents and lock in one order.
pub(crate) async fn lock(tx: &mut Tx, id: &str) -> Result<()> {
    tx.opt(
        "SELECT id FROM we_cascade_nodes WHERE id = $1 {for_update}",
        args![id],
    )
    .await?
    .ok_or(Error::NotFound("node"))?;
    Ok(())
}

/// The statement that marks an active node online as of `now` (never moving its last
/// heartbeat backwards). As an `UPDATE` it also locks the node's row on PostgreSQL, so a
/// node-scoped write may start with it instead of [`lock`].
const TOUCH: &str = "UPDATE we_cascade_nodes SET status = 1,
    last_heartbeat_at = CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < $2
                             THEN $2 ELSE last_heartbeat_at END
  WHERE id = $1 AND is_active <> {false}";

/// Marks an active node online as of `now`; `NodeInactive` when it was deactivated or
/// removed.
pub(crate) async fn touch(tx: &mut Tx, node_id: &str, now: NaiveDateTime) -> Result<()> {
    if tx.exec(TOUCH, args![node_id, now]).await? == 0 {
        return Err(Error::NodeInactive);
    }
    Ok(())
}

/// [`touch`] for a holder's report, which also locks the node's row before the allocation's:
/// a completion also records the node's last sync. The node's cooldown level (`None` for an
/// adopted row without one), so a completion resets it only when it is not already 0.
pub(crate) async fn touch_report(
    tx: &mut Tx,
    node_id: &str,
    now: NaiveDateTime,
    checked: Option<i64>,
) -> Result<Option<i64>> {
    // A completion also counts its feeds in the node's measuring windows
    // (`dispatch::capacity`): a window older than one length starts a new one, and the
    // finished window becomes the one before (or nothing, when it is older still).
    let epoch = now.and_utc().timestamp();
    let row = tx
        .opt(
            "UPDATE we_cascade_nodes SET status = 1,
            last_heartbeat_at = CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < $2
                                     THEN $2 ELSE last_heartbeat_at END,
            last_sync_at = CASE WHEN $3 THEN $2 ELSE last_sync_at END,
            rate_prev = CASE WHEN NOT $3 THEN rate_prev
                             WHEN rate_window_at IS NULL OR $4 - rate_window_at >= 2 * $6 THEN 0
                             WHEN $4 - rate_window_at >= $6 THEN rate_done
                             ELSE rate_prev END,
            rate_done = CASE WHEN NOT $3 THEN rate_done
                             WHEN rate_window_at IS NULL OR $4 - rate_window_at >= $6 THEN $5
                             ELSE rate_done + $5 END,
            rate_window_at = CASE WHEN $3 AND (rate_window_at IS NULL OR $4 - rate_window_at >= $6)
                                  THEN $4 ELSE rate_window_at END
          WHERE id = $1 AND is_active <> {false}
          RETURNING id, cooldown_level",
            args![
                node_id,
                now,
                checked.is_some(),
                epoch,
                checked.unwrap_or(0),
                crate::dispatch::capacity::WINDOW
            ],
        )
        .await?
        .ok_or(Error::NodeInactive)?;
    row.opt_int("cooldown_level")
}

/// [`touch`], then the node with the feeds it holds. The read is a statement of its own:
/// on PostgreSQL an `UPDATE` that waited for the row's lock still reads other tables as of
/// its start, so a `RETURNING` subquery would miss what a concurrent claim of the same node
/// just committed (and the node would be given more than its capacity).
pub(crate) async fn touch_read(tx: &mut Tx, node_id: &str, now: NaiveDateTime) -> Result<Node> {
    touch(tx, node_id, now).await?;
    node_in(tx, node_id).await
}

/// A node with the feeds it holds (`held_feeds`).
pub(crate) const SELECT_NODE: &str = "SELECT n.*,
    (SELECT CAST(COALESCE(SUM(a.feed_count), 0) AS BIGINT) FROM we_cascade_task_allocations a
      WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing')) AS held_feeds
  FROM we_cascade_nodes n";

/// Reads a node inside the caller's transaction.
pub(crate) async fn node_in(tx: &mut Tx, id: &str) -> Result<Node> {
    let row = tx
        .opt(&format!("{SELECT_NODE} WHERE n.id = $1"), args![id])
        .await?
        .ok_or(Error::NotFound("node"))?;
    node_from_row(&row)
}

/// Returns what a node holds to `pending` without spending an attempt, and frees what was
/// assigned to it, so other nodes can take the work at once.
async fn requeue_holdings(
    tx: &mut Tx,
    node_id: &str,
    reason: &str,
    now: NaiveDateTime,
) -> Result<()> {
    let ended = Ended {
        outcome: "released",
        reason,
        error: None,
    };
    record(tx, Ending::HeldBy(node_id), &ended, now).await?;
    tx.exec(
        "UPDATE we_cascade_task_allocations
            SET status = 'pending', node_id = NULL, assigned_node_id = NULL, lease_token = NULL,
                lease_expires_at = NULL, run_deadline = NULL, reason = $2,
                attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END,
                available_at = $3, updated_at = $3
          WHERE node_id = $1 AND status IN ('claimed', 'executing')",
        args![node_id, reason, now],
    )
    .await?;
    tx.exec(
        "UPDATE we_cascade_task_allocations SET assigned_node_id = NULL, updated_at = $2
          WHERE assigned_node_id = $1 AND status = 'pending'",
        args![node_id, now],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Enabled nodes online with a callback URL and credentials.
    pub async fn notify_targets(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
    ) -> Result<Vec<NotifyTarget>> {
        let since = now - TimeDelta::seconds(offline_after);
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            "SELECT id, callback_url, api_key, api_secret_hash
                               FROM we_cascade_nodes
                              WHERE node_type = 1 AND is_active <> {false}
                                AND last_heartbeat_at >= $1
                                AND callback_url IS NOT NULL AND callback_url <> ''
                                AND api_key IS NOT NULL AND api_secret_hash IS NOT NULL",
                            args![since],
                        )
                        .await?;
                    rows.iter()
                        .map(|r| {
                            Ok(NotifyTarget {
                                node_id: r.text("id")?,
                                callback_url: r.text("callback_url")?,
                                api_key: r.text("api_key")?,
                                secret_hash: r.text("api_secret_hash")?,
                            })
                        })
                        .collect()
                })
            })
            .await
    }

    /// Creates a node record.
    pub async fn create_node(&self, node: NewNode, now: NaiveDateTime) -> Result<Node> {
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let id = uuid::Uuid::new_v4().to_string();
                    tx.exec(
                        "INSERT INTO we_cascade_nodes
                           (id, node_type, name, description, api_url, status, sync_config,
                            is_active, session_state, cooldown_level, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, 0, $6, {true}, 'unknown', 0, $7, $7)",
                        args![
                            &id,
                            node.node_type,
                            node.name,
                            node.description,
                            node.api_url,
                            node.sync_config.to_string(),
                            now,
                        ],
                    )
                    .await?;
                    node_in(tx, &id).await
                })
            })
            .await
    }

    /// Lists nodes, optionally of one type.
    pub async fn list_nodes(&self, node_type: Option<i64>) -> Result<Vec<Node>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            &format!(
                                "{SELECT_NODE} WHERE (CAST($1 AS BIGINT) IS NULL OR n.node_type = $1)
                                  ORDER BY n.created_at, n.id"
                            ),
                            args![node_type],
                        )
                        .await?;
                    rows.iter().map(node_from_row).collect()
                })
            })
            .await
    }

    /// The logins nodes reported (of one node when given), by node name, kind and id.
    pub async fn list_node_logins(&self, node_id: Option<String>) -> Result<Vec<NodeLogin>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            "SELECT l.*, n.name AS node_name FROM cascade_node_logins l
                               JOIN we_cascade_nodes n ON n.id = l.node_id
                              WHERE CAST($1 AS TEXT) IS NULL OR l.node_id = $1
                              ORDER BY n.name, l.node_id, l.kind, l.login_id",
                            args![node_id],
                        )
                        .await?;
                    rows.iter().map(node_login_from_row).collect()
                })
            })
            .await
    }

    /// The logins of active nodes (of one node when given) with their reminder columns.
    pub async fn login_reminders(&self, node_id: Option<String>) -> Result<Vec<LoginReminder>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            "SELECT l.*, n.name AS node_name FROM cascade_node_logins l
                               JOIN we_cascade_nodes n ON n.id = l.node_id
                              WHERE (CAST($1 AS TEXT) IS NULL OR l.node_id = $1)
                                AND n.is_active <> {false}
                              ORDER BY l.node_id, l.login_id",
                            args![node_id],
                        )
                        .await?;
                    rows.iter().map(login_reminder_from_row).collect()
                })
            })
            .await
    }

    /// Sets a login's reminder columns only if its row still holds what `seen` read (state,
    /// `expires_at`, reminder columns): a compare-and-set, so of several parents evaluating
    /// the same login one wins. Whether it was applied.
    pub async fn set_login_reminder(
        &self,
        seen: LoginReminder,
        stage: i64,
        stage_expires_at: Option<NaiveDateTime>,
    ) -> Result<bool> {
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec(
                            "UPDATE cascade_node_logins
                                SET reminded_stage = $7, reminded_expires_at = $8
                              WHERE node_id = $1 AND login_id = $2 AND state = $3
                                AND expires_at IS NOT DISTINCT FROM $4
                                AND reminded_stage = $5
                                AND reminded_expires_at IS NOT DISTINCT FROM $6",
                            args![
                                &seen.login.node_id,
                                &seen.login.login_id,
                                &seen.login.state,
                                seen.login.expires_at,
                                seen.stage,
                                seen.stage_expires_at,
                                stage,
                                stage_expires_at,
                            ],
                        )
                        .await?;
                    Ok(done == 1)
                })
            })
            .await
    }

    /// One node.
    pub async fn get_node(&self, id: &str) -> Result<Node> {
        let id = id.to_string();
        self.db
            .read(move |tx| Box::pin(async move { node_in(tx, &id).await }))
            .await
    }

    /// Applies an admin update; deactivation returns holdings to `pending`.
    pub async fn update_node(
        &self,
        id: &str,
        update: NodeUpdate,
        now: NaiveDateTime,
    ) -> Result<()> {
        let id = id.to_string();
        let done = self
            .db
            .write(move |tx| Box::pin(async move { update_node(tx, &id, update, now).await }))
            .await;
        self.creds.clear();
        done
    }

    /// Deletes a node; its holdings return to `pending`, its history stays.
    pub async fn delete_node(&self, id: &str, now: NaiveDateTime) -> Result<()> {
        let id = id.to_string();
        let done = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    lock(tx, &id).await?;
                    tx.exec("DELETE FROM we_cascade_nodes WHERE id = $1", args![&id])
                        .await?;
                    tx.exec(
                        "DELETE FROM cascade_node_logins WHERE node_id = $1",
                        args![&id],
                    )
                    .await?;
                    requeue_holdings(tx, &id, "node_disabled", now).await
                })
            })
            .await;
        self.creds.clear();
        done
    }

    /// Replaces a child's credentials (key in clear, secret as SHA-256 hex).
    pub async fn set_node_credentials(
        &self,
        id: &str,
        api_key: &str,
        secret_hash: &str,
        now: NaiveDateTime,
    ) -> Result<()> {
        let (id, api_key, hash) = (id.to_string(), api_key.to_string(), secret_hash.to_string());
        let done = self
            .db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec(
                            "UPDATE we_cascade_nodes
                                SET api_key = $2, api_secret_hash = $3, updated_at = $4
                              WHERE id = $1",
                            args![id, api_key, hash, now],
                        )
                        .await?;
                    if done == 0 {
                        return Err(Error::NotFound("node"));
                    }
                    Ok(())
                })
            })
            .await;
        self.creds.clear();
        done
    }

    /// The credential record of an api key, for authentication (reads only; cached for a
    /// few seconds, see [`crate::store::creds`]).
    pub async fn find_node_credential(&self, api_key: &str) -> Result<Option<NodeCredential>> {
        if let Some(cred) = self.creds.get(api_key) {
            return Ok(Some(cred));
        }
        let key = api_key.to_string();
        let found = self
            .db
            .read(move |tx| {
                Box::pin(async move {
                    let row = tx
                        .opt(
                            "SELECT id, name, node_type, is_active, api_secret_hash
                               FROM we_cascade_nodes WHERE api_key = $1",
                            args![key],
                        )
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
                })
            })
            .await?;
        if let Some(cred) = &found {
            self.creds.put(api_key, cred);
        }
        Ok(found)
    }
}

/// An admin update: the node row is locked first, then its holdings follow a deactivation.
async fn update_node(tx: &mut Tx, id: &str, update: NodeUpdate, now: NaiveDateTime) -> Result<()> {
    lock(tx, id).await?;
    let (set_api_url, api_url) = match update.api_url {
        Some(v) => (true, v),
        None => (false, None),
    };
    tx.exec(
        "UPDATE we_cascade_nodes SET
            name = COALESCE($2, name),
            description = COALESCE($3, description),
            api_url = CASE WHEN $4 THEN $5 ELSE api_url END,
            status = CASE WHEN CAST($6 AS BOOLEAN) IS NULL THEN status
                          WHEN $6 = {false} THEN 2
                          WHEN is_active = {false} THEN 0 ELSE status END,
            is_active = COALESCE($6, is_active),
            sync_config = COALESCE($7, sync_config),
            cooldown_until = CASE WHEN $8 THEN NULL ELSE cooldown_until END,
            cooldown_level = CASE WHEN $8 THEN 0 ELSE cooldown_level END,
            session_state = CASE WHEN $8 THEN 'unknown' ELSE session_state END,
            updated_at = $9
          WHERE id = $1",
        args![
            id,
            update.name,
            update.description,
            set_api_url,
            api_url,
            update.is_active,
            update.sync_config.map(|v| v.to_string()),
            update.reset_state,
            now,
        ],
    )
    .await?;
    if update.is_active == Some(false) {
        requeue_holdings(tx, id, "node_disabled", now).await?;
    }
    Ok(())
}
