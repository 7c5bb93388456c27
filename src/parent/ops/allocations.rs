//! An operator's actions on allocations (issue 16): the filters of the list, and retry and
//! cancel by ids or by filter. Each action is logged with its counts only.

use crate::dispatch::retry::Reason;
use crate::parent::AppState;
use crate::parent::error::{ApiError, ApiResult};
use crate::protocol::wire::{AllocationAction, AllocationSelector};
use crate::store::{
    AllocationFilter, BULK_MAX, BulkOutcome, CANCELLABLE_STATUSES, RETRYABLE_STATUSES, Selection,
};

/// Checks a `reason` filter named `field`: a wire name of [`Reason`] (`cancelled` among
/// them).
///
/// # Errors
/// 400 naming `field` for any other value.
pub fn check_reason(field: &str, reason: Option<&str>) -> ApiResult<()> {
    match reason {
        Some(r) if !Reason::WIRE_NAMES.contains(&r) => Err(ApiError::invalid_field(field)),
        _ => Ok(()),
    }
}

/// `POST {P}/allocations/retry`: reopens failed (and adopted `timeout`) allocations, then
/// wakes waiting claims.
///
/// # Errors
/// 400 for a bad body; database failures.
pub async fn retry(state: &AppState, action: AllocationAction) -> ApiResult<BulkOutcome> {
    let selection = selection(action, RETRYABLE_STATUSES, "failed")?;
    let out = state
        .store
        .retry_allocations(selection, state.clock.now())
        .await?;
    Ok(done(state, out, "retried"))
}

/// `POST {P}/allocations/cancel`: ends open allocations as failed, `cancelled by <admin>`,
/// then wakes waiting claims (their nodes' capacity is free again).
///
/// # Errors
/// 400 for a bad body; database failures.
pub async fn cancel(
    state: &AppState,
    admin: &str,
    action: AllocationAction,
) -> ApiResult<BulkOutcome> {
    let selection = selection(action, CANCELLABLE_STATUSES, "pending")?;
    let message = format!("cancelled by {admin}");
    let out = state
        .store
        .cancel_allocations(selection, message, state.clock.now())
        .await?;
    Ok(done(state, out, "cancelled"))
}

/// Wakes waiting claims when rows changed (retried work to claim, or a cancelled holder's
/// capacity free again) and logs the counts.
fn done(state: &AppState, out: BulkOutcome, what: &str) -> BulkOutcome {
    if out.changed > 0 {
        state.notifier.wake_all();
    }
    tracing::info!(
        matched = out.matched,
        changed = out.changed,
        skipped = out.skipped,
        more = out.more,
        "allocations {what}"
    );
    out
}

/// The store's selection from a body naming exactly one of `ids` (1–1000) and `filter`
/// (status one of `statuses`, `default` when absent; a known reason).
fn selection(action: AllocationAction, statuses: &[&str], default: &str) -> ApiResult<Selection> {
    match (action.ids, action.filter) {
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > BULK_MAX {
                return Err(ApiError::bad_field(
                    "ids",
                    format!("ids must list 1 to {BULK_MAX} allocations"),
                ));
            }
            Ok(Selection::Ids(ids))
        }
        (None, Some(mut filter)) => {
            let after = filter.after.take().filter(|a| !a.is_empty());
            Ok(Selection::Filter(
                store_filter(filter, statuses, default)?,
                after,
            ))
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request("give either ids or filter, not both")),
        (None, None) => Err(ApiError::bad_request("ids or filter is required")),
    }
}

fn store_filter(
    f: AllocationSelector,
    statuses: &[&str],
    default: &str,
) -> ApiResult<AllocationFilter> {
    let status = f.status.unwrap_or_else(|| default.to_string());
    if !statuses.contains(&status.as_str()) {
        return Err(ApiError::bad_field(
            "filter.status",
            format!("filter.status must be one of {}", statuses.join(", ")),
        ));
    }
    check_reason("filter.reason", f.reason.as_deref())?;
    Ok(AllocationFilter {
        task_id: f.task_id,
        node_id: f.node_id,
        status: Some(status),
        schedule_run_id: f.schedule_run_id,
        feed_id: f.feed_id,
        reason: f.reason,
    })
}
