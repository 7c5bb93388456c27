//! The allocation state machine (PROTOCOL §4.1–§4.3): reports from the holder, failures and
//! retries. Every change is one transaction with its sync log; on PostgreSQL the node row is
//! locked first, then the allocation row, then feeds.

use crate::store::db::{Tx, args};
use crate::store::rows::AllocRow;
use crate::store::{Error, Result};
use chrono::NaiveDateTime;

/// Reads (and on PostgreSQL locks) an allocation row.
pub(crate) async fn load(tx: &mut Tx, id: &str) -> Result<AllocRow> {
    let r = tx
        .opt(
            "SELECT * FROM we_cascade_task_allocations WHERE id = $1 {for_update}",
            args![id],
        )
        .await?
        .ok_or(Error::NotFound("allocation"))?;
    AllocRow::from_row(&r)
}

/// Terminal `failed` with reason `not_found` (task or feeds gone).
pub(crate) async fn fail_not_found(tx: &mut Tx, id: &str, now: NaiveDateTime) -> Result<()> {
    tx.exec(
        "UPDATE we_cascade_task_allocations SET status = 'failed', reason = 'not_found',
            error_message = '任务不存在', completed_at = $2, updated_at = $2
          WHERE id = $1",
        args![id, now],
    )
    .await?;
    close_feeds(tx, id).await
}

/// Frees the feeds of an allocation that reached a terminal state (invariant 5).
pub(crate) async fn close_feeds(tx: &mut Tx, id: &str) -> Result<()> {
    tx.exec(
        "UPDATE we_feeds SET open_allocation_id = NULL WHERE open_allocation_id = $1",
        args![id],
    )
    .await?;
    Ok(())
}
