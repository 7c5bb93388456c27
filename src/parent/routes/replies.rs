//! What each endpoint answers on success, for `/api/openapi.json`: a typed view's derived
//! schema, or — for handlers that build their answer with `json!` — a schema written here,
//! beside the name of the function that builds it. Keep the two in step: the round trips in
//! `tests/it/openapi/answers.rs` check real answers against these schemas.

use crate::parent::views::FeedView;
use crate::protocol::time::WIRE_DESCRIPTION;
use crate::protocol::wire::TaskPackage;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

/// Makes a schema, registering what it references under `components/schemas`.
pub(super) type MakeSchema = fn(&mut SchemaGenerator) -> Value;

/// What an endpoint answers on success.
pub(super) enum Reply {
    /// 200 with the envelope, `data` of this schema.
    Data(MakeSchema),
    /// `Data`, answered 200 or with this other status (`201`, `202`).
    DataOr(&'static str, MakeSchema),
    /// 200 with JSON of this schema as the whole body.
    Body(MakeSchema),
    /// 200 with one of these media types (not JSON).
    Media(&'static [&'static str]),
    /// Never succeeds: always the error envelope with this status.
    Refused(&'static str),
}

/// The schema of `T`: a reference to `components/schemas` for a named type.
fn typed<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

/// The envelope with `data` of type `T`.
pub(super) fn data<T: JsonSchema>() -> Reply {
    Reply::Data(typed::<T>)
}

/// `{"code": 0, "message", "data"}` with `data` of this schema.
pub(super) fn envelope(data: Value) -> Value {
    json!({"type": "object", "required": ["code", "message", "data"], "properties": {
        "code": {"type": "integer", "const": 0, "description": "0: success"},
        "message": {"type": "string", "description": "WeRSS's message for the endpoint"},
        "data": data,
    }})
}

/// A schema from type names (`"string"`, `"integer|null"`, `"time"` for a wire time, …);
/// anything else is taken as a schema already.
fn kind(t: Value) -> Value {
    let Some(names) = t.as_str() else { return t };
    let types: Vec<&str> = names
        .split('|')
        .map(|n| if n == "time" { "string" } else { n })
        .collect();
    let mut schema = match types.as_slice() {
        [one] => json!({"type": one}),
        many => json!({"type": many}),
    };
    if names.split('|').any(|n| n == "time") {
        schema["description"] = json!(WIRE_DESCRIPTION);
    }
    schema
}

/// An object of these fields (`{"name": type}`); a name ending in `?` may be absent.
fn object(fields: Value) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (name, t) in fields.as_object().into_iter().flatten() {
        let name = match name.strip_suffix('?') {
            Some(optional) => optional.to_string(),
            None => {
                required.push(json!(name));
                name.clone()
            }
        };
        properties.insert(name, kind(t.clone()));
    }
    json!({"type": "object", "required": required, "properties": properties})
}

fn array(items: impl Into<Value>) -> Value {
    json!({"type": "array", "items": kind(items.into())})
}

fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// `schema` under `components/schemas/{name}`, referenced.
fn named(g: &mut SchemaGenerator, name: &str, schema: impl FnOnce() -> Value) -> Value {
    g.definitions_mut()
        .entry(name.to_string())
        .or_insert_with(schema);
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `admin::create_node`.
pub(super) fn created_node(_: &mut SchemaGenerator) -> Value {
    object(
        json!({"node_id": "string", "node_type": "integer", "name": "string",
                  "is_active": "boolean", "created_at": "time"}),
    )
}

/// `ops::sources::list`.
pub(super) fn sources(_: &mut SchemaGenerator) -> Value {
    array(object(json!({
        "source": "string", "state": "string", "since": "time|null",
        "last_ok_at": "time|null", "last_error": "string|null", "refused_by_nodes": "integer",
        "probe_at": "time|null", "login_kind": "string", "logins_usable": "integer",
        "feeds_served": "integer",
    })))
}

/// `ops::flows::view`: a QR login flow as admins see it.
pub(super) fn login_flow(g: &mut SchemaGenerator) -> Value {
    named(g, "LoginFlow", || {
        let qr = object(json!({"text": "string", "number": "integer",
                               "expires_at": "time|null", "modules": nullable(array("string"))}));
        object(json!({
            "id": "string", "node_id": "string", "node_name": "string", "kind": "string",
            "origin": "string", "state": "string", "open": "boolean", "qr": nullable(qr),
            "login_id": "string|null", "account_name": "string|null",
            "login_expires_at": "time|null", "error": "string|null",
            "created_at": "time", "updated_at": "time",
        }))
    })
}

pub(super) fn login_flows(g: &mut SchemaGenerator) -> Value {
    json!({"type": "array", "items": login_flow(g)})
}

/// `ops::flows::node_view`: a QR login flow as its node sees it.
pub(super) fn node_flow(g: &mut SchemaGenerator) -> Value {
    named(g, "NodeLoginFlow", || {
        object(
            json!({"id": "string", "kind": "string", "state": "string", "open": "boolean",
                      "otp": "string|null"}),
        )
    })
}

/// `ops::generate_credentials`.
pub(super) fn credentials(_: &mut SchemaGenerator) -> Value {
    object(json!({"node_id": "string", "api_key": "string", "api_secret": "string"}))
}

/// `ops::test_connection`.
pub(super) fn connection(_: &mut SchemaGenerator) -> Value {
    object(
        json!({"connected": "boolean", "target": "string|null", "online": "boolean",
                  "last_heartbeat_at": "time|null", "error?": "string"}),
    )
}

/// `ops::subscribe::search`.
pub(super) fn candidates(_: &mut SchemaGenerator) -> Value {
    array(object(json!({
        "fakeid": "string", "biz": "string", "feed_id": "string", "nickname": "string",
        "alias": "string", "avatar": "string|null", "signature": "string",
        "service_type": "integer|null", "already_subscribed": "boolean",
    })))
}

/// `subscribe::resolve`: the feed and whether it was created.
pub(super) fn resolved(g: &mut SchemaGenerator) -> Value {
    let mut feed = FeedView::json_schema(g).to_value();
    feed["properties"]["created"] = json!({"type": "boolean", "description": "false: it existed"});
    if let Some(required) = feed["required"].as_array_mut() {
        required.push(json!("created"));
    }
    feed
}

/// `ops::subscribe::answer`.
pub(super) fn command_state(_: &mut SchemaGenerator) -> Value {
    object(json!({"id": "string", "state": "string"}))
}

/// `ops::fresh::check_now`.
pub(super) fn checked(_: &mut SchemaGenerator) -> Value {
    object(
        json!({"feed_id": "string", "allocation_id": "string", "status": "string",
                  "created": "boolean"}),
    )
}

/// `ops::alloc::dispatch_batch`.
pub(super) fn dispatched(_: &mut SchemaGenerator) -> Value {
    let task = object(json!({
        "id": "string", "name": "string", "mp_count": "integer", "feed_count": "integer",
        "created": "integer", "skipped_open": "integer", "missing": "integer",
    }));
    object(
        json!({"online_nodes": "integer", "task_count": "integer", "tasks": array(task),
                  "allocations_created": "integer", "schedule_run_id": "string"}),
    )
}

/// `ops::plan::plan`.
pub(super) fn plan(_: &mut SchemaGenerator) -> Value {
    let target = object(json!({
        "p95_seconds": "integer", "reachable": "boolean", "checks_per_day?": "number",
        "weread_logins?": "integer", "why?": "string",
    }));
    object(json!({
        "window_days": "integer",
        "feeds": object(json!({"wechat": "integer", "rss": "integer", "silent": "integer"})),
        "articles_per_day": "number",
        "logins": object(json!({"weread": "integer", "mp": "integer"})),
        "per_login_day": "number|null", "calls_per_check": "number",
        "min_interval_seconds": "integer", "max_interval_seconds": "integer",
        "now": object(json!({
            "checks_per_day": "number", "p50_seconds": "integer|null",
            "p95_seconds": "integer|null", "longest_interval_seconds": "integer|null",
            "starved": "integer",
        })),
        "target": nullable(target),
    }))
}

/// `monitor::scheduler_state`.
pub(super) fn scheduler(g: &mut SchemaGenerator) -> Value {
    named(g, "SchedulerState", || {
        object(json!({"running": "boolean", "jobs": "integer"}))
    })
}

/// `alloc::claim`: a package (or `null`) for `limit` 1, an array for more; a blocked node
/// also gets `retry_after`, a node with a command waiting `commands_pending`.
pub(super) fn claimed(g: &mut SchemaGenerator) -> Value {
    let package = typed::<TaskPackage>(g);
    let data =
        json!({"anyOf": [package.clone(), {"type": "array", "items": package}, {"type": "null"}]});
    let mut body = envelope(data);
    body["properties"]["retry_after"] =
        json!({"type": "integer", "description": "seconds until the node may claim again"});
    body["properties"]["commands_pending"] = json!({"type": "boolean"});
    body
}

/// `alloc::outcome`.
pub(super) fn status_outcome(_: &mut SchemaGenerator) -> Value {
    object(
        json!({"allocation_id": "string", "status": "string", "attempt": "integer",
                  "available_at": "time|null", "lease_expires_at": "time|null"}),
    )
}

/// `alloc::report_completion`.
pub(super) fn completed(_: &mut SchemaGenerator) -> Value {
    object(json!({"allocation_id": "string", "status": "string"}))
}

/// `alloc::release`.
pub(super) fn released(_: &mut SchemaGenerator) -> Value {
    let rejected = object(json!({"allocation_id": "string", "error": "string"}));
    object(json!({"released": array("string"), "rejected": array(rejected)}))
}

/// `ops::heartbeat`; `commands` and `closed_sources` only for nodes that report the
/// `commands` feature.
pub(super) fn heartbeat(_: &mut SchemaGenerator) -> Value {
    let command = object(json!({
        "id": "string", "type": "string", "kind?": "string", "origin?": "string",
        "query?": "string", "limit?": "integer",
    }));
    object(json!({
        "status": "string", "node_id": "string", "server": "string", "features": array("string"),
        "lease_seconds": "integer", "heartbeat_interval": "integer", "max_wait": "integer",
        "max_claim_batch": "integer", "lost": array("string"), "session_state": "string",
        "cooldown_until": "time|null", "warnings": array("string"),
        "commands?": array(command), "closed_sources?": array("string"),
    }))
}

/// `login::login` and `login::token`.
pub(super) fn token(g: &mut SchemaGenerator) -> Value {
    named(g, "Token", || {
        object(json!({"access_token": "string", "token_type": "string", "expires_in": "integer"}))
    })
}

/// `healthz` and `readyz`.
pub(super) fn health(_: &mut SchemaGenerator) -> Value {
    object(json!({"status": "string"}))
}

/// This document.
pub(super) fn openapi(_: &mut SchemaGenerator) -> Value {
    object(
        json!({"openapi": "string", "info": "object", "paths": "object",
                  "components": "object", "tags": "array"}),
    )
}
