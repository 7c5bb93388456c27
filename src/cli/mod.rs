//! Command line: `cascade parent`, `cascade init`, the operator commands. Parses flags, loads
//! configuration and hands over to the library; the only module that may import every role.

mod admin;
mod admin_args;
mod login;
mod out;
mod plan;
mod table;
mod work;

use crate::clock::Clock;
use crate::config::{self, Config, Overrides};
use crate::parent;
use crate::store::Store;
use crate::store::redact_url;
use anyhow::Context;
use clap::{Parser, Subcommand};
use out::outln;
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// werss-cascade: WeRSS-compatible cascade task dispatch.
#[derive(Debug, Parser)]
#[command(name = "cascade", version, about)]
pub struct Cli {
    /// WeRSS-layout config file (default: ./config.yaml when present).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL, e.g. sqlite://data/cascade.db (overrides `db`).
    #[arg(long, global = true, value_name = "URL")]
    pub db: Option<String>,
    /// HTTP port (overrides `port`).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Address to bind (default 127.0.0.1).
    #[arg(long, global = true)]
    pub bind: Option<IpAddr>,
    /// Where operator commands connect.
    #[command(flatten)]
    pub target: admin::Target,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Which benchmark `cascade bench` runs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchKind {
    /// The allocation engine.
    Engine,
    /// Freshness under rate limits.
    Freshness,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a parent node: the admin and node APIs.
    Parent,
    /// Run the whole cascade locally: a parent, a fake WeChat platform, three children.
    Demo {
        /// Exit right after the summary instead of serving until Ctrl-C.
        #[arg(long)]
        exit_when_done: bool,
    },
    /// Run a child node: claim feeds from the parent, crawl them, upload and report;
    /// `cascade child login` logs the child into WeChat by scanning a QR code.
    Child {
        /// What to do instead of running the child.
        #[command(subcommand)]
        cmd: Option<ChildCmd>,
    },
    /// Benchmarks: `engine` (claim cycles, dispatch, heartbeats, RSS) or `freshness`
    /// (makespan under per-login rate limits, with and without a killed child; with
    /// `--budget`, a simulated run of cron vs freshness mode under per-login daily budgets).
    Bench {
        /// Which benchmark.
        #[arg(value_enum, default_value = "engine")]
        kind: BenchKind,
        /// engine: simulated children per cycle run; freshness: child nodes.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        children: Vec<usize>,
        /// engine: seconds per cycle run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// engine: feed counts to dispatch.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        dispatch: Vec<usize>,
        /// engine: a PostgreSQL server to run on (a scratch database is created there and
        /// dropped); without it, a temporary SQLite file.
        #[arg(long)]
        db: Option<String>,
        /// engine: parents sharing the database (needs --db postgresql://…).
        #[arg(long, default_value_t = 1)]
        parents: usize,
        /// engine: pending depths at which to time claims, e.g. 1000,100000 (none by default).
        #[arg(long, value_delimiter = ',')]
        depth: Vec<usize>,
        /// engine: seconds to measure an idle parent's CPU with a 100k-feed task (0: skip).
        #[arg(long, default_value_t = 0)]
        idle: u64,
        /// freshness: list requests per login per window.
        #[arg(long, default_value_t = 10)]
        rate: usize,
        /// freshness: the window, milliseconds.
        #[arg(long, default_value_t = 1000)]
        window_ms: u64,
        /// freshness: WeChat feeds.
        #[arg(long, default_value_t = 300)]
        feeds: u64,
        /// freshness: run the simulated budget scenario (cron vs freshness mode) instead of
        /// the live one.
        #[arg(long)]
        budget: bool,
        /// budget: logins sharing the feeds.
        #[arg(long, default_value_t = 4)]
        logins: usize,
        /// budget: calls per login in any 24 hours.
        #[arg(long, default_value_t = 25)]
        per_login_day: u64,
        /// budget: calls per login in any hour.
        #[arg(long, default_value_t = 6)]
        per_login_hour: u64,
        /// budget: days simulated.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// budget: minutes between cron firings (WeRSS's task cron).
        #[arg(long, default_value_t = 60)]
        cron_minutes: u32,
        /// budget: seed of the simulated publishing.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Child nodes: add (prints credentials), list, show, credentials, disable, enable, remove.
    Node {
        /// What to do.
        #[command(subcommand)]
        cmd: admin::NodeCmd,
    },
    /// Feeds: add, list, import-opml, export-opml.
    Feed {
        /// What to do.
        #[command(subcommand)]
        cmd: admin::FeedCmd,
    },
    /// Message tasks: add, list, show, remove.
    Task {
        /// What to do.
        #[command(subcommand)]
        cmd: admin::TaskCmd,
    },
    /// Dispatch one task now, or every enabled task.
    Dispatch {
        /// Task id (all enabled tasks without it).
        task: Option<String>,
    },
    /// List allocations, newest first.
    Allocations {
        /// pending, claimed, executing, completed, failed.
        #[arg(long)]
        status: Option<String>,
        /// Holder node id.
        #[arg(long)]
        node: Option<String>,
        /// Task id.
        #[arg(long)]
        task: Option<String>,
        /// At most this many (1–200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// How fresh the fleet can keep its feeds, and how many WeRead logins a target needs
    /// (from each feed's measured publishing rate and the usable logins).
    Plan {
        /// The p95 age of an article when read to plan for: 30m, 1h, 2d.
        #[arg(long)]
        target: Option<String>,
        /// Days of articles to measure publishing rates over (default 28).
        #[arg(long)]
        days: Option<i64>,
        /// Calls one WeRead login may make a day (default: budget_per_day, 25).
        #[arg(long)]
        per_login_day: Option<f64>,
        /// Login calls one check of a feed costs (default 1).
        #[arg(long)]
        calls_per_check: Option<f64>,
    },
    /// Check the config, the database and, for a child config, the parent with its credentials.
    Check,
    /// Admin accounts on the local database: `passwd` sets one's password.
    Admin {
        /// What to do.
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Create the database and an admin account.
    Init {
        /// Admin username.
        #[arg(long, default_value = "admin")]
        admin_user: String,
        /// Admin password (or env CASCADE_ADMIN_PASSWORD).
        #[arg(long, env = "CASCADE_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: String,
    },
}

/// `cascade admin …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Set an admin's password (read from CASCADE_ADMIN_PASSWORD when not given).
    Passwd {
        /// Admin username.
        #[arg(long, default_value = "admin")]
        user: String,
        /// The new password (or env CASCADE_ADMIN_PASSWORD).
        #[arg(long, env = "CASCADE_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

/// `cascade child …` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChildCmd {
    /// Log in by scanning a QR code shown in this terminal, then print the account and the
    /// session's expiry.
    Login {
        /// Which service.
        #[arg(long, value_enum, default_value = "mp")]
        kind: LoginKind,
        /// A label for this login (default: the account name).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Kinds of login `cascade child login` can do.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LoginKind {
    /// The mp.weixin.qq.com backend (token + cookies).
    Mp,
    /// The weread.qq.com web login (its QR text is drawn; the phone's 4-digit code is asked).
    Weread,
}

/// Accepts WeRSS's single-dash `-config FILE` / `-config=FILE` as `--config`.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| match a.to_str() {
            Some("-config") => OsString::from("--config"),
            Some(s) if s.starts_with("-config=") => OsString::from(format!("-{s}")),
            _ => a,
        })
        .collect()
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    crate::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`… | head`): nothing to report.
        Err(e) if out::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let overrides = Overrides {
        db: cli.db.clone(),
        port: cli.port,
        bind: cli.bind,
    };
    let config = config::load(cli.config.as_deref(), &overrides)?;
    Ok(config)
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    let json = cli.target.json;
    match cli.command {
        Command::Node { cmd } => {
            admin::node(&admin::Api::connect(&cli.target, config).await?, json, cmd).await
        }
        Command::Feed { cmd } => {
            admin::feed(&admin::Api::connect(&cli.target, config).await?, json, cmd).await
        }
        Command::Task { cmd } => {
            admin::task(&admin::Api::connect(&cli.target, config).await?, json, cmd).await
        }
        Command::Dispatch { task } => {
            work::dispatch(&admin::Api::connect(&cli.target, config).await?, json, task).await
        }
        Command::Allocations {
            status,
            node,
            task,
            limit,
        } => {
            let api = admin::Api::connect(&cli.target, config).await?;
            work::allocations(&api, json, status, node, task, limit).await
        }
        Command::Plan {
            target,
            days,
            per_login_day,
            calls_per_check,
        } => {
            let api = admin::Api::connect(&cli.target, config).await?;
            let args = plan::PlanAsk {
                target,
                days,
                per_login_day,
                calls_per_check,
            };
            plan::plan(&api, json, args).await
        }
        Command::Check => check(config, cli.config.as_deref()).await,
        Command::Parent => {
            warn_about(&config, config::Role::Parent);
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            parent::run(config, shutdown).await
        }
        Command::Demo { exit_when_done } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            crate::demo::run(config, exit_when_done, shutdown).await
        }
        Command::Child {
            cmd: Some(ChildCmd::Login { kind, name }),
        } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            login::run(&config, kind, name, &shutdown).await
        }
        Command::Child { cmd: None } => {
            warn_about(&config, config::Role::Child);
            let child = crate::child::Child::new(config)?;
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            child.run(shutdown).await
        }
        Command::Bench {
            kind: BenchKind::Engine,
            children,
            seconds,
            dispatch,
            db,
            parents,
            depth,
            idle,
            ..
        } => {
            let opts = crate::bench::BenchOptions {
                children,
                seconds,
                dispatch_sizes: dispatch,
                postgres: db,
                parents,
                depths: depth,
                idle_seconds: idle,
            };
            crate::bench::run(opts).await
        }
        Command::Bench {
            kind: BenchKind::Freshness,
            budget: true,
            feeds,
            logins,
            per_login_day,
            per_login_hour,
            days,
            cron_minutes,
            seed,
            ..
        } => crate::bench::budget::run(crate::bench::budget::BudgetOptions {
            feeds: usize::try_from(feeds)?,
            logins,
            per_login_day,
            per_login_hour,
            days,
            cron_minutes,
            seed,
        }),
        Command::Bench {
            kind: BenchKind::Freshness,
            children,
            rate,
            window_ms,
            feeds,
            ..
        } => {
            let children = if children == [1, 8, 32] {
                3
            } else {
                children.first().copied().unwrap_or(3)
            };
            crate::bench::freshness::run(crate::bench::freshness::FreshnessOptions {
                children,
                rate,
                window_ms,
                feeds,
            })
            .await
        }
        Command::Init {
            admin_user,
            admin_password,
        } => {
            parent::ops::create_admin(
                &open_store(&config).await?,
                &admin_user,
                &admin_password,
                config.bcrypt_cost,
                &Clock::system(),
            )
            .await
            .with_context(|| format!("while creating admin '{admin_user}'"))?;
            outln!(
                "Database {} is ready; admin '{admin_user}' created.",
                redact_url(&config.db)
            )
        }
        Command::Admin {
            cmd: AdminCmd::Passwd { user, password },
        } => {
            parent::ops::set_admin_password(
                &open_store(&config).await?,
                &user,
                &password,
                config.bcrypt_cost,
                &Clock::system(),
            )
            .await
            .with_context(|| format!("while setting the password of '{user}'"))?;
            outln!("Password of admin '{user}' changed.")
        }
    }
}

