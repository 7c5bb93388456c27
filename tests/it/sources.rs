//! The WeRead sources (issue 13 §1) against the fake WeRead: group-offset paging back to
//! `since`, the page cap, the error mapping (`closed`, `session_expired`, `rate_limited`), the
//! cover and its HTTP 499 errors, the `~` rewrite, the flat form, the same article through
//! both fakes, the fake WeChat's closure switch, and a child that reads a WeChat feed through
//! WeRead end to end.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use werss_cascade::fetch::pacer::Pacer;
use werss_cascade::fetch::wechat::WechatFetcher;
use werss_cascade::fetch::weread::{WereadFetcher, WereadOptions};
use werss_cascade::fetch::{FetchError, links};
use werss_cascade::logins::weread::WereadJar;
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::protocol::wire::PackageFeed;
use werss_cascade::testkit::wechat::{
    FakeAccount, FakeArticle, FakePublish, FakeSession, FakeWechat,
};
use werss_cascade::testkit::weread::{FakeWeread, WereadArticle, WereadGroup};

const NEWEST: i64 = 1_795_358_591;

/// An account of `n` pushes an hour apart, push `i` carrying `i % 8 + 1` articles.
fn account(number: u64, n: usize) -> FakeAccount {
    let publishes = (0..n)
        .map(|i| {
            let appmsgid = 2_247_480_000 + i64::try_from(n - i).expect("small");
            let at = NEWEST - 3600 * i64::try_from(i).expect("small");
            FakePublish {
                appmsgid,
                articles: (1..=i64::try_from(i % 8 + 1).expect("small"))
                    .map(|itemidx| FakeArticle {
                        itemidx,
                        title: format!("Article {appmsgid}/{itemidx}"),
                        digest: format!("Digest {appmsgid}/{itemidx}"),
                        update_time: at,
                    })
                    .collect(),
            }
        })
        .collect();
    FakeAccount {
        number,
        nickname: format!("Account {number}"),
        publishes,
    }
}

fn articles_in(a: &FakeAccount, pushes: usize) -> usize {
    a.publishes
        .iter()
        .take(pushes)
        .map(|p| p.articles.len())
        .sum()
}

/// `n` new pushes an hour apart after `NEWEST`, published at the top of `a`'s book in `fake`
/// (oldest first, so the newest ends on top), one article each.
fn publish_newer(fake: &FakeWeread, a: &FakeAccount, n: i64) {
    for k in 1..=n {
        let appmsgid = 2_247_490_000 + k;
        let push = FakePublish {
            appmsgid,
            articles: vec![FakeArticle {
                itemidx: 1,
                title: format!("Later {appmsgid}"),
                digest: String::new(),
                update_time: NEWEST + 3600 * k,
            }],
        };
        fake.publish(
            &werss_cascade::testkit::weread::book_id(a),
            WereadGroup::from_publish(a, &push),
        );
    }
}

#[tokio::test]
async fn a_capped_read_goes_on_next_time_from_where_it_stopped() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_689, 3);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, options(&fake, 2, true), &jar);
    // A new feed: the cap is its depth, nothing to go back to.
    publish_newer(&fake, &a, 45);
    let fresh = f.list(&feed(&a, None)).await.expect("listed");
    assert!(fresh.backlog_incomplete);
    assert_eq!(fresh.backlog_next, None);

    // The parent holds the first three pushes; 45 came since, the cap stops at 40 groups.
    let mut known = feed(&a, Some(NEWEST));
    let first = f.list(&known).await.expect("listed");
    assert!(first.backlog_incomplete);
    assert_eq!(first.articles.len(), 40);
    let next = first.backlog_next.expect("where to go on");
    assert_eq!(
        next,
        werss_cascade::protocol::wire::Backlog {
            offset: 40,
            until: NEWEST
        }
    );

    // Two more pushes; the next read takes them, then the five left behind, and ends.
    let before = offsets(&fake, &jar).len();
    for k in 46..=47 {
        let push = FakePublish {
            appmsgid: 2_247_490_000 + k,
            articles: vec![FakeArticle {
                itemidx: 1,
                title: format!("Later {k}"),
                digest: String::new(),
                update_time: NEWEST + 3600 * k,
            }],
        };
        fake.publish(
            &werss_cascade::testkit::weread::book_id(&a),
            WereadGroup::from_publish(&a, &push),
        );
    }
    known.since = Some(NEWEST + 45 * 3600);
    known.backlog = Some(next);
    let second = f.list(&known).await.expect("listed");
    assert!(
        !second.backlog_incomplete && second.backlog_done,
        "{second:?}"
    );
    let mut times: Vec<i64> = second.articles.iter().map(|x| x.publish_time).collect();
    times.sort_unstable();
    let want: Vec<i64> = (1..=5).chain(46..=47).map(|k| NEWEST + 3600 * k).collect();
    assert_eq!(times, want, "the new pushes and the gap, each once");
    assert_eq!(
        offsets(&fake, &jar)[before..],
        [0, 42],
        "the gap's page, shifted by the two new groups"
    );

    // A backlog page that fails (here the login's budget, -2014) keeps the new articles read
    // before it, and the backlog waits where it was (shifted by the new group).
    let push = FakePublish {
        appmsgid: 2_247_490_048,
        articles: vec![FakeArticle {
            itemidx: 1,
            title: "Later 48".into(),
            digest: String::new(),
            update_time: NEWEST + 3600 * 48,
        }],
    };
    fake.publish(
        &werss_cascade::testkit::weread::book_id(&a),
        WereadGroup::from_publish(&a, &push),
    );
    let other = fake.new_session("another reader");
    fake.set_budget(Some((1, Duration::from_secs(3600))));
    let g = fetcher(&fake, options(&fake, 2, true), &other);
    known.since = Some(NEWEST + 47 * 3600);
    let third = g.list(&known).await.expect("the new article is kept");
    assert_eq!(third.articles.len(), 1, "{third:?}");
    assert!(third.backlog_incomplete && !third.backlog_done);
    assert_eq!(
        third.backlog_next,
        Some(werss_cascade::protocol::wire::Backlog {
            offset: 41,
            until: NEWEST
        })
    );
    fake.stop();
}

