//! The operator's console (issue 16): `GET {P}/stats` (throughput, feed age, node health from
//! the sampler), the audit log and the feed-status filters.

use crate::helpers::db::{execute, on_both, query};
use crate::helpers::{TestNode, TestParent, cascade, cascade_doc};
use chrono::{NaiveDateTime, TimeDelta, Timelike};
use serde_json::{Value, json};
use werss_cascade::parent::sampler::Sampler;
use werss_cascade::protocol::time::to_wire;
use werss_cascade::store::NewFeed;

/// The start of `t`'s minute, on the wire.
fn minute(t: NaiveDateTime) -> String {
    let m = t
        .with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("a minute");
    to_wire(m)
}

/// An RSS feed at a made-up URL; its id.
async fn rss_feed(p: &TestParent, n: u32) -> String {
    let feed = NewFeed::rss(&format!("https://example.org/{n}.xml"), &format!("rss {n}"));
    let id = feed.id.clone();
    p.store
        .create_feeds(vec![feed], p.clock.now())
        .await
        .expect("feed created");
    id
}

/// Dispatches a one-feed task over `feed` and has `node` claim it; the package.
async fn claimed(p: &TestParent, node: &TestNode, feed: String) -> Value {
    let task = p.task(&[feed]).await;
    p.dispatch(&task).await;
    p.claim_one(node).await
}

/// `node` finishes an allocation of `feed`: completed, or failed for good (`not_found`).
async fn finish(p: &TestParent, node: &TestNode, feed: String, completed: bool) {
    let pkg = claimed(p, node, feed).await;
    let r = if completed {
        p.complete(node, &pkg).await
    } else {
        p.status(node, &pkg, "failed", json!({"reason": "not_found"}))
            .await
    };
    let expected = if completed { "completed" } else { "failed" };
    assert_eq!(
        p.allocation(pkg["allocation_id"].as_str().expect("id"))
            .await["status"],
        expected,
        "{}",
        r.text
    );
}

const WECHAT: &str = r#"{"wechat_session": "valid", "fetchers": ["wechat"]}"#;
const RSS: &str = r#"{"fetchers": ["rss"]}"#;

fn beat(body: &str) -> Value {
    serde_json::from_str(body).expect("json")
}

async fn stats(p: &TestParent, minutes: u32) -> Value {
    p.get(&cascade(&format!("/stats?minutes={minutes}")), &p.admin())
        .await
        .ok()
        .clone()
}

