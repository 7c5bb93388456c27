//! Domain types the store takes and returns. Row structs stay private to the backends.

use super::ReportedLogin;
use chrono::NaiveDateTime;
use serde_json::Value;

/// An admin account (`we_users`).
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub username: String,
    /// bcrypt hash; never leaves the parent.
    pub password_hash: String,
    /// Inactive users cannot log in.
    pub is_active: bool,
}

/// A node record (`we_cascade_nodes`), without its secret hash.
#[derive(Debug, Clone)]
pub struct Node {
    /// UUID.
    pub id: String,
    /// 0 parent record, 1 child.
    pub node_type: i64,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// WeRSS field, informational.
    pub api_url: Option<String>,
    /// Where the parent sends notify calls.
    pub callback_url: Option<String>,
    /// AK in clear (masked in every response).
    pub api_key: Option<String>,
    /// Whether a secret hash is stored.
    pub has_credentials: bool,
    /// WeRSS field, unused.
    pub parent_id: Option<String>,
    /// 0 offline, 1 online, 2 deactivated.
    pub status: i64,
    /// Deactivated nodes cannot authenticate.
    pub is_active: bool,
    /// `{"max_capacity", "feed_quota", …}`, always an object.
    pub sync_config: Value,
    /// Last completion.
    pub last_sync_at: Option<NaiveDateTime>,
    /// Last successful node write.
    pub last_heartbeat_at: Option<NaiveDateTime>,
    /// Creation time.
    pub created_at: NaiveDateTime,
    /// Last change.
    pub updated_at: NaiveDateTime,
    /// Capacity last reported by heartbeat.
    pub capacity: Option<i64>,
    /// Feeds in use last reported by heartbeat.
    pub in_use: Option<i64>,
    /// Fetcher kinds reported; `None` = never reported (`["wechat"]`).
    pub fetchers: Option<Vec<String>>,
    /// Protocol extensions the node reported.
    pub features: Option<Vec<String>>,
    /// `unknown`, `valid`, `expired` or `none`.
    pub session_state: String,
    /// WeChat cooldown end.
    pub cooldown_until: Option<NaiveDateTime>,
    /// WeChat cooldown level.
    pub cooldown_level: i64,
    /// Software version reported.
    pub version: Option<String>,
    /// Σ `feed_count` of its claimed/executing allocations.
    pub held_feeds: i64,
    /// Its completions counted for `node_capacity: auto`.
    pub rate: crate::dispatch::capacity::NodeRate,
}

/// What is needed to create a node.
#[derive(Debug, Clone)]
pub struct NewNode {
    /// 0 or 1.
    pub node_type: i64,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// WeRSS field.
    pub api_url: Option<String>,
    /// Validated `sync_config` object.
    pub sync_config: Value,
}

/// An admin's partial node update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct NodeUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New api_url (`Some(None)` clears it).
    pub api_url: Option<Option<String>>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// Replaces the whole `sync_config`.
    pub sync_config: Option<Value>,
    /// Clears cooldown and session state.
    pub reset_state: bool,
}

/// The stored credential of an api key, read for authentication only.
#[derive(Clone)]
pub struct NodeCredential {
    /// The node.
    pub node_id: String,
    /// Its name, for logs.
    pub name: String,
    /// 1 for children; others cannot authenticate.
    pub node_type: i64,
    /// Inactive nodes cannot authenticate.
    pub is_active: bool,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_hash: String,
}

impl std::fmt::Debug for NodeCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredential")
            .field("node_id", &self.node_id)
            .field("secret_hash", &"***")
            .finish_non_exhaustive()
    }
}

/// What a heartbeat may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatUpdate {
    /// Validated absolute http(s) URL.
    pub callback_url: Option<String>,
    /// Reported capacity.
    pub capacity: Option<i64>,
    /// Reported feeds in use.
    pub in_use: Option<i64>,
    /// Reported fetcher kinds.
    pub fetchers: Option<Vec<String>>,
    /// `valid`, `expired` or `none`.
    pub session_state: Option<String>,
    /// Reported software version.
    pub version: Option<String>,
    /// Reported protocol extensions.
    pub features: Option<Vec<String>>,
    /// Allocation ids the node believes it holds; `None` renews everything it holds.
    pub held: Option<Vec<String>>,
    /// The node's logins (no secrets); `Some` replaces its whole set.
    pub logins: Option<Vec<ReportedLogin>>,
}

/// Lease lengths used when renewing.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// Seconds a renewal adds from now.
    pub lease_seconds: i64,
}

