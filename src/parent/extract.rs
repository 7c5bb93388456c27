//! Request extractors that answer bad input in the envelope: JSON bodies (400 naming the
//! field, 413 stating the limit), lenient bodies for WeRSS's empty heartbeats, forms, path
//! parameters and queries; and a layer turning any other rejection into the envelope.

use super::AppState;
use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{HeaderMap, header, request::Parts};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default body limit (PROTOCOL §2.3).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Limit of a [`Form`] body (login).
pub const FORM_LIMIT: usize = 64 * 1024;

/// Most articles one upload may carry.
pub const MAX_UPLOAD_ARTICLES: usize = 1000;

/// A JSON body of `T`, limited to [`BODY_LIMIT`].
pub struct Json<T>(pub T);

/// A JSON body where empty, `null` or non-JSON means `T::default()` (heartbeat, claim-task).
pub struct Lenient<T>(pub T);

/// A JSON body of `T` limited to `cascade.max_upload_bytes` (article uploads), read while
/// holding its share of the upload budget; the handler keeps the [`UploadPermit`] until done.
pub struct UploadJson<T>(pub T, pub UploadPermit);

/// A share of [`upload_budget`] held while an upload is read and stored.
pub struct UploadPermit {
    _held: OwnedSemaphorePermit,
}

/// The upload budget of a parent: KiB of upload bodies read or stored at once, twice
/// `max_upload_bytes` (one largest upload and more small ones).
pub fn upload_budget(max_upload_bytes: u64) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(budget_size(max_upload_bytes)))
}

impl<T: DeserializeOwned> FromRequest<AppState> for UploadJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let c = &state.config.cascade;
        let limit = usize::try_from(c.max_upload_bytes).unwrap_or(usize::MAX);
        let declared = content_length(req.headers());
        if declared.is_some_and(|n| n > limit) {
            return Err(over_limit(limit));
        }
        let budget = &state.upload_budget;
        let want = declared.unwrap_or(limit).div_ceil(1024).max(1);
        let want = u32::try_from(want.min(budget_size(c.max_upload_bytes))).unwrap_or(u32::MAX);
        // Wait a while for other uploads to finish, not until the request deadline.
        let wait = match c.request_timeout {
            0 => 10,
            t => (t / 2).clamp(1, 10),
        };
        let permit = tokio::time::timeout(
            Duration::from_secs(wait),
            budget.clone().acquire_many_owned(want),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::busy("other uploads are being stored; try again shortly", wait))?;
        let bytes = read_body(req, limit).await?;
        parse_json(&bytes).map(|v| UploadJson(v, UploadPermit { _held: permit }))
    }
}

/// Permits in a budget made by [`upload_budget`].
fn budget_size(max_upload_bytes: u64) -> usize {
    let kib = (max_upload_bytes.saturating_mul(2) / 1024).clamp(1, u64::from(u32::MAX));
    usize::try_from(kib).unwrap_or(usize::MAX)
}

/// A UTF-8 text body up to [`TEXT_LIMIT`] (OPML imports); over → 413, not UTF-8 → 400.
pub struct TextBody(pub String);

/// Limit of [`TextBody`]: an OPML import of 100,000 feeds (about 200 bytes an outline).
pub const TEXT_LIMIT: usize = 32 * 1024 * 1024;

/// Limit of a [`ListJson`] body: a task naming 100,000 feeds (about 30 bytes an id) with
/// room to spare.
pub const LIST_LIMIT: usize = 8 * 1024 * 1024;

/// A JSON body of `T` that may carry long lists (a task's feeds), limited to [`LIST_LIMIT`].
pub struct ListJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ListJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, LIST_LIMIT).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        parse_json(&bytes).map(ListJson)
    }
}

impl FromRequest<AppState> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, TEXT_LIMIT).await?;
        String::from_utf8(bytes.to_vec())
            .map(TextBody)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))
    }
}

/// A `application/x-www-form-urlencoded` body of `T`, up to [`FORM_LIMIT`].
pub struct Form<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(ApiError::bad_request(
                "expected a form body (application/x-www-form-urlencoded)",
            ));
        }
        let bytes = read_body(req, FORM_LIMIT).await?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|e| ApiError::bad_request(format!("invalid form body: {e}")))
    }
}

/// Query parameters of `T`; bad values → 400.
pub struct QueryParams<T>(pub T);

/// Path parameters of `T`; not UTF-8 or not of `T` → 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| {
                let text = e.body_text();
                let text = text.trim_start_matches("Invalid URL: ");
                ApiError::bad_request(format!("invalid path: {text}"))
            })
    }
}

/// The `Content-Length` a request declares.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
}

/// 413 stating `limit`.
fn over_limit(limit: usize) -> ApiError {
    let readable = if limit >= 1024 * 1024 && limit.is_multiple_of(1024 * 1024) {
        format!("{} MiB, ", limit / (1024 * 1024))
    } else if limit >= 1024 && limit.is_multiple_of(1024) {
        format!("{} KiB, ", limit / 1024)
    } else {
        String::new()
    };
    ApiError::too_large(format!(
        "request body too large: the limit is {readable}{limit} bytes"
    ))
}

/// Reads the body up to `limit` bytes; a declared or actual length over it → 413 at once,
/// without reading the rest (the server drains it while closing the connection).
pub async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = content_length(req.headers());
    if declared.is_some_and(|n| n > limit) {
        return Err(over_limit(limit));
    }
    let mut body = req.into_body();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::bad_request("could not read the request body"))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(over_limit(limit));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.into())
}

/// Turns a rejection made outside our extractors (an error status without a JSON body) into
/// the envelope, keeping its status and text.
pub async fn envelope_rejections(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_string()
        });
    let mut answer = ApiError::from_status(status, text).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::CONNECTION] {
        if let Some(v) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    answer
}

/// Parses JSON into `T`, naming the offending field on error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if value.is_ok() && de.end().is_err() {
        return Err(ApiError::bad_request(
            "invalid JSON body: trailing characters",
        ));
    }
    value.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        let text = text
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_string();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("invalid JSON body: {text}"));
        }
        if let Some(name) = text
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let field = if path == "." {
                name.to_string()
            } else {
                format!("{path}.{name}")
            };
            return ApiError::bad_field(&field, format!("missing field '{field}'"));
        }
        if path == "." {
            return ApiError::bad_request(format!("request body must be a JSON object ({text})"));
        }
        ApiError::bad_field(&path, format!("invalid field '{path}': {text}"))
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, BODY_LIMIT).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
        parse_json(&bytes).map(Json)
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for Lenient<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, BODY_LIMIT).await?;
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(_)) => parse_json(&bytes).map(Lenient),
            _ => Ok(Lenient(T::default())),
        }
    }
}

impl<T: DeserializeOwned> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| {
                let text = e.body_text();
                let text = text.trim_start_matches("Failed to deserialize query string: ");
                ApiError::bad_request(format!("invalid query: {text}"))
            })
    }
}
