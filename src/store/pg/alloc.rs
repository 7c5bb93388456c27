//! Dispatch (one transaction per call, feeds locked in id order) and claims (the node row
//! locked, candidates taken with `FOR UPDATE SKIP LOCKED`), safe with several parents.

use super::PgStore;
use super::nodes::{lock_self, node_in, touch};
use crate::dispatch::Source;
use crate::protocol::wire::TaskPackage;
use crate::store::rows::{self, ClaimGate, RowExt, node_from_row, sort_as, take_fitting};
use crate::store::{
    ClaimOutcome, ClaimPolicy, CreatedAllocation, DispatchBatch, DispatchFeed, NodeLoad, Result,
};
use chrono::{NaiveDateTime, TimeDelta};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use std::collections::HashSet;

/// Allocations written per statement inside the dispatch transaction (bounds memory).
const DISPATCH_CHUNK: usize = 5000;

const CANDIDATE_COLUMNS: &str = "id, feed_count, available_at, dispatched_at";
const PENDING_OF_KIND: &str = "status = 'pending' AND available_at <= $2
    AND feed_source = ANY($3) AND feed_count <= $4";

/// The columns of one dispatch chunk, one array per column.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    task_id: Vec<String>,
    task_name: Vec<String>,
    cron_exp: Vec<String>,
    feed_ids: Vec<String>,
    assigned: Vec<Option<String>>,
    feed_count: Vec<i64>,
    source: Vec<String>,
    opened_feed: Vec<String>,
    opened_by: Vec<String>,
}

impl PgStore {
    pub(crate) async fn dispatch_snapshot(&self) -> Result<Vec<NodeLoad>> {
        let rows = sqlx::query(
            "SELECT n.*,
               (SELECT COALESCE(SUM(a.feed_count), 0)::bigint FROM we_cascade_task_allocations a
                 WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing')) AS held_feeds,
               (SELECT COALESCE(SUM(a.feed_count), 0)::bigint FROM we_cascade_task_allocations a
                 WHERE a.assigned_node_id = n.id AND a.status = 'pending') AS assigned_pending,
               CASE WHEN n.reports_logins THEN
                 (SELECT COUNT(*) FROM cascade_node_logins l
                   WHERE l.node_id = n.id AND l.kind = 'mp'
                     AND l.state IN ('valid', 'expiring', 'cooling') AND l.budget_until IS NULL) END AS usable_mp_logins,
               CASE WHEN n.reports_logins THEN
                 (SELECT COUNT(*) FROM cascade_node_logins l
                   WHERE l.node_id = n.id AND l.kind = 'weread'
                     AND l.state IN ('valid', 'expiring', 'cooling') AND l.budget_until IS NULL) END AS usable_weread_logins
             FROM we_cascade_nodes n WHERE n.node_type = 1 ORDER BY n.id",
        )
        .fetch_all(&self.pool)
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
                  WHERE id = ANY($1)",
            )
            .bind(chunk)
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // The firing first: a parent racing for it waits on the task row, then finds it
        // moved and dispatches nothing.
        if let Some(firing) = &batch.firing {
            let claimed = sqlx::query(
                "UPDATE we_message_tasks SET next_run_at = $3, last_run_at = $4
                  WHERE id = $1 AND next_run_at = $2",
            )
            .bind(&firing.task_id)
            .bind(firing.due)
            .bind(firing.next)
            .bind(firing.fired_at)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                return Ok(None); // another parent took this firing
            }
        }
        // Invariant 5 across parents: lock every wanted feed that has no open allocation, in
        // id order. A concurrent dispatch of the same feeds waits here, then sees them open.
        let mut wanted: Vec<&String> = batch
            .allocations
            .iter()
            .flat_map(|a| a.feed_ids.iter())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut free: HashSet<String> = HashSet::with_capacity(wanted.len());
        for chunk in wanted.chunks(DISPATCH_CHUNK) {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM we_feeds WHERE id = ANY($1) AND open_allocation_id IS NULL
                  ORDER BY id COLLATE \"C\" FOR UPDATE",
            )
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await?;
            free.extend(ids);
        }
        let mut created = Vec::with_capacity(batch.allocations.len());
        for chunk in batch.allocations.chunks(DISPATCH_CHUNK) {
            let mut c = Columns::default();
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
                for f in &kept {
                    c.opened_feed.push((*f).clone());
                    c.opened_by.push(id.clone());
                }
                c.id.push(id.clone());
                c.task_id.push(a.task_id.clone());
                c.task_name.push(a.task_name.clone());
                c.cron_exp.push(a.cron_exp.clone());
                c.feed_ids.push(serde_json::json!(kept).to_string());
                c.assigned.push(a.assigned_node_id.clone());
                c.feed_count.push(feed_count);
                c.source.push(a.source.as_str().to_string());
                created.push(CreatedAllocation {
                    id,
                    task_id: a.task_id.clone(),
                    assigned_node_id: a.assigned_node_id.clone(),
                    feed_count,
                });
            }
            if c.id.is_empty() {
                continue;
            }
            sqlx::query(
                "INSERT INTO we_cascade_task_allocations
                   (id, task_id, task_name, cron_exp, feed_ids, assigned_node_id, feed_count,
                    feed_source, node_id, status, dispatched_at, schedule_run_id, article_count,
                    new_article_count, created_at, updated_at, attempt, max_attempts, available_at)
                 SELECT *, NULL, 'pending', $9, $10, 0, 0, $9, $9, 0, $11, $9
                   FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                               $6::text[], $7::bigint[], $8::text[])",
            )
            .bind(&c.id)
            .bind(&c.task_id)
            .bind(&c.task_name)
            .bind(&c.cron_exp)
            .bind(&c.feed_ids)
            .bind(&c.assigned)
            .bind(&c.feed_count)
            .bind(&c.source)
            .bind(now)
            .bind(&batch.schedule_run_id)
            .bind(batch.max_attempts)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE we_feeds SET open_allocation_id = m.a
                   FROM UNNEST($1::text[], $2::text[]) AS m(f, a)
                  WHERE we_feeds.id = m.f",
            )
            .bind(&c.opened_feed)
            .bind(&c.opened_by)
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
        let mut tx = self.pool.begin().await?;
        // Claims of one node are serialized (capacity holds across parents); claims of
        // different nodes run side by side and skip each other's candidates.
        lock_self(&mut tx, node_id).await?;
        touch(&mut tx, node_id, now).await?;
        let node = node_in(&mut tx, node_id).await?;
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

