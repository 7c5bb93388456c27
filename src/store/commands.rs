//! Node commands other than QR logins (issue 13 §6): today `search`, an MP `searchbiz` a node
//! runs for an admin. A command is `pending` until a heartbeat hands it to its node, `sent`
//! until the node answers (`answered`) or its time is up (`expired`). Any parent of a shared
//! database delivers it and takes its answer: the admin request that waits for it reads the
//! row. The [`Store`](super::Store) methods are in `ops::commands`.

use super::rows::RowExt;
use super::{Error, Result};
use chrono::NaiveDateTime;

/// A command as the parent keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    /// Its id (a UUID).
    pub id: String,
    /// The node that runs it.
    pub node_id: String,
    /// What it asks (`search`).
    pub command: String,
    /// Its arguments (JSON text).
    pub payload: String,
    /// `pending`, `sent`, `answered` or `expired`.
    pub state: String,
    /// The node's answer (JSON text), once answered.
    pub answer: Option<String>,
    /// Why the node could not do it.
    pub error: Option<String>,
    /// Created (UTC).
    pub created_at: NaiveDateTime,
    /// After this the command is neither delivered nor answered.
    pub expires_at: NaiveDateTime,
}

/// What recording a command needs.
#[derive(Debug, Clone)]
pub struct NewNodeCommand {
    /// A new id (UUID).
    pub id: String,
    /// The node.
    pub node_id: String,
    /// `search`.
    pub command: String,
    /// Its arguments (JSON text).
    pub payload: String,
    /// When it is no longer wanted.
    pub expires_at: NaiveDateTime,
    /// Commands that ended before this are removed.
    pub prune_before: NaiveDateTime,
}

/// Reads a command row.
pub(crate) fn command_from_row(r: &impl RowExt) -> Result<NodeCommand> {
    Ok(NodeCommand {
        id: r.text("id")?,
        node_id: r.text("node_id")?,
        command: r.text("command")?,
        payload: r.text("payload")?,
        state: r.text("state")?,
        answer: r.opt_text("answer")?,
        error: r.opt_text("error")?,
        created_at: r.time("created_at")?.unwrap_or_default(),
        expires_at: r.time("expires_at")?.unwrap_or_default(),
    })
}

/// The error of a command that is not there (or belongs to another node).
pub(crate) fn command_not_found() -> Error {
    Error::NotFound("command")
}
