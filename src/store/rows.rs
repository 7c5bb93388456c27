//! What both backends share above the SQL: lenient column readers, decoders from rows to
//! domain types, SQL text that is the same on both, and (re-exported from `engine`) the pure
//! decisions of claims, reports and uploads. Each backend implements [`RowExt`] for its row
//! type; everything here is written once.

use super::{
    Allocation, Feed, LoginReminder, MessageTask, Node, NodeLogin, Result, SyncLog, TaskFields,
};
use chrono::NaiveDateTime;
use serde_json::Value;

pub(crate) use super::engine::{
    AllocRow, ClaimGate, PACKAGE_TASK, check_article, package, sort_as, take_fitting,
};

/// Lenient column readers: adopted WeRSS rows may hold NULLs, numbers as text or datetimes
/// without a fraction, so every value is decoded by hand rather than by declared type.
pub(crate) trait RowExt {
    /// Text (numbers are rendered), `None` for NULL.
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    /// An integer (numeric text is parsed), `None` for NULL.
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    /// A boolean stored as a boolean or as 0/1.
    fn flag(&self, col: &str) -> Result<bool>;
    /// A naive UTC datetime stored as a timestamp or as text.
    fn time(&self, col: &str) -> Result<Option<NaiveDateTime>>;

    fn text(&self, col: &str) -> Result<String> {
        Ok(self.opt_text(col)?.unwrap_or_default())
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.opt_int(col)?.unwrap_or(0))
    }
    /// A JSON text column; missing or unparsable text reads as `null`.
    fn json(&self, col: &str) -> Result<Value> {
        Ok(self
            .opt_text(col)?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null))
    }
    /// A JSON list of strings; anything else reads as `None`.
    fn string_list(&self, col: &str) -> Result<Option<Vec<String>>> {
        Ok(match self.json(col)? {
            Value::Array(items) => Some(
                items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
    }
}

/// A `cascade_node_logins` row with its `node_name` column.
pub(crate) fn node_login_from_row(r: &impl RowExt) -> Result<NodeLogin> {
    Ok(NodeLogin {
        node_id: r.text("node_id")?,
        node_name: r.opt_text("node_name")?.unwrap_or_default(),
        login_id: r.text("login_id")?,
        kind: r.text("kind")?,
        name: r.opt_text("name")?.unwrap_or_default(),
        state: r.text("state")?,
        expires_at: r.time("expires_at")?,
        cooldown_until: r.time("cooldown_until")?,
        last_ok_at: r.time("last_ok_at")?,
        last_error: r.opt_text("last_error")?,
        budget: r
            .opt_text("budget")?
            .as_deref()
            .and_then(super::LoginBudget::from_json),
    })
}

/// The same with its reminder columns.
pub(crate) fn login_reminder_from_row(r: &impl RowExt) -> Result<LoginReminder> {
    Ok(LoginReminder {
        login: node_login_from_row(r)?,
        stage: r.int("reminded_stage")?,
        stage_expires_at: r.time("reminded_expires_at")?,
    })
}

/// A node row with its `held_feeds` column.
pub(crate) fn node_from_row(r: &impl RowExt) -> Result<Node> {
    let sync_config = match r.json("sync_config")? {
        Value::Object(map) => Value::Object(map),
        _ => Value::Object(Default::default()),
    };
    Ok(Node {
        id: r.text("id")?,
        node_type: r.int("node_type")?,
        name: r.text("name")?,
        description: r.text("description")?,
        api_url: r.opt_text("api_url")?,
        callback_url: r.opt_text("callback_url")?,
        api_key: r.opt_text("api_key")?.filter(|k| !k.is_empty()),
        has_credentials: r
            .opt_text("api_secret_hash")?
            .is_some_and(|h| !h.is_empty()),
        parent_id: r.opt_text("parent_id")?,
        status: r.int("status")?,
        is_active: r.flag("is_active")?,
        sync_config,
        last_sync_at: r.time("last_sync_at")?,
        last_heartbeat_at: r.time("last_heartbeat_at")?,
        created_at: r.time("created_at")?.unwrap_or_default(),
        updated_at: r.time("updated_at")?.unwrap_or_default(),
        capacity: r.opt_int("capacity")?,
        in_use: r.opt_int("in_use")?,
        fetchers: r.string_list("fetchers")?,
        features: r.string_list("features")?,
        session_state: r
            .opt_text("session_state")?
            .unwrap_or_else(|| "unknown".into()),
        cooldown_until: r.time("cooldown_until")?,
        cooldown_level: r.int("cooldown_level")?,
        version: r.opt_text("version")?,
        held_feeds: r.int("held_feeds")?,
        rate: crate::dispatch::capacity::NodeRate {
            window_at: r.opt_int("rate_window_at")?,
            done: r.int("rate_done")?,
            prev: r.int("rate_prev")?,
        },
    })
}

/// A stored source chain (`weread_cover,mp_list`) as its names.
pub(crate) fn split_chain(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn feed_from_row(r: &impl RowExt) -> Result<Feed> {
    Ok(Feed {
        id: r.text("id")?,
        faker_id: r.opt_text("faker_id")?.filter(|f| !f.is_empty()),
        mp_name: r.text("mp_name")?,
        mp_cover: r.opt_text("mp_cover")?,
        mp_intro: r.opt_text("mp_intro")?,
        status: r.opt_int("status")?.unwrap_or(1),
        source: r.opt_text("source")?.unwrap_or_else(|| "wechat".into()),
        url: r.opt_text("url")?,
        update_time: r.opt_int("update_time")?,
        sync_time: r.opt_int("sync_time")?,
        source_chain: r.opt_text("source_chain")?.map(|c| split_chain(&c)),
        priority: r.opt_int("priority")?.unwrap_or(0),
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

pub(crate) fn task_from_row(r: &impl RowExt) -> Result<MessageTask> {
    Ok(MessageTask {
        id: r.text("id")?,
        fields: TaskFields {
            name: r.text("name")?,
            message_type: r.int("message_type")?,
            message_template: r.text("message_template")?,
            web_hook_url: r.text("web_hook_url")?,
            mps_id: r.opt_text("mps_id")?.unwrap_or_else(|| "[]".into()),
            cron_exp: r.text("cron_exp")?,
            status: r.int("status")?,
            headers: r.opt_text("headers")?,
            cookies: r.opt_text("cookies")?,
            expose_to_nodes: r.flag("expose_to_nodes")?,
            full_text: r.opt_int("full_text")?.map(|v| v != 0),
            all_feeds: r.opt_int("all_feeds")?.is_some_and(|v| v != 0),
            priority: r.opt_int("priority")?.unwrap_or(0),
        },
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        next_run_at: r.time("next_run_at")?,
        last_run_at: r.time("last_run_at")?,
    })
}

/// An allocation row joined with its holder's `node_name`.
pub(crate) fn allocation_from_row(r: &impl RowExt) -> Result<Allocation> {
    Ok(Allocation {
        id: r.text("id")?,
        task_id: r.text("task_id")?,
        task_name: r.opt_text("task_name")?,
        node_id: r.opt_text("node_id")?,
        node_name: r.opt_text("node_name")?,
        feed_ids: r.string_list("feed_ids")?.unwrap_or_default(),
        status: r.text("status")?,
        result_summary: r.json("result_summary")?,
        error_message: r.opt_text("error_message")?,
        dispatched_at: r.time("dispatched_at")?,
        claimed_at: r.time("claimed_at")?,
        started_at: r.time("started_at")?,
        completed_at: r.time("completed_at")?,
        schedule_run_id: r.opt_text("schedule_run_id")?,
        article_count: r.int("article_count")?,
        new_article_count: r.int("new_article_count")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        cron_exp: r.opt_text("cron_exp")?,
        assigned_node_id: r.opt_text("assigned_node_id")?,
        feed_count: r.opt_int("feed_count")?.unwrap_or(1),
        attempt: r.int("attempt")?,
        max_attempts: r.opt_int("max_attempts")?.unwrap_or(5),
        available_at: r.time("available_at")?,
        lease_expires_at: r.time("lease_expires_at")?,
        reason: r.opt_text("reason")?,
    })
}

pub(crate) fn sync_log_from_row(r: &impl RowExt) -> Result<SyncLog> {
    Ok(SyncLog {
        id: r.text("id")?,
        node_id: r.opt_text("node_id")?,
        operation: r.opt_text("operation")?.unwrap_or_default(),
        direction: r.opt_text("direction")?.unwrap_or_default(),
        status: r.opt_int("status")?.unwrap_or(0),
        data_count: r.opt_int("data_count")?.unwrap_or(0),
        error_message: r.opt_text("error_message")?,
        extra_data: r.json("extra_data")?,
        started_at: r.time("started_at")?,
        completed_at: r.time("completed_at")?,
    })
}

/// An article row joined with its feed's `mp_name`.
pub(crate) fn article_from_row(r: &impl RowExt) -> Result<super::StoredArticle> {
    let html = r.opt_text("content_html")?.filter(|s| !s.is_empty());
    Ok(super::StoredArticle {
        id: r.text("id")?,
        mp_id: r.text("mp_id")?,
        mp_name: r.opt_text("mp_name")?,
        title: r.text("title")?,
        url: r.opt_text("url")?.filter(|s| !s.is_empty()),
        pic_url: r.opt_text("pic_url")?.filter(|s| !s.is_empty()),
        description: r.opt_text("description")?.filter(|s| !s.is_empty()),
        content_html: html.or(r.opt_text("content")?.filter(|s| !s.is_empty())),
        publish_time: r.opt_int("publish_time")?,
        updated_at_millis: r.opt_int("updated_at_millis")?,
    })
}

/// Columns of [`article_from_row`]; never the Markdown body.
pub(crate) const ARTICLE_COLUMNS: &str = "a.id, a.mp_id, f.mp_name, a.title, a.url, a.pic_url,
    a.description, a.content, a.content_html, a.publish_time, a.updated_at_millis";

/// Allocations by status (same text on both backends).
pub(crate) const ALLOCATION_COUNTS: &str =
    "SELECT status, COUNT(*) AS n FROM we_cascade_task_allocations GROUP BY status ORDER BY status";

/// The counters from the allocation aggregate row and the child nodes.
pub(crate) fn counters_from(
    r: &impl RowExt,
    nodes: &[Node],
    now: NaiveDateTime,
    offline_after: i64,
    default_capacity: u64,
) -> Result<super::Counters> {
    let (mut online, mut capacity, mut cooling, mut expired) = (0, 0, 0, 0);
    for node in nodes {
        if node.is_online(now, u64::try_from(offline_after).unwrap_or(0)) {
            online += 1;
            capacity += node.capacity(default_capacity);
            cooling += i64::from(node.cooldown_until.is_some_and(|t| t > now));
        }
        expired += i64::from(node.is_active && node.session_state == "expired");
    }
    Ok(super::Counters {
        pending_tasks: r.int("pending")?,
        executing_tasks: r.int("executing")?,
        completed_today: r.int("completed_today")?,
        failed_today: r.int("failed_today")?,
        online_nodes: online,
        delayed_tasks: r.int("delayed")?,
        held_feeds: r.int("held")?,
        capacity_total: capacity,
        cooling_nodes: cooling,
        session_expired_nodes: expired,
    })
}

/// A feed row joined with its article statistics and last node's name.
pub(crate) fn feed_status_from_row(r: &impl RowExt) -> Result<super::FeedStatus> {
    Ok(super::FeedStatus {
        feed: feed_from_row(r)?,
        article_count: r.int("article_count")?,
        latest_publish_time: r.opt_int("latest_publish_time")?,
        last_task_status: r.opt_text("last_task_status")?,
        last_task_at: r.time("last_task_at")?,
        last_node_id: r.opt_text("last_node_id")?,
        last_node_name: r.opt_text("last_node_name")?,
        last_error: r.opt_text("last_error")?,
        next_check_at: r.time("next_check_at")?,
        check_errors: r.opt_int("check_errors")?.unwrap_or(0),
    })
}

/// Outbox rows by status (same text on both backends).
pub(crate) const WEBHOOK_COUNTS: &str =
    "SELECT status, COUNT(*) AS n FROM cascade_webhook_outbox GROUP BY status ORDER BY status";

/// Enabled tasks with a webhook (id, `mps_id`), for queueing webhooks of new articles.
pub(crate) const WEBHOOK_TASKS: &str = "SELECT id, mps_id FROM we_message_tasks
    WHERE status = 1 AND web_hook_url IS NOT NULL AND web_hook_url <> ''";

/// The outbox rows for new articles `(stored id, feed id)`: one per task (`(id, mps_id)`)
/// that includes any of their feeds, with that task's articles.
pub(crate) fn webhook_batches(
    tasks: &[impl RowExt],
    new: &[(String, String)],
) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for t in tasks {
        let feeds: std::collections::HashSet<String> = super::mps_feed_ids(&t.text("mps_id")?)
            .into_iter()
            .collect();
        let ids: Vec<String> = new
            .iter()
            .filter(|(_, feed)| feeds.contains(feed))
            .map(|(id, _)| id.clone())
            .collect();
        if !ids.is_empty() {
            out.push((t.text("id")?, ids));
        }
    }
    Ok(out)
}

/// An outbox row as claimed.
pub(crate) fn webhook_job_from_row(r: &impl RowExt) -> Result<super::WebhookJob> {
    Ok(super::WebhookJob {
        id: r.text("id")?,
        task_id: r.text("task_id")?,
        article_ids: r.string_list("article_ids")?.unwrap_or_default(),
        attempts: r.int("attempts")?,
    })
}

/// `(status, sent_at set, next_attempt_at, last_error)` for a finished try.
pub(crate) fn webhook_outcome(
    result: super::WebhookResult,
) -> (&'static str, bool, Option<NaiveDateTime>, Option<String>) {
    match result {
        super::WebhookResult::Sent => ("sent", true, None, None),
        super::WebhookResult::Retry(at, e) => ("pending", false, Some(at), Some(e)),
        super::WebhookResult::Failed(e) => ("failed", false, None, Some(e)),
    }
}

/// Enabled tasks with a cron expression: what the scheduler reads each pass.
pub(crate) const CRON_JOBS: &str = "SELECT id, cron_exp, next_run_at FROM we_message_tasks
    WHERE status = 1 AND cron_exp IS NOT NULL AND TRIM(cron_exp) <> ''
    ORDER BY created_at, id";

pub(crate) fn cron_job_from_row(r: &impl RowExt) -> Result<super::CronJob> {
    Ok(super::CronJob {
        id: r.text("id")?,
        cron_exp: r.text("cron_exp")?,
        next_run_at: r.time("next_run_at")?,
    })
}

/// Upserts one `cascade_settings` row (`$1` key, `$2` value).
pub(crate) const SET_SETTING: &str = "INSERT INTO cascade_settings (key, value) VALUES ($1, $2)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";
