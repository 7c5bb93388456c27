//! Logins as first-class objects on a child (issue 12 §1): each of a kind (`mp`, `weread`),
//! with a state, expiry, cooldown and secrets, kept in a child-local file
//! `<data_dir>/logins.json` (written atomically, mode 0600) so restarts keep them. The
//! fetchers take a login per request from [`LoginStore::pick`] (least recently used among the
//! usable ones) and report back what the upstream said.
//!
//! Secrets live in [`LoginSecrets`] as [`Secret`]s: they print as `***` and are serialised
//! only into the store file, never into a [`LoginView`] (what heartbeats and the parent see).

pub mod budget;
pub mod keeper;
pub mod mp_qr;
pub mod qr_term;
mod scanned;
mod store;
pub mod weread;

pub use scanned::{save_scanned, scanned_id};
pub use store::{LoginStore, StoreError};

use crate::protocol::credentials::Secret;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long before `expires_at` a valid login shows as `expiring`.
pub const EXPIRING_WITHIN: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The file name of the store inside `data_dir`.
pub const STORE_FILE: &str = "logins.json";

/// The id of the `mp` login made from the old `wechat_token`/`wechat_cookie` keys.
pub const CONFIG_MP_ID: &str = "config-mp";

/// Which upstream a login is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginKind {
    /// The mp.weixin.qq.com backend (token + cookie jar); serves `wechat` feeds.
    Mp,
    /// The weread.qq.com web login (`wr_vid`, `wr_skey`, `wr_rt`, …).
    Weread,
}

impl LoginKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mp => "mp",
            Self::Weread => "weread",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "mp" => Some(Self::Mp),
            "weread" => Some(Self::Weread),
            _ => None,
        }
    }
}

/// Where a login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    /// Usable.
    Valid,
    /// Usable, but expiring soon.
    Expiring,
    /// Dead: a new scan is needed.
    Expired,
    /// Rate limited upstream: skipped until `cooldown_until`.
    Cooling,
    /// A QR flow is waiting for its scan.
    PendingScan,
}

impl LoginState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Cooling => "cooling",
            Self::PendingScan => "pending_scan",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "valid" => Some(Self::Valid),
            "expiring" => Some(Self::Expiring),
            "expired" => Some(Self::Expired),
            "cooling" => Some(Self::Cooling),
            "pending_scan" => Some(Self::PendingScan),
            _ => None,
        }
    }

    /// Every state, for metrics.
    pub const ALL: [Self; 5] = [
        Self::Valid,
        Self::Expiring,
        Self::Expired,
        Self::Cooling,
        Self::PendingScan,
    ];
}

/// What a login authenticates with. `Debug` shows names only, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginSecrets {
    /// The `mp` session token (the `token` query parameter).
    pub token: Option<Secret>,
    /// The cookie jar, in order: `slave_sid`, … for `mp`; `wr_vid`, `wr_skey`, … for `weread`.
    pub cookies: Vec<(String, Secret)>,
}

impl LoginSecrets {
    /// Reads a `Cookie` header value (`a=1; b=2`) into a jar.
    pub fn from_cookie_header(token: Option<Secret>, header: &str) -> Self {
        let cookies = header
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| !k.trim().is_empty())
            .map(|(k, v)| (k.trim().to_string(), Secret::new(v.trim())))
            .collect();
        Self { token, cookies }
    }

    /// The jar as a `Cookie` header value.
    pub fn cookie_header(&self) -> Secret {
        let parts: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
        Secret::new(parts.join("; "))
    }

    /// One cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&Secret> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets (or adds) one cookie.
    pub fn set_cookie(&mut self, name: &str, value: Secret) {
        match self.cookies.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.cookies.push((name.to_string(), value)),
        }
    }

    /// Every secret value, for tests that check none leaks.
    pub fn values(&self) -> Vec<&str> {
        self.token
            .iter()
            .chain(self.cookies.iter().map(|(_, v)| v))
            .map(Secret::expose)
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// One login held by a child.
#[derive(Debug, Clone, PartialEq)]
pub struct Login {
    /// Stable id, unique on this child.
    pub id: String,
    /// Which upstream.
    pub kind: LoginKind,
    /// Account name (nickname), or a label.
    pub name: String,
    /// Where it stands.
    pub state: LoginState,
    /// When the session ends, when known.
    pub expires_at: Option<DateTime<Utc>>,
    /// While `cooling`: when it may be used again.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Last successful upstream call.
    pub last_ok_at: Option<DateTime<Utc>>,
    /// Last upstream error, as text without secrets.
    pub last_error: Option<String>,
    /// Last time [`LoginStore::pick`] handed it out.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Token and cookies.
    pub secrets: LoginSecrets,
    /// When the secrets were last renewed without a scan (`weread`: the current `wr_skey`
    /// was issued); `None` when never (the keeper renews such a login at once).
    pub renewed_at: Option<DateTime<Utc>>,
    /// When its recent upstream calls were made (within the longest budget window), oldest
    /// first: what its budget counts.
    pub spent: Vec<DateTime<Utc>>,
    /// `weread`: the books it has put on its shelf (`addToShelf` is not sent twice).
    pub shelved: Vec<String>,
}

impl Login {
    /// A new valid login.
    pub fn new(id: &str, kind: LoginKind, name: &str, secrets: LoginSecrets) -> Self {
        Self {
            id: id.to_string(),
            kind,
            name: name.to_string(),
            state: LoginState::Valid,
            expires_at: None,
            cooldown_until: None,
            last_ok_at: None,
            last_error: None,
            last_used_at: None,
            secrets,
            renewed_at: None,
            spent: Vec::new(),
            shelved: Vec::new(),
        }
    }

    /// Whether it may serve a request at `now`: valid or expiring, or cooling with the
    /// cooldown over, and not past its known expiry.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        let state_ok = match self.state {
            LoginState::Valid | LoginState::Expiring => true,
            LoginState::Cooling => self.cooldown_until.is_none_or(|t| t <= now),
            LoginState::Expired | LoginState::PendingScan => false,
        };
        state_ok && self.expires_at.is_none_or(|t| t > now)
    }

    /// What may leave the child: everything but the secrets.
    pub fn view(&self) -> LoginView {
        LoginView {
            id: self.id.clone(),
            kind: self.kind,
            name: self.name.clone(),
            state: self.state,
            expires_at: self.expires_at,
            cooldown_until: self.cooldown_until,
            last_ok_at: self.last_ok_at,
            last_error: self.last_error.clone(),
            budget: None,
        }
    }
}

/// A login without its secrets: what heartbeats carry and the parent stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginView {
    /// Stable id on its child.
    pub id: String,
    /// Which upstream.
    pub kind: LoginKind,
    /// Account name.
    #[serde(default)]
    pub name: String,
    /// Where it stands.
    pub state: LoginState,
    /// Session end, when known.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// End of the cooldown.
    #[serde(default)]
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Last success.
    #[serde(default)]
    pub last_ok_at: Option<DateTime<Utc>>,
    /// Last error.
    #[serde(default)]
    pub last_error: Option<String>,
    /// What its budget has left, when its kind has caps (an additive field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<budget::BudgetView>,
}

#[cfg(test)]
mod tests;
