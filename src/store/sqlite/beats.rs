//! Heartbeats. Normally written at once, in their own transaction. While the single writer is
//! busy with a long transaction (a 100k-feed dispatch takes seconds), a heartbeat is answered
//! from a read and buffered; a flusher writes the buffer as soon as the writer is free, so
//! heartbeats never wait on a dispatch. Liveness and lease renewal are then at most that one
//! transaction late, far inside `offline_after` and the lease.

use super::SqliteStore;
use crate::protocol::time::to_db;
use crate::store::rows::RowExt;
use crate::store::{Error, HeartbeatOutcome, HeartbeatUpdate, LeasePolicy, Result};
use chrono::{NaiveDateTime, TimeDelta};
use sqlx::{Acquire, SqliteConnection};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A heartbeat waiting for the writer.
struct Beat {
    update: HeartbeatUpdate,
    now: NaiveDateTime,
    lease: LeasePolicy,
}

/// Heartbeats buffered while the writer is busy, newest per node.
#[derive(Default)]
pub(super) struct BeatBuffer {
    pending: Mutex<HashMap<String, Beat>>,
    flushing: AtomicBool,
}

impl BeatBuffer {
    fn push(&self, node_id: &str, beat: Beat) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(node_id) {
            Some(old) => {
                let (o, n) = (&mut old.update, beat.update);
                o.callback_url = n.callback_url.or(o.callback_url.take());
                o.capacity = n.capacity.or(o.capacity);
                o.in_use = n.in_use.or(o.in_use);
                o.fetchers = n.fetchers.or(o.fetchers.take());
                o.session_state = n.session_state.or(o.session_state.take());
                o.version = n.version.or(o.version.take());
                o.features = n.features.or(o.features.take());
                o.held = n.held;
                o.logins = n.logins.or(o.logins.take());
                old.now = beat.now;
                old.lease = beat.lease;
            }
            None => {
                pending.insert(node_id.to_string(), beat);
            }
        }
    }

    fn drain(&self) -> Vec<(String, Beat)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().collect()
    }
}

/// How long a heartbeat waits for the writer before it is buffered.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_millis(25);

const LOST: &str = "SELECT value FROM json_each($2) WHERE value NOT IN (
    SELECT id FROM we_cascade_task_allocations
     WHERE node_id = $1 AND status IN ('claimed', 'executing') AND lease_expires_at > $3)";

fn list(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref().map(|l| serde_json::json!(l).to_string())
}

