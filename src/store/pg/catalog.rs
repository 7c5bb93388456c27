//! Feeds and message tasks: what the parent owns and dispatches.

use super::PgStore;
use crate::store::rows::{self, feed_from_row, task_from_row};
use crate::store::{
    CronJob, Error, Feed, FeedUpdate, MessageTask, NewFeed, Page, Result, TaskFields,
};
use chrono::NaiveDateTime;

/// Feeds inserted per statement.
const INSERT_CHUNK: usize = 5000;

impl PgStore {
    pub(crate) async fn create_feed(&self, feed: NewFeed, now: NaiveDateTime) -> Result<Feed> {
        let id = feed.id.clone();
        if self.create_feeds(vec![feed], now).await? == 0 {
            return Err(Error::Conflict("feed already exists".into()));
        }
        self.get_feed(&id).await
    }

    pub(crate) async fn create_feeds(
        &self,
        feeds: Vec<NewFeed>,
        now: NaiveDateTime,
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in feeds.chunks(INSERT_CHUNK) {
            let col = |f: fn(&NewFeed) -> Option<String>| chunk.iter().map(f).collect::<Vec<_>>();
            inserted += sqlx::query(
                "INSERT INTO we_feeds (id, faker_id, mp_name, mp_cover, mp_intro, status, source, url,
                                       created_at, updated_at)
                 SELECT * , $9, $9 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
                                               $5::text[], $6::bigint[], $7::text[], $8::text[])
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(col(|f| Some(f.id.clone())))
            .bind(col(|f| f.faker_id.clone()))
            .bind(col(|f| Some(f.mp_name.clone())))
            .bind(col(|f| f.mp_cover.clone()))
            .bind(col(|f| f.mp_intro.clone()))
            .bind(chunk.iter().map(|f| f.status).collect::<Vec<i64>>())
            .bind(col(|f| Some(f.source.clone())))
            .bind(col(|f| f.url.clone()))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub(crate) async fn list_feeds(&self, page: Option<Page>) -> Result<Vec<Feed>> {
        let (limit, offset) = page.map_or((None, 0), |p| (Some(p.limit), p.offset));
        let rows = sqlx::query("SELECT * FROM we_feeds ORDER BY id LIMIT $1 OFFSET $2")
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(feed_from_row).collect()
    }

    pub(crate) async fn get_feed(&self, id: &str) -> Result<Feed> {
        let row = sqlx::query("SELECT * FROM we_feeds WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("feed"))?;
        feed_from_row(&row)
    }

    pub(crate) async fn update_feed(
        &self,
        id: &str,
        update: FeedUpdate,
        now: NaiveDateTime,
    ) -> Result<Feed> {
        let result = sqlx::query(
            "UPDATE we_feeds SET mp_name = COALESCE($2, mp_name), mp_cover = COALESCE($3, mp_cover),
                    mp_intro = COALESCE($4, mp_intro), status = COALESCE($5, status),
                    url = COALESCE($6, url), updated_at = $7,
                    source_chain = CASE WHEN $8 THEN $9 ELSE source_chain END
              WHERE id = $1",
        )
        .bind(id)
        .bind(update.mp_name)
        .bind(update.mp_cover)
        .bind(update.mp_intro)
        .bind(update.status)
        .bind(update.url)
        .bind(now)
        .bind(update.source_chain.is_some())
        .bind(update.source_chain.flatten())
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("feed"));
        }
        self.get_feed(id).await
    }

    pub(crate) async fn delete_feed(&self, id: &str) -> Result<()> {
        let result = sqlx::query("DELETE FROM we_feeds WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("feed"));
        }
        Ok(())
    }