fn feed(account: &FakeAccount, since: Option<i64>) -> PackageFeed {
    PackageFeed {
        id: format!("MP_WXS_{}", account.number),
        faker_id: Some(account.fakeid()),
        mp_name: account.nickname.clone(),
        mp_cover: None,
        mp_intro: None,
        status: 1,
        source: Some("weread_list".into()),
        url: None,
        etag: None,
        last_modified: None,
        since,
        sources: None,
        backlog: None,
    }
}

fn options(fake: &FakeWeread, max_pages: usize, tilde_rewrite: bool) -> WereadOptions {
    WereadOptions {
        base_url: fake.base_url().to_string(),
        max_pages,
        tilde_rewrite,
    }
}

fn fetcher(_fake: &FakeWeread, opts: WereadOptions, jar: &WereadJar) -> WereadFetcher {
    WereadFetcher::new(
        crate::helpers::http_client(),
        opts,
        jar.clone(),
        Arc::new(Pacer::new(Duration::ZERO, Duration::ZERO)),
    )
}

fn vid(jar: &WereadJar) -> String {
    jar.vid().expect("vid").to_string()
}

fn offsets(fake: &FakeWeread, jar: &WereadJar) -> Vec<usize> {
    fake.log_for(&vid(jar)).iter().map(|e| e.offset).collect()
}

#[tokio::test]
async fn the_list_pages_by_group_offset_back_to_since() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_687, 45);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, options(&fake, 20, true), &jar);

    let all = f.list(&feed(&a, None)).await.expect("listed");
    assert_eq!(all.articles.len(), articles_in(&a, 45));
    assert!(!all.backlog_incomplete, "the list ended before the cap");
    assert_eq!(
        offsets(&fake, &jar),
        [0, 20, 40, 45],
        "offset counts groups, an empty page ends"
    );
    let first = &all.articles[0];
    assert_eq!(first.mp_id, "MP_WXS_3286016687");
    assert_eq!(first.publish_time, NEWEST, "mpInfo.time");
    assert!(
        first.url.starts_with("https://mp.weixin.qq.com/s/"),
        "{}",
        first.url
    );
    assert!(
        first
            .doc_url
            .as_deref()
            .is_some_and(|d| d.contains("__biz="))
    );

    // The parent holds everything up to the 25th push: pages stop at the first known one.
    let since = NEWEST - 24 * 3600;
    let newer = f.list(&feed(&a, Some(since))).await.expect("listed");
    assert_eq!(newer.articles.len(), articles_in(&a, 24));
    assert!(newer.articles.iter().all(|x| x.publish_time > since));
    assert_eq!(offsets(&fake, &jar)[4..], [0, 20], "two pages were enough");
    fake.stop();
}

#[tokio::test]
async fn the_page_cap_reports_an_incomplete_backlog() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_688, 45);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, options(&fake, 2, true), &jar);

    let capped = f.list(&feed(&a, None)).await.expect("listed");
    assert!(capped.backlog_incomplete);
    assert_eq!(capped.articles.len(), articles_in(&a, 40));
    assert_eq!(offsets(&fake, &jar), [0, 20]);

    // Reaching what the parent has within the cap is complete.
    let since = NEWEST - 30 * 3600;
    let done = f.list(&feed(&a, Some(since))).await.expect("listed");
    assert!(!done.backlog_incomplete);
    assert_eq!(done.articles.len(), articles_in(&a, 30));
    fake.stop();
}

