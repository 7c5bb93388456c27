//! What both backends decide the same way once rows are read: the holder and report checks of
//! an allocation, the claim gate and candidate fitting, package assembly, upload item checks.

use super::rows::RowExt;
use super::{AllocStatus, ArticleIn, ClaimBlock, ClaimPolicy, Error, Node, ReportOutcome, Result};
use crate::dispatch::Source;
use crate::protocol::ids::article_id;
use crate::protocol::time::to_wire;
use crate::protocol::wire::{PackageFeed, TaskPackage};
use chrono::NaiveDateTime;

/// The columns of an allocation the state machine needs.
pub(crate) struct AllocRow {
    pub(crate) id: String,
    pub(crate) task_id: String,
    pub(crate) status: AllocStatus,
    pub(crate) node_id: Option<String>,
    pub(crate) lease_token: Option<String>,
    pub(crate) attempt: i64,
    pub(crate) max_attempts: i64,
    pub(crate) feed_ids: Vec<String>,
    pub(crate) source: Source,
    pub(crate) available_at: Option<NaiveDateTime>,
    pub(crate) lease_expires_at: Option<NaiveDateTime>,
}

impl AllocRow {
    pub(crate) fn from_row(r: &impl RowExt) -> Result<Self> {
        Ok(Self {
            id: r.text("id")?,
            task_id: r.text("task_id")?,
            status: AllocStatus::parse(&r.text("status")?),
            node_id: r.opt_text("node_id")?,
            lease_token: r.opt_text("lease_token")?,
            attempt: r.int("attempt")?,
            max_attempts: r.opt_int("max_attempts")?.unwrap_or(5),
            feed_ids: r.string_list("feed_ids")?.unwrap_or_default(),
            source: Source::parse(&r.opt_text("feed_source")?.unwrap_or_default()),
            available_at: r.time("available_at")?,
            lease_expires_at: r.time("lease_expires_at")?,
        })
    }

    pub(crate) fn is_held(&self) -> bool {
        self.status.is_held()
    }

    pub(crate) fn outcome(&self) -> ReportOutcome {
        ReportOutcome {
            allocation_id: self.id.clone(),
            status: self.status.clone(),
            attempt: self.attempt,
            available_at: self.available_at,
            lease_expires_at: self.lease_expires_at,
        }
    }

    /// Checks that `node_id` is (or was, for terminal rows) the holder and the token is current.
    pub(crate) fn check_holder(&self, node_id: &str, token: Option<&str>) -> Result<()> {
        if self.node_id.as_deref() != Some(node_id) {
            return Err(Error::LeaseLost);
        }
        match (token, self.lease_token.as_deref()) {
            (Some(sent), Some(current)) if !crate::protocol::credentials::ct_eq(sent, current) => {
                Err(Error::LeaseLost)
            }
            _ => Ok(()),
        }
    }

    /// Whether a report naming `named_task` may apply; `Some` is the idempotent answer for a
    /// repeated terminal report.
    pub(crate) fn check_report(
        &self,
        report: &super::Report,
        node_id: &str,
        token: Option<&str>,
    ) -> Result<Option<ReportOutcome>> {
        use super::Report;
        self.check_holder(node_id, token)?;
        let named_task = match report {
            Report::Completed(Some(c)) => Some(c.task_id.as_str()),
            Report::Failed(f) => f.task_id.as_deref(),
            _ => None,
        };
        if named_task.is_some_and(|t| t != self.task_id) {
            return Err(Error::Invalid(
                "task_id does not match the allocation".into(),
            ));
        }
        if self.is_held() {
            return Ok(None);
        }
        let same = matches!(
            (report, &self.status),
            (Report::Completed(_), AllocStatus::Completed)
                | (Report::Failed(_), AllocStatus::Failed)
        );
        if same {
            Ok(Some(self.outcome()))
        } else {
            Err(Error::InvalidTransition(self.status.to_string()))
        }
    }
}

/// What a node may claim now: the fetcher kinds it may take and its free capacity, or why it
/// may take nothing.
pub(crate) struct ClaimGate {
    pub(crate) kinds: Vec<String>,
    pub(crate) free: i64,
}

impl ClaimGate {
    pub(crate) fn of(
        node: &Node,
        now: NaiveDateTime,
        policy: &ClaimPolicy,
    ) -> std::result::Result<Self, ClaimBlock> {
        let capacity = node.capacity(policy.default_capacity);
        let free = capacity - node.held_feeds;
        let cooling = node.cooldown_until.filter(|t| *t > now);
        let parked = matches!(node.session_state.as_str(), "expired" | "none");
        let reported = node.fetcher_kinds();
        let wanted = |k: &String| policy.only_kinds.as_ref().is_none_or(|o| o.contains(k));
        let kinds: Vec<String> = reported
            .iter()
            .filter(|k| wanted(k))
            .filter(|k| *k != "wechat" || (cooling.is_none() && !parked))
            .cloned()
            .collect();
        if free <= 0 {
            Err(ClaimBlock::AtCapacity {
                held: node.held_feeds,
                capacity,
            })
        } else if kinds.is_empty() && !reported.iter().any(wanted) {
            Err(ClaimBlock::NoUsableKind)
        } else if kinds.is_empty() {
            Err(match cooling {
                Some(until) => ClaimBlock::Cooling(until),
                None => ClaimBlock::SessionExpired,
            })
        } else {
            Ok(Self { kinds, free })
        }
    }
}

