//! Our child against our parent and the fake WeChat platform, end to end over loopback.

use crate::helpers::{TestNode, TestParent, cascade, test_config};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;
use crate::helpers::db::on_both;
use tokio_util::sync::CancellationToken;
use werss_cascade::child::Child;
use werss_cascade::protocol::credentials::{Secret, sha256_hex};
use werss_cascade::testkit::wechat::{FakeAccount, FakeSession, FakeWechat};

const NEWEST: i64 = 1_795_358_591;

fn child_config(
    p: &TestParent,
    node: &TestNode,
    fake: &FakeWechat,
    session: &FakeSession,
    gap_ms: u64,
) -> werss_cascade::config::Config {
    let mut c = test_config(&p.dir);
    c.cascade.data_dir = p
        .dir
        .path()
        .join(format!("child-{}", node.id))
        .display()
        .to_string();
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = Secret::new(&node.secret);
    session.configure(&mut c.cascade, fake);
    c.cascade.wechat_gap_ms = gap_ms;
    c.cascade.wechat_gap_jitter_ms = 0;
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 1;
    c.cascade.capacity = 2;
    c.cascade.shutdown_grace = 5;
    c
}

async fn counters(p: &TestParent) -> Value {
    p.get(&cascade("/pending-allocations"), &p.admin())
        .await
        .ok()
        .clone()
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_crawls_its_feeds_and_reports_them(backend) {
        let p = TestParent::on(backend.clone()).await;
        let accounts: Vec<FakeAccount> = (0..3)
            .map(|i| FakeAccount::generated(3_000_000_000 + i, 4, NEWEST))
            .collect();
        let fake = FakeWechat::start(accounts.clone()).await.expect("fake");
        let session = FakeSession {
            token: "t1".into(),
            slave_sid: "s1".into(),
            limit: None,
        };
        fake.add_session(session.clone());
        let node = p.add_node("crawler").await;
        let task = p.wechat_task(&accounts).await;
        let child = Child::new(child_config(&p, &node, &fake, &session, 0)).expect("child");
        let stop = CancellationToken::new();
        let running = tokio::spawn(child.run(stop.clone()));
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "three completions", |c| c["completed_today"] == 3).await;
        let fs = p.get(&cascade("/feed-status?limit=10"), &p.admin()).await;
        for item in fs.ok()["list"].as_array().expect("list") {
            assert_eq!(item["article_count"], 4, "{item}");
            assert_eq!(item["update_status"], "fresh");
            assert_eq!(item["last_task"]["node_name"], "crawler");
        }
        let n = p
            .get(&cascade(&format!("/nodes/{}", node.id)), &p.admin())
            .await;
        assert_eq!(n.ok()["session_state"], "valid");
        assert_eq!(n.ok()["version"], werss_cascade::protocol::SERVER_VERSION);

        // A second run uploads only what is new since the parent's newest article.
        fake.publish(
            3_000_000_000,
            werss_cascade::testkit::wechat::FakePublish {
                appmsgid: 2_247_499_999,
                articles: vec![werss_cascade::testkit::wechat::FakeArticle {
                    itemidx: 1,
                    title: "fresh".into(),
                    digest: String::new(),
                    update_time: NEWEST + 60,
                }],
            },
        );
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "second run", |c| c["completed_today"] == 6).await;
        let one = p
            .get(
                &cascade("/feed-status?feed_id=MP_WXS_3000000000"),
                &p.admin(),
            )
            .await;
        assert_eq!(one.ok()["list"][0]["article_count"], 5);
        stop.cancel();
        running.await.expect("joined").expect("child exits cleanly");
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rate_limited_login_cools_its_node_and_the_work_moves(backend) {
        let p = TestParent::on(backend.clone()).await;
        let accounts: Vec<FakeAccount> = (0..4)
            .map(|i| FakeAccount::generated(4_000_000_000 + i, 1, NEWEST))
            .collect();
        let fake = FakeWechat::start(accounts.clone()).await.expect("fake");
        let limited = FakeSession {
            token: "lim".into(),
            slave_sid: "s-lim".into(),
            limit: Some((1, Duration::from_secs(3600))),
        };
        let healthy = FakeSession {
            token: "ok".into(),
            slave_sid: "s-ok".into(),
            limit: None,
        };
        fake.add_session(limited.clone());
        fake.add_session(healthy.clone());
        let a = p.add_node("a-limited").await;
        let b = p.add_node("b-healthy").await;
        let task = p.wechat_task(&accounts).await;
        let stop = CancellationToken::new();
        let run_a = tokio::spawn(
            Child::new(child_config(&p, &a, &fake, &limited, 0))
                .expect("child a")
                .run(stop.clone()),
        );
        p.dispatch(&task).await;
        // Alone, A crawls one feed, then its login answers 200013 and the parent cools it down.
        let cooled = async {
            loop {
                let n = p
                    .get(&cascade(&format!("/nodes/{}", a.id)), &p.admin())
                    .await;
                if n.ok()["cooldown_until"].is_string() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), cooled)
            .await
            .expect("node A cooled down");
        assert!(fake.log_for("lim").iter().any(|e| e.outcome == "200013"));
        let run_b = tokio::spawn(
            Child::new(child_config(&p, &b, &fake, &healthy, 0))
                .expect("child b")
                .run(stop.clone()),
        );
        p.poll_until("/pending-allocations", "all four completed", |c| c["completed_today"] == 4).await;
        let by_b = p
            .get(
                &cascade(&format!("/allocations?node_id={}&status=completed", b.id)),
                &p.admin(),
            )
            .await;
        assert_eq!(by_b.ok()["total"], 3, "B took the work A could not do");
        let fs = p.get(&cascade("/feed-status?limit=10"), &p.admin()).await;
        assert!(
            fs.ok()["list"]
                .as_array()
                .expect("list")
                .iter()
                .all(|f| f["article_count"] == 1)
        );
        let failed = p
            .get(&cascade("/allocations?status=failed"), &p.admin())
            .await;
        assert_eq!(
            failed.ok()["total"],
            0,
            "rate limits spend no attempt and fail nothing"
        );
        stop.cancel();
        run_a.await.expect("joined").expect("a exits");
        run_b.await.expect("joined").expect("b exits");
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_releases_work_it_cannot_finish(backend) {
        let p = TestParent::on(backend.clone()).await;
        let accounts: Vec<FakeAccount> = (0..2)
            .map(|i| FakeAccount::generated(5_000_000_000 + i, 1, NEWEST))
            .collect();
        let fake = FakeWechat::start(accounts.clone()).await.expect("fake");
        let session = FakeSession {
            token: "slow".into(),
            slave_sid: "s-slow".into(),
            limit: None,
        };
        fake.add_session(session.clone());
        let node = p.add_node("slow").await;
        let task = p.wechat_task(&accounts).await;
        // A one-hour pacing gap: the second feed cannot start before shutdown.
        let mut config = child_config(&p, &node, &fake, &session, 3_600_000);
        config.cascade.shutdown_grace = 0;
        config.cascade.capacity = 1;
        let stop = CancellationToken::new();
        let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "one completion and one held", |c| {
            c["completed_today"] == 1 && c["executing_tasks"] == 1
        })
        .await;
        stop.cancel();
        running.await.expect("joined").expect("child exits cleanly");
        let released = p
            .get(&cascade("/allocations?status=pending"), &p.admin())
            .await;
        assert_eq!(released.ok()["total"], 1);
        assert_eq!(released.ok()["list"][0]["reason"], "released");
        assert_eq!(released.ok()["list"][0]["attempt"], 0);
        fake.stop();
        p.shutdown().await;
    }
}

