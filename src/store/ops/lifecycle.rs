//! The allocation state machine (PROTOCOL §4.1–§4.3): reports from the holder, failures and
//! retries. A report starts by marking its node alive, which locks the node's row on
//! PostgreSQL (then the allocation's, then feeds'). A completion or failure is one
//! transaction with its sync log; a status report is two statements that each stand alone.

use super::attempts::{Ended, Ending};
use super::{SyncLogRow, insert_sync_log};
use crate::dispatch::retry::{self, Next, NodeEffect, Reason};
use crate::store::db::{Arg, Op, Row, Tx, args};
use crate::store::engine::completion_effects;
use crate::store::rows::{AllocRow, RowExt};
use crate::store::{
    AllocStatus, Completion, Error, Failure, LifecyclePolicy, Report, ReportOutcome, Result, Store,
};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;

impl Store {
    /// Applies a holder's report (status, completion, failure) by the state machine.
    pub async fn report(
        &self,
        node_id: &str,
        allocation_id: &str,
        token: Option<String>,
        report: Report,
        now: NaiveDateTime,
        policy: LifecyclePolicy,
    ) -> Result<ReportOutcome> {
        let (node_id, allocation_id) = (node_id.to_string(), allocation_id.to_string());
        // A status report is two statements that each stand alone (the node is alive; the
        // allocation, if still held, is executing), so PostgreSQL may commit each by itself.
        let alone = matches!(report, Report::Executing);
        let op: Op<ReportOutcome> = Box::new(move |tx| {
            Box::pin(async move {
                let token = token.as_deref();
                report_on(tx, &node_id, &allocation_id, token, report, now, &policy).await
            })
        });
        if alone {
            self.db.write_each(op).await
        } else {
            self.db.write(op).await
        }
    }
}

async fn report_on(
    tx: &mut Tx,
    node_id: &str,
    allocation_id: &str,
    token: Option<&str>,
    report: Report,
    now: NaiveDateTime,
    policy: &LifecyclePolicy,
) -> Result<ReportOutcome> {
    // Marking the node alive locks its row first (lock order: node, allocation, feeds).
    // Feeds checked, for the node's measured rate: a bare `task-status completed` names
    // none, and counts as one.
    let checked = match &report {
        Report::Completed(Some(c)) => Some(i64::try_from(c.results.len()).unwrap_or(0).max(1)),
        Report::Completed(None) => Some(1),
        _ => None,
    };
    let level = super::nodes::touch_report(tx, node_id, now, checked).await?;
    let holder = Holder {
        allocation_id,
        node_id,
        token,
    };
    match report {
        Report::Executing => {
            let set = "SET status = 'executing', started_at = COALESCE(started_at, $5),
                lease_expires_at = {least}($6, COALESCE(run_deadline, $6)), updated_at = $5";
            let extra = args![now, renew(now, policy)];
            // Without the node's lock (see `Store::report`) the allocation may be held again
            // between the update and the read that explains it: then the update is tried once
            // more.
            for _ in 0..2 {
                if let Some(after) = holder.update(tx, set, None, extra).await? {
                    return Ok(AllocRow::from_row(&after)?.outcome());
                }
                if let Some(answer) = holder.refused(tx, &report).await? {
                    return answer;
                }
            }
            Err(Error::LeaseLost)
        }
        Report::Completed(c) => complete(tx, &holder, level, c, now, policy).await,
        Report::Failed(ref f) => {
            let row = load(tx, allocation_id).await?;
            if let Some(done) = row.check_report(&report, node_id, token)? {
                return Ok(done);
            }
            let after = apply_failure(tx, &row, node_id, f, now, policy).await?;
            let outcome = if after.status == AllocStatus::Pending {
                "retry"
            } else {
                "failed"
            };
            let ended = Ended {
                outcome,
                reason: f.reason.as_str(),
                error: f.error_message.as_deref(),
            };
            let attempt = Ending::Read(&row.id, row.attempt, Some(node_id));
            super::attempts::record(tx, attempt, &ended, now).await?;
            Ok(after)
        }
    }
}

