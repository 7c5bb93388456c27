//! The binary itself: zero-config start, `cascade init`, restarts and graceful shutdown (the
//! demo in `demo`, the operator commands in `operator` and `cli_commands`).

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

/// A SQLite database in `dir` with an admin (made by `cascade init`); returns its URL.
pub(crate) async fn initialised_db(dir: &tempfile::TempDir) -> String {
    let db = format!("sqlite:///{}", dir.path().join("cascade.db").display());
    let out = cascade_cmd(dir.path())
        .args(["init", "--db", &db])
        .env("CASCADE_ADMIN_PASSWORD", "s3cret-pass")
        .output()
        .await
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

#[tokio::test]
async fn cli_import_of_a_deeply_nested_opml_fails_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = initialised_db(&dir).await;
    let deep = format!(
        "<opml version=\"2.0\"><body>{}<outline text=\"x\" xmlUrl=\"https://x.example/f.xml\"/>{}</body></opml>",
        "<outline text=\"folder\">".repeat(2_000),
        "</outline>".repeat(2_000)
    );
    std::fs::write(dir.path().join("deep.opml"), deep).expect("written");
    let out = cascade_cmd(dir.path())
        .args(["feed", "import-opml", "deep.opml", "--db", &db])
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error exit, not an abort: {stderr}"
    );
    assert!(
        stderr.contains("deep.opml: outlines nest deeper than 64 levels"),
        "{stderr}"
    );
    assert!(!stderr.contains("overflow"), "{stderr}");
}

#[tokio::test]
async fn a_parent_warns_when_its_config_describes_a_child() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("config.yaml"),
        "cascade:\n  enabled: True\n  node_type: child\n",
    )
    .expect("written");
    let mut cmd = cascade_cmd(dir.path());
    cmd.args(["parent", "--port", "0"]);
    let p = ParentProcess::start(cmd).await;
    let warned = |p: &ParentProcess| {
        p.stderr
            .iter()
            .any(|l| l.contains("WARN") && l.contains("but this process runs as a parent"))
    };
    assert!(warned(&p), "{:?}", p.stderr);
    assert!(p.terminate().await);

    // WeRSS's own parent layout (node_type: parent) and no config at all: no warning.
    std::fs::write(
        dir.path().join("config.yaml"),
        "cascade:\n  enabled: True\n  node_type: parent\n",
    )
    .expect("written");
    for args in [
        vec!["parent", "--port", "0"],
        vec!["parent", "--port", "0", "-c", "/dev/null"],
    ] {
        let mut cmd = cascade_cmd(dir.path());
        cmd.args(args);
        let p = ParentProcess::start(cmd).await;
        assert!(!warned(&p), "{:?}", p.stderr);
        assert!(p.terminate().await);
    }
}

/// A child config with WeRSS's published sample credentials and `node_type: parent`.
const SAMPLE_CHILD_CONFIG: &str = "cascade:
  enabled: True
  node_type: parent
  parent_api_url: http://127.0.0.1:9
  api_key: ${CASCADE_API_KEY:-CNfst304B9L603OXjL9gW0F2R38sKr3-L1}
  api_secret: ${CASCADE_API_SECRET:-CSWAKhQc-LvCxOow5Iu_e3Sqoyk3Ps1PeI}
";

#[tokio::test]
async fn check_and_child_warn_about_sample_credentials_and_a_parent_node_type() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("config.yaml"), SAMPLE_CHILD_CONFIG).expect("written");
    let out = cascade_cmd(dir.path())
        .args(["check"])
        .env("CASCADE_PARENT_URL", "http://127.0.0.1:9")
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "warning: cascade.node_type is 'parent', but this process runs as a child",
        "warning: cascade.api_key/api_secret is the sample pair published in WeRSS's config-node.yaml",
        "warning: CASCADE_PARENT_URL is set but never read",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }
    assert!(
        !out.status.success(),
        "the parent at 127.0.0.1:9 is unreachable"
    );
    assert!(
        !format!("{stdout}{stderr}").contains("CSWAKhQc"),
        "the secret is never printed"
    );

    // `cascade child` logs the same at start (then keeps trying its parent).
    let mut child = cascade_cmd(dir.path())
        .args(["child"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
        child.stderr.take().expect("stderr"),
    ));
    let mut seen = Vec::new();
    let wanted = ["runs as a child", "sample pair"];
    let read = async {
        while let Some(line) = lines.next_line().await.expect("stderr readable") {
            seen.push(line);
            if wanted
                .iter()
                .all(|w| seen.iter().any(|l| l.contains("WARN") && l.contains(w)))
            {
                return;
            }
        }
    };
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
    assert!(found.is_ok(), "{seen:?}");
    child.kill().await.expect("killed");
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
    init(dir.path(), db).await;
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

