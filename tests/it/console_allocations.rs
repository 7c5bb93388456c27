//! The operator's console, allocations (issue 16): the list's filters, one allocation with
//! its feeds and attempt history, and retry and cancel by ids or by filter.

use crate::helpers::db::{on_both, query};
use crate::helpers::{TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};

fn id(pkg: &Value) -> String {
    pkg["allocation_id"]
        .as_str()
        .expect("allocation id")
        .to_string()
}

/// Claims the next allocation and reports it failed with `reason`; its id.
async fn fail_next(p: &TestParent, node: &TestNode, reason: &str, message: &str) -> String {
    let pkg = p.claim_one(node).await;
    let r = p
        .status(
            node,
            &pkg,
            "failed",
            json!({"reason": reason, "error_message": message}),
        )
        .await;
    r.ok();
    id(&pkg)
}

/// `(feed id, open_allocation_id)` of every feed, by id.
async fn open_feeds(p: &TestParent) -> Vec<(String, Option<String>)> {
    query(
        &p.state.config.db,
        "SELECT id, open_allocation_id FROM we_feeds ORDER BY id",
    )
    .await
}

/// `(outcome, reason, attempt)` of an allocation's attempt history, oldest first.
async fn history(p: &TestParent, allocation: &str) -> Vec<(String, Option<String>, i64)> {
    query(
        &p.state.config.db,
        &format!(
            "SELECT outcome, reason, CAST(attempt AS BIGINT) FROM cascade_allocation_attempts
              WHERE allocation_id = '{allocation}' ORDER BY at, attempt"
        ),
    )
    .await
}

async fn detail(p: &TestParent, allocation: &str) -> Value {
    let r = p
        .get(&cascade(&format!("/allocations/{allocation}")), &p.admin())
        .await;
    r.ok().clone()
}

