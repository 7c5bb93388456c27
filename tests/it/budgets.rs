//! Per-login budgets (issue 13 §7) and the WeRead gates and shelf (§8, SOURCES.md §5–§7):
//! the fake's gates mapped to typed reasons, shelving on first use, and children whose logins
//! stay within their hourly and daily caps under concurrency, across a restart, shown by
//! `GET {P}/logins`. Budget windows move with the parent's manual clock, which the child
//! shares: no sleeps.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use werss_cascade::config::PerKind;
use werss_cascade::fetch::FetchError;
use werss_cascade::fetch::pacer::Pacer;
use werss_cascade::fetch::weread::{WereadFetcher, WereadOptions};
use werss_cascade::logins::weread::WereadJar;
use werss_cascade::protocol::credentials::Secret;
use werss_cascade::protocol::wire::PackageFeed;
use werss_cascade::testkit::wechat::FakeAccount;
use werss_cascade::testkit::weread::FakeWeread;

const NEWEST: i64 = 1_795_358_591;

pub(crate) fn account(number: u64) -> FakeAccount {
    FakeAccount::generated(number, 2, NEWEST)
}

fn feed(a: &FakeAccount) -> PackageFeed {
    PackageFeed {
        id: format!("MP_WXS_{}", a.number),
        faker_id: Some(a.fakeid()),
        mp_name: a.nickname.clone(),
        mp_cover: None,
        mp_intro: None,
        status: 1,
        source: Some("weread_list".into()),
        url: None,
        etag: None,
        last_modified: None,
        since: None,
        sources: None,
        backlog: None,
    }
}

fn fetcher(fake: &FakeWeread, jar: &WereadJar) -> WereadFetcher {
    let opts = WereadOptions {
        base_url: fake.base_url().to_string(),
        max_pages: 5,
        tilde_rewrite: true,
    };
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

fn outcomes(fake: &FakeWeread, vid: &str) -> Vec<(String, String)> {
    fake.log_for(vid)
        .into_iter()
        .map(|e| (e.endpoint.to_string(), e.outcome))
        .collect()
}

#[tokio::test]
async fn each_gate_maps_to_its_typed_reason() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = account(3_286_016_801);
    fake.serve_account(&a);
    let jar = fake.new_session("reader");
    let f = fetcher(&fake, &jar);

    // x-wr-ticket required: refused without it, served with it.
    fake.require_ticket(true);
    assert!(matches!(
        f.list(&feed(&a)).await,
        Err(FetchError::Closed(_))
    ));
    let with_ticket = f.clone().with_ticket(true);
    assert_eq!(
        with_ticket
            .list(&feed(&a))
            .await
            .expect("listed")
            .articles
            .len(),
        2
    );
    fake.require_ticket(false);

    // Only shelved books: refused until the book is on the shelf (idempotent add).
    fake.shelved_only(true);
    assert!(matches!(
        f.list(&feed(&a)).await,
        Err(FetchError::Closed(_))
    ));
    f.add_to_shelf(&feed(&a).id).await.expect("shelved");
    f.add_to_shelf(&feed(&a).id).await.expect("shelved again");
    assert_eq!(fake.shelf_of(&vid(&jar)), [feed(&a).id]);
    assert_eq!(f.list(&feed(&a)).await.expect("listed").articles.len(), 2);
    let ids: Value = werss_cascade::logins::weread::authenticated(
        crate::helpers::http_client()
            .get(format!("{}/web/shelf/bookIds", fake.base_url()))
            .query(&[("bookIds", format!("{},MP_WXS_1", feed(&a).id))]),
        fake.base_url(),
        &jar,
    )
    .send()
    .await
    .expect("sent")
    .json()
    .await
    .expect("JSON");
    assert_eq!(ids["data"][0]["onShelf"], true, "{ids}");
    assert_eq!(ids["data"][1]["onShelf"], false, "{ids}");
    fake.shelved_only(false);

    // A full shelf is its own error, not a closure.
    fake.set_shelf_capacity(Some(1));
    let full = f.add_to_shelf("MP_WXS_2").await.expect_err("full");
    assert!(
        matches!(&full, FetchError::Network(m) if m.contains("-2001")),
        "{full}"
    );
    fake.set_shelf_capacity(None);

    // Captcha: everything -2041 for this session only, until cleared.
    fake.captcha(&vid(&jar), true);
    assert!(matches!(
        f.list(&feed(&a)).await,
        Err(FetchError::Closed(_))
    ));
    assert!(matches!(
        f.cover(&feed(&a), 5).await,
        Err(FetchError::Closed(_))
    ));
    let other = fake.new_session("other");
    fetcher(&fake, &other)
        .cover(&feed(&a), 5)
        .await
        .expect("another session is served");
    fake.captcha(&vid(&jar), false);
    f.cover(&feed(&a), 5).await.expect("cleared");

    // The fake's per-session budget: -2014, rate_limited.
    fake.set_budget(Some((1, Duration::from_secs(3600))));
    f.cover(&feed(&a), 5)
        .await
        .expect("within the fake's budget");
    assert!(matches!(
        f.cover(&feed(&a), 5).await,
        Err(FetchError::RateLimited { .. })
    ));
    fake.set_budget(None);

    // No cookies: -2010; a stale key: -2012 on the shelf too.
    let none = fetcher(&fake, &WereadJar::new());
    assert!(matches!(
        none.list(&feed(&a)).await,
        Err(FetchError::SessionExpired(_))
    ));
    fake.expire_skey(&vid(&jar));
    assert!(matches!(
        f.add_to_shelf("MP_WXS_3").await,
        Err(FetchError::SkeyExpired(_))
    ));

    let log = outcomes(&fake, &vid(&jar));
    assert!(
        log.contains(&("shelf_add".into(), "-2001".into())),
        "{log:?}"
    );
    assert!(
        log.contains(&("shelf_add".into(), "-2012".into())),
        "{log:?}"
    );
    assert!(log.contains(&("cover".into(), "-2014".into())), "{log:?}");
    assert_eq!(
        outcomes(&fake, ""),
        [("list".to_string(), "-2010".to_string())]
    );
    fake.stop();
}

