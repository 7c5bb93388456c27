//! The envelope and status table for bad input (PROTOCOL §2), request ids, health probes.

use crate::helpers::db::on_both;
use crate::helpers::{TestParent, cascade};
use reqwest::Method;
use serde_json::json;

on_both! {
    #[tokio::test]
    async fn unknown_routes_and_wrong_methods_answer_in_the_envelope(backend) {
        let p = TestParent::on(backend.clone()).await;
        let r = p.get("/api/v1/wx/cascade/nope", &p.admin()).await;
        assert_eq!(r.err(404), "not_found");
        assert_eq!(r.body["message"], "no such route");
        p.get("/api/v1/cascade/nodes/", &p.admin()).await.err(404);
        p.get("/elsewhere", &p.admin()).await.err(404);
        let r = p
            .send(Method::DELETE, &cascade("/heartbeat"), &p.admin(), None)
            .await;
        assert_eq!(r.err(405), "method_not_allowed");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn malformed_json_empty_and_oversized_bodies(backend) {
        let p = TestParent::on(backend.clone()).await;
        let send = |body: Vec<u8>| {
            p.client
                .post(p.url(&cascade("/nodes")))
                .header("Authorization", format!("Bearer {}", p.token))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
        };
        let r = TestParent::reply(send(b"{\"node_type\": 1,".to_vec()).await.expect("sent")).await;
        assert_eq!(r.err(400), "bad_request");
        assert!(
            r.body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("invalid JSON body"))
        );
        TestParent::reply(send(Vec::new()).await.expect("sent"))
            .await
            .err(400);
        TestParent::reply(send(b"[1,2]".to_vec()).await.expect("sent"))
            .await
            .err(400);
        TestParent::reply(
            send(b"{\"node_type\":1,\"name\":\"a\"} trailing".to_vec())
                .await
                .expect("sent"),
        )
        .await
        .err(400);
        let mut big = b"{\"node_type\":1,\"name\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 10));
        big.extend(b"\"}");
        let r = TestParent::reply(send(big).await.expect("sent")).await;
        assert_eq!(r.err(413), "too_large");
        assert_eq!(
            p.get(&cascade("/nodes"), &p.admin())
                .await
                .ok()
                .as_array()
                .map(Vec::len),
            Some(0),
            "nothing stored"
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn every_response_carries_a_request_id_and_echoes_the_callers(backend) {
        let p = TestParent::on(backend.clone()).await;
        for path in ["/healthz", "/nope", &cascade("/nodes")] {
            let r = p.get(path, &p.admin()).await;
            let id = r
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(!id.is_empty(), "{path}");
        }
        let resp = p
            .client
            .get(p.url("/healthz"))
            .header("X-Request-Id", "trace-me-42")
            .send()
            .await
            .expect("sent");
        assert_eq!(
            resp.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some("trace-me-42")
        );
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn health_and_readiness(backend) {
        let p = TestParent::on(backend.clone()).await;
        assert_eq!(
            p.get("/healthz", &crate::helpers::Auth::None).await.ok()["status"],
            "up"
        );
        assert_eq!(
            p.get("/readyz", &crate::helpers::Auth::None).await.ok()["status"],
            "ready"
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn a_broken_database_gives_a_generic_500_without_sql() {
    let p = TestParent::spawn().await;
    let path = p.dir.path().join("cascade.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .expect("side connection");
    sqlx::query("DROP TABLE we_cascade_sync_logs")
        .execute(&mut conn)
        .await
        .expect("table dropped");
    let r = p.get(&cascade("/sync-logs"), &p.admin()).await;
    assert_eq!(r.err(500), "internal");
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("internal error (request "), "{message}");
    assert!(
        !r.text.to_lowercase().contains("sync_logs") && !r.text.contains("SELECT"),
        "{}",
        r.text
    );
    assert!(r.body["data"]["request_id"].is_string());
    // Other endpoints keep working.
    p.post(
        &cascade("/nodes"),
        &p.admin(),
        json!({"node_type": 1, "name": "x"}),
    )
    .await
    .ok();
    p.shutdown().await;
}

/// PostgreSQL enforces column types that SQLite does not: a value out of a column's range
/// gets 400 in the envelope, never a 500; long article text fits (our schema uses TEXT).
#[tokio::test]
async fn values_postgres_cannot_store_get_400_and_long_text_fits() {
    let Some(backend) = crate::helpers::db::Backend::postgres() else {
        return;
    };
    let p = TestParent::on(backend).await;
    let node = p.online_node("n", json!({})).await;
    let r = p
        .post(
            &cascade("/heartbeat"),
            &node.auth(),
            json!({"capacity": 3_000_000_000_u64}),
        )
        .await;
    assert_eq!(r.err(400), "bad_request");
    let feeds = p.feeds(13_000_000, 1).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    let pkg = p.claim_one(&node).await;
    let long = format!("https://mp.weixin.qq.com/s/{}", "x".repeat(3000));
    let body = json!({"allocation_id": pkg["allocation_id"], "lease_token": pkg["lease_token"],
                      "articles": [{"id": "1", "title": "t\u{0}itle", "url": long}]});
    let up = p
        .post(&cascade("/upload-articles"), &node.auth(), body)
        .await;
    assert_eq!(up.ok()["new_count"], 1, "{}", up.text);
    p.shutdown().await;
}

/// The parent binary under a file-size limit (`prlimit --fsize`, SIGXFSZ ignored so a write
/// past it fails instead of killing the process): the database's files cannot grow, as on a
/// full disk. Writes answer 503 naming the condition, without SQL; `/readyz` turns 503 too;
/// reads keep working.
#[tokio::test]
async fn a_database_that_cannot_grow_answers_503_and_is_not_ready() {
    use crate::helpers::process::{ParentProcess, cascade_cmd, login};
    let dir = tempfile::tempdir().expect("temp dir");
    let db = "sqlite:///cascade.db";
    let init = cascade_cmd(dir.path())
        .args(["init", "--db", db, "--admin-user", "admin"])
        .env("CASCADE_ADMIN_PASSWORD", crate::helpers::PASSWORD)
        .output()
        .await
        .expect("init runs");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    {
        // Fold the WAL into the database file, so the limit below counts from an empty WAL.
        use sqlx::Connection;
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("cascade.db"));
        let mut c = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("sqlite");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut c)
            .await
            .expect("checkpoint");
        c.close().await.expect("closed");
    }
    // 64 KiB: room for the WAL index (32 KiB) and a few WAL frames, then every file is full.
    let mut cmd = tokio::process::Command::new("bash");
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .args([
            "-c",
            "trap '' XFSZ; exec prlimit --fsize=65536 \"$@\"",
            "limited",
        ])
        .arg(env!("CARGO_BIN_EXE_cascade"))
        .args(["parent", "--db", db, "--port", "0"]);
    let p = ParentProcess::start(cmd).await;
    let client = crate::helpers::http_client();
    let reply = login(&client, &p.base, "admin", crate::helpers::PASSWORD).await;
    let token = reply.json::<serde_json::Value>().await.expect("json")["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let mut refused = None;
    for i in 0..200 {
        let r = client
            .post(format!("{}{}", p.base, cascade("/nodes")))
            .bearer_auth(&token)
            .json(&json!({"node_type": 1, "name": format!("node {i} {}", "x".repeat(200))}))
            .send()
            .await
            .expect("sent");
        let r = TestParent::reply(r).await;
        if r.status.is_success() {
            continue;
        }
        assert_eq!(r.err(503), "unavailable", "{}", r.text);
        refused.get_or_insert(r);
        let ready = client
            .get(format!("{}/readyz", p.base))
            .send()
            .await
            .expect("sent");
        if ready.status() == 503 {
            let ready = TestParent::reply(ready).await;
            assert_eq!(ready.err(503), "unavailable");
            break;
        }
    }
    let refused = refused.expect("a write was refused once the files could not grow");
    let reason = refused.body["data"]["reason"].as_str().unwrap_or_default();
    assert!(
        matches!(reason, "disk_full" | "io_error"),
        "{}",
        refused.text
    );
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("the database"), "{message}");
    assert!(
        !refused.text.contains("INSERT") && !refused.text.contains("we_cascade"),
        "{}",
        refused.text
    );
    assert_eq!(
        client
            .get(format!("{}/readyz", p.base))
            .send()
            .await
            .expect("sent")
            .status(),
        503,
        "a store that cannot write is not ready"
    );
    let nodes = client
        .get(format!("{}{}", p.base, cascade("/nodes")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(nodes.status(), 200, "reads still work");
    assert!(p.terminate().await);
}

/// A PostgreSQL database switched to read-only (as a standby or `default_transaction_read_only`
/// makes it): writes answer 503 `read_only`, `/readyz` 503, reads still work.
#[tokio::test]
async fn a_read_only_postgres_database_answers_503_and_is_not_ready() {
    use sqlx::Connection;
    let Some(backend) = crate::helpers::db::Backend::postgres() else {
        return;
    };
    let first = TestParent::on(backend).await;
    let name = first
        .state
        .config
        .db
        .rsplit('/')
        .next()
        .expect("db name")
        .to_string();
    let mut admin = sqlx::PgConnection::connect(&first.state.config.db)
        .await
        .expect("pg");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
    )))
    .execute(&mut admin)
    .await
    .expect("read-only");
    // A parent started now gets read-only sessions (its start-up only reads).
    let p = TestParent::join(&first).await;
    let r = p
        .post(
            &cascade("/nodes"),
            &p.admin(),
            json!({"node_type": 1, "name": "x"}),
        )
        .await;
    assert_eq!(r.err(503), "unavailable");
    assert_eq!(r.body["data"]["reason"], "read_only");
    assert_eq!(
        r.body["message"],
        "the database is read-only; writes are refused"
    );
    let ready = p.get("/readyz", &crate::helpers::Auth::None).await;
    assert_eq!(ready.err(503), "unavailable");
    assert_eq!(ready.body["data"]["reason"], "read_only");
    p.get(&cascade("/nodes"), &p.admin()).await.ok();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" RESET default_transaction_read_only"
    )))
    .execute(&mut admin)
    .await
    .expect("writable again");
    p.shutdown().await;
    first.shutdown().await;
}

