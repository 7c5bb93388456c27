//! WeRead login against the fake WeRead (LOGINS.md §2): the QR flow with every `logicCode`,
//! the 4-digit code, QR refresh, single flight, and `wr_skey` renewal with its refusals.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use werss_cascade::config::CascadeConfig;
use werss_cascade::logins::weread::{
    self, LoginError, LoginOptions, OtpAsk, Progress, RenewOutcome, TimeoutMeans, WereadJar,
    WereadLogin,
};
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::testkit::weread::{FakeWeread, RenewFault};

/// Guard against a hung flow; never a speed assertion.
const HANG: Duration = Duration::from_secs(20);

fn config(fake: &FakeWeread) -> CascadeConfig {
    CascadeConfig {
        weread_base_url: fake.base_url().to_string(),
        ..CascadeConfig::default()
    }
}

fn options(fake: &FakeWeread) -> LoginOptions {
    let mut o = LoginOptions::from_config(&config(fake)).expect("valid settings");
    o.qr_lifetime = Duration::from_secs(30);
    o.poll_timeout = Duration::from_secs(5);
    o.min_poll_interval = Duration::from_millis(10);
    o
}

type Asks = Arc<Mutex<Vec<OtpAsk>>>;

/// Starts a login in the background; its progress arrives on the receiver. `codes` answers the
/// 4-digit prompts in order (`None` = the code the fake shows now).
fn start(
    fake: &FakeWeread,
    opts: LoginOptions,
    codes: Vec<Option<&'static str>>,
) -> (
    tokio::task::JoinHandle<Result<WereadLogin, LoginError>>,
    mpsc::UnboundedReceiver<Progress>,
    Asks,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let asks: Asks = Arc::default();
    let fake = fake.clone();
    let seen = asks.clone();
    let task = tokio::spawn(async move {
        let http = crate::helpers::http_client();
        let progress = move |p: &Progress| {
            let _ = tx.send(p.clone());
        };
        let codes = Arc::new(Mutex::new(codes.into_iter()));
        let otp = move |ask: OtpAsk| {
            seen.lock().expect("asks").push(ask);
            let next = codes.lock().expect("codes").next();
            let fake = fake.clone();
            async move {
                match next {
                    Some(Some(code)) => Some(code.to_string()),
                    Some(None) => fake.otp_code(),
                    None => None,
                }
            }
        };
        weread::login_with(&http, &opts, &progress, otp).await
    });
    (task, rx, asks)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Progress>) -> Progress {
    tokio::time::timeout(HANG, rx.recv())
        .await
        .expect("progress within the guard")
        .expect("flow still running")
}

async fn qr(rx: &mut mpsc::UnboundedReceiver<Progress>) -> (String, u32) {
    loop {
        if let Progress::Qr { text, number, .. } = next(rx).await {
            return (text, number);
        }
    }
}

async fn finish(
    task: tokio::task::JoinHandle<Result<WereadLogin, LoginError>>,
) -> Result<WereadLogin, LoginError> {
    tokio::time::timeout(HANG, task)
        .await
        .expect("flow ends within the guard")
        .expect("flow task")
}

async fn control(fake: &FakeWeread, action: &str) -> Value {
    let resp = crate::helpers::http_client()
        .post(format!("{}/__fake/weread/{action}", fake.base_url()))
        .send()
        .await
        .expect("control route");
    assert_eq!(resp.status(), 200, "control {action}");
    resp.json().await.expect("control JSON")
}

/// A logged-in session, confirmed at once.
pub(crate) async fn logged_in(fake: &FakeWeread) -> WereadLogin {
    let (task, mut rx, _) = start(fake, options(fake), vec![]);
    qr(&mut rx).await;
    fake.confirm();
    finish(task).await.expect("logged in")
}

/// `errCode` of the authenticated data endpoint with `jar` (0 = a list came back).
async fn articles(fake: &FakeWeread, jar: &WereadJar) -> i64 {
    let http = crate::helpers::http_client();
    let req = http.get(format!(
        "{}/web/mp/articles?bookId=MP_WXS_3286016687",
        fake.base_url()
    ));
    let v: Value = weread::authenticated(req, fake.base_url(), jar)
        .send()
        .await
        .expect("articles")
        .json()
        .await
        .expect("JSON");
    match weread::error_envelope(&v) {
        Some((code, _)) => code,
        None => {
            assert!(v["reviews"].is_array(), "{v}");
            0
        }
    }
}

