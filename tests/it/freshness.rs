//! Freshness mode (issue 15, `dispatch_mode: freshness`): the scheduler's pass dispatches
//! due feeds, the longest due first, within the free capacity and at the pace of the logins'
//! daily budgets; a task's cron makes its feeds due instead of dispatching them; the default
//! (and an adopted WeRSS database) keeps cron dispatch. Driven by the parent's manual clock.

use crate::helpers::db::on_both;
use crate::helpers::{TestNode, TestParent, cascade};
use chrono::TimeDelta;
use serde_json::{Value, json};
use werss_cascade::config::PerKind;
use werss_cascade::parent::scheduler::Scheduler;
use werss_cascade::protocol::time;

/// A heartbeat of a WeChat node with `capacity` and one usable WeRead login.
fn beat(name: &str, capacity: i64) -> Value {
    let login = json!({"id": format!("{name}-login"), "kind": "weread", "name": name, "state": "valid",
        "expires_at": null, "cooldown_until": null, "last_ok_at": null, "last_error": null,
        "budget": {"hour_left": 6, "day_left": 25, "resets_at": null}});
    json!({"wechat_session": "valid", "fetchers": ["wechat"], "capacity": capacity, "logins": [login]})
}

async fn online(p: &TestParent, name: &str, capacity: i64) -> TestNode {
    p.online_node(name, beat(name, capacity)).await
}

/// Moves the clock and keeps the node online.
async fn advance(p: &TestParent, node: &TestNode, by: TimeDelta, capacity: i64) {
    p.clock.advance(by);
    p.post(&cascade("/heartbeat"), &node.auth(), beat("n", capacity))
        .await
        .ok();
}

