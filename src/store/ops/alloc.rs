//! Dispatch (one transaction per call, the wanted feeds locked in id order on PostgreSQL) and
//! claims (the node row locked, candidates taken with `FOR UPDATE SKIP LOCKED` on PostgreSQL;
//! one writer on SQLite), so no allocation is ever handed out twice, even with several parents.

use crate::dispatch::Source;
use crate::store::db::{Arg, Tx, args};
use crate::store::rows::{RowExt, node_from_row};
use crate::store::{CreatedAllocation, DispatchBatch, DispatchFeed, NodeLoad, Result, Store};
use chrono::NaiveDateTime;
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
