//! The child's only way to the parent. Judges success by PROTOCOL §2.2 (2xx and `code == 0`),
//! so it works against a stock WeRSS parent too, retries network errors with backoff, and uses
//! an extension only once the parent advertised it.

use crate::protocol::credentials::Secret;
use crate::protocol::wire::TaskPackage;
use serde_json::{Value, json};
use std::sync::RwLock;
use std::time::Duration;

/// Why a call to the parent failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The parent could not be reached.
    #[error("parent unreachable: {0}")]
    Network(String),
    /// The parent answered with an error (HTTP status, WeRSS code, message).
    #[error("parent refused ({status}, code {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Envelope code (the status for non-envelope bodies).
        code: i64,
        /// Message for people.
        message: String,
        /// `data.error` when the parent is ours.
        kind: Option<String>,
    },
}

impl ClientError {
    /// Whether the parent says the allocation is no longer ours (lease lost or unknown).
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Refused { kind: Some(k), .. } if k == "lease_lost" || k == "not_found" || k == "invalid_transition")
            || matches!(
                self,
                Self::Refused {
                    status: 404 | 409,
                    ..
                }
            )
    }
}

/// The longest `retry_after` a child believes from its parent.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What a claim brought back.
#[derive(Debug)]
pub struct Claimed {
    /// The packages handed out, in claim order.
    pub packages: Vec<TaskPackage>,
    /// When the parent says this node may not claim now: how long to wait before asking again.
    pub retry_after: Option<Duration>,
    /// The parent holds a command for this node (fetched by heartbeat).
    pub commands_pending: bool,
}

/// Bodies from this size on are sent gzip-compressed to a parent that accepts it.
const GZIP_FROM: usize = 4096;

/// A client bound to one parent and one node credential.
pub struct ParentClient {
    http: reqwest::Client,
    base: String,
    auth: Secret,
    features: RwLock<Vec<String>>,
    /// Sources the parent found closed (its last heartbeat answer).
    closed_sources: RwLock<Vec<String>>,
}

impl std::fmt::Debug for ParentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ParentClient {
    /// A client for `parent_api_url` (normalised) with AK/SK.
    pub fn new(
        http: reqwest::Client,
        parent_api_url: &str,
        api_key: &str,
        api_secret: &Secret,
    ) -> Self {
        Self {
            http,
            base: format!("{}/api/v1/wx/cascade", parent_api_url.trim_end_matches('/')),
            auth: Secret::new(format!("AK-SK {api_key}:{}", api_secret.expose())),
            features: RwLock::new(Vec::new()),
            closed_sources: RwLock::new(Vec::new()),
        }
    }

