//! The reaper (PROTOCOL §4.3): every `reap_interval` it expires leases and takes work from
//! silent nodes, then wakes long-polls so the work is claimed again at once. The same tick
//! plans the next check of feeds checked since (issue 15).

use super::AppState;
use super::ops::alloc::lifecycle_policy;
use crate::config::CascadeConfig;
use crate::dispatch::schedule::ScheduleSettings;
use crate::store::{self, ReapOutcome};
use chrono::TimeDelta;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The lease and liveness loop.
#[derive(Clone)]
pub struct Reaper {
    state: AppState,
}

impl Reaper {
    /// A reaper over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// One pass at the state's clock.
    ///
    /// # Errors
    /// Database failures (the loop logs them and carries on).
    pub async fn run_once(&self) -> store::Result<ReapOutcome> {
        let s = &self.state;
        let offline_after = i64::try_from(s.config.cascade.offline_after).unwrap_or(180);
        let outcome = s
            .store
            .reap(s.clock.now(), offline_after, lifecycle_policy(s))
            .await?;
        if outcome != ReapOutcome::default() {
            s.metrics.reaped(&outcome);
            tracing::info!(
                expired = outcome.expired,
                offline_nodes = outcome.offline_nodes,
                requeued_from_offline = outcome.from_offline,
                "reaped"
            );
            s.notifier.wake_all();
        }
        Ok(outcome)
    }

    /// Plans the next check of the feeds checked since the last pass (a batch of 500 at
    /// most); how many were planned.
    ///
    /// # Errors
    /// Database failures (the loop logs them and carries on).
    pub async fn plan_once(&self) -> store::Result<u64> {
        let s = &self.state;
        let settings = schedule_settings(&s.config.cascade);
        let step = aging_step(&s.config.cascade);
        s.store
            .plan_checks(s.clock.now(), settings, step, 500)
            .await
    }

    /// Runs until `token` is cancelled; errors are logged, never fatal.
    pub async fn run(self, token: CancellationToken) {
        let period = Duration::from_secs(self.state.config.cascade.reap_interval.max(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.run_once().await {
                        tracing::warn!(error = %e, "reaper pass failed; retrying next tick");
                    }
                    if let Err(e) = self.plan_once().await {
                        tracing::warn!(error = %e, "planning feed checks failed; retrying next tick");
                    }
                }
            }
        }
    }
}

/// How far one step of priority moves a feed or an allocation ahead (`check_aging_step`,
/// within 1 s–1 d).
pub fn aging_step(c: &CascadeConfig) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(c.check_aging_step.clamp(1, 86_400)).unwrap_or(1800))
}

/// The per-feed schedule's settings from the configuration (`check_min_interval` within
/// 1 s–30 d, `check_max_interval` within it–365 d; the rest at their defaults).
pub fn schedule_settings(c: &CascadeConfig) -> ScheduleSettings {
    const DAY: u64 = 86_400;
    let seconds = |s: u64| TimeDelta::seconds(i64::try_from(s).unwrap_or(0));
    let min = c.check_min_interval.clamp(1, 30 * DAY);
    let min_interval = seconds(min);
    let max_interval = seconds(c.check_max_interval.clamp(min, 365 * DAY));
    ScheduleSettings {
        min_interval,
        max_interval,
        max_backoff: max_interval,
        ..ScheduleSettings::default()
    }
}
