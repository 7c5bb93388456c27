//! The subcommands of `cascade` and their flags (the operator commands' own flags are in
//! `admin_args`).

use super::admin;
use clap::Subcommand;

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
    /// Run the whole cascade locally: a parent, fake WeChat, WeRead and feed servers, four
    /// children. It runs on a new temporary database, removed when the demo ends, unless
    /// `--db URL` or `--keep-db` names one.
    Demo {
        /// Exit right after the summary instead of serving until Ctrl-C.
        #[arg(long)]
        exit_when_done: bool,
        /// Run on the configured database (`db` of the config or env `DB`, else
        /// data/cascade.db) instead of a temporary one, and keep it.
        #[arg(long)]
        keep_db: bool,
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
    /// List allocations, newest first; `allocations show ID` prints one with its feeds and
    /// attempts.
    Allocations {
        /// One allocation instead of the list.
        #[command(subcommand)]
        cmd: Option<AllocationCmd>,
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

/// `cascade allocations …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AllocationCmd {
    /// One allocation: its feeds, its attempts with their errors, its lease and next attempt.
    Show {
        /// Allocation id.
        id: String,
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
