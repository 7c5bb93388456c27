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
    let detail = parts
        .uri
        .query()
        .filter(|q| !q.is_empty())
        .map(str::to_string);
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
}
