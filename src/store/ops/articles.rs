//! Article uploads (PROTOCOL §8.5): feed-scoped, idempotent upserts with per-item rejects,
//! reads of stored articles, and the webhook outbox of new ones. On PostgreSQL an upload
//! locks the node row first, then the allocation, like every node-scoped write.

use super::lifecycle::load;
use super::{SyncLogRow, insert_sync_log};
use crate::dispatch::Source;
use crate::store::db::{Tx, args};
use crate::store::dedup;
use crate::store::engine::{UploadTally, Upsert};
use crate::store::rows::{
    ARTICLE_COLUMNS, RowExt, WEBHOOK_TASKS, article_from_row, check_article, webhook_batches,
    webhook_job_from_row, webhook_outcome,
};
use crate::store::{
    AllocStatus, ArticleIn, Error, Page, Result, Store, StoredArticle, UploadOutcome, UploadPolicy,
    WebhookJob, WebhookResult,
};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;

impl Store {
    /// Upserts uploaded articles for an allocation the node holds (or completed); an item of
    /// a WeChat feed that has the same article under another id fills that one in (`dedup`).
    pub async fn upload_articles(
        &self,
        node_id: &str,
        allocation_id: &str,
        token: Option<String>,
        items: Vec<ArticleIn>,
        now: NaiveDateTime,
        policy: UploadPolicy,
    ) -> Result<UploadOutcome> {
        let (node_id, allocation_id) = (node_id.to_string(), allocation_id.to_string());
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let token = token.as_deref();
                    upload(tx, &node_id, &allocation_id, token, items, now, policy).await
                })
            })
            .await
    }

    /// Articles of the given feeds (all feeds when `None`), newest first.
    pub async fn list_articles(
        &self,
        feed_ids: Option<Vec<String>>,
        page: Page,
    ) -> Result<Vec<StoredArticle>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let all = feed_ids.is_none();
                    let rows = tx
                        .rows(
                            &format!(
                                "SELECT {ARTICLE_COLUMNS} FROM we_articles a
                                   LEFT JOIN we_feeds f ON f.id = a.mp_id
                                  WHERE ($4 OR a.mp_id {{in:$1}})
                                  ORDER BY COALESCE(a.publish_time, 0) DESC, a.id DESC
                                  LIMIT CAST($2 AS BIGINT) OFFSET CAST($3 AS BIGINT)"
                            ),
                            args![feed_ids.unwrap_or_default(), page.limit, page.offset, all],
                        )
                        .await?;
                    rows.iter().map(article_from_row).collect()
                })
            })
            .await
    }

    /// The named articles, newest first.
    pub async fn get_articles(&self, ids: Vec<String>) -> Result<Vec<StoredArticle>> {
        self.db
            .read(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            &format!(
                                "SELECT {ARTICLE_COLUMNS} FROM we_articles a
                                   LEFT JOIN we_feeds f ON f.id = a.mp_id
                                  WHERE a.id {{in:$1}}
                                  ORDER BY COALESCE(a.publish_time, 0) DESC, a.id DESC"
                            ),
                            args![ids],
                        )
                        .await?;
                    rows.iter().map(article_from_row).collect()
                })
            })
            .await
    }

    /// Claims up to `limit` due webhooks for `lease_seconds` (another parent takes them after
    /// that if this one stops), counting the try.
    pub async fn claim_webhooks(
        &self,
        now: NaiveDateTime,
        limit: i64,
        lease_seconds: i64,
    ) -> Result<Vec<WebhookJob>> {
        // A read first: the writer is not taken every second for an empty outbox.
        let due = self
            .db
            .read(move |tx| {
                Box::pin(async move {
                    tx.int(
                        "SELECT 1 FROM cascade_webhook_outbox
                          WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1",
                        args![now],
                    )
                    .await
                })
            })
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let until = now + TimeDelta::seconds(lease_seconds);
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    let rows = tx
                        .rows(
                            "UPDATE cascade_webhook_outbox
                                SET next_attempt_at = $2, attempts = attempts + 1
                              WHERE id IN (SELECT id FROM cascade_webhook_outbox
                                            WHERE status = 'pending' AND next_attempt_at <= $1
                                            ORDER BY next_attempt_at LIMIT CAST($3 AS BIGINT) {skip_locked})
                              RETURNING id, task_id, article_ids, attempts",
                            args![now, until, limit],
                        )
                        .await?;
                    rows.iter().map(webhook_job_from_row).collect()
                })
            })
            .await
    }

    /// Records how a webhook try ended.
    pub async fn finish_webhook(
        &self,
        id: &str,
        result: WebhookResult,
        now: NaiveDateTime,
    ) -> Result<()> {
        let id = id.to_string();
        let (status, sent, next, error) = webhook_outcome(result);
        self.db
            .write(move |tx| {
                Box::pin(async move {
                    tx.exec(
                        "UPDATE cascade_webhook_outbox SET status = $2,
                            sent_at = CASE WHEN $3 THEN $4 ELSE sent_at END,
                            next_attempt_at = COALESCE($5, next_attempt_at),
                            last_error = COALESCE($6, last_error)
                          WHERE id = $1",
                        args![id, status, sent, now, next, error],
                    )
                    .await
                    .map(drop)
                })
            })
            .await
    }
}

