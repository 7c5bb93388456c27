//! The WeChat fetcher against the fake MP platform: paging to `since`, codes, pacing.

use std::sync::Arc;
use std::time::Duration;
use werss_cascade::fetch::pacer::Pacer;
use werss_cascade::fetch::wechat::WechatFetcher;
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::protocol::wire::PackageFeed;
use werss_cascade::testkit::wechat::{FakeAccount, FakeSession, FakeWechat};

const NEWEST: i64 = 1_795_358_591;

fn feed(account: &FakeAccount, since: Option<i64>) -> PackageFeed {
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
        since,
        sources: None,
        backlog: None,
    }
}

fn fetcher(fake: &FakeWechat, session: &FakeSession, gap: Duration) -> WechatFetcher {
    let http = crate::helpers::http_client();
    let pacer = Arc::new(Pacer::new(gap, Duration::ZERO));
    WechatFetcher::new(
        http,
        fake.base_url(),
        Secret::new(&session.token),
        Secret::new(session.cookie()),
        pacer,
    )
}

fn session(token: &str, limit: Option<(usize, Duration)>) -> FakeSession {
    FakeSession {
        token: token.into(),
        slave_sid: format!("sid-{token}"),
        limit,
    }
}

#[tokio::test]
async fn pages_back_only_to_what_the_parent_has() {
    let account = FakeAccount::generated(3_892_772_220, 12, NEWEST);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake starts");
    let s = session("tok", None);
    fake.add_session(s.clone());
    let f = fetcher(&fake, &s, Duration::ZERO);

    let all = f.fetch(&feed(&account, None)).await.expect("fetched");
    assert_eq!(
        all.articles.len(),
        12,
        "first crawl reads every page up to total_count"
    );
    assert!(
        all.articles[0].id.starts_with("3892772220-"),
        "{}",
        all.articles[0].id
    );
    assert_eq!(all.articles[0].publish_time, NEWEST);
    assert_eq!(fake.log_for("tok").len(), 3);

    let since = NEWEST - 3 * 3600; // the parent holds everything up to the 4th newest
    let newer = f
        .fetch(&feed(&account, Some(since)))
        .await
        .expect("fetched");
    assert_eq!(newer.articles.len(), 3);
    assert_eq!(fake.log_for("tok").len(), 4, "one page was enough");
    fake.stop();
}

#[tokio::test]
async fn wechat_codes_become_typed_failures() {
    let account = FakeAccount::generated(1, 2, NEWEST);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake starts");
    let limited = session("limited", Some((1, Duration::from_secs(60))));
    fake.add_session(limited.clone());
    let f = fetcher(&fake, &limited, Duration::ZERO);
    f.fetch(&feed(&account, None))
        .await
        .expect("first request within the limit");
    let err = f.fetch(&feed(&account, None)).await.expect_err("limited");
    assert_eq!(err.reason(), "rate_limited");

    let s = session("expiring", None);
    fake.add_session(s.clone());
    let f = fetcher(&fake, &s, Duration::ZERO);
    let mut unknown = feed(&account, None);
    unknown.faker_id = Some(FakeAccount::generated(2, 0, 0).fakeid());
    assert_eq!(
        f.fetch(&unknown).await.expect_err("unknown").reason(),
        "not_found"
    );
    fake.expire(&s.slave_sid);
    assert_eq!(
        f.fetch(&feed(&account, None))
            .await
            .expect_err("expired")
            .reason(),
        "session_expired"
    );
    let wrong_token = FakeSession {
        token: "other".into(),
        ..s.clone()
    };
    fake.add_session(s.clone());
    let f = fetcher(&fake, &wrong_token, Duration::ZERO);
    assert_eq!(
        f.fetch(&feed(&account, None))
            .await
            .expect_err("csrf")
            .reason(),
        "session_expired"
    );
    fake.stop();
}

