//! Feeds and message tasks: what the parent owns and dispatches.

use crate::store::db::{Arg, Tx, args};
use crate::store::rows::{self, feed_from_row, task_from_row};
use crate::store::{
    CronJob, Error, Feed, FeedUpdate, MessageTask, NewFeed, Page, Result, Store, TaskFields,
};
use chrono::NaiveDateTime;

/// Feeds inserted per statement (8 parameters each, well under both backends' limits).
const INSERT_CHUNK: usize = 500;

impl Store {
    /// Creates a feed; `Conflict` if its id exists.
    pub async fn create_feed(&self, feed: NewFeed, now: NaiveDateTime) -> Result<Feed> {
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let id = feed.id.clone();
                    if insert_feeds(tx, &[feed], now).await? == 0 {
                        return Err(Error::Conflict("feed already exists".into()));
                    }
                    feed_on(tx, &id).await
                })
            })
            .await
    }

    /// Creates many feeds in one transaction, skipping existing ids; returns how many were new.
    pub async fn create_feeds(&self, feeds: Vec<NewFeed>, now: NaiveDateTime) -> Result<u64> {
        self.db
            .write(move |tx| Box::pin(async move { insert_feeds(tx, &feeds, now).await }))
            .await
    }

    /// The ids of every feed, in id order (a task over all feeds, at dispatch).
    pub async fn all_feed_ids(&self) -> Result<Vec<String>> {
        self.db
            .read(|tx| {
                Box::pin(async move { tx.texts("SELECT id FROM we_feeds ORDER BY id", &[]).await })
            })
            .await
    }

    /// Feeds ordered by id, paged when `page` is given.
    pub async fn list_feeds(&self, page: Option<Page>) -> Result<Vec<Feed>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = match page {
                        Some(p) => {
                            tx.rows(
                                "SELECT * FROM we_feeds ORDER BY id LIMIT CAST($1 AS BIGINT) OFFSET CAST($2 AS BIGINT)",
                                args![p.limit, p.offset],
                            )
                            .await?
                        }
                        None => tx.rows("SELECT * FROM we_feeds ORDER BY id", &[]).await?,
                    };
                    rows.iter().map(feed_from_row).collect()
                })
            })
            .await
    }

    /// One feed.
    pub async fn get_feed(&self, id: &str) -> Result<Feed> {
        let id = id.to_string();
        self.db
            .read(move |tx| Box::pin(async move { feed_on(tx, &id).await }))
            .await
    }

    /// Updates a feed.
    pub async fn update_feed(
        &self,
        id: &str,
        update: FeedUpdate,
        now: NaiveDateTime,
    ) -> Result<Feed> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec(
                            "UPDATE we_feeds SET mp_name = COALESCE($2, mp_name),
                                    mp_cover = COALESCE($3, mp_cover),
                                    mp_intro = COALESCE($4, mp_intro),
                                    status = COALESCE($5, status), url = COALESCE($6, url),
                                    updated_at = $7,
                                    source_chain = CASE WHEN $8 THEN $9 ELSE source_chain END,
                                    priority = COALESCE($10, priority)
                              WHERE id = $1",
                            args![
                                &id,
                                update.mp_name,
                                update.mp_cover,
                                update.mp_intro,
                                update.status,
                                update.url,
                                now,
                                update.source_chain.is_some(),
                                update.source_chain.flatten(),
                                update.priority.map(|(p, _)| p),
                            ],
                        )
                        .await?;
                    if done == 0 {
                        return Err(Error::NotFound("feed"));
                    }
                    if let Some((priority, step)) = update.priority {
                        reorder(tx, &id, priority, step).await?;
                    }
                    feed_on(tx, &id).await
                })
            })
            .await
    }

    /// Deletes a feed (its articles stay).
    pub async fn delete_feed(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec("DELETE FROM we_feeds WHERE id = $1", args![id])
                        .await?;
                    if done == 0 {
                        return Err(Error::NotFound("feed"));
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Creates a message task.
    pub async fn create_task(&self, task: TaskFields, now: NaiveDateTime) -> Result<MessageTask> {
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let id = uuid::Uuid::new_v4().to_string();
                    tx.exec(
                        "INSERT INTO we_message_tasks
                           (id, name, message_type, message_template, web_hook_url, mps_id,
                            cron_exp, status, headers, cookies, expose_to_nodes, created_at,
                            updated_at, full_text, all_feeds, priority)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14, $15)",
                        &task_args(&id, &task, now),
                    )
                    .await?;
                    task_on(tx, &id).await
                })
            })
            .await
    }

    /// Lists message tasks, optionally of one status.
    pub async fn list_tasks(&self, status: Option<i64>) -> Result<Vec<MessageTask>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            "SELECT * FROM we_message_tasks
                              WHERE (CAST($1 AS BIGINT) IS NULL OR status = $1)
                              ORDER BY created_at, id",
                            args![status],
                        )
                        .await?;
                    rows.iter().map(task_from_row).collect()
                })
            })
            .await
    }

    /// One message task.
    pub async fn get_task(&self, id: &str) -> Result<MessageTask> {
        let id = id.to_string();
        self.db
            .read(move |tx| Box::pin(async move { task_on(tx, &id).await }))
            .await
    }

    /// Enabled tasks with a cron expression: only what the scheduler needs.
    pub async fn cron_jobs(&self) -> Result<Vec<CronJob>> {
        self.db
            .read(|tx| {
                Box::pin(async move {
                    let rows = tx.rows(rows::CRON_JOBS, &[]).await?;
                    rows.iter().map(rows::cron_job_from_row).collect()
                })
            })
            .await
    }

    /// Replaces a task's fields. A change of its cron expression or status forgets its
    /// next firing (the scheduler computes it again).
    pub async fn update_task(
        &self,
        id: &str,
        task: TaskFields,
        now: NaiveDateTime,
    ) -> Result<MessageTask> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec(
                            "UPDATE we_message_tasks
                                SET name = $2, message_type = $3, message_template = $4,
                                    web_hook_url = $5, mps_id = $6, cron_exp = $7, status = $8,
                                    headers = $9, cookies = $10, expose_to_nodes = $11,
                                    updated_at = $12, full_text = $13, all_feeds = $14,
                                    priority = $15,
                                    next_run_at = CASE WHEN cron_exp IS NOT DISTINCT FROM $7
                                                        AND status IS NOT DISTINCT FROM $8
                                                       THEN next_run_at END
                              WHERE id = $1",
                            &task_args(&id, &task, now),
                        )
                        .await?;
                    if done == 0 {
                        return Err(Error::NotFound("message task"));
                    }
                    task_on(tx, &id).await
                })
            })
            .await
    }

    /// Moves a task's `next_run_at` from `expected` to `next` only if it is still `expected`
    /// (claims a cron firing); `fired_at` also records `last_run_at`. The conditional update
    /// makes each cron firing happen on one parent only.
    pub async fn set_next_run(
        &self,
        id: &str,
        expected: Option<NaiveDateTime>,
        next: Option<NaiveDateTime>,
        fired_at: Option<NaiveDateTime>,
    ) -> Result<bool> {
        let id = id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let done = tx
                        .exec(
                            "UPDATE we_message_tasks
                                SET next_run_at = $3, last_run_at = COALESCE($4, last_run_at)
                              WHERE id = $1 AND next_run_at IS NOT DISTINCT FROM $2",
                            args![id, expected, next, fired_at],
                        )
                        .await?;
                    Ok(done == 1)
                })
            })
            .await
    }

    /// Deletes a task; its pending allocations fail with `not_found`.
    pub async fn delete_task(&self, id: &str, now: NaiveDateTime) -> Result<()> {
        let id = id.to_string();
        self.db
            .write(move |tx| Box::pin(async move { delete_task(tx, &id, now).await }))
            .await
    }
}

