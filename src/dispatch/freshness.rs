//! Freshness mode's pure rules (issue 15): which due feeds go first and how fast a fleet's
//! daily budget is spent. The parent's scheduler and `cascade bench freshness --budget` use
//! the same code.
//!
//! - **Order**: the feed due longest goes first. A priority moves a feed ahead by
//!   `priority × aging_step`, so a higher priority overtakes waiting lower-priority feeds by at
//!   most that much: a low priority is delayed, never starved.
//! - **Pace**: a day's calls are spread over the day (a generic cell-rate algorithm): one call
//!   every `day ÷ calls_per_day`, with a small burst. Without it a login's daily budget would
//!   go in its first hours and every feed would wait for the next day.

use chrono::{NaiveDateTime, TimeDelta};

/// How a parent dispatches feeds (the `dispatch_mode` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DispatchMode {
    /// WeRSS's way, the default: each task's cron dispatches all its feeds.
    #[default]
    Cron,
    /// Due feeds continuously, the longest due first, within capacity and budgets.
    Freshness,
}

impl DispatchMode {
    /// Reads the setting (`cron`, `freshness`; case and spaces ignored).
    ///
    /// # Errors
    /// Any other value.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "cron" => Ok(Self::Cron),
            "freshness" => Ok(Self::Freshness),
            other => Err(format!(
                "dispatch_mode must be cron or freshness, not '{other}'"
            )),
        }
    }
}

/// The key a due feed is taken by (smallest first): its due time moved earlier by its
/// priority. Never-planned feeds are due since `epoch`, so they go first.
pub fn order_key(due: NaiveDateTime, priority: i64, aging_step: TimeDelta) -> NaiveDateTime {
    let ahead = aging_step
        .checked_mul(i32::try_from(priority.clamp(-1_000, 1_000)).unwrap_or(0))
        .unwrap_or(TimeDelta::zero());
    due.checked_sub_signed(ahead).unwrap_or(due)
}

/// Spreads a daily number of calls evenly over the day.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// When the next call is due on the even schedule (GCRA's "theoretical arrival time").
    next: Option<NaiveDateTime>,
    /// The daily number `next` was paced by.
    per_day: Option<u64>,
}

impl Pacer {
    /// A pacer that has spent nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many of `wanted` calls may go at `now` for a budget of `per_day` calls a day, at
    /// most `burst` ahead of the even schedule; the calls allowed are counted as spent.
    /// `None` = no daily budget: everything wanted may go.
    pub fn allow(
        &mut self,
        now: NaiveDateTime,
        per_day: Option<u64>,
        burst: u64,
        wanted: usize,
    ) -> usize {
        if per_day != self.per_day {
            // A new budget (logins came or went): the old pace no longer holds calls back.
            self.next = self.next.map(|t| t.min(now));
            self.per_day = per_day;
        }
        let Some(per_day) = per_day else {
            return wanted;
        };
        if per_day == 0 || wanted == 0 {
            return 0;
        }
        let step_ms = Self::step_ms(per_day);
        let step = TimeDelta::milliseconds(i64::try_from(step_ms).unwrap_or(i64::MAX));
        let next = self.next.map_or(now, |t| t.max(now));
        // Calls that fit before `now + burst steps`.
        let room = (now - next).num_milliseconds()
            + i64::try_from(burst.max(1).saturating_mul(step_ms)).unwrap_or(i64::MAX);
        let fits = usize::try_from(room.max(0) / i64::try_from(step_ms).unwrap_or(i64::MAX))
            .unwrap_or(usize::MAX);
        let n = wanted.min(fits);
        self.next = Some(next + step * i32::try_from(n).unwrap_or(i32::MAX));
        n
    }

    /// Gives back `n` calls [`Pacer::allow`] counted but that were not made.
    pub fn refund(&mut self, n: usize) {
        let (Some(next), Some(per_day)) = (self.next, self.per_day) else {
            return;
        };
        if per_day == 0 {
            return;
        }
        let back = i64::try_from(Self::step_ms(per_day))
            .unwrap_or(i64::MAX)
            .saturating_mul(i64::try_from(n).unwrap_or(i64::MAX));
        self.next = Some(
            next.checked_sub_signed(TimeDelta::milliseconds(back))
                .unwrap_or(next),
        );
    }

    fn step_ms(per_day: u64) -> u64 {
        (86_400_000 / per_day).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64, m: i64) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 2)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t + TimeDelta::hours(h) + TimeDelta::minutes(m))
            .expect("a valid time")
    }

    #[test]
    fn dispatch_mode_reads_cron_and_freshness_only() {
        assert_eq!(
            DispatchMode::parse(" Freshness "),
            Ok(DispatchMode::Freshness)
        );
        assert_eq!(DispatchMode::parse(""), Ok(DispatchMode::Cron));
        assert!(DispatchMode::parse("fast").is_err());
    }

    #[test]
    fn a_day_of_calls_is_spread_over_the_day() {
        let mut p = Pacer::new();
        // 24 a day with a burst of 2: two at once, then one an hour.
        assert_eq!(p.allow(at(0, 0), Some(24), 2, 10), 2);
        assert_eq!(p.allow(at(0, 30), Some(24), 2, 10), 0);
        assert_eq!(p.allow(at(1, 0), Some(24), 2, 10), 1);
        let mut spent = 3;
        for minute in 61..24 * 60 {
            spent += p.allow(at(0, minute), Some(24), 2, 10);
        }
        assert_eq!(spent, 25, "a burst of 2 ahead, then one per hour");
    }

    #[test]
    fn calls_not_made_are_given_back_and_a_new_budget_applies_at_once() {
        let mut p = Pacer::new();
        assert_eq!(p.allow(at(0, 0), Some(24), 2, 2), 2);
        p.refund(1);
        assert_eq!(p.allow(at(0, 0), Some(24), 2, 2), 1, "the refunded call");
        assert_eq!(p.allow(at(0, 1), Some(24), 2, 2), 0);
        // Twice the logins: the old pace no longer holds the calls back.
        assert_eq!(p.allow(at(0, 2), Some(48), 2, 5), 2);
    }

    #[test]
    fn an_idle_pacer_does_not_save_up_more_than_its_burst() {
        let mut p = Pacer::new();
        assert_eq!(p.allow(at(0, 0), Some(24), 3, 1), 1);
        assert_eq!(p.allow(at(12, 0), Some(24), 3, 100), 3);
    }

    #[test]
    fn no_budget_means_no_pacing_and_a_zero_budget_means_none() {
        let mut p = Pacer::new();
        assert_eq!(p.allow(at(0, 0), None, 1, 7), 7);
        assert_eq!(p.allow(at(0, 0), Some(0), 1, 7), 0);
    }

    #[test]
    fn priority_moves_a_feed_ahead_by_its_aging_steps_only() {
        let step = TimeDelta::minutes(30);
        let urgent = order_key(at(2, 0), 2, step);
        assert_eq!(urgent, at(1, 0));
        // A feed due since 00:30 with no priority still goes before it: it waited longer
        // than two aging steps.
        assert!(order_key(at(0, 30), 0, step) < urgent);
        assert_eq!(order_key(at(2, 0), 0, step), at(2, 0));
    }
}
