//! Response shapes (PROTOCOL §6–§7, §9.2): node, feed, message task and sync-log objects,
//! pages, and (in `alloc`) allocations and feed status. Each derives its JSON Schema, which
//! `/api/openapi.json` publishes. Secrets never reach these types: no hash field exists here,
//! the AK is masked.

mod alloc;

pub use alloc::{AllocationDetailView, AllocationView, AttemptView, FeedStatusView, update_status};

use crate::protocol::credentials::mask_key;
use crate::protocol::time;
use crate::store::{Feed, MessageTask, Node, SyncLog};
use chrono::NaiveDateTime;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// A node as admins see it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeView {
    id: String,
    node_type: i64,
    name: String,
    description: String,
    api_url: Option<String>,
    api_key: Option<String>,
    parent_id: Option<String>,
    status: i64,
    is_active: bool,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    last_sync_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    last_heartbeat_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser")]
    #[schemars(with = "time::Wire")]
    created_at: NaiveDateTime,
    #[serde(serialize_with = "time::ser")]
    #[schemars(with = "time::Wire")]
    updated_at: NaiveDateTime,
    sync_config: Value,
    callback_url: Option<String>,
    online: bool,
    has_credentials: bool,
    capacity: i64,
    in_use: Option<i64>,
    held_feeds: i64,
    fetchers: Vec<String>,
    session_state: String,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    cooldown_until: Option<NaiveDateTime>,
    version: Option<String>,
    /// Feeds it finished a minute over the last 10–20 minutes (ours; `null`: none
    /// measured), what `node_capacity: auto` places by.
    feeds_per_minute: Option<f64>,
}

impl NodeView {
    /// The view of `node` at `now` under the parent's settings.
    pub fn new(node: Node, now: NaiveDateTime, offline_after: u64, default_capacity: u64) -> Self {
        let online = node.is_online(now, offline_after);
        let capacity = node.capacity(default_capacity);
        let fetchers = node.fetcher_kinds();
        let feeds_per_minute = node
            .rate
            .per_second(now.and_utc().timestamp())
            .map(|r| (r * 6_000.0).round() / 100.0);
        Self {
            feeds_per_minute,
            api_key: node.api_key.as_deref().map(mask_key),
            id: node.id,
            node_type: node.node_type,
            name: node.name,
            description: node.description,
            api_url: node.api_url,
            parent_id: node.parent_id,
            status: node.status,
            is_active: node.is_active,
            last_sync_at: node.last_sync_at,
            last_heartbeat_at: node.last_heartbeat_at,
            created_at: node.created_at,
            updated_at: node.updated_at,
            sync_config: node.sync_config,
            callback_url: node.callback_url,
            online,
            has_credentials: node.has_credentials,
            capacity,
            in_use: node.in_use,
            held_feeds: node.held_feeds,
            fetchers,
            session_state: node.session_state,
            cooldown_until: node.cooldown_until,
            version: node.version,
        }
    }
}

/// A feed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedView {
    id: String,
    faker_id: Option<String>,
    mp_name: String,
    mp_cover: Option<String>,
    mp_intro: Option<String>,
    status: i64,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    created_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    updated_at: Option<NaiveDateTime>,
    source: String,
    url: Option<String>,
    update_time: Option<i64>,
    sync_time: Option<i64>,
    /// This feed's own source chain (absent: the parent's `source_chain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    source_chain: Option<Vec<String>>,
    /// Freshness mode: aging steps it goes ahead of feeds due with it (ours).
    priority: i64,
}

impl From<Feed> for FeedView {
    fn from(f: Feed) -> Self {
        Self {
            id: f.id,
            faker_id: f.faker_id,
            mp_name: f.mp_name,
            mp_cover: f.mp_cover,
            mp_intro: f.mp_intro,
            status: f.status,
            created_at: f.created_at,
            updated_at: f.updated_at,
            source: f.source,
            url: f.url,
            update_time: f.update_time,
            sync_time: f.sync_time,
            source_chain: f.source_chain,
            priority: f.priority,
        }
    }
}

