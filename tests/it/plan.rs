//! The freshness planner (`GET {P}/plan`, issue 15): measured publishing rates and the
//! fleet's usable logins in, freshness and the logins a target needs out.

use crate::cli::initialised_db;
use crate::helpers::db::{execute, on_both};
use crate::helpers::process::cascade_cmd;
use crate::helpers::{TestParent, cascade};
use chrono::TimeDelta;
use serde_json::json;
use werss_cascade::dispatch::planner::{self, PlanFeed, PlanInput};

/// Articles of `feed`, one every `every` seconds back from `now` (epoch seconds).
fn articles(feed: &str, now: i64, n: i64, every: i64, first_back: i64) -> String {
    (0..n)
        .map(|i| {
            let t = now - first_back - i * every;
            format!(
                "INSERT INTO we_articles (id, mp_id, title, publish_time) \
                 VALUES ('{feed}-{i}', '{feed}', 't', {t});"
            )
        })
        .collect()
}

on_both! {
    #[tokio::test]
    async fn the_plan_reads_rates_and_logins_and_answers_a_target(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(1600, 3).await;
        let now = p.clock.now().and_utc().timestamp();
        let day = 86_400;
        // Two a day for 28 days; none; one a day, plus five older than the window.
        let sql = articles(&feeds[0], now, 56, day / 2, 600)
            + &articles(&feeds[2], now, 28, day, 600)
            + &(0..5)
                .map(|i| format!(
                    "INSERT INTO we_articles (id, mp_id, title, publish_time) \
                     VALUES ('old-{i}', '{}', 't', {});", feeds[2], now - 40 * day - i))
                .collect::<String>();
        execute(&p.state.config.db, &sql).await;
        let login = |id: &str, state: &str| json!({"id": id, "kind": "weread", "name": id, "state": state,
            "expires_at": "2099-01-01T00:00:00Z", "cooldown_until": null, "last_ok_at": null, "last_error": null});
        p.online_node("reader", json!({"fetchers": ["wechat"], "capacity": 10,
            "logins": [login("a", "valid"), login("b", "valid"), login("c", "expired")]})).await;

        let r = p.get(&cascade("/plan?target=6h"), &p.admin()).await;
        let d = r.ok();
        assert_eq!(d["window_days"], 28, "{d}");
        assert_eq!(d["feeds"], json!({"wechat": 3, "rss": 0, "silent": 1}), "{d}");
        assert_eq!(d["articles_per_day"], 3.0, "{d}");
        assert_eq!(d["logins"]["weread"], 2, "an expired login does not count: {d}");
        assert_eq!(d["per_login_day"], 25.0, "the budget_per_day default");
        assert_eq!(d["now"]["starved"], 0, "{d}");

        // The same numbers the planner gives for these rates and 2 × 25 checks a day.
        let rates = [PlanFeed { per_day: 2.0 }, PlanFeed { per_day: 0.0 }, PlanFeed { per_day: 1.0 }];
        let input = PlanInput {
            checks_per_day: 50.0,
            min_interval: TimeDelta::minutes(30),
            max_interval: TimeDelta::hours(24),
        };
        let expected = planner::freshness(&rates, &input);
        assert_eq!(d["now"]["p95_seconds"], expected.p95.num_seconds(), "{d}");
        assert_eq!(d["now"]["p50_seconds"], expected.p50.num_seconds(), "{d}");
        let checks = planner::checks_for(&rates, &input, TimeDelta::hours(6)).expect("reachable");
        assert_eq!(d["target"]["reachable"], true, "{d}");
        assert_eq!(d["target"]["checks_per_day"], checks.ceil(), "{d}");
        assert_eq!(d["target"]["weread_logins"], (checks / 25.0).ceil() as i64, "{d}");
        assert!(expected.p95 < TimeDelta::hours(24) && expected.p95 > TimeDelta::minutes(30));

        // Fewer checks a login: more logins for the same target.
        let tight = p.get(&cascade("/plan?target=6h&per_login_day=2"), &p.admin()).await;
        assert_eq!(tight.ok()["target"]["weread_logins"], (checks / 2.0).ceil() as i64);

        let under = p.get(&cascade("/plan?target=10m"), &p.admin()).await;
        assert_eq!(under.ok()["target"]["reachable"], false);
        for bad in ["target=soon", "days=0", "days=9999", "days=abc", "calls_per_check=0", "per_login_day=-1"] {
            let r = p.get(&cascade(&format!("/plan?{bad}")), &p.admin()).await;
            assert_eq!(r.err(400), "bad_request", "{bad}");
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn without_logins_nothing_is_read_and_the_plan_says_so(backend) {
        let p = TestParent::on(backend.clone()).await;
        p.feeds(1700, 2).await;
        let r = p.get(&cascade("/plan"), &p.admin()).await;
        let d = r.ok();
        assert_eq!(d["logins"]["weread"], 0, "{d}");
        assert_eq!(d["now"]["checks_per_day"], 0.0, "{d}");
        assert_eq!(d["now"]["starved"], 2, "{d}");
        assert_eq!(d["now"]["p95_seconds"], serde_json::Value::Null, "{d}");
        assert_eq!(d["target"], serde_json::Value::Null);
        p.shutdown().await;
    }
}

#[tokio::test]
async fn plan_says_how_fresh_the_feeds_can_be_and_what_a_target_needs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = initialised_db(&dir).await;
    let store = werss_cascade::store::Store::connect(&db)
        .await
        .expect("store");
    let feeds = ["MP_WXS_9100", "MP_WXS_9101"]
        .map(|id| werss_cascade::store::NewFeed::wechat(id, id))
        .to_vec();
    let now = chrono::Utc::now().naive_utc();
    store.create_feeds(feeds, now).await.expect("feeds");
    drop(store);
    // 28 articles in the last 28 days for one feed; the other is silent.
    let epoch = now.and_utc().timestamp();
    let sql: String = (0..28)
        .map(|i| {
            format!(
                "INSERT INTO we_articles (id, mp_id, title, publish_time) \
                 VALUES ('a{i}', 'MP_WXS_9100', 't', {});",
                epoch - 3_600 - i * 86_400
            )
        })
        .collect();
    execute(&db, &sql).await;

    let run = |args: &[&str]| {
        let mut cmd = cascade_cmd(dir.path());
        cmd.args(["plan", "--db", &db]).args(args);
        cmd
    };
    let out = run(&["--target", "2h"]).output().await.expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 WeChat (1 silent), 0 RSS"), "{stdout}");
    assert!(stdout.contains("1.0 (measured over 28 days)"), "{stdout}");
    assert!(stdout.contains("0 usable, 25 calls a day each"), "{stdout}");
    assert!(stdout.contains("for p95 ≤ 2h"), "{stdout}");

    let out = run(&["--target", "2h", "--json"])
        .output()
        .await
        .expect("runs");
    let data: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(data["target"]["reachable"], true, "{data}");
    let logins = data["target"]["weread_logins"].as_i64().expect("a count");
    let checks = data["target"]["checks_per_day"].as_f64().expect("checks");
    assert_eq!(logins, (checks / 25.0).ceil() as i64, "{data}");
    assert!(
        checks >= 12.0,
        "a daily poster read within 2 h at p95 needs checks: {data}"
    );

    let out = run(&["--target", "soon"]).output().await.expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("target must be a span"), "{stderr}");
}
