//! Logins (issue 12 §1, §5): a child rotates its logins, skips a cooling one, reports them in
//! heartbeats; the parent lists them, counts them in metrics and placement, never their secrets.

use crate::helpers::db::{Backend, on_both};
use crate::helpers::{Auth, TestNode, TestParent, cascade, test_config};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use werss_cascade::child::Child;
use werss_cascade::logins::LoginStore;
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::testkit::wechat::{FakeAccount, FakeSession, FakeWechat};

const NEWEST: i64 = 1_795_358_591;

fn session(tag: &str, limit: Option<(usize, Duration)>) -> FakeSession {
    FakeSession {
        token: format!("TOKEN-SECRET-{tag}-7f3a9c"),
        slave_sid: format!("SID-SECRET-{tag}-b81e44"),
        limit,
    }
}

/// A child of `node` with no login in its YAML; its store holds `logins`.
fn child_with_logins(
    p: &TestParent,
    node: &TestNode,
    fake: &FakeWechat,
    logins: &[(&str, &FakeSession)],
) -> werss_cascade::config::Config {
    let mut c = test_config(&p.dir);
    let data = p.dir.path().join(format!("child-{}", node.id));
    c.cascade.data_dir = data.display().to_string();
    let store = LoginStore::open(&data).expect("store");
    for (id, s) in logins {
        store.upsert(s.login(id)).expect("saved");
    }
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = Secret::new(&node.secret);
    c.cascade.wechat_base_url = fake.base_url().to_string();
    c.cascade.wechat_gap_ms = 0;
    c.cascade.wechat_gap_jitter_ms = 0;
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 1;
    c.cascade.capacity = 1;
    c.cascade.shutdown_grace = 5;
    c
}

/// Every value of every row of the parent's tables that could hold a login, as text.
async fn database_text(p: &TestParent, backend: &Backend) -> String {
    match backend {
        Backend::Sqlite => {
            let mut text = String::new();
            for entry in std::fs::read_dir(p.dir.path()).expect("dir") {
                let path = entry.expect("entry").path();
                let name = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                if name.starts_with("cascade.db") {
                    let bytes = std::fs::read(&path).expect("db file");
                    text.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            assert!(!text.is_empty(), "the database file was read");
            text
        }
        Backend::Postgres(_) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&p.state.config.db)
                .await
                .expect("connect");
            let mut text = String::new();
            for table in [
                "cascade_node_logins",
                "we_cascade_nodes",
                "we_cascade_task_allocations",
                "we_cascade_sync_logs",
                "we_feeds",
                "cascade_settings",
            ] {
                let sql = format!("SELECT row_to_json(t)::text FROM {table} t");
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut conn)
                    .await
                    .expect("rows");
                text.push_str(&rows.join("\n"));
            }
            assert!(text.contains("cascade_node_logins") || text.contains("login_id"));
            text
        }
    }
}

/// Rows of `cascade_node_logins` of one node, read from the database itself.
async fn login_rows(p: &TestParent, backend: &Backend, node_id: &str) -> i64 {
    use sqlx::Connection;
    const SQL: &str = "SELECT COUNT(*) FROM cascade_node_logins WHERE node_id = $1";
    match backend {
        Backend::Sqlite => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(p.dir.path().join("cascade.db"));
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("open");
            sqlx::query_scalar(SQL)
                .bind(node_id)
                .fetch_one(&mut c)
                .await
                .expect("count")
        }
        Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(&p.state.config.db)
                .await
                .expect("connect");
            sqlx::query_scalar(SQL)
                .bind(node_id)
                .fetch_one(&mut c)
                .await
                .expect("count")
        }
    }
}