/// Claimable ids in claim order (own → unassigned → stealable) whose feeds fit in `free`;
/// every candidate row is locked, and rows another transaction holds are skipped.
async fn candidates(
    tx: &mut PgConnection,
    node_id: &str,
    kinds: &[String],
    free: i64,
    want: i64,
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<String>> {
    let steal_before = now - TimeDelta::seconds(policy.steal_after);
    let silent_since = now - TimeDelta::seconds(policy.offline_after);
    let groups = [
        format!("SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations WHERE {PENDING_OF_KIND} AND assigned_node_id = $1"),
        format!("SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations WHERE {PENDING_OF_KIND} AND assigned_node_id IS NULL AND $1::text IS NOT NULL"),
        format!(
            "SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations WHERE {PENDING_OF_KIND}
               AND assigned_node_id IS NOT NULL AND assigned_node_id <> $1
               AND (dispatched_at <= $6 OR assigned_node_id IN (
                 SELECT id FROM we_cascade_nodes WHERE NOT is_active OR last_heartbeat_at IS NULL
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
        let sql = format!(
            "{sql} ORDER BY available_at, dispatched_at, id LIMIT $5 FOR UPDATE SKIP LOCKED"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(node_id)
            .bind(now)
            .bind(kinds)
            .bind(room)
            .bind(remaining)
            .bind(steal_before)
            .bind(silent_since)
            .fetch_all(&mut *tx)
            .await?;
        take_fitting(&rows, &mut picked, &mut room, want)?;
    }
    Ok(picked)
}

async fn mark_claimed(
    tx: &mut PgConnection,
    node_id: &str,
    ids: &[String],
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<PgRow>> {
    let lease_end = now + TimeDelta::seconds(policy.lease_seconds);
    let deadline = now + TimeDelta::seconds(policy.max_run_seconds);
    let mut rows = sqlx::query(
        "UPDATE we_cascade_task_allocations
            SET status = 'claimed', node_id = $1, assigned_node_id = $1, claimed_at = $2,
                started_at = NULL, lease_expires_at = $3, run_deadline = $4,
                lease_token = replace(gen_random_uuid()::text, '-', ''), attempt = attempt + 1,
                article_count = 0, new_article_count = 0, updated_at = $2
          WHERE id = ANY($5) AND status = 'pending'
          RETURNING *",
    )
    .bind(node_id)
    .bind(now)
    .bind(lease_end.min(deadline))
    .bind(deadline)
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    sort_as(&mut rows, ids);
    Ok(rows)
}

/// Builds the package of a claimed row; `None` (and the row failed `not_found`) when its task
/// or every feed is gone.
async fn package(
    tx: &mut PgConnection,
    row: &PgRow,
    now: NaiveDateTime,
) -> Result<Option<TaskPackage>> {
    let id = row.text("id")?;
    let task = sqlx::query(rows::PACKAGE_TASK)
        .bind(row.text("task_id")?)
        .fetch_optional(&mut *tx)
        .await?;
    let feed_ids = row.string_list("feed_ids")?.unwrap_or_default();
    let feeds = sqlx::query(
        "SELECT f.*, (SELECT MAX(a.publish_time) FROM we_articles a
                WHERE a.mp_id = f.id AND NOT a.time_estimated) AS since
           FROM we_feeds f WHERE f.id = ANY($1) ORDER BY f.id",
    )
    .bind(&feed_ids)
    .fetch_all(&mut *tx)
    .await?;
    let Some(task) = task.filter(|_| !feeds.is_empty()) else {
        super::lifecycle::fail_not_found(tx, &id, now).await?;
        return Ok(None);
    };
    Ok(Some(rows::package(row, &task, &feeds)?))
}
