//! QR login flows (issue 12 §3(b)): the parent's record of a login a node runs for it. The
//! [`Store`](super::Store) methods that read and write flows are in `ops::flows`.
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
