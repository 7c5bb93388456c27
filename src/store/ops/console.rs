//! The operator's console (issue 16): a sample of every child node once a minute, the stats
//! of a recent window (throughput, feed age, node health) and the audit log. Each read is a
//! fixed number of queries, never one per feed or node.

use crate::store::db::{Tx, args};
use crate::store::rows::RowExt;
use crate::store::{Page, Result, Store};
use chrono::{NaiveDateTime, TimeDelta, Timelike};
use serde::Serialize;

/// How long node samples are kept.
pub const SAMPLE_RETENTION: TimeDelta = TimeDelta::days(7);

/// Old samples one pass removes at most, so a backlog is worked off over several passes
/// rather than in one long write.
const PRUNE_BATCH: i64 = 5_000;

/// The labels of [`Stats::feed_age`], youngest first.
pub const FEED_AGE_LABELS: [&str; 6] = ["< 1 h", "1–6 h", "6–24 h", "1–7 d", "> 7 d", "never"];

/// The start of `t`'s minute.
pub fn floor_minute(t: NaiveDateTime) -> NaiveDateTime {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

/// What one sampling pass wrote and removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleOutcome {
    /// Samples written (0 when another parent wrote this minute first).
    pub written: u64,
    /// Samples older than [`SAMPLE_RETENTION`] removed.
    pub pruned: u64,
}

/// `GET {P}/stats`: the window `[since, until]` by minute.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Stats {
    /// The start of the window's first minute.
    #[serde(serialize_with = "crate::protocol::time::ser")]
    #[schemars(with = "crate::protocol::time::Wire")]
    pub since: NaiveDateTime,
    /// Now.
    #[serde(serialize_with = "crate::protocol::time::ser")]
    #[schemars(with = "crate::protocol::time::Wire")]
    pub until: NaiveDateTime,
    /// Allocations finished in the window, by minute and node.
    pub throughput: Vec<Throughput>,
    /// Enabled feeds by the age of their newest article, one entry per label of
    /// [`FEED_AGE_LABELS`] in its order.
    pub feed_age: Vec<AgeCount>,
    /// Enabled feeds whose newest article is older than 24 h, or that have none.
    pub older_than_24h: i64,
    /// Each node's samples in the window.
    pub health: Vec<NodeHealth>,
}

/// Allocations one node finished in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Throughput {
    /// The start of the minute.
    #[serde(serialize_with = "crate::protocol::time::ser")]
    #[schemars(with = "crate::protocol::time::Wire")]
    pub minute: NaiveDateTime,
    /// The node that held them last (`None` for work failed before any node took it).
    pub node_id: Option<String>,
    /// Its name, `None` once it is deleted.
    pub node_name: Option<String>,
    /// Completed.
    pub completed: i64,
    /// Failed or timed out for good.
    pub failed: i64,
}

/// Feeds in one age bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AgeCount {
    /// One of [`FEED_AGE_LABELS`].
    pub label: &'static str,
    /// Enabled feeds in it.
    pub count: i64,
}

/// One node's samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NodeHealth {
    /// The node.
    pub node_id: String,
    /// Its name, `None` once it is deleted.
    pub node_name: Option<String>,
    /// Oldest first.
    pub samples: Vec<NodeSample>,
}

/// A node's state in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NodeSample {
    /// The start of the minute.
    #[serde(serialize_with = "crate::protocol::time::ser")]
    #[schemars(with = "crate::protocol::time::Wire")]
    pub minute: NaiveDateTime,
    /// Active and heard from within `offline_after`.
    pub online: bool,
    /// In a cooldown.
    pub cooling: bool,
    /// Its WeChat session had expired.
    pub session_expired: bool,
    /// Feeds it held.
    pub held: i64,
}

/// One operator action to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who: an admin's username, or `cli`.
    pub actor: String,
    /// What: `login`, `passwd`, or a method and route template (`PUT /feeds/{id}`).
    pub action: String,
    /// On what: the first path parameter, the user of `passwd`.
    pub target: Option<String>,
    /// The query string, if any (never a request body).
    pub detail: Option<String>,
}

/// Column sizes of `cascade_audit_log`; longer values are cut to them (in characters).
const ACTOR_MAX: usize = 255;
const ACTION_MAX: usize = 60;
const TARGET_MAX: usize = 255;
/// `detail` is cut to this many characters.
pub const AUDIT_DETAIL_MAX: usize = 500;

/// A recorded operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AuditRecord {
    /// Row id (time-ordered).
    pub id: String,
    /// When.
    #[serde(serialize_with = "crate::protocol::time::ser")]
    #[schemars(with = "crate::protocol::time::Wire")]
    pub at: NaiveDateTime,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: Option<String>,
    /// The query string.
    pub detail: Option<String>,
}

/// Filters of the audit list (exact matches).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this actor's rows.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
}

