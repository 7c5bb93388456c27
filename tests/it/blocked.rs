//! Nodes that may not claim now (cooling down, session parked, at capacity, deactivated): held
//! in the long-poll until the block ends, told when to ask again, never handed work.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};

/// Spawns a claim with `query` on a clone of the parent's client.
fn spawn_claim(p: &TestParent, node: &TestNode, query: &str) -> tokio::task::JoinHandle<Value> {
    let client = p.client.clone();
    let url = p.url(&cascade(&format!("/claim-task?{query}")));
    let auth = format!("AK-SK {}:{}", node.key, node.secret);
    tokio::spawn(async move {
        let r = client
            .post(url)
            .header("Authorization", auth)
            .send()
            .await
            .expect("sent");
        let status = r.status().as_u16();
        let retry_header = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body: Value = r.json().await.unwrap_or(Value::Null);
        json!({"status": status, "body": body, "retry_header": retry_header})
    })
}

/// Waits until `n` nodes have a claim held in long-poll on `p`.
async fn held_claims(p: &TestParent, n: usize) {
    let waiting = async {
        while p.state.notifier.waiting_nodes() < n {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("claim held");
}

on_both! {
    #[tokio::test]
    async fn a_cooling_node_is_told_when_to_ask_again(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(7100).await;
        p.status(&node, &pkg, "failed", json!({"reason": "rate_limited"}))
            .await
            .ok();
        let r = p.claim(&node, "").await;
        assert_eq!(r.ok(), &Value::Null);
        assert!(
            r.body["message"]
                .as_str()
                .is_some_and(|m| m.contains("cooling down until")),
            "{}",
            r.text
        );
        assert_eq!(r.body["retry_after"], 900, "the cooldown left, in seconds");
        assert_eq!(
            r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            Some("900")
        );
        p.clock.advance(TimeDelta::seconds(600));
        let r = p.claim(&node, "").await;
        assert_eq!(r.body["retry_after"], 300);
        let other = p.online_node("free", json!({})).await;
        let r = p.claim(&other, "").await;
        assert!(r.ok().is_object(), "the work moved on: {}", r.text);
        let r = p.claim(&other, "").await;
        assert!(
            r.body.get("retry_after").is_none(),
            "a node that may claim but finds nothing is not told to wait: {}",
            r.text
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_blocked_long_poll_is_held_until_the_cooldown_ends(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(7200).await;
        p.status(&node, &pkg, "failed", json!({"reason": "rate_limited"}))
            .await
            .ok();
        // Only this node exists, so the re-queued work waits for it.
        let held = spawn_claim(&p, &node, "wait=25");
        held_claims(&p, 1).await;
        // The cooldown ends (test clock); the node's next heartbeat wakes its held claim.
        p.clock.advance(TimeDelta::seconds(901));
        p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
            .await
            .ok();
        let got = held.await.expect("joined");
        assert_eq!(got["status"], 200);
        assert_eq!(
            got["body"]["data"]["allocation_id"], pkg["allocation_id"],
            "the held claim got the work once the block ended: {got}"
        );
        assert!(got["body"].get("retry_after").is_none());
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_parked_session_long_poll_resumes_when_the_session_is_valid_again(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(7300).await;
        p.status(&node, &pkg, "failed", json!({"reason": "session_expired"}))
            .await
            .ok();
        let r = p.claim(&node, "").await;
        assert!(r.text.contains("WeChat session expired"), "{}", r.text);
        assert_eq!(r.body["retry_after"], 25, "max_wait when the end is unknown");
        let held = spawn_claim(&p, &node, "wait=25");
        held_claims(&p, 1).await;
        p.post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"wechat_session": "valid"}),
        )
        .await
        .ok();
        let got = held.await.expect("joined");
        assert_eq!(
            got["body"]["data"]["allocation_id"], pkg["allocation_id"],
            "{got}"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_node_deactivated_during_its_long_poll_gets_no_work_and_stays_offline(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("soon-disabled", json!({})).await;
        let held = spawn_claim(&p, &node, "wait=25");
        held_claims(&p, 1).await;
        p.put(
            &cascade(&format!("/nodes/{}", node.id)),
            &p.admin(),
            json!({"is_active": false}),
        )
        .await
        .ok();
        let feeds = p.feeds(7400, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let got = held.await.expect("joined");
        assert_eq!(got["status"], 401, "{got}");
        assert_eq!(got["body"]["code"], 401);
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_ne!(n.ok()["status"], 1, "not set back online: {}", n.text);
        let list = p.get(&cascade("/allocations"), &p.admin()).await;
        for a in list.ok()["list"].as_array().expect("list") {
            assert_eq!(a["status"], "pending", "{a}");
            assert_ne!(a["node_id"], node.id.as_str());
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn the_store_refuses_writes_of_a_node_deactivated_after_it_authenticated(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("raced", json!({})).await;
        let feeds = p.feeds(7500, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        p.put(
            &cascade(&format!("/nodes/{}", node.id)),
            &p.admin(),
            json!({"is_active": false}),
        )
        .await
        .ok();
        // What a request that authenticated just before the update reaches.
        let policy = werss_cascade::store::ClaimPolicy {
            lease_seconds: 300,
            max_run_seconds: 1800,
            steal_after: 60,
            offline_after: 180,
            default_capacity: 10,
            only_kinds: None,
        };
        let claimed = p.store.claim(&node.id, 1, p.clock.now(), policy).await;
        assert!(
            matches!(claimed, Err(werss_cascade::store::Error::NodeInactive)),
            "{claimed:?}"
        );
        let beat = p
            .store
            .heartbeat(
                &node.id,
                werss_cascade::store::HeartbeatUpdate::default(),
                p.clock.now(),
                werss_cascade::store::LeasePolicy { lease_seconds: 300 },
            )
            .await;
        assert!(
            matches!(beat, Err(werss_cascade::store::Error::NodeInactive)),
            "{beat:?}"
        );
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_ne!(n.ok()["status"], 1, "{}", n.text);
        let list = p.get(&cascade("/allocations"), &p.admin()).await;
        assert_eq!(list.ok()["list"][0]["status"], "pending");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_child_asking_only_for_kinds_it_lacks_is_blocked_not_served(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p
            .online_node("both", json!({"fetchers": ["wechat", "rss"]}))
            .await;
        let feeds = p.feeds(7600, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let r = p.claim(&node, "kinds=rss").await;
        assert_eq!(r.ok(), &Value::Null, "WeChat work is not handed to kinds=rss");
        let r = p.claim(&node, "kinds=atom").await;
        assert!(
            r.text.contains("no fetcher of this node can take work now"),
            "{}",
            r.text
        );
        assert_eq!(r.body["retry_after"], 25);
        let r = p.claim(&node, "kinds=wechat,rss").await;
        assert!(r.ok().is_object(), "{}", r.text);
        p.shutdown().await;
    }
}
