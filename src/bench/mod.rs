//! `cascade bench`: starts one parent (or several on one PostgreSQL database) on a scratch
//! database and drives the WeRSS protocol over HTTP on loopback with K simulated children. Measures claim→executing→complete cycles,
//! claim latency, dispatch time, heartbeat latency during a large dispatch, and RSS.

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
        let created = self
            .admin(
                "/api/v1/wx/cascade/nodes",
                json!({"node_type": 1, "name": name, "sync_config": {"max_capacity": 1000}}),
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
        Ok(auth)
    }

    async fn task_with_feeds(&self, start: u64, n: usize) -> anyhow::Result<String> {
        let ids: Vec<String> = (0..n as u64)
            .map(|i| format!("MP_WXS_{}", start + i))
            .collect();
        let feeds = ids.iter().map(|id| NewFeed::wechat(id, id)).collect();
        self.store
            .create_feeds(feeds, Clock::system().now())
            .await?;
        // Created through the store: a 100k-feed `mps_id` is larger than the API's 1 MiB body limit.
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
    println!(
        "| children | cycles/s | claim p50 ms | claim p99 ms | status p50 ms | completion p50 ms | cycles | RSS after MiB |\n|---|---|---|---|---|---|---|---|"
    );
    let mut next_feed = 1_000_000_000u64;
    for (run, &k) in opts.children.iter().enumerate() {
        let mut auths = Vec::new();
        for i in 0..k {
            auths.push(h.node(&format!("bench-{run}-{i}")).await?);
        }
        let feeds = 60_000usize;
        let task = h.task_with_feeds(next_feed, feeds).await?;
        next_feed += feeds as u64;
        h.dispatch(&task).await?;
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
        let (claims, status, complete) =
            (sorted(all.claim), sorted(all.status), sorted(all.complete));
        println!(
            "| {k} | {:.0} | {} | {} | {} | {} | {cycles} | {:.1} |",
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
    println!(
        "\nRSS now: {:.1} MiB; peak: {:.1} MiB",
        rss_kib("VmRSS:") as f64 / 1024.0,
        rss_kib("VmHWM:") as f64 / 1024.0
    );
    h.shutdown.cancel();
    Ok(())
}