/// Logs the configuration's warnings for `role` (PROTOCOL §13) at start.
fn warn_about(config: &Config, role: config::Role) {
    for w in config.warnings(role, &|k| std::env::var(k).ok()) {
        tracing::warn!("{w}");
    }
}

/// `cascade check`: the config (and its warnings), the database (parent) or the parent
/// (child), each on a line.
async fn check(config: Config, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let source = file.map_or_else(
        || "defaults and environment".into(),
        |f| f.display().to_string(),
    );
    outln!("config    ok   ({source})")?;
    // A child config names its credentials (or is an enabled child); anything else is a parent.
    let child = !config.cascade.api_key.is_empty()
        || (config.cascade.enabled && config.cascade.node_type == "child");
    let role = if child {
        config::Role::Child
    } else {
        config::Role::Parent
    };
    for w in config.warnings(role, &|k| std::env::var(k).ok()) {
        outln!("warning: {w}")?;
    }
    if child {
        let check = crate::child::Child::new(config)?
            .check()
            .await
            .context("parent check failed")?;
        return outln!("parent    ok   (credentials accepted: {check})");
    }
    let public = format!("http://{}:{}", config.bind, config.port);
    let busy = |e: crate::store::Error| {
        let e = anyhow::Error::new(e);
        match admin::busy_hint(&e, &config.db, &public) {
            Some(hint) => anyhow::anyhow!(hint),
            None => e.context(format!("database {} is not usable", redact_url(&config.db))),
        }
    };
    let store = Store::connect(&config.db).await.map_err(busy)?;
    store.ping().await.map_err(busy)?;
    let admins = store.count_users().await.map_err(busy)?;
    outln!(
        "database  ok   ({} {}, {admins} admin account{})",
        store.backend_name(),
        redact_url(&config.db),
        if admins == 1 { "" } else { "s" }
    )?;
    if admins == 0 {
        outln!("note: no admin yet; `cascade init` or the first `cascade parent` creates one")?;
    }
    Ok(())
}

/// Cancels `token` on SIGINT or SIGTERM.
async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
    token.cancel();
}

/// The configured database, migrated, for a command that works on it directly.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::connect(&config.db)
        .await
        .with_context(|| format!("while opening the database {}", redact_url(&config.db)))
}
