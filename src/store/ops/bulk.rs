//! An operator's retry and cancel of allocations (issue 16): by ids or by the list's filter,
//! at most [`BULK_MAX`] a call, in id order, each call one transaction. On PostgreSQL a cancel
//! first locks the holders' node rows, then the chosen rows, then the feeds they take or
//! free: the order of every node-then-allocation-then-feeds write.

use super::alloc::{OPEN_CHUNK, open_feeds};
use super::attempts::{Ended, Ending, record};
use super::monitor::{ALLOC_WHERE, filter_args};
use crate::dispatch::retry::Reason;
use crate::store::db::{Arg, Tx, args};
use crate::store::rows::RowExt;
use crate::store::{AllocationFilter, Result, Store};
use chrono::NaiveDateTime;
use std::collections::HashSet;

/// The most allocations one call acts on.
pub const BULK_MAX: usize = 1000;

/// Statuses a retry reopens (`timeout` only in adopted WeRSS rows).
pub const RETRYABLE_STATUSES: &[&str] = &["failed", "timeout"];

/// Statuses a cancel ends.
pub const CANCELLABLE_STATUSES: &[&str] = &["pending", "claimed", "executing"];

/// Feed ids read per statement.
const FEED_CHUNK: usize = 5000;

/// The allocations an operator's action names.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These (1–[`BULK_MAX`]); unknown ids are left out.
    Ids(Vec<String>),
    /// The first [`BULK_MAX`] the filter matches in id order, after the id given (the
    /// previous call's `next`): a call goes on where the last one stopped, so rows it left
    /// as they were (their feeds busy) never hold back the rest.
    Filter(AllocationFilter, Option<String>),
}

/// What a retry or cancel did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct BulkOutcome {
    /// Allocations the selection named and this call handled.
    pub matched: usize,
    /// Of them, changed.
    pub changed: usize,
    /// Of them, left as they were (another status, or no feed free to take).
    pub skipped: usize,
    /// The changed ones, in id order.
    pub ids: Vec<String>,
    /// The filter matched more than one call handles: call again with `after` = `next`.
    pub more: bool,
    /// With `more`: the last allocation this call handled, where the next call goes on.
    pub next: Option<String>,
}

impl BulkOutcome {
    fn new(picked: &[Picked], ids: Vec<String>, more: bool) -> Self {
        Self {
            matched: picked.len(),
            changed: ids.len(),
            skipped: picked.len().saturating_sub(ids.len()),
            ids,
            more,
            next: more.then(|| picked.last().map(|p| p.id.clone())).flatten(),
        }
    }
}

impl Store {
    /// Reopens failed allocations in place (status `pending`, attempt 0, available now,
    /// unassigned), each keeping only its feeds that are enabled and have no open allocation,
    /// and opening them; a row none of whose feeds is free stays failed.
    pub async fn retry_allocations(
        &self,
        selection: Selection,
        now: NaiveDateTime,
    ) -> Result<BulkOutcome> {
        self.db
            .write(move |tx| Box::pin(async move { retry(tx, &selection, now).await }))
            .await
    }

    /// Ends open allocations as `failed` with reason `cancelled` and `message`, frees their
    /// feeds and records the attempt each was at. A node still crawling one is refused on its
    /// next report (the row is no longer held).
    pub async fn cancel_allocations(
        &self,
        selection: Selection,
        message: String,
        now: NaiveDateTime,
    ) -> Result<BulkOutcome> {
        self.db
            .write(move |tx| Box::pin(async move { cancel(tx, &selection, &message, now).await }))
            .await
    }
}

/// An allocation a selection named, as read (and locked) before the change.
struct Picked {
    id: String,
    status: String,
    feed_ids: Vec<String>,
    node_id: Option<String>,
}

