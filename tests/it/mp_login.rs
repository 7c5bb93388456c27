//! MP QR scan login (LOGINS.md §1) against the fake WeChat on loopback: the client's whole
//! flow, the new session on the list API, and `cascade child login` through the binary.

use crate::helpers::process::cascade_cmd;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use werss_cascade::fetch::pacer::Pacer;
use werss_cascade::fetch::wechat::WechatFetcher;
use werss_cascade::logins::mp_qr::{
    MpEvent, MpFlights, MpLogin, MpLoginError, MpQrClient, MpQrOptions,
};
use werss_cascade::logins::qr_term;
use werss_cascade::protocol::wire::PackageFeed;
use werss_cascade::testkit::wechat::{FakeAccount, FakeWechat, ScanAction};

fn options() -> MpQrOptions {
    MpQrOptions {
        poll_interval: Duration::from_millis(20),
        deadline: Duration::from_secs(60),
        ..MpQrOptions::default()
    }
}

async fn fake() -> (FakeWechat, FakeAccount) {
    let account = FakeAccount::generated(3_900_001, 3, 1_790_000_000);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake starts");
    (fake, account)
}

/// A flow running in the background, its events arriving on a channel.
struct Running {
    events: mpsc::UnboundedReceiver<MpEvent>,
    done: tokio::task::JoinHandle<Result<MpLogin, MpLoginError>>,
}

impl Running {
    fn start(fake: &FakeWechat, options: MpQrOptions) -> Self {
        let client = MpQrClient::new(fake.base_url(), options).expect("client");
        let (tx, events) = mpsc::unbounded_channel();
        let done = tokio::spawn(async move {
            let cancel = tokio_util::sync::CancellationToken::new();
            client
                .login(&cancel, &mut |e| {
                    let _ = tx.send(e);
                })
                .await
        });
        Self { events, done }
    }

    async fn next(&mut self) -> MpEvent {
        self.events.recv().await.expect("an event before the end")
    }

    /// The next event, which must be a QR code: the URL it encodes.
    async fn qr_url(&mut self) -> String {
        match self.next().await {
            MpEvent::Qr(image) => {
                assert!(image.starts_with(b"\x89PNG"), "a PNG");
                qr_term::decode_image(&image).expect("a readable QR code")
            }
            other => panic!("expected a QR code, got {other:?}"),
        }
    }

    async fn result(self) -> Result<MpLogin, MpLoginError> {
        self.done.await.expect("flow task")
    }
}

fn feed(account: &FakeAccount) -> PackageFeed {
    PackageFeed {
        id: format!("MP_WXS_{}", account.number),
        faker_id: Some(account.fakeid()),
        mp_name: account.nickname.clone(),
        mp_cover: None,
        mp_intro: None,
        status: 1,
        source: Some("wechat".into()),
        url: None,
        etag: None,
        last_modified: None,
        since: None,
        sources: None,
        backlog: None,
    }
}

fn fetcher(fake: &FakeWechat, login: &MpLogin) -> WechatFetcher {
    WechatFetcher::new(
        crate::helpers::http_client(),
        fake.base_url(),
        login.token.clone(),
        login.cookie_header(),
        Arc::new(Pacer::new(Duration::ZERO, Duration::ZERO)),
    )
}

