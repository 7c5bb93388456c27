//! The engine around the state machine: a stock child's full cycle, long-poll, notify,
//! the scheduler and monitoring.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade, cascade_doc, test_config};
use axum::routing::post;
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::time::Duration;
use werss_cascade::parent::scheduler::Scheduler;
use werss_cascade::protocol::credentials::sha256_hex;

on_both! {
    /// Only the calls and fields a stock WeRSS child sends (no lease token, no extensions).
    #[tokio::test]
    async fn a_stock_child_completes_a_full_cycle(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.add_node("stock").await;
        let auth = format!("AK-SK {}:{}", node.key, node.secret);
        let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
            let mut req = p
                .client
                .request(method, p.url(path))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json");
            if let Some(b) = body {
                req = req.body(b.to_string());
            }
            req.send()
        };
        let hb = send(reqwest::Method::POST, "/api/v1/wx/cascade/heartbeat", None)
            .await
            .expect("sent");
        assert_eq!(hb.status(), 200);
        let feeds = p.feeds(3_892_772_220, 1).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;

        let claimed: Value = send(reqwest::Method::POST, "/api/v1/wx/cascade/claim-task", None)
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let pkg = claimed["data"].clone();
        let alloc = pkg["allocation_id"]
            .as_str()
            .expect("allocation")
            .to_string();
        assert_eq!(pkg["feeds"][0]["faker_id"], "Mzg5Mjc3MjIyMA==");
        let ts = "2026-11-22T14:42:30.126043";
        let r = send(reqwest::Method::PUT, "/api/v1/wx/cascade/task-status", Some(json!({"allocation_id": alloc, "status": "executing", "error_message": null, "timestamp": ts}))).await.expect("sent");
        assert_eq!(r.status(), 200);
        let articles = json!({"allocation_id": alloc, "timestamp": ts, "articles": [
            {"id": "2247483701_1", "mp_id": "MP_WXS_3892772220", "title": "Hello", "url": "https://mp.weixin.qq.com/s/x", "publish_time": 1795358591}]});
        let r: Value = send(
            reqwest::Method::POST,
            "/api/v1/wx/cascade/upload-articles",
            Some(articles),
        )
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
        assert_eq!(r["data"]["new_count"], 1);
        let done = json!({"allocation_id": alloc, "task_id": task, "timestamp": ts, "article_count": 1,
                          "results": [{"mp_id": "MP_WXS_3892772220", "mp_name": "A", "article_count": 1, "status": "success"}]});
        let r = send(
            reqwest::Method::POST,
            "/api/v1/wx/cascade/report-completion",
            Some(done),
        )
        .await
        .expect("sent");
        assert_eq!(r.status(), 200);
        let r = send(
            reqwest::Method::POST,
            "/api/v1/wx/cascade/report-result",
            Some(json!({"task_id": task, "results": [], "timestamp": ts})),
        )
        .await
        .expect("sent");
        assert_eq!(r.status(), 200);
        let a = p.allocation(&alloc).await;
        assert_eq!(a["status"], "completed");
        assert_eq!(a["article_count"], 1);
        let nothing: Value = send(
            reqwest::Method::GET,
            &format!(
                "/api/v1/wx/cascade/pending-tasks?node_id={}&limit=5",
                node.id
            ),
            None,
        )
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
        assert_eq!(
            nothing["data"],
            json!([]),
            "WeRSS's pending-tasks with limit"
        );
        let foreign = send(
            reqwest::Method::GET,
            "/api/v1/wx/cascade/pending-tasks?node_id=somebody-else",
            None,
        )
        .await
        .expect("sent");
        assert_eq!(foreign.status(), 403);
        p.shutdown().await;
    }
}

