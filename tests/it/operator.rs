//! The operator commands, run as the real binary: on the local database and against a running
//! parent (`--url`), with tables for people and `--json` for scripts.

use crate::helpers::process::{ParentProcess, cascade_cmd};
use serde_json::Value;
use std::path::Path;

/// Runs `cascade ARGS` in `dir`, asserts success and returns stdout.
async fn run(dir: &Path, args: &[&str]) -> String {
    let out = cascade_cmd(dir)
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

/// Runs `cascade ARGS` and returns (success, stderr).
async fn run_err(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = cascade_cmd(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&run(dir, &all).await).expect("--json prints JSON")
}

const OPML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>mine</title></head><body>
<outline text="WeRSS export" title="Example MP" type="rss" xmlUrl="http://werss.local/feed/MP_WXS_3892772220.rss"/>
<outline text="Blog" type="rss" xmlUrl="https://blog.example/feed.xml"/>
</body></opml>"#;

#[tokio::test]
async fn an_operators_day_on_the_local_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    run(d, &["init", "--admin-password", "operator-pass"]).await;

    let added = run(d, &["node", "add", "alpha", "--capacity", "5"]).await;
    assert!(
        added.contains("api_key:    CN") && added.contains("api_secret: CS"),
        "{added}"
    );
    let nodes = json(d, &["node", "list"]).await;
    let node_id = nodes[0]["id"].as_str().expect("id").to_string();
    assert_eq!(nodes[0]["capacity"], 5);
    let table = run(d, &["node", "list"]).await;
    let header = table.lines().next().expect("header");
    assert!(
        header.starts_with("ID") && header.contains("STATE") && header.contains("LOAD"),
        "{table}"
    );
    assert!(table.contains("alpha") && table.contains("0/5"), "{table}");

    std::fs::write(d.join("feeds.opml"), OPML).expect("write");
    let imported = json(d, &["feed", "import-opml", "feeds.opml"]).await;
    assert_eq!(imported["created"], 2);
    run(
        d,
        &["feed", "add", "--wechat", "MP_WXS_123", "--name", "Third"],
    )
    .await;
    let feeds = json(d, &["feed", "list"]).await;
    assert_eq!(feeds["list"].as_array().map(Vec::len), Some(3));
    assert_eq!(feeds["total"], 3);
    let exported = run(d, &["feed", "export-opml"]).await;
    assert!(exported.contains("MP_WXS_123.rss"), "{exported}");

    let task = json(
        d,
        &[
            "task",
            "add",
            "morning",
            "--all-feeds",
            "--cron",
            "*/30 * * * *",
        ],
    )
    .await;
    let task_id = task["id"].as_str().expect("task id").to_string();
    assert!(run(d, &["task", "list"]).await.contains("*/30 * * * *"));
    let dispatched = json(d, &["dispatch", &task_id]).await;
    assert_eq!(dispatched["allocations_created"], 3);
    let pending = json(d, &["allocations", "--status", "pending"]).await;
    assert_eq!(pending["total"], 3);
    assert!(run(d, &["allocations"]).await.contains("3 of 3 shown"));

    run(d, &["node", "disable", &node_id]).await;
    assert_eq!(
        json(d, &["node", "show", &node_id]).await["is_active"],
        false
    );
    run(d, &["node", "enable", &node_id]).await;
    run(d, &["task", "remove", &task_id]).await;
    assert_eq!(
        json(d, &["allocations", "--status", "failed"]).await["total"],
        3
    );
    run(d, &["node", "remove", &node_id]).await;

    // Mistakes are clear errors, not panics.
    let (ok, err) = run_err(d, &["node", "show", "nope"]).await;
    assert!(!ok && err.contains("404"), "{err}");
    let (ok, err) = run_err(d, &["feed", "add", "--name", "x"]).await;
    assert!(!ok && err.contains("--wechat"), "{err}");
    let check = run(d, &["check"]).await;
    assert!(check.contains("database  ok"), "{check}");
}

#[tokio::test]
async fn commands_reach_a_running_parent_and_check_a_child_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let mut cmd = cascade_cmd(d);
    cmd.args(["parent", "--port", "0"])
        .env("CASCADE_ADMIN_PASSWORD", "operator-pass");
    let p = ParentProcess::start(cmd).await;
    let elsewhere = tempfile::tempdir().expect("another dir");
    let e = elsewhere.path();
    let url = p.base.clone();

    let created = json(e, &["--url", &url, "node", "add", "remote"]).await;
    let (key, secret) = (
        created["api_key"].as_str().expect("key").to_string(),
        created["api_secret"].as_str().expect("secret").to_string(),
    );
    assert!(
        run(e, &["--url", &url, "node", "list"])
            .await
            .contains("remote")
    );
    assert!(!e.join("data").exists(), "--url touches no local database");

    // A child config: check reaches the parent with its credentials.
    let child = format!(
        "cascade:\n  enabled: true\n  node_type: child\n  parent_api_url: {url}\n  api_key: {key}\n  api_secret: {secret}\n"
    );
    std::fs::write(e.join("child.yaml"), child).expect("write");
    let check = run(e, &["--config", "child.yaml", "check"]).await;
    assert!(check.contains("parent    ok"), "{check}");
    assert!(
        !check.contains(&secret),
        "the secret is never printed by check"
    );
    let bad = format!(
        "cascade:\n  enabled: true\n  node_type: child\n  parent_api_url: {url}\n  api_key: {key}\n  api_secret: CSwrong\n"
    );
    std::fs::write(e.join("bad.yaml"), bad).expect("write");
    let (ok, err) = run_err(e, &["--config", "bad.yaml", "check"]).await;
    assert!(!ok && err.contains("parent check failed"), "{err}");

    // `node add` prints a child config that works as printed.
    let added = run(e, &["--url", &url, "node", "add", "second"]).await;
    let snippet = added
        .split_once("# the child's config.yaml")
        .map(|(_, rest)| rest.split_once('\n').map_or("", |(_, yaml)| yaml))
        .expect("a config snippet");
    std::fs::write(e.join("second.yaml"), snippet).expect("write");
    let check = run(e, &["--config", "second.yaml", "check"]).await;
    assert!(check.contains("parent    ok"), "{check}");

    let (ok, err) = run_err(e, &["--url", &url, "--password", "wrong", "node", "list"]).await;
    assert!(!ok && err.contains("login refused"), "{err}");
    assert!(p.terminate().await);
}
