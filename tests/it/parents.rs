//! Several parents on one PostgreSQL database, as behind a load balancer (DESIGN §6): claims
//! are exclusive across parents, a stopped parent's long-polls and leases are recovered
//! through the other, long-polls wake across parents, and a cron firing happens once.

use crate::helpers::db::{Backend, TestDb};
use crate::helpers::process::{ParentProcess, cascade_cmd};
use crate::helpers::{TestNode, TestParent, cascade, test_config};
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use werss_cascade::parent::scheduler::Scheduler;
use werss_cascade::protocol::time::to_wire;

/// Two parents on one fresh PostgreSQL database; `None` when PostgreSQL is not configured.
async fn two_parents() -> Option<(TestDb, TestParent, TestParent)> {
    let backend = Backend::postgres()?;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::create(&backend, &dir).await;
    let mut config = test_config(&dir);
    config.db = db.url.clone();
    config.cascade.timezone = "UTC".into();
    let a = TestParent::spawn_with(config, dir).await;
    let b = TestParent::join(&a).await;
    Some((db, a, b))
}

/// What one claimer did.
#[derive(Default)]
struct Worked {
    claimed: Vec<String>,
}

/// A claimer that starts on `first` and moves to `second` once `first` stops answering, as
/// a load balancer would move it. It completes everything it claims.
async fn claimer(
    node: TestNode,
    client: reqwest::Client,
    first: String,
    second: String,
    done: Arc<AtomicBool>,
    completed: tokio::sync::watch::Sender<usize>,
) -> Worked {
    let auth = format!("AK-SK {}:{}", node.key, node.secret);
    let mut base = first;
    let mut worked = Worked::default();
    while !done.load(Ordering::SeqCst) {
        let sent = client
            .post(format!("{base}{}", cascade("/claim-task?limit=4&wait=1")))
            .header("Authorization", &auth)
            .send()
            .await;
        let reply: Value = match sent {
            Ok(r) if r.status() == 200 => r.json().await.expect("claim json"),
            _ => {
                // The parent is gone (or going): the balancer sends us to the other one.
                base.clone_from(&second);
                continue;
            }
        };
        for pkg in reply["data"].as_array().expect("a list for limit ≥ 2") {
            let id = pkg["allocation_id"].as_str().expect("id").to_string();
            let body = json!({"allocation_id": id, "task_id": pkg["task_id"], "results": [],
                              "article_count": 0, "lease_token": pkg["lease_token"]});
            let mut status = 0;
            for target in [&base, &second] {
                let sent = client
                    .post(format!("{target}{}", cascade("/report-completion")))
                    .header("Authorization", &auth)
                    .json(&body)
                    .send()
                    .await;
                if let Ok(r) = sent {
                    status = r.status().as_u16();
                    if status != 503 {
                        break;
                    }
                }
            }
            assert_eq!(status, 200, "completion of {id} accepted");
            worked.claimed.push(id);
            completed.send_modify(|n| *n += 1);
        }
    }
    worked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_parents_hand_out_each_allocation_once_and_survive_losing_one() {
    let Some((db, a, b)) = two_parents().await else {
        return;
    };
    // One login serves both parents: the JWT secret lives in the shared database.
    b.get(&cascade("/nodes"), &a.admin()).await.ok();

    let mut nodes = Vec::new();
    for i in 0..36 {
        nodes.push(a.online_node(&format!("n{i}"), json!({})).await);
    }
    let feeds = a.feeds(2_000_000, 2000).await;
    let task = a.task(&feeds).await;
    assert_eq!(a.dispatch(&task).await["allocations_created"], 2000);

    // Four nodes claim through A and then die with it, holding 12 allocations.
    let doomed: Vec<TestNode> = nodes.drain(..4).collect();
    let mut held = Vec::new();
    for node in &doomed {
        let r = a.claim(node, "limit=3").await;
        for pkg in r.ok().as_array().expect("list") {
            held.push(pkg.clone());
        }
    }
    assert_eq!(held.len(), 12);
    // Past `steal_after`: the work placed on the dead nodes is free for everyone.
    a.clock.advance(TimeDelta::seconds(61));

    // 32 claimers, half on each parent.
    let done = Arc::new(AtomicBool::new(false));
    let (completed, mut progress) = tokio::sync::watch::channel(0usize);
    let mut workers = tokio::task::JoinSet::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let (first, second) = if i % 2 == 0 {
            (a.url(""), b.url(""))
        } else {
            (b.url(""), b.url(""))
        };
        workers.spawn(claimer(
            node,
            a.client.clone(),
            first,
            second,
            done.clone(),
            completed.clone(),
        ));
    }

    // Mid-run, parent A stops; its claimers carry on through B.
    progress.wait_for(|n| *n >= 1000).await.expect("progress");
    a.shutdown().await;
    progress.wait_for(|n| *n >= 1988).await.expect("progress");

    // What the dead nodes held comes back through B's reaper once the leases run out.
    b.clock.advance(TimeDelta::seconds(301));
    assert_eq!(b.reap().await.expired, 12);
    // …and after the first retry's back-off (at most 1.5 × retry_base).
    b.clock.advance(TimeDelta::seconds(46));
    progress.wait_for(|n| *n >= 2000).await.expect("progress");
    done.store(true, Ordering::SeqCst);

    let mut claimed = Vec::new();
    while let Some(w) = workers.join_next().await {
        claimed.extend(w.expect("claimer finished").claimed);
    }
    let unique: HashSet<&String> = claimed.iter().collect();
    assert_eq!(claimed.len(), 2000, "each allocation completed once");
    assert_eq!(unique.len(), 2000, "no allocation handed out twice");
    for pkg in &held {
        let id = pkg["allocation_id"].as_str().expect("id").to_string();
        assert!(unique.contains(&id), "{id} recovered and completed");
    }
    // The dead holders' leases are fenced off on the surviving parent too.
    let stale = b.complete(&doomed[0], &held[0]).await;
    assert_eq!(stale.err(409), "lease_lost");

    let counters = b.get(&cascade("/pending-allocations"), &b.admin()).await;
    let c = counters.ok();
    assert_eq!(
        (c["pending_tasks"].as_i64(), c["executing_tasks"].as_i64()),
        (Some(0), Some(0))
    );
    let done = b
        .get(
            &cascade("/allocations?status=completed&limit=1"),
            &b.admin(),
        )
        .await;
    assert_eq!(done.ok()["total"], 2000);
    b.shutdown().await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_on_one_parent_wakes_long_polls_on_the_other() {
    let Some((_db, a, b)) = two_parents().await else {
        return;
    };
    let node = a.online_node("poller", json!({})).await;
    let feeds = a.feeds(3_000_000, 1).await;
    let task = a.task(&feeds).await;

    // The poll's claim stamps the node with a time no heartbeat has used.
    b.clock.advance(TimeDelta::seconds(1));
    let poll = {
        let b_client = b.client.clone();
        let url = b.url(&cascade("/claim-task?wait=25"));
        let auth = format!("AK-SK {}:{}", node.key, node.secret);
        tokio::spawn(async move {
            let r = b_client
                .post(url)
                .header("Authorization", auth)
                .send()
                .await
                .expect("claim sent");
            r.json::<Value>().await.expect("claim json")
        })
    };
    // The poll is parked on B once B's long-poll has touched the node; then A dispatches.
    wait_until_polled(&b, &node).await;
    a.dispatch(&task).await;
    // Without the wake-up the poll would answer only at its 25 s deadline.
    let reply = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("woken well before the poll's deadline")
        .expect("poll task");
    assert_eq!(reply["data"]["feeds"][0]["id"], feeds[0].as_str());
}

/// Waits until `node`'s long-poll on `parent` has made its first claim. The poll registers for
/// wake-ups before it claims, so from then on no wake-up can be missed.
async fn wait_until_polled(parent: &TestParent, node: &TestNode) {
    let stamp = to_wire(parent.clock.now());
    loop {
        let nodes = parent.get(&cascade("/nodes"), &parent.admin()).await;
        let polled = nodes
            .ok()
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["id"] == node.id.as_str() && n["last_heartbeat_at"] == stamp.as_str());
        if polled {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_task_fires_once_not_once_per_parent() {
    let Some((_db, a, b)) = two_parents().await else {
        return;
    };
    let feeds = a.feeds(4_000_000, 3).await;
    let mps: Vec<Value> = feeds.iter().map(|f| json!({"id": f})).collect();
    let t = a.post(&cascade("/message-tasks"), &a.admin(), json!({"name": "cron", "message_template": "", "mps_id": mps, "status": 1, "cron_exp": "*/5 * * * *"})).await;
    let task = t.ok()["id"].as_str().expect("id").to_string();
    let (on_a, on_b) = (
        Scheduler::new(a.state.clone()),
        Scheduler::new(b.state.clone()),
    );

    let (x, y) = tokio::join!(on_a.run_once(), on_b.run_once());
    assert_eq!(x.expect("pass").scheduled + y.expect("pass").scheduled, 1);
    for firing in 0..3 {
        a.clock.advance(TimeDelta::minutes(5));
        let (x, y) = tokio::join!(on_a.run_once(), on_b.run_once());
        let fired = x.expect("pass").fired.len() + y.expect("pass").fired.len();
        assert_eq!(fired, 1, "firing {firing} happened on exactly one parent");
        // Complete the run so the next firing finds the feeds free.
        let node = a.online_node(&format!("w{firing}"), json!({})).await;
        for _ in 0..3 {
            let pkg = b.claim_one(&node).await;
            b.complete(&node, &pkg).await.ok();
        }
    }
    let runs = a
        .get(
            &cascade(&format!("/allocations?task_id={task}&limit=100")),
            &a.admin(),
        )
        .await;
    let list = runs.ok()["list"].as_array().expect("list").clone();
    assert_eq!(list.len(), 9, "3 firings of 3 feeds");
    let run_ids: HashSet<&str> = list
        .iter()
        .map(|r| r["schedule_run_id"].as_str().expect("run id"))
        .collect();
    assert_eq!(run_ids.len(), 3);
}

/// The README's example: two `cascade parent` processes from `examples/several-parents.yaml`
/// on one database; a login on one is accepted by the other, and work dispatched through one
/// is claimed through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_config_runs_two_parents_on_one_database() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::create(&backend, &dir).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/several-parents.yaml");
    let start = |port: &str| {
        let mut cmd = cascade_cmd(dir.path());
        cmd.args(["parent", "--config", example])
            .env("DB", &db.url)
            .env("PORT", port)
            .env("CASCADE_ADMIN_PASSWORD", "example-password");
        ParentProcess::start(cmd)
    };
    let one = start("0").await;
    let two = start("0").await;
    let client = crate::helpers::http_client();
    let login: Value = client
        .post(format!("{}/api/v1/wx/auth/login", one.base))
        .form(&[("username", "admin"), ("password", "example-password")])
        .send()
        .await
        .expect("login sent")
        .json()
        .await
        .expect("login json");
    let token = login["data"]["access_token"].as_str().expect("token");
    let admin = |base: &str, path: &str| {
        client
            .post(format!("{base}{}", cascade(path)))
            .bearer_auth(token)
    };
    let node: Value = admin(&two.base, "/nodes")
        .json(&json!({"node_type": 1, "name": "n"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let node_id = node["data"]["node_id"]
        .as_str()
        .expect("node created on the other parent");
    let cred: Value = admin(&one.base, &format!("/nodes/{node_id}/credentials"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let auth = format!(
        "AK-SK {}:{}",
        cred["data"]["api_key"].as_str().expect("key"),
        cred["data"]["api_secret"].as_str().expect("secret")
    );
    let feed: Value = admin(&one.base, "/feeds")
        .json(&json!({"mp_name": "Example", "faker_id": "Mzg5Mjc3MjIyMA=="}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let feed_id = feed["data"]["id"].as_str().expect("feed id").to_string();
    let task: Value = admin(&two.base, "/message-tasks")
        .json(&json!({"name": "t", "message_template": "", "mps_id": [feed_id], "status": 1}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let task_id = task["data"]["id"].as_str().expect("task id");
    client
        .post(format!("{}{}", two.base, cascade("/heartbeat")))
        .header("Authorization", &auth)
        .json(&json!({}))
        .send()
        .await
        .expect("heartbeat");
    let dispatched: Value = admin(&one.base, &format!("/dispatch-task?task_id={task_id}"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(dispatched["data"]["allocations_created"], 1);
    let claimed: Value = client
        .post(format!("{}{}", two.base, cascade("/claim-task")))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("claim sent")
        .json()
        .await
        .expect("claim json");
    assert_eq!(claimed["data"]["feeds"][0]["id"], feed_id.as_str());
    assert!(one.terminate().await, "first parent exits cleanly");
    assert!(two.terminate().await, "second parent exits cleanly");
}

/// Invariant 5 across parents: the same task dispatched on both parents at once opens each
/// feed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dispatches_on_two_parents_open_each_feed_once() {
    let Some((_db, a, b)) = two_parents().await else {
        return;
    };
    for i in 0..4 {
        a.online_node(&format!("n{i}"), json!({})).await;
    }
    let feeds = a.feeds(5_000_000, 3000).await;
    let task = a.task(&feeds).await;
    for _ in 0..3 {
        let (x, y) = tokio::join!(a.dispatch(&task), b.dispatch(&task));
        let created = x["allocations_created"].as_i64().expect("count")
            + y["allocations_created"].as_i64().expect("count");
        let open = a
            .get(
                &cascade(&format!(
                    "/allocations?task_id={task}&status=pending&limit=1"
                )),
                &a.admin(),
            )
            .await;
        assert_eq!(
            open.ok()["total"],
            3000,
            "each feed has exactly one open allocation"
        );
        assert!(created == 3000 || created == 0, "created {created}");
    }
}

/// Every parent runs the reaper: run at once on both, each expired lease and each silent
/// node is handled exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapers_on_both_parents_handle_each_expiry_once() {
    let Some((_db, a, b)) = two_parents().await else {
        return;
    };
    let mut nodes = Vec::new();
    for i in 0..4 {
        nodes.push(a.online_node(&format!("n{i}"), json!({})).await);
    }
    let feeds = a.feeds(6_000_000, 100).await;
    let task = a.task(&feeds).await;
    a.dispatch(&task).await;
    let mut held = 0;
    for node in &nodes {
        held += b
            .claim(node, "limit=10")
            .await
            .ok()
            .as_array()
            .expect("list")
            .len();
    }
    assert_eq!(held, 40);

    a.clock.advance(TimeDelta::seconds(301));
    let (x, y) = tokio::join!(a.reap(), b.reap());
    assert_eq!(
        x.expired + y.expired,
        40,
        "each lease expired once: {x:?} {y:?}"
    );
    assert_eq!(
        x.offline_nodes + y.offline_nodes,
        4,
        "each node marked offline once"
    );
    let logs = b
        .get(
            &cascade("/sync-logs?operation=lease_expired&limit=1"),
            &b.admin(),
        )
        .await;
    assert_eq!(logs.ok()["total"], 40, "one sync log per expiry");
    let pending = b
        .get(&cascade("/allocations?status=pending&limit=1"), &b.admin())
        .await;
    assert_eq!(pending.ok()["total"], 100);
}
