//! Bringing adopted WeRSS allocations under our state machine (PROTOCOL §12), the same on
//! both backends: each backend reads the open allocations and feed pointers inside its
//! migration, [`plan`] decides, and the backend writes the result in the same transaction.
//!
//! WeRSS rows lack what our columns carry, so, left alone, they would never move:
//! * `pending` rows: `available_at` is set (no later than now), and a WeRSS `node_id` (WeRSS
//!   writes the chosen node there at dispatch) becomes `assigned_node_id` when it names a
//!   child we know, so that node claims it first and others after `steal_after`; `node_id`
//!   is cleared (null iff pending).
//! * `claimed`/`executing` rows: WeRSS has no leases and its parent was stopped to adopt the
//!   database, so nothing says whether the holder still works, and WeRSS's naive timestamps
//!   may be local time (hours off UTC), which makes `claimed_at + lease` meaningless. Their
//!   lease ends at adoption: the first reaper pass returns them to `pending` (one attempt
//!   spent; `attempt` is at least 1, they were claimed once). A holder that still reports
//!   later gets 409 and changes nothing; its articles, if it uploaded them, are kept.
//! * `feed_count` is recounted from `feed_ids` (WeRSS puts several feeds in one row).
//! * Invariant 5: WeRSS re-dispatched feeds that were still open, so a feed may sit in
//!   several open rows. Each feed gets one owner, deterministically: the row its
//!   `open_allocation_id` already names, else a held row before a pending one (`executing`
//!   first), then the earliest dispatch, then the smallest id. Other rows drop the feeds
//!   they do not own; a row left with none is closed `failed` (nothing was lost: its feeds
//!   run in their owners). `open_allocation_id` then names each feed's owner.
//! * An open row whose `feed_ids` is not a JSON list can never be packaged: it is closed
//!   `failed`.
//!
//! On a database that already keeps our invariants nothing changes, so running it at every
//! migration is safe.

use super::Result;
use super::rows::RowExt;
use chrono::NaiveDateTime;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

/// An open allocation as stored.
#[derive(Debug, Clone)]
pub(crate) struct OpenRow {
    pub id: String,
    pub status: String,
    pub node_id: Option<String>,
    pub assigned_node_id: Option<String>,
    /// `None`: the text is not a JSON list (the row keeps its feeds as they are).
    pub feed_ids: Option<Vec<String>>,
    pub feed_count: Option<i64>,
    pub attempt: i64,
    pub dispatched_at: Option<NaiveDateTime>,
    pub available_at: Option<NaiveDateTime>,
    pub lease_expires_at: Option<NaiveDateTime>,
}

/// The columns [`open_row`] reads.
pub(crate) const OPEN_ROWS: &str = "SELECT id, status, node_id, assigned_node_id, feed_ids,
    feed_count, attempt, dispatched_at, available_at, lease_expires_at
  FROM we_cascade_task_allocations WHERE status IN ('pending', 'claimed', 'executing')";

/// Reads one row of [`OPEN_ROWS`].
pub(crate) fn open_row(r: &impl RowExt) -> Result<OpenRow> {
    Ok(OpenRow {
        id: r.text("id")?,
        status: r.text("status")?,
        node_id: r.opt_text("node_id")?,
        assigned_node_id: r.opt_text("assigned_node_id")?,
        feed_ids: r.string_list("feed_ids")?,
        feed_count: r.opt_int("feed_count")?,
        attempt: r.int("attempt")?,
        dispatched_at: r.time("dispatched_at")?,
        available_at: r.time("available_at")?,
        lease_expires_at: r.time("lease_expires_at")?,
    })
}

/// The new state of one changed row (every field written).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowFix {
    pub id: String,
    pub status: String,
    pub node_id: Option<String>,
    pub assigned_node_id: Option<String>,
    /// New `feed_ids` text, `None` to keep the stored text.
    pub feed_ids: Option<String>,
    pub feed_count: i64,
    pub attempt: i64,
    pub available_at: Option<NaiveDateTime>,
    pub lease_expires_at: Option<NaiveDateTime>,
    /// Set when the row is closed as a duplicate: its `error_message`.
    pub closed: Option<String>,
}

/// What the migration writes.
#[derive(Debug, Default)]
pub(crate) struct Backfill {
    /// Changed allocation rows.
    pub rows: Vec<RowFix>,
    /// `(feed id, allocation id)`: feeds whose `open_allocation_id` must name their owner.
    pub pointers: Vec<(String, String)>,
}