fn cookie(jar: &WereadJar, name: &str) -> String {
    jar.get(name)
        .map(Secret::expose)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn qr_login_yields_the_jar_and_the_account_name() {
    let fake = FakeWeread::start().await.expect("fake");
    fake.set_nickname("书虫");
    let (task, mut rx, asks) = start(&fake, options(&fake), vec![]);
    let (text, number) = qr(&mut rx).await;
    assert_eq!(number, 1);
    let uid = fake.current_uid().expect("uid issued");
    assert_eq!(text, format!("https://weread.qq.com/web/confirm?uid={uid}"));
    control(&fake, "scan").await;
    assert_eq!(next(&mut rx).await, Progress::Scanned);
    control(&fake, "confirm").await;
    let login = finish(task).await.expect("logged in");

    assert_eq!(login.account_name, "书虫");
    assert!(asks.lock().expect("asks").is_empty(), "no code asked");
    let jar = &login.cookies;
    assert_eq!(cookie(jar, "wr_vid"), login.vid);
    assert_eq!(Some(cookie(jar, "wr_skey")), fake.skey(&login.vid));
    let rt = cookie(jar, "wr_rt");
    assert!(rt.contains("%2F") && rt.contains("%2B"), "encoded: {rt}");
    assert!(!rt.contains("%25"), "encoded once, not twice: {rt}");
    assert_eq!(cookie(jar, "wr_ql"), "0");
    assert_eq!(
        cookie(jar, "wr_gid"),
        login.vid,
        "cookies WeRead set are kept"
    );
    assert!(login.skey_expires_at > login.logged_in_at);
    assert!(login.rt_expires_at > login.skey_expires_at);
    assert_eq!(articles(&fake, jar).await, 0, "the jar is accepted");

    // No secret in any Debug output.
    let debug = format!("{login:?}");
    for secret in [cookie(jar, "wr_skey"), rt] {
        assert!(!debug.contains(&secret), "{debug}");
    }
    assert_eq!(
        next(&mut rx).await,
        Progress::LoggedIn {
            account_name: "书虫".into()
        }
    );
}

#[tokio::test]
async fn success_under_data_is_read_too() {
    let fake = FakeWeread::start().await.expect("fake");
    fake.success_under_data(true);
    let login = logged_in(&fake).await;
    assert_eq!(
        Some(cookie(&login.cookies, "wr_skey")),
        fake.skey(&login.vid)
    );
}

#[tokio::test]
async fn need_otp_asks_for_the_code_and_a_wrong_one_is_asked_again() {
    let fake = FakeWeread::start().await.expect("fake");
    let (task, mut rx, asks) = start(&fake, options(&fake), vec![Some("0000"), None]);
    qr(&mut rx).await;
    fake.scan();
    let shown = control(&fake, "otp").await;
    assert_eq!(
        shown["otp"].as_str().map(str::len),
        Some(4),
        "the control route shows the code: {shown}"
    );
    let login = finish(task).await.expect("logged in with the code");
    assert_eq!(
        *asks.lock().expect("asks"),
        vec![OtpAsk::First, OtpAsk::WrongCode]
    );
    assert_eq!(articles(&fake, &login.cookies).await, 0);
}

#[tokio::test]
async fn an_expired_code_asks_for_the_new_one() {
    let fake = FakeWeread::start().await.expect("fake");
    fake.require_otp(true);
    let (task, mut rx, asks) = start(&fake, options(&fake), vec![None, None]);
    qr(&mut rx).await;
    fake.expire_otp();
    assert!(fake.confirm().is_some(), "confirming shows a code");
    finish(task).await.expect("logged in with the new code");
    assert_eq!(
        *asks.lock().expect("asks"),
        vec![OtpAsk::First, OtpAsk::CodeExpired]
    );
}

#[tokio::test]
async fn wrong_codes_are_bounded_and_a_missing_code_ends_the_flow() {
    let fake = FakeWeread::start().await.expect("fake");
    fake.require_otp(true);
    let (task, mut rx, asks) = start(
        &fake,
        options(&fake),
        vec![Some("0000"), Some("12"), Some("0001"), None],
    );
    qr(&mut rx).await;
    fake.confirm();
    let err = finish(task).await.expect_err("rejected");
    assert!(matches!(err, LoginError::OtpRejected { tries: 3 }), "{err}");
    assert_eq!(asks.lock().expect("asks").len(), 3, "bounded at 3 codes");

    let (task, mut rx, _) = start(&fake, options(&fake), vec![]);
    qr(&mut rx).await;
    fake.confirm();
    let err = finish(task).await.expect_err("no code");
    assert!(matches!(err, LoginError::OtpNotGiven), "{err}");
    assert!(err.to_string().contains("4-digit code"), "{err}");
}

#[tokio::test]
async fn login_cancel_is_a_clear_error() {
    let fake = FakeWeread::start().await.expect("fake");
    // Through the CLI's entry point, with the child's settings.
    let config = config(&fake);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let progress = move |p: &Progress| {
            let _ = tx.send(p.clone());
        };
        weread::login(&config, &progress, |_| async { None }).await
    });
    qr(&mut rx).await;
    control(&fake, "scan").await;
    control(&fake, "cancel").await;
    let err = finish(task).await.expect_err("cancelled");
    assert!(matches!(err, LoginError::Cancelled), "{err}");
    assert_eq!(
        err.to_string(),
        "the WeRead login was cancelled on the phone"
    );
}