/// The selection's rows in id order, locked when `lock` (PostgreSQL), and whether the filter
/// matched more.
async fn pick(tx: &mut Tx, selection: &Selection, lock: bool) -> Result<(Vec<Picked>, bool)> {
    let lock = if lock { "{for_update}" } else { "" };
    let rows = match selection {
        Selection::Ids(ids) => {
            let sql = format!(
                "SELECT id, status, feed_ids, node_id FROM we_cascade_task_allocations
                  WHERE id {{in:$1}} ORDER BY id {lock}"
            );
            tx.rows(&sql, args![ids]).await?
        }
        Selection::Filter(filter, after) => {
            let mut bound = filter_args(filter);
            bound.push(Arg::from(i64::try_from(BULK_MAX + 1).unwrap_or(i64::MAX)));
            bound.push(Arg::from(after.clone()));
            let sql = format!(
                "SELECT a.id, a.status, a.feed_ids, a.node_id FROM we_cascade_task_allocations a
                   {ALLOC_WHERE} AND (CAST($8 AS TEXT) IS NULL OR a.id > $8)
                  ORDER BY a.id LIMIT CAST($7 AS BIGINT) {lock}"
            );
            tx.rows(&sql, &bound).await?
        }
    };
    let mut picked = rows
        .iter()
        .map(|r| {
            Ok(Picked {
                id: r.text("id")?,
                status: r.text("status")?,
                feed_ids: r.string_list("feed_ids")?.unwrap_or_default(),
                node_id: r.opt_text("node_id")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let more = picked.len() > BULK_MAX;
    picked.truncate(BULK_MAX);
    Ok((picked, more))
}

async fn retry(tx: &mut Tx, selection: &Selection, now: NaiveDateTime) -> Result<BulkOutcome> {
    let (picked, more) = pick(tx, selection, true).await?;
    let failed: Vec<&Picked> = picked
        .iter()
        .filter(|p| RETRYABLE_STATUSES.contains(&p.status.as_str()))
        .collect();
    // Invariant 5: a feed goes to the first row (in id order) that wants it, if it has no
    // open allocation.
    let mut free = free_feeds(tx, &failed).await?;
    let reopened: Vec<(String, Vec<String>)> = failed
        .into_iter()
        .filter_map(|p| {
            let kept: Vec<String> = p
                .feed_ids
                .iter()
                .filter(|f| free.remove(f.as_str()))
                .cloned()
                .collect();
            (!kept.is_empty()).then(|| (p.id.clone(), kept))
        })
        .collect();
    reopen(tx, &reopened, now).await?;
    let pairs: Vec<(String, String)> = reopened
        .iter()
        .flat_map(|(id, feeds)| feeds.iter().map(|f| (f.clone(), id.clone())))
        .collect();
    for part in pairs.chunks(OPEN_CHUNK) {
        open_feeds(tx, part).await?;
    }
    let ids = reopened.into_iter().map(|(id, _)| id).collect();
    Ok(BulkOutcome::new(&picked, ids, more))
}

/// The enabled feeds of `rows` with no open allocation. On PostgreSQL each is locked in id
/// order (bytewise), as a dispatch locks them, so the two wait for each other.
async fn free_feeds(tx: &mut Tx, rows: &[&Picked]) -> Result<HashSet<String>> {
    let mut wanted: Vec<&String> = rows.iter().flat_map(|p| p.feed_ids.iter()).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let lock = if tx.is_pg() {
        "ORDER BY id COLLATE \"C\" FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT id FROM we_feeds
          WHERE id {{in:$1}} AND open_allocation_id IS NULL AND COALESCE(status, 1) = 1 {lock}"
    );
    let mut free = HashSet::with_capacity(wanted.len());
    for chunk in wanted.chunks(FEED_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|s| (*s).clone()).collect();
        free.extend(tx.texts(&sql, args![ids]).await?);
    }
    Ok(free)
}

/// Reopens `(allocation, kept feeds)` rows in one statement (3 parameters a row after the
/// time in `$1`; at most [`BULK_MAX`] rows).
async fn reopen(tx: &mut Tx, rows: &[(String, Vec<String>)], now: NaiveDateTime) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut values = String::with_capacity(rows.len() * 16);
    let mut bound: Vec<Arg> = Vec::with_capacity(1 + 3 * rows.len());
    bound.push(Arg::from(now));
    for (i, (id, feeds)) in rows.iter().enumerate() {
        if i > 0 {
            values.push_str(", ");
        }
        let p = 2 + 3 * i;
        values.push_str(&format!("(${p}, ${}, ${})", p + 1, p + 2));
        bound.extend([
            Arg::from(id),
            Arg::from(serde_json::json!(feeds).to_string()),
            Arg::from(i64::try_from(feeds.len()).unwrap_or(i64::MAX)),
        ]);
    }
    // A `VALUES` list names its columns column1, column2, … on both backends.
    let sql = format!(
        "UPDATE we_cascade_task_allocations
            SET status = 'pending', attempt = 0, available_at = $1, dispatched_at = $1,
                updated_at = $1, node_id = NULL, assigned_node_id = NULL, lease_token = NULL,
                lease_expires_at = NULL, run_deadline = NULL, claimed_at = NULL,
                started_at = NULL, completed_at = NULL, reason = NULL, error_message = NULL,
                feed_ids = m.column2, feed_count = m.column3
           FROM (VALUES {values}) AS m
          WHERE we_cascade_task_allocations.id = m.column1
            AND CAST(we_cascade_task_allocations.status AS TEXT) IN ('failed', 'timeout')"
    );
    tx.exec(&sql, &bound).await?;
    Ok(())
}

async fn cancel(
    tx: &mut Tx,
    selection: &Selection,
    message: &str,
    now: NaiveDateTime,
) -> Result<BulkOutcome> {
    // A held row's node is locked before the row, as a heartbeat, a release and a node's
    // disabling lock them (node, then its rows): the two never wait for each other in a
    // circle.
    if tx.is_pg() {
        let (seen, _) = pick(tx, selection, false).await?;
        let mut nodes: Vec<String> = seen.into_iter().filter_map(|p| p.node_id).collect();
        nodes.sort_unstable();
        nodes.dedup();
        if !nodes.is_empty() {
            tx.texts(
                "SELECT id FROM we_cascade_nodes WHERE id {in:$1}
                  ORDER BY id COLLATE \"C\" FOR UPDATE",
                args![&nodes],
            )
            .await?;
        }
    }
    let (picked, more) = pick(tx, selection, true).await?;
    let open: Vec<String> = picked
        .iter()
        .filter(|p| CANCELLABLE_STATUSES.contains(&p.status.as_str()))
        .map(|p| p.id.clone())
        .collect();
    if open.is_empty() {
        return Ok(BulkOutcome::new(&picked, open, more));
    }
    let ended = Ended {
        outcome: "cancelled",
        reason: Reason::Cancelled.as_str(),
        error: Some(message),
    };
    record(tx, Ending::Ids(&open), &ended, now).await?;
    // Terminal rows keep their last holder; its lease ends here, so its reports are refused
    // as for any finished allocation. A failed allocation is placed on no node any more.
    let changed: HashSet<String> = tx
        .texts(
            "UPDATE we_cascade_task_allocations
                SET status = 'failed', reason = $2, error_message = $3, completed_at = $4,
                    updated_at = $4, lease_expires_at = NULL, run_deadline = NULL,
                    assigned_node_id = NULL
              WHERE id {in:$1} AND CAST(status AS TEXT) IN ('pending', 'claimed', 'executing')
              RETURNING id",
            args![&open, Reason::Cancelled.as_str(), message, now],
        )
        .await?
        .into_iter()
        .collect();
    tx.exec(
        "UPDATE we_feeds SET open_allocation_id = NULL
          WHERE open_allocation_id IS NOT NULL AND open_allocation_id {in:$1}",
        args![&open],
    )
    .await?;
    let ids = open.into_iter().filter(|id| changed.contains(id)).collect();
    Ok(BulkOutcome::new(&picked, ids, more))
}
