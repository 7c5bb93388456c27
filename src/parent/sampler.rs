//! The node sampler (issue 16): once a minute it writes every child node's state for the
//! health chart (online, cooling, session expired, feeds held) and drops samples older than
//! [`SAMPLE_RETENTION`](crate::store::SAMPLE_RETENTION). Parents sharing a database each
//! sample; the first to write a minute wins.

use super::AppState;
use crate::store::{self, SampleOutcome};
use chrono::{NaiveDateTime, Timelike};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The sampling loop.
#[derive(Clone)]
pub struct Sampler {
    state: AppState,
}

impl Sampler {
    /// A sampler over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// One pass at the state's clock: this minute's samples, then the oldest pruned.
    ///
    /// # Errors
    /// Database failures (the loop logs them and carries on).
    pub async fn run_once(&self) -> store::Result<SampleOutcome> {
        let s = &self.state;
        let offline_after = i64::try_from(s.config.cascade.offline_after).unwrap_or(180);
        let outcome = s.store.sample_nodes(s.clock.now(), offline_after).await?;
        tracing::debug!(
            written = outcome.written,
            pruned = outcome.pruned,
            "nodes sampled"
        );
        Ok(outcome)
    }

    /// Runs until `token` is cancelled, a pass a second into every minute; errors are
    /// logged, never fatal.
    pub async fn run(self, token: CancellationToken) {
        loop {
            let wait = until_next_minute(self.state.clock.now());
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(wait) => {
                    if let Err(e) = self.run_once().await {
                        tracing::warn!(error = %e, "sampling nodes failed; retrying next minute");
                    }
                }
            }
        }
    }
}

/// How long from `now` until a second into the next minute: a pass then falls inside the
/// minute it samples, whatever the timer's drift.
fn until_next_minute(now: NaiveDateTime) -> Duration {
    let into = Duration::new(u64::from(now.second()), now.nanosecond() % 1_000_000_000);
    Duration::from_secs(61).saturating_sub(into)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32, micro: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
            .and_then(|d| d.and_hms_micro_opt(h, m, s, micro))
            .expect("a valid time")
    }

    #[test]
    fn a_pass_waits_for_a_second_into_the_next_minute() {
        assert_eq!(until_next_minute(at(12, 0, 0, 0)), Duration::from_secs(61));
        assert_eq!(
            until_next_minute(at(12, 0, 59, 500_000)),
            Duration::from_millis(1_500)
        );
        assert_eq!(until_next_minute(at(12, 0, 30, 0)), Duration::from_secs(31));
    }
}