/// Starts a `claim-task?wait=25` for `node` and returns once the parent holds it open.
async fn waiting_claim(p: &TestParent, node: &TestNode) -> tokio::task::JoinHandle<Value> {
    // Move the clock first: the claim's own liveness write then carries a time no earlier
    // request wrote, which tells the test the claim is registered and waiting.
    p.clock.advance(TimeDelta::seconds(1));
    let registered = p.clock.now();
    let client = p.client.clone();
    let url = p.url(&cascade("/claim-task?wait=25"));
    let auth = format!("AK-SK {}:{}", node.key, node.secret);
    let waiting = tokio::spawn(async move {
        let r = client
            .post(url)
            .header("Authorization", auth)
            .send()
            .await
            .expect("sent");
        r.json::<Value>().await.expect("json")
    });
    while p
        .store
        .get_node(&node.id)
        .await
        .expect("node")
        .last_heartbeat_at
        != Some(registered)
    {
        tokio::task::yield_now().await;
    }
    waiting
}

on_both! {
    #[tokio::test]
    async fn long_poll_returns_as_soon_as_work_is_dispatched(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("waiter", json!({})).await;
        let feeds = p.feeds(42_000, 1).await;
        let task = p.task(&feeds).await;
        let waiting = waiting_claim(&p, &node).await;
        p.dispatch(&task).await;
        let got = tokio::time::timeout(Duration::from_secs(20), waiting)
            .await
            .expect("woken well before the 25 s wait")
            .expect("joined");
        assert_eq!(got["data"]["feeds"][0]["id"], feeds[0].as_str(), "{got}");
        assert_eq!(got["message"], "认领任务成功");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn shutdown_ends_a_long_poll_with_an_empty_answer(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("waiter", json!({})).await;
        let waiting = waiting_claim(&p, &node).await;
        // Graceful shutdown waits for in-flight requests: both finish only if the poll ends early.
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            p.shutdown().await;
            waiting.await.expect("joined")
        })
        .await
        .expect("shutdown answered the long-poll well before its 25 s wait");
        assert_eq!(got["code"], 0);
        assert_eq!(got["data"], Value::Null);
        assert_eq!(got["message"], "暂无待处理任务");
    }
}

