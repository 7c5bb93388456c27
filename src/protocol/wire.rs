//! Request bodies of the admin and node APIs. Unknown fields are ignored (PROTOCOL §2.3).

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Distinguishes an absent key (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST {P}/nodes`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateNode {
    /// 0 parent record, 1 child.
    pub node_type: i64,
    /// 1–255 characters.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// WeRSS field.
    pub api_url: Option<String>,
    /// `{"max_capacity", "feed_quota"}`.
    pub sync_config: Option<Value>,
}

/// `PUT {P}/nodes/{id}`.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct UpdateNode {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New api_url; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub api_url: Option<Option<String>>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// Replaces the whole value.
    pub sync_config: Option<Value>,
    /// Clears cooldown and session state.
    #[serde(default)]
    pub reset_state: bool,
}

/// `POST {P}/feeds`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateFeed {
    /// Feed id (`MP_WXS_…`); derived from `faker_id` when absent.
    pub id: Option<String>,
    /// WeChat account, base64.
    pub faker_id: Option<String>,
    /// Display name.
    pub mp_name: String,
    /// Cover URL.
    pub mp_cover: Option<String>,
    /// Description.
    pub mp_intro: Option<String>,
    /// 1 (default) or 0.
    pub status: Option<i64>,
    /// `wechat` (default) or `rss`.
    pub source: Option<String>,
    /// RSS URL.
    pub url: Option<String>,
}

/// `POST {P}/node-commands/{id}/answer` (node): the answer to a command.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct CommandAnswer {
    /// A search's candidates: `[{fakeid, nickname, alias, avatar, signature, service_type}]`.
    pub candidates: Option<Vec<Value>>,
    /// Why the node could not run the command.
    pub error: Option<String>,
}

/// `PUT {P}/feeds/{id}`.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct UpdateFeed {
    /// New name.
    pub mp_name: Option<String>,
    /// New cover.
    pub mp_cover: Option<String>,
    /// New description.
    pub mp_intro: Option<String>,
    /// New status.
    pub status: Option<i64>,
    /// New URL (RSS).
    pub url: Option<String>,
    /// WeChat feeds: this feed's own source chain, in order (`weread_list`, `weread_cover`,
    /// `mp_list`); `[]` returns the feed to the parent's `source_chain`.
    pub source_chain: Option<Vec<String>>,
    /// Ours: freshness mode takes it this many aging steps ahead of feeds due with it
    /// (−100 to 100; below 0 it goes later).
    pub priority: Option<i64>,
}

/// `POST`/`PUT {P}/message-tasks`: every field optional here; create checks the required ones.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct TaskBody {
    /// Display name.
    pub name: Option<String>,
    /// Jinja-style template.
    pub message_template: Option<String>,
    /// JSON text or array of `{"id","mp_name"}` or ids.
    pub mps_id: Option<Value>,
    /// Webhook URL.
    pub web_hook_url: Option<String>,
    /// WeRSS message type.
    pub message_type: Option<i64>,
    /// Cron expression.
    pub cron_exp: Option<String>,
    /// 0 or 1.
    pub status: Option<i64>,
    /// JSON object or its text.
    #[serde(default, deserialize_with = "double_option")]
    pub headers: Option<Option<Value>>,
    /// Cookie string.
    #[serde(default, deserialize_with = "double_option")]
    pub cookies: Option<Option<String>>,
    /// Whether nodes may see headers and cookies.
    pub expose_to_nodes: Option<bool>,
    /// Ours: whether children fetch article bodies for this task (default true).
    pub full_text: Option<bool>,
    /// Ours: the task covers every feed, read at each dispatch; `mps_id` may then be
    /// omitted (stored as `[]`) and is ignored.
    pub all_feeds: Option<bool>,
    /// Ours: its allocations go this many aging steps ahead of waiting ones in claims
    /// (0–100, default 0).
    pub priority: Option<i64>,
}

/// `POST {P}/heartbeat`; every field optional (WeRSS reads only `callback_url`).
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct Heartbeat {
    /// Where the parent may notify this node.
    pub callback_url: Option<String>,
    /// Feeds the node can hold at once.
    pub capacity: Option<u32>,
    /// Feeds in use now.
    pub in_use: Option<u32>,
    /// Fetcher kinds.
    pub fetchers: Option<Vec<String>>,
    /// `valid`, `expired` or `none`.
    pub wechat_session: Option<String>,
    /// Allocation ids the node believes it holds.
    pub held: Option<Vec<String>>,
    /// Software version.
    pub version: Option<String>,
    /// Extensions the node supports.
    pub features: Option<Vec<String>>,
    /// The node's logins without secrets: `[{id, kind, name, state, expires_at,
    /// cooldown_until, last_ok_at, last_error}]`; replaces the set the parent knows.
    pub logins: Option<Vec<Value>>,
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// `POST {P}/report-result`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReportResult {
    /// The message task.
    pub task_id: String,
    /// Free-form result items.
    pub results: Vec<Value>,
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// The login form.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LoginForm {
    /// Required.
    pub username: Option<String>,
    /// Required.
    pub password: Option<String>,
    /// `password` if sent.
    pub grant_type: Option<String>,
}

/// A feed inside a task package: WeRSS's six keys, then ours.
#[derive(Debug, Clone, serde::Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct PackageFeed {
    /// Feed id.
    pub id: String,
    /// WeChat account (base64), `null` for RSS.
    pub faker_id: Option<String>,
    /// Display name.
    pub mp_name: String,
    /// Cover URL.
    pub mp_cover: Option<String>,
    /// Description.
    pub mp_intro: Option<String>,
    /// 1 enabled.
    pub status: i64,
    /// `wechat` or `rss`.
    #[serde(default)]
    pub source: Option<String>,
    /// Feed URL (RSS).
    #[serde(default)]
    pub url: Option<String>,
    /// Stored ETag (RSS).
    #[serde(default)]
    pub etag: Option<String>,
    /// Stored Last-Modified (RSS).
    #[serde(default)]
    pub last_modified: Option<String>,
    /// Newest publish time the parent holds, epoch seconds.
    #[serde(default)]
    pub since: Option<i64>,
    /// WeChat feeds: the sources to try, in order (`weread_list`, `weread_cover`, `mp_list`),
    /// the parent's chain without the sources it found closed (an extension; absent from a
    /// stock parent, ignored by a stock child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<String>>,
    /// WeChat feeds read by `weread_list`: the older articles an earlier read left unread
    /// (its page cap came first), to read after the new ones (an extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
}

/// Where an unfinished WeRead list read stopped: the group offset to go on from and the
/// publish time it must reach (the newest article the parent had when the gap opened).
#[derive(
    Debug, Clone, Copy, serde::Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
pub struct Backlog {
    /// Group offset of the first unread page.
    pub offset: i64,
    /// Epoch seconds: the gap ends at the first article published at or before this.
    pub until: i64,
}

/// The task package a claim hands out (PROTOCOL §8.3).
#[derive(Debug, Clone, serde::Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TaskPackage {
    /// Allocation id.
    pub allocation_id: String,
    /// Message task id.
    pub task_id: String,
    /// Task name.
    pub task_name: Option<String>,
    /// WeRSS message type.
    pub message_type: i64,
    /// Template.
    pub message_template: Option<String>,
    /// Webhook URL.
    pub web_hook_url: Option<String>,
    /// Cron.
    pub cron_exp: Option<String>,
    /// Only with `expose_to_nodes`.
    pub headers: Option<String>,
    /// Only with `expose_to_nodes`.
    pub cookies: Option<String>,
    /// The feeds to crawl.
    pub feeds: Vec<PackageFeed>,
    /// Dispatch time.
    pub dispatched_at: Option<String>,
    /// Claim time.
    #[serde(default)]
    pub claimed_at: Option<String>,
    /// Run id.
    #[serde(default)]
    pub schedule_run_id: Option<String>,
    /// Attempt number.
    #[serde(default)]
    pub attempt: Option<i64>,
    /// Attempt limit.
    #[serde(default)]
    pub max_attempts: Option<i64>,
    /// Fencing token to echo back.
    #[serde(default)]
    pub lease_token: Option<String>,
    /// Lease end.
    #[serde(default)]
    pub lease_expires_at: Option<String>,
    /// Ours: whether the child fetches article bodies (the task's `full_text`; absent from a
    /// stock parent = yes; a stock child ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_text: Option<bool>,
}

