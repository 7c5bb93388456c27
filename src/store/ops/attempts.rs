//! The attempt history of allocations (issue 16): one `cascade_allocation_attempts` row per
//! attempt that ended without completing, written in the transaction of the change that
//! ended it, and the detail read that shows them. A completed attempt is the allocation row
//! itself, so completions and claims write nothing here.
//!
//! Outcomes: `retry` (the node's failure sent the work back to pending), `failed` (it failed
//! for good), `released` (given back without spending an attempt: by the node, or because its
//! node was disabled or deleted), `expired` (the parent took it back: lease run out, node
//! silent) and `cancelled` (by an admin). The reason word says why.

use crate::store::db::{Arg, Tx, args};
use crate::store::rows::{RowExt, allocation_from_row};
use crate::store::{Allocation, Error, Result, Store};
use chrono::NaiveDateTime;

/// How an attempt ended.
pub(crate) struct Ended<'a> {
    /// `retry`, `failed`, `released`, `expired` or `cancelled`.
    pub(crate) outcome: &'a str,
    /// A wire name of [`crate::dispatch::retry::Reason`].
    pub(crate) reason: &'a str,
    /// The failure's message, if any.
    pub(crate) error: Option<&'a str>,
}

/// Which allocations' current attempts ended.
pub(crate) enum Ending<'a> {
    /// These allocations, as their rows are now.
    Ids(&'a [String]),
    /// Every allocation this node holds now.
    HeldBy(&'a str),
    /// One allocation, as read before the change (`id`, attempt, holder).
    Read(&'a str, i64, Option<&'a str>),
}

/// A fresh UUID per row, from the database's own random source (one statement for any
/// number of rows).
fn new_id(tx: &Tx) -> &'static str {
    if tx.is_pg() {
        "CAST(gen_random_uuid() AS TEXT)"
    } else {
        "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
               substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1) ||
               substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
    }
}

/// Records the attempt of each allocation `ending` names: one statement, an `INSERT …
/// SELECT` of the rows as they are now (so before the change that ends their attempts).
pub(crate) async fn record(
    tx: &mut Tx,
    ending: Ending<'_>,
    ended: &Ended<'_>,
    now: NaiveDateTime,
) -> Result<()> {
    let (source, extra) = match ending {
        Ending::Ids([]) => return Ok(()),
        Ending::Ids(ids) => (
            "SELECT {id}, id, attempt, node_id, $1, $2, $3, $4
               FROM we_cascade_task_allocations WHERE id {in:$5}",
            vec![Arg::from(ids)],
        ),
        Ending::HeldBy(node) => (
            "SELECT {id}, id, attempt, node_id, $1, $2, $3, $4
               FROM we_cascade_task_allocations
              WHERE node_id = $5 AND status IN ('claimed', 'executing')",
            vec![Arg::from(node)],
        ),
        Ending::Read(id, attempt, node) => (
            "VALUES ({id}, $5, $6, $7, $1, $2, $3, $4)",
            vec![Arg::from(id), Arg::from(attempt), Arg::from(node)],
        ),
    };
    let sql = format!(
        "INSERT INTO cascade_allocation_attempts
           (id, allocation_id, attempt, node_id, outcome, reason, error_message, at) {}",
        source.replace("{id}", new_id(tx))
    );
    let mut bound = args![ended.outcome, ended.reason, ended.error, now].to_vec();
    bound.extend(extra);
    tx.exec(&sql, &bound).await?;
    Ok(())
}

/// One feed of an allocation, as the detail shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct AllocationFeed {
    /// Feed id.
    pub id: String,
    /// Its `mp_name`; `None` for a feed deleted since.
    pub name: Option<String>,
    /// Its fetcher kind (`wechat`, `rss`).
    pub source: Option<String>,
    /// 1 enabled, 0 disabled.
    pub status: Option<i64>,
}

/// An attempt that ended without completing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Its number (as the allocation counted it then).
    pub attempt: i64,
    /// The node that held it (`None`: it was pending).
    pub node_id: Option<String>,
    /// That node's name, if it still exists.
    pub node_name: Option<String>,
    /// How it ended (see the outcomes above).
    pub outcome: String,
    /// Why.
    pub reason: Option<String>,
    /// The failure's message.
    pub error_message: Option<String>,
    /// When.
    pub at: Option<NaiveDateTime>,
}

/// An allocation with its feeds and the attempts that ended without completing.
#[derive(Debug, Clone)]
pub struct AllocationDetail {
    /// The row, as the list shows it.
    pub allocation: Allocation,
    /// Its feeds, in its `feed_ids` order.
    pub feeds: Vec<AllocationFeed>,
    /// Oldest first.
    pub attempts: Vec<AttemptRecord>,
}

impl Store {
    /// One allocation with its feeds and attempt history.
    ///
    /// # Errors
    /// `NotFound("allocation")` for an unknown id; database failures.
    pub async fn allocation_detail(&self, id: &str) -> Result<AllocationDetail> {
        let id = id.to_string();
        self.db
            .read(move |tx| Box::pin(async move { detail(tx, &id).await }))
            .await
    }
}

async fn detail(tx: &mut Tx, id: &str) -> Result<AllocationDetail> {
    let row = tx
        .opt(
            "SELECT a.*, n.name AS node_name FROM we_cascade_task_allocations a
               LEFT JOIN we_cascade_nodes n ON n.id = a.node_id WHERE a.id = $1",
            args![id],
        )
        .await?
        .ok_or(Error::NotFound("allocation"))?;
    let allocation = allocation_from_row(&row)?;
    let found = tx
        .rows(
            "SELECT id, mp_name, source, status FROM we_feeds WHERE id {in:$1}",
            args![&allocation.feed_ids],
        )
        .await?;
    let mut known = std::collections::HashMap::with_capacity(found.len());
    for r in &found {
        let feed = AllocationFeed {
            id: r.text("id")?,
            name: r.opt_text("mp_name")?,
            source: r.opt_text("source")?,
            status: r.opt_int("status")?,
        };
        known.insert(feed.id.clone(), feed);
    }
    let feeds = allocation
        .feed_ids
        .iter()
        .map(|f| {
            known.remove(f).unwrap_or_else(|| AllocationFeed {
                id: f.clone(),
                name: None,
                source: None,
                status: None,
            })
        })
        .collect();
    let rows = tx
        .rows(
            "SELECT t.attempt, t.node_id, n.name AS node_name, t.outcome, t.reason,
                    t.error_message, t.at
               FROM cascade_allocation_attempts t
               LEFT JOIN we_cascade_nodes n ON n.id = t.node_id
              WHERE t.allocation_id = $1 ORDER BY t.at, t.attempt, t.id",
            args![id],
        )
        .await?;
    let attempts = rows
        .iter()
        .map(|r| {
            Ok(AttemptRecord {
                attempt: r.int("attempt")?,
                node_id: r.opt_text("node_id")?,
                node_name: r.opt_text("node_name")?,
                outcome: r.text("outcome")?,
                reason: r.opt_text("reason")?,
                error_message: r.opt_text("error_message")?,
                at: r.time("at")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AllocationDetail {
        allocation,
        feeds,
        attempts,
    })
}
