//! Freshness mode's reads and writes (issue 15): the feeds due now in `check_order`, feeds no
//! task lists put off, and a task's cron firing making its feeds due.

use crate::dispatch::Source;
use crate::store::db::{Tx, args};
use crate::store::rows::RowExt;
use crate::store::{Firing, Result, Store};
use chrono::NaiveDateTime;

/// A feed freshness mode may dispatch now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueFeed {
    /// Feed id.
    pub id: String,
    /// Its fetcher kind.
    pub source: Source,
}

/// Feed ids bound per statement.
const CHUNK: usize = 5_000;

impl Store {
    /// At most `limit` enabled feeds of `source` with no open allocation that are due at
    /// `now`: those never checked nor planned first (by id), then the planned ones in
    /// `check_order`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn due_feeds(
        &self,
        now: NaiveDateTime,
        source: Source,
        limit: i64,
    ) -> Result<Vec<DueFeed>> {
        self.db
            .read(move |tx| Box::pin(async move { due_feeds(tx, now, source, limit).await }))
            .await
    }

    /// Moves the next check of feeds (with no open allocation) to `until`: those no enabled
    /// task lists, so that they do not stay at the head of the due ones.
    ///
    /// # Errors
    /// A database failure.
    pub async fn defer_checks(&self, ids: Vec<String>, until: NaiveDateTime) -> Result<u64> {
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let mut moved = 0;
                    for chunk in ids.chunks(CHUNK) {
                        moved += tx
                            .exec(
                                "UPDATE we_feeds SET next_check_at = $2, check_order = $2
                                  WHERE id {in:$1} AND open_allocation_id IS NULL",
                                args![chunk.to_vec(), until],
                            )
                            .await?;
                    }
                    Ok(moved)
                })
            })
            .await
    }

    /// "Check now" of a feed with an open allocation: a pending one becomes claimable and
    /// ordered as if available since `at` (when that is earlier). The open allocation's id
    /// and status, `None` when the feed has none.
    ///
    /// # Errors
    /// A database failure.
    pub async fn hurry_open(
        &self,
        feed_id: &str,
        at: NaiveDateTime,
    ) -> Result<Option<(String, String)>> {
        let feed_id = feed_id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let Some(open) = tx
                        .texts(
                            "SELECT open_allocation_id FROM we_feeds
                              WHERE id = $1 AND open_allocation_id IS NOT NULL",
                            args![&feed_id],
                        )
                        .await?
                        .into_iter()
                        .next()
                    else {
                        return Ok(None);
                    };
                    tx.exec(
                        "UPDATE we_cascade_task_allocations SET available_at = $2
                          WHERE id = $1 AND status = 'pending' AND available_at > $2",
                        args![&open, at],
                    )
                    .await?;
                    let status = tx
                        .texts(
                            "SELECT status FROM we_cascade_task_allocations WHERE id = $1",
                            args![&open],
                        )
                        .await?
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                    Ok(Some((open, status)))
                })
            })
            .await
    }

    /// A task's cron firing in freshness mode: claims the firing (as a dispatch would), then
    /// makes the planned feeds among `feeds` (`None`: every feed) due at its time, unless
    /// they are due earlier or the upstream asked to wait longer, 5,000 per write. `None`
    /// when another pass took the firing; else the feeds made due.
    ///
    /// # Errors
    /// A database failure (the firing stays due when it fails before the claim).
    pub async fn fire_due(
        &self,
        firing: Firing,
        feeds: Option<Vec<String>>,
    ) -> Result<Option<u64>> {
        let due = firing.due;
        let claimed = self
            .db
            .write(move |tx| Box::pin(async move { claim_firing(tx, &firing).await }))
            .await?;
        if !claimed {
            return Ok(None);
        }
        let ids = match feeds {
            Some(ids) => ids,
            None => self.all_feed_ids().await?,
        };
        let mut made_due = 0;
        for chunk in ids.chunks(CHUNK) {
            let chunk = chunk.to_vec();
            made_due += self
                .db
                .write(move |tx| {
                    // Only planned feeds: a never-checked feed is due already, and one waiting
                    // for its plan gets it within a reaper tick.
                    Box::pin(async move {
                        tx.exec(
                            "UPDATE we_feeds SET check_order = $1
                              WHERE id {in:$2} AND open_allocation_id IS NULL
                                AND check_order IS NOT NULL AND check_order > $1
                                AND (check_not_before IS NULL OR check_not_before <= $1)",
                            args![due, chunk],
                        )
                        .await
                    })
                })
                .await?;
        }
        Ok(Some(made_due))
    }
}

async fn due_feeds(
    tx: &mut Tx,
    now: NaiveDateTime,
    source: Source,
    limit: i64,
) -> Result<Vec<DueFeed>> {
    let never = tx
        .rows(
            "SELECT id, source FROM we_feeds
              WHERE source = $2 AND last_task_at IS NULL AND open_allocation_id IS NULL
                AND check_order IS NULL AND status = 1
              ORDER BY id LIMIT CAST($1 AS BIGINT)",
            args![limit, source.as_str()],
        )
        .await?;
    let left = limit - i64::try_from(never.len()).unwrap_or(limit);
    let planned = if left > 0 {
        tx.rows(
            "SELECT id, source FROM we_feeds
              WHERE source = $3 AND open_allocation_id IS NULL AND check_order IS NOT NULL
                AND check_order <= $1 AND status = 1
              ORDER BY check_order, id LIMIT CAST($2 AS BIGINT)",
            args![now, left, source.as_str()],
        )
        .await?
    } else {
        Vec::new()
    };
    never
        .iter()
        .chain(&planned)
        .map(|r| {
            Ok(DueFeed {
                id: r.text("id")?,
                source: Source::parse(&r.opt_text("source")?.unwrap_or_default()),
            })
        })
        .collect()
}

/// Claims a cron firing: moves the task's `next_run_at` on, only if it is still `due`. False
/// when another pass (of any parent) took it first.
pub(super) async fn claim_firing(tx: &mut Tx, firing: &Firing) -> Result<bool> {
    let claimed = tx
        .exec(
            "UPDATE we_message_tasks SET next_run_at = $3, last_run_at = $4
              WHERE id = $1 AND next_run_at = $2",
            args![&firing.task_id, firing.due, firing.next, firing.fired_at],
        )
        .await?;
    Ok(claimed > 0)
}
