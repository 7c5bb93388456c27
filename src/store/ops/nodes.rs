//! Node records: CRUD, credentials and the holdings that follow a node's state.

use crate::store::db::{Tx, args};
use crate::store::rows::node_from_row;
use crate::store::{Error, Node, Result};
use chrono::NaiveDateTime;

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

/// Locks the row of the node making a request; gone since it authenticated → `NodeInactive`.
pub(crate) async fn lock_self(tx: &mut Tx, id: &str) -> Result<()> {
    match lock(tx, id).await {
        Err(Error::NotFound(_)) => Err(Error::NodeInactive),
        other => other,
    }
}

/// Marks an active node online as of `now` (never moving its last heartbeat backwards);
/// `NodeInactive` when it was deactivated or removed.
pub(crate) async fn touch(tx: &mut Tx, node_id: &str, now: NaiveDateTime) -> Result<()> {
    let done = tx
        .exec(
            "UPDATE we_cascade_nodes SET status = 1,
                last_heartbeat_at = CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < $2
                                         THEN $2 ELSE last_heartbeat_at END
              WHERE id = $1 AND is_active <> {false}",
            args![node_id, now],
        )
        .await?;
    if done == 0 {
        return Err(Error::NodeInactive);
    }
    Ok(())
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
