//! Cron scheduler (PROTOCOL §9.3): each enabled task with a `cron_exp` fires a dispatch at its
//! `next_run_at`, which is persisted, so a restart neither skips nor doubles a firing; each
//! firing is claimed by a conditional update inside its dispatch's transaction, so several
//! parents fire it once and a failed dispatch is retried. Whether firings dispatch
//! (start/stop-scheduler) is kept in the database, for every parent and across restarts.
//!
//! In freshness mode (`dispatch_mode: freshness`) each pass also dispatches the feeds that
//! are due ([`crate::parent::ops::fresh`]), and a firing no longer dispatches its task: it
//! makes the task's feeds due at its time, so the cron bounds how long a feed waits while
//! the budgets still decide the order.

use super::AppState;
use super::error::ApiResult;
use super::ops::alloc::dispatch_firing;
use super::ops::fresh::{DuePass, dispatch_due};
use crate::dispatch::freshness::{DispatchMode, Pacer};
use crate::protocol::cron;
use crate::store::Firing;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The next firing of `expr` strictly after `after` (naive UTC), evaluated in `zone`
/// (an IANA name, empty = the process's local zone). `a~b` ranges are drawn anew.
///
/// # Errors
/// An invalid expression or zone.
pub fn next_after(
    expr: &str,
    zone: &str,
    after: NaiveDateTime,
) -> Result<Option<NaiveDateTime>, String> {
    let expanded = cron::expand_ranges(expr, &mut |a, b| rand::random_range(a..=b))?;
    let schedule = cron::parse(&expanded)?;
    let after_utc = Utc.from_utc_datetime(&after);
    let next = |t: Option<DateTime<Utc>>| t.map(|t| t.naive_utc());
    if zone.trim().is_empty() {
        let local = after_utc.with_timezone(&chrono::Local);
        let found = schedule
            .find_next_occurrence(&local, false)
            .map_err(|e| e.to_string())?;
        return Ok(next(Some(found.with_timezone(&Utc))));
    }
    let tz: chrono_tz::Tz = zone
        .trim()
        .parse()
        .map_err(|_| format!("unknown time zone '{zone}'"))?;
    let found = schedule
        .find_next_occurrence(&after_utc.with_timezone(&tz), false)
        .map_err(|e| e.to_string())?;
    Ok(next(Some(found.with_timezone(&Utc))))
}

/// The setting that holds whether cron firings dispatch, shared by every parent on the
/// database and kept across restarts.
const RUNNING_KEY: &str = "scheduler_running";

/// Whether cron firings dispatch: the state last set by start/stop-scheduler on any parent,
/// or `cascade.scheduler` until one was used.
///
/// # Errors
/// Database failures.
pub async fn running(state: &AppState) -> ApiResult<bool> {
    Ok(match state.store.setting(RUNNING_KEY).await?.as_deref() {
        Some(stored) => stored == "true",
        None => state.config.cascade.scheduler,
    })
}

/// Starts or stops cron dispatch on every parent of the database.
///
/// # Errors
/// Database failures.
pub async fn set_running(state: &AppState, on: bool) -> ApiResult<()> {
    let value = if on { "true" } else { "false" };
    state.store.set_setting(RUNNING_KEY, value).await?;
    tracing::info!(running = on, "scheduler state changed");
    Ok(())
}

/// Number of jobs: enabled tasks with a cron expression.
///
/// # Errors
/// Database failures.
pub async fn jobs(state: &AppState) -> ApiResult<usize> {
    Ok(state.store.cron_jobs().await?.len())
}

/// Recomputes every job's `next_run_at` from now (new `a~b` draws).
///
/// # Errors
/// Database failures.
pub async fn reload(state: &AppState) -> ApiResult<()> {
    let now = state.clock.now();
    for job in state.store.cron_jobs().await? {
        if let Ok(next) = next_after(&job.cron_exp, &state.config.cascade.timezone, now) {
            state
                .store
                .set_next_run(&job.id, job.next_run_at, next, None)
                .await?;
        }
    }
    Ok(())
}

