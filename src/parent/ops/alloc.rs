//! Allocation operations shared by HTTP handlers and loops: dispatch (admin endpoint and the
//! scheduler), reports, uploads and releases; claims live in `ops::claim` (re-exported).

pub use super::claim::{ClaimAnswer, claim};
use super::placement::node_snapshot;
use crate::dispatch::retry::{Reason, RetryPolicy};
use crate::dispatch::{self, FeedRef, NodeSnapshot};
use crate::parent::AppState;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::notifier::{RunCreated, RunNotice, notify_children};
use crate::protocol::wire::{ReportCompletion, TaskStatus};
use crate::store::{
    AllocStatus, ClaimPolicy, Completion, CreatedAllocation, DispatchBatch, Failure, FeedResult,
    Firing, LifecyclePolicy, MessageTask, NewAllocation, Report, ReportOutcome,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

pub(super) fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Lease, retry and cooldown settings from the configuration.
pub fn lifecycle_policy(state: &AppState) -> LifecyclePolicy {
    let c = &state.config.cascade;
    LifecyclePolicy {
        lease_seconds: secs(c.lease_seconds),
        retry: RetryPolicy {
            retry_base: secs(c.retry_base),
            retry_max: secs(c.retry_max),
            cooldown_base: secs(c.cooldown_base),
            cooldown_max: secs(c.cooldown_max),
        },
    }
}

pub(super) fn claim_policy(state: &AppState) -> ClaimPolicy {
    let c = &state.config.cascade;
    ClaimPolicy {
        lease_seconds: secs(c.lease_seconds),
        max_run_seconds: secs(c.max_run_seconds),
        steal_after: secs(c.steal_after),
        offline_after: secs(c.offline_after),
        default_capacity: c.default_max_capacity,
        only_kinds: None,
    }
}

/// `POST /dispatch-task`: one task (must be enabled) or every enabled task.
///
/// # Errors
/// 404 unknown task, 409 disabled task, database failures.
pub async fn dispatch_task(state: &AppState, task_id: Option<&str>) -> ApiResult<Value> {
    let tasks = match task_id {
        Some(id) => {
            let task = state.store.get_task(id).await?;
            if task.fields.status != 1 {
                return Err(ApiError::conflict("task is disabled"));
            }
            vec![task]
        }
        None => state.store.list_tasks(Some(1)).await?,
    };
    dispatch_tasks(state, tasks, uuid::Uuid::new_v4().to_string()).await
}

/// Places and inserts every feed of `tasks` under `run_id`, in parts of [`DISPATCH_PART`]
/// allocations each committed on its own, then wakes long-polls and notifies children in
/// the background.
///
/// # Errors
/// Database failures.
pub async fn dispatch_tasks(
    state: &AppState,
    tasks: Vec<MessageTask>,
    run_id: String,
) -> ApiResult<Value> {
    // Without a firing to claim, the store always applies the batch.
    let tasks = tasks.into_iter().map(|t| (t, None)).collect();
    Ok(dispatch_batch(state, tasks, Batch::new(run_id))
        .await?
        .unwrap_or_default())
}

/// Dispatches one cron firing of `task`: the firing is claimed in the dispatch's own
/// transaction, so exactly one pass of one parent dispatches it, and a dispatch that fails
/// leaves it due for the next pass. `None` when another pass already took it.
///
/// # Errors
/// Database failures (the firing stays due).
pub async fn dispatch_firing(
    state: &AppState,
    task: MessageTask,
    firing: Firing,
    run_id: String,
) -> ApiResult<Option<Value>> {
    let batch = Batch {
        firing: Some(firing),
        ..Batch::new(run_id)
    };
    dispatch_batch(state, vec![(task, None)], batch).await
}

/// How one dispatch runs, besides its tasks.
pub(super) struct Batch {
    /// Shared by its allocations.
    pub run_id: String,
    /// The cron firing it is, claimed with its first part.
    pub firing: Option<Firing>,
    /// Freshness mode: only feeds still due at this time are inserted.
    pub due_at: Option<chrono::NaiveDateTime>,
    /// The nodes as the caller just read them (`None`: read them here).
    pub nodes: Option<Vec<NodeSnapshot>>,
}

impl Batch {
    /// A plain dispatch under `run_id`.
    pub fn new(run_id: String) -> Self {
        Self {
            run_id,
            firing: None,
            due_at: None,
            nodes: None,
        }
    }
}

/// Places and inserts `tasks`' feeds: each task's own list, or the given one (freshness
/// mode's due feeds). `None` when the firing was taken by another pass.
pub(super) async fn dispatch_batch(
    state: &AppState,
    tasks: Vec<(MessageTask, Option<Vec<String>>)>,
    batch: Batch,
) -> ApiResult<Option<Value>> {
    let started = std::time::Instant::now();
    let now = state.clock.now();
    let c = &state.config.cascade;
    let Batch {
        run_id,
        firing,
        due_at,
        nodes,
    } = batch;
    let mut nodes = match nodes {
        Some(nodes) => nodes,
        None => {
            let (mp_open, weread_open) = super::sources::open_kinds(state).await?;
            state
                .store
                .dispatch_snapshot()
                .await?
                .iter()
                .map(|load| node_snapshot(load, now, c, mp_open, weread_open))
                .collect()
        }
    };
    let online_nodes = nodes.iter().filter(|n| n.online).count();
    let per = usize::try_from(c.feeds_per_allocation).unwrap_or(1).max(1);
    let mut firing = firing;
    let mut total_created = 0;
    let mut notices = Vec::new();
    let mut per_task = Vec::new();
    for (task, only) in &tasks {
        let named = if let Some(only) = only {
            only.clone()
        } else if task.fields.all_feeds {
            state.store.all_feed_ids().await?
        } else {
            task.fields.feed_ids()
        };
        let named_count = named.len();
        let unique: Vec<String> = {
            let mut seen = HashSet::new();
            named
                .into_iter()
                .filter(|id| seen.insert(id.clone()))
                .collect()
        };
        let mut tally = TaskTally::default();
        let mut created = RunCreated::default();
        // Streamed in parts (read, place, insert): memory is bounded by a part, not by the
        // task, and heartbeats and claims are served between the parts' commits. The next
        // part is read and placed while the writer inserts the one before.
        let mut parts = unique.chunks(per * DISPATCH_PART);
        let mut in_flight = None;
        loop {
            let next = parts.next();
            let writing = in_flight.take();
            let (written, placed) = tokio::join!(
                async {
                    match writing {
                        Some(w) => Some(w.await),
                        None => None,
                    }
                },
                async {
                    match next {
                        Some(part) => {
                            Some(place_part(state, part, &mut nodes, per, &mut tally).await)
                        }
                        None => None,
                    }
                }
            );
            if let Some(written) = written {
                let Some(done) = written? else {
                    return Ok(None); // another pass took this firing
                };
                for a in &done {
                    created.add(a);
                }
            }
            let Some(planned) = placed else { break };
            in_flight = Some(apply_part(
                state,
                task,
                planned?,
                (&run_id, due_at),
                firing.take(),
                now,
            ));
        }
        if firing.is_some() {
            // Nothing to place: the firing is still claimed, so it is not fired again.
            let Some(_) =
                apply_part(state, task, Vec::new(), (&run_id, None), firing.take(), now).await?
            else {
                return Ok(None);
            };
        }
        let raced = i64::try_from(tally.to_place).unwrap_or(0) - created.feeds;
        per_task.push(json!({
            "id": task.id, "name": task.fields.name, "mp_count": named_count, "feed_count": tally.enabled,
            "created": created.allocations, "skipped_open": i64::try_from(tally.skipped).unwrap_or(0) + raced.max(0),
            "missing": tally.missing,
        }));
        total_created += created.allocations;
        notices.push(RunNotice {
            task_id: task.id.clone(),
            schedule_run_id: run_id.clone(),
            created,
        });
    }
    state.metrics.dispatch(started.elapsed(), total_created);
    state.notifier.wake_all();
    tracing::info!(run.id = %run_id, allocations = total_created, "dispatched");
    notify_children(state, notices);
    Ok(Some(json!({
        "online_nodes": online_nodes, "task_count": tasks.len(), "tasks": per_task,
        "allocations_created": total_created, "schedule_run_id": run_id,
    })))
}

/// The highest priority: a "check now".
pub const MAX_PRIORITY: i64 = 100;

/// Allocations (of `feeds_per_allocation` feeds each) placed and inserted per part of a
/// dispatch.
const DISPATCH_PART: usize = 2_000;

/// What a task's dispatch found, counted over its parts.
#[derive(Default)]
struct TaskTally {
    enabled: usize,
    skipped: usize,
    missing: usize,
    to_place: usize,
}

/// Reads one part of a task's feeds and places those to dispatch on `nodes`.
async fn place_part(
    state: &AppState,
    part: &[String],
    nodes: &mut [NodeSnapshot],
    per: usize,
    tally: &mut TaskTally,
) -> ApiResult<Vec<dispatch::PlannedAllocation>> {
    let found = state.store.dispatch_feeds(part.to_vec()).await?;
    let by_id: HashMap<&str, _> = found.iter().map(|f| (f.id.as_str(), f)).collect();
    let enabled: Vec<_> = part
        .iter()
        .filter_map(|id| by_id.get(id.as_str()))
        .filter(|f| f.status == 1)
        .collect();
    let to_place: Vec<FeedRef> = enabled
        .iter()
        .filter(|f| !f.open)
        .map(|f| FeedRef {
            id: f.id.clone(),
            source: f.source,
        })
        .collect();
    tally.enabled += enabled.len();
    tally.skipped += enabled.len() - to_place.len();
    tally.missing += part.len() - found.len();
    tally.to_place += to_place.len();
    Ok(dispatch::plan(&to_place, nodes, per))
}

/// Inserts one part of a task's dispatch (claiming `firing` first, when given). `None` when
/// another pass already took the firing.
async fn apply_part(
    state: &AppState,
    task: &MessageTask,
    planned: Vec<dispatch::PlannedAllocation>,
    (run_id, due_at): (&str, Option<chrono::NaiveDateTime>),
    firing: Option<Firing>,
    now: chrono::NaiveDateTime,
) -> ApiResult<Option<Vec<CreatedAllocation>>> {
    // A task's priority is a head start in claim order: its allocations go before those
    // waiting less than `priority × check_aging_step`, never before older ones.
    let step = crate::parent::reaper::aging_step(&state.config.cascade);
    let head_start = (task.fields.priority > 0).then(|| {
        crate::dispatch::freshness::order_key(now, task.fields.priority.min(MAX_PRIORITY), step)
    });
    let batch = DispatchBatch {
        schedule_run_id: run_id.to_string(),
        max_attempts: secs(state.config.cascade.max_attempts),
        allocations: planned
            .into_iter()
            .map(|p| NewAllocation {
                task_id: task.id.clone(),
                task_name: task.fields.name.clone(),
                cron_exp: task.fields.cron_exp.clone(),
                feed_ids: p.feed_ids,
                source: p.source,
                assigned_node_id: p.node_id,
                available_at: head_start,
            })
            .collect(),
        firing,
        due_at,
    };
    if batch.allocations.is_empty() && batch.firing.is_none() {
        return Ok(Some(Vec::new()));
    }
    Ok(state.store.apply_dispatch(batch, now).await?)
}

/// A node's `retry_after` in whole seconds, within 0–10⁹ (anything else is ignored).
fn retry_after(v: Option<f64>) -> Option<i64> {
    v.filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| s.ceil().min(1e9) as i64)
}

