//! The envelope and status table for bad input (PROTOCOL §2), request ids, health probes.

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade};
use reqwest::Method;
use serde_json::json;

on_both! {
    #[tokio::test]
    async fn unknown_routes_and_wrong_methods_answer_in_the_envelope(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p.get("/api/v1/wx/cascade/nope", &p.admin()).await;
        assert_eq!(r.err(404), "not_found");
        assert_eq!(r.body["message"], "no such route");
        p.get("/api/v1/cascade/nodes/", &p.admin()).await.err(404);
        p.get("/elsewhere", &p.admin()).await.err(404);
        let r = p
            .send(Method::DELETE, &cascade("/heartbeat"), &p.admin(), None)
            .await;
        assert_eq!(r.err(405), "method_not_allowed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn malformed_json_empty_and_oversized_bodies(backend) {
        let p = TestParent::on(backend.clone()).await;
        let send = |body: Vec<u8>| {
            p.client
                .post(p.url(&cascade("/nodes")))
                .header("Authorization", format!("Bearer {}", p.token))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };
        let r = TestParent::reply(send(b"{\"node_type\": 1,".to_vec()).await.expect("sent")).await;
        assert_eq!(r.err(400), "bad_request");
        assert!(
            r.body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid JSON body"))
        );
        TestParent::reply(send(Vec::new()).await.expect("sent"))
            .await
            .err(400);
        TestParent::reply(send(b"[1,2]".to_vec()).await.expect("sent"))
            .await
            .err(400);
        TestParent::reply(
            send(b"{\"node_type\":1,\"name\":\"a\"} trailing".to_vec())
                .await
                .expect("sent"),
        )
        .await
        .err(400);
        let mut big = b"{\"node_type\":1,\"name\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
        big.extend(b"\"}");
        let r = TestParent::reply(send(big).await.expect("sent")).await;
        assert_eq!(r.err(413), "too_large");
        assert_eq!(
            p.get(&cascade("/nodes"), &p.admin())
                .await
                .ok()
                .as_array()
                .map(Vec::len),
            Some(0),
            "nothing stored"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn every_response_carries_a_request_id_and_echoes_the_callers(backend) {
        let p = TestParent::on(backend.clone()).await;
        for path in ["/healthz", "/nope", &cascade("/nodes")] {
            let r = p.get(path, &p.admin()).await;
            let id = r
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(!id.is_empty(), "{path}");
        }
        let resp = p
            .client
            .get(p.url("/healthz"))
            .header("X-Request-Id", "trace-me-42")
            .send()
            .await
            .expect("sent");
        assert_eq!(
            resp.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some("trace-me-42")
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn health_and_readiness(backend) {
        let p = TestParent::on(backend.clone()).await;
        assert_eq!(
            p.get("/healthz", &crate::helpers::Auth::None).await.ok()["status"],
            "up"
        );
        assert_eq!(
            p.get("/readyz", &crate::helpers::Auth::None).await.ok()["status"],
            "ready"
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn a_broken_database_gives_a_generic_500_without_sql() {
    let p = TestParent::spawn().await;
    let path = p.dir.path().join("cascade.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("side connection");
    sqlx::query("DROP TABLE we_cascade_sync_logs")
        .execute(&mut conn)
        .await
        .expect("table dropped");
    let r = p.get(&cascade("/sync-logs"), &p.admin()).await;
    assert_eq!(r.err(500), "internal");
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("internal error (request "), "{message}");
    assert!(
        !r.text.to_lowercase().contains("sync_logs") && !r.text.contains("SELECT"),
        "{}",
        r.text
    );
    assert!(r.body["data"]["request_id"].is_string());
    // Other endpoints keep working.
    p.post(
        &cascade("/nodes"),
        &p.admin(),
        json!({"node_type": 1, "name": "x"}),
    )
    .await
    .ok();
    p.shutdown().await;
}

/// PostgreSQL enforces column types that SQLite does not: a value out of a column's range
/// gets 400 in the envelope, never a 500; long article text fits (our schema uses TEXT).
#[tokio::test]
async fn values_postgres_cannot_store_get_400_and_long_text_fits() {
    let Some(backend) = crate::helpers::db::Backend::postgres() else {
        return;
    };
    let p = TestParent::on(backend).await;
    let node = p.online_node("n", json!({})).await;
    let r = p
        .post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"capacity": 3_000_000_000_u64}),
        )
        .await;
    assert_eq!(r.err(400), "bad_request");
    let feeds = p.feeds(13_000_000, 1).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    let pkg = p.claim_one(&node).await;
    let long = format!("https://mp.weixin.qq.com/s/{}", "x".repeat(3000));
    let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"],
                      "articles": [{"id": "1", "title": "t\u{0}itle", "url": long}]});
    let up = p
        .post(&cascade("/upload-articles"), &node.auth(), body)
        .await;
    assert_eq!(up.ok()["new_count"], 1, "{}", up.text);
    p.shutdown().await;
}
