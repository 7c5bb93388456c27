//! Priorities (issue 15): a task's priority is a head start in claim order that ages (a
//! steady stream of high-priority work delays waiting work by at most its head start, never
//! for ever); a feed's priority moves its planned check ahead in freshness mode; "check now"
//! puts a feed at the head of the claims, in either mode.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use werss_cascade::config::PerKind;
use werss_cascade::parent::scheduler::Scheduler;

async fn task_with(p: &TestParent, feeds: &[String], priority: i64) -> String {
    let mps: Vec<Value> = feeds.iter().map(|id| json!({"id": id})).collect();
    let r = p
        .post(
            &cascade("/message-tasks"),
            &p.admin(),
            json!({"name": "t", "message_template": "x",
        "mps_id": mps, "status": 1, "priority": priority}),
        )
        .await;
    assert_eq!(r.ok()["priority"], priority, "{}", r.text);
    r.ok()["id"].as_str().expect("id").to_string()
}

/// The feeds of one claim of at most one allocation.
async fn claim_feeds(p: &TestParent, node: &TestNode) -> Vec<String> {
    let r = p.claim(node, "limit=1").await;
    let data = r.data().clone();
    let list = data
        .as_array()
        .cloned()
        .or_else(|| data.get("tasks").and_then(Value::as_array).cloned());
    list.unwrap_or_else(|| vec![data.clone()])
        .iter()
        .flat_map(|pkg| pkg["feeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f["id"].as_str().map(String::from))
        .collect()
}

async fn beat(p: &TestParent, node: &TestNode) {
    p.post(
        &cascade("/heartbeat"),
        &node.auth(),
        json!({"capacity": 100}),
    )
    .await
    .ok();
}

on_both! {
    #[tokio::test]
    async fn high_priority_work_overtakes_waiting_work_for_its_head_start_only(backend) {
        // One feed per allocation; the default aging step is 30 minutes.
        // Room for every allocation on the one node: all of them are its own work.
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.feeds_per_allocation = 1;
            c.cascade.default_max_capacity = 100;
        })
        .await;
        let node = p.online_node("n", json!({"capacity": 100})).await;
        let low_feed = p.feeds(8_000, 1).await;
        let high_feeds = p.feeds(8_100, 40).await;
        let low = task_with(&p, &low_feed, 0).await;
        let mut high = Vec::new();
        for f in &high_feeds {
            high.push(task_with(&p, std::slice::from_ref(f), 1).await);
        }
        p.dispatch(&low).await;
        // Each minute a new priority-1 allocation arrives and the node takes one.
        let mut low_taken_at = None;
        for (minute, task) in high.iter().enumerate() {
            p.clock.advance(TimeDelta::minutes(1));
            beat(&p, &node).await;
            p.dispatch(task).await;
            let got = claim_feeds(&p, &node).await;
            assert_eq!(got.len(), 1, "minute {minute}: {got:?}");
            if got == low_feed {
                low_taken_at = Some(minute + 1);
                break;
            }
            assert_eq!(got, vec![high_feeds[minute].clone()], "the newer high-priority one goes first");
        }
        // At minute 30 the waiting one has waited a whole head start: it goes first.
        assert_eq!(low_taken_at, Some(30), "delayed by the head start, not starved");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn check_now_puts_a_feed_at_the_head_of_the_claims(backend) {
        let p = TestParent::on_with(backend.clone(), |c| c.cascade.feeds_per_allocation = 1).await;
        let node = p.online_node("n", json!({"capacity": 100})).await;
        let feeds = p.feeds(8_200, 4).await;
        let task = task_with(&p, &feeds[..3], 0).await;
        p.dispatch(&task).await;
        // The last of three waiting allocations jumps the queue: no new allocation.
        let r = p.post(&cascade(&format!("/feeds/{}/check", feeds[2])), &p.admin(), json!({})).await;
        assert_eq!((r.ok()["created"].clone(), r.ok()["status"].clone()), (json!(false), json!("pending")), "{}", r.text);
        assert_eq!(claim_feeds(&p, &node).await, vec![feeds[2].clone()]);

        // A feed with no open allocation gets one at the top priority.
        let done = p.post(&cascade(&format!("/feeds/{}/check", feeds[2])), &p.admin(), json!({})).await;
        assert_eq!(done.ok()["status"], "claimed", "already being read: {}", done.text);
        let extra = p.feeds(8_300, 1).await;
        p.put(&cascade(&format!("/message-tasks/{task}")), &p.admin(),
            json!({"mps_id": [feeds[0].clone(), feeds[1].clone(), feeds[2].clone(), extra[0].clone()]})).await.ok();
        let r = p.post(&cascade(&format!("/feeds/{}/check", extra[0])), &p.admin(), json!({})).await;
        assert_eq!(r.ok()["created"], true, "{}", r.text);
        assert_eq!(claim_feeds(&p, &node).await, extra, "before the two waiting since the dispatch");

        // Refusals: unknown, listed by no enabled task, disabled.
        p.post(&cascade("/feeds/MP_WXS_1/check"), &p.admin(), json!({})).await.err(404);
        let r = p.post(&cascade(&format!("/feeds/{}/check", feeds[3])), &p.admin(), json!({})).await;
        r.err(409);
        assert_eq!(r.body["message"], "no enabled task lists this feed", "{}", r.text);
        p.put(&cascade(&format!("/feeds/{}", feeds[3])), &p.admin(), json!({"status": 0})).await.ok();
        let r = p.post(&cascade(&format!("/feeds/{}/check", feeds[3])), &p.admin(), json!({})).await;
        r.err(409);
        assert_eq!(r.body["message"], "feed is disabled", "{}", r.text);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_feed_priority_moves_its_planned_check_ahead(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.dispatch_mode = "freshness".into();
            c.cascade.feeds_per_allocation = 1;
            c.cascade.budget_per_day = PerKind { mp: None, weread: Some(0) };
        })
        .await;
        p.online_node("n", json!({"wechat_session": "valid", "capacity": 1})).await;
        let feeds = p.feeds(8_400, 2).await;
        task_with(&p, &feeds, 0).await;
        let now = p.clock.now();
        p.store.defer_checks(vec![feeds[0].clone()], now - TimeDelta::minutes(60)).await.expect("planned");
        p.store.defer_checks(vec![feeds[1].clone()], now - TimeDelta::minutes(30)).await.expect("planned");
        // Two aging steps (1 h) ahead: before the feed due 30 minutes longer.
        let r = p.put(&cascade(&format!("/feeds/{}", feeds[1])), &p.admin(), json!({"priority": 2})).await;
        assert_eq!(r.ok()["priority"], 2, "{}", r.text);
        let pass = Scheduler::new(p.state.clone()).run_once().await.expect("pass");
        assert_eq!(pass.due.dispatched, 1, "{pass:?}");
        let pending = p.get(&cascade("/allocations?status=pending"), &p.admin()).await;
        assert_eq!(pending.ok()["list"][0]["feed_ids"], json!([feeds[1]]), "{}", pending.text);

        // Out of range: 400 naming the field, nothing changed.
        let r = p.put(&cascade(&format!("/feeds/{}", feeds[0])), &p.admin(), json!({"priority": 101})).await;
        r.err(400);
        assert_eq!(r.body["message"], "priority must be between -100 and 100", "{}", r.text);
        let r = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "t", "message_template": "x",
            "mps_id": [], "status": 1, "priority": -1})).await;
        r.err(400);
        assert_eq!(r.body["message"], "priority must be between 0 and 100", "{}", r.text);
        p.shutdown().await;
    }
}
