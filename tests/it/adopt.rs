//! Adopting a stopped WeRSS database (PROTOCOL §12), on both backends: WeRSS's own tables and
//! column types (as SQLAlchemy creates them), WeRSS's rows; the parent starts on it, adds its
//! columns, keeps every row and serves them. Starting twice changes nothing.

use crate::helpers::db::{Backend, TestDb, on_both};
use crate::helpers::{ADMIN, PASSWORD, TestParent, cascade, test_config};
use serde_json::json;
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