/// Decides the backfill. `pointers` maps feeds to their stored `open_allocation_id` (only
/// non-null ones); `children` are the ids of child nodes; `now` is the adoption time.
pub(crate) fn plan(
    open: &[OpenRow],
    pointers: &HashMap<String, String>,
    children: &HashSet<String>,
    now: NaiveDateTime,
) -> Backfill {
    let owners = owners(open, pointers);
    let mut out = Backfill::default();
    for row in open {
        let mut fix = RowFix {
            id: row.id.clone(),
            status: row.status.clone(),
            node_id: row.node_id.clone(),
            assigned_node_id: row.assigned_node_id.clone(),
            feed_ids: None,
            feed_count: row.feed_count.unwrap_or(1),
            attempt: row.attempt,
            available_at: row.available_at,
            lease_expires_at: row.lease_expires_at,
            closed: None,
        };
        if row.status == "pending" {
            if let Some(werss_node) = fix.node_id.take() {
                fix.assigned_node_id = fix
                    .assigned_node_id
                    .or_else(|| children.contains(&werss_node).then_some(werss_node));
            }
            fix.available_at = fix
                .available_at
                .or_else(|| Some(row.dispatched_at.map_or(now, |d| d.min(now))));
        } else {
            fix.lease_expires_at = fix.lease_expires_at.or(Some(now));
            fix.attempt = fix.attempt.max(1);
        }
        let Some(feeds) = &row.feed_ids else {
            // Not a JSON list: no claim could package it; it can only be closed.
            fix.status = "failed".into();
            fix.assigned_node_id = None;
            fix.lease_expires_at = None;
            fix.closed = Some("feed_ids is not a JSON list (adopted from WeRSS)".into());
            out.rows.push(fix);
            continue;
        };
        let unique = unique(feeds);
        let kept: Vec<&str> = unique
            .iter()
            .copied()
            .filter(|f| owners.get(f) == Some(&row.id.as_str()))
            .collect();
        if kept.is_empty() && !unique.is_empty() {
            let owner = owners.get(unique[0]).copied().unwrap_or_default();
            fix.status = "failed".into();
            fix.assigned_node_id = None;
            fix.lease_expires_at = None;
            fix.closed = Some(format!(
                "duplicate: its feeds are open in allocation {owner} (adopted from WeRSS)"
            ));
        } else {
            if kept.len() < feeds.len() {
                fix.feed_ids = Some(serde_json::json!(kept).to_string());
            }
            fix.feed_count = i64::try_from(kept.len().max(1)).unwrap_or(i64::MAX);
        }
        let unchanged = fix.status == row.status
            && fix.node_id == row.node_id
            && fix.assigned_node_id == row.assigned_node_id
            && fix.feed_ids.is_none()
            && Some(fix.feed_count) == row.feed_count
            && fix.attempt == row.attempt
            && fix.available_at == row.available_at
            && fix.lease_expires_at == row.lease_expires_at;
        if !unchanged {
            out.rows.push(fix);
        }
    }
    let mut pointed: Vec<(String, String)> = owners
        .into_iter()
        .filter(|(feed, owner)| pointers.get(*feed).map(String::as_str) != Some(*owner))
        .map(|(feed, owner)| (feed.to_string(), owner.to_string()))
        .collect();
    pointed.sort();
    out.pointers = pointed;
    out
}

/// Each feed's owner among the open rows naming it.
fn owners<'a>(
    open: &'a [OpenRow],
    pointers: &HashMap<String, String>,
) -> HashMap<&'a str, &'a str> {
    let mut owners: HashMap<&str, &OpenRow> = HashMap::new();
    for row in open {
        for feed in unique(row.feed_ids.as_deref().unwrap_or_default()) {
            let better = match owners.get(feed) {
                None => true,
                Some(current) => rank(row, feed, pointers) < rank(current, feed, pointers),
            };
            if better {
                owners.insert(feed, row);
            }
        }
    }
    owners
        .into_iter()
        .map(|(feed, row)| (feed, row.id.as_str()))
        .collect()
}

/// Smaller wins: already pointed to, held (executing, then claimed) before pending, earliest
/// dispatch (unknown last), smallest id.
fn rank<'a>(
    row: &'a OpenRow,
    feed: &str,
    pointers: &HashMap<String, String>,
) -> (bool, u8, Reverse<bool>, Option<NaiveDateTime>, &'a str) {
    let held = match row.status.as_str() {
        "executing" => 0,
        "claimed" => 1,
        _ => 2,
    };
    (
        pointers.get(feed) != Some(&row.id),
        held,
        Reverse(row.dispatched_at.is_some()),
        row.dispatched_at,
        row.id.as_str(),
    )
}

