//! Heartbeats: liveness and extras, renewal of live leases and the `lost` list, in one
//! request that starts by updating (and so, on PostgreSQL, locking) the node row. On SQLite
//! a heartbeat is one request to the writer thread, committed with whatever else queued
//! meanwhile, so it needs no buffer of its own.

use crate::store::db::{Tx, args};
use crate::store::rows::RowExt;
use crate::store::{
    Error, HeartbeatOutcome, HeartbeatUpdate, LeasePolicy, LoginBudget, ReportedLogin, Result,
    Store,
};
use chrono::{NaiveDateTime, TimeDelta};
use std::collections::HashSet;

impl Store {
    /// Records a heartbeat and renews leases in one transaction.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        beat: HeartbeatUpdate,
        now: NaiveDateTime,
        lease: LeasePolicy,
    ) -> Result<HeartbeatOutcome> {
        let node_id = node_id.to_string();
        // One transaction: the node's row is locked first, so a renewal never races a
        // release or a requeue of the same node's allocations.
        self.db
            .write(move |tx| {
                Box::pin(async move { heartbeat(tx, &node_id, &beat, now, lease).await })
            })
            .await
    }
}

/// A list column (`fetchers`, `features`) as its JSON text.
fn list(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref().map(|l| serde_json::json!(l).to_string())
}

async fn heartbeat(
    tx: &mut Tx,
    node_id: &str,
    b: &HeartbeatUpdate,
    now: NaiveDateTime,
    lease: LeasePolicy,
) -> Result<HeartbeatOutcome> {
    // The last heartbeat never moves backwards (a late request does not undo a newer one).
    let row = tx
        .opt(
            "UPDATE we_cascade_nodes SET
                last_heartbeat_at = CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < $2
                                         THEN $2 ELSE last_heartbeat_at END,
                status = 1,
                callback_url = COALESCE($3, callback_url), capacity = COALESCE($4, capacity),
                in_use = COALESCE($5, in_use), fetchers = COALESCE($6, fetchers),
                session_state = COALESCE($7, session_state), version = COALESCE($8, version),
                features = COALESCE($9, features)
              WHERE id = $1 AND is_active <> {false}
              RETURNING session_state, cooldown_until",
            args![
                node_id,
                now,
                &b.callback_url,
                b.capacity,
                b.in_use,
                list(&b.fetchers),
                &b.session_state,
                &b.version,
                list(&b.features),
            ],
        )
        .await?
        .ok_or(Error::NodeInactive)?;
    if let Some(logins) = &b.logins {
        replace_logins(tx, node_id, logins, now).await?;
    }
    let lease_end = now + TimeDelta::seconds(lease.lease_seconds);
    // `run_deadline` caps a renewal; COALESCE keeps both arguments non-NULL.
    let renew = "UPDATE we_cascade_task_allocations
            SET lease_expires_at = {least}($2, COALESCE(run_deadline, $2))
          WHERE node_id = $1 AND status IN ('claimed', 'executing') AND lease_expires_at > $3";
    let lost = match &b.held {
        None => {
            tx.exec(renew, args![node_id, lease_end, now]).await?;
            Vec::new()
        }
        Some(held) => {
            // What it renews is what it still holds: the live leases among `held`.
            let live = tx
                .texts(
                    &format!("{renew} AND id {{in:$4}} RETURNING id"),
                    args![node_id, lease_end, now, held],
                )
                .await?;
            let live: HashSet<String> = live.into_iter().collect();
            held.iter()
                .filter(|id| !live.contains(*id))
                .cloned()
                .collect()
        }
    };
    Ok(HeartbeatOutcome {
        lost,
        session_state: row
            .opt_text("session_state")?
            .unwrap_or_else(|| "unknown".into()),
        cooldown_until: row.time("cooldown_until")?,
    })
}

/// Replaces the node's reported logins. Upserted, not replaced: a login that stays keeps its
/// reminder columns.
async fn replace_logins(
    tx: &mut Tx,
    node_id: &str,
    logins: &[ReportedLogin],
    now: NaiveDateTime,
) -> Result<()> {
    tx.exec(
        "UPDATE we_cascade_nodes SET reports_logins = {true} WHERE id = $1",
        args![node_id],
    )
    .await?;
    let ids: Vec<String> = logins.iter().map(|l| l.login_id.clone()).collect();
    tx.exec(
        "DELETE FROM cascade_node_logins WHERE node_id = $1 AND login_id {not_in:$2}",
        args![node_id, ids],
    )
    .await?;
    for l in logins {
        tx.exec(
            "INSERT INTO cascade_node_logins (node_id, login_id, kind, name, state, expires_at,
                    cooldown_until, last_ok_at, last_error, reported_at, budget, budget_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (node_id, login_id) DO UPDATE SET
                kind = excluded.kind, name = excluded.name, state = excluded.state,
                expires_at = excluded.expires_at, cooldown_until = excluded.cooldown_until,
                last_ok_at = excluded.last_ok_at, last_error = excluded.last_error,
                reported_at = excluded.reported_at, budget = excluded.budget,
                budget_until = excluded.budget_until",
            args![
                node_id,
                &l.login_id,
                &l.kind,
                &l.name,
                &l.state,
                l.expires_at,
                l.cooldown_until,
                l.last_ok_at,
                &l.last_error,
                now,
                l.budget.as_ref().map(LoginBudget::to_json),
                l.budget.as_ref().and_then(|b| b.resets_at),
            ],
        )
        .await?;
    }
    Ok(())
}
