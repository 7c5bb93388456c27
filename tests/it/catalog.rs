//! Feeds and message tasks (PROTOCOL §7), including the node views (D9, D11).

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade};
use serde_json::{Value, json};

on_both! {
    #[tokio::test]
    async fn wechat_feeds_derive_id_and_faker_id_from_each_other(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "A", "faker_id": "Mzg5Mjc3MjIyMA=="}),
            )
            .await;
        assert_eq!(a.ok()["id"], "MP_WXS_3892772220");
        assert_eq!(a.ok()["source"], "wechat");
        assert_eq!(a.ok()["status"], 1);
        let b = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "B", "id": "MP_WXS_3090005381"}),
            )
            .await;
        assert_eq!(b.ok()["faker_id"], "MzA5MDAwNTM4MQ==");
        let dup = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "A2", "id": "MP_WXS_3892772220"}),
            )
            .await;
        assert_eq!(dup.err(409), "conflict");
        assert_eq!(dup.body["message"], "feed already exists");
        let both = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "C", "id": "MP_WXS_1", "faker_id": "Mzg5Mjc3MjIyMA=="}),
            )
            .await;
        assert_eq!(both.err(400), "bad_request");
        assert_eq!(both.body["data"]["field"], "faker_id");
        let list = p.get(&cascade("/feeds"), &p.admin()).await;
        let ids: Vec<&str> = list
            .ok()
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|f| f["id"].as_str())
            .collect();
        assert_eq!(ids, ["MP_WXS_3090005381", "MP_WXS_3892772220"]);
        let page = p.get(&cascade("/feeds?limit=1&offset=1"), &p.admin()).await;
        assert_eq!(page.ok()[0]["id"], "MP_WXS_3892772220");
        p.get(&cascade("/feeds?limit=0"), &p.admin()).await.err(400);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn rss_feeds_need_an_http_url(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "Blog", "source": "rss", "url": "https://example.org/feed.xml"}),
            )
            .await;
        let id = r.ok()["id"].as_str().expect("id");
        assert!(id.starts_with("RSS_") && id.len() == 20, "{id}");
        assert_eq!(r.ok()["url"], "https://example.org/feed.xml");
        for (body, field) in [
            (json!({"mp_name": "x", "source": "rss"}), "url"),
            (
                json!({"mp_name": "x", "source": "rss", "url": "ftp://e.org/f"}),
                "url",
            ),
            (
                json!({"mp_name": "x", "source": "atom", "url": "https://e.org"}),
                "source",
            ),
            (json!({"faker_id": "Mzg5Mjc3MjIyMA=="}), "mp_name"),
            (json!({"mp_name": "x"}), "faker_id"),
            (json!({"mp_name": "x", "faker_id": "!!"}), "faker_id"),
            (
                json!({"mp_name": "x", "id": "MP_WXS_1", "status": 5}),
                "status",
            ),
        ] {
            let r = p.post(&cascade("/feeds"), &p.admin(), body.clone()).await;
            assert_eq!(r.err(400), "bad_request", "{body}");
            assert_eq!(r.body["data"]["field"], field, "{body}: {}", r.text);
        }
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn feed_get_update_delete_and_404s(backend) {
        let p = TestParent::on(backend.clone()).await;
        p.post(
            &cascade("/feeds"),
            &p.admin(),
            json!({"mp_name": "A", "id": "MP_WXS_1"}),
        )
        .await
        .ok();
        let path = cascade("/feeds/MP_WXS_1");
        let u = p
            .put(&path, &p.admin(), json!({"mp_name": "A+", "status": 0}))
            .await;
        assert_eq!(u.ok()["mp_name"], "A+");
        assert_eq!(u.ok()["status"], 0);
        assert_eq!(p.get(&path, &p.admin()).await.ok()["mp_name"], "A+");
        p.put(&path, &p.admin(), json!({"status": "on"}))
            .await
            .err(400);
        p.delete(&path, &p.admin()).await.ok();
        let gone = p.get(&path, &p.admin()).await;
        gone.err(404);
        assert_eq!(gone.body["message"], "公众号不存在");
        p.put(&path, &p.admin(), json!({"mp_name": "x"}))
            .await
            .err(404);
        p.delete(&path, &p.admin()).await.err(404);
        p.shutdown().await;
    }
}

fn task(name: &str, status: i64) -> Value {
    json!({
        "name": name, "message_template": "{{ article.title }}",
        "mps_id": [{"id": "MP_WXS_1", "mp_name": "A"}], "cron_exp": "0 3 * * *", "status": status,
        "headers": {"X-Token": "t"}, "cookies": "sid=1", "web_hook_url": "https://hooks.example/abc"
    })
}

