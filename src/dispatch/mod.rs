//! Pure allocation rules: where dispatched feeds go ([`plan`]) and how many a node takes
//! ([`capacity`]), what a failure does ([`retry`]), when a feed is checked next ([`schedule`]), in which order and at which pace
//! due feeds go ([`freshness`]) and what a budget buys ([`planner`]). No I/O, no clock, no
//! randomness of its own: callers pass all of that in.

pub mod capacity;
pub mod freshness;
pub mod planner;
pub mod retry;
pub mod schedule;

use std::collections::HashMap;

/// Fetcher kind of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// WeChat MP list API; needs a valid, non-cooling session.
    Wechat,
    /// RSS / Atom / JSON Feed over HTTP.
    Rss,
}

impl Source {
    /// The wire name (`wechat`, `rss`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Wechat => "wechat",
            Source::Rss => "rss",
        }
    }

    /// Parses the wire name; unknown names read as WeChat (WeRSS has no other kind).
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("rss") {
            Source::Rss
        } else {
            Source::Wechat
        }
    }
}

/// A feed to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRef {
    /// Feed id.
    pub id: String,
    /// Its fetcher kind.
    pub source: Source,
}

/// What placement knows of a node at dispatch time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Node id.
    pub id: String,
    /// Active, child, heard from within `offline_after`.
    pub online: bool,
    /// In WeChat cooldown.
    pub cooling: bool,
    /// WeChat session `expired` or `none`.
    pub session_parked: bool,
    /// Fetcher kinds it reported (or `wechat` by default).
    pub fetchers: Vec<Source>,
    /// Capacity minus held feeds minus feeds already assigned to it and not yet claimed.
    pub free: i64,
    /// `sync_config.feed_quota`: feed id → quota.
    pub quota: HashMap<String, i64>,
}

impl NodeSnapshot {
    /// Whether this node may take a feed of `source` at all.
    pub fn can_fetch(&self, source: Source) -> bool {
        self.online
            && self.fetchers.contains(&source)
            && (source != Source::Wechat || !(self.cooling || self.session_parked))
    }
}

/// One allocation to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAllocation {
    /// Feeds of one source kind.
    pub feed_ids: Vec<String>,
    /// Their kind.
    pub source: Source,
    /// Assigned node, or `None` for any node to claim.
    pub node_id: Option<String>,
}

/// Places `feeds` on `nodes` (DESIGN §5): batches of `feeds_per_allocation` feeds of one kind;
/// each batch to an eligible node with room, highest positive quota first, else most free
/// capacity, ties by node id; unassigned when none fits. Decrements `free` in `nodes`, so
/// successive calls (several tasks in one dispatch) share capacity.
pub fn plan(
    feeds: &[FeedRef],
    nodes: &mut [NodeSnapshot],
    feeds_per_allocation: usize,
) -> Vec<PlannedAllocation> {
    let per = feeds_per_allocation.max(1);
    let mut out = Vec::with_capacity(feeds.len().div_ceil(per));
    for source in [Source::Wechat, Source::Rss] {
        let of_kind: Vec<&FeedRef> = feeds.iter().filter(|f| f.source == source).collect();
        for batch in of_kind.chunks(per) {
            let size = i64::try_from(batch.len()).unwrap_or(i64::MAX);
            let chosen = choose(batch, nodes, source, size);
            if let Some(i) = chosen {
                nodes[i].free -= size;
            }
            out.push(PlannedAllocation {
                feed_ids: batch.iter().map(|f| f.id.clone()).collect(),
                source,
                node_id: chosen.map(|i| nodes[i].id.clone()),
            });
        }
    }
    out
}

fn choose(batch: &[&FeedRef], nodes: &[NodeSnapshot], source: Source, size: i64) -> Option<usize> {
    let quota = |n: &NodeSnapshot| {
        batch
            .iter()
            .map(|f| n.quota.get(&f.id).copied().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.can_fetch(source) && n.free >= size)
        .max_by(|(_, a), (_, b)| {
            let (qa, qb) = (quota(a).max(0), quota(b).max(0));
            qa.cmp(&qb).then(a.free.cmp(&b.free)).then(b.id.cmp(&a.id))
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests;