/// The feeds of the pending allocations, oldest allocation first.
async fn pending_feeds(p: &TestParent) -> Vec<String> {
    let r = p
        .get(
            &cascade("/allocations?status=pending&limit=200"),
            &p.admin(),
        )
        .await;
    let mut list = r.ok()["list"].as_array().cloned().unwrap_or_default();
    list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    list.iter()
        .flat_map(|a| a["feed_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(String::from))
        .collect()
}

async fn feed_status(p: &TestParent, id: &str) -> Value {
    let r = p
        .get(&cascade(&format!("/feed-status?feed_id={id}")), &p.admin())
        .await;
    r.ok()["list"][0].clone()
}

fn freshness(c: &mut werss_cascade::config::Config) {
    c.cascade.dispatch_mode = "freshness".into();
    c.cascade.feeds_per_allocation = 1;
    c.cascade.timezone = "UTC".into();
}

on_both! {
    #[tokio::test]
    async fn due_feeds_go_longest_due_first_within_free_capacity(backend) {
        // No daily cap: only the capacity limits the pass.
        let p = TestParent::on_with(backend.clone(), |c| {
            freshness(c);
            c.cascade.budget_per_day = PerKind { mp: None, weread: Some(0) };
        })
        .await;
        online(&p, "n", 2).await;
        let feeds = p.feeds(7_100, 5).await;
        p.task(&feeds[..4]).await;
        let now = p.clock.now();
        // Due 1 h, 3 h and 2 h ago, one not yet, and a long-due one no task lists.
        for (feed, at) in feeds.iter().zip([-1, -3, -2, 1, -5]) {
            p.store.defer_checks(vec![feed.clone()], now + TimeDelta::hours(at)).await.expect("planned");
        }
        let scheduler = Scheduler::new(p.state.clone());
        let pass = scheduler.run_once().await.expect("pass");
        assert_eq!(pass.due.dispatched, 2, "{pass:?}");
        assert_eq!(pass.due.deferred, 1, "the feed no task lists is put off: {pass:?}");
        assert_eq!(pending_feeds(&p).await, vec![feeds[1].clone(), feeds[2].clone()]);
        let unlisted = feed_status(&p, &feeds[4]).await;
        assert_eq!(unlisted["next_check_at"], time::to_wire(now + TimeDelta::hours(24)), "{unlisted}");

        // The node is full: nothing more until it has room.
        let again = scheduler.run_once().await.expect("pass");
        assert_eq!(again.due.dispatched, 0, "{again:?}");
        assert_eq!(pending_feeds(&p).await.len(), 2);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn wechat_feeds_are_paced_by_the_logins_daily_budget(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            freshness(c);
            c.cascade.budget_per_day = PerKind { mp: None, weread: Some(4) };
        })
        .await;
        let node = online(&p, "n", 20).await;
        let feeds = p.feeds(7_200, 10).await;
        p.task(&feeds).await;
        let scheduler = Scheduler::new(p.state.clone());
        let mut dispatched = scheduler.run_once().await.expect("pass").due.dispatched;
        assert_eq!(dispatched, 1, "a burst of one call per login");
        assert_eq!(scheduler.run_once().await.expect("pass").due.dispatched, 0, "nothing more at once");
        // One login, 4 calls a day: one every 6 hours over the day.
        for _ in 0..23 {
            advance(&p, &node, TimeDelta::hours(1), 20).await;
            dispatched += scheduler.run_once().await.expect("pass").due.dispatched;
        }
        assert_eq!(dispatched, 4, "the day's budget, no more");
        // Never-checked feeds go by id.
        assert_eq!(pending_feeds(&p).await, feeds[..4].to_vec());
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_cron_firing_makes_its_feeds_due_instead_of_dispatching_them(backend) {
        let p = TestParent::on_with(backend.clone(), freshness).await;
        let node = online(&p, "n", 10).await;
        let feeds = p.feeds(7_300, 2).await;
        let mps: Vec<Value> = feeds.iter().map(|id| json!({"id": id})).collect();
        let task = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "hourly",
            "message_template": "x", "mps_id": mps, "status": 1, "cron_exp": "0 * * * *"})).await;
        task.ok();
        let now = p.clock.now();
        p.store.defer_checks(vec![feeds[0].clone()], now + TimeDelta::hours(10)).await.expect("planned");
        p.store.defer_checks(vec![feeds[1].clone()], now + TimeDelta::minutes(1)).await.expect("planned");
        let scheduler = Scheduler::new(p.state.clone());
        let first = scheduler.run_once().await.expect("pass");
        assert_eq!((first.scheduled, first.due.dispatched), (1, 0), "{first:?}");

        advance(&p, &node, TimeDelta::minutes(2), 10).await;
        let pass = scheduler.run_once().await.expect("pass");
        assert_eq!(pass.due.dispatched, 1, "only the feed due by its own plan: {pass:?}");
        assert_eq!(pending_feeds(&p).await, vec![feeds[1].clone()]);

        // The firing (at the next full hour) makes the other feed due at once.
        advance(&p, &node, TimeDelta::minutes(61), 10).await;
        let fired = scheduler.run_once().await.expect("pass");
        assert_eq!(fired.fired.len(), 1, "{fired:?}");
        assert_eq!(fired.due.dispatched, 1, "{fired:?}");
        assert_eq!(pending_feeds(&p).await, vec![feeds[1].clone(), feeds[0].clone()]);
        let r = p.get(&cascade("/allocations?status=pending&limit=10"), &p.admin()).await;
        let runs: Vec<&str> = r.ok()["list"].as_array().expect("list").iter()
            .filter_map(|a| a["schedule_run_id"].as_str()).collect();
        assert!(runs.iter().all(|r| r.starts_with("fresh_")), "dispatched by the due pass, not the cron: {runs:?}");
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn cron_mode_is_the_default_and_dispatches_no_due_feed(backend) {
        let p = TestParent::on(backend.clone()).await;
        assert_eq!(p.state.config.cascade.dispatch_mode, "cron");
        online(&p, "n", 10).await;
        let feeds = p.feeds(7_400, 3).await;
        p.task(&feeds).await;
        let pass = Scheduler::new(p.state.clone()).run_once().await.expect("pass");
        assert_eq!(pass.due.dispatched, 0, "{pass:?}");
        assert!(pending_feeds(&p).await.is_empty(), "never-checked feeds wait for a cron or a dispatch");
        p.shutdown().await;
    }
}

#[tokio::test]
async fn an_unknown_dispatch_mode_or_node_capacity_stops_the_parent_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = crate::helpers::test_config(&dir);
    config.cascade.dispatch_mode = "sometimes".into();
    let store = werss_cascade::store::Store::connect(&config.db)
        .await
        .expect("store");
    let clock = werss_cascade::clock::Clock::system();
    let err = werss_cascade::parent::AppState::new(config, store, clock, Default::default())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("dispatch_mode must be cron or freshness"),
        "{err}"
    );

    let mut config = crate::helpers::test_config(&dir);
    config.cascade.node_capacity = "fast".into();
    let store = werss_cascade::store::Store::connect(&config.db)
        .await
        .expect("store");
    let clock = werss_cascade::clock::Clock::system();
    let err = werss_cascade::parent::AppState::new(config, store, clock, Default::default())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("node_capacity must be static or auto"),
        "{err}"
    );
}

