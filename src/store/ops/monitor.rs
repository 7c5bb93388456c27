//! Monitoring reads (PROTOCOL §9.2): allocation lists, counters, feed status. Each is a fixed
//! number of queries, never one per feed or node.

use crate::store::db::{Arg, Tx, args};
use crate::store::rows::{
    ALLOCATION_COUNTS, RowExt, WEBHOOK_COUNTS, allocation_from_row, counters_from,
    feed_status_from_row, node_from_row,
};
use crate::store::{Allocation, AllocationFilter, Counters, FeedStatus, Page, Result, Store};
use chrono::{NaiveDateTime, TimeDelta};

/// The allocation filter over `a`, its arguments `$1`–`$6` from [`filter_args`]. A feed is
/// found in the `feed_ids` JSON text by its quoted id: `REPLACE` changes the text only when
/// it holds the id (the same on both backends, case-sensitive, no wildcards).
pub(super) const ALLOC_WHERE: &str = "WHERE (CAST($1 AS TEXT) IS NULL OR a.task_id = $1)
    AND (CAST($2 AS TEXT) IS NULL OR a.node_id = $2)
    AND (CAST($3 AS TEXT) IS NULL OR a.status = $3)
    AND (CAST($4 AS TEXT) IS NULL OR a.schedule_run_id = $4)
    AND (CAST($5 AS TEXT) IS NULL OR REPLACE(a.feed_ids, $5, '') <> a.feed_ids)
    AND (CAST($6 AS TEXT) IS NULL OR a.reason = $6)";

/// The arguments of [`ALLOC_WHERE`].
pub(super) fn filter_args(f: &AllocationFilter) -> Vec<Arg> {
    // The id as it appears in the JSON list: quoted, escaped as JSON escapes it.
    let feed = f
        .feed_id
        .as_ref()
        .map(|id| serde_json::Value::from(id.as_str()).to_string());
    vec![
        Arg::from(&f.task_id),
        Arg::from(&f.node_id),
        Arg::from(&f.status),
        Arg::from(&f.schedule_run_id),
        Arg::from(feed),
        Arg::from(&f.reason),
    ]
}

