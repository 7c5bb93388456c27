//! Capacity from measurements (issue 15, `node_capacity: auto`): placement gives each node
//! what it finished in `capacity_horizon` at its measured rate, within its static capacity,
//! so a slow node gets less and a fast one more; `static` (the default) ignores the rate.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::json;

async fn beat(p: &TestParent, node: &TestNode) {
    p.post(
        &cascade("/heartbeat"),
        &node.auth(),
        json!({"capacity": 20}),
    )
    .await
    .ok();
}

/// Dispatches a task over `feeds` and has `node` claim and complete `n` allocations.
async fn finish(p: &TestParent, node: &TestNode, feeds: &[String], n: usize) {
    let task = p.task(feeds).await;
    p.dispatch(&task).await;
    for _ in 0..n {
        let pkg = p.claim_one(node).await;
        assert_eq!(p.complete(node, &pkg).await.ok()["status"], "completed");
    }
}

/// Feeds assigned (pending) to each node.
async fn assigned(p: &TestParent, node: &TestNode) -> usize {
    let r = p
        .get(
            &cascade("/allocations?status=pending&limit=200"),
            &p.admin(),
        )
        .await;
    r.ok()["list"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["assigned_node_id"] == node.id.as_str())
        .count()
}

async fn measured_fleet(
    auto: bool,
    backend: crate::helpers::db::Backend,
) -> (TestParent, TestNode, TestNode) {
    let p = TestParent::on_with(backend, |c| {
        c.cascade.feeds_per_allocation = 1;
        c.cascade.default_max_capacity = 20;
        c.cascade.node_capacity = if auto { "auto" } else { "static" }.into();
        c.cascade.capacity_horizon = 300;
    })
    .await;
    // The fast node finishes ten feeds, then the slow one (the fast one disabled meanwhile, so
    // that its feed goes to the slow one) finishes one, 30 s later.
    let fast = p.online_node("fast", json!({"capacity": 20})).await;
    finish(&p, &fast, &p.feeds(9_000, 10).await, 10).await;
    p.clock.advance(TimeDelta::seconds(30));
    let slow = p.online_node("slow", json!({"capacity": 20})).await;
    p.put(
        &cascade(&format!("/nodes/{}", fast.id)),
        &p.admin(),
        json!({"is_active": false}),
    )
    .await
    .ok();
    finish(&p, &slow, &p.feeds(9_100, 1).await, 1).await;
    p.put(
        &cascade(&format!("/nodes/{}", fast.id)),
        &p.admin(),
        json!({"is_active": true, "reset_state": true}),
    )
    .await
    .ok();
    p.clock.advance(TimeDelta::minutes(5));
    beat(&p, &fast).await;
    beat(&p, &slow).await;
    (p, fast, slow)
}

on_both! {
    #[tokio::test]
    async fn auto_capacity_gives_a_slow_node_less_and_a_fast_one_more(backend) {
        let (p, fast, slow) = measured_fleet(true, backend.clone()).await;
        let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
        let rate = |id: &str| nodes.ok().as_array().expect("nodes").iter()
            .find(|n| n["id"] == id).expect("listed")["feeds_per_minute"].as_f64().expect("measured");
        assert!(rate(&fast.id) > rate(&slow.id) * 5.0, "{}", nodes.text);

        p.dispatch(&p.task(&p.feeds(9_200, 20).await).await).await;
        // Measured over the window before (empty) and 5½ minutes since: 10 feeds make 3.2 in
        // the 5-minute horizon (4), 1 feed 0.3 (at least 1). The other 15 wait unassigned.
        assert_eq!((assigned(&p, &fast).await, assigned(&p, &slow).await), (4, 1));
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn static_capacity_ignores_the_measured_rate(backend) {
        let (p, fast, slow) = measured_fleet(false, backend.clone()).await;
        p.dispatch(&p.task(&p.feeds(9_200, 20).await).await).await;
        assert_eq!((assigned(&p, &fast).await, assigned(&p, &slow).await), (10, 10));
        p.shutdown().await;
    }
}
