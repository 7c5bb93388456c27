//! Expiry reminders of the logins nodes report (issue 12 §4, WeRSS #413): one alert 24 h before
//! a login's `expires_at`, one 6 h before, one on expiry (the node reports it `expired`, or
//! `expires_at` passed) — each once per login and expiry, never repeated.
//!
//! Each login row keeps the highest reminder sent and the `expires_at` it was for. An
//! evaluation sends only the highest stage due (a login first seen expired gets only the expiry
//! alert), claimed by a compare-and-set on the row, so parents sharing a database send it once
//! and a restarted parent does not send it again. When `expires_at` moves later (a renewal, a
//! new scan), or an expired login is usable again, the stage drops silently to the one due now,
//! so the reminders of the new expiry come in their turn. Logins are evaluated after each
//! heartbeat that reports them and by a sweep every [`SWEEP_EVERY`] (a node that went silent
//! still gets its expiry alert), at the parent's clock. Logins of disabled nodes are left alone.

use super::AppState;
use super::alerts::{self, Alert};
use crate::protocol::time::to_wire;
use crate::store::{self, LoginReminder};
use chrono::{NaiveDateTime, TimeDelta};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Period of the sweep over every login.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A reminder stage, in the order they come; stored as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Nothing due.
    None = 0,
    /// 24 h or less left.
    Day = 1,
    /// 6 h or less left.
    SixHours = 2,
    /// Expired.
    Expired = 3,
}

impl Stage {
    /// The stored number.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// A stored number (unknown numbers read as the nearest stage).
    pub fn from_i64(n: i64) -> Self {
        match n {
            i64::MIN..=0 => Self::None,
            1 => Self::Day,
            2 => Self::SixHours,
            _ => Self::Expired,
        }
    }

    /// The alert's event name.
    pub fn event(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Day => "login_expires_24h",
            Self::SixHours => "login_expires_6h",
            Self::Expired => "login_expired",
        }
    }

    /// The highest stage due at `now` for a login in `state` that ends at `expires_at`.
    pub fn due(state: &str, expires_at: Option<NaiveDateTime>, now: NaiveDateTime) -> Self {
        if state == "expired" {
            return Self::Expired;
        }
        let Some(end) = expires_at else {
            return Self::None;
        };
        let left = end - now;
        if left <= TimeDelta::zero() {
            Self::Expired
        } else if left <= TimeDelta::hours(6) {
            Self::SixHours
        } else if left <= TimeDelta::hours(24) {
            Self::Day
        } else {
            Self::None
        }
    }
}

/// What one evaluation does with a login: the reminder columns to write, and whether that write
/// claims a reminder to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// New `reminded_stage`.
    pub stage: Stage,
    /// New `reminded_expires_at`.
    pub stage_expires_at: Option<NaiveDateTime>,
    /// The reminder to send once the write is applied.
    pub send: Option<Stage>,
}

/// Decides for one login at `now`; `None` when its row stays as it is.
pub fn decide(r: &LoginReminder, now: NaiveDateTime) -> Option<Decision> {
    let l = &r.login;
    let due = Stage::due(&l.state, l.expires_at, now);
    let sent = Stage::from_i64(r.stage);
    let moved_later =
        matches!((r.stage_expires_at, l.expires_at), (Some(old), Some(new)) if new > old);
    let usable_again = sent == Stage::Expired
        && due < Stage::Expired
        && matches!(l.state.as_str(), "valid" | "expiring" | "cooling");
    let (base, base_for) = if sent > Stage::None && (moved_later || usable_again) {
        // A new expiry: what was sent counts only up to the stage the login is in now.
        (sent.min(due), l.expires_at)
    } else {
        (sent, r.stage_expires_at)
    };
    if due > base {
        return Some(Decision {
            stage: due,
            stage_expires_at: l.expires_at,
            send: Some(due),
        });
    }
    (base.as_i64() != r.stage || base_for != r.stage_expires_at).then_some(Decision {
        stage: base,
        stage_expires_at: base_for,
        send: None,
    })
}

/// The alert of `stage` for a login.
pub fn alert(stage: Stage, r: &LoginReminder) -> Alert {
    let l = &r.login;
    let who = if l.name.trim().is_empty() {
        l.login_id.as_str()
    } else {
        l.name.as_str()
    };
    let at = l
        .expires_at
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    let subject = format!(
        "The {} login {who} (id {}) of node {} ({})",
        l.kind, l.login_id, l.node_name, l.node_id
    );
    let (title, text) = match stage {
        Stage::Expired => (
            format!("Login expired: {who} ({}) on {}", l.kind, l.node_name),
            format!(
                "{subject} has expired{}; the node no longer uses it. Log in again by scanning a new QR code.",
                at.map(|t| format!(" ({t})")).unwrap_or_default()
            ),
        ),
        Stage::SixHours | Stage::Day | Stage::None => {
            let hours = if stage == Stage::Day { 24 } else { 6 };
            (
                format!(
                    "Login expires within {hours} h: {who} ({}) on {}",
                    l.kind, l.node_name
                ),
                format!(
                    "{subject} expires at {}. Log in again by scanning a new QR code before then.",
                    at.unwrap_or_default()
                ),
            )
        }
    };
    Alert::new(stage.event(), title, text)
        .field("node_id", l.node_id.clone())
        .field("node_name", l.node_name.clone())
        .field("login_id", l.login_id.clone())
        .field("kind", l.kind.clone())
        .field("name", l.name.clone())
        .field("expires_at", l.expires_at.map(to_wire))
}

