//! `cascade bench`: starts one parent (or several on one PostgreSQL database) on a scratch
//! database and drives the WeRSS protocol over HTTP on loopback with K simulated children. Measures claim→executing→complete cycles,
//! claim latency, dispatch time, heartbeat latency during a large dispatch, and RSS.

pub mod budget;
pub mod freshness;

use crate::clock::Clock;
use crate::config::Config;
use crate::parent::{self, AppState};
use crate::store::{NewFeed, Store, TaskFields};
use anyhow::Context;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Simulated children per cycle run.
    pub children: Vec<usize>,
    /// Seconds each cycle run lasts.
    pub seconds: u64,
    /// Feed counts to dispatch (each measured once).
    pub dispatch_sizes: Vec<usize>,
    /// A PostgreSQL server to run on (a scratch database is created and dropped); `None`
    /// runs on a temporary SQLite file.
    pub postgres: Option<String>,
    /// Parents sharing the database (PostgreSQL only); children are spread over them.
    pub parents: usize,
    /// Pending depths at which to time claims (empty: skip).
    pub depths: Vec<usize>,
    /// Seconds to measure an idle parent's CPU with a 100k-feed task (0: skip).
    pub idle_seconds: u64,
}

struct Harness {
    /// One base URL per parent; admin calls go to the first.
    bases: Vec<String>,
    http: reqwest::Client,
    token: String,
    store: Store,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    _scratch: Option<crate::store::ScratchDb>,
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

impl Harness {
    async fn start(opts: &BenchOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("while creating a temp dir")?;
        let scratch = match &opts.postgres {
            Some(server) => Some(
                crate::store::ScratchDb::create(server, "cascade_bench")
                    .await
                    .context("while creating a scratch database")?,
            ),
            None => None,
        };
        let config = Config {
            db: scratch.as_ref().map_or_else(
                || format!("sqlite:///{}", dir.path().join("bench.db").display()),
                |s| s.url.clone(),
            ),
            bcrypt_cost: 4,
            ..Config::default()
        };
        let store = Store::connect(&config.db).await?;
        let clock = Clock::system();
        parent::ops::create_admin(&store, "bench", "bench-password", 4, &clock).await?;
        let shutdown = CancellationToken::new();
        let mut bases = Vec::new();
        for i in 0..opts.parents.max(1) {
            // Each parent its own store (its own pool), as separate processes would have.
            let store = if i == 0 {
                store.clone()
            } else {
                Store::connect(&config.db).await?
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            bases.push(format!("http://{}", listener.local_addr()?));
            let state =
                AppState::new(config.clone(), store, clock.clone(), shutdown.clone()).await?;
            tokio::spawn(parent::serve(listener, state));
        }
        let base = &bases[0];
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let login: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .form(&[("username", "bench"), ("password", "bench-password")])
            .send()
            .await?
            .json()
            .await?;
        let token = login["data"]["access_token"]
            .as_str()
            .context("no token")?
            .to_string();
        Ok(Self {
            bases,
            http,
            token,
            store,
            shutdown,
            _dir: dir,
            _scratch: scratch,
        })
    }

    async fn admin(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.bases[0]))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        Ok(r.json().await?)
    }

    async fn node(&self, name: &str) -> anyhow::Result<String> {
        Ok(self.node_with(name, 1000).await?.1)
    }

    /// A child node with credentials, online: its id and `Authorization` value.
    async fn node_with(&self, name: &str, capacity: u64) -> anyhow::Result<(String, String)> {
        let created = self
            .admin(
                "/api/v1/wx/cascade/nodes",
                json!({"node_type": 1, "name": name, "sync_config": {"max_capacity": capacity}}),
            )
            .await?;
        let id = created["data"]["node_id"]
            .as_str()
            .context("node id")?
            .to_string();
        let cred = self
            .admin(
                &format!("/api/v1/wx/cascade/nodes/{id}/credentials"),
                json!({}),
            )
            .await?;
        let auth = format!(
            "AK-SK {}:{}",
            cred["data"]["api_key"].as_str().unwrap_or(""),
            cred["data"]["api_secret"].as_str().unwrap_or("")
        );
        self.http
            .post(format!("{}/api/v1/wx/cascade/heartbeat", self.bases[0]))
            .header("Authorization", &auth)
            .json(&json!({}))
            .send()
            .await?;
        Ok((id, auth))
    }

