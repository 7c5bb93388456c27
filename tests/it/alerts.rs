//! Operator alerts and login expiry reminders (issue 12 §3(c), §4): reminders 24 h and 6 h
//! before a login expires and on expiry, each once per login and expiry, posted to
//! `alert_webhook_url` (a receiver on loopback) by the parent.

use crate::helpers::db::on_both;
use crate::helpers::{Auth, TestNode, TestParent, cascade};
use crate::webhooks::{Got, next, receiver};
use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use werss_cascade::parent::reminders;
use werss_cascade::protocol::time::to_wire;

/// A reported login that ends at `expires_at`, with a `last_error` that must never reach an
/// alert.
fn login(id: &str, state: &str, expires_at: Option<NaiveDateTime>) -> Value {
    json!({"id": id, "kind": "mp", "name": format!("acct-{id}"), "state": state,
        "expires_at": expires_at.map(to_wire), "cooldown_until": null, "last_ok_at": null,
        "last_error": "LAST-ERROR-7c1d", "token": "TOKEN-SECRET-99e2"})
}

async fn beat(p: &TestParent, node: &TestNode, logins: Vec<Value>) {
    p.post(
        &cascade("/heartbeat"),
        &node.auth(),
        json!({"wechat_session": "valid", "logins": logins}),
    )
    .await
    .ok();
}

fn hours(h: i64) -> TimeDelta {
    TimeDelta::hours(h)
}

/// A parent whose alerts go to a fresh receiver.
pub(crate) async fn parent_with_receiver(
    backend: crate::helpers::db::Backend,
) -> (TestParent, UnboundedReceiver<Got>) {
    let (url, rx) = receiver(0).await;
    let p = TestParent::on_with(backend, |c| c.cascade.alert_webhook_url = url).await;
    (p, rx)
}

/// Waits (bounded) until every alert this parent raised has been sent, then asserts the
/// receiver got nothing more.
pub(crate) async fn assert_nothing_more(p: &TestParent, rx: &mut UnboundedReceiver<Got>) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !p.state.alert_tasks.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("alert sends finish");
    if let Ok((_, extra)) = rx.try_recv() {
        panic!("an unexpected alert: {extra}");
    }
}

/// The next alert's body, checked to hold exactly the listed keys and none of the login's
/// other reported values.
async fn next_alert(rx: &mut UnboundedReceiver<Got>) -> Value {
    let (_, body) = next(rx).await;
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "content",
            "event",
            "expires_at",
            "kind",
            "login_id",
            "name",
            "node_id",
            "node_name",
            "title"
        ],
        "{body}"
    );
    let text = body.to_string();
    for hidden in ["LAST-ERROR-7c1d", "TOKEN-SECRET-99e2"] {
        assert!(!text.contains(hidden), "an alert carries {hidden}: {text}");
    }
    body
}