/// `text` cut to `max` characters.
fn cut(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl Store {
    /// Writes one sample per child node for the minute of `now` (a minute another parent
    /// sampled first keeps its samples), and removes up to 5,000 samples older than
    /// [`SAMPLE_RETENTION`]: one statement each.
    pub async fn sample_nodes(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
    ) -> Result<SampleOutcome> {
        let minute = floor_minute(now);
        let silent_since = now - TimeDelta::seconds(offline_after);
        let keep_since = minute - SAMPLE_RETENTION;
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let written = tx.exec(SAMPLE, args![minute, now, silent_since]).await?;
                    let pruned = tx.exec(PRUNE, args![keep_since, PRUNE_BATCH]).await?;
                    Ok(SampleOutcome { written, pruned })
                })
            })
            .await
    }

    /// The stats of the `minutes` minutes up to `now`, the current one included: three
    /// queries, whatever the number of nodes, feeds and allocations.
    pub async fn stats(&self, now: NaiveDateTime, minutes: i64) -> Result<Stats> {
        let since = floor_minute(now) - TimeDelta::minutes(minutes - 1);
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let throughput = throughput(tx, since, now).await?;
                    let feed_age = feed_age(tx, now).await?;
                    let older_than_24h = feed_age[3..].iter().map(|a| a.count).sum();
                    let health = health(tx, since, now).await?;
                    Ok(Stats {
                        since,
                        until: now,
                        throughput,
                        feed_age,
                        older_than_24h,
                        health,
                    })
                })
            })
            .await
    }

    /// Records one operator action at `now`; values longer than their column are cut.
    pub async fn record_audit(&self, entry: AuditEntry, now: NaiveDateTime) -> Result<()> {
        let id = uuid::Uuid::now_v7().to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "INSERT INTO cascade_audit_log (id, at, actor, action, target, detail)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        args![
                            id,
                            now,
                            cut(&entry.actor, ACTOR_MAX),
                            cut(&entry.action, ACTION_MAX),
                            entry.target.map(|t| cut(&t, TARGET_MAX)),
                            entry.detail.map(|d| cut(&d, AUDIT_DETAIL_MAX)),
                        ],
                    )
                    .await
                    .map(drop)
                })
            })
            .await
    }

    /// Recorded operator actions, newest first, and how many match.
    pub async fn list_audit(
        &self,
        filter: AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditRecord>, i64)> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    const WHERE: &str = "WHERE (CAST($1 AS TEXT) IS NULL OR actor = $1)
                        AND (CAST($2 AS TEXT) IS NULL OR action = $2)";
                    let total = tx
                        .int(
                            &format!("SELECT COUNT(*) FROM cascade_audit_log {WHERE}"),
                            args![&filter.actor, &filter.action],
                        )
                        .await?
                        .unwrap_or(0);
                    let rows = tx
                        .rows(
                            &format!(
                                "SELECT * FROM cascade_audit_log {WHERE}
                                  ORDER BY at DESC, id DESC
                                  LIMIT CAST($3 AS BIGINT) OFFSET CAST($4 AS BIGINT)"
                            ),
                            args![&filter.actor, &filter.action, page.limit, page.offset],
                        )
                        .await?;
                    let list = rows
                        .iter()
                        .map(|r| {
                            Ok(AuditRecord {
                                id: r.text("id")?,
                                at: r.time("at")?.unwrap_or_default(),
                                actor: r.text("actor")?,
                                action: r.text("action")?,
                                target: r.opt_text("target")?,
                                detail: r.opt_text("detail")?,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((list, total))
                })
            })
            .await
    }
}

/// `$1` the minute, `$2` now, `$3` heard from since (online). The `WHERE` also keeps SQLite
/// from reading `ON CONFLICT` as a join's `ON`.
const SAMPLE: &str = "INSERT INTO cascade_node_samples
       (node_id, minute, online, cooling, session_expired, held)
     SELECT n.id, $1,
            CASE WHEN n.is_active <> {false} AND n.last_heartbeat_at >= $3 THEN 1 ELSE 0 END,
            CASE WHEN n.cooldown_until > $2 THEN 1 ELSE 0 END,
            CASE WHEN n.session_state = 'expired' THEN 1 ELSE 0 END,
            (SELECT CAST(COALESCE(SUM(a.feed_count), 0) AS INTEGER)
               FROM we_cascade_task_allocations a
              WHERE a.node_id = n.id AND a.status IN ('claimed', 'executing'))
       FROM we_cascade_nodes n
      WHERE n.node_type = 1
     ON CONFLICT (node_id, minute) DO NOTHING";

/// `$1` the oldest minute kept, `$2` the batch.
const PRUNE: &str = "DELETE FROM cascade_node_samples WHERE (node_id, minute) IN (
       SELECT node_id, minute FROM cascade_node_samples WHERE minute < $1
        ORDER BY minute LIMIT CAST($2 AS BIGINT))";

