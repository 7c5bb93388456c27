//! The allocation state machine (PROTOCOL §4.1–§4.3): reports from the holder, failures and
//! retries, releases and the reaper. Every change is one transaction with its sync log.

use super::SqliteStore;
use super::insert_sync_log;
use super::nodes::touch;
use crate::dispatch::retry::{self, Next, NodeEffect, Reason};
use crate::protocol::time::to_db;
use crate::store::engine::completion_effects;
use crate::store::rows::{AllocRow, RowExt};
use crate::store::{Completion, Error, Failure, LifecyclePolicy, Report, ReportOutcome, Result};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;
use sqlx::SqliteConnection;

pub(super) async fn load(tx: &mut SqliteConnection, id: &str) -> Result<AllocRow> {
    let r = sqlx::query("SELECT * FROM we_cascade_task_allocations WHERE id = $1")
        .bind(id)
        .fetch_optional(tx)
        .await?
        .ok_or(Error::NotFound("allocation"))?;
    AllocRow::from_row(&r)
}

fn renew(now: NaiveDateTime, policy: &LifecyclePolicy) -> String {
    to_db(now + TimeDelta::seconds(policy.lease_seconds))
}

impl SqliteStore {
    pub(crate) async fn report(
        &self,
        node_id: &str,
        allocation_id: &str,
        token: Option<String>,
        report: Report,
        now: NaiveDateTime,
        policy: LifecyclePolicy,
    ) -> Result<ReportOutcome> {
        // MERGE: transitional (store-a). Claims now commit on the new writer thread, a second
        // writer connection: a deferred transaction that reads before it writes would fail
        // with SQLITE_BUSY_SNAPSHOT. Gone once this operation moves to ops::lifecycle.
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let row = load(&mut tx, allocation_id).await?;
        if let Some(done) = row.check_report(&report, node_id, token.as_deref())? {
            return Ok(done);
        }
        if !matches!(report, Report::Completed(_)) {
            touch(&mut tx, node_id, now).await?;
        }
        let outcome = match report {
            Report::Executing => {
                let after = sqlx::query(
                    "UPDATE we_cascade_task_allocations SET status = 'executing',
                        started_at = COALESCE(started_at, $2),
                        lease_expires_at = MIN($3, COALESCE(run_deadline, $3)), updated_at = $2
                      WHERE id = $1 RETURNING *",
                )
                .bind(&row.id)
                .bind(to_db(now))
                .bind(renew(now, &policy))
                .fetch_one(&mut *tx)
                .await?;
                AllocRow::from_row(&after)?.outcome()
            }
            Report::Completed(c) => complete(&mut tx, &row, node_id, c, now, &policy).await?,
            Report::Failed(f) => apply_failure(&mut tx, &row, node_id, &f, now, &policy).await?,
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Terminal `failed` with reason `not_found` (task or feeds gone).
pub(super) async fn fail_not_found(
    tx: &mut SqliteConnection,
    id: &str,
    now: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "UPDATE we_cascade_task_allocations SET status = 'failed', reason = 'not_found',
            error_message = '任务不存在', completed_at = $2, updated_at = $2
          WHERE id = $1",
    )
    .bind(id)
    .bind(to_db(now))
    .execute(&mut *tx)
    .await?;
    close_feeds(tx, id).await
}

/// Frees the feeds of an allocation that reached a terminal state (invariant 5).
async fn close_feeds(tx: &mut SqliteConnection, id: &str) -> Result<()> {
    sqlx::query("UPDATE we_feeds SET open_allocation_id = NULL WHERE open_allocation_id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(())
}

/// Applies a failure by the table of §4.2, with its node effect and sync log.
pub(super) async fn apply_failure(
    tx: &mut SqliteConnection,
    row: &AllocRow,
    node_id: &str,
    f: &Failure,
    now: NaiveDateTime,
    policy: &LifecyclePolicy,
) -> Result<ReportOutcome> {
    let jitter = rand::random_range(0.5..1.5);
    let (next, effect) = retry::after_failure(
        f.reason,
        row.source,
        row.attempt,
        row.max_attempts,
        f.retry_after,
        &policy.retry,
        jitter,
        now,
    );
    match next {
        Next::Pending {
            available_at,
            spend_attempt,
        } => {
            requeue_at(tx, row, f, available_at, spend_attempt).await?;
        }
        Next::Failed => {
            sqlx::query(
                "UPDATE we_cascade_task_allocations SET status = 'failed', reason = $2,
                    error_message = COALESCE($3, error_message), completed_at = $4, updated_at = $4
                  WHERE id = $1",
            )
            .bind(&row.id)
            .bind(f.reason.as_str())
            .bind(&f.error_message)
            .bind(to_db(now))
            .execute(&mut *tx)
            .await?;
            close_feeds(tx, &row.id).await?;
            mark_feeds(
                tx,
                &row.feed_ids,
                &row.id,
                node_id,
                "failed",
                f.error_message.as_deref(),
                now,
            )
            .await?;
        }
    }
    node_effect(tx, node_id, effect, now, policy).await?;
    let after = load(tx, &row.id).await?;
    let (operation, direction) = match f.reason {
        Reason::LeaseExpired | Reason::NodeOffline => ("lease_expired", "local"),
        _ => ("task_failed", "push"),
    };
    let extra = json!({ "allocation_id": row.id, "task_id": row.task_id, "reason": f.reason.as_str(), "status": after.status, "attempt": after.attempt });
    insert_sync_log(
        tx,
        node_id,
        operation,
        direction,
        2,
        0,
        f.error_message.as_deref(),
        &extra,
        now,
    )
    .await?;
    Ok(after.outcome())
}

pub(super) async fn requeue_at(
    tx: &mut SqliteConnection,
    row: &AllocRow,
    f: &Failure,
    available_at: NaiveDateTime,
    spend_attempt: bool,
) -> Result<()> {
    sqlx::query(
        "UPDATE we_cascade_task_allocations
            SET status = 'pending', node_id = NULL, assigned_node_id = NULL, lease_token = NULL,
                lease_expires_at = NULL, run_deadline = NULL, reason = $2,
                error_message = COALESCE($3, error_message),
                attempt = CASE WHEN $4 THEN attempt ELSE MAX(attempt - 1, 0) END,
                available_at = $5, updated_at = $5
          WHERE id = $1",
    )
    .bind(&row.id)
    .bind(f.reason.as_str())
    .bind(&f.error_message)
    .bind(spend_attempt)
    .bind(to_db(available_at))
    .execute(tx)
    .await?;
    Ok(())
}

async fn node_effect(
    tx: &mut SqliteConnection,
    node_id: &str,
    effect: NodeEffect,
    now: NaiveDateTime,
    policy: &LifecyclePolicy,
) -> Result<()> {
    match effect {
        NodeEffect::None => {}
        NodeEffect::SessionExpired => {
            sqlx::query("UPDATE we_cascade_nodes SET session_state = 'expired' WHERE id = $1")
                .bind(node_id)
                .execute(tx)
                .await?;
        }
        NodeEffect::Cooldown { retry_after } => {
            let level: i64 = sqlx::query_scalar(
                "UPDATE we_cascade_nodes SET cooldown_level = cooldown_level + 1 WHERE id = $1 RETURNING cooldown_level",
            )
            .bind(node_id)
            .fetch_optional(&mut *tx)
            .await?
            .unwrap_or(1);
            let until = now + retry::cooldown(level, retry_after, &policy.retry);
            sqlx::query("UPDATE we_cascade_nodes SET cooldown_until = $2 WHERE id = $1")
                .bind(node_id)
                .bind(to_db(until))
                .execute(tx)
                .await?;
        }
    }
    Ok(())
}

/// Per-feed bookkeeping after an allocation ends.
#[allow(clippy::too_many_arguments)]
async fn mark_feeds(
    tx: &mut SqliteConnection,
    feed_ids: &[String],
    allocation_id: &str,
    node_id: &str,
    status: &str,
    error: Option<&str>,
    now: NaiveDateTime,
) -> Result<()> {
    sqlx::query(
        "UPDATE we_feeds SET last_allocation_id = $2, last_task_status = $3, last_task_at = $4,
            last_node_id = $5, last_error = $6
          WHERE id IN (SELECT value FROM json_each($1))",
    )
    .bind(json!(feed_ids).to_string())
    .bind(allocation_id)
    .bind(status)
    .bind(to_db(now))
    .bind(node_id)
    .bind(error)
    .execute(tx)
    .await?;
    Ok(())
}

async fn complete(
    tx: &mut SqliteConnection,
    row: &AllocRow,
    node_id: &str,
    completion: Option<Completion>,
    now: NaiveDateTime,
    policy: &LifecyclePolicy,
) -> Result<ReportOutcome> {
    let (summary, given, result_count) = match &completion {
        Some(c) => (
            Some(json!({ "task_id": c.task_id, "results": c.raw_results, "article_count": c.article_count }).to_string()),
            c.article_count,
            c.results.len(),
        ),
        None => (None, 0, 0),
    };
    let after = sqlx::query(
        "UPDATE we_cascade_task_allocations SET status = 'completed', completed_at = $2, updated_at = $2,
            result_summary = COALESCE($3, result_summary), article_count = MAX(article_count, $4),
            lease_expires_at = NULL, run_deadline = NULL
          WHERE id = $1 RETURNING *",
    )
    .bind(&row.id)
    .bind(to_db(now))
    .bind(summary)
    .bind(given)
    .fetch_one(&mut *tx)
    .await?;
    let article_count = after.int("article_count")?;
    let results = completion.map(|c| c.results).unwrap_or_default();
    let effects = completion_effects(row, &results);
    let epoch = now.and_utc().timestamp();
    for feed in effects.feeds {
        // Also frees the feed for the next dispatch (invariant 5).
        sqlx::query(
            "UPDATE we_feeds SET last_allocation_id = $2, last_task_status = $3, last_task_at = $4,
                last_node_id = $5, last_error = $6,
                open_allocation_id = CASE WHEN open_allocation_id = $2 THEN NULL ELSE open_allocation_id END,
                sync_time = CASE WHEN $7 THEN $8 ELSE sync_time END,
                update_time = CASE WHEN $7 THEN $8 ELSE update_time END,
                http_etag = CASE WHEN $7 THEN COALESCE($9, http_etag) ELSE http_etag END,
                http_last_modified = CASE WHEN $7 THEN COALESCE($10, http_last_modified) ELSE http_last_modified END,
                backlog_offset = CASE WHEN $11 THEN $12 ELSE backlog_offset END,
                backlog_until = CASE WHEN $11 THEN $13 ELSE backlog_until END
              WHERE id = $1",
        )
        .bind(feed.feed_id)
        .bind(&row.id)
        .bind(if feed.ok { "completed" } else { "failed" })
        .bind(to_db(now))
        .bind(node_id)
        .bind(feed.error)
        .bind(feed.ok)
        .bind(epoch)
        .bind(feed.etag)
        .bind(feed.last_modified)
        .bind(feed.backlog.is_some())
        .bind(feed.backlog.flatten().map(|b| b.offset))
        .bind(feed.backlog.flatten().map(|b| b.until))
        .execute(&mut *tx)
        .await?;
    }
    // Liveness, last sync and (after a WeChat success) the cooldown level, in one statement.
    sqlx::query(
        "UPDATE we_cascade_nodes SET last_heartbeat_at = $2, status = 1, last_sync_at = $2,
            cooldown_level = CASE WHEN $3 THEN 0 ELSE cooldown_level END
          WHERE id = $1",
    )
    .bind(node_id)
    .bind(to_db(now))
    .bind(effects.reset_cooldown)
    .execute(&mut *tx)
    .await?;
    if let Some(retry_after) = effects.cooldown {
        node_effect(
            tx,
            node_id,
            NodeEffect::Cooldown { retry_after },
            now,
            policy,
        )
        .await?;
    }
    let extra = json!({ "allocation_id": row.id, "task_id": row.task_id, "article_count": article_count, "result_count": result_count });
    insert_sync_log(
        tx,
        node_id,
        "task_completion",
        "push",
        1,
        article_count,
        None,
        &extra,
        now,
    )
    .await?;
    Ok(AllocRow::from_row(&after)?.outcome())
}
