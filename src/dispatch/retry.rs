//! What a failure does to an allocation and its node (PROTOCOL §4.2, §4.4).

use super::Source;
use chrono::{NaiveDateTime, TimeDelta};

/// Why an allocation failed or came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// WeChat `200013` or HTTP 429.
    RateLimited,
    /// WeChat `200003`.
    SessionExpired,
    /// The account or feed is gone.
    NotFound,
    /// Transport failure.
    Network,
    /// Unreadable upstream answer.
    Parse,
    /// Anything else, or no reason given.
    Unknown,
    /// The reaper found the lease expired.
    LeaseExpired,
    /// The reaper found the node offline.
    NodeOffline,
    /// An admin deactivated or deleted the node.
    NodeDisabled,
    /// The node gave the work back.
    Released,
    /// The source refuses (WeRead `-2041`, an MP `200013` after a rest; SOURCES.md §1–§2):
    /// the work comes back without spending an attempt and no node cools; the parent counts
    /// the refusals to find the source closed.
    Closed,
    /// `rate_limited` with `budget: true` (issue 13 §7): the node's logins have spent their
    /// own budgets; the work waits for `retry_after` without spending an attempt and no node
    /// cools (nothing upstream throttled anyone).
    OutOfBudget,
    /// An admin cancelled the allocation (issue 16): it fails for good.
    Cancelled,
}

impl Reason {
    /// Parses a wire reason; absent or unknown values are `Unknown`.
    pub fn parse(s: Option<&str>) -> Self {
        match s.unwrap_or_default() {
            "rate_limited" => Self::RateLimited,
            "session_expired" => Self::SessionExpired,
            "not_found" => Self::NotFound,
            "network" => Self::Network,
            "parse" => Self::Parse,
            "lease_expired" => Self::LeaseExpired,
            "node_offline" => Self::NodeOffline,
            "node_disabled" => Self::NodeDisabled,
            "released" => Self::Released,
            "closed" => Self::Closed,
            "cancelled" => Self::Cancelled,
            _ => Self::Unknown,
        }
    }

    /// Every wire name, each once (`rate_limited` stands for [`Reason::OutOfBudget`] too).
    pub const WIRE_NAMES: &'static [&'static str] = &[
        "rate_limited",
        "session_expired",
        "not_found",
        "network",
        "parse",
        "unknown",
        "lease_expired",
        "node_offline",
        "node_disabled",
        "released",
        "closed",
        "cancelled",
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited | Self::OutOfBudget => "rate_limited",
            Self::SessionExpired => "session_expired",
            Self::NotFound => "not_found",
            Self::Network => "network",
            Self::Parse => "parse",
            Self::Unknown => "unknown",
            Self::LeaseExpired => "lease_expired",
            Self::NodeOffline => "node_offline",
            Self::NodeDisabled => "node_disabled",
            Self::Released => "released",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Retry and cooldown settings (seconds).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Base of the retry backoff.
    pub retry_base: i64,
    /// Cap of the retry backoff.
    pub retry_max: i64,
    /// Base of the WeChat cooldown.
    pub cooldown_base: i64,
    /// Cap of the WeChat cooldown.
    pub cooldown_max: i64,
}

/// The allocation's next state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Back to `pending`.
    Pending {
        /// When it may be claimed again.
        available_at: NaiveDateTime,
        /// Whether the attempt counts (`false` takes `attempt` back by one).
        spend_attempt: bool,
    },
    /// Terminal `failed`.
    Failed,
}

/// What happens to the node that reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEffect {
    /// Nothing.
    None,
    /// Raise the WeChat cooldown level; `retry_after` is the upstream's hint.
    Cooldown {
        /// Seconds the upstream asked to wait, if any.
        retry_after: Option<i64>,
    },
    /// Park the node's WeChat session.
    SessionExpired,
}

/// The outcome of a failure at `attempt` (already counted for this claim). The node's
/// `retry_after` is capped at `retry_max`.
#[allow(clippy::too_many_arguments)]
pub fn after_failure(
    reason: Reason,
    source: Source,
    attempt: i64,
    max_attempts: i64,
    retry_after: Option<i64>,
    policy: &RetryPolicy,
    jitter: f64,
    now: NaiveDateTime,
) -> (Next, NodeEffect) {
    // A node's hint is believed only up to `retry_max`: a node cannot park work for years.
    let retry_after = retry_after.map(|s| s.clamp(0, policy.retry_max));
    let now_pending = |spend| Next::Pending {
        available_at: now,
        spend_attempt: spend,
    };
    match reason {
        Reason::RateLimited if source == Source::Wechat => {
            (now_pending(false), NodeEffect::Cooldown { retry_after })
        }
        Reason::RateLimited | Reason::OutOfBudget => {
            let wait = retry_after.filter(|s| *s > 0).unwrap_or(policy.retry_base);
            (
                Next::Pending {
                    available_at: now + secs(wait),
                    spend_attempt: false,
                },
                NodeEffect::None,
            )
        }
        Reason::SessionExpired => (now_pending(false), NodeEffect::SessionExpired),
        Reason::NotFound | Reason::Cancelled => (Next::Failed, NodeEffect::None),
        Reason::NodeDisabled | Reason::Released => (now_pending(false), NodeEffect::None),
        Reason::Closed => (
            Next::Pending {
                available_at: now + secs(policy.retry_base),
                spend_attempt: false,
            },
            NodeEffect::None,
        ),
        Reason::Network
        | Reason::Parse
        | Reason::Unknown
        | Reason::LeaseExpired
        | Reason::NodeOffline => {
            if attempt < max_attempts {
                let delay = backoff(attempt, policy, jitter);
                (
                    Next::Pending {
                        available_at: now + delay,
                        spend_attempt: true,
                    },
                    NodeEffect::None,
                )
            } else {
                (Next::Failed, NodeEffect::None)
            }
        }
    }
}

/// min(retry_max, retry_base · 2^(attempt−1)) × jitter, jitter ∈ [0.5, 1.5).
pub fn backoff(attempt: i64, policy: &RetryPolicy, jitter: f64) -> TimeDelta {
    let exp = u32::try_from((attempt - 1).clamp(0, 30)).unwrap_or(30);
    let base = policy
        .retry_base
        .saturating_mul(1_i64 << exp)
        .min(policy.retry_max);
    let millis = (base as f64 * 1000.0 * jitter.clamp(0.5, 1.5)).round() as i64;
    TimeDelta::milliseconds(millis)
}

/// The cooldown after the `level`-th consecutive rate limit (level ≥ 1).
pub fn cooldown(level: i64, retry_after: Option<i64>, policy: &RetryPolicy) -> TimeDelta {
    let exp = u32::try_from((level - 1).clamp(0, 30)).unwrap_or(30);
    let scaled = policy
        .cooldown_base
        .saturating_mul(1_i64 << exp)
        .min(policy.cooldown_max);
    secs(scaled.max(retry_after.unwrap_or(0)))
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s.clamp(0, 10 * 365 * 86_400))
}
