//! Admin node API (PROTOCOL §6): CRUD, credentials, test-connection, and what never leaks.

use crate::helpers::db::on_both;
use crate::helpers::{Auth, TestParent, cascade, cascade_doc};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use werss_cascade::protocol::credentials::sha256_hex;

/// What test-connection says of any failure past the callback policy.
const UNREACHABLE: &str = "callback not reachable or did not accept the ping";

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
    receiver_on("127.0.0.1", status).await
}

/// [`receiver`] on the loopback address `ip`.
async fn receiver_on(ip: &str, status: u16) -> (String, Seen) {
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
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
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
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.callback_allow = vec!["127.0.0.1".into()];
        })
        .await;
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
        assert_eq!(r.ok()["online"], true);
        assert!(r.ok().get("error").is_none(), "{}", r.text);
        let got = seen.lock().expect("lock").clone();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0,
            format!("AK-SK {}:{}", node.key, sha256_hex(&node.secret))
        );
        assert_eq!(got[0].1["type"], "ping");
        let as_node = p
            .post(&cascade("/heartbeat"), &Auth::Raw(got[0].0.clone()), json!({}))
            .await;
        assert_eq!(
            as_node.err(401),
            "unauthorized",
            "what a callback receives does not authenticate as the node"
        );
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
        assert_eq!(r.ok()["error"], UNREACHABLE);
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

on_both! {
    #[tokio::test]
    async fn callback_urls_are_stored_normalised_and_smuggling_is_refused(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let stored = || async {
            p.get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
                .await
                .ok()["callback_url"]
                .clone()
        };
        let (path, auth) = (cascade("/heartbeat"), node.auth());
        let beat = |url: &str| p.post(&path, &auth, json!({"callback_url": url}));
        for (sent, kept) in [
            ("http://2130706433:8002/api/v1/wx/cascade/notify", "http://127.0.0.1:8002/api/v1/wx/cascade/notify"),
            ("http://127.1:8002/n", "http://127.0.0.1:8002/n"),
            ("http://0x7f.0.0.1/", "http://127.0.0.1/"),
            ("HTTP://Child.Example:80", "http://child.example/"),
        ] {
            let r = beat(sent).await;
            let warnings = r.ok()["warnings"].as_array().expect("warnings").clone();
            assert_eq!(stored().await, kept, "{sent}");
            if kept.contains("127.0.0.1") {
                assert!(
                    warnings.iter().any(|w| w.as_str().is_some_and(|w| w.contains("cascade.callback_allow"))),
                    "an internal callback is stored with a warning: {warnings:?}"
                );
            } else {
                assert_eq!(warnings, Vec::<Value>::new());
            }
        }
        for hostile in [
            "http://child.example/n\r\nX-Injected: 1",
            "http://child.example/\n",
            "http://user:pw@child.example/n",
            "http://admin@127.0.0.1:8001/",
        ] {
            let r = beat(hostile).await;
            r.err(400);
            assert_eq!(r.body["data"]["field"], "callback_url", "{hostile:?}: {}", r.text);
        }
        assert_eq!(stored().await, "http://child.example/", "refused URLs change nothing");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn internal_callbacks_are_never_called_unless_allowed(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        let path = cascade(&format!("/nodes/{}/test-connection", node.id));
        let (url, seen) = receiver(200).await;
        let port = url.split(':').nth(2).and_then(|r| r.split('/').next()).expect("port");
        for target in [
            url.clone(),
            format!("http://127.1:{port}/api/v1/wx/cascade/notify"),
            format!("http://2130706433:{port}/api/v1/wx/cascade/notify"),
            format!("http://[::ffff:127.0.0.1]:{port}/api/v1/wx/cascade/notify"),
            // A name is checked on the addresses it resolves to.
            format!("http://localhost:{port}/api/v1/wx/cascade/notify"),
        ] {
            p.post(&cascade("/heartbeat"), &node.auth(), json!({"callback_url": target}))
                .await
                .ok();
            let r = p.post(&path, &p.admin(), json!({})).await;
            assert_eq!(r.body["message"], "连接测试失败", "{target}");
            assert_eq!(r.ok()["connected"], false);
            let error = r.ok()["error"].as_str().expect("error");
            assert!(error.contains("cascade.callback_allow"), "{target}: {error}");
        }
        assert!(seen.lock().expect("lock").is_empty(), "nothing reached the internal address");
        p.shutdown().await;

        // The operator's allowlist opens it, by block or by host name.
        for allow in ["127.0.0.0/8", "localhost"] {
            let p = TestParent::on_with(backend.clone(), |c| {
                c.cascade.callback_allow = vec![allow.into()];
            })
            .await;
            let node = p.add_node("child").await;
            let target = format!("http://localhost:{port}/api/v1/wx/cascade/notify");
            p.post(&cascade("/heartbeat"), &node.auth(), json!({"callback_url": target}))
                .await
                .ok();
            let r = p
                .post(&cascade(&format!("/nodes/{}/test-connection", node.id)), &p.admin(), json!({}))
                .await;
            assert_eq!(r.ok()["connected"], true, "{allow}: {}", r.text);
            p.shutdown().await;
        }
        assert_eq!(seen.lock().expect("lock").len(), 2);
    }
}

on_both! {
    #[tokio::test]
    async fn test_connection_does_not_tell_closed_ports_from_refusals(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.callback_allow = vec!["127.0.0.1".into()];
        })
        .await;
        let node = p.add_node("child").await;
        let path = cascade(&format!("/nodes/{}/test-connection", node.id));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (refusing, _) = receiver(500).await;
        let mut answers = Vec::new();
        for target in [format!("http://127.0.0.1:{closed}/"), refusing] {
            p.post(&cascade("/heartbeat"), &node.auth(), json!({"callback_url": target}))
                .await
                .ok();
            let r = p.post(&path, &p.admin(), json!({})).await;
            let mut data = r.ok().clone();
            data["target"] = Value::Null;
            data["last_heartbeat_at"] = Value::Null;
            answers.push(data);
        }
        assert_eq!(answers[0], answers[1], "same answer for a closed port and a 500");
        assert_eq!(answers[0]["error"], UNREACHABLE);
        assert!(answers[0].get("http_status").is_none() && answers[0].get("latency_ms").is_none());
        p.shutdown().await;
    }
}

/// A notify receiver on the loopback address `ip` that hands each body to a channel.
async fn notify_channel(ip: &str) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/api/v1/wx/cascade/notify",
        post(move |body: axum::Json<Value>| {
            let _ = tx.send(body.0);
            async { axum::Json(json!({"code": 0, "message": "通知已接收", "data": null})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let url = format!(
        "http://{}/api/v1/wx/cascade/notify",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

on_both! {
    #[tokio::test]
    async fn dispatch_notifies_only_allowed_callbacks(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.callback_allow = vec!["127.0.0.2".into()];
        })
        .await;
        let (allowed_url, mut allowed) = notify_channel("127.0.0.2").await;
        let (internal_url, mut internal) = notify_channel("127.0.0.1").await;
        p.online_node("allowed", json!({"callback_url": allowed_url})).await;
        p.online_node("internal", json!({"callback_url": internal_url})).await;
        let feeds = p.feeds(91_000, 2).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let got = tokio::time::timeout(Duration::from_secs(20), allowed.recv())
            .await
            .expect("the allowed callback is notified")
            .expect("a body");
        assert_eq!(got["type"], "new_task");
        // Both are sent at once; a notify to the internal one would have arrived by now.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), internal.recv())
                .await
                .is_err(),
            "the internal callback was called"
        );
        p.shutdown().await;
    }
}
