//! Allocation helpers: feeds in bulk, tasks, dispatch, claims and reports over HTTP.

use super::{Reply, TestNode, TestParent, cascade};
use serde_json::{Value, json};
use werss_cascade::parent::reaper::Reaper;
use werss_cascade::store::{NewFeed, ReapOutcome};

impl TestParent {
    /// Creates `n` enabled WeChat feeds directly in the store (setup only).
    pub async fn feeds(&self, prefix: u64, n: u64) -> Vec<String> {
        let ids: Vec<String> = (0..n).map(|i| format!("MP_WXS_{}", prefix + i)).collect();
        let feeds = ids
            .iter()
            .map(|id| NewFeed::wechat(id, &format!("feed {id}")))
            .collect();
        self.store
            .create_feeds(feeds, self.clock.now())
            .await
            .expect("feeds created");
        ids
    }

    /// Creates an enabled message task over `feed_ids` and returns its id.
    pub async fn task(&self, feed_ids: &[String]) -> String {
        let mps: Vec<Value> = feed_ids
            .iter()
            .map(|id| json!({"id": id, "mp_name": id}))
            .collect();
        let r = self
            .post(&cascade("/message-tasks"), &self.admin(), json!({"name": "t", "message_template": "{{ article.title }}", "mps_id": mps, "status": 1}))
            .await;
        r.ok()["id"].as_str().expect("task id").to_string()
    }

    /// Dispatches one task and returns `data`.
    pub async fn dispatch(&self, task_id: &str) -> Value {
        let r = self
            .post(
                &cascade(&format!("/dispatch-task?task_id={task_id}")),
                &self.admin(),
                json!({}),
            )
            .await;
        r.ok().clone()
    }

    /// `POST claim-task` with a query string (e.g. `"limit=5"`).
    pub async fn claim(&self, node: &TestNode, query: &str) -> Reply {
        let path = if query.is_empty() {
            cascade("/claim-task")
        } else {
            cascade(&format!("/claim-task?{query}"))
        };
        self.send(reqwest::Method::POST, &path, &node.auth(), None)
            .await
    }

    /// Adds a WeChat feed per fake account over the API and a task over them; the task id.
    pub async fn wechat_task(
        &self,
        accounts: &[werss_cascade::testkit::wechat::FakeAccount],
    ) -> String {
        for a in accounts {
            self.post(
                &cascade("/feeds"),
                &self.admin(),
                json!({"mp_name": a.nickname, "faker_id": a.fakeid()}),
            )
            .await
            .ok();
        }
        let ids: Vec<String> = accounts
            .iter()
            .map(|a| format!("MP_WXS_{}", a.number))
            .collect();
        self.task(&ids).await
    }

    /// Asks `GET path` as the admin (bounded, 60 s) until `done` holds of its `data`, and
    /// returns that `data`: for state that a child's heartbeat or crawl brings to the parent.
    pub async fn poll_until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let wait = async {
            loop {
                let r = self.get(&cascade(path), &self.admin()).await;
                if done(r.ok()) {
                    return r.ok().clone();
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// A new online node holding the only allocation of a fresh one-feed task (feed ids
    /// from `prefix`).
    pub async fn one_claimed(&self, prefix: u64) -> (TestNode, Value) {
        let node = self
            .online_node(&format!("holder-{prefix}"), json!({}))
            .await;
        let feeds = self.feeds(prefix, 1).await;
        let task = self.task(&feeds).await;
        self.dispatch(&task).await;
        let pkg = self.claim_one(&node).await;
        (node, pkg)
    }

    /// Claims one allocation and returns its package.
    pub async fn claim_one(&self, node: &TestNode) -> Value {
        let r = self.claim(node, "").await;
        let p = r.ok().clone();
        assert!(p.is_object(), "expected a package: {}", r.text);
        p
    }

    /// `PUT task-status`.
    pub async fn status(
        &self,
        node: &TestNode,
        package: &Value,
        status: &str,
        extra: Value,
    ) -> Reply {
        let mut body = json!({"allocation_id": package["allocation_id"], "status": status,
                              "lease_token": package["lease_token"], "timestamp": "2026-11-22T14:42:30.126043"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.send(
            reqwest::Method::PUT,
            &cascade("/task-status"),
            &node.auth(),
            Some(body),
        )
        .await
    }

    /// `POST report-completion` with one successful result per feed.
    pub async fn complete(&self, node: &TestNode, package: &Value) -> Reply {
        let results: Vec<Value> = package["feeds"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|f| json!({"feed_id": f["id"], "success": true, "article_count": 1}))
                    .collect()
            })
            .unwrap_or_default();
        let body = json!({"allocation_id": package["allocation_id"], "task_id": package["task_id"], "results": results,
                          "article_count": results.len(), "timestamp": "2026-11-22T14:43:11", "lease_token": package["lease_token"]});
        self.post(&cascade("/report-completion"), &node.auth(), body)
            .await
    }

    /// Creates a node, gives it credentials and brings it online with a heartbeat.
    pub async fn online_node(&self, name: &str, beat: Value) -> TestNode {
        let node = self.add_node(name).await;
        self.post(&cascade("/heartbeat"), &node.auth(), beat)
            .await
            .ok();
        node
    }

    /// The stored allocation as admins see it.
    pub async fn allocation(&self, id: &str) -> Value {
        let r = self
            .get(&cascade("/allocations?limit=200"), &self.admin())
            .await;
        let list = r.ok()["list"].as_array().expect("list").clone();
        list.into_iter()
            .find(|a| a["id"] == id)
            .expect("allocation listed")
    }

    /// One reaper pass at the test clock.
    pub async fn reap(&self) -> ReapOutcome {
        Reaper::new(self.state.clone())
            .run_once()
            .await
            .expect("reaper pass")
    }
}