#[tokio::test]
async fn a_budget_spent_mid_list_keeps_the_pages_read() {
    let fake = FakeWeread::start().await.expect("fake");
    let a = FakeAccount::generated(3_286_016_802, 5, NEWEST);
    fake.serve_account(&a);
    fake.set_page_size(2);
    let jar = fake.new_session("reader");
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    let budget = left.clone();
    let f = fetcher(&fake, &jar).with_budget(Arc::new(move || {
        budget
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .map(|_| ())
            .map_err(|_| FetchError::OutOfBudget {
                retry_after: Some(60),
            })
    }));
    let got = f.list(&feed(&a)).await.expect("two pages");
    assert_eq!(got.articles.len(), 4);
    assert!(got.backlog_incomplete, "the rest waits for the budget");
    assert_eq!(
        fake.log_for(&vid(&jar)).len(),
        2,
        "no call beyond the budget"
    );
    let none = f.list(&feed(&a)).await.expect_err("nothing left");
    assert_eq!(none.reason(), "rate_limited");
    assert_eq!(none.retry_after(), Some(60));
    fake.stop();
}

pub(crate) mod child {
    use super::*;
    use crate::helpers::db::on_both;
    use crate::helpers::{TestNode, TestParent, cascade, test_config};
    use werss_cascade::child::Child;
    use werss_cascade::logins::{Login, LoginStore};

