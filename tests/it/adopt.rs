//! Adopting a stopped WeRSS database (PROTOCOL §12), on both backends: WeRSS's own tables and
//! column types (as SQLAlchemy creates them), WeRSS's rows; the parent starts on it, adds its
//! columns, keeps every row and serves them. Starting twice changes nothing.

use crate::helpers::db::{Backend, TestDb, on_both};
use crate::helpers::{ADMIN, PASSWORD, TestParent, cascade, test_config};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

/// WeRSS 1.4.9's tables as SQLAlchemy creates them, `{ts}`/`{bool}` per backend.
const WERSS_DDL: &str = "
CREATE TABLE we_users (id VARCHAR(255) PRIMARY KEY, username VARCHAR(50) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL, is_active {bool}, nickname VARCHAR(50),
    created_at {ts}, updated_at {ts});
CREATE TABLE we_cascade_nodes (id VARCHAR(255) PRIMARY KEY, node_type INTEGER NOT NULL,
    name VARCHAR(255) NOT NULL, description TEXT, api_url VARCHAR(500), callback_url VARCHAR(500),
    api_key VARCHAR(255), api_secret_hash VARCHAR(255), parent_id VARCHAR(255), status INTEGER,
    sync_config TEXT, last_sync_at {ts}, last_heartbeat_at {ts}, is_active {bool},
    created_at {ts}, updated_at {ts});
CREATE TABLE we_cascade_task_allocations (id VARCHAR(255) PRIMARY KEY, task_id VARCHAR(255) NOT NULL,
    task_name VARCHAR(255), cron_exp VARCHAR(255), node_id VARCHAR(255), feed_ids TEXT,
    status VARCHAR(20), result_summary TEXT, error_message TEXT, dispatched_at {ts},
    claimed_at {ts}, started_at {ts}, completed_at {ts}, schedule_run_id VARCHAR(255),
    article_count INTEGER, new_article_count INTEGER, created_at {ts}, updated_at {ts});
CREATE TABLE we_feeds (id VARCHAR(255) PRIMARY KEY, mp_name VARCHAR(255), mp_cover VARCHAR(255),
    mp_intro VARCHAR(255), status INTEGER, sync_time INTEGER, update_time INTEGER,
    created_at {ts}, updated_at {ts}, faker_id VARCHAR(255));
CREATE TABLE we_message_tasks (id VARCHAR(255) PRIMARY KEY, message_type INTEGER, name VARCHAR(100),
    message_template TEXT, web_hook_url VARCHAR(500), headers TEXT, cookies TEXT, mps_id TEXT,
    cron_exp VARCHAR(100), status INTEGER, created_at {ts}, updated_at {ts});
INSERT INTO we_cascade_nodes (id, node_type, name, description, status, sync_config, is_active,
    created_at, updated_at)
  VALUES ('werss-node', 1, 'old child', 'from WeRSS', 0, '{\"max_capacity\": 3}', {true},
    '2025-01-02 03:04:05', '2025-01-02 03:04:05');
INSERT INTO we_feeds (id, mp_name, status, sync_time, update_time, created_at, updated_at, faker_id)
  VALUES ('MP_WXS_3892772220', 'Old feed', 1, 1735787045, 1735787045,
    '2025-01-02 03:04:05', '2025-01-02 03:04:05', 'Mzg5Mjc3MjIyMA==');
INSERT INTO we_message_tasks (id, message_type, name, message_template, web_hook_url, mps_id,
    cron_exp, status, created_at, updated_at)
  VALUES ('werss-task', 0, 'morning', '{{ article.title }}', '',
    '[{\"id\": \"MP_WXS_3892772220\", \"mp_name\": \"Old feed\"}]', '0 3 * * *', 1,
    '2025-01-02 03:04:05', '2025-01-02 03:04:05');
";