/// Reads a feed inside the caller's transaction.
pub(crate) async fn feed_on(tx: &mut Tx, id: &str) -> Result<Feed> {
    let row = tx
        .opt("SELECT * FROM we_feeds WHERE id = $1", args![id])
        .await?
        .ok_or(Error::NotFound("feed"))?;
    feed_from_row(&row)
}

/// Reads a message task inside the caller's transaction.
pub(crate) async fn task_on(tx: &mut Tx, id: &str) -> Result<MessageTask> {
    let row = tx
        .opt("SELECT * FROM we_message_tasks WHERE id = $1", args![id])
        .await?
        .ok_or(Error::NotFound("message task"))?;
    task_from_row(&row)
}

/// Inserts feeds whose id is new, a chunk per statement; how many were new.
async fn insert_feeds(tx: &mut Tx, feeds: &[NewFeed], now: NaiveDateTime) -> Result<u64> {
    let mut inserted = 0;
    for chunk in feeds.chunks(INSERT_CHUNK) {
        let mut values = Vec::with_capacity(chunk.len());
        let mut bound: Vec<Arg> = Vec::with_capacity(1 + 8 * chunk.len());
        bound.push(now.into());
        for feed in chunk {
            let n = bound.len();
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $1, $1)",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8
            ));
            bound.extend([
                Arg::from(&feed.id),
                Arg::from(&feed.faker_id),
                Arg::from(&feed.mp_name),
                Arg::from(&feed.mp_cover),
                Arg::from(&feed.mp_intro),
                Arg::from(feed.status),
                Arg::from(&feed.source),
                Arg::from(&feed.url),
            ]);
        }
        let sql = format!(
            "INSERT INTO we_feeds (id, faker_id, mp_name, mp_cover, mp_intro, status, source, url,
                                   created_at, updated_at)
             VALUES {} ON CONFLICT (id) DO NOTHING",
            values.join(", ")
        );
        inserted += tx.exec(&sql, &bound).await?;
    }
    Ok(inserted)
}