/// Writes one heartbeat: liveness and extras, renewal of live leases, and the `lost` list.
async fn apply(tx: &mut SqliteConnection, node_id: &str, beat: &Beat) -> Result<HeartbeatOutcome> {
    let now = to_db(beat.now);
    let b = &beat.update;
    let row = sqlx::query(
        "UPDATE we_cascade_nodes SET
            last_heartbeat_at = CASE WHEN last_heartbeat_at IS NULL OR last_heartbeat_at < $2
                                     THEN $2 ELSE last_heartbeat_at END,
            status = 1,
            callback_url = COALESCE($3, callback_url), capacity = COALESCE($4, capacity),
            in_use = COALESCE($5, in_use), fetchers = COALESCE($6, fetchers),
            session_state = COALESCE($7, session_state), version = COALESCE($8, version),
            features = COALESCE($9, features)
          WHERE id = $1 AND is_active <> 0
          RETURNING session_state, cooldown_until",
    )
    .bind(node_id)
    .bind(&now)
    .bind(&b.callback_url)
    .bind(b.capacity)
    .bind(b.in_use)
    .bind(list(&b.fetchers))
    .bind(&b.session_state)
    .bind(&b.version)
    .bind(list(&b.features))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NodeInactive)?;
    if let Some(logins) = &b.logins {
        sqlx::query("UPDATE we_cascade_nodes SET reports_logins = 1 WHERE id = $1")
            .bind(node_id)
            .execute(&mut *tx)
            .await?;
        // Upserted, not replaced: a login that stays keeps its reminder columns.
        let ids: Vec<&str> = logins.iter().map(|l| l.login_id.as_str()).collect();
        sqlx::query(
            "DELETE FROM cascade_node_logins
              WHERE node_id = $1 AND login_id NOT IN (SELECT value FROM json_each($2))",
        )
        .bind(node_id)
        .bind(serde_json::json!(ids).to_string())
        .execute(&mut *tx)
        .await?;
        for l in logins {
            sqlx::query(
                "INSERT INTO cascade_node_logins (node_id, login_id, kind, name, state, expires_at,
                        cooldown_until, last_ok_at, last_error, reported_at, budget, budget_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (node_id, login_id) DO UPDATE SET
                    kind = excluded.kind, name = excluded.name, state = excluded.state,
                    expires_at = excluded.expires_at, cooldown_until = excluded.cooldown_until,
                    last_ok_at = excluded.last_ok_at, last_error = excluded.last_error,
                    reported_at = excluded.reported_at, budget = excluded.budget,
                    budget_until = excluded.budget_until",
            )
            .bind(node_id)
            .bind(&l.login_id)
            .bind(&l.kind)
            .bind(&l.name)
            .bind(&l.state)
            .bind(l.expires_at.map(to_db))
            .bind(l.cooldown_until.map(to_db))
            .bind(l.last_ok_at.map(to_db))
            .bind(&l.last_error)
            .bind(&now)
            .bind(l.budget.as_ref().map(crate::store::LoginBudget::to_json))
            .bind(l.budget.as_ref().and_then(|b| b.resets_at).map(to_db))
            .execute(&mut *tx)
            .await?;
        }
    }
    let held = list(&b.held);
    let lease_end = to_db(beat.now + TimeDelta::seconds(beat.lease.lease_seconds));
    sqlx::query(
        "UPDATE we_cascade_task_allocations
            SET lease_expires_at = MIN($2, COALESCE(run_deadline, $2))
          WHERE node_id = $1 AND status IN ('claimed', 'executing') AND lease_expires_at > $4
            AND ($3 IS NULL OR id IN (SELECT value FROM json_each($3)))",
    )
    .bind(node_id)
    .bind(&lease_end)
    .bind(&held)
    .bind(&now)
    .execute(&mut *tx)
    .await?;
    let lost = match &held {
        None => Vec::new(),
        Some(held) => {
            sqlx::query_scalar(LOST)
                .bind(node_id)
                .bind(held)
                .bind(&now)
                .fetch_all(&mut *tx)
                .await?
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

impl SqliteStore {
    pub(crate) async fn heartbeat(
        &self,
        node_id: &str,
        update: HeartbeatUpdate,
        now: NaiveDateTime,
        lease: LeasePolicy,
    ) -> Result<HeartbeatOutcome> {
        let beat = Beat { update, now, lease };
        // A short wait keeps read-your-writes whenever the writer frees up quickly (e.g. the
        // flusher's own small transaction); only a long transaction sends beats to the buffer.
        let writer = tokio::time::timeout(WRITER_WAIT, self.write.acquire()).await;
        if let Ok(Ok(mut conn)) = writer {
            let mut tx = conn.begin().await?;
            write_buffered(&mut tx, self.beats.drain()).await?;
            let outcome = apply(&mut tx, node_id, &beat).await?;
            tx.commit().await?;
            return Ok(outcome);
        }
        let outcome = self.outcome_from_read(node_id, &beat).await?;
        self.beats.push(node_id, beat);
        self.schedule_flush();
        Ok(outcome)
    }

    /// What the heartbeat will have done once written, read without the writer.
    async fn outcome_from_read(&self, node_id: &str, beat: &Beat) -> Result<HeartbeatOutcome> {
        let row = sqlx::query(
            "SELECT session_state, cooldown_until FROM we_cascade_nodes
              WHERE id = $1 AND is_active <> 0",
        )
        .bind(node_id)
        .fetch_optional(&self.read)
        .await?
        .ok_or(Error::NodeInactive)?;
        let lost = match list(&beat.update.held) {
            None => Vec::new(),
            Some(held) => {
                sqlx::query_scalar(LOST)
                    .bind(node_id)
                    .bind(held)
                    .bind(to_db(beat.now))
                    .fetch_all(&self.read)
                    .await?
            }
        };
        let stored = row
            .opt_text("session_state")?
            .unwrap_or_else(|| "unknown".into());
        Ok(HeartbeatOutcome {
            lost,
            session_state: beat.update.session_state.clone().unwrap_or(stored),
            cooldown_until: row.time("cooldown_until")?,
        })
    }

    /// Starts one background flush unless one is running.
    fn schedule_flush(&self) {
        if self.beats.flushing.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                let result = async {
                    let mut conn = store.write.acquire().await?;
                    let mut tx = conn.begin().await?;
                    write_buffered(&mut tx, store.beats.drain()).await?;
                    tx.commit().await?;
                    Ok::<_, Error>(())
                }
                .await;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "buffered heartbeats could not be written");
                }
                store.beats.flushing.store(false, Ordering::SeqCst);
                let more = !store
                    .beats
                    .pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty();
                if !more || store.beats.flushing.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        });
    }
}

async fn write_buffered(tx: &mut SqliteConnection, beats: Vec<(String, Beat)>) -> Result<()> {
    for (node_id, beat) in beats {
        match apply(tx, &node_id, &beat).await {
            Ok(_) | Err(Error::NotFound(_) | Error::NodeInactive) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
