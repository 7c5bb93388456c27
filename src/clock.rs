//! Injected wall-clock time (naive UTC). Production uses the system clock; tests use a manual
//! clock they advance, so time-dependent rules run without sleeping.

use chrono::{NaiveDateTime, TimeDelta, Utc};
use std::sync::{Arc, Mutex};

/// A source of "now" in naive UTC, cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<NaiveDateTime>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock that stands still at `start` until [`Clock::advance`] moves it.
    pub fn manual(start: NaiveDateTime) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(start))),
        }
    }

    /// The current time, truncated to microseconds (the stored precision).
    pub fn now(&self) -> NaiveDateTime {
        let t = match &self.manual {
            Some(m) => *m.lock().unwrap_or_else(|p| p.into_inner()),
            None => Utc::now().naive_utc(),
        };
        crate::protocol::time::truncate_micros(t)
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: TimeDelta) {
        if let Some(m) = &self.manual {
            let mut t = m.lock().unwrap_or_else(|p| p.into_inner());
            *t += by;
        }
    }
}
