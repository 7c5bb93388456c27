//! WeChat sources (issue 13 §2–§3): each source's state, its evidence of closure, its probe
//! time, and the source that last read each feed. See [`crate::store::sources`].

use crate::store::db::{Tx, args};
use crate::store::rows::RowExt;
use crate::store::sources::source_from_row;
use crate::store::{Result, SourceRow, Store};
use chrono::NaiveDateTime;
use futures::future::BoxFuture;

impl Store {
    /// Every WeChat source with a record (cached briefly: [`crate::store::sources`]).
    pub async fn source_rows(&self) -> Result<Vec<SourceRow>> {
        let generation = match self.sources.get() {
            Ok(rows) => return Ok(rows),
            Err(generation) => generation,
        };
        let rows = self.read_source_rows().await?;
        self.sources.put(generation, &rows);
        Ok(rows)
    }

    /// Runs a write that changes sources' records, then empties their cache.
    async fn change_sources<T: Send + 'static>(
        &self,
        op: impl for<'c> FnOnce(&'c mut Tx) -> BoxFuture<'c, Result<T>> + Send + 'static,
    ) -> Result<T> {
        let changed = self.db.write(op).await;
        self.sources.clear();
        changed
    }

    async fn read_source_rows(&self) -> Result<Vec<SourceRow>> {
        self.db
            .read(|tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows("SELECT * FROM cascade_sources ORDER BY source", &[])
                        .await?;
                    let refusals = tx
                        .rows(
                            "SELECT source, node_id FROM cascade_source_refusals
                              ORDER BY source, at, node_id",
                            &[],
                        )
                        .await?
                        .iter()
                        .map(|r| Ok((r.text("source")?, r.text("node_id")?)))
                        .collect::<Result<Vec<_>>>()?;
                    rows.iter()
                        .map(|r| {
                            let mut row = source_from_row(r)?;
                            row.refused_by = refusals
                                .iter()
                                .filter(|(s, _)| *s == row.source)
                                .map(|(_, n)| n.clone())
                                .collect();
                            Ok(row)
                        })
                        .collect()
                })
            })
            .await
    }

    /// A success of a source: its evidence of closure is cleared; `true` when it was closed
    /// and is open again (only one caller sees `true`).
    pub async fn source_ok(&self, source: &str, now: NaiveDateTime) -> Result<bool> {
        let source = source.to_string();
        self.change_sources(move |tx| {
            Box::pin(async move {
                lock_source(tx, &source, now).await?;
                let reopened = tx
                    .exec(
                        "UPDATE cascade_sources SET state = 'open', since = $2, probe_at = NULL
                              WHERE source = $1 AND state = 'closed'",
                        args![&source, now],
                    )
                    .await?
                    == 1;
                tx.exec(
                    "UPDATE cascade_sources SET last_ok_at = $2, updated_at = $2
                          WHERE source = $1",
                    args![&source, now],
                )
                .await?;
                tx.exec(
                    "DELETE FROM cascade_source_refusals WHERE source = $1",
                    args![&source],
                )
                .await?;
                Ok(reopened)
            })
        })
        .await
    }

    /// A refusal of a source to a login of `node_id`: recorded as evidence; when the distinct
    /// nodes refused since the last success reach `needed`, the source closes (`true` for the
    /// one caller that closed it) and may be probed from `probe_at`.
    pub async fn source_refused(
        &self,
        source: &str,
        node_id: &str,
        error: &str,
        needed: i64,
        now: NaiveDateTime,
        probe_at: NaiveDateTime,
    ) -> Result<bool> {
        let (source, node_id, error) = (source.to_string(), node_id.to_string(), error.to_string());
        self.change_sources(move |tx| {
            Box::pin(async move {
                lock_source(tx, &source, now).await?;
                tx.exec(
                    "INSERT INTO cascade_source_refusals (source, node_id, at)
                         VALUES ($1, $2, $3) ON CONFLICT (source, node_id) DO NOTHING",
                    args![&source, node_id, now],
                )
                .await?;
                tx.exec(
                    "UPDATE cascade_sources
                            SET last_error = $2, last_error_at = $3, updated_at = $3
                          WHERE source = $1",
                    args![&source, error, now],
                )
                .await?;
                let refused = tx
                    .int(
                        "SELECT COUNT(*) FROM cascade_source_refusals WHERE source = $1",
                        args![&source],
                    )
                    .await?
                    .unwrap_or(0);
                if refused < needed.max(1) {
                    return Ok(false);
                }
                let closed = tx
                    .exec(
                        "UPDATE cascade_sources SET state = 'closed', since = $2, probe_at = $3
                              WHERE source = $1 AND state = 'open'",
                        args![&source, now, probe_at],
                    )
                    .await?
                    == 1;
                Ok(closed)
            })
        })
        .await
    }

    /// Takes a closed source's probe that is due at `now` (one caller gets `true`); the next
    /// probe is due at `next`.
    pub async fn take_source_probe(
        &self,
        source: &str,
        now: NaiveDateTime,
        next: NaiveDateTime,
    ) -> Result<bool> {
        let source = source.to_string();
        self.change_sources(move |tx| {
            Box::pin(async move {
                let taken = tx
                    .exec(
                        "UPDATE cascade_sources SET probe_at = $3
                              WHERE source = $1 AND state = 'closed' AND probe_at IS NOT NULL
                                AND probe_at <= $2",
                        args![source, now, next],
                    )
                    .await?;
                Ok(taken == 1)
            })
        })
        .await
    }

    /// Records that `source` read these feeds at `now`.
    pub async fn feeds_read_by(
        &self,
        source: &str,
        feed_ids: Vec<String>,
        now: NaiveDateTime,
    ) -> Result<()> {
        let source = source.to_string();
        let mut feed_ids = feed_ids;
        // One order for every writer, so two parents recording overlapping feeds on
        // PostgreSQL lock their rows in the same order.
        feed_ids.sort_unstable();
        feed_ids.dedup();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    for feed_id in &feed_ids {
                        tx.exec(
                            "INSERT INTO cascade_feed_sources (feed_id, source, ok_at)
                             VALUES ($1, $2, $3)
                             ON CONFLICT (feed_id) DO UPDATE
                                SET source = excluded.source, ok_at = excluded.ok_at",
                            args![feed_id, &source, now],
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Feeds each source read last, by source.
    pub async fn feeds_by_source(&self) -> Result<Vec<(String, i64)>> {
        self.db
            .read(|tx| {
                Box::pin(async move {
                    counts(
                        tx,
                        "SELECT source AS k, COUNT(*) AS n FROM cascade_feed_sources
                          GROUP BY source ORDER BY source",
                    )
                    .await
                })
            })
            .await
    }

    /// Active nodes with a usable login (`valid`, `expiring`, `cooling`), by kind.
    pub async fn nodes_with_usable_logins(&self) -> Result<Vec<(String, i64)>> {
        self.db
            .read(|tx| {
                Box::pin(async move {
                    counts(
                        tx,
                        "SELECT l.kind AS k, COUNT(DISTINCT l.node_id) AS n
                           FROM cascade_node_logins l JOIN we_cascade_nodes n ON n.id = l.node_id
                          WHERE n.is_active <> {false} AND l.state IN ('valid', 'expiring', 'cooling')
                          GROUP BY l.kind ORDER BY l.kind",
                    )
                    .await
                })
            })
            .await
    }

    /// Usable logins (`valid`, `expiring`, `cooling`) of active nodes, by kind.
    pub async fn usable_logins(&self) -> Result<Vec<(String, i64)>> {
        self.db
            .read(|tx| {
                Box::pin(async move {
                    counts(
                        tx,
                        "SELECT l.kind AS k, COUNT(*) AS n
                           FROM cascade_node_logins l JOIN we_cascade_nodes n ON n.id = l.node_id
                          WHERE n.is_active <> {false} AND l.state IN ('valid', 'expiring', 'cooling')
                          GROUP BY l.kind ORDER BY l.kind",
                    )
                    .await
                })
            })
            .await
    }
}

/// Makes sure a source has a record (`open`) and locks it (PostgreSQL) for the rest of the
/// transaction: the reports of one source are applied one after another, so a refusal
/// counts every refusal committed before it and one caller closes or reopens the source.
async fn lock_source(tx: &mut Tx, source: &str, now: NaiveDateTime) -> Result<()> {
    tx.exec(
        "INSERT INTO cascade_sources (source, state, updated_at) VALUES ($1, 'open', $2)
         ON CONFLICT (source) DO NOTHING",
        args![source, now],
    )
    .await?;
    tx.opt(
        "SELECT source FROM cascade_sources WHERE source = $1 {for_update}",
        args![source],
    )
    .await?;
    Ok(())
}

/// `(k, n)` rows of a grouped count.
async fn counts(tx: &mut Tx, sql: &str) -> Result<Vec<(String, i64)>> {
    tx.rows(sql, &[])
        .await?
        .iter()
        .map(|r| Ok((r.text("k")?, r.int("n")?)))
        .collect()
}
