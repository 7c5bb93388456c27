//! The router: the cascade API under both prefixes (PROTOCOL §1.1), login, health, the
//! envelope for unknown routes and wrong methods, request ids, tracing and panic safety.

mod admin;
mod alloc;
mod catalog;
mod console;
mod dashboard;
mod flows;
mod login;
mod monitor;
mod node;
mod openapi;
mod outputs;
mod replies;
mod subscribe;
mod table;

use super::AppState;
use super::error::{ApiError, REQUEST_ID};
use super::extract::{BODY_LIMIT, envelope_rejections};
use crate::telemetry::untrusted;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Routes of the cascade API, mounted under each prefix; what admins change is audited.
fn cascade(state: &AppState) -> Router<AppState> {
    table::cascade()
        .into_iter()
        .fold(Router::new(), |r, (doc, route)| r.route(doc.path, route))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            super::audit::record,
        ))
}

/// Login, outputs, dashboard, health, metrics and the API description.
fn top_routes() -> Router<AppState> {
    table::top()
        .into_iter()
        .fold(Router::new(), |r, (doc, route)| r.route(doc.path, route))
}

/// The whole application.
pub(super) fn router(state: AppState) -> Router {
    let api = Router::new()
        .nest("/api/v1/wx/cascade", cascade(&state))
        .nest("/api/v1/cascade", cascade(&state))
        .merge(top_routes().layer(DefaultBodyLimit::max(BODY_LIMIT)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Bodies sent gzip-compressed are read through their decompression, so every body limit
    // counts the bytes after it (a small compressed bomb still meets its 413); a coding we do
    // not read gets a 415 in the envelope.
    api.layer(RequestDecompressionLayer::new())
        .layer(middleware::map_response(envelope_rejections))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::server::request_deadline,
        ))
        .layer(
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
                tracing::info_span!("request", method = %untrusted(req.method().as_str()), route, request.id = %untrusted(id), node.id = tracing::field::Empty)
            }),
        )
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal(&"handler panicked").into_response()
        }))
        .layer(middleware::from_fn(request_context))
        // Answers are compressed when the client asks (`Accept-Encoding: gzip`) and they are
        // over 1 KiB: below that gzip saves a few hundred bytes and costs a compressor's setup
        // (a sixth of the request threads' time in claim cycles, most answers being small).
        .layer(CompressionLayer::new().compress_when(
            SizeAbove::new(1024)
                .and(NotForContentType::GRPC)
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::SSE),
        ))
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

/// How long `/readyz` waits for its write probe.
const READY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

async fn readyz(State(state): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::unavailable());
    }
    // Ready means able to write: a tiny upsert, bounded in time (a full disk, a read-only
    // or failing database, or a writer stuck for seconds all answer 503).
    let probe = tokio::time::timeout(
        READY_PROBE_TIMEOUT,
        state.store.probe_write(state.clock.now()),
    )
    .await
    .unwrap_or(Err(crate::store::Error::Database(
        sqlx::Error::PoolTimedOut,
    )));
    if let Err(e) = probe {
        tracing::warn!(error = %e, "database cannot write; not ready");
        return Err(e
            .unavailable()
            .map_or_else(ApiError::unavailable, ApiError::database_unavailable));
    }
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
