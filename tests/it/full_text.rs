//! Full text (issue 13 §5): a child fetches each new article's body (WeRead
//! `/web/mp/content` with its `weread` logins, or the MP article page), the bodies reach RSS
//! (`content:encoded`), Atom and JSON Feed (`content_html`); an error page stores status 1000
//! without a body; the human-check page stops page fetches on that login only; a task's
//! `full_text: false` makes no page requests.

use crate::helpers::db::{Backend, on_both};
use crate::helpers::{TestNode, TestParent, cascade, test_config};
use serde_json::{Value, json};
use werss_cascade::child::Child;
use werss_cascade::config::Config;
use werss_cascade::logins::LoginStore;
use werss_cascade::logins::weread::WereadJar;
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::testkit::wechat::{
    FakeAccount, FakeArticle, FakePublish, FakeSession, FakeWechat, PageState,
};
use werss_cascade::testkit::weread::FakeWeread;

const NEWEST: i64 = 1_795_358_591;

/// An account of `n` pushes an hour apart, one article each.
fn account(number: u64, n: usize) -> FakeAccount {
    let publishes = (0..n)
        .map(|i| {
            let appmsgid = 2_247_490_000 + i64::try_from(n - i).expect("small");
            FakePublish {
                appmsgid,
                articles: vec![FakeArticle {
                    itemidx: 1,
                    title: format!("Article {appmsgid}"),
                    digest: format!("Digest {appmsgid}"),
                    update_time: NEWEST - 3600 * i64::try_from(i).expect("small"),
                }],
            }
        })
        .collect();
    FakeAccount {
        number,
        nickname: format!("Account {number}"),
        publishes,
    }
}

fn token(a: &FakeAccount, i: usize) -> String {
    a.article_token(a.publishes[i].appmsgid, 1)
}

/// A child configuration for `node`, pages without pacing.
fn child_config(p: &TestParent, node: &TestNode) -> (Config, std::path::PathBuf) {
    let mut c = test_config(&p.dir);
    let data = p.dir.path().join(format!("child-{}", node.id));
    c.cascade.data_dir = data.display().to_string();
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = Secret::new(&node.secret);
    c.cascade.weread_page_gap_ms = 0;
    c.cascade.content_gap_ms = 0;
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 1;
    c.cascade.capacity = 1;
    c.cascade.shutdown_grace = 5;
    (c, data)
}

/// Adds a fresh `weread` login of `fake` with id `id` to the store at `data`; its vid.
fn add_weread_login(fake: &FakeWeread, data: &std::path::Path, id: &str) -> String {
    let mut login = fake.new_login(id);
    login.renewed_at = Some(chrono::Utc::now());
    let vid = WereadJar::from_pairs(login.secrets.cookies.clone())
        .vid()
        .expect("vid")
        .to_string();
    LoginStore::open(data)
        .expect("store")
        .upsert(login)
        .expect("saved");
    vid
}

/// Runs `config`'s child until `task` completes once; the child is stopped after.
async fn run_task(p: &TestParent, config: Config, task: &str) {
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(Child::new(config).expect("child").run(stop.clone()));
    p.poll_until("/nodes", "the node online with a login", |n| {
        n.as_array()
            .is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
    })
    .await;
    p.dispatch(task).await;
    p.poll_until("/pending-allocations", "the completion", |c| {
        c["completed_today"] == 1
    })
    .await;
    stop.cancel();
    running.await.expect("joined").expect("child exits cleanly");
}

async fn output(p: &TestParent, path: &str) -> String {
    crate::helpers::http_client()
        .get(p.url(path))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body")
}

