//! The node helpers the SQLite modules not yet written once still call inside their
//! transactions. Node operations live in `store::ops::nodes`.
// MERGE: duplicate of ops::nodes::{node_in, touch}; delete this file once alloc, articles,
// lifecycle, recovery and the rest of sqlite/mod.rs are converted.

use crate::protocol::time::to_db;
use crate::store::rows::node_from_row;
use crate::store::{Error, Node, Result};
use chrono::NaiveDateTime;
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
