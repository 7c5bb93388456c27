//! Domain types of allocations: dispatch input, claims, reports, monitoring.

use super::AllocStatus;
use crate::dispatch::Source;
use crate::dispatch::retry::{Reason, RetryPolicy};
use chrono::NaiveDateTime;
use serde_json::Value;

/// Allocation statuses (PROTOCOL §4.1); `timeout` exists only in adopted WeRSS rows.
pub const STATUSES: &[&str] = &[
    "pending",
    "claimed",
    "executing",
    "completed",
    "failed",
    "timeout",
];

/// A feed as dispatch sees it.
#[derive(Debug, Clone)]
pub struct DispatchFeed {
    /// Feed id.
    pub id: String,
    /// Fetcher kind.
    pub source: Source,
    /// 1 enabled.
    pub status: i64,
    /// Whether an allocation is open for it (invariant 5).
    pub open: bool,
}

/// A node's load at dispatch time.
#[derive(Debug, Clone)]
pub struct NodeLoad {
    /// The node.
    pub node: super::Node,
    /// Feeds assigned to it in pending allocations.
    pub assigned_pending: i64,
    /// Its `mp` logins not expired nor waiting for a scan, when it reports logins at all
    /// (`None`: a node that never reported them, e.g. a stock WeRSS child).
    pub usable_mp_logins: Option<i64>,
    /// Its usable `weread` logins, likewise.
    pub usable_weread_logins: Option<i64>,
}

/// One allocation to insert.
#[derive(Debug, Clone)]
pub struct NewAllocation {
    /// Message task.
    pub task_id: String,
    /// Its name (copied, as WeRSS).
    pub task_name: String,
    /// Its cron (copied).
    pub cron_exp: String,
    /// Feeds, one kind.
    pub feed_ids: Vec<String>,
    /// Their kind.
    pub source: Source,
    /// Placement's choice.
    pub assigned_node_id: Option<String>,
    /// A priority's head start: claimable, ordered and stealable as if dispatched then
    /// (`available_at` and `dispatched_at`; `None`: the dispatch time; `created_at` keeps
    /// the real time).
    pub available_at: Option<NaiveDateTime>,
}

/// A whole dispatch call, applied in one transaction.
#[derive(Debug, Clone)]
pub struct DispatchBatch {
    /// Shared by every allocation of the call (per task for cron firings).
    pub schedule_run_id: String,
    /// Copied into each allocation.
    pub max_attempts: i64,
    /// What to insert.
    pub allocations: Vec<NewAllocation>,
    /// The cron firing this dispatch is, claimed in the transaction of its first part: the
    /// dispatch happens only if the firing is still unclaimed, and a first part that fails
    /// leaves it unclaimed, so the next pass (of any parent) retries it.
    pub firing: Option<Firing>,
    /// Freshness mode: only feeds still due at this time are inserted (a feed read and
    /// planned again since the pass chose it is left for its next turn).
    pub due_at: Option<NaiveDateTime>,
}

/// A cron firing: moves the task's `next_run_at` from `due` to `next` (and records
/// `last_run_at`) only if it is still `due`.
#[derive(Debug, Clone)]
pub struct Firing {
    /// The task.
    pub task_id: String,
    /// The `next_run_at` this firing is for.
    pub due: NaiveDateTime,
    /// The following firing.
    pub next: Option<NaiveDateTime>,
    /// When it fired.
    pub fired_at: NaiveDateTime,
}

/// An allocation that was created.
#[derive(Debug, Clone)]
pub struct CreatedAllocation {
    /// Its id.
    pub id: String,
    /// Its task.
    pub task_id: String,
    /// Its assigned node.
    pub assigned_node_id: Option<String>,
    /// Feeds in it.
    pub feed_count: i64,
}

/// Lease and placement settings a claim needs.
#[derive(Debug, Clone)]
pub struct ClaimPolicy {
    /// Lease length.
    pub lease_seconds: i64,
    /// Longest run from the claim.
    pub max_run_seconds: i64,
    /// Delay after which another node may take an assigned allocation.
    pub steal_after: i64,
    /// Heartbeat silence after which a node is offline.
    pub offline_after: i64,
    /// Capacity when `sync_config` names none.
    pub default_capacity: u64,
    /// The fetcher kinds the claiming child can take now (its `kinds` query); `None` = every
    /// kind it reported.
    pub only_kinds: Option<Vec<String>>,
}

/// Why a claim returned nothing although work may exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimBlock {
    /// Held feeds reached capacity.
    AtCapacity {
        /// Held feeds.
        held: i64,
        /// Capacity.
        capacity: i64,
    },
    /// WeChat cooldown (and no other kind to fetch).
    Cooling(NaiveDateTime),
    /// WeChat session expired (and no other kind to fetch).
    SessionExpired,
    /// The child asked only for kinds it may not take (its `kinds` query).
    NoUsableKind,
}

