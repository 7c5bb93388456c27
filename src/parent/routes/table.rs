//! Every endpoint, once: its area, method, path, who may call it, what it does, the query
//! type its handler reads, its request body, what it answers and its handler. The router is
//! built from this table and `/api/openapi.json` is generated from it, so the two cannot drift
//! apart.

use super::replies::{self, Reply, data};
use super::{
    admin, alloc, catalog, console, dashboard, flows, login, monitor, node, outputs, subscribe,
};
use crate::parent::AppState;
use crate::parent::views::{
    AllocationDetailView, AllocationView, FeedStatusView, FeedView, NodeView, Paged, SyncLogView,
    TaskView,
};
use crate::protocol::wire::{
    AllocationAction, ClaimQuery, CommandAnswer, CreateFeed, CreateNode, Heartbeat, LoginFlowStep,
    LoginForm, LoginOtp, Release, ReportCompletion, ReportResult, StartLogin, TaskBody, TaskStatus,
    UpdateFeed, UpdateNode, UploadArticles,
};
use crate::store::{AuditRecord, BulkOutcome, Counters, NodeLogin, Stats, UploadOutcome};
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

/// The area an endpoint belongs to: its one OpenAPI tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    Nodes,
    Logins,
    Feeds,
    Tasks,
    Allocations,
    Monitoring,
    NodeApi,
    Auth,
    Outputs,
    Service,
}

impl Tag {
    /// Every tag, in the order the document lists them.
    pub(super) const ALL: [Tag; 10] = [
        Tag::Nodes,
        Tag::Logins,
        Tag::Feeds,
        Tag::Tasks,
        Tag::Allocations,
        Tag::Monitoring,
        Tag::NodeApi,
        Tag::Auth,
        Tag::Outputs,
        Tag::Service,
    ];

    /// Its name and description.
    pub(super) fn describe(self) -> (&'static str, &'static str) {
        match self {
            Tag::Nodes => (
                "nodes",
                "Node records, their credentials and callback tests (admin)",
            ),
            Tag::Logins => (
                "logins",
                "WeChat sources, the logins nodes report, QR login flows (admin)",
            ),
            Tag::Feeds => (
                "feeds",
                "Feeds: create, search, subscribe by link, OPML, check now",
            ),
            Tag::Tasks => (
                "tasks",
                "Message tasks, dispatching them, the cron scheduler",
            ),
            Tag::Allocations => (
                "allocations",
                "Allocations: list, detail, retry, cancel, counters (admin)",
            ),
            Tag::Monitoring => (
                "monitoring",
                "Feed status, capacity plan, stats, audit log, sync logs (admin)",
            ),
            Tag::NodeApi => ("node API", "What child nodes call with AK-SK credentials"),
            Tag::Auth => ("auth", "Admin login"),
            Tag::Outputs => ("outputs", "Feeds as RSS, Atom, JSON Feed and OPML (public)"),
            Tag::Service => ("service", "Dashboard, health, metrics and this description"),
        }
    }
}

/// One endpoint's description.
pub(super) struct Doc {
    pub(super) tag: Tag,
    pub(super) method: &'static str,
    pub(super) path: &'static str,
    pub(super) access: Access,
    pub(super) summary: &'static str,
    pub(super) query: Query,
    pub(super) body: Body,
    pub(super) reply: Reply,
}

/// What an endpoint reads from its query string.
pub(super) enum Query {
    /// Nothing.
    None,
    /// The fields of the type its handler reads with `QueryParams<T>`: its JSON Schema.
    Of(Value),
}

const NONE: Query = Query::None;

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

/// The query parameters of `T`, the type the handler's `QueryParams<T>` reads.
fn query<T: schemars::JsonSchema>() -> Query {
    Query::Of(schema_of::<T>())
}

/// An endpoint: its description and its handler.
pub(super) type Endpoint = (Doc, MethodRouter<AppState>);

/// The media types of a feed document, by its extension.
const FEED_MEDIA: &[&str] = &[
    "application/rss+xml",
    "application/atom+xml",
    "application/feed+json",
];

#[allow(clippy::too_many_arguments)]
fn ep(
    tag: Tag,
    method: &'static str,
    path: &'static str,
    access: Access,
    summary: &'static str,
    query: Query,
    body: Body,
    reply: Reply,
    route: MethodRouter<AppState>,
) -> Endpoint {
    let doc = Doc {
        tag,
        method,
        path,
        access,
        summary,
        query,
        body,
        reply,
    };
    (doc, route)
}

