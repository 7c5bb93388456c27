//! Claims with long-poll (PROTOCOL §8.2): what a node gets, or why nothing and when to ask
//! again.

use super::alloc::{claim_policy, secs};
use crate::parent::AppState;
use crate::parent::error::{ApiError, ApiResult};
use crate::protocol::time::to_wire;
use crate::protocol::wire::ClaimQuery;
use crate::store::ClaimBlock;
use serde_json::Value;
use std::time::Duration;

/// What a claim answers: whether it got work, the message suffix when it did not, `data`,
/// and for a node that may not claim now, when to ask again.
#[derive(Debug)]
pub struct ClaimAnswer {
    /// Some package was handed out.
    pub got: bool,
    /// Appended to `暂无待处理任务` when nothing was handed out.
    pub suffix: String,
    /// A package or `null` (limit 1), or an array of packages.
    pub data: Value,
    /// Seconds until the node should claim again, set when it is blocked.
    pub retry_after: Option<u64>,
    /// A command waits for the node (it heartbeats to fetch it).
    pub commands_pending: bool,
}

/// `claim-task` / `pending-tasks`: an atomic claim, held open up to `wait` seconds until work
/// for this node appears. A node that may not claim now (at capacity, cooling down, WeChat
/// session parked) is held the same way until its block ends, and told when to ask again.
///
/// # Errors
/// 403 for another node's id, 400 for a bad `limit`, 401 for a node deactivated meanwhile.
pub async fn claim(state: &AppState, node_id: &str, q: ClaimQuery) -> ApiResult<ClaimAnswer> {
    if q.node_id.as_deref().is_some_and(|id| id != node_id) {
        return Err(ApiError::forbidden("cannot claim for another node"));
    }
    let c = &state.config.cascade;
    let limit = q.limit.unwrap_or(1);
    if limit < 1 || limit > secs(c.max_claim_batch) {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit must be between 1 and {}", c.max_claim_batch),
        ));
    }
    let wait = q
        .wait
        .filter(|w| w.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, c.max_wait as f64);
    let mut policy = claim_policy(state);
    policy.only_kinds = q.kinds.as_deref().map(|k| {
        k.split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
    let node_wait = state.notifier.node_wait(node_id);
    let mut commands_pending = false;
    let outcome = loop {
        let notified = state.notifier.notified();
        let node_notified = node_wait.notify().notified();
        tokio::pin!(notified, node_notified);
        notified.as_mut().enable();
        node_notified.as_mut().enable();
        let started = std::time::Instant::now();
        let now = state.clock.now();
        let outcome = state
            .store
            .claim(node_id, limit, now, policy.clone())
            .await?;
        state.metrics.claim(started.elapsed(), &outcome);
        let instant = tokio::time::Instant::now();
        if !outcome.packages.is_empty() || instant >= deadline {
            break outcome;
        }
        // A login asked here, or a search recorded by any parent of the database.
        if state.notifier.take_command(node_id)
            || state.store.node_command_pending(node_id, now).await?
        {
            commands_pending = true;
            break outcome;
        }
        // A cooling node is looked at again when its cooldown ends; other blocks end with a
        // report, release or heartbeat of the node, which wake it.
        let recheck = match &outcome.blocked {
            Some(ClaimBlock::Cooling(until)) => {
                let left = (*until - now).to_std().unwrap_or_default();
                deadline.min(instant + left)
            }
            _ => deadline,
        };
        tokio::select! {
            () = &mut notified => {}
            () = &mut node_notified => {}
            // The wait is over and nothing said the block ended: answer without another claim.
            () = tokio::time::sleep_until(recheck) => if outcome.blocked.is_some() && recheck >= deadline {
                break outcome;
            },
            () = state.shutdown.cancelled() => break outcome,
        }
    };
    drop(node_wait);
    let max_wait = c.max_wait.max(1);
    let (suffix, retry_after) = match &outcome.blocked {
        None => (String::new(), None),
        Some(ClaimBlock::AtCapacity { held, capacity }) => (
            format!(": node at capacity ({held}/{capacity} feeds)"),
            Some(max_wait),
        ),
        Some(ClaimBlock::Cooling(until)) => {
            let left = (*until - state.clock.now()).num_milliseconds().max(0);
            let left = u64::try_from(left).unwrap_or(0).div_ceil(1000).max(1);
            (
                format!(": cooling down until {}", to_wire(*until)),
                Some(left),
            )
        }
        Some(ClaimBlock::SessionExpired) => {
            (": WeChat session expired".to_string(), Some(max_wait))
        }
        Some(ClaimBlock::NoUsableKind) => (
            ": no fetcher of this node can take work now".to_string(),
            Some(max_wait),
        ),
    };
    let mut outcome = outcome;
    super::sources::annotate(state, &mut outcome.packages).await?;
    let got = !outcome.packages.is_empty();
    if got {
        tracing::info!(node.id = %node_id, count = outcome.packages.len(), "claimed");
    }
    let data = if limit >= 2 {
        serde_json::to_value(&outcome.packages)
    } else {
        serde_json::to_value(outcome.packages.into_iter().next())
    }
    .map_err(|e| ApiError::internal(&e))?;
    Ok(ClaimAnswer {
        got,
        suffix,
        data,
        retry_after: if got { None } else { retry_after },
        commands_pending,
    })
}
