//! A fake `weread.qq.com` web API on `127.0.0.1:0` (LOGINS.md §3): the QR login
//! (`getLoginUid`, a long-polled `getLoginInfo` answering each `logicCode` as the test drives
//! it, `NEED_OTP` with a code the test reads here), `userInfo`, renewal rotating `wr_skey`
//! (the old key valid for a grace period) with its refusals and fault modes, and the
//! WeChat-account data of SOURCES.md §7 (`/web/mp/articles`, `/api/mp/cover`,
//! `/web/mp/content`: see [`WereadGroup`], [`FakeWeread::serve_account`] and the gates).
//!
//! Drive it with the methods of [`FakeWeread`] or the control routes
//! `POST /__fake/weread/{scan,confirm,otp,cancel,timeout}` (they act on the newest QR code).

mod login;
mod mp;
mod renewal;

pub use mp::{WereadArticle, WereadGroup, WereadLogEntry, book_id};

use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A fault for the next renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewFault {
    /// `{"succ":1}` with HTTP 200 and no `Set-Cookie`.
    NoSetCookie,
    /// `{"succ":1}` with a clearing `Set-Cookie: wr_skey=; Expires=… 1970`.
    ClearingCookie,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    WaitingScan,
    WaitingConfirm,
    NeedOtp,
    Confirmed,
    Cancelled,
    Done,
}

struct Flow {
    uid: String,
    phase: Phase,
    otp: Option<String>,
    timeout_next: bool,
    otp_expire_next: bool,
}

struct Session {
    name: String,
    skey: String,
    skey_stale: bool,
    old_skeys: Vec<(String, Instant)>,
    rt: String,
    rt_expired: bool,
}

struct Inner {
    hold: Duration,
    require_otp: bool,
    strict_ql: bool,
    grace: Duration,
    under_data: bool,
    nickname: String,
    flows: Vec<Flow>,
    sessions: HashMap<String, Session>,
    renew_faults: VecDeque<RenewFault>,
    poll_faults: VecDeque<u16>,
    renewals: usize,
    next_vid: u64,
    mp: mp::MpData,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the newest flow and wakes the long polls; `None` without a flow.
    fn drive<T>(&self, f: impl FnOnce(&mut Flow, bool) -> T) -> Option<T> {
        let out = {
            let mut inner = self.lock();
            let require_otp = inner.require_otp;
            inner.flows.last_mut().map(|flow| f(flow, require_otp))
        };
        self.changed.notify_waiters();
        out
    }
}