/// A message task; `headers`/`cookies` are withheld from nodes unless `expose_to_nodes`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskView {
    id: String,
    name: String,
    message_type: i64,
    message_template: String,
    web_hook_url: String,
    mps_id: String,
    cron_exp: String,
    status: i64,
    headers: Option<String>,
    cookies: Option<String>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    created_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    updated_at: Option<NaiveDateTime>,
    expose_to_nodes: bool,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    next_run_at: Option<NaiveDateTime>,
    /// Whether children fetch article bodies (ours; default true).
    full_text: bool,
    /// Whether the task covers every feed, read at each dispatch (ours).
    all_feeds: bool,
    /// Aging steps its allocations go ahead of waiting ones (ours).
    priority: i64,
    /// The zone its cron is read in: the `timezone` setting, or "local time, UTC±hh:mm" of
    /// the parent's process when that is empty (ours; admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cron_timezone: Option<String>,
}

impl TaskView {
    /// The admin view (everything), with the zone its cron is read in (`zone`, the
    /// `timezone` setting).
    pub fn admin(t: MessageTask, zone: &str) -> Self {
        let mut view = Self::build(t, true);
        view.cron_timezone = Some(match zone.trim() {
            "" => format!("local time, UTC{}", chrono::Local::now().format("%:z")),
            named => named.to_string(),
        });
        view
    }

    /// The node view (secrets only with `expose_to_nodes`).
    pub fn node(t: MessageTask) -> Self {
        let expose = t.fields.expose_to_nodes;
        Self::build(t, expose)
    }

    fn build(t: MessageTask, show_secrets: bool) -> Self {
        let f = t.fields;
        Self {
            id: t.id,
            name: f.name,
            message_type: f.message_type,
            message_template: f.message_template,
            web_hook_url: f.web_hook_url,
            mps_id: f.mps_id,
            cron_exp: f.cron_exp,
            status: f.status,
            headers: f.headers.filter(|_| show_secrets),
            cookies: f.cookies.filter(|_| show_secrets),
            created_at: t.created_at,
            updated_at: t.updated_at,
            expose_to_nodes: f.expose_to_nodes,
            next_run_at: t.next_run_at,
            full_text: f.full_text.unwrap_or(true),
            all_feeds: f.all_feeds,
            priority: f.priority,
            cron_timezone: None,
        }
    }
}

/// A sync log.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SyncLogView {
    id: String,
    node_id: Option<String>,
    operation: String,
    direction: String,
    status: i64,
    data_count: i64,
    error_message: Option<String>,
    extra_data: Value,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    started_at: Option<NaiveDateTime>,
    #[serde(serialize_with = "time::ser_opt")]
    #[schemars(with = "Option<time::Wire>")]
    completed_at: Option<NaiveDateTime>,
}

impl From<SyncLog> for SyncLogView {
    fn from(l: SyncLog) -> Self {
        Self {
            id: l.id,
            node_id: l.node_id,
            operation: l.operation,
            direction: l.direction,
            status: l.status,
            data_count: l.data_count,
            error_message: l.error_message,
            extra_data: l.extra_data,
            started_at: l.started_at,
            completed_at: l.completed_at,
        }
    }
}

/// A page of a list: `{"list", "total", "page": {"limit", "offset"}}`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Paged<T> {
    /// Items of this page.
    pub list: Vec<T>,
    /// Items in all pages.
    pub total: i64,
    /// The page asked for.
    pub page: PageView,
}

impl<T> Paged<T> {
    /// One page of `total` items, echoing the page asked for.
    pub fn new(list: Vec<T>, total: i64, page: crate::store::Page) -> Self {
        Self {
            list,
            total,
            page: PageView {
                limit: page.limit,
                offset: page.offset,
            },
        }
    }
}

/// Echo of the page asked for.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PageView {
    /// 1–200.
    pub limit: i64,
    /// ≥ 0.
    pub offset: i64,
}
