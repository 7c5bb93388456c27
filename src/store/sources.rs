//! WeChat sources (issue 13 §2–§3): each source's state (`open`, or `closed` when it refused
//! logins of several nodes with no success in between), its evidence, its probe time, and
//! the source that last read each feed. The SQL is the same on both backends;
//! [`source_methods!`] writes the methods once (as [`super::flows`] does).

use super::Result;
use super::rows::RowExt;
use chrono::NaiveDateTime;

/// A source's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// `weread_list`, `weread_cover`, `mp_list`.
    pub source: String,
    /// `open` or `closed`.
    pub state: String,
    /// Since when it is in this state (unknown for a source never closed).
    pub since: Option<NaiveDateTime>,
    /// Its last success.
    pub last_ok_at: Option<NaiveDateTime>,
    /// Its last refusal's text.
    pub last_error: Option<String>,
    /// Nodes whose logins it refused since its last success.
    pub refused_by: Vec<String>,
    /// When a closed source may be tried again.
    pub probe_at: Option<NaiveDateTime>,
}

/// Reads a source row.
pub(crate) fn source_from_row(r: &impl RowExt) -> Result<SourceRow> {
    Ok(SourceRow {
        source: r.text("source")?,
        state: r.text("state")?,
        since: r.time("since")?,
        last_ok_at: r.time("last_ok_at")?,
        last_error: r.opt_text("last_error")?,
        refused_by: Vec::new(),
        probe_at: r.time("probe_at")?,
    })
}