/// `node show` prints words for codes, and the feed commands of freshness mode work on the
/// local database: `feed priority` sets a priority, `feed check` dispatches a feed at once.
#[tokio::test]
async fn node_show_speaks_words_and_feeds_can_be_checked_now_and_prioritised() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = "sqlite:///cascade.db";
    let run = |args: &[&str]| {
        let mut cmd = cascade_cmd(dir.path());
        cmd.args(args).args(["--db", db]).env("RUST_LOG", "warn");
        async move {
            let out = cmd.output().await.expect("runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        }
    };
    init(dir.path(), db).await;
    let node: Value =
        serde_json::from_str(&run(&["node", "add", "worker", "--json"]).await).expect("json");
    let id = node["node_id"]
        .as_str()
        .or_else(|| node["id"].as_str())
        .expect("node id")
        .to_string();
    let shown = run(&["node", "show", &id]).await;
    let row = |field: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(row("status").as_deref(), Some("offline"), "{shown}");
    assert_eq!(row("node_type").as_deref(), Some("child"), "{shown}");

    run(&["feed", "add", "--wechat", "MP_WXS_1", "--name", "one"]).await;
    run(&[
        "task",
        "add",
        "morning",
        "--feeds",
        "MP_WXS_1",
        "--priority",
        "3",
    ])
    .await;
    let feed: Value =
        serde_json::from_str(&run(&["feed", "priority", "MP_WXS_1", "-5", "--json"]).await)
            .expect("json");
    assert_eq!(feed["priority"], -5, "{feed}");
    let checked: Value =
        serde_json::from_str(&run(&["feed", "check", "MP_WXS_1", "--json"]).await).expect("json");
    assert_eq!(
        (checked["created"].clone(), checked["status"].clone()),
        (Value::Bool(true), Value::from("pending")),
        "{checked}"
    );
    // Asked again while it waits: the same allocation, not a second one.
    let again: Value =
        serde_json::from_str(&run(&["feed", "check", "MP_WXS_1", "--json"]).await).expect("json");
    assert_eq!(again["allocation_id"], checked["allocation_id"], "{again}");
    assert_eq!(again["created"], false, "{again}");
    // The list names the feed and when the waiting allocation may be claimed.
    let list = run(&["allocations"]).await;
    let header = list.lines().next().unwrap_or_default();
    for column in ["FEEDS", "NEXT ATTEMPT", "ERROR"] {
        assert!(header.contains(column), "{list}");
    }
    let row = list
        .lines()
        .find(|l| l.contains("pending"))
        .unwrap_or_default();
    assert!(row.contains("MP_WXS_1"), "{list}");
}

/// `cascade admin passwd` changes an admin's password on the local database: the parent then
/// takes the new one and refuses the old; an unknown admin is an error.
#[tokio::test]
async fn admin_passwd_changes_the_password_the_parent_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = "sqlite:///cascade.db";
    let cmd = |args: &[&str], password: &str| {
        let mut c = cascade_cmd(dir.path());
        c.args(args)
            .args(["--db", db])
            .env("CASCADE_ADMIN_PASSWORD", password);
        async move { c.output().await.expect("runs") }
    };
    let init = cmd(&["init", "--admin-user", "root"], "old-pass").await;
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let changed = cmd(&["admin", "passwd", "--user", "root"], "new-pass").await;
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    assert!(String::from_utf8_lossy(&changed.stdout).contains("Password of admin 'root' changed"));
    let unknown = cmd(&["admin", "passwd", "--user", "nobody"], "x").await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no admin named 'nobody'"));

    let mut parent = cascade_cmd(dir.path());
    parent.args(["parent", "--db", db, "--port", "0"]);
    let p = ParentProcess::start(parent).await;
    let client = crate::helpers::http_client();
    let accepted = login(&client, &p.base, "root", "new-pass").await;
    assert_eq!(accepted.status(), 200);
    let session: Value = accepted.json().await.expect("json");
    assert_eq!(
        login(&client, &p.base, "root", "old-pass").await.status(),
        401
    );
    // The change is in the audit log as the CLI's, without the password.
    let audit = client
        .get(format!("{}/api/v1/cascade/audit?action=passwd", p.base))
        .bearer_auth(session["data"]["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    let audit: Value = serde_json::from_str(&audit).expect("json");
    let row = &audit["data"]["list"][0];
    assert_eq!(
        (&row["actor"], &row["action"], &row["target"]),
        (
            &Value::from("cli"),
            &Value::from("passwd"),
            &Value::from("root")
        ),
        "{audit}"
    );
    assert!(!audit.to_string().contains("new-pass"));
    assert!(p.terminate().await);
}

/// `cascade init` on `db` in `dir`, admin `admin` with password `s3cret-pass`.
async fn init(dir: &std::path::Path, db: &str) {
    let out = cascade_cmd(dir)
        .args(["init", "--db", db, "--admin-user", "admin"])
        .env("CASCADE_ADMIN_PASSWORD", "s3cret-pass")
        .output()
        .await
        .expect("init runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
