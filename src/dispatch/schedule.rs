//! When to check a feed next, from its own history (issue 15): how often it publishes, at
//! which hour it usually does, its recent errors and what the upstream asked. Pure
//! arithmetic: the caller passes the clock and the history in.
//!
//! The rules, applied in this order:
//! 1. **Frequency** (Miniflux's rule): one week ÷ (articles published in the last week ×
//!    `factor`), clamped to [`min_interval`, `max_interval`]; a silent week gives
//!    `max_interval`.
//! 2. **Habit**: accounts publish at habitual hours. When at least `habit_min_samples` recent
//!    articles cluster around one time of day (circular standard deviation σ ≤
//!    `habit_max_spread`), the check moves to the latest "mean + σ" of that time of day that
//!    falls between `now + min_interval` and the frequency rule's time: just after the
//!    account usually posts, never more often than rule 1 allows.
//! 3. **At the latest**: the caller's upper bound (a task's cron: "check at least this
//!    often") brings the check forward, never before `now + min_interval`.
//! 4. **Errors** back off: the n-th failure in a row waits at least `min_interval × 2ⁿ`, at
//!    most `max_backoff`, whatever rules 1–3 said.
//! 5. **The upstream's word** (`Retry-After`, a feed's TTL) is a floor, capped at
//!    `retry_after_cap`.
//!
//! [`min_interval`]: ScheduleSettings::min_interval
//! [`max_interval`]: ScheduleSettings::max_interval

use chrono::{NaiveDateTime, TimeDelta, Timelike};
use std::f64::consts::TAU;

/// Seconds in a day.
const DAY: i64 = 86_400;

/// The operator's settings for per-feed schedules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScheduleSettings {
    /// The shortest time between two checks of a feed.
    pub min_interval: TimeDelta,
    /// The longest time between two checks of a feed that answers.
    pub max_interval: TimeDelta,
    /// Checks per article: 2.0 checks a feed twice as often as it publishes.
    pub factor: f64,
    /// The longest wait after errors in a row.
    pub max_backoff: TimeDelta,
    /// How many recent publish times a habit needs.
    pub habit_min_samples: usize,
    /// The widest spread (circular standard deviation) of publish times that is a habit.
    pub habit_max_spread: TimeDelta,
    /// The longest wait an upstream may ask for.
    pub retry_after_cap: TimeDelta,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            min_interval: TimeDelta::minutes(30),
            max_interval: TimeDelta::hours(24),
            factor: 1.0,
            max_backoff: TimeDelta::hours(24),
            habit_min_samples: 3,
            habit_max_spread: TimeDelta::hours(2),
            retry_after_cap: TimeDelta::days(7),
        }
    }
}

/// What is known of a feed when its next check is planned.
#[derive(Debug, Clone, Default)]
pub struct FeedHistory<'a> {
    /// Publish times (UTC) of its recent articles, in any order; those after `now` are
    /// ignored.
    pub publish_times: &'a [NaiveDateTime],
    /// Failed checks in a row (0 after a success).
    pub error_streak: u32,
    /// The earliest time the upstream allows the next request (`Retry-After`, a TTL).
    pub not_before: Option<NaiveDateTime>,
    /// The caller's upper bound (the next run of the feed's task cron).
    pub at_latest: Option<NaiveDateTime>,
}

/// The interval of rule 1 for `articles` published in the last week.
pub fn interval_for(articles: usize, s: &ScheduleSettings) -> TimeDelta {
    let (min, max) = bounds(s);
    if articles == 0 || s.factor <= 0.0 || !s.factor.is_finite() {
        return max;
    }
    #[allow(clippy::cast_precision_loss)]
    let per_week = articles as f64 * s.factor;
    #[allow(clippy::cast_precision_loss)]
    let (lo, hi) = (min.num_seconds() as f64, max.num_seconds() as f64);
    // Clamped before it becomes a span: a tiny factor must not overflow one.
    #[allow(clippy::cast_possible_truncation)]
    let seconds = (TimeDelta::weeks(1).num_seconds() as f64 / per_week).clamp(lo, hi) as i64;
    TimeDelta::seconds(seconds)
}

/// `min_interval` and `max_interval`, in order and positive whatever the settings say.
fn bounds(s: &ScheduleSettings) -> (TimeDelta, TimeDelta) {
    let min = s.min_interval.max(TimeDelta::seconds(1));
    (min, s.max_interval.max(min))
}

