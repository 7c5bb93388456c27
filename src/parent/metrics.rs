//! Prometheus metrics (`GET /metrics`, OpenMetrics text). Events are counted where they happen
//! (claims, dispatches, reaper passes, rate-limit and session reports); levels (allocations by
//! status, nodes online, per-node load) are read from the database at each scrape, so every
//! parent of a shared database reports the same levels. Names start with `cascade_`.

use super::AppState;
use crate::dispatch::retry::Reason;
use crate::store::{self, Report};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// The event metrics of one parent.
pub struct Metrics {
    registry: Registry,
    claims: Family<Labels, Counter>,
    claimed: Counter,
    claim_seconds: Histogram,
    dispatch_seconds: Histogram,
    dispatched: Counter,
    reaper: Family<Labels, Counter>,
    node_events: Family<Labels, Counter>,
    webhooks: Family<Labels, Counter>,
    alerts: Family<Labels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            claims: Family::default(),
            claimed: Counter::default(),
            // 0.5 ms … ~8 s
            claim_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            // 1 ms … ~65 s
            dispatch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            dispatched: Counter::default(),
            reaper: Family::default(),
            node_events: Family::default(),
            webhooks: Family::default(),
            alerts: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "cascade_claims",
            "Claim transactions, by outcome (claimed, empty, blocked); a long-poll may run several",
            m.claims.clone(),
        );
        r.register(
            "cascade_claimed_allocations",
            "Allocations handed out by claims",
            m.claimed.clone(),
        );
        r.register(
            "cascade_claim_duration_seconds",
            "Time of one claim transaction (not the long-poll wait)",
            m.claim_seconds.clone(),
        );
        r.register(
            "cascade_dispatch_duration_seconds",
            "Time of one dispatch (placement and its transaction)",
            m.dispatch_seconds.clone(),
        );
        r.register(
            "cascade_dispatched_allocations",
            "Allocations created by dispatches",
            m.dispatched.clone(),
        );
        r.register(
            "cascade_reaper_actions",
            "Reaper actions: lease_expired, node_offline, requeued_from_offline",
            m.reaper.clone(),
        );
        r.register(
            "cascade_node_events",
            "Reports from nodes: rate_limited (WeChat 200013, WeRead -2014), session_expired (200003, WeRead -2010/-2012), closed (WeRead -2041)",
            m.node_events.clone(),
        );
        r.register(
            "cascade_webhook_attempts",
            "Webhook calls by outcome: sent, retry, failed",
            m.webhooks.clone(),
        );
        r.register(
            "cascade_alerts",
            "Operator alerts by event and outcome: sent, failed (after retries), logged (no \
             alert_webhook_url)",
            m.alerts.clone(),
        );
        // Every known label value starts at zero, so each documented family is present
        // before its first event and a rate() has a first sample.
        for (family, key, values) in [
            (&m.claims, "outcome", &["claimed", "empty", "blocked"][..]),
            (
                &m.reaper,
                "action",
                &["lease_expired", "node_offline", "requeued_from_offline"][..],
            ),
            (
                &m.node_events,
                "event",
                &["rate_limited", "session_expired", "closed"][..],
            ),
            (&m.webhooks, "outcome", &["sent", "retry", "failed"][..]),
        ] {
            for v in values {
                let _ = family.get_or_create(&label(key, v));
            }
        }
        for event in ["login_expires_24h", "login_expires_6h", "login_expired"] {
            for outcome in ["sent", "failed", "logged"] {
                let _ = m.alerts.get_or_create(&vec![
                    ("event".to_string(), event.to_string()),
                    ("outcome".to_string(), outcome.to_string()),
                ]);
            }
        }
        m
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Metrics {
    /// One claim transaction and its outcome.
    pub fn claim(&self, took: Duration, outcome: &store::ClaimOutcome) {
        self.claim_seconds.observe(took.as_secs_f64());
        let kind = if !outcome.packages.is_empty() {
            "claimed"
        } else if outcome.blocked.is_some() {
            "blocked"
        } else {
            "empty"
        };
        self.claims.get_or_create(&label("outcome", kind)).inc();
        self.claimed.inc_by(count(outcome.packages.len()));
    }

    /// One dispatch.
    pub fn dispatch(&self, took: Duration, created: usize) {
        self.dispatch_seconds.observe(took.as_secs_f64());
        self.dispatched.inc_by(count(created));
    }

    /// One reaper pass.
    pub fn reaped(&self, outcome: &store::ReapOutcome) {
        for (action, n) in [
            ("lease_expired", outcome.expired),
            ("node_offline", outcome.offline_nodes),
            ("requeued_from_offline", outcome.from_offline),
        ] {
            if n > 0 {
                self.reaper
                    .get_or_create(&label("action", action))
                    .inc_by(count(n));
            }
        }
    }

    /// One webhook try.
    pub fn webhook(&self, result: &store::WebhookResult) {
        let outcome = match result {
            store::WebhookResult::Sent => "sent",
            store::WebhookResult::Retry(..) => "retry",
            store::WebhookResult::Failed(_) => "failed",
        };
        self.webhooks
            .get_or_create(&label("outcome", outcome))
            .inc();
    }

    /// One operator alert's outcome.
    pub fn alert(&self, event: &str, outcome: &str) {
        let labels = vec![
            ("event".to_string(), event.to_string()),
            ("outcome".to_string(), outcome.to_string()),
        ];
        self.alerts.get_or_create(&labels).inc();
    }

    /// Rate-limit and session events in a report a node sent.
    pub fn report(&self, report: &Report) {
        let mut reasons = Vec::new();
        match report {
            Report::Failed(f) => reasons.push(f.reason),
            Report::Completed(Some(c)) => {
                reasons.extend(c.results.iter().filter(|r| !r.success).map(|r| r.reason));
            }
            _ => {}
        }
        for reason in reasons {
            let event = match reason {
                Reason::RateLimited => "rate_limited",
                Reason::SessionExpired => "session_expired",
                Reason::Closed => "closed",
                _ => continue,
            };
            self.node_events.get_or_create(&label("event", event)).inc();
        }
    }

    /// The exposition: event metrics, then levels read now.
    ///
    /// # Errors
    /// Database failures.
    pub async fn render(&self, state: &AppState) -> store::Result<String> {
        let now = state.clock.now();
        let c = &state.config.cascade;
        let mut levels = Registry::default();
        let allocations = Family::<Labels, Gauge>::default();
        for status in ["pending", "claimed", "executing", "completed", "failed"] {
            allocations.get_or_create(&label("status", status)).set(0);
        }
        for (status, n) in state.store.allocation_counts().await? {
            allocations.get_or_create(&label("status", &status)).set(n);
        }
        levels.register("cascade_allocations", "Allocations by status", allocations);
        let outbox = Family::<Labels, Gauge>::default();
        for status in ["pending", "sent", "failed"] {
            outbox.get_or_create(&label("status", status)).set(0);
        }
        for (status, n) in state.store.webhook_counts().await? {
            outbox.get_or_create(&label("status", &status)).set(n);
        }
        levels.register(
            "cascade_webhook_outbox",
            "Queued webhook messages by status (pending, sent, failed)",
            outbox,
        );
        let online = Gauge::<i64>::default();
        let in_use = Family::<Labels, Gauge>::default();
        let capacity = Family::<Labels, Gauge>::default();
        let held = Family::<Labels, Gauge>::default();
        let cooling = Family::<Labels, Gauge>::default();
        for node in state.store.list_nodes(Some(1)).await? {
            let up = node.is_online(now, c.offline_after);
            online.inc_by(i64::from(up));
            if !up {
                continue;
            }
            let l = vec![
                ("node".to_string(), node.name.clone()),
                ("node_id".to_string(), node.id.clone()),
            ];
            in_use
                .get_or_create(&l)
                .set(node.in_use.unwrap_or(node.held_feeds));
            capacity
                .get_or_create(&l)
                .set(node.capacity(c.default_max_capacity));
            held.get_or_create(&l).set(node.held_feeds);
            cooling
                .get_or_create(&l)
                .set(i64::from(node.cooldown_until.is_some_and(|t| t > now)));
        }
        levels.register("cascade_nodes_online", "Child nodes online", online);
        levels.register(
            "cascade_node_in_use",
            "Feeds a node reports running",
            in_use,
        );
        levels.register("cascade_node_capacity", "Feeds a node may hold", capacity);
        levels.register(
            "cascade_node_held_feeds",
            "Feeds a node holds by the parent's records",
            held,
        );
        levels.register(
            "cascade_node_cooling",
            "1 while a node's WeChat login cools down after a rate limit",
            cooling,
        );
        let logins = Family::<Labels, Gauge>::default();
        let next_expiry = Family::<Labels, Gauge>::default();
        for kind in ["mp", "weread"] {
            for st in crate::logins::LoginState::ALL {
                let l = vec![
                    ("kind".to_string(), kind.to_string()),
                    ("state".to_string(), st.as_str().to_string()),
                ];
                logins.get_or_create(&l).set(0);
            }
        }
        let mut soonest: std::collections::BTreeMap<String, i64> = Default::default();
        for login in state.store.list_node_logins(None).await? {
            let l = vec![
                ("kind".to_string(), login.kind.clone()),
                ("state".to_string(), login.state.clone()),
            ];
            logins.get_or_create(&l).inc();
            if login.state != "expired"
                && let Some(t) = login.expires_at.filter(|t| *t > now)
            {
                let left = (t - now).num_seconds();
                let e = soonest.entry(login.kind).or_insert(left);
                *e = (*e).min(left);
            }
        }
        for (kind, left) in soonest {
            next_expiry.get_or_create(&label("kind", &kind)).set(left);
        }
        levels.register(
            "cascade_logins",
            "Logins the nodes report, by kind and state",
            logins,
        );
        levels.register(
            "cascade_login_next_expiry_seconds",
            "Seconds until the next known expiry of a login not yet expired, by kind",
            next_expiry,
        );
        let sources = Family::<Labels, Gauge>::default();
        let rows = state.store.source_rows().await?;
        for source in crate::parent::ops::sources::chain(state) {
            let closed = rows
                .iter()
                .any(|r| r.source == source && r.state == "closed");
            sources
                .get_or_create(&label("source", &source))
                .set(i64::from(!closed));
        }
        levels.register(
            "cascade_source_open",
            "1 while a WeChat source of the chain works, 0 once found closed for everyone",
            sources,
        );
        let mut out = String::new();
        let rendered = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &levels))
            .and_then(|()| encode_eof(&mut out));
        if rendered.is_err() {
            tracing::warn!("metrics could not be encoded");
        }
        Ok(out)
    }
}
