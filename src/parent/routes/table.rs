//! Every endpoint, once: its method, path, who may call it, what it does, its query
//! parameters and its handler. The router is built from this table and `/api/openapi.json` is
//! generated from it, so the two cannot drift apart.

use super::{admin, alloc, catalog, dashboard, flows, login, monitor, node, outputs, subscribe};
use crate::parent::AppState;
use crate::protocol::wire::{
    CommandAnswer, CreateFeed, CreateNode, Heartbeat, LoginFlowStep, LoginForm, LoginOtp, Release,
    ReportCompletion, ReportResult, StartLogin, TaskBody, TaskStatus, UpdateFeed, UpdateNode,
    UploadArticles,
};
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::Value;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// An admin JWT (`Authorization: Bearer …`).
    Admin,
    /// Node credentials (`Authorization: AK-SK key:secret`).
    Node,
    /// Either.
    Any,
    /// Anyone.
    Public,
}

/// One endpoint's description.
pub(super) struct Doc {
    pub(super) method: &'static str,
    pub(super) path: &'static str,
    pub(super) access: Access,
    pub(super) summary: &'static str,
    pub(super) query: &'static [&'static str],
    pub(super) body: Body,
}

/// What an endpoint's request body is.
pub(super) enum Body {
    /// No body.
    None,
    /// JSON of this schema.
    Json(Value),
    /// A form of this schema.
    Form(Value),
    /// Text of this media type.
    Text(&'static str),
}

/// The JSON Schema (2020-12, subschemas inlined) of a request type, from its serde shape.
fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
    }
    schema
}

fn json<T: schemars::JsonSchema>() -> Body {
    Body::Json(schema_of::<T>())
}

fn form<T: schemars::JsonSchema>() -> Body {
    Body::Form(schema_of::<T>())
}

/// An endpoint: its description and its handler.
pub(super) type Endpoint = (Doc, MethodRouter<AppState>);

const PAGE: &[&str] = &["limit", "offset"];

#[allow(clippy::too_many_arguments)]
fn ep(
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    query: &'static [&'static str],
    body: Body,
    route: MethodRouter<AppState>,
) -> Endpoint {
    let doc = Doc {
        method,
        path,
        access,
        summary,
        query,
        body,
    };
    (doc, route)
}