on_both! {
    #[tokio::test]
    async fn each_reminder_is_sent_once_and_a_renewal_starts_over(backend) {
        let (p, mut rx) = parent_with_receiver(backend).await;
        let node = p.add_node("edge-1").await;
        let t0 = p.clock.now();
        let first_end = t0 + hours(23);

        // 23 h left: the 24 h reminder, once, however often the node reports it.
        beat(&p, &node, vec![login("a", "valid", Some(first_end))]).await;
        let got = next_alert(&mut rx).await;
        assert_eq!(got["event"], "login_expires_24h");
        assert_eq!(got["node_id"], node.id.as_str());
        assert_eq!(got["node_name"], "edge-1");
        assert_eq!((got["login_id"].as_str(), got["kind"].as_str(), got["name"].as_str()), (Some("a"), Some("mp"), Some("acct-a")));
        assert_eq!(got["expires_at"], to_wire(first_end));
        let content = got["content"].as_str().expect("content");
        assert!(content.contains("acct-a") && content.contains("edge-1"), "{content}");
        assert!(got["title"].as_str().is_some_and(|t| t.contains("24 h")), "{got}");
        for _ in 0..3 {
            beat(&p, &node, vec![login("a", "valid", Some(first_end))]).await;
        }
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 0);
        assert_nothing_more(&p, &mut rx).await;

        // 5 h left: the 6 h reminder, once.
        p.clock.advance(hours(18));
        beat(&p, &node, vec![login("a", "valid", Some(first_end))]).await;
        assert_eq!(next_alert(&mut rx).await["event"], "login_expires_6h");
        beat(&p, &node, vec![login("a", "expiring", Some(first_end))]).await;
        assert_nothing_more(&p, &mut rx).await;

        // Reported expired: the expiry alert, once.
        beat(&p, &node, vec![login("a", "expired", Some(first_end))]).await;
        assert_eq!(next_alert(&mut rx).await["event"], "login_expired");
        beat(&p, &node, vec![login("a", "expired", Some(first_end))]).await;
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 0);
        assert_nothing_more(&p, &mut rx).await;

        // A new scan moves the expiry 72 h out: nothing now...
        let second_end = p.clock.now() + hours(72);
        beat(&p, &node, vec![login("a", "valid", Some(second_end))]).await;
        assert_nothing_more(&p, &mut rx).await;
        // ...and the reminders of the new expiry in their turn, found by the sweep although
        // the node has gone silent.
        p.clock.advance(hours(49));
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 1);
        let got = next_alert(&mut rx).await;
        assert_eq!((got["event"].as_str(), got["expires_at"].as_str()), (Some("login_expires_24h"), Some(to_wire(second_end).as_str())));
        p.clock.advance(hours(18));
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 1);
        assert_eq!(next_alert(&mut rx).await["event"], "login_expires_6h");
        p.clock.advance(hours(6));
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 1);
        assert_eq!(next_alert(&mut rx).await["event"], "login_expired");
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 0);
        assert_nothing_more(&p, &mut rx).await;

        let metrics = p.get("/metrics", &Auth::None).await.text;
        for (event, n) in [("login_expires_24h", 2), ("login_expires_6h", 2), ("login_expired", 2)] {
            let line = format!("cascade_alerts_total{{event=\"{event}\",outcome=\"sent\"}} {n}");
            assert!(metrics.contains(&line), "{line} in {metrics}");
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_login_first_seen_late_gets_only_the_highest_reminder(backend) {
        let (p, mut rx) = parent_with_receiver(backend).await;
        let node = p.add_node("edge-2").await;
        let now = p.clock.now();
        beat(&p, &node, vec![
            login("dead", "expired", None),
            login("late", "valid", Some(now + hours(5))),
            login("past", "valid", Some(now - hours(1))),
            login("fine", "valid", Some(now + hours(48))),
        ]).await;
        let mut got: Vec<(String, String)> = Vec::new();
        for _ in 0..3 {
            let body = next_alert(&mut rx).await;
            got.push((body["login_id"].as_str().expect("id").into(), body["event"].as_str().expect("event").into()));
        }
        got.sort();
        assert_eq!(got, [
            ("dead".to_string(), "login_expired".to_string()),
            ("late".to_string(), "login_expires_6h".to_string()),
            ("past".to_string(), "login_expired".to_string()),
        ]);
        assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 0);
        assert_nothing_more(&p, &mut rx).await;
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn parents_sharing_a_database_or_restarting_send_a_reminder_once(backend) {
        let (url, mut rx) = receiver(0).await;
        let mut first = TestParent::on_with(backend, |c| c.cascade.alert_webhook_url = url.clone()).await;
        let node = first.add_node("edge-3").await;
        let end = first.clock.now() + hours(30);
        beat(&first, &node, vec![login("a", "valid", Some(end))]).await;
        assert_nothing_more(&first, &mut rx).await;

        // Two parents evaluate the same due login at once: one sends.
        let second = TestParent::join_with(&first, |c| c.cascade.alert_webhook_url = url.clone()).await;
        first.clock.advance(hours(7));
        let (a, b) = tokio::join!(reminders::check(&first.state, None), reminders::check(&second.state, None));
        assert_eq!(a.expect("first") + b.expect("second"), 1);
        assert_eq!(next_alert(&mut rx).await["event"], "login_expires_24h");
        assert_nothing_more(&first, &mut rx).await;
        assert_nothing_more(&second, &mut rx).await;

        // A restarted parent (its start-up sweep, then a heartbeat) does not send it again.
        first.stop().await;
        second.shutdown().await;
        let restarted = TestParent::join_with(&first, |c| c.cascade.alert_webhook_url = url.clone()).await;
        beat(&restarted, &node, vec![login("a", "valid", Some(end))]).await;
        assert_eq!(reminders::check(&restarted.state, None).await.expect("sweep"), 0);
        assert_nothing_more(&restarted, &mut rx).await;
        restarted.shutdown().await;
    }
}

