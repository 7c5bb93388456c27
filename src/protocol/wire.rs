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
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Deserialize, Default)]
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
#[derive(Debug, Deserialize)]
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

/// `PUT {P}/feeds/{id}`.
#[derive(Debug, Deserialize, Default)]
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
}

/// `POST`/`PUT {P}/message-tasks`: every field optional here; create checks the required ones.
#[derive(Debug, Deserialize, Default)]
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
}

/// `POST {P}/heartbeat`; every field optional (WeRSS reads only `callback_url`).
#[derive(Debug, Deserialize, Default)]
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
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// `POST {P}/report-result`.
#[derive(Debug, Deserialize)]
pub struct ReportResult {
    /// The message task.
    pub task_id: String,
    /// Free-form result items.
    pub results: Vec<Value>,
    /// WeRSS's timestamp string, not parsed.
    pub timestamp: Option<Value>,
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// Required.
    pub username: Option<String>,
    /// Required.
    pub password: Option<String>,
    /// `password` if sent.
    pub grant_type: Option<String>,
}