impl Store {
    /// Allocations, newest dispatch first.
    pub async fn list_allocations(
        &self,
        filter: AllocationFilter,
        page: Page,
    ) -> Result<(Vec<Allocation>, i64)> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let mut bound = filter_args(&filter);
                    let total = tx
                        .int(
                            &format!(
                                "SELECT COUNT(*) FROM we_cascade_task_allocations a {ALLOC_WHERE}"
                            ),
                            &bound,
                        )
                        .await?
                        .unwrap_or(0);
                    bound.extend([Arg::from(page.limit), Arg::from(page.offset)]);
                    let rows = tx
                        .rows(
                            &format!(
                                "SELECT a.*, n.name AS node_name FROM we_cascade_task_allocations a
                                   LEFT JOIN we_cascade_nodes n ON n.id = a.node_id {ALLOC_WHERE}
                                  ORDER BY a.dispatched_at DESC, a.id DESC LIMIT CAST($7 AS BIGINT) OFFSET CAST($8 AS BIGINT)"
                            ),
                            &bound,
                        )
                        .await?;
                    let list = rows
                        .iter()
                        .map(allocation_from_row)
                        .collect::<Result<Vec<_>>>()?;
                    Ok((list, total))
                })
            })
            .await
    }

    /// Allocations by status.
    pub async fn allocation_counts(&self) -> Result<Vec<(String, i64)>> {
        self.db
            .read(|tx| Box::pin(async move { status_counts(tx, ALLOCATION_COUNTS).await }))
            .await
    }

    /// Webhook outbox rows by status (`pending`, `sent`, `failed`).
    pub async fn webhook_counts(&self) -> Result<Vec<(String, i64)>> {
        self.db
            .read(|tx| Box::pin(async move { status_counts(tx, WEBHOOK_COUNTS).await }))
            .await
    }

    /// The `pending-allocations` counters.
    pub async fn counters(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
        default_capacity: u64,
    ) -> Result<Counters> {
        let midnight = now.date().and_hms_opt(0, 0, 0).unwrap_or(now);
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let r = tx
                        .one(
                            "SELECT
                               COUNT(*) FILTER (WHERE status = 'pending') AS pending,
                               COUNT(*) FILTER (WHERE status IN ('claimed', 'executing'))
                                 AS executing,
                               COUNT(*) FILTER (WHERE status = 'completed' AND completed_at >= $1)
                                 AS completed_today,
                               COUNT(*) FILTER (WHERE status IN ('failed', 'timeout')
                                                  AND completed_at >= $1) AS failed_today,
                               COUNT(*) FILTER (WHERE status = 'pending' AND available_at > $2)
                                 AS delayed,
                               CAST(COALESCE(SUM(feed_count) FILTER
                                 (WHERE status IN ('claimed', 'executing')), 0) AS BIGINT) AS held
                             FROM we_cascade_task_allocations",
                            args![midnight, now],
                        )
                        .await?;
                    let nodes = tx
                        .rows(
                            "SELECT *, 0 AS held_feeds FROM we_cascade_nodes WHERE node_type = 1",
                            &[],
                        )
                        .await?;
                    let nodes = nodes
                        .iter()
                        .map(node_from_row)
                        .collect::<Result<Vec<_>>>()?;
                    counters_from(&r, &nodes, now, offline_after, default_capacity)
                })
            })
            .await
    }

    /// Feed freshness, stalest first, of the feeds `filter` keeps; and how many it keeps.
    pub async fn feed_status(
        &self,
        filter: FeedStatusFilter,
        page: Page,
        now: NaiveDateTime,
    ) -> Result<(Vec<FeedStatus>, i64)> {
        let epoch = now.and_utc().timestamp();
        let hour = move |h: i64| epoch - TimeDelta::hours(h).num_seconds();
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    // PostgreSQL's ILIKE folds case beyond ASCII; SQLite's LIKE folds ASCII.
                    let like = if tx.is_pg() { "ILIKE" } else { "LIKE" };
                    let filter_where = FEED_WHERE.replace("{like}", like);
                    let mut bound = filter.args();
                    let total = tx
                        .int(
                            &format!("SELECT COUNT(*) FROM we_feeds f {filter_where}"),
                            &bound,
                        )
                        .await?
                        .unwrap_or(0);
                    bound.extend(
                        [hour(1), hour(24), hour(72), page.limit, page.offset].map(Arg::from),
                    );
                    let rows = tx
                        .rows(
                            &format!("SELECT f.*, n.name AS last_node_name,
                                    COALESCE(s.article_count, 0) AS article_count,
                                    s.latest AS latest_publish_time,
                                    CASE WHEN COALESCE(f.update_time, 0) = 0 THEN 2
                                         WHEN f.update_time >= $5 THEN 4
                                         WHEN f.update_time >= $6 THEN 3
                                         WHEN f.update_time >= $7 THEN 1 ELSE 0 END AS rank
                               FROM we_feeds f
                               LEFT JOIN (SELECT mp_id, COUNT(*) AS article_count,
                                                 CAST(MAX(publish_time) AS BIGINT) AS latest
                                            FROM we_articles GROUP BY mp_id) s ON s.mp_id = f.id
                               LEFT JOIN we_cascade_nodes n ON n.id = f.last_node_id
                              {filter_where}
                              ORDER BY rank, COALESCE(f.update_time, 0), f.id LIMIT CAST($8 AS BIGINT) OFFSET CAST($9 AS BIGINT)"),
                            &bound,
                        )
                        .await?;
                    let list = rows
                        .iter()
                        .map(feed_status_from_row)
                        .collect::<Result<Vec<_>>>()?;
                    Ok((list, total))
                })
            })
            .await
    }
}

/// Which feeds `feed-status` lists; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct FeedStatusFilter {
    /// Only this feed.
    pub feed_id: Option<String>,
    /// Only feeds whose name or id contains this text (case-insensitive; `%` and `_` are
    /// plain characters).
    pub q: Option<String>,
    /// Only feeds of this source (`wechat` or `rss`; a feed without one is `wechat`).
    pub source: Option<String>,
    /// Only enabled (`true`, `status` not 0) or paused (`false`) feeds.
    pub enabled: Option<bool>,
}

