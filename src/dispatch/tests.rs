use super::retry::*;
use super::*;
use chrono::{NaiveDate, TimeDelta};
use proptest::prelude::*;
use std::collections::HashSet;

fn node(id: &str, free: i64) -> NodeSnapshot {
    NodeSnapshot {
        id: id.into(),
        online: true,
        cooling: false,
        session_parked: false,
        fetchers: vec![Source::Wechat],
        free,
        quota: HashMap::new(),
    }
}

fn feeds(n: usize, source: Source) -> Vec<FeedRef> {
    (0..n)
        .map(|i| FeedRef {
            id: format!("F{i:04}"),
            source,
        })
        .collect()
}

#[test]
fn most_free_capacity_wins_and_capacity_is_shared_across_calls() {
    let mut nodes = vec![node("a", 2), node("b", 3)];
    let plan1 = plan(&feeds(3, Source::Wechat), &mut nodes, 1);
    let assigned: Vec<_> = plan1.iter().map(|a| a.node_id.as_deref()).collect();
    assert_eq!(assigned, [Some("b"), Some("a"), Some("b")]);
    let plan2 = plan(&feeds(3, Source::Wechat), &mut nodes, 1);
    let assigned: Vec<_> = plan2.iter().map(|a| a.node_id.as_deref()).collect();
    assert_eq!(
        assigned,
        [Some("a"), Some("b"), None],
        "two slots were left"
    );
}

#[test]
fn positive_quota_is_preferred_over_free_capacity() {
    let mut nodes = vec![node("a", 1), node("b", 9)];
    nodes[0].quota.insert("F0000".into(), 2);
    nodes[1].quota.insert("F0000".into(), 0);
    let p = plan(&feeds(1, Source::Wechat), &mut nodes, 1);
    assert_eq!(p[0].node_id.as_deref(), Some("a"));
}

#[test]
fn feeds_go_only_to_nodes_that_can_fetch_them() {
    let mut nodes = vec![
        node("wechat-only", 5),
        node("cooling", 5),
        node("rss", 5),
        node("offline", 5),
    ];
    nodes[1].cooling = true;
    nodes[1].fetchers = vec![Source::Wechat, Source::Rss];
    nodes[2].fetchers = vec![Source::Rss];
    nodes[3].online = false;
    let mut all = feeds(1, Source::Wechat);
    all.push(FeedRef {
        id: "R".into(),
        source: Source::Rss,
    });
    let p = plan(&all, &mut nodes, 1);
    assert_eq!(p[0].node_id.as_deref(), Some("wechat-only"));
    assert_eq!(p[1].source, Source::Rss);
    assert!(
        matches!(p[1].node_id.as_deref(), Some("cooling" | "rss")),
        "cooling only blocks WeChat"
    );
    nodes[0].session_parked = true;
    let p = plan(&feeds(1, Source::Wechat), &mut nodes, 1);
    assert_eq!(p[0].node_id, None, "no eligible WeChat node: unassigned");
}

#[test]
fn batches_hold_feeds_per_allocation_of_one_kind() {
    let mut nodes = vec![node("a", 10)];
    nodes[0].fetchers = vec![Source::Wechat, Source::Rss];
    let mut all = feeds(5, Source::Wechat);
    all.push(FeedRef {
        id: "R".into(),
        source: Source::Rss,
    });
    let p = plan(&all, &mut nodes, 2);
    let sizes: Vec<_> = p.iter().map(|a| (a.feed_ids.len(), a.source)).collect();
    assert_eq!(
        sizes,
        [
            (2, Source::Wechat),
            (2, Source::Wechat),
            (1, Source::Wechat),
            (1, Source::Rss)
        ]
    );
}

