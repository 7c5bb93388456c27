//! The dashboard (DESIGN §8): embedded files, no CDN, so it works offline. It logs in like any
//! admin client and reads the admin API. Its script is a set of ES modules, one per view.

use crate::parent::error::ApiError;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../../assets/dashboard/index.html");

/// The files under `/assets/`: name, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../../assets/dashboard/dashboard.css"),
    ),
    (
        "dashboard.js",
        JS,
        include_str!("../../../assets/dashboard/dashboard.js"),
    ),
    (
        "core.js",
        JS,
        include_str!("../../../assets/dashboard/core.js"),
    ),
    (
        "overview.js",
        JS,
        include_str!("../../../assets/dashboard/overview.js"),
    ),
    (
        "nodes.js",
        JS,
        include_str!("../../../assets/dashboard/nodes.js"),
    ),
    (
        "feeds.js",
        JS,
        include_str!("../../../assets/dashboard/feeds.js"),
    ),
    (
        "tasks.js",
        JS,
        include_str!("../../../assets/dashboard/tasks.js"),
    ),
    (
        "allocations.js",
        JS,
        include_str!("../../../assets/dashboard/allocations.js"),
    ),
    (
        "activity.js",
        JS,
        include_str!("../../../assets/dashboard/activity.js"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// Pages may not be framed, and load scripts and styles only from this parent.
const POLICY: &str = "default-src 'self'; frame-ancestors 'none'";

pub(super) async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        INDEX,
    )
}

/// One of the dashboard's files; 404 in the envelope for any other name.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, media, body)) => (
            [
                (header::CONTENT_TYPE, *media),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::not_found("no such asset").into_response(),
    }
}