#[tokio::test]
async fn a_child_refuses_to_start_without_credentials_or_parent() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = test_config(&dir);
    assert!(Child::new(config.clone()).is_err(), "no AK/SK");
    config.cascade.api_key = "CNx".into();
    config.cascade.api_secret = Secret::new("CSx");
    config.cascade.parent_api_url = "http://127.0.0.1:9".into();
    let child = Child::new(config).expect("configured");
    let err = child.check().await.expect_err("unreachable");
    assert!(format!("{err:#}").contains("127.0.0.1:9"), "{err:#}");
}

/// A stand-in for a stock WeRSS parent: only `/api/v1/wx/cascade`, no features, errors as
/// HTTP 200 with `code` ≠ 0 (task-status here). Records each call as `(path, body)`. Claims
/// answer `null` until `ready`, then `package` `handouts` times; the first
/// `fail_completions` completions get HTTP 500.
async fn stock_parent(
    package: Value,
    ready: Arc<AtomicBool>,
    handouts: usize,
    fail_completions: usize,
) -> (String, Seen) {
    use axum::extract::OriginalUri;
    use axum::http::StatusCode;
    let seen: Seen = Arc::default();
    let handed = Arc::new(AtomicUsize::new(handouts));
    let failures = Arc::new(AtomicUsize::new(fail_completions));
    let log = seen.clone();
    let app = axum::Router::new().fallback(
        move |OriginalUri(uri): OriginalUri, body: axum::body::Bytes| {
            let (package, ready, handed, failures, log) = (
                package.clone(),
                ready.clone(),
                handed.clone(),
                failures.clone(),
                log.clone(),
            );
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().expect("lock").push((uri.to_string(), body));
                let ok = |data: Value| {
                    (
                        StatusCode::OK,
                        axum::Json(json!({"code": 0, "message": "success", "data": data})),
                    )
                };
                match uri.path() {
                    "/api/v1/wx/cascade/heartbeat" => ok(json!({"status": "alive"})),
                    "/api/v1/wx/cascade/claim-task"
                        if ready.load(Ordering::SeqCst)
                            && handed
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok() =>
                    {
                        ok(package)
                    }
                    "/api/v1/wx/cascade/task-status" => (
                        StatusCode::OK,
                        axum::Json(json!({"code": 400, "message": "无效的状态", "data": null})),
                    ),
                    "/api/v1/wx/cascade/report-completion"
                        if failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok() =>
                    {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(json!({"detail": "Internal Server Error"})),
                        )
                    }
                    _ => ok(Value::Null),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn stock_package(account: &FakeAccount) -> Value {
    json!({"allocation_id": "a-1", "task_id": "t-1", "task_name": "n", "message_type": 0, "message_template": "",
        "web_hook_url": "", "cron_exp": "", "headers": null, "cookies": null, "dispatched_at": "2026-11-22T14:40:00",
        "feeds": [{"id": format!("MP_WXS_{}", account.number), "faker_id": account.fakeid(), "mp_name": "A", "mp_cover": "", "mp_intro": "", "status": 1}]})
}

fn stock_child_config(
    dir: &tempfile::TempDir,
    url: String,
    fake: &FakeWechat,
    session: &FakeSession,
) -> werss_cascade::config::Config {
    let mut c = test_config(dir);
    c.cascade.parent_api_url = url;
    c.cascade.api_key = "CNstock".into();
    c.cascade.api_secret = Secret::new("CSstock");
    session.configure(&mut c.cascade, fake);
    c.cascade.wechat_gap_ms = 0;
    c.cascade.wechat_gap_jitter_ms = 0;
    c.cascade.task_poll_interval = 1;
    c.cascade.shutdown_grace = 5;
    c
}

async fn until_seen(seen: &Seen, path: &str) {
    let wait = async {
        loop {
            if seen
                .lock()
                .expect("lock")
                .iter()
                .any(|(p, _)| p.ends_with(path))
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no call to {path}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_child_completes_a_crawl_against_a_stock_parent() {
    let account = FakeAccount::generated(6_000_000_000, 2, NEWEST);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake");
    let session = FakeSession {
        token: "stock".into(),
        slave_sid: "s-stock".into(),
        limit: None,
    };
    fake.add_session(session.clone());
    let (url, seen) = stock_parent(
        stock_package(&account),
        Arc::new(AtomicBool::new(true)),
        1,
        1,
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let stop = CancellationToken::new();
    let running = tokio::spawn(
        Child::new(stock_child_config(&dir, url, &fake, &session))
            .expect("child")
            .run(stop.clone()),
    );
    let delivered = async {
        loop {
            if seen
                .lock()
                .expect("lock")
                .iter()
                .filter(|(p, _)| p.ends_with("/report-completion"))
                .count()
                >= 2
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), delivered)
        .await
        .expect("the refused completion is sent again");
    stop.cancel();
    running.await.expect("joined").expect("child exits");
    let calls = seen.lock().expect("lock").clone();
    assert!(
        calls
            .iter()
            .all(|(p, _)| p.starts_with("/api/v1/wx/cascade/")),
        "only WeRSS's real prefix"
    );
    assert!(
        calls
            .iter()
            .filter(|(p, _)| p.contains("claim-task"))
            .all(|(p, _)| p == "/api/v1/wx/cascade/claim-task"),
        "no extensions without features"
    );
    let upload = calls
        .iter()
        .find(|(p, _)| p.ends_with("/upload-articles"))
        .expect("uploaded")
        .1
        .clone();
    assert_eq!(upload["articles"].as_array().map(Vec::len), Some(2));
    assert!(upload["timestamp"].is_string());
    assert!(upload.get("lease_token").is_none());
    let done = calls
        .iter()
        .find(|(p, _)| p.ends_with("/report-completion"))
        .expect("completed")
        .1
        .clone();
    for key in [
        "allocation_id",
        "task_id",
        "results",
        "article_count",
        "timestamp",
    ] {
        assert!(done.get(key).is_some(), "WeRSS requires {key}");
    }
    assert_eq!(done["results"][0]["mp_id"], "MP_WXS_6000000000");
    assert!(
        !calls.iter().any(|(p, _)| p.ends_with("/release")),
        "a stock parent has no release"
    );
    fake.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_with_the_hash_header_wakes_the_claim_loop() {
    let account = FakeAccount::generated(6_100_000_000, 1, NEWEST);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake");
    let session = FakeSession {
        token: "n".into(),
        slave_sid: "s-n".into(),
        limit: None,
    };
    fake.add_session(session.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let (url, seen) = stock_parent(stock_package(&account), ready.clone(), 1, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = stock_child_config(&dir, url, &fake, &session);
    config.cascade.task_poll_interval = 3600; // only a notify can make it claim again soon
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let notify_url = format!(
        "http://{}/api/v1/wx/cascade/notify",
        listener.local_addr().expect("addr")
    );
    config.cascade.callback_url = notify_url.clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(
        Child::new(config)
            .expect("child")
            .with_notify_listener(listener)
            .run(stop.clone()),
    );
    until_seen(&seen, "/claim-task").await;
    ready.store(true, Ordering::SeqCst);

    let client = crate::helpers::http_client();
    let send = |auth: String| {
        client
            .post(&notify_url)
            .header("Authorization", auth)
            .json(&json!({"type": "new_task"}))
            .send()
    };
    let wrong = send("AK-SK CNstock:CSstock".into()).await.expect("sent");
    assert_eq!(
        wrong.status(),
        401,
        "the raw secret is not the notify credential"
    );
    let right = send(format!(
        "AK-SK CNstock:{}",
        sha256_hex("CSstock").to_uppercase()
    ))
    .await
    .expect("sent");
    assert_eq!(right.status(), 200);
    let body: Value = right.json().await.expect("json");
    assert_eq!(body["message"], "通知已接收");
    until_seen(&seen, "/report-completion").await;
    stop.cancel();
    running.await.expect("joined").expect("child exits");
    let beats = seen
        .lock()
        .expect("lock")
        .iter()
        .filter(|(p, _)| p.ends_with("/heartbeat"))
        .map(|(_, b)| b.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        beats[0]["callback_url"],
        notify_url.as_str(),
        "the heartbeat registers the callback"
    );
    fake.stop();
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_rss_child_crawls_and_then_gets_304(backend) {
        use werss_cascade::testkit::feeds::{FakeEntry, FakeFeeds, Format};
        let p = TestParent::on(backend.clone()).await;
        let feeds = FakeFeeds::start().await.expect("feeds");
        let entries = (0..3)
            .map(|i| FakeEntry {
                id: format!("g{i}"),
                title: format!("T{i}"),
                link: format!("https://e.org/{i}"),
                published: NEWEST - i,
            })
            .collect();
        let url = feeds.add_feed("blog", Format::Atom, entries);
        let created = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "blog", "source": "rss", "url": url}),
            )
            .await;
        let feed_id = created.ok()["id"].as_str().expect("id").to_string();
        let task = p.task(std::slice::from_ref(&feed_id)).await;
        let node = p.add_node("rss-only").await;
        let fake = FakeWechat::start(Vec::new()).await.expect("fake");
        let session = FakeSession {
            token: "unused".into(),
            slave_sid: "unused".into(),
            limit: None,
        };
        let mut config = child_config(&p, &node, &fake, &session, 0);
        config.cascade.fetchers = vec!["rss".into()];
        let stop = CancellationToken::new();
        let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "first crawl", |c| c["completed_today"] == 1).await;
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "second crawl", |c| c["completed_today"] == 2).await;
        let log = feeds.log();
        assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 304]);
        assert!(
            log[1].if_none_match.is_some(),
            "validators travelled through the parent"
        );
        let fs = p
            .get(
                &cascade(&format!("/feed-status?feed_id={feed_id}")),
                &p.admin(),
            )
            .await;
        assert_eq!(fs.ok()["list"][0]["article_count"], 3);
        stop.cancel();
        running.await.expect("joined").expect("child exits");
        feeds.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn control_characters_from_an_rss_feed_never_reach_an_xml_output(backend) {
        use werss_cascade::testkit::feeds::{FakeEntry, FakeFeeds, Format};
        let p = TestParent::on(backend.clone()).await;
        let feeds = FakeFeeds::start().await.expect("feeds");
        // The fake writes text as given: raw U+0001 and ESC inside the RSS document.
        let entries = vec![FakeEntry {
            id: "g\u{1}1".into(),
            title: "T\u{1}itle \u{1b}[1mbold".into(),
            link: "https://e.org/\u{1b}1".into(),
            published: NEWEST,
        }];
        let url = feeds.add_feed("hostile", Format::Rss, entries);
        let created = p
            .post(
                &cascade("/feeds"),
                &p.admin(),
                json!({"mp_name": "hostile\u{1b}[31m blog", "mp_intro": "in\u{1}tro", "source": "rss", "url": url}),
            )
            .await;
        let feed_id = created.ok()["id"].as_str().expect("id").to_string();
        let task = p.task(std::slice::from_ref(&feed_id)).await;
        let node = p.add_node("rss-reader").await;
        let fake = FakeWechat::start(Vec::new()).await.expect("fake");
        let session = FakeSession {
            token: "unused".into(),
            slave_sid: "unused".into(),
            limit: None,
        };
        let mut config = child_config(&p, &node, &fake, &session, 0);
        config.cascade.fetchers = vec!["rss".into()];
        let stop = CancellationToken::new();
        let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
        p.dispatch(&task).await;
        p.poll_until("/pending-allocations", "the crawl", |c| c["completed_today"] == 1).await;
        stop.cancel();
        running.await.expect("joined").expect("child exits");

        // (path, shows the feed's name as a title, shows the article)
        for (path, named, article) in [
            (format!("/rss/{feed_id}"), true, true),
            (format!("/feed/{feed_id}.atom"), true, true),
            ("/feed/all.atom".into(), false, true),
            ("/feed/all.rss".into(), false, true),
            ("/opml".into(), true, false),
        ] {
            let body = p.client.get(p.url(&path)).send().await.expect("sent").text().await.expect("body");
            let titles = crate::outputs::strict_titles(&path, &body);
            assert_eq!(titles.contains(&"hostile[31m blog".to_string()), named, "{path}: {titles:?}");
            assert_eq!(titles.contains(&"Title [1mbold".to_string()), article, "{path}: {titles:?}");
            // (feed-rs reads the link as a URL: the ESC arrives percent-encoded.)
            assert_eq!(body.contains("https://e.org/"), article, "{path}: {body}");
            assert!(!body.contains(['\u{1}', '\u{1b}']), "{path}: {body}");
        }
        feeds.stop();
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_session_parks_the_node_and_the_work_moves(backend) {
        let p = TestParent::on(backend.clone()).await;
        let accounts: Vec<FakeAccount> = (0..3)
            .map(|i| FakeAccount::generated(4_500_000_000 + i, 1, NEWEST))
            .collect();
        let fake = FakeWechat::start(accounts.clone()).await.expect("fake");
        let dead = FakeSession {
            token: "dead".into(),
            slave_sid: "s-dead".into(),
            limit: None,
        };
        let alive = FakeSession {
            token: "alive".into(),
            slave_sid: "s-alive".into(),
            limit: None,
        };
        fake.add_session(dead.clone());
        fake.add_session(alive.clone());
        fake.expire(&dead.slave_sid);
        let a = p.add_node("a-expired").await;
        let b = p.add_node("b-alive").await;
        let task = p.wechat_task(&accounts).await;
        let stop = CancellationToken::new();
        let run_a = tokio::spawn(
            Child::new(child_config(&p, &a, &fake, &dead, 0))
                .expect("child a")
                .run(stop.clone()),
        );
        p.dispatch(&task).await;
        let parked = async {
            loop {
                let n = p
                    .get(&cascade(&format!("/nodes/{}", a.id)), &p.admin())
                    .await;
                if n.ok()["session_state"] == "expired" {
                    return;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), parked)
            .await
            .expect("node A parked");
        let run_b = tokio::spawn(
            Child::new(child_config(&p, &b, &fake, &alive, 0))
                .expect("child b")
                .run(stop.clone()),
        );
        p.poll_until("/pending-allocations", "all three completed", |c| c["completed_today"] == 3).await;
        let by_b = p
            .get(
                &cascade(&format!("/allocations?node_id={}&status=completed", b.id)),
                &p.admin(),
            )
            .await;
        assert_eq!(by_b.ok()["total"], 3);
        let failed = p
            .get(&cascade("/allocations?status=failed"), &p.admin())
            .await;
        assert_eq!(
            failed.ok()["total"],
            0,
            "an expired session spends no attempt"
        );
        let counters = counters(&p).await;
        assert_eq!(counters["session_expired_nodes"], 1);
        stop.cancel();
        run_a.await.expect("joined").expect("a exits");
        run_b.await.expect("joined").expect("b exits");
        fake.stop();
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_stock_parent_a_dead_login_stops_claiming() {
    let account = FakeAccount::generated(6_200_000_000, 1, NEWEST);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake");
    let session = FakeSession {
        token: "stock-dead".into(),
        slave_sid: "s-stock-dead".into(),
        limit: None,
    };
    fake.add_session(session.clone());
    fake.expire(&session.slave_sid);
    // A stock parent hands out work on every claim and marks it completed whatever happened.
    let (url, seen) = stock_parent(
        stock_package(&account),
        Arc::new(AtomicBool::new(true)),
        usize::MAX,
        0,
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let mut config = stock_child_config(&dir, url, &fake, &session);
    config.cascade.capacity = 1;
    config.cascade.heartbeat_interval = 1;
    let stop = CancellationToken::new();
    let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
    until_seen(&seen, "/report-completion").await;
    // Two heartbeats later the child has had every chance to claim again.
    let settled = async {
        loop {
            let calls = seen.lock().expect("lock").clone();
            let done_at = calls
                .iter()
                .position(|(p, _)| p.ends_with("/report-completion"))
                .expect("completed");
            let beats_after = calls[done_at..]
                .iter()
                .filter(|(p, _)| p.ends_with("/heartbeat"))
                .count();
            if beats_after >= 2 {
                return calls;
            }
            tokio::task::yield_now().await;
        }
    };
    let calls = tokio::time::timeout(Duration::from_secs(30), settled)
        .await
        .expect("heartbeats go on");
    stop.cancel();
    running.await.expect("joined").expect("child exits");
    let claims = calls
        .iter()
        .filter(|(p, _)| p.contains("/claim-task"))
        .count();
    let completions: Vec<&Value> = calls
        .iter()
        .filter(|(p, _)| p.ends_with("/report-completion"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(claims, 1, "no claim while the login is dead: {calls:?}");
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0]["results"][0]["success"], false);
    assert_eq!(fake.log_for(&session.token).len(), 1, "one WeChat request");
    fake.stop();
}