fn arb_nodes() -> impl Strategy<Value = Vec<NodeSnapshot>> {
    prop::collection::vec(
        (
            0i64..6,
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(0i64..3, 4),
        ),
        0..6,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (free, online, rss, quotas))| {
                let mut n = node(&format!("n{i}"), free);
                n.online = online;
                if rss {
                    n.fetchers.push(Source::Rss);
                }
                n.quota = quotas
                    .iter()
                    .enumerate()
                    .map(|(j, q)| (format!("F{j:04}"), *q))
                    .collect();
                n
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn placement_invariants(mut nodes in arb_nodes(), n_feeds in 0usize..40, rss_every in 1usize..5, per in 1usize..4) {
        let all: Vec<FeedRef> = (0..n_feeds)
            .map(|i| FeedRef { id: format!("F{i:04}"), source: if i % rss_every == 0 { Source::Rss } else { Source::Wechat } })
            .collect();
        let before = nodes.clone();
        let mut again = nodes.clone();
        let p = plan(&all, &mut nodes, per);

        // each feed exactly once
        let placed: Vec<&String> = p.iter().flat_map(|a| a.feed_ids.iter()).collect();
        prop_assert_eq!(placed.len(), all.len());
        prop_assert_eq!(placed.iter().collect::<HashSet<_>>().len(), all.len());
        // never over capacity, only eligible nodes
        for n in &before {
            let load: i64 = p.iter().filter(|a| a.node_id.as_deref() == Some(&n.id)).map(|a| a.feed_ids.len() as i64).sum();
            prop_assert!(load <= n.free.max(0));
            for a in p.iter().filter(|a| a.node_id.as_deref() == Some(&n.id)) {
                prop_assert!(n.can_fetch(a.source));
                prop_assert!(a.feed_ids.len() <= per);
            }
        }
        // quota preferred: a batch assigned to a node without positive quota had no eligible
        // node with a positive quota and room at that moment (checked by replay)
        let mut replay = before.clone();
        for a in &p {
            let size = a.feed_ids.len() as i64;
            let q = |n: &NodeSnapshot| a.feed_ids.iter().map(|f| n.quota.get(f).copied().unwrap_or(0)).max().unwrap_or(0);
            let best_quota = replay.iter().filter(|n| n.can_fetch(a.source) && n.free >= size).map(q).max().unwrap_or(0);
            if let Some(id) = &a.node_id {
                let chosen = replay.iter_mut().find(|n| &n.id == id).expect("node exists");
                prop_assert_eq!(q(chosen), best_quota);
                chosen.free -= size;
            } else {
                prop_assert_eq!(replay.iter().filter(|n| n.can_fetch(a.source) && n.free >= size).count(), 0);
            }
        }
        // deterministic
        prop_assert_eq!(plan(&all, &mut again, per), p);
    }
}

fn t0() -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 22)
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .expect("valid")
}

const POLICY: RetryPolicy = RetryPolicy {
    retry_base: 30,
    retry_max: 1800,
    cooldown_base: 900,
    cooldown_max: 21600,
};

#[test]
fn failure_reasons_follow_the_table() {
    let now = t0();
    let f = |r, s, attempt| after_failure(r, s, attempt, 5, None, &POLICY, 1.0, now);
    assert_eq!(
        f(Reason::RateLimited, Source::Wechat, 1),
        (
            Next::Pending {
                available_at: now,
                spend_attempt: false
            },
            NodeEffect::Cooldown { retry_after: None }
        )
    );
    assert_eq!(
        f(Reason::RateLimited, Source::Rss, 1).0,
        Next::Pending {
            available_at: now + TimeDelta::seconds(30),
            spend_attempt: false
        }
    );
    assert_eq!(
        f(Reason::SessionExpired, Source::Wechat, 1),
        (
            Next::Pending {
                available_at: now,
                spend_attempt: false
            },
            NodeEffect::SessionExpired
        )
    );
    assert_eq!(f(Reason::NotFound, Source::Wechat, 1).0, Next::Failed);
    assert_eq!(
        f(Reason::Network, Source::Wechat, 3).0,
        Next::Pending {
            available_at: now + TimeDelta::seconds(120),
            spend_attempt: true
        }
    );
    assert_eq!(
        f(Reason::Parse, Source::Wechat, 5).0,
        Next::Failed,
        "attempts exhausted"
    );
    assert_eq!(
        f(Reason::Released, Source::Wechat, 2).0,
        Next::Pending {
            available_at: now,
            spend_attempt: false
        }
    );
    assert_eq!(Reason::parse(Some("bogus")), Reason::Unknown);
    assert_eq!(Reason::parse(None), Reason::Unknown);
    // `closed`: the source refuses everyone; the work comes back after `retry_base` without
    // spending an attempt (another source or node takes it), and no node cools.
    assert_eq!(Reason::parse(Some("closed")), Reason::Closed);
    assert_eq!(Reason::Closed.as_str(), "closed");
    for attempt in [3, 5] {
        assert_eq!(
            f(Reason::Closed, Source::Wechat, attempt),
            (
                Next::Pending {
                    available_at: now + TimeDelta::seconds(POLICY.retry_base),
                    spend_attempt: false
                },
                NodeEffect::None
            )
        );
    }
}