on_both! {
    #[tokio::test]
    async fn the_list_filters_by_feed_and_by_reason(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({"capacity": 10})).await;
        // One id is the other's prefix: only the quoted id matches.
        let short = p.feeds(9_100, 1).await;
        let long = p.feeds(91_000, 1).await;
        let task = p.task(&[short[0].clone(), long[0].clone()]).await;
        p.dispatch(&task).await;
        let first = fail_next(&p, &node, "not_found", "gone").await;
        let second = fail_next(&p, &node, "network", "reset").await;

        for (feed, expected) in [(&short[0], 1), (&long[0], 1), (&"MP_WXS_910".to_string(), 0)] {
            let r = p.get(&cascade(&format!("/allocations?feed_id={feed}")), &p.admin()).await;
            assert_eq!(r.ok()["total"], expected, "{feed}: {}", r.text);
            if expected == 1 {
                assert_eq!(r.ok()["list"][0]["feed_ids"], json!([feed]), "{}", r.text);
            }
        }
        let r = p.get(&cascade("/allocations?reason=not_found"), &p.admin()).await;
        assert_eq!(r.ok()["total"], 1, "{}", r.text);
        assert_eq!(r.ok()["list"][0]["id"], first.as_str());
        let r = p.get(&cascade("/allocations?reason=network&status=pending"), &p.admin()).await;
        assert_eq!(r.ok()["total"], 1, "{}", r.text);
        assert_eq!(r.ok()["list"][0]["id"], second.as_str());
        let r = p.get(&cascade("/allocations?reason=cancelled"), &p.admin()).await;
        assert_eq!(r.ok()["total"], 0, "a known word that matches nothing");

        let r = p.get(&cascade("/allocations?reason=bogus"), &p.admin()).await;
        assert_eq!(r.err(400), "bad_request");
        assert_eq!(r.body["data"]["field"], "reason", "{}", r.text);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn the_detail_shows_feed_names_and_the_attempt_history(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("crawler", json!({})).await;
        let feeds = p.feeds(9_200, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let alloc = fail_next(&p, &node, "network", "connection reset").await;
        p.clock.advance(TimeDelta::hours(1));
        p.post(&cascade("/heartbeat"), &node.auth(), json!({})).await.ok();
        assert_eq!(fail_next(&p, &node, "not_found", "gone").await, alloc);

        let d = detail(&p, &alloc).await;
        assert_eq!(d["id"], alloc.as_str());
        assert_eq!(d["status"], "failed");
        assert_eq!(d["task_id"], task.as_str());
        assert!(d.get("available_at").is_some() && d.get("lease_expires_at").is_some(), "{d}");
        assert!(d.get("lease_token").is_none(), "never shown");
        assert_eq!(
            d["feeds"],
            json!([{"id": feeds[0], "name": format!("feed {}", feeds[0]), "source": "wechat", "status": 1}])
        );
        let attempts = d["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 2, "{d}");
        let pick = |a: &Value| {
            (a["attempt"].clone(), a["node_id"].clone(), a["node_name"].clone(), a["outcome"].clone(),
             a["reason"].clone(), a["error_message"].clone())
        };
        assert_eq!(
            pick(&attempts[0]),
            (json!(1), json!(node.id), json!("crawler"), json!("retry"), json!("network"), json!("connection reset"))
        );
        assert_eq!(
            pick(&attempts[1]),
            (json!(2), json!(node.id), json!("crawler"), json!("failed"), json!("not_found"), json!("gone"))
        );
        assert!(attempts[0]["at"].as_str() < attempts[1]["at"].as_str(), "oldest first: {d}");

        // A feed deleted since is still listed, without a name.
        p.delete(&cascade(&format!("/feeds/{}", feeds[0])), &p.admin()).await.ok();
        let d = detail(&p, &alloc).await;
        assert_eq!(d["feeds"], json!([{"id": feeds[0], "name": null, "source": null, "status": null}]));

        let r = p.get(&cascade("/allocations/no-such-allocation"), &p.admin()).await;
        assert_eq!(r.err(404), "not_found");
        assert_eq!(r.body["message"], "分配记录不存在");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn every_attempt_that_ends_without_completing_is_recorded_once(backend) {
        let p = TestParent::on(backend.clone()).await;
        // Released by its node, then returned by its disabled node, then expired.
        let (node, pkg) = p.one_claimed(9_300).await;
        let alloc = id(&pkg);
        let body = json!({"allocations": [{"allocation_id": alloc, "lease_token": pkg["lease_token"]}]});
        p.post(&cascade("/release"), &node.auth(), body).await.ok();
        p.clock.advance(TimeDelta::seconds(1));
        p.claim_one(&node).await;
        p.put(&cascade(&format!("/nodes/{}", node.id)), &p.admin(), json!({"is_active": false}))
            .await
            .ok();
        p.clock.advance(TimeDelta::seconds(1));
        let other = p.online_node("other", json!({})).await;
        assert_eq!(id(&p.claim_one(&other).await), alloc);
        // Its holder falls silent past the lease.
        p.clock.advance(TimeDelta::seconds(301));
        assert_eq!(p.reap().await.expired, 1);
        assert_eq!(
            history(&p, &alloc).await,
            vec![
                ("released".into(), Some("released".into()), 1),
                ("released".into(), Some("node_disabled".into()), 1),
                ("expired".into(), Some("lease_expired".into()), 1),
            ]
        );
        let ids: Vec<(String,)> =
            query(&p.state.config.db, "SELECT id FROM cascade_allocation_attempts").await;
        let unique: std::collections::HashSet<uuid::Uuid> = ids
            .iter()
            .map(|(id,)| uuid::Uuid::parse_str(id).expect("a UUID"))
            .collect();
        assert_eq!(unique.len(), 3, "{ids:?}");
        let d = detail(&p, &alloc).await;
        assert_eq!(d["attempts"][2]["error_message"], "lease expired");
        assert_eq!(d["attempts"][2]["node_name"], "other");

        // A completion writes nothing: the completed attempt is the allocation row.
        let (done_node, done) = p.one_claimed(9_301).await;
        p.complete(&done_node, &done).await.ok();
        assert!(history(&p, &id(&done)).await.is_empty());
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn retry_by_filter_reopens_failed_rows_and_a_node_claims_them_again(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({"capacity": 10})).await;
        let feeds = p.feeds(9_400, 3).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let mut failed = Vec::new();
        for _ in 0..3 {
            failed.push(fail_next(&p, &node, "not_found", "gone").await);
        }
        let done = p.allocation(&failed[0]).await;
        assert_eq!(done["status"], "failed");
        assert!(open_feeds(&p).await.iter().all(|(_, open)| open.is_none()));

        p.clock.advance(TimeDelta::minutes(5));
        let r = p.post(&cascade("/allocations/retry"), &p.admin(), json!({"filter": {"task_id": task}})).await;
        // In id order (claims take allocations of equal times by id, so also in that order).
        assert_eq!(
            r.ok(),
            &json!({"matched": 3, "changed": 3, "skipped": 0, "ids": failed, "more": false, "next": null}),
            "{}", r.text
        );
        for a in &failed {
            let a = p.allocation(a).await;
            assert_eq!(
                (a["status"].clone(), a["attempt"].clone(), a["node_id"].clone(), a["reason"].clone(),
                 a["error_message"].clone(), a["completed_at"].clone(), a["claimed_at"].clone()),
                (json!("pending"), json!(0), Value::Null, Value::Null, Value::Null, Value::Null, Value::Null),
                "{a}"
            );
            assert_eq!(a["dispatched_at"], a["available_at"], "{a}");
        }
        // Each feed is open again by its own row (invariant 5): a dispatch adds nothing.
        let open = open_feeds(&p).await;
        assert!(open.iter().all(|(_, o)| o.as_ref().is_some_and(|o| failed.contains(o))), "{open:?}");
        assert_eq!(p.dispatch(&task).await["allocations_created"], 0);

        let r = p.claim(&node, "limit=5").await;
        let claimed = r.ok().as_array().expect("packages").clone();
        assert_eq!(claimed.len(), 3, "{}", r.text);
        assert!(claimed.iter().all(|pkg| pkg["attempt"] == 1));
        // The history keeps the failures the retry cleared from the rows.
        assert_eq!(history(&p, &failed[0]).await, vec![("failed".into(), Some("not_found".into()), 1)]);
        // Nothing failed is left to retry.
        let r = p.post(&cascade("/allocations/retry"), &p.admin(), json!({"filter": {}})).await;
        assert_eq!(r.ok()["matched"], 0, "{}", r.text);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn retry_keeps_only_free_feeds_and_skips_a_row_with_none(backend) {
        let p = TestParent::on_with(backend.clone(), |c| c.cascade.feeds_per_allocation = 2).await;
        let node = p.online_node("n", json!({"capacity": 10})).await;
        let feeds = p.feeds(9_500, 2).await;
        let both = p.task(&feeds).await;
        let second_only = p.task(&feeds[1..]).await;
        p.dispatch(&both).await;
        let wide = fail_next(&p, &node, "not_found", "gone").await;
        assert_eq!(p.allocation(&wide).await["feed_count"], 2);
        p.dispatch(&second_only).await;
        let narrow = fail_next(&p, &node, "not_found", "gone").await;
        // Another open allocation holds the second feed.
        let holder = p.dispatch(&second_only).await;
        assert_eq!(holder["allocations_created"], 1);
        let open_before = open_feeds(&p).await;

        let r = p
            .post(&cascade("/allocations/retry"), &p.admin(), json!({"ids": [narrow, wide, "no-such-allocation"]}))
            .await;
        assert_eq!(
            r.ok(),
            &json!({"matched": 2, "changed": 1, "skipped": 1, "ids": [wide], "more": false, "next": null}),
            "{}", r.text
        );
        let reopened = p.allocation(&wide).await;
        assert_eq!(reopened["status"], "pending");
        assert_eq!(reopened["feed_ids"], json!([feeds[0]]), "only the free feed");
        assert_eq!(reopened["feed_count"], 1);
        assert_eq!(p.allocation(&narrow).await["status"], "failed", "none of its feeds is free");
        let open = open_feeds(&p).await;
        assert_eq!(open[0], (feeds[0].clone(), Some(wide.clone())));
        assert_eq!(open[1], open_before[1], "the holder keeps its feed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn retry_by_ids_acts_on_failed_rows_only(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({"capacity": 10})).await;
        let feeds = p.feeds(9_600, 2).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let failed = fail_next(&p, &node, "not_found", "gone").await;
        let pending = p.get(&cascade("/allocations?status=pending"), &p.admin()).await;
        let pending = pending.ok()["list"][0]["id"].as_str().expect("pending").to_string();

        let r = p.post(&cascade("/allocations/retry"), &p.admin(), json!({"ids": [pending, failed]})).await;
        assert_eq!(
            r.ok(),
            &json!({"matched": 2, "changed": 1, "skipped": 1, "ids": [failed], "more": false, "next": null}),
            "{}", r.text
        );
        assert_eq!(p.allocation(&failed).await["status"], "pending");
        assert_eq!(p.claim(&node, "limit=5").await.ok().as_array().map(Vec::len), Some(2));
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn cancel_by_filter_fails_pending_rows_and_frees_their_feeds(backend) {
        let p = TestParent::on(backend.clone()).await;
        p.online_node("n", json!({})).await;
        let feeds = p.feeds(9_700, 2).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;

        let r = p.post(&cascade("/allocations/cancel"), &p.admin(), json!({"filter": {"task_id": task}})).await;
        assert_eq!((r.ok()["matched"].clone(), r.ok()["changed"].clone(), r.ok()["more"].clone()),
                   (json!(2), json!(2), json!(false)), "{}", r.text);
        let ids: Vec<String> = serde_json::from_value(r.ok()["ids"].clone()).expect("ids");
        for a in &ids {
            let a = p.allocation(a).await;
            assert_eq!(
                (a["status"].clone(), a["reason"].clone(), a["error_message"].clone()),
                (json!("failed"), json!("cancelled"), json!("cancelled by admin")),
                "{a}"
            );
            assert!(a["completed_at"].is_string(), "{a}");
        }
        assert_eq!(history(&p, &ids[0]).await, vec![("cancelled".into(), Some("cancelled".into()), 0)]);
        assert!(open_feeds(&p).await.iter().all(|(_, open)| open.is_none()));
        let listed = p.get(&cascade("/allocations?reason=cancelled"), &p.admin()).await;
        assert_eq!(listed.ok()["total"], 2);
        // Their feeds are free: a new dispatch takes them.
        assert_eq!(p.dispatch(&task).await["allocations_created"], 2);
        // Cancelled rows are not cancelled again.
        let r = p.post(&cascade("/allocations/cancel"), &p.admin(), json!({"ids": ids})).await;
        assert_eq!(r.ok()["changed"], 0, "already cancelled: {}", r.text);
        assert_eq!(r.ok()["skipped"], 2);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_cancelled_claim_refuses_its_holders_later_reports(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(9_800).await;
        let alloc = id(&pkg);
        let upload = |n: &str| json!({"allocation_id": alloc, "lease_token": pkg["lease_token"],
                                      "articles": [{"id": n, "title": n}]});
        let first = p.post(&cascade("/upload-articles"), &node.auth(), upload("1")).await;
        assert_eq!(first.ok()["new_count"], 1);

        let r = p.post(&cascade("/allocations/cancel"), &p.admin(), json!({"ids": [alloc]})).await;
        assert_eq!(r.ok()["ids"], json!([alloc]), "a claimed row is cancelled: {}", r.text);
        let counters = p.get(&cascade("/pending-allocations"), &p.admin()).await;
        assert_eq!(counters.ok()["held_feeds"], 0, "no longer held");

        assert_eq!(p.status(&node, &pkg, "executing", json!({})).await.err(409), "invalid_transition");
        assert_eq!(p.status(&node, &pkg, "completed", json!({})).await.err(409), "invalid_transition");
        assert_eq!(
            p.post(&cascade("/upload-articles"), &node.auth(), upload("2")).await.err(409),
            "invalid_transition"
        );
        assert_eq!(p.complete(&node, &pkg).await.err(409), "invalid_transition");
        let a = p.allocation(&alloc).await;
        assert_eq!((a["status"].clone(), a["reason"].clone()), (json!("failed"), json!("cancelled")));
        assert_eq!(a["article_count"], 1, "counted once, before the cancel");
        let status = p.get(&cascade("/feed-status"), &p.admin()).await;
        assert_eq!(status.ok()["list"][0]["article_count"], 1, "the refused upload stored nothing");
        assert_eq!(history(&p, &alloc).await, vec![("cancelled".into(), Some("cancelled".into()), 1)]);
        let d = detail(&p, &alloc).await;
        assert_eq!(d["attempts"][0]["node_id"], node.id.as_str());

        // Retried and claimed again: the old package's token is fenced out.
        p.post(&cascade("/allocations/retry"), &p.admin(), json!({"ids": [alloc]})).await.ok();
        let again = p.claim_one(&node).await;
        assert_eq!(id(&again), alloc);
        assert_eq!(p.complete(&node, &pkg).await.err(409), "lease_lost");
        assert_eq!(p.complete(&node, &again).await.ok()["status"], "completed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn bodies_naming_both_or_neither_selection_are_refused(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (_, pkg) = p.one_claimed(9_900).await;
        let alloc = id(&pkg);
        let many: Vec<String> = (0..1001).map(|i| format!("a{i}")).collect();
        for action in ["retry", "cancel"] {
            let path = cascade(&format!("/allocations/{action}"));
            for body in [json!({}), json!({"ids": [alloc], "filter": {}}), json!({"ids": null, "filter": null})] {
                let r = p.post(&path, &p.admin(), body.clone()).await;
                assert_eq!(r.err(400), "bad_request", "{action} {body}");
            }
            for (body, field) in [
                (json!({"ids": []}), "ids"),
                (json!({"ids": many}), "ids"),
                (json!({"filter": {"reason": "bogus"}}), "filter.reason"),
                (json!({"filter": {"status": "completed"}}), "filter.status"),
            ] {
                let r = p.post(&path, &p.admin(), body).await;
                r.err(400);
                assert_eq!(r.body["data"]["field"], field, "{action}: {}", r.text);
            }
            // A misspelt key is refused, never read as "no filter" (everything).
            for body in [json!({"filter": {"task": "t"}}), json!({"filter": {}, "all": true})] {
                p.post(&path, &p.admin(), body.clone()).await.err(400);
            }
        }
        let wrong = [("retry", "pending"), ("cancel", "failed")];
        for (action, status) in wrong {
            let r = p
                .post(&cascade(&format!("/allocations/{action}")), &p.admin(), json!({"filter": {"status": status}}))
                .await;
            assert_eq!(r.body["data"]["field"], "filter.status", "{action} {status}: {}", r.text);
        }
        assert_eq!(p.allocation(&alloc).await["status"], "claimed", "nothing changed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn node_credentials_get_403_on_the_allocation_console(backend) {
        let p = TestParent::on(backend.clone()).await;
        let (node, pkg) = p.one_claimed(9_950).await;
        let alloc = id(&pkg);
        let calls = [
            (reqwest::Method::GET, format!("/allocations/{alloc}"), None),
            (reqwest::Method::POST, "/allocations/retry".to_string(), Some(json!({"ids": [alloc]}))),
            (reqwest::Method::POST, "/allocations/cancel".to_string(), Some(json!({"ids": [alloc]}))),
        ];
        for (method, path, body) in calls {
            let r = p.send(method.clone(), &cascade(&path), &node.auth(), body).await;
            assert_eq!(r.err(403), "forbidden", "{method} {path}");
        }
        assert_eq!(p.allocation(&alloc).await["status"], "claimed", "nothing changed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_filtered_call_goes_on_after_the_id_the_last_one_stopped_at(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({"capacity": 10})).await;
        let feeds = p.feeds(9_800, 3).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let mut failed = Vec::new();
        for _ in 0..3 {
            failed.push(fail_next(&p, &node, "not_found", "gone").await);
        }
        failed.sort();
        // Rows come in id order; `after` skips those up to and including it.
        let r = p
            .post(&cascade("/allocations/retry"), &p.admin(), json!({"filter": {"task_id": task, "after": failed[0]}}))
            .await;
        assert_eq!(
            r.ok(),
            &json!({"matched": 2, "changed": 2, "skipped": 0, "ids": [failed[1], failed[2]], "more": false, "next": null}),
            "{}", r.text
        );
        assert_eq!(p.allocation(&failed[0]).await["status"], "failed");
        p.shutdown().await;
    }
}
