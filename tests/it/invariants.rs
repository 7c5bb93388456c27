//! One test per DESIGN §4 invariant, over HTTP against a real parent.

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::collections::HashSet;

on_both! {
    /// Invariant 1: 32 concurrent claimers on 1,000 allocations; each handed out exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_get_each_allocation_exactly_once(backend) {
        let p = TestParent::on(backend.clone()).await;
        let mut nodes = Vec::new();
        for i in 0..32 {
            nodes.push(p.online_node(&format!("n{i}"), json!({})).await);
        }
        let feeds = p.feeds(1_000_000, 1000).await;
        let task = p.task(&feeds).await;
        assert_eq!(p.dispatch(&task).await["allocations_created"], 1000);

        let mut workers = tokio::task::JoinSet::new();
        for node in nodes {
            let client = p.client.clone();
            let base = p.url("");
            workers.spawn(async move {
                let auth = format!("AK-SK {}:{}", node.key, node.secret);
                let mut mine = Vec::new();
                loop {
                    let r: Value = client
                        .post(format!("{base}{}", cascade("/claim-task?limit=10")))
                        .header("Authorization", &auth)
                        .send()
                        .await
                        .expect("claim sent")
                        .json()
                        .await
                        .expect("claim json");
                    let packages = r["data"].as_array().expect("array for limit ≥ 2").clone();
                    if packages.is_empty() {
                        return mine;
                    }
                    for pkg in packages {
                        let body = json!({"allocation_id": pkg["allocation_id"], "task_id": pkg["task_id"], "results": [],
                                          "article_count": 0, "lease_token": pkg["lease_token"]});
                        let done = client
                            .post(format!("{base}{}", cascade("/report-completion")))
                            .header("Authorization", &auth)
                            .json(&body)
                            .send()
                            .await
                            .expect("completion sent");
                        assert_eq!(done.status(), 200);
                        mine.push(pkg["allocation_id"].as_str().expect("id").to_string());
                    }
                }
            });
        }
        let mut all = Vec::new();
        while let Some(done) = workers.join_next().await {
            all.extend(done.expect("worker finished"));
        }
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(all.len(), 1000, "every allocation handed out once in total");
        assert_eq!(unique.len(), 1000, "no allocation handed out twice");
        let done = p
            .get(
                &cascade("/allocations?status=completed&limit=1"),
                &p.admin(),
            )
            .await;
        assert_eq!(done.ok()["total"], 1000);
        p.shutdown().await;
    }
}

