//! Request extractors that answer bad input in the envelope: JSON bodies (400 naming the
//! field, 413 over the limit), lenient bodies for WeRSS's empty heartbeats, and queries.

use super::AppState;
use super::error::ApiError;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{header, request::Parts};
use serde::de::DeserializeOwned;

/// Default body limit (PROTOCOL §2.3).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body of `T`, limited to [`BODY_LIMIT`].
pub struct Json<T>(pub T);

/// A JSON body where empty, `null` or non-JSON means `T::default()` (heartbeat, claim-task).
pub struct Lenient<T>(pub T);

/// A JSON body of `T` limited to `cascade.max_upload_bytes` (article uploads).
pub struct UploadJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for UploadJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = usize::try_from(state.config.cascade.max_upload_bytes).unwrap_or(usize::MAX);
        let bytes = read_body(req, limit).await?;
        parse_json(&bytes).map(UploadJson)
    }
}

/// A UTF-8 text body up to [`TEXT_LIMIT`] (OPML imports); over → 413, not UTF-8 → 400.
pub struct TextBody(pub String);

/// Limit of [`TextBody`]: OPML imports may name thousands of feeds.
pub const TEXT_LIMIT: usize = 16 * 1024 * 1024;

impl FromRequest<AppState> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, TEXT_LIMIT).await?;
        String::from_utf8(bytes.to_vec())
            .map(TextBody)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))
    }
}

/// Query parameters of `T`; bad values → 400.
pub struct QueryParams<T>(pub T);

/// Reads the body up to `limit` bytes; more → 413.
pub async fn read_body(req: Request, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large());
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                ApiError::too_large()
            } else {
                ApiError::bad_request("could not read the request body")
            }
        })
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
