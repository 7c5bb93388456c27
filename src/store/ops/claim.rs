//! Claims: the node row locked, candidates taken with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL (one writer on SQLite), own work first, then unassigned, then work other nodes
//! may no longer keep; so no allocation is ever handed out twice, even with several parents.

use crate::protocol::wire::TaskPackage;
use crate::store::db::{Arg, Row, Tx, args};
use crate::store::ops::lifecycle::fail_not_found;
use crate::store::ops::nodes::touch_read;
use crate::store::rows::{self, ClaimGate, RowExt, sort_as, take_fitting};
use crate::store::{ClaimOutcome, ClaimPolicy, Result, Store};
use chrono::{NaiveDateTime, TimeDelta};

/// The columns a claim reads of each candidate.
const CANDIDATE_COLUMNS: &str = "id, feed_count, available_at, dispatched_at";

/// Pending work the claimer may fetch and fit. Each group bounds `available_at` itself, with
/// one upper bound only (SQLite's planner walks an index up to one of them).
const PENDING_OF_KIND: &str = "status = 'pending' AND feed_source {in:$3} AND feed_count <= $4";

impl Store {
    /// Atomically claims up to `limit` allocations for a node within its free capacity.
    pub async fn claim(
        &self,
        node_id: &str,
        limit: i64,
        now: NaiveDateTime,
        policy: ClaimPolicy,
    ) -> Result<ClaimOutcome> {
        let node_id = node_id.to_string();
        self.db
            .write(move |tx| {
                Box::pin(async move { claim(tx, &node_id, limit, now, &policy).await })
            })
            .await
    }
}

async fn claim(
    tx: &mut Tx,
    node_id: &str,
    limit: i64,
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<ClaimOutcome> {
    // Claims of one node are serialized (capacity holds across parents); claims of different
    // nodes run side by side and skip each other's candidates.
    let node = touch_read(tx, node_id, now).await?;
    let gate = match ClaimGate::of(&node, now, policy) {
        Ok(gate) => gate,
        Err(block) => {
            return Ok(ClaimOutcome {
                packages: Vec::new(),
                blocked: Some(block),
            });
        }
    };
    let want = limit.min(gate.free);
    let ids = candidates(tx, node_id, &gate.kinds, gate.free, want, now, policy).await?;
    let mut packages = Vec::new();
    if !ids.is_empty() {
        let claimed = mark_claimed(tx, node_id, &ids, now, policy).await?;
        for row in &claimed {
            if let Some(p) = package(tx, row, now).await? {
                packages.push(p);
            }
        }
    }
    Ok(ClaimOutcome {
        packages,
        blocked: None,
    })
}

/// Claimable ids in claim order (own → unassigned → stealable) whose feeds fit in `free`;
/// on PostgreSQL every candidate row is locked, and rows another transaction holds are
/// skipped.
async fn candidates(
    tx: &mut Tx,
    node_id: &str,
    kinds: &[String],
    free: i64,
    want: i64,
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<String>> {
    // Never after `now`: the steal set's first part is bounded by it alone.
    let steal_before = (now - TimeDelta::seconds(policy.steal_after)).min(now);
    let silent_since = now - TimeDelta::seconds(policy.offline_after);
    let mut picked: Vec<String> = Vec::new();
    let mut room = free;
    // Own work, unassigned work, then the steal set (`None`).
    for group in [Some(OWN), Some(UNASSIGNED), None] {
        let remaining = want - i64::try_from(picked.len()).unwrap_or(i64::MAX);
        if remaining <= 0 || room <= 0 {
            break;
        }
        let c = Candidates {
            node_id,
            kinds,
            room,
            limit: remaining,
            now,
            steal_before,
            silent_since,
        };
        let rows = match group {
            Some(filter) => tx.rows(&ordered(filter), &c.args(None)).await?,
            None => stealable(tx, &c).await?,
        };
        take_fitting(&rows, &mut picked, &mut room, want)?;
    }
    Ok(picked)
}

const OWN: &str = "assigned_node_id = $1 AND available_at <= $2";
const UNASSIGNED: &str = "assigned_node_id IS NULL AND available_at <= $2";
/// Work assigned to another node (`COALESCE` keeps SQLite off the index on
/// `assigned_node_id`, whose range would need a sort).
const OTHERS: &str = "COALESCE(assigned_node_id, $1) <> $1";
/// A node whose assigned work others may take: inactive, silent, cooling or parked.
const NODE_STEALABLE: &str = "is_active = {false} OR last_heartbeat_at IS NULL
    OR last_heartbeat_at < $7 OR cooldown_until > $2 OR session_state IN ('expired', 'none')";

/// Candidates of one group matching `filter`, in claim order, at most `$5`.
fn ordered(filter: &str) -> String {
    format!(
        "SELECT {CANDIDATE_COLUMNS} FROM we_cascade_task_allocations
          WHERE {PENDING_OF_KIND} AND {filter}
          ORDER BY available_at, dispatched_at, id LIMIT CAST($5 AS BIGINT) {{skip_locked}}"
    )
}

/// What every candidate query binds: `$1` node, `$2` now, `$3` kinds, `$4` room, `$5` limit,
/// `$6` steal before, `$7` silent since (and `$8` another node, for one node's work).
struct Candidates<'a> {
    node_id: &'a str,
    kinds: &'a [String],
    room: i64,
    limit: i64,
    now: NaiveDateTime,
    steal_before: NaiveDateTime,
    silent_since: NaiveDateTime,
}

impl Candidates<'_> {
    fn args(&self, other: Option<&str>) -> Vec<Arg> {
        vec![
            Arg::from(self.node_id),
            Arg::from(self.now),
            Arg::from(self.kinds),
            Arg::from(self.room),
            Arg::from(self.limit),
            Arg::from(self.steal_before),
            Arg::from(self.silent_since),
            Arg::from(other),
        ]
    }
}