on_both! {
    /// Invariant 2: a node that claims and goes silent loses its work within one lease, and
    /// another node completes it.
    #[tokio::test]
    async fn silent_holders_work_returns_within_a_lease_and_completes_elsewhere(backend) {
        let p = TestParent::on(backend.clone()).await;
        let silent = p.online_node("silent", json!({})).await;
        let feeds = p.feeds(2_000_000, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let pkg = p.claim_one(&silent).await;
        let id = pkg["allocation_id"].as_str().expect("id").to_string();

        p.clock.advance(TimeDelta::seconds(150));
        let other = p.online_node("other", json!({})).await;
        assert_eq!(p.reap().await.expired, 0, "lease still running");
        p.clock.advance(TimeDelta::seconds(151));
        p.post(&cascade("/heartbeat"), &other.auth(), json!({}))
            .await
            .ok();
        let reaped = p.reap().await;
        assert_eq!(reaped.expired + reaped.from_offline, 1, "{reaped:?}");
        let a = p.allocation(&id).await;
        assert_eq!(a["status"], "pending");
        assert_eq!(a["node_id"], Value::Null);

        p.clock.advance(TimeDelta::seconds(46)); // past the retry backoff (≤ 45 s at attempt 1)
        p.post(&cascade("/heartbeat"), &other.auth(), json!({}))
            .await
            .ok();
        let again = p.claim_one(&other).await;
        assert_eq!(again["allocation_id"], id.as_str());
        assert_eq!(again["attempt"], 2);
        p.complete(&other, &again).await.ok();
        let a = p.allocation(&id).await;
        assert_eq!(a["status"], "completed");
        assert_eq!(a["node_id"], other.id.as_str());
        p.shutdown().await;
    }
}

on_both! {
    /// Invariant 3: a node never holds more feeds than its capacity, with or without `limit`.
    #[tokio::test]
    async fn capacity_is_never_exceeded(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("small", json!({})).await;
        p.put(
            &cascade(&format!("/nodes/{}", node.id)),
            &p.admin(),
            json!({"sync_config": {"max_capacity": 3}}),
        )
        .await
        .ok();
        let feeds = p.feeds(3_000_000, 10).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;

        let r = p.claim(&node, "limit=10").await;
        assert_eq!(r.ok().as_array().map(Vec::len), Some(3));
        let r = p.claim(&node, "limit=10").await;
        assert_eq!(r.ok(), &json!([]));
        assert_eq!(
            r.body["message"],
            "暂无待处理任务: node at capacity (3/3 feeds)"
        );
        let r = p.claim(&node, "").await;
        assert_eq!(r.ok(), &Value::Null, "limit absent: null, not an array");

        // A reported capacity lowers it further.
        p.post(&cascade("/heartbeat"), &node.auth(), json!({"capacity": 1}))
            .await
            .ok();
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["held_feeds"], 3);
        assert_eq!(n.ok()["capacity"], 1);
        let held = p
            .get(
                &cascade(&format!("/allocations?node_id={}&status=claimed", node.id)),
                &p.admin(),
            )
            .await;
        assert_eq!(held.ok()["total"], 3);
        p.claim(&node, "limit=2").await.ok();
        let held = p
            .get(
                &cascade(&format!("/allocations?node_id={}&status=claimed", node.id)),
                &p.admin(),
            )
            .await;
        assert_eq!(held.ok()["total"], 3, "nothing more while over capacity");
        p.shutdown().await;
    }
}

