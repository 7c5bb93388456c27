//! One pacer per login: every list request of that login, from however many allocations run at
//! once, waits its turn, so parallel work never multiplies the request rate (UPSTREAMS §2.2).

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces requests at least `min_gap` apart, plus a random extra up to `jitter`.
#[derive(Debug)]
pub struct Pacer {
    min_gap: Duration,
    jitter: Duration,
    last: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer with a gap in `[min_gap, min_gap + jitter]`.
    pub fn new(min_gap: Duration, jitter: Duration) -> Self {
        Self {
            min_gap,
            jitter,
            last: Mutex::new(None),
        }
    }

    /// Waits until the next request of this login may go, and claims that slot.
    pub async fn wait_turn(&self) {
        let mut last = self.last.lock().await;
        if let Some(prev) = *last {
            let extra = if self.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.jitter.mul_f64(rand::random::<f64>())
            };
            tokio::time::sleep_until(prev + self.min_gap + extra).await;
        }
        *last = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_spaced_by_the_gap() {
        let pacer = std::sync::Arc::new(Pacer::new(Duration::from_secs(15), Duration::ZERO));
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let p = pacer.clone();
            set.spawn(async move {
                p.wait_turn().await;
                Instant::now()
            });
        }
        let mut times = Vec::new();
        while let Some(t) = set.join_next().await {
            times.push(t.expect("joined") - start);
        }
        times.sort();
        assert_eq!(times, [0, 15, 30, 45].map(Duration::from_secs));
    }
}