/// The feed ids in order, each once.
fn unique(feeds: &[String]) -> Vec<&str> {
    let mut seen = HashSet::new();
    feeds
        .iter()
        .map(String::as_str)
        .filter(|f| seen.insert(*f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        crate::protocol::time::parse(s).expect("time")
    }

    fn row(id: &str, status: &str, feeds: &[&str], dispatched: &str) -> OpenRow {
        OpenRow {
            id: id.into(),
            status: status.into(),
            node_id: None,
            assigned_node_id: None,
            feed_ids: Some(feeds.iter().map(|f| (*f).to_string()).collect()),
            feed_count: None,
            attempt: 0,
            dispatched_at: Some(t(dispatched)),
            available_at: None,
            lease_expires_at: None,
        }
    }

    #[test]
    fn duplicates_get_one_owner_whatever_the_row_order() {
        let now = t("2026-01-01 00:00:00");
        let mut rows = vec![
            row("b", "pending", &["F1", "F2"], "2025-01-01 00:00:00"),
            row("a", "pending", &["F1"], "2025-01-02 00:00:00"),
            row("c", "claimed", &["F2"], "2025-01-03 00:00:00"),
            row("d", "pending", &["F3"], "2025-01-01 00:00:00"),
            row("e", "pending", &["F3"], "2025-01-01 00:00:00"),
        ];
        let first = plan(&rows, &HashMap::new(), &HashSet::new(), now);
        rows.reverse();
        let second = plan(&rows, &HashMap::new(), &HashSet::new(), now);
        for out in [&first, &second] {
            let owners: HashMap<&str, &str> = out
                .pointers
                .iter()
                .map(|(f, a)| (f.as_str(), a.as_str()))
                .collect();
            // F1: earliest dispatch; F2: the held row; F3: same time, smaller id.
            assert_eq!(
                owners,
                HashMap::from([("F1", "b"), ("F2", "c"), ("F3", "d")])
            );
            let by_id: HashMap<&str, &RowFix> =
                out.rows.iter().map(|r| (r.id.as_str(), r)).collect();
            assert_eq!(by_id["a"].status, "failed");
            assert_eq!(by_id["e"].status, "failed");
            assert_eq!(by_id["b"].feed_ids.as_deref(), Some("[\"F1\"]"));
            assert_eq!(by_id["b"].feed_count, 1);
            assert_eq!(by_id["c"].lease_expires_at, Some(now));
            assert_eq!(by_id["c"].attempt, 1);
        }
    }

    #[test]
    fn an_unreadable_feed_list_is_closed() {
        let mut broken = row("x", "pending", &[], "2025-01-01 00:00:00");
        broken.feed_ids = None;
        let out = plan(
            &[broken],
            &HashMap::new(),
            &HashSet::new(),
            t("2026-01-01 00:00:00"),
        );
        assert_eq!(out.rows[0].status, "failed");
        assert!(out.rows[0].closed.is_some());
    }

    #[test]
    fn rows_that_keep_our_invariants_are_left_alone() {
        let now = t("2026-01-01 00:00:00");
        let mut pending = row("p", "pending", &["F1"], "2025-12-31 00:00:00");
        pending.available_at = pending.dispatched_at;
        pending.feed_count = Some(1);
        let mut held = row("h", "executing", &["F2", "F3"], "2025-12-31 00:00:00");
        held.node_id = Some("n".into());
        held.lease_expires_at = Some(t("2026-01-01 00:05:00"));
        held.attempt = 2;
        held.feed_count = Some(2);
        let pointers = HashMap::from([
            ("F1".to_string(), "p".to_string()),
            ("F2".to_string(), "h".to_string()),
            ("F3".to_string(), "h".to_string()),
        ]);
        let out = plan(&[pending, held], &pointers, &HashSet::new(), now);
        assert!(out.rows.is_empty(), "{:?}", out.rows);
        assert!(out.pointers.is_empty());
    }

    #[test]
    fn a_werss_node_id_on_a_pending_row_becomes_its_assignment() {
        let now = t("2026-01-01 00:00:00");
        let mut known = row("k", "pending", &["F1"], "2027-01-01 00:00:00");
        known.node_id = Some("child".into());
        let mut gone = row("g", "pending", &["F2"], "2025-01-01 00:00:00");
        gone.node_id = Some("deleted".into());
        let out = plan(
            &[known, gone],
            &HashMap::new(),
            &HashSet::from(["child".to_string()]),
            now,
        );
        let k = &out.rows[0];
        assert_eq!(
            (k.node_id.as_deref(), k.assigned_node_id.as_deref()),
            (None, Some("child"))
        );
        assert_eq!(
            k.available_at,
            Some(now),
            "a local-time dispatch in the future waits no longer"
        );
        let g = &out.rows[1];
        assert_eq!(
            (g.node_id.as_deref(), g.assigned_node_id.as_deref()),
            (None, None)
        );
        assert_eq!(g.available_at, Some(t("2025-01-01 00:00:00")));
    }
}