/// `PUT /task-status`.
///
/// # Errors
/// 400 unknown status; 404, 409 from the state machine.
pub async fn task_status(
    state: &AppState,
    node_id: &str,
    req: TaskStatus,
) -> ApiResult<ReportOutcome> {
    let report = match req.status.as_str() {
        "executing" => Report::Executing,
        "completed" => Report::Completed(None),
        "failed" => Report::Failed(Failure {
            reason: Reason::parse(req.reason.as_deref()),
            retry_after: retry_after(req.retry_after),
            error_message: req.error_message.filter(|m| !m.is_empty()),
            task_id: None,
        }),
        _ => {
            return Err(ApiError::bad_field(
                "status",
                "invalid field 'status': expected executing, completed or failed",
            ));
        }
    };
    apply_report(state, node_id, &req.allocation_id, req.lease_token, report).await
}

async fn apply_report(
    state: &AppState,
    node_id: &str,
    id: &str,
    token: Option<String>,
    report: Report,
) -> ApiResult<ReportOutcome> {
    let requeued = matches!(report, Report::Failed(_));
    state.metrics.report(&report);
    let outcome = state
        .store
        .report(
            node_id,
            id,
            token,
            report,
            state.clock.now(),
            lifecycle_policy(state),
        )
        .await?;
    if requeued && outcome.status == AllocStatus::Pending {
        state.notifier.wake_all();
    }
    // Capacity freed, or a cooldown or parked session begun: the node's blocked claims look again.
    state.notifier.wake_node(node_id);
    Ok(outcome)
}

