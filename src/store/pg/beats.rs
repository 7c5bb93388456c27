//! Heartbeats: liveness and extras, renewal of live leases and the `lost` list, in one
//! transaction that starts by updating (and so locking) the node row.

use super::PgStore;
use crate::store::rows::RowExt;
use crate::store::{Error, HeartbeatOutcome, HeartbeatUpdate, LeasePolicy, Result};
use chrono::{NaiveDateTime, TimeDelta};

fn list(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref().map(|l| serde_json::json!(l).to_string())
}

impl PgStore {
    pub(crate) async fn heartbeat(
        &self,
        node_id: &str,
        b: HeartbeatUpdate,
        now: NaiveDateTime,
        lease: LeasePolicy,
    ) -> Result<HeartbeatOutcome> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE we_cascade_nodes SET
                last_heartbeat_at = GREATEST(last_heartbeat_at, $2),
                status = 1,
                callback_url = COALESCE($3, callback_url), capacity = COALESCE($4, capacity),
                in_use = COALESCE($5, in_use), fetchers = COALESCE($6, fetchers),
                session_state = COALESCE($7, session_state), version = COALESCE($8, version),
                features = COALESCE($9, features)
              WHERE id = $1 AND is_active
              RETURNING session_state, cooldown_until",
        )
        .bind(node_id)
        .bind(now)
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
            sqlx::query("UPDATE we_cascade_nodes SET reports_logins = TRUE WHERE id = $1")
                .bind(node_id)
                .execute(&mut *tx)
                .await?;
            // Upserted, not replaced: a login that stays keeps its reminder columns.
            let ids: Vec<&str> = logins.iter().map(|l| l.login_id.as_str()).collect();
            sqlx::query(
                "DELETE FROM cascade_node_logins
                  WHERE node_id = $1 AND NOT (login_id = ANY($2::text[]))",
            )
            .bind(node_id)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            for l in logins {
                sqlx::query(
                    "INSERT INTO cascade_node_logins (node_id, login_id, kind, name, state,
                            expires_at, cooldown_until, last_ok_at, last_error, reported_at,
                            budget, budget_until)
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
                .bind(l.expires_at)
                .bind(l.cooldown_until)
                .bind(l.last_ok_at)
                .bind(&l.last_error)
                .bind(now)
                .bind(l.budget.as_ref().map(crate::store::LoginBudget::to_json))
                .bind(l.budget.as_ref().and_then(|b| b.resets_at))
                .execute(&mut *tx)
                .await?;
            }
        }
        let lease_end = now + TimeDelta::seconds(lease.lease_seconds);
        sqlx::query(
            "UPDATE we_cascade_task_allocations
                SET lease_expires_at = LEAST($2, COALESCE(run_deadline, $2))
              WHERE node_id = $1 AND status IN ('claimed', 'executing') AND lease_expires_at > $4
                AND ($3::text[] IS NULL OR id = ANY($3))",
        )
        .bind(node_id)
        .bind(lease_end)
        .bind(&b.held)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let lost = match &b.held {
            None => Vec::new(),
            Some(held) => {
                sqlx::query_scalar(
                    "SELECT h FROM UNNEST($2::text[]) AS h WHERE h NOT IN (
                       SELECT id FROM we_cascade_task_allocations
                        WHERE node_id = $1 AND status IN ('claimed', 'executing')
                          AND lease_expires_at > $3)",
                )
                .bind(node_id)
                .bind(held)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok(HeartbeatOutcome {
            lost,
            session_state: row
                .opt_text("session_state")?
                .unwrap_or_else(|| "unknown".into()),
            cooldown_until: row.time("cooldown_until")?,
        })
    }
}
