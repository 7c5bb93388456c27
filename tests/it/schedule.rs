//! Per-feed schedules (issue 15): a completion clears each feed's planned check, and the
//! reaper's tick plans it again from the feed's own publishing history and errors.

use crate::helpers::db::{execute, on_both};
use crate::helpers::{TestParent, cascade};
use chrono::{DateTime, TimeDelta};
use serde_json::{Value, json};
use werss_cascade::dispatch::schedule::{FeedHistory, next_check};
use werss_cascade::parent::reaper::{Reaper, schedule_settings};
use werss_cascade::protocol::time;

on_both! {
    #[tokio::test]
    async fn each_checked_feed_gets_its_own_next_check(backend) {
        // Both feeds in one allocation: one read fails while the allocation completes.
        let p = TestParent::on_with(backend.clone(), |c| c.cascade.feeds_per_allocation = 2).await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(1800, 2).await;
        let now = p.clock.now();
        let epoch = now.and_utc().timestamp();
        // The first feed posts twice a day; the second every 50 minutes, at no habitual hour.
        // Both are read; the second read fails.
        let times = |n: i64, every: i64| -> Vec<i64> { (0..n).map(|i| epoch - 1_800 - i * every).collect() };
        let (busy, daily) = (times(14, 43_200), times(200, 3_000));
        let mut sql = String::new();
        for (feed, list) in [(&feeds[0], &busy), (&feeds[1], &daily)] {
            for (i, t) in list.iter().enumerate() {
                sql += &format!("INSERT INTO we_articles (id, mp_id, title, publish_time) \
                                 VALUES ('{feed}-{i}', '{feed}', 't', {t});");
            }
        }
        execute(&p.state.config.db, &sql).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let reaper = Reaper::new(p.state.clone());
        let pkg = p.claim_one(&node).await;
        let results: Vec<Value> = pkg["feeds"].as_array().expect("feeds").iter().map(|f| {
            let ok = f["id"] == feeds[0].as_str();
            json!({"feed_id": f["id"], "success": ok, "error": if ok { Value::Null } else { json!("boom") }})
        }).collect();
        assert_eq!(results.len(), 2, "one allocation of both feeds");
        let body = json!({"allocation_id": pkg["allocation_id"], "task_id": pkg["task_id"],
                          "results": results, "article_count": 0, "lease_token": pkg["lease_token"]});
        let done = p.post(&cascade("/report-completion"), &node.auth(), body).await;
        assert_eq!(done.ok()["status"], "completed");
        let status = |id: String| {
            let p = &p;
            async move {
                let r = p.get(&cascade(&format!("/feed-status?feed_id={id}")), &p.admin()).await;
                r.ok()["list"][0].clone()
            }
        };
        assert_eq!(status(feeds[0].clone()).await["next_check_at"], Value::Null, "not planned yet");

        assert_eq!(reaper.plan_once().await.expect("planned"), 2);
        assert_eq!(reaper.plan_once().await.expect("nothing left"), 0);

        let settings = schedule_settings(&p.state.config.cascade);
        let at = |list: &[i64]| -> Vec<chrono::NaiveDateTime> {
            list.iter().map(|t| DateTime::from_timestamp(*t, 0).expect("time").naive_utc()).collect()
        };
        let (busy, daily) = (at(&busy), at(&daily));
        let expected = [
            next_check(now, &FeedHistory { publish_times: &busy, ..FeedHistory::default() }, &settings),
            next_check(now, &FeedHistory { publish_times: &daily, error_streak: 1, ..FeedHistory::default() }, &settings),
        ];
        for (i, (feed, want)) in feeds.iter().zip(expected).enumerate() {
            let s = status(feed.clone()).await;
            assert_eq!(s["next_check_at"], time::to_wire(want), "{s}");
            assert_eq!(s["check_errors"], i64::try_from(i).expect("small"), "{s}");
        }
        // Twice a day: about every 12 h. The failing feed's error sets the floor: 2 ×
        // `check_min_interval`, later than its 50 minutes without the error.
        assert!(expected[0] <= now + TimeDelta::hours(12), "{:?}", expected[0]);
        assert_eq!(expected[1], now + TimeDelta::hours(1));
        let no_error = next_check(now, &FeedHistory { publish_times: &daily, ..FeedHistory::default() }, &settings);
        assert_eq!(no_error, now + TimeDelta::seconds(3_024));
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn the_upstreams_wait_for_a_feed_puts_its_next_check_later(backend) {
        // A silent feed would be checked again in 10 minutes; the upstream asked for 2 hours.
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.check_min_interval = 60;
            c.cascade.check_max_interval = 600;
        })
        .await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(1_900, 2).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let now = p.clock.now();
        for _ in 0..2 {
            let pkg = p.claim_one(&node).await;
            let feed = pkg["feeds"][0]["id"].clone();
            let wait = if feed == feeds[0].as_str() { json!(7200) } else { Value::Null };
            let body = json!({"allocation_id": pkg["allocation_id"], "task_id": pkg["task_id"],
                "results": [{"feed_id": feed, "success": true, "retry_after": wait}],
                "article_count": 0, "lease_token": pkg["lease_token"]});
            assert_eq!(p.post(&cascade("/report-completion"), &node.auth(), body).await.ok()["status"], "completed");
        }
        assert_eq!(Reaper::new(p.state.clone()).plan_once().await.expect("planned"), 2);
        let next = |id: String| {
            let p = &p;
            async move {
                let r = p.get(&cascade(&format!("/feed-status?feed_id={id}")), &p.admin()).await;
                r.ok()["list"][0]["next_check_at"].clone()
            }
        };
        assert_eq!(next(feeds[0].clone()).await, time::to_wire(now + TimeDelta::hours(2)));
        assert_eq!(next(feeds[1].clone()).await, time::to_wire(now + TimeDelta::minutes(10)));
        p.shutdown().await;
    }
}
