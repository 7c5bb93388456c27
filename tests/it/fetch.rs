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