    pub(crate) async fn create_task(
        &self,
        task: TaskFields,
        now: NaiveDateTime,
    ) -> Result<MessageTask> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO we_message_tasks (id, name, message_type, message_template, web_hook_url,
                 mps_id, cron_exp, status, headers, cookies, expose_to_nodes, created_at, updated_at,
                 full_text)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13)",
        )
        .bind(&id)
        .bind(&task.name)
        .bind(task.message_type)
        .bind(&task.message_template)
        .bind(&task.web_hook_url)
        .bind(&task.mps_id)
        .bind(&task.cron_exp)
        .bind(task.status)
        .bind(&task.headers)
        .bind(&task.cookies)
        .bind(task.expose_to_nodes)
        .bind(now)
        .bind(task.full_text.map(i32::from))
        .execute(&self.pool)
        .await?;
        self.get_task(&id).await
    }

    pub(crate) async fn list_tasks(&self, status: Option<i64>) -> Result<Vec<MessageTask>> {
        let rows = sqlx::query(
            "SELECT * FROM we_message_tasks WHERE ($1::bigint IS NULL OR status = $1) ORDER BY created_at, id",
        )
        .bind(status)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    pub(crate) async fn cron_jobs(&self) -> Result<Vec<CronJob>> {
        let rows = sqlx::query(rows::CRON_JOBS).fetch_all(&self.pool).await?;
        rows.iter().map(rows::cron_job_from_row).collect()
    }

    pub(crate) async fn get_task(&self, id: &str) -> Result<MessageTask> {
        let row = sqlx::query("SELECT * FROM we_message_tasks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound("message task"))?;
        task_from_row(&row)
    }

    pub(crate) async fn update_task(
        &self,
        id: &str,
        task: TaskFields,
        now: NaiveDateTime,
    ) -> Result<MessageTask> {
        let result = sqlx::query(
            "UPDATE we_message_tasks SET name = $2, message_type = $3, message_template = $4,
                    web_hook_url = $5, mps_id = $6, cron_exp = $7, status = $8, headers = $9,
                    cookies = $10, expose_to_nodes = $11, updated_at = $12, full_text = $13,
                    next_run_at = CASE WHEN cron_exp IS NOT DISTINCT FROM $7
                                        AND status IS NOT DISTINCT FROM $8 THEN next_run_at END
              WHERE id = $1",
        )
        .bind(id)
        .bind(&task.name)
        .bind(task.message_type)
        .bind(&task.message_template)
        .bind(&task.web_hook_url)
        .bind(&task.mps_id)
        .bind(&task.cron_exp)
        .bind(task.status)
        .bind(&task.headers)
        .bind(&task.cookies)
        .bind(task.expose_to_nodes)
        .bind(now)
        .bind(task.full_text.map(i32::from))
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("message task"));
        }
        self.get_task(id).await
    }

    /// The conditional update that makes each cron firing happen on one parent only.
    pub(crate) async fn set_next_run(
        &self,
        id: &str,
        expected: Option<NaiveDateTime>,
        next: Option<NaiveDateTime>,
        fired_at: Option<NaiveDateTime>,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE we_message_tasks SET next_run_at = $3, last_run_at = COALESCE($4, last_run_at)
              WHERE id = $1 AND next_run_at IS NOT DISTINCT FROM $2",
        )
        .bind(id)
        .bind(expected)
        .bind(next)
        .bind(fired_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn delete_task(&self, id: &str, now: NaiveDateTime) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query("DELETE FROM we_message_tasks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() == 0 {
            return Err(Error::NotFound("message task"));
        }
        let pending: Vec<String> = sqlx::query_scalar(
            "UPDATE we_cascade_task_allocations
                SET status = 'failed', reason = 'not_found', error_message = '任务不存在',
                    completed_at = $2, updated_at = $2, assigned_node_id = NULL
              WHERE id IN (SELECT id FROM we_cascade_task_allocations
                            WHERE task_id = $1 AND status = 'pending' ORDER BY id FOR UPDATE)
              RETURNING id",
        )
        .bind(id)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE we_feeds SET open_allocation_id = NULL WHERE open_allocation_id = ANY($1)",
        )
        .bind(&pending)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