/// Reads a result item in either shape WeRSS children send (PROTOCOL §8.6).
pub fn feed_result(item: &Value) -> FeedResult {
    let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
    let success = match (
        item.get("success"),
        item.get("status").and_then(Value::as_str),
    ) {
        (Some(Value::Bool(b)), _) => *b,
        (_, Some(s)) => s != "failed",
        _ => true,
    };
    FeedResult {
        feed_id: text("feed_id").or_else(|| text("mp_id")),
        success,
        error: text("error"),
        reason: match Reason::parse(item.get("reason").and_then(Value::as_str)) {
            // Additive: the node's logins spent their budgets (issue 13 §7).
            Reason::RateLimited if item.get("budget").and_then(Value::as_bool) == Some(true) => {
                Reason::OutOfBudget
            }
            r => r,
        },
        retry_after: retry_after(item.get("retry_after").and_then(Value::as_f64)),
        etag: text("etag"),
        last_modified: text("last_modified"),
        backlog: match item.get("backlog_incomplete") {
            Some(Value::Bool(true)) => item
                .get("backlog")
                .and_then(|b| serde_json::from_value(b.clone()).ok())
                .map(Some),
            Some(Value::Bool(false)) => Some(None),
            _ => None,
        },
    }
}

/// `POST /report-completion`.
///
/// # Errors
/// 400 task mismatch; 404, 409 from the state machine.
pub async fn report_completion(
    state: &AppState,
    node_id: &str,
    req: ReportCompletion,
) -> ApiResult<ReportOutcome> {
    let results: Vec<FeedResult> = req.results.iter().map(feed_result).collect();
    let items = req.results.clone();
    let all_failed = !results.is_empty() && results.iter().all(|r| !r.success);
    let r = if all_failed {
        Report::Failed(Failure {
            reason: results[0].reason,
            retry_after: results[0].retry_after,
            error_message: results[0].error.clone(),
            task_id: Some(req.task_id),
        })
    } else {
        Report::Completed(Some(Completion {
            task_id: req.task_id,
            results,
            raw_results: Value::Array(req.results),
            article_count: req.article_count.max(0),
        }))
    };
    let outcome = apply_report(state, node_id, &req.allocation_id, req.lease_token, r).await?;
    // What the sources did is learnt once the report stands; a failure here loses only that.
    if let Err(e) = super::sources::learn(state, node_id, &items).await {
        tracing::warn!(node.id = %node_id, status = e.status().as_u16(), "source outcomes not recorded");
    }
    Ok(outcome)
}
