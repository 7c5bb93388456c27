//! The dashboard (DESIGN §8): three embedded files, no CDN, so it works offline. It logs in
//! like any admin client and reads the admin API.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../../assets/dashboard/dashboard.js");
const STYLE: &str = include_str!("../../../assets/dashboard/dashboard.css");

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

pub(super) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

pub(super) async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}
