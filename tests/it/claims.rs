//! Claim order across the parts of the steal set (issue 14 item 3: each part is its own
//! indexed walk, merged in claim order).

use crate::helpers::db::{execute, on_both};
use crate::helpers::{TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use werss_cascade::protocol::time;

/// Asks placement for `feeds` on `node` (a positive `feed_quota` wins placement).
async fn prefer(p: &TestParent, node: &TestNode, feeds: &[&String]) {
    let quota: serde_json::Map<String, Value> =
        feeds.iter().map(|f| ((*f).clone(), json!(1))).collect();
    p.put(
        &cascade(&format!("/nodes/{}", node.id)),
        &p.admin(),
        json!({"sync_config": {"feed_quota": quota}}),
    )
    .await
    .ok();
}

/// A heartbeat: the node is alive as of now.
async fn beat(p: &TestParent, node: &TestNode) {
    p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
        .await
        .ok();
}

/// The feed of each package, in the order the claim handed them out.
fn feeds_of(claimed: &Value) -> Vec<String> {
    claimed
        .as_array()
        .expect("a list of packages")
        .iter()
        .map(|pkg| pkg["feeds"][0]["id"].as_str().expect("feed id").to_string())
        .collect()
}

on_both! {
    /// With `steal_after` 60 s and `offline_after` 180 s, a node with no work of its own takes,
    /// in claim order (`available_at`): work available since before `steal_after` (old by
    /// dispatch), then the work of a node gone silent (fresh, but its node cannot take it),
    /// then work old by dispatch whose availability moved later (as adopted from WeRSS), and
    /// never the fresh work of a healthy node.
    #[tokio::test]
    async fn the_steal_set_is_taken_in_claim_order_from_each_of_its_parts(backend) {
        let p = TestParent::on(backend.clone()).await;
        let healthy = p.add_node("healthy").await;
        let dying = p.add_node("dying").await;
        let thief = p.add_node("thief").await;
        let feeds = p.feeds(8100, 4).await;
        let (aged, moved, silent, fresh) = (&feeds[0], &feeds[1], &feeds[2], &feeds[3]);
        let start = p.clock.now();

        prefer(&p, &healthy, &[aged, moved, fresh]).await;
        prefer(&p, &dying, &[silent]).await;
        // t = 0: both online; the aged and the moved work go to the healthy node.
        beat(&p, &healthy).await;
        beat(&p, &dying).await;
        let task = p.task(&[aged.clone(), moved.clone()]).await;
        assert_eq!(p.dispatch(&task).await["allocations_created"], 2);
        // t = 150: the dying node (silent 150 s, still online) gets work, then goes quiet.
        p.clock.advance(TimeDelta::seconds(150));
        beat(&p, &healthy).await;
        let task = p.task(std::slice::from_ref(silent)).await;
        assert_eq!(p.dispatch(&task).await["allocations_created"], 1);
        // t = 170: fresh work for the healthy node.
        p.clock.advance(TimeDelta::seconds(20));
        beat(&p, &healthy).await;
        let task = p.task(std::slice::from_ref(fresh)).await;
        assert_eq!(p.dispatch(&task).await["allocations_created"], 1);
        // The moved work became available only at t = 180 (dispatched at t = 0).
        let at = time::to_db(start + TimeDelta::seconds(180));
        execute(
            &p.state.config.db,
            &format!(
                "UPDATE we_cascade_task_allocations SET available_at = '{at}'
                  WHERE feed_ids = '[\"{moved}\"]'"
            ),
        )
        .await;
        // t = 200: the dying node is offline (silent 200 s), the healthy one is not.
        p.clock.advance(TimeDelta::seconds(30));
        beat(&p, &healthy).await;

        let stolen = p.claim(&thief, "limit=10").await;
        assert_eq!(
            feeds_of(stolen.ok()),
            vec![aged.clone(), silent.clone(), moved.clone()],
            "{}",
            stolen.text
        );
        let own = p.claim(&healthy, "limit=10").await;
        assert_eq!(feeds_of(own.ok()), vec![fresh.clone()], "{}", own.text);
        p.shutdown().await;
    }
}

on_both! {
    /// The steal set's parts share one limit: a claim of two takes the first two in claim
    /// order, whichever part they come from, and leaves the rest pending.
    #[tokio::test]
    async fn a_steal_limited_by_the_claim_takes_the_first_in_claim_order(backend) {
        let p = TestParent::on(backend.clone()).await;
        let dying = p.add_node("dying").await;
        let thief = p.add_node("thief").await;
        let feeds = p.feeds(8200, 3).await;
        // Three dispatches 10 s apart (t = 150, 160, 170) to a node last heard at t = 0: at
        // t = 190 it is offline and the work is still fresh by dispatch (under 60 s), so it is
        // stealable only because of its node.
        beat(&p, &dying).await;
        p.clock.advance(TimeDelta::seconds(150));
        for f in &feeds {
            let task = p.task(std::slice::from_ref(f)).await;
            assert_eq!(p.dispatch(&task).await["allocations_created"], 1);
            p.clock.advance(TimeDelta::seconds(10));
        }
        p.clock.advance(TimeDelta::seconds(10));

        let first = p.claim(&thief, "limit=2").await;
        assert_eq!(feeds_of(first.ok()), feeds[..2].to_vec(), "{}", first.text);
        let rest = p.claim(&thief, "limit=2").await;
        assert_eq!(feeds_of(rest.ok()), feeds[2..].to_vec(), "{}", rest.text);
        p.shutdown().await;
    }
}
