//! The operator's console (issue 16): the stats of a recent window and the audit log.

use crate::parent::AppState;
use crate::parent::auth::AdminAuth;
use crate::parent::error::{ApiError, ApiResult};
use crate::parent::extract::QueryParams;
use crate::parent::ops;
use crate::parent::views::Paged;
use crate::protocol::Envelope;
use crate::store::{AuditFilter, AuditRecord, Stats};
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;

type Reply<T> = ApiResult<axum::Json<Envelope<T>>>;

/// The longest window `stats` answers for: a day of minutes.
const MAX_MINUTES: i64 = 1440;

/// `GET {P}/stats`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct StatsQuery {
    /// The window, 1–1440 minutes back from now (default 60).
    minutes: Option<i64>,
}

pub(super) async fn stats(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Reply<Stats> {
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(ApiError::bad_field(
            "minutes",
            format!("minutes must be between 1 and {MAX_MINUTES}"),
        ));
    }
    let stats = state.store.stats(state.clock.now(), minutes).await?;
    Ok(axum::Json(Envelope::ok("success", stats)))
}

/// `GET {P}/audit`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct AuditQuery {
    /// Only this admin's actions.
    actor: Option<String>,
    /// Only this action (e.g. `POST /nodes`).
    action: Option<String>,
    /// Page size, 1–200 (default 50).
    limit: Option<i64>,
    /// Items to skip (default 0).
    offset: Option<i64>,
}

pub(super) async fn audit(
    State(state): State<AppState>,
    _: AdminAuth,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Reply<Paged<AuditRecord>> {
    let page = ops::page(q.limit, q.offset)?;
    let filter = AuditFilter {
        actor: q.actor.filter(|a| !a.is_empty()),
        action: q.action.filter(|a| !a.is_empty()),
    };
    let (list, total) = state.store.list_audit(filter, page).await?;
    Ok(axum::Json(Envelope::ok(
        "success",
        Paged::new(list, total, page),
    )))
}
