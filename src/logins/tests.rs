use super::*;
use chrono::Duration;
use std::path::Path;

fn mp(id: &str, sid: &str) -> Login {
    Login::new(
        id,
        LoginKind::Mp,
        &format!("account {id}"),
        LoginSecrets::from_cookie_header(
            Some(Secret::new(format!("tok-{sid}"))),
            &format!("slave_sid={sid}; slave_user=gh_x"),
        ),
    )
}

#[test]
fn the_store_survives_a_restart_and_is_private() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let now = Utc::now();
    {
        let store = LoginStore::open(&data).expect("open");
        store.upsert(mp("a", "SID-A-secret")).expect("save");
        store.upsert(mp("b", "SID-B-secret")).expect("save");
        store.mark_expired("b", "200003 invalid session");
    }
    let store = LoginStore::open(&data).expect("reopen");
    let a = store.get("a").expect("a kept");
    assert_eq!(
        a.secrets.cookie("slave_sid"),
        Some(&Secret::new("SID-A-secret"))
    );
    assert_eq!(a.secrets.token, Some(Secret::new("tok-SID-A-secret")));
    assert_eq!(store.get("b").expect("b").state, LoginState::Expired);
    assert_eq!(
        store.pick(LoginKind::Mp, now).map(|l| l.id),
        Some("a".into()),
        "the expired one is skipped"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // No temp files are left beside it.
    let names: Vec<String> = std::fs::read_dir(&data)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![STORE_FILE.to_string()]);
}

#[test]
fn a_write_replaces_the_file_whole_and_tightens_its_mode() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(STORE_FILE);
    // A stale, world-readable file from elsewhere: the first write replaces it whole.
    std::fs::write(&path, r#"{"version":1,"logins":[]}"#).expect("seed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let store = LoginStore::open(dir.path()).expect("open");
    let ino_before = inode(&path);
    store.upsert(mp("a", "x")).expect("save");
    // Renamed into place (a new inode), not rewritten in place.
    assert_ne!(inode(&path), ino_before);
    let text = std::fs::read_to_string(&path).expect("read");
    let parsed: serde_json::Value = serde_json::from_str(&text).expect("whole JSON");
    assert_eq!(parsed["logins"][0]["id"], "a");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A malformed file is an error naming the file, not an empty store.
    std::fs::write(&path, "{not json").expect("break");
    let err = LoginStore::open(dir.path()).expect_err("malformed");
    assert!(err.to_string().contains(STORE_FILE), "{err}");
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("meta").ino()
}

#[cfg(not(unix))]
fn inode(_: &Path) -> u64 {
    0
}

#[test]
fn pick_rotates_least_recently_used_and_skips_cooling_and_expired() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LoginStore::open(dir.path()).expect("open");
    store.upsert(mp("a", "1")).expect("save");
    store.upsert(mp("b", "2")).expect("save");
    store.upsert(mp("c", "3")).expect("save");
    store.mark_expired("c", "200003");
    let t0 = Utc::now();
    let picks: Vec<String> = (0..4)
        .map(|i| {
            store
                .pick(LoginKind::Mp, t0 + Duration::seconds(i))
                .expect("usable")
                .id
        })
        .collect();
    assert_eq!(picks, ["a", "b", "a", "b"]);
    assert!(store.pick(LoginKind::Weread, t0).is_none());

    store.mark_cooling("a", t0 + Duration::seconds(100), "200013 freq control");
    for i in 10..13 {
        let l = store
            .pick(LoginKind::Mp, t0 + Duration::seconds(i))
            .expect("b");
        assert_eq!(l.id, "b", "a cooling login is skipped");
    }
    assert!(store.any_usable(LoginKind::Mp, t0 + Duration::seconds(20)));
    store.mark_expired("b", "200040");
    assert!(!store.any_usable(LoginKind::Mp, t0 + Duration::seconds(20)));
    assert!(
        store
            .pick(LoginKind::Mp, t0 + Duration::seconds(20))
            .is_none()
    );
    assert_eq!(
        store.next_cooldown_end(LoginKind::Mp),
        Some(t0 + Duration::seconds(100))
    );
    // After the cooldown it serves again, and is valid.
    let back = store
        .pick(LoginKind::Mp, t0 + Duration::seconds(101))
        .expect("a is back");
    assert_eq!((back.id.as_str(), back.state), ("a", LoginState::Valid));
    // A login past its known expiry is expired, whatever its state said.
    let mut d = mp("d", "4");
    d.expires_at = Some(t0 + Duration::seconds(200));
    store.upsert(d).expect("save");
    store.pick(LoginKind::Mp, t0 + Duration::seconds(300));
    assert_eq!(store.get("d").expect("d").state, LoginState::Expired);
}

