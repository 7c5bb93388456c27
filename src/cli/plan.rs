//! `cascade plan`: asks the parent's planner (`GET {P}/plan`) how fresh the fleet can keep
//! its feeds and how many logins a target needs, and prints the answer for people.

use super::api::Api;
use super::table::{Table, print};
pub use crate::parent::ops::plan::PlanAsk;
use serde_json::Value;

/// A number of seconds as people read it: `45s`, `12m`, `3h 20m`, `2d 4h`; `-` for none.
fn human(v: &Value) -> String {
    let Some(s) = v.as_i64() else {
        return "-".into();
    };
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The plan as rows of a two-column table.
fn table(d: &Value) -> Table {
    let mut t = Table::new(&["WHAT", "PLAN"]);
    let mut row = |k: &str, v: String| t.row(vec![k.to_string(), v]);
    let f = &d["feeds"];
    row(
        "feeds",
        format!(
            "{} WeChat ({} silent), {} RSS",
            f["wechat"], f["silent"], f["rss"]
        ),
    );
    row(
        "articles a day",
        format!(
            "{:.1} (measured over {} days)",
            d["articles_per_day"].as_f64().unwrap_or(0.0),
            d["window_days"]
        ),
    );
    let per_login = d["per_login_day"]
        .as_f64()
        .map_or("no cap".into(), |n| format!("{n} calls a day each"));
    row(
        "WeRead logins",
        format!("{} usable, {per_login}", d["logins"]["weread"]),
    );
    let now = &d["now"];
    let count = |v: &Value| format!("{:.0}", v.as_f64().unwrap_or(0.0));
    row("checks a day", count(&now["checks_per_day"]));
    row(
        "article age when read",
        format!(
            "p50 {}, p95 {}",
            human(&now["p50_seconds"]),
            human(&now["p95_seconds"])
        ),
    );
    row(
        "longest interval",
        format!(
            "{} ({} feeds starved)",
            human(&now["longest_interval_seconds"]),
            now["starved"]
        ),
    );
    let target = &d["target"];
    if target.is_object() {
        let line = if target["reachable"] == true {
            format!(
                "{} WeRead logins ({} checks a day)",
                target["weread_logins"],
                count(&target["checks_per_day"])
            )
        } else {
            format!(
                "unreachable: {}",
                target["why"].as_str().unwrap_or_default()
            )
        };
        row(
            &format!("for p95 ≤ {}", human(&target["p95_seconds"])),
            line,
        );
    }
    t
}

/// Runs `cascade plan`.
///
/// # Errors
/// The parent refused the question or could not be reached.
pub async fn plan(api: &Api, json: bool, args: PlanAsk) -> anyhow::Result<()> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(t) = args.target {
        query.push(("target", t));
    }
    if let Some(d) = args.days {
        query.push(("days", d.to_string()));
    }
    if let Some(n) = args.per_login_day {
        query.push(("per_login_day", n.to_string()));
    }
    if let Some(n) = args.calls_per_check {
        query.push(("calls_per_check", n.to_string()));
    }
    let query = serde_urlencoded::to_string(&query)?;
    let data = api.get(&format!("/plan?{query}")).await?;
    print(json, &data, table)
}

#[cfg(test)]
mod tests {
    use super::human;
    use serde_json::json;

    #[test]
    fn spans_print_for_people() {
        let cases = [
            (json!(45), "45s"),
            (json!(720), "12m"),
            (json!(3 * 3_600), "3h"),
            (json!(3 * 3_600 + 20 * 60), "3h 20m"),
            (json!(2 * 86_400), "2d"),
            (json!(2 * 86_400 + 4 * 3_600 + 59), "2d 4h"),
            (json!(null), "-"),
        ];
        for (v, want) in cases {
            assert_eq!(human(&v), want);
        }
    }
}