/// The cascade API, mounted under `/api/v1/wx/cascade` and `/api/v1/cascade`.
#[rustfmt::skip]
pub(super) fn cascade() -> Vec<Endpoint> {
    use Access::{Admin, Any, Node};
    vec![
        ep("post", "/nodes", Admin, "Create a node record", &[], json::<CreateNode>(), post(admin::create_node)),
        ep("get", "/nodes", Admin, "List nodes", &["node_type"], Body::None, get(admin::list_nodes)),
        ep("get", "/nodes/{id}", Admin, "One node", &[], Body::None, get(admin::get_node)),
        ep("get", "/sources", Admin, "The WeChat sources: open or closed, usable logins, feeds served", &[], Body::None, get(admin::list_sources)),
        ep("get", "/logins", Admin, "Every login the nodes report (never their secrets)", &["node_id"], Body::None, get(admin::list_logins)),
        ep("post", "/nodes/{id}/logins", Admin, "Ask a node to run a QR login (202; a running one is returned)", &[], json::<StartLogin>(), post(flows::request)),
        ep("get", "/login-flows", Admin, "The newest QR login flows", &["node_id"], Body::None, get(flows::list)),
        ep("post", "/login-flows", Node, "A node starts a QR login itself (auto_login)", &[], json::<StartLogin>(), post(flows::start)),
        ep("get", "/login-flows/{id}", Admin, "One QR login flow, with its QR code while it waits", &[], Body::None, get(flows::get)),
        ep("delete", "/login-flows/{id}", Admin, "Cancel a QR login flow", &[], Body::None, delete(flows::cancel)),
        ep("post", "/login-flows/{id}/otp", Admin, "The code the phone shows (WeRead)", &[], json::<LoginOtp>(), post(flows::otp)),
        ep("post", "/login-flows/{id}/progress", Node, "A step of a QR login flow the node runs", &[], json::<LoginFlowStep>(), post(flows::progress)),
        ep("put", "/nodes/{id}", Admin, "Update a node (is_active false returns its work)", &[], json::<UpdateNode>(), put(admin::update_node)),
        ep("delete", "/nodes/{id}", Admin, "Delete a node; its work returns to pending", &[], Body::None, delete(admin::delete_node)),
        ep("post", "/nodes/{id}/credentials", Admin, "Issue AK/SK (the secret is shown once)", &[], Body::None, post(admin::credentials)),
        ep("post", "/nodes/{id}/test-connection", Admin, "Ping the node's registered callback", &[], Body::None, post(admin::test_connection)),
        ep("get", "/sync-logs", Admin, "Sync logs, newest first", &["node_id", "operation", "limit", "offset"], Body::None, get(admin::sync_logs)),
        ep("get", "/feeds", Any, "List feeds", PAGE, Body::None, get(catalog::list_feeds)),
        ep("post", "/feeds", Admin, "Create a WeChat or RSS feed", &[], json::<CreateFeed>(), post(catalog::create_feed)),
        ep("post", "/feeds/search", Admin, "Find WeChat accounts by name through a node with a valid mp login (waits up to search_timeout)", &["q", "limit"], Body::None, post(subscribe::search)),
        ep("post", "/feeds/resolve", Admin, "Subscribe to the account of a WeChat article link (201 new, 200 existing)", &["url", "name"], Body::None, post(subscribe::resolve)),
        ep("post", "/node-commands/{id}/answer", Node, "A node's answer to its own command (a search's candidates)", &[], json::<CommandAnswer>(), post(subscribe::answer)),
        ep("get", "/feeds/{id}", Admin, "One feed", &[], Body::None, get(catalog::get_feed)),
        ep("put", "/feeds/{id}", Admin, "Update a feed", &[], json::<UpdateFeed>(), put(catalog::update_feed)),
        ep("post", "/feeds/{id}/check", Admin, "Check a feed now: its pending allocation goes first in claims, or one is dispatched at the top priority", &[], Body::None, post(monitor::check_feed)),
        ep("delete", "/feeds/{id}", Admin, "Delete a feed (its articles stay)", &[], Body::None, delete(catalog::delete_feed)),
        ep("post", "/feeds/import-opml", Admin, "Import feeds from OPML (WeChat MP_WXS_ entries and RSS URLs)", &[], Body::Text("text/x-opml"), post(outputs::import_opml).layer(DefaultBodyLimit::disable())),
        ep("get", "/feeds/export-opml", Admin, "The feeds as OPML 2.0", &[], Body::None, get(outputs::opml_admin)),
        ep("get", "/message-tasks", Any, "List message tasks (nodes: enabled ones, without secrets)", &["status"], Body::None, get(catalog::list_tasks)),
        ep("post", "/message-tasks", Admin, "Create a message task", &[], json::<TaskBody>(), post(catalog::create_task)),
        ep("get", "/message-tasks/{id}", Any, "One message task", &[], Body::None, get(catalog::get_task)),
        ep("put", "/message-tasks/{id}", Admin, "Update a message task", &[], json::<TaskBody>(), put(catalog::update_task)),
        ep("delete", "/message-tasks/{id}", Admin, "Delete a message task; its pending work fails", &[], Body::None, delete(catalog::delete_task)),
        ep("post", "/dispatch-task", Admin, "Dispatch one task now, or every enabled task", &["task_id"], Body::None, post(monitor::dispatch_task)),
        ep("get", "/allocations", Admin, "Allocations, newest first", &[ "task_id", "node_id", "status", "schedule_run_id", "limit", "offset", ], Body::None, get(monitor::allocations)),
        ep("get", "/pending-allocations", Admin, "Counters: pending, running, done today, nodes, capacity", &[], Body::None, get(monitor::pending_allocations)),
        ep("get", "/feed-status", Admin, "Feed freshness, stalest first", &["feed_id", "limit", "offset"], Body::None, get(monitor::feed_status)),
        ep("get", "/plan", Admin, "The freshness the fleet can keep, and the logins a p95 target needs", &["target", "days", "per_login_day", "calls_per_check"], Body::None, get(monitor::plan)),
        ep("post", "/start-scheduler", Admin, "Let cron firings dispatch", &[], Body::None, post(monitor::start_scheduler)),
        ep("post", "/stop-scheduler", Admin, "Hold cron firings", &[], Body::None, post(monitor::stop_scheduler)),
        ep("post", "/reload-scheduler", Admin, "Recompute every task's next run", &[], Body::None, post(monitor::reload_scheduler)),
        ep("post", "/claim-task", Node, "Claim allocations (limit, long-poll wait)", &["limit", "wait"], Body::None, post(alloc::claim_task)),
        ep("get", "/pending-tasks", Node, "What this node may claim", &[], Body::None, get(alloc::pending_tasks)),
        ep("put", "/task-status", Node, "Report executing, completed or failed", &[], json::<TaskStatus>(), put(alloc::task_status)),
        ep("post", "/upload-articles", Node, "Upload crawled articles (idempotent)", &[], json::<UploadArticles>(), post(alloc::upload_articles)),
        ep("post", "/report-completion", Node, "Report an allocation's per-feed results", &[], json::<ReportCompletion>(), post(alloc::report_completion)),
        ep("post", "/release", Node, "Give held allocations back without spending an attempt", &[], json::<Release>(), post(alloc::release)),
        ep("post", "/heartbeat", Node, "Liveness, load, session state; renews leases", &[], json::<Heartbeat>(), post(node::heartbeat)),
        ep("post", "/report-result", Node, "WeRSS result report (logged)", &[], json::<ReportResult>(), post(node::report_result)),
        ep("post", "/notify", Access::Public, "Always 400: a parent receives no notifications (PROTOCOL §3.3)", &[], json::<serde_json::Value>(), post(node::notify)),
    ]
}