#[test]
fn old_config_keys_become_one_mp_login() {
    let dir = tempfile::tempdir().expect("dir");
    let token = Secret::new("12345");
    let cookie = Secret::new("slave_sid=abc; slave_user=gh_1; bizuin=9");
    let store = LoginStore::open(dir.path()).expect("open");
    store.adopt_config(&token, &cookie);
    store.adopt_config(&token, &cookie);
    let views = store.views();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].id, CONFIG_MP_ID);
    assert_eq!(views[0].kind, LoginKind::Mp);
    let l = store.get(CONFIG_MP_ID).expect("login");
    assert_eq!(l.secrets.token, Some(token.clone()));
    assert_eq!(l.secrets.cookie_header(), cookie);
    assert!(!store.path().exists(), "adopting keys alone writes nothing");

    // Its state survives a restart with the same keys; new keys make it valid again.
    store.mark_expired(CONFIG_MP_ID, "200003");
    let again = LoginStore::open(dir.path()).expect("reopen");
    again.adopt_config(&token, &cookie);
    assert_eq!(
        again.get(CONFIG_MP_ID).expect("l").state,
        LoginState::Expired
    );
    again.adopt_config(&Secret::new("999"), &cookie);
    assert_eq!(again.get(CONFIG_MP_ID).expect("l").state, LoginState::Valid);
    assert_eq!(again.views().len(), 1);

    // Empty keys add nothing.
    let empty = LoginStore::open(&dir.path().join("other")).expect("open");
    empty.adopt_config(&Secret::default(), &Secret::default());
    assert!(empty.views().is_empty());
}

#[test]
fn secrets_never_show_in_debug_or_views() {
    let l = mp("a", "VERY-SECRET-SID");
    let debug = format!("{l:?}");
    assert!(!debug.contains("VERY-SECRET-SID"), "{debug}");
    let view = serde_json::to_string(&l.view()).expect("json");
    assert!(
        !view.contains("VERY-SECRET-SID") && !view.contains("tok-"),
        "{view}"
    );
    assert!(view.contains(r#""kind":"mp""#) && view.contains(r#""state":"valid""#));
}

#[test]
fn logins_another_process_saved_are_taken_over_not_overwritten() {
    let dir = tempfile::tempdir().expect("dir");
    let running = LoginStore::open(dir.path()).expect("open");
    running.upsert(mp("a", "1")).expect("save");
    running.upsert(mp("gone", "2")).expect("save");
    // Another process (`cascade child login`) adds one, replaces one, removes one.
    let other = LoginStore::open(dir.path()).expect("open");
    other.upsert(mp("b", "3")).expect("save");
    other.upsert(mp("a", "new-a")).expect("save");
    assert!(other.remove("gone").expect("removed"));
    // The running child writes a state change of its own: nothing of the other's is lost.
    running.mark_error("a", "network");
    let again = LoginStore::open(dir.path()).expect("reopen");
    let mut ids: Vec<String> = again.views().into_iter().map(|v| v.id).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(
        again.get("a").expect("a").secrets.cookie("slave_sid"),
        Some(&Secret::new("new-a"))
    );
    // A reload alone makes the new login usable in the running process.
    other.upsert(mp("c", "4")).expect("save");
    running.reload().expect("reload");
    assert!(running.get("c").is_some());
    assert_eq!(running.views().len(), 3);
    // And the running process's own removal sticks.
    assert!(running.remove("c").expect("removed"));
    running.reload().expect("reload");
    assert!(running.get("c").is_none());
    assert!(
        LoginStore::open(dir.path())
            .expect("open")
            .get("c")
            .is_none()
    );
}

#[test]
fn concurrent_reservations_never_pass_the_caps_and_survive_a_reopen() {
    use super::budget::{Budgets, Caps};
    let dir = tempfile::tempdir().expect("dir");
    let caps = Budgets {
        mp: Caps {
            per_hour: 3,
            per_day: 4,
        },
        weread: Caps::default(),
    };
    let now = Utc::now();
    let store = std::sync::Arc::new(LoginStore::open(dir.path()).expect("open"));
    store.set_budgets(caps);
    store.upsert(mp("a", "SID-A")).expect("save");
    store.upsert(mp("b", "SID-B")).expect("save");
    let granted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let store = store.clone();
                s.spawn(move || store.reserve("a", now).is_ok())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().expect("thread")))
            .sum()
    });
    assert_eq!(granted, 3, "the hourly cap holds under concurrency");
    assert_eq!(store.reserve("a", now), Err(now + Duration::hours(1)));
    assert_eq!(
        store.pick(LoginKind::Mp, now).map(|l| l.id),
        Some("b".into()),
        "the spent login is skipped"
    );
    assert!(store.any_usable(LoginKind::Mp, now));
    let views = store.views_at(now);
    let a = views.iter().find(|v| v.id == "a").expect("a");
    let budget = a.budget.clone().expect("capped kind");
    assert_eq!((budget.hour_left, budget.day_left), (Some(0), Some(1)));
    assert_eq!(budget.resets_at, Some(now + Duration::hours(1)));
    drop(store);

    let again = LoginStore::open(dir.path()).expect("reopen");
    again.set_budgets(caps);
    let later = now + Duration::minutes(61);
    assert_eq!(again.get("a").expect("a").spent.len(), 3);
    assert_eq!(
        again.reserve("a", later),
        Ok(()),
        "the hour freed, the day has one"
    );
    assert_eq!(
        again.reserve("a", later),
        Err(now + Duration::hours(24)),
        "the day is spent"
    );
    assert_eq!(
        again.next_budget_free(LoginKind::Mp, later),
        None,
        "b has room"
    );
    let uncapped = LoginStore::open(&dir.path().join("other")).expect("open");
    uncapped.upsert(mp("c", "SID-C")).expect("save");
    for _ in 0..50 {
        assert_eq!(uncapped.reserve("c", now), Ok(()));
    }
    assert!(
        uncapped.get("c").expect("c").spent.is_empty(),
        "no caps, no count"
    );
}
