//! The store under stress (issue 14, Tests): a parent killed during a stream of completions
//! keeps every completion it acknowledged, and claims over 100,000 pending allocations hand
//! each allocation to one node and keep every node within its capacity.

use crate::helpers::db::{TestDb, on_both, query};
use crate::helpers::process::{ParentProcess, cascade_cmd, login};
use crate::helpers::{PASSWORD, TestNode, TestParent, cascade, http_client};
use chrono::TimeDelta;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use werss_cascade::store::{NewFeed, Store};

/// Nodes running the completion stream, one client each.
const CLIENTS: usize = 8;
/// Feeds dispatched for the stream: far more than it completes before the kill.
const STREAM_FEEDS: u64 = 5_000;
/// Acknowledged completions after which the parent is killed.
const KILL_AFTER: usize = 300;

/// The API of a parent process as one caller (the admin or a node) sees it.
#[derive(Clone)]
struct Caller {
    client: reqwest::Client,
    base: String,
    authorization: String,
}

impl Caller {
    /// The admin of `p`, logged in.
    async fn admin(p: &ParentProcess) -> Self {
        let client = http_client();
        let r: Value = login(&client, &p.base, "admin", PASSWORD)
            .await
            .json()
            .await
            .expect("login answer");
        let token = r["data"]["access_token"].as_str().expect("token");
        Self {
            authorization: format!("Bearer {token}"),
            base: p.base.clone(),
            client,
        }
    }

    /// The envelope of a request under the cascade prefix, or the error of a parent that is
    /// gone (no answer, or a cut one).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, reqwest::Error> {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, cascade(path)))
            .header("Authorization", &self.authorization);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await?.json().await
    }

    /// `data` of a request that must succeed (code 0).
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method, path, body).await.expect("answered");
        assert_eq!(r["code"], 0, "{path}: {r}");
        r["data"].clone()
    }

    /// A new node with credentials, online by a heartbeat, as a caller of its own.
    async fn node(&self, name: &str) -> Self {
        let created = self
            .ok(
                Method::POST,
                "/nodes",
                Some(json!({"node_type": 1, "name": name})),
            )
            .await;
        let id = created["node_id"].as_str().expect("node id");
        let cred = self
            .ok(
                Method::POST,
                &format!("/nodes/{id}/credentials"),
                Some(json!({})),
            )
            .await;
        let key = cred["api_key"].as_str().expect("key");
        let secret = cred["api_secret"].as_str().expect("secret");
        let node = Self {
            authorization: format!("AK-SK {key}:{secret}"),
            ..self.clone()
        };
        node.ok(Method::POST, "/heartbeat", Some(json!({}))).await;
        node
    }
}

/// One node's stream of claim → executing → report-completion cycles until the parent stops
/// answering: the allocations whose completion was acknowledged (code 0), in order, and the
/// error that ended the stream. Every answer the parent gives must be a success.
async fn stream(
    node: Caller,
    acknowledged: Arc<AtomicUsize>,
    enough: Arc<Notify>,
) -> (Vec<String>, reqwest::Error) {
    let mut acked = Vec::new();
    let ended = loop {
        let claimed = match node.send(Method::POST, "/claim-task", None).await {
            Ok(r) => r,
            Err(e) => break e,
        };
        assert_eq!(claimed["code"], 0, "claim: {claimed}");
        let pkg = &claimed["data"];
        assert!(pkg.is_object(), "the stream ran out of work: {claimed}");
        let id = pkg["allocation_id"].as_str().expect("allocation id");
        let executing = json!({"allocation_id": id, "status": "executing",
                               "lease_token": pkg["lease_token"], "timestamp": "2026-11-22T14:42:30"});
        let status = match node
            .send(Method::PUT, "/task-status", Some(executing))
            .await
        {
            Ok(r) => r,
            Err(e) => break e,
        };
        assert_eq!(status["code"], 0, "task-status: {status}");
        let results: Vec<Value> = pkg["feeds"]
            .as_array()
            .expect("feeds")
            .iter()
            .map(|f| json!({"feed_id": f["id"], "success": true, "article_count": 0}))
            .collect();
        let report = json!({"allocation_id": id, "task_id": pkg["task_id"], "results": results,
                            "article_count": 0, "lease_token": pkg["lease_token"]});
        let completed = match node
            .send(Method::POST, "/report-completion", Some(report))
            .await
        {
            Ok(r) => r,
            Err(e) => break e,
        };
        assert_eq!(completed["code"], 0, "report-completion: {completed}");
        assert_eq!(completed["data"]["status"], "completed", "{completed}");
        acked.push(id.to_string());
        if acknowledged.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
            enough.notify_one();
        }
    };
    (acked, ended)
}