/// The first `limit` rows of the steal set in claim order: pending work assigned to another
/// node that is inactive, silent, cooling or parked, or that it has not claimed within
/// `steal_after` of dispatch. Each part walks an index in claim order and stops at its
/// limit, so the cost does not grow with the pending rows (no sort of the queue):
/// - rows available since before `steal_before` (`ix_cascade_alloc_pending_order`): they
///   come first in claim order, and usually fill the claim;
/// - rows available since then, merged in claim order: those old by dispatch can only be
///   retried or released ones (`available_at > dispatched_at`,
///   `ix_cascade_alloc_pending_moved`), and the work of each stealable node
///   (`ix_cascade_alloc_pending_claim`, one probe per node: nodes are few).
async fn stealable(tx: &mut Tx, c: &Candidates<'_>) -> Result<Vec<Row>> {
    let mut rows = tx.rows(&steal_settled(), &c.args(None)).await?;
    let short = c.limit - i64::try_from(rows.len()).unwrap_or(i64::MAX);
    if short <= 0 {
        return Ok(rows);
    }
    let rest = Candidates { limit: short, ..*c };
    let mut recent = tx.rows(&steal_moved(), &rest.args(None)).await?;
    let nodes = tx.texts(&stealable_nodes(), &rest.args(None)).await?;
    for node in &nodes {
        recent.extend(tx.rows(&steal_of_node(), &rest.args(Some(node))).await?);
    }
    // The parts' rows in claim order (NULLs sort first on SQLite, last on PostgreSQL, as
    // each database's ORDER BY does), each once, the first `short` of them.
    let nulls_last = tx.is_pg();
    let mut keyed = recent
        .into_iter()
        .map(|r| {
            let key = (
                r.time("available_at")?,
                r.time("dispatched_at")?,
                r.text("id")?,
            );
            Ok((key, r))
        })
        .collect::<Result<Vec<_>>>()?;
    keyed.sort_by(|(a, _), (b, _)| {
        let nulls = |x: &Option<NaiveDateTime>, y: &Option<NaiveDateTime>| match (x, y) {
            (Some(x), Some(y)) => x.cmp(y),
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) if nulls_last => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) if nulls_last => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
        };
        nulls(&a.0, &b.0)
            .then_with(|| nulls(&a.1, &b.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    keyed.dedup_by(|(a, _), (b, _)| a.2 == b.2);
    rows.extend(
        keyed
            .into_iter()
            .map(|(_, r)| r)
            .take(usize::try_from(short).unwrap_or(usize::MAX)),
    );
    Ok(rows)
}

/// The steal set's rows available since before `$6` (≤ now; all of them old by dispatch,
/// unless adopted otherwise), in claim order.
fn steal_settled() -> String {
    ordered(&format!(
        "{OTHERS} AND available_at <= $6
         AND (dispatched_at <= $6 OR assigned_node_id IN (
           SELECT id FROM we_cascade_nodes WHERE {NODE_STEALABLE}))"
    ))
}

/// The steal set's rows old by dispatch but available only since `$6`: their availability
/// moved past their dispatch (the last term, implied by the others, names the partial index).
fn steal_moved() -> String {
    ordered(&format!(
        "{OTHERS} AND available_at > $6 AND available_at <= $2 AND dispatched_at <= $6
         AND available_at > dispatched_at"
    ))
}

/// The nodes other than `$1` whose assigned work is stealable.
fn stealable_nodes() -> String {
    format!("SELECT id FROM we_cascade_nodes WHERE id <> $1 AND ({NODE_STEALABLE})")
}

/// The work of one stealable node `$8` available since `$6`, in claim order.
fn steal_of_node() -> String {
    ordered("assigned_node_id = $8 AND available_at > $6 AND available_at <= $2")
}

async fn mark_claimed(
    tx: &mut Tx,
    node_id: &str,
    ids: &[String],
    now: NaiveDateTime,
    policy: &ClaimPolicy,
) -> Result<Vec<Row>> {
    let lease_end = now + TimeDelta::seconds(policy.lease_seconds);
    let deadline = now + TimeDelta::seconds(policy.max_run_seconds);
    // A fresh token per row (32 lowercase hex digits): each backend's own random source.
    // `CAST(status AS TEXT)` keeps SQLite on the primary key (a bare `status = ...` would
    // walk every pending row through the claim-order index); a no-op on PostgreSQL.
    let token = if tx.is_pg() {
        "replace(CAST(gen_random_uuid() AS TEXT), '-', '')"
    } else {
        "lower(hex(randomblob(16)))"
    };
    let sql = format!(
        "UPDATE we_cascade_task_allocations
            SET status = 'claimed', node_id = $1, assigned_node_id = $1, claimed_at = $2,
                started_at = NULL, lease_expires_at = $3, run_deadline = $4,
                lease_token = {token}, attempt = attempt + 1,
                article_count = 0, new_article_count = 0, updated_at = $2
          WHERE id {{in:$5}} AND CAST(status AS TEXT) = 'pending'
          RETURNING *"
    );
    let mut rows = tx
        .rows(
            &sql,
            args![node_id, now, lease_end.min(deadline), deadline, ids],
        )
        .await?;
    sort_as(&mut rows, ids);
    Ok(rows)
}

/// Builds the package of a claimed row; `None` (and the row failed `not_found`) when its task
/// or every feed is gone.
async fn package(tx: &mut Tx, row: &Row, now: NaiveDateTime) -> Result<Option<TaskPackage>> {
    let id = row.text("id")?;
    let task = tx
        .opt(rows::PACKAGE_TASK, args![row.text("task_id")?])
        .await?;
    let feed_ids = row.string_list("feed_ids")?.unwrap_or_default();
    let feeds = tx
        .rows(
            "SELECT f.*, (SELECT MAX(a.publish_time) FROM we_articles a
                    WHERE a.mp_id = f.id AND NOT a.time_estimated) AS since
               FROM we_feeds f WHERE f.id {in:$1} ORDER BY f.id",
            args![feed_ids],
        )
        .await?;
    let Some(task) = task.filter(|_| !feeds.is_empty()) else {
        fail_not_found(tx, &id, now).await?;
        return Ok(None);
    };
    Ok(Some(rows::package(row, &task, &feeds)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SQLite's planner does with each query of the steal path (and the lease sweep)
    /// on a migrated database (no statistics, as in production): every part walks an index
    /// in its order, none sorts or scans the table (their cost must not grow with it).
    #[tokio::test]
    async fn the_steal_path_walks_indexes_in_claim_order_without_sorting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:///{}", dir.path().join("plan.db").display());
        let store = Store::connect(&url).await.expect("store");
        let plans = store
            .db
            .read(|tx| {
                Box::pin(async move {
                    let now = chrono::Utc::now().naive_utc();
                    let kinds = vec!["wechat".to_string()];
                    let c = Candidates {
                        node_id: "n1",
                        kinds: &kinds,
                        room: 10,
                        limit: 10,
                        now,
                        steal_before: now,
                        silent_since: now,
                    };
                    let mut plans = Vec::new();
                    for (sql, index) in [
                        (steal_settled(), "ix_cascade_alloc_pending_order"),
                        (steal_moved(), "ix_cascade_alloc_pending_moved"),
                        (steal_of_node(), "ix_cascade_alloc_pending_claim"),
                        (ordered(OWN), "ix_cascade_alloc_pending_claim"),
                        (ordered(UNASSIGNED), "ix_cascade_alloc_pending_claim"),
                    ] {
                        let rows = tx
                            .rows(&format!("EXPLAIN QUERY PLAN {sql}"), &c.args(Some("n2")))
                            .await?;
                        let detail: Vec<String> = rows
                            .iter()
                            .map(|r| r.text("detail"))
                            .collect::<Result<_>>()?;
                        plans.push((index, detail));
                    }
                    let rows = tx
                        .rows(
                            &format!(
                                "EXPLAIN QUERY PLAN {}",
                                crate::store::ops::recovery::EXPIRED_LEASES
                            ),
                            args![now],
                        )
                        .await?;
                    let detail: Vec<String> = rows
                        .iter()
                        .map(|r| r.text("detail"))
                        .collect::<Result<_>>()?;
                    plans.push(("ix_cascade_alloc_held_lease", detail));
                    Ok(plans)
                })
            })
            .await
            .expect("plans");
        for (index, detail) in plans {
            let text = detail.join("\n");
            assert!(
                detail.iter().any(|d| d.starts_with(&format!(
                    "SEARCH we_cascade_task_allocations USING INDEX {index} ("
                ))),
                "expected a search of {index}:\n{text}"
            );
            assert!(!text.contains("TEMP B-TREE"), "a sort:\n{text}");
        }
    }
}
