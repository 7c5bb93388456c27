//! Article uploads (PROTOCOL §8.5): feed-scoped, idempotent upserts with per-item rejects;
//! the node row is locked first, then the allocation, like every node-scoped write.

use super::PgStore;
use super::insert_sync_log;
use super::lifecycle::load;
use super::nodes::{lock_self, touch};
use crate::dispatch::Source;
use crate::store::dedup;
use crate::store::engine::{UploadTally, Upsert};
use crate::store::rows::RowExt;
use crate::store::rows::{
    ARTICLE_COLUMNS, WEBHOOK_TASKS, article_from_row, check_article, webhook_batches,
    webhook_job_from_row, webhook_outcome,
};
use crate::store::{
    ArticleIn, Error, Result, UploadOutcome, UploadPolicy, WebhookJob, WebhookResult,
};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;
use sqlx::PgConnection;

impl PgStore {
    pub(crate) async fn get_articles(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<crate::store::StoredArticle>> {
        let sql = format!(
            "SELECT {ARTICLE_COLUMNS} FROM we_articles a LEFT JOIN we_feeds f ON f.id = a.mp_id
              WHERE a.id = ANY($1) ORDER BY COALESCE(a.publish_time, 0) DESC, a.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(article_from_row).collect()
    }

    pub(crate) async fn list_articles(
        &self,
        feed_ids: Option<Vec<String>>,
        page: crate::store::Page,
    ) -> Result<Vec<crate::store::StoredArticle>> {
        let sql = format!(
            "SELECT {ARTICLE_COLUMNS} FROM we_articles a LEFT JOIN we_feeds f ON f.id = a.mp_id
              WHERE ($1::text[] IS NULL OR a.mp_id = ANY($1))
              ORDER BY COALESCE(a.publish_time, 0) DESC, a.id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(feed_ids)
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(article_from_row).collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn upload_articles(
        &self,
        node_id: &str,
        allocation_id: &str,
        token: Option<String>,
        items: Vec<ArticleIn>,
        now: NaiveDateTime,
        policy: UploadPolicy,
    ) -> Result<UploadOutcome> {
        let mut tx = self.pool.begin().await?;
        lock_self(&mut tx, node_id).await?;
        let row = load(&mut tx, allocation_id).await?;
        row.check_holder(node_id, token.as_deref())?;
        if !row.is_held() && row.status != "completed" {
            return Err(Error::InvalidTransition(row.status));
        }
        touch(&mut tx, node_id, now).await?;
        let window = (row.source == Source::Wechat).then_some(policy.dedup_window_seconds);
        let mut tally = UploadTally::new(items.len());
        for item in items {
            match check_article(&item, &row.feed_ids) {
                Err(error) => tally.reject(&item, error),
                Ok((stored_id, mp_id)) => {
                    let done = upsert(
                        &mut tx,
                        &stored_id,
                        &mp_id,
                        &item,
                        node_id,
                        allocation_id,
                        now,
                        window,
                    )
                    .await?;
                    tally.stored(&item, stored_id, mp_id, done);
                }
            }
        }
        let (received, inserted) = tally.counts();
        sqlx::query(
            "UPDATE we_cascade_task_allocations SET new_article_count = new_article_count + $2,
                article_count = GREATEST(article_count, $3), updated_at = $4,
                lease_expires_at = CASE WHEN status IN ('claimed', 'executing')
                    THEN LEAST($5, COALESCE(run_deadline, $5)) ELSE lease_expires_at END
              WHERE id = $1",
        )
        .bind(allocation_id)
        .bind(inserted)
        .bind(received)
        .bind(now)
        .bind(now + TimeDelta::seconds(policy.lease_seconds))
        .execute(&mut *tx)
        .await?;
        enqueue_webhooks(&mut tx, &tally.fresh, now).await?;
        let out = tally.out;
        let extra = json!({ "allocation_id": allocation_id, "task_id": row.task_id, "received": out.received,
                            "new_count": out.new_count, "updated_count": out.updated_count, "rejected": out.rejected.len() });
        insert_sync_log(
            &mut tx,
            node_id,
            "upload_articles",
            "push",
            1,
            inserted,
            None,
            &extra,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }
}

/// Stores one uploaded item as article `id` of feed `mp_id`, or, when the feed has no `id`
/// and `window` (seconds) is given, fills in the article it already has under
/// another id ([`crate::store::dedup`]). The item's link keys are recorded either way.
#[allow(clippy::too_many_arguments)]
async fn upsert(
    tx: &mut PgConnection,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    node_id: &str,
    allocation_id: &str,
    now: NaiveDateTime,
    window: Option<i64>,
) -> Result<Upsert> {
    let existing: Option<Option<String>> =
        sqlx::query_scalar("SELECT mp_id FROM we_articles WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let links = dedup::item_links(a);
    let (target, done) = match existing {
        Some(Some(owner)) if owner != mp_id => return Ok(Upsert::Foreign),
        Some(_) => {
            update(tx, id, mp_id, a, now, false).await?;
            (id.to_string(), Upsert::Updated)
        }
        None => match find_same(tx, mp_id, a, &links, window).await? {
            Some(stored) => {
                update(tx, &stored, mp_id, a, now, true).await?;
                (stored.clone(), Upsert::Matched(stored))
            }
            None => {
                let fresh = insert(tx, id, mp_id, a, node_id, allocation_id, now).await?;
                // Another parent stored the same article a moment ago: nothing new here.
                let done = if fresh {
                    Upsert::Inserted
                } else {
                    Upsert::Updated
                };
                (id.to_string(), done)
            }
        },
    };
    for link in &links {
        sqlx::query(dedup::ADD_LINK)
            .bind(mp_id)
            .bind(link)
            .bind(&target)
            .execute(&mut *tx)
            .await?;
    }
    Ok(done)
}

/// The id of the article feed `mp_id` has for item `a` under another id: by a link key, else
/// by title and publish time within `window` seconds. `None` without a `window`.
async fn find_same(
    tx: &mut PgConnection,
    mp_id: &str,
    a: &ArticleIn,
    links: &[String],
    window: Option<i64>,
) -> Result<Option<String>> {
    let Some(window) = window else {
        return Ok(None);
    };
    for link in links {
        let found: Option<String> = sqlx::query_scalar(dedup::LINK_MATCH)
            .bind(mp_id)
            .bind(link)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    let Some((title, time)) = dedup::title_time(a).filter(|_| window > 0) else {
        return Ok(None);
    };
    let rows = sqlx::query(dedup::TITLE_MATCH)
        .bind(mp_id)
        .bind(title)
        .bind(time.saturating_sub(window))
        .bind(time.saturating_add(window))
        .fetch_all(&mut *tx)
        .await?;
    let mut candidates = Vec::with_capacity(rows.len());
    for row in &rows {
        let known: Vec<String> = sqlx::query_scalar(dedup::ARTICLE_LINKS)
            .bind(row.text("id")?)
            .fetch_all(&mut *tx)
            .await?;
        candidates.push(dedup::candidate(row, known)?);
    }
    Ok(dedup::choose(&candidates, links, time, window))
}

/// Updates stored article `id` from item `a`; `fill` only fills what it lacks.
async fn update(
    tx: &mut PgConnection,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    now: NaiveDateTime,
    fill: bool,
) -> Result<()> {
    sqlx::query(dedup::UPDATE_ARTICLE)
        .bind(id)
        .bind(&a.title)
        .bind(&a.url)
        .bind(&a.pic_url)
        .bind(&a.description)
        .bind(&a.content)
        .bind(&a.content_html)
        .bind(&a.content_markdown)
        .bind(a.publish_time)
        .bind(a.status)
        .bind(&a.extinfo)
        .bind(mp_id)
        .bind(now)
        .bind(now.and_utc().timestamp_millis())
        .bind(fill)
        .bind(a.time_estimated)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Inserts item `a` as article `id`; `false` when another parent inserted it first.
async fn insert(
    tx: &mut PgConnection,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    node_id: &str,
    allocation_id: &str,
    now: NaiveDateTime,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO we_articles (id, mp_id, title, url, pic_url, description, content, content_html,
            content_markdown, publish_time, status, extinfo, created_at, updated_at, updated_at_millis,
            is_export, is_read, node_id, allocation_id, time_estimated)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, 1), $12, $13, $13, $14, 0, 0, $15, $16, $17)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(mp_id)
    .bind(&a.title)
    .bind(&a.url)
    .bind(&a.pic_url)
    .bind(&a.description)
    .bind(&a.content)
    .bind(&a.content_html)
    .bind(&a.content_markdown)
    .bind(a.publish_time)
    .bind(a.status)
    .bind(&a.extinfo)
    .bind(now)
    .bind(now.and_utc().timestamp_millis())
    .bind(node_id)
    .bind(allocation_id)
    .bind(a.time_estimated && a.publish_time.is_some())
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Queues the webhooks of newly stored articles `(stored id, feed id)`, in the upload's
/// transaction.
async fn enqueue_webhooks(
    tx: &mut PgConnection,
    fresh: &[(String, String)],
    now: NaiveDateTime,
) -> Result<()> {
    if fresh.is_empty() {
        return Ok(());
    }
    let tasks = sqlx::query(WEBHOOK_TASKS).fetch_all(&mut *tx).await?;
    for (task_id, ids) in webhook_batches(&tasks, fresh)? {
        sqlx::query(
            "INSERT INTO cascade_webhook_outbox (id, task_id, article_ids, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(task_id)
        .bind(json!(ids).to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn claim_webhooks(
        &self,
        now: NaiveDateTime,
        limit: i64,
        lease_seconds: i64,
    ) -> Result<Vec<WebhookJob>> {
        let rows = sqlx::query(
            "UPDATE cascade_webhook_outbox SET next_attempt_at = $2, attempts = attempts + 1
              WHERE id IN (SELECT id FROM cascade_webhook_outbox WHERE status = 'pending' AND next_attempt_at <= $1
                            ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
              RETURNING id, task_id, article_ids, attempts",
        )
        .bind(now)
        .bind(now + TimeDelta::seconds(lease_seconds))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_job_from_row).collect()
    }

    pub(crate) async fn finish_webhook(
        &self,
        id: &str,
        result: WebhookResult,
        now: NaiveDateTime,
    ) -> Result<()> {
        let (status, sent, next, error) = webhook_outcome(result);
        sqlx::query(
            "UPDATE cascade_webhook_outbox SET status = $2,
                sent_at = CASE WHEN $3 THEN $4 ELSE sent_at END,
                next_attempt_at = COALESCE($5, next_attempt_at), last_error = COALESCE($6, last_error)
              WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(sent)
        .bind(now)
        .bind(next)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
