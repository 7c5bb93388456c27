//! Work at the sizes users run: tasks naming 100,000 feeds.

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade};
use serde_json::json;

on_both! {
    #[tokio::test]
    async fn a_task_over_all_feeds_reads_them_at_each_dispatch(backend) {
        let p = TestParent::on(backend.clone()).await;
        p.online_node("n", json!({})).await;
        let first = p.feeds(43_000_000, 3).await;
        let created = p
            .post(&cascade("/message-tasks"), &p.admin(),
                  json!({"name": "all", "message_template": "x", "all_feeds": true, "status": 1}))
            .await;
        let task = created.ok()["id"].as_str().expect("id").to_string();
        assert_eq!(created.ok()["all_feeds"], true);
        assert_eq!(created.ok()["mps_id"], "[]");
        let d = p.dispatch(&task).await;
        assert_eq!(d["tasks"][0]["feed_count"], 3, "{d}");
        // Feeds added after the task was made are read at the next dispatch.
        let later = p.feeds(44_000_000, 2).await;
        let d = p.dispatch(&task).await;
        assert_eq!(d["tasks"][0]["feed_count"], 5, "{d}");
        assert_eq!(d["tasks"][0]["skipped_open"], 3, "the first three are still open: {d}");
        let open = p.store.dispatch_feeds(later.clone()).await.expect("feeds");
        assert!(open.iter().all(|f| f.open), "{open:?}");
        assert_eq!(first.len() + later.len(), 5);
        // Turned off again, the task reads its own list (empty here).
        let updated = p
            .put(&cascade(&format!("/message-tasks/{task}")), &p.admin(), json!({"all_feeds": false}))
            .await;
        assert_eq!(updated.ok()["all_feeds"], false);
        let d = p.dispatch(&task).await;
        assert_eq!(d["tasks"][0]["feed_count"], 0, "{d}");
        p.shutdown().await;
    }
}

#[tokio::test]
async fn a_task_naming_100k_feeds_is_created_and_read_back() {
    let p = TestParent::spawn().await;
    let ids: Vec<String> = (0..100_000)
        .map(|i| format!("MP_WXS_{}", 3_000_000_000u64 + i))
        .collect();
    let body = json!({"name": "everything", "message_template": "{{ article.title }}", "mps_id": ids, "status": 1});
    assert!(
        body.to_string().len() > 1024 * 1024,
        "over the old 1 MiB limit"
    );
    let created = p.post(&cascade("/message-tasks"), &p.admin(), body).await;
    let id = created.ok()["id"].as_str().expect("task id").to_string();
    let task = p.store.get_task(&id).await.expect("stored");
    let named = task.fields.feed_ids();
    assert_eq!(named.len(), 100_000);
    assert_eq!(named[99_999], "MP_WXS_3000099999");
    p.shutdown().await;
}
