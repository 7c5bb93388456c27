//! The login keeper (issue 12 §4): a child task that keeps its logins alive and their states
//! true without a scan. It renews every `weread` login's `wr_skey` before it lapses
//! ([`RenewalSchedule`], `weread_renew_every`) and saves the rotated jar at once; a `-12013`
//! marks the login `expired`; refusals and network trouble keep the jar and retry with a
//! bounded backoff. It also moves logins with a known `expires_at` to `expiring` (within
//! [`EXPIRING_WITHIN`]) and `expired`, warning once per transition (the hook for reminders).
//!
//! The keeper sleeps until the next thing is due (at most [`MAX_TICK`]) and never spins.

use super::weread::{self, RenewalSchedule, RenewalStep, WereadJar};
use super::{EXPIRING_WITHIN, Login, LoginKind, LoginSecrets, LoginState, LoginStore};
use crate::config::CascadeConfig;
use crate::telemetry::untrusted;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest the keeper sleeps between looks at the store (logins another process added
/// are picked up within it).
pub const MAX_TICK: Duration = Duration::from_secs(60);

/// Failed renewals in a row and when to try again, per login id.
#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    at: DateTime<Utc>,
}

/// Keeps a child's logins renewed and their expiry states current.
#[derive(Debug)]
pub struct Keeper {
    store: Arc<LoginStore>,
    http: reqwest::Client,
    base_url: String,
    schedule: RenewalSchedule,
    retries: HashMap<String, Retry>,
}

impl Keeper {
    /// A keeper renewing against `weread_base_url` every `weread_renew_every`.
    pub fn new(store: Arc<LoginStore>, http: reqwest::Client, config: &CascadeConfig) -> Self {
        Self::with_schedule(
            store,
            http,
            &config.weread_base_url,
            RenewalSchedule::from_config(config),
        )
    }

    /// A keeper with an explicit WeRead base URL and schedule.
    pub fn with_schedule(
        store: Arc<LoginStore>,
        http: reqwest::Client,
        base_url: &str,
        schedule: RenewalSchedule,
    ) -> Self {
        Self {
            store,
            http,
            base_url: base_url.to_string(),
            schedule,
            retries: HashMap::new(),
        }
    }

    /// Whether a `weread` login is worth renewing at all (a scan is needed otherwise).
    fn renewable(l: &Login, now: DateTime<Utc>) -> bool {
        l.kind == LoginKind::Weread
            && !matches!(l.state, LoginState::Expired | LoginState::PendingScan)
            && l.expires_at.is_none_or(|t| t > now)
    }

    /// When `l` should be renewed next (a pending retry wins over the schedule).
    fn renewal_due(&self, l: &Login) -> Option<DateTime<Utc>> {
        if let Some(r) = self.retries.get(&l.id) {
            return Some(r.at);
        }
        // Never renewed by this store: renew at once, the key's age is unknown.
        Some(
            l.renewed_at
                .map_or(DateTime::<Utc>::MIN_UTC, |t| self.schedule.next_renewal(t)),
        )
    }

    /// Does everything due at `now` (expiry states, then renewals) and returns when the next
    /// thing is due, if anything is.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.track_expiry(now);
        let logins = self.store.all();
        self.retries.retain(|id, _| {
            logins
                .iter()
                .any(|l| &l.id == id && Self::renewable(l, now))
        });
        for l in logins.iter().filter(|l| Self::renewable(l, now)) {
            if self.renewal_due(l).is_some_and(|t| t <= now) {
                self.renew(l, now).await;
            }
        }
        self.track_expiry(now);
        self.next_due(now)
    }

    /// Moves expiry states along, warning once per transition.
    fn track_expiry(&self, now: DateTime<Utc>) {
        for (l, to) in self.store.track_expiry(now) {
            let (id, kind) = (l.id.as_str(), l.kind.as_str());
            match to {
                LoginState::Expiring => tracing::warn!(
                    login = id,
                    kind,
                    expires_at = ?l.expires_at,
                    "login expires within 24 hours; scan a new one soon"
                ),
                _ => tracing::warn!(login = id, kind, "login expired; a new scan is needed"),
            }
        }
    }

    /// One renewal attempt for `l`, and what follows from it.
    async fn renew(&mut self, l: &Login, now: DateTime<Utc>) {
        let jar = WereadJar::from_pairs(l.secrets.cookies.iter().cloned());
        let result = weread::renew(&self.http, &self.base_url, &jar).await;
        let failures = self.retries.get(&l.id).map_or(0, |r| r.failures);
        let detail = match &result {
            Ok(weread::RenewOutcome::Refused { code, .. }) => {
                Some(format!("WeRead renewal refused ({code})"))
            }
            Ok(weread::RenewOutcome::Unconfirmed) => {
                Some("WeRead renewal sent no new wr_skey".to_string())
            }
            Err(e) => Some(format!("WeRead renewal failed: {e}")),
            Ok(_) => None,
        };
        match self.schedule.step(result, now, failures) {
            RenewalStep::Save { jar, .. } => {
                self.retries.remove(&l.id);
                let secrets = LoginSecrets {
                    token: l.secrets.token.clone(),
                    cookies: jar.pairs().to_vec(),
                };
                if let Err(e) = self.store.replace_secrets(&l.id, secrets, now) {
                    tracing::warn!(login = %l.id, error = %e, "could not save the renewed login");
                }
            }
            RenewalStep::RetryAt(at) => {
                let failures = failures.saturating_add(1);
                self.retries.insert(l.id.clone(), Retry { failures, at });
                let error = detail.unwrap_or_else(|| "WeRead renewal failed".to_string());
                tracing::warn!(login = %l.id, failures, retry_at = %at, error = %untrusted(&error), "WeRead renewal will be retried");
                self.store.mark_error(&l.id, &error);
            }
            RenewalStep::ScanNeeded { reason } => {
                self.retries.remove(&l.id);
                tracing::warn!(login = %l.id, kind = "weread", reason = %untrusted(&reason), "login expired; a new scan is needed");
                self.store.mark_expired(
                    &l.id,
                    &format!("WeRead web login expired (-12013): {reason}"),
                );
            }
        }
    }

    /// The earliest of: the next renewal or retry, the next expiry transition.
    fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let logins = self.store.all();
        let renewals = logins
            .iter()
            .filter(|l| Self::renewable(l, now))
            .filter_map(|l| self.renewal_due(l));
        let expiries = logins.iter().filter_map(|l| {
            let end = l.expires_at?;
            match l.state {
                LoginState::Expired => None,
                LoginState::Valid => Some(end - EXPIRING_WITHIN),
                _ => Some(end),
            }
        });
        renewals.chain(expiries).min()
    }

    /// Runs until `shutdown`: a tick, then sleep until the next due time (at most
    /// [`MAX_TICK`]; at least one second after a tick, so a failing clock cannot spin it).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let now = Utc::now();
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = self.tick(now) => next,
            };
            let wait = next
                .map_or(MAX_TICK, |t| (t - Utc::now()).to_std().unwrap_or_default())
                .clamp(Duration::from_secs(1), MAX_TICK);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