/// Query of `claim-task` / `pending-tasks`.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct ClaimQuery {
    /// Must be the caller's id when given.
    pub node_id: Option<String>,
    /// 1–`max_claim_batch`; ≥ 2 makes `data` an array.
    pub limit: Option<i64>,
    /// Long-poll seconds, clamped to 0–`max_wait`.
    pub wait: Option<f64>,
    /// Ours: comma-separated fetcher kinds the child can take now (a child whose WeChat
    /// login is cooling asks for `rss` only); absent = every kind it reported.
    pub kinds: Option<String>,
}

/// `PUT {P}/task-status`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskStatus {
    /// The allocation.
    pub allocation_id: String,
    /// `executing`, `completed` or `failed`.
    pub status: String,
    /// Stored when non-empty.
    pub error_message: Option<String>,
    /// Failure reason (ours).
    pub reason: Option<String>,
    /// Seconds the upstream asked to wait (ours).
    pub retry_after: Option<f64>,
    /// Fencing token (ours).
    pub lease_token: Option<String>,
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// `POST {P}/upload-articles`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UploadArticles {
    /// The allocation.
    pub allocation_id: String,
    /// Article objects (checked item by item).
    pub articles: Vec<Value>,
    /// Fencing token (ours).
    pub lease_token: Option<String>,
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// `POST {P}/report-completion`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReportCompletion {
    /// The allocation.
    pub allocation_id: String,
    /// Must match the allocation's task.
    pub task_id: String,
    /// Per-feed results, free-form.
    pub results: Vec<Value>,
    /// Articles the node counted.
    pub article_count: i64,
    /// Fencing token (ours).
    pub lease_token: Option<String>,
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// One item of `POST {P}/release`.
#[derive(Debug, Deserialize, serde::Serialize, Clone, schemars::JsonSchema)]
pub struct ReleaseItem {
    /// The allocation.
    pub allocation_id: String,
    /// Fencing token.
    pub lease_token: Option<String>,
}