#[tokio::test]
async fn login_timeout_as_retry_polls_the_same_code_again() {
    let fake = FakeWeread::start().await.expect("fake");
    let opts = options(&fake);
    assert_eq!(opts.timeout_means, TimeoutMeans::Retry, "the default");
    let (task, mut rx, _) = start(&fake, opts, vec![]);
    qr(&mut rx).await;
    control(&fake, "timeout").await;
    fake.scan();
    fake.confirm();
    finish(task).await.expect("logged in on the same code");
    assert_eq!(fake.uids_issued(), 1);
    let mut rest = Vec::new();
    while let Ok(p) = rx.try_recv() {
        rest.push(p);
    }
    assert!(
        !rest.iter().any(|p| matches!(p, Progress::QrExpired { .. })),
        "{rest:?}"
    );
}

#[tokio::test]
async fn login_timeout_as_expired_shows_a_new_code() {
    let fake = FakeWeread::start().await.expect("fake");
    let mut c = config(&fake);
    c.weread_login_timeout_means = "expired".into();
    let mut opts = LoginOptions::from_config(&c).expect("valid");
    opts.min_poll_interval = Duration::from_millis(10);
    assert_eq!(opts.timeout_means, TimeoutMeans::Expired);
    let (task, mut rx, _) = start(&fake, opts, vec![]);
    qr(&mut rx).await;
    let first = fake.current_uid();
    fake.login_timeout();
    assert_eq!(next(&mut rx).await, Progress::QrExpired { number: 1 });
    let (text, number) = qr(&mut rx).await;
    assert_eq!(number, 2);
    let second = fake.current_uid();
    assert_ne!(first, second);
    assert!(text.ends_with(&second.expect("uid")));
    fake.scan();
    fake.confirm();
    finish(task).await.expect("logged in on the second code");
    assert_eq!(fake.uids_issued(), 2);
}

#[tokio::test]
async fn an_unscanned_code_is_replaced_after_our_deadline_then_the_flow_gives_up() {
    let fake = FakeWeread::start().await.expect("fake");
    let mut opts = options(&fake);
    opts.qr_lifetime = Duration::from_millis(700);
    opts.max_qr_codes = 2;
    let (task, mut rx, _) = start(&fake, opts.clone(), vec![]);
    assert_eq!(qr(&mut rx).await.1, 1);
    assert_eq!(next(&mut rx).await, Progress::QrExpired { number: 1 });
    assert_eq!(qr(&mut rx).await.1, 2);
    fake.scan();
    fake.confirm();
    finish(task).await.expect("the refreshed code logs in");
    assert_eq!(fake.uids_issued(), 2);

    let (task, _rx, _) = start(&fake, opts, vec![]);
    let err = finish(task).await.expect_err("nobody scanned");
    assert!(matches!(err, LoginError::QrExpired { codes: 2 }), "{err}");
    assert!(err.to_string().contains("run the login again"), "{err}");
    assert_eq!(fake.uids_issued(), 4);
}