#[tokio::test]
async fn list_refusals_map_to_typed_reasons() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_689, 3);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, options(&fake, 20, true), &jar);

    fake.close_list(true);
    let closed = f.list(&feed(&a, None)).await.expect_err("closed");
    assert!(matches!(closed, FetchError::Closed(_)), "{closed:?}");
    assert_eq!(closed.reason(), "closed");
    fake.close_list(false);

    fake.expire_skey(&vid(&jar));
    let stale = f.list(&feed(&a, None)).await.expect_err("stale");
    assert!(matches!(stale, FetchError::SkeyExpired(_)), "{stale:?}");
    assert_eq!(stale.reason(), "session_expired");

    let anonymous = fetcher(&fake, options(&fake, 20, true), &WereadJar::new());
    let none = anonymous.list(&feed(&a, None)).await.expect_err("no login");
    assert!(matches!(none, FetchError::SessionExpired(_)), "{none:?}");

    let fresh = fake.new_session("second");
    let f = fetcher(&fake, options(&fake, 20, true), &fresh);
    fake.set_budget(Some((2, Duration::from_secs(3600))));
    f.list(&feed(&a, None)).await.expect("within the budget");
    let limited = f.list(&feed(&a, None)).await.expect_err("over the budget");
    assert_eq!(limited.reason(), "rate_limited");
    let outcomes: Vec<String> = fake
        .log_for(&vid(&fresh))
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(
        outcomes,
        ["ok", "ok", "-2014"],
        "two pages, then the budget"
    );
    let codes: Vec<String> = fake
        .log_for(&vid(&jar))
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(codes, ["-2041", "-2012"]);
    fake.stop();
}

#[tokio::test]
async fn the_cover_gives_the_newest_article_and_a_499_is_an_error() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_690, 5);
    fake.serve_account(&a);
    fake.close_list(true);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, options(&fake, 20, true), &jar);
    let seen_at = 1_800_000_000;

    let got = f
        .cover(&feed(&a, Some(NEWEST)), seen_at)
        .await
        .expect("cover works while the list is closed");
    assert_eq!(got.articles.len(), 1);
    let newest = &got.articles[0];
    let push = &a.publishes[0];
    assert_eq!(newest.title, push.articles[0].title);
    assert_eq!(newest.publish_time, seen_at, "no time: first seen");
    let token = a.article_token(push.appmsgid, 1);
    assert_eq!(newest.url, links::short_link(&token, true));
    assert_eq!(newest.id, format!("3286016690-{token}"));

    fake.cover_error(Some(-2012));
    let e = f
        .cover(&feed(&a, None), seen_at)
        .await
        .expect_err("499 is an error");
    assert!(matches!(e, FetchError::SkeyExpired(_)), "{e:?}");
    fake.cover_error(Some(-2041));
    let e = f
        .cover(&feed(&a, None), seen_at)
        .await
        .expect_err("499 is an error");
    assert_eq!(e.reason(), "closed");
    fake.cover_error(Some(-1));
    let e = f
        .cover(&feed(&a, None), seen_at)
        .await
        .expect_err("never 0 articles");
    assert_eq!(e.reason(), "network");
    fake.stop();
}

#[tokio::test]
async fn the_tilde_rewrite_is_a_setting() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_691, 0);
    let book = werss_cascade::testkit::weread::book_id(&a);
    fake.publish(
        &book,
        WereadGroup {
            create_time: NEWEST,
            articles: vec![WereadArticle {
                token: "9gm5~Wle7VrEYNiwBGaaOQ".into(),
                title: "tilde".into(),
                digest: String::new(),
                time: None,
                doc_url: None,
                read_num: Some(Value::from("1.2万")),
            }],
        },
    );
    let jar = fake.new_session("reader");
    for (rewrite, link) in [
        (true, "https://mp.weixin.qq.com/s/9gm5_Wle7VrEYNiwBGaaOQ"),
        (false, "https://mp.weixin.qq.com/s/9gm5~Wle7VrEYNiwBGaaOQ"),
    ] {
        let f = fetcher(&fake, options(&fake, 20, rewrite), &jar);
        let got = f.list(&feed(&a, None)).await.expect("listed");
        let item = &got.articles[0];
        assert_eq!(item.url, link);
        assert_eq!(item.publish_time, NEWEST, "createTime without mpInfo.time");
        assert_eq!(item.read_num, Some(12_000));
        let cover = f.cover(&feed(&a, None), 1).await.expect("cover");
        assert_eq!(cover.articles[0].url, link);
    }
    fake.stop();
}

#[tokio::test]
async fn the_flat_form_is_read_too() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_692, 6);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, options(&fake, 20, true), &jar);
    let nested = f.list(&feed(&a, None)).await.expect("nested");
    fake.flat(true);
    let flat = f.list(&feed(&a, None)).await.expect("flat");
    assert_eq!(flat.articles, nested.articles);
    assert_eq!(flat.articles.len(), articles_in(&a, 6));
    fake.stop();
}