/// The feed filter over `f`, its arguments `$1`–`$4` from [`FeedStatusFilter::args`];
/// `{like}` is the dialect's case-insensitive `LIKE`.
const FEED_WHERE: &str = "WHERE (CAST($1 AS TEXT) IS NULL OR f.id = $1)
    AND (CAST($2 AS TEXT) IS NULL OR f.mp_name {like} $2 ESCAPE '\\' OR f.id {like} $2 ESCAPE '\\')
    AND (CAST($3 AS TEXT) IS NULL OR COALESCE(f.source, 'wechat') = $3)
    AND (CAST($4 AS BIGINT) IS NULL
         OR CASE WHEN COALESCE(f.status, 1) <> 0 THEN 1 ELSE 0 END = $4)";

impl FeedStatusFilter {
    /// The arguments of [`FEED_WHERE`]: `q` becomes a `LIKE` pattern with its wildcards
    /// escaped.
    fn args(&self) -> Vec<Arg> {
        let pattern = self.q.as_deref().map(|q| {
            let escaped = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        vec![
            Arg::from(&self.feed_id),
            Arg::from(pattern),
            Arg::from(&self.source),
            Arg::from(self.enabled.map(i64::from)),
        ]
    }
}

/// `(status, n)` rows of a count query.
async fn status_counts(tx: &mut Tx, sql: &str) -> Result<Vec<(String, i64)>> {
    let rows = tx.rows(sql, &[]).await?;
    rows.iter()
        .map(|r| Ok((r.text("status")?, r.int("n")?)))
        .collect()
}

/// What the freshness planner reads (`GET {P}/plan`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanFacts {
    /// Enabled feeds grouped by source and articles published in the window:
    /// `(source, articles, feeds)`.
    pub feeds: Vec<(crate::dispatch::Source, i64, i64)>,
    /// Usable WeRead logins (valid, expiring or cooling) on enabled nodes.
    pub weread_logins: i64,
    /// Usable MP logins on enabled nodes.
    pub mp_logins: i64,
}

impl Store {
    /// Enabled feeds grouped by their articles published since `since` (epoch seconds), and
    /// the usable logins by kind: two queries, and a row per distinct count, whatever the
    /// number of feeds.
    pub async fn plan_facts(&self, since: i64) -> Result<PlanFacts> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            "SELECT f.source, COALESCE(s.recent, 0) AS recent, COUNT(*) AS n
                               FROM we_feeds f
                               LEFT JOIN (SELECT mp_id, COUNT(*) AS recent FROM we_articles
                                           WHERE publish_time >= $1 GROUP BY mp_id) s
                                 ON s.mp_id = f.id
                              WHERE COALESCE(f.status, 1) <> 0
                              GROUP BY f.source, COALESCE(s.recent, 0)",
                            args![since],
                        )
                        .await?;
                    let feeds = rows
                        .iter()
                        .map(|r| {
                            let source = r.opt_text("source")?.unwrap_or_default();
                            let source = crate::dispatch::Source::parse(&source);
                            Ok((source, r.int("recent")?, r.int("n")?))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let logins = tx
                        .rows(
                            "SELECT l.kind, COUNT(*) AS n FROM cascade_node_logins l
                               JOIN we_cascade_nodes n ON n.id = l.node_id
                              WHERE n.is_active <> {false}
                                AND l.state IN ('valid', 'expiring', 'cooling')
                              GROUP BY l.kind",
                            &[],
                        )
                        .await?;
                    let mut facts = PlanFacts {
                        feeds,
                        ..PlanFacts::default()
                    };
                    for r in &logins {
                        match r.opt_text("kind")?.as_deref() {
                            Some("weread") => facts.weread_logins = r.int("n")?,
                            Some("mp") => facts.mp_logins = r.int("n")?,
                            _ => {}
                        }
                    }
                    Ok(facts)
                })
            })
            .await
    }
}