    async fn remove_node(&self, id: &str) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/api/v1/wx/cascade/nodes/{id}", self.bases[0]))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(())
    }

    async fn task_with_feeds(&self, start: u64, n: usize) -> anyhow::Result<String> {
        let ids: Vec<String> = (0..n as u64)
            .map(|i| format!("MP_WXS_{}", start + i))
            .collect();
        let feeds = ids.iter().map(|id| NewFeed::wechat(id, id)).collect();
        self.store
            .create_feeds(feeds, Clock::system().now())
            .await?;
        let fields = TaskFields {
            name: format!("bench-{start}"),
            mps_id: json!(ids).to_string(),
            status: 1,
            ..TaskFields::default()
        };
        Ok(self
            .store
            .create_task(fields, Clock::system().now())
            .await?
            .id)
    }

    async fn dispatch(&self, task: &str) -> anyhow::Result<(Duration, Value)> {
        let started = Instant::now();
        let d = self
            .admin(
                &format!("/api/v1/wx/cascade/dispatch-task?task_id={task}"),
                json!({}),
            )
            .await?;
        Ok((started.elapsed(), d))
    }
}

/// Latencies of one child's requests, by kind.
#[derive(Default)]
struct Latencies {
    claim: Vec<Duration>,
    status: Vec<Duration>,
    complete: Vec<Duration>,
}

/// Sends one node request and returns its body (`None` on a transport error) and latency.
async fn timed(req: reqwest::RequestBuilder, auth: &str) -> (Option<Value>, Duration) {
    let started = Instant::now();
    let body = match req.header("Authorization", auth).send().await {
        Ok(r) => r.json::<Value>().await.ok(),
        Err(_) => None,
    };
    (body, started.elapsed())
}

/// One child: claim → executing → complete until `until`.
async fn child(
    http: reqwest::Client,
    base: String,
    auth: String,
    until: Instant,
) -> (u64, Latencies) {
    let mut lat = Latencies::default();
    let mut cycles = 0;
    let url = |path: &str| format!("{base}/api/v1/wx/cascade/{path}");
    while Instant::now() < until {
        let (body, took) = timed(http.post(url("claim-task")), &auth).await;
        lat.claim.push(took);
        let Some(pkg) = body.map(|b| b["data"].clone()).filter(Value::is_object) else {
            break;
        };
        let (id, token) = (&pkg["allocation_id"], &pkg["lease_token"]);
        let status = json!({"allocation_id": id, "status": "executing", "lease_token": token});
        let (_, took) = timed(http.put(url("task-status")).json(&status), &auth).await;
        lat.status.push(took);
        let done = json!({"allocation_id": id, "task_id": pkg["task_id"], "results": [], "article_count": 0, "lease_token": token});
        let (body, took) = timed(http.post(url("report-completion")).json(&done), &auth).await;
        lat.complete.push(took);
        if body.is_some_and(|b| b["code"] == 0) {
            cycles += 1;
        }
    }
    (cycles, lat)
}

