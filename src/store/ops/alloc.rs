//! Dispatch (one transaction per call, the wanted feeds locked in id order on PostgreSQL) and
//! claims (the node row locked, candidates taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL;
//! one writer on SQLite), so no allocation is ever handed out twice, even with several parents.

use crate::dispatch::Source;
use crate::protocol::wire::TaskPackage;
use crate::store::db::{Arg, Row, Tx, args};
use crate::store::ops::lifecycle::fail_not_found;
use crate::store::ops::nodes::touch_read;
use crate::store::rows::{self, ClaimGate, RowExt, node_from_row, sort_as, take_fitting};
use crate::store::{
    ClaimOutcome, ClaimPolicy, CreatedAllocation, DispatchBatch, DispatchFeed, NodeLoad, Result,
    Store,
};
use chrono::{NaiveDateTime, TimeDelta};
use std::collections::HashSet;

/// Feed ids read or locked per statement inside the dispatch transaction (bounds memory).
const DISPATCH_CHUNK: usize = 5000;
/// Allocations inserted per statement: 9 parameters a row keeps a statement well under
/// SQLite's 32,766 parameters (and PostgreSQL's 65,535).
const INSERT_CHUNK: usize = 1000;
/// Allocations committed per write request of a dispatch.
const REQUEST_CHUNK: usize = 2000;
/// `(feed, allocation)` pairs written per statement (2 parameters each).
pub(super) const OPEN_CHUNK: usize = 5000;

const CANDIDATE_COLUMNS: &str = "id, feed_count, available_at, dispatched_at";
/// Pending work the claimer may fetch and fit. Each group bounds `available_at` itself, with
/// one upper bound only (SQLite's planner walks an index up to one of them).
const PENDING_OF_KIND: &str = "status = 'pending' AND feed_source {in:$3} AND feed_count <= $4";

impl Store {
    /// Online nodes with their load, for placement.
    pub async fn dispatch_snapshot(&self) -> Result<Vec<NodeLoad>> {
        self.db
            .read(|tx| Box::pin(async move { dispatch_snapshot(tx).await }))
            .await
    }

    /// The named feeds with their kind, status and open state.
    pub async fn dispatch_feeds(&self, ids: Vec<String>) -> Result<Vec<DispatchFeed>> {
        self.db
            .read(move |tx| Box::pin(async move { dispatch_feeds(tx, &ids).await }))
            .await
    }

    /// Inserts a dispatch, skipping feeds that already have an open allocation, in write
    /// requests of [`REQUEST_CHUNK`] allocations. `None` when the batch is a cron firing
    /// another pass already claimed.
    pub async fn apply_dispatch(
        &self,
        batch: DispatchBatch,
        now: NaiveDateTime,
    ) -> Result<Option<Vec<CreatedAllocation>>> {
        // Committed in parts, so heartbeats and claims queued meanwhile are served between
        // them (on SQLite they wait for the writer): the first part claims the firing; if a
        // later part fails, the parts before it stand (their feeds are open and will be
        // crawled) and the rest waits for the next dispatch.
        let DispatchBatch {
            schedule_run_id,
            max_attempts,
            allocations,
            mut firing,
            due_at,
        } = batch;
        let mut created = Vec::with_capacity(allocations.len());
        let mut rest = allocations;
        loop {
            let tail = rest.split_off(rest.len().min(REQUEST_CHUNK));
            let part = DispatchBatch {
                schedule_run_id: schedule_run_id.clone(),
                max_attempts,
                allocations: rest,
                firing: firing.take(),
                due_at,
            };
            let done = self
                .db
                .write(move |tx| Box::pin(async move { apply_dispatch(tx, &part, now).await }))
                .await?;
            let Some(done) = done else {
                return Ok(None); // another pass took this firing
            };
            created.extend(done);
            if tail.is_empty() {
                return Ok(Some(created));
            }
            rest = tail;
        }
    }

    /// Atomically claims up to `limit` allocations for a node within its free capacity.
    pub async fn claim(
        &self,
        node_id: &str,
        limit: i64,
        now: NaiveDateTime,
        policy: ClaimPolicy,
    ) -> Result<ClaimOutcome> {
        let node_id = node_id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move { claim(tx, &node_id, limit, now, &policy).await })
            })
            .await
    }
}