/// Every completed allocation the parent lists, page by page.
async fn completed_ids(admin: &Caller) -> HashSet<String> {
    let mut ids = HashSet::new();
    loop {
        let path = format!(
            "/allocations?status=completed&limit=200&offset={}",
            ids.len()
        );
        let page = admin.ok(Method::GET, &path, None).await;
        let list = page["list"].as_array().expect("list");
        if list.is_empty() {
            return ids;
        }
        for a in list {
            assert!(
                ids.insert(a["id"].as_str().expect("id").to_string()),
                "listed twice: {a}"
            );
        }
    }
}

on_both! {
    /// The real binary, killed with SIGKILL while eight nodes run claim → executing →
    /// report-completion cycles: after a restart on the same database, every completion it
    /// acknowledged is there, and at most one unacknowledged one per node (the request in
    /// flight at the kill) was kept besides.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_crash_between_batches_loses_nothing_acknowledged(backend) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(&backend, &dir).await;
        let init = cascade_cmd(dir.path())
            .args(["init", "--db", &db.url])
            .env("CASCADE_ADMIN_PASSWORD", PASSWORD)
            .output()
            .await
            .expect("init runs");
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        let store = Store::connect(&db.url).await.expect("store");
        let feeds = (0..STREAM_FEEDS)
            .map(|i| NewFeed::wechat(&format!("MP_WXS_{}", 60_000_000 + i), "stream"))
            .collect();
        store
            .create_feeds(feeds, chrono::Utc::now().naive_utc())
            .await
            .expect("feeds created");
        drop(store);
        let start = || {
            let mut cmd = cascade_cmd(dir.path());
            cmd.args(["parent", "--db", &db.url, "--port", "0"]);
            ParentProcess::start(cmd)
        };

        let mut p = start().await;
        let admin = Caller::admin(&p).await;
        let mut nodes = Vec::new();
        for i in 0..CLIENTS {
            nodes.push(admin.node(&format!("stream-{i}")).await);
        }
        let task = admin
            .ok(Method::POST, "/message-tasks",
                Some(json!({"name": "stream", "message_template": "x", "all_feeds": true, "status": 1})))
            .await;
        let task = task["id"].as_str().expect("task id");
        let d = admin
            .ok(Method::POST, &format!("/dispatch-task?task_id={task}"), Some(json!({})))
            .await;
        assert_eq!(d["allocations_created"], STREAM_FEEDS, "{d}");

        let acknowledged = Arc::new(AtomicUsize::new(0));
        let enough = Arc::new(Notify::new());
        let mut clients = tokio::task::JoinSet::new();
        for node in nodes {
            clients.spawn(stream(node, acknowledged.clone(), enough.clone()));
        }
        // A bound against a hang only: the stream reaches KILL_AFTER long before.
        let early = tokio::time::timeout(Duration::from_secs(120), async {
            tokio::select! {
                () = enough.notified() => None,
                ended = clients.join_next() => Some(ended),
            }
        })
        .await
        .expect("the stream reaches KILL_AFTER completions");
        if let Some(ended) = early {
            panic!("a client stopped while the parent was running: {ended:?}");
        }
        p.child.start_kill().expect("SIGKILL sent");
        let status = p.child.wait().await.expect("exit status");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "killed, not exited: {status}"
        );
        let mut acked = Vec::new();
        while let Some(joined) = clients.join_next().await {
            // Each client ran until the parent was gone (a failed answer ends it in a panic).
            let (mine, _gone) = joined.expect("client ran until the kill");
            acked.extend(mine);
        }
        assert!(acked.len() >= KILL_AFTER, "{}", acked.len());

        let p = start().await;
        let admin = Caller::admin(&p).await;
        let completed = completed_ids(&admin).await;
        let lost: Vec<&String> = acked.iter().filter(|id| !completed.contains(*id)).collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged completions lost: {lost:?}",
            lost.len(),
            acked.len()
        );
        assert!(
            completed.len() <= acked.len() + CLIENTS,
            "{} completed, {} acknowledged",
            completed.len(),
            acked.len()
        );
        assert!(p.terminate().await, "the restarted parent exits cleanly");
    }
}

