//! Webhooks for new articles, sent by the parent to a local receiver.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// What the receiver got: headers and body.
pub(crate) type Got = (HeaderMap, Value);

/// A webhook receiver on 127.0.0.1 that fails its first `failures` calls with 503.
pub(crate) async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<Got>) {
    receiver_on(0, failures).await
}

/// The same on a given port (0: any).
async fn receiver_on(port: u16, failures: usize) -> (String, mpsc::UnboundedReceiver<Got>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (tx, calls) = (tx.clone(), calls.clone());
            async move {
                let _ = tx.send((headers, serde_json::from_str(&body).unwrap_or(Value::Null)));
                if calls.fetch_add(1, Ordering::SeqCst) < failures {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

pub(crate) async fn next(rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("a webhook arrives")
        .expect("receiver open")
}

/// The next webhook of a retry: moves the parent's clock a second at a time (retries are
/// due by that clock) until the sender's next pass delivers one.
async fn next_retry(p: &TestParent, rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    for _ in 0..20 {
        p.clock.advance(chrono::TimeDelta::seconds(1));
        if let Ok(got) =
            tokio::time::timeout(std::time::Duration::from_millis(1500), rx.recv()).await
        {
            return got.expect("receiver open");
        }
    }
    panic!("no retry was delivered");
}

impl TestParent {
    /// Claims the next allocation as `node` and uploads `titles` as new articles.
    async fn upload_titles(&self, node: &TestNode, titles: &[&str]) -> Value {
        let pkg = self.claim_one(node).await;
        let feed = pkg["feeds"][0]["id"].as_str().expect("feed").to_string();
        let articles: Vec<Value> = titles
            .iter()
            .map(|t| json!({"id": format!("{feed}-{t}"), "mp_id": feed, "title": t, "url": format!("https://example.com/{t}"), "publish_time": 1_795_000_000}))
            .collect();
        let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"], "articles": articles});
        self.post(&cascade("/upload-articles"), &node.auth(), body)
            .await
            .ok();
        pkg
    }
}

on_both! {
    #[tokio::test]
    async fn new_articles_reach_the_task_webhook_once_rendered_with_retries(backend) {
        let p = TestParent::on_with(backend.clone(), |c| c.cascade.webhook_backoff_ms = 10).await;
        let (url, mut rx) = receiver(1).await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(9_000_000, 1).await;
        let template = r#"{"text": "{% for a in articles %}{{ a.title }} <{{ a.url }}>;{% endfor %}", "feed": "{{ feed.mp_name }}", "task": "{{ task.name }}"}"#;
        let t = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "digest", "message_type": 1, "message_template": template,
            "web_hook_url": url, "headers": "{\"X-Token\": \"abc\"}", "mps_id": [feeds[0]], "status": 1})).await;
        let task = t.ok()["id"].as_str().expect("id").to_string();
        p.dispatch(&task).await;
        let pkg = p.upload_titles(&node, &["one", "two"]).await;

        // First call refused with 503, then retried with the same message once due.
        let (_, refused) = next(&mut rx).await;
        let (headers, got) = next_retry(&p, &mut rx).await;
        assert_eq!(refused, got);
        assert_eq!(headers["x-token"], "abc", "task headers sent");
        assert_eq!(got["feed"], format!("feed {}", feeds[0]));
        assert_eq!(got["task"], "digest");
        let text = got["text"].as_str().expect("text");
        assert!(text.contains("one <https://example.com/one>;") && text.contains("two <https://example.com/two>;"), "{text}");

        // A replayed upload stores nothing new and sends nothing; the next new article does.
        let replay = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"],
            "articles": [{"id": format!("{}-one", feeds[0]), "mp_id": feeds[0], "title": "one"},
                         {"id": format!("{}-three", feeds[0]), "mp_id": feeds[0], "title": "three", "url": "https://example.com/three"}]});
        p.post(&cascade("/upload-articles"), &node.auth(), replay).await.ok();
        let (_, third) = next(&mut rx).await;
        assert_eq!(third["text"], "three <https://example.com/three>;");
        // The retry and the first delivery are counted (both were recorded before the next
        // message could be claimed).
        let metrics = p.get("/metrics", &crate::helpers::Auth::None).await.text;
        assert!(metrics.contains("cascade_webhook_attempts_total{outcome=\"retry\"} 1"), "{metrics}");
        assert!(metrics.contains("cascade_webhook_attempts_total{outcome=\"sent\"}"), "{metrics}");
        assert!(metrics.contains("cascade_webhook_outbox{status=\"sent\"}"), "{metrics}");
        p.shutdown().await;
    }
}

#[tokio::test]
async fn a_werss_style_template_renders_per_article_for_a_generic_receiver() {
    let p = TestParent::spawn().await;
    let (url, mut rx) = receiver(0).await;
    let node = p.online_node("n", json!({})).await;
    let feeds = p.feeds(9_100_000, 1).await;
    // Another task without a webhook over the same feed sends nothing.
    p.post(
        &cascade("/message-tasks"),
        &p.admin(),
        json!({"name": "quiet", "message_template": "x", "mps_id": [feeds[0]], "status": 1}),
    )
    .await
    .ok();
    let t = p
        .post(
            &cascade("/message-tasks"),
            &p.admin(),
            json!({"name": "alerts", "message_template": "{{ article.title }} ({{ feed.mp_name }})",
        "web_hook_url": url, "mps_id": [feeds[0]], "status": 1}),
        )
        .await;
    let task = t.ok()["id"].as_str().expect("id").to_string();
    p.dispatch(&task).await;
    p.upload_titles(&node, &["a", "b"]).await;
    let (_, got) = next(&mut rx).await;
    assert_eq!(got["title"], format!("feed {}: 2 new", feeds[0]));
    let content = got["content"].as_str().expect("content");
    let mut parts: Vec<&str> = content.split("\n\n").collect();
    parts.sort_unstable();
    let name = format!("feed {}", feeds[0]);
    assert_eq!(parts, vec![format!("a ({name})"), format!("b ({name})")]);
    p.shutdown().await;
}

/// The queue is in the database: webhooks a stopped parent could not deliver are sent by
/// another parent of the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_webhook_outlives_its_parent() {
    // The database outlives both parents' folders.
    let shared = tempfile::tempdir().expect("temp dir");
    let config = || {
        let mut c = crate::helpers::test_config(&shared);
        c.cascade.webhook_backoff_ms = 10;
        c.cascade.webhook_attempts = 50;
        c
    };
    let a = TestParent::spawn_with(config(), tempfile::tempdir().expect("dir")).await;
    let b =
        TestParent::spawn_on_clock(config(), tempfile::tempdir().expect("dir"), a.clock.clone())
            .await;
    // Nothing listens on the webhook's port yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        probe.local_addr().expect("addr").port()
    };
    let node = a.online_node("n", json!({})).await;
    let feeds = a.feeds(9_200_000, 1).await;
    let t = a.post(&cascade("/message-tasks"), &a.admin(), json!({"name": "late", "message_template": "{{ article.title }}",
        "web_hook_url": format!("http://127.0.0.1:{port}/hook"), "mps_id": [feeds[0]], "status": 1})).await;
    let task = t.ok()["id"].as_str().expect("id").to_string();
    a.dispatch(&task).await;
    a.upload_titles(&node, &["kept"]).await;
    a.shutdown().await;

    let (_, mut rx) = receiver_on(port, 0).await;
    let (_, got) = next_retry(&b, &mut rx).await;
    assert_eq!(got["content"], "kept");
    b.shutdown().await;
}