on_both! {
    /// Invariant 4: after the lease moved, the old holder's calls get 409 and change nothing.
    #[tokio::test]
    async fn stale_holder_calls_get_409_and_change_nothing(backend) {
        let p = TestParent::on(backend.clone()).await;
        let stale = p.online_node("stale", json!({})).await;
        let feeds = p.feeds(4_000_000, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let old = p.claim_one(&stale).await;
        let id = old["allocation_id"].as_str().expect("id").to_string();
        p.clock.advance(TimeDelta::seconds(301));
        let fresh = p.online_node("fresh", json!({})).await;
        p.reap().await;
        p.clock.advance(TimeDelta::seconds(46));
        p.post(&cascade("/heartbeat"), &fresh.auth(), json!({}))
            .await
            .ok();
        let new = p.claim_one(&fresh).await;
        assert_eq!(new["allocation_id"], id.as_str());
        let before = p.allocation(&id).await;

        let r = p.status(&stale, &old, "executing", json!({})).await;
        assert_eq!(r.err(409), "lease_lost");
        assert_eq!(
            p.status(&stale, &old, "completed", json!({}))
                .await
                .err(409),
            "lease_lost"
        );
        let upload = json!({"allocation_id": id, "articles": [{"id": "1", "title": "x"}], "lease_token": old["lease_token"]});
        assert_eq!(
            p.post(&cascade("/upload-articles"), &stale.auth(), upload)
                .await
                .err(409),
            "lease_lost"
        );
        assert_eq!(p.complete(&stale, &old).await.err(409), "lease_lost");

        // The same node with a stale token is fenced too.
        let mut stale_token = new.clone();
        stale_token["lease_token"] = old["lease_token"].clone();
        assert_eq!(
            p.status(&fresh, &stale_token, "executing", json!({}))
                .await
                .err(409),
            "lease_lost"
        );

        let after = p.allocation(&id).await;
        assert_eq!(before, after, "nothing changed");
        let articles = p.get(&cascade("/feed-status"), &p.admin()).await;
        assert_eq!(articles.ok()["list"][0]["article_count"], 0);
        p.status(&fresh, &new, "executing", json!({})).await.ok();
        p.shutdown().await;
    }
}

on_both! {
    /// Invariant 5: re-dispatching while allocations are open creates none.
    #[tokio::test]
    async fn redispatch_while_open_creates_nothing(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(5_000_000, 4).await;
        let task = p.task(&feeds).await;
        let first = p.dispatch(&task).await;
        assert_eq!(first["allocations_created"], 4);
        assert_eq!(first["tasks"][0]["created"], 4);
        let pkg = p.claim_one(&node).await;
        let second = p.dispatch(&task).await;
        assert_eq!(second["allocations_created"], 0);
        assert_eq!(second["tasks"][0]["skipped_open"], 4);
        assert_ne!(second["schedule_run_id"], first["schedule_run_id"]);
        p.complete(&node, &pkg).await.ok();
        let third = p.dispatch(&task).await;
        assert_eq!(
            third["allocations_created"], 1,
            "only the completed feed is dispatched again"
        );
        let all = p.get(&cascade("/allocations?limit=50"), &p.admin()).await;
        assert_eq!(all.ok()["total"], 5);
        p.shutdown().await;
    }
}

on_both! {
    /// Invariant 6: replaying an upload adds nothing.
    #[tokio::test]
    async fn replayed_uploads_add_nothing(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(3_892_772_220, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let pkg = p.claim_one(&node).await;
        let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"], "timestamp": "t",
            "articles": [{"id": "2247483701_1", "title": "One", "publish_time": 1795358591},
                         {"id": "3892772220-2247483702_1", "title": "Two", "content": "body"}]});
        let first = p
            .post(&cascade("/upload-articles"), &node.auth(), body.clone())
            .await;
        assert_eq!(first.body["message"], "文章数据上行成功");
        assert_eq!(first.ok()["new_count"], 2);
        assert_eq!(
            first.ok()["ids"],
            json!(["3892772220-2247483701_1", "3892772220-2247483702_1"])
        );
        let replay = p
            .post(&cascade("/upload-articles"), &node.auth(), body)
            .await;
        assert_eq!(replay.ok()["new_count"], 0);
        assert_eq!(replay.ok()["updated_count"], 2);
        p.complete(&node, &pkg).await.ok();
        // A late replay by the last holder after completion is still accepted and adds nothing.
        let late = json!({"allocation_id": pkg["allocation_id"], "articles": [{"id": "2247483701_1", "content": ""}]});
        assert_eq!(
            p.post(&cascade("/upload-articles"), &node.auth(), late)
                .await
                .ok()["new_count"],
            0
        );
        let status = p.get(&cascade("/feed-status"), &p.admin()).await;
        assert_eq!(status.ok()["list"][0]["article_count"], 2);
        let a = p
            .allocation(pkg["allocation_id"].as_str().expect("id"))
            .await;
        assert_eq!(a["new_article_count"], 2);
        p.shutdown().await;
    }
}

on_both! {
    /// Invariant 5 within one dispatch: two tasks that share feeds, dispatched together, open
    /// each shared feed once.
    #[tokio::test]
    async fn tasks_sharing_feeds_open_each_feed_once(backend) {
        let p = TestParent::on(backend.clone()).await;
        p.online_node("n", json!({})).await;
        let feeds = p.feeds(12_000_000, 4).await;
        p.task(&feeds[..3]).await;
        p.task(&feeds[1..]).await;
        let all = p.post(&cascade("/dispatch-task"), &p.admin(), json!({})).await;
        assert_eq!(all.ok()["allocations_created"], 4, "{}", all.text);
        let open = p.get(&cascade("/allocations?status=pending&limit=200"), &p.admin()).await;
        let mut opened: Vec<String> = open.ok()["list"]
            .as_array()
            .expect("list")
            .iter()
            .flat_map(|a| a["feed_ids"].as_array().cloned().unwrap_or_default())
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect();
        opened.sort();
        assert_eq!(opened, feeds, "every feed opened exactly once");
        p.shutdown().await;
    }
}
