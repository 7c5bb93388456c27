//! Allocation and feed-status views (PROTOCOL §9.2): what admins see of the work and of each
//! feed's freshness. Lease tokens never reach these types.

use crate::protocol::time;
use chrono::NaiveDateTime;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// An allocation as admins see it; the lease token is never shown.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AllocationView {
    id: String,
    task_id: String,
    task_name: Option<String>,
    node_id: Option<String>,
    feed_ids: Vec<String>,
    status: String,
    result_summary: Value,
    error_message: Option<String>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    dispatched_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    claimed_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    started_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    completed_at: Option<NaiveDateTime>,
    schedule_run_id: Option<String>,
    article_count: i64,
    new_article_count: i64,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    created_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    updated_at: Option<NaiveDateTime>,
    node_name: Option<String>,
    cron_exp: Option<String>,
    assigned_node_id: Option<String>,
    feed_count: i64,
    attempt: i64,
    max_attempts: i64,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    available_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    lease_expires_at: Option<NaiveDateTime>,
    reason: Option<String>,
}

impl From<crate::store::Allocation> for AllocationView {
    fn from(a: crate::store::Allocation) -> Self {
        Self {
            id: a.id,
            task_id: a.task_id,
            task_name: a.task_name,
            node_id: a.node_id,
            feed_ids: a.feed_ids,
            status: a.status,
            result_summary: a.result_summary,
            error_message: a.error_message,
            dispatched_at: a.dispatched_at,
            claimed_at: a.claimed_at,
            started_at: a.started_at,
            completed_at: a.completed_at,
            schedule_run_id: a.schedule_run_id,
            article_count: a.article_count,
            new_article_count: a.new_article_count,
            created_at: a.created_at,
            updated_at: a.updated_at,
            node_name: a.node_name,
            cron_exp: a.cron_exp,
            assigned_node_id: a.assigned_node_id,
            feed_count: a.feed_count,
            attempt: a.attempt,
            max_attempts: a.max_attempts,
            available_at: a.available_at,
            lease_expires_at: a.lease_expires_at,
            reason: a.reason,
        }
    }
}

/// `GET {P}/allocations/{id}`: the allocation as the list shows it, its feeds and the
/// attempts that ended without completing, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AllocationDetailView {
    #[serde(flatten)]
    allocation: AllocationView,
    feeds: Vec<crate::store::AllocationFeed>,
    attempts: Vec<AttemptView>,
}

/// One attempt of an allocation that did not complete.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AttemptView {
    attempt: i64,
    node_id: Option<String>,
    node_name: Option<String>,
    outcome: String,
    reason: Option<String>,
    error_message: Option<String>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    at: Option<NaiveDateTime>,
}

impl From<crate::store::AllocationDetail> for AllocationDetailView {
    fn from(d: crate::store::AllocationDetail) -> Self {
        let attempts = d
            .attempts
            .into_iter()
            .map(|a| AttemptView {
                attempt: a.attempt,
                node_id: a.node_id,
                node_name: a.node_name,
                outcome: a.outcome,
                reason: a.reason,
                error_message: a.error_message,
                at: a.at,
            })
            .collect();
        Self {
            allocation: d.allocation.into(),
            feeds: d.feeds,
            attempts,
        }
    }
}

/// A feed-status item (PROTOCOL §9.2).
#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedStatusView {
    id: String,
    mp_name: String,
    mp_cover: Option<String>,
    status: i64,
    article_count: i64,
    latest_article_time: Option<String>,
    update_status: &'static str,
    update_time: Option<i64>,
    sync_time: Option<i64>,
    /// The newest allocation that covered the feed (`null`: none yet).
    last_task: Option<LastTask>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    created_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    updated_at: Option<NaiveDateTime>,
    source: String,
    last_error: Option<String>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    next_check_at: Option<NaiveDateTime>,
    check_errors: i64,
}

/// The newest allocation that covered a feed, as the feed's status shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LastTask {
    /// Its status.
    status: String,
    /// When.
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    time: Option<NaiveDateTime>,
    /// The node that held it.
    node_id: Option<String>,
    /// That node's name.
    node_name: Option<String>,
}

/// `fresh` < 1 h, `recent` < 24 h, `stale` < 72 h, else `outdated`; `unknown` without a time.
pub fn update_status(update_time: Option<i64>, now: NaiveDateTime) -> &'static str {
    match update_time.filter(|t| *t > 0) {
        None => "unknown",
        Some(t) => match now.and_utc().timestamp() - t {
            age if age < 3600 => "fresh",
            age if age < 86_400 => "recent",
            age if age < 3 * 86_400 => "stale",
            _ => "outdated",
        },
    }
}

impl FeedStatusView {
    /// The view of a feed's status at `now`.
    pub fn new(s: crate::store::FeedStatus, now: NaiveDateTime) -> Self {
        let last_task = s.last_task_status.map(|status| LastTask {
            status,
            time: s.last_task_at,
            node_id: s.last_node_id,
            node_name: s.last_node_name,
        });
        let latest = s
            .latest_publish_time
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| time::to_wire(t.naive_utc()));
        let f = s.feed;
        Self {
            update_status: update_status(f.update_time, now),
            id: f.id,
            mp_name: f.mp_name,
            mp_cover: f.mp_cover,
            status: f.status,
            article_count: s.article_count,
            latest_article_time: latest,
            update_time: f.update_time,
            sync_time: f.sync_time,
            last_task,
            created_at: f.created_at,
            updated_at: f.updated_at,
            source: f.source,
            last_error: s.last_error,
            next_check_at: s.next_check_at,
            check_errors: s.check_errors,
        }
    }
}
