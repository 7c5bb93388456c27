//! Subscribing by name or by link (issue 13 §6): an admin's search runs as a node command on a
//! child with a valid `mp` login (admin → parent → child → fake `searchbiz` → admin), a
//! candidate becomes a feed; no node able to search, a node that never answers, a node
//! answering another's command; article links, long and short, on the WeChat host only.

use crate::helpers::db::on_both;
use crate::helpers::process::cascade_cmd;
use crate::helpers::{PASSWORD, TestNode, TestParent, cascade, test_config};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use werss_cascade::child::Child;
use werss_cascade::logins::LoginStore;
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::testkit::wechat::{FakeAccount, FakeSession, FakeWechat};

/// Guard against a hung child; never a speed assertion.
const HANG: Duration = Duration::from_secs(30);

const NEWEST: i64 = 1_795_358_591;

fn accounts() -> Vec<FakeAccount> {
    let mut people = FakeAccount::generated(3_090_005_381, 2, NEWEST);
    people.nickname = "People Daily 人民日报".into();
    let mut weekly = FakeAccount::generated(3_892_772_220, 2, NEWEST);
    weekly.nickname = "People Weekly".into();
    let mut other = FakeAccount::generated(1_234_567, 1, NEWEST);
    other.nickname = "Something Else".into();
    vec![people, weekly, other]
}

fn session() -> FakeSession {
    FakeSession {
        token: "TOKEN-SECRET-search-51c2".into(),
        slave_sid: "SID-SECRET-search-a9e0".into(),
        limit: None,
    }
}

/// A child of `node` whose store holds one `mp` login of `s`.
fn child_config(
    p: &TestParent,
    node: &TestNode,
    fake: &FakeWechat,
    s: &FakeSession,
) -> werss_cascade::config::Config {
    let mut c = test_config(&p.dir);
    let data = p.dir.path().join(format!("child-{}", node.id));
    c.cascade.data_dir = data.display().to_string();
    LoginStore::open(&data)
        .expect("store")
        .upsert(s.login("mp-search"))
        .expect("saved");
    c.cascade.parent_api_url = p.url("");
    c.cascade.api_key = node.key.clone();
    c.cascade.api_secret = Secret::new(&node.secret);
    c.cascade.wechat_base_url = fake.base_url().to_string();
    c.cascade.wechat_gap_ms = 0;
    c.cascade.wechat_gap_jitter_ms = 0;
    c.cascade.heartbeat_interval = 1;
    c.cascade.claim_wait = 30;
    c.cascade.shutdown_grace = 5;
    c
}