/// The cascade API, mounted under `/api/v1/wx/cascade` and `/api/v1/cascade`.
#[rustfmt::skip]
pub(super) fn cascade() -> Vec<Endpoint> {
    use Access::{Admin, Any, Node};
    use Reply::{Body as Whole, Data, DataOr, Media, Refused};
    use Tag::{Allocations, Feeds, Logins, Monitoring, NodeApi, Nodes, Tasks};
    use replies as r;
    vec![
        ep(Nodes, "post", "/nodes", Admin, "Create a node record", NONE, json::<CreateNode>(), Data(r::created_node), post(admin::create_node)),
        ep(Nodes, "get", "/nodes", Admin, "List nodes", query::<admin::NodeFilter>(), Body::None, data::<Vec<NodeView>>(), get(admin::list_nodes)),
        ep(Nodes, "get", "/nodes/{id}", Admin, "One node", NONE, Body::None, data::<NodeView>(), get(admin::get_node)),
        ep(Nodes, "put", "/nodes/{id}", Admin, "Update a node (is_active false returns its work)", NONE, json::<UpdateNode>(), data::<()>(), put(admin::update_node)),
        ep(Nodes, "delete", "/nodes/{id}", Admin, "Delete a node; its work returns to pending", NONE, Body::None, data::<()>(), delete(admin::delete_node)),
        ep(Nodes, "post", "/nodes/{id}/credentials", Admin, "Issue AK/SK (the secret is shown once)", NONE, Body::None, Data(r::credentials), post(admin::credentials)),
        ep(Nodes, "post", "/nodes/{id}/test-connection", Admin, "Ping the node's registered callback", NONE, Body::None, Data(r::connection), post(admin::test_connection)),
        ep(Logins, "get", "/sources", Admin, "The WeChat sources: open or closed, usable logins, feeds served", NONE, Body::None, Data(r::sources), get(admin::list_sources)),
        ep(Logins, "get", "/logins", Admin, "Every login the nodes report (never their secrets)", query::<admin::LoginFilter>(), Body::None, data::<Vec<NodeLogin>>(), get(admin::list_logins)),
        ep(Logins, "post", "/nodes/{id}/logins", Admin, "Ask a node to run a QR login (202; a running one is returned)", NONE, json::<StartLogin>(), DataOr("202", r::login_flow), post(flows::request)),
        ep(Logins, "get", "/login-flows", Admin, "The newest QR login flows", query::<flows::FlowFilter>(), Body::None, Data(r::login_flows), get(flows::list)),
        ep(Logins, "get", "/login-flows/{id}", Admin, "One QR login flow, with its QR code while it waits", NONE, Body::None, Data(r::login_flow), get(flows::get)),
        ep(Logins, "delete", "/login-flows/{id}", Admin, "Cancel a QR login flow", NONE, Body::None, Data(r::login_flow), delete(flows::cancel)),
        ep(Logins, "post", "/login-flows/{id}/otp", Admin, "The code the phone shows (WeRead)", NONE, json::<LoginOtp>(), Data(r::login_flow), post(flows::otp)),
        ep(Feeds, "get", "/feeds", Any, "List feeds", query::<catalog::FeedQuery>(), Body::None, data::<Vec<FeedView>>(), get(catalog::list_feeds)),
        ep(Feeds, "post", "/feeds", Admin, "Create a WeChat or RSS feed", NONE, json::<CreateFeed>(), data::<FeedView>(), post(catalog::create_feed)),
        ep(Feeds, "post", "/feeds/search", Admin, "Find WeChat accounts by name through a node with a valid mp login (waits up to search_timeout)", query::<subscribe::SearchQuery>(), Body::None, Data(r::candidates), post(subscribe::search)),
        ep(Feeds, "post", "/feeds/resolve", Admin, "Subscribe to the account of a WeChat article link (201 new, 200 existing)", query::<subscribe::ResolveQuery>(), Body::None, DataOr("201", r::resolved), post(subscribe::resolve)),
        ep(Feeds, "get", "/feeds/{id}", Admin, "One feed", NONE, Body::None, data::<FeedView>(), get(catalog::get_feed)),
        ep(Feeds, "put", "/feeds/{id}", Admin, "Update a feed", NONE, json::<UpdateFeed>(), data::<FeedView>(), put(catalog::update_feed)),
        ep(Feeds, "post", "/feeds/{id}/check", Admin, "Check a feed now: its pending allocation goes first in claims, or one is dispatched at the top priority", NONE, Body::None, Data(r::checked), post(monitor::check_feed)),
        ep(Feeds, "delete", "/feeds/{id}", Admin, "Delete a feed (its articles stay)", NONE, Body::None, data::<()>(), delete(catalog::delete_feed)),
        ep(Feeds, "post", "/feeds/import-opml", Admin, "Import feeds from OPML (WeChat MP_WXS_ entries and RSS URLs)", NONE, Body::Text("text/x-opml"), data::<outputs::Imported>(), post(outputs::import_opml).layer(DefaultBodyLimit::disable())),
        ep(Feeds, "get", "/feeds/export-opml", Admin, "The feeds as OPML 2.0", NONE, Body::None, Media(&["text/x-opml"]), get(outputs::opml_admin)),
        ep(Tasks, "get", "/message-tasks", Any, "List message tasks (nodes: enabled ones, without secrets)", query::<catalog::TaskQuery>(), Body::None, data::<Vec<TaskView>>(), get(catalog::list_tasks)),
        ep(Tasks, "post", "/message-tasks", Admin, "Create a message task", NONE, json::<TaskBody>(), data::<TaskView>(), post(catalog::create_task)),
        ep(Tasks, "get", "/message-tasks/{id}", Admin, "One message task", NONE, Body::None, data::<TaskView>(), get(catalog::get_task)),
        ep(Tasks, "put", "/message-tasks/{id}", Admin, "Update a message task", NONE, json::<TaskBody>(), data::<TaskView>(), put(catalog::update_task)),
        ep(Tasks, "delete", "/message-tasks/{id}", Admin, "Delete a message task; its pending work fails", NONE, Body::None, data::<()>(), delete(catalog::delete_task)),
        ep(Tasks, "post", "/dispatch-task", Admin, "Dispatch one task now, or every enabled task", query::<monitor::DispatchQuery>(), Body::None, Data(r::dispatched), post(monitor::dispatch_task)),
        ep(Tasks, "get", "/scheduler", Admin, "Whether cron firings dispatch, and how many tasks have a cron", NONE, Body::None, Data(r::scheduler), get(monitor::scheduler)),
        ep(Tasks, "post", "/start-scheduler", Admin, "Let cron firings dispatch", NONE, Body::None, Data(r::scheduler), post(monitor::start_scheduler)),
        ep(Tasks, "post", "/stop-scheduler", Admin, "Hold cron firings", NONE, Body::None, Data(r::scheduler), post(monitor::stop_scheduler)),
        ep(Tasks, "post", "/reload-scheduler", Admin, "Recompute every task's next run", NONE, Body::None, Data(r::scheduler), post(monitor::reload_scheduler)),
        ep(Allocations, "get", "/allocations", Admin, "Allocations, newest first", query::<monitor::AllocationQuery>(), Body::None, data::<Paged<AllocationView>>(), get(monitor::allocations)),
        ep(Allocations, "post", "/allocations/retry", Admin, "Reopen failed allocations (by ids or filter, at most 1000 a call, oldest first); each keeps only its feeds with no open allocation", NONE, json::<AllocationAction>(), data::<BulkOutcome>(), post(monitor::retry_allocations)),
        ep(Allocations, "post", "/allocations/cancel", Admin, "Cancel pending, claimed or executing allocations (by ids or filter, at most 1000 a call, oldest first); their feeds are freed", NONE, json::<AllocationAction>(), data::<BulkOutcome>(), post(monitor::cancel_allocations)),
        ep(Allocations, "get", "/allocations/{id}", Admin, "One allocation with its feeds and the attempts that ended without completing", NONE, Body::None, data::<AllocationDetailView>(), get(monitor::allocation)),
        ep(Allocations, "get", "/pending-allocations", Admin, "Counters: pending, running, done today, nodes, capacity", NONE, Body::None, data::<Counters>(), get(monitor::pending_allocations)),
        ep(Monitoring, "get", "/feed-status", Admin, "Feed freshness, stalest first; q matches name or id, source wechat|rss, state enabled|paused", query::<monitor::FeedStatusQuery>(), Body::None, data::<Paged<FeedStatusView>>(), get(monitor::feed_status)),
        ep(Monitoring, "get", "/plan", Admin, "The freshness the fleet can keep, and the logins a p95 target needs", query::<monitor::PlanQuery>(), Body::None, Data(r::plan), get(monitor::plan)),
        ep(Monitoring, "get", "/stats", Admin, "The last N minutes (1–1440, default 60): throughput by minute and node, feed age, node health", query::<console::StatsQuery>(), Body::None, data::<Stats>(), get(console::stats)),
        ep(Monitoring, "get", "/audit", Admin, "What admins changed, newest first (never a request body)", query::<console::AuditQuery>(), Body::None, data::<Paged<AuditRecord>>(), get(console::audit)),
        ep(Monitoring, "get", "/sync-logs", Admin, "Sync logs, newest first", query::<admin::SyncLogQuery>(), Body::None, data::<Paged<SyncLogView>>(), get(admin::sync_logs)),
        ep(NodeApi, "post", "/claim-task", Node, "Claim allocations (limit, long-poll wait)", query::<ClaimQuery>(), Body::None, Whole(r::claimed), post(alloc::claim_task)),
        ep(NodeApi, "get", "/pending-tasks", Node, "What this node may claim", query::<ClaimQuery>(), Body::None, Whole(r::claimed), get(alloc::pending_tasks)),
        ep(NodeApi, "put", "/task-status", Node, "Report executing, completed or failed", NONE, json::<TaskStatus>(), Data(r::status_outcome), put(alloc::task_status)),
        ep(NodeApi, "post", "/upload-articles", Node, "Upload crawled articles (idempotent)", NONE, json::<UploadArticles>(), data::<UploadOutcome>(), post(alloc::upload_articles)),
        ep(NodeApi, "post", "/report-completion", Node, "Report an allocation's per-feed results", NONE, json::<ReportCompletion>(), Data(r::completed), post(alloc::report_completion)),
        ep(NodeApi, "post", "/release", Node, "Give held allocations back without spending an attempt", NONE, json::<Release>(), Data(r::released), post(alloc::release)),
        ep(NodeApi, "post", "/heartbeat", Node, "Liveness, load, session state; renews leases", NONE, json::<Heartbeat>(), Data(r::heartbeat), post(node::heartbeat)),
        ep(NodeApi, "post", "/report-result", Node, "WeRSS result report (logged)", NONE, json::<ReportResult>(), data::<()>(), post(node::report_result)),
        ep(NodeApi, "post", "/login-flows", Node, "A node starts a QR login itself (auto_login)", NONE, json::<StartLogin>(), Data(r::node_flow), post(flows::start)),
        ep(NodeApi, "post", "/login-flows/{id}/progress", Node, "A step of a QR login flow the node runs", NONE, json::<LoginFlowStep>(), Data(r::node_flow), post(flows::progress)),
        ep(NodeApi, "post", "/node-commands/{id}/answer", Node, "A node's answer to its own command (a search's candidates)", NONE, json::<CommandAnswer>(), Data(r::command_state), post(subscribe::answer)),
        ep(NodeApi, "post", "/notify", Access::Public, "Always 400: a parent receives no notifications (PROTOCOL §3.3)", NONE, json::<serde_json::Value>(), Refused("400"), post(node::notify)),
    ]
}

