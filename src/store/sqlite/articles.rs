//! Article uploads (PROTOCOL §8.5): feed-scoped, idempotent upserts with per-item rejects.

use super::SqliteStore;
use super::insert_sync_log;
use super::lifecycle::load;
use super::nodes::touch;
use crate::protocol::time::to_db;
use crate::store::rows::{ARTICLE_COLUMNS, article_from_row, check_article};
use crate::store::{ArticleIn, Error, Rejected, Result, UploadOutcome};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;
use sqlx::SqliteConnection;

enum Upsert {
    Inserted,
    Updated,
    Foreign,
}

impl SqliteStore {
    pub(crate) async fn get_articles(
        &self,
        ids: Vec<String>,
    ) -> Result<Vec<crate::store::StoredArticle>> {
        let sql = format!(
            "SELECT {ARTICLE_COLUMNS} FROM we_articles a LEFT JOIN we_feeds f ON f.id = a.mp_id
              WHERE a.id IN (SELECT value FROM json_each($1)) ORDER BY COALESCE(a.publish_time, 0) DESC, a.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(json!(ids).to_string())
            .fetch_all(&self.read)
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
              WHERE ($1 IS NULL OR a.mp_id IN (SELECT value FROM json_each($1)))
              ORDER BY COALESCE(a.publish_time, 0) DESC, a.id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(feed_ids.map(|ids| json!(ids).to_string()))
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.read)
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
        lease_seconds: i64,
    ) -> Result<UploadOutcome> {
        let mut tx = self.write.begin().await?;
        let row = load(&mut tx, allocation_id).await?;
        row.check_holder(node_id, token.as_deref())?;
        if !row.is_held() && row.status != "completed" {
            return Err(Error::InvalidTransition(row.status));
        }
        touch(&mut tx, node_id, now).await?;
        let mut out = UploadOutcome {
            received: items.len(),
            new_count: 0,
            updated_count: 0,
            ids: Vec::with_capacity(items.len()),
            rejected: Vec::new(),
            new_ids: Vec::new(),
        };
        for item in items {
            let checked = check_article(&item, &row.feed_ids);
            let (stored_id, mp_id) = match checked {
                Ok(v) => v,
                Err(error) => {
                    out.ids.push(None);
                    out.rejected.push(Rejected {
                        index: item.index,
                        id: item.id.clone(),
                        error,
                    });
                    continue;
                }
            };
            match upsert(
                &mut tx,
                &stored_id,
                &mp_id,
                &item,
                node_id,
                allocation_id,
                now,
            )
            .await?
            {
                Upsert::Inserted => {
                    out.new_count += 1;
                    out.new_ids.push(stored_id.clone());
                }
                Upsert::Updated => out.updated_count += 1,
                Upsert::Foreign => {
                    out.ids.push(None);
                    let error = format!("article {stored_id} belongs to another feed");
                    out.rejected.push(Rejected {
                        index: item.index,
                        id: item.id.clone(),
                        error,
                    });
                    continue;
                }
            }
            out.ids.push(Some(stored_id));
        }
        let received = i64::try_from(out.received).unwrap_or(i64::MAX);
        let inserted = i64::try_from(out.new_count).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE we_cascade_task_allocations SET new_article_count = new_article_count + $2,
                article_count = MAX(article_count, $3), updated_at = $4,
                lease_expires_at = CASE WHEN status IN ('claimed', 'executing')
                    THEN MIN($5, COALESCE(run_deadline, $5)) ELSE lease_expires_at END
              WHERE id = $1",
        )
        .bind(allocation_id)
        .bind(inserted)
        .bind(received)
        .bind(to_db(now))
        .bind(to_db(now + TimeDelta::seconds(lease_seconds)))
        .execute(&mut *tx)
        .await?;
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

async fn upsert(
    tx: &mut SqliteConnection,
    id: &str,
    mp_id: &str,
    a: &ArticleIn,
    node_id: &str,
    allocation_id: &str,
    now: NaiveDateTime,
) -> Result<Upsert> {
    let existing: Option<Option<String>> =
        sqlx::query_scalar("SELECT mp_id FROM we_articles WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let millis = now.and_utc().timestamp_millis();
    match existing {
        Some(Some(owner)) if owner != mp_id => Ok(Upsert::Foreign),
        Some(_) => {
            sqlx::query(
                "UPDATE we_articles SET
                    title = COALESCE(NULLIF($2, ''), title), url = COALESCE(NULLIF($3, ''), url),
                    pic_url = COALESCE(NULLIF($4, ''), pic_url), description = COALESCE(NULLIF($5, ''), description),
                    content = COALESCE(NULLIF($6, ''), content), content_html = COALESCE(NULLIF($7, ''), content_html),
                    content_markdown = COALESCE(NULLIF($8, ''), content_markdown),
                    publish_time = COALESCE($9, publish_time), status = COALESCE($10, status),
                    extinfo = COALESCE($11, extinfo), mp_id = $12, updated_at = $13, updated_at_millis = $14
                  WHERE id = $1",
            )
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
            .bind(to_db(now))
            .bind(millis)
            .execute(&mut *tx)
            .await?;
            Ok(Upsert::Updated)
        }
        None => {
            sqlx::query(
                "INSERT INTO we_articles (id, mp_id, title, url, pic_url, description, content, content_html,
                    content_markdown, publish_time, status, extinfo, created_at, updated_at, updated_at_millis,
                    is_export, is_read, node_id, allocation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, 1), $12, $13, $13, $14, 0, 0, $15, $16)",
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
            .bind(to_db(now))
            .bind(millis)
            .bind(node_id)
            .bind(allocation_id)
            .execute(&mut *tx)
            .await?;
            Ok(Upsert::Inserted)
        }
    }
}