/// A login as a node reports it in a heartbeat.
fn login(id: &str, state: &str) -> Value {
    json!({"id": id, "kind": "mp", "name": id, "state": state, "expires_at": "2099-01-01T00:00:00Z",
           "cooldown_until": null, "last_ok_at": null, "last_error": null})
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_search_by_name_runs_on_a_child_and_a_candidate_becomes_a_feed(backend) {
        let p = TestParent::on(backend).await;
        let fake = FakeWechat::start(accounts()).await.expect("fake wechat");
        let s = session();
        fake.add_session(s.clone());
        let node = p.add_node("searcher").await;
        let stop = CancellationToken::new();
        let running = tokio::spawn(Child::new(child_config(&p, &node, &fake, &s)).expect("child").run(stop.clone()));
        p.poll_until("/logins", "the child's mp login listed as valid", |l| {
            l.as_array().is_some_and(|l| l.iter().any(|x| x["kind"] == "mp" && x["state"] == "valid"))
        })
        .await;

        let found = p.post(&cascade("/feeds/search?q=people"), &p.admin(), json!({})).await;
        let list = found.ok().as_array().cloned().expect("candidates");
        assert_eq!(list.len(), 2, "{}", found.text);
        let first = &list[0];
        assert_eq!(first["nickname"], "People Daily 人民日报");
        assert_eq!(first["fakeid"], "MzA5MDAwNTM4MQ==");
        assert_eq!(first["biz"], "3090005381");
        assert_eq!(first["feed_id"], "MP_WXS_3090005381");
        assert_eq!(first["alias"], "fake3090005381");
        assert!(first["avatar"].as_str().is_some_and(|a| a.starts_with("http://mmbiz.qpic.cn/")));
        assert!(first["signature"].as_str().is_some_and(|s| s.contains("People Daily")));
        assert_eq!(first["already_subscribed"], false);
        assert_eq!(list[1]["nickname"], "People Weekly");
        // The fake saw the search with the child's session; the parent never had it.
        let log = fake.log_for(&s.token);
        assert!(log.iter().any(|e| e.outcome == "ok" && e.fakeid.is_empty()), "searchbiz was asked");
        assert!(!found.text.contains(&s.token) && !found.text.contains(&s.slave_sid));

        // `limit` bounds the answer; an alias matches too.
        let one = p.post(&cascade("/feeds/search?q=People&limit=1"), &p.admin(), json!({})).await;
        assert_eq!(one.ok().as_array().map(Vec::len), Some(1));
        let by_alias = p.post(&cascade("/feeds/search?q=fake1234567"), &p.admin(), json!({})).await;
        assert_eq!(by_alias.ok()[0]["nickname"], "Something Else");
        let none = p.post(&cascade("/feeds/search?q=nobody"), &p.admin(), json!({})).await;
        assert_eq!(none.ok(), &json!([]));

        // The operator adds the first candidate through the CLI (`--pick 1`).
        let out = cascade_cmd(p.dir.path())
            .args(["feed", "add", "--search", "people daily", "--pick", "1", "--url", &p.url(""), "--password", PASSWORD])
            .output()
            .await
            .expect("cli runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let feed = p.get(&cascade("/feeds/MP_WXS_3090005381"), &p.admin()).await;
        assert_eq!(feed.ok()["mp_name"], "People Daily 人民日报");
        assert_eq!(feed.ok()["faker_id"], "MzA5MDAwNTM4MQ==");
        // Listed without --pick: a table, the feed marked subscribed.
        let out = cascade_cmd(p.dir.path())
            .args(["feed", "add", "--search", "people", "--url", &p.url(""), "--password", PASSWORD])
            .output()
            .await
            .expect("cli runs");
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(table.contains("People Weekly") && table.contains("--pick N"), "{table}");
        let again = p.post(&cascade("/feeds/search?q=people"), &p.admin(), json!({})).await;
        let again = again.ok().as_array().cloned().expect("candidates");
        assert_eq!(again[0]["already_subscribed"], true);
        assert_eq!(again[1]["already_subscribed"], false);

        stop.cancel();
        tokio::time::timeout(HANG, running).await.expect("child stops").expect("joined").expect("clean exit");
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_search_no_node_can_run_is_refused_clearly(backend) {
        let p = TestParent::on(backend).await;
        let search = |q: &str| {
            let path = cascade(&format!("/feeds/search?q={q}"));
            let p = &p;
            async move { p.post(&path, &p.admin(), json!({})).await }
        };
        let nobody = search("people").await;
        nobody.err(503);
        assert!(nobody.body["message"].as_str().is_some_and(|m| m.contains("no node can search") && m.contains("mp login")), "{}", nobody.text);
        // Nodes that cannot: a stock node with a valid login, ours with an expired one.
        let stock = p.online_node("stock", json!({"logins": [login("a", "valid")]})).await;
        let expired = p.online_node("expired", json!({"features": ["commands"], "logins": [login("b", "expired")]})).await;
        search("people").await.err(503);
        // Bad input is the request's fault, and only admins search.
        assert_eq!(search("").await.status, 400);
        assert_eq!(search(&"x".repeat(65)).await.status, 400);
        assert_eq!(search("a%07b").await.status, 400);
        let bad_limit = p.post(&cascade("/feeds/search?q=p&limit=0"), &p.admin(), json!({})).await;
        bad_limit.err(400);
        assert_eq!(p.post(&cascade("/feeds/search?q=p"), &stock.auth(), json!({})).await.status, 403);
        assert_eq!(p.post(&cascade("/feeds/search?q=p"), &expired.auth(), json!({})).await.status, 403);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_never_answers_ends_the_search_with_504_and_no_other_node_answers_for_it(backend) {
        let p = TestParent::on_with(backend, |c| c.cascade.search_timeout = 1).await;
        let beat = json!({"features": ["commands"], "logins": [login("m", "valid")]});
        let silent = p.online_node("silent", beat.clone()).await;
        let other = p.online_node("other", json!({"features": ["commands"]})).await;

        // The node holds a claim for no kind; the search wakes it with `commands_pending`.
        let held = {
            let (client, url) = (p.client.clone(), p.url(&cascade("/claim-task?kinds=&wait=30")));
            let auth = format!("AK-SK {}:{}", silent.key, silent.secret);
            tokio::spawn(async move {
                let sent = client.post(url).header("Authorization", auth).send().await.expect("sent");
                TestParent::reply(sent).await
            })
        };
        tokio::time::timeout(HANG, async {
            while p.state.notifier.waiting_nodes() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the claim is held");
        let asked = {
            let (client, url, token) = (p.client.clone(), p.url(&cascade("/feeds/search?q=people")), p.token.clone());
            tokio::spawn(async move {
                let sent = client.post(url).bearer_auth(token).send().await.expect("sent");
                TestParent::reply(sent).await
            })
        };
        let woken = tokio::time::timeout(HANG, held).await.expect("claim answers").expect("joined");
        assert_eq!(woken.body["commands_pending"], true, "{}", woken.text);
        let beat = p.post(&cascade("/heartbeat"), &silent.auth(), beat).await;
        let commands = beat.ok()["commands"].as_array().cloned().expect("commands");
        assert_eq!(commands.len(), 1, "{commands:?}");
        assert_eq!(commands[0]["type"], "search");
        assert_eq!(commands[0]["query"], "people");
        let id = commands[0]["id"].as_str().expect("id").to_string();
        // Not the other node's command, nor an admin's to answer.
        let answer = cascade(&format!("/node-commands/{id}/answer"));
        let body = json!({"candidates": [{"fakeid": "MzA5MDAwNTM4MQ==", "nickname": "forged"}]});
        p.post(&answer, &other.auth(), body.clone()).await.err(404);
        assert_eq!(p.post(&answer, &p.admin(), body.clone()).await.status, 403);
        assert_eq!(p.post(&cascade("/node-commands/nope/answer"), &silent.auth(), body.clone()).await.status, 404);

        let timed_out = tokio::time::timeout(HANG, asked).await.expect("search answers").expect("joined");
        timed_out.err(504);
        assert!(timed_out.body["message"].as_str().is_some_and(|m| m.contains("did not answer") && m.contains("search_timeout")), "{}", timed_out.text);
        // Too late now; the command is no longer handed out.
        p.post(&answer, &silent.auth(), body).await.err(409);
        let beat = p.post(&cascade("/heartbeat"), &silent.auth(), json!({"features": ["commands"]})).await;
        assert_eq!(beat.ok()["commands"], json!([]));
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_article_link_subscribes_its_account_from_the_wechat_host_only(backend) {
        let fake = FakeWechat::start(accounts()).await.expect("fake wechat");
        let base = fake.base_url().to_string();
        let p = TestParent::on_with(backend, |c| c.cascade.wechat_base_url = base.clone()).await;
        let people = &accounts()[0];
        let weekly = &accounts()[1];
        let appmsgid = people.publishes[0].appmsgid;
        let resolve = |url: &str, name: Option<&str>| {
            let mut u = reqwest::Url::parse(&p.url(&cascade("/feeds/resolve"))).expect("url");
            u.query_pairs_mut().append_pair("url", url);
            if let Some(n) = name {
                u.query_pairs_mut().append_pair("name", n);
            }
            let (client, token) = (p.client.clone(), p.token.clone());
            async move {
                let sent = client.post(u).bearer_auth(token).send().await.expect("sent");
                TestParent::reply(sent).await
            }
        };

        // A long link names the account: no page is fetched.
        let long = resolve(&people.article_link(appmsgid, 1), Some("人民日报")).await;
        assert_eq!(long.status, 201, "{}", long.text);
        assert_eq!(long.ok()["id"], "MP_WXS_3090005381");
        assert_eq!(long.ok()["mp_name"], "人民日报");
        assert_eq!(long.ok()["created"], true);
        let again = resolve(&people.article_link(appmsgid, 1), None).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.ok()["created"], false);

        // A short link: the page on the configured host gives `var biz` and the name.
        let short = resolve(&weekly.short_link(weekly.publishes[0].appmsgid, 1), None).await;
        assert_eq!(short.status, 201, "{}", short.text);
        assert_eq!(short.ok()["id"], "MP_WXS_3892772220");
        assert_eq!(short.ok()["mp_name"], "People Weekly");
        assert_eq!(short.ok()["faker_id"], "Mzg5Mjc3MjIyMA==");
        let feed = p.get(&cascade("/feeds/MP_WXS_3892772220"), &p.admin()).await;
        assert_eq!(feed.ok()["source"], "wechat");
        // An unknown token: the page is not there.
        resolve("https://mp.weixin.qq.com/s/unknownToken", None).await.err(502);

        // Another host is refused before any request: nothing connects to it.
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let host = elsewhere.local_addr().expect("addr");
        for url in [format!("http://{host}/s/{}", weekly.article_token(weekly.publishes[0].appmsgid, 1)),
                    format!("http://{host}/s?__biz=MzA5MDAwNTM4MQ==&mid=1"),
                    "https://mp.weixin.qq.com.evil.example/s/abc".to_string(),
                    "not a link".to_string()] {
            let refused = resolve(&url, None).await;
            refused.err(400);
            assert_eq!(refused.body["data"]["field"], "url", "{}", refused.text);
        }
        assert!(
            tokio::time::timeout(Duration::ZERO, elsewhere.accept()).await.is_err(),
            "the parent connected to a host it was given"
        );
        assert_eq!(p.post(&cascade("/feeds/resolve"), &p.admin(), json!({})).await.status, 400);
        let feeds = p.get(&cascade("/feeds"), &p.admin()).await;
        assert_eq!(feeds.ok().as_array().map(Vec::len), Some(2));
        fake.stop();
        p.shutdown().await;
    }
}

/// Two parents on one PostgreSQL database: the search is asked on one, the node's claim is
/// held on the other and wakes, the node answers there, and the first parent returns it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_asked_on_one_parent_is_answered_through_another() {
    use crate::helpers::db::{Backend, TestDb};
    let Some(backend) = Backend::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb::create(&backend, &dir).await;
    let mut config = test_config(&dir);
    config.db = db.url.clone();
    let a = TestParent::spawn_with(config, dir).await;
    let b = TestParent::join(&a).await;
    let beat = json!({"features": ["commands"], "logins": [login("m", "valid")]});
    let node = a.online_node("far", beat.clone()).await;

    let held = {
        let (client, url) = (
            b.client.clone(),
            b.url(&cascade("/claim-task?kinds=&wait=30")),
        );
        let auth = format!("AK-SK {}:{}", node.key, node.secret);
        tokio::spawn(async move {
            let sent = client
                .post(url)
                .header("Authorization", auth)
                .send()
                .await
                .expect("sent");
            TestParent::reply(sent).await
        })
    };
    tokio::time::timeout(HANG, async {
        while b.state.notifier.waiting_nodes() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the claim is held on the second parent");
    let asked = {
        let (client, url, token) = (
            a.client.clone(),
            a.url(&cascade("/feeds/search?q=people")),
            a.token.clone(),
        );
        tokio::spawn(async move {
            let sent = client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("sent");
            TestParent::reply(sent).await
        })
    };
    let woken = tokio::time::timeout(HANG, held)
        .await
        .expect("claim answers")
        .expect("joined");
    assert_eq!(woken.body["commands_pending"], true, "{}", woken.text);
    let beat = b.post(&cascade("/heartbeat"), &node.auth(), beat).await;
    let id = beat.ok()["commands"][0]["id"]
        .as_str()
        .expect("a search command")
        .to_string();
    let answer = json!({"candidates": [
        {"fakeid": "MzA5MDAwNTM4MQ==", "nickname": "People\u{7} Daily", "alias": "p", "avatar": "javascript:x", "signature": "s"},
        {"fakeid": "not base64 digits", "nickname": "dropped"}]});
    b.post(
        &cascade(&format!("/node-commands/{id}/answer")),
        &node.auth(),
        answer,
    )
    .await
    .ok();
    let found = tokio::time::timeout(HANG, asked)
        .await
        .expect("search answers")
        .expect("joined");
    let list = found.ok().as_array().cloned().expect("candidates");
    assert_eq!(
        list.len(),
        1,
        "a candidate without an account id is dropped: {}",
        found.text
    );
    assert_eq!(list[0]["feed_id"], "MP_WXS_3090005381");
    assert_eq!(
        list[0]["nickname"], "People Daily",
        "control characters are dropped"
    );
    assert!(list[0]["avatar"].is_null(), "only http(s) avatars are kept");
    b.shutdown().await;
    a.shutdown().await;
}