/// Finished allocations by minute (offset from `since`) and node. The minute of a time is
/// the one thing the dialects write differently: whole seconds since `since`, divided.
async fn throughput(
    tx: &mut Tx,
    since: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<Vec<Throughput>> {
    let bucket = if tx.is_pg() {
        "CAST(FLOOR(EXTRACT(EPOCH FROM (a.completed_at - $1)) / 60) AS BIGINT)"
    } else {
        "(CAST(strftime('%s', a.completed_at) AS INTEGER)
          - CAST(strftime('%s', $1) AS INTEGER)) / 60"
    };
    let sql = format!(
        "SELECT b.bucket, b.node_id, MAX(n.name) AS node_name,
                COUNT(*) FILTER (WHERE b.status = 'completed') AS completed,
                COUNT(*) FILTER (WHERE b.status <> 'completed') AS failed
           FROM (SELECT {bucket} AS bucket, a.node_id, a.status
                   FROM we_cascade_task_allocations a
                  WHERE a.completed_at >= $1 AND a.completed_at <= $2
                    AND a.status IN ('completed', 'failed', 'timeout')) b
           LEFT JOIN we_cascade_nodes n ON n.id = b.node_id
          GROUP BY b.bucket, b.node_id
          ORDER BY b.bucket, COALESCE(b.node_id, '')"
    );
    let rows = tx.rows(&sql, args![since, until]).await?;
    rows.iter()
        .map(|r| {
            Ok(Throughput {
                minute: since + TimeDelta::minutes(r.int("bucket")?),
                node_id: r.opt_text("node_id")?,
                node_name: r.opt_text("node_name")?,
                completed: r.int("completed")?,
                failed: r.int("failed")?,
            })
        })
        .collect()
}

/// Enabled feeds by the age of their newest article at `now`, one count per label.
async fn feed_age(tx: &mut Tx, now: NaiveDateTime) -> Result<Vec<AgeCount>> {
    let epoch = now.and_utc().timestamp();
    let ago = |d: TimeDelta| epoch - d.num_seconds();
    let rows = tx
        .rows(
            "SELECT b.bucket, COUNT(*) AS n FROM (
               SELECT CASE WHEN s.latest IS NULL THEN 5
                           WHEN s.latest > $1 THEN 0
                           WHEN s.latest > $2 THEN 1
                           WHEN s.latest > $3 THEN 2
                           WHEN s.latest > $4 THEN 3 ELSE 4 END AS bucket
                 FROM we_feeds f
                 LEFT JOIN (SELECT mp_id, CAST(MAX(publish_time) AS BIGINT) AS latest
                              FROM we_articles GROUP BY mp_id) s ON s.mp_id = f.id
                WHERE COALESCE(f.status, 1) <> 0) b
             GROUP BY b.bucket",
            args![
                ago(TimeDelta::hours(1)),
                ago(TimeDelta::hours(6)),
                ago(TimeDelta::hours(24)),
                ago(TimeDelta::days(7)),
            ],
        )
        .await?;
    let mut counts = [0_i64; FEED_AGE_LABELS.len()];
    for r in &rows {
        if let Some(c) = usize::try_from(r.int("bucket")?)
            .ok()
            .and_then(|b| counts.get_mut(b))
        {
            *c = r.int("n")?;
        }
    }
    Ok(FEED_AGE_LABELS
        .iter()
        .zip(counts)
        .map(|(label, count)| AgeCount { label, count })
        .collect())
}

/// Every node's samples in `[since, until]`, grouped by node (ordered by id), oldest first.
async fn health(
    tx: &mut Tx,
    since: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<Vec<NodeHealth>> {
    let rows = tx
        .rows(
            "SELECT s.node_id, n.name AS node_name, s.minute, s.online, s.cooling,
                    s.session_expired, s.held
               FROM cascade_node_samples s
               LEFT JOIN we_cascade_nodes n ON n.id = s.node_id
              WHERE s.minute >= $1 AND s.minute <= $2
              ORDER BY s.node_id, s.minute",
            args![since, until],
        )
        .await?;
    let mut out: Vec<NodeHealth> = Vec::new();
    for r in &rows {
        let node_id = r.text("node_id")?;
        let sample = NodeSample {
            minute: r.time("minute")?.unwrap_or_default(),
            online: r.flag("online")?,
            cooling: r.flag("cooling")?,
            session_expired: r.flag("session_expired")?,
            held: r.int("held")?,
        };
        match out.last_mut() {
            Some(h) if h.node_id == node_id => h.samples.push(sample),
            _ => out.push(NodeHealth {
                node_id,
                node_name: r.opt_text("node_name")?,
                samples: vec![sample],
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_starts_at_its_zeroth_second() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
            .and_then(|d| d.and_hms_micro_opt(12, 34, 56, 789_012))
            .expect("a valid time");
        let m = floor_minute(t);
        assert_eq!(
            crate::protocol::time::to_wire(m),
            "2026-03-01T12:34:00.000000"
        );
        assert_eq!(floor_minute(m), m);
    }

    #[test]
    fn audit_values_are_cut_by_characters() {
        assert_eq!(cut("审计日志", 2), "审计");
        assert_eq!(cut("ab", 5), "ab");
    }
}
