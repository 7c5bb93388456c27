//! Freshness mode's dispatch (issue 15, `dispatch_mode: freshness`): each scheduler pass
//! dispatches the feeds that are due, the longest due first, as many as the fleet can take:
//!
//! - at most the free capacity of the nodes that are online and not cooling;
//! - for WeChat feeds, at the pace of the logins' daily budgets
//!   ([`Pacer`]: the usable logins' `budget_per_day` spread over the day, a burst of one
//!   call per login), and never while no node can read them;
//! - each under the first enabled task that lists it (the allocation's task decides its
//!   webhooks and `full_text`); a due feed no enabled task lists is put off for a
//!   `check_max_interval`.
//!
//! Nodes that never report logins (stock WeRSS children) are not paced: their own throttling
//! is all there is.

use super::alloc::{MAX_PRIORITY, dispatch_batch, node_snapshot};
use crate::dispatch::Source;
use crate::dispatch::freshness::{Pacer, order_key};
use crate::logins::budget::{Budgets, Caps};
use crate::parent::AppState;
use crate::parent::error::{ApiError, ApiResult};
use crate::store::{DueFeed, MessageTask, NodeLoad};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

/// Due feeds read per pass at most.
const PASS_LIMIT: i64 = 2_000;
/// Due feeds read per pass beyond the free capacity.
const UNLISTED_SLACK: i64 = 100;

/// What one freshness pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DuePass {
    /// Feeds dispatched.
    pub dispatched: usize,
    /// Due feeds no enabled task lists, put off.
    pub deferred: u64,
}

/// One freshness pass at the state's clock (see the module docs).
///
/// # Errors
/// Database failures.
pub async fn dispatch_due(state: &AppState, pacer: &Mutex<Pacer>) -> ApiResult<DuePass> {
    let now = state.clock.now();
    let c = &state.config.cascade;
    let loads = state.store.dispatch_snapshot().await?;
    let (mp_open, weread_open) = super::sources::open_kinds(state).await?;
    let ready: Vec<(&NodeLoad, crate::dispatch::NodeSnapshot)> = loads
        .iter()
        .map(|l| (l, node_snapshot(l, now, c, mp_open, weread_open)))
        .filter(|(_, n)| n.online && !n.cooling)
        .collect();
    let free: i64 = ready.iter().map(|(_, n)| n.free.max(0)).sum();
    if free <= 0 {
        return Ok(DuePass::default());
    }
    // Room for some due feeds no task lists (put off below) besides those that fit.
    let due = state
        .store
        .due_feeds(now, free.saturating_add(UNLISTED_SLACK).min(PASS_LIMIT))
        .await?;
    if due.is_empty() {
        return Ok(DuePass::default());
    }
    let tasks = state.store.list_tasks(Some(1)).await?;
    let (mut listed, unlisted) = by_task(&tasks, due);
    listed.truncate(usize::try_from(free).unwrap_or(usize::MAX));
    let mut out = DuePass::default();
    if !unlisted.is_empty() {
        let until = now + crate::parent::reaper::schedule_settings(c).max_interval;
        out.deferred = state.store.defer_checks(unlisted, until).await?;
    }
    // WeChat feeds at the budgets' pace, in due order across tasks.
    let wechat_ready: Vec<&(&NodeLoad, crate::dispatch::NodeSnapshot)> = ready
        .iter()
        .filter(|(_, n)| !n.session_parked && n.fetchers.contains(&Source::Wechat))
        .collect();
    let per_day = fleet_per_day(
        wechat_ready.iter().map(|(l, _)| *l),
        &Budgets::from_config(c),
        mp_open,
        weread_open,
    );
    let burst = wechat_ready
        .iter()
        .map(|(l, _)| {
            u64::try_from(
                l.usable_mp_logins.unwrap_or(1).max(0) + l.usable_weread_logins.unwrap_or(0).max(0),
            )
            .unwrap_or(1)
        })
        .sum::<u64>()
        .max(1);
    let wechat_due = listed
        .iter()
        .filter(|(_, f)| f.source == Source::Wechat)
        .count();
    let allowed = pacer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .allow(now, per_day, burst, wechat_due);
    let mut wechat_taken = 0;
    listed.retain(|(_, f)| {
        if f.source != Source::Wechat {
            return true;
        }
        wechat_taken += 1;
        wechat_taken <= allowed
    });
    if listed.is_empty() {
        return Ok(out);
    }
    let mut per_task: Vec<(MessageTask, Option<Vec<String>>)> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for (t, f) in listed {
        let slot = *index.entry(t).or_insert_with(|| {
            per_task.push((tasks[t].clone(), Some(Vec::new())));
            per_task.len() - 1
        });
        if let Some(ids) = &mut per_task[slot].1 {
            ids.push(f.id);
        }
    }
    out.dispatched = per_task
        .iter()
        .map(|(_, ids)| ids.as_ref().map_or(0, Vec::len))
        .sum();
    let run_id = format!("fresh_{}", now.format("%Y%m%d%H%M%S%f"));
    dispatch_batch(state, per_task, run_id, None).await?;
    Ok(out)
}

