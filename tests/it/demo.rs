//! `cascade demo`, run as the real binary: the whole cascade on a temporary database, its
//! summary, and how to reach the parent afterwards.

use crate::helpers::process::cascade_cmd;

#[tokio::test]
async fn demo_runs_the_whole_cascade_and_summarises() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scratch = dir.path().join("tmp");
    std::fs::create_dir(&scratch).expect("scratch dir");
    // Without RUST_LOG the demo logs at warn: its own lines are what it shows.
    let out = cascade_cmd(dir.path())
        .args(["demo", "--exit-when-done", "--port", "0"])
        .env_remove("RUST_LOG")
        .env("TMPDIR", &scratch)
        .output()
        .await
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(" INFO "), "{stderr}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("dispatched 330 allocations to 4 online nodes"),
        "{stdout}"
    );
    assert!(stdout.contains("330/330 allocations done"), "{stdout}");
    for i in 1..=4 {
        assert!(stdout.contains(&format!("demo-child-{i}: ")), "{stdout}");
    }
    assert!(stdout.contains("total: 960 articles"), "{stdout}");
    // The MP list refuses other accounts: the fleet finds it closed and WeRead reads them all.
    assert!(
        stdout.contains("  mp_list: closed since ")
            && stdout.contains("found by the fleet and alerted once"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  weread_list: open, 300 feeds read through it"),
        "{stdout}"
    );
    assert!(stdout.contains("nodes cooling: none"), "{stdout}");
    // Each WeChat article read through WeRead came with its body.
    assert!(
        stdout.contains("full text: 900 of 900 WeChat articles"),
        "{stdout}"
    );
    // Child 1 logs in by QR through the fake: the code is drawn, the demo plays the phone.
    assert!(
        stdout.contains("demo-child-1 logs in to WeChat by QR code:\n█"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the demo scans this QR code for you in a moment"),
        "{stdout}"
    );
    assert!(
        stdout.contains("logged in: mp Demo MP Account, expires 20"),
        "{stdout}"
    );
    // …and crawls with that login (it has no token or cookie in its configuration).
    assert!(!stdout.contains("demo-child-1: 0 feeds"), "{stdout}");
    // The summary lists every login of the fleet, as the heartbeats reported them.
    let logins = stdout
        .split("\nlogins:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no logins in the summary: {stdout}"));
    assert!(
        logins.contains("  demo-child-1: mp Demo MP Account, valid, expires 20"),
        "{stdout}"
    );
    assert!(
        logins.contains("  demo-child-2: mp wechat_token (config), valid"),
        "no login cools on a closed source: {stdout}"
    );
    for i in 3..=4 {
        assert!(
            logins.contains(&format!(
                "  demo-child-{i}: weread fake weread-demo-{i}, valid"
            )),
            "{stdout}"
        );
    }
    // The end repeats how to reach the parent: dashboard, password, a `--url` command.
    let dashboard = stdout
        .lines()
        .find(|l| l.starts_with("dashboard  http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no dashboard line: {stdout}"));
    let base = dashboard.split_whitespace().nth(1).expect("url");
    let password = dashboard
        .split("password ")
        .nth(1)
        .and_then(|p| p.strip_suffix(')'))
        .expect("password");
    assert!(
        stdout.contains(&format!(
            "commands   cascade --url {} --password '{password}' node list",
            base.trim_end_matches('/')
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "parent  {base}   (dashboard; admin user 'admin', password {password})"
        )),
        "the password shown at the start is the one repeated: {stdout}"
    );
    // On a temporary database, removed at the end: nothing is left behind.
    assert!(
        stdout.contains("database   a temporary SQLite file, removed when the demo ends"),
        "{stdout}"
    );
    assert!(!dir.path().join("data").exists());
    assert_eq!(
        std::fs::read_dir(&scratch).expect("scratch dir").count(),
        0,
        "the temporary database is removed"
    );
}