on_both! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_reads_due_feeds_oldest_first_and_its_login_stays_in_budget(backend) {
        use crate::budgets::account;
        use crate::budgets::child::{config, login, next_beat, settled, until};
        use werss_cascade::logins::LoginStore;
        use werss_cascade::testkit::weread::FakeWeread;

        // The parent paces 3 checks a day; a first read of a feed costs its login two list
        // calls (both pages), so the child's login keeps 6 calls a day.
        let p = TestParent::on_with(backend.clone(), |c| {
            freshness(c);
            c.cascade.budget_per_day = PerKind { mp: None, weread: Some(3) };
        })
        .await;
        let fake = FakeWeread::start().await.expect("fake");
        let accounts: Vec<_> = (0..5).map(|i| account(3_286_016_870 + i)).collect();
        for a in &accounts {
            fake.serve_account(a);
        }
        let node = p.add_node("reader").await;
        let (c, data) = config(&p, &node, &fake, 6, 6);
        let (l, vid) = login(&fake, "weread-1");
        LoginStore::open(&data).expect("store").upsert(l).expect("saved");
        p.wechat_task(&accounts).await;
        let feeds: Vec<String> = accounts.iter().map(|a| format!("MP_WXS_{}", a.number)).collect();
        // Due 0–4 hours ago: the last feed has waited longest.
        let now = p.clock.now();
        for (i, f) in feeds.iter().enumerate() {
            let at = now - TimeDelta::hours(i64::try_from(i).expect("small"));
            p.store.defer_checks(vec![f.clone()], at).await.expect("planned");
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let child = werss_cascade::child::Child::new(c).expect("child").with_clock(p.clock.clone());
        let running = tokio::spawn(child.run(stop.clone()));
        p.poll_until("/nodes", "the node online with its login", |n| {
            n.as_array().is_some_and(|l| l.iter().any(|x| x["session_state"] == "valid"))
        }).await;

        // A day in 3-hour steps: one feed at once, then one every 8 hours.
        let scheduler = Scheduler::new(p.state.clone());
        let mut dispatched = 0;
        for _ in 0..8 {
            dispatched += scheduler.run_once().await.expect("pass").due.dispatched;
            settled(&p, dispatched).await;
            p.clock.advance(TimeDelta::hours(3));
            next_beat(&p, &node).await;
        }
        until("three reads", || fake.log_for(&vid).len() >= 6).await;
        assert_eq!(dispatched, 3, "the day's budget");
        let done = p.get(&cascade("/allocations?status=completed&limit=10"), &p.admin()).await;
        let mut list = done.ok()["list"].as_array().cloned().unwrap_or_default();
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let read: Vec<Value> = list.iter().map(|a| a["feed_ids"][0].clone()).collect();
        assert_eq!(read, vec![json!(feeds[4]), json!(feeds[3]), json!(feeds[2])], "longest due first");
        let calls = fake.log_for(&vid);
        assert_eq!(calls.len(), 6, "two list pages per feed, none past the budget: {calls:?}");
        stop.cancel();
        running.await.expect("joined").expect("child exits cleanly");
        fake.stop();
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn feeds_planned_before_schema_17_keep_their_turn(backend) {
        let p = TestParent::on_with(backend.clone(), |c| {
            freshness(c);
            c.cascade.budget_per_day = PerKind { mp: None, weread: Some(0) };
        })
        .await;
        let feeds = p.feeds(7_500, 2).await;
        p.task(&feeds).await;
        let now = p.clock.now();
        p.store.defer_checks(vec![feeds[0].clone()], now - TimeDelta::hours(1)).await.expect("planned");
        p.store.defer_checks(vec![feeds[1].clone()], now + TimeDelta::hours(1)).await.expect("planned");
        // The database as schema 16 left it: planned checks, no order.
        crate::helpers::db::execute(&p.state.config.db, "UPDATE we_feeds SET check_order = NULL;
            UPDATE cascade_settings SET value = '16' WHERE key = 'schema_version'").await;
        let upgraded = TestParent::join_with(&p, freshness).await;
        online(&upgraded, "n", 10).await;
        let pass = Scheduler::new(upgraded.state.clone()).run_once().await.expect("pass");
        assert_eq!(pass.due.dispatched, 1, "{pass:?}");
        assert_eq!(pending_feeds(&upgraded).await, vec![feeds[0].clone()]);
        upgraded.shutdown().await;
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn rss_feeds_are_not_held_back_by_paced_wechat_feeds(backend) {
        // One WeRead call a day: WeChat feeds wait; RSS feeds, which spend no login, do not.
        let p = TestParent::on_with(backend.clone(), |c| {
            freshness(c);
            c.cascade.budget_per_day = PerKind { mp: None, weread: Some(1) };
        })
        .await;
        let login = beat("n", 10)["logins"].clone();
        p.online_node("n", json!({"wechat_session": "valid", "fetchers": ["wechat", "rss"],
            "capacity": 10, "logins": login})).await;
        let wechat = p.feeds(7_600, 5).await;
        let mut rss = Vec::new();
        for i in 0..2 {
            let r = p.post(&cascade("/feeds"), &p.admin(), json!({"source": "rss",
                "url": format!("https://example.com/{i}.xml"), "mp_name": format!("rss {i}")})).await;
            rss.push(r.ok()["id"].as_str().expect("id").to_string());
        }
        p.task(&[wechat.clone(), rss.clone()].concat()).await;
        // Every WeChat feed has waited longer than the RSS ones.
        let now = p.clock.now();
        for (i, f) in wechat.iter().enumerate() {
            let at = now - TimeDelta::hours(10 + i64::try_from(i).expect("small"));
            p.store.defer_checks(vec![f.clone()], at).await.expect("planned");
        }
        p.store.defer_checks(rss.clone(), now - TimeDelta::minutes(1)).await.expect("planned");
        let pass = Scheduler::new(p.state.clone()).run_once().await.expect("pass");
        assert_eq!(pass.due.dispatched, 3, "both RSS feeds and the day's one WeChat call: {pass:?}");
        let mut got = pending_feeds(&p).await;
        got.sort();
        let mut want = vec![wechat[4].clone(), rss[0].clone(), rss[1].clone()];
        want.sort();
        assert_eq!(got, want);
        p.shutdown().await;
    }
}

on_both! {
    #[tokio::test]
    async fn a_cron_firing_leaves_a_feed_the_upstream_asked_to_wait(backend) {
        let p = TestParent::on_with(backend.clone(), freshness).await;
        let node = online(&p, "n", 10).await;
        let feeds = p.feeds(7_700, 1).await;
        let task = p.post(&cascade("/message-tasks"), &p.admin(), json!({"name": "hourly",
            "message_template": "x", "mps_id": feeds, "status": 1, "cron_exp": "0 * * * *"})).await;
        task.ok();
        // Read once; the upstream asked for two days.
        let now = p.clock.now();
        p.store.defer_checks(feeds.clone(), now - TimeDelta::minutes(1)).await.expect("planned");
        let scheduler = Scheduler::new(p.state.clone());
        assert_eq!(scheduler.run_once().await.expect("pass").due.dispatched, 1);
        let pkg = p.claim_one(&node).await;
        let body = json!({"allocation_id": pkg["allocation_id"], "task_id": pkg["task_id"],
            "results": [{"feed_id": feeds[0], "success": true, "retry_after": 172_800}],
            "article_count": 0, "lease_token": pkg["lease_token"]});
        assert_eq!(p.post(&cascade("/report-completion"), &node.auth(), body).await.ok()["status"], "completed");
        assert_eq!(werss_cascade::parent::reaper::Reaper::new(p.state.clone()).plan_once().await.expect("planned"), 1);
        // Hourly firings come and go: the feed waits for its two days.
        let mut fired = 0;
        for _ in 0..3 {
            advance(&p, &node, TimeDelta::minutes(61), 10).await;
            let pass = scheduler.run_once().await.expect("pass");
            assert_eq!(pass.due.dispatched, 0, "{pass:?}");
            fired += pass.fired.len();
        }
        assert!(fired >= 2, "the cron fired meanwhile ({fired})");
        p.shutdown().await;
    }
}
