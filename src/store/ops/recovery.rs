//! Giving work back: node releases and the reaper (PROTOCOL §4.3), both through the failure
//! table of the state machine. The reaper runs on every parent at once on PostgreSQL: each
//! pass takes only rows no other parent holds (`SKIP LOCKED`), and marks a node offline in a
//! statement that only one parent can win.

use super::attempts::{Ended, Ending, record};
use super::lifecycle::{apply_failure, load, requeue_at};
use super::{SyncLogRow, insert_sync_log};
use crate::dispatch::retry::Reason;
use crate::store::db::{Tx, args};
use crate::store::{Error, Failure, LifecyclePolicy, ReapOutcome, Result, Store};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;

/// Released allocation ids, and the rejected ones with why (`not_found`, `lease_lost`).
type Released = (Vec<String>, Vec<(String, &'static str)>);

impl Store {
    /// Returns held allocations to `pending` without spending an attempt.
    pub async fn release(
        &self,
        node_id: &str,
        items: Vec<(String, Option<String>)>,
        now: NaiveDateTime,
    ) -> Result<(Vec<String>, Vec<(String, &'static str)>)> {
        let node_id = node_id.to_string();
        self.db
            .write(move |tx| Box::pin(async move { release(tx, &node_id, items, now).await }))
            .await
    }

    /// Expires leases and takes work from silent nodes.
    pub async fn reap(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
        policy: LifecyclePolicy,
    ) -> Result<ReapOutcome> {
        // Expired leases, then silent nodes: two transactions, so the first touches
        // allocation rows only (never a node row) and cannot deadlock with node-scoped writes.
        let expired = self
            .db
            .write(move |tx| Box::pin(async move { expire_leases(tx, now, &policy).await }))
            .await?;
        let (offline_nodes, from_offline) = self
            .db
            .write(move |tx| {
                Box::pin(async move { take_from_silent(tx, now, offline_after, &policy).await })
            })
            .await?;
        Ok(ReapOutcome {
            expired,
            offline_nodes,
            from_offline,
        })
    }
}

async fn release(
    tx: &mut Tx,
    node_id: &str,
    items: Vec<(String, Option<String>)>,
    now: NaiveDateTime,
) -> Result<Released> {
    super::nodes::touch(tx, node_id, now).await?;
    let (mut rows, mut released, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    let failure = Failure::by_parent(Reason::Released, None);
    for (id, token) in items {
        let row = match load(tx, &id).await {
            Ok(row) => row,
            Err(Error::NotFound(_)) => {
                rejected.push((id, "not_found"));
                continue;
            }
            Err(e) => return Err(e),
        };
        // Named twice: the second is no longer held once the first is released.
        let again = released.contains(&id);
        if again || !row.is_held() || row.check_holder(node_id, token.as_deref()).is_err() {
            rejected.push((id, "lease_lost"));
            continue;
        }
        released.push(id);
        rows.push(row);
    }
    let ended = Ended {
        outcome: "released",
        reason: Reason::Released.as_str(),
        error: None,
    };
    record(tx, Ending::Ids(&released), &ended, now).await?;
    for row in &rows {
        requeue_at(tx, row, &failure, now, false).await?;
    }
    if !released.is_empty() {
        let extra = json!({ "allocation_ids": released });
        let log = SyncLogRow {
            node_id,
            operation: "release",
            direction: "push",
            status: 1,
            data_count: i64::try_from(released.len()).unwrap_or(i64::MAX),
            error_message: None,
            extra: &extra,
        };
        insert_sync_log(tx, &log, now).await?;
    }
    Ok((released, rejected))
}

/// The attempt history's record of work the parent took back.
fn taken_back(f: &Failure) -> Ended<'_> {
    Ended {
        outcome: "expired",
        reason: f.reason.as_str(),
        error: f.error_message.as_deref(),
    }
}

/// Held allocations whose lease ended before `$1`, through `ix_cascade_alloc_held_lease`
/// (in lease order: an `ORDER BY id` made SQLite walk every row by its key instead).
pub(super) const EXPIRED_LEASES: &str = "SELECT id FROM we_cascade_task_allocations
  WHERE status IN ('claimed', 'executing') AND lease_expires_at < $1
  ORDER BY lease_expires_at {skip_locked}";

/// Fails (by the retry table) every held allocation whose lease ended before `now`; how many.
async fn expire_leases(tx: &mut Tx, now: NaiveDateTime, policy: &LifecyclePolicy) -> Result<usize> {
    let expired = tx.texts(EXPIRED_LEASES, args![now]).await?;
    let lease = Failure::by_parent(Reason::LeaseExpired, Some("lease expired"));
    record(tx, Ending::Ids(&expired), &taken_back(&lease), now).await?;
    for id in &expired {
        let row = load(tx, id).await?;
        let holder = row.node_id.clone().unwrap_or_default();
        apply_failure(tx, &row, &holder, &lease, now, policy).await?;
    }
    Ok(expired.len())
}

/// Marks child nodes silent for `offline_after` seconds offline (node row first, then its
/// allocations, like every node-scoped write) and fails what they held: (nodes, allocations).
async fn take_from_silent(
    tx: &mut Tx,
    now: NaiveDateTime,
    offline_after: i64,
    policy: &LifecyclePolicy,
) -> Result<(usize, usize)> {
    let silent = now - TimeDelta::seconds(offline_after);
    let offline = tx
        .texts(
            "UPDATE we_cascade_nodes SET status = 0
              WHERE id IN (SELECT id FROM we_cascade_nodes
                            WHERE node_type = 1 AND status = 1
                              AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $1)
                            ORDER BY id {skip_locked})
              RETURNING id",
            args![silent],
        )
        .await?;
    let gone = Failure::by_parent(Reason::NodeOffline, Some("node offline"));
    let mut taken = 0;
    for node in &offline {
        let held = tx
            .texts(
                "SELECT id FROM we_cascade_task_allocations
                  WHERE node_id = $1 AND status IN ('claimed', 'executing')
                  ORDER BY id {skip_locked}",
                args![node],
            )
            .await?;
        record(tx, Ending::Ids(&held), &taken_back(&gone), now).await?;
        for id in held {
            let row = load(tx, &id).await?;
            apply_failure(tx, &row, node, &gone, now, policy).await?;
            taken += 1;
        }
    }
    Ok((offline.len(), taken))
}