/// Who reports on which allocation, with which lease token.
struct Holder<'a> {
    allocation_id: &'a str,
    node_id: &'a str,
    token: Option<&'a str>,
}

impl Holder<'_> {
    /// Applies `set` (its own arguments from `$5`) to the allocation if the holder still holds
    /// it (and it belongs to `task`, when named): the report's check and change in one
    /// statement. `None` when it does not apply; [`Holder::refused`] says why.
    async fn update(
        &self,
        tx: &mut Tx,
        set: &str,
        task: Option<&str>,
        extra: &[Arg],
    ) -> Result<Option<Row>> {
        // `CAST(status AS TEXT)` keeps SQLite on the primary key (the held-rows index would
        // otherwise be walked).
        let sql = format!(
            "UPDATE we_cascade_task_allocations {set}
              WHERE id = $1 AND node_id = $2 AND CAST(status AS TEXT) IN ('claimed', 'executing')
                AND ($3 IS NULL OR lease_token IS NULL OR lease_token = $3)
                AND ($4 IS NULL OR task_id = $4)
              RETURNING *"
        );
        let mut bound = args![self.allocation_id, self.node_id, self.token, task].to_vec();
        bound.extend_from_slice(extra);
        tx.opt(&sql, &bound).await
    }

    /// Why a report did not apply: the idempotent answer to a repeated terminal report, or
    /// the error of the state machine's checks; `None` when the row passes them now (it was
    /// held again since the update).
    async fn refused(&self, tx: &mut Tx, report: &Report) -> Result<Option<Result<ReportOutcome>>> {
        let row = load(tx, self.allocation_id).await?;
        Ok(match row.check_report(report, self.node_id, self.token) {
            Ok(Some(done)) => Some(Ok(done)),
            Err(e) => Some(Err(e)),
            Ok(None) => None,
        })
    }
}

/// The lease end of a renewal at `now`.
fn renew(now: NaiveDateTime, policy: &LifecyclePolicy) -> NaiveDateTime {
    now + TimeDelta::seconds(policy.lease_seconds)
}

/// Reads (and on PostgreSQL locks) an allocation row.
pub(crate) async fn load(tx: &mut Tx, id: &str) -> Result<AllocRow> {
    let r = tx
        .opt(
            "SELECT * FROM we_cascade_task_allocations WHERE id = $1 {for_update}",
            args![id],
        )
        .await?
        .ok_or(Error::NotFound("allocation"))?;
    AllocRow::from_row(&r)
}

/// Terminal `failed` with reason `not_found` (task or feeds gone), its attempt recorded.
pub(crate) async fn fail_not_found(tx: &mut Tx, id: &str, now: NaiveDateTime) -> Result<()> {
    let ended = Ended {
        outcome: "failed",
        reason: Reason::NotFound.as_str(),
        error: Some("任务不存在"),
    };
    super::attempts::record(tx, Ending::Ids(&[id.to_string()]), &ended, now).await?;
    tx.exec(
        "UPDATE we_cascade_task_allocations SET status = 'failed', reason = 'not_found',
            error_message = '任务不存在', completed_at = $2, updated_at = $2
          WHERE id = $1",
        args![id, now],
    )
    .await?;
    close_feeds(tx, id).await
}

/// Frees the feeds of an allocation that reached a terminal state (invariant 5).
pub(crate) async fn close_feeds(tx: &mut Tx, id: &str) -> Result<()> {
    tx.exec(
        "UPDATE we_feeds SET open_allocation_id = NULL WHERE open_allocation_id = $1",
        args![id],
    )
    .await?;
    Ok(())
}

