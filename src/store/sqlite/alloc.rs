//! Dispatch (one transaction per call) and claims (one transaction on the single writer, so no
//! allocation is ever handed out twice).

use super::SqliteStore;
use super::nodes::touch;
use crate::dispatch::Source;
use crate::protocol::time::to_db;
use crate::protocol::wire::TaskPackage;
use crate::store::rows::node_from_row;
use crate::store::rows::{self, ClaimGate, RowExt, sort_as, take_fitting};
use crate::store::{
    ClaimOutcome, ClaimPolicy, CreatedAllocation, DispatchBatch, DispatchFeed, NodeLoad, Result,
};
use chrono::{NaiveDateTime, TimeDelta};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;
use std::collections::HashSet;

/// Allocations written per statement inside the dispatch transaction (bounds memory).
const DISPATCH_CHUNK: usize = 5000;

const CANDIDATE_COLUMNS: &str = "id, feed_count, available_at, dispatched_at";
const PENDING_OF_KIND: &str = "status = 'pending' AND available_at <= $2
    AND feed_source IN (SELECT value FROM json_each($3)) AND feed_count <= $4";

impl SqliteStore {
    pub(crate) async fn dispatch_snapshot(&self) -> Result<Vec<NodeLoad>> {
        let rows = sqlx::query(
            "SELECT n.*,
               (SELECT COALESCE(SUM(a.feed_count), 0) FROM we_cascade_task_allocations a
                 WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing')) AS held_feeds,
               (SELECT COALESCE(SUM(a.feed_count), 0) FROM we_cascade_task_allocations a
                 WHERE a.assigned_node_id = n.id AND a.status = 'pending') AS assigned_pending,
               CASE WHEN n.reports_logins <> 0 THEN
                 (SELECT COUNT(*) FROM cascade_node_logins l
                   WHERE l.node_id = n.id AND l.kind = 'mp'
                     AND l.state IN ('valid', 'expiring', 'cooling') AND l.budget_until IS NULL) END AS usable_mp_logins,
               CASE WHEN n.reports_logins <> 0 THEN
                 (SELECT COUNT(*) FROM cascade_node_logins l
                   WHERE l.node_id = n.id AND l.kind = 'weread'
                     AND l.state IN ('valid', 'expiring', 'cooling') AND l.budget_until IS NULL) END AS usable_weread_logins
             FROM we_cascade_nodes n WHERE n.node_type = 1 ORDER BY n.id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeLoad {
                    node: node_from_row(r)?,
                    assigned_pending: r.int("assigned_pending")?,
                    usable_mp_logins: r.opt_int("usable_mp_logins")?,
                    usable_weread_logins: r.opt_int("usable_weread_logins")?,
                })
            })
            .collect()
    }

    pub(crate) async fn dispatch_feeds(&self, ids: Vec<String>) -> Result<Vec<DispatchFeed>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(DISPATCH_CHUNK) {
            let rows = sqlx::query(
                "SELECT id, source, status, open_allocation_id IS NOT NULL AS open FROM we_feeds
                  WHERE id IN (SELECT value FROM json_each($1))",
            )
            .bind(serde_json::json!(chunk).to_string())
            .fetch_all(&self.read)
            .await?;
            for r in &rows {
                out.push(DispatchFeed {
                    id: r.text("id")?,
                    source: Source::parse(&r.opt_text("source")?.unwrap_or_default()),
                    status: r.opt_int("status")?.unwrap_or(1),
                    open: r.flag("open")?,
                });
            }
        }
        Ok(out)
    }

    pub(crate) async fn apply_dispatch(
        &self,
        batch: DispatchBatch,
        now: NaiveDateTime,
    ) -> Result<Option<Vec<CreatedAllocation>>> {
        let now_db = to_db(now);
        // The writer from the start: another process's commit cannot stale what it reads.
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(firing) = &batch.firing {
            let claimed = sqlx::query(
                "UPDATE we_message_tasks SET next_run_at = $3, last_run_at = $4
                  WHERE id = $1 AND next_run_at = $2",
            )
            .bind(&firing.task_id)
            .bind(to_db(firing.due))
            .bind(firing.next.map(to_db))
            .bind(to_db(firing.fired_at))
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                return Ok(None); // another pass took this firing
            }
        }
        let mut created = Vec::with_capacity(batch.allocations.len());
        for chunk in batch.allocations.chunks(DISPATCH_CHUNK) {
            let wanted: Vec<&String> = chunk.iter().flat_map(|a| a.feed_ids.iter()).collect();
            // Invariant 5: only feeds with no open allocation, read inside the write transaction.
            let mut free: HashSet<String> = sqlx::query_scalar(
                "SELECT id FROM we_feeds WHERE id IN (SELECT value FROM json_each($1)) AND open_allocation_id IS NULL",
            )
            .bind(serde_json::json!(wanted).to_string())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            let mut rows = Vec::with_capacity(chunk.len());
            let mut opened = Vec::with_capacity(wanted.len());
            for a in chunk {
                let kept: Vec<&String> = a
                    .feed_ids
                    .iter()
                    .filter(|f| free.remove(f.as_str()))
                    .collect();
                if kept.is_empty() {
                    continue;
                }
                let id = uuid::Uuid::new_v4().to_string();
                let feed_count = i64::try_from(kept.len()).unwrap_or(i64::MAX);
                opened.extend(kept.iter().map(|f| serde_json::json!({ "f": f, "a": id })));
                rows.push(serde_json::json!({
                    "id": id, "task_id": a.task_id, "task_name": a.task_name, "cron_exp": a.cron_exp,
                    "feed_ids": serde_json::json!(kept).to_string(), "assigned": a.assigned_node_id,
                    "feed_count": feed_count, "source": a.source.as_str(),
                }));
                created.push(CreatedAllocation {
                    id,
                    task_id: a.task_id.clone(),
                    assigned_node_id: a.assigned_node_id.clone(),
                    feed_count,
                });
            }
            if rows.is_empty() {
                continue;
            }
            sqlx::query(
                "INSERT INTO we_cascade_task_allocations
                   (id, task_id, task_name, cron_exp, node_id, feed_ids, status, dispatched_at,
                    schedule_run_id, article_count, new_article_count, created_at, updated_at,
                    assigned_node_id, feed_count, attempt, max_attempts, available_at, feed_source)
                 SELECT value ->> '$.id', value ->> '$.task_id', value ->> '$.task_name', value ->> '$.cron_exp',
                        NULL, value ->> '$.feed_ids', 'pending', $2, $3, 0, 0, $2, $2,
                        value ->> '$.assigned', value ->> '$.feed_count', 0, $4, $2, value ->> '$.source'
                   FROM json_each($1)",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .bind(&now_db)
            .bind(&batch.schedule_run_id)
            .bind(batch.max_attempts)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE we_feeds SET open_allocation_id = m.a
                   FROM (SELECT value ->> '$.f' AS f, value ->> '$.a' AS a FROM json_each($1)) AS m
                  WHERE we_feeds.id = m.f",
            )
            .bind(serde_json::Value::Array(opened).to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(created))
    }

    pub(crate) async fn claim(
        &self,
        node_id: &str,
        limit: i64,
        now: NaiveDateTime,
        policy: ClaimPolicy,
    ) -> Result<ClaimOutcome> {
        let mut tx = self.write.begin().await?;
        touch(&mut tx, node_id, now).await?;
        let node = super::nodes::node_in(&mut tx, node_id).await?;
        let gate = match ClaimGate::of(&node, now, &policy) {
            Ok(gate) => gate,
            Err(block) => {
                tx.commit().await?;
                return Ok(ClaimOutcome {
                    packages: Vec::new(),
                    blocked: Some(block),
                });
            }
        };
        let want = limit.min(gate.free);
        let ids = candidates(&mut tx, node_id, &gate.kinds, gate.free, want, now, &policy).await?;
        let mut packages = Vec::new();
        if !ids.is_empty() {
            let claimed = mark_claimed(&mut tx, node_id, &ids, now, &policy).await?;
            for row in &claimed {
                if let Some(p) = package(&mut tx, row, now).await? {
                    packages.push(p);
                }
            }
        }
        tx.commit().await?;
        Ok(ClaimOutcome {
            packages,
            blocked: None,
        })
    }
}

