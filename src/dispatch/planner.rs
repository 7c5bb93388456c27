//! How fresh a fleet can keep its feeds, and how many logins a freshness target needs
//! (issue 15, `cascade plan`). Pure arithmetic over measured publishing rates.
//!
//! The model: a feed checked every `T` reads each new article after a wait spread evenly over
//! `[0, T)`, so the age of an article when read is uniform on `[0, T)` for its feed. Over all
//! articles, the ages form a mixture weighted by each feed's publishing rate; its p50 and p95
//! are what the plan reports. With a fixed number of checks a day, the mean age is least when
//! each feed's interval is proportional to 1/√(its rate) (the square-root rule), clamped to
//! the schedule's `[min_interval, max_interval]`; a feed that published nothing is checked
//! every `max_interval`. When the budget cannot check every feed even once per
//! `max_interval`, every interval stretches alike and the plan says so (`starved`).

use chrono::TimeDelta;

/// Seconds in a day.
const DAY: f64 = 86_400.0;

/// A feed to plan for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanFeed {
    /// Articles it published per day, measured.
    pub per_day: f64,
}

/// What the plan is asked about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanInput {
    /// Checks the fleet can make in a day (its logins' daily budget ÷ calls per check).
    pub checks_per_day: f64,
    /// The shortest interval between two checks of a feed.
    pub min_interval: TimeDelta,
    /// The longest interval that keeps a feed fed.
    pub max_interval: TimeDelta,
}

/// How fresh the feeds can be kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// Checks a day the plan spends (at most the budget).
    pub checks_per_day: f64,
    /// Median age of an article when read.
    pub p50: TimeDelta,
    /// 95th percentile of that age.
    pub p95: TimeDelta,
    /// The longest interval any feed gets.
    pub longest_interval: TimeDelta,
    /// Feeds checked less often than `max_interval` because the budget is too small.
    pub starved: usize,
}

/// Seconds, as a time span.
#[allow(clippy::cast_possible_truncation)]
fn span(seconds: f64) -> TimeDelta {
    TimeDelta::seconds(seconds.round().clamp(0.0, 1e12) as i64)
}

#[allow(clippy::cast_precision_loss)]
fn secs(t: TimeDelta) -> f64 {
    t.num_seconds().max(1) as f64
}

/// Feeds of one publishing rate: the planner's unit, so its cost grows with the number of
/// distinct rates (a few hundred), not of feeds.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Articles a day of each feed.
    rate: f64,
    /// How many feeds.
    n: f64,
}

/// `feeds` grouped by rate, slowest first.
fn buckets(feeds: &[PlanFeed]) -> Vec<Bucket> {
    let mut rates: Vec<f64> = feeds.iter().map(|f| f.per_day.max(0.0)).collect();
    rates.sort_by(f64::total_cmp);
    let mut out: Vec<Bucket> = Vec::new();
    for rate in rates {
        match out.last_mut() {
            Some(b) if b.rate == rate => b.n += 1.0,
            _ => out.push(Bucket { rate, n: 1.0 }),
        }
    }
    out
}

/// Each bucket's interval (seconds) under the square-root rule with scale `k`.
fn intervals(buckets: &[Bucket], k: f64, min: f64, max: f64) -> Vec<f64> {
    buckets
        .iter()
        .map(|b| {
            if b.rate > 0.0 {
                (k / b.rate.sqrt()).clamp(min, max)
            } else {
                max
            }
        })
        .collect()
}

/// Checks a day of every feed at these intervals.
fn checks(buckets: &[Bucket], intervals: &[f64]) -> f64 {
    // `+ 0.0`: an empty sum is -0.0.
    buckets
        .iter()
        .zip(intervals)
        .map(|(b, t)| b.n * DAY / t)
        .sum::<f64>()
        + 0.0
}