/// Creates WeRSS's tables and rows (and its admin, whose bcrypt hash WeRSS wrote) in `db`.
async fn seed_werss(backend: &Backend, db: &TestDb, dir: &tempfile::TempDir) {
    let hash = bcrypt::hash(PASSWORD, 4).expect("hash");
    let (ts, boolean, truth) = match backend {
        Backend::Sqlite => ("DATETIME", "BOOLEAN", "1"),
        Backend::Postgres(_) => ("TIMESTAMP WITHOUT TIME ZONE", "BOOLEAN", "TRUE"),
    };
    let ddl = WERSS_DDL
        .replace("{ts}", ts)
        .replace("{bool}", boolean)
        .replace("{true}", truth);
    let user = format!(
        "INSERT INTO we_users (id, username, password_hash, is_active) VALUES ('u1', '{ADMIN}', '{hash}', {truth})"
    );
    match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("cascade.db"))
                .create_if_missing(true);
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite");
            c.execute(sqlx::AssertSqlSafe(ddl))
                .await
                .expect("WeRSS tables");
            c.execute(sqlx::AssertSqlSafe(user))
                .await
                .expect("WeRSS admin");
        }
        Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.expect("pg");
            c.execute(sqlx::AssertSqlSafe(ddl))
                .await
                .expect("WeRSS tables");
            c.execute(sqlx::AssertSqlSafe(user))
                .await
                .expect("WeRSS admin");
        }
    }
}

on_both! {
    #[tokio::test]
    async fn a_stopped_werss_database_is_adopted_with_its_rows(backend) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(&backend, &dir).await;
        seed_werss(&backend, &db, &dir).await;
        let mut config = test_config(&dir);
        config.db = db.url.clone();
        // The second start migrates an already adopted database: nothing changes.
        werss_cascade::store::Store::connect(&db.url).await.expect("first migration");
        let p = TestParent::spawn_with(config, dir).await; // logs in with WeRSS's bcrypt hash

        let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
        let node = &nodes.ok()[0];
        assert_eq!(node["id"], "werss-node");
        assert_eq!(node["description"], "from WeRSS");
        assert_eq!(node["sync_config"]["max_capacity"], 3);
        assert_eq!(node["session_state"], "unknown", "our column added with its default");

        let feed = p.get(&cascade("/feeds/MP_WXS_3892772220"), &p.admin()).await;
        assert_eq!(feed.ok()["mp_name"], "Old feed");
        assert_eq!(feed.ok()["faker_id"], "Mzg5Mjc3MjIyMA==");
        assert_eq!(feed.ok()["source"], "wechat");

        // WeRSS's node gets credentials and works the WeRSS task.
        let cred = p.post(&cascade("/nodes/werss-node/credentials"), &p.admin(), json!({})).await;
        let auth = crate::helpers::Auth::AkSk(
            cred.ok()["api_key"].as_str().expect("key").into(),
            cred.ok()["api_secret"].as_str().expect("secret").into(),
        );
        p.post(&cascade("/heartbeat"), &auth, json!({})).await.ok();
        assert_eq!(p.dispatch("werss-task").await["allocations_created"], 1);
        let claim = p.send(reqwest::Method::POST, &cascade("/claim-task"), &auth, None).await;
        assert_eq!(claim.ok()["feeds"][0]["faker_id"], "Mzg5Mjc3MjIyMA==");
        assert_eq!(claim.ok()["task_name"], "morning");
        p.shutdown().await;
        drop(db);
    }
}

/// WeRSS's history on top of [`WERSS_DDL`]: a second child, WeRSS's own parent record, six
/// more feeds, two more tasks, and allocations in every state as WeRSS leaves them: `pending`
/// rows with and without the `node_id` WeRSS writes at dispatch, held rows without leases,
/// feeds open in several rows (WeRSS re-dispatches open feeds), terminal rows, one
/// several-feed row naming a feed that is gone, one whose `feed_ids` is not JSON. Naive
/// timestamps, JSON in text.
const WERSS_HISTORY: &str = r#"
INSERT INTO we_cascade_nodes (id, node_type, name, status, sync_config, is_active, last_heartbeat_at,
    created_at, updated_at)
  VALUES ('werss-node-b', 1, 'second child', 0, '{"max_capacity": 5}', {true},
    '2025-01-02 03:00:00.000000', '2025-01-02 03:04:05', '2025-01-02 03:04:05');
INSERT INTO we_cascade_nodes (id, node_type, name, status, is_active, created_at, updated_at)
  VALUES ('werss-parent', 0, 'WeRSS itself', 1, {true}, '2025-01-02 03:04:05', '2025-01-02 03:04:05');
UPDATE we_cascade_nodes SET status = 1, last_heartbeat_at = '2025-01-02 03:00:00.000000'
  WHERE id = 'werss-node';
