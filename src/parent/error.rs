//! `ApiError`: the only error response. It owns the HTTP status, the WeRSS `code`, a message
//! for people and `data.error`; internal causes are logged here and never shown.

use crate::store;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

tokio::task_local! {
    /// The current request's id, for the 500 message and logs.
    pub(crate) static REQUEST_ID: String;
}

/// `Result` of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// An error answered in the WeRSS envelope with a real HTTP status (boxed: errors are rare
/// and `Result`s stay small).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: i64,
    kind: &'static str,
    message: String,
    details: Map<String, Value>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            status,
            code: i64::from(status.as_u16()),
            kind,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }))
    }

    /// 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 naming the field at fault.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message).with("field", field)
    }

    /// 400 `invalid field '<field>'`.
    pub fn invalid_field(field: &str) -> Self {
        Self::bad_field(field, format!("invalid field '{field}'"))
    }

    /// 401 `unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Could not validate credentials",
        )
    }

    /// 401 / 40101 `login_failed`.
    pub fn login_failed(remaining: u32) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "login_failed",
            format!("用户名或密码错误，您还有{remaining}次机会"),
        );
        e.0.code = 40101;
        e
    }

    /// 429 `locked`, with `Retry-After`.
    pub fn locked(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "locked",
            "用户名或密码错误，您的帐号已锁定，请稍后再试",
        );
        e.0.retry_after = Some(retry_after.max(1));
        e
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413 `too_large`; the message states the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 503 `unavailable`.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "service unavailable",
        )
    }

    /// 503 `busy`: come back after `retry_after` seconds (`Retry-After`).
    pub fn busy(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
        e.0.retry_after = Some(retry_after.max(1));
        e
    }

    /// 503 `timeout`: the request was not answered within its deadline.
    pub fn timeout(seconds: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request was not answered within {seconds} s"),
        )
    }

    /// 504 `timeout`: a node the parent asked did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
    }

    /// 502 `bad_gateway`: the node or upstream the parent asked failed.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "bad_gateway", message)
    }

    /// 503 `unavailable` with a message saying what is missing.
    pub fn unavailable_because(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// An error of `status` with `message`, for rejections made outside our extractors.
    pub fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match status.as_u16() {
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "timeout",
            409 => "conflict",
            413 => "too_large",
            429 => "locked",
            503 => "unavailable",
            500..=599 => "internal",
            _ => "bad_request",
        };
        Self::new(status, kind, message)
    }

    /// 503 `unavailable` for a database that cannot do the work now, with `data.reason`
    /// (`database_busy`, `disk_full`, `read_only`, `io_error`, `database_unreachable`).
    pub fn database_unavailable(why: store::Unavailable) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            why.message(),
        )
        .with("reason", why.as_str())
    }

    /// 500 `internal`: logs `cause`, answers a generic message with the request id.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        tracing::error!(error = %crate::telemetry::untrusted_error(cause), request.id = %crate::telemetry::untrusted(&request_id), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error (request {request_id})"),
        )
        .with("request_id", &request_id)
    }

    /// Adds a key to `data`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.0
            .details
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        // Busy, full, read-only, failing or unreachable: the database's condition, not the
        // request's; the message names it, never the SQL.
        if let Some(why) = e.unavailable() {
            tracing::warn!(error = %e, reason = why.as_str(), "database unavailable");
            return Self::database_unavailable(why);
        }
        match e {
            store::Error::NotFound(what) => Self::not_found(match what {
                "node" => "节点不存在",
                "feed" => "公众号不存在",
                "message task" => "任务不存在",
                "allocation" => "分配记录不存在",
                other => other,
            }),
            store::Error::Conflict(message) => Self::conflict(message),
            // Deactivated between authentication and the write: what authentication answers.
            store::Error::NodeInactive => Self::unauthorized(),
            store::Error::LeaseLost => Self::new(
                StatusCode::CONFLICT,
                "lease_lost",
                "allocation is not held by this node",
            ),
            store::Error::InvalidTransition(status) => Self::new(
                StatusCode::CONFLICT,
                "invalid_transition",
                format!("allocation is {status}"),
            )
            .with("status", &status),
            store::Error::Invalid(message) => Self::bad_request(message),
            // PostgreSQL refuses a value for its column: too long for a WeRSS VARCHAR, out of
            // the integer's range, or not valid text. The client sent it.
            store::Error::Database(sqlx::Error::Database(db))
                if matches!(
                    db.code().as_deref(),
                    Some("22001" | "22003" | "22021" | "22P05")
                ) =>
            {
                tracing::info!(error = %db, "value refused by the database");
                Self::bad_request("a value is too long or out of range for its column")
            }
            other => Self::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Inner {
            status,
            code,
            kind,
            message,
            details,
            retry_after,
        } = *self.0;
        let mut data = details;
        data.insert("error".into(), Value::String(kind.into()));
        let body = json!({ "code": code, "message": message, "data": data });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
