//! The freshness planner behind `GET {P}/plan` and `cascade plan` (issue 15): from each
//! feed's measured publishing rate and the fleet's usable logins, the freshness the fleet
//! can keep and the logins a p95 target needs.

use crate::dispatch::Source;
use crate::dispatch::planner::{self, PlanFeed, PlanInput};
use crate::logins::budget::Budgets;
use crate::parent::AppState;
use crate::parent::error::{ApiError, ApiResult};
use chrono::TimeDelta;
use serde_json::{Value, json};

/// What an operator asks of the planner; each `None` takes its default.
#[derive(Debug, Clone, Default)]
pub struct PlanAsk {
    /// The p95 age of an article when read to plan for (`30m`, `1h`, `2d`).
    pub target: Option<String>,
    /// Days of articles to measure publishing rates over (1–365, default 28).
    pub days: Option<i64>,
    /// Calls one WeRead login may make a day (default: the `budget_per_day` setting, 25).
    pub per_login_day: Option<f64>,
    /// Login calls one check of a feed costs (default 1: one list page).
    pub calls_per_check: Option<f64>,
}

/// A span written `90s`, `30m`, `1h`, `2d` (or bare seconds).
pub fn parse_span(text: &str) -> Option<TimeDelta> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    TimeDelta::try_seconds(n.checked_mul(seconds)?)
}

/// A span in whole seconds, for the answer.
fn seconds(t: TimeDelta) -> i64 {
    t.num_seconds()
}

/// Runs the planner on this parent's feeds and logins.
///
/// # Errors
/// 400 for a malformed or out-of-range question; a store failure.
pub async fn plan(state: &AppState, ask: PlanAsk) -> ApiResult<Value> {
    let target =
        match ask.target.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(t) => Some(parse_span(t).ok_or_else(|| {
                ApiError::bad_request("target must be a span such as 30m, 1h or 2d")
            })?),
            None => None,
        };
    let days = ask.days.unwrap_or(28);
    if !(1..=365).contains(&days) {
        return Err(ApiError::bad_request("days must be between 1 and 365"));
    }
    let c = &state.config.cascade;
    let caps = Budgets::from_config(c).weread;
    let default_day = match (caps.per_day, caps.per_hour) {
        (0, 0) => None,
        (0, h) => Some(h.saturating_mul(24)),
        (d, 0) => Some(d),
        (d, h) => Some(d.min(h.saturating_mul(24))),
    };
    let calls_per_check = ask.calls_per_check.unwrap_or(1.0);
    let sane = |n: f64, most: f64| n > 0.0 && n <= most;
    if !sane(calls_per_check, 1_000.0) || ask.per_login_day.is_some_and(|d| !sane(d, 1e9)) {
        return Err(ApiError::bad_request(
            "per_login_day and calls_per_check must be positive numbers",
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let per_login_day = ask.per_login_day.or(default_day.map(|d| d as f64));
    let now = state.clock.now();
    let since = (now - TimeDelta::days(days)).and_utc().timestamp();
    let facts = state.store.plan_facts(since).await?;
    #[allow(clippy::cast_precision_loss)]
    let mut feeds: Vec<PlanFeed> = Vec::new();
    let mut rss = 0;
    for &(source, articles, n) in &facts.feeds {
        let n = usize::try_from(n).unwrap_or(0);
        if source == Source::Wechat {
            let per_day = articles as f64 / days as f64;
            feeds.extend(std::iter::repeat_n(PlanFeed { per_day }, n));
        } else {
            rss += n;
        }
    }
    let schedule = crate::parent::reaper::schedule_settings(c);
    let (min_interval, max_interval) = (schedule.min_interval, schedule.max_interval);
    #[allow(clippy::cast_precision_loss)]
    let budget = match per_login_day {
        Some(d) => facts.weread_logins as f64 * d / calls_per_check,
        None if facts.weread_logins > 0 => f64::MAX,
        None => 0.0,
    };
    let input = PlanInput {
        checks_per_day: budget,
        min_interval,
        max_interval,
    };
    // The bisections cost up to a few hundred milliseconds with thousands of distinct
    // rates: off the request threads.
    let (now_fresh, needed, feeds) = tokio::task::spawn_blocking(move || {
        let fresh = planner::freshness(&feeds, &input);
        let needed = target.map(|t| (t, planner::checks_for(&feeds, &input, t)));
        (fresh, needed, feeds)
    })
    .await
    .map_err(|_| ApiError::internal(&"the planner failed"))?;
    let reads = budget > 0.0 || feeds.is_empty();
    let target_view = needed.map(|(t, needed)| {
        match needed {
            Some(checks) => json!({
                "p95_seconds": seconds(t),
                "reachable": true,
                "checks_per_day": checks.ceil(),
                "weread_logins": planner::logins_for(checks, per_login_day, calls_per_check),
            }),
            None => json!({
                "p95_seconds": seconds(t),
                "reachable": false,
                "why": "under what check_min_interval allows: a feed is checked at most once per check_min_interval",
            }),
        }
    });
    Ok(json!({
        "window_days": days,
        "feeds": {
            "wechat": feeds.len(),
            "rss": rss,
            "silent": feeds.iter().filter(|f| f.per_day <= 0.0).count(),
        },
        "articles_per_day": feeds.iter().map(|f| f.per_day).sum::<f64>() + 0.0,
        "logins": { "weread": facts.weread_logins, "mp": facts.mp_logins },
        "per_login_day": per_login_day,
        "calls_per_check": calls_per_check,
        "min_interval_seconds": seconds(min_interval),
        "max_interval_seconds": seconds(max_interval),
        "now": {
            "checks_per_day": now_fresh.checks_per_day.ceil(),
            // With no budget at all, articles are never read: no age to give.
            "p50_seconds": reads.then(|| seconds(now_fresh.p50)),
            "p95_seconds": reads.then(|| seconds(now_fresh.p95)),
            "longest_interval_seconds": reads.then(|| seconds(now_fresh.longest_interval)),
            "starved": now_fresh.starved,
        },
        "target": target_view,
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_span;
    use chrono::TimeDelta;

    #[test]
    fn spans_read_with_their_unit() {
        assert_eq!(parse_span("90"), Some(TimeDelta::seconds(90)));
        assert_eq!(parse_span("30m"), Some(TimeDelta::minutes(30)));
        assert_eq!(parse_span(" 1h "), Some(TimeDelta::hours(1)));
        assert_eq!(parse_span("2d"), Some(TimeDelta::days(2)));
        for bad in ["", "h", "0h", "-1h", "1w", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_span(bad), None, "{bad}");
        }
    }
}