/// The intervals (seconds) that spend at most `budget` checks a day with the least mean age.
fn best_intervals(buckets: &[Bucket], input: &PlanInput) -> Vec<f64> {
    let min = secs(input.min_interval);
    let max = secs(input.max_interval).max(min);
    let budget = input.checks_per_day.max(0.0);
    let spend = |k: f64| checks(buckets, &intervals(buckets, k, min, max));
    let floor = intervals(buckets, f64::INFINITY, min, max);
    if checks(buckets, &floor) > budget {
        // Not even one check per `max_interval` each: stretch them all alike.
        let stretch = if budget > 0.0 {
            checks(buckets, &floor) / budget
        } else {
            f64::INFINITY
        };
        return floor.iter().map(|t| t * stretch).collect();
    }
    if spend(0.0) <= budget {
        return intervals(buckets, 0.0, min, max);
    }
    // `checks` falls as `k` grows: find the least `k` within budget.
    let (mut lo, mut hi) = (0.0_f64, max * 1e3);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if spend(mid) > budget {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    intervals(buckets, hi, min, max)
}

/// The `q`-quantile of article ages when each feed's ages are uniform on `[0, interval)`,
/// weighted by publishing rate. `None` when no feed publishes.
fn age_quantile(buckets: &[Bucket], intervals: &[f64], q: f64) -> Option<f64> {
    let total: f64 = buckets.iter().map(|b| b.rate * b.n).sum();
    if total <= 0.0 {
        return None;
    }
    let share_below = |x: f64| -> f64 {
        buckets
            .iter()
            .zip(intervals)
            .map(|(b, t)| b.rate * b.n / total * (x / t).min(1.0))
            .sum()
    };
    let (mut lo, mut hi) = (0.0_f64, intervals.iter().copied().fold(0.0, f64::max));
    if !hi.is_finite() {
        return Some(f64::INFINITY);
    }
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if share_below(mid) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// How fresh `feeds` can be kept within the input's budget.
pub fn freshness(feeds: &[PlanFeed], input: &PlanInput) -> Freshness {
    freshness_of(&buckets(feeds), input)
}

fn freshness_of(buckets: &[Bucket], input: &PlanInput) -> Freshness {
    let ivs = best_intervals(buckets, input);
    let max = secs(input.max_interval);
    let p = |q| age_quantile(buckets, &ivs, q).map_or(TimeDelta::zero(), span);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let starved = buckets
        .iter()
        .zip(&ivs)
        .filter(|(_, t)| **t > max * 1.000_001)
        .map(|(b, _)| b.n)
        .sum::<f64>() as usize;
    Freshness {
        checks_per_day: checks(buckets, &ivs),
        p50: p(0.5),
        p95: p(0.95),
        longest_interval: span(ivs.iter().copied().fold(0.0, f64::max)),
        starved,
    }
}

/// The fewest checks a day that keep the p95 age at or under `target`; `None` when no budget
/// can (the target is under what `min_interval` allows).
pub fn checks_for(feeds: &[PlanFeed], input: &PlanInput, target: TimeDelta) -> Option<f64> {
    let most = PlanInput {
        checks_per_day: f64::MAX,
        ..*input
    };
    let buckets = buckets(feeds);
    let unbounded = freshness_of(&buckets, &most);
    if unbounded.p95 > target {
        return None;
    }
    let (mut lo, mut hi) = (0.0_f64, unbounded.checks_per_day);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        let at = PlanInput {
            checks_per_day: mid,
            ..*input
        };
        let f = freshness_of(&buckets, &at);
        if f.p95 <= target && f.starved == 0 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Logins needed for `checks_per_day` when each may make `calls_per_day` calls and a check
/// costs `calls_per_check` of them; one when a login has no cap (`None` or 0), none when
/// nothing needs checking.
pub fn logins_for(checks_per_day: f64, calls_per_day: Option<f64>, calls_per_check: f64) -> usize {
    match calls_per_day {
        _ if checks_per_day <= 0.0 => 0,
        Some(cap) if cap > 0.0 => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let n = (checks_per_day * calls_per_check.max(0.0) / cap).ceil() as usize;
            n.max(1)
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(checks_per_day: f64) -> PlanInput {
        PlanInput {
            checks_per_day,
            min_interval: TimeDelta::minutes(30),
            max_interval: TimeDelta::hours(24),
        }
    }

    /// The budget scenario's shape: a few feeds post several times a day, most rarely.
    fn skewed() -> Vec<PlanFeed> {
        let mut feeds = vec![PlanFeed { per_day: 4.0 }; 10];
        feeds.extend(vec![PlanFeed { per_day: 0.2 }; 90]);
        feeds
    }

    #[test]
    fn one_feed_checked_hourly_reads_articles_at_half_an_hour_median() {
        let feeds = [PlanFeed { per_day: 24.0 }];
        let f = freshness(&feeds, &input(24.0));
        assert_eq!(f.checks_per_day.round(), 24.0);
        assert_eq!(f.p50, TimeDelta::minutes(30));
        assert_eq!(f.p95, TimeDelta::minutes(57));
        assert_eq!(f.starved, 0);
    }

    #[test]
    fn a_budget_is_spent_on_busy_feeds_first() {
        let feeds = skewed();
        // Every feed once a day costs 100 checks; 250 leaves 150 to spread.
        let f = freshness(&feeds, &input(250.0));
        assert!((f.checks_per_day - 250.0).abs() < 0.5, "{f:?}");
        let even = 86_400.0 * 100.0 / 250.0;
        // Buckets are slowest first: the 90 rare feeds, then the 10 busy ones.
        let ivs = best_intervals(&buckets(&feeds), &input(250.0));
        assert!(
            ivs[1] < even && ivs[0] > even,
            "busy {} rare {}",
            ivs[1],
            ivs[0]
        );
        assert_eq!(f.starved, 0);
    }

    #[test]
    fn feeds_of_one_rate_are_planned_together() {
        let feeds = skewed();
        let b = buckets(&feeds);
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(
            (b[0].rate, b[0].n, b[1].rate, b[1].n),
            (0.2, 90.0, 4.0, 10.0)
        );
        // A hundred thousand feeds of these two rates plan like a hundred, scaled.
        let many: Vec<PlanFeed> = feeds.iter().cycle().take(100_000).copied().collect();
        let (small, large) = (
            freshness(&feeds, &input(250.0)),
            freshness(&many, &input(250_000.0)),
        );
        assert_eq!(small.p95, large.p95);
        assert_eq!(large.starved, 0);
    }

    #[test]
    fn too_small_a_budget_starves_every_feed_alike() {
        let feeds = skewed();
        let f = freshness(&feeds, &input(50.0));
        assert_eq!(f.starved, 100);
        assert_eq!(f.longest_interval, TimeDelta::hours(48));
        assert!((f.checks_per_day - 50.0).abs() < 0.01);
        let none = freshness(&feeds, &input(0.0));
        assert_eq!(none.starved, 100);
    }

    #[test]
    fn logins_for_a_target_on_a_fixed_fleet() {
        let feeds = skewed();
        let need = checks_for(&feeds, &input(0.0), TimeDelta::hours(6)).expect("reachable");
        let f = freshness(&feeds, &input(need));
        assert!(f.p95 <= TimeDelta::hours(6), "{f:?}");
        let less = freshness(&feeds, &input(need * 0.95));
        assert!(less.p95 > TimeDelta::hours(6), "the least budget: {less:?}");
        // WeRead's 25 calls a day per login, one call a check.
        assert_eq!(
            logins_for(need, Some(25.0), 1.0),
            (need / 25.0).ceil() as usize
        );
        assert_eq!(logins_for(need, None, 1.0), 1);
        assert_eq!(logins_for(0.0, Some(25.0), 1.0), 0, "nothing to check");
        assert_eq!(
            checks_for(&feeds, &input(0.0), TimeDelta::minutes(10)),
            None,
            "under min_interval"
        );
    }

    proptest! {
        #[test]
        fn more_budget_never_makes_articles_older(
            rates in proptest::collection::vec(0.0f64..10.0, 1..40), a in 1.0f64..2_000.0, b in 1.0f64..2_000.0,
        ) {
            let feeds: Vec<PlanFeed> = rates.iter().map(|&per_day| PlanFeed { per_day }).collect();
            let (small, big) = (a.min(b), a.max(b));
            let (fs, fb) = (freshness(&feeds, &input(small)), freshness(&feeds, &input(big)));
            prop_assert!(fb.p95 <= fs.p95 + TimeDelta::seconds(1), "{fs:?} {fb:?}");
            prop_assert!(fb.starved <= fs.starved);
            prop_assert!(fs.checks_per_day <= small * 1.000_01 + 1e-6);
        }
    }
}