/// Claimable ids in claim order (own → unassigned → stealable) whose feeds fit in `free`.
async fn candidates(
    tx: &mut SqliteConnection,
    node_id: &str,
    kinds: &[String],
    free: i64,
    want: i64,
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<String>> {
    let now_db = to_db(now);
    let kinds = serde_json::json!(kinds).to_string();
    let steal_before = to_db(now - TimeDelta::seconds(policy.steal_after));
    let silent_since = to_db(now - TimeDelta::seconds(policy.offline_after));
    let groups = [
        format!("SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations WHERE {PENDING_OF_KIND} AND assigned_node_id = $1"),
        format!("SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations WHERE {PENDING_OF_KIND} AND assigned_node_id IS NULL AND $1 = $1"),
        format!(
            "SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations WHERE {PENDING_OF_KIND}
               AND assigned_node_id IS NOT NULL AND assigned_node_id <> $1
               AND (dispatched_at <= $6 OR assigned_node_id IN (
                 SELECT id FROM we_cascade_nodes WHERE is_active = 0 OR last_heartbeat_at IS NULL
                   OR last_heartbeat_at < $7 OR cooldown_until > $2 OR session_state IN ('expired', 'none')))"
        ),
    ];
    let mut picked: Vec<String> = Vec::new();
    let mut room = free;
    for sql in groups {
        let remaining = want - i64::try_from(picked.len()).unwrap_or(i64::MAX);
        if remaining <= 0 || room <= 0 {
            break;
        }
        let sql = format!("{sql} ORDER BY available_at, dispatched_at, id LIMIT $5");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(node_id)
            .bind(&now_db)
            .bind(&kinds)
            .bind(room)
            .bind(remaining)
            .bind(&steal_before)
            .bind(&silent_since)
            .fetch_all(&mut *tx)
            .await?;
        take_fitting(&rows, &mut picked, &mut room, want)?;
    }
    Ok(picked)
}

async fn mark_claimed(
    tx: &mut SqliteConnection,
    node_id: &str,
    ids: &[String],
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<SqliteRow>> {
    let lease_end = now + TimeDelta::seconds(policy.lease_seconds);
    let deadline = now + TimeDelta::seconds(policy.max_run_seconds);
    let rows = sqlx::query(
        "UPDATE we_cascade_task_allocations
            SET status = 'claimed', node_id = $1, assigned_node_id = $1, claimed_at = $2,
                started_at = NULL, lease_expires_at = $3, run_deadline = $4,
                lease_token = lower(hex(randomblob(16))), attempt = attempt + 1,
                article_count = 0, new_article_count = 0, updated_at = $2
          WHERE id IN (SELECT value FROM json_each($5)) AND +status = 'pending'
          RETURNING *",
    )
    .bind(node_id)
    .bind(to_db(now))
    .bind(to_db(lease_end.min(deadline)))
    .bind(to_db(deadline))
    .bind(serde_json::json!(ids).to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut rows = rows;
    sort_as(&mut rows, ids);
    Ok(rows)
}

/// Builds the package of a claimed row; `None` (and the row failed `not_found`) when its task
/// or every feed is gone.
async fn package(
    tx: &mut SqliteConnection,
    row: &SqliteRow,
    now: NaiveDateTime,
) -> Result<Option<TaskPackage>> {
    let id = row.text("id")?;
    let task = sqlx::query(rows::PACKAGE_TASK)
        .bind(row.text("task_id")?)
        .fetch_optional(&mut *tx)
        .await?;
    let feeds = sqlx::query(
        "SELECT f.*, (SELECT MAX(a.publish_time) FROM we_articles a
                WHERE a.mp_id = f.id AND NOT a.time_estimated) AS since
           FROM we_feeds f WHERE f.id IN (SELECT value FROM json_each($1)) ORDER BY f.id",
    )
    .bind(row.text("feed_ids")?)
    .fetch_all(&mut *tx)
    .await?;
    let Some(task) = task.filter(|_| !feeds.is_empty()) else {
        super::lifecycle::fail_not_found(tx, &id, now).await?;
        return Ok(None);
    };
    Ok(Some(rows::package(row, &task, &feeds)?))
}