#[tokio::test]
async fn a_few_network_errors_while_polling_are_survived_more_are_not() {
    let fake = FakeWeread::start().await.expect("fake");
    // Queued before the flow starts: its first three polls fail.
    for _ in 0..3 {
        fake.inject_poll_fault(502);
    }
    let (task, mut rx, _) = start(&fake, options(&fake), vec![]);
    qr(&mut rx).await;
    fake.confirm();
    finish(task).await.expect("logged in despite three 502s");

    for _ in 0..4 {
        fake.inject_poll_fault(503);
    }
    let (task, mut rx, _) = start(&fake, options(&fake), vec![]);
    qr(&mut rx).await;
    let err = finish(task).await.expect_err("four in a row");
    assert!(matches!(err, LoginError::Network(_)), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn a_second_flow_for_the_same_login_is_refused() {
    let fake = FakeWeread::start().await.expect("fake");
    let (task, mut rx, _) = start(&fake, options(&fake), vec![]);
    qr(&mut rx).await;
    let (second, _rx2, _) = start(&fake, options(&fake), vec![]);
    let err = finish(second).await.expect_err("single flight");
    assert!(matches!(err, LoginError::InProgress(_)), "{err}");
    assert_eq!(
        fake.uids_issued(),
        1,
        "the second flow asked WeRead nothing"
    );
    fake.confirm();
    finish(task).await.expect("the first flow finishes");
    // Once it is done, a new flow may start.
    logged_in(&fake).await;
}

#[tokio::test]
async fn renewal_rotates_wr_skey_and_requests_keep_working_without_a_scan() {
    let fake = FakeWeread::start().await.expect("fake");
    let login = logged_in(&fake).await;
    let http = crate::helpers::http_client();
    let old = login.cookies.clone();
    fake.expire_skey(&login.vid);
    assert_eq!(articles(&fake, &old).await, -2012, "the key lapsed");

    let RenewOutcome::Renewed {
        jar,
        skey_expires_at,
    } = weread::renew(&http, fake.base_url(), &old)
        .await
        .expect("renewal answered")
    else {
        panic!("renewed");
    };
    assert!(skey_expires_at > login.logged_in_at);
    assert_ne!(cookie(&jar, "wr_skey"), cookie(&old, "wr_skey"));
    assert_eq!(Some(cookie(&jar, "wr_skey")), fake.skey(&login.vid));
    for kept in ["wr_vid", "wr_rt", "wr_ql", "wr_gid"] {
        assert_eq!(cookie(&jar, kept), cookie(&old, kept), "{kept} kept");
    }
    assert_eq!(articles(&fake, &jar).await, 0, "the new key works");
    assert_eq!(articles(&fake, &old).await, -2012, "a lapsed key stays so");

    // A live key keeps working for the grace period after rotation, then not.
    let RenewOutcome::Renewed { jar: newer, .. } = weread::renew(&http, fake.base_url(), &jar)
        .await
        .expect("renewal answered")
    else {
        panic!("renewed again");
    };
    assert_eq!(articles(&fake, &jar).await, 0, "old key within grace");
    assert_eq!(articles(&fake, &newer).await, 0);
    fake.end_grace(&login.vid);
    assert_eq!(articles(&fake, &jar).await, -2012, "old key after grace");
    assert_eq!(articles(&fake, &newer).await, 0);
    assert_eq!(fake.renewals(), 2);
}

#[tokio::test]
async fn a_renewal_without_a_new_key_keeps_the_good_jar() {
    let fake = FakeWeread::start().await.expect("fake");
    let login = logged_in(&fake).await;
    let http = crate::helpers::http_client();
    let jar = login.cookies.clone();
    for fault in [RenewFault::ClearingCookie, RenewFault::NoSetCookie] {
        fake.inject_renewal(fault);
        let outcome = weread::renew(&http, fake.base_url(), &jar)
            .await
            .expect("renewal answered");
        assert_eq!(outcome, RenewOutcome::Unconfirmed, "{fault:?}");
        assert_eq!(
            articles(&fake, &jar).await,
            0,
            "jar still good after {fault:?}"
        );
    }
    assert_eq!(fake.renewals(), 0);
    let outcome = weread::renew(&http, fake.base_url(), &jar)
        .await
        .expect("renewal answered");
    assert!(matches!(outcome, RenewOutcome::Renewed { .. }));
}

#[tokio::test]
async fn an_expired_refresh_token_needs_a_scan() {
    let fake = FakeWeread::start().await.expect("fake");
    let login = logged_in(&fake).await;
    fake.expire_rt(&login.vid);
    let outcome = weread::renew(
        &crate::helpers::http_client(),
        fake.base_url(),
        &login.cookies,
    )
    .await
    .expect("renewal answered");
    assert!(
        matches!(outcome, RenewOutcome::ScanNeeded { .. }),
        "{outcome:?}"
    );
    let debug = format!("{outcome:?}");
    assert!(!debug.contains(&cookie(&login.cookies, "wr_skey")));
}

#[tokio::test]
async fn renewal_is_refused_on_a_ql_mismatch_or_without_the_jar() {
    let fake = FakeWeread::start().await.expect("fake");
    let login = logged_in(&fake).await;
    let http = crate::helpers::http_client();
    // No wr_ql cookie: the body's `ql:false` matches nothing.
    let no_ql = WereadJar::from_pairs(
        login
            .cookies
            .pairs()
            .iter()
            .filter(|(n, _)| n != "wr_ql")
            .cloned(),
    );
    let outcome = weread::renew(&http, fake.base_url(), &no_ql)
        .await
        .expect("renewal answered");
    assert!(
        matches!(outcome, RenewOutcome::Refused { code: -2013, .. }),
        "{outcome:?}"
    );
    let no_rt = WereadJar::from_pairs(
        login
            .cookies
            .pairs()
            .iter()
            .filter(|(n, _)| n != "wr_rt")
            .cloned(),
    );
    let outcome = weread::renew(&http, fake.base_url(), &no_rt)
        .await
        .expect("renewal answered");
    assert!(
        matches!(outcome, RenewOutcome::Refused { code: -2013, .. }),
        "{outcome:?}"
    );
    assert_eq!(articles(&fake, &login.cookies).await, 0, "nothing changed");
    // With the check switched off the same jar renews.
    fake.strict_ql(false);
    let outcome = weread::renew(&http, fake.base_url(), &no_ql)
        .await
        .expect("renewal answered");
    assert!(matches!(outcome, RenewOutcome::Renewed { .. }));
}

/// `cascade child login --kind weread` through the binary: the QR text is drawn, the phone's
/// 4-digit code is typed on stdin, and the login is saved in the child's store.
#[tokio::test]
async fn child_login_weread_draws_the_qr_asks_the_code_and_saves_the_login() {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncWriteExt;
    let fake = FakeWeread::start().await.expect("fake");
    fake.set_nickname("Reader One");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("child.yaml"),
        format!("cascade:\n  weread_base_url: {}\n", fake.base_url()),
    )
    .expect("config");
    let mut child = crate::helpers::process::cascade_cmd(dir.path())
        .args([
            "child",
            "login",
            "--config",
            "child.yaml",
            "--kind",
            "weread",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let shown = async {
        while fake.uids_issued() == 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), shown)
        .await
        .expect("a QR code was asked for");
    assert!(fake.scan());
    let code = fake.confirm_with_otp().expect("the phone shows a code");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{code}\n").as_bytes())
        .await
        .expect("code typed");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("ends")
        .expect("exit status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains('█'), "a QR code in blocks: {stdout}");
    assert!(stderr.contains("4-digit code"), "{stderr}");
    assert!(
        stdout.contains("logged in: weread Reader One, expires "),
        "{stdout}"
    );
    let file = dir.path().join("data/logins.json");
    let mode = std::fs::metadata(&file)
        .expect("saved")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored = std::fs::read_to_string(&file).expect("readable");
    assert!(
        stored.contains("weread-reader-one") && stored.contains("wr_skey"),
        "{stored}"
    );
    assert!(!stdout.contains("wr_skey") && !stderr.contains("wr_skey"));
}

mod keeper {
    //! The login keeper (issue 12 §4) with a real store file and the fake WeRead, driven by
    //! an injected `now`.

    use super::{HANG, articles, cookie, logged_in};
    use chrono::{DateTime, TimeDelta, Utc};
    use std::sync::Arc;
    use std::time::Duration;
    use werss_cascade::logins::keeper::Keeper;
    use werss_cascade::logins::weread::{RenewalSchedule, WereadJar};
    use werss_cascade::logins::{Login, LoginKind, LoginSecrets, LoginState, LoginStore};
    use werss_cascade::testkit::weread::{FakeWeread, RenewFault};

    const ID: &str = "weread-reader";

    /// A store in a temp dir holding the fake's logged-in session, renewed at `t0`, its
    /// refresh token good for 30 days.
    async fn stored(fake: &FakeWeread, t0: DateTime<Utc>) -> (tempfile::TempDir, String) {
        let login = logged_in(fake).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = LoginStore::open(dir.path()).expect("store");
        let secrets = LoginSecrets {
            token: None,
            cookies: login.cookies.pairs().to_vec(),
        };
        let mut l = Login::new(ID, LoginKind::Weread, "reader", secrets);
        l.expires_at = Some(t0 + TimeDelta::days(30));
        l.renewed_at = Some(t0);
        store.upsert(l).expect("saved");
        (dir, login.vid)
    }

    fn keeper(fake: &FakeWeread, store: &Arc<LoginStore>) -> Keeper {
        Keeper::with_schedule(
            store.clone(),
            crate::helpers::http_client(),
            fake.base_url(),
            RenewalSchedule::new(Duration::from_secs(3600)),
        )
    }

    /// The login as the store file has it (a fresh read).
    fn on_disk(dir: &tempfile::TempDir) -> Login {
        LoginStore::open(dir.path())
            .expect("store")
            .get(ID)
            .expect("login in the file")
    }

    fn jar(l: &Login) -> WereadJar {
        WereadJar::from_pairs(l.secrets.cookies.iter().cloned())
    }

    #[tokio::test]
    async fn keeper_renews_wr_skey_into_the_store_file_and_marks_an_ended_login_expired() {
        let fake = FakeWeread::start().await.expect("fake");
        let t0 = Utc::now();
        let (dir, vid) = stored(&fake, t0).await;
        let store = Arc::new(LoginStore::open(dir.path()).expect("store"));
        let old = cookie(&jar(&on_disk(&dir)), "wr_skey");
        let mut keeper = keeper(&fake, &store);

        // Not due yet: nothing is sent; the keeper sleeps until the renewal.
        let next = keeper.tick(t0 + TimeDelta::minutes(30)).await;
        assert_eq!(next, Some(t0 + TimeDelta::hours(1)));
        assert_eq!(fake.renewals(), 0);

        // Due: renewed without a scan, the rotated key is in the file at once.
        fake.expire_skey(&vid);
        let t1 = t0 + TimeDelta::hours(1);
        let next = keeper.tick(t1).await;
        assert_eq!(fake.renewals(), 1);
        assert_eq!(next, Some(t1 + TimeDelta::hours(1)));
        let saved = on_disk(&dir);
        let new = cookie(&jar(&saved), "wr_skey");
        assert_ne!(new, old);
        assert_eq!(Some(new), fake.skey(&vid));
        assert_eq!(saved.renewed_at, Some(t1));
        assert_eq!(saved.state, LoginState::Valid);
        assert_eq!(articles(&fake, &jar(&saved)).await, 0, "the new jar works");
        for kept in ["wr_vid", "wr_rt"] {
            assert_eq!(
                cookie(&jar(&saved), kept),
                cookie(&jar(&store.get(ID).expect("login")), kept)
            );
        }

        // The refresh token ends: the next renewal marks the login expired.
        fake.expire_rt(&vid);
        let next = keeper.tick(t1 + TimeDelta::hours(1)).await;
        assert_eq!(next, None, "nothing left to do for an expired login");
        let saved = on_disk(&dir);
        assert_eq!(saved.state, LoginState::Expired);
        assert!(
            saved
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("-12013")),
            "{:?}",
            saved.last_error
        );
        let view = store
            .views()
            .into_iter()
            .find(|v| v.id == ID)
            .expect("view");
        assert_eq!(view.state, LoginState::Expired, "what heartbeats carry");
        // An expired login is not renewed again.
        keeper.tick(t1 + TimeDelta::hours(3)).await;
        assert_eq!(fake.renewals(), 1);
    }

    #[tokio::test]
    async fn a_refused_renewal_keeps_the_jar_and_retries_with_backoff() {
        let fake = FakeWeread::start().await.expect("fake");
        let t0 = Utc::now();
        let (dir, vid) = stored(&fake, t0).await;
        let store = Arc::new(LoginStore::open(dir.path()).expect("store"));
        let before = on_disk(&dir).secrets;
        let mut keeper = keeper(&fake, &store);

        fake.inject_renewal(RenewFault::NoSetCookie);
        fake.inject_renewal(RenewFault::ClearingCookie);
        let t1 = t0 + TimeDelta::hours(1);
        assert_eq!(keeper.tick(t1).await, Some(t1 + TimeDelta::minutes(1)));
        let saved = on_disk(&dir);
        assert_eq!(saved.secrets, before, "the jar is kept");
        assert_eq!(saved.state, LoginState::Valid);
        assert!(saved.last_error.is_some());
        // Before the retry is due nothing is sent; the second failure waits twice as long.
        let t2 = t1 + TimeDelta::minutes(1);
        assert_eq!(keeper.tick(t2).await, Some(t2 + TimeDelta::minutes(2)));
        assert_eq!(on_disk(&dir).secrets, before);
        // The third try renews.
        let t3 = t2 + TimeDelta::minutes(2);
        assert_eq!(keeper.tick(t3).await, Some(t3 + TimeDelta::hours(1)));
        let saved = on_disk(&dir);
        assert_eq!(Some(cookie(&jar(&saved), "wr_skey")), fake.skey(&vid));
        assert_eq!(saved.last_error, None);
        assert_eq!(fake.renewals(), 1);
    }

    #[tokio::test]
    async fn logins_near_or_past_their_expiry_become_expiring_or_expired_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(LoginStore::open(dir.path()).expect("store"));
        let now = Utc::now();
        for (id, ends) in [
            ("soon", now + TimeDelta::hours(23)),
            ("past", now - TimeDelta::seconds(1)),
            ("later", now + TimeDelta::hours(48)),
        ] {
            let mut l = Login::new(id, LoginKind::Mp, id, LoginSecrets::default());
            l.expires_at = Some(ends);
            store.upsert(l).expect("saved");
        }
        let mut keeper = Keeper::with_schedule(
            store.clone(),
            crate::helpers::http_client(),
            "http://127.0.0.1:9",
            RenewalSchedule::new(Duration::from_secs(3600)),
        );
        let next = keeper.tick(now).await;
        // Next: "soon" reaches its expiry before "later" enters its last day.
        assert_eq!(next, Some(now + TimeDelta::hours(23)));
        let file = LoginStore::open(dir.path()).expect("store");
        let state = |id: &str| file.get(id).expect("login").state;
        assert_eq!(state("soon"), LoginState::Expiring);
        assert_eq!(state("past"), LoginState::Expired);
        assert_eq!(state("later"), LoginState::Valid);
        assert!(
            store.get("soon").expect("soon").usable(now),
            "expiring is usable"
        );
        // Each transition happens once: nothing changes on the next look.
        assert!(store.track_expiry(now).is_empty());

        let later = now + TimeDelta::hours(25);
        keeper.tick(later).await;
        let file = LoginStore::open(dir.path()).expect("store");
        assert_eq!(file.get("soon").expect("soon").state, LoginState::Expired);
        assert_eq!(
            file.get("later").expect("later").state,
            LoginState::Expiring
        );
    }

    #[tokio::test]
    async fn the_keeper_stops_on_shutdown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(LoginStore::open(dir.path()).expect("store"));
        let keeper = Keeper::with_schedule(
            store,
            crate::helpers::http_client(),
            "http://127.0.0.1:9",
            RenewalSchedule::new(Duration::from_secs(3600)),
        );
        let token = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(keeper.run(token.clone()));
        token.cancel();
        tokio::time::timeout(HANG, task)
            .await
            .expect("stopped within the guard")
            .expect("keeper task");
    }

    use crate::helpers::db::on_both;
    use crate::helpers::{TestParent, test_config};
    use serde_json::Value;
    use werss_cascade::child::Child;
    use werss_cascade::protocol::credentials::Secret;

    /// Polls the parent's `GET /logins` (bounded) until `done` holds.
    async fn until_listed(p: &TestParent, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let listed = p
            .poll_until("/logins", "the parent to list the logins", |l| {
                l.as_array().is_some_and(|l| done(l))
            })
            .await;
        listed.as_array().cloned().unwrap_or_default()
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_running_child_renews_its_weread_login_and_reports_expiring_and_expired(backend) {
            let p = TestParent::on(backend.clone()).await;
            let fake = FakeWeread::start().await.expect("fake");
            let (live, dead) = (logged_in(&fake).await, logged_in(&fake).await);
            fake.expire_rt(&dead.vid);
            let node = p.add_node("reader").await;
            let mut c = test_config(&p.dir);
            let data = p.dir.path().join("child-reader");
            c.cascade.data_dir = data.display().to_string();
            c.cascade.parent_api_url = p.url("");
            c.cascade.api_key = node.key.clone();
            c.cascade.api_secret = Secret::new(&node.secret);
            c.cascade.weread_base_url = fake.base_url().to_string();
            c.cascade.heartbeat_interval = 1;
            c.cascade.claim_wait = 1;
            c.cascade.shutdown_grace = 5;
            let store = LoginStore::open(&data).expect("store");
            let now = Utc::now();
            for (id, l) in [("weread-live", &live), ("weread-dead", &dead)] {
                let secrets = LoginSecrets { token: None, cookies: l.cookies.pairs().to_vec() };
                let mut login = Login::new(id, LoginKind::Weread, id, secrets);
                // Saved before this change: never renewed, so renewed at once.
                login.expires_at = Some(now + TimeDelta::hours(12));
                store.upsert(login).expect("saved");
            }
            let old = cookie(&live.cookies, "wr_skey");
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").run(stop.clone()));

            let listed = until_listed(&p, |l| {
                l.len() == 2 && l.iter().any(|x| x["state"] == "expired") && l.iter().any(|x| x["state"] == "expiring")
            })
            .await;
            let state = |id: &str| listed.iter().find(|x| x["login_id"] == id).expect("listed")["state"].clone();
            assert_eq!(state("weread-live"), "expiring");
            assert_eq!(state("weread-dead"), "expired");
            stop.cancel();
            tokio::time::timeout(HANG, running).await.expect("child stops").expect("joined").expect("child exits");

            let file = LoginStore::open(&data).expect("store");
            let saved = file.get("weread-live").expect("live");
            let new = cookie(&jar(&saved), "wr_skey");
            assert_ne!(new, old);
            assert_eq!(Some(new), fake.skey(&live.vid));
            assert_eq!(articles(&fake, &jar(&saved)).await, 0, "the renewed jar works");
            let dead = file.get("weread-dead").expect("dead");
            assert_eq!(dead.state, LoginState::Expired);
            assert!(dead.last_error.is_some_and(|e| e.contains("-12013")));
            assert_eq!(fake.renewals(), 1, "one renewal, no scan");
            fake.stop();
            p.shutdown().await;
        }
    }
}