#[tokio::test]
async fn the_same_article_through_both_fakes_has_one_id_and_one_link() {
    let a = account(3_286_016_693, 4);
    let wechat = FakeWechat::start(vec![a.clone()])
        .await
        .expect("fake WeChat");
    let session = FakeSession {
        token: "tok".into(),
        slave_sid: "sid".into(),
        limit: None,
    };
    wechat.add_session(session.clone());
    let mp = WechatFetcher::new(
        crate::helpers::http_client(),
        wechat.base_url(),
        Secret::new(&session.token),
        Secret::new(session.cookie()),
        Arc::new(Pacer::new(Duration::ZERO, Duration::ZERO)),
    )
    .fetch(&feed(&a, None))
    .await
    .expect("MP list");
    let weread = FakeWeread::start().await.expect("fake WeRead");
    weread.serve_account(&a);
    let jar = weread.new_session("reader");
    let wr = fetcher(&weread, options(&weread, 20, true), &jar)
        .list(&feed(&a, None))
        .await
        .expect("WeRead list");

    assert_eq!(mp.articles.len(), articles_in(&a, 4));
    assert_eq!(wr.articles.len(), mp.articles.len());
    for (m, w) in mp.articles.iter().zip(&wr.articles) {
        assert_eq!(m.id, w.id, "one id whichever source read it");
        assert_eq!(m.publish_time, w.publish_time);
        let doc = w.doc_url.as_deref().expect("doc_url kept");
        assert_eq!(links::normalise(&m.url), links::normalise(doc));
        assert!(links::normalise(doc).starts_with("https://mp.weixin.qq.com/s?__biz="));
    }
    wechat.stop();
    weread.stop();
}

#[tokio::test]
async fn the_fake_wechat_closure_refuses_other_accounts_only() {
    let (own, other) = (account(3_286_016_694, 2), account(3_286_016_695, 2));
    let wechat = FakeWechat::start(vec![own.clone(), other.clone()])
        .await
        .expect("fake");
    let session = FakeSession {
        token: "tok".into(),
        slave_sid: "sid".into(),
        limit: None,
    };
    wechat.add_session(session.clone());
    wechat.set_own_account("sid", own.number);
    wechat.set_closed(true);
    let mp = WechatFetcher::new(
        crate::helpers::http_client(),
        wechat.base_url(),
        Secret::new(&session.token),
        Secret::new(session.cookie()),
        Arc::new(Pacer::new(Duration::ZERO, Duration::ZERO)),
    );
    let refused = mp
        .fetch(&feed(&other, None))
        .await
        .expect_err("closed for others");
    assert_eq!(
        refused.reason(),
        "rate_limited",
        "the MP mapping is unchanged"
    );
    let mine = mp.fetch(&feed(&own, None)).await.expect("own account open");
    assert_eq!(mine.articles.len(), articles_in(&own, 2));
    // An empty fakeid lists the login's own account.
    let body: Value = crate::helpers::http_client()
        .get(format!("{}/cgi-bin/appmsgpublish", wechat.base_url()))
        .query(&[
            ("token", "tok"),
            ("fakeid", ""),
            ("begin", "0"),
            ("count", "5"),
        ])
        .header("Cookie", session.cookie())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["base_resp"]["ret"], 0, "{body}");
    let outcomes: Vec<&str> = wechat.log_for("tok").iter().map(|e| e.outcome).collect();
    assert_eq!(
        outcomes,
        ["200013", "ok", "ok"],
        "refused on the first request"
    );
    wechat.set_closed(false);
    mp.fetch(&feed(&other, None)).await.expect("reopened");
    wechat.stop();
}