/// The source methods of a backend: `$pool` names its write pool and `$read` its read pool
/// (claims read the source states: on SQLite that must not queue behind the writer), `$t`
/// turns a `NaiveDateTime` into what it binds.
macro_rules! source_methods {
    ($pool:ident, $read:ident, $t:path) => {
        async fn ensure_source(&self, source: &str, now: chrono::NaiveDateTime) -> crate::store::Result<()> {
            sqlx::query(
                "INSERT INTO cascade_sources (source, state, updated_at) VALUES ($1, 'open', $2)
                 ON CONFLICT (source) DO NOTHING",
            )
            .bind(source)
            .bind($t(now))
            .execute(&self.$pool)
            .await?;
            Ok(())
        }

        /// Every source with a record.
        pub(crate) async fn source_rows(&self) -> crate::store::Result<Vec<crate::store::SourceRow>> {
            let rows = sqlx::query("SELECT * FROM cascade_sources ORDER BY source")
                .fetch_all(&self.$read)
                .await?;
            let refusals: Vec<(String, String)> = sqlx::query_as(
                "SELECT source, node_id FROM cascade_source_refusals ORDER BY source, at, node_id",
            )
            .fetch_all(&self.$read)
            .await?;
            rows.iter()
                .map(|r| {
                    let mut row = crate::store::sources::source_from_row(r)?;
                    row.refused_by = refusals
                        .iter()
                        .filter(|(s, _)| *s == row.source)
                        .map(|(_, n)| n.clone())
                        .collect();
                    Ok(row)
                })
                .collect()
        }

        /// A success of `source`: its evidence of closure is cleared; `true` when it was
        /// closed and is open again (only one caller sees `true`).
        pub(crate) async fn source_ok(
            &self,
            source: &str,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<bool> {
            self.ensure_source(source, now).await?;
            let reopened = sqlx::query(
                "UPDATE cascade_sources SET state = 'open', since = $2, probe_at = NULL
                  WHERE source = $1 AND state = 'closed'",
            )
            .bind(source)
            .bind($t(now))
            .execute(&self.$pool)
            .await?
            .rows_affected()
                == 1;
            sqlx::query("UPDATE cascade_sources SET last_ok_at = $2, updated_at = $2 WHERE source = $1")
                .bind(source)
                .bind($t(now))
                .execute(&self.$pool)
                .await?;
            sqlx::query("DELETE FROM cascade_source_refusals WHERE source = $1")
                .bind(source)
                .execute(&self.$pool)
                .await?;
            Ok(reopened)
        }

        /// A refusal of `source` to a login of `node_id`: recorded as evidence; when the
        /// distinct nodes refused since the last success reach `needed`, the source closes
        /// (`true` for the one caller that closed it) and may be probed from `probe_at`.
        pub(crate) async fn source_refused(
            &self,
            source: &str,
            node_id: &str,
            error: &str,
            needed: i64,
            now: chrono::NaiveDateTime,
            probe_at: chrono::NaiveDateTime,
        ) -> crate::store::Result<bool> {
            self.ensure_source(source, now).await?;
            sqlx::query(
                "INSERT INTO cascade_source_refusals (source, node_id, at) VALUES ($1, $2, $3)
                 ON CONFLICT (source, node_id) DO NOTHING",
            )
            .bind(source)
            .bind(node_id)
            .bind($t(now))
            .execute(&self.$pool)
            .await?;
            sqlx::query(
                "UPDATE cascade_sources SET last_error = $2, last_error_at = $3, updated_at = $3
                  WHERE source = $1",
            )
            .bind(source)
            .bind(error)
            .bind($t(now))
            .execute(&self.$pool)
            .await?;
            let refused: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM cascade_source_refusals WHERE source = $1")
                    .bind(source)
                    .fetch_one(&self.$pool)
                    .await?;
            if refused < needed.max(1) {
                return Ok(false);
            }
            let closed = sqlx::query(
                "UPDATE cascade_sources SET state = 'closed', since = $2, probe_at = $3
                  WHERE source = $1 AND state = 'open'",
            )
            .bind(source)
            .bind($t(now))
            .bind($t(probe_at))
            .execute(&self.$pool)
            .await?
            .rows_affected()
                == 1;
            Ok(closed)
        }

        /// Takes the probe of a closed source that is due at `now` (one caller gets `true`);
        /// the next probe is due at `next`.
        pub(crate) async fn take_source_probe(
            &self,
            source: &str,
            now: chrono::NaiveDateTime,
            next: chrono::NaiveDateTime,
        ) -> crate::store::Result<bool> {
            let taken = sqlx::query(
                "UPDATE cascade_sources SET probe_at = $3
                  WHERE source = $1 AND state = 'closed' AND probe_at IS NOT NULL AND probe_at <= $2",
            )
            .bind(source)
            .bind($t(now))
            .bind($t(next))
            .execute(&self.$pool)
            .await?
            .rows_affected()
                == 1;
            Ok(taken)
        }

        /// Records that `source` read these feeds at `now`.
        pub(crate) async fn feeds_read_by(
            &self,
            source: &str,
            feed_ids: Vec<String>,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<()> {
            for feed_id in feed_ids {
                sqlx::query(
                    "INSERT INTO cascade_feed_sources (feed_id, source, ok_at) VALUES ($1, $2, $3)
                     ON CONFLICT (feed_id) DO UPDATE SET source = excluded.source, ok_at = excluded.ok_at",
                )
                .bind(&feed_id)
                .bind(source)
                .bind($t(now))
                .execute(&self.$pool)
                .await?;
            }
            Ok(())
        }

        /// Feeds each source read last, by source.
        pub(crate) async fn feeds_by_source(&self) -> crate::store::Result<Vec<(String, i64)>> {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT source, COUNT(*) FROM cascade_feed_sources GROUP BY source ORDER BY source",
            )
            .fetch_all(&self.$read)
            .await?;
            Ok(rows)
        }

        /// Active nodes with a usable login of each kind (`valid`, `expiring`, `cooling`), by kind.
        pub(crate) async fn nodes_with_usable_logins(&self) -> crate::store::Result<Vec<(String, i64)>> {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT l.kind, COUNT(DISTINCT l.node_id) FROM cascade_node_logins l
                   JOIN we_cascade_nodes n ON n.id = l.node_id
                  WHERE n.is_active AND l.state IN ('valid', 'expiring', 'cooling')
                  GROUP BY l.kind ORDER BY l.kind",
            )
            .fetch_all(&self.$read)
            .await?;
            Ok(rows)
        }

        /// Usable logins of each kind across the fleet, by kind.
        pub(crate) async fn usable_logins(&self) -> crate::store::Result<Vec<(String, i64)>> {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT l.kind, COUNT(*) FROM cascade_node_logins l
                   JOIN we_cascade_nodes n ON n.id = l.node_id
                  WHERE n.is_active AND l.state IN ('valid', 'expiring', 'cooling')
                  GROUP BY l.kind ORDER BY l.kind",
            )
            .fetch_all(&self.$read)
            .await?;
            Ok(rows)
        }
    };
}

pub(crate) use source_methods;