#[tokio::test]
async fn an_alert_the_receiver_refuses_is_retried_then_given_up_once() {
    let (url, mut rx) = receiver(usize::MAX).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = crate::helpers::test_config(&dir);
    config.cascade.alert_webhook_url = url;
    config.cascade.webhook_attempts = 2;
    config.cascade.webhook_backoff_ms = 10;
    let p = TestParent::spawn_with(config, dir).await;
    let node = p.add_node("edge-4").await;
    beat(&p, &node, vec![login("a", "expired", None)]).await;
    let (_, one) = next(&mut rx).await;
    let (_, two) = next(&mut rx).await;
    assert_eq!(one, two, "the same alert, retried");
    assert_nothing_more(&p, &mut rx).await;
    let metrics = p.get("/metrics", &Auth::None).await.text;
    assert!(
        metrics.contains("cascade_alerts_total{event=\"login_expired\",outcome=\"failed\"} 1"),
        "{metrics}"
    );
    // Not claimed again: the failure is final for this expiry.
    assert_eq!(reminders::check(&p.state, None).await.expect("sweep"), 0);
    p.shutdown().await;
}

#[tokio::test]
async fn without_an_alert_url_reminders_are_only_logged_and_counted() {
    let p = TestParent::spawn().await;
    let node = p.add_node("edge-5").await;
    beat(&p, &node, vec![login("a", "expired", None)]).await;
    assert!(p.state.alert_tasks.is_empty(), "nothing is sent");
    let metrics = p.get("/metrics", &Auth::None).await.text;
    assert!(
        metrics.contains("cascade_alerts_total{event=\"login_expired\",outcome=\"logged\"} 1"),
        "{metrics}"
    );
    p.shutdown().await;
}

on_both! {
    #[tokio::test]
    async fn a_version_4_database_gains_the_reminder_columns_and_migrating_twice_is_harmless(backend) {
        let (url, mut rx) = receiver(0).await;
        let mut first = TestParent::on_with(backend, |c| c.cascade.alert_webhook_url = url.clone()).await;
        let db = first.state.config.db.clone();
        first.stop().await;
        // As version 4 left it: no reminder columns.
        crate::helpers::db::execute(&db, "ALTER TABLE cascade_node_logins DROP COLUMN reminded_stage;
            ALTER TABLE cascade_node_logins DROP COLUMN reminded_expires_at;
            UPDATE cascade_settings SET value = '4' WHERE key = 'schema_version';").await;
        let upgraded = TestParent::join_with(&first, |c| c.cascade.alert_webhook_url = url.clone()).await;
        let node = upgraded.add_node("edge-6").await;
        beat(&upgraded, &node, vec![login("a", "expired", None)]).await;
        assert_eq!(next_alert(&mut rx).await["event"], "login_expired");
        let mut upgraded = upgraded;
        upgraded.stop().await;
        // The version forgotten, the columns present: the migration runs again and keeps them.
        crate::helpers::db::execute(&db, "UPDATE cascade_settings SET value = '4' WHERE key = 'schema_version';").await;
        let again = TestParent::join_with(&first, |c| c.cascade.alert_webhook_url = url.clone()).await;
        beat(&again, &node, vec![login("a", "expired", None)]).await;
        assert_eq!(reminders::check(&again.state, None).await.expect("sweep"), 0);
        assert_nothing_more(&again, &mut rx).await;
        again.shutdown().await;
    }
}