async fn upload(
    tx: &mut Tx,
    node_id: &str,
    allocation_id: &str,
    token: Option<&str>,
    items: Vec<ArticleIn>,
    now: NaiveDateTime,
    policy: UploadPolicy,
) -> Result<UploadOutcome> {
    // Marking the node alive locks its row before the allocation's.
    super::nodes::touch_report(tx, node_id, now, None).await?;
    let row = load(tx, allocation_id).await?;
    row.check_holder(node_id, token)?;
    if !row.is_held() && row.status != AllocStatus::Completed {
        return Err(Error::InvalidTransition(row.status.to_string()));
    }
    let window = (row.source == Source::Wechat).then_some(policy.dedup_window_seconds);
    let by = Uploader {
        node_id,
        allocation_id,
        now,
    };
    let mut tally = UploadTally::new(items.len());
    for item in items {
        match check_article(&item, &row.feed_ids) {
            Err(error) => tally.reject(&item, error),
            Ok((stored_id, mp_id)) => {
                let done = upsert(tx, &stored_id, &mp_id, &item, by, window).await?;
                tally.stored(&item, stored_id, mp_id, done);
            }
        }
    }
    let (received, inserted) = tally.counts();
    // A NULL count (an adopted row) takes the received one.
    tx.exec(
        "UPDATE we_cascade_task_allocations SET new_article_count = new_article_count + $2,
            article_count = CASE WHEN article_count IS NULL OR article_count < $3
                                 THEN $3 ELSE article_count END,
            updated_at = $4,
            lease_expires_at = CASE WHEN status IN ('claimed', 'executing')
                THEN {least}($5, COALESCE(run_deadline, $5)) ELSE lease_expires_at END
          WHERE id = $1",
        args![
            allocation_id,
            inserted,
            received,
            now,
            now + TimeDelta::seconds(policy.lease_seconds)
        ],
    )
    .await?;
    enqueue_webhooks(tx, &tally.fresh, now).await?;
    let out = tally.out;
    let extra = json!({ "allocation_id": allocation_id, "task_id": row.task_id, "received": out.received,
                        "new_count": out.new_count, "updated_count": out.updated_count, "rejected": out.rejected.len() });
    let log = SyncLogRow {
        node_id,
        operation: "upload_articles",
        direction: "push",
        status: 1,
        data_count: inserted,
        error_message: None,
        extra: &extra,
    };
    insert_sync_log(tx, &log, now).await?;
    Ok(out)
}

/// Who stores an upload's items, and when.
#[derive(Clone, Copy)]
struct Uploader<'a> {
    node_id: &'a str,
    allocation_id: &'a str,
    now: NaiveDateTime,
}

/// Stores one uploaded item as article `id` of feed `mp_id`, or, when the feed has no `id`
/// and `window` (seconds) is given, fills in the article it already has under
/// another id ([`crate::store::dedup`]). The item's link keys are recorded either way.
async fn upsert(
    tx: &mut Tx,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    by: Uploader<'_>,
    window: Option<i64>,
) -> Result<Upsert> {
    let existing = tx
        .opt(
            "SELECT mp_id FROM we_articles WHERE id = $1 {for_update}",
            args![id],
        )
        .await?
        .map(|r| r.opt_text("mp_id"))
        .transpose()?;
    let links = dedup::item_links(a);
    let (target, done) = match existing {
        Some(Some(owner)) if owner != mp_id => return Ok(Upsert::Foreign),
        Some(_) => {
            update(tx, id, mp_id, a, by.now, false).await?;
            (id.to_string(), Upsert::Updated)
        }
        None => match find_same(tx, mp_id, a, &links, window).await? {
            Some(stored) => {
                update(tx, &stored, mp_id, a, by.now, true).await?;
                (stored.clone(), Upsert::Matched(stored))
            }
            None => {
                // Another parent stored the same article a moment ago: nothing new here.
                let done = if insert(tx, id, mp_id, a, by).await? {
                    Upsert::Inserted
                } else {
                    Upsert::Updated
                };
                (id.to_string(), done)
            }
        },
    };
    for link in &links {
        tx.exec(dedup::ADD_LINK, args![mp_id, link, &target])
            .await?;
    }
    Ok(done)
}

