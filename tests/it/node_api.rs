//! Node endpoints of this stage: heartbeat (PROTOCOL §8.1) and report-result (§8.7).

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade, cascade_doc};
use serde_json::{Value, json};

on_both! {
    #[tokio::test]
    async fn heartbeat_stores_online_state_and_every_extra(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.callback_allow = vec!["127.0.0.1".into()];
        })
        .await;
        let node = p.add_node("child").await;
        let beat = json!({
            "callback_url": "http://127.0.0.1:8002/api/v1/wx/cascade/notify", "capacity": 4, "in_use": 1,
            "fetchers": ["wechat", "rss"], "wechat_session": "valid", "held": ["gone-1"],
            "version": "werss-cascade/0.1.0", "features": ["wait", "held"], "timestamp": "2026-11-22T14:42:27.700112"
        });
        let r = p.post(&cascade("/heartbeat"), &node.auth(), beat).await;
        let d = r.ok();
        assert_eq!(d["status"], "alive");
        assert_eq!(d["node_id"], node.id.as_str());
        assert_eq!(
            d["lost"],
            json!(["gone-1"]),
            "an allocation it does not hold is reported lost"
        );
        assert_eq!(d["session_state"], "valid");
        assert_eq!(d["lease_seconds"], 300);
        assert_eq!(d["heartbeat_interval"], 60);
        assert!(
            d["features"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("held")))
        );
        assert_eq!(d["warnings"], json!([]));

        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        let n = n.ok();
        assert_eq!(n["online"], true);
        assert_eq!(n["status"], 1);
        assert_eq!(
            n["callback_url"],
            "http://127.0.0.1:8002/api/v1/wx/cascade/notify"
        );
        assert_eq!(n["capacity"], 4, "reported capacity lowers the default 10");
        assert_eq!(n["in_use"], 1);
        assert_eq!(n["fetchers"], json!(["wechat", "rss"]));
        assert_eq!(n["session_state"], "valid");
        assert_eq!(n["version"], "werss-cascade/0.1.0");
        assert!(n["last_heartbeat_at"].is_string());
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn invalid_heartbeat_extras_are_warnings_not_failures(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let r = p
            .post(
                &cascade("/heartbeat"),
                &node.auth(),
                json!({"callback_url": "not a url", "fetchers": ["gopher"], "wechat_session": "maybe"}),
            )
            .await;
        let warnings = r.ok()["warnings"].as_array().expect("warnings").clone();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["online"], true, "a stock child still comes online");
        assert_eq!(n.ok()["callback_url"], Value::Null);
        let bad = p
            .post(
                &cascade("/heartbeat"),
                &node.auth(),
                json!({"capacity": -1}),
            )
            .await;
        assert_eq!(bad.err(400), "bad_request");
        assert_eq!(bad.body["data"]["field"], "capacity");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn node_goes_offline_by_the_one_rule_after_offline_after(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
            .await
            .ok();
        p.clock.advance(chrono::TimeDelta::seconds(181));
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["online"], false);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn report_result_writes_one_sync_log_and_marks_the_node_alive(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let r = p.post(&cascade_doc("/report-result"), &node.auth(), json!({"task_id": "t-1", "results": [{"mp_id": "MP_WXS_1"}, {}], "timestamp": "2026-11-22T14:43:11"})).await;
        assert_eq!(r.body["message"], "结果上报成功");
        assert_eq!(r.ok(), &Value::Null);
        let logs = p
            .get(&cascade("/sync-logs?operation=report_result"), &p.admin())
            .await;
        let page = logs.ok();
        assert_eq!(page["total"], 1);
        assert_eq!(page["page"], json!({"limit": 50, "offset": 0}));
        let log = &page["list"][0];
        assert_eq!(log["node_id"], node.id.as_str());
        assert_eq!(log["direction"], "push");
        assert_eq!(log["status"], 1);
        assert_eq!(log["data_count"], 2);
        assert_eq!(
            log["extra_data"],
            json!({"task_id": "t-1", "result_count": 2})
        );
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["online"], true);

        for (body, field) in [
            (json!({"results": []}), "task_id"),
            (json!({"task_id": "t"}), "results"),
            (json!({"task_id": 5, "results": []}), "task_id"),
        ] {
            let r = p.post(&cascade("/report-result"), &node.auth(), body).await;
            r.err(400);
            assert_eq!(r.body["data"]["field"], field);
        }
        let other = p
            .get(
                &cascade(&format!("/sync-logs?node_id={}", "someone-else")),
                &p.admin(),
            )
            .await;
        assert_eq!(other.ok()["total"], 0);
        p.get(&cascade("/sync-logs?limit=500"), &p.admin())
            .await
            .err(400);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_parent_accepts_no_notify(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        for auth in [node.auth(), p.admin(), crate::helpers::Auth::None] {
            let r = p
                .post(&cascade("/notify"), &auth, json!({"type": "new_task"}))
                .await;
            r.err(400);
            assert_eq!(r.body["message"], "仅子节点可接收通知");
        }
        p.shutdown().await;
    }
}