mod child {
    use super::*;
    use crate::helpers::db::on_both;
    use crate::helpers::{TestParent, cascade, test_config};
    use werss_cascade::child::Child;
    use werss_cascade::logins::LoginStore;

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_wechat_feed_on_a_child_with_only_a_weread_login_is_read_through_weread(backend) {
            let p = TestParent::on(backend.clone()).await;
            let a = account(3_286_016_696, 5);
            let fake = FakeWeread::start().await.expect("fake");
            fake.serve_account(&a);
            let node = p.add_node("reader").await;
            let mut c = test_config(&p.dir);
            let data = p.dir.path().join("child-reader");
            c.cascade.data_dir = data.display().to_string();
            c.cascade.parent_api_url = p.url("");
            c.cascade.api_key = node.key.clone();
            c.cascade.api_secret = Secret::new(&node.secret);
            c.cascade.weread_base_url = fake.base_url().to_string();
            c.cascade.weread_page_gap_ms = 0;
            c.cascade.heartbeat_interval = 1;
            c.cascade.claim_wait = 1;
            c.cascade.shutdown_grace = 5;
            let mut login = fake.new_login("weread-1");
            // Renewed just now: the keeper leaves it alone, so the renewal below is the fetch's.
            login.renewed_at = Some(chrono::Utc::now());
            let vid = WereadJar::from_pairs(login.secrets.cookies.clone()).vid().expect("vid").to_string();
            LoginStore::open(&data).expect("store").upsert(login).expect("saved");
            // The key lapsed: the first list request answers -2012, the child renews and goes on.
            fake.expire_skey(&vid);

            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").run(stop.clone()));
            p.poll_until("/nodes", "the node to report a valid session", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the completion", |c| c["completed_today"] == 1).await;

            let id = format!("MP_WXS_{}", a.number);
            let doc: Value = crate::helpers::http_client()
                .get(p.url(&format!("/feed/{id}.json")))
                .send().await.expect("sent").json().await.expect("JSON Feed");
            let items = doc["items"].as_array().expect("items");
            assert_eq!(items.len(), articles_in(&a, 5), "{doc}");
            let push = &a.publishes[0];
            let token = a.article_token(push.appmsgid, 1);
            assert!(
                items.iter().any(|i| i["url"] == links::short_link(&token, true)),
                "the WeRead link of the newest article: {doc}"
            );
            assert!(items.iter().all(|i| i["url"].as_str().is_some_and(|u| u.starts_with("https://mp.weixin.qq.com/s/"))));
            assert_eq!(fake.renewals(), 1, "renewed once on -2012");
            let outcomes: Vec<String> = fake.log_for(&vid).into_iter().filter(|e| e.endpoint == "list").map(|e| e.outcome).collect();
            assert_eq!(outcomes, ["-2012", "ok", "ok"], "one stale try, then the list and its end");
            // Then one body per new article, with the renewed key.
            let pages: Vec<String> = fake.log_for(&vid).into_iter().filter(|e| e.endpoint == "content").map(|e| e.outcome).collect();
            assert_eq!(pages, vec!["ok"; articles_in(&a, 5)]);
            let fs = p.get(&cascade(&format!("/feed-status?feed_id={id}")), &p.admin()).await;
            assert_eq!(fs.ok()["list"][0]["update_status"], "fresh", "{}", fs.ok());
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            let saved = LoginStore::open(&data).expect("store").get("weread-1").expect("login");
            assert_eq!(
                saved.secrets.cookies.iter().find(|(k, _)| k == "wr_skey").map(|(_, v)| v.expose().to_string()),
                fake.skey(&vid),
                "the renewed key was saved"
            );
            fake.stop();
            p.shutdown().await;
        }
    }
    /// A child of `node` whose login store holds one fresh `weread` login of `fake`.
    fn weread_child(
        p: &TestParent,
        node: &crate::helpers::TestNode,
        fake: &FakeWeread,
    ) -> werss_cascade::config::Config {
        let mut c = test_config(&p.dir);
        let data = p.dir.path().join(format!("child-{}", node.id));
        c.cascade.data_dir = data.display().to_string();
        c.cascade.parent_api_url = p.url("");
        c.cascade.api_key = node.key.clone();
        c.cascade.api_secret = Secret::new(&node.secret);
        c.cascade.weread_base_url = fake.base_url().to_string();
        c.cascade.weread_page_gap_ms = 0;
        c.cascade.heartbeat_interval = 1;
        c.cascade.claim_wait = 1;
        c.cascade.capacity = 1;
        c.cascade.shutdown_grace = 5;
        let mut login = fake.new_login(&format!("weread-{}", node.id));
        login.renewed_at = Some(chrono::Utc::now());
        LoginStore::open(&data)
            .expect("store")
            .upsert(login)
            .expect("saved");
        c
    }

