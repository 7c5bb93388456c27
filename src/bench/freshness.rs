//! `cascade bench freshness`: how fast N children keep F WeChat feeds fresh when each login may
//! make only R list requests per window, against the ideal F ÷ (N·R) windows; then the same
//! with one child killed abruptly mid-run, showing its feeds finish elsewhere.

use crate::child::Child;
use crate::clock::Clock;
use crate::config::Config;
use crate::parent::{self, AppState};
use crate::store::{AllocationFilter, NewFeed, NewNode, Page, Store, TaskFields};
use crate::testkit::wechat::{FakeAccount, FakeSession, FakeWechat};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Freshness scenario parameters.
#[derive(Debug, Clone)]
pub struct FreshnessOptions {
    /// Child nodes, one login each.
    pub children: usize,
    /// List requests a login may make per window.
    pub rate: usize,
    /// The window, milliseconds.
    pub window_ms: u64,
    /// WeChat feeds (one list request each).
    pub feeds: u64,
}

struct Outcome {
    makespan: Duration,
    completed: i64,
    hits: usize,
    requeued: usize,
    stalest: chrono::TimeDelta,
}

async fn scenario(o: &FreshnessOptions, kill: bool) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        db: format!("sqlite:///{}", dir.path().join("fresh.db").display()),
        bcrypt_cost: 4,
        ..Config::default()
    };
    let c = &mut config.cascade;
    (
        c.lease_seconds,
        c.reap_interval,
        c.offline_after,
        c.cooldown_base,
        c.retry_base,
        c.steal_after,
    ) = (4, 1, 6, 2, 1, 2);
    let clock = Clock::system();
    let store = Store::connect(&config.db).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let state = AppState::new(config.clone(), store.clone(), clock.clone(), stop.clone()).await?;
    tokio::spawn(parent::serve(listener, state.clone()));
    tokio::spawn(parent::reaper::Reaper::new(state.clone()).run(stop.clone()));

    let now = chrono::Utc::now().timestamp();
    let accounts: Vec<FakeAccount> = (0..o.feeds)
        .map(|i| FakeAccount::generated(8_000_000_000 + i, 1, now))
        .collect();
    let fake = FakeWechat::start(accounts.clone()).await?;
    let feeds: Vec<NewFeed> = accounts
        .iter()
        .map(|a| NewFeed::wechat(&format!("MP_WXS_{}", a.number), &a.nickname))
        .collect();
    let ids: Vec<String> = feeds.iter().map(|f| f.id.clone()).collect();
    store.create_feeds(feeds, clock.now()).await?;
    let task = store
        .create_task(
            TaskFields {
                name: "fresh".into(),
                mps_id: json!(ids).to_string(),
                status: 1,
                ..TaskFields::default()
            },
            clock.now(),
        )
        .await?;

    let window = Duration::from_millis(o.window_ms);
    let gap = window.mul_f64(1.02 / o.rate.max(1) as f64);
    let mut children = Vec::new();
    // The children's own files (their login stores) live only as long as the run.
    let child_data = tempfile::tempdir()?;
    for i in 0..o.children {
        let node = store
            .create_node(
                NewNode {
                    node_type: 1,
                    name: format!("fresh-{i}"),
                    description: String::new(),
                    api_url: None,
                    sync_config: json!({}),
                },
                clock.now(),
            )
            .await?;
        let (key, secret) = parent::ops::issue_credentials(&store, &node.id, clock.now()).await?;
        let session = FakeSession {
            token: format!("fresh-{i}"),
            slave_sid: format!("fresh-sid-{i}"),
            limit: Some((o.rate, window)),
        };
        fake.add_session(session.clone());
        let mut cc = config.clone();
        let k = &mut cc.cascade;
        k.parent_api_url = base.clone();
        k.api_key = key;
        k.api_secret = secret;
        session.configure(k, &fake);
        k.data_dir = child_data
            .path()
            .join(format!("child-{i}"))
            .display()
            .to_string();
        k.wechat_gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
        k.wechat_gap_jitter_ms = 0;
        // The bench measures list freshness: article pages would only add their own pacing.
        k.full_text = false;
        (
            k.capacity,
            k.claim_wait,
            k.heartbeat_interval,
            k.shutdown_grace,
        ) = (4, 1, 1, 0);
        let child = Child::new(cc)?;
        child.check().await?;
        children.push((session.token, tokio::spawn(child.run(stop.clone()))));
    }
    let started = Instant::now();
    let total = parent::ops::alloc::dispatch_task(&state, Some(&task.id))
        .await
        .map_err(|e| anyhow::anyhow!("dispatch failed ({})", e.status()))?["allocations_created"]
        .as_i64()
        .unwrap_or(0);
    let completed_filter = AllocationFilter {
        task_id: Some(task.id.clone()),
        status: Some("completed".into()),
        ..AllocationFilter::default()
    };
    let mut killed = false;
    let completed = loop {
        let done = store
            .list_allocations(
                completed_filter.clone(),
                Page {
                    limit: 1,
                    offset: 0,
                },
            )
            .await?
            .1;
        if kill && !killed && done * 3 >= total {
            children[0].1.abort();
            killed = true;
        }
        if done >= total || started.elapsed() > Duration::from_secs(600) {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let makespan = started.elapsed();
    let hits = children
        .iter()
        .map(|(token, _)| {
            fake.log_for(token)
                .iter()
                .filter(|e| e.outcome == "200013")
                .count()
        })
        .sum();
    let (mut requeued, mut stalest, mut offset) = (0, chrono::TimeDelta::zero(), 0);
    loop {
        let (rows, count) = store
            .list_allocations(
                AllocationFilter {
                    task_id: Some(task.id.clone()),
                    ..AllocationFilter::default()
                },
                Page { limit: 200, offset },
            )
            .await?;
        for a in &rows {
            requeued += usize::from(a.reason.is_some());
            if let (Some(d), Some(c)) = (a.dispatched_at, a.completed_at) {
                stalest = stalest.max(c - d);
            }
        }
        offset += 200;
        if offset >= count {
            break;
        }
    }
    stop.cancel();
    for (_, h) in children {
        let _ = h.await;
    }
    fake.stop();
    Ok(Outcome {
        makespan,
        completed,
        hits,
        requeued,
        stalest,
    })
}

/// Runs both scenarios and prints a Markdown table.
///
/// # Errors
/// Set-up failures.
pub async fn run(o: FreshnessOptions) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ideal = Duration::from_millis(o.window_ms)
        .mul_f64(o.feeds as f64 / (o.children * o.rate).max(1) as f64);
    println!(
        "# cascade bench freshness: {} children, {} requests per {} ms per login, {} feeds\n",
        o.children, o.rate, o.window_ms, o.feeds
    );
    println!(
        "ideal makespan (requests ÷ (N·R)): {:.2} s\n",
        ideal.as_secs_f64()
    );
    println!(
        "| scenario | makespan s | × ideal | completed | rate-limit hits | re-placed allocations | most stale feed s |\n|---|---|---|---|---|---|---|"
    );
    for (name, kill) in [("all children", false), ("one child killed at 1/3", true)] {
        let r = scenario(&o, kill).await?;
        println!(
            "| {name} | {:.2} | {:.3} | {}/{} | {} | {} | {:.2} |",
            r.makespan.as_secs_f64(),
            r.makespan.as_secs_f64() / ideal.as_secs_f64(),
            r.completed,
            o.feeds,
            r.hits,
            r.requeued,
            r.stalest.as_seconds_f64()
        );
    }
    Ok(())
}