#[test]
fn every_wire_name_reads_back_and_a_cancel_is_final() {
    for &name in Reason::WIRE_NAMES {
        assert_eq!(Reason::parse(Some(name)).as_str(), name);
    }
    let now = t0();
    assert_eq!(
        after_failure(
            Reason::Cancelled,
            Source::Wechat,
            1,
            5,
            None,
            &POLICY,
            1.0,
            now
        ),
        (Next::Failed, NodeEffect::None),
        "never retried, no node cools"
    );
}

#[test]
fn backoff_is_capped_and_jittered() {
    assert_eq!(backoff(1, &POLICY, 1.0), TimeDelta::seconds(30));
    assert_eq!(backoff(20, &POLICY, 1.0), TimeDelta::seconds(1800));
    assert_eq!(backoff(2, &POLICY, 0.5), TimeDelta::seconds(30));
    assert_eq!(backoff(2, &POLICY, 1.5), TimeDelta::seconds(90));
    assert_eq!(cooldown(1, None, &POLICY), TimeDelta::seconds(900));
    assert_eq!(cooldown(3, None, &POLICY), TimeDelta::seconds(3600));
    assert_eq!(cooldown(10, None, &POLICY), TimeDelta::seconds(21600));
    assert_eq!(cooldown(1, Some(5000), &POLICY), TimeDelta::seconds(5000));
}

#[test]
fn a_nodes_retry_after_is_capped_at_retry_max() {
    let now = t0();
    let huge = Some(1_000_000_000_000);
    let rss = after_failure(
        Reason::RateLimited,
        Source::Rss,
        1,
        5,
        huge,
        &POLICY,
        1.0,
        now,
    );
    assert_eq!(
        rss.0,
        Next::Pending {
            available_at: now + TimeDelta::seconds(1800),
            spend_attempt: false
        }
    );
    let wechat = after_failure(
        Reason::RateLimited,
        Source::Wechat,
        1,
        5,
        huge,
        &POLICY,
        1.0,
        now,
    );
    assert_eq!(
        wechat.1,
        NodeEffect::Cooldown {
            retry_after: Some(1800)
        }
    );
    let negative = after_failure(
        Reason::RateLimited,
        Source::Rss,
        1,
        5,
        Some(-5),
        &POLICY,
        1.0,
        now,
    );
    assert_eq!(
        negative.0,
        Next::Pending {
            available_at: now + TimeDelta::seconds(30),
            spend_attempt: false
        },
        "a useless hint falls back to retry_base"
    );
}

#[test]
fn a_spent_login_budget_waits_without_an_attempt_or_a_cooldown() {
    let now = t0();
    let out = after_failure(
        Reason::OutOfBudget,
        Source::Wechat,
        1,
        5,
        Some(600),
        &POLICY,
        1.0,
        now,
    );
    assert_eq!(
        out,
        (
            Next::Pending {
                available_at: now + TimeDelta::seconds(600),
                spend_attempt: false
            },
            NodeEffect::None
        )
    );
    assert_eq!(Reason::OutOfBudget.as_str(), "rate_limited");
    let item = serde_json::json!({"feed_id": "f", "success": false, "reason": "rate_limited", "budget": true, "retry_after": 600});
    let r = crate::parent::ops::alloc::feed_result(&item);
    assert_eq!((r.reason, r.retry_after), (Reason::OutOfBudget, Some(600)));
    let plain = serde_json::json!({"feed_id": "f", "success": false, "reason": "rate_limited"});
    assert_eq!(
        crate::parent::ops::alloc::feed_result(&plain).reason,
        Reason::RateLimited
    );
}