/// Handle to a running fake WeRead server.
#[derive(Clone)]
pub struct FakeWeread {
    base: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

fn otp_code() -> String {
    rand::random_range(1000..=9999u32).to_string()
}

fn random_skey() -> String {
    crate::protocol::credentials::random_token()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect()
}

fn confirm(flow: &mut Flow, require_otp: bool) -> Option<String> {
    if require_otp {
        flow.phase = Phase::NeedOtp;
        flow.otp = Some(otp_code());
    } else {
        flow.phase = Phase::Confirmed;
    }
    flow.otp.clone()
}

impl FakeWeread {
    /// Starts the fake on `127.0.0.1:0`; long polls are held at most 300 ms.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                hold: Duration::from_millis(300),
                require_otp: false,
                strict_ql: true,
                grace: Duration::from_secs(60),
                under_data: false,
                nickname: "WeRead Reader".into(),
                flows: Vec::new(),
                sessions: HashMap::new(),
                renew_faults: VecDeque::new(),
                poll_faults: VecDeque::new(),
                renewals: 0,
                next_vid: 380_000_001,
                mp: mp::MpData::default(),
            }),
            changed: Notify::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let app = mp::routes(renewal::routes(login::routes(Router::new())))
            .route("/__fake/weread/{action}", post(control))
            .with_state(shared.clone());
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Self { base, shared, stop })
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Longest time `getLoginInfo` holds a waiting answer.
    pub fn set_hold(&self, hold: Duration) {
        self.shared.lock().hold = hold;
    }

    /// Whether a confirmation asks for the 4-digit code (`NEED_OTP`).
    pub fn require_otp(&self, on: bool) {
        self.shared.lock().require_otp = on;
    }

    /// Whether renewal checks the body's `ql` against the `wr_ql` cookie (default on).
    pub fn strict_ql(&self, on: bool) {
        self.shared.lock().strict_ql = on;
    }

    /// How long a rotated-out `wr_skey` stays valid (default 60 s).
    pub fn set_grace(&self, grace: Duration) {
        self.shared.lock().grace = grace;
    }

    /// Whether the login success is wrapped in `data`.
    pub fn success_under_data(&self, on: bool) {
        self.shared.lock().under_data = on;
    }

    /// The account name `userInfo` answers for new logins.
    pub fn set_nickname(&self, name: &str) {
        self.shared.lock().nickname = name.to_string();
    }

    /// How many uids (QR codes) were issued.
    pub fn uids_issued(&self) -> usize {
        self.shared.lock().flows.len()
    }

    /// The newest uid.
    pub fn current_uid(&self) -> Option<String> {
        self.shared.lock().flows.last().map(|f| f.uid.clone())
    }

    /// The newest QR code is scanned (`WAITING_CONFIRM`); `false` without one.
    pub fn scan(&self) -> bool {
        self.shared
            .drive(|f, _| f.phase = Phase::WaitingConfirm)
            .is_some()
    }

    /// The phone confirms: success, or `NEED_OTP` when codes are required. Returns the code.
    pub fn confirm(&self) -> Option<String> {
        self.shared.drive(confirm).flatten()
    }

    /// The phone confirms and shows a 4-digit code (`NEED_OTP`), whatever
    /// [`Self::require_otp`] says. Returns the code.
    pub fn confirm_with_otp(&self) -> Option<String> {
        self.shared.drive(|f, _| confirm(f, true)).flatten()
    }

    /// The code the phone shows now.
    pub fn otp_code(&self) -> Option<String> {
        self.shared.lock().flows.last().and_then(|f| f.otp.clone())
    }

    /// The next code checked answers `OTP_EXPIRED`, and the phone shows a new one.
    pub fn expire_otp(&self) {
        self.shared.drive(|f, _| f.otp_expire_next = true);
    }

    /// The phone refuses (`LOGIN_CANCEL`).
    pub fn cancel(&self) -> bool {
        self.shared
            .drive(|f, _| f.phase = Phase::Cancelled)
            .is_some()
    }

    /// The next poll of the newest code answers `LOGIN_TIMEOUT` (once).
    pub fn login_timeout(&self) -> bool {
        self.shared.drive(|f, _| f.timeout_next = true).is_some()
    }

    /// The login's refresh token (`wr_rt`) expires: renewal answers `-12013`.
    pub fn expire_rt(&self, vid: &str) {
        if let Some(s) = self.shared.lock().sessions.get_mut(vid) {
            s.rt_expired = true;
        }
    }

    /// The login's current `wr_skey` expires: data calls answer `-2012` until renewal.
    pub fn expire_skey(&self, vid: &str) {
        if let Some(s) = self.shared.lock().sessions.get_mut(vid) {
            s.skey_stale = true;
        }
    }

    /// Rotated-out keys of the login stop working now.
    pub fn end_grace(&self, vid: &str) {
        if let Some(s) = self.shared.lock().sessions.get_mut(vid) {
            s.old_skeys.clear();
        }
    }

    /// The login's current `wr_skey`.
    pub fn skey(&self, vid: &str) -> Option<String> {
        self.shared.lock().sessions.get(vid).map(|s| s.skey.clone())
    }

    /// Queues a fault for the next renewal.
    pub fn inject_renewal(&self, fault: RenewFault) {
        self.shared.lock().renew_faults.push_back(fault);
    }

    /// The next `getLoginInfo` answers this HTTP status with an HTML page (queued).
    pub fn inject_poll_fault(&self, status: u16) {
        self.shared.lock().poll_faults.push_back(status);
    }

    /// Successful renewals so far.
    pub fn renewals(&self) -> usize {
        self.shared.lock().renewals
    }

    /// Stops the server.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

fn error(code: i64, msg: &str) -> Response {
    Json(json!({"errCode": code, "errMsg": msg, "errLog": "fake", "info": ""})).into_response()
}

fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn control(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(action): axum::extract::Path<String>,
) -> Response {
    let done = match action.as_str() {
        "scan" => shared
            .drive(|f, _| f.phase = Phase::WaitingConfirm)
            .map(|()| Value::Null),
        "confirm" => shared.drive(confirm).map(|otp| json!(otp)),
        "otp" => shared.drive(|f, _| confirm(f, true)).map(|otp| json!(otp)),
        "cancel" => shared
            .drive(|f, _| f.phase = Phase::Cancelled)
            .map(|()| Value::Null),
        "timeout" => shared
            .drive(|f, _| f.timeout_next = true)
            .map(|()| Value::Null),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "unknown action"})),
            )
                .into_response();
        }
    };
    match done {
        Some(otp) => Json(json!({"ok": true, "otp": otp})).into_response(),
        None => (
            StatusCode::CONFLICT,
            Json(json!({"error": "no QR code issued yet"})),
        )
            .into_response(),
    }
}