async fn dispatch_snapshot(tx: &mut Tx) -> Result<Vec<NodeLoad>> {
    let rows = tx
        .rows(
            "SELECT n.*,
               (SELECT CAST(COALESCE(SUM(a.feed_count), 0) AS BIGINT) FROM we_cascade_task_allocations a
                 WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing')) AS held_feeds,
               (SELECT CAST(COALESCE(SUM(a.feed_count), 0) AS BIGINT) FROM we_cascade_task_allocations a
                 WHERE a.assigned_node_id = n.id AND a.status = 'pending') AS assigned_pending,
               CASE WHEN n.reports_logins <> {false} THEN
                 (SELECT COUNT(*) FROM cascade_node_logins l
                   WHERE l.node_id = n.id AND l.kind = 'mp'
                     AND l.state IN ('valid', 'expiring', 'cooling') AND l.budget_until IS NULL) END AS usable_mp_logins,
               CASE WHEN n.reports_logins <> {false} THEN
                 (SELECT COUNT(*) FROM cascade_node_logins l
                   WHERE l.node_id = n.id AND l.kind = 'weread'
                     AND l.state IN ('valid', 'expiring', 'cooling') AND l.budget_until IS NULL) END AS usable_weread_logins
             FROM we_cascade_nodes n WHERE n.node_type = 1 ORDER BY n.id",
            &[],
        )
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

async fn dispatch_feeds(tx: &mut Tx, ids: &[String]) -> Result<Vec<DispatchFeed>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(DISPATCH_CHUNK) {
        let rows = tx
            .rows(
                "SELECT id, source, status, open_allocation_id IS NOT NULL AS open FROM we_feeds
                  WHERE id {in:$1}",
                args![chunk],
            )
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

/// One allocation row to insert.
struct NewRow {
    id: String,
    task_id: String,
    task_name: String,
    cron_exp: String,
    feed_ids: String,
    assigned: Option<String>,
    feed_count: i64,
    source: &'static str,
    available_at: Option<NaiveDateTime>,
}

async fn apply_dispatch(
    tx: &mut Tx,
    batch: &DispatchBatch,
    now: NaiveDateTime,
) -> Result<Option<Vec<CreatedAllocation>>> {
    // The firing first: a parent racing for it waits on the task row, then finds it moved
    // and dispatches nothing.
    if let Some(firing) = &batch.firing
        && !super::due::claim_firing(tx, firing).await?
    {
        return Ok(None); // another pass took this firing
    }
    // Invariant 5: only feeds with no open allocation, read inside the write transaction.
    let mut free = free_feeds(tx, batch).await?;
    let mut created = Vec::with_capacity(batch.allocations.len());
    for chunk in batch.allocations.chunks(INSERT_CHUNK) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut opened: Vec<(String, String)> = Vec::new();
        for a in chunk {
            let kept: Vec<&String> = a
                .feed_ids
                .iter()
                .filter(|f| free.remove(f.as_str()))
                .collect();
            if kept.is_empty() {
                continue;
            }
            // Time-ordered: each index takes the new rows at its end, not at random pages.
            let id = uuid::Uuid::now_v7().to_string();
            let feed_count = i64::try_from(kept.len()).unwrap_or(i64::MAX);
            opened.extend(kept.iter().map(|f| ((*f).clone(), id.clone())));
            rows.push(NewRow {
                id: id.clone(),
                task_id: a.task_id.clone(),
                task_name: a.task_name.clone(),
                cron_exp: a.cron_exp.clone(),
                feed_ids: serde_json::json!(kept).to_string(),
                assigned: a.assigned_node_id.clone(),
                feed_count,
                source: a.source.as_str(),
                available_at: a.available_at,
            });
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
        insert_allocations(tx, rows, batch, now).await?;
        for pairs in opened.chunks(OPEN_CHUNK) {
            open_feeds(tx, pairs).await?;
        }
    }
    Ok(Some(created))
}

/// The wanted feeds that have no open allocation. On PostgreSQL each is locked, in id order
/// (bytewise, the order of the chunks), so a concurrent dispatch of the same feeds waits here
/// and then sees them open (invariant 5 across parents).
async fn free_feeds(tx: &mut Tx, batch: &DispatchBatch) -> Result<HashSet<String>> {
    let mut wanted: Vec<&String> = batch
        .allocations
        .iter()
        .flat_map(|a| a.feed_ids.iter())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    // SQLite has one writer and no "C" collation: nothing to lock, no order needed.
    let lock = if tx.is_pg() {
        "ORDER BY id COLLATE \"C\" FOR UPDATE"
    } else {
        ""
    };
    let due = if batch.due_at.is_some() {
        "AND (check_order <= $2 OR (check_order IS NULL AND last_task_at IS NULL))"
    } else {
        ""
    };
    let sql = format!(
        "SELECT id FROM we_feeds WHERE id {{in:$1}} AND open_allocation_id IS NULL {due} {lock}"
    );
    let mut free = HashSet::with_capacity(wanted.len());
    for chunk in wanted.chunks(DISPATCH_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|s| (*s).clone()).collect();
        let found = match batch.due_at {
            Some(at) => tx.texts(&sql, args![ids, at]).await?,
            None => tx.texts(&sql, args![ids]).await?,
        };
        free.extend(found);
    }
    Ok(free)
}

/// Inserts pending allocations: one multi-row `VALUES` with numbered parameters (`$1`–`$3`
/// shared: time, run id, max attempts; then 9 per row).
async fn insert_allocations(
    tx: &mut Tx,
    rows: Vec<NewRow>,
    batch: &DispatchBatch,
    now: NaiveDateTime,
) -> Result<()> {
    const SHARED: usize = 3;
    const PER_ROW: usize = 9;
    let mut sql = String::from(
        "INSERT INTO we_cascade_task_allocations
           (id, task_id, task_name, cron_exp, feed_ids, assigned_node_id, feed_count, feed_source,
            node_id, status, dispatched_at, schedule_run_id, article_count, new_article_count,
            created_at, updated_at, attempt, max_attempts, available_at)
         VALUES ",
    );
    let mut args: Vec<Arg> = Vec::with_capacity(SHARED + PER_ROW * rows.len());
    args.extend([
        Arg::from(now),
        Arg::from(batch.schedule_run_id.as_str()),
        Arg::from(batch.max_attempts),
    ]);
    for (i, r) in rows.into_iter().enumerate() {
        let p = SHARED + PER_ROW * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, NULL, 'pending', COALESCE(${h}, $1), $2, 0, 0, $1, $1, 0, $3, COALESCE(${h}, $1))",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8,
            h = p + 9
        ));
        args.extend([
            Arg::from(r.id),
            Arg::from(r.task_id),
            Arg::from(r.task_name),
            Arg::from(r.cron_exp),
            Arg::from(r.feed_ids),
            Arg::from(r.assigned),
            Arg::from(r.feed_count),
            Arg::from(r.source),
            Arg::from(r.available_at),
        ]);
    }
    tx.exec(&sql, &args).await?;
    Ok(())
}