/// What a heartbeat changed.
#[derive(Debug, Clone)]
pub struct HeartbeatOutcome {
    /// Ids from `held` that this node no longer holds.
    pub lost: Vec<String>,
    /// Session state after the update.
    pub session_state: String,
    /// Cooldown end, if cooling.
    pub cooldown_until: Option<NaiveDateTime>,
}

/// A feed (`we_feeds`).
#[derive(Debug, Clone)]
pub struct Feed {
    /// `MP_WXS_<digits>` or `RSS_<hex>`.
    pub id: String,
    /// Base64 of the WeChat account number (empty for RSS).
    pub faker_id: Option<String>,
    /// Display name.
    pub mp_name: String,
    /// Cover image URL.
    pub mp_cover: Option<String>,
    /// Description.
    pub mp_intro: Option<String>,
    /// 1 enabled, 0 disabled.
    pub status: i64,
    /// `wechat` or `rss`.
    pub source: String,
    /// Feed URL (RSS).
    pub url: Option<String>,
    /// Last successful crawl, epoch seconds.
    pub update_time: Option<i64>,
    /// Last sync, epoch seconds.
    pub sync_time: Option<i64>,
    /// WeChat feeds: this feed's own source chain (issue 13 §2), `None` for the global one.
    pub source_chain: Option<Vec<String>>,
    /// Freshness mode: how many aging steps it goes ahead of feeds due with it (0 default).
    pub priority: i64,
    /// Creation time.
    pub created_at: Option<NaiveDateTime>,
    /// Last change.
    pub updated_at: Option<NaiveDateTime>,
}

/// A validated new feed.
#[derive(Debug, Clone)]
pub struct NewFeed {
    /// Derived id.
    pub id: String,
    /// WeChat `faker_id`.
    pub faker_id: Option<String>,
    /// Display name.
    pub mp_name: String,
    /// Cover image URL.
    pub mp_cover: Option<String>,
    /// Description.
    pub mp_intro: Option<String>,
    /// 1 or 0.
    pub status: i64,
    /// `wechat` or `rss`.
    pub source: String,
    /// RSS URL.
    pub url: Option<String>,
}

/// A partial feed update.
#[derive(Debug, Clone, Default)]
pub struct FeedUpdate {
    /// New name.
    pub mp_name: Option<String>,
    /// New cover.
    pub mp_cover: Option<String>,
    /// New description.
    pub mp_intro: Option<String>,
    /// New status.
    pub status: Option<i64>,
    /// New URL.
    pub url: Option<String>,
    /// New source chain: `Some(None)` returns the feed to the global chain.
    pub source_chain: Option<Option<String>>,
    /// New priority, with the aging step its planned check moves ahead by per step.
    pub priority: Option<(i64, chrono::TimeDelta)>,
}

/// The fields of a message task an admin sets (create and full update).
#[derive(Debug, Clone, Default)]
pub struct TaskFields {
    /// Display name.
    pub name: String,
    /// WeRSS message type (0 …).
    pub message_type: i64,
    /// Jinja-style template.
    pub message_template: String,
    /// Webhook target, may be empty.
    pub web_hook_url: String,
    /// JSON text list of `{"id","mp_name"}` or ids.
    pub mps_id: String,
    /// Cron expression, may be empty.
    pub cron_exp: String,
    /// 1 enabled, 0 disabled.
    pub status: i64,
    /// JSON object text, may be empty.
    pub headers: Option<String>,
    /// Cookie string.
    pub cookies: Option<String>,
    /// Whether nodes may see headers and cookies.
    pub expose_to_nodes: bool,
    /// Whether children fetch article bodies for this task (`None`: the default, yes).
    pub full_text: Option<bool>,
    /// Ours: the task covers every feed, read at each dispatch (`mps_id` is then ignored).
    pub all_feeds: bool,
    /// Ours: its allocations go ahead of waiting ones by this many aging steps (0–100).
    pub priority: i64,
}

impl TaskFields {
    /// Feed ids named by `mps_id` (objects with `id`, or bare ids), in order.
    pub fn feed_ids(&self) -> Vec<String> {
        mps_feed_ids(&self.mps_id)
    }
}