    /// Whether the parent advertised `feature`.
    pub fn has(&self, feature: &str) -> bool {
        self.features
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|f| f == feature)
    }

    /// The sources the parent last said are closed for everyone.
    pub fn closed_sources(&self) -> Vec<String> {
        self.closed_sources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let mut envelope = self.call_envelope(method, path, body, timeout).await?;
        Ok(envelope["data"].take())
    }

    /// Like `call`, with the whole success envelope (extensions such as `retry_after`).
    async fn call_envelope(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let mut delay = Duration::from_millis(200);
        for attempt in 0..3 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .header("Authorization", self.auth.expose())
                .timeout(timeout);
            if let Some(b) = body {
                req = self.with_body(req, b);
            }
            match req.send().await {
                Ok(resp) => return judge(resp).await,
                Err(e) if attempt < 2 => {
                    tracing::warn!(error = %crate::telemetry::untrusted_error(&e.without_url()), "parent call failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => return Err(ClientError::Network(e.without_url().to_string())),
            }
        }
        Err(ClientError::Network("retries exhausted".into()))
    }

    /// Sets a JSON body: gzip-compressed when the parent advertised `gzip` and the body is
    /// large enough to gain from it (article uploads), plain otherwise.
    fn with_body(&self, req: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
        let json = serde_json::to_vec(body).unwrap_or_default();
        if json.len() >= GZIP_FROM && self.has("gzip") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if std::io::Write::write_all(&mut gz, &json).is_ok()
                && let Ok(packed) = gz.finish()
            {
                return req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(reqwest::header::CONTENT_ENCODING, "gzip")
                    .body(packed);
            }
        }
        req.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json)
    }

    /// Heartbeat; stores the features the parent advertises (none from a stock parent).
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn heartbeat(&self, body: &Value) -> Result<Value, ClientError> {
        let data = self
            .call(
                reqwest::Method::POST,
                "/heartbeat",
                Some(body),
                Duration::from_secs(10),
            )
            .await?;
        let features: Vec<String> = data["features"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        *self.features.write().unwrap_or_else(|p| p.into_inner()) = features;
        let closed: Vec<String> = data["closed_sources"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        *self
            .closed_sources
            .write()
            .unwrap_or_else(|p| p.into_inner()) = closed;
        Ok(data)
    }

    /// Starts a QR login of `kind` on the parent's side (`auto_login`); returns the flow
    /// (`{id, kind, state, open, otp}`).
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn start_login_flow(&self, kind: &str) -> Result<Value, ClientError> {
        let body = serde_json::json!({ "kind": kind });
        self.call(
            reqwest::Method::POST,
            "/login-flows",
            Some(&body),
            Duration::from_secs(10),
        )
        .await
    }

    /// Reports one step of a QR login flow; returns the flow as the parent has it
    /// (`state`, `open`, and an `otp` code typed for it).
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn login_flow_step(&self, id: &str, step: &Value) -> Result<Value, ClientError> {
        let path = format!(
            "/login-flows/{}/progress",
            crate::logins::weread::percent_encode(id)
        );
        self.call(
            reqwest::Method::POST,
            &path,
            Some(step),
            Duration::from_secs(10),
        )
        .await
    }

    /// Posts the answer to command `id` (a search's candidates or its error).
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn answer_command(&self, id: &str, answer: &Value) -> Result<Value, ClientError> {
        let path = format!(
            "/node-commands/{}/answer",
            crate::logins::weread::percent_encode(id)
        );
        self.call(
            reqwest::Method::POST,
            &path,
            Some(answer),
            Duration::from_secs(10),
        )
        .await
    }

    /// Claims up to `limit` packages, long-polling `wait` seconds and naming the `kinds` it
    /// can take now, each only when the parent supports it.
    ///
    /// # Errors
    /// As [`ClientError`]; an unreadable package is a `Refused` with code 0.
    pub async fn claim(
        &self,
        limit: usize,
        wait: u64,
        kinds: &[&str],
    ) -> Result<Claimed, ClientError> {
        let mut query = Vec::new();
        if limit >= 2 && self.has("limit") {
            query.push(format!("limit={limit}"));
        }
        if wait > 0 && self.has("wait") {
            query.push(format!("wait={wait}"));
        }
        if self.has("kinds") {
            query.push(format!("kinds={}", kinds.join(",")));
        }
        let path = if query.is_empty() {
            "/claim-task".to_string()
        } else {
            format!("/claim-task?{}", query.join("&"))
        };
        let mut envelope = self
            .call_envelope(
                reqwest::Method::POST,
                &path,
                None,
                Duration::from_secs(wait + 15),
            )
            .await?;
        let retry_after = envelope["retry_after"]
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())));
        let items = match envelope["data"].take() {
            Value::Null => Vec::new(),
            Value::Array(items) => items,
            obj => vec![obj],
        };
        let packages = items
            .into_iter()
            .map(|v| {
                serde_json::from_value(v).map_err(|e| ClientError::Refused {
                    status: 200,
                    code: 0,
                    message: format!("unreadable package: {e}"),
                    kind: None,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Claimed {
            packages,
            retry_after,
            commands_pending: envelope["commands_pending"] == Value::Bool(true),
        })
    }

    /// `PUT task-status`.
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn task_status(
        &self,
        package: &TaskPackage,
        status: &str,
        extra: Value,
    ) -> Result<Value, ClientError> {
        let mut body = json!({"allocation_id": package.allocation_id, "status": status, "error_message": null, "timestamp": now()});
        self.add_token(&mut body, package);
        merge(&mut body, extra);
        self.call(
            reqwest::Method::PUT,
            "/task-status",
            Some(&body),
            Duration::from_secs(15),
        )
        .await
    }

    /// `POST upload-articles`, in requests of at most [`UPLOAD_BATCH`] articles and
    /// [`UPLOAD_BYTES`] bytes; a batch the parent finds too large (413) is halved, a busy
    /// parent (503) is asked again after a pause. Answers the summed reply (`received`,
    /// `new_count`, `updated_count`, `ids`, `rejected` with indexes into `articles`).
    ///
    /// # Errors
    /// As [`ClientError`]; the first batch that fails ends the upload.
    pub async fn upload(
        &self,
        package: &TaskPackage,
        articles: &[crate::fetch::Article],
    ) -> Result<Value, ClientError> {
        let sizes: Vec<usize> = articles
            .iter()
            .map(|a| serde_json::to_vec(a).map_or(0, |v| v.len()) + 1)
            .collect();
        let (mut max_items, mut max_bytes) = (UPLOAD_BATCH, UPLOAD_BYTES);
        let mut total = UploadTotal::default();
        let mut start = 0;
        while start < articles.len() {
            let end = start + batch_len(&sizes[start..], max_items, max_bytes);
            match self.upload_batch(package, &articles[start..end]).await {
                Ok(data) => {
                    total.add(&data, start);
                    start = end;
                }
                Err(ClientError::Refused { status: 413, .. }) if end - start > 1 => {
                    max_items = (end - start) / 2;
                    max_bytes = sizes[start..end].iter().sum::<usize>() / 2;
                    tracing::info!(
                        articles = max_items,
                        "upload too large for the parent; splitting"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(total.into_value())
    }

    async fn upload_batch(
        &self,
        package: &TaskPackage,
        articles: &[crate::fetch::Article],
    ) -> Result<Value, ClientError> {
        let mut body = json!({"allocation_id": package.allocation_id, "articles": articles, "timestamp": now()});
        self.add_token(&mut body, package);
        let mut delay = Duration::from_secs(1);
        loop {
            let sent = self
                .call(
                    reqwest::Method::POST,
                    "/upload-articles",
                    Some(&body),
                    Duration::from_secs(60),
                )
                .await;
            match sent {
                Err(ClientError::Refused { status: 503, .. })
                    if delay <= Duration::from_secs(8) =>
                {
                    tracing::info!(
                        seconds = delay.as_secs(),
                        "parent busy with uploads; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    /// `POST report-completion` with per-feed results.
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn complete(
        &self,
        package: &TaskPackage,
        results: Vec<Value>,
        article_count: usize,
    ) -> Result<Value, ClientError> {
        let mut body = json!({"allocation_id": package.allocation_id, "task_id": package.task_id, "results": results,
                              "article_count": article_count, "timestamp": now()});
        self.add_token(&mut body, package);
        self.call(
            reqwest::Method::POST,
            "/report-completion",
            Some(&body),
            Duration::from_secs(15),
        )
        .await
    }

    /// Gives work back: `release` when supported, else `task-status failed` (PROTOCOL §11).
    ///
    /// # Errors
    /// As [`ClientError`].
    pub async fn release(&self, packages: &[TaskPackage]) -> Result<(), ClientError> {
        if packages.is_empty() {
            return Ok(());
        }
        if self.has("release") {
            let items: Vec<Value> = packages
                .iter()
                .map(|p| json!({"allocation_id": p.allocation_id, "lease_token": p.lease_token}))
                .collect();
            let body = json!({"allocations": items, "reason": "shutdown"});
            self.call(
                reqwest::Method::POST,
                "/release",
                Some(&body),
                Duration::from_secs(10),
            )
            .await?;
            return Ok(());
        }
        for p in packages {
            self.task_status(
                p,
                "failed",
                json!({"error_message": "released: child shutting down"}),
            )
            .await?;
        }
        Ok(())
    }

    fn add_token(&self, body: &mut Value, package: &TaskPackage) {
        if let (Some(token), true) = (&package.lease_token, self.has("lease_token")) {
            body["lease_token"] = json!(token);
        }
    }
}

/// Articles per upload request.
pub const UPLOAD_BATCH: usize = 100;

/// JSON bytes of articles per upload request: half the parent's default `max_upload_bytes`.
pub const UPLOAD_BYTES: usize = 4 * 1024 * 1024;

/// How many of the articles of `sizes` (JSON bytes each) go into the next request: at least
/// one, at most `max_items` and `max_bytes`.
fn batch_len(sizes: &[usize], max_items: usize, max_bytes: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for size in sizes.iter().take(max_items.max(1)) {
        if n > 0 && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        n += 1;
    }
    n.max(1).min(sizes.len())
}

/// The replies of an upload's requests, summed.
#[derive(Default)]
struct UploadTotal {
    received: u64,
    new_count: u64,
    updated_count: u64,
    ids: Vec<Value>,
    rejected: Vec<Value>,
}

impl UploadTotal {
    /// Adds one request's reply; its items started at `offset` of the whole upload.
    fn add(&mut self, data: &Value, offset: usize) {
        let count = |k: &str| data[k].as_u64().unwrap_or(0);
        self.received += count("received");
        self.new_count += count("new_count");
        self.updated_count += count("updated_count");
        if let Some(ids) = data["ids"].as_array() {
            self.ids.extend(ids.iter().cloned());
        }
        for r in data["rejected"].as_array().into_iter().flatten() {
            let mut r = r.clone();
            if let Some(i) = r["index"].as_u64() {
                r["index"] = json!(i + offset as u64);
            }
            self.rejected.push(r);
        }
    }

    fn into_value(self) -> Value {
        json!({"received": self.received, "new_count": self.new_count,
               "updated_count": self.updated_count, "ids": self.ids, "rejected": self.rejected})
    }
}

fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
}

fn now() -> String {
    crate::protocol::time::to_wire(chrono::Utc::now().naive_utc())
}

/// PROTOCOL §2.2: success is 2xx with `code == 0`; anything else is a refusal of its status.
async fn judge(resp: reqwest::Response) -> Result<Value, ClientError> {
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| ClientError::Network(e.without_url().to_string()))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let code = body["code"].as_i64();
    if (200..300).contains(&status) && code == Some(0) {
        return Ok(body);
    }
    let message = body["message"]
        .as_str()
        .or_else(|| body["detail"].as_str())
        .map_or_else(|| text.chars().take(200).collect(), str::to_string);
    let code = code.filter(|c| *c != 0).unwrap_or(i64::from(status));
    // A stock parent answers errors with HTTP 200 and the status in `code`.
    let status = if (200..300).contains(&status) {
        u16::try_from(code)
            .ok()
            .filter(|c| (400..600).contains(c))
            .unwrap_or(500)
    } else {
        status
    };
    let kind = body["data"]["error"].as_str().map(str::to_string);
    Err(ClientError::Refused {
        status,
        code,
        message,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::batch_len;

    #[test]
    fn batches_respect_count_and_bytes_and_take_at_least_one() {
        assert_eq!(batch_len(&[10; 250], 100, 1_000_000), 100);
        assert_eq!(batch_len(&[10; 50], 100, 1_000_000), 50);
        assert_eq!(batch_len(&[400, 400, 400], 100, 1000), 2);
        assert_eq!(
            batch_len(&[5000, 10], 100, 1000),
            1,
            "an oversized article goes alone"
        );
        assert_eq!(batch_len(&[10; 3], 0, 0), 1);
    }
}
