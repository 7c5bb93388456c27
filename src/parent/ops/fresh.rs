//! Freshness mode's dispatch (issue 15, `dispatch_mode: freshness`): each scheduler pass
//! dispatches the feeds that are due, the longest due first, as many as the fleet can take:
//!
//! - per source, RSS first (it spends no login's budget), at most what the online,
//!   non-cooling nodes that can read that source have free;
//! - for WeChat feeds, at the pace of the logins' daily budgets
//!   ([`Pacer`]: the usable logins' `budget_per_day` spread over the day, a burst of one
//!   call per login), and never while no node can read them;
//! - each under the first enabled task that lists it (the allocation's task decides its
//!   webhooks and `full_text`); a due feed no enabled task lists is put off for a
//!   `check_max_interval`;
//! - only feeds still due when inserted: one read meanwhile (a "check now", another parent)
//!   waits for its next turn.
//!
//! Nodes that never report logins (stock WeRSS children) are not paced: their own throttling
//! is all there is.

use super::alloc::{Batch, MAX_PRIORITY, dispatch_batch};
use super::placement::node_snapshot;
use crate::dispatch::freshness::{Pacer, order_key};
use crate::dispatch::{NodeSnapshot, Source};
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
    let all: Vec<(&NodeLoad, NodeSnapshot)> = loads
        .iter()
        .map(|l| (l, node_snapshot(l, now, c, mp_open, weread_open)))
        .collect();
    let ready: Vec<&(&NodeLoad, NodeSnapshot)> = all
        .iter()
        .filter(|(_, n)| n.online && !n.cooling && n.free > 0)
        .collect();
    let mut left: i64 = ready.iter().map(|(_, n)| n.free).sum();
    let mut out = DuePass::default();
    let mut tasks: Option<Vec<MessageTask>> = None;
    let mut picked: Vec<(usize, DueFeed)> = Vec::new();
    // RSS first: it spends no login's budget. Each source's share is what the nodes that can
    // read it have free, within what is left of the whole.
    for source in [Source::Rss, Source::Wechat] {
        let able: Vec<&(&NodeLoad, NodeSnapshot)> = ready
            .iter()
            .copied()
            .filter(|(_, n)| n.can_fetch(source))
            .collect();
        let room = able.iter().map(|(_, n)| n.free).sum::<i64>().min(left);
        let room = usize::try_from(room).unwrap_or(0);
        let (want, paced) = if source == Source::Wechat {
            let per_day = fleet_per_day(
                able.iter().map(|(l, _)| *l),
                &Budgets::from_config(c),
                mp_open,
                weread_open,
            );
            let burst = able.iter().map(|(l, _)| logins_of(l)).sum::<u64>().max(1);
            let allowed = lock(pacer).allow(now, per_day, burst, room);
            (allowed, true)
        } else {
            (room, false)
        };
        if want == 0 {
            continue;
        }
        let limit = i64::try_from(want).unwrap_or(PASS_LIMIT);
        // Room for some due feeds no task lists (put off below) besides those that fit.
        let due = state
            .store
            .due_feeds(
                now,
                source,
                limit.saturating_add(UNLISTED_SLACK).min(PASS_LIMIT),
            )
            .await?;
        let tasks = match &mut tasks {
            Some(t) => &*t,
            None => tasks.insert(state.store.list_tasks(Some(1)).await?),
        };
        let (mut listed, unlisted) = by_task(tasks, due);
        if !unlisted.is_empty() {
            let until = now + crate::parent::reaper::schedule_settings(c).max_interval;
            out.deferred += state.store.defer_checks(unlisted, until).await?;
        }
        listed.truncate(want);
        if paced {
            lock(pacer).refund(want - listed.len());
        }
        left -= i64::try_from(listed.len()).unwrap_or(0);
        picked.extend(listed);
    }
    if picked.is_empty() {
        return Ok(out);
    }
    let tasks = tasks.unwrap_or_default();
    let mut per_task: Vec<(MessageTask, Option<Vec<String>>)> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for (t, f) in picked {
        let Some(task) = tasks.get(t) else { continue };
        let slot = *index.entry(t).or_insert_with(|| {
            per_task.push((task.clone(), Some(Vec::new())));
            per_task.len() - 1
        });
        if let Some(ids) = &mut per_task[slot].1 {
            ids.push(f.id);
        }
    }
    // Placed on the nodes as this pass read them: no second read.
    let batch = Batch {
        due_at: Some(now),
        nodes: Some(all.into_iter().map(|(_, n)| n).collect()),
        ..Batch::new(format!("fresh_{}", now.format("%Y%m%d%H%M%S%f")))
    };
    let done = dispatch_batch(state, per_task, batch)
        .await?
        .unwrap_or_default();
    // Feeds placed, less those read (or opened) by someone else since the pass chose them.
    out.dispatched = done["tasks"].as_array().map_or(0, |list| {
        list.iter()
            .map(|t| {
                let n = |k: &str| usize::try_from(t[k].as_i64().unwrap_or(0)).unwrap_or(0);
                n("feed_count").saturating_sub(n("skipped_open"))
            })
            .sum()
    });
    Ok(out)
}

/// The pacer, whatever a panic elsewhere left in its lock.
fn lock(pacer: &Mutex<Pacer>) -> std::sync::MutexGuard<'_, Pacer> {
    pacer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A node's usable logins (1 for a node that does not report them).
fn logins_of(l: &NodeLoad) -> u64 {
    let n = l.usable_mp_logins.unwrap_or(1).max(0) + l.usable_weread_logins.unwrap_or(0).max(0);
    u64::try_from(n).unwrap_or(1)
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
        dispatch_batch(state, vec![(task, Some(only))], Batch::new(run_id)).await?;
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
