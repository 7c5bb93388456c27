//! WeChat sources (issue 13 §2–§3): each source's state (`open`, or `closed` when it refused
//! logins of several nodes with no success in between), its evidence, its probe time, and
//! the source that last read each feed. The [`Store`](super::Store) methods are in
//! `ops::sources`.

use super::Result;
use super::rows::RowExt;
use chrono::NaiveDateTime;

/// A source's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// `weread_list`, `weread_cover`, `mp_list`.
    pub source: String,
    /// `open` or `closed`.
    pub state: String,
    /// Since when it is in this state (unknown for a source never closed).
    pub since: Option<NaiveDateTime>,
    /// Its last success.
    pub last_ok_at: Option<NaiveDateTime>,
    /// Its last refusal's text.
    pub last_error: Option<String>,
    /// Nodes whose logins it refused since its last success.
    pub refused_by: Vec<String>,
    /// When a closed source may be tried again.
    pub probe_at: Option<NaiveDateTime>,
}

/// Reads a source row.
pub(crate) fn source_from_row(r: &impl RowExt) -> Result<SourceRow> {
    Ok(SourceRow {
        source: r.text("source")?,
        state: r.text("state")?,
        since: r.time("since")?,
        last_ok_at: r.time("last_ok_at")?,
        last_error: r.opt_text("last_error")?,
        refused_by: Vec::new(),
        probe_at: r.time("probe_at")?,
    })
}