/// "Check now" (`POST {P}/feeds/{id}/check`), in either mode: the feed's pending allocation
/// goes to the head of the claim order, or one is dispatched at the top priority under the
/// first enabled task that lists the feed.
///
/// # Errors
/// 404 unknown feed, 409 a disabled feed or one no enabled task lists, database failures.
pub async fn check_now(state: &AppState, feed_id: &str) -> ApiResult<Value> {
    let feed = state.store.get_feed(feed_id).await?;
    if feed.status != 1 {
        return Err(ApiError::conflict("feed is disabled"));
    }
    let now = state.clock.now();
    let step = crate::parent::reaper::aging_step(&state.config.cascade);
    let top = order_key(now, MAX_PRIORITY, step);
    let mut created = false;
    if state.store.hurry_open(&feed.id, top).await?.is_none() {
        let tasks = state.store.list_tasks(Some(1)).await?;
        let due = DueFeed {
            id: feed.id.clone(),
            source: Source::parse(&feed.source),
        };
        let (listed, _) = by_task(&tasks, vec![due]);
        let Some((t, _)) = listed.first() else {
            return Err(ApiError::conflict("no enabled task lists this feed"));
        };
        let mut task = tasks[*t].clone();
        task.fields.priority = MAX_PRIORITY;
        let run_id = format!("now_{}", now.format("%Y%m%d%H%M%S%f"));
        let only = vec![feed.id.clone()];
        dispatch_batch(state, vec![(task, Some(only))], run_id, None).await?;
        created = true;
    }
    // Read back: the allocation this call made, or one opened meanwhile.
    let (allocation_id, status) = state
        .store
        .hurry_open(&feed.id, top)
        .await?
        .ok_or_else(|| ApiError::conflict("the feed's check ended meanwhile; ask again"))?;
    state.notifier.wake_all();
    tracing::info!(feed.id = %feed.id, allocation.id = %allocation_id, "feed checked now");
    Ok(
        json!({"feed_id": feed.id, "allocation_id": allocation_id, "status": status, "created": created}),
    )
}

/// Splits due feeds into those an enabled task lists (with the first such task's index, in
/// due order) and the rest.
fn by_task(tasks: &[MessageTask], due: Vec<DueFeed>) -> (Vec<(usize, DueFeed)>, Vec<String>) {
    let every = tasks.iter().position(|t| t.fields.all_feeds);
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if !t.fields.all_feeds {
            for id in t.fields.feed_ids() {
                owner.entry(id).or_insert(i);
            }
        }
    }
    let (mut listed, mut unlisted) = (Vec::new(), Vec::new());
    for f in due {
        match owner.get(&f.id).copied().or(every) {
            Some(t) => listed.push((t, f)),
            None => unlisted.push(f.id),
        }
    }
    (listed, unlisted)
}

/// The calls a day the usable logins of `nodes` may make, from the parent's
/// `budget_per_day`; `None` (no pacing) when a node does not report its logins or a usable
/// kind has no daily cap.
fn fleet_per_day<'a>(
    nodes: impl Iterator<Item = &'a NodeLoad>,
    budgets: &Budgets,
    mp_open: bool,
    weread_open: bool,
) -> Option<u64> {
    let mut total = 0_u64;
    for load in nodes {
        let kinds = [
            (load.usable_mp_logins?, mp_open, budgets.mp),
            (load.usable_weread_logins?, weread_open, budgets.weread),
        ];
        for (count, open, Caps { per_day, .. }) in kinds {
            let count = u64::try_from(count).unwrap_or(0);
            if !open || count == 0 {
                continue;
            }
            if per_day == 0 {
                return None;
            }
            total = total.saturating_add(count.saturating_mul(per_day));
        }
    }
    Some(total)
}
