//! `cascade demo`: the whole cascade on one machine, as WeChat stands in late 2026. A parent; a
//! fake WeChat whose MP backend list refuses every account but the
//! login's own (closed since about 2026-07-31) and a fake WeRead that serves the same few
//! hundred accounts; four child nodes: two with an `mp` login only (one logged in by a QR scan
//! the demo plays for the user, that one also reading RSS), two with a `weread` login; a fake
//! feed server; a task over every feed, one dispatch, live progress, and a summary: the MP
//! list found closed by the fleet, the articles read through WeRead, no node left cooling,
//! every login of the fleet; then how to reach the parent (its dashboard, the admin password,
//! a `--url` command). It runs on a new temporary SQLite database, removed when it ends,
//! unless told to use the configured one.

mod qr;
mod summary;

use crate::child::Child;
use crate::clock::Clock;
use crate::config::Config;
use crate::logins::LoginStore;
use crate::parent::{self, AppState};
use crate::store::{AllocationFilter, NewFeed, NewNode, Page, Store, TaskFields};
use crate::testkit::feeds::{FakeEntry, FakeFeeds, Format};
use crate::testkit::wechat::{FakeAccount, FakeSession, FakeWechat};
use crate::testkit::weread::FakeWeread;
use anyhow::Context;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const ACCOUNTS: u64 = 300;
const RSS_FEEDS: i64 = 30;

/// Cooldown base of the demo's parent and children (seconds).
const DEMO_COOLDOWN_SECS: u64 = 3;

/// The login each demo child has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DemoLogin {
    /// An `mp` login made by a QR scan the demo plays (this child also reads RSS).
    MpByQr,
    /// An `mp` login from a configured token and cookie.
    MpConfigured,
    /// A `weread` login.
    Weread,
}

/// The demo's children, by number.
const CHILDREN: [(usize, DemoLogin); 4] = [
    (1, DemoLogin::MpByQr),
    (2, DemoLogin::MpConfigured),
    (3, DemoLogin::Weread),
    (4, DemoLogin::Weread),
];

/// How `cascade demo` runs.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// Return after the summary instead of serving until shutdown.
    pub exit_when_done: bool,
    /// Run on a new temporary SQLite database (removed at the end) instead of `config.db`.
    pub scratch_db: bool,
}

