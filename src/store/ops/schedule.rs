//! Per-feed schedules (issue 15): after a check, each feed's next one is planned from its
//! own history by [`crate::dispatch::schedule`]. A completion or failure clears the feed's
//! `next_check_at`; [`Store::plan_checks`] plans the cleared ones in batches, off the
//! reporting path.

use crate::dispatch::freshness::order_key;
use crate::dispatch::schedule::{FeedHistory, ScheduleSettings, next_check};
use crate::store::db::{Tx, args};
use crate::store::rows::RowExt;
use crate::store::{Result, Store};
use chrono::{DateTime, NaiveDateTime, TimeDelta};
use std::collections::HashMap;

/// How far back publish times are read: a week for the frequency, a second one for habits.
const HISTORY: TimeDelta = TimeDelta::weeks(2);

impl Store {
    /// Plans the next check of at most `limit` feeds checked since their last plan, the
    /// longest waiting first; how many were planned. Each also gets its `check_order`: the
    /// next check moved ahead by `priority × aging_step` (freshness mode takes feeds in it).
    ///
    /// # Errors
    /// A database failure.
    pub async fn plan_checks(
        &self,
        now: NaiveDateTime,
        settings: ScheduleSettings,
        aging_step: TimeDelta,
        limit: i64,
    ) -> Result<u64> {
        // Each `UPDATE` is guarded and stands alone: on PostgreSQL no feed stays locked while
        // others are planned, so the pass never waits on (or deadlocks with) a completion.
        self.db
            .write_each(move |tx| {
                Box::pin(async move { plan_checks(tx, now, &settings, aging_step, limit).await })
            })
            .await
    }
}

async fn plan_checks(
    tx: &mut Tx,
    now: NaiveDateTime,
    settings: &ScheduleSettings,
    aging_step: TimeDelta,
    limit: i64,
) -> Result<u64> {
    let feeds = tx
        .rows(
            "SELECT id, check_errors, priority, check_not_before, last_allocation_id FROM we_feeds
              WHERE next_check_at IS NULL AND last_task_at IS NOT NULL
              ORDER BY last_task_at, id LIMIT CAST($1 AS BIGINT)",
            args![limit],
        )
        .await?;
    if feeds.is_empty() {
        return Ok(0);
    }
    let ids = feeds
        .iter()
        .map(|r| r.text("id"))
        .collect::<Result<Vec<_>>>()?;
    let since = (now - HISTORY).and_utc().timestamp();
    let mut published: HashMap<String, Vec<NaiveDateTime>> = HashMap::new();
    for r in tx
        .rows(
            "SELECT mp_id, publish_time FROM we_articles
              WHERE mp_id {in:$1} AND publish_time >= $2 AND NOT time_estimated",
            args![&ids, since],
        )
        .await?
    {
        if let Some(t) = r
            .opt_int("publish_time")?
            .and_then(|t| DateTime::from_timestamp(t, 0))
        {
            published
                .entry(r.text("mp_id")?)
                .or_default()
                .push(t.naive_utc());
        }
    }
    let mut planned = 0;
    for (id, r) in ids.iter().zip(&feeds) {
        let history = FeedHistory {
            publish_times: published.get(id).map_or(&[][..], Vec::as_slice),
            error_streak: u32::try_from(r.opt_int("check_errors")?.unwrap_or(0)).unwrap_or(0),
            not_before: r.time("check_not_before")?,
            ..FeedHistory::default()
        };
        let at = next_check(now, &history, settings);
        let order = order_key(at, r.opt_int("priority")?.unwrap_or(0), aging_step);
        // Only if no check ended since the read: a newer one is planned by the next pass,
        // from its own history. A cron firing may have made the feed due earlier meanwhile
        // (freshness mode): the earlier order is kept.
        planned += tx
            .exec(
                "UPDATE we_feeds SET next_check_at = $2,
                    check_order = CASE WHEN check_order IS NOT NULL AND check_order < $4
                                       THEN check_order ELSE $4 END
                  WHERE id = $1 AND next_check_at IS NULL
                    AND COALESCE(last_allocation_id, '') = COALESCE($3, '')",
                args![id, at, r.opt_text("last_allocation_id")?, order],
            )
            .await?;
    }
    Ok(planned)
}