/// The habitual time of day (seconds after midnight UTC, "mean + σ") of `times`, if they
/// cluster: at least `habit_min_samples` of them, spread no wider than `habit_max_spread`.
pub fn habit(times: &[NaiveDateTime], s: &ScheduleSettings) -> Option<i64> {
    if times.len() < s.habit_min_samples.max(2) {
        return None;
    }
    let (mut x, mut y) = (0.0_f64, 0.0_f64);
    for t in times {
        let angle = f64::from(t.num_seconds_from_midnight()) / 86_400.0 * TAU;
        x += angle.cos();
        y += angle.sin();
    }
    #[allow(clippy::cast_precision_loss)]
    let n = times.len() as f64;
    let r = (x.hypot(y) / n).min(1.0);
    if r <= f64::EPSILON {
        return None;
    }
    // Circular standard deviation, in seconds of a day.
    let sigma = (-2.0 * r.ln()).max(0.0).sqrt() / TAU * 86_400.0;
    #[allow(clippy::cast_precision_loss)]
    if sigma > s.habit_max_spread.num_seconds() as f64 {
        return None;
    }
    let mean = y.atan2(x).rem_euclid(TAU) / TAU * 86_400.0;
    #[allow(clippy::cast_possible_truncation)]
    Some(((mean + sigma).round() as i64).rem_euclid(DAY))
}

/// The latest time in `(after, until]` whose time of day is `second` (after midnight UTC).
fn latest_at(second: i64, after: NaiveDateTime, until: NaiveDateTime) -> Option<NaiveDateTime> {
    let midnight = until.date().and_hms_opt(0, 0, 0)?;
    let mut t = midnight + TimeDelta::seconds(second);
    if t > until {
        t -= TimeDelta::days(1);
    }
    (t > after).then_some(t)
}

