//! The state machine of PROTOCOL §4.1 and the reasons of §4.2, row by row.

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use werss_cascade::protocol::time;

fn id(pkg: &Value) -> &str {
    pkg["allocation_id"].as_str().expect("id")
}

on_both! {
    #[tokio::test]
    async fn dispatch_claim_execute_complete(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(100, 1).await;
        let task = p.task(&feeds).await;
        let d = p.dispatch(&task).await;
        let alloc_id = {
            let list = p.get(&cascade("/allocations"), &p.admin()).await;
            let a = list.ok()["list"][0].clone();
            assert_eq!(a["status"], "pending");
            assert_eq!(a["attempt"], 0);
            assert_eq!(a["node_id"], Value::Null);
            assert_eq!(a["assigned_node_id"], node.id.as_str());
            assert_eq!(a["schedule_run_id"], d["schedule_run_id"]);
            assert!(a.get("lease_token").is_none(), "never shown");
            a["id"].as_str().expect("id").to_string()
        };
        let pkg = p.claim_one(&node).await;
        assert_eq!(pkg["allocation_id"], alloc_id.as_str());
        for key in [
            "task_id",
            "task_name",
            "message_type",
            "message_template",
            "web_hook_url",
            "cron_exp",
            "headers",
            "cookies",
            "feeds",
            "dispatched_at",
        ] {
            assert!(pkg.get(key).is_some(), "package key {key}");
        }
        assert_eq!(pkg["feeds"][0]["id"], feeds[0].as_str());
        assert_eq!(pkg["feeds"][0]["since"], Value::Null);
        assert_eq!(pkg["attempt"], 1);
        assert_eq!(pkg["lease_token"].as_str().map(str::len), Some(32));
        let claimed = p.allocation(&alloc_id).await;
        assert_eq!(claimed["status"], "claimed");
        assert_eq!(claimed["node_id"], node.id.as_str());
        assert_eq!(claimed["node_name"], "n");

        p.clock.advance(TimeDelta::seconds(100));
        let r = p.status(&node, &pkg, "executing", json!({})).await;
        assert_eq!(r.body["message"], "状态更新成功");
        assert_eq!(r.ok()["status"], "executing");
        let lease = time::parse(r.ok()["lease_expires_at"].as_str().expect("lease")).expect("time");
        assert_eq!(
            lease,
            p.clock.now() + TimeDelta::seconds(300),
            "extended from now"
        );
        let r = p.complete(&node, &pkg).await;
        assert_eq!(r.body["message"], "任务完成上报成功");
        assert_eq!(r.ok()["status"], "completed");
        let done = p.allocation(&alloc_id).await;
        assert!(done["completed_at"].is_string());
        assert_eq!(done["result_summary"]["task_id"], task.as_str());
        assert_eq!(
            done["node_id"],
            node.id.as_str(),
            "terminal rows keep the last holder"
        );
        let fs = p.get(&cascade("/feed-status"), &p.admin()).await;
        assert_eq!(fs.ok()["list"][0]["update_status"], "fresh");
        assert_eq!(fs.ok()["list"][0]["last_task"]["status"], "completed");
        let logs = p
            .get(&cascade("/sync-logs?operation=task_completion"), &p.admin())
            .await;
        assert_eq!(logs.ok()["total"], 1);
        assert_eq!(
            logs.ok()["list"][0]["extra_data"]["allocation_id"],
            alloc_id.as_str()
        );

        // The same outcome again is a safe no-op; anything else is refused.
        p.complete(&node, &pkg).await.ok();
        p.status(&node, &pkg, "completed", json!({})).await.ok();
        let r = p.status(&node, &pkg, "executing", json!({})).await;
        assert_eq!(r.err(409), "invalid_transition");
        assert_eq!(r.body["message"], "allocation is completed");
        assert_eq!(
            p.status(&node, &pkg, "failed", json!({})).await.err(409),
            "invalid_transition"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn bad_reports_are_refused_without_change(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(200).await;
        for status in ["pending", "claimed", "done", ""] {
            let r = p.status(&node, &pkg, status, json!({})).await;
            assert_eq!(r.err(400), "bad_request", "{status}");
            assert_eq!(r.body["data"]["field"], "status");
        }
        let mut unknown = pkg.clone();
        unknown["allocation_id"] = json!("no-such-allocation");
        let r = p.status(&node, &unknown, "executing", json!({})).await;
        r.err(404);
        assert_eq!(r.body["message"], "分配记录不存在");
        let other = p.online_node("other", json!({})).await;
        assert_eq!(
            p.status(&other, &pkg, "executing", json!({}))
                .await
                .err(409),
            "lease_lost"
        );
        let body = json!({"allocation_id": pkg["allocation_id"], "task_id": "another-task", "results": [], "article_count": 0});
        p.post(&cascade("/report-completion"), &node.auth(), body)
            .await
            .err(400);
        for missing in ["task_id", "results", "article_count", "allocation_id"] {
            let mut body = json!({"allocation_id": pkg["allocation_id"], "task_id": pkg["task_id"], "results": [], "article_count": 0});
            body.as_object_mut().expect("object").remove(missing);
            let r = p
                .post(&cascade("/report-completion"), &node.auth(), body)
                .await;
            assert_eq!(r.body["data"]["field"], missing);
        }
        assert_eq!(p.allocation(id(&pkg)).await["status"], "claimed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn retryable_failures_back_off_and_exhaust_into_failed(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(300).await;
        let r = p
            .status(
                &node,
                &pkg,
                "failed",
                json!({"reason": "network", "error_message": "connection reset"}),
            )
            .await;
        assert_eq!(
            r.ok()["status"],
            "pending",
            "a re-queued failure shows pending"
        );
        assert_eq!(r.ok()["attempt"], 1);
        let available = time::parse(r.ok()["available_at"].as_str().expect("time")).expect("time");
        let delay = available - p.clock.now();
        assert!(
            delay >= TimeDelta::seconds(15) && delay <= TimeDelta::seconds(45),
            "30 s × U(0.5, 1.5): {delay}"
        );
        let a = p.allocation(id(&pkg)).await;
        assert_eq!(a["reason"], "network");
        assert_eq!(a["error_message"], "connection reset");
        assert_eq!(a["node_id"], Value::Null);
        assert_eq!(
            p.claim(&node, "").await.ok(),
            &Value::Null,
            "not before available_at"
        );
        let counters = p.get(&cascade("/pending-allocations"), &p.admin()).await;
        assert_eq!(counters.ok()["delayed_tasks"], 1);

        for attempt in 2..=5 {
            p.clock.advance(TimeDelta::hours(1));
            p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
                .await
                .ok();
            let again = p.claim_one(&node).await;
            assert_eq!(again["attempt"], attempt);
            let r = p
                .status(&node, &again, "failed", json!({"reason": "parse"}))
                .await;
            let expected = if attempt < 5 { "pending" } else { "failed" };
            assert_eq!(r.ok()["status"], expected, "attempt {attempt}");
        }
        let a = p.allocation(id(&pkg)).await;
        assert_eq!(a["status"], "failed");
        assert!(a["completed_at"].is_string());
        let again = p.dispatch(a["task_id"].as_str().expect("task")).await;
        assert_eq!(
            again["allocations_created"], 1,
            "a failed allocation no longer blocks its feed"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn rate_limited_wechat_cools_the_node_and_moves_the_work(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (limited, pkg) = p.one_claimed(400).await;
        let r = p
            .status(
                &limited,
                &pkg,
                "failed",
                json!({"reason": "rate_limited", "error_message": "200013 freq control"}),
            )
            .await;
        assert_eq!(r.ok()["status"], "pending");
        assert_eq!(r.ok()["attempt"], 0, "no attempt spent");
        let n = p
            .get(&cascade(&format!("/nodes/{}", limited.id)), &p.admin())
            .await;
        let until = time::parse(n.ok()["cooldown_until"].as_str().expect("cooling")).expect("time");
        assert_eq!(until, p.clock.now() + TimeDelta::seconds(900));
        let r = p.claim(&limited, "").await;
        assert_eq!(r.ok(), &Value::Null);
        assert!(
            r.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("cooling down until"))
        );
        let other = p.online_node("other", json!({})).await;
        assert_eq!(
            p.claim_one(&other).await["allocation_id"],
            pkg["allocation_id"]
        );
        let hb = p
            .post(&cascade("/heartbeat"), &limited.auth(), json!({}))
            .await;
        assert!(hb.ok()["cooldown_until"].is_string());
        let counters = p.get(&cascade("/pending-allocations"), &p.admin()).await;
        assert_eq!(counters.ok()["cooling_nodes"], 1);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn rate_limited_rss_waits_retry_after_without_cooldown(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("rss", json!({"fetchers": ["rss"]})).await;
        let f = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "blog", "source": "rss", "url": "https://e.org/f.xml"}),
            )
            .await;
        let task = p
            .task(&[f.ok()["id"].as_str().expect("id").to_string()])
            .await;
        p.dispatch(&task).await;
        let pkg = p.claim_one(&node).await;
        assert_eq!(pkg["feeds"][0]["source"], "rss");
        assert_eq!(pkg["feeds"][0]["url"], "https://e.org/f.xml");
        let r = p
            .status(
                &node,
                &pkg,
                "failed",
                json!({"reason": "rate_limited", "retry_after": 120}),
            )
            .await;
        let available = time::parse(r.ok()["available_at"].as_str().expect("time")).expect("time");
        assert_eq!(available, p.clock.now() + TimeDelta::seconds(120));
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["cooldown_until"], Value::Null);
        // A node cannot park a feed for years: its hint is believed up to retry_max.
        p.clock.advance(TimeDelta::seconds(121));
        let again = p.claim_one(&node).await;
        let r = p
            .status(
                &node,
                &again,
                "failed",
                json!({"reason": "rate_limited", "retry_after": 1e12}),
            )
            .await;
        let available = time::parse(r.ok()["available_at"].as_str().expect("time")).expect("time");
        assert_eq!(available, p.clock.now() + TimeDelta::seconds(1800), "capped at retry_max");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn session_expired_parks_the_node_until_a_valid_heartbeat(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(500).await;
        let r = p
            .status(&node, &pkg, "failed", json!({"reason": "session_expired"}))
            .await;
        assert_eq!(r.ok()["status"], "pending");
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["session_state"], "expired");
        let r = p.claim(&node, "").await;
        assert_eq!(r.body["message"], "暂无待处理任务: WeChat session expired");
        p.post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"wechat_session": "valid"}),
        )
        .await
        .ok();
        assert_eq!(
            p.claim_one(&node).await["allocation_id"],
            pkg["allocation_id"]
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn not_found_fails_at_once_and_unknown_reasons_retry(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(600).await;
        let r = p
            .status(&node, &pkg, "failed", json!({"reason": "not_found"}))
            .await;
        assert_eq!(r.ok()["status"], "failed");
        // The same node takes the second one (a second node might not be the one it is placed on).
        let feeds = p.feeds(700, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let pkg2 = p.claim_one(&node).await;
        let r = p
            .status(&node, &pkg2, "failed", json!({"reason": "martian"}))
            .await;
        assert_eq!(r.ok()["status"], "pending");
        assert_eq!(p.allocation(id(&pkg2)).await["reason"], "unknown");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn completion_with_every_result_failed_acts_as_failure(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(800).await;
        let body = json!({"allocation_id": pkg["allocation_id"], "task_id": pkg["task_id"], "article_count": 0,
                          "results": [{"mp_id": pkg["feeds"][0]["id"], "status": "failed", "error": "gone", "reason": "not_found"}]});
        let r = p
            .post(&cascade("/report-completion"), &node.auth(), body)
            .await;
        assert_eq!(r.ok()["status"], "failed");
        assert_eq!(p.allocation(id(&pkg)).await["error_message"], "gone");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn release_returns_work_without_spending_an_attempt(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(900).await;
        let body = json!({"allocations": [{"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"]},
                                          {"allocation_id": "unknown", "lease_token": "x"}], "reason": "shutdown"});
        let r = p
            .post(&cascade("/release"), &node.auth(), body.clone())
            .await;
        assert_eq!(r.ok()["released"], json!([pkg["allocation_id"]]));
        assert_eq!(
            r.ok()["rejected"],
            json!([{"allocation_id": "unknown", "error": "not_found"}])
        );
        let a = p.allocation(id(&pkg)).await;
        assert_eq!(a["status"], "pending");
        assert_eq!(a["attempt"], 0);
        assert_eq!(a["reason"], "released");
        let r = p.post(&cascade("/release"), &node.auth(), body).await;
        assert_eq!(
            r.ok()["rejected"][0]["error"],
            "lease_lost",
            "no longer held"
        );
        let again = p.claim_one(&node).await;
        assert_eq!(again["attempt"], 1);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn deactivating_the_holder_requeues_its_work(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(1000).await;
        p.put(
            &cascade(&format!("/nodes/{}", node.id)),
            &p.admin(),
            json!({"is_active": false}),
        )
        .await
        .ok();
        let a = p.allocation(id(&pkg)).await;
        assert_eq!(a["status"], "pending");
        assert_eq!(a["reason"], "node_disabled");
        assert_eq!(a["attempt"], 0);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn offline_holder_loses_its_work_to_the_reaper(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(1100).await;
        p.status(&node, &pkg, "executing", json!({})).await.ok();
        p.clock.advance(TimeDelta::seconds(181));
        let reaped = p.reap().await;
        assert_eq!(reaped.offline_nodes, 1);
        assert_eq!(reaped.from_offline, 1);
        let a = p.allocation(id(&pkg)).await;
        assert_eq!(a["status"], "pending");
        assert_eq!(a["reason"], "node_offline");
        assert_eq!(a["attempt"], 1, "attempt spent");
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["status"], 0);
        let logs = p
            .get(&cascade("/sync-logs?operation=lease_expired"), &p.admin())
            .await;
        assert_eq!(logs.ok()["list"][0]["direction"], "local");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn heartbeats_renew_only_live_leases_and_report_lost_work(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(1200).await;
        p.clock.advance(TimeDelta::seconds(200));
        let hb = p
            .post(
                &cascade("/heartbeat"),
                &node.auth(),
                json!({"held": [pkg["allocation_id"]]}),
            )
            .await;
        assert_eq!(hb.ok()["lost"], json!([]));
        let a = p.allocation(id(&pkg)).await;
        let lease = time::parse(a["lease_expires_at"].as_str().expect("lease")).expect("time");
        assert_eq!(lease, p.clock.now() + TimeDelta::seconds(300));
        p.clock.advance(TimeDelta::seconds(301));
        let hb = p
            .post(
                &cascade("/heartbeat"),
                &node.auth(),
                json!({"held": [pkg["allocation_id"]]}),
            )
            .await;
        assert_eq!(
            hb.ok()["lost"],
            json!([pkg["allocation_id"]]),
            "an expired lease is not revived"
        );
        assert_eq!(p.reap().await.expired, 1);
        p.shutdown().await;
    }
}
