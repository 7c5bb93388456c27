//! QR login flows (issue 12 §3(b)): the parent's record of a login a node runs for it. The
//! SQL is the same on both backends; [`login_flow_methods!`] writes the methods once and each
//! backend instantiates them with its pools and its datetime binding.
//!
//! A flow is open from `requested` until `confirmed`, `failed` or `cancelled`; a partial
//! unique index keeps one open flow per node and kind, so a second request joins the first.
//! The QR text and an OTP code live only while the flow is open.

use super::rows::RowExt;
use super::{Error, Result};
use chrono::NaiveDateTime;

/// Flow states, in the order a flow normally passes them.
pub const FLOW_STATES: &[&str] = &[
    "requested",
    "pending_scan",
    "scanned",
    "need_otp",
    "confirmed",
    "failed",
    "cancelled",
];

/// Whether a flow in `state` has ended.
pub fn flow_state_is_final(state: &str) -> bool {
    matches!(state, "confirmed" | "failed" | "cancelled")
}

/// A login flow as the parent keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFlow {
    /// Its id (a UUID).
    pub id: String,
    /// The node running it.
    pub node_id: String,
    /// The node's name.
    pub node_name: String,
    /// `mp` or `weread`.
    pub kind: String,
    /// `admin` (asked through the API) or `auto` (the node's login expired).
    pub origin: String,
    /// One of [`FLOW_STATES`].
    pub state: String,
    /// Whether the flow is still running.
    pub open: bool,
    /// What the QR code encodes, while one waits to be scanned.
    pub qr_text: Option<String>,
    /// 1 for the first code, then 2, 3… (0 before any).
    pub qr_number: i64,
    /// When the node stops polling the current code.
    pub qr_expires_at: Option<NaiveDateTime>,
    /// An OTP code an admin typed, not yet fetched by the node.
    pub otp_code: Option<String>,
    /// The login the flow saved on the node.
    pub login_id: Option<String>,
    /// Its account name.
    pub account_name: Option<String>,
    /// Its session end.
    pub login_expires_at: Option<NaiveDateTime>,
    /// Why it failed.
    pub error: Option<String>,
    /// Created (UTC).
    pub created_at: NaiveDateTime,
    /// Last change (UTC).
    pub updated_at: NaiveDateTime,
}

/// A step a node reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowProgress {
    /// The new state (one of [`FLOW_STATES`], not `requested`).
    pub state: String,
    /// A new QR code's text.
    pub qr_text: Option<String>,
    /// Its number.
    pub qr_number: Option<i64>,
    /// When the node stops polling it.
    pub qr_expires_at: Option<NaiveDateTime>,
    /// The saved login's id (on `confirmed`).
    pub login_id: Option<String>,
    /// Its account name.
    pub account_name: Option<String>,
    /// Its session end.
    pub login_expires_at: Option<NaiveDateTime>,
    /// Why it failed (on `failed`).
    pub error: Option<String>,
}

/// Reads a flow row (joined with the node's name).
pub(crate) fn flow_from_row(r: &impl RowExt) -> Result<LoginFlow> {
    Ok(LoginFlow {
        id: r.text("id")?,
        node_id: r.text("node_id")?,
        node_name: r.opt_text("node_name")?.unwrap_or_default(),
        kind: r.text("kind")?,
        origin: r.text("origin")?,
        state: r.text("state")?,
        open: r.flag("is_open")?,
        qr_text: r.opt_text("qr_text")?,
        qr_number: r.int("qr_number")?,
        qr_expires_at: r.time("qr_expires_at")?,
        otp_code: r.opt_text("otp_code")?,
        login_id: r.opt_text("login_id")?,
        account_name: r.opt_text("account_name")?,
        login_expires_at: r.time("login_expires_at")?,
        error: r.opt_text("error")?,
        created_at: r.time("created_at")?.unwrap_or_default(),
        updated_at: r.time("updated_at")?.unwrap_or_default(),
    })
}

/// Flows with their node's name.
pub(crate) const SELECT_FLOW: &str = "SELECT f.*, n.name AS node_name FROM cascade_login_flows f
    LEFT JOIN we_cascade_nodes n ON n.id = f.node_id";