/// Marks feeds open by their new allocations: `(feed id, allocation id)` pairs.
pub(super) async fn open_feeds(tx: &mut Tx, pairs: &[(String, String)]) -> Result<()> {
    let mut values = String::with_capacity(pairs.len() * 16);
    let mut args: Vec<Arg> = Vec::with_capacity(pairs.len() * 2);
    for (i, (feed, alloc)) in pairs.iter().enumerate() {
        if i > 0 {
            values.push_str(", ");
        }
        values.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
        args.extend([Arg::from(feed), Arg::from(alloc)]);
    }
    // A `VALUES` list names its columns column1, column2 on both backends.
    let sql = format!(
        "UPDATE we_feeds SET open_allocation_id = m.column2
           FROM (VALUES {values}) AS m
          WHERE we_feeds.id = m.column1"
    );
    tx.exec(&sql, &args).await?;
    Ok(())
}

async fn claim(
    tx: &mut Tx,
    node_id: &str,
    limit: i64,
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<ClaimOutcome> {
    // Claims of one node are serialized (capacity holds across parents); claims of different
    // nodes run side by side and skip each other's candidates.
    let node = touch_read(tx, node_id, now).await?;
    let gate = match ClaimGate::of(&node, now, policy) {
        Ok(gate) => gate,
        Err(block) => {
            return Ok(ClaimOutcome {
                packages: Vec::new(),
                blocked: Some(block),
            });
        }
    };
    let want = limit.min(gate.free);
    let ids = candidates(tx, node_id, &gate.kinds, gate.free, want, now, policy).await?;
    let mut packages = Vec::new();
    if !ids.is_empty() {
        let claimed = mark_claimed(tx, node_id, &ids, now, policy).await?;
        for row in &claimed {
            if let Some(p) = package(tx, row, now).await? {
                packages.push(p);
            }
        }
    }
    Ok(ClaimOutcome {
        packages,
        blocked: None,
    })
}

/// Claimable ids in claim order (own → unassigned → stealable) whose feeds fit in `free`;
/// on PostgreSQL every candidate row is locked, and rows another transaction holds are
/// skipped.
async fn candidates(
    tx: &mut Tx,
    node_id: &str,
    kinds: &[String],
    free: i64,
    want: i64,
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<String>> {
    // Never after `now`: the steal set's first part is bounded by it alone.
    let steal_before = (now - TimeDelta::seconds(policy.steal_after)).min(now);
    let silent_since = now - TimeDelta::seconds(policy.offline_after);
    let mut picked: Vec<String> = Vec::new();
    let mut room = free;
    // Own work, unassigned work, then the steal set (`None`).
    for group in [Some(OWN), Some(UNASSIGNED), None] {
        let remaining = want - i64::try_from(picked.len()).unwrap_or(i64::MAX);
        if remaining <= 0 || room <= 0 {
            break;
        }
        let c = Candidates {
            node_id,
            kinds,
            room,
            limit: remaining,
            now,
            steal_before,
            silent_since,
        };
        let rows = match group {
            Some(filter) => tx.rows(&ordered(filter), &c.args(None)).await?,
            None => stealable(tx, &c).await?,
        };
        take_fitting(&rows, &mut picked, &mut room, want)?;
    }
    Ok(picked)
}

const OWN: &str = "assigned_node_id = $1 AND available_at <= $2";
const UNASSIGNED: &str = "assigned_node_id IS NULL AND available_at <= $2";
/// Work assigned to another node (`COALESCE` keeps SQLite off the index on
/// `assigned_node_id`, whose range would need a sort).
const OTHERS: &str = "COALESCE(assigned_node_id, $1) <> $1";
/// A node whose assigned work others may take: inactive, silent, cooling or parked.
const NODE_STEALABLE: &str = "is_active = {false} OR last_heartbeat_at IS NULL
    OR last_heartbeat_at < $7 OR cooldown_until > $2 OR session_state IN ('expired', 'none')";

/// Candidates of one group matching `filter`, in claim order, at most `$5`.
fn ordered(filter: &str) -> String {
    format!(
        "SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations
          WHERE {PENDING_OF_KIND} AND {filter}
          ORDER BY available_at, dispatched_at, id LIMIT CAST($5 AS BIGINT) {{skip_locked}}"
    )
}

/// What every candidate query binds: `$1` node, `$2` now, `$3` kinds, `$4` room, `$5` limit,
/// `$6` steal before, `$7` silent since (and `$8` another node, for one node's work).
struct Candidates<'a> {
    node_id: &'a str,
    kinds: &'a [String],
    room: i64,
    limit: i64,
    now: NaiveDateTime,
    steal_before: NaiveDateTime,
    silent_since: NaiveDateTime,
}

impl Candidates<'_> {
    fn args(&self, other: Option<&str>) -> Vec<Arg> {
        vec![
            Arg::from(self.node_id),
            Arg::from(self.now),
            Arg::from(self.kinds),
            Arg::from(self.room),
            Arg::from(self.limit),
            Arg::from(self.steal_before),
            Arg::from(self.silent_since),
            Arg::from(other),
        ]
    }
}