/// `POST {P}/release` (ours).
#[derive(Debug, Deserialize, serde::Serialize, schemars::JsonSchema)]
pub struct Release {
    /// What to give back.
    pub allocations: Vec<ReleaseItem>,
    /// Free text (`shutdown`).
    pub reason: Option<String>,
}

/// `POST {P}/nodes/{id}/logins` (admin) and `POST {P}/login-flows` (node, `auto_login`): start
/// a QR login of this kind on the node.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct StartLogin {
    /// `mp` or `weread`.
    pub kind: String,
}

/// `POST {P}/login-flows/{id}/progress` (node): one step of a QR login flow. Never carries
/// the login's cookies or token.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct LoginFlowStep {
    /// `pending_scan`, `scanned`, `need_otp`, `confirmed` or `failed`.
    pub state: String,
    /// What the QR code to scan encodes (with `pending_scan`).
    pub qr_text: Option<String>,
    /// Its number in this flow (1, 2, …).
    pub qr_number: Option<i64>,
    /// When the node stops polling it (RFC 3339 or the wire format).
    pub qr_expires_at: Option<String>,
    /// The saved login's id (with `confirmed`).
    pub login_id: Option<String>,
    /// Its account name.
    pub account_name: Option<String>,
    /// Its session end.
    pub expires_at: Option<String>,
    /// Why the flow failed (with `failed`).
    pub error: Option<String>,
}

/// `POST {P}/login-flows/{id}/otp` (admin): the 4-digit code the phone shows.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LoginOtp {
    /// The code.
    pub code: String,
}

/// `POST {P}/allocations/retry` and `POST {P}/allocations/cancel` (admin, ours): exactly one
/// of `ids` and `filter`.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationAction {
    /// 1–1000 allocation ids.
    pub ids: Option<Vec<String>>,
    /// The first 1000 allocations it matches (by id, after `after`).
    pub filter: Option<AllocationSelector>,
}

/// The allocations a retry or cancel acts on, as `GET {P}/allocations` filters them.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationSelector {
    /// Retry: `failed` (default) or `timeout`; cancel: `pending` (default), `claimed` or
    /// `executing`.
    pub status: Option<String>,
    /// Holder.
    pub node_id: Option<String>,
    /// Message task.
    pub task_id: Option<String>,
    /// A feed among the allocation's feeds.
    pub feed_id: Option<String>,
    /// Last failure reason (`cancelled` or a reason word of PROTOCOL §4.2).
    pub reason: Option<String>,
    /// Dispatch run.
    pub schedule_run_id: Option<String>,
    /// Go on after this allocation id: the previous answer's `next`, when it said `more`.
    pub after: Option<String>,
}
