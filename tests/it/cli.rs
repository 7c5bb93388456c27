//! The binary itself: zero-config start, `cascade init`, restarts and graceful shutdown.

use crate::helpers::process::{ParentProcess, cascade_cmd, login};
use serde_json::Value;

#[tokio::test]
async fn zero_config_parent_creates_its_database_prints_the_password_once_and_survives_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = cascade_cmd(dir.path());
    cmd.args(["parent", "--port", "0"]);
    let p = ParentProcess::start(cmd).await;
    assert!(
        dir.path().join("data/cascade.db").is_file(),
        "default sqlite://data/cascade.db"
    );
    assert!(
        p.base.starts_with("http://127.0.0.1:"),
        "binds loopback by default: {}",
        p.base
    );
    let shown: Vec<&String> = p
        .stderr
        .iter()
        .filter(|l| l.contains("with password:"))
        .collect();
    assert_eq!(shown.len(), 1, "{:?}", p.stderr);
    let password = shown[0]
        .split("with password: ")
        .nth(1)
        .expect("password")
        .trim()
        .to_string();
    let client = crate::helpers::http_client();
    let r: Value = login(&client, &p.base, "admin", &password)
        .await
        .json()
        .await
        .expect("json");
    let token = r["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(p.terminate().await, "exits 0 on SIGTERM");

    let mut cmd = cascade_cmd(dir.path());
    cmd.args(["parent", "--port", "0"]);
    let p = ParentProcess::start(cmd).await;
    assert!(
        !p.stderr.iter().any(|l| l.contains("with password:")),
        "not shown again"
    );
    assert!(
        !p.stderr.iter().any(|l| l.contains(&password)),
        "the password never reaches the log"
    );
    let nodes = client
        .get(format!("{}/api/v1/wx/cascade/nodes", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        nodes.status(),
        200,
        "a token survives a restart: the generated secret is kept"
    );
    assert!(p.terminate().await);
}

#[tokio::test]
async fn init_creates_the_admin_the_parent_then_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:///{}", "state/x.db");
    let out = cascade_cmd(dir.path())
        .args(["init", "--db", &db, "--admin-user", "root"])
        .env("CASCADE_ADMIN_PASSWORD", "s3cret-pass")
        .output()
        .await
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("state/x.db").is_file());
    let again = cascade_cmd(dir.path())
        .args([
            "init",
            "--db",
            &db,
            "--admin-user",
            "root",
            "--admin-password",
            "other",
        ])
        .output()
        .await
        .expect("init runs");
    assert!(
        !again.status.success(),
        "an existing admin is not overwritten"
    );

    let mut cmd = cascade_cmd(dir.path());
    cmd.args(["parent", "--db", &db, "--port", "0"]);
    let p = ParentProcess::start(cmd).await;
    let client = crate::helpers::http_client();
    assert_eq!(
        login(&client, &p.base, "root", "s3cret-pass")
            .await
            .status(),
        200
    );
    assert_eq!(login(&client, &p.base, "root", "other").await.status(), 401);
    assert!(p.terminate().await);
}

#[tokio::test]
async fn demo_runs_the_whole_cascade_and_summarises() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = cascade_cmd(dir.path())
        .args(["demo", "--exit-when-done", "--port", "0"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dispatched 330 allocations to 3 online nodes"),
        "{stdout}"
    );
    assert!(stdout.contains("330/330 allocations done"), "{stdout}");
    for i in 1..=3 {
        assert!(stdout.contains(&format!("demo-child-{i}: ")), "{stdout}");
    }
    assert!(stdout.contains("total: 960 articles"), "{stdout}");
    assert!(dir.path().join("data/cascade.db").is_file());
}

/// Local-mode commands beside another process that holds the SQLite write lock (as a busy
/// parent does): reads (`node list`, `check`) work, since a current schema is not migrated
/// and nothing is written; a write (`dispatch`) waits the busy timeout, then fails with
/// advice to use `--url`, not "database is locked" and not a panic.
#[tokio::test]
async fn local_commands_beside_a_writer_read_and_advise_url_when_they_must_write() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = "sqlite:///cascade.db";
    let run = |args: &[&str]| {
        let mut cmd = cascade_cmd(dir.path());
        cmd.args(args).args(["--db", db]).env("RUST_LOG", "warn");
        async move { cmd.output().await.expect("runs") }
    };
    let init = cascade_cmd(dir.path())
        .args(["init", "--db", db, "--admin-user", "admin"])
        .env("CASCADE_ADMIN_PASSWORD", "s3cret-pass")
        .output()
        .await
        .expect("init runs");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for args in [
        &["feed", "add", "--wechat", "MP_WXS_1", "--name", "one"][..],
        &["task", "add", "morning", "--feeds", "MP_WXS_1"],
        &["node", "add", "worker"],
    ] {
        let out = run(args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("cascade.db"));
    let mut writer = sqlx::SqliteConnection::connect_with(&options)
        .await
        .expect("sqlite");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .expect("write lock held");

    let list = run(&["node", "list"]).await;
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("worker"));
    let check = run(&["check"]).await;
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let dispatch = run(&["dispatch"]).await;
    let stderr = String::from_utf8_lossy(&dispatch.stderr);
    assert_eq!(dispatch.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The error line (after the in-process parent's log lines) gives the advice.
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(error.contains("stayed busy"), "{stderr}");
    assert!(error.contains("--url http://127.0.0.1:8001"), "{stderr}");
    assert!(!error.contains("database is locked"), "{stderr}");

    sqlx::query("ROLLBACK")
        .execute(&mut writer)
        .await
        .expect("released");
    let dispatch = run(&["dispatch"]).await;
    assert!(
        dispatch.status.success(),
        "{}",
        String::from_utf8_lossy(&dispatch.stderr)
    );
}
