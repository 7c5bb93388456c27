//! QR logins through the parent (issue 12 §3(b), §4 `auto_login`): an admin asks a node to
//! log in, the node finds the command in its heartbeat answer, runs the flow against the fake
//! and reports the QR; the fake phone scans it; the parent lists the new login as valid. Also
//! the channel's edges: stock nodes get no commands, steps are checked, a node touches only
//! its own flows, nothing secret reaches the parent.

use crate::helpers::db::{Backend, on_both};
use crate::helpers::{TestNode, TestParent, cascade, test_config};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use werss_cascade::child::Child;
use werss_cascade::logins::{Login, LoginKind, LoginSecrets, LoginStore};
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::testkit::wechat::FakeWechat;
use werss_cascade::testkit::weread::FakeWeread;

/// Guard against a hung child; never a speed assertion.
const HANG: Duration = Duration::from_secs(30);

/// A child of `node` without logins, pointed at the fakes, heartbeating every second.
fn child_config(
    p: &TestParent,
    node: &TestNode,
    weread: &str,
    wechat: &str,
) -> werss_cascade::config::Config {
    let mut c = test_config(&p.dir);
    let data = p.dir.path().join(format!("child-{}", node.id));
    c.cascade.data_dir = data.display().to_string();
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = Secret::new(&node.secret);
    c.cascade.weread_base_url = weread.to_string();
    c.cascade.wechat_base_url = wechat.to_string();
    c.cascade.login_poll_ms = 20;
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 1;
    c.cascade.shutdown_grace = 5;
    c
}

/// Starts the child and waits until its first heartbeat reached the parent.
async fn start_child(
    p: &TestParent,
    node: &TestNode,
    config: werss_cascade::config::Config,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let stop = CancellationToken::new();
    let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
    p.poll_until(
        &format!("/nodes/{}", node.id),
        "the child's first heartbeat",
        |n| !n["last_heartbeat_at"].is_null(),
    )
    .await;
    (stop, running)
}

async fn stop_child(stop: CancellationToken, running: tokio::task::JoinHandle<anyhow::Result<()>>) {
    stop.cancel();
    tokio::time::timeout(HANG, running)
        .await
        .expect("child stops")
        .expect("joined")
        .expect("child exits cleanly");
}

/// Polls the flow until `done` holds of it.
async fn flow_until(p: &TestParent, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    p.poll_until(&format!("/login-flows/{id}"), what, done)
        .await
}

