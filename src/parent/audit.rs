//! The audit log (issue 16): every successful mutating admin request under the cascade
//! prefixes leaves one row, written after the handler answered 2xx. The row holds the admin,
//! the method and route template, the first path parameter and the query string: never a
//! request body, so no secret, password, OTP or SK can reach it. Node requests leave none.

use super::AppState;
use crate::store::AuditEntry;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::{Arc, OnceLock};

tokio::task_local! {
    /// The admin a request authenticated as, filled by [`note_admin`].
    static ADMIN: Arc<OnceLock<String>>;
}

/// The prefixes the cascade API is mounted under; an action names its route without them.
const PREFIXES: [&str; 2] = ["/api/v1/wx/cascade", "/api/v1/cascade"];

/// Notes that the current request authenticated as the admin `username` (outside an audited
/// request, nothing happens).
pub(crate) fn note_admin(username: &str) {
    let _ = ADMIN.try_with(|slot| slot.set(username.to_string()));
}

/// Middleware on the cascade routes: runs the request and, when it was a `POST`, `PUT` or
/// `DELETE` an admin made and it answered 2xx, records it. A failed write is logged and the
/// answer stands.
pub(crate) async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !matches!(*req.method(), Method::POST | Method::PUT | Method::DELETE) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let target = RawPathParams::from_request_parts(&mut parts, &state)
        .await
        .ok()
        .and_then(|p| p.iter().next().map(|(_, v)| v.to_string()));
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| without_prefix(m.as_str()).to_string());
    let action = format!("{} {}", parts.method, route.unwrap_or_default());
    let detail = parts.uri.query().and_then(safe_query);
    let slot = Arc::new(OnceLock::new());
    let response = ADMIN
        .scope(slot.clone(), next.run(Request::from_parts(parts, body)))
        .await;
    let Some(actor) = slot.get().filter(|_| response.status().is_success()) else {
        return response;
    };
    let entry = AuditEntry {
        actor: actor.clone(),
        action,
        target,
        detail,
    };
    write(&state, entry).await;
    response
}

/// Records `entry` now; a failure is logged at warn, never returned.
pub(crate) async fn write(state: &AppState, entry: AuditEntry) {
    if let Err(e) = state.store.record_audit(entry, state.clock.now()).await {
        tracing::warn!(error = %e, "could not write the audit log");
    }
}

/// A successful login of `username`.
pub(crate) async fn login(state: &AppState, username: &str) {
    let entry = AuditEntry {
        actor: username.to_string(),
        action: "login".into(),
        target: None,
        detail: None,
    };
    write(state, entry).await;
}

/// Query parameters the admin routes read whose values are kept as sent.
const KEPT: &[&str] = &[
    "task_id",
    "node_id",
    "feed_id",
    "status",
    "reason",
    "schedule_run_id",
    "q",
    "name",
    "limit",
    "offset",
    "kind",
    "source",
    "state",
    "target",
    "days",
    "per_login_day",
    "calls_per_check",
    "minutes",
    "operation",
    "actor",
    "action",
    "node_type",
];

/// What of a query string the audit log keeps: the parameters in [`KEPT`] as sent, and of a
/// `url` (an article link to resolve) only its scheme, host, path and `__biz`: a link
/// copied from WeChat may carry the reader's `key`, `pass_ticket` or `uin`. Anything else is
/// dropped, so no token a client adds to a query reaches the log.
fn safe_query(query: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter_map(|(k, v)| {
            if k == "url" {
                return Some((k, link_without_secrets(&v)));
            }
            KEPT.contains(&k.as_str()).then_some((k, v))
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    serde_urlencoded::to_string(kept).ok()
}

/// A link reduced to scheme, host, path and its `__biz` (which names the account).
fn link_without_secrets(link: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(link) else {
        return "(not a URL)".into();
    };
    let biz: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k == "__biz")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    if !biz.is_empty() {
        url.query_pairs_mut().extend_pairs(biz);
    }
    url.to_string()
}

/// A matched route's template without the cascade prefix it was reached under.
fn without_prefix(route: &str) -> &str {
    PREFIXES
        .iter()
        .find_map(|p| route.strip_prefix(p))
        .unwrap_or(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_names_the_route_under_either_prefix() {
        assert_eq!(
            without_prefix("/api/v1/wx/cascade/nodes/{id}/credentials"),
            "/nodes/{id}/credentials"
        );
        assert_eq!(without_prefix("/api/v1/cascade/feeds/{id}"), "/feeds/{id}");
        assert_eq!(without_prefix("/elsewhere"), "/elsewhere");
    }

    #[test]
    fn the_log_keeps_known_parameters_and_no_secret_of_a_link() {
        assert_eq!(
            safe_query("task_id=t1&token=abc&limit=5").as_deref(),
            Some("task_id=t1&limit=5")
        );
        let link = "https://mp.weixin.qq.com/s?__biz=MzA1&mid=2&key=SECRET&pass_ticket=P&uin=U#rd";
        let kept = safe_query(&format!("url={}", urlencode(link))).expect("kept");
        assert_eq!(
            kept,
            "url=https%3A%2F%2Fmp.weixin.qq.com%2Fs%3F__biz%3DMzA1"
        );
        assert_eq!(safe_query("password=x"), None);
        assert_eq!(safe_query(""), None);
    }

    fn urlencode(s: &str) -> String {
        serde_urlencoded::to_string([("x", s)]).expect("encoded")[2..].to_string()
    }
}