/// The first `limit` rows of the steal set in claim order: pending work assigned to another
/// node that is inactive, silent, cooling or parked, or that it has not claimed within
/// `steal_after` of dispatch. Each part walks an index in claim order and stops at its
/// limit, so the cost does not grow with the pending rows (no sort of the queue):
/// - rows available since before `steal_before` (`ix_cascade_alloc_pending_order`): they
///   come first in claim order, and usually fill the claim;
/// - rows available since then, merged in claim order: those old by dispatch can only be
///   retried or released ones (`available_at > dispatched_at`,
///   `ix_cascade_alloc_pending_moved`), and the work of each stealable node
///   (`ix_cascade_alloc_pending_claim`, one probe per node: nodes are few).
async fn stealable(tx: &mut Tx, c: &Candidates<'_>) -> Result<Vec<Row>> {
    let mut rows = tx.rows(&steal_settled(), &c.args(None)).await?;
    let short = c.limit - i64::try_from(rows.len()).unwrap_or(i64::MAX);
    if short <= 0 {
        return Ok(rows);
    }
    let rest = Candidates { limit: short, ..*c };
    let mut recent = tx.rows(&steal_moved(), &rest.args(None)).await?;
    let nodes = tx.texts(&stealable_nodes(), &rest.args(None)).await?;
    for node in &nodes {
        recent.extend(tx.rows(&steal_of_node(), &rest.args(Some(node))).await?);
    }
    // The parts' rows in claim order (NULLs sort first on SQLite, last on PostgreSQL, as
    // each database's ORDER BY does), each once, the first `short` of them.
    let nulls_last = tx.is_pg();
    let mut keyed = recent
        .into_iter()
        .map(|r| {
            let key = (
                r.time("available_at")?,
                r.time("dispatched_at")?,
                r.text("id")?,
            );
            Ok((key, r))
        })
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by(|(a, _), (b, _)| {
        let nulls = |x: &Option<NaiveDateTime>, y: &Option<NaiveDateTime>| match (x, y) {
            (Some(x), Some(y)) => x.cmp(y),
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) if nulls_last => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) if nulls_last => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
        };
        nulls(&a.0, &b.0)
            .then_with(|| nulls(&a.1, &b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    keyed.dedup_by(|(a, _), (b, _)| a.2 == b.2);
    rows.extend(
        keyed
            .into_iter()
            .map(|(_, r)| r)
            .take(usize::try_from(short).unwrap_or(usize::MAX)),
    );
    Ok(rows)
}

/// The steal set's rows available since before `$6` (≤ now; all of them old by dispatch,
/// unless adopted otherwise), in claim order.
fn steal_settled() -> String {
    ordered(&format!(
        "{OTHERS} AND available_at <= $6
         AND (dispatched_at <= $6 OR assigned_node_id IN (
           SELECT id FROM we_cascade_nodes WHERE {NODE_STEALABLE}))"
    ))
}

/// The steal set's rows old by dispatch but available only since `$6`: their availability
/// moved past their dispatch (the last term, implied by the others, names the partial index).
fn steal_moved() -> String {
    ordered(&format!(
        "{OTHERS} AND available_at > $6 AND available_at <= $2 AND dispatched_at <= $6
         AND available_at > dispatched_at"
    ))
}

/// The nodes other than `$1` whose assigned work is stealable.
fn stealable_nodes() -> String {
    format!("SELECT id FROM we_cascade_nodes WHERE id <> $1 AND ({NODE_STEALABLE})")
}

/// The work of one stealable node `$8` available since `$6`, in claim order.
fn steal_of_node() -> String {
    ordered("assigned_node_id = $8 AND available_at > $6 AND available_at <= $2")
}

async fn mark_claimed(
    tx: &mut Tx,
    node_id: &str,
    ids: &[String],
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<Row>> {
    let lease_end = now + TimeDelta::seconds(policy.lease_seconds);
    let deadline = now + TimeDelta::seconds(policy.max_run_seconds);
    // A fresh token per row (32 lowercase hex digits): each backend's own random source.
    // `CAST(status AS TEXT)` keeps SQLite on the primary key (a bare `status = ...` would
    // walk every pending row through the claim-order index); a no-op on PostgreSQL.
    let token = if tx.is_pg() {
        "replace(CAST(gen_random_uuid() AS TEXT), '-', '')"
    } else {
        "lower(hex(randomblob(16)))"
    };
    let sql = format!(
        "UPDATE we_cascade_task_allocations
            SET status = 'claimed', node_id = $1, assigned_node_id = $1, claimed_at = $2,
                started_at = NULL, lease_expires_at = $3, run_deadline = $4,
                lease_token = {token}, attempt = attempt + 1,
                article_count = 0, new_article_count = 0, updated_at = $2
          WHERE id {{in:$5}} AND CAST(status AS TEXT) = 'pending'
          RETURNING *"
    );
    let mut rows = tx
        .rows(
            &sql,
            args![node_id, now, lease_end.min(deadline), deadline, ids],
        )
        .await?;
    sort_as(&mut rows, ids);
    Ok(rows)
}

/// Builds the package of a claimed row; `None` (and the row failed `not_found`) when its task
/// or every feed is gone.
async fn package(tx: &mut Tx, row: &Row, now: NaiveDateTime) -> Result<Option<TaskPackage>> {
    let id = row.text("id")?;
    let task = tx
        .opt(rows::PACKAGE_TASK, args![row.text("task_id")?])
        .await?;
    let feed_ids = row.string_list("feed_ids")?.unwrap_or_default();
    let feeds = tx
        .rows(
            "SELECT f.*, (SELECT MAX(a.publish_time) FROM we_articles a
                    WHERE a.mp_id = f.id AND NOT a.time_estimated) AS since
               FROM we_feeds f WHERE f.id {in:$1} ORDER BY f.id",
            args![feed_ids],
        )
        .await?;
    let Some(task) = task.filter(|_| !feeds.is_empty()) else {
        fail_not_found(tx, &id, now).await?;
        return Ok(None);
    };
    Ok(Some(rows::package(row, &task, &feeds)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite's planner does with each query of the steal path (and the lease sweep)
    /// on a migrated database (no statistics, as in production): every part walks an index
    /// in its order, none sorts or scans the table (their cost must not grow with it).
    #[tokio::test]
    async fn the_steal_path_walks_indexes_in_claim_order_without_sorting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:///{}", dir.path().join("plan.db").display());
        let store = Store::connect(&url).await.expect("store");
        let plans = store
            .db
            .read(|tx| {
                Box::pin(async move {
                    let now = chrono::Utc::now().naive_utc();
                    let kinds = vec!["wechat".to_string()];
                    let c = Candidates {
                        node_id: "n1",
                        kinds: &kinds,
                        room: 10,
                        limit: 10,
                        now,
                        steal_before: now,
                        silent_since: now,
                    };
                    let mut plans = Vec::new();
                    for (sql, index) in [
                        (steal_settled(), "ix_cascade_alloc_pending_order"),
                        (steal_moved(), "ix_cascade_alloc_pending_moved"),
                        (steal_of_node(), "ix_cascade_alloc_pending_claim"),
                        (ordered(OWN), "ix_cascade_alloc_pending_claim"),
                        (ordered(UNASSIGNED), "ix_cascade_alloc_pending_claim"),
                    ] {
                        let rows = tx
                            .rows(&format!("EXPLAIN QUERY PLAN {sql}"), &c.args(Some("n2")))
                            .await?;
                        let detail: Vec<String> = rows
                            .iter()
                            .map(|r| r.text("detail"))
                            .collect::<Result<_>>()?;
                        plans.push((index, detail));
                    }
                    let rows = tx
                        .rows(
                            &format!(
                                "EXPLAIN QUERY PLAN {}",
                                crate::store::ops::recovery::EXPIRED_LEASES
                            ),
                            args![now],
                        )
                        .await?;
                    let detail: Vec<String> = rows
                        .iter()
                        .map(|r| r.text("detail"))
                        .collect::<Result<_>>()?;
                    plans.push(("ix_cascade_alloc_held_lease", detail));
                    Ok(plans)
                })
            })
            .await
            .expect("plans");
        for (index, detail) in plans {
            let text = detail.join("\n");
            assert!(
                detail.iter().any(|d| d.starts_with(&format!(
                    "SEARCH we_cascade_task_allocations USING INDEX {index} ("
                ))),
                "expected a search of {index}:\n{text}"
            );
            assert!(!text.contains("TEMP B-TREE"), "a sort:\n{text}");
        }
    }
}