on_both! {
    #[tokio::test]
    async fn throughput_counts_finished_allocations_by_minute_and_node(backend) {
        let p = TestParent::on(backend.clone()).await;
        // A WeChat-only and an RSS-only node: each allocation can go to one of them only.
        let alpha = p.online_node("alpha", beat(WECHAT)).await;
        let beta = p.online_node("beta", beat(RSS)).await;
        let early = p.clock.now();
        finish(&p, &alpha, p.feeds(100, 1).await.remove(0), true).await;

        p.clock.advance(TimeDelta::minutes(20));
        for (node, body) in [(&alpha, WECHAT), (&beta, RSS)] {
            p.post(&cascade("/heartbeat"), &node.auth(), beat(body)).await.ok();
        }
        let first = p.clock.now();
        finish(&p, &alpha, p.feeds(200, 1).await.remove(0), true).await;
        finish(&p, &alpha, p.feeds(201, 1).await.remove(0), true).await;
        finish(&p, &beta, rss_feed(&p, 1).await, false).await;
        p.clock.advance(TimeDelta::minutes(1));
        let second = p.clock.now();
        finish(&p, &alpha, p.feeds(300, 1).await.remove(0), false).await;
        finish(&p, &beta, rss_feed(&p, 2).await, true).await;

        let d = stats(&p, 5).await;
        assert_eq!(d["since"], minute(second - TimeDelta::minutes(4)), "{d}");
        assert_eq!(d["until"], to_wire(second), "{d}");
        let row = |at: NaiveDateTime, node: &TestNode, name: &str, completed: i64, failed: i64| {
            json!({"minute": minute(at), "node_id": node.id, "node_name": name,
                   "completed": completed, "failed": failed})
        };
        let mut expected = vec![
            row(first, &alpha, "alpha", 2, 0),
            row(first, &beta, "beta", 0, 1),
            row(second, &alpha, "alpha", 0, 1),
            row(second, &beta, "beta", 1, 0),
        ];
        expected.sort_by_key(|r| (r["minute"].to_string(), r["node_id"].to_string()));
        assert_eq!(d["throughput"], json!(expected), "the early one is outside 5 minutes");

        // An hour reaches back to the first completion.
        let d = stats(&p, 60).await;
        assert_eq!(d["throughput"][0], row(early, &alpha, "alpha", 1, 0), "{d}");
        assert_eq!(d["throughput"].as_array().map(Vec::len), Some(5), "{d}");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn feed_age_counts_enabled_feeds_by_their_newest_article(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(500, 8).await;
        let now = p.clock.now().and_utc().timestamp();
        let (hour, day) = (3_600, 86_400);
        // Newest article per feed: 10 min, 3 h, 12 h, 2 d, 10 d, none; a paused feed's
        // articles and a paused feed without any count nowhere.
        let articles = [
            (0, 600), (0, 30 * day), (1, 3 * hour), (2, 12 * hour), (3, 2 * day),
            (4, 10 * day), (6, 600),
        ];
        let sql: String = articles
            .iter()
            .enumerate()
            .map(|(i, (f, age))| {
                format!(
                    "INSERT INTO we_articles (id, mp_id, title, publish_time) \
                     VALUES ('a{i}', '{}', 't', {});",
                    feeds[*f],
                    now - age
                )
            })
            .collect();
        execute(&p.state.config.db, &sql).await;
        for paused in [&feeds[6], &feeds[7]] {
            p.put(&cascade(&format!("/feeds/{paused}")), &p.admin(), json!({"status": 0}))
                .await
                .ok();
        }

        let d = stats(&p, 60).await;
        let ages: Vec<(String, i64)> = d["feed_age"]
            .as_array()
            .expect("feed_age")
            .iter()
            .map(|a| {
                let label = a["label"].as_str().unwrap_or_default().to_string();
                (label, a["count"].as_i64().unwrap_or(-1))
            })
            .collect();
        let labels = ["< 1 h", "1–6 h", "6–24 h", "1–7 d", "> 7 d", "never"];
        let expected: Vec<(String, i64)> = labels
            .iter()
            .map(|l| (l.to_string(), 1))
            .collect();
        assert_eq!(ages, expected, "{d}");
        assert_eq!(d["older_than_24h"], 3, "{d}");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn the_sampler_records_each_node_once_a_minute(backend) {
        let p = TestParent::on(backend.clone()).await;
        // Cooling: a rate-limited failure.
        let cool = p.online_node("cool", beat(WECHAT)).await;
        let pkg = claimed(&p, &cool, p.feeds(700, 1).await.remove(0)).await;
        p.status(&cool, &pkg, "failed", json!({"reason": "rate_limited"})).await.ok();
        // Busy: holds a one-feed allocation.
        let busy = p.online_node("busy", beat(RSS)).await;
        claimed(&p, &busy, rss_feed(&p, 7).await).await;
        let expired = p
            .online_node("expired", json!({"wechat_session": "expired", "fetchers": ["wechat"]}))
            .await;
        let silent = p.add_node("silent").await;
        let sampler = Sampler::new(p.state.clone());
        let first = p.clock.now();
        assert_eq!(sampler.run_once().await.expect("sampled").written, 4);

        let sample = |at: NaiveDateTime, online: bool, cooling: bool, expired: bool, held: i64| {
            json!({"minute": minute(at), "online": online, "cooling": cooling,
                   "session_expired": expired, "held": held})
        };
        let health = |d: &Value, node: &TestNode| {
            d["health"]
                .as_array()
                .and_then(|h| h.iter().find(|n| n["node_id"] == node.id.as_str()).cloned())
                .unwrap_or(Value::Null)
        };
        let d = stats(&p, 1).await;
        assert_eq!(d["health"].as_array().map(Vec::len), Some(4), "{d}");
        assert_eq!(health(&d, &cool)["node_name"], "cool");
        assert_eq!(health(&d, &cool)["samples"], json!([sample(first, true, true, false, 0)]));
        assert_eq!(health(&d, &busy)["samples"], json!([sample(first, true, false, false, 1)]));
        assert_eq!(health(&d, &expired)["samples"], json!([sample(first, true, false, true, 0)]));
        assert_eq!(health(&d, &silent)["samples"], json!([sample(first, false, false, false, 0)]));

        // The minute is written once: the first pass's state stands.
        p.post(&cascade("/heartbeat"), &silent.auth(), json!({})).await.ok();
        assert_eq!(sampler.run_once().await.expect("sampled").written, 0);
        assert_eq!(health(&stats(&p, 1).await, &silent)["samples"][0]["online"], false);

        p.clock.advance(TimeDelta::minutes(1));
        let next = p.clock.now();
        assert_eq!(sampler.run_once().await.expect("sampled").written, 4);
        assert_eq!(
            health(&stats(&p, 2).await, &silent)["samples"],
            json!([sample(first, false, false, false, 0), sample(next, true, false, false, 0)])
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn samples_older_than_a_week_are_pruned(backend) {
        let p = TestParent::on(backend.clone()).await;
        let at = |days: i64| {
            (p.clock.now() - TimeDelta::days(days)).format("%Y-%m-%d %H:%M:%S%.6f")
        };
        execute(
            &p.state.config.db,
            &format!(
                "INSERT INTO cascade_node_samples
                   (node_id, minute, online, cooling, session_expired, held)
                 VALUES ('gone', '{}', 1, 0, 0, 0), ('gone', '{}', 1, 0, 0, 0);",
                at(8),
                at(6)
            ),
        )
        .await;
        let outcome = Sampler::new(p.state.clone()).run_once().await.expect("sampled");
        assert_eq!((outcome.written, outcome.pruned), (0, 1));
        let left: Vec<(i64,)> = query(
            &p.state.config.db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM cascade_node_samples WHERE node_id = 'gone'",
        )
        .await;
        assert_eq!(left, vec![(1,)]);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn stats_minutes_out_of_range_is_a_400_naming_the_field(backend) {
        let p = TestParent::on(backend.clone()).await;
        for minutes in ["0", "1441", "-5"] {
            let r = p.get(&cascade(&format!("/stats?minutes={minutes}")), &p.admin()).await;
            r.err(400);
            assert_eq!(r.body["data"]["field"], "minutes", "{}", r.text);
        }
        assert_eq!(stats(&p, 1440).await["throughput"], json!([]));
        let d = p.get(&cascade("/stats"), &p.admin()).await.ok().clone();
        assert_eq!(d["since"], minute(p.clock.now() - TimeDelta::minutes(59)), "60 by default");
        p.shutdown().await;
    }
}

/// The audit rows, newest first, as `(actor, action, target, detail)`.
fn audit_rows(d: &Value) -> Vec<(Value, Value, Value, Value)> {
    d["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["actor"].clone(),
                r["action"].clone(),
                r["target"].clone(),
                r["detail"].clone(),
            )
        })
        .collect()
}

on_both! {
    #[tokio::test]
    async fn admin_changes_are_audited_without_bodies_and_nothing_else_is(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let feed = p.feeds(900, 1).await.remove(0);
        p.put(&cascade_doc(&format!("/feeds/{feed}")), &p.admin(), json!({"status": 0}))
            .await
            .ok();
        let pad = "a".repeat(600);
        // Of a query, only the parameters the admin routes read are kept (a stray `token`
        // is not), cut to 500 characters.
        p.post(&cascade(&format!("/stop-scheduler?token=SECRET&q={pad}")), &p.admin(), json!({}))
            .await
            .ok();
        // Not audited: failures, reads, node requests, admin requests refused to a node.
        p.put(&cascade("/feeds/MP_WXS_404"), &p.admin(), json!({"status": 0})).await.err(404);
        p.post(&cascade("/nodes"), &p.admin(), json!({"node_type": 1})).await.err(400);
        p.get(&cascade("/nodes"), &p.admin()).await.ok();
        p.post(&cascade("/heartbeat"), &node.auth(), json!({})).await.ok();
        p.post(&cascade("/nodes"), &node.auth(), json!({"node_type": 1, "name": "x"}))
            .await
            .err(403);
        for path in ["/stats", "/audit"] {
            p.get(&cascade(path), &node.auth()).await.err(403);
        }

        let r = p.get(&cascade("/audit"), &p.admin()).await;
        let d = r.ok();
        let admin = json!("admin");
        let detail = format!("q={}", "a".repeat(498));
        assert_eq!(
            audit_rows(d),
            vec![
                (admin.clone(), json!("POST /stop-scheduler"), Value::Null, json!(detail)),
                (admin.clone(), json!("PUT /feeds/{id}"), json!(feed), Value::Null),
                (admin.clone(), json!("POST /nodes/{id}/credentials"), json!(node.id), Value::Null),
                (admin.clone(), json!("POST /nodes"), Value::Null, Value::Null),
                (admin.clone(), json!("login"), Value::Null, Value::Null),
            ],
            "{d}"
        );
        assert_eq!(d["total"], 5);
        assert!(!r.text.contains(&node.secret), "the SK never reaches the audit log");
        assert!(!r.text.contains("SECRET"), "nor a stray query parameter");
        assert!(!r.text.contains(crate::helpers::PASSWORD));
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn the_audit_log_pages_and_filters_by_actor_and_action(backend) {
        let p = TestParent::on(backend.clone()).await;
        for name in ["a", "b", "c"] {
            p.post(&cascade("/nodes"), &p.admin(), json!({"node_type": 1, "name": name}))
                .await
                .ok();
        }
        let page = p.get(&cascade("/audit?limit=2&offset=1"), &p.admin()).await;
        let d = page.ok();
        assert_eq!(d["total"], 4, "{d}");
        assert_eq!(d["page"], json!({"limit": 2, "offset": 1}));
        let actions: Vec<&Value> = d["list"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| &r["action"])
            .collect();
        assert_eq!(actions, [&json!("POST /nodes"), &json!("POST /nodes")]);

        let only = p.get(&cascade("/audit?action=POST%20%2Fnodes"), &p.admin()).await;
        assert_eq!(only.ok()["total"], 3);
        let logins = p.get(&cascade("/audit?action=login&actor=admin"), &p.admin()).await;
        assert_eq!(logins.ok()["total"], 1);
        let nobody = p.get(&cascade("/audit?actor=nobody"), &p.admin()).await;
        assert_eq!(nobody.ok()["total"], 0);
        assert_eq!(nobody.ok()["list"], json!([]));
        p.get(&cascade("/audit?limit=0"), &p.admin()).await.err(400);
        p.shutdown().await;
    }
}

/// The feed ids `feed-status?{query}` lists, and its total.
async fn listed(p: &TestParent, query: &str) -> (Vec<String>, i64) {
    let r = p
        .get(&cascade(&format!("/feed-status?{query}")), &p.admin())
        .await;
    let d = r.ok();
    let mut ids: Vec<String> = d["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| f["id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    (ids, d["total"].as_i64().unwrap_or(-1))
}

on_both! {
    #[tokio::test]
    async fn feed_status_filters_by_text_source_and_state(backend) {
        let p = TestParent::on(backend.clone()).await;
        // Unescaped, `%` would match every name and `a_x` "betaQx" too.
        let feeds = ["Alpha News", "betaQx 100%", "gamma_x"]
            .iter()
            .enumerate()
            .map(|(i, name)| NewFeed::wechat(&format!("MP_WXS_{}", 40 + i), name))
            .collect::<Vec<_>>();
        let ids: Vec<String> = feeds.iter().map(|f| f.id.clone()).collect();
        p.store.create_feeds(feeds, p.clock.now()).await.expect("feeds");
        let rss = rss_feed(&p, 9).await;
        // Pausing and resuming a feed is `PUT {P}/feeds/{id}` with `status` 0 or 1.
        p.put(&cascade(&format!("/feeds/{}", ids[1])), &p.admin(), json!({"status": 0})).await.ok();

        let one = |id: &String| (vec![id.clone()], 1);
        assert_eq!(listed(&p, "q=ALPHA").await, one(&ids[0]), "case-insensitive");
        assert_eq!(listed(&p, "q=%25").await, one(&ids[1]), "% is a plain character");
        assert_eq!(listed(&p, "q=a_x").await, one(&ids[2]), "_ is a plain character");
        assert_eq!(listed(&p, "q=mp_wxs_41").await, one(&ids[1]), "the id matches too");
        assert_eq!(listed(&p, "source=rss").await, one(&rss));
        assert_eq!(listed(&p, "source=wechat").await, (ids.clone(), 3));
        assert_eq!(listed(&p, "state=paused").await, one(&ids[1]));
        let mut enabled = vec![ids[0].clone(), ids[2].clone(), rss.clone()];
        enabled.sort();
        assert_eq!(listed(&p, "state=enabled").await, (enabled, 3));
        assert_eq!(
            listed(&p, "state=enabled&source=wechat&q=a").await,
            (vec![ids[0].clone(), ids[2].clone()], 2)
        );
        let (page, total) = listed(&p, "source=wechat&limit=1&offset=1").await;
        assert_eq!((page.len(), total), (1, 3), "the total counts every page");

        p.put(&cascade(&format!("/feeds/{}", ids[1])), &p.admin(), json!({"status": 1})).await.ok();
        assert_eq!(listed(&p, "state=paused").await, (vec![], 0), "resumed");
        for (query, field) in [("source=atom", "source"), ("state=off", "state")] {
            let r = p.get(&cascade(&format!("/feed-status?{query}")), &p.admin()).await;
            r.err(400);
            assert_eq!(r.body["data"]["field"], field, "{}", r.text);
        }
        p.shutdown().await;
    }
}