/// Runs the demo; with `exit_when_done` it returns after the summary, else it keeps the
/// parent serving until `shutdown`.
///
/// # Errors
/// Start-up failures (database, port in use).
pub async fn run(
    config: Config,
    options: DemoOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The demo's rate-limited login cools for seconds, on the parent and its child alike,
    // not for the production 15 minutes.
    let mut config = config;
    config.cascade.cooldown_base = DEMO_COOLDOWN_SECS;
    config.cascade.cooldown_max = 10 * DEMO_COOLDOWN_SECS;
    // Work an `mp` node handed back (the MP list refused it) waits seconds for a WeRead node.
    config.cascade.retry_base = DEMO_COOLDOWN_SECS;
    // Dropped (the folder and its database removed) when the demo returns.
    let scratch = if options.scratch_db {
        Some(tempfile::tempdir().context("while making the demo's database folder")?)
    } else {
        None
    };
    if let Some(dir) = &scratch {
        config.db = format!("sqlite:///{}", dir.path().join("demo.db").display());
    }
    let clock = Clock::system();
    let store = Store::connect(&config.db)
        .await
        .context("while opening the database")?;
    let password = admin_password(&store, &config, &clock).await?;
    let addr = std::net::SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("while binding {addr}"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState::new(
        config.clone(),
        store.clone(),
        clock.clone(),
        shutdown.clone(),
    )
    .await?;
    let server = tokio::spawn(parent::serve(listener, state.clone()));
    let reaper = tokio::spawn(parent::reaper::Reaper::new(state.clone()).run(shutdown.clone()));
    // The console's node-health chart reads the once-a-minute samples.
    let sampler = tokio::spawn(parent::sampler::Sampler::new(state.clone()).run(shutdown.clone()));

    let newest = chrono::Utc::now().timestamp();
    let run_tag = u64::try_from(newest).unwrap_or(0) % 100_000 * 1_000;
    let accounts: Vec<FakeAccount> = (0..ACCOUNTS)
        .map(|i| FakeAccount::generated(7_000_000_000 + run_tag + i, 3, newest))
        .collect();
    let fake = FakeWechat::start(accounts.clone()).await?;
    // The MP backend list as it is since about 2026-07-31: 200013 for any account but one's own.
    fake.set_closed(true);
    let weread = FakeWeread::start().await?;
    for a in &accounts {
        weread.serve_account(a);
    }
    println!(
        "parent  {base}/   (dashboard; admin user 'admin', {})",
        password.as_deref().map_or_else(
            || "its password unchanged".to_string(),
            |p| format!("password {p}")
        )
    );
    println!(
        "fake WeChat  {}  with {ACCOUNTS} accounts; its MP list refuses other accounts (closed)",
        fake.base_url()
    );
    println!(
        "fake WeRead  {}  serving the same accounts",
        weread.base_url()
    );

    let feeds: Vec<NewFeed> = accounts
        .iter()
        .map(|a| NewFeed::wechat(&format!("MP_WXS_{}", a.number), &a.nickname))
        .collect();
    let rss = FakeFeeds::start().await?;
    let mut feeds = feeds;
    for i in 0..RSS_FEEDS {
        let entries = (0..2)
            .map(|j| FakeEntry {
                id: format!("urn:{run_tag}:{i}:{j}"),
                title: format!("Post {j} of blog {i}"),
                link: format!("https://blog{i}.example/{j}"),
                published: newest - j * 60,
            })
            .collect();
        let url = rss.add_feed(
            &format!("blog-{run_tag}-{i}"),
            [Format::Rss, Format::Atom, Format::Json][usize::try_from(i % 3).unwrap_or(0)],
            entries,
        );
        feeds.push(NewFeed::rss(&url, &format!("Blog {i}")));
    }
    println!("fake feed server with {RSS_FEEDS} RSS/Atom/JSON feeds");
    let ids: Vec<String> = feeds.iter().map(|f| f.id.clone()).collect();
    store.create_feeds(feeds, clock.now()).await?;
    let task = store
        .create_task(
            TaskFields {
                name: format!("demo-{run_tag}"),
                message_template: "{{ article.title }}".into(),
                mps_id: json!(ids).to_string(),
                status: 1,
                ..TaskFields::default()
            },
            clock.now(),
        )
        .await?;

    let mut children = Vec::new();
    // The children's own files (their login stores) live only as long as the demo.
    let child_data = tempfile::tempdir()?;
    for (i, login) in CHILDREN {
        let node = store
            .create_node(
                NewNode {
                    node_type: 1,
                    name: format!("demo-child-{i}"),
                    description: "cascade demo".into(),
                    api_url: None,
                    sync_config: json!({"max_capacity": 8}),
                },
                clock.now(),
            )
            .await?;
        let (key, secret) = parent::ops::issue_credentials(&store, &node.id, clock.now()).await?;
        let session = FakeSession {
            token: format!("demo-token-{i}"),
            slave_sid: format!("demo-sid-{i}"),
            limit: None,
        };
        let mut c = config.clone();
        c.cascade.parent_api_url = base.clone();
        c.cascade.api_key = key;
        c.cascade.api_secret = secret;
        c.cascade.data_dir = child_data
            .path()
            .join(format!("child-{i}"))
            .display()
            .to_string();
        c.cascade.wechat_base_url = fake.base_url().to_string();
        c.cascade.weread_base_url = weread.base_url().to_string();
        // Article pages come from the fake too, never from the real WeChat.
        c.cascade.mp_page_base_url = fake.base_url().to_string();
        // The demo's logins are fakes: no production pacing or budgets (0 = no cap).
        c.cascade.weread_gap_ms = Some(20);
        c.cascade.budget_per_hour = crate::config::PerKind {
            mp: Some(0),
            weread: Some(0),
        };
        c.cascade.budget_per_day = c.cascade.budget_per_hour;
        let token = match login {
            DemoLogin::MpByQr => {
                c.cascade.fetchers = vec!["wechat".into(), "rss".into()];
                Some(
                    qr::qr_login(
                        &fake,
                        &node.name,
                        std::path::Path::new(&c.cascade.data_dir),
                        &shutdown,
                    )
                    .await?,
                )
            }
            DemoLogin::MpConfigured => {
                fake.add_session(session.clone());
                session.configure(&mut c.cascade, &fake);
                Some(session.token.clone())
            }
            DemoLogin::Weread => {
                let mut login = weread.new_login(&format!("weread-demo-{i}"));
                login.renewed_at = Some(chrono::Utc::now());
                LoginStore::open(std::path::Path::new(&c.cascade.data_dir))?.upsert(login)?;
                None
            }
        };
        c.cascade.wechat_gap_ms = 30;
        c.cascade.wechat_gap_jitter_ms = 20;
        // Article pages from the fake, paced like the lists (the real default is 2 s).
        c.cascade.content_gap_ms = 5;
        c.cascade.capacity = 8;
        c.cascade.claim_wait = 2;
        c.cascade.heartbeat_interval = 5;
        c.cascade.shutdown_grace = 5;
        let child = Child::new(c)?;
        child.check().await?;
        children.push((
            node.name.clone(),
            node.id.clone(),
            token,
            tokio::spawn(child.run(shutdown.clone())),
        ));
    }

    let started = Instant::now();
    let dispatched = parent::ops::alloc::dispatch_task(&state, Some(&task.id))
        .await
        .map_err(|e| anyhow::anyhow!("dispatch failed ({})", e.status()))?;
    let total = dispatched["allocations_created"].as_i64().unwrap_or(0);
    println!(
        "dispatched {total} allocations to {} online nodes\n",
        dispatched["online_nodes"]
    );
    loop {
        let filter = |status: &str| AllocationFilter {
            task_id: Some(task.id.clone()),
            status: Some(status.into()),
            ..AllocationFilter::default()
        };
        let page = Page {
            limit: 1,
            offset: 0,
        };
        let done = store.list_allocations(filter("completed"), page).await?.1;
        let failed = store.list_allocations(filter("failed"), page).await?.1;
        let hits: usize = children
            .iter()
            .filter_map(|(_, _, token, _)| token.as_ref())
            .map(|token| {
                fake.log_for(token)
                    .iter()
                    .filter(|e| e.outcome == "200013")
                    .count()
            })
            .sum();
        let mut per_node = Vec::new();
        for (name, id, _, _) in &children {
            let mine = AllocationFilter {
                node_id: Some(id.clone()),
                ..filter("completed")
            };
            per_node.push(format!(
                "{}: {}",
                name.trim_start_matches("demo-"),
                store.list_allocations(mine, page).await?.1
            ));
        }
        let width = 30usize;
        let filled =
            usize::try_from((done + failed) * i64::try_from(width).unwrap_or(40) / total.max(1))
                .unwrap_or(0)
                .min(width);
        print!(
            "\r[{}{}] {}/{} allocations done ({}), {} MP refusals   ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            done + failed,
            total,
            per_node.join(", "),
            hits
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if done + failed >= total
            || started.elapsed() > Duration::from_secs(120)
            || shutdown.is_cancelled()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let members: Vec<summary::Member> = children
        .iter()
        .map(|(name, id, token, _)| summary::Member {
            name: name.clone(),
            id: id.clone(),
            token: token.clone(),
        })
        .collect();
    let summary = summary::Summary {
        store: &store,
        clock: &clock,
        task_id: &task.id,
        members: &members,
        fake: &fake,
        accounts: &accounts,
    };
    summary.print(started.elapsed()).await?;
    print_access(&base, password.as_deref(), &config.db, scratch.is_some());
    if options.exit_when_done {
        println!("(--exit-when-done: the parent stops now)");
    } else {
        println!("The parent keeps serving at {base}; press Ctrl-C to stop.");
        shutdown.cancelled().await;
    }
    shutdown.cancel();
    for (_, _, _, handle) in children {
        let _ = handle.await;
    }
    let _ = reaper.await;
    let _ = sampler.await;
    let _ = server.await;
    fake.stop();
    rss.stop();
    Ok(())
}

/// The demo's admin password: on a database without an admin, the demo creates `admin` with
/// `CASCADE_ADMIN_PASSWORD` or a generated password and returns it; `None` when the database
/// already has an admin (its password is not known here).
async fn admin_password(
    store: &Store,
    config: &Config,
    clock: &Clock,
) -> anyhow::Result<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = std::env::var("CASCADE_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| crate::protocol::credentials::random_token()[..20].to_string());
    parent::ops::create_admin(store, "admin", &password, config.bcrypt_cost, clock).await?;
    Ok(Some(password))
}

/// How to reach the parent once the summary is printed: its dashboard with the admin's
/// password, an operator command over `--url`, and what becomes of the database.
fn print_access(base: &str, password: Option<&str>, db: &str, scratch: bool) {
    let shown = password.unwrap_or("…");
    println!("\ndashboard  {base}/   (user admin, password {shown})");
    if password.is_none() {
        println!("           (the database's existing admin: its password is unchanged)");
    }
    println!("commands   cascade --url {base} --password '{shown}' node list");
    println!("           (later commands may leave out --password: the login is cached)");
    if scratch {
        println!(
            "database   a temporary SQLite file, removed when the demo ends \
             (--keep-db or --db URL runs on one that stays)"
        );
    } else {
        println!("database   {} (kept)", crate::store::redact_url(db));
    }
}