fn assert_no_secret(what: &str, text: &str, sessions: &[&FakeSession]) {
    for s in sessions {
        for secret in [&s.token, &s.slave_sid] {
            assert!(!text.contains(secret.as_str()), "{what} carries a secret");
        }
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_logins_on_one_node_rotate_and_the_parent_lists_them_without_secrets(backend) {
        let p = TestParent::on(backend.clone()).await;
        let accounts: Vec<FakeAccount> = (0..4)
            .map(|i| FakeAccount::generated(7_100_000_000 + i, 1, NEWEST))
            .collect();
        let fake = FakeWechat::start(accounts.clone()).await.expect("fake");
        let (a, b) = (session("A", None), session("B", None));
        fake.add_session(a.clone());
        fake.add_session(b.clone());
        let node = p.add_node("two-logins").await;
        let task = p.wechat_task(&accounts).await;
        let config = child_with_logins(&p, &node, &fake, &[("login-a", &a), ("login-b", &b)]);
        let store_file = std::path::Path::new(&config.cascade.data_dir).join("logins.json");
        let stop = CancellationToken::new();
        let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "four completions", |c| c["completed_today"] == 4).await;
        let (used_a, used_b) = (fake.log_for(&a.token), fake.log_for(&b.token));
        assert!(!used_a.is_empty() && !used_b.is_empty(), "both logins served: {} / {}", used_a.len(), used_b.len());
        assert_eq!(used_a.len() + used_b.len(), 4);
        assert!(used_a.iter().chain(&used_b).all(|e| e.outcome == "ok"));

        let listed = p.poll_until("/logins", "both logins with a success", |l| {
            l.as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|x| x["last_ok_at"].is_string()))
        })
        .await;
        for (l, id) in listed.as_array().expect("list").iter().zip(["login-a", "login-b"]) {
            assert_eq!(l["node_id"], node.id.as_str());
            assert_eq!(l["node_name"], "two-logins");
            assert_eq!(l["login_id"], id);
            assert_eq!(l["kind"], "mp");
            assert_eq!(l["state"], "valid");
            assert_eq!(l["name"], format!("fake {id}"));
            let keys: Vec<&String> = l.as_object().expect("object").keys().collect();
            assert_eq!(keys, ["node_id", "node_name", "login_id", "kind", "name", "state", "expires_at", "cooldown_until", "last_ok_at", "last_error"]);
        }
        let one = p.get(&cascade(&format!("/logins?node_id={}", node.id)), &p.admin()).await;
        assert_eq!(one.ok().as_array().map(Vec::len), Some(2));
        let none = p.get(&cascade("/logins?node_id=nobody"), &p.admin()).await;
        assert_eq!(none.ok(), &json!([]));
        // Admins only.
        assert_eq!(p.get(&cascade("/logins"), &node.auth()).await.status, 403);

        let metrics = p.get("/metrics", &Auth::None).await.text;
        assert!(metrics.contains(r#"cascade_logins{kind="mp",state="valid"} 2"#), "{metrics}");
        assert!(metrics.contains(r#"cascade_logins{kind="weread",state="expired"} 0"#));

        stop.cancel();
        running.await.expect("joined").expect("child exits");
        // Secrets: in the child's store file (0600) and nowhere at the parent.
        let stored = std::fs::read_to_string(&store_file).expect("store file");
        assert!(stored.contains(&a.slave_sid) && stored.contains(&b.token));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&store_file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for (what, text) in [
            ("GET /logins", p.get(&cascade("/logins"), &p.admin()).await.text),
            ("GET /nodes", p.get(&cascade("/nodes"), &p.admin()).await.text),
            ("GET /nodes/{id}", p.get(&cascade(&format!("/nodes/{}", node.id)), &p.admin()).await.text),
            ("GET /metrics", metrics),
            ("the database", database_text(&p, &backend).await),
        ] {
            assert_no_secret(what, &text, &[&a, &b]);
        }
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cooling_login_is_skipped_while_the_other_keeps_crawling(backend) {
        let p = TestParent::on(backend.clone()).await;
        let accounts: Vec<FakeAccount> = (0..5)
            .map(|i| FakeAccount::generated(7_200_000_000 + i, 1, NEWEST))
            .collect();
        let fake = FakeWechat::start(accounts.clone()).await.expect("fake");
        // A answers 200013 from its second request on, for an hour.
        let limited = session("LIM", Some((1, Duration::from_secs(3600))));
        let healthy = session("OK", None);
        fake.add_session(limited.clone());
        fake.add_session(healthy.clone());
        let node = p.add_node("one-cools").await;
        let task = p.wechat_task(&accounts).await;
        let config = child_with_logins(&p, &node, &fake, &[("lim", &limited), ("ok", &healthy)]);
        let stop = CancellationToken::new();
        let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
        p.dispatch(&task).await;
        let c = p.poll_until("/pending-allocations", "five completions", |c| c["completed_today"] == 5).await;
        assert_eq!(c["failed_today"].as_i64().unwrap_or(0), 0, "{c}");
        let lim_log = fake.log_for(&limited.token);
        let limited_at = lim_log.iter().position(|e| e.outcome == "200013").expect("A was rate limited");
        assert_eq!(lim_log.len(), limited_at + 1, "no request on A after its 200013: {lim_log:?}");
        let ok_log = fake.log_for(&healthy.token);
        assert!(ok_log.len() >= 3 && ok_log.iter().all(|e| e.outcome == "ok"), "B kept crawling");
        // Every feed got its articles: the rate-limited feed went to B at once.
        let fs = p.get(&cascade("/feed-status?limit=10"), &p.admin()).await;
        assert!(fs.ok()["list"].as_array().expect("list").iter().all(|f| f["article_count"] == 1), "{}", fs.text);
        let listed = p.poll_until("/logins", "A cooling", |l| {
            l.as_array().into_iter().flatten().any(|x| x["login_id"] == "lim" && x["state"] == "cooling")
        })
        .await;
        let lim = listed.as_array().expect("list").iter().find(|x| x["login_id"] == "lim").expect("lim");
        assert!(lim["cooldown_until"].is_string(), "{lim}");
        assert!(lim["last_error"].as_str().is_some_and(|e| e.contains("rate limited")), "{lim}");
        let ok = listed.as_array().expect("list").iter().find(|x| x["login_id"] == "ok").expect("ok");
        assert_eq!(ok["state"], "valid");
        // The node itself never cooled: it kept a usable login.
        let n = p.get(&cascade(&format!("/nodes/{}", node.id)), &p.admin()).await;
        assert!(n.ok()["cooldown_until"].is_null(), "{}", n.text);
        assert_eq!(n.ok()["session_state"], "valid");
        let metrics = p.get("/metrics", &Auth::None).await.text;
        assert!(metrics.contains(r#"cascade_logins{kind="mp",state="cooling"} 1"#), "{metrics}");
        stop.cancel();
        running.await.expect("joined").expect("child exits");
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_config_keys_become_one_mp_login_at_the_parent(backend) {
        let p = TestParent::on(backend.clone()).await;
        let fake = FakeWechat::start(Vec::new()).await.expect("fake");
        let s = session("CFG", None);
        fake.add_session(s.clone());
        let node = p.add_node("yaml-login").await;
        let mut config = child_with_logins(&p, &node, &fake, &[]);
        s.configure(&mut config.cascade, &fake);
        let child = Child::new(config).expect("child");
        let views = child.logins().views();
        assert_eq!(views.len(), 1);
        assert_eq!((views[0].id.as_str(), views[0].kind.as_str()), ("config-mp", "mp"));
        child.check().await.expect("heartbeat");
        let listed = p.get(&cascade("/logins"), &p.admin()).await;
        assert_eq!(listed.ok().as_array().map(Vec::len), Some(1), "{}", listed.text);
        assert_eq!(listed.ok()[0]["login_id"], "config-mp");
        assert_eq!(listed.ok()[0]["state"], "valid");
        assert_no_secret("GET /logins", &listed.text, &[&s]);
        assert_no_secret("the database", &database_text(&p, &backend).await, &[&s]);
        fake.stop();
        p.shutdown().await;
    }
}

async fn beat(p: &TestParent, node: &TestNode, body: Value) -> Value {
    let r = p.post(&cascade("/heartbeat"), &node.auth(), body).await;
    r.ok().clone()
}

on_both! {
    #[tokio::test]
    async fn placement_skips_a_node_whose_logins_are_all_expired(backend) {
        let p = TestParent::on(backend.clone()).await;
        let dead = p.add_node("all-expired").await;
        let alive = p.add_node("one-valid").await;
        let login = |id: &str, state: &str| json!({"id": id, "kind": "mp", "name": id, "state": state,
            "expires_at": "2099-01-01T00:00:00Z", "cooldown_until": null, "last_ok_at": null, "last_error": null});
        // The dead node still says its session is valid: its logins decide.
        let answer = beat(&p, &dead, json!({"wechat_session": "valid", "fetchers": ["wechat"], "capacity": 10,
            "logins": [login("x", "expired"), login("y", "expired"), {"id": "bad", "kind": "icq", "state": "valid"}]})).await;
        assert!(answer["warnings"].to_string().contains("logins[2] ignored"), "{answer}");
        beat(&p, &alive, json!({"wechat_session": "valid", "fetchers": ["wechat"], "capacity": 10,
            "logins": [login("z", "expired"), login("w", "valid")]})).await;
        let accounts: Vec<FakeAccount> = (0..4).map(|i| FakeAccount::generated(7_300_000_000 + i, 1, NEWEST)).collect();
        let task = p.wechat_task(&accounts).await;
        p.dispatch(&task).await;
        let allocs = p.get(&cascade("/allocations?status=pending"), &p.admin()).await;
        let list = allocs.ok()["list"].as_array().expect("list").clone();
        assert_eq!(list.len(), 4, "{}", allocs.text);
        assert!(list.iter().all(|a| a["assigned_node_id"] == alive.id.as_str()), "{}", allocs.text);
        let listed = p.get(&cascade("/logins"), &p.admin()).await;
        assert_eq!(listed.ok().as_array().map(Vec::len), Some(4), "the bad entry is not kept");

        // A heartbeat carrying `logins` replaces the node's set; one without leaves it.
        beat(&p, &dead, json!({"logins": [login("x", "valid")]})).await;
        beat(&p, &dead, json!({"capacity": 10})).await;
        let mine = p.get(&cascade(&format!("/logins?node_id={}", dead.id)), &p.admin()).await;
        let mine = mine.ok().as_array().expect("list").clone();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0]["login_id"].as_str(), mine[0]["state"].as_str()), (Some("x"), Some("valid")));
        assert!(mine[0]["expires_at"].as_str().is_some_and(|t| t.starts_with("2099-01-01T00:00:00")));

        // A node that never reports logins keeps today's rule (its session alone).
        let stock = p.add_node("stock").await;
        beat(&p, &stock, json!({"wechat_session": "valid", "fetchers": ["wechat"], "capacity": 10})).await;
        beat(&p, &dead, json!({"logins": []})).await;
        beat(&p, &alive, json!({"logins": []})).await;
        let more: Vec<FakeAccount> = (10..12).map(|i| FakeAccount::generated(7_300_000_000 + i, 1, NEWEST)).collect();
        let task = p.wechat_task(&more).await;
        p.dispatch(&task).await;
        let allocs = p.get(&cascade(&format!("/allocations?status=pending&task_id={task}")), &p.admin()).await;
        let list = allocs.ok()["list"].as_array().expect("list").clone();
        assert!(!list.is_empty());
        assert!(list.iter().all(|a| a["assigned_node_id"] == stock.id.as_str()), "{}", allocs.text);
        // A deleted node's logins go with it.
        beat(&p, &alive, json!({"logins": [login("w", "valid")]})).await;
        p.delete(&cascade(&format!("/nodes/{}", alive.id)), &p.admin()).await.ok();
        assert_eq!(p.get(&cascade("/logins"), &p.admin()).await.ok(), &json!([]));
        assert_eq!(login_rows(&p, &backend, &alive.id).await, 0, "its rows are deleted");
        assert_eq!(login_rows(&p, &backend, &dead.id).await, 0);
        p.shutdown().await;
    }
}

/// Runs `cascade ARGS` in `dir`, asserts success and returns stdout.
async fn run(dir: &std::path::Path, args: &[&str]) -> String {
    let out = crate::helpers::process::cascade_cmd(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("CASCADE_PASSWORD", "operator-pass")
        .output()
        .await
        .expect("binary runs");
    assert!(
        out.status.success(),
        "cascade {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_logins_prints_what_children_report_locally_and_over_url_and_no_log_has_a_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let mut cmd = crate::helpers::process::cascade_cmd(d);
    cmd.args(["parent", "--port", "0"])
        .env("CASCADE_ADMIN_PASSWORD", "operator-pass")
        .env("RUST_LOG", "debug");
    let parent = crate::helpers::process::ParentProcess::start(cmd).await;
    let url = parent.base.clone();
    let elsewhere = tempfile::tempdir().expect("another dir");
    let e = elsewhere.path();
    let created: Value =
        serde_json::from_str(&run(e, &["--url", &url, "node", "add", "scanner", "--json"]).await)
            .expect("json");
    let node_id = created["node_id"].as_str().expect("id").to_string();

    let fake = FakeWechat::start(Vec::new()).await.expect("fake");
    let (a, b) = (session("CLI-A", None), session("CLI-B", None));
    let mut config = test_config(&elsewhere);
    let data = e.join("child-data");
    config.cascade.data_dir = data.display().to_string();
    let store = LoginStore::open(&data).expect("store");
    store.upsert(b.login("second")).expect("saved");
    a.configure(&mut config.cascade, &fake);
    config.cascade.parent_api_url = url.clone();
    config.cascade.api_key = created["api_key"].as_str().expect("key").into();
    config.cascade.api_secret = Secret::new(created["api_secret"].as_str().expect("secret"));
    Child::new(config)
        .expect("child")
        .check()
        .await
        .expect("heartbeat");

    let table = run(e, &["--url", &url, "node", "logins"]).await;
    let header = table.lines().next().expect("header");
    assert!(
        header.starts_with("NODE") && header.contains("STATE") && header.contains("EXPIRES"),
        "{table}"
    );
    assert!(
        table.contains("config-mp") && table.contains("second") && table.contains("scanner"),
        "{table}"
    );
    let listed: Value =
        serde_json::from_str(&run(e, &["--url", &url, "node", "logins", &node_id, "--json"]).await)
            .expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[0]["node_id"], node_id.as_str());
    let none: Value =
        serde_json::from_str(&run(e, &["--url", &url, "node", "logins", "nobody", "--json"]).await)
            .expect("json");
    assert_eq!(none, json!([]));
    // Local mode, on the parent's own database beside it.
    let local = run(d, &["node", "logins"]).await;
    assert!(
        local.contains("config-mp") && local.contains("second"),
        "{local}"
    );

    let (ok, log) = parent.terminate_with_log().await;
    assert!(ok);
    let log = log.join("\n");
    for (what, text) in [
        ("the table", &table),
        ("the local table", &local),
        ("the parent's log", &log),
    ] {
        assert_no_secret(what, text, &[&a, &b]);
    }
    let db = std::fs::read(d.join("data/cascade.db")).expect("db file");
    assert_no_secret(
        "the database file",
        &String::from_utf8_lossy(&db),
        &[&a, &b],
    );
    fake.stop();
}