on_both! {
    #[tokio::test]
    async fn dispatch_notifies_children_with_the_hash_header(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            c.cascade.callback_allow = vec!["127.0.0.1".into()];
        })
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
        let app = axum::Router::new().route(
            "/api/v1/wx/cascade/notify",
            post(move |h: axum::http::HeaderMap, b: axum::Json<Value>| {
                let tx = tx.clone();
                async move {
                    let auth = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let _ = tx.send((auth, b.0));
                    axum::Json(json!({"code": 0, "message": "通知已接收", "data": null}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let callback = format!(
            "http://{}/api/v1/wx/cascade/notify",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let node = p
            .online_node("listener", json!({"callback_url": callback}))
            .await;
        let feeds = p.feeds(77_000, 3).await;
        let task = p.task(&feeds).await;
        let d = p.dispatch(&task).await;
        let (auth, body) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("notified")
            .expect("message");
        assert_eq!(
            auth,
            format!("AK-SK {}:{}", node.key, sha256_hex(&node.secret))
        );
        assert_eq!(body["type"], "new_task");
        assert_eq!(body["feed_count"], 3);
        assert_eq!(body["allocation_count"], 3);
        assert_eq!(body["task_id"], task.as_str());
        assert_eq!(body["schedule_run_id"], d["schedule_run_id"]);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn dispatch_reports_counts_and_refuses_disabled_or_unknown_tasks(backend) {
        let p = TestParent::on(backend.clone()).await;
        let feeds = p.feeds(88_000, 2).await;
        let mps = json!([{"id": feeds[0]}, feeds[1], {"id": "MP_WXS_404"}, {"id": feeds[0]}]);
        let t = p
            .post(
                &cascade("/message-tasks"),
                &p.admin(),
                json!({"name": "t", "message_template": "", "mps_id": mps, "status": 1}),
            )
            .await;
        let task = t.ok()["id"].as_str().expect("id").to_string();
        let d = p.dispatch(&task).await;
        assert_eq!(d["online_nodes"], 0);
        assert_eq!(d["task_count"], 1);
        assert_eq!(d["tasks"][0]["mp_count"], 4);
        assert_eq!(d["tasks"][0]["feed_count"], 2);
        assert_eq!(d["tasks"][0]["missing"], 1);
        assert_eq!(d["allocations_created"], 2);
        let unassigned = p.get(&cascade("/allocations"), &p.admin()).await;
        assert_eq!(
            unassigned.ok()["list"][0]["assigned_node_id"],
            Value::Null,
            "no node online: unassigned"
        );

        let disabled = p
            .post(
                &cascade("/message-tasks"),
                &p.admin(),
                json!({"name": "off", "message_template": "", "mps_id": [], "status": 0}),
            )
            .await;
        let off = disabled.ok()["id"].as_str().expect("id").to_string();
        let r = p
            .post(
                &cascade(&format!("/dispatch-task?task_id={off}")),
                &p.admin(),
                json!({}),
            )
            .await;
        assert_eq!(r.err(409), "conflict");
        assert_eq!(r.body["message"], "task is disabled");
        let r = p
            .post(
                &cascade("/dispatch-task?task_id=nope"),
                &p.admin(),
                json!({}),
            )
            .await;
        r.err(404);
        assert_eq!(r.body["message"], "任务不存在");
        let all = p
            .post(&cascade_doc("/dispatch-task"), &p.admin(), json!({}))
            .await;
        assert_eq!(all.ok()["task_count"], 1, "only enabled tasks");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn monitoring_filters_pages_and_counts(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("n", json!({"capacity": 4})).await;
        let feeds = p.feeds(99_000, 5).await;
        let task = p.task(&feeds).await;
        p.dispatch(&task).await;
        let pkg = p.claim_one(&node).await;
        p.complete(&node, &pkg).await.ok();
        p.claim_one(&node).await;

        let page = p
            .get(&cascade("/allocations?limit=2&offset=1"), &p.admin())
            .await;
        assert_eq!(page.ok()["total"], 5);
        assert_eq!(page.ok()["list"].as_array().map(Vec::len), Some(2));
        assert_eq!(page.ok()["page"], json!({"limit": 2, "offset": 1}));
        p.get(&cascade("/allocations?status=bogus"), &p.admin())
            .await
            .err(400);
        p.get(&cascade("/allocations?status=timeout"), &p.admin())
            .await
            .ok();
        let mine = p
            .get(
                &cascade(&format!("/allocations?node_id={}", node.id)),
                &p.admin(),
            )
            .await;
        assert_eq!(mine.ok()["total"], 2);

        let c = p.get(&cascade("/pending-allocations"), &p.admin()).await;
        let c = c.ok();
        assert_eq!(c["pending_tasks"], 3);
        assert_eq!(c["executing_tasks"], 1);
        assert_eq!(c["completed_today"], 1);
        assert_eq!(c["failed_today"], 0);
        assert_eq!(c["online_nodes"], 1);
        assert_eq!(c["held_feeds"], 1);
        assert_eq!(c["capacity_total"], 4);

        let fs = p.get(&cascade("/feed-status?limit=10"), &p.admin()).await;
        let list = fs.ok()["list"].as_array().expect("list").clone();
        assert_eq!(list.len(), 5);
        assert_eq!(list[0]["update_status"], "unknown", "never crawled first");
        assert_eq!(list[4]["update_status"], "fresh", "freshest last");
        let one = p
            .get(
                &cascade(&format!("/feed-status?feed_id={}", feeds[0])),
                &p.admin(),
            )
            .await;
        assert_eq!(one.ok()["total"], 1);
        p.shutdown().await;
    }
}

#[tokio::test]
async fn cron_fires_once_per_due_time_and_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(&dir);
    config.cascade.timezone = "UTC".into();
    let p = TestParent::spawn_with(config, dir).await;
    let feeds = p.feeds(123_000, 2).await;
    let mps: Vec<Value> = feeds.iter().map(|f| json!({"id": f})).collect();
    let t = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "cron", "message_template": "", "mps_id": mps, "status": 1, "cron_exp": "*/5 * * * *"})).await;
    let task = t.ok()["id"].as_str().expect("id").to_string();

    let scheduler = Scheduler::new(p.state.clone());
    let first = scheduler.run_once().await.expect("pass");
    assert_eq!(first.scheduled, 1);
    assert!(first.fired.is_empty());
    let next = p
        .get(&cascade(&format!("/message-tasks/{task}")), &p.admin())
        .await;
    let next_run =
        werss_cascade::protocol::time::parse(next.ok()["next_run_at"].as_str().expect("scheduled"))
            .expect("time");
    assert!(next_run > p.clock.now() && next_run <= p.clock.now() + TimeDelta::minutes(5));

    p.clock.advance(next_run - p.clock.now());
    let fired = scheduler.run_once().await.expect("pass");
    assert_eq!(fired.fired, vec![task.clone()]);
    assert!(
        scheduler.run_once().await.expect("pass").fired.is_empty(),
        "no double firing"
    );
    let runs = p
        .get(
            &cascade(&format!("/allocations?task_id={task}")),
            &p.admin(),
        )
        .await;
    assert_eq!(runs.ok()["total"], 2);
    let run_id = runs.ok()["list"][0]["schedule_run_id"]
        .as_str()
        .expect("run")
        .to_string();
    assert_eq!(
        run_id,
        format!("cron_{}_{task}", next_run.format("%Y%m%d%H%M%S"))
    );

    // A restarted scheduler (new instance, persisted next_run_at in the past) fires once.
    p.clock.advance(TimeDelta::minutes(12));
    let restarted = Scheduler::new(p.state.clone());
    assert_eq!(restarted.run_once().await.expect("pass").fired.len(), 1);
    assert!(restarted.run_once().await.expect("pass").fired.is_empty());

    // Stopped: due firings wait.
    let stop = p
        .post(&cascade("/stop-scheduler"), &p.admin(), json!({}))
        .await;
    assert_eq!(stop.body["message"], "定时调度服务已停止");
    assert_eq!(stop.ok(), &json!({"running": false, "jobs": 1}));
    p.clock.advance(TimeDelta::minutes(10));
    assert!(restarted.run_once().await.expect("pass").fired.is_empty());
    let start = p
        .post(&cascade("/start-scheduler"), &p.admin(), json!({}))
        .await;
    assert_eq!(start.ok()["running"], true);
    assert_eq!(restarted.run_once().await.expect("pass").fired.len(), 1);
    let reload = p
        .post(&cascade("/reload-scheduler"), &p.admin(), json!({}))
        .await;
    assert_eq!(reload.body["message"], "定时调度任务已重载");
    p.shutdown().await;
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heartbeats_during_a_large_dispatch_all_succeed_and_land(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("beating", json!({})).await;
        let feeds = p.feeds(500_000_000, 5_000).await;
        let task = p.store.create_task(
            werss_cascade::store::TaskFields {
                name: "big".into(),
                mps_id: json!(feeds).to_string(),
                status: 1,
                ..Default::default()
            },
            p.clock.now(),
        );
        let task = task.await.expect("task").id;
        let dispatch = {
            let (client, url, token) = (
                p.client.clone(),
                p.url(&cascade(&format!("/dispatch-task?task_id={task}"))),
                p.token.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("sent")
                    .json::<Value>()
                    .await
                    .expect("json")
            })
        };
        let mut beats = 0;
        while !dispatch.is_finished() || beats == 0 {
            beats += 1;
            let r = p
                .post(
                    &cascade("/heartbeat"),
                    &node.auth(),
                    json!({"capacity": beats, "version": format!("v{beats}")}),
                )
                .await;
            assert_eq!(r.ok()["status"], "alive");
        }
        let d = dispatch.await.expect("dispatch joined");
        assert_eq!(d["data"]["allocations_created"], 5_000);
        // Every heartbeat is written; the newest one's extras win.
        let want = format!("v{beats}");
        let landed = async {
            loop {
                let n = p
                    .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
                    .await;
                if n.ok()["version"] == want.as_str() {
                    return n.ok().clone();
                }
                tokio::task::yield_now().await;
            }
        };
        let n = tokio::time::timeout(Duration::from_secs(20), landed)
            .await
            .expect("buffered heartbeats written");
        assert_eq!(n["online"], true);
        assert_eq!(n["capacity"], beats.min(10));
        p.shutdown().await;
    }
}

on_both! {
    /// A heartbeat is answered only once it is written, even while a long write holds the
    /// database: what the node reported is there as soon as it has its answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_answered_during_a_large_dispatch_is_already_written(backend) {
        let p = TestParent::on(backend.clone()).await;
        let node = p.online_node("beating", json!({})).await;
        let feeds = p.feeds(600_000_000, 5_000).await;
        let task = p.store.create_task(
            werss_cascade::store::TaskFields {
                name: "big".into(),
                mps_id: json!(feeds).to_string(),
                status: 1,
                ..Default::default()
            },
            p.clock.now(),
        );
        let task = task.await.expect("task").id;
        let dispatch = {
            let (client, url, token) = (
                p.client.clone(),
                p.url(&cascade(&format!("/dispatch-task?task_id={task}"))),
                p.token.clone(),
            );
            tokio::spawn(async move {
                let r = client.post(url).bearer_auth(token).send().await;
                r.expect("sent").json::<Value>().await.expect("json")
            })
        };
        let mut beats = 0;
        while !dispatch.is_finished() || beats == 0 {
            beats += 1;
            let version = format!("v{beats}");
            let r = p
                .post(&cascade("/heartbeat"), &node.auth(), json!({"version": version}))
                .await;
            assert_eq!(r.ok()["status"], "alive");
            let n = p
                .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
                .await;
            assert_eq!(n.ok()["version"], version.as_str(), "heartbeat {beats}");
        }
        let d = dispatch.await.expect("dispatch joined");
        assert_eq!(d["data"]["allocations_created"], 5_000);
        p.shutdown().await;
    }
}

/// Creates a `*/5` cron task over two new feeds on `p` and returns its id.
async fn cron_task(p: &TestParent, prefix: u64) -> String {
    let feeds = p.feeds(prefix, 2).await;
    let mps: Vec<Value> = feeds.iter().map(|f| json!({"id": f})).collect();
    let t = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "cron", "message_template": "", "mps_id": mps, "status": 1, "cron_exp": "*/5 * * * *"})).await;
    t.ok()["id"].as_str().expect("id").to_string()
}

