//! The router: the cascade API under both prefixes (PROTOCOL §1.1), login, health, the
//! envelope for unknown routes and wrong methods, request ids, tracing and panic safety.

mod admin;
mod alloc;
mod catalog;
mod dashboard;
mod login;
mod monitor;
mod node;
mod outputs;

use super::AppState;
use super::error::{ApiError, REQUEST_ID};
use super::extract::BODY_LIMIT;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Routes of the cascade API, mounted under each prefix.
fn cascade() -> Router<AppState> {
    Router::new()
        .route("/nodes", post(admin::create_node).get(admin::list_nodes))
        .route(
            "/nodes/{id}",
            get(admin::get_node)
                .put(admin::update_node)
                .delete(admin::delete_node),
        )
        .route("/nodes/{id}/credentials", post(admin::credentials))
        .route("/nodes/{id}/test-connection", post(admin::test_connection))
        .route("/sync-logs", get(admin::sync_logs))
        .route(
            "/feeds",
            get(catalog::list_feeds).post(catalog::create_feed),
        )
        .route(
            "/feeds/{id}",
            get(catalog::get_feed)
                .put(catalog::update_feed)
                .delete(catalog::delete_feed),
        )
        .route(
            "/message-tasks",
            get(catalog::list_tasks).post(catalog::create_task),
        )
        .route(
            "/message-tasks/{id}",
            get(catalog::get_task)
                .put(catalog::update_task)
                .delete(catalog::delete_task),
        )
        .route("/dispatch-task", post(monitor::dispatch_task))
        .route("/allocations", get(monitor::allocations))
        .route("/pending-allocations", get(monitor::pending_allocations))
        .route("/feed-status", get(monitor::feed_status))
        .route("/start-scheduler", post(monitor::start_scheduler))
        .route("/stop-scheduler", post(monitor::stop_scheduler))
        .route("/reload-scheduler", post(monitor::reload_scheduler))
        .route("/claim-task", post(alloc::claim_task))
        .route("/pending-tasks", get(alloc::pending_tasks))
        .route("/task-status", put(alloc::task_status))
        .route("/upload-articles", post(alloc::upload_articles))
        .route("/report-completion", post(alloc::report_completion))
        .route("/release", post(alloc::release))
        .route("/heartbeat", post(node::heartbeat))
        .route("/report-result", post(node::report_result))
        .route("/notify", post(node::notify))
        .route(
            "/feeds/import-opml",
            post(outputs::import_opml).layer(DefaultBodyLimit::max(OPML_LIMIT)),
        )
        .route("/feeds/export-opml", get(outputs::opml))
}

/// OPML imports may name thousands of feeds.
const OPML_LIMIT: usize = 16 * 1024 * 1024;

/// Reader-facing outputs at WeRSS's paths.
fn output_routes() -> Router<AppState> {
    Router::new()
        .route("/rss/{feed_id}", get(outputs::rss))
        .route("/feed/{file}", get(outputs::feed))
        .route("/feed/task/{file}", get(outputs::task_feed))
        .route("/opml", get(outputs::opml))
        .route("/", get(dashboard::index))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/dashboard.css", get(dashboard::style))
}

/// Admin login; form bodies share the JSON body limit.
fn login_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/wx/auth/login", post(login::login))
        .route("/api/v1/auth/login", post(login::login))
        .route("/api/v1/wx/auth/token", post(login::token))
        .route("/api/v1/auth/token", post(login::token))
}

/// The whole application.
pub(super) fn router(state: AppState) -> Router {
    let api = Router::new()
        .nest("/api/v1/wx/cascade", cascade())
        .nest("/api/v1/cascade", cascade())
        .merge(login_routes().layer(DefaultBodyLimit::max(BODY_LIMIT)))
        .merge(output_routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    api.layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("(unmatched)", MatchedPath::as_str);
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %req.method(), route, request.id = id, node.id = tracing::field::Empty)
            }),
        )
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal(&"handler panicked").into_response()
        }))
        .layer(middleware::from_fn(request_context))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Makes the request id available to error responses.
async fn request_context(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    REQUEST_ID.scope(id, next.run(req)).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "code": 0, "message": "success", "data": { "status": "up" } }))
}

async fn readyz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable());
    }
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "database not reachable");
        ApiError::unavailable()
    })?;
    Ok(axum::Json(
        serde_json::json!({ "code": 0, "message": "success", "data": { "status": "ready" } }),
    ))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let body = state.metrics.render(&state).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