    /// Waits (bounded) until `done` holds; for what a running child does upstream.
    pub(crate) async fn until(what: &str, done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                // Polls without sleeping, as `TestParent::poll_until` does.
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    /// A child config of `node` with WeRead at `fake`, no gap, the given caps.
    pub(crate) fn config(
        p: &TestParent,
        node: &TestNode,
        fake: &FakeWeread,
        per_hour: u64,
        per_day: u64,
    ) -> (werss_cascade::config::Config, std::path::PathBuf) {
        let mut c = test_config(&p.dir);
        let data = p.dir.path().join(format!("child-{}", node.id));
        c.cascade.data_dir = data.display().to_string();
        c.cascade.parent_api_url = p.url("");
        c.cascade.api_key = node.key.clone();
        c.cascade.api_secret = Secret::new(&node.secret);
        c.cascade.weread_base_url = fake.base_url().to_string();
        c.cascade.weread_gap_ms = Some(0);
        // These tests count list and cover calls; bodies have their own budget.
        c.cascade.full_text = false;
        c.cascade.budget_per_hour = PerKind {
            mp: None,
            weread: Some(per_hour),
        };
        c.cascade.budget_per_day = PerKind {
            mp: None,
            weread: Some(per_day),
        };
        c.cascade.heartbeat_interval = 1;
        c.cascade.claim_wait = 1;
        c.cascade.capacity = 4;
        c.cascade.shutdown_grace = 5;
        (c, data)
    }

    pub(crate) fn login(fake: &FakeWeread, id: &str) -> (Login, String) {
        let mut l = fake.new_login(id);
        l.renewed_at = Some(chrono::Utc::now());
        let vid = WereadJar::from_pairs(l.secrets.cookies.clone())
            .vid()
            .expect("vid")
            .to_string();
        (l, vid)
    }

    fn budget_of<'a>(logins: &'a Value, id: &str) -> &'a Value {
        logins
            .as_array()
            .and_then(|l| l.iter().find(|x| x["login_id"] == id))
            .map_or(&Value::Null, |x| &x["budget"])
    }

    pub(crate) async fn count(p: &TestParent, status: &str) -> usize {
        p.get(
            &cascade(&format!("/allocations?status={status}")),
            &p.admin(),
        )
        .await
        .ok()["list"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Waits until no allocation is claimed or executing and `n` are completed or pending.
    pub(crate) async fn settled(p: &TestParent, n: usize) {
        let wait = async {
            loop {
                let busy = count(p, "claimed").await + count(p, "executing").await;
                let done = count(p, "completed").await + count(p, "pending").await;
                if busy == 0 && done == n {
                    return;
                }
                // Polls without sleeping, as `TestParent::poll_until` does.
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("allocations settle");
    }

    pub(crate) async fn next_beat(p: &TestParent, node: &TestNode) {
        let path = format!("/nodes/{}", node.id);
        let beat = p.get(&cascade(&path), &p.admin()).await.ok()["last_heartbeat_at"].clone();
        p.clock.advance(chrono::TimeDelta::seconds(1));
        p.poll_until(&path, "a heartbeat", |n| n["last_heartbeat_at"] != beat)
            .await;
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn many_due_feeds_never_push_a_login_past_its_caps_and_a_restart_keeps_the_count(backend) {
            let p = TestParent::on(backend.clone()).await;
            let fake = FakeWeread::start().await.expect("fake");
            let accounts: Vec<FakeAccount> = (0..6).map(|i| account(3_286_016_810 + i)).collect();
            for a in &accounts {
                fake.serve_account(a);
            }
            let node = p.add_node("budgeted").await;
            let (c, data) = config(&p, &node, &fake, 2, 3);
            let (la, va) = login(&fake, "weread-a");
            let (lb, vb) = login(&fake, "weread-b");
            let store = LoginStore::open(&data).expect("store");
            store.upsert(la).expect("saved");
            store.upsert(lb).expect("saved");
            drop(store);
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c.clone()).expect("child").with_clock(p.clock.clone()).run(stop.clone()));
            p.poll_until("/nodes", "the node online", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            let task = p.wechat_task(&accounts).await;
            p.dispatch(&task).await;

            // Six feeds due, four at once, two calls an hour per login: each login makes two.
            until("both logins' hourly budgets spent", || fake.log_for(&va).len() == 2 && fake.log_for(&vb).len() == 2).await;
            settled(&p, 6).await;
            assert_eq!(fake.log_for(&va).len(), 2, "{:?}", outcomes(&fake, &va));
            assert_eq!(fake.log_for(&vb).len(), 2, "{:?}", outcomes(&fake, &vb));
            let pending = p.get(&cascade("/allocations?status=pending"), &p.admin()).await;
            let pending = pending.ok()["list"].as_array().cloned().unwrap_or_default();
            assert!(!pending.is_empty(), "some feeds wait for a budget");
            for row in &pending {
                // Never claimed (the node stops claiming once its logins are spent), or given
                // back as `rate_limited` (spent by the feeds beside it): no attempt either way.
                assert!(row["reason"].is_null() || row["reason"] == "rate_limited", "{row}");
                assert_eq!(row["attempt"], 0, "{row}");
            }
            let nodes = p.get(&cascade("/nodes"), &p.admin()).await;
            assert!(nodes.ok().as_array().expect("nodes").iter().all(|n| n["cooldown_until"].is_null()), "a spent budget cools no node");
            let logins = p.poll_until("/logins", "both budgets shown spent", |l| {
                ["weread-a", "weread-b"].iter().all(|id| budget_of(l, id)["hour_left"] == 0)
            }).await;
            for id in ["weread-a", "weread-b"] {
                let b = budget_of(&logins, id);
                assert_eq!(b["day_left"], 1, "{logins}");
                assert!(b["resets_at"].is_string(), "{logins}");
                assert_eq!(logins.as_array().expect("list").iter().find(|x| x["login_id"] == id).expect("listed")["state"], "valid");
            }

            // An hour later the hour frees, but the day allows one call more each.
            p.clock.advance(chrono::TimeDelta::minutes(61));
            until("one more call each", || fake.log_for(&va).len() == 3 && fake.log_for(&vb).len() == 3).await;
            settled(&p, 6).await;
            p.poll_until("/logins", "both days spent", |l| {
                ["weread-a", "weread-b"].iter().all(|id| budget_of(l, id)["day_left"] == 0)
            }).await;

            // A restart reads the counts back: the hour has room again, the day has not.
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            let saved = LoginStore::open(&data).expect("store");
            assert_eq!(saved.get("weread-a").expect("a").spent.len(), 3);
            assert_eq!(saved.get("weread-b").expect("b").spent.len(), 3);
            drop(saved);
            p.clock.advance(chrono::TimeDelta::minutes(61));
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").with_clock(p.clock.clone()).run(stop.clone()));
            next_beat(&p, &node).await;
            let logins = p.poll_until("/logins", "the restarted child's budgets", |l| {
                ["weread-a", "weread-b"].iter().all(|id| budget_of(l, id)["hour_left"] == 2)
            }).await;
            for id in ["weread-a", "weread-b"] {
                assert_eq!(budget_of(&logins, id)["day_left"], 0, "{logins}");
            }
            assert_eq!(fake.log_for(&va).len(), 3, "no call past the daily cap after the restart");
            assert_eq!(fake.log_for(&vb).len(), 3, "no call past the daily cap after the restart");
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            fake.stop();
            p.shutdown().await;
        }
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_login_out_of_budget_is_skipped_and_the_other_serves(backend) {
            let p = TestParent::on(backend.clone()).await;
            let fake = FakeWeread::start().await.expect("fake");
            let a = account(3_286_016_820);
            fake.serve_account(&a);
            let node = p.add_node("two-logins").await;
            let (mut c, data) = config(&p, &node, &fake, 2, 25);
            // Bodies too: a resting login fetches none of them either.
            c.cascade.full_text = true;
            // `spent` spent its hour ten minutes ago (a count kept from an earlier run).
            let (mut spent, vs) = login(&fake, "weread-spent");
            let t = p.clock.now().and_utc() - chrono::TimeDelta::minutes(10);
            spent.spent = vec![t, t];
            let (fresh, vf) = login(&fake, "weread-fresh");
            let store = LoginStore::open(&data).expect("store");
            store.upsert(spent).expect("saved");
            store.upsert(fresh).expect("saved");
            drop(store);
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").with_clock(p.clock.clone()).run(stop.clone()));
            let logins = p.poll_until("/logins", "both logins with their budgets", |l| {
                budget_of(l, "weread-spent")["hour_left"] == 0 && budget_of(l, "weread-fresh")["hour_left"] == 2
            }).await;
            let resets = budget_of(&logins, "weread-spent")["resets_at"].as_str().expect("resets_at").to_string();
            let expected = werss_cascade::protocol::time::to_wire((t + chrono::TimeDelta::hours(1)).naive_utc());
            assert_eq!(resets, expected, "{logins}");
            assert!(budget_of(&logins, "weread-fresh")["resets_at"].is_null());

            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the feed read", |c| c["completed_today"] == 1).await;
            assert!(fake.log_for(&vs).is_empty(), "the spent login was not used");
            assert!(!fake.log_for(&vf).is_empty(), "the other login read the feed");
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            fake.stop();
            p.shutdown().await;
        }
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_book_off_the_shelf_is_shelved_once_per_login(backend) {
            let p = TestParent::on(backend.clone()).await;
            let fake = FakeWeread::start().await.expect("fake");
            fake.shelved_only(true);
            let a = account(3_286_016_830);
            fake.serve_account(&a);
            let node = p.add_node("shelver").await;
            let (c, data) = config(&p, &node, &fake, 100, 100);
            let (l, vid) = login(&fake, "weread-shelf");
            LoginStore::open(&data).expect("store").upsert(l).expect("saved");
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").with_clock(p.clock.clone()).run(stop.clone()));
            p.poll_until("/nodes", "the node online", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the first read", |c| c["completed_today"] == 1).await;
            p.dispatch(&task).await;
            p.poll_until("/pending-allocations", "the second read", |c| c["completed_today"] == 2).await;

            let book = format!("MP_WXS_{}", a.number);
            let log = outcomes(&fake, &vid);
            let adds = log.iter().filter(|(e, _)| e == "shelf_add").count();
            assert_eq!(adds, 1, "one addToShelf per book and login: {log:?}");
            assert_eq!(log[0], ("list".to_string(), "-2041".to_string()), "{log:?}");
            assert_eq!(log[1], ("shelf_add".to_string(), "ok".to_string()), "{log:?}");
            assert!(log[2..].iter().all(|(_, o)| o == "ok"), "{log:?}");
            assert_eq!(fake.shelf_of(&vid), std::slice::from_ref(&book));
            let sources = p.get(&cascade("/sources"), &p.admin()).await;
            let list = sources.ok().as_array().cloned().unwrap_or_default();
            assert!(list.iter().all(|s| s["state"] == "open"), "shelving is no closure: {list:?}");
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            let saved = LoginStore::open(&data).expect("store").get("weread-shelf").expect("login");
            assert_eq!(saved.shelved, [book], "remembered across restarts");
            fake.stop();
            p.shutdown().await;
        }
    }

    on_both! {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_captcha_cools_that_login_and_closes_no_source(backend) {
            let p = TestParent::on(backend.clone()).await;
            let fake = FakeWeread::start().await.expect("fake");
            let a = account(3_286_016_840);
            fake.serve_account(&a);
            let node = p.add_node("checked").await;
            let (c, data) = config(&p, &node, &fake, 100, 100);
            let (l, vid) = login(&fake, "weread-checked");
            LoginStore::open(&data).expect("store").upsert(l).expect("saved");
            fake.captcha(&vid, true);
            let stop = tokio_util::sync::CancellationToken::new();
            let running = tokio::spawn(Child::new(c).expect("child").with_clock(p.clock.clone()).run(stop.clone()));
            p.poll_until("/nodes", "the node online", |n| {
                n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
            }).await;
            let task = p.wechat_task(std::slice::from_ref(&a)).await;
            p.dispatch(&task).await;
            p.poll_until("/logins", "the login cooling", |l| {
                l.as_array().is_some_and(|l| l.iter().any(|x| x["login_id"] == "weread-checked" && x["state"] == "cooling"))
            }).await;
            let sources = p.get(&cascade("/sources"), &p.admin()).await;
            let list = sources.ok().as_array().cloned().unwrap_or_default();
            assert!(list.iter().all(|s| s["state"] == "open"), "a captcha closes no source: {list:?}");
            assert!(list.iter().all(|s| s["refused_by_nodes"].as_i64().unwrap_or(0) == 0), "no refusal counted: {list:?}");
            let log = outcomes(&fake, &vid);
            assert!(log.iter().any(|(e, o)| e == "cover" && o == "-2041"), "{log:?}");
            stop.cancel();
            running.await.expect("joined").expect("child exits cleanly");
            fake.stop();
            p.shutdown().await;
        }
    }
}

mod placement {
    use super::*;
    use crate::helpers::db::on_both;
    use crate::helpers::{TestParent, cascade};
    use serde_json::json;

    on_both! {
        #[tokio::test]
        async fn placement_skips_a_node_whose_logins_have_spent_their_budgets(backend) {
            let p = TestParent::on(backend.clone()).await;
            let spent = p.add_node("spent").await;
            let fresh = p.add_node("fresh").await;
            let login = |id: &str, budget: Value| json!({"id": id, "kind": "weread", "name": id, "state": "valid",
                "expires_at": null, "cooldown_until": null, "last_ok_at": null, "last_error": null, "budget": budget});
            let beat = |node: &crate::helpers::TestNode, logins: Value| {
                let body = json!({"wechat_session": "valid", "fetchers": ["wechat"], "capacity": 10, "logins": logins});
                let auth = node.auth();
                let p = &p;
                async move { p.post(&cascade("/heartbeat"), &auth, body).await.ok().clone() }
            };
            beat(&spent, json!([login("s", json!({"hour_left": 0, "day_left": 7, "resets_at": "2099-01-01T00:00:00Z"}))])).await;
            beat(&fresh, json!([login("f", json!({"hour_left": 4, "day_left": 20, "resets_at": null}))])).await;
            let accounts: Vec<FakeAccount> = (0..3).map(|i| account(3_286_016_850 + i)).collect();
            let task = p.wechat_task(&accounts).await;
            p.dispatch(&task).await;
            let allocs = p.get(&cascade("/allocations?status=pending"), &p.admin()).await;
            let list = allocs.ok()["list"].as_array().expect("list").clone();
            assert_eq!(list.len(), 3, "{}", allocs.text);
            assert!(list.iter().all(|a| a["assigned_node_id"] == fresh.id.as_str()), "{}", allocs.text);

            let listed = p.get(&cascade("/logins"), &p.admin()).await;
            let listed = listed.ok().as_array().expect("list").clone();
            let of = |id: &str| listed.iter().find(|l| l["login_id"] == id).expect("listed")["budget"].clone();
            assert_eq!(of("s"), json!({"hour_left": 0, "day_left": 7, "resets_at": "2099-01-01T00:00:00.000000"}));
            assert_eq!(of("f"), json!({"hour_left": 4, "day_left": 20, "resets_at": null}));
            // A login of an uncapped kind (or from an older child) shows no budget at all.
            beat(&fresh, json!([login("f", Value::Null)])).await;
            let again = p.get(&cascade(&format!("/logins?node_id={}", fresh.id)), &p.admin()).await;
            assert!(again.ok()[0].get("budget").is_none(), "{}", again.text);
            p.shutdown().await;
        }
    }
}