/// The task's `next_run_at` as the admin API shows it.
async fn next_run(p: &TestParent, task: &str) -> Value {
    let t = p
        .get(&cascade(&format!("/message-tasks/{task}")), &p.admin())
        .await;
    t.ok()["next_run_at"].clone()
}

on_both! {
    #[tokio::test]
    async fn stop_scheduler_on_one_parent_stops_every_parent_and_survives_a_restart(backend) {
        let a = TestParent::on_with(backend.clone(), |c| c.cascade.timezone = "UTC".into()).await;
        let b = TestParent::join(&a).await;
        let task = cron_task(&a, 124_000).await;
        let (on_a, on_b) = (Scheduler::new(a.state.clone()), Scheduler::new(b.state.clone()));
        assert_eq!(on_a.run_once().await.expect("pass").scheduled, 1);

        let stop = a.post(&cascade("/stop-scheduler"), &a.admin(), json!({})).await;
        assert_eq!(stop.ok(), &json!({"running": false, "jobs": 1}));
        a.clock.advance(TimeDelta::minutes(6));
        assert!(on_b.run_once().await.expect("pass").fired.is_empty(), "the other parent obeys");
        assert!(on_a.run_once().await.expect("pass").fired.is_empty());
        // A restarted parent (a new process on the database, `cascade.scheduler` true)
        // remembers.
        let restarted = TestParent::join(&a).await;
        assert!(restarted.state.config.cascade.scheduler);
        let on_restarted = Scheduler::new(restarted.state.clone());
        assert!(on_restarted.run_once().await.expect("pass").fired.is_empty());
        let reload = restarted.post(&cascade("/reload-scheduler"), &restarted.admin(), json!({})).await;
        assert_eq!(reload.ok()["running"], false);

        // Started through the other parent: the due firing happens once, anywhere.
        let start = b.post(&cascade("/start-scheduler"), &b.admin(), json!({})).await;
        assert_eq!(start.ok()["running"], true);
        let due = next_run(&a, &task).await;
        a.clock.advance(TimeDelta::minutes(6));
        let fired = on_restarted.run_once().await.expect("pass").fired.len()
            + on_a.run_once().await.expect("pass").fired.len()
            + on_b.run_once().await.expect("pass").fired.len();
        assert_eq!(fired, 1);
        assert_ne!(next_run(&a, &task).await, due);
        restarted.shutdown().await;
        b.shutdown().await;
        a.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_cron_firing_whose_dispatch_fails_is_retried_on_the_next_pass(backend) {
        let p = TestParent::on_with(backend.clone(), |c| c.cascade.timezone = "UTC".into()).await;
        let task = cron_task(&p, 125_000).await;
        let scheduler = Scheduler::new(p.state.clone());
        assert_eq!(scheduler.run_once().await.expect("pass").scheduled, 1);
        // The allocations table refuses inserts while `fail_inserts` has a row (as a full
        // disk or a lost connection would fail the dispatch).
        let trigger = match backend {
            crate::helpers::db::Backend::Sqlite => "
                CREATE TABLE fail_inserts (x INTEGER); INSERT INTO fail_inserts VALUES (1);
                CREATE TRIGGER fail_inserts BEFORE INSERT ON we_cascade_task_allocations
                  WHEN EXISTS (SELECT 1 FROM fail_inserts)
                  BEGIN SELECT RAISE(ABORT, 'inserts refused'); END;",
            crate::helpers::db::Backend::Postgres(_) => "
                CREATE TABLE fail_inserts (x INTEGER); INSERT INTO fail_inserts VALUES (1);
                CREATE FUNCTION fail_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN IF EXISTS (SELECT 1 FROM fail_inserts) THEN
                    RAISE EXCEPTION 'inserts refused'; END IF; RETURN NEW; END $$;
                CREATE TRIGGER fail_inserts BEFORE INSERT ON we_cascade_task_allocations
                  FOR EACH ROW EXECUTE FUNCTION fail_inserts();",
        };
        crate::helpers::db::execute(&p.state.config.db, trigger).await;
        let due = next_run(&p, &task).await;
        p.clock.advance(TimeDelta::minutes(6));
        assert!(scheduler.run_once().await.is_err(), "the dispatch failed");
        assert_eq!(next_run(&p, &task).await, due, "the firing is still due");
        let none = p.get(&cascade(&format!("/allocations?task_id={task}")), &p.admin()).await;
        assert_eq!(none.ok()["total"], 0);

        crate::helpers::db::execute(&p.state.config.db, "DELETE FROM fail_inserts").await;
        assert_eq!(scheduler.run_once().await.expect("pass").fired, vec![task.clone()]);
        assert_ne!(next_run(&p, &task).await, due);
        assert!(scheduler.run_once().await.expect("pass").fired.is_empty(), "once");
        let runs = p.get(&cascade(&format!("/allocations?task_id={task}")), &p.admin()).await;
        assert_eq!(runs.ok()["total"], 2);
        let due = chrono::NaiveDateTime::parse_from_str(due.as_str().expect("due"), "%Y-%m-%dT%H:%M:%S%.f")
            .expect("time");
        assert_eq!(
            runs.ok()["list"][0]["schedule_run_id"],
            format!("cron_{}_{task}", due.format("%Y%m%d%H%M%S")),
            "the run of the original due time"
        );
        p.shutdown().await;
    }
}
