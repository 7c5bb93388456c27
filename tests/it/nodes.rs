//! Admin node API (PROTOCOL §6): CRUD, credentials, test-connection, and what never leaks.

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade, cascade_doc};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use werss_cascade::protocol::credentials::sha256_hex;

on_both! {
    #[tokio::test]
    async fn create_list_get_update_delete_a_node(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p
            .post(
                &cascade("/nodes"),
                &p.admin(),
                json!({"node_type": 1, "name": "child-01", "description": "d"}),
            )
            .await;
        assert_eq!(r.body["message"], "节点创建成功");
        let id = r.ok()["node_id"].as_str().expect("id").to_string();
        assert_eq!(r.ok()["is_active"], true);
        assert!(r.ok()["created_at"].as_str().expect("time").contains('T'));

        p.post(
            &cascade("/nodes"),
            &p.admin(),
            json!({"node_type": 0, "name": "parent-record"}),
        )
        .await
        .ok();
        let all = p.get(&cascade("/nodes"), &p.admin()).await;
        assert_eq!(all.ok().as_array().expect("list").len(), 2);
        let children = p.get(&cascade_doc("/nodes?node_type=1"), &p.admin()).await;
        let children = children.ok().as_array().expect("list").clone();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0]["status"], 0);
        assert_eq!(children[0]["sync_config"], json!({}));
        assert_eq!(children[0]["online"], false);
        assert_eq!(children[0]["fetchers"], json!(["wechat"]));
        assert_eq!(children[0]["capacity"], 10);

        let path = cascade(&format!("/nodes/{id}"));
        let upd = p.put(&path, &p.admin(), json!({"name": "renamed", "sync_config": {"max_capacity": 3, "feed_quota": {"MP_WXS_1": 2}}})).await;
        assert_eq!(upd.body["message"], "节点更新成功");
        assert_eq!(upd.ok(), &Value::Null);
        let got = p.get(&path, &p.admin()).await;
        assert_eq!(got.ok()["name"], "renamed");
        assert_eq!(got.ok()["description"], "d");
        assert_eq!(got.ok()["capacity"], 3);
        assert_eq!(got.ok()["sync_config"]["feed_quota"]["MP_WXS_1"], 2);

        let del = p.delete(&path, &p.admin()).await;
        assert_eq!(del.body["message"], "节点删除成功");
        let gone = p.get(&path, &p.admin()).await;
        assert_eq!(gone.err(404), "not_found");
        assert_eq!(gone.body["message"], "节点不存在");
        p.delete(&path, &p.admin()).await.err(404);
        p.put(&path, &p.admin(), json!({"name": "x"}))
            .await
            .err(404);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn invalid_node_input_gets_400_naming_the_field(backend) {
        let p = TestParent::on(backend.clone()).await;
        let cases = [
            (json!({"name": "x"}), "node_type"),
            (json!({"node_type": 1}), "name"),
            (json!({"node_type": 2, "name": "x"}), "node_type"),
            (json!({"node_type": "1", "name": "x"}), "node_type"),
            (json!({"node_type": 1, "name": ""}), "name"),
            (json!({"node_type": 1, "name": "x".repeat(256)}), "name"),
            (
                json!({"node_type": 1, "name": "x", "sync_config": []}),
                "sync_config",
            ),
            (
                json!({"node_type": 1, "name": "x", "sync_config": {"max_capacity": -1}}),
                "sync_config.max_capacity",
            ),
            (
                json!({"node_type": 1, "name": "x", "sync_config": {"feed_quota": {"a": "b"}}}),
                "sync_config.feed_quota",
            ),
        ];
        for (body, field) in cases {
            let r = p.post(&cascade("/nodes"), &p.admin(), body.clone()).await;
            assert_eq!(r.err(400), "bad_request", "{body}");
            assert_eq!(r.body["data"]["field"], field, "{body}: {}", r.text);
        }
        let node = p.add_node("ok").await;
        let r = p
            .put(
                &cascade(&format!("/nodes/{}", node.id)),
                &p.admin(),
                json!({"sync_config": {"max_capacity": "ten"}}),
            )
            .await;
        r.err(400);
        assert_eq!(
            p.get(&cascade("/nodes"), &p.admin())
                .await
                .ok()
                .as_array()
                .map(Vec::len),
            Some(1),
            "nothing stored by bad requests"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn credentials_are_shown_once_and_only_for_children(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        assert!(node.key.starts_with("CN") && node.key.len() == 34);
        assert!(node.secret.starts_with("CS") && node.secret.len() == 34);

        let parent_record = p
            .post(
                &cascade("/nodes"),
                &p.admin(),
                json!({"node_type": 0, "name": "p"}),
            )
            .await;
        let pid = parent_record.ok()["node_id"]
            .as_str()
            .expect("id")
            .to_string();
        let r = p
            .post(
                &cascade(&format!("/nodes/{pid}/credentials")),
                &p.admin(),
                json!({}),
            )
            .await;
        r.err(400);
        assert_eq!(r.body["message"], "只有子节点需要凭证");
        p.post(&cascade("/nodes/nope/credentials"), &p.admin(), json!({}))
            .await
            .err(404);

        let detail = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        let masked = detail.ok()["api_key"].as_str().expect("masked key");
        assert_eq!(masked, format!("{}...{}", &node.key[..6], &node.key[30..]));
        assert_eq!(detail.ok()["has_credentials"], true);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn no_response_reveals_a_secret_or_its_hash(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let hash = sha256_hex(&node.secret);
        p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
            .await
            .ok();
        let mut texts = Vec::new();
        for path in ["/nodes", &format!("/nodes/{}", node.id), "/sync-logs"] {
            texts.push(p.get(&cascade(path), &p.admin()).await.text);
        }
        texts.push(
            p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
                .await
                .text,
        );
        texts.push(
            p.post(
                &cascade(&format!("/nodes/{}/test-connection", node.id)),
                &p.admin(),
                json!({}),
            )
            .await
            .text,
        );
        for text in texts {
            assert!(!text.contains(&node.secret), "{text}");
            assert!(!text.contains(&hash), "{text}");
            assert!(!text.contains("api_secret_hash"), "{text}");
            assert!(!text.contains(&node.key), "full api_key shown: {text}");
        }
        p.shutdown().await;
    }
}

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A local receiver standing in for a child's notify listener; records what it got.
async fn receiver(status: u16) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/wx/cascade/notify",
        post(
            move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                let s = s.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    s.lock().expect("lock").push((auth, body.0));
                    (
                        axum::http::StatusCode::from_u16(status).expect("status"),
                        axum::Json(json!({"code": 0, "message": "通知已接收", "data": null})),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/api/v1/wx/cascade/notify",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

on_both! {
    #[tokio::test]
    async fn test_connection_pings_only_the_registered_callback(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let path = cascade(&format!("/nodes/{}/test-connection", node.id));
        let (decoy_url, decoy) = receiver(200).await;

        let r = p
            .post(
                &path,
                &p.admin(),
                json!({"api_url": decoy_url, "api_key": "x", "api_secret": "y"}),
            )
            .await;
        assert_eq!(r.body["message"], "连接测试失败");
        assert_eq!(r.ok()["connected"], false);
        assert_eq!(r.ok()["error"], "node has no callback_url");
        assert_eq!(r.ok()["target"], Value::Null);

        let (url, seen) = receiver(200).await;
        p.post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"callback_url": url}),
        )
        .await
        .ok();
        let r = p
            .post(&path, &p.admin(), json!({"api_url": decoy_url}))
            .await;
        assert_eq!(r.body["message"], "连接测试成功", "{}", r.text);
        assert_eq!(r.ok()["connected"], true);
        assert_eq!(r.ok()["http_status"], 200);
        assert!(r.ok()["latency_ms"].is_u64());
        assert_eq!(r.ok()["online"], true);
        let got = seen.lock().expect("lock").clone();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0,
            format!("AK-SK {}:{}", node.key, sha256_hex(&node.secret))
        );
        assert_eq!(got[0].1["type"], "ping");
        assert!(
            decoy.lock().expect("lock").is_empty(),
            "the body's api_url is never called"
        );

        let (refusing, _) = receiver(401).await;
        p.post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"callback_url": refusing}),
        )
        .await
        .ok();
        let r = p.post(&path, &p.admin(), json!({})).await;
        assert_eq!(r.ok()["connected"], false);
        assert_eq!(r.ok()["http_status"], 401);
        p.post(
            &cascade("/nodes/unknown/test-connection"),
            &p.admin(),
            json!({}),
        )
        .await
        .err(404);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn reset_state_clears_session_state(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        p.post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"wechat_session": "expired"}),
        )
        .await
        .ok();
        let path = cascade(&format!("/nodes/{}", node.id));
        assert_eq!(
            p.get(&path, &p.admin()).await.ok()["session_state"],
            "expired"
        );
        p.put(&path, &p.admin(), json!({"reset_state": true}))
            .await
            .ok();
        assert_eq!(
            p.get(&path, &p.admin()).await.ok()["session_state"],
            "unknown"
        );
        p.shutdown().await;
    }
}