/// When to check a feed next, after a check that ended at `now`.
pub fn next_check(now: NaiveDateTime, h: &FeedHistory<'_>, s: &ScheduleSettings) -> NaiveDateTime {
    let (min, _) = bounds(s);
    let week_ago = now - TimeDelta::weeks(1);
    let recent: Vec<NaiveDateTime> = h
        .publish_times
        .iter()
        .copied()
        .filter(|t| *t <= now)
        .collect();
    let last_week = recent.iter().filter(|t| **t > week_ago).count();
    let earliest = now + min;
    let mut next = now + interval_for(last_week, s);
    if let Some(t) = habit(&recent, s).and_then(|second| latest_at(second, earliest, next)) {
        next = t;
    }
    if let Some(latest) = h.at_latest {
        next = next.min(latest.max(earliest));
    }
    if h.error_streak > 0 {
        let cap = s.max_backoff.max(min);
        let factor = 1_i32 << h.error_streak.min(20);
        let backoff = min.checked_mul(factor).unwrap_or(cap).min(cap);
        next = next.max(now + backoff);
    }
    if let Some(asked) = h.not_before {
        next = next.max(asked.min(now + s.retry_after_cap));
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(day: u32, h: u32, m: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .and_then(|d| d.and_hms_opt(h, m, 0))
            .expect("valid time")
    }

    /// Publish times spread evenly over the last week: no habit.
    fn spread(now: NaiveDateTime, n: usize) -> Vec<NaiveDateTime> {
        let step = TimeDelta::weeks(1).num_seconds() / (n as i64 + 1);
        (1..=n as i64)
            .map(|i| now - TimeDelta::seconds(step * i + 7 * i * 3_613 % DAY))
            .collect()
    }

    #[test]
    fn a_silent_feed_waits_the_longest_and_a_busy_one_the_shortest() {
        let s = ScheduleSettings::default();
        assert_eq!(interval_for(0, &s), TimeDelta::hours(24));
        assert_eq!(interval_for(1, &s), TimeDelta::hours(24), "clamped");
        assert_eq!(interval_for(14, &s), TimeDelta::hours(12));
        assert_eq!(interval_for(10_000, &s), TimeDelta::minutes(30), "clamped");
        let twice = ScheduleSettings { factor: 2.0, ..s };
        assert_eq!(interval_for(14, &twice), TimeDelta::hours(6));
        let tiny = ScheduleSettings {
            factor: 1e-300,
            ..s
        };
        assert_eq!(interval_for(1, &tiny), TimeDelta::hours(24), "no overflow");
    }

    #[test]
    fn a_daily_evening_poster_is_checked_just_after_its_hour() {
        let s = ScheduleSettings::default();
        let now = at(20, 23, 10);
        let times: Vec<_> = (13..=19)
            .zip([0, 12, 25, 5, 18, 30, 9])
            .map(|(d, m)| at(d, 20, m))
            .collect();
        let second = habit(&times, &s).expect("a habit");
        assert!((20 * 3_600..21 * 3_600).contains(&second), "{second}");
        let next = next_check(
            now,
            &FeedHistory {
                publish_times: &times,
                ..Default::default()
            },
            &s,
        );
        assert_eq!(next.date(), at(21, 0, 0).date(), "tomorrow");
        assert_eq!(next.hour(), 20, "just after 20:00, not at 23:10: {next}");
        assert!(next.minute() >= 15, "after the mean: {next}");
    }

    #[test]
    fn scattered_hours_are_no_habit() {
        let s = ScheduleSettings::default();
        let times = [at(18, 1, 0), at(18, 9, 0), at(19, 15, 0), at(19, 21, 0)];
        assert_eq!(habit(&times, &s), None);
        assert_eq!(habit(&times[..2], &s), None, "too few");
    }

    #[test]
    fn a_habit_around_midnight_wraps() {
        let s = ScheduleSettings::default();
        let times = [at(17, 23, 50), at(18, 0, 5), at(19, 23, 55), at(20, 0, 10)];
        let second = habit(&times, &s).expect("a habit");
        assert!(second < 3_600, "just after midnight: {second}");
    }

    #[test]
    fn the_upstream_and_the_cron_have_their_say() {
        let s = ScheduleSettings::default();
        let now = at(20, 12, 0);
        let asked = now + TimeDelta::hours(30);
        let h = FeedHistory {
            not_before: Some(asked),
            ..Default::default()
        };
        assert_eq!(
            next_check(now, &h, &s),
            asked,
            "Retry-After beyond max_interval"
        );
        let h = FeedHistory {
            not_before: Some(now + TimeDelta::days(30)),
            ..Default::default()
        };
        assert_eq!(next_check(now, &h, &s), now + TimeDelta::days(7), "capped");
        let h = FeedHistory {
            at_latest: Some(now + TimeDelta::hours(2)),
            ..Default::default()
        };
        assert_eq!(next_check(now, &h, &s), now + TimeDelta::hours(2));
        let h = FeedHistory {
            at_latest: Some(now),
            ..Default::default()
        };
        assert_eq!(
            next_check(now, &h, &s),
            now + TimeDelta::minutes(30),
            "never sooner than min"
        );
    }

    proptest! {
        #[test]
        fn without_errors_or_requests_a_check_stays_within_the_bounds(
            n in 0usize..200, hour in 0u32..24, minute in 0u32..60, clustered in any::<bool>(),
        ) {
            let s = ScheduleSettings::default();
            let now = at(20, hour, minute);
            let times = if clustered {
                (0..n).map(|i| now - TimeDelta::days(i as i64 % 7) - TimeDelta::minutes(i as i64 % 40)).collect()
            } else {
                spread(now, n)
            };
            let next = next_check(now, &FeedHistory { publish_times: &times, ..Default::default() }, &s);
            prop_assert!(next >= now + s.min_interval, "{next}");
            prop_assert!(next <= now + s.max_interval, "{next}");
        }

        #[test]
        fn more_articles_never_mean_later_checks(a in 0usize..300, b in 0usize..300) {
            // Frequency alone: a habit may bring either check forward.
            let s = ScheduleSettings { habit_min_samples: usize::MAX, ..ScheduleSettings::default() };
            let (few, many) = (a.min(b), a.max(b));
            prop_assert!(interval_for(many, &s) <= interval_for(few, &s));
            let now = at(20, 12, 0);
            let h = |n| next_check(now, &FeedHistory { publish_times: &spread(now, n), ..Default::default() }, &s);
            prop_assert!(h(many) <= h(few));
        }

        #[test]
        fn errors_back_off_further_each_time(n in 0usize..100, streak in 0u32..40) {
            let s = ScheduleSettings::default();
            let now = at(20, 12, 0);
            let times = spread(now, n);
            let after = |e| next_check(now, &FeedHistory { publish_times: &times, error_streak: e, ..Default::default() }, &s);
            prop_assert!(after(streak + 1) >= after(streak));
            prop_assert!(after(streak) <= now + s.max_interval.max(s.max_backoff));
            if streak > 0 {
                let floor = (s.min_interval * 2).min(s.max_backoff);
                prop_assert!(after(streak) >= now + floor);
            }
        }

        #[test]
        fn the_upstreams_wait_is_kept(wait_min in 0i64..20_000, n in 0usize..50) {
            let s = ScheduleSettings::default();
            let now = at(20, 12, 0);
            let asked = now + TimeDelta::minutes(wait_min);
            let times = spread(now, n);
            let next = next_check(now, &FeedHistory { publish_times: &times, not_before: Some(asked), ..Default::default() }, &s);
            prop_assert!(next >= asked.min(now + s.retry_after_cap));
        }
    }
}