/// `(title, body)` per item of the feed's RSS, Atom and JSON Feed.
async fn bodies(p: &TestParent, feed: &str) -> [Vec<(String, String)>; 3] {
    let rss = output(p, &format!("/feed/{feed}.rss")).await;
    let doc = roxmltree::Document::parse(&rss).expect("RSS XML");
    const CONTENT: &str = "http://purl.org/rss/1.0/modules/content/";
    let rss_items = doc
        .descendants()
        .filter(|n| n.has_tag_name("item"))
        .map(|item| {
            let child = |ns: Option<&str>, name: &str| {
                item.children()
                    .find(|c| c.tag_name().namespace() == ns && c.tag_name().name() == name)
                    .and_then(|c| c.text())
                    .unwrap_or_default()
                    .to_string()
            };
            (child(None, "title"), child(Some(CONTENT), "encoded"))
        })
        .collect();
    let atom = output(p, &format!("/feed/{feed}.atom")).await;
    let doc = roxmltree::Document::parse(&atom).expect("Atom XML");
    let atom_items = doc
        .descendants()
        .filter(|n| n.has_tag_name("entry"))
        .map(|e| {
            let child = |name: &str| {
                e.children()
                    .find(|c| c.tag_name().name() == name)
                    .map(|c| {
                        if name == "content" {
                            assert_eq!(c.attribute("type"), Some("html"));
                        }
                        c.text().unwrap_or_default().to_string()
                    })
                    .unwrap_or_default()
            };
            (child("title"), child("content"))
        })
        .collect();
    let json: Value =
        serde_json::from_str(&output(p, &format!("/feed/{feed}.json")).await).expect("JSON Feed");
    let json_items = json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["title"].as_str().unwrap_or_default().to_string(),
                i["content_html"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    [rss_items, atom_items, json_items]
}

/// `(id, status, content)` of the feed's stored articles, read from the database itself.
async fn article_rows(p: &TestParent, backend: &Backend, feed: &str) -> Vec<(String, i64, String)> {
    use sqlx::Connection;
    const SQL: &str = "SELECT id, CAST(status AS BIGINT), COALESCE(content, '') FROM we_articles \
                       WHERE mp_id = $1 ORDER BY id";
    match backend {
        Backend::Sqlite => {
            let options =
                sqlx::sqlite::SqliteConnectOptions::new().filename(p.dir.path().join("cascade.db"));
            let mut c = sqlx::SqliteConnection::connect_with(&options)
                .await
                .expect("open");
            sqlx::query_as(SQL)
                .bind(feed)
                .fetch_all(&mut c)
                .await
                .expect("rows")
        }
        Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(&p.state.config.db)
                .await
                .expect("connect");
            sqlx::query_as(SQL)
                .bind(feed)
                .fetch_all(&mut c)
                .await
                .expect("rows")
        }
    }
}

