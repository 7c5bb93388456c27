//! Per-login budgets (issue 13 §7, SOURCES.md §6): how many upstream calls one login may make
//! in any hour and in any 24 hours, per login kind. Each call is reserved in the login store
//! before it is sent (so concurrent feeds on one login never pass the caps) and remembered
//! there (so a restart does not reset the count); the windows slide.

use super::LoginKind;
use crate::config::{CascadeConfig, PerKind};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// WeRead calls per login per hour by default: the value one operator settled on after
/// captchas (SOURCES.md §6).
pub const WEREAD_PER_HOUR: u64 = 6;
/// WeRead calls per login per day by default (SOURCES.md §6: 4 captchas came after 25–30
/// calls in a day; 25 is that report's safe value).
pub const WEREAD_PER_DAY: u64 = 25;

const HOUR: TimeDelta = TimeDelta::hours(1);
const DAY: TimeDelta = TimeDelta::hours(24);

/// The caps of one login kind; 0 = no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Calls in any hour.
    pub per_hour: u64,
    /// Calls in any 24 hours.
    pub per_day: u64,
}

/// What a login has left, as heartbeats and `GET {P}/logins` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetView {
    /// Calls left in the current hour (`None`: no hourly cap).
    #[serde(default)]
    pub hour_left: Option<u64>,
    /// Calls left in the current 24 hours (`None`: no daily cap).
    #[serde(default)]
    pub day_left: Option<u64>,
    /// When the next call becomes possible, while none is left.
    #[serde(default)]
    pub resets_at: Option<DateTime<Utc>>,
}

impl Caps {
    /// Whether this kind has no cap at all (its calls are not even counted).
    pub fn unlimited(&self) -> bool {
        self.per_hour == 0 && self.per_day == 0
    }

    /// How far back calls must be remembered.
    fn window(&self) -> TimeDelta {
        if self.per_day > 0 { DAY } else { HOUR }
    }

    /// Drops calls older than any window that counts them.
    pub(super) fn prune(&self, spent: &mut Vec<DateTime<Utc>>, now: DateTime<Utc>) {
        if self.unlimited() {
            spent.clear();
            return;
        }
        let from = now - self.window();
        spent.retain(|t| *t > from);
        spent.sort_unstable();
    }

    /// `None` when a call may go at `now`, else when one may (`spent` sorted, pruned).
    pub(super) fn next_free(
        &self,
        spent: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let one = |cap: u64, span: TimeDelta| -> Option<DateTime<Utc>> {
            if cap == 0 {
                return None;
            }
            let inside: Vec<&DateTime<Utc>> = spent.iter().filter(|t| **t > now - span).collect();
            let used = u64::try_from(inside.len()).unwrap_or(u64::MAX);
            if used < cap {
                return None;
            }
            // The window frees a call when its (used − cap + 1)-th oldest call leaves it.
            let idx = usize::try_from(used - cap).unwrap_or(0);
            inside.get(idx).map(|t| **t + span)
        };
        match (one(self.per_hour, HOUR), one(self.per_day, DAY)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// What is left at `now`; `None` for an uncapped kind.
    pub(super) fn view(&self, spent: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<BudgetView> {
        if self.unlimited() {
            return None;
        }
        let left = |cap: u64, span: TimeDelta| {
            (cap > 0).then(|| {
                let used = spent.iter().filter(|t| **t > now - span).count();
                cap.saturating_sub(u64::try_from(used).unwrap_or(u64::MAX))
            })
        };
        Some(BudgetView {
            hour_left: left(self.per_hour, HOUR),
            day_left: left(self.per_day, DAY),
            resets_at: self.next_free(spent, now),
        })
    }
}

/// The caps of every login kind, from `budget_per_hour` and `budget_per_day`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    /// `mp` logins (no caps by default: their pace is `wechat_gap_ms`).
    pub mp: Caps,
    /// `weread` logins (6 an hour, 25 a day by default).
    pub weread: Caps,
}

impl Budgets {
    /// The caps the settings give; a kind a setting leaves out keeps its default.
    pub fn from_config(c: &CascadeConfig) -> Self {
        let pick =
            |v: PerKind, mp: u64, weread: u64| (v.mp.unwrap_or(mp), v.weread.unwrap_or(weread));
        let (mp_h, wr_h) = pick(c.budget_per_hour, 0, WEREAD_PER_HOUR);
        let (mp_d, wr_d) = pick(c.budget_per_day, 0, WEREAD_PER_DAY);
        Self {
            mp: Caps {
                per_hour: mp_h,
                per_day: mp_d,
            },
            weread: Caps {
                per_hour: wr_h,
                per_day: wr_d,
            },
        }
    }

    /// No caps for any kind (a store opened without settings).
    pub fn none() -> Self {
        Self::default()
    }

    /// The caps of `kind`.
    pub fn caps(&self, kind: LoginKind) -> Caps {
        match kind {
            LoginKind::Mp => self.mp,
            LoginKind::Weread => self.weread,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time") + TimeDelta::minutes(min)
    }

    #[test]
    fn sliding_windows_free_the_oldest_call_first() {
        let caps = Caps {
            per_hour: 2,
            per_day: 3,
        };
        let mut spent = vec![at(0), at(10)];
        caps.prune(&mut spent, at(20));
        assert_eq!(caps.next_free(&spent, at(20)), Some(at(60)));
        assert_eq!(caps.next_free(&spent, at(61)), None);
        spent.push(at(61));
        // The hour has room at 70 (one call in it), the day not until the first call is 24 h old.
        assert_eq!(caps.next_free(&spent, at(75)), Some(at(24 * 60)));
        let v = caps.view(&spent, at(75)).expect("capped");
        assert_eq!((v.hour_left, v.day_left), (Some(1), Some(0)));
        caps.prune(&mut spent, at(24 * 60 + 1));
        assert_eq!(spent, [at(10), at(61)]);
        assert_eq!(caps.next_free(&spent, at(24 * 60 + 1)), None);
        assert!(Caps::default().view(&spent, at(0)).is_none());
    }
}