#[tokio::test]
async fn one_login_never_exceeds_its_pace_across_concurrent_fetches() {
    let accounts: Vec<FakeAccount> = (0..4)
        .map(|i| FakeAccount::generated(100 + i, 3, NEWEST))
        .collect();
    let fake = FakeWechat::start(accounts.clone())
        .await
        .expect("fake starts");
    let s = session("paced", None);
    fake.add_session(s.clone());
    let f = fetcher(&fake, &s, Duration::from_millis(40));
    let mut set = tokio::task::JoinSet::new();
    for a in accounts {
        let (f, feed) = (f.clone(), feed(&a, None));
        set.spawn(async move { f.fetch(&feed).await.expect("fetched").articles.len() });
    }
    while let Some(n) = set.join_next().await {
        assert_eq!(n.expect("joined"), 3);
    }
    assert_eq!(fake.log_for("paced").len(), 4);
    let gap = fake.min_gap("paced").expect("several requests");
    // Sent ≥ 40 ms apart; arrival times may differ from send times by loopback jitter.
    assert!(gap >= Duration::from_millis(30), "requests {gap:?} apart");
    fake.stop();
}

mod rss {
    use super::*;
    use werss_cascade::fetch::rss::RssFetcher;
    use werss_cascade::testkit::feeds::{FakeEntry, FakeFeeds, Format};

    fn entries(n: i64) -> Vec<FakeEntry> {
        (0..n)
            .map(|i| FakeEntry {
                id: format!("urn:e{i}"),
                title: format!("Entry {i}"),
                link: format!("https://e.org/{i}"),
                published: NEWEST - i * 60,
            })
            .collect()
    }

    fn package(url: &str, since: Option<i64>) -> PackageFeed {
        PackageFeed {
            id: werss_cascade::protocol::ids::rss_feed_id(url),
            faker_id: None,
            mp_name: "blog".into(),
            mp_cover: None,
            mp_intro: None,
            status: 1,
            source: Some("rss".into()),
            url: Some(url.into()),
            etag: None,
            last_modified: None,
            since,
            sources: None,
            backlog: None,
        }
    }

    /// A hostile feed server nests elements 100,000 deep (in an item, in its description, in
    /// Atom XHTML content, in JSON): feed-rs reads XML with a depth counter, not recursion,
    /// and serde_json stops at 128, so the child answers a result, not a stack overflow.
    #[test]
    fn deeply_nested_feeds_do_not_overflow_the_stack() {
        let deep = |open: &str, close: &str| (open.repeat(100_000), close.repeat(100_000));
        let (o, c) = deep("<x>", "</x>");
        let (d, e) = deep("<div>", "</div>");
        let (j, k) = deep("[", "]");
        let bodies = [
            format!(
                "<rss version=\"2.0\"><channel><title>t</title><item><title>i</title>{o}{c}</item></channel></rss>"
            ),
            format!(
                "<rss version=\"2.0\"><channel><title>t</title><item><description>{o}{c}</description></item></channel></rss>"
            ),
            format!(
                "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>t</title><entry><id>e</id><title>i</title><content type=\"xhtml\">{d}{e}</content></entry></feed>"
            ),
            format!("<rss version=\"2.0\"><channel><title>t</title><item><title>i</title>{o}"),
            format!(
                "{{\"version\": \"https://jsonfeed.org/version/1.1\", \"title\": \"t\", \"items\": {j}{k}}}"
            ),
        ];
        for body in &bodies {
            // Ok or a parse error: either way the process is still here.
            let _ = werss_cascade::fetch::rss::parse_entries("RSS_0", body.as_bytes(), NEWEST);
        }
    }