on_both! {
    #[tokio::test]
    async fn message_tasks_crud_and_validation(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p
            .post(&cascade("/message-tasks"), &p.admin(), task("morning", 1))
            .await;
        let t = r.ok().clone();
        let id = t["id"].as_str().expect("id");
        assert_eq!(
            t["mps_id"], r#"[{"id":"MP_WXS_1","mp_name":"A"}]"#,
            "stored as JSON text"
        );
        assert_eq!(t["headers"], r#"{"X-Token":"t"}"#);
        assert_eq!(t["expose_to_nodes"], false);
        let text_form = p
            .post(
                &cascade("/message-tasks"),
                &p.admin(),
                json!({"name": "t2", "message_template": "", "mps_id": "[\"MP_WXS_2\"]"}),
            )
            .await;
        assert_eq!(text_form.ok()["mps_id"], "[\"MP_WXS_2\"]");
        assert_eq!(text_form.ok()["status"], 0, "WeRSS default");

        for (body, field) in [
            (json!({"message_template": "", "mps_id": []}), "name"),
            (json!({"name": "x", "mps_id": []}), "message_template"),
            (json!({"name": "x", "message_template": ""}), "mps_id"),
            (
                json!({"name": "x", "message_template": "", "mps_id": "not json"}),
                "mps_id",
            ),
            (
                json!({"name": "x", "message_template": "", "mps_id": [1]}),
                "mps_id",
            ),
            (
                json!({"name": "x", "message_template": "", "mps_id": [], "cron_exp": "61 * * * *"}),
                "cron_exp",
            ),
            (
                json!({"name": "x", "message_template": "", "mps_id": [], "cron_exp": "* *"}),
                "cron_exp",
            ),
            (
                json!({"name": "x", "message_template": "", "mps_id": [], "headers": "[1]"}),
                "headers",
            ),
            (
                json!({"name": "x", "message_template": "", "mps_id": [], "status": 3}),
                "status",
            ),
        ] {
            let r = p
                .post(&cascade("/message-tasks"), &p.admin(), body.clone())
                .await;
            assert_eq!(r.err(400), "bad_request", "{body}");
            assert_eq!(r.body["data"]["field"], field, "{body}: {}", r.text);
        }

        let path = cascade(&format!("/message-tasks/{id}"));
        let u = p
            .put(
                &path,
                &p.admin(),
                json!({"cron_exp": "0~10 4 * * *", "status": 0}),
            )
            .await;
        assert_eq!(u.ok()["cron_exp"], "0~10 4 * * *");
        assert_eq!(u.ok()["name"], "morning", "other fields kept");
        p.put(&path, &p.admin(), json!({"cron_exp": "bad"}))
            .await
            .err(400);
        assert_eq!(
            p.get(&path, &p.admin()).await.ok()["cron_exp"],
            "0~10 4 * * *"
        );
        p.delete(&path, &p.admin()).await.ok();
        let gone = p.get(&path, &p.admin()).await;
        gone.err(404);
        assert_eq!(gone.body["message"], "任务不存在");
        p.delete(&path, &p.admin()).await.err(404);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn nodes_see_only_enabled_tasks_without_secrets_unless_exposed(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("child").await;
        p.post(&cascade("/message-tasks"), &p.admin(), task("enabled", 1))
            .await
            .ok();
        p.post(&cascade("/message-tasks"), &p.admin(), task("disabled", 0))
            .await
            .ok();
        let mut exposed = task("exposed", 1);
        exposed["expose_to_nodes"] = json!(true);
        p.post(&cascade("/message-tasks"), &p.admin(), exposed)
            .await
            .ok();

        let admin_view = p.get(&cascade("/message-tasks"), &p.admin()).await;
        assert_eq!(admin_view.ok().as_array().map(Vec::len), Some(3));
        let only_disabled = p.get(&cascade("/message-tasks?status=0"), &p.admin()).await;
        assert_eq!(only_disabled.ok().as_array().map(Vec::len), Some(1));

        let node_view = p.get(&cascade("/message-tasks"), &node.auth()).await;
        let mut tasks = node_view.ok().as_array().expect("list").clone();
        tasks.sort_by_key(|t| t["name"].as_str().unwrap_or_default().to_string());
        let names: Vec<&str> = tasks.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["enabled", "exposed"]);
        assert_eq!(tasks[0]["headers"], Value::Null);
        assert_eq!(tasks[0]["cookies"], Value::Null);
        assert_eq!(tasks[1]["headers"], r#"{"X-Token":"t"}"#);
        assert_eq!(tasks[1]["cookies"], "sid=1");
        assert_eq!(
            node_view.text.matches("sid=1").count(),
            1,
            "only the exposed task's cookies"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn deleted_tasks_and_feeds_fail_their_pending_work(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({})).await;
        let feeds = p.feeds(1300, 2).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        p.delete(&cascade(&format!("/feeds/{}", feeds[0])), &p.admin())
            .await
            .ok();
        p.delete(&cascade(&format!("/feeds/{}", feeds[1])), &p.admin())
            .await
            .ok();
        assert_eq!(
            p.claim(&node, "limit=2").await.ok(),
            &json!([]),
            "packages of gone feeds are skipped"
        );
        let failed = p
            .get(&cascade("/allocations?status=failed"), &p.admin())
            .await;
        assert_eq!(failed.ok()["total"], 2);
        assert_eq!(failed.ok()["list"][0]["reason"], "not_found");

        let feeds = p.feeds(1400, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        p.delete(&cascade(&format!("/message-tasks/{task}")), &p.admin())
            .await
            .ok();
        let failed = p
            .get(
                &cascade(&format!("/allocations?task_id={task}")),
                &p.admin(),
            )
            .await;
        assert_eq!(failed.ok()["list"][0]["status"], "failed");
        assert_eq!(failed.ok()["list"][0]["error_message"], "任务不存在");
        assert_eq!(failed.ok()["list"][0]["assigned_node_id"], Value::Null);
        // The deleted task's feeds are free: a new task over them gets them all.
        let again = p.task(&feeds).await;
        let d = p.dispatch(&again).await;
        assert_eq!(d["allocations_created"], 1, "{d}");
        p.shutdown().await;
    }
}