/// Every value of the parent's login tables as text.
async fn parent_login_text(p: &TestParent, backend: &Backend) -> String {
    use sqlx::Connection;
    let sql = "SELECT * FROM cascade_login_flows";
    let mut text = String::new();
    match backend {
        Backend::Sqlite => {
            for entry in std::fs::read_dir(p.dir.path()).expect("dir") {
                let path = entry.expect("entry").path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("cascade.db"))
                {
                    text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).expect("db")));
                }
            }
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(p.dir.path().join("cascade.db"));
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("open");
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cascade_login_flows")
                .fetch_one(&mut c)
                .await
                .expect("count");
            assert!(n > 0, "{sql}: the flow is stored");
        }
        Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(&p.state.config.db)
                .await
                .expect("connect");
            for table in [
                "cascade_login_flows",
                "cascade_node_logins",
                "we_cascade_nodes",
            ] {
                let q = format!("SELECT row_to_json(t)::text FROM {table} t");
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                    .fetch_all(&mut c)
                    .await
                    .expect("rows");
                assert!(!rows.is_empty(), "{table} has rows");
                text.push_str(&rows.join("\n"));
            }
        }
    }
    text
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_admin_asks_a_node_for_a_weread_login_the_qr_and_the_otp_go_through_the_parent(backend) {
        let p = TestParent::on(backend.clone()).await;
        let weread = FakeWeread::start().await.expect("fake weread");
        weread.set_nickname("读书 Reader");
        weread.require_otp(true);
        let node = p.add_node("reader").await;
        let other = p.add_node("other").await;
        let config = child_config(&p, &node, weread.base_url(), "http://127.0.0.1:9");
        let data_dir = config.cascade.data_dir.clone();
        let (stop, running) = start_child(&p, &node, config).await;

        let asked = p
            .post(&cascade(&format!("/nodes/{}/logins", node.id)), &p.admin(), json!({"kind": "weread"}))
            .await;
        assert_eq!(asked.status, 202, "{:?}", asked.body);
        let flow = asked.ok().clone();
        let id = flow["id"].as_str().expect("flow id").to_string();
        assert_eq!(flow["state"], "requested");
        assert_eq!(flow["origin"], "admin");
        // A second request while it runs joins it.
        let again = p
            .post(&cascade(&format!("/nodes/{}/logins", node.id)), &p.admin(), json!({"kind": "weread"}))
            .await;
        assert_eq!(again.status, 200);
        assert_eq!(again.ok()["id"], id.as_str());

        let waiting = flow_until(&p, &id, "the QR code at the parent", |f| f["state"] == "pending_scan").await;
        let uid = weread.current_uid().expect("the child asked WeRead for a code");
        let text = waiting["qr"]["text"].as_str().expect("qr text");
        assert!(text.contains(&uid), "the QR encodes WeRead's confirm URL: {text}");
        assert_eq!(waiting["qr"]["number"], 1);
        let modules = waiting["qr"]["modules"].as_array().expect("modules");
        assert!(modules.len() >= 21, "a QR matrix");
        assert!(modules.iter().all(|r| r.as_str().is_some_and(|r| r.len() == modules.len())));

        // Another node cannot touch this flow; an admin token is not a node credential.
        let foreign = p
            .post(&cascade(&format!("/login-flows/{id}/progress")), &other.auth(), json!({"state": "failed"}))
            .await;
        assert_eq!(foreign.status, 404);
        let as_admin = p
            .post(&cascade(&format!("/login-flows/{id}/progress")), &p.admin(), json!({"state": "failed"}))
            .await;
        assert_eq!(as_admin.status, 403);
        // No code is asked for yet.
        let early = p.post(&cascade(&format!("/login-flows/{id}/otp")), &p.admin(), json!({"code": "1234"})).await;
        assert_eq!(early.status, 409);

        assert!(weread.scan(), "the fake phone scans");
        flow_until(&p, &id, "scanned", |f| f["state"] == "scanned").await;
        let code = weread.confirm().expect("the phone shows a code");
        flow_until(&p, &id, "the code asked for", |f| f["state"] == "need_otp").await;
        let bad = p.post(&cascade(&format!("/login-flows/{id}/otp")), &p.admin(), json!({"code": "12ab"})).await;
        assert_eq!(bad.status, 400);
        let typed = p.post(&cascade(&format!("/login-flows/{id}/otp")), &p.admin(), json!({"code": code})).await;
        assert_eq!(typed.status, 200, "{:?}", typed.body);

        let done = flow_until(&p, &id, "the login confirmed", |f| f["state"] == "confirmed").await;
        assert_eq!(done["account_name"], "读书 Reader");
        assert_eq!(done["open"], false);
        assert!(done["qr"].is_null(), "the QR text is dropped when the flow ends");
        let login_id = done["login_id"].as_str().expect("login id").to_string();
        assert!(login_id.starts_with("weread-"), "{login_id}");
        let listed = p
            .poll_until("/logins", "the new login listed as valid", |l| {
                l.as_array().is_some_and(|l| l.iter().any(|x| x["login_id"] == login_id.as_str() && x["state"] == "valid"))
            })
            .await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1));

        stop_child(stop, running).await;
        let saved = LoginStore::open(std::path::Path::new(&data_dir)).expect("store").get(&login_id).expect("saved on the child");
        let text = parent_login_text(&p, &backend).await;
        let secret_cookies: Vec<_> = saved
            .secrets
            .cookies
            .iter()
            .filter(|(name, _)| ["wr_skey", "wr_rt", "wr_vid"].contains(&name.as_str()))
            .collect();
        assert_eq!(secret_cookies.len(), 3, "the child saved the session");
        for (name, value) in secret_cookies {
            assert!(!text.contains(value.expose()), "the parent stores no cookie ({name})");
        }
        // The uid is a live credential only while its QR code lives; the row forgets it when
        // the flow ends (SQLite's file may still hold the dead page until a checkpoint).
        let flow_row = p.get(&cascade(&format!("/login-flows/{id}")), &p.admin()).await;
        assert!(!flow_row.text.contains(&uid), "the WeRead uid is not kept after the flow");
        if matches!(backend, Backend::Postgres(_)) {
            assert!(!text.contains(&uid), "the WeRead uid is not kept after the flow");
        }
        weread.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_admin_asks_a_node_for_an_mp_login_and_the_fake_phone_scans_the_qr(backend) {
        let p = TestParent::on(backend).await;
        let wechat = FakeWechat::start(Vec::new()).await.expect("fake wechat");
        wechat.mp_login_settings(|s| s.nickname = "Fake MP 公众号".into());
        let node = p.add_node("mp-node").await;
        let config = child_config(&p, &node, "http://127.0.0.1:9", wechat.base_url());
        let (stop, running) = start_child(&p, &node, config).await;

        let asked = p.post(&cascade(&format!("/nodes/{}/logins", node.id)), &p.admin(), json!({"kind": "mp"})).await;
        assert_eq!(asked.status, 202, "{:?}", asked.body);
        let id = asked.ok()["id"].as_str().expect("id").to_string();
        let waiting = flow_until(&p, &id, "the MP QR at the parent", |f| f["state"] == "pending_scan").await;
        let text = waiting["qr"]["text"].as_str().expect("qr text");
        assert!(text.contains("/__fake/mp/scan?flow="), "the decoded QR image: {text}");
        assert!(wechat.mp_scan());
        flow_until(&p, &id, "scanned", |f| f["state"] == "scanned").await;
        assert!(wechat.mp_confirm());
        let done = flow_until(&p, &id, "confirmed", |f| f["state"] == "confirmed").await;
        assert_eq!(done["account_name"], "Fake MP 公众号");
        assert!(!done["login_expires_at"].is_null(), "the session end from slave_sid");
        let login_id = done["login_id"].as_str().expect("login id").to_string();
        p.poll_until("/logins", "the MP login listed as valid", |l| {
            l.as_array().is_some_and(|l| l.iter().any(|x| x["login_id"] == login_id.as_str() && x["kind"] == "mp" && x["state"] == "valid"))
        })
        .await;
        stop_child(stop, running).await;
        wechat.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn the_command_channel_is_offered_only_to_nodes_that_ask_and_steps_are_checked(backend) {
        let p = TestParent::on(backend).await;
        let stock = p.online_node("stock", json!({"callback_url": ""})).await;
        let ours = p.online_node("ours", json!({"features": ["commands"]})).await;
        let path = |n: &TestNode| cascade(&format!("/nodes/{}/logins", n.id));

        // A stock WeRSS node: no `commands` in its answer, and no login can be asked of it.
        let beat = p.post(&cascade("/heartbeat"), &stock.auth(), json!({})).await;
        assert!(beat.ok().get("commands").is_none(), "{:?}", beat.body);
        let refused = p.post(&path(&stock), &p.admin(), json!({"kind": "mp"})).await;
        assert_eq!(refused.status, 409);
        refused.err(409);
        assert!(refused.body["message"].as_str().is_some_and(|m| m.contains("cascade child login")), "{}", refused.text);
        assert_eq!(p.post(&path(&ours), &p.admin(), json!({"kind": "qq"})).await.status, 400);
        assert_eq!(p.post(&cascade("/nodes/nope/logins"), &p.admin(), json!({"kind": "mp"})).await.status, 404);
        assert_eq!(p.post(&path(&ours), &ours.auth(), json!({"kind": "mp"})).await.status, 403, "admin only");

        // A node holding a long-poll for no kind (it has no usable login) hears of the
        // request at once: the claim answers early with `commands_pending`.
        let held = {
            let (client, url) = (p.client.clone(), p.url(&cascade("/claim-task?kinds=&wait=30")));
            let auth = format!("AK-SK {}:{}", ours.key, ours.secret);
            tokio::spawn(async move {
                let sent = client.post(url).header("Authorization", auth).send().await.expect("sent");
                TestParent::reply(sent).await
            })
        };
        tokio::time::timeout(HANG, async {
            while p.state.notifier.waiting_nodes() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the claim is held");
        let asked = p.post(&path(&ours), &p.admin(), json!({"kind": "mp"})).await;
        assert_eq!(asked.status, 202);
        let woken = held.await.expect("claim joined");
        assert_eq!(woken.body["commands_pending"], true, "{}", woken.text);
        assert!(woken.body["data"].is_null());
        let id = asked.ok()["id"].as_str().expect("id").to_string();
        let beat = p.post(&cascade("/heartbeat"), &ours.auth(), json!({"features": ["commands"]})).await;
        assert_eq!(beat.ok()["commands"], json!([{"id": id, "type": "login", "kind": "mp", "origin": "admin"}]));

        let step = |body: Value| {
            let (p, ours, id) = (&p, &ours, id.clone());
            async move { p.post(&cascade(&format!("/login-flows/{id}/progress")), &ours.auth(), body).await }
        };
        assert_eq!(step(json!({"state": "confirmed-ish"})).await.status, 400);
        assert_eq!(step(json!({"state": "requested"})).await.status, 400);
        assert_eq!(step(json!({"state": "pending_scan"})).await.status, 400, "a QR step needs its text");
        assert_eq!(step(json!({"state": "pending_scan", "qr_text": "a\u{7}b"})).await.status, 400);
        assert_eq!(step(json!({"state": "pending_scan", "qr_text": "x".repeat(5000)})).await.status, 400);
        assert_eq!(step(json!({"state": "scanned", "qr_expires_at": "soon"})).await.status, 400);
        let ok = step(json!({"state": "pending_scan", "qr_text": "https://example.invalid/qr?id=1", "qr_number": 1})).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.ok()["open"], true);
        // Reported once: no longer a command.
        let beat = p.post(&cascade("/heartbeat"), &ours.auth(), json!({"features": ["commands"]})).await;
        assert_eq!(beat.ok()["commands"], json!([]));

        // The admin cancels: the node's next step learns it, the QR is gone.
        let cancelled = p.delete(&cascade(&format!("/login-flows/{id}")), &p.admin()).await;
        assert_eq!(cancelled.ok()["state"], "cancelled");
        assert!(cancelled.ok()["qr"].is_null());
        let late = step(json!({"state": "scanned"})).await;
        assert_eq!(late.status, 200);
        assert_eq!(late.ok()["open"], false);
        assert_eq!(late.ok()["state"], "cancelled");
        assert_eq!(p.get(&cascade("/login-flows/nope"), &p.admin()).await.status, 404);

        // A node may start a flow itself (auto_login); the list shows both.
        let own = p.post(&cascade("/login-flows"), &ours.auth(), json!({"kind": "weread"})).await;
        assert_eq!(own.status, 200);
        let listed = p.get(&cascade(&format!("/login-flows?node_id={}", ours.id)), &p.admin()).await;
        let flows = listed.ok().as_array().cloned().unwrap_or_default();
        assert_eq!(flows.len(), 2);
        assert!(flows.iter().any(|f| f["origin"] == "auto" && f["kind"] == "weread" && f["state"] == "requested"));
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_weread_login_starts_one_automatic_qr_login_shown_at_the_parent(backend) {
        let (p, mut alerts) = crate::alerts::parent_with_receiver(backend).await;
        let weread = FakeWeread::start().await.expect("fake weread");
        // A login whose refresh token died: the keeper's first renewal marks it expired.
        let dead = crate::weread::logged_in(&weread).await;
        weread.expire_rt(&dead.vid);
        let node = p.add_node("auto").await;
        let config = child_config(&p, &node, weread.base_url(), "http://127.0.0.1:9");
        let store = LoginStore::open(std::path::Path::new(&config.cascade.data_dir)).expect("store");
        let secrets = LoginSecrets { token: None, cookies: dead.cookies.pairs().to_vec() };
        let mut login = Login::new("weread-old", LoginKind::Weread, "old", secrets);
        login.expires_at = Some(chrono::Utc::now() + chrono::TimeDelta::days(20));
        store.upsert(login).expect("saved");
        let issued_before = weread.uids_issued();
        let (stop, running) = start_child(&p, &node, config).await;

        let flows = p
            .poll_until(&format!("/login-flows?node_id={}", node.id), "an automatic flow waiting for a scan", |l| {
                l.as_array().is_some_and(|l| l.iter().any(|f| f["origin"] == "auto" && f["state"] == "pending_scan"))
            })
            .await;
        assert_eq!(flows.as_array().map(Vec::len), Some(1));
        let id = flows[0]["id"].as_str().expect("id").to_string();
        // Later heartbeats start no second flow.
        for _ in 0..2 {
            // The parent's clock is the test's: move it, so the next heartbeat is seen.
            p.clock.advance(chrono::TimeDelta::seconds(1));
            let before = p.get(&cascade(&format!("/nodes/{}", node.id)), &p.admin()).await.ok()["last_heartbeat_at"].clone();
            p.poll_until(&format!("/nodes/{}", node.id), "another heartbeat", |n| n["last_heartbeat_at"] != before).await;
        }
        let again = p.get(&cascade(&format!("/login-flows?node_id={}", node.id)), &p.admin()).await;
        assert_eq!(again.ok().as_array().map(Vec::len), Some(1), "one flow per expiry");
        assert_eq!(weread.uids_issued(), issued_before + 1, "one QR code fetched");

        // The operator is told twice, once each: the login expired, a QR waits for a scan.
        let mut events = Vec::new();
        for _ in 0..2 {
            let (_, body) = crate::webhooks::next(&mut alerts).await;
            let uid = weread.current_uid().expect("uid");
            assert!(!body.to_string().contains(&uid), "a WeRead QR never leaves the parent: {body}");
            events.push(body["event"].as_str().unwrap_or_default().to_string());
        }
        events.sort();
        assert_eq!(events, ["login_expired", "login_scan_needed"]);
        crate::alerts::assert_nothing_more(&p, &mut alerts).await;

        assert!(weread.scan());
        assert!(weread.confirm().is_none(), "no code asked");
        let done = flow_until(&p, &id, "the automatic login confirmed", |f| f["state"] == "confirmed").await;
        let login_id = done["login_id"].as_str().expect("login id").to_string();
        p.poll_until("/logins", "the new login valid beside the expired one", |l| {
            l.as_array().is_some_and(|l| {
                l.iter().any(|x| x["login_id"] == login_id.as_str() && x["state"] == "valid")
                    && l.iter().any(|x| x["login_id"] == "weread-old" && x["state"] == "expired")
            })
        })
        .await;
        stop_child(stop, running).await;
        weread.stop();
        p.shutdown().await;
    }
}
