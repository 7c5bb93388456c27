//! Validation of feeds and message tasks as admins submit them (PROTOCOL §7). Text that feed
//! outputs show loses the characters XML forbids here, before it is stored.

use crate::parent::error::{ApiError, ApiResult};
use crate::protocol::cron;
use crate::protocol::ids::{faker_id_from_feed_id, feed_id_from_faker_id, rss_feed_id};
use crate::protocol::wire::{CreateFeed, TaskBody, UpdateFeed};
use crate::protocol::xml::clean;
use crate::store::{FeedUpdate, NewFeed, TaskFields};
use serde_json::Value;

fn status01(field: &str, v: Option<i64>, default: i64) -> ApiResult<i64> {
    match v.unwrap_or(default) {
        s @ (0 | 1) => Ok(s),
        _ => Err(ApiError::bad_field(
            field,
            format!("{field} must be 0 or 1"),
        )),
    }
}

fn http_url(field: &str, url: &str) -> ApiResult<String> {
    let url = clean(url.trim().to_string());
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(url),
        _ => Err(ApiError::bad_field(
            field,
            format!("{field} must be an absolute http(s) URL"),
        )),
    }
}

/// Validates a new feed and derives its id.
///
/// # Errors
/// 400 naming the field.
pub fn new_feed(req: CreateFeed) -> ApiResult<NewFeed> {
    let mp_name = clean(req.mp_name).trim().to_string();
    if mp_name.is_empty() {
        return Err(ApiError::bad_field("mp_name", "missing field 'mp_name'"));
    }
    let status = status01("status", req.status, 1)?;
    let source = req
        .source
        .as_deref()
        .unwrap_or("wechat")
        .trim()
        .to_ascii_lowercase();
    let (id, faker_id, url) = match source.as_str() {
        "wechat" => {
            let (id, faker_id) = wechat_ids(req.id.as_deref(), req.faker_id.as_deref())?;
            (id, Some(faker_id), None)
        }
        "rss" => {
            let url = req
                .url
                .as_deref()
                .ok_or_else(|| ApiError::bad_field("url", "missing field 'url'"))?;
            let url = http_url("url", url)?;
            let id = rss_feed_id(&url);
            if req.id.as_deref().is_some_and(|given| given != id) {
                return Err(ApiError::bad_field(
                    "id",
                    format!("id of this RSS feed must be {id}"),
                ));
            }
            (id, None, Some(url))
        }
        _ => {
            return Err(ApiError::bad_field(
                "source",
                "source must be 'wechat' or 'rss'",
            ));
        }
    };
    Ok(NewFeed {
        id,
        faker_id,
        mp_name,
        mp_cover: req.mp_cover.map(clean),
        mp_intro: req.mp_intro.map(clean),
        status,
        source,
        url,
    })
}

fn wechat_ids(id: Option<&str>, faker_id: Option<&str>) -> ApiResult<(String, String)> {
    let from_faker = faker_id
        .map(|f| feed_id_from_faker_id(f).ok_or_else(|| ApiError::invalid_field("faker_id")))
        .transpose()?;
    let from_id = id
        .map(|i| faker_id_from_feed_id(i.trim()).ok_or_else(|| ApiError::invalid_field("id")))
        .transpose()?;
    match (id, from_faker, from_id) {
        (Some(id), Some(derived), Some(_)) if derived != id.trim() => Err(ApiError::bad_field(
            "faker_id",
            format!("faker_id names {derived}, not {}", id.trim()),
        )),
        (_, Some(id), _) => Ok((id, faker_id.unwrap_or_default().trim().to_string())),
        (Some(id), None, Some(faker)) => Ok((id.trim().to_string(), faker)),
        _ => Err(ApiError::bad_field(
            "faker_id",
            "missing field 'faker_id' (or 'id')",
        )),
    }
}

/// Validates a feed update.
///
/// # Errors
/// 400 naming the field.
pub fn feed_update(req: UpdateFeed, aging_step: chrono::TimeDelta) -> ApiResult<FeedUpdate> {
    let mp_name = req.mp_name.map(|n| clean(n).trim().to_string());
    if mp_name.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::bad_field("mp_name", "mp_name must not be empty"));
    }
    Ok(FeedUpdate {
        mp_name,
        mp_cover: req.mp_cover.map(clean),
        mp_intro: req.mp_intro.map(clean),
        status: req
            .status
            .map(|s| status01("status", Some(s), 1))
            .transpose()?,
        url: req.url.as_deref().map(|u| http_url("url", u)).transpose()?,
        source_chain: req.source_chain.map(|c| feed_chain(&c)).transpose()?,
        priority: req
            .priority
            .map(|p| in_range("priority", p, -100, 100).map(|p| (p, aging_step)))
            .transpose()?,
    })
}

