//! Cron scheduler (PROTOCOL §9.3): each enabled task with a `cron_exp` fires a dispatch at its
//! `next_run_at`, which is persisted, so a restart neither skips nor doubles a firing; each
//! firing is claimed by a conditional update, so several parents fire it once.

use super::AppState;
use super::error::ApiResult;
use super::ops::alloc::dispatch_tasks;
use crate::protocol::cron;
use crate::store::MessageTask;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use std::sync::atomic::Ordering;
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

fn has_job(t: &MessageTask) -> bool {
    t.fields.status == 1 && !t.fields.cron_exp.trim().is_empty()
}

/// Number of jobs: enabled tasks with a cron expression.
///
/// # Errors
/// Database failures.
pub async fn jobs(state: &AppState) -> ApiResult<usize> {
    Ok(state
        .store
        .list_tasks(Some(1))
        .await?
        .iter()
        .filter(|t| has_job(t))
        .count())
}

/// Recomputes every job's `next_run_at` from now (new `a~b` draws).
///
/// # Errors
/// Database failures.
pub async fn reload(state: &AppState) -> ApiResult<()> {
    let now = state.clock.now();
    for task in state
        .store
        .list_tasks(Some(1))
        .await?
        .into_iter()
        .filter(has_job)
    {
        if let Ok(next) = next_after(&task.fields.cron_exp, &state.config.cascade.timezone, now) {
            state
                .store
                .set_next_run(&task.id, task.next_run_at, next, None)
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
    /// Firings this parent claimed and dispatched.
    pub fired: Vec<String>,
}

/// The cron loop.
#[derive(Clone)]
pub struct Scheduler {
    state: AppState,
}

impl Scheduler {
    /// A scheduler over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// One pass at the state's clock: schedules new jobs and fires due ones (when running).
    ///
    /// # Errors
    /// Database failures (the loop logs them and carries on).
    pub async fn run_once(&self) -> ApiResult<Outcome> {
        let s = &self.state;
        let now = s.clock.now();
        let zone = &s.config.cascade.timezone;
        let mut out = Outcome::default();
        for task in s
            .store
            .list_tasks(Some(1))
            .await?
            .into_iter()
            .filter(has_job)
        {
            let next = match next_after(&task.fields.cron_exp, zone, now) {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(task.id = %task.id, error = %e, "cannot schedule task");
                    continue;
                }
            };
            match task.next_run_at {
                None => {
                    if s.store.set_next_run(&task.id, None, next, None).await? {
                        out.scheduled += 1;
                    }
                }
                Some(due) if due <= now && s.scheduler_running.load(Ordering::SeqCst) => {
                    if !s
                        .store
                        .set_next_run(&task.id, Some(due), next, Some(now))
                        .await?
                    {
                        continue; // another parent took this firing
                    }
                    let run_id = format!("cron_{}_{}", due.format("%Y%m%d%H%M%S"), task.id);
                    let id = task.id.clone();
                    dispatch_tasks(s, vec![task], run_id).await?;
                    out.fired.push(id);
                }
                Some(_) => {}
            }
        }
        Ok(out)
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