/// The id of the article feed `mp_id` has for item `a` under another id: by a link key, else
/// by title and publish time within `window` seconds. `None` without a `window`.
async fn find_same(
    tx: &mut Tx,
    mp_id: &str,
    a: &ArticleIn,
    links: &[String],
    window: Option<i64>,
) -> Result<Option<String>> {
    let Some(window) = window else {
        return Ok(None);
    };
    for link in links {
        let found = tx.text(dedup::LINK_MATCH, args![mp_id, link]).await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    let Some((title, time)) = dedup::title_time(a).filter(|_| window > 0) else {
        return Ok(None);
    };
    let rows = tx
        .rows(
            dedup::TITLE_MATCH,
            args![
                mp_id,
                title,
                time.saturating_sub(window),
                time.saturating_add(window)
            ],
        )
        .await?;
    let mut candidates = Vec::with_capacity(rows.len());
    for row in &rows {
        let known = tx
            .texts(dedup::ARTICLE_LINKS, args![row.text("id")?])
            .await?;
        candidates.push(dedup::candidate(row, known)?);
    }
    Ok(dedup::choose(&candidates, links, time, window))
}

/// Updates stored article `id` from item `a`; `fill` only fills what it lacks.
async fn update(
    tx: &mut Tx,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    now: NaiveDateTime,
    fill: bool,
) -> Result<()> {
    tx.exec(
        dedup::UPDATE_ARTICLE,
        args![
            id,
            &a.title,
            &a.url,
            &a.pic_url,
            &a.description,
            &a.content,
            &a.content_html,
            &a.content_markdown,
            a.publish_time,
            a.status,
            &a.extinfo,
            mp_id,
            now,
            now.and_utc().timestamp_millis(),
            fill,
            a.time_estimated,
        ],
    )
    .await?;
    Ok(())
}

/// Inserts item `a` as article `id`; `false` when another parent inserted it first.
async fn insert(
    tx: &mut Tx,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    by: Uploader<'_>,
) -> Result<bool> {
    let added = tx
        .exec(
            "INSERT INTO we_articles (id, mp_id, title, url, pic_url, description, content,
                content_html, content_markdown, publish_time, status, extinfo, created_at,
                updated_at, updated_at_millis, is_export, is_read, node_id, allocation_id,
                time_estimated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, 1), $12, $13, $13,
                     $14, 0, 0, $15, $16, $17)
             ON CONFLICT (id) DO NOTHING",
            args![
                id,
                mp_id,
                &a.title,
                &a.url,
                &a.pic_url,
                &a.description,
                &a.content,
                &a.content_html,
                &a.content_markdown,
                a.publish_time,
                a.status,
                &a.extinfo,
                by.now,
                by.now.and_utc().timestamp_millis(),
                by.node_id,
                by.allocation_id,
                a.time_estimated && a.publish_time.is_some(),
            ],
        )
        .await?;
    Ok(added == 1)
}

/// Queues the webhooks of newly stored articles `(stored id, feed id)`, in the upload's
/// transaction.
async fn enqueue_webhooks(
    tx: &mut Tx,
    fresh: &[(String, String)],
    now: NaiveDateTime,
) -> Result<()> {
    if fresh.is_empty() {
        return Ok(());
    }
    let tasks = tx.rows(WEBHOOK_TASKS, &[]).await?;
    for (task_id, ids) in webhook_batches(&tasks, fresh)? {
        tx.exec(
            "INSERT INTO cascade_webhook_outbox
               (id, task_id, article_ids, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
            args![
                uuid::Uuid::new_v4().to_string(),
                task_id,
                json!(ids).to_string(),
                now
            ],
        )
        .await?;
    }
    Ok(())
}
