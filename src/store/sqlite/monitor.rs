//! Monitoring reads (PROTOCOL §9.2): allocation lists, counters, feed status. Each is a fixed
//! number of queries, never one per feed or node.

use super::SqliteStore;
use crate::protocol::time::to_db;
use crate::store::rows::{
    RowExt, allocation_from_row, counters_from, feed_status_from_row, node_from_row,
};
use crate::store::{Allocation, AllocationFilter, Counters, FeedStatus, Page, Result};
use chrono::{NaiveDateTime, TimeDelta};

const ALLOC_WHERE: &str = "WHERE ($1 IS NULL OR a.task_id = $1) AND ($2 IS NULL OR a.node_id = $2)
    AND ($3 IS NULL OR a.status = $3) AND ($4 IS NULL OR a.schedule_run_id = $4)";

impl SqliteStore {
    pub(crate) async fn list_allocations(
        &self,
        f: AllocationFilter,
        page: Page,
    ) -> Result<(Vec<Allocation>, i64)> {
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM we_cascade_task_allocations a {ALLOC_WHERE}"
        )))
        .bind(&f.task_id)
        .bind(&f.node_id)
        .bind(&f.status)
        .bind(&f.schedule_run_id)
        .fetch_one(&self.read)
        .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT a.*, n.name AS node_name FROM we_cascade_task_allocations a
               LEFT JOIN we_cascade_nodes n ON n.id = a.node_id {ALLOC_WHERE}
              ORDER BY a.dispatched_at DESC, a.id DESC LIMIT $5 OFFSET $6"
        )))
        .bind(&f.task_id)
        .bind(&f.node_id)
        .bind(&f.status)
        .bind(&f.schedule_run_id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.read)
        .await?;
        let list = rows
            .iter()
            .map(allocation_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((list, total))
    }

    pub(crate) async fn allocation_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(crate::store::rows::ALLOCATION_COUNTS)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("status")?, r.int("n")?)))
            .collect()
    }

    pub(crate) async fn webhook_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(crate::store::rows::WEBHOOK_COUNTS)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.text("status")?, r.int("n")?)))
            .collect()
    }

    pub(crate) async fn counters(
        &self,
        now: NaiveDateTime,
        offline_after: i64,
        default_capacity: u64,
    ) -> Result<Counters> {
        let midnight = now.date().and_hms_opt(0, 0, 0).unwrap_or(now);
        let r = sqlx::query(
            "SELECT
               COALESCE(SUM(status = 'pending'), 0) AS pending,
               COALESCE(SUM(status IN ('claimed', 'executing')), 0) AS executing,
               COALESCE(SUM(status = 'completed' AND completed_at >= $1), 0) AS completed_today,
               COALESCE(SUM(status IN ('failed', 'timeout') AND completed_at >= $1), 0) AS failed_today,
               COALESCE(SUM(status = 'pending' AND available_at > $2), 0) AS delayed,
               COALESCE(SUM(CASE WHEN status IN ('claimed', 'executing') THEN feed_count ELSE 0 END), 0) AS held
             FROM we_cascade_task_allocations",
        )
        .bind(to_db(midnight))
        .bind(to_db(now))
        .fetch_one(&self.read)
        .await?;
        let nodes =
            sqlx::query("SELECT * , 0 AS held_feeds FROM we_cascade_nodes WHERE node_type = 1")
                .fetch_all(&self.read)
                .await?;
        let nodes = nodes
            .iter()
            .map(node_from_row)
            .collect::<Result<Vec<_>>>()?;
        counters_from(&r, &nodes, now, offline_after, default_capacity)
    }

    pub(crate) async fn feed_status(
        &self,
        feed_id: Option<String>,
        page: Page,
        now: NaiveDateTime,
    ) -> Result<(Vec<FeedStatus>, i64)> {
        let epoch = now.and_utc().timestamp();
        let hour = |h: i64| epoch - TimeDelta::hours(h).num_seconds();
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM we_feeds WHERE ($1 IS NULL OR id = $1)")
                .bind(&feed_id)
                .fetch_one(&self.read)
                .await?;
        let rows = sqlx::query(
            "SELECT f.*, n.name AS last_node_name,
                    COALESCE(s.article_count, 0) AS article_count, s.latest AS latest_publish_time,
                    CASE WHEN COALESCE(f.update_time, 0) = 0 THEN 2
                         WHEN f.update_time >= $2 THEN 4 WHEN f.update_time >= $3 THEN 3
                         WHEN f.update_time >= $4 THEN 1 ELSE 0 END AS rank
               FROM we_feeds f
               LEFT JOIN (SELECT mp_id, COUNT(*) AS article_count, MAX(publish_time) AS latest
                            FROM we_articles GROUP BY mp_id) s ON s.mp_id = f.id
               LEFT JOIN we_cascade_nodes n ON n.id = f.last_node_id
              WHERE ($1 IS NULL OR f.id = $1)
              ORDER BY rank, COALESCE(f.update_time, 0), f.id LIMIT $5 OFFSET $6",
        )
        .bind(&feed_id)
        .bind(hour(1))
        .bind(hour(24))
        .bind(hour(72))
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.read)
        .await?;
        let list = rows
            .iter()
            .map(feed_status_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((list, total))
    }
}
