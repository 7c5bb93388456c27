//! Renewal of `wr_skey` without a scan (`/web/login/renewal`, LOGINS.md §2.3), and when to
//! try it.

use super::*;

/// The result of one renewal attempt (LOGINS.md §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// A new `wr_skey` arrived: save `jar` at once (the old key dies soon).
    Renewed {
        /// The whole jar with the rotated cookies merged in.
        jar: WereadJar,
        /// Estimated end of the new `wr_skey`.
        skey_expires_at: DateTime<Utc>,
    },
    /// WeRead said yes but sent no new `wr_skey` (or only a clearing one): keep the jar and
    /// try again later.
    Unconfirmed,
    /// WeRead refused (`-2013`, including a `ql`/`wr_ql` mismatch, or another code): keep the
    /// jar and try again later.
    Refused {
        /// `errCode`.
        code: i64,
        /// `errMsg`.
        message: String,
    },
    /// The web login expired (`-12013`): only a new QR scan helps.
    ScanNeeded {
        /// `errMsg`.
        message: String,
    },
}

/// Renews `wr_skey` without a scan: `POST {base}/web/login/renewal` with the whole jar.
///
/// # Errors
/// Network trouble or an answer that is not JSON: try again later, the jar is unchanged.
pub async fn renew(
    http: &reqwest::Client,
    base: &str,
    jar: &WereadJar,
) -> Result<RenewOutcome, LoginError> {
    let base = base.trim_end_matches('/');
    let ql = jar.get("wr_ql").is_some_and(|v| v.expose() == "1");
    let body = serde_json::json!({ "rq": "%2Fweb%2Fbook%2Fread", "ql": ql });
    let resp = authenticated(http.post(format!("{base}/web/login/renewal")), base, jar)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json;charset=UTF-8",
        )
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| net(&e))?;
    let (v, set_cookies) = Client::json(resp).await?;
    if let Some((code, message)) = error_envelope(&v) {
        tracing::warn!(code, "WeRead renewal refused");
        return Ok(match classify(code) {
            ErrorKind::ScanNeeded => RenewOutcome::ScanNeeded { message },
            _ => RenewOutcome::Refused { code, message },
        });
    }
    let now = Utc::now();
    let mut renewed = jar.clone();
    let changed = renewed.merge_set_cookies(set_cookies.iter().map(String::as_str), now);
    let new_skey = changed.iter().any(|n| n == "wr_skey")
        && renewed.get("wr_skey").is_some_and(|s| !s.is_empty());
    if !new_skey {
        tracing::warn!("WeRead renewal answered without a new wr_skey; the jar is kept");
        return Ok(RenewOutcome::Unconfirmed);
    }
    tracing::info!(cookies = ?changed, "WeRead wr_skey renewed");
    Ok(RenewOutcome::Renewed {
        jar: renewed,
        skey_expires_at: later(now, SKEY_LIFETIME),
    })
}

/// When to renew a login's `wr_skey` next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalSchedule {
    /// Time between renewals, counted from when the current `wr_skey` was issued.
    pub every: Duration,
}

impl RenewalSchedule {
    /// Longest period allowed: ten minutes before the estimated end of a `wr_skey`.
    pub const MAX_EVERY: Duration = Duration::from_secs(SKEY_LIFETIME.as_secs() - 600);
    /// Shortest period allowed.
    pub const MIN_EVERY: Duration = Duration::from_secs(60);

    /// A schedule renewing every `every`, kept between [`Self::MIN_EVERY`] and
    /// [`Self::MAX_EVERY`] so a key is always renewed well before it lapses.
    pub fn new(every: Duration) -> Self {
        Self {
            every: every.clamp(Self::MIN_EVERY, Self::MAX_EVERY),
        }
    }

    /// The schedule from `weread_renew_every`.
    pub fn from_config(c: &CascadeConfig) -> Self {
        Self::new(Duration::from_secs(c.weread_renew_every))
    }

    /// When a key issued at `skey_issued_at` should be renewed.
    pub fn next_renewal(&self, skey_issued_at: DateTime<Utc>) -> DateTime<Utc> {
        later(skey_issued_at, self.every)
    }

    /// Whether a key issued at `skey_issued_at` is due for renewal at `now`.
    pub fn is_due(&self, skey_issued_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now >= self.next_renewal(skey_issued_at)
    }

    /// When to try again after `failures` failed renewals in a row (1 = the first): one
    /// minute, doubling, at most a quarter of the period.
    pub fn retry_at(&self, now: DateTime<Utc>, failures: u32) -> DateTime<Utc> {
        let exp = failures.saturating_sub(1).min(16);
        let backoff = Duration::from_secs(60u64 << exp).min(self.every / 4);
        later(now, backoff.max(Duration::from_secs(1)))
    }
}

/// What to do with a login after a renewal attempt ([`RenewalSchedule::step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewalStep {
    /// Save `jar` now (the old key dies soon) and renew again at `next`.
    Save {
        /// The renewed jar.
        jar: WereadJar,
        /// Estimated end of the new `wr_skey`.
        skey_expires_at: DateTime<Utc>,
        /// Next renewal.
        next: DateTime<Utc>,
    },
    /// Keep the jar and try again at this time (refused, unconfirmed, network trouble).
    RetryAt(DateTime<Utc>),
    /// The web login expired (`-12013`): mark the login `expired`; only a QR scan helps.
    ScanNeeded {
        /// WeRead's message.
        reason: String,
    },
}

impl RenewalSchedule {
    /// The step after a renewal attempt at `now`; `failures` counts failed attempts in a row
    /// before this one.
    pub fn step(
        &self,
        result: Result<RenewOutcome, LoginError>,
        now: DateTime<Utc>,
        failures: u32,
    ) -> RenewalStep {
        match result {
            Ok(RenewOutcome::Renewed {
                jar,
                skey_expires_at,
            }) => RenewalStep::Save {
                jar,
                skey_expires_at,
                next: self.next_renewal(now),
            },
            Ok(RenewOutcome::ScanNeeded { message }) => RenewalStep::ScanNeeded { reason: message },
            Ok(RenewOutcome::Unconfirmed | RenewOutcome::Refused { .. }) | Err(_) => {
                RenewalStep::RetryAt(self.retry_at(now, failures.saturating_add(1)))
            }
        }
    }
}