    fn list_calls(fake: &FakeWeread) -> usize {
        fake.requests()
            .iter()
            .filter(|e| e.endpoint == "list")
            .count()
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_feed_with_its_own_chain_is_read_through_it_and_returns_to_the_global_one(backend) {
            let p = TestParent::on(backend.clone()).await;
            let a = account(3_286_016_721, 3);
            let fake = FakeWeread::start().await.expect("fake");
            fake.serve_account(&a);
            let id = format!("MP_WXS_{}", a.number);
            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            let path = cascade(&format!("/feeds/{id}"));

            // Unknown and repeated sources are refused, and nothing is stored.
            let bad = p.put(&path, &p.admin(), json!({"source_chain": ["weread_list", "rss"]})).await;
            bad.err(400);
            assert_eq!(bad.body["data"]["field"], "source_chain", "{}", bad.text);
            assert!(bad.body["message"].as_str().is_some_and(|m| m.contains("unknown source")), "{}", bad.text);
            let twice = p.put(&path, &p.admin(), json!({"source_chain": ["mp_list", "MP_LIST"]})).await;
            twice.err(400);
            assert!(twice.body["message"].as_str().is_some_and(|m| m.contains("twice")), "{}", twice.text);
            assert!(p.get(&path, &p.admin()).await.ok().get("source_chain").is_none());

            let set = p.put(&path, &p.admin(), json!({"source_chain": [" Weread_Cover "]})).await;
            assert_eq!(set.ok()["source_chain"], json!(["weread_cover"]));
            assert_eq!(p.get(&path, &p.admin()).await.ok()["source_chain"], json!(["weread_cover"]));
            // Other fields leave the chain alone.
            p.put(&path, &p.admin(), json!({"mp_intro": "read by its cover"})).await.ok();
            assert_eq!(p.get(&path, &p.admin()).await.ok()["source_chain"], json!(["weread_cover"]));

            let node = p.add_node("reader").await;
            let c = weread_child(&p, &node, &fake);
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").run(stop.clone()));
            p.poll_until("/nodes", "the node to report a valid session", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the completion", |c| c["completed_today"] == 1).await;
            assert_eq!(list_calls(&fake), 0, "the feed's chain has no list");
            let doc: Value = crate::helpers::http_client()
                .get(p.url(&format!("/feed/{id}.json")))
                .send().await.expect("sent").json().await.expect("JSON Feed");
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(1), "the newest article only: {doc}");

            // `[]` returns the feed to the parent's chain: the list reads the rest.
            let cleared = p.put(&path, &p.admin(), json!({"source_chain": []})).await;
            assert!(cleared.ok().get("source_chain").is_none(), "{}", cleared.text);
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the second completion", |c| c["completed_today"] == 2).await;
            assert!(list_calls(&fake) > 0, "the global chain starts with the list");
            let doc: Value = crate::helpers::http_client()
                .get(p.url(&format!("/feed/{id}.json")))
                .send().await.expect("sent").json().await.expect("JSON Feed");
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(articles_in(&a, 3)), "each article once: {doc}");
            // The cover's first-seen time gave way to the list's real one.
            let newest = doc["items"].as_array().expect("items").iter()
                .filter_map(|i| i["date_published"].as_str())
                .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp())
                .max();
            assert_eq!(newest, Some(NEWEST), "{doc}");
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            fake.stop();
            p.shutdown().await;
        }
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_backlog_left_by_the_page_cap_is_read_on_the_next_run(backend) {
            let p = TestParent::on(backend.clone()).await;
            let a = account(3_286_016_731, 3);
            let fake = FakeWeread::start().await.expect("fake");
            fake.serve_account(&a);
            let id = format!("MP_WXS_{}", a.number);
            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            let node = p.add_node("reader").await;
            let mut c = weread_child(&p, &node, &fake);
            c.cascade.weread_max_pages = 2;
            // Seven list calls in a few seconds: no hourly cap in the way.
            c.cascade.budget_per_hour = werss_cascade::config::PerKind { mp: None, weread: Some(0) };
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").run(stop.clone()));
            p.poll_until("/nodes", "the node to report a valid session", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            let items = || async {
                let doc: Value = crate::helpers::http_client()
                    .get(p.url(&format!("/feed/{id}.json?limit=100")))
                    .send().await.expect("sent").json().await.expect("JSON Feed");
                doc["items"].as_array().map_or(0, Vec::len)
            };
            let offsets = || fake.requests().iter().filter(|e| e.endpoint == "list").map(|e| e.offset).collect::<Vec<_>>();
            let run = |n: i64| {
                let (p, task) = (&p, &task);
                async move {
                    p.dispatch(task).await;
                    p.poll_until("/pending-allocations", "the run's completion", |c| c["completed_today"] == n).await;
                }
            };
            run(1).await;
            assert_eq!(items().await, articles_in(&a, 3));

            // 45 new pushes: the cap reads 40 of them and the parent keeps where it stopped.
            publish_newer(&fake, &a, 45);
            let before = offsets().len();
            run(2).await;
            assert_eq!(items().await, articles_in(&a, 3) + 40);
            assert_eq!(offsets()[before..], [0, 20]);

            // The next run reads the five left and ends the backlog; the one after has none.
            let before = offsets().len();
            run(3).await;
            assert_eq!(items().await, articles_in(&a, 3) + 45, "every article once");
            assert_eq!(offsets()[before..], [0, 40]);
            let before = offsets().len();
            run(4).await;
            assert_eq!(offsets()[before..], [0], "nothing left to go back to");
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            fake.stop();
            p.shutdown().await;
        }
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_list_refused_on_two_nodes_closes_once_the_cover_serves_and_a_probe_reopens_it(backend) {
            let (p, mut alerts) = crate::alerts::parent_with_receiver(backend.clone()).await;
            let (a, b) = (account(3_286_016_701, 3), account(3_286_016_702, 3));
            let fake = FakeWeread::start().await.expect("fake");
            fake.serve_account(&a);
            fake.serve_account(&b);
            fake.close_list(true);
            let stop = tokio_util::sync::CancellationToken::new();
            let mut running = Vec::new();
            for name in ["reader-1", "reader-2"] {
                let node = p.add_node(name).await;
                let c = weread_child(&p, &node, &fake);
                running.push(tokio::spawn(Child::new(c).expect("child").run(stop.clone())));
            }
            p.poll_until("/nodes", "both nodes with a valid session", |n| {
                n.as_array().is_some_and(|l| l.iter().filter(|x| x["session_state"] == "valid").count() == 2)
            }).await;
            let task = p.wechat_task(&[a.clone(), b.clone()]).await;
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "both feeds completed", |c| c["completed_today"] == 2).await;

            // Both nodes met the refusal: the list is closed, the cover served both feeds.
            let sources = p.poll_until("/sources", "the list closed", |l| {
                l.as_array().is_some_and(|l| l.iter().any(|s| s["source"] == "weread_list" && s["state"] == "closed"))
            }).await;
            let row = |name: &str| sources.as_array().expect("list").iter().find(|s| s["source"] == name).cloned().expect("listed");
            assert_eq!(row("weread_list")["refused_by_nodes"], 2);
            assert!(row("weread_list")["last_error"].as_str().is_some_and(|e| e.contains("-2041")), "{sources}");
            assert_eq!(row("weread_cover")["state"], "open");
            assert_eq!(row("weread_cover")["feeds_served"], 2);
            assert_eq!(row("weread_cover")["logins_usable"], 2);
            assert_eq!(row("mp_list")["logins_usable"], 0);
            for feed in [&a, &b] {
                let doc: Value = crate::helpers::http_client()
                    .get(p.url(&format!("/feed/MP_WXS_{}.json", feed.number)))
                    .send().await.expect("sent").json().await.expect("JSON Feed");
                assert_eq!(doc["items"].as_array().map(Vec::len), Some(1), "the newest article: {doc}");
            }
            let done = p.get(&cascade("/allocations?status=completed"), &p.admin()).await;
            assert!(done.ok()["list"].as_array().expect("list").iter().all(|x| x["attempt"] == 1), "no attempt spent");
            let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
            assert!(nodes.ok().as_array().expect("nodes").iter().all(|n| n["cooldown_until"].is_null()), "no node cools on a closure");
            let metrics = crate::helpers::http_client().get(p.url("/metrics")).send().await.expect("sent").text().await.expect("text");
            assert!(metrics.contains("cascade_source_open{source=\"weread_list\"} 0"), "{metrics}");
            assert!(metrics.contains("cascade_source_open{source=\"weread_cover\"} 1"), "{metrics}");
            let (_, closed) = crate::webhooks::next(&mut alerts).await;
            assert_eq!(closed["event"], "source_closed");
            assert_eq!(closed["source"], "weread_list");
            crate::alerts::assert_nothing_more(&p, &mut alerts).await;

            // While it is closed and no probe is due, the packages leave it out.
            let calls = list_calls(&fake);
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the next round completed", |c| c["completed_today"] == 4).await;
            assert_eq!(list_calls(&fake), calls, "a closed list is not asked");

            // WeRead lists again; once a probe is due, one feed tries the list first and reopens it.
            fake.close_list(false);
            p.clock.advance(chrono::TimeDelta::minutes(31));
            p.dispatch(&task).await;
            p.poll_until("/sources", "the list reopened", |l| {
                l.as_array().is_some_and(|l| l.iter().any(|s| s["source"] == "weread_list" && s["state"] == "open"))
            }).await;
            assert!(list_calls(&fake) > calls, "the probe asked the list");
            let (_, reopened) = crate::webhooks::next(&mut alerts).await;
            assert_eq!(reopened["event"], "source_reopened");
            assert_eq!(reopened["source"], "weread_list");
            stop.cancel();
            for r in running {
                r.await.expect("joined").expect("child exits cleanly");
            }
            crate::alerts::assert_nothing_more(&p, &mut alerts).await;
            fake.stop();
            p.shutdown().await;
        }
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn an_mp_list_refusing_a_rested_login_is_closed_and_weread_takes_the_feed_without_an_attempt(backend) {
            use werss_cascade::testkit::wechat::{FakeSession, FakeWechat};
            let (p, mut alerts) = crate::alerts::parent_with_receiver(backend.clone()).await;
            let a = account(3_286_016_711, 3);
            let wechat = FakeWechat::start(vec![a.clone()]).await.expect("fake wechat");
            wechat.set_closed(true);
            let session = FakeSession { token: "mp-closed-token".into(), slave_sid: "mp-closed-sid".into(), limit: None };
            wechat.add_session(session.clone());
            let weread = FakeWeread::start().await.expect("fake weread");
            weread.serve_account(&a);

            // The only node with an `mp` login: its first request, after no use at all, is refused.
            let mp_node = p.add_node("mp-only").await;
            let mut c = test_config(&p.dir);
            let data = p.dir.path().join("child-mp");
            c.cascade.data_dir = data.display().to_string();
            c.cascade.parent_api_url = p.url("");
            c.cascade.api_key = mp_node.key.clone();
            c.cascade.api_secret = Secret::new(&mp_node.secret);
            c.cascade.wechat_base_url = wechat.base_url().to_string();
            c.cascade.wechat_gap_ms = 0;
            c.cascade.wechat_gap_jitter_ms = 0;
            c.cascade.heartbeat_interval = 1;
            c.cascade.claim_wait = 1;
            c.cascade.capacity = 1;
            c.cascade.shutdown_grace = 5;
            LoginStore::open(&data).expect("store").upsert(session.login("mp-1")).expect("saved");
            let stop = tokio_util::sync::CancellationToken::new();
            let mut running = vec![tokio::spawn(Child::new(c).expect("child").run(stop.clone()))];
            p.poll_until("/nodes", "the mp node online", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            p.dispatch(&task).await;
            p.poll_until("/sources", "the MP list closed", |l| {
                l.as_array().is_some_and(|l| l.iter().any(|s| s["source"] == "mp_list" && s["state"] == "closed"))
            }).await;
            let (_, closed) = crate::webhooks::next(&mut alerts).await;
            assert_eq!(closed["event"], "source_closed");
            assert_eq!(closed["source"], "mp_list");
            // The mp node hears of it at its next heartbeat (the parent's clock is the test's).
            p.clock.advance(chrono::TimeDelta::seconds(1));
            let beat = p.get(&cascade(&format!("/nodes/{}", mp_node.id)), &p.admin()).await.ok()["last_heartbeat_at"].clone();
            p.poll_until(&format!("/nodes/{}", mp_node.id), "a heartbeat after the closure", |n| n["last_heartbeat_at"] != beat).await;
            // The login is fine, the source refuses: it does not cool.
            let logins = p.get(&cascade("/logins"), &p.admin()).await;
            let logins = logins.ok();
            let list = logins.as_array().or_else(|| logins["list"].as_array()).expect("logins");
            let mp = list.iter().find(|l| l["kind"] == "mp").expect("the mp login");
            assert_eq!(mp["state"], "valid", "{logins}");

            // A WeRead node reads the feed once the work is back, no attempt spent.
            let weread_node = p.add_node("weread").await;
            running.push(tokio::spawn(Child::new(weread_child(&p, &weread_node, &weread)).expect("child").run(stop.clone())));
            p.clock.advance(chrono::TimeDelta::seconds(31));
            p.poll_until("/pending-allocations", "the feed read", |c| c["completed_today"] == 1).await;
            let done = p.get(&cascade("/allocations?status=completed"), &p.admin()).await;
            let row = &done.ok()["list"][0];
            assert_eq!(row["node_id"], weread_node.id.as_str());
            assert_eq!(row["attempt"], 1, "the refusal spent no attempt: {row}");
            let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
            assert!(nodes.ok().as_array().expect("nodes").iter().all(|n| n["cooldown_until"].is_null()), "no node cools on a closure");
            assert_eq!(wechat.log_for(&session.token).len(), 1, "the MP list was asked once");
            let sources = p.get(&cascade("/sources"), &p.admin()).await;
            let list = sources.ok().as_array().cloned().unwrap_or_default();
            let served = list.iter().find(|s| s["source"] == "weread_list").expect("listed");
            assert_eq!(served["feeds_served"], 1);
            stop.cancel();
            for r in running {
                r.await.expect("joined").expect("child exits cleanly");
            }
            crate::alerts::assert_nothing_more(&p, &mut alerts).await;
            wechat.stop();
            weread.stop();
            p.shutdown().await;
        }
    }
}

#[tokio::test]
async fn the_fake_serves_article_pages_and_404s_unknown_ones() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_697, 1);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let token = a.article_token(a.publishes[0].appmsgid, 1);
    let get = |review: String| {
        let req = crate::helpers::http_client()
            .get(format!("{}/web/mp/content", fake.base_url()))
            .query(&[("reviewId", review)]);
        werss_cascade::logins::weread::authenticated(req, fake.base_url(), &jar).send()
    };
    let page = get(format!("MP_WXS_{}_{token}", a.number))
        .await
        .expect("sent");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("HTML");
    assert!(html.contains(r#"<div id="js_content""#), "{html}");
    assert!(html.contains(&a.publishes[0].articles[0].digest));
    let missing = get("MP_WXS_1_nope".into()).await.expect("sent");
    assert_eq!(missing.status(), 404);
    let outcomes: Vec<String> = fake
        .log_for(&vid(&jar))
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert_eq!(outcomes, ["ok", "404"]);
    fake.stop();
}
