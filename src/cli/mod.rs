//! Command line: `cascade parent`, `cascade init`, the operator commands. Parses flags, loads
//! configuration and hands over to the library; the only module that may import every role.

mod admin;
mod admin_args;
mod api;
mod check;
mod colour;
mod commands;
mod login;
mod out;
mod plan;
mod table;
mod token_cache;
mod work;

pub use commands::{AdminCmd, AllocationCmd, BenchKind, ChildCmd, Command, LoginKind};

use crate::clock::Clock;
use crate::config::{self, Config, Overrides};
use crate::parent;
use crate::store::Store;
use crate::store::redact_url;
use anyhow::Context;
use check::{check, warn_about};
use clap::Parser;
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
    match cli.command {
        // The demo's own lines (and its progress bar) are what it shows; libraries speak
        // only when something goes wrong.
        Command::Demo { .. } => crate::telemetry::init_with_default("warn"),
        _ => crate::telemetry::init(),
    }
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
            admin::node(&api::Api::connect(&cli.target, config).await?, json, cmd).await
        }
        Command::Feed { cmd } => {
            admin::feed(&api::Api::connect(&cli.target, config).await?, json, cmd).await
        }
        Command::Task { cmd } => {
            admin::task(&api::Api::connect(&cli.target, config).await?, json, cmd).await
        }
        Command::Dispatch { task } => {
            work::dispatch(&api::Api::connect(&cli.target, config).await?, json, task).await
        }
        Command::Allocations {
            cmd: Some(AllocationCmd::Show { id }),
            ..
        } => work::allocation(&api::Api::connect(&cli.target, config).await?, json, &id).await,
        Command::Allocations {
            cmd: None,
            status,
            node,
            task,
            limit,
        } => {
            let api = api::Api::connect(&cli.target, config).await?;
            work::allocations(&api, json, status, node, task, limit).await
        }
        Command::Plan {
            target,
            days,
            per_login_day,
            calls_per_check,
        } => {
            let api = api::Api::connect(&cli.target, config).await?;
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
        Command::Demo {
            exit_when_done,
            keep_db,
        } => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            let options = crate::demo::DemoOptions {
                exit_when_done,
                // `--db URL` names the database to use, as `--keep-db` names the configured one.
                scratch_db: !keep_db && cli.db.is_none(),
            };
            crate::demo::run(config, options, shutdown).await
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