/// Real database errors of each condition, from real connections, through the store's error
/// and the API's mapping: 503 with a message naming the condition, never 500, never SQL.
#[tokio::test]
async fn full_read_only_and_io_errors_of_both_backends_map_to_503() {
    use axum::response::IntoResponse;
    use sqlx::Connection;
    use werss_cascade::parent::error::ApiError;
    async fn answer(e: sqlx::Error) -> (u16, serde_json::Value) {
        let response = ApiError::from(werss_cascade::store::Error::from(e)).into_response();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, serde_json::from_slice(&body).expect("json"))
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("small.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut c = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("sqlite");
    sqlx::query("CREATE TABLE t (v BLOB)")
        .execute(&mut c)
        .await
        .expect("table");
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&mut c)
        .await
        .expect("pages");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .execute(&mut c)
    .await
    .expect("cap");
    let full = sqlx::query("INSERT INTO t VALUES (zeroblob(100000))")
        .execute(&mut c)
        .await
        .expect_err("SQLITE_FULL");
    let mut ro = sqlx::SqliteConnection::connect_with(&options.clone().read_only(true))
        .await
        .expect("read-only connection");
    let read_only = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&mut ro)
        .await
        .expect_err("SQLITE_READONLY");
    let mut cases = vec![
        (
            full,
            "disk_full",
            "the database's disk is full; writes are refused until space is freed",
        ),
        (
            read_only,
            "read_only",
            "the database is read-only; writes are refused",
        ),
    ];
    if let Some(crate::helpers::db::Backend::Postgres(server)) =
        crate::helpers::db::Backend::postgres()
    {
        let mut pg = sqlx::PgConnection::connect(&server).await.expect("pg");
        for (state, reason, message) in [
            (
                "disk_full",
                "disk_full",
                "the database's disk is full; writes are refused until space is freed",
            ),
            (
                "read_only_sql_transaction",
                "read_only",
                "the database is read-only; writes are refused",
            ),
            (
                "io_error",
                "io_error",
                "the database's storage reported an I/O error",
            ),
        ] {
            let e = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{state}'; END $$"
            )))
            .execute(&mut pg)
            .await
            .expect_err("raised");
            cases.push((e, reason, message));
        }
    }
    for (e, reason, message) in cases {
        let shown = e.to_string();
        let (status, body) = answer(e).await;
        assert_eq!(status, 503, "{shown}: {body}");
        assert_eq!(body["code"], 503);
        assert_eq!(body["data"]["error"], "unavailable");
        assert_eq!(body["data"]["reason"], reason, "{shown}");
        assert_eq!(body["message"], message);
        assert!(!body.to_string().contains("INSERT"), "{body}");
    }
}