/// What one scheduler pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Tasks whose first `next_run_at` was set.
    pub scheduled: usize,
    /// Firings this parent claimed and dispatched (or, in freshness mode, made due).
    pub fired: Vec<String>,
    /// Freshness mode: what the pass's dispatch of due feeds did.
    pub due: DuePass,
}

/// The cron loop.
#[derive(Clone)]
pub struct Scheduler {
    state: AppState,
    mode: DispatchMode,
    /// Freshness mode's pace over the logins' daily budgets (this parent's share).
    pacer: Arc<Mutex<Pacer>>,
}

impl Scheduler {
    /// A scheduler over `state`.
    pub fn new(state: AppState) -> Self {
        // Checked when the state was built: a bad value never gets here.
        let mode = DispatchMode::parse(&state.config.cascade.dispatch_mode).unwrap_or_default();
        Self {
            state,
            mode,
            pacer: Arc::new(Mutex::new(Pacer::new())),
        }
    }

    /// One pass at the state's clock: schedules new jobs and fires due ones (when running).
    /// Each pass reads the shared running state and, of each job, only its id, cron
    /// expression and next firing; a task is loaded whole only when it fires. A firing is
    /// claimed in its dispatch's transaction: one that fails stays due and is retried by the
    /// next pass, of this parent or another.
    ///
    /// # Errors
    /// Database failures (the loop logs them and carries on); a failed firing does not stop
    /// the other due firings of the pass, the first failure is returned after them.
    pub async fn run_once(&self) -> ApiResult<Outcome> {
        let s = &self.state;
        let now = s.clock.now();
        let zone = &s.config.cascade.timezone;
        let running = running(s).await?;
        let mut out = Outcome::default();
        let mut failure = None;
        for job in s.store.cron_jobs().await? {
            let next = match next_after(&job.cron_exp, zone, now) {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(task.id = %job.id, error = %e, "cannot schedule task");
                    continue;
                }
            };
            match job.next_run_at {
                None => {
                    if s.store.set_next_run(&job.id, None, next, None).await? {
                        out.scheduled += 1;
                    }
                }
                Some(due) if due <= now && running => match self.fire(&job.id, due, next).await {
                    Ok(true) => out.fired.push(job.id),
                    Ok(false) => {} // another pass took this firing
                    Err(e) => {
                        tracing::warn!(task.id = %job.id, status = %e.status(), "cron dispatch failed; the firing stays due");
                        failure.get_or_insert(e);
                    }
                },
                Some(_) => {}
            }
        }
        if running && self.mode == DispatchMode::Freshness {
            match dispatch_due(s, &self.pacer).await {
                Ok(due) => out.due = due,
                Err(e) => {
                    tracing::warn!(status = %e.status(), "dispatching due feeds failed");
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(out), Err)
    }

    /// Dispatches the firing of `task_id` due at `due`; false when it was taken meanwhile.
    async fn fire(
        &self,
        task_id: &str,
        due: NaiveDateTime,
        next: Option<NaiveDateTime>,
    ) -> ApiResult<bool> {
        let s = &self.state;
        let task = match s.store.get_task(task_id).await {
            Ok(task) => task,
            Err(crate::store::Error::NotFound(_)) => return Ok(false), // deleted meanwhile
            Err(e) => return Err(e.into()),
        };
        let firing = Firing {
            task_id: task.id.clone(),
            due,
            next,
            fired_at: s.clock.now(),
        };
        if self.mode == DispatchMode::Freshness {
            let feeds = (!task.fields.all_feeds).then(|| task.fields.feed_ids());
            return Ok(s.store.fire_due(firing, feeds).await?.is_some());
        }
        let run_id = format!("cron_{}_{}", due.format("%Y%m%d%H%M%S"), task.id);
        Ok(dispatch_firing(s, task, firing, run_id).await?.is_some())
    }

    /// Runs until `token` is cancelled, one pass a second; errors are logged, never fatal.
    pub async fn run(self, token: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.run_once().await {
                        tracing::warn!(status = %e.status(), "scheduler pass failed; retrying next tick");
                    }
                }
            }
        }
    }
}