/// Feed ids of an `mps_id` text: a JSON list of `{"id", …}` objects or ids.
pub fn mps_feed_ids(mps_id: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(mps_id).unwrap_or(Value::Null);
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| match item {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => match o.get("id") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A message task (`we_message_tasks`).
#[derive(Debug, Clone)]
pub struct MessageTask {
    /// UUID.
    pub id: String,
    /// The admin-set fields.
    pub fields: TaskFields,
    /// Creation time.
    pub created_at: Option<NaiveDateTime>,
    /// Last change.
    pub updated_at: Option<NaiveDateTime>,
    /// Next cron firing.
    pub next_run_at: Option<NaiveDateTime>,
    /// Last cron firing.
    pub last_run_at: Option<NaiveDateTime>,
}

/// A sync log row.
#[derive(Debug, Clone)]
pub struct SyncLog {
    /// UUID.
    pub id: String,
    /// Node concerned, if any.
    pub node_id: Option<String>,
    /// `report_result`, `task_completion`, …
    pub operation: String,
    /// `push`, `pull` or `local`.
    pub direction: String,
    /// 0 running, 1 ok, 2 failed.
    pub status: i64,
    /// Items concerned.
    pub data_count: i64,
    /// Failure text.
    pub error_message: Option<String>,
    /// JSON details.
    pub extra_data: Value,
    /// Start.
    pub started_at: Option<NaiveDateTime>,
    /// End.
    pub completed_at: Option<NaiveDateTime>,
}

/// Filters of the sync-log list.
#[derive(Debug, Clone, Default)]
pub struct SyncLogFilter {
    /// Only this node's logs.
    pub node_id: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1–200.
    pub limit: i64,
    /// ≥ 0.
    pub offset: i64,
}

impl Node {
    /// The one online rule (PROTOCOL §4.4): an active child heard from within `offline_after`.
    pub fn is_online(&self, now: NaiveDateTime, offline_after_secs: u64) -> bool {
        let window = chrono::TimeDelta::seconds(
            i64::try_from(offline_after_secs).unwrap_or(i64::MAX / 1000),
        );
        self.node_type == 1
            && self.is_active
            && self.last_heartbeat_at.is_some_and(|t| t + window >= now)
    }

    /// Feeds this node may hold: `sync_config.max_capacity` (else `default`), lowered to the
    /// capacity it reported.
    pub fn capacity(&self, default: u64) -> i64 {
        let configured = self
            .sync_config
            .get("max_capacity")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| i64::try_from(default).unwrap_or(i64::MAX));
        match self.capacity {
            Some(reported) => configured.min(reported),
            None => configured,
        }
    }

    /// Fetcher kinds; a node that never reported any fetches WeChat only.
    pub fn fetcher_kinds(&self) -> Vec<String> {
        self.fetchers
            .clone()
            .unwrap_or_else(|| vec!["wechat".into()])
    }
}

impl NewFeed {
    /// An enabled WeChat feed `MP_WXS_<digits>` named `mp_name`, its `faker_id` derived.
    pub fn wechat(id: &str, mp_name: &str) -> Self {
        Self {
            id: id.to_string(),
            faker_id: crate::protocol::ids::faker_id_from_feed_id(id),
            mp_name: mp_name.to_string(),
            mp_cover: None,
            mp_intro: None,
            status: 1,
            source: "wechat".into(),
            url: None,
        }
    }

    /// An enabled RSS feed at `url`, its id derived from the URL.
    pub fn rss(url: &str, mp_name: &str) -> Self {
        Self {
            id: crate::protocol::ids::rss_feed_id(url),
            faker_id: None,
            url: Some(url.to_string()),
            source: "rss".into(),
            ..Self::wechat("", mp_name)
        }
    }
}

/// A stored article, as feed outputs and webhooks read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArticle {
    /// Stored id (`<feed id>-<item id>`).
    pub id: String,
    /// Its feed.
    pub mp_id: String,
    /// Its feed's name.
    pub mp_name: Option<String>,
    /// Title.
    pub title: String,
    /// Link.
    pub url: Option<String>,
    /// Cover image.
    pub pic_url: Option<String>,
    /// Summary.
    pub description: Option<String>,
    /// Body as HTML (`content_html`, else `content`).
    pub content_html: Option<String>,
    /// Epoch seconds.
    pub publish_time: Option<i64>,
    /// Last change, epoch milliseconds.
    pub updated_at_millis: Option<i64>,
}

/// A webhook waiting to be sent: one task, one batch of new articles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookJob {
    /// Outbox row id.
    pub id: String,
    /// The message task.
    pub task_id: String,
    /// Stored ids of the batch's articles.
    pub article_ids: Vec<String>,
    /// Tries so far, this one included.
    pub attempts: i64,
}

/// How a webhook try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookResult {
    /// Delivered.
    Sent,
    /// Failed; try again at this time.
    Retry(NaiveDateTime, String),
    /// Failed for good.
    Failed(String),
}

/// What the scheduler reads of a task each pass.
#[derive(Debug, Clone)]
pub struct CronJob {
    /// Task id.
    pub id: String,
    /// Its cron expression (non-empty).
    pub cron_exp: String,
    /// Its next firing, once scheduled.
    pub next_run_at: Option<NaiveDateTime>,
}
