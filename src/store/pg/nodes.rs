//! The node helpers the PostgreSQL modules not yet written once still call inside their
//! transactions. Node operations live in `store::ops::nodes`.
// MERGE: duplicate of ops::nodes::{lock, lock_self, node_in, touch}; delete this file once
// alloc, articles, lifecycle, recovery and the rest of pg/mod.rs are converted.

use crate::store::rows::node_from_row;
use crate::store::{Error, Node, Result};
use chrono::NaiveDateTime;
use sqlx::PgConnection;

const SELECT_NODE: &str = "SELECT n.*,
    (SELECT COALESCE(SUM(a.feed_count), 0)::bigint FROM we_cascade_task_allocations a
      WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing')) AS held_feeds
  FROM we_cascade_nodes n";

/// Locks a node's row for the rest of the transaction. Every node-scoped write takes this lock
/// first, so writes for one node are serialized across parents and lock in one order.
pub(super) async fn lock(tx: &mut PgConnection, id: &str) -> Result<()> {
    sqlx::query_scalar::<_, String>("SELECT id FROM we_cascade_nodes WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or(Error::NotFound("node"))?;
    Ok(())
}

/// Locks the row of the node making a request; gone since it authenticated → `NodeInactive`.
pub(super) async fn lock_self(tx: &mut PgConnection, id: &str) -> Result<()> {
    match lock(tx, id).await {
        Err(Error::NotFound(_)) => Err(Error::NodeInactive),
        other => other,
    }
}

/// Reads a node inside the caller's transaction.
pub(super) async fn node_in(tx: &mut PgConnection, id: &str) -> Result<Node> {
    let sql = format!("{SELECT_NODE} WHERE n.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or(Error::NotFound("node"))?;
    node_from_row(&row)
}

/// Marks a node alive; part of every successful node write (PROTOCOL §4.4).
pub(super) async fn touch(tx: &mut PgConnection, node_id: &str, now: NaiveDateTime) -> Result<()> {
    let done = sqlx::query(
        "UPDATE we_cascade_nodes SET status = 1,
            last_heartbeat_at = GREATEST(last_heartbeat_at, $2)
          WHERE id = $1 AND is_active",
    )
    .bind(node_id)
    .bind(now)
    .execute(tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NodeInactive);
    }
    Ok(())
}