/// Everything outside the cascade prefixes, at absolute paths.
#[rustfmt::skip]
pub(super) fn top() -> Vec<Endpoint> {
    use Access::Public;
    use Reply::{Body as Whole, Data, Media};
    use Tag::{Auth, Outputs, Service};
    use replies as r;
    vec![
        ep(Auth, "post", "/api/v1/wx/auth/login", Public, "Admin login (form: username, password)", NONE, form::<LoginForm>(), Data(r::token), post(login::login)),
        ep(Auth, "post", "/api/v1/auth/login", Public, "Admin login (form: username, password)", NONE, form::<LoginForm>(), Data(r::token), post(login::login)),
        ep(Auth, "post", "/api/v1/wx/auth/token", Public, "Admin login, OAuth2 password form (the token without the envelope)", NONE, form::<LoginForm>(), Whole(r::token), post(login::token)),
        ep(Auth, "post", "/api/v1/auth/token", Public, "Admin login, OAuth2 password form (the token without the envelope)", NONE, form::<LoginForm>(), Whole(r::token), post(login::token)),
        ep(Outputs, "get", "/rss/{feed_id}", Public, "A feed as RSS 2.0", query::<outputs::OutputQuery>(), Body::None, Media(&["application/rss+xml"]), get(outputs::rss)),
        ep(Outputs, "get", "/feed/{file}", Public, "A feed ({id}.rss|xml|atom|json) or all feeds (all.{ext})", query::<outputs::OutputQuery>(), Body::None, Media(FEED_MEDIA), get(outputs::feed)),
        ep(Outputs, "get", "/feed/task/{file}", Public, "A message task's feeds ({task_id}.{ext})", query::<outputs::OutputQuery>(), Body::None, Media(FEED_MEDIA), get(outputs::task_feed)),
        ep(Outputs, "get", "/opml", Public, "The feeds as OPML 2.0", NONE, Body::None, Media(&["text/x-opml"]), get(outputs::opml)),
        ep(Service, "get", "/", Public, "The dashboard", NONE, Body::None, Media(&["text/html"]), get(dashboard::index)),
        ep(Service, "get", "/assets/{file}", Public, "The dashboard's style and script modules", NONE, Body::None, Media(&["text/css", "text/javascript"]), get(dashboard::asset)),
        ep(Service, "get", "/healthz", Public, "Liveness", NONE, Body::None, Data(r::health), get(super::healthz)),
        ep(Service, "get", "/readyz", Public, "Readiness (database accepts a write, not shutting down)", NONE, Body::None, Data(r::health), get(super::readyz)),
        ep(Service, "get", "/metrics", Public, "Prometheus metrics (OpenMetrics text)", NONE, Body::None, Media(&["application/openmetrics-text"]), get(super::metrics)),
        ep(Service, "get", "/api/openapi.json", Public, "This description", NONE, Body::None, Whole(r::openapi), get(super::openapi::serve)),
    ]
}