/// Picks candidates in order while their feeds fit in `room`, at most `want` in all.
pub(crate) fn take_fitting(
    rows: &[impl RowExt],
    picked: &mut Vec<String>,
    room: &mut i64,
    want: i64,
) -> Result<()> {
    for r in rows {
        let count = r.int("feed_count")?.max(1);
        if count <= *room && i64::try_from(picked.len()).unwrap_or(i64::MAX) < want {
            *room -= count;
            picked.push(r.text("id")?);
        }
    }
    Ok(())
}

/// The task columns a package needs (never `mps_id`, which may list 100k feeds).
pub(crate) const PACKAGE_TASK: &str = "SELECT name, message_type, message_template, web_hook_url,
    cron_exp, headers, cookies, expose_to_nodes, full_text, all_feeds FROM we_message_tasks WHERE id = $1";

/// The package of a claimed allocation row, from its task row and feed rows (each with the
/// `since` column: the newest stored `publish_time`).
pub(crate) fn package(
    row: &impl RowExt,
    task: &impl RowExt,
    feeds: &[impl RowExt],
) -> Result<TaskPackage> {
    let expose = task.flag("expose_to_nodes")?;
    let feeds = feeds
        .iter()
        .map(|f| {
            Ok(PackageFeed {
                id: f.text("id")?,
                faker_id: f.opt_text("faker_id")?.filter(|s| !s.is_empty()),
                mp_name: f.text("mp_name")?,
                mp_cover: f.opt_text("mp_cover")?,
                mp_intro: f.opt_text("mp_intro")?,
                status: f.opt_int("status")?.unwrap_or(1),
                source: Some(f.opt_text("source")?.unwrap_or_else(|| "wechat".into())),
                url: f.opt_text("url")?,
                etag: f.opt_text("http_etag")?,
                last_modified: f.opt_text("http_last_modified")?,
                since: f.opt_int("since")?,
                // A feed's own chain; the parent's annotation fills in the global one.
                sources: f
                    .opt_text("source_chain")?
                    .map(|c| crate::store::rows::split_chain(&c))
                    .filter(|c| !c.is_empty()),
                backlog: match (f.opt_int("backlog_offset")?, f.opt_int("backlog_until")?) {
                    (Some(offset), Some(until)) => {
                        Some(crate::protocol::wire::Backlog { offset, until })
                    }
                    _ => None,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let wire = |col: &str| -> Result<Option<String>> { Ok(row.time(col)?.map(to_wire)) };
    let secret = |col: &str| -> Result<Option<String>> {
        if expose { task.opt_text(col) } else { Ok(None) }
    };
    Ok(TaskPackage {
        allocation_id: row.text("id")?,
        task_id: row.text("task_id")?,
        task_name: task.opt_text("name")?,
        message_type: task.int("message_type")?,
        message_template: task.opt_text("message_template")?,
        web_hook_url: task.opt_text("web_hook_url")?,
        cron_exp: task.opt_text("cron_exp")?,
        headers: secret("headers")?,
        cookies: secret("cookies")?,
        feeds,
        dispatched_at: wire("dispatched_at")?,
        claimed_at: wire("claimed_at")?,
        schedule_run_id: row.opt_text("schedule_run_id")?,
        attempt: Some(row.int("attempt")?),
        max_attempts: Some(row.int("max_attempts")?),
        lease_token: row.opt_text("lease_token")?,
        lease_expires_at: wire("lease_expires_at")?,
        full_text: Some(task.opt_int("full_text")?.is_none_or(|v| v != 0)),
    })
}

/// `(stored id, feed id)` of an uploaded item, or why it is rejected.
pub(crate) fn check_article(
    item: &ArticleIn,
    feeds: &[String],
) -> std::result::Result<(String, String), String> {
    let id = item
        .id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or("missing id")?;
    let mp_id = match item.mp_id.as_deref().filter(|s| !s.is_empty()) {
        Some(m) => m.to_string(),
        None if feeds.len() == 1 => feeds[0].clone(),
        None => return Err("missing mp_id (the allocation has several feeds)".into()),
    };
    if !feeds.contains(&mp_id) {
        return Err(format!("mp_id {mp_id} is not in this allocation"));
    }
    Ok((article_id(&mp_id, id), mp_id))
}

/// Orders rows returned by an `UPDATE … RETURNING` (unordered) as `ids` were.
pub(crate) fn sort_as<R: RowExt>(rows: &mut [R], ids: &[String]) {
    let order: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    rows.sort_by_key(|r| {
        r.text("id")
            .ok()
            .and_then(|id| order.get(id.as_str()).copied())
            .unwrap_or(usize::MAX)
    });
}

/// What upserting one uploaded article did.
pub(crate) enum Upsert {
    /// A new row.
    Inserted,
    /// An existing row of the same feed, updated.
    Updated,
    /// The same article stored under another id of the same feed (read through another
    /// source): that row was filled in, its id is the item's.
    Matched(String),
    /// The id exists under another feed: rejected.
    Foreign,
}

/// The reply of an upload, item by item, and the new articles `(stored id, feed id)` that
/// webhooks are queued for.
pub(crate) struct UploadTally {
    pub(crate) out: super::UploadOutcome,
    pub(crate) fresh: Vec<(String, String)>,
}

impl UploadTally {
    pub(crate) fn new(received: usize) -> Self {
        Self {
            out: super::UploadOutcome {
                received,
                new_count: 0,
                updated_count: 0,
                duplicate_count: 0,
                ids: Vec::with_capacity(received),
                rejected: Vec::new(),
                new_ids: Vec::new(),
            },
            fresh: Vec::new(),
        }
    }

    /// An item refused before it reached the database.
    pub(crate) fn reject(&mut self, item: &ArticleIn, error: String) {
        self.out.ids.push(None);
        self.out.rejected.push(super::Rejected {
            index: item.index,
            id: item.id.clone(),
            error,
        });
    }

    /// An item the database took (or refused as another feed's).
    pub(crate) fn stored(
        &mut self,
        item: &ArticleIn,
        mut id: String,
        mp_id: String,
        upsert: Upsert,
    ) {
        match upsert {
            Upsert::Inserted => {
                self.out.new_count += 1;
                self.out.new_ids.push(id.clone());
                self.fresh.push((id.clone(), mp_id));
            }
            Upsert::Updated => self.out.updated_count += 1,
            Upsert::Matched(stored) => {
                self.out.updated_count += 1;
                self.out.duplicate_count += 1;
                id = stored;
            }
            Upsert::Foreign => {
                return self.reject(item, format!("article {id} belongs to another feed"));
            }
        }
        self.out.ids.push(Some(id));
    }

    /// `(received, inserted)` for the allocation's counters.
    pub(crate) fn counts(&self) -> (i64, i64) {
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        (n(self.out.received), n(self.out.new_count))
    }
}

/// How one feed of a completed allocation ended.
pub(crate) struct FeedEnd {
    pub(crate) feed_id: String,
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    /// As [`super::FeedResult::backlog`], for a successful feed only.
    pub(crate) backlog: Option<Option<crate::protocol::wire::Backlog>>,
    /// Seconds the upstream asked to wait before this feed is read again.
    pub(crate) retry_after: Option<i64>,
}

/// What a completion does besides closing the allocation.
pub(crate) struct CompletionEffects {
    /// One per feed, in id order (the order rows are locked in).
    pub(crate) feeds: Vec<FeedEnd>,
    /// A WeChat fetch succeeded without a rate limit: the node's cooldown level resets.
    pub(crate) reset_cooldown: bool,
    /// A WeChat feed hit a rate limit: the node cools down (with the upstream's hint).
    pub(crate) cooldown: Option<Option<i64>>,
}

/// The effects of a completion's per-feed results (a feed without a result succeeded).
pub(crate) fn completion_effects(
    row: &AllocRow,
    results: &[super::FeedResult],
) -> CompletionEffects {
    let mut any_success = results.is_empty();
    let mut feeds: Vec<&String> = row.feed_ids.iter().collect();
    feeds.sort_unstable();
    let feeds = feeds
        .into_iter()
        .map(|feed| {
            let result = results
                .iter()
                .find(|r| r.feed_id.as_deref() == Some(feed.as_str()));
            let ok = result.is_none_or(|r| r.success);
            any_success |= ok && result.is_some();
            FeedEnd {
                feed_id: feed.clone(),
                ok,
                error: result.filter(|r| !r.success).and_then(|r| r.error.clone()),
                etag: result.and_then(|r| r.etag.clone()),
                last_modified: result.and_then(|r| r.last_modified.clone()),
                backlog: result.filter(|r| r.success).and_then(|r| r.backlog),
                retry_after: result.and_then(|r| r.retry_after),
            }
        })
        .collect();
    let limited = results
        .iter()
        .find(|r| !r.success && r.reason == crate::dispatch::retry::Reason::RateLimited);
    let wechat = row.source == Source::Wechat;
    CompletionEffects {
        feeds,
        reset_cooldown: wechat && any_success && limited.is_none(),
        cooldown: limited.filter(|_| wechat).map(|l| l.retry_after),
    }
}
