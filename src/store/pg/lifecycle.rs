//! MERGE: what the unconverted `alloc.rs` still uses of the old lifecycle module; the
//! lifecycle lives in `ops::lifecycle` now. Delete this file with `alloc.rs`.

use crate::store::Result;
use chrono::NaiveDateTime;
use sqlx::PgConnection;

/// Terminal `failed` with reason `not_found` (task or feeds gone).
pub(super) async fn fail_not_found(
    tx: &mut PgConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "UPDATE we_cascade_task_allocations SET status = 'failed', reason = 'not_found',
            error_message = '任务不存在', completed_at = $2, updated_at = $2
          WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE we_feeds SET open_allocation_id = NULL WHERE open_allocation_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}