/// Evaluates the logins of `node_id` (every node's when `None`) at the state's clock and
/// raises the reminders this parent claimed; returns how many.
///
/// # Errors
/// Database failures.
pub async fn check(state: &AppState, node_id: Option<&str>) -> store::Result<usize> {
    let now = state.clock.now();
    let mut raised = 0;
    for r in state
        .store
        .login_reminders(node_id.map(str::to_string))
        .await?
    {
        let Some(d) = decide(&r, now) else {
            continue;
        };
        let claimed = state
            .store
            .set_login_reminder(r.clone(), d.stage.as_i64(), d.stage_expires_at)
            .await?;
        if let (true, Some(stage)) = (claimed, d.send) {
            alerts::raise(state, alert(stage, &r));
            raised += 1;
        }
    }
    Ok(raised)
}

/// Runs the sweep until `token` is cancelled: at once, then every [`SWEEP_EVERY`]; errors are
/// logged, never fatal.
pub async fn run(state: AppState, token: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = check(&state, None).await {
                    tracing::warn!(error = %e, "login reminder sweep failed; retrying next tick");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NodeLogin;

    fn t0() -> NaiveDateTime {
        crate::protocol::time::parse("2026-03-01T12:00:00").expect("time")
    }

    fn row(state: &str, left_h: Option<i64>, stage: Stage, for_h: Option<i64>) -> LoginReminder {
        LoginReminder {
            login: NodeLogin {
                node_id: "n".into(),
                node_name: "node".into(),
                login_id: "l".into(),
                kind: "mp".into(),
                name: "acct".into(),
                state: state.into(),
                expires_at: left_h.map(|h| t0() + TimeDelta::hours(h)),
                cooldown_until: None,
                last_ok_at: None,
                last_error: None,
                budget: None,
            },
            stage: stage.as_i64(),
            stage_expires_at: for_h.map(|h| t0() + TimeDelta::hours(h)),
        }
    }

    fn sends(r: &LoginReminder) -> Option<Stage> {
        decide(r, t0()).and_then(|d| d.send)
    }

    #[test]
    fn only_the_highest_due_stage_is_sent_once() {
        assert_eq!(sends(&row("valid", Some(48), Stage::None, None)), None);
        assert_eq!(
            decide(&row("valid", Some(48), Stage::None, None), t0()),
            None
        );
        assert_eq!(
            sends(&row("valid", Some(23), Stage::None, None)),
            Some(Stage::Day)
        );
        assert_eq!(
            sends(&row("valid", Some(5), Stage::None, None)),
            Some(Stage::SixHours)
        );
        assert_eq!(
            sends(&row("valid", Some(-1), Stage::None, None)),
            Some(Stage::Expired)
        );
        assert_eq!(
            sends(&row("expired", None, Stage::None, None)),
            Some(Stage::Expired)
        );
        assert_eq!(
            sends(&row("expired", Some(30), Stage::Day, Some(30))),
            Some(Stage::Expired)
        );
        // Already sent: nothing, and nothing to write.
        assert_eq!(
            decide(&row("valid", Some(23), Stage::Day, Some(23)), t0()),
            None
        );
        assert_eq!(
            decide(&row("valid", Some(-2), Stage::Expired, Some(-2)), t0()),
            None
        );
        assert_eq!(
            sends(&row("valid", Some(5), Stage::Day, Some(5))),
            Some(Stage::SixHours)
        );
    }

    #[test]
    fn a_later_expiry_resets_silently_an_earlier_one_does_not() {
        // Renewed far out: back to nothing sent, nothing sent now.
        let d = decide(&row("valid", Some(72), Stage::SixHours, Some(5)), t0()).expect("write");
        assert_eq!((d.stage, d.send), (Stage::None, None));
        // Renewed a little (still within 24 h): the 24 h reminder is not repeated.
        let d = decide(&row("valid", Some(20), Stage::Day, Some(19)), t0()).expect("write");
        assert_eq!((d.stage, d.send), (Stage::Day, None));
        // Earlier expiry: no reset; the next stage comes when due.
        assert_eq!(
            decide(&row("valid", Some(20), Stage::Day, Some(22)), t0()),
            None
        );
        // Expired, then usable again without a known expiry: reset, so the next expiry alerts.
        let d = decide(&row("valid", None, Stage::Expired, None), t0()).expect("write");
        assert_eq!((d.stage, d.send), (Stage::None, None));
        // Waiting for its scan is not usable: no reset.
        assert_eq!(
            decide(&row("pending_scan", None, Stage::Expired, None), t0()),
            None
        );
    }
}