/// Everything outside the cascade prefixes, at absolute paths.
#[rustfmt::skip]
pub(super) fn top() -> Vec<Endpoint> {
    use Access::Public;
    vec![
        ep("post", "/api/v1/wx/auth/login", Public, "Admin login (form: username, password)", &[], form::<LoginForm>(), post(login::login)),
        ep("post", "/api/v1/auth/login", Public, "Admin login (form: username, password)", &[], form::<LoginForm>(), post(login::login)),
        ep("post", "/api/v1/wx/auth/token", Public, "Admin login, OAuth2 password form", &[], form::<LoginForm>(), post(login::token)),
        ep("post", "/api/v1/auth/token", Public, "Admin login, OAuth2 password form", &[], form::<LoginForm>(), post(login::token)),
        ep("get", "/rss/{feed_id}", Public, "A feed as RSS 2.0", PAGE, Body::None, get(outputs::rss)),
        ep("get", "/feed/{file}", Public, "A feed ({id}.rss|xml|atom|json) or all feeds (all.{ext})", PAGE, Body::None, get(outputs::feed)),
        ep("get", "/feed/task/{file}", Public, "A message task's feeds ({task_id}.{ext})", PAGE, Body::None, get(outputs::task_feed)),
        ep("get", "/opml", Public, "The feeds as OPML 2.0", &[], Body::None, get(outputs::opml)),
        ep("get", "/", Public, "The dashboard", &[], Body::None, get(dashboard::index)),
        ep("get", "/assets/dashboard.js", Public, "Dashboard script", &[], Body::None, get(dashboard::script)),
        ep("get", "/assets/dashboard.css", Public, "Dashboard style", &[], Body::None, get(dashboard::style)),
        ep("get", "/healthz", Public, "Liveness", &[], Body::None, get(super::healthz)),
        ep("get", "/readyz", Public, "Readiness (database accepts a write, not shutting down)", &[], Body::None, get(super::readyz)),
        ep("get", "/metrics", Public, "Prometheus metrics (OpenMetrics text)", &[], Body::None, get(super::metrics)),
        ep("get", "/api/openapi.json", Public, "This description", &[], Body::None, get(super::openapi::serve)),
    ]
}