/// The error of a flow that is not there (or belongs to another node).
pub(crate) fn flow_not_found() -> Error {
    Error::NotFound("login flow")
}

/// An identity binding for backends that bind `NaiveDateTime` as is.
pub(crate) fn same(t: NaiveDateTime) -> NaiveDateTime {
    t
}

/// The login-flow methods of a backend: `$write` and `$read` name its pools, `$t` turns a
/// `NaiveDateTime` into what it binds.
macro_rules! login_flow_methods {
    ($write:ident, $read:ident, $t:path) => {
        /// Opens a flow of `kind` on `node_id`, or returns the open one (`false`): flows
        /// without a step since `stale_before` end as timed out first, and closed flows
        /// older than `prune_before` are removed.
        pub(crate) async fn create_login_flow(
            &self,
            new: crate::store::NewLoginFlow,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<(crate::store::LoginFlow, bool)> {
            use crate::store::flows::{SELECT_FLOW, flow_from_row};
            sqlx::query(
                "UPDATE cascade_login_flows
                    SET is_open = FALSE, state = 'failed', qr_text = NULL, otp_code = NULL,
                        error = 'timed out: the node reported no step of this login',
                        updated_at = $3
                  WHERE node_id = $1 AND kind = $2 AND is_open AND updated_at < $4",
            )
            .bind(&new.node_id)
            .bind(&new.kind)
            .bind($t(now))
            .bind($t(new.stale_before))
            .execute(&self.$write)
            .await?;
            sqlx::query(
                "DELETE FROM cascade_login_flows
                  WHERE node_id = $1 AND NOT is_open AND updated_at < $2",
            )
            .bind(&new.node_id)
            .bind($t(new.prune_before))
            .execute(&self.$write)
            .await?;
            sqlx::query(
                "INSERT INTO cascade_login_flows
                        (id, node_id, kind, origin, state, is_open, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'requested', TRUE, $5, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&new.id)
            .bind(&new.node_id)
            .bind(&new.kind)
            .bind(&new.origin)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            let sql = format!("{SELECT_FLOW} WHERE f.node_id = $1 AND f.kind = $2 AND f.is_open");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&new.node_id)
                .bind(&new.kind)
                .fetch_optional(&self.$write)
                .await?
                .ok_or_else(|| {
                    crate::store::Error::Conflict("the login flow ended meanwhile".into())
                })?;
            let flow = flow_from_row(&row)?;
            let created = flow.id == new.id;
            Ok((flow, created))
        }

        /// One flow.
        pub(crate) async fn get_login_flow(
            &self,
            id: &str,
        ) -> crate::store::Result<crate::store::LoginFlow> {
            use crate::store::flows::{SELECT_FLOW, flow_from_row, flow_not_found};
            let sql = format!("{SELECT_FLOW} WHERE f.id = $1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(&self.$write)
                .await?
                .ok_or_else(flow_not_found)?;
            flow_from_row(&row)
        }

        /// The newest flows (of one node when given).
        pub(crate) async fn list_login_flows(
            &self,
            node_id: Option<String>,
            limit: i64,
        ) -> crate::store::Result<Vec<crate::store::LoginFlow>> {
            use crate::store::flows::{SELECT_FLOW, flow_from_row};
            let sql = format!(
                "{SELECT_FLOW} WHERE $1 IS NULL OR f.node_id = $1
                  ORDER BY f.created_at DESC, f.id LIMIT $2"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(node_id)
                .bind(limit)
                .fetch_all(&self.$read)
                .await?;
            rows.iter().map(flow_from_row).collect()
        }

        /// The flows a node was asked to start and has not reported on yet.
        pub(crate) async fn login_commands(
            &self,
            node_id: &str,
        ) -> crate::store::Result<Vec<crate::store::LoginFlow>> {
            use crate::store::flows::{SELECT_FLOW, flow_from_row};
            let sql = format!(
                "{SELECT_FLOW} WHERE f.node_id = $1 AND f.is_open AND f.state = 'requested'
                  ORDER BY f.created_at"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(node_id)
                .fetch_all(&self.$read)
                .await?;
            rows.iter().map(flow_from_row).collect()
        }

        /// Applies a node's step to its own open flow and returns the flow as it is now,
        /// with any OTP code an admin typed (handed out once). A flow that already ended
        /// is returned unchanged (the node stops); another node's flow is not found.
        pub(crate) async fn progress_login_flow(
            &self,
            node_id: &str,
            id: &str,
            step: crate::store::FlowProgress,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<crate::store::LoginFlow> {
            use crate::store::flows::{flow_not_found, flow_state_is_final};
            let current = self.get_login_flow(id).await?;
            if current.node_id != node_id {
                return Err(flow_not_found());
            }
            if !current.open {
                return Ok(current);
            }
            let open = !flow_state_is_final(&step.state);
            sqlx::query(
                "UPDATE cascade_login_flows
                    SET state = $3, is_open = $4,
                        qr_text = CASE WHEN $3 = 'pending_scan' THEN COALESCE($5, qr_text) END,
                        qr_number = COALESCE($6, qr_number),
                        qr_expires_at = COALESCE($7, qr_expires_at),
                        otp_code = CASE WHEN $4 THEN otp_code END,
                        login_id = COALESCE($8, login_id),
                        account_name = COALESCE($9, account_name),
                        login_expires_at = COALESCE($10, login_expires_at),
                        error = COALESCE($11, error),
                        updated_at = $12
                  WHERE id = $1 AND node_id = $2 AND is_open",
            )
            .bind(id)
            .bind(node_id)
            .bind(&step.state)
            .bind(open)
            .bind(&step.qr_text)
            .bind(step.qr_number)
            .bind(step.qr_expires_at.map($t))
            .bind(&step.login_id)
            .bind(&step.account_name)
            .bind(step.login_expires_at.map($t))
            .bind(&step.error)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            let flow = self.get_login_flow(id).await?;
            if flow.otp_code.is_some() {
                // Only the code handed out: one typed meanwhile waits for the next step.
                sqlx::query("UPDATE cascade_login_flows SET otp_code = NULL WHERE id = $1 AND otp_code = $2")
                    .bind(id)
                    .bind(&flow.otp_code)
                    .execute(&self.$write)
                    .await?;
            }
            Ok(flow)
        }

        /// Ends an open flow as `cancelled` (the node stops at its next step).
        pub(crate) async fn cancel_login_flow(
            &self,
            id: &str,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<crate::store::LoginFlow> {
            sqlx::query(
                "UPDATE cascade_login_flows
                    SET state = 'cancelled', is_open = FALSE, qr_text = NULL, otp_code = NULL,
                        error = 'cancelled by an admin', updated_at = $2
                  WHERE id = $1 AND is_open",
            )
            .bind(id)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            self.get_login_flow(id).await
        }

        /// Keeps the OTP code an admin typed for a flow that asks for one.
        pub(crate) async fn set_login_flow_otp(
            &self,
            id: &str,
            code: &str,
            now: chrono::NaiveDateTime,
        ) -> crate::store::Result<crate::store::LoginFlow> {
            let done = sqlx::query(
                "UPDATE cascade_login_flows SET otp_code = $2, updated_at = $3
                  WHERE id = $1 AND is_open AND state = 'need_otp'",
            )
            .bind(id)
            .bind(code)
            .bind($t(now))
            .execute(&self.$write)
            .await?;
            let flow = self.get_login_flow(id).await?;
            if done.rows_affected() == 0 {
                return Err(crate::store::Error::Conflict(format!(
                    "the login flow is {}, not waiting for a code",
                    flow.state
                )));
            }
            Ok(flow)
        }
    };
}

pub(crate) use login_flow_methods;

/// What opening a flow needs.
#[derive(Debug, Clone)]
pub struct NewLoginFlow {
    /// A new id (UUID).
    pub id: String,
    /// The node.
    pub node_id: String,
    /// `mp` or `weread`.
    pub kind: String,
    /// `admin` or `auto`.
    pub origin: String,
    /// Open flows without a step since then end as timed out.
    pub stale_before: NaiveDateTime,
    /// Closed flows older than this are removed.
    pub prune_before: NaiveDateTime,
}