/// Runs the benchmark and prints a Markdown report.
///
/// # Errors
/// Set-up failures.
pub async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    anyhow::ensure!(
        opts.parents <= 1 || opts.postgres.is_some(),
        "several parents need a shared PostgreSQL database: add --db postgresql://…"
    );
    let h = Harness::start(&opts).await?;
    println!(
        "# cascade bench ({} cores, {}, {} parent{})\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        h.store.backend_name(),
        h.bases.len(),
        if h.bases.len() == 1 { "" } else { "s" }
    );
    println!(
        "RSS idle after start: {:.1} MiB\n",
        rss_kib("VmRSS:") as f64 / 1024.0
    );
    let mut next_feed = 1_000_000_000u64;
    println!(
        "| children | cycles/s | claim p50 ms | claim p99 ms | status p50 ms | completion p50 ms | cycles | writes per commit | RSS after MiB |\n|---|---|---|---|---|---|---|---|---|"
    );
    if !opts.depths.is_empty() {
        depth_runs(&h, &opts.depths, &mut next_feed).await?;
    }
    for (run, &k) in opts.children.iter().enumerate().filter(|(_, k)| **k > 0) {
        let mut auths = Vec::new();
        for i in 0..k {
            auths.push(h.node(&format!("bench-{run}-{i}")).await?);
        }
        let feeds = 60_000usize;
        let task = h.task_with_feeds(next_feed, feeds).await?;
        next_feed += feeds as u64;
        h.dispatch(&task).await?;
        let grouped_before = h.store.write_grouping();
        let started = Instant::now();
        let until = started + Duration::from_secs(opts.seconds);
        let mut set = tokio::task::JoinSet::new();
        for (i, auth) in auths.into_iter().enumerate() {
            let base = h.bases[i % h.bases.len()].clone();
            set.spawn(child(h.http.clone(), base, auth, until));
        }
        let (mut cycles, mut all) = (0, Latencies::default());
        while let Some(r) = set.join_next().await {
            let (c, l) = r?;
            cycles += c;
            all.claim.extend(l.claim);
            all.status.extend(l.status);
            all.complete.extend(l.complete);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let per_group = match (grouped_before, h.store.write_grouping()) {
            (Some((g0, r0)), Some((g1, r1))) if g1 > g0 => {
                format!("{:.1}", (r1 - r0) as f64 / (g1 - g0) as f64)
            }
            _ => "-".into(),
        };
        let (claims, status, complete) =
            (sorted(all.claim), sorted(all.status), sorted(all.complete));
        println!(
            "| {k} | {:.0} | {} | {} | {} | {} | {cycles} | {per_group} | {:.1} |",
            cycles as f64 / elapsed,
            ms(percentile(&claims, 0.5)),
            ms(percentile(&claims, 0.99)),
            ms(percentile(&status, 0.5)),
            ms(percentile(&complete, 0.5)),
            rss_kib("VmRSS:") as f64 / 1024.0
        );
        // Leave no open allocations behind for the dispatch runs.
        h.http
            .delete(format!(
                "{}/api/v1/wx/cascade/message-tasks/{task}",
                h.bases[0]
            ))
            .bearer_auth(&h.token)
            .send()
            .await?;
    }
    println!(
        "\n| dispatch feeds | time s | allocations | heartbeat p50 ms | heartbeat p99 ms | heartbeat max ms | RSS after MiB |\n|---|---|---|---|---|---|---|"
    );
    let beat_auth = h.node("heartbeat-probe").await?;
    for &n in &opts.dispatch_sizes {
        let task = h.task_with_feeds(next_feed, n).await?;
        next_feed += n as u64;
        let stop = CancellationToken::new();
        let probe = {
            let (http, base, auth, stop) = (
                h.http.clone(),
                h.bases[0].clone(),
                beat_auth.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.is_cancelled() {
                    let t = Instant::now();
                    if http
                        .post(format!("{base}/api/v1/wx/cascade/heartbeat"))
                        .header("Authorization", &auth)
                        .json(&json!({}))
                        .send()
                        .await
                        .is_err()
                    {
                        break;
                    }
                    lat.push(t.elapsed());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                lat
            })
        };
        let (took, d) = h.dispatch(&task).await?;
        stop.cancel();
        let mut lat = probe.await?;
        lat.sort();
        println!(
            "| {n} | {:.2} | {} | {} | {} | {} | {:.1} |",
            took.as_secs_f64(),
            d["data"]["allocations_created"],
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(lat.last().copied().unwrap_or_default()),
            rss_kib("VmRSS:") as f64 / 1024.0
        );
    }
    if opts.idle_seconds > 0 {
        idle_run(&h, opts.idle_seconds, &mut next_feed).await?;
    }
    println!(
        "\nRSS now: {:.1} MiB; peak: {:.1} MiB",
        rss_kib("VmRSS:") as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    h.shutdown.cancel();
    Ok(())
}

/// Claims cost at pending depth D: a node taking unassigned work, then a node with nothing of
/// its own searching the steal set (all of it another online node's fresh work).
async fn depth_runs(h: &Harness, depths: &[usize], next_feed: &mut u64) -> anyhow::Result<()> {
    const CLAIMS: usize = 500;
    println!(
        "| pending | claim with work p50 ms | p99 ms | empty claim (steal search) p50 ms | p99 ms |\n|---|---|---|---|---|"
    );
    for (run, &depth) in depths.iter().enumerate() {
        // Dispatched with no node online: all of it unassigned.
        let task = h.task_with_feeds(*next_feed, depth).await?;
        *next_feed += depth as u64;
        h.dispatch(&task).await?;
        let taker = h
            .node_with(&format!("depth-{run}-taker"), CLAIMS as u64)
            .await?;
        let with_work = claims(h, &taker.1, CLAIMS).await;
        delete_task(h, &task).await?;
        // Another node's fresh work: nothing stealable, every claim searches.
        let holder = h
            .node_with(&format!("depth-{run}-holder"), depth as u64 + 1)
            .await?;
        let task = h.task_with_feeds(*next_feed, depth).await?;
        *next_feed += depth as u64;
        h.dispatch(&task).await?;
        let searcher = h.node_with(&format!("depth-{run}-searcher"), 1000).await?;
        let empty = claims(h, &searcher.1, CLAIMS).await;
        delete_task(h, &task).await?;
        for (id, _) in [taker, holder, searcher] {
            h.remove_node(&id).await?;
        }
        println!(
            "| {depth} | {} | {} | {} | {} |",
            ms(percentile(&with_work, 0.5)),
            ms(percentile(&with_work, 0.99)),
            ms(percentile(&empty, 0.5)),
            ms(percentile(&empty, 0.99)),
        );
    }
    println!();
    Ok(())
}

/// Times `n` claims of one node, one after another; sorted latencies.
async fn claims(h: &Harness, auth: &str, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    let url = format!("{}/api/v1/wx/cascade/claim-task", h.bases[0]);
    for _ in 0..n {
        let (_, took) = timed(h.http.post(&url).json(&json!({})), auth).await;
        lat.push(took);
    }
    sorted(lat)
}

async fn delete_task(h: &Harness, task: &str) -> anyhow::Result<()> {
    h.http
        .delete(format!(
            "{}/api/v1/wx/cascade/message-tasks/{task}",
            h.bases[0]
        ))
        .bearer_auth(&h.token)
        .send()
        .await?;
    Ok(())
}

/// CPU time of this process, from `/proc/self/stat` (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at its closing paren.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the paren.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// An idle parent with an enabled 100k-feed cron task: CPU per second of wall time.
async fn idle_run(h: &Harness, seconds: u64, next_feed: &mut u64) -> anyhow::Result<()> {
    let task = h.task_with_feeds(*next_feed, 100_000).await?;
    *next_feed += 100_000;
    let put = h
        .http
        .put(format!(
            "{}/api/v1/wx/cascade/message-tasks/{task}",
            h.bases[0]
        ))
        .bearer_auth(&h.token)
        .json(&json!({"cron_exp": "0 0 1 1 *", "status": 1}))
        .send()
        .await?;
    anyhow::ensure!(
        put.status().is_success(),
        "could not schedule the idle task"
    );
    // Let the scheduler take the task in, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu, wall) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = cpu_time().saturating_sub(cpu).as_secs_f64() * 1000.0;
    println!(
        "\nIdle with a 100k-feed cron task: {:.2} ms CPU per second over {:.0} s (the whole process: parent and bench)",
        used / wall.elapsed().as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