/// What a claim handed out.
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    /// Task packages, in claim order.
    pub packages: Vec<crate::protocol::wire::TaskPackage>,
    /// Set when the node could take nothing.
    pub blocked: Option<ClaimBlock>,
}

/// A node's report on an allocation.
#[derive(Debug, Clone)]
pub enum Report {
    /// `task-status executing`.
    Executing,
    /// `task-status completed` or a completion with a success.
    Completed(Option<Completion>),
    /// `task-status failed`, or a completion whose every result failed.
    Failed(Failure),
}

/// A failure as reported.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Typed reason.
    pub reason: Reason,
    /// Upstream wait hint, seconds.
    pub retry_after: Option<i64>,
    /// Message for people.
    pub error_message: Option<String>,
    /// For a completion report: the task id the node named (must match).
    pub task_id: Option<String>,
}

impl Failure {
    /// A failure the parent records itself (release, lease expiry, node offline).
    pub fn by_parent(reason: Reason, message: Option<&str>) -> Self {
        Self {
            reason,
            retry_after: None,
            error_message: message.map(str::to_string),
            task_id: None,
        }
    }
}

/// `report-completion` details.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The task id sent (must match).
    pub task_id: String,
    /// Per-feed results as read.
    pub results: Vec<FeedResult>,
    /// The raw `results` list, kept in `result_summary`.
    pub raw_results: Value,
    /// Articles the node counted.
    pub article_count: i64,
}

/// One per-feed result.
#[derive(Debug, Clone)]
pub struct FeedResult {
    /// Feed id, if named.
    pub feed_id: Option<String>,
    /// Outcome.
    pub success: bool,
    /// Error text.
    pub error: Option<String>,
    /// Typed reason of a failure.
    pub reason: Reason,
    /// Upstream wait hint.
    pub retry_after: Option<i64>,
    /// HTTP validators for RSS.
    pub etag: Option<String>,
    /// HTTP validators for RSS.
    pub last_modified: Option<String>,
    /// A WeRead list's unread backlog: `Some(Some(_))` where to go on, `Some(None)` read to
    /// its end, `None` unchanged.
    pub backlog: Option<Option<crate::protocol::wire::Backlog>>,
}

/// Settings every lifecycle change needs.
#[derive(Debug, Clone, Copy)]
pub struct LifecyclePolicy {
    /// Lease length on renewal.
    pub lease_seconds: i64,
    /// Retry and cooldown.
    pub retry: RetryPolicy,
}

/// The allocation after a report.
#[derive(Debug, Clone)]
pub struct ReportOutcome {
    /// Allocation id.
    pub allocation_id: String,
    /// Resulting status (`pending` for a re-queued failure).
    pub status: AllocStatus,
    /// Attempt count.
    pub attempt: i64,
    /// When it may be claimed again.
    pub available_at: Option<NaiveDateTime>,
    /// Current lease end.
    pub lease_expires_at: Option<NaiveDateTime>,
}

/// An uploaded article, parsed but not yet checked against the allocation.
#[derive(Debug, Clone, Default)]
pub struct ArticleIn {
    /// Position in the request.
    pub index: usize,
    /// Item id as sent.
    pub id: Option<String>,
    /// Feed id as sent.
    pub mp_id: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Link.
    pub url: Option<String>,
    /// Cover.
    pub pic_url: Option<String>,
    /// Summary.
    pub description: Option<String>,
    /// Body.
    pub content: Option<String>,
    /// Body as HTML.
    pub content_html: Option<String>,
    /// Body as Markdown.
    pub content_markdown: Option<String>,
    /// Epoch seconds.
    pub publish_time: Option<i64>,
    /// 1 by default.
    pub status: Option<i64>,
    /// JSON text.
    pub extinfo: Option<String>,
    /// The long link when the source gives one besides `url` (WeRead's `doc_url`): another
    /// link the article is matched by (not stored as a column).
    pub doc_url: Option<String>,
    /// `publish_time` is a first-seen time (a cover read), replaced by the first real one.
    pub time_estimated: bool,
}

/// How uploads are stored.
#[derive(Debug, Clone, Copy)]
pub struct UploadPolicy {
    /// Seconds an upload extends the allocation's lease by (within its run deadline).
    pub lease_seconds: i64,
    /// Seconds apart two publish times of the same title in a feed may be and still be one
    /// article read through two sources (`dedup_window_minutes`).
    pub dedup_window_seconds: i64,
}

/// One rejected upload item.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Rejected {
    /// Position in the request.
    pub index: usize,
    /// Item id as sent.
    pub id: Option<String>,
    /// Why.
    pub error: String,
}