    #[tokio::test]
    async fn all_three_formats_parse_with_stable_ids() {
        let feeds = FakeFeeds::start().await.expect("server");
        let f = RssFetcher::new(crate::helpers::http_client());
        for (name, format) in [
            ("rss", Format::Rss),
            ("atom", Format::Atom),
            ("json", Format::Json),
        ] {
            let url = feeds.add_feed(name, format, entries(3));
            let pkg = package(&url, None);
            let got = f.fetch(&pkg, NEWEST).await.expect("fetched");
            assert_eq!(got.articles.len(), 3, "{name}");
            assert_eq!(got.articles[0].title, "Entry 0", "{name}");
            assert_eq!(got.articles[0].url, "https://e.org/0", "{name}");
            assert_eq!(got.articles[0].publish_time, NEWEST, "{name}");
            assert!(
                got.articles[0].id.starts_with(&format!("{}-", pkg.id)),
                "{name}"
            );
            assert!(got.etag.is_some() && got.last_modified.is_some(), "{name}");
            let again = f.fetch(&pkg, NEWEST).await.expect("fetched");
            assert_eq!(
                again.articles[0].id, got.articles[0].id,
                "{name}: ids are stable"
            );
            let newer = f
                .fetch(&package(&url, Some(NEWEST - 90)), NEWEST)
                .await
                .expect("fetched");
            assert_eq!(
                newer.articles.len(),
                2,
                "{name}: only entries newer than since"
            );
        }
        assert!(
            feeds.log().iter().all(|r| r.cookie.is_none()),
            "no credentials leak to feeds"
        );
        feeds.stop();
    }

    #[tokio::test]
    async fn conditional_get_rate_limits_and_gone_feeds() {
        let feeds = FakeFeeds::start().await.expect("server");
        let f = RssFetcher::new(crate::helpers::http_client());
        let url = feeds.add_feed("blog", Format::Rss, entries(2));
        let first = f
            .fetch(&package(&url, None), NEWEST)
            .await
            .expect("fetched");
        let mut pkg = package(&url, None);
        pkg.etag = first.etag.clone();
        pkg.last_modified = first.last_modified.clone();
        let unchanged = f.fetch(&pkg, NEWEST).await.expect("304");
        assert!(unchanged.articles.is_empty());
        assert_eq!(unchanged.etag, first.etag, "validators kept");
        let log = feeds.log();
        assert_eq!(log.last().map(|r| r.status), Some(304));
        assert_eq!(log.last().and_then(|r| r.if_none_match.clone()), first.etag);

        feeds.push_entry(
            "blog",
            FakeEntry {
                id: "urn:new".into(),
                title: "New".into(),
                link: "https://e.org/new".into(),
                published: NEWEST + 60,
            },
        );
        assert_eq!(
            f.fetch(&pkg, NEWEST).await.expect("changed").articles.len(),
            3
        );

        feeds.fail_next("blog", 429, Some("120"));
        let limited = f.fetch(&pkg, NEWEST).await.expect_err("429");
        assert_eq!(
            (limited.reason(), limited.retry_after()),
            ("rate_limited", Some(120))
        );
        feeds.fail_next("blog", 503, None);
        assert_eq!(
            f.fetch(&pkg, NEWEST).await.expect_err("503").retry_after(),
            Some(900)
        );
        feeds.fail_next("blog", 500, None);
        assert_eq!(
            f.fetch(&pkg, NEWEST).await.expect_err("500").reason(),
            "network"
        );
        let gone = package(
            &format!(
                "{}/feeds/missing",
                url.rsplit_once("/feeds/").map_or("", |(b, _)| b)
            ),
            None,
        );
        assert_eq!(
            f.fetch(&gone, NEWEST).await.expect_err("404").reason(),
            "not_found"
        );
        feeds.stop();
    }
}

#[tokio::test]
async fn injected_upstream_faults_map_to_reasons() {
    use werss_cascade::testkit::wechat::Fault;
    let account = FakeAccount::generated(77, 1, NEWEST);
    let fake = FakeWechat::start(vec![account.clone()])
        .await
        .expect("fake starts");
    let s = session("faults", None);
    fake.add_session(s.clone());
    let f = fetcher(&fake, &s, Duration::ZERO);
    for (fault, reason) in [
        (Fault::Status(502), "network"),
        (Fault::Status(500), "network"),
        (Fault::LoginPage, "session_expired"),
        (Fault::BadNestedJson, "parse"),
    ] {
        fake.inject(fault.clone());
        assert_eq!(
            f.fetch(&feed(&account, None))
                .await
                .expect_err("fault")
                .reason(),
            reason,
            "{fault:?}"
        );
    }
    fake.inject(Fault::Latency(Duration::from_millis(20)));
    assert_eq!(
        f.fetch(&feed(&account, None))
            .await
            .expect("slow but fine")
            .articles
            .len(),
        1
    );
    fake.stop();
}
