//! Flags and subcommands of the operator commands.

use clap::Subcommand;
use std::path::PathBuf;

/// Where and how admin commands connect.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// A running parent (http://host:port); without it, the local database of the config.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Admin username.
    #[arg(long, global = true, default_value = "admin")]
    pub user: String,
    /// Admin password for --url (or env CASCADE_PASSWORD).
    #[arg(long, global = true, env = "CASCADE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `cascade node …`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Register a child node and print its credentials (shown once).
    Add {
        /// Node name.
        name: String,
        /// Feeds it may hold (sync_config.max_capacity).
        #[arg(long)]
        capacity: Option<u64>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List child nodes with their state and load.
    List,
    /// The logins nodes report (kind, account, state, expiry), of one node when given.
    Logins {
        /// Node id (all nodes when omitted).
        id: Option<String>,
    },
    /// One node.
    Show {
        /// Node id.
        id: String,
    },
    /// Issue new credentials (the old ones stop working).
    Credentials {
        /// Node id.
        id: String,
    },
    /// Disable a node: its work returns to pending.
    Disable {
        /// Node id.
        id: String,
    },
    /// Enable a node again (also clears its cooldown and session state).
    Enable {
        /// Node id.
        id: String,
    },
    /// Delete a node; its work returns to pending, its history stays.
    Remove {
        /// Node id.
        id: String,
    },
}

/// `cascade feed …`
#[derive(Debug, Subcommand)]
pub enum FeedCmd {
    /// Add a WeChat account (`--wechat MP_WXS_…`, `--faker-id`, `--search NAME`, `--link
    /// ARTICLE-URL`) or an RSS/Atom/JSON feed (`--rss URL`).
    Add {
        /// WeChat feed id, `MP_WXS_<digits>`.
        #[arg(long, conflicts_with_all = ["rss", "search", "link"])]
        wechat: Option<String>,
        /// WeChat faker_id (base64 of the biz id), instead of --wechat.
        #[arg(long, conflicts_with_all = ["rss", "search", "link"])]
        faker_id: Option<String>,
        /// URL of an RSS, Atom or JSON feed.
        #[arg(long, conflicts_with_all = ["search", "link"])]
        rss: Option<String>,
        /// Find WeChat accounts by name through a node with a valid mp login and list them;
        /// add one with --pick.
        #[arg(long, value_name = "NAME", conflicts_with = "link")]
        search: Option<String>,
        /// With --search: add the Nth candidate (1 = the first listed).
        #[arg(long, value_name = "N", requires = "search")]
        pick: Option<usize>,
        /// A WeChat article link (https://mp.weixin.qq.com/s/… or /s?__biz=…): add its
        /// account. (`--url` names the parent.)
        #[arg(long, value_name = "ARTICLE-URL")]
        link: Option<String>,
        /// Display name (needed with --wechat, --faker-id and --rss).
        #[arg(long)]
        name: Option<String>,
    },
    /// List feeds, stalest first, a page at a time: ends with "N of TOTAL feeds".
    List(FeedListArgs),
    /// Check a feed now: its waiting allocation goes first in claims, or one is dispatched
    /// at the top priority.
    Check {
        /// Feed id.
        id: String,
    },
    /// Set a feed's priority (freshness mode: it goes this many `check_aging_step`s ahead
    /// of feeds due with it; −100 to 100, 0 by default).
    Priority {
        /// Feed id.
        id: String,
        /// The priority.
        #[arg(allow_negative_numbers = true)]
        priority: i64,
    },
    /// Import feeds from an OPML file (WeChat `MP_WXS_` entries and RSS URLs).
    ImportOpml {
        /// The OPML file.
        file: PathBuf,
    },
    /// Export the feeds as OPML (to stdout without a file).
    ExportOpml {
        /// Where to write.
        file: Option<PathBuf>,
    },
}

/// `cascade feed list`: a page, filtered.
#[derive(Debug, clap::Args)]
pub struct FeedListArgs {
    /// At most this many (1–200).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Skip this many first.
    #[arg(long, default_value_t = 0, conflicts_with = "page")]
    pub offset: u32,
    /// The Nth page of --limit feeds (1 = the first), instead of --offset.
    #[arg(long)]
    pub page: Option<u32>,
    /// Only feeds whose name contains this.
    #[arg(long)]
    pub q: Option<String>,
    /// Only feeds of this source (wechat, rss).
    #[arg(long)]
    pub source: Option<String>,
    /// Only enabled or only paused feeds.
    #[arg(long, value_enum)]
    pub state: Option<FeedState>,
}

/// A feed's state, as `feed list --state` filters it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FeedState {
    /// Crawled when its tasks run.
    Enabled,
    /// Not crawled.
    Paused,
}

impl FeedState {
    /// The word `GET {P}/feed-status?state=` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Paused => "paused",
        }
    }
}

/// `cascade task …`
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a message task over feeds.
    Add {
        /// Task name.
        name: String,
        /// Feed ids, comma separated.
        #[arg(long, value_delimiter = ',', required_unless_present = "all_feeds")]
        feeds: Vec<String>,
        /// Every feed, read again at each dispatch (feeds added later are included).
        #[arg(long)]
        all_feeds: bool,
        /// Cron expression (5 or 6 fields), e.g. "*/30 * * * *".
        #[arg(long, default_value = "")]
        cron: String,
        /// Webhook URL for new articles.
        #[arg(long, default_value = "")]
        webhook: String,
        /// Message template (Jinja), e.g. "{{ article.title }}".
        #[arg(long, default_value = "")]
        template: String,
        /// 0 message (WeCom/DingTalk/Feishu by URL), 1 custom webhook.
        #[arg(long, default_value_t = 0)]
        message_type: i64,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Its allocations go this many `check_aging_step`s ahead of waiting ones (0–100).
        #[arg(long, default_value_t = 0)]
        priority: i64,
    },
    /// List message tasks.
    List,
    /// One task.
    Show {
        /// Task id.
        id: String,
    },
    /// Delete a task; its pending work fails.
    Remove {
        /// Task id.
        id: String,
    },
}