/// What an upload did.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct UploadOutcome {
    /// Items received.
    pub received: usize,
    /// Inserted.
    pub new_count: usize,
    /// Updated.
    pub updated_count: usize,
    /// Of the updated, items matched to an article the feed has under another id (the same
    /// article read through another source); their `ids` entry is the stored id.
    pub duplicate_count: usize,
    /// Stored id per item, `null` for rejected ones.
    pub ids: Vec<Option<String>>,
    /// Rejected items.
    pub rejected: Vec<Rejected>,
    /// Stored ids of the inserted items (for webhooks; not part of the reply).
    #[serde(skip)]
    pub new_ids: Vec<String>,
}

/// An allocation row as admins see it.
#[derive(Debug, Clone)]
pub struct Allocation {
    /// Id.
    pub id: String,
    /// Task.
    pub task_id: String,
    /// Task name copy.
    pub task_name: Option<String>,
    /// Holder (null iff pending).
    pub node_id: Option<String>,
    /// Holder's name.
    pub node_name: Option<String>,
    /// Feeds.
    pub feed_ids: Vec<String>,
    /// Status.
    pub status: String,
    /// Completion summary.
    pub result_summary: Value,
    /// Last error.
    pub error_message: Option<String>,
    /// Dispatch time.
    pub dispatched_at: Option<NaiveDateTime>,
    /// Claim time.
    pub claimed_at: Option<NaiveDateTime>,
    /// First `executing`.
    pub started_at: Option<NaiveDateTime>,
    /// Terminal time.
    pub completed_at: Option<NaiveDateTime>,
    /// Run id.
    pub schedule_run_id: Option<String>,
    /// Articles counted.
    pub article_count: i64,
    /// Articles inserted.
    pub new_article_count: i64,
    /// Created.
    pub created_at: Option<NaiveDateTime>,
    /// Updated.
    pub updated_at: Option<NaiveDateTime>,
    /// Cron copy.
    pub cron_exp: Option<String>,
    /// Placement's choice.
    pub assigned_node_id: Option<String>,
    /// Feeds in it.
    pub feed_count: i64,
    /// Attempts so far.
    pub attempt: i64,
    /// Attempt limit.
    pub max_attempts: i64,
    /// Claimable from.
    pub available_at: Option<NaiveDateTime>,
    /// Lease end.
    pub lease_expires_at: Option<NaiveDateTime>,
    /// Last failure reason.
    pub reason: Option<String>,
}

/// Filters of the allocation list.
#[derive(Debug, Clone, Default)]
pub struct AllocationFilter {
    /// Task.
    pub task_id: Option<String>,
    /// Holder.
    pub node_id: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Run.
    pub schedule_run_id: Option<String>,
    /// A feed among its `feed_ids`.
    pub feed_id: Option<String>,
    /// Last failure reason (a wire name of [`Reason`], e.g. `cancelled`).
    pub reason: Option<String>,
}

/// `pending-allocations` counters.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Counters {
    /// `pending`.
    pub pending_tasks: i64,
    /// `claimed` + `executing`.
    pub executing_tasks: i64,
    /// Completed since UTC midnight.
    pub completed_today: i64,
    /// Failed since UTC midnight.
    pub failed_today: i64,
    /// By the one online rule.
    pub online_nodes: i64,
    /// Pending, not yet available.
    pub delayed_tasks: i64,
    /// Σ held feeds.
    pub held_feeds: i64,
    /// Σ capacity of online nodes.
    pub capacity_total: i64,
    /// Online nodes in cooldown.
    pub cooling_nodes: i64,
    /// Active nodes with an expired session.
    pub session_expired_nodes: i64,
}

/// A feed-status item.
#[derive(Debug, Clone)]
pub struct FeedStatus {
    /// The feed.
    pub feed: super::Feed,
    /// Articles stored.
    pub article_count: i64,
    /// Newest article publish time.
    pub latest_publish_time: Option<i64>,
    /// Last allocation's status.
    pub last_task_status: Option<String>,
    /// When.
    pub last_task_at: Option<NaiveDateTime>,
    /// By whom.
    pub last_node_id: Option<String>,
    /// Their name.
    pub last_node_name: Option<String>,
    /// Last error.
    pub last_error: Option<String>,
    /// When the feed's own schedule plans its next check (`None` until planned).
    pub next_check_at: Option<NaiveDateTime>,
    /// Failed checks in a row.
    pub check_errors: i64,
}

/// Where and how to notify a node (PROTOCOL §10). Holds the secret hash: never serialised.
#[derive(Clone)]
pub struct NotifyTarget {
    /// Node id.
    pub node_id: String,
    /// Its registered callback URL.
    pub callback_url: String,
    /// Its AK.
    pub api_key: String,
    /// SHA-256 of its secret, sent as WeRSS does.
    pub secret_hash: String,
}

impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// What the reaper did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Leases that expired.
    pub expired: usize,
    /// Nodes marked offline.
    pub offline_nodes: usize,
    /// Allocations taken from offline nodes.
    pub from_offline: usize,
}