/// Feeds pending in the claims test, two to an allocation.
const PENDING_FEEDS: u64 = 100_000;
/// Capacities of the claiming nodes (51: one feed of room stays free, since none fits).
const CAPACITIES: [i64; 6] = [50, 40, 60, 30, 70, 51];

/// Claims `limit=7` for `node` until a claim hands out nothing; every package handed out.
async fn claim_until_full(p: &TestParent, node: &TestNode) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let r = p.claim(node, "limit=7").await;
        let packages = r.ok().as_array().expect("a list of packages").clone();
        if packages.is_empty() {
            return got;
        }
        got.extend(packages);
    }
}

on_both! {
    /// 100,000 feeds, two to an allocation, dispatched while a node with room for all of them
    /// is online; it then goes silent, and six nodes (three with a little work of their own)
    /// claim concurrently, two claim loops each, until full. No allocation is handed out twice,
    /// the database holds each claimed allocation on exactly the node that got it, each node
    /// holds no more than its capacity, and the rest is still pending.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn claims_under_100k_pending_stay_correct(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.feeds_per_allocation = 2;
            // The node that takes the dispatch has room for all of it (claimers set theirs).
            c.cascade.default_max_capacity = 1_000_000;
            // The 100k dispatch is one request: no time limit on a loaded test machine.
            c.cascade.request_timeout = 0;
        })
        .await;
        let feeds = p.feeds(50_000_000, PENDING_FEEDS).await;
        let gone = p.online_node("gone", json!({})).await;
        let mut claimers = Vec::new();
        for (i, capacity) in CAPACITIES.into_iter().enumerate() {
            let node = p.online_node(&format!("claimer-{i}"), json!({})).await;
            // The first three win placement of ten feeds each: work of their own.
            let quota: Map<String, Value> = if i < 3 {
                feeds[i * 10..i * 10 + 10].iter().map(|f| (f.clone(), json!(1))).collect()
            } else {
                Map::new()
            };
            p.put(
                &cascade(&format!("/nodes/{}", node.id)),
                &p.admin(),
                json!({"sync_config": {"max_capacity": capacity, "feed_quota": quota}}),
            )
            .await
            .ok();
            claimers.push((node, capacity));
        }
        let created = p
            .post(&cascade("/message-tasks"), &p.admin(),
                  json!({"name": "all", "message_template": "x", "all_feeds": true, "status": 1}))
            .await;
        let task = created.ok()["id"].as_str().expect("task id").to_string();
        let d = p.dispatch(&task).await;
        let allocations = PENDING_FEEDS / 2;
        assert_eq!(d["online_nodes"], 7, "{d}");
        assert_eq!(d["allocations_created"], allocations, "{d}");
        assert_eq!(d["tasks"][0]["feed_count"], PENDING_FEEDS, "{d}");
        assert_eq!(d["tasks"][0]["created"], allocations, "{d}");
        assert_eq!(d["tasks"][0]["skipped_open"], 0, "{d}");
        let placed: Vec<(Option<String>, i64)> = query(
            &p.state.config.db,
            "SELECT assigned_node_id, CAST(COUNT(*) AS BIGINT) FROM we_cascade_task_allocations
              GROUP BY assigned_node_id",
        )
        .await;
        let placed: HashMap<Option<String>, i64> = placed.into_iter().collect();
        let allocations = i64::try_from(allocations).expect("fits");
        let mut expected: HashMap<Option<String>, i64> =
            claimers[..3].iter().map(|(n, _)| (Some(n.id.clone()), 5)).collect();
        expected.insert(Some(gone.id.clone()), allocations - 15);
        assert_eq!(placed, expected, "placement: own work for three, the rest on one node");

        // The node that took the dispatch goes silent; its work is theirs to take.
        p.clock.advance(TimeDelta::seconds(200));
        for (node, _) in &claimers {
            p.post(&cascade("/heartbeat"), &node.auth(), json!({})).await.ok();
        }
        let runs = futures::future::join_all(
            claimers
                .iter()
                .flat_map(|(node, _)| [claim_until_full(&p, node), claim_until_full(&p, node)]),
        )
        .await;

        let mut owner: HashMap<String, String> = HashMap::new();
        let mut feeds_handed = HashSet::new();
        let mut held: HashMap<String, i64> = HashMap::new();
        for (i, packages) in runs.iter().enumerate() {
            let node = &claimers[i / 2].0;
            for pkg in packages {
                let id = pkg["allocation_id"].as_str().expect("allocation id").to_string();
                if let Some(first) = owner.insert(id.clone(), node.id.clone()) {
                    panic!("{id} handed to {first} and to {}", node.id);
                }
                let pkg_feeds = pkg["feeds"].as_array().expect("feeds");
                assert_eq!(pkg_feeds.len(), 2, "{pkg}");
                for f in pkg_feeds {
                    let feed = f["id"].as_str().expect("feed id").to_string();
                    assert!(feeds_handed.insert(feed.clone()), "{feed} handed out twice");
                }
                *held.entry(node.id.clone()).or_default() += 2;
            }
        }
        for (node, capacity) in &claimers {
            let got = held.get(&node.id).copied().unwrap_or(0);
            // Full: as many pairs as fit (far more work is pending than anyone can hold).
            assert_eq!(got, capacity - capacity % 2, "{}: {got} of {capacity}", node.id);
        }

        let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
        for (node, capacity) in &claimers {
            let view = nodes.ok().as_array().expect("nodes").iter()
                .find(|n| n["id"] == node.id.as_str()).expect("listed").clone();
            assert_eq!(view["capacity"], *capacity, "{view}");
            assert_eq!(view["held_feeds"], held[&node.id], "{view}");
        }
        let taken: Vec<(String, Option<String>, String)> = query(
            &p.state.config.db,
            "SELECT id, node_id, status FROM we_cascade_task_allocations WHERE status <> 'pending'",
        )
        .await;
        let stored: HashMap<String, String> = taken
            .into_iter()
            .map(|(id, node, status)| {
                assert_eq!(status, "claimed", "{id}");
                (id, node.unwrap_or_default())
            })
            .collect();
        assert_eq!(stored, owner, "each claimed allocation is held by the node that got it");
        let claimed = i64::try_from(owner.len()).expect("fits");
        let pending: Vec<(i64, i64)> = query(
            &p.state.config.db,
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(feed_count), 0) AS BIGINT)
               FROM we_cascade_task_allocations WHERE status = 'pending'",
        )
        .await;
        let feeds_total = i64::try_from(PENDING_FEEDS).expect("fits");
        assert_eq!(pending, vec![(allocations - claimed, feeds_total - 2 * claimed)]);
        p.shutdown().await;
    }
}