/// Deletes a task and fails its pending allocations (`not_found`), freeing their feeds. On
/// PostgreSQL the allocations are locked in id order, so a claim racing for one either
/// took it first (it is no longer pending) or finds it failed.
async fn delete_task(tx: &mut Tx, id: &str, now: NaiveDateTime) -> Result<()> {
    let done = tx
        .exec("DELETE FROM we_message_tasks WHERE id = $1", args![id])
        .await?;
    if done == 0 {
        return Err(Error::NotFound("message task"));
    }
    let pending = tx
        .texts(
            "SELECT id FROM we_cascade_task_allocations
              WHERE task_id = $1 AND status = 'pending' ORDER BY id {for_update}",
            args![id],
        )
        .await?;
    // In parts, so one statement's list stays a bounded size; two statements a part
    // (a task of 59k pending allocations took 59k round trips one by one).
    for part in pending.chunks(DELETE_PART) {
        // A failed allocation is placed on no node any more.
        tx.exec(
            "UPDATE we_cascade_task_allocations SET status = 'failed', reason = 'not_found',
                error_message = '任务不存在', completed_at = $2, updated_at = $2,
                assigned_node_id = NULL
              WHERE id {in:$1}",
            args![part, now],
        )
        .await?;
        tx.exec(
            "UPDATE we_feeds SET open_allocation_id = NULL
              WHERE open_allocation_id IS NOT NULL AND open_allocation_id {in:$1}",
            args![part],
        )
        .await?;
    }
    Ok(())
}

/// How many allocations one statement of a task's deletion fails.
const DELETE_PART: usize = 5_000;

/// A task's columns in the order both the insert and the update bind them (`$1` its id, `$12`
/// the time of the change).
fn task_args(id: &str, task: &TaskFields, now: NaiveDateTime) -> Vec<Arg> {
    args![
        id,
        &task.name,
        task.message_type,
        &task.message_template,
        &task.web_hook_url,
        &task.mps_id,
        &task.cron_exp,
        task.status,
        &task.headers,
        &task.cookies,
        task.expose_to_nodes,
        now,
        task.full_text.map(i64::from),
        task.all_feeds,
        task.priority,
    ]
    .to_vec()
}

/// A feed's `check_order` after its priority changed: its planned check moved ahead again
/// (a feed not planned yet gets it from the next plan).
async fn reorder(tx: &mut Tx, id: &str, priority: i64, step: chrono::TimeDelta) -> Result<()> {
    use crate::store::rows::RowExt;
    let planned = tx
        .rows(
            "SELECT next_check_at FROM we_feeds WHERE id = $1",
            args![id],
        )
        .await?;
    if let Some(at) = planned
        .first()
        .map(|r| r.time("next_check_at"))
        .transpose()?
        .flatten()
    {
        let order = crate::dispatch::freshness::order_key(at, priority, step);
        tx.exec(
            "UPDATE we_feeds SET check_order = $2 WHERE id = $1 AND check_order IS NOT NULL",
            args![id, order],
        )
        .await?;
    }
    Ok(())
}
