//! Bursts of MP list requests (requests of one login that overlap in time), so a child tells
//! the MP list's closure from a login's throttling when both answer `200013`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest a refused request waits for the other requests of its burst before it is told
/// apart (closure or throttling); past it, throttling, the safer guess.
pub(super) const MP_SIBLINGS_WAIT: Duration = Duration::from_secs(30);

/// The MP list requests of each login, grouped in bursts (requests that overlap in time):
/// a `200013` is the MP list's closure only when the burst began after a rest and none of
/// its requests succeeded. One that did reached WeChat first and spent what the login was
/// allowed, so the refusals beside it are throttling.
#[derive(Default)]
pub(super) struct MpRequests {
    logins: Mutex<HashMap<String, MpTrack>>,
    finished: tokio::sync::Notify,
}

#[derive(Default)]
struct MpTrack {
    in_flight: u32,
    successes: u64,
    /// The current burst: whether it began after a rest, and the successes before it.
    burst: Burst,
}

/// What a request knows of its burst.
#[derive(Clone, Copy, Default)]
pub(super) struct Burst {
    rested: bool,
    successes_before: u64,
}

/// One request in flight; dropped unfinished (its fetch cancelled), it counts as failed.
pub(super) struct MpRequest<'a> {
    requests: &'a MpRequests,
    login: String,
    burst: Burst,
    done: bool,
}

impl MpRequests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MpTrack>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request of `login` starts; `rested` when the login was not used for the rest time.
    /// With none in flight it begins a burst.
    pub(super) fn start(&self, login: &str, rested: bool) -> MpRequest<'_> {
        let burst = {
            let mut logins = self.lock();
            let track = logins.entry(login.to_string()).or_default();
            if track.in_flight == 0 {
                track.burst = Burst {
                    rested,
                    successes_before: track.successes,
                };
            }
            track.in_flight += 1;
            track.burst
        };
        MpRequest {
            requests: self,
            login: login.to_string(),
            burst,
            done: false,
        }
    }

    fn end(&self, login: &str, ok: bool) {
        {
            let mut logins = self.lock();
            let track = logins.entry(login.to_string()).or_default();
            track.in_flight = track.in_flight.saturating_sub(1);
            track.successes += u64::from(ok);
        }
        self.finished.notify_waiters();
    }

    /// Whether a refusal in `burst` is the MP list's closure: the burst began after a rest
    /// and, once its requests are done (waiting at most `wait`, then no), none succeeded.
    pub(super) async fn closure(&self, login: &str, burst: Burst, wait: Duration) -> bool {
        if !burst.rested {
            return false;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            {
                let logins = self.lock();
                let Some(track) = logins.get(login) else {
                    return false;
                };
                if track.successes != burst.successes_before {
                    return false;
                }
                if track.in_flight == 0 {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                return false;
            }
        }
    }
}

impl MpRequest<'_> {
    /// Ends the request; its burst.
    pub(super) fn finish(mut self, ok: bool) -> Burst {
        self.done = true;
        self.requests.end(&self.login, ok);
        self.burst
    }
}

impl Drop for MpRequest<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.requests.end(&self.login, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_burst_after_a_rest_with_no_success_is_closure() {
        let requests = MpRequests::default();
        let first = requests.start("mp-1", true);
        // Sent alongside, so not after a rest by itself: it joins the first one's burst.
        let second = requests.start("mp-1", false);
        let refused = first.finish(false);
        let waiting = requests.closure("mp-1", refused, WAIT);
        tokio::pin!(waiting);
        // Undecided while the sibling is in flight: it may still succeed.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting.as_mut())
                .await
                .is_err()
        );
        let sibling = second.finish(false);
        assert!(waiting.await, "every request of the burst was refused");
        assert!(requests.closure("mp-1", sibling, WAIT).await);
    }

    #[tokio::test]
    async fn a_refusal_beside_a_success_is_throttling() {
        let requests = MpRequests::default();
        let first = requests.start("mp-1", true);
        let second = requests.start("mp-1", false);
        // The sibling reached WeChat first and spent the login's allowed call.
        second.finish(true);
        let refused = first.finish(false);
        assert!(!requests.closure("mp-1", refused, WAIT).await);
        // A later burst that does not begin after a rest is never closure.
        let next = requests.start("mp-1", false).finish(false);
        assert!(!requests.closure("mp-1", next, WAIT).await);
    }

    #[tokio::test]
    async fn a_cancelled_request_ends_its_part_of_the_burst() {
        let requests = MpRequests::default();
        let first = requests.start("mp-1", true);
        drop(requests.start("mp-1", false));
        let refused = first.finish(false);
        assert!(requests.closure("mp-1", refused, WAIT).await);
    }
}