/// Applies a failure by the table of §4.2, with its node effect and sync log.
pub(crate) async fn apply_failure(
    tx: &mut Tx,
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
            tx.exec(
                "UPDATE we_cascade_task_allocations SET status = 'failed', reason = $2,
                    error_message = COALESCE($3, error_message), completed_at = $4, updated_at = $4
                  WHERE id = $1",
                args![&row.id, f.reason.as_str(), &f.error_message, now],
            )
            .await?;
            close_feeds(tx, &row.id).await?;
            mark_feeds(tx, row, node_id, "failed", f.error_message.as_deref(), now).await?;
        }
    }
    node_effect(tx, node_id, effect, now, policy).await?;
    let after = load(tx, &row.id).await?;
    let (operation, direction) = match f.reason {
        Reason::LeaseExpired | Reason::NodeOffline => ("lease_expired", "local"),
        _ => ("task_failed", "push"),
    };
    let extra = json!({ "allocation_id": row.id, "task_id": row.task_id, "reason": f.reason.as_str(), "status": after.status, "attempt": after.attempt });
    let log = SyncLogRow {
        node_id,
        operation,
        direction,
        status: 2,
        data_count: 0,
        error_message: f.error_message.as_deref(),
        extra: &extra,
    };
    insert_sync_log(tx, &log, now).await?;
    Ok(after.outcome())
}

/// Returns an allocation to `pending` from `available_at`, giving its attempt back unless
/// `spend_attempt`.
pub(crate) async fn requeue_at(
    tx: &mut Tx,
    row: &AllocRow,
    f: &Failure,
    available_at: NaiveDateTime,
    spend_attempt: bool,
) -> Result<()> {
    tx.exec(
        "UPDATE we_cascade_task_allocations
            SET status = 'pending', node_id = NULL, assigned_node_id = NULL, lease_token = NULL,
                lease_expires_at = NULL, run_deadline = NULL, reason = $2,
                error_message = COALESCE($3, error_message),
                attempt = CASE WHEN $4 THEN attempt WHEN attempt > 0 THEN attempt - 1 ELSE 0 END,
                available_at = $5, updated_at = $5
          WHERE id = $1",
        args![
            &row.id,
            f.reason.as_str(),
            &f.error_message,
            spend_attempt,
            available_at
        ],
    )
    .await?;
    Ok(())
}

/// What a failure does to the node: its session expired, or a (longer) cooldown.
async fn node_effect(
    tx: &mut Tx,
    node_id: &str,
    effect: NodeEffect,
    now: NaiveDateTime,
    policy: &LifecyclePolicy,
) -> Result<()> {
    match effect {
        NodeEffect::None => {}
        NodeEffect::SessionExpired => {
            tx.exec(
                "UPDATE we_cascade_nodes SET session_state = 'expired' WHERE id = $1",
                args![node_id],
            )
            .await?;
        }
        NodeEffect::Cooldown { retry_after } => {
            let level = tx
                .int(
                    "UPDATE we_cascade_nodes SET cooldown_level = cooldown_level + 1 WHERE id = $1
                     RETURNING cooldown_level",
                    args![node_id],
                )
                .await?
                .unwrap_or(1);
            let until = now + retry::cooldown(level, retry_after, &policy.retry);
            tx.exec(
                "UPDATE we_cascade_nodes SET cooldown_until = $2 WHERE id = $1",
                args![node_id, until],
            )
            .await?;
        }
    }
    Ok(())
}

/// Per-feed bookkeeping after an allocation failed for good (one more error in a row).
async fn mark_feeds(
    tx: &mut Tx,
    row: &AllocRow,
    node_id: &str,
    status: &str,
    error: Option<&str>,
    now: NaiveDateTime,
) -> Result<()> {
    tx.exec(
        "UPDATE we_feeds SET last_allocation_id = $2, last_task_status = $3, last_task_at = $4,
            last_node_id = $5, last_error = $6, next_check_at = NULL, check_order = NULL,
            check_not_before = NULL,
            check_errors = COALESCE(check_errors, 0) + 1
          WHERE id {in:$1}",
        args![&row.feed_ids, &row.id, status, now, node_id, error],
    )
    .await?;
    Ok(())
}

