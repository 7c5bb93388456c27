//! The operator commands' paper cuts (issue 16), run as the real binary: `feed list` pages and
//! filters (and ends quietly when its reader stops), `allocations show`, the zone of a task's
//! cron, colours, and the token a `--url` command caches.

use crate::cli::initialised_db;
use crate::helpers::process::cascade_cmd;
use crate::helpers::{ADMIN, PASSWORD, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::path::Path;
use werss_cascade::store::{AuditFilter, NewFeed, Page};

/// Runs `cascade ARGS` in `dir` with `env`; returns (success, stdout, stderr).
async fn exec(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = cascade_cmd(dir);
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cascade ARGS` in `dir`, asserts success and returns stdout.
async fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let (ok, stdout, stderr) = exec(dir, args, env).await;
    assert!(ok, "cascade {args:?} failed:\n{stderr}");
    stdout
}

/// The table rows of `out` (header and footer left out) whose first cell is an id.
fn rows(out: &str) -> Vec<&str> {
    let lines: Vec<&str> = out.lines().collect();
    lines[1..lines.len().saturating_sub(1)].to_vec()
}

#[tokio::test]
async fn feed_list_pages_filters_and_says_how_many_of_how_many() {
    let p = TestParent::spawn().await;
    let mut feeds: Vec<NewFeed> = (0..5)
        .map(|i| NewFeed::wechat(&format!("MP_WXS_{}", 700 + i), &format!("alpha {i}")))
        .collect();
    feeds.extend(
        (0..3).map(|i| NewFeed::rss(&format!("https://b{i}.example/f.xml"), &format!("beta {i}"))),
    );
    p.store
        .create_feeds(feeds, p.clock.now())
        .await
        .expect("feeds");
    p.put(
        &cascade("/feeds/MP_WXS_702"),
        &p.admin(),
        json!({"status": 0}),
    )
    .await
    .ok();
    let url = p.url("");
    let base = [
        "--url",
        url.as_str(),
        "--password",
        PASSWORD,
        "feed",
        "list",
    ];
    let list = |extra: &'static [&'static str]| {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let dir = p.dir.path().to_path_buf();
        async move { run(&dir, &args, &[]).await }
    };

    let first = list(&["--limit", "3"]).await;
    assert_eq!(rows(&first).len(), 3, "{first}");
    assert!(
        first.ends_with("3 of 8 feeds (more: --offset 3)\n"),
        "{first}"
    );
    let last = list(&["--limit", "3", "--page", "3"]).await;
    assert_eq!(rows(&last).len(), 2, "{last}");
    assert!(last.ends_with("2 of 8 feeds\n"), "{last}");
    let skipped = list(&["--limit", "3", "--offset", "6"]).await;
    assert_eq!(rows(&skipped), rows(&last), "--page 3 is --offset 6");

    let named = list(&["--q", "alpha"]).await;
    assert_eq!(rows(&named).len(), 5, "{named}");
    assert!(rows(&named).iter().all(|r| r.contains("alpha")), "{named}");
    assert!(named.ends_with("5 of 5 feeds\n"), "{named}");
    let rss = list(&["--source", "rss"]).await;
    assert!(rss.ends_with("3 of 3 feeds\n"), "{rss}");
    assert!(rows(&rss).iter().all(|r| r.contains(" rss ")), "{rss}");
    let paused = list(&["--state", "paused"]).await;
    assert_eq!(rows(&paused).len(), 1, "{paused}");
    assert!(
        rows(&paused)[0].starts_with("MP_WXS_702") && rows(&paused)[0].contains("paused"),
        "{paused}"
    );
    let data: Value =
        serde_json::from_str(&list(&["--state", "enabled", "--json"]).await).expect("json");
    assert_eq!(data["total"], 7, "{data}");
    p.shutdown().await;
}

#[tokio::test]
async fn allocations_show_prints_feeds_attempts_errors_lease_and_next_attempt() {
    let p = TestParent::spawn().await;
    let node = p.online_node("worker-1", json!({})).await;
    let feeds = p.feeds(9_100, 1).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    let pkg = p.claim_one(&node).await;
    let id = pkg["allocation_id"].as_str().expect("id").to_string();
    p.status(
        &node,
        &pkg,
        "failed",
        json!({"reason": "network", "error_message": "connection reset"}),
    )
    .await
    .ok();
    let url = p.url("");
    let show = || {
        let dir = p.dir.path().to_path_buf();
        let args = [
            "--url",
            &url,
            "--password",
            PASSWORD,
            "allocations",
            "show",
            &id,
        ]
        .map(str::to_string);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&dir, &args, &[]).await
        }
    };
    let field = |out: &str, name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_else(|| panic!("no {name}: {out}"))
    };

    // Sent back to wait for its retry: when it may be claimed again, and why it came back.
    let waiting = show().await;
    let head = waiting.lines().next().unwrap_or_default();
    assert!(
        head.starts_with("ALLOCATION ") && head.ends_with(&id),
        "{waiting}"
    );
    assert_eq!(field(&waiting, "status"), "pending", "{waiting}");
    assert_eq!(field(&waiting, "lease expires (UTC)"), "-", "{waiting}");
    let next = field(&waiting, "next attempt (UTC)");
    assert!(next.starts_with("20"), "{waiting}");
    assert_eq!(field(&waiting, "error"), "connection reset", "{waiting}");
    assert!(waiting.contains("feeds (1):"), "{waiting}");
    assert!(
        waiting.contains(&format!("{0}  feed {0}  wechat  enabled", feeds[0])),
        "the feed's name, source and state: {waiting}"
    );
    assert!(
        waiting.contains("attempts that ended without completing (1):"),
        "{waiting}"
    );
    let attempt = waiting
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no attempt row: {waiting}"));
    for cell in ["worker-1", "retry", "network", "connection reset"] {
        assert!(attempt.contains(cell), "{cell}: {waiting}");
    }

    // Claimed again once its backoff passed: now it holds a lease, and the history stays.
    p.clock.advance(TimeDelta::hours(1));
    p.post(&cascade("/heartbeat"), &node.auth(), json!({}))
        .await
        .ok();
    p.claim_one(&node).await;
    let held = show().await;
    assert_eq!(field(&held, "status"), "claimed", "{held}");
    assert!(
        field(&held, "lease expires (UTC)").starts_with("20"),
        "{held}"
    );
    assert_eq!(field(&held, "next attempt (UTC)"), "-", "{held}");
    assert_eq!(field(&held, "node"), "worker-1", "{held}");
    assert!(
        held.contains("attempts that ended without completing (1):"),
        "{held}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn tasks_say_the_zone_their_cron_is_read_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let config = |extra: &str| {
        std::fs::write(
            d.join("config.yaml"),
            format!("db: sqlite:///cascade.db\n{extra}"),
        )
        .expect("config");
    };
    config("");
    run(d, &["init"], &[("CASCADE_ADMIN_PASSWORD", "s3cret-pass")]).await;
    run(
        d,
        &["feed", "add", "--wechat", "MP_WXS_1", "--name", "one"],
        &[],
    )
    .await;
    let add = [
        "task",
        "add",
        "morning",
        "--feeds",
        "MP_WXS_1",
        "--cron",
        "0 */2 * * *",
        "--json",
    ];
    let added: Value = serde_json::from_str(&run(d, &add, &[]).await).expect("json");
    let id = added["id"].as_str().expect("task id");

    // No `timezone`: the parent reads crons in its local zone, and says so with the offset.
    let list = run(d, &["task", "list"], &[]).await;
    assert!(list.contains("0 */2 * * * (local time, UTC"), "{list}");
    assert!(list.contains("NEXT RUN (UTC)"), "{list}");

    config("cascade:\n  timezone: Asia/Shanghai\n");
    let list = run(d, &["task", "list"], &[]).await;
    assert!(list.contains("0 */2 * * * (Asia/Shanghai)"), "{list}");
    let shown = run(d, &["task", "show", id], &[]).await;
    let cron = shown
        .lines()
        .find(|l| l.starts_with("cron_exp"))
        .unwrap_or_else(|| panic!("no cron_exp: {shown}"));
    assert!(cron.ends_with("0 */2 * * * (Asia/Shanghai)"), "{shown}");
    // `--json` is the API's answer, untouched.
    let json: Value =
        serde_json::from_str(&run(d, &["task", "list", "--json"], &[]).await).expect("json");
    assert_eq!(json[0]["cron_exp"], "0 */2 * * *", "{json}");
}

#[tokio::test]
async fn states_are_coloured_when_forced_never_when_piped_or_with_no_color() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let db = "sqlite:///cascade.db";
    run(
        d,
        &["init", "--db", db],
        &[("CASCADE_ADMIN_PASSWORD", "pass")],
    )
    .await;
    run(
        d,
        &["node", "add", "a-node-with-a-long-name", "--db", db],
        &[],
    )
    .await;
    let list = ["node", "list", "--db", db];

    let piped = run(d, &list, &[]).await;
    assert!(piped.contains("offline"), "{piped}");
    assert!(!piped.contains('\x1b'), "no colour in a pipe: {piped:?}");
    let forced = run(d, &list, &[("CLICOLOR_FORCE", "1")]).await;
    assert!(forced.contains("\x1b[31moffline\x1b[0m"), "{forced:?}");
    // Colour codes take no room: without them, the table is the plain one, aligned alike.
    assert_eq!(forced.replace("\x1b[31m", "").replace("\x1b[0m", ""), piped);
    let refused = run(d, &list, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]).await;
    assert_eq!(refused, piped, "NO_COLOR wins");
}

/// The login audit rows the parent wrote.
async fn logins(p: &TestParent) -> i64 {
    let filter = AuditFilter {
        action: Some("login".into()),
        ..AuditFilter::default()
    };
    let page = Page {
        limit: 1,
        offset: 0,
    };
    p.store.list_audit(filter, page).await.expect("audit").1
}

#[tokio::test]
async fn url_commands_reuse_a_cached_token_until_the_parent_refuses_it() {
    let p = TestParent::spawn().await;
    let cache = tempfile::tempdir().expect("cache dir");
    let xdg = cache.path().to_str().expect("utf-8 path").to_string();
    let url = p.url("");
    let d = p.dir.path();
    let node_list = |password: Option<&'static str>| {
        let (url, xdg) = (url.clone(), xdg.clone());
        async move {
            let mut args = vec!["--url", url.as_str(), "node", "list"];
            if let Some(pw) = password {
                args.extend(["--password", pw]);
            }
            exec(d, &args, &[("XDG_CACHE_HOME", xdg.as_str())]).await
        }
    };
    let before = logins(&p).await;

    let (ok, first, err) = node_list(Some(PASSWORD)).await;
    assert!(ok, "{err}");
    assert_eq!(logins(&p).await, before + 1);
    let files: Vec<_> = std::fs::read_dir(cache.path().join("werss-cascade"))
        .expect("cache dir made")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0])
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let cached = |path: &Path| -> String {
        let entry: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        entry["token"].as_str().expect("token").to_string()
    };
    let token = cached(&files[0]);
    assert!(
        !first.contains(&token) && !err.contains(&token),
        "never printed"
    );

    // The password changes: the cached token still works, and no login happens.
    werss_cascade::parent::ops::set_admin_password(&p.store, ADMIN, "new pass", 4, &p.clock)
        .await
        .expect("password changed");
    let (ok, second, err) = node_list(Some(PASSWORD)).await;
    assert!(ok, "{err}");
    assert_eq!(second, first);
    let (ok, _, err) = node_list(None).await;
    assert!(ok, "a cached token needs no password: {err}");
    assert_eq!(
        logins(&p).await,
        before + 1,
        "no login while the token works"
    );

    // The token expires: the parent answers 401, the command logs in once and goes on.
    p.clock.advance(TimeDelta::days(4));
    let (ok, third, err) = node_list(Some("new pass")).await;
    assert!(ok, "{err}");
    assert_eq!(third, first);
    assert_eq!(logins(&p).await, before + 2, "one login again");
    let renewed = cached(&files[0]);
    assert_ne!(renewed, token, "the new token replaces the stale one");

    // Stale again, and nothing to log in with: the command says what it needs.
    p.clock.advance(TimeDelta::days(4));
    let (ok, _, err) = node_list(None).await;
    assert!(!ok);
    let error = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        error.contains("--password (or CASCADE_PASSWORD) is needed")
            && error.contains("the cached login of 'admin'")
            && error.contains("expired"),
        "{err}"
    );
    assert!(!err.contains(&renewed), "never printed");
    p.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_stops_early_ends_a_listing_quietly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = initialised_db(&dir).await;
    let store = werss_cascade::store::Store::connect(&db)
        .await
        .expect("store");
    let feeds = (0..500)
        .map(|i| {
            werss_cascade::store::NewFeed::wechat(
                &format!("MP_WXS_{}", 8_000_000 + i),
                &format!("feed {i}"),
            )
        })
        .collect();
    store
        .create_feeds(feeds, chrono::Utc::now().naive_utc())
        .await
        .expect("feeds");
    drop(store);
    for extra in [None, Some("--json")] {
        // `cascade feed list | head -0`: the read end is gone before the first line.
        let mut cmd = cascade_cmd(dir.path());
        cmd.args(["feed", "list", "--db", &db]).args(extra);
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        drop(child.stdout.take());
        let out = child.wait_with_output().await.expect("exit status");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
        assert!(!stderr.contains("error"), "{extra:?}: quiet: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stderr}");
    }
}
