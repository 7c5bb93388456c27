//! What placement knows of a node when it dispatches: online, cooling, parked, what it can
//! read, and how many feeds it may still be given (static, or measured under
//! `node_capacity: auto`).

use crate::dispatch::{NodeSnapshot, Source};
use crate::store::NodeLoad;
use serde_json::Value;

/// What placement knows of a node at `now`.
pub(super) fn node_snapshot(
    load: &NodeLoad,
    now: chrono::NaiveDateTime,
    c: &crate::config::CascadeConfig,
    mp_open: bool,
    weread_open: bool,
) -> NodeSnapshot {
    let n = &load.node;
    let quota = n
        .sync_config
        .get("feed_quota")
        .and_then(Value::as_object)
        .map(|q| {
            q.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    NodeSnapshot {
        id: n.id.clone(),
        online: n.is_online(now, c.offline_after),
        cooling: n.cooldown_until.is_some_and(|t| t > now),
        // A node that reports logins counts for WeChat feeds only with a usable login
        // of a kind some open source reads with; one that never reported them keeps
        // the session rule alone.
        session_parked: matches!(n.session_state.as_str(), "expired" | "none")
            || load.usable_mp_logins.is_some_and(|mp| {
                let weread = load.usable_weread_logins.unwrap_or(0);
                (if mp_open { mp } else { 0 }) + (if weread_open { weread } else { 0 }) == 0
            }),
        fetchers: n.fetcher_kinds().iter().map(|k| Source::parse(k)).collect(),
        free: capacity_of(n, now, c) - n.held_feeds - load.assigned_pending,
        quota,
    }
}

/// How many feeds placement gives `n`: its static capacity, or under `node_capacity: auto`
/// what it finishes in `capacity_horizon` at its measured rate, within the static one.
pub fn capacity_of(
    n: &crate::store::Node,
    now: chrono::NaiveDateTime,
    c: &crate::config::CascadeConfig,
) -> i64 {
    let ceiling = n.capacity(c.default_max_capacity);
    // Checked when the state was built: a bad value never gets here.
    if !crate::dispatch::capacity::is_auto(&c.node_capacity).unwrap_or(false) {
        return ceiling;
    }
    let rate = n.rate.per_second(now.and_utc().timestamp());
    let horizon = i64::try_from(c.capacity_horizon.clamp(1, 86_400)).unwrap_or(300);
    crate::dispatch::capacity::auto_capacity(rate, n.held_feeds, ceiling, horizon)
}