fn content_requests(fake: &FakeWeread, vid: &str) -> Vec<String> {
    fake.log_for(vid)
        .into_iter()
        .filter(|e| e.endpoint == "content")
        .map(|e| e.outcome)
        .collect()
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bodies_read_through_weread_reach_rss_atom_and_json_feed(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = account(3_286_017_001, 3);
        let fake = FakeWeread::start().await.expect("fake");
        fake.serve_account(&a);
        // WeRead sometimes answers only the element: read the same.
        fake.content_fragment(true);
        let node = p.add_node("reader").await;
        let (mut c, data) = child_config(&p, &node);
        c.cascade.weread_base_url = fake.base_url().to_string();
        let vid = add_weread_login(&fake, &data, "weread-1");
        let task = p.wechat_task(std::slice::from_ref(&a)).await;
        run_task(&p, c, &task).await;

        let feed = format!("MP_WXS_{}", a.number);
        assert_eq!(content_requests(&fake, &vid), ["ok", "ok", "ok"], "one page per new article");
        for (format, items) in ["rss", "atom", "json"].iter().zip(bodies(&p, &feed).await) {
            assert_eq!(items.len(), 3, "{format}: {items:?}");
            for (i, push) in a.publishes.iter().enumerate() {
                let art = &push.articles[0];
                let (_, body) = items.iter().find(|(t, _)| *t == art.title).expect("item");
                assert!(body.contains(&format!("<p>{}</p>", art.digest)), "{format}: {body}");
                assert!(
                    body.contains(&format!("src=\"https://mmbiz.qpic.cn/fake/{}/1\"", token(&a, i))),
                    "{format}: the lazy image has its src: {body}"
                );
                assert!(!body.contains("visibility"), "{format}: {body}");
                assert!(!body.contains("js_content"), "{format}: the inner HTML only: {body}");
            }
        }
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mp_pages_give_bodies_and_a_deleted_article_is_status_1000_without_one(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = account(3_286_017_002, 3);
        let wechat = FakeWechat::start(vec![a.clone()]).await.expect("fake wechat");
        let session = FakeSession { token: "ft-token".into(), slave_sid: "ft-sid".into(), limit: None };
        wechat.add_session(session.clone());
        wechat.set_page_state(&token(&a, 1), PageState::Deleted);
        let node = p.add_node("mp").await;
        let (mut c, data) = child_config(&p, &node);
        c.cascade.wechat_base_url = wechat.base_url().to_string();
        c.cascade.mp_page_base_url = wechat.base_url().to_string();
        c.cascade.wechat_gap_ms = 0;
        c.cascade.wechat_gap_jitter_ms = 0;
        c.cascade.mp_closure_rest = 0;
        LoginStore::open(&data).expect("store").upsert(session.login("mp-1")).expect("saved");
        let task = p.wechat_task(std::slice::from_ref(&a)).await;
        run_task(&p, c, &task).await;

        let pages = wechat.page_requests();
        assert_eq!(pages.len(), 3, "{pages:?}");
        assert!(pages.iter().all(|e| e.client.is_empty()), "MP pages are fetched anonymously");
        let mut outcomes: Vec<&str> = pages.iter().map(|e| e.outcome).collect();
        outcomes.sort_unstable();
        assert_eq!(outcomes, ["deleted", "ok", "ok"]);

        let feed = format!("MP_WXS_{}", a.number);
        let rows = article_rows(&p, &backend, &feed).await;
        assert_eq!(rows.len(), 3, "every article uploaded: {rows:?}");
        let deleted_id = format!("{}-{}_1", a.number, a.publishes[1].appmsgid);
        for (id, status, content) in &rows {
            if *id == deleted_id {
                assert_eq!((*status, content.as_str()), (1000, ""), "{id}");
            } else {
                assert_eq!(*status, 1, "{id}");
                assert!(content.contains("mmbiz.qpic.cn/fake/"), "{id}: {content}");
            }
        }
        let [rss, _, json] = bodies(&p, &feed).await;
        let live = &a.publishes[0].articles[0];
        for items in [rss, json] {
            let (_, body) = items.iter().find(|(t, _)| *t == live.title).expect("item");
            assert!(body.contains(&live.digest), "{body}");
        }
        wechat.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_article_too_large_for_one_upload_goes_without_its_body_and_none_is_lost(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = account(3_286_017_009, 3);
        let wechat = FakeWechat::start(vec![a.clone()]).await.expect("fake wechat");
        let session = FakeSession { token: "big-token".into(), slave_sid: "big-sid".into(), limit: None };
        wechat.add_session(session.clone());
        // Over the parent's 1 MiB request limit once in JSON, on its own.
        wechat.set_page_body(&token(&a, 1), &format!("<p>{}</p>", "\"q\" ".repeat(300_000)));
        let node = p.add_node("mp").await;
        let (mut c, data) = child_config(&p, &node);
        c.cascade.wechat_base_url = wechat.base_url().to_string();
        c.cascade.mp_page_base_url = wechat.base_url().to_string();
        c.cascade.wechat_gap_ms = 0;
        c.cascade.wechat_gap_jitter_ms = 0;
        c.cascade.mp_closure_rest = 0;
        LoginStore::open(&data).expect("store").upsert(session.login("mp-1")).expect("saved");
        let task = p.wechat_task(std::slice::from_ref(&a)).await;
        run_task(&p, c, &task).await;

        let feed = format!("MP_WXS_{}", a.number);
        let rows = article_rows(&p, &backend, &feed).await;
        assert_eq!(rows.len(), 3, "every article uploaded: {rows:?}");
        let big_id = format!("{}-{}_1", a.number, a.publishes[1].appmsgid);
        for (id, status, content) in &rows {
            assert_eq!(*status, 1, "{id}");
            if *id == big_id {
                assert_eq!(content, "", "the oversized body is left out");
            } else {
                assert!(content.contains("mmbiz.qpic.cn/fake/"), "{id}: {content}");
            }
        }
        wechat.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_human_check_stops_page_fetches_on_that_login_only(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = account(3_286_017_003, 4);
        let fake = FakeWeread::start().await.expect("fake");
        fake.serve_account(&a);
        let node = p.add_node("two-logins").await;
        let (mut c, data) = child_config(&p, &node);
        c.cascade.weread_base_url = fake.base_url().to_string();
        // The logins take pages in turn, `weread-a` first (neither has fetched one yet).
        let blocked = add_weread_login(&fake, &data, "weread-a");
        let other = add_weread_login(&fake, &data, "weread-b");
        fake.content_human_check(&blocked, true);
        let task = p.wechat_task(std::slice::from_ref(&a)).await;
        run_task(&p, c, &task).await;

        assert_eq!(
            content_requests(&fake, &blocked),
            ["human_check"],
            "the checked login makes no further page requests"
        );
        assert_eq!(content_requests(&fake, &other), ["ok", "ok", "ok", "ok"], "the other login reads every body");
        let done = p.get(&cascade("/allocations?status=completed"), &p.admin()).await;
        assert_eq!(done.ok()["list"].as_array().map(Vec::len), Some(1), "the feed did not fail");
        let feed = format!("MP_WXS_{}", a.number);
        let rows = article_rows(&p, &backend, &feed).await;
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|(_, s, body)| *s == 1 && body.contains("<p>Digest ")), "{rows:?}");
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_human_check_on_every_login_uploads_without_bodies_and_the_feed_succeeds(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = account(3_286_017_004, 3);
        let wechat = FakeWechat::start(vec![a.clone()]).await.expect("fake wechat");
        let session = FakeSession { token: "hc-token".into(), slave_sid: "hc-sid".into(), limit: None };
        wechat.add_session(session.clone());
        // Anonymous page fetches are sent to the captcha: this node stops after the first.
        wechat.set_human_check_for("", werss_cascade::testkit::wechat::HumanCheck::Redirect);
        let node = p.add_node("mp-checked").await;
        let (mut c, data) = child_config(&p, &node);
        c.cascade.wechat_base_url = wechat.base_url().to_string();
        c.cascade.mp_page_base_url = wechat.base_url().to_string();
        c.cascade.wechat_gap_ms = 0;
        c.cascade.wechat_gap_jitter_ms = 0;
        c.cascade.mp_closure_rest = 0;
        LoginStore::open(&data).expect("store").upsert(session.login("mp-1")).expect("saved");
        let task = p.wechat_task(std::slice::from_ref(&a)).await;
        run_task(&p, c, &task).await;

        let outcomes: Vec<&str> = wechat.page_requests().iter().map(|e| e.outcome).collect();
        assert_eq!(outcomes, ["captcha_redirect"], "one page, then none on this node");
        let rows = article_rows(&p, &backend, &format!("MP_WXS_{}", a.number)).await;
        assert_eq!(rows.len(), 3, "uploaded without bodies: {rows:?}");
        assert!(rows.iter().all(|(_, s, body)| *s == 1 && body.is_empty()), "{rows:?}");
        let done = p.get(&cascade("/allocations?status=completed"), &p.admin()).await;
        assert_eq!(done.ok()["list"].as_array().map(Vec::len), Some(1), "the feed did not fail");
        wechat.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_without_full_text_makes_no_page_requests(backend) {
        let p = TestParent::on(backend.clone()).await;
        let a = account(3_286_017_005, 2);
        let fake = FakeWeread::start().await.expect("fake");
        fake.serve_account(&a);
        let node = p.add_node("plain").await;
        let (mut c, data) = child_config(&p, &node);
        c.cascade.weread_base_url = fake.base_url().to_string();
        let vid = add_weread_login(&fake, &data, "weread-1");
        let task = p.wechat_task(std::slice::from_ref(&a)).await;
        let shown = p.get(&cascade(&format!("/message-tasks/{task}")), &p.admin()).await;
        assert_eq!(shown.ok()["full_text"], true, "on by default");
        let put = p.put(&cascade(&format!("/message-tasks/{task}")), &p.admin(), json!({"full_text": false})).await;
        assert_eq!(put.ok()["full_text"], false);
        let bad = p.put(&cascade(&format!("/message-tasks/{task}")), &p.admin(), json!({"full_text": "no"})).await;
        bad.err(400);
        run_task(&p, c, &task).await;

        assert!(content_requests(&fake, &vid).is_empty(), "no page requests");
        let rows = article_rows(&p, &backend, &format!("MP_WXS_{}", a.number)).await;
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|(_, _, body)| body.is_empty()), "{rows:?}");
        fake.stop();
        p.shutdown().await;
    }
}

#[tokio::test]
async fn page_fetches_are_bounded_and_typed() {
    use werss_cascade::fetch::FetchError;
    use werss_cascade::fetch::content::{Gone, MAX_PAGE_BYTES, PageOutcome, fetch_page, page_url};
    let a = account(3_286_017_006, 3);
    let wechat = FakeWechat::start(vec![a.clone()])
        .await
        .expect("fake wechat");
    let http = crate::helpers::http_client();
    let base = wechat.base_url().to_string();
    let get = |link: String| fetch_page(http.get(page_url(&link, &base).expect("a WeChat link")));
    let long = |i: usize| a.article_link(a.publishes[i].appmsgid, 1);

    // The long link and the short one name the same page; its og meta is read.
    let Ok(PageOutcome::Body(body)) = get(long(0)).await else {
        panic!("a body")
    };
    assert_eq!(
        body.title.as_deref(),
        Some(a.publishes[0].articles[0].title.as_str())
    );
    assert_eq!(body.author.as_deref(), Some(a.nickname.as_str()));
    let short = format!("https://mp.weixin.qq.com/s/{}", token(&a, 0));
    assert_eq!(get(short).await, Ok(PageOutcome::Body(body)));

    wechat.set_page_state(&token(&a, 1), PageState::UnderReview);
    assert_eq!(get(long(1)).await, Ok(PageOutcome::Gone(Gone::UnderReview)));
    wechat.set_page_state(&token(&a, 1), PageState::Unavailable);
    assert_eq!(get(long(1)).await, Ok(PageOutcome::Gone(Gone::Unavailable)));

    // A page above the cap is refused, not read whole.
    wechat.set_page_body(&token(&a, 2), &"x".repeat(MAX_PAGE_BYTES + 1));
    assert!(
        matches!(get(long(2)).await, Err(FetchError::Parse(m)) if m.contains("larger")),
        "too large"
    );
    // An unknown article is not found.
    let unknown = format!("https://mp.weixin.qq.com/s/{}", "A".repeat(22));
    assert!(matches!(get(unknown).await, Err(FetchError::NotFound(_))));

    // The human check, as a page or as a redirect to the captcha.
    wechat.set_human_check(werss_cascade::testkit::wechat::HumanCheck::Page);
    assert_eq!(get(long(0)).await, Ok(PageOutcome::HumanCheck));
    wechat.set_human_check(werss_cascade::testkit::wechat::HumanCheck::Redirect);
    assert_eq!(get(long(0)).await, Ok(PageOutcome::HumanCheck));
    let outcomes: Vec<&str> = wechat.page_requests().iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "ok",
            "under_review",
            "unavailable",
            "ok",
            "404",
            "human_check",
            "captcha_redirect"
        ]
    );
    wechat.stop();
}