/// `value` if within `[lo, hi]`, else a 400 naming `field`.
fn in_range(field: &'static str, value: i64, lo: i64, hi: i64) -> ApiResult<i64> {
    if (lo..=hi).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_field(
            field,
            format!("{field} must be between {lo} and {hi}"),
        ))
    }
}

/// A feed's own source chain: known sources, each once; `[]` clears it (the global chain).
fn feed_chain(names: &[String]) -> ApiResult<Option<String>> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim().to_ascii_lowercase();
        if !crate::parent::ops::sources::SOURCES.contains(&name.as_str()) {
            return Err(ApiError::bad_field(
                "source_chain",
                format!(
                    "unknown source in source_chain (known: {})",
                    crate::parent::ops::sources::SOURCES.join(", ")
                ),
            ));
        }
        if out.contains(&name) {
            return Err(ApiError::bad_field(
                "source_chain",
                "source_chain names a source twice",
            ));
        }
        out.push(name);
    }
    Ok((!out.is_empty()).then(|| out.join(",")))
}

/// Builds the task fields from a body over `base` (create: `None`, every required field must
/// be present; update: the stored fields, any subset may change).
///
/// # Errors
/// 400 naming the field (`name`, `message_template`, `mps_id`, `cron_exp`, `headers`, …).
pub fn task_fields(base: Option<TaskFields>, body: TaskBody) -> ApiResult<TaskFields> {
    let creating = base.is_none();
    let mut f = base.unwrap_or_default();
    match body.name.map(|n| clean(n).trim().to_string()) {
        Some(n) if n.is_empty() => {
            return Err(ApiError::bad_field("name", "name must not be empty"));
        }
        Some(n) => f.name = n,
        None if creating => return Err(ApiError::bad_field("name", "missing field 'name'")),
        None => {}
    }
    match body.message_template {
        Some(t) => f.message_template = t,
        None if creating => {
            return Err(ApiError::bad_field(
                "message_template",
                "missing field 'message_template'",
            ));
        }
        None => {}
    }
    if let Some(all) = body.all_feeds {
        f.all_feeds = all;
    }
    if let Some(p) = body.priority {
        f.priority = in_range("priority", p, 0, 100)?;
    }
    match body.mps_id {
        Some(v) => f.mps_id = mps_id_text(v)?,
        None if creating && f.all_feeds => f.mps_id = "[]".into(),
        None if creating => return Err(ApiError::bad_field("mps_id", "missing field 'mps_id'")),
        None => {}
    }
    if let Some(url) = body.web_hook_url {
        f.web_hook_url = if url.trim().is_empty() {
            String::new()
        } else {
            http_url("web_hook_url", &url)?
        };
    }
    if let Some(t) = body.message_type {
        if t < 0 {
            return Err(ApiError::bad_field(
                "message_type",
                "message_type must be ≥ 0",
            ));
        }
        f.message_type = t;
    }
    if let Some(c) = body.cron_exp {
        let c = c.trim().to_string();
        if !c.is_empty() {
            cron::validate(&c).map_err(|m| ApiError::bad_field("cron_exp", m))?;
        }
        f.cron_exp = c;
    }
    f.status = status01("status", body.status.or(Some(f.status)), 0)?;
    if let Some(h) = body.headers {
        f.headers = headers_text(h)?;
    }
    if let Some(c) = body.cookies {
        f.cookies = c.filter(|c| !c.is_empty());
    }
    if let Some(e) = body.expose_to_nodes {
        f.expose_to_nodes = e;
    }
    if let Some(on) = body.full_text {
        f.full_text = Some(on);
    }
    Ok(f)
}

/// `mps_id` as stored: JSON text of a list whose entries are `{"id", …}` objects or id strings.
fn mps_id_text(v: Value) -> ApiResult<String> {
    let bad = || {
        ApiError::bad_field(
            "mps_id",
            "mps_id must be a JSON list of {\"id\", \"mp_name\"} objects or ids",
        )
    };
    let (list, text) = match v {
        Value::String(s) => (
            serde_json::from_str::<Value>(&s).map_err(|_| bad())?,
            Some(s),
        ),
        other => (other, None),
    };
    let Value::Array(items) = &list else {
        return Err(bad());
    };
    let ok = items.iter().all(|item| match item {
        Value::String(_) => true,
        Value::Object(o) => o
            .get("id")
            .is_some_and(|id| id.is_string() || id.is_number()),
        _ => false,
    });
    if !ok {
        return Err(bad());
    }
    Ok(text.unwrap_or_else(|| list.to_string()))
}

fn headers_text(v: Option<Value>) -> ApiResult<Option<String>> {
    let bad = || ApiError::bad_field("headers", "headers must be a JSON object (or its text)");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(_)) => Ok(Some(s)),
            _ => Err(bad()),
        },
        Some(obj @ Value::Object(_)) => Ok(Some(obj.to_string())),
        Some(_) => Err(bad()),
    }
}
