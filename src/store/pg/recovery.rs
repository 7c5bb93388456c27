//! Giving work back: node releases and the reaper (PROTOCOL §4.3). The reaper runs on every
//! parent at once: each pass takes only rows no other parent holds (`SKIP LOCKED`), and marks
//! a node offline in a statement that only one parent can win.

use super::PgStore;
use super::insert_sync_log;
use super::lifecycle::{apply_failure, load, requeue_at};
use super::nodes::{lock_self, touch};
use crate::dispatch::retry::Reason;
use crate::store::{Error, Failure, LifecyclePolicy, ReapOutcome, Result};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;

impl PgStore {
    pub(crate) async fn release(
        &self,
        node_id: &str,
        items: Vec<(String, Option<String>)>,
        now: NaiveDateTime,
    ) -> Result<(Vec<String>, Vec<(String, &'static str)>)> {
        let mut tx = self.pool.begin().await?;
        lock_self(&mut tx, node_id).await?;
        touch(&mut tx, node_id, now).await?;
        let (mut released, mut rejected) = (Vec::new(), Vec::new());
        let failure = Failure::by_parent(Reason::Released, None);
        for (id, token) in items {
            let row = match load(&mut tx, &id).await {
                Ok(row) => row,
                Err(Error::NotFound(_)) => {
                    rejected.push((id, "not_found"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !row.is_held() || row.check_holder(node_id, token.as_deref()).is_err() {
                rejected.push((id, "lease_lost"));
                continue;
            }
            requeue_at(&mut tx, &row, &failure, now, false).await?;
            released.push(id);
        }
        if !released.is_empty() {
            let extra = json!({ "allocation_ids": released });
            let count = i64::try_from(released.len()).unwrap_or(i64::MAX);
            insert_sync_log(
                &mut tx, node_id, "release", "push", 1, count, None, &extra, now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok((released, rejected))
    }

    pub(crate) async fn reap(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
        policy: LifecyclePolicy,
    ) -> Result<ReapOutcome> {
        let mut outcome = ReapOutcome::default();
        // Expired leases: allocation rows only, never a node row, so this pass cannot
        // deadlock with node-scoped writes.
        let mut tx = self.pool.begin().await?;
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM we_cascade_task_allocations
              WHERE status IN ('claimed', 'executing') AND lease_expires_at < $1
              ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let lease = Failure::by_parent(Reason::LeaseExpired, Some("lease expired"));
        for id in expired {
            let row = load(&mut tx, &id).await?;
            let holder = row.node_id.clone().unwrap_or_default();
            apply_failure(&mut tx, &row, &holder, &lease, now, &policy).await?;
            outcome.expired += 1;
        }
        tx.commit().await?;
        // Silent nodes: node row first, then its allocations, like every node-scoped write.
        let silent = now - TimeDelta::seconds(offline_after);
        let mut tx = self.pool.begin().await?;
        let offline: Vec<String> = sqlx::query_scalar(
            "UPDATE we_cascade_nodes SET status = 0
              WHERE id IN (SELECT id FROM we_cascade_nodes
                            WHERE node_type = 1 AND status = 1
                              AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $1)
                            ORDER BY id FOR UPDATE SKIP LOCKED)
              RETURNING id",
        )
        .bind(silent)
        .fetch_all(&mut *tx)
        .await?;
        outcome.offline_nodes = offline.len();
        let gone = Failure::by_parent(Reason::NodeOffline, Some("node offline"));
        for node in offline {
            let held: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM we_cascade_task_allocations
                  WHERE node_id = $1 AND status IN ('claimed', 'executing')
                  ORDER BY id FOR UPDATE SKIP LOCKED",
            )
            .bind(&node)
            .fetch_all(&mut *tx)
            .await?;
            for id in held {
                let row = load(&mut tx, &id).await?;
                apply_failure(&mut tx, &row, &node, &gone, now, &policy).await?;
                outcome.from_offline += 1;
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }
}