#[tokio::test]
async fn a_scanned_and_confirmed_qr_gives_a_session_the_list_api_accepts_until_its_ttl() {
    let (fake, account) = fake().await;
    let ttl = Duration::from_secs(96 * 3600);
    fake.mp_login_settings(|s| {
        s.nickname = "Tech \"Daily\" 科技".into();
        s.session_ttl = ttl;
    });
    let mut flow = Running::start(&fake, options());
    let url = flow.qr_url().await;
    assert!(url.contains("/__fake/mp/scan?flow="), "{url}");

    // The phone opens the code's URL: scanned.
    let scanned = crate::helpers::http_client()
        .get(&url)
        .send()
        .await
        .expect("scan route");
    assert_eq!(scanned.status(), 200);
    assert_eq!(flow.next().await, MpEvent::Scanned);
    assert!(fake.mp_confirm());
    assert_eq!(flow.next().await, MpEvent::Confirmed);
    let login = flow.result().await.expect("logged in");

    assert!(
        !login.token.is_empty() && login.token.expose().chars().all(|c| c.is_ascii_digit()),
        "the token is the redirect_url's token parameter"
    );
    let names: Vec<&str> = login.cookies.iter().map(|(k, _)| k.as_str()).collect();
    for name in ["slave_sid", "slave_user", "bizuin", "data_ticket"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(
        !names.contains(&"uuid"),
        "the EXPIRED uuid cookie is dropped"
    );
    assert!(login.cookies.iter().all(|(_, v)| v.expose() != "EXPIRED"));
    let expected = chrono::Utc::now().naive_utc() + chrono::Duration::from_std(ttl).expect("ttl");
    let off = (login.expires_at - expected).num_seconds().abs();
    assert!(
        off <= 5,
        "expiry from slave_sid's Expires: {}",
        login.expires_at
    );
    assert_eq!(login.account_name, "Tech \"Daily\" 科技");

    // The new session works on the list API…
    let fetched = fetcher(&fake, &login)
        .fetch(&feed(&account))
        .await
        .expect("the list answers");
    assert_eq!(fetched.articles.len(), 3);
    // …until its TTL has passed on the platform's clock: 200003.
    fake.advance(ttl + Duration::from_secs(1));
    let err = fetcher(&fake, &login)
        .fetch(&feed(&account))
        .await
        .expect_err("expired");
    assert_eq!(err.reason(), "session_expired");
    let log = fake.log_for(login.token.expose());
    assert_eq!(
        log.iter().map(|e| e.outcome).collect::<Vec<_>>(),
        ["ok", "200003"]
    );
}

#[tokio::test]
async fn logout_ends_the_session() {
    let (fake, account) = fake().await;
    fake.mp_login_settings(|s| s.auto = Some((Duration::ZERO, ScanAction::Confirm)));
    let client = MpQrClient::new(fake.base_url(), options()).expect("client");
    let cancel = tokio_util::sync::CancellationToken::new();
    let login = client.login(&cancel, &mut |_| {}).await.expect("logged in");
    assert!(fetcher(&fake, &login).fetch(&feed(&account)).await.is_ok());
    client.logout(&login).await.expect("logout");
    let err = fetcher(&fake, &login)
        .fetch(&feed(&account))
        .await
        .expect_err("ended");
    assert_eq!(err.reason(), "session_expired");
}

#[tokio::test]
async fn an_expired_qr_is_replaced_by_a_new_one_and_the_login_then_succeeds() {
    let (fake, _) = fake().await;
    let mut flow = Running::start(&fake, options());
    let first = flow.qr_url().await;
    assert!(fake.mp_expire());
    assert_eq!(flow.next().await, MpEvent::Refreshed(1));
    let second = flow.qr_url().await;
    assert_ne!(first, second, "a new flow, a new code");
    assert_eq!(fake.mp_flows().1, 2, "started again");
    assert!(fake.mp_scan());
    assert_eq!(flow.next().await, MpEvent::Scanned);
    assert!(fake.mp_confirm());
    assert_eq!(flow.next().await, MpEvent::Confirmed);
    let login = flow.result().await.expect("logged in");
    assert_eq!(login.account_name, "Fake MP Account");
}

#[tokio::test]
async fn the_platforms_refusals_end_the_flow_with_a_clear_error() {
    let (fake, _) = fake().await;
    // Status 5: no bound email.
    let mut flow = Running::start(&fake, options());
    flow.qr_url().await;
    assert!(fake.mp_act(ScanAction::NoEmail));
    let err = flow.result().await.expect_err("refused");
    assert_eq!(err, MpLoginError::NoEmail);
    assert!(err.to_string().contains("no bound email"), "{err}");

    // Scanned by a WeChat user without an account (acct_size 0).
    let mut flow = Running::start(&fake, options());
    flow.qr_url().await;
    assert!(fake.mp_act(ScanAction::ScanWithoutAccount));
    let err = flow.result().await.expect_err("no account");
    assert_eq!(err, MpLoginError::NoAccount);
    assert!(err.to_string().contains("no MP account"), "{err}");

    // Expired (or cancelled) more often than refreshes are allowed.
    let mut flow = Running::start(
        &fake,
        MpQrOptions {
            max_refreshes: 1,
            ..options()
        },
    );
    flow.qr_url().await;
    assert!(fake.mp_cancel());
    assert_eq!(flow.next().await, MpEvent::Refreshed(1));
    flow.qr_url().await;
    assert!(fake.mp_expire());
    let err = flow.result().await.expect_err("gave up");
    assert_eq!(
        err,
        MpLoginError::QrExpired {
            status: 3,
            refreshes: 1
        }
    );

    // No scan at all: the flow's own deadline.
    let flow = Running::start(
        &fake,
        MpQrOptions {
            deadline: Duration::from_millis(300),
            ..options()
        },
    );
    assert_eq!(
        flow.result().await.expect_err("deadline"),
        MpLoginError::Timeout(0)
    );
}

#[tokio::test]
async fn the_fake_answers_json_for_a_qr_without_a_flow_and_the_client_rejects_it() {
    let (fake, _) = fake().await;
    let resp = crate::helpers::http_client()
        .get(format!(
            "{}/cgi-bin/scanloginqrcode?action=getqrcode&random=1",
            fake.base_url()
        ))
        .header("Referer", "https://mp.weixin.qq.com/")
        .header("User-Agent", werss_cascade::logins::mp_qr::USER_AGENT)
        .send()
        .await
        .expect("answer");
    let body = resp.bytes().await.expect("body");
    assert!(qr_term::sniff(&body).is_none(), "no image without a flow");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
    assert_ne!(json["base_resp"]["ret"], 0);
}

#[tokio::test]
async fn one_flow_runs_per_login_and_a_second_start_is_refused_until_it_ends() {
    let (fake, _) = fake().await;
    let flights = MpFlights::default();
    let client = MpQrClient::new(fake.base_url(), options()).expect("client");
    let (saved_tx, mut saved) = mpsc::unbounded_channel();
    let flow = flights
        .start("mp-1", client.clone(), move |r| {
            let _ = saved_tx.send(r.as_ref().map(|l| l.account_name.clone()).ok());
        })
        .expect("started");
    let mut events = flow.subscribe();
    let again = flights.start("mp-1", client.clone(), |_| {});
    assert!(
        matches!(again, Err(MpLoginError::AlreadyRunning(ref id)) if id == "mp-1"),
        "single flight"
    );
    let joined = flights.running("mp-1").expect("the running flow");
    // Another login id may run its own flow at the same time.
    let other = flights
        .start("mp-2", client.clone(), |_| {})
        .expect("another login");
    other.cancel();
    assert_eq!(other.wait().await, Err(MpLoginError::Cancelled));

    // The QR of mp-1 is visible to whoever joins late.
    loop {
        if joined.current_qr().is_some() {
            break;
        }
        events.recv().await.expect("event");
    }
    let url = qr_term::decode_image(&joined.current_qr().expect("qr")).expect("decodes");
    let flow_id: u64 = url.rsplit('=').next().expect("id").parse().expect("number");
    let scan = format!("{}/__fake/mp/confirm?flow={flow_id}", fake.base_url());
    assert_eq!(
        crate::helpers::http_client()
            .post(scan)
            .send()
            .await
            .expect("sent")
            .status(),
        200
    );
    let login = joined.wait().await.expect("logged in");
    assert_eq!(flow.wait().await.expect("same outcome"), login);
    assert_eq!(
        saved.recv().await.expect("on_done"),
        Some("Fake MP Account".into())
    );
    // Ended: a new flow for the same login may start.
    loop {
        if flights.running("mp-1").is_none() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let next = flights.start("mp-1", client, |_| {}).expect("restart");
    next.cancel();
}

fn child_yaml(dir: &tempfile::TempDir, fake: &FakeWechat, extra: &str) {
    std::fs::write(
        dir.path().join("child.yaml"),
        format!(
            "cascade:\n  enabled: True\n  node_type: child\n  wechat_base_url: {}\n  \
             login_poll_ms: 50\n{extra}",
            fake.base_url()
        ),
    )
    .expect("config written");
}

#[tokio::test]
async fn child_login_draws_the_qr_and_prints_the_account_and_expiry() {
    let (fake, _) = fake().await;
    fake.mp_login_settings(|s| {
        s.auto = Some((Duration::from_millis(100), ScanAction::Confirm));
        s.nickname = "Demo Account".into();
    });
    let dir = tempfile::tempdir().expect("temp dir");
    child_yaml(&dir, &fake, "");
    let out = cascade_cmd(dir.path())
        .args(["child", "login", "--config", "child.yaml", "--kind", "mp"])
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains('█') && (stdout.contains('▀') || stdout.contains('▄')),
        "a QR code in half blocks: {stdout}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("logged in: "))
        .unwrap_or_else(|| panic!("no logged-in line: {stdout}"));
    assert!(
        line.starts_with("logged in: mp Demo Account, expires "),
        "{line}"
    );
    let when = line.rsplit("expires ").next().expect("time");
    chrono::DateTime::parse_from_str(when, "%Y-%m-%d %H:%M:%S %:z")
        .unwrap_or_else(|e| panic!("a time with an offset: {when}: {e}"));
    assert!(!stdout.contains("slave_sid") && !stderr.contains("slave_sid"));
}

#[tokio::test]
async fn child_login_exits_non_zero_with_a_message_when_the_phone_cancels() {
    let (fake, _) = fake().await;
    fake.mp_login_settings(|s| s.auto = Some((Duration::from_millis(50), ScanAction::Cancel)));
    let dir = tempfile::tempdir().expect("temp dir");
    child_yaml(&dir, &fake, "  login_qr_refreshes: 0\n");
    let out = cascade_cmd(dir.path())
        .args(["child", "login", "--config", "child.yaml"])
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("MP login failed") && stderr.contains("cancelled on the phone"),
        "{stderr}"
    );
    assert!(!stdout.contains("logged in:"), "{stdout}");

    // No bound email: also a clear failure.
    fake.mp_login_settings(|s| s.auto = Some((Duration::from_millis(50), ScanAction::NoEmail)));
    let out = cascade_cmd(dir.path())
        .args(["child", "login", "--config", "child.yaml"])
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no bound email"), "{stderr}");
}

#[tokio::test]
async fn child_login_interrupted_while_waiting_for_the_scan_exits_non_zero() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let (fake, _) = fake().await;
    let dir = tempfile::tempdir().expect("temp dir");
    child_yaml(&dir, &fake, "");
    let mut child = cascade_cmd(dir.path())
        .args(["child", "login", "--config", "child.yaml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Wait until the QR code is on screen: the flow is polling for a scan.
    while let Some(line) = lines.next_line().await.expect("stdout line") {
        if line.contains('▀') || line.contains('▄') {
            break;
        }
    }
    let pid = child.id().expect("running").to_string();
    let sent = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr read");
    let status = child.wait().await.expect("exit status");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the login was cancelled"), "{stderr}");
    assert_eq!(fake.mp_flows(), (Some(0), 1), "never scanned, one flow");
}

#[tokio::test]
async fn each_call_is_bounded_and_a_few_failed_polls_are_tolerated() {
    let (fake, _) = fake().await;
    let bounded = MpQrOptions {
        step_timeout: Duration::from_secs(1),
        ..options()
    };
    // Two polls time out, the third is answered: the flow goes on to the login.
    fake.mp_login_settings(|s| s.slow_asks = (2, Duration::from_secs(30)));
    let mut flow = Running::start(&fake, bounded.clone());
    flow.qr_url().await;
    assert!(fake.mp_confirm());
    assert_eq!(flow.next().await, MpEvent::Confirmed);
    flow.result()
        .await
        .expect("logged in despite two lost polls");

    // Three in a row: the flow ends with the step named, long before its deadline.
    fake.mp_login_settings(|s| s.slow_asks = (3, Duration::from_secs(30)));
    let mut flow = Running::start(&fake, bounded);
    flow.qr_url().await;
    let err = flow.result().await.expect_err("gives up");
    assert!(
        matches!(err, MpLoginError::Network { step: "ask", .. }),
        "{err:?}"
    );
}

/// The newcomer's path: `cascade child login` scans once, saves the login in the child's store
/// (mode 0600, no cookie in any YAML), and a child with no `wechat_token` then crawls with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_scanned_in_the_terminal_is_saved_and_a_child_crawls_with_it() {
    use crate::helpers::{TestParent, cascade};
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    let (fake, account) = fake().await;
    fake.mp_login_settings(|s| {
        s.auto = Some((Duration::from_millis(50), ScanAction::Confirm));
        s.nickname = "Scanned Account".into();
    });
    let p = TestParent::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    child_yaml(&dir, &fake, "");
    let out = cascade_cmd(dir.path())
        .args([
            "child",
            "login",
            "--config",
            "child.yaml",
            "--name",
            "Office Phone",
        ])
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("not saved"), "{stderr}");
    let file = dir.path().join("data/logins.json");
    let mode = std::fs::metadata(&file)
        .expect("store written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored = std::fs::read_to_string(&file).expect("readable");
    assert!(stored.contains("mp-office-phone"), "{stored}");

    // A child whose config has credentials for the parent and nothing of WeChat.
    let node = p.add_node("scanned").await;
    let mut c = crate::helpers::test_config(&p.dir);
    c.cascade.data_dir = dir.path().join("data").display().to_string();
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = werss_cascade::protocol::credentials::Secret::new(&node.secret);
    c.cascade.wechat_base_url = fake.base_url().to_string();
    c.cascade.wechat_gap_ms = 0;
    c.cascade.wechat_gap_jitter_ms = 0;
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 1;
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(
        werss_cascade::child::Child::new(c)
            .expect("child")
            .run(stop.clone()),
    );
    p.post(
        &cascade("/feeds"),
        &p.admin(),
        json!({"mp_name": account.nickname, "faker_id": account.fakeid()}),
    )
    .await
    .ok();
    let task = p.task(&[format!("MP_WXS_{}", account.number)]).await;
    p.dispatch(&task).await;
    let crawled = async {
        loop {
            let c = p.get(&cascade("/pending-allocations"), &p.admin()).await;
            if c.ok()["completed_today"] == 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), crawled)
        .await
        .expect("the scanned login crawled the feed");
    let logins = p.get(&cascade("/logins"), &p.admin()).await;
    let listed = logins.ok().to_string();
    assert!(listed.contains("Scanned Account"), "{listed}");
    assert!(!listed.contains("slave_sid"), "{listed}");
    stop.cancel();
    running.await.expect("joined").expect("child exits");
    p.shutdown().await;
}
