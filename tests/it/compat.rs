//! What stock WeRSS peers send and read (PROTOCOL §1.2) and WeRSS's config layout.

use crate::helpers::db::on_both;
use crate::helpers::process::{ParentProcess, cascade_cmd, login};
use crate::helpers::{TestParent, cascade};
use serde_json::{Value, json};

on_both! {
    #[tokio::test]
    async fn stock_child_heartbeat_without_body_but_json_content_type_is_accepted(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("stock").await;
        let auth = format!("AK-SK {}:{}", node.key, node.secret);
        for body in ["", "null", "not json"] {
            let resp = p
                .client
                .post(p.url("/api/v1/wx/cascade/heartbeat"))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .expect("sent");
            let r = TestParent::reply(resp).await;
            assert_eq!(r.ok()["status"], "alive", "body {body:?}");
        }
        let with_callback = json!({"callback_url": "http://10.0.0.7:8002/api/v1/wx/cascade/notify"});
        p.post(&cascade("/heartbeat"), &node.auth(), with_callback)
            .await
            .ok();
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["online"], true);
        assert_eq!(
            n.ok()["fetchers"],
            json!(["wechat"]),
            "a stock child fetches WeChat"
        );
        assert_eq!(n.ok()["session_state"], "unknown");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn stock_child_reads_feeds_tasks_and_reports_with_timestamp_strings(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("stock").await;
        p.post(
            &cascade("/feeds"),
            &p.admin(),
            json!({"mp_name": "A", "faker_id": "Mzg5Mjc3MjIyMA=="}),
        )
        .await
        .ok();
        let feeds = p.get(&cascade("/feeds"), &node.auth()).await;
        let feed = &feeds.ok()[0];
        for key in [
            "id",
            "faker_id",
            "mp_name",
            "mp_cover",
            "mp_intro",
            "status",
            "created_at",
            "updated_at",
        ] {
            assert!(feed.get(key).is_some(), "feed key {key}");
        }
        let r = p
            .post(
                &cascade("/report-result"),
                &node.auth(),
                json!({"task_id": "x", "results": [], "timestamp": "2026-11-22T14:43:11.002113"}),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["code"], 0);
        p.shutdown().await;
    }
}

/// WeRSS's example layout (shared with the config unit tests).
const WERSS_CONFIG: &str = include_str!("../fixtures/werss-config.yaml");

#[tokio::test]
async fn a_werss_layout_config_yaml_starts_the_parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("werss.yaml"), WERSS_CONFIG).expect("config written");
    let mut cmd = cascade_cmd(dir.path());
    cmd.args(["parent", "-config", "werss.yaml", "--port", "0"])
        .env("CASCADE_ADMIN_PASSWORD", "pw-for-test");
    let p = ParentProcess::start(cmd).await;
    assert!(
        dir.path().join("data/db.db").is_file(),
        "WeRSS's sqlite:///data/db.db is used"
    );
    assert!(
        p.stderr
            .iter()
            .any(|l| l.contains("published WeRSS default")),
        "default secret warns"
    );
    let client = crate::helpers::http_client();
    let r: Value = login(&client, &p.base, "admin", "pw-for-test")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        r["data"]["expires_in"], 3600,
        "token_expire_minutes: 60 from the file"
    );
    assert!(p.terminate().await);
}
