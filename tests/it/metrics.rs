//! `GET /metrics`: Prometheus text that a scraper can read, with events and levels.

use crate::helpers::db::on_both;
use crate::helpers::{Auth, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::json;
use std::collections::HashMap;

/// `name{labels}` → value, from the exposition.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

on_both! {
    #[tokio::test]
    async fn metrics_count_claims_dispatches_reports_and_reaps(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("alpha", json!({"capacity": 4})).await;
        let feeds = p.feeds(8_000_000, 3).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let first = p.claim_one(&node).await;
        let second = p.claim_one(&node).await;
        // A 200013 from WeChat, reported as a failed completion.
        let body = json!({"allocation_id": second["allocation_id"], "task_id": task, "lease_token": second["lease_token"], "article_count": 0,
                          "results": [{"feed_id": second["feeds"][0]["id"], "success": false, "reason": "rate_limited", "error": "200013"}]});
        p.post(&cascade("/report-completion"), &node.auth(), body).await.ok();
        // The first claim's lease runs out.
        p.clock.advance(TimeDelta::seconds(301));
        assert_eq!(p.reap().await.expired, 1);
        let r = p.client.get(p.url("/metrics")).send().await.expect("scraped");
        assert!(r.headers()["content-type"].to_str().expect("ct").starts_with("application/openmetrics-text"));
        let text = r.text().await.expect("body");
        assert!(text.ends_with("# EOF\n"), "{text}");
        let s = samples(&text);
        let get = |k: &str| *s.get(k).unwrap_or_else(|| panic!("{k} missing in:\n{text}"));
        assert_eq!(get("cascade_claims_total{outcome=\"claimed\"}"), 2.0);
        assert_eq!(get("cascade_claimed_allocations_total"), 2.0);
        assert_eq!(get("cascade_claim_duration_seconds_count"), 2.0);
        assert_eq!(get("cascade_dispatched_allocations_total"), 3.0);
        assert_eq!(get("cascade_dispatch_duration_seconds_count"), 1.0);
        assert_eq!(get("cascade_node_events_total{event=\"rate_limited\"}"), 1.0);
        assert_eq!(get("cascade_reaper_actions_total{action=\"lease_expired\"}"), 1.0);
        assert_eq!(get("cascade_allocations{status=\"pending\"}"), 3.0);
        // The node fell silent with the clock: it is offline now.
        assert_eq!(get("cascade_nodes_online"), 0.0);
        assert!(first["allocation_id"].is_string());

        // Back online: per-node levels appear.
        p.post(&cascade("/heartbeat"), &node.auth(), json!({"capacity": 4, "in_use": 1})).await.ok();
        let text = p.get("/metrics", &Auth::None).await.text;
        let s = samples(&text);
        let key = format!("cascade_node_capacity{{node=\"alpha\",node_id=\"{}\"}}", node.id);
        assert_eq!(s.get(&key).copied(), Some(4.0), "{text}");
        assert_eq!(s.get("cascade_nodes_online").copied(), Some(1.0));
        assert!(!text.contains(&node.secret) && !text.contains(&node.key), "no credentials in metrics");
        p.shutdown().await;
    }
}

/// Every family README documents for `/metrics` that needs no node or login to exist
/// (counters by their family name, without `_total`).
const DOCUMENTED: &[&str] = &[
    "cascade_claims",
    "cascade_claimed_allocations",
    "cascade_claim_duration_seconds",
    "cascade_dispatch_duration_seconds",
    "cascade_dispatched_allocations",
    "cascade_reaper_actions",
    "cascade_node_events",
    "cascade_webhook_attempts",
    "cascade_allocations",
    "cascade_webhook_outbox",
    "cascade_nodes_online",
    "cascade_alerts",
    "cascade_logins",
    "cascade_source_open",
];

/// Per-node families: present once a node is.
const PER_NODE: &[&str] = &[
    "cascade_node_in_use",
    "cascade_node_capacity",
    "cascade_node_held_feeds",
    "cascade_node_cooling",
];

#[tokio::test]
async fn a_fresh_parent_shows_every_documented_family() {
    let readme = include_str!("../../README.md");
    let p = TestParent::spawn().await;
    let text = p.get("/metrics", &Auth::None).await.text;
    let absent = |text: &str, families: &[&'static str]| -> Vec<&'static str> {
        families
            .iter()
            .inspect(|f| assert!(readme.contains(&format!("`{f}")), "{f} is not in README"))
            .filter(|f| !text.contains(&format!("# TYPE {f} ")))
            .copied()
            .collect()
    };
    let missing = absent(&text, DOCUMENTED);
    assert!(
        missing.is_empty(),
        "families absent before any event: {missing:?}\n{text}"
    );
    // Counters with a known set of labels start at zero, so a rate() has a first sample.
    let s = samples(&text);
    for key in [
        "cascade_claims_total{outcome=\"claimed\"}",
        "cascade_node_events_total{event=\"rate_limited\"}",
        "cascade_node_events_total{event=\"session_expired\"}",
        "cascade_webhook_attempts_total{outcome=\"failed\"}",
        "cascade_allocations{status=\"pending\"}",
        "cascade_nodes_online",
    ] {
        assert_eq!(s.get(key).copied(), Some(0.0), "{key} in:\n{text}");
    }
    p.online_node("n", json!({"capacity": 2})).await;
    let text = p.get("/metrics", &Auth::None).await.text;
    let missing = absent(&text, PER_NODE);
    assert!(
        missing.is_empty(),
        "per-node families absent with a node: {missing:?}\n{text}"
    );
    p.shutdown().await;
}