/// Completes an allocation: its summary, each feed's end (which also frees it), the node's
/// cooldown (`cooldown_level` is the node's, read as the report began), and the sync log.
async fn complete(
    tx: &mut Tx,
    holder: &Holder<'_>,
    cooldown_level: Option<i64>,
    completion: Option<Completion>,
    now: NaiveDateTime,
    policy: &LifecyclePolicy,
) -> Result<ReportOutcome> {
    let node_id = holder.node_id;
    let (summary, given, result_count) = match &completion {
        Some(c) => (
            Some(json!({ "task_id": c.task_id, "results": c.raw_results, "article_count": c.article_count }).to_string()),
            c.article_count,
            c.results.len(),
        ),
        None => (None, 0, 0),
    };
    // A NULL count (an adopted row) takes the given one.
    let set = "SET status = 'completed', completed_at = $5, updated_at = $5,
        result_summary = COALESCE($6, result_summary),
        article_count = CASE WHEN article_count IS NULL OR article_count < $7
                             THEN $7 ELSE article_count END,
        lease_expires_at = NULL, run_deadline = NULL";
    let task = completion.as_ref().map(|c| c.task_id.clone());
    let extra = args![now, summary, given];
    let Some(after) = holder.update(tx, set, task.as_deref(), extra).await? else {
        // Under the node's lock nothing re-claims the row between the update and this read.
        let report = Report::Completed(completion);
        return holder
            .refused(tx, &report)
            .await?
            .unwrap_or_else(|| Err(Error::LeaseLost));
    };
    let row = AllocRow::from_row(&after)?;
    let row = &row;
    let article_count = after.int("article_count")?;
    let results = completion.map(|c| c.results).unwrap_or_default();
    let effects = completion_effects(row, &results);
    let epoch = now.and_utc().timestamp();
    for feed in effects.feeds {
        let backlog = feed.backlog.flatten();
        // Also frees the feed for the next dispatch (invariant 5).
        tx.exec(
            "UPDATE we_feeds SET last_allocation_id = $2, last_task_status = $3, last_task_at = $4,
                last_node_id = $5, last_error = $6,
                open_allocation_id = CASE WHEN open_allocation_id = $2 THEN NULL ELSE open_allocation_id END,
                next_check_at = NULL, check_order = NULL, check_not_before = $14,
                check_errors = CASE WHEN $7 THEN 0 ELSE COALESCE(check_errors, 0) + 1 END,
                sync_time = CASE WHEN $7 THEN $8 ELSE sync_time END,
                update_time = CASE WHEN $7 THEN $8 ELSE update_time END,
                http_etag = CASE WHEN $7 THEN COALESCE($9, http_etag) ELSE http_etag END,
                http_last_modified = CASE WHEN $7 THEN COALESCE($10, http_last_modified) ELSE http_last_modified END,
                backlog_offset = CASE WHEN $11 THEN $12 ELSE backlog_offset END,
                backlog_until = CASE WHEN $11 THEN $13 ELSE backlog_until END
              WHERE id = $1",
            args![
                feed.feed_id,
                &row.id,
                if feed.ok { "completed" } else { "failed" },
                now,
                node_id,
                feed.error,
                feed.ok,
                epoch,
                feed.etag,
                feed.last_modified,
                feed.backlog.is_some(),
                backlog.map(|b| b.offset),
                backlog.map(|b| b.until),
                // Capped here too: the schedule caps the wait again (`retry_after_cap`).
                feed.retry_after
                    .map(|s| now + chrono::TimeDelta::seconds(s.clamp(0, 30 * 86_400))),
            ],
        )
        .await?;
    }
    // Liveness and the last sync were written by the report's first statement; a WeChat
    // success resets the cooldown level, when there is one.
    if effects.reset_cooldown && cooldown_level != Some(0) {
        tx.exec(
            "UPDATE we_cascade_nodes SET cooldown_level = 0 WHERE id = $1",
            args![node_id],
        )
        .await?;
    }
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
    let log = SyncLogRow {
        node_id,
        operation: "task_completion",
        direction: "push",
        status: 1,
        data_count: article_count,
        error_message: None,
        extra: &extra,
    };
    insert_sync_log(tx, &log, now).await?;
    Ok(row.outcome())
}