INSERT INTO we_feeds (id, mp_name, status, created_at, updated_at) VALUES
  ('MP_WXS_1001', 'f1', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05'),
  ('MP_WXS_1002', 'f2', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05'),
  ('MP_WXS_1003', 'f3', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05'),
  ('MP_WXS_1004', 'f4', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05'),
  ('MP_WXS_1005', 'f5', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05'),
  ('MP_WXS_1006', 'f6', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05');
INSERT INTO we_message_tasks (id, message_type, name, message_template, web_hook_url, mps_id,
    cron_exp, status, created_at, updated_at) VALUES
  ('task-a', 0, 'a', '', '', '[{"id": "MP_WXS_1001", "mp_name": "f1"}, {"id": "MP_WXS_1002", "mp_name": "f2"}, {"id": "MP_WXS_1003", "mp_name": "f3"}, {"id": "MP_WXS_1004", "mp_name": "f4"}]',
    '', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05'),
  ('task-b', 0, 'b', '', '', '[{"id": "MP_WXS_1005", "mp_name": "f5"}, {"id": "MP_WXS_1006", "mp_name": "f6"}, {"id": "MP_WXS_3892772220", "mp_name": "Old feed"}]',
    '', 1, '2025-01-02 03:04:05', '2025-01-02 03:04:05');
INSERT INTO we_cascade_task_allocations (id, task_id, task_name, node_id, feed_ids, status,
    result_summary, error_message, dispatched_at, claimed_at, started_at, completed_at,
    schedule_run_id, article_count, new_article_count, created_at, updated_at) VALUES
  ('a01-pending-free', 'task-a', 'a', NULL, '["MP_WXS_1001"]', 'pending', NULL, NULL,
    '2025-01-02 03:00:00.000001', NULL, NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:00.000001', '2025-01-02 03:00:00.000001'),
  ('a02-pending-mine', 'task-a', 'a', 'werss-node', '["MP_WXS_1002"]', 'pending', NULL, NULL,
    '2025-01-02 03:00:01.000000', NULL, NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:01', '2025-01-02 03:00:01'),
  ('a03-pending-ghost', 'task-a', 'a', 'deleted-node', '["MP_WXS_1003"]', 'pending', NULL, NULL,
    '2025-01-02 03:00:02.000000', NULL, NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:02', '2025-01-02 03:00:02'),
  ('a04-claimed', 'task-a', 'a', 'werss-node', '["MP_WXS_1004"]', 'claimed', NULL, NULL,
    '2025-01-02 03:00:03.000000', '2025-01-02 03:01:00.000000', NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:03', '2025-01-02 03:01:00'),
  ('a05-executing', 'task-b', 'b', 'werss-node-b', '["MP_WXS_1005"]', 'executing', NULL, NULL,
    '2025-01-02 03:00:04.000000', '2025-01-02 03:01:00.000000', '2025-01-02 03:01:01.000000', NULL, 'run-2', 0, 0, '2025-01-02 03:00:04', '2025-01-02 03:01:01'),
  ('a06-dup-pending', 'task-a', 'a', NULL, '["MP_WXS_1001"]', 'pending', NULL, NULL,
    '2025-01-03 03:00:00.000000', NULL, NULL, NULL, 'run-3', 0, 0, '2025-01-03 03:00:00', '2025-01-03 03:00:00'),
  ('a07-dup-of-held', 'task-a', 'a', 'werss-node-b', '["MP_WXS_1004"]', 'pending', NULL, NULL,
    '2025-01-01 03:00:00.000000', NULL, NULL, NULL, 'run-1', 0, 0, '2025-01-01 03:00:00', '2025-01-01 03:00:00'),
  ('a08-mixed', 'task-b', 'b', 'werss-node-b', '["MP_WXS_1005", "MP_WXS_1006"]', 'pending', NULL, NULL,
    '2025-01-02 03:00:05.000000', NULL, NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:05', '2025-01-02 03:00:05'),
  ('a09-completed', 'task-a', 'a', 'werss-node', '["MP_WXS_1001"]', 'completed',
    '{"results": [{"feed_id": "MP_WXS_1001", "success": true, "article_count": 3}]}', NULL,
    '2024-12-30 03:00:00.000000', '2024-12-30 03:00:01.000000', '2024-12-30 03:00:02.000000', '2024-12-30 03:00:09.000000', 'run-0', 3, 3, '2024-12-30 03:00:00', '2024-12-30 03:00:09'),
  ('a10-failed', 'task-a', 'a', 'werss-node-b', '["MP_WXS_1002"]', 'failed', NULL, 'boom',
    '2024-12-30 03:00:00.000000', '2024-12-30 03:00:01.000000', NULL, '2024-12-30 03:00:09.000000', 'run-0', 0, 0, '2024-12-30 03:00:00', '2024-12-30 03:00:09'),
  ('a11-timeout', 'task-a', 'a', 'werss-node', '["MP_WXS_1003"]', 'timeout', NULL, 'timed out',
    '2024-12-30 03:00:00.000000', '2024-12-30 03:00:01.000000', NULL, NULL, 'run-0', 0, 0, '2024-12-30 03:00:00', '2024-12-30 03:40:00'),
  ('a12-claimed-two', 'task-b', 'b', 'werss-node-b', '["MP_WXS_3892772220", "MP_WXS_1007"]', 'claimed', NULL, NULL,
    '2025-01-02 03:00:06.000000', '2025-01-02 03:01:00.000000', NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:06', '2025-01-02 03:01:00'),
  ('a13-unreadable', 'task-a', 'a', NULL, 'MP_WXS_1001,MP_WXS_1002', 'pending', NULL, NULL,
    '2025-01-02 03:00:07.000000', NULL, NULL, NULL, 'run-2', 0, 0, '2025-01-02 03:00:07', '2025-01-02 03:00:07');
"#;

/// Runs `sql` (with `{true}` per backend) on the test database.
async fn run_sql(backend: &Backend, db: &TestDb, dir: &tempfile::TempDir, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("cascade.db"));
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("sqlite");
            c.execute(sqlx::AssertSqlSafe(sql.replace("{true}", "1")))
                .await
                .expect("WeRSS rows");
        }
        Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.expect("pg");
            c.execute(sqlx::AssertSqlSafe(sql.replace("{true}", "TRUE")))
                .await
                .expect("WeRSS rows");
        }
    }
}

on_both! {
    #[tokio::test]
    async fn werss_allocations_in_every_state_resume_under_our_rules(backend) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(&backend, &dir).await;
        seed_werss(&backend, &db, &dir).await;
        run_sql(&backend, &db, &dir, WERSS_HISTORY).await;
        let mut config = test_config(&dir);
        config.db = db.url.clone();
        werss_cascade::store::Store::connect(&db.url).await.expect("adopted");
        // The parent's clock starts after adoption, as a real one would.
        let p = TestParent::spawn_with(config, dir).await;
        let alloc = |id: &'static str| p.allocation(id);

        // Pending rows: claimable now (never later than their WeRSS dispatch), WeRSS's
        // node_id turned into the assignment when the node exists, no holder.
        let free = alloc("a01-pending-free").await;
        assert_eq!(free["available_at"], "2025-01-02T03:00:00.000001");
        assert_eq!(free["node_id"], Value::Null);
        let mine = alloc("a02-pending-mine").await;
        assert_eq!(mine["node_id"], Value::Null);
        assert_eq!(mine["assigned_node_id"], "werss-node");
        let ghost = alloc("a03-pending-ghost").await;
        assert_eq!((&ghost["node_id"], &ghost["assigned_node_id"]), (&Value::Null, &Value::Null));
        // Held rows: a lease that ended at adoption, one attempt spent.
        for id in ["a04-claimed", "a05-executing", "a12-claimed-two"] {
            let held = alloc(id).await;
            let lease = werss_cascade::protocol::time::parse(
                held["lease_expires_at"].as_str().expect("a lease"),
            )
            .expect("time");
            assert!(lease < p.clock.now(), "{id}: {held}");
            assert_eq!(held["attempt"], 1, "{id}");
        }
        assert_eq!(alloc("a12-claimed-two").await["feed_count"], 2, "recounted from feed_ids");
        // One open allocation per feed: duplicates closed, a mixed row keeps only its own feed.
        let dup = alloc("a06-dup-pending").await;
        assert_eq!(dup["status"], "failed");
        assert!(dup["error_message"].as_str().unwrap_or_default().contains("a01-pending-free"), "{dup}");
        let dup = alloc("a07-dup-of-held").await;
        assert_eq!(dup["status"], "failed", "a held row keeps its feed over an older pending one");
        assert!(dup["error_message"].as_str().unwrap_or_default().contains("a04-claimed"), "{dup}");
        assert_eq!(alloc("a13-unreadable").await["status"], "failed", "no claim could package it");
        let mixed = alloc("a08-mixed").await;
        assert_eq!(mixed["status"], "pending");
        assert_eq!(mixed["feed_ids"], json!(["MP_WXS_1006"]));
        assert_eq!(mixed["feed_count"], 1);
        assert_eq!(mixed["assigned_node_id"], "werss-node-b");
        // Terminal rows are history: untouched.
        for (id, status) in [("a09-completed", "completed"), ("a10-failed", "failed"), ("a11-timeout", "timeout")] {
            let done = alloc(id).await;
            assert_eq!(done["status"], status);
            assert_eq!(done["lease_expires_at"], Value::Null);
            assert_eq!(done["available_at"], Value::Null);
        }

        // Dispatch finds every adopted open feed taken: nothing doubles.
        for task in ["task-a", "task-b", "werss-task"] {
            assert_eq!(p.dispatch(task).await["allocations_created"], 0, "{task}");
        }

        // WeRSS's node claims its own assigned row first (before the older unassigned one).
        let cred = p.post(&cascade("/nodes/werss-node/credentials"), &p.admin(), json!({})).await;
        let werss_node = crate::helpers::TestNode {
            id: "werss-node".into(),
            key: cred.ok()["api_key"].as_str().expect("key").into(),
            secret: cred.ok()["api_secret"].as_str().expect("secret").into(),
        };
        p.post(&cascade("/heartbeat"), &werss_node.auth(), json!({})).await.ok();
        assert_eq!(p.claim_one(&werss_node).await["allocation_id"], "a02-pending-mine");

        // The held rows' leases have ended: the reaper returns them (its heartbeat did not
        // renew a lease that had already ended).
        let reaped = p.reap().await;
        assert_eq!(reaped.expired, 3);
        for id in ["a04-claimed", "a05-executing", "a12-claimed-two"] {
            let back = alloc(id).await;
            assert_eq!(back["status"], "pending", "{id}");
            assert_eq!(back["node_id"], Value::Null, "{id}");
            assert_eq!(back["reason"], "lease_expired", "{id}");
        }

        // Anyone takes the unassigned rows and the offline node's assignment, the mixed row
        // with its one remaining feed.
        let other = p.online_node("newcomer", json!({})).await;
        let got = p.claim(&other, "limit=10").await;
        let mut ids: Vec<&str> = got.ok().as_array().expect("list").iter()
            .map(|pkg| pkg["allocation_id"].as_str().expect("id")).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a01-pending-free", "a03-pending-ghost", "a08-mixed"]);
        let mixed = got.ok().as_array().expect("list").iter()
            .find(|pkg| pkg["allocation_id"] == "a08-mixed").expect("mixed").clone();
        assert_eq!(mixed["feeds"].as_array().map(Vec::len), Some(1));
        assert_eq!(mixed["feeds"][0]["id"], "MP_WXS_1006");
        // After their retry delay the reaped rows are claimable again.
        p.clock.advance(chrono::TimeDelta::minutes(2));
        let got = p.claim(&other, "limit=10").await;
        let mut ids: Vec<&str> = got.ok().as_array().expect("list").iter()
            .map(|pkg| pkg["allocation_id"].as_str().expect("id")).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a04-claimed", "a05-executing", "a12-claimed-two"]);

        // Invariant 5 over the whole table, and a new dispatch still adds nothing.
        let all = p.get(&cascade("/allocations?limit=200"), &p.admin()).await;
        let mut open_feeds = Vec::new();
        for a in all.ok()["list"].as_array().expect("list") {
            if matches!(a["status"].as_str(), Some("pending" | "claimed" | "executing")) {
                open_feeds.extend(a["feed_ids"].as_array().expect("feeds").iter().cloned());
            }
        }
        let distinct: std::collections::HashSet<String> =
            open_feeds.iter().map(ToString::to_string).collect();
        assert_eq!(distinct.len(), open_feeds.len(), "{open_feeds:?}");
        assert_eq!(p.dispatch("task-a").await["allocations_created"], 0);
        p.shutdown().await;
        drop(db);
    }
}
