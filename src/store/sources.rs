//! WeChat sources (issue 13 §2–§3): each source's state (`open`, or `closed` when it refused
//! logins of several nodes with no success in between), its evidence, its probe time, and
//! the source that last read each feed. The [`Store`](super::Store) methods are in
//! `ops::sources`.

use super::Result;
use super::rows::RowExt;
use chrono::NaiveDateTime;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the sources' records, once read, answer without the database. Every change made
/// through this parent empties the cache at once; another parent's change is seen within this.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(1);

/// The sources' records as last read: every claim and heartbeat asks for them, and they
/// change only when a source closes, reopens or is probed.
#[derive(Default)]
pub(crate) struct SourceCache {
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Bumped by each change.
    generation: u64,
    /// The rows read in this generation, with when.
    rows: Option<(Instant, Vec<SourceRow>)>,
}

impl SourceCache {
    /// The cached rows while fresh; otherwise the generation to give [`SourceCache::put`].
    pub(crate) fn get(&self) -> std::result::Result<Vec<SourceRow>, u64> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &state.rows {
            Some((at, rows)) if at.elapsed() < CACHE_TTL => Ok(rows.clone()),
            _ => Err(state.generation),
        }
    }

    /// Keeps rows read in `generation`, unless a change came since (they may predate it).
    pub(crate) fn put(&self, generation: u64, rows: &[SourceRow]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.generation == generation {
            state.rows = Some((Instant::now(), rows.to_vec()));
        }
    }

    /// Forgets the rows: a source's record changed (or may have).
    pub(crate) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.generation += 1;
        state.rows = None;
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> SourceRow {
        SourceRow {
            source: "mp_list".into(),
            state: state.into(),
            since: None,
            last_ok_at: None,
            last_error: None,
            refused_by: Vec::new(),
            probe_at: None,
        }
    }

    #[test]
    fn rows_read_before_a_change_are_not_kept() {
        let cache = SourceCache::default();
        let Err(before) = cache.get() else {
            panic!("an empty cache answers nothing")
        };
        // A change commits and empties the cache while the rows were being read.
        cache.clear();
        cache.put(before, &[row("open")]);
        let Err(now) = cache.get() else {
            panic!("rows older than the change were kept")
        };
        assert_ne!(now, before);
        // Rows read after the change are kept and answer until the next change.
        cache.put(now, &[row("closed")]);
        assert_eq!(cache.get(), Ok(vec![row("closed")]));
        cache.clear();
        assert!(cache.get().is_err());
    }
}
