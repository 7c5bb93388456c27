//! Work at the sizes users run: tasks naming 100,000 feeds.

use crate::helpers::{TestParent, cascade};
use serde_json::json;

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
