//! WeRead web login (LOGINS.md §2) over plain HTTP: the QR flow (`getLoginUid` → QR text →
//! long-poll `getLoginInfo`, including the 4-digit `NEED_OTP` code), the cookie jar it yields,
//! and renewal of `wr_skey` without a scan (`/web/login/renewal`, §2.3).
//!
//! Cookie values are [`Secret`]s: no type here prints one in its `Debug` output, and nothing is
//! logged but cookie names, `logicCode`s and error codes.

use crate::config::CascadeConfig;
use crate::protocol::credentials::Secret;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Estimated life of a `wr_skey` (reported 1–2 h, LOGINS.md §2.4): the lower middle.
pub const SKEY_LIFETIME: Duration = Duration::from_secs(90 * 60);
/// Estimated life of a web login (`wr_rt`), after which only a scan helps (about 7 days).
pub const RT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// The host the phone app confirms a QR code on, whatever API base URL is configured.
pub const CONFIRM_URL: &str = "https://weread.qq.com/web/confirm?uid=";
/// A desktop browser's `User-Agent`, as the web front end sends.
const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                          (KHTML, like Gecko) Chrome/126.0 Safari/537.36";

/// Why a WeRead login or renewal call failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A setting has a value the flow cannot use.
    #[error("WeRead login setting {key}: {message}")]
    Config {
        /// The config key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// WeRead could not be reached or did not answer in time (try again later).
    #[error("WeRead could not be reached: {0}")]
    Network(String),
    /// WeRead answered something this client does not understand.
    #[error("WeRead answered unexpectedly: {0}")]
    Protocol(String),
    /// WeRead answered its error envelope.
    #[error("WeRead error {code}: {message}")]
    Upstream {
        /// `errCode`.
        code: i64,
        /// `errMsg`.
        message: String,
    },
    /// The login was refused on the phone (`LOGIN_CANCEL`).
    #[error("the WeRead login was cancelled on the phone")]
    Cancelled,
    /// No QR code was scanned and confirmed in time.
    #[error(
        "no WeRead QR code was scanned and confirmed ({codes} codes shown); run the login again"
    )]
    QrExpired {
        /// QR codes shown.
        codes: u32,
    },
    /// The 4-digit code was wrong or stale too many times.
    #[error("the 4-digit code shown on the phone was not accepted after {tries} tries")]
    OtpRejected {
        /// Codes sent.
        tries: u32,
    },
    /// WeRead asked for the 4-digit code and none was given.
    #[error("WeRead asked for the 4-digit code shown on the phone and none was given")]
    OtpNotGiven,
    /// Another login flow for the same login is running.
    #[error("a WeRead login for {0} is already running")]
    InProgress(String),
}

/// What WeRead's `LOGIN_TIMEOUT` means during a QR login (disputed, LOGINS.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutMeans {
    /// The normal end of one long poll: poll the same QR again until our own deadline.
    Retry,
    /// The QR code expired: fetch a new one at once.
    Expired,
}

impl std::str::FromStr for TimeoutMeans {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "retry" => Ok(Self::Retry),
            "expired" => Ok(Self::Expired),
            other => Err(format!("'{other}' is neither 'retry' nor 'expired'")),
        }
    }
}

/// How a QR login is run.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// API base URL (`https://weread.qq.com` or a fake), without a trailing `/`.
    pub base_url: String,
    /// What `LOGIN_TIMEOUT` means.
    pub timeout_means: TimeoutMeans,
    /// How long one QR code is polled before a new one is fetched.
    pub qr_lifetime: Duration,
    /// QR codes shown before the flow gives up.
    pub max_qr_codes: u32,
    /// Longest single `getLoginInfo` call; a call that ends by this timeout is simply repeated.
    pub poll_timeout: Duration,
    /// Least time between the starts of two polls (WeRead usually holds each one).
    pub min_poll_interval: Duration,
    /// 4-digit codes sent before the flow gives up.
    pub max_otp_tries: u32,
    /// Network errors in a row (refused connection, 5xx) a poll survives, pausing
    /// `min_poll_interval` times their count in between.
    pub max_network_errors: u32,
    /// Identifies the login for single flight: a second flow with the same key is refused.
    pub flight_key: String,
}

impl LoginOptions {
    /// The options from the child's settings (`weread_base_url`, `weread_login_timeout_means`,
    /// `weread_qr_seconds`).
    ///
    /// # Errors
    /// An unknown `weread_login_timeout_means` or an empty base URL.
    pub fn from_config(c: &CascadeConfig) -> Result<Self, LoginError> {
        let timeout_means =
            c.weread_login_timeout_means
                .parse()
                .map_err(|message| LoginError::Config {
                    key: "weread_login_timeout_means",
                    message,
                })?;
        let base_url = crate::config::normalize_url(&c.weread_base_url);
        if base_url.is_empty() {
            return Err(LoginError::Config {
                key: "weread_base_url",
                message: "is empty".into(),
            });
        }
        Ok(Self {
            flight_key: format!("weread@{base_url}"),
            base_url,
            timeout_means,
            qr_lifetime: Duration::from_secs(c.weread_qr_seconds.max(10)),
            max_qr_codes: 3,
            poll_timeout: Duration::from_secs(70),
            min_poll_interval: Duration::from_secs(1),
            max_otp_tries: 3,
            max_network_errors: 3,
        })
    }
}

/// What the flow reports while it runs (for the terminal, the parent or a webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A QR code to show: `text` is what it encodes.
    Qr {
        /// The QR text, `https://weread.qq.com/web/confirm?uid=…`.
        text: String,
        /// 1 for the first code of this flow, then 2, 3…
        number: u32,
        /// When this client stops polling it.
        expires_at: DateTime<Utc>,
    },
    /// The code was scanned; waiting for the phone to confirm.
    Scanned,
    /// The code expired; a new one follows unless it was the last.
    QrExpired {
        /// Which code.
        number: u32,
    },
    /// Logged in.
    LoggedIn {
        /// Account name.
        account_name: String,
    },
}

/// Why the 4-digit code is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtpAsk {
    /// WeRead asks for the code shown on the phone.
    First,
    /// The last code did not match (`OTP_NOT_MATCH`, or not 4 digits).
    WrongCode,
    /// The last code was stale (`OTP_EXPIRED`): the phone shows a new one.
    CodeExpired,
}

/// A WeRead cookie jar: names in order, values secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WereadJar {
    cookies: Vec<(String, Secret)>,
}

impl WereadJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// A jar from `(name, value)` pairs (e.g. as stored).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Secret)>) -> Self {
        let mut jar = Self::new();
        for (name, value) in pairs {
            jar.set(&name, value);
        }
        jar
    }

    /// A jar from a `Cookie` header value (`a=1; b=2`).
    pub fn from_header(header: &str) -> Self {
        Self::from_pairs(header.split(';').filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (!k.trim().is_empty()).then(|| (k.trim().to_string(), Secret::new(v.trim())))
        }))
    }

    /// The cookies, for storing.
    pub fn pairs(&self) -> &[(String, Secret)] {
        &self.cookies
    }

    /// A cookie's value.
    pub fn get(&self, name: &str) -> Option<&Secret> {
        self.cookies.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets (or replaces) a cookie.
    pub fn set(&mut self, name: &str, value: Secret) {
        match self.cookies.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.cookies.push((name.to_string(), value)),
        }
    }

    /// `wr_vid`, the account's number (not a secret).
    pub fn vid(&self) -> Option<&str> {
        self.get("wr_vid")
            .map(Secret::expose)
            .filter(|v| !v.is_empty())
    }

    /// The `Cookie` header carrying the whole jar.
    pub fn header(&self) -> Secret {
        Secret::new(
            self.cookies
                .iter()
                .map(|(n, v)| format!("{n}={}", v.expose()))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// Merges `Set-Cookie` values: a clearing one (empty value, past expiry, `Max-Age<=0`)
    /// never replaces a value. Returns the names that changed.
    pub fn merge_set_cookies<'a>(
        &mut self,
        lines: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        for line in lines {
            let Some(c) = parse_set_cookie(line, now) else {
                continue;
            };
            if c.clearing {
                continue;
            }
            if self.get(&c.name) != Some(&c.value) {
                self.set(&c.name, c.value);
                changed.push(c.name);
            }
        }
        changed
    }
}

/// One parsed `Set-Cookie`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// Cookie name.
    pub name: String,
    /// Its value.
    pub value: Secret,
    /// Whether it deletes the cookie (empty value, `deleted`, past `Expires`, `Max-Age<=0`).
    pub clearing: bool,
}

/// Parses a `Set-Cookie` header value; `None` without a `name=`.
pub fn parse_set_cookie(line: &str, now: DateTime<Utc>) -> Option<SetCookie> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let value = value.trim().trim_matches('"');
    let mut clearing = value.is_empty() || value == "deleted";
    for attr in parts {
        let (k, v) = attr.trim().split_once('=').unwrap_or((attr.trim(), ""));
        if k.eq_ignore_ascii_case("max-age") && v.trim().parse::<i64>().is_ok_and(|n| n <= 0) {
            clearing = true;
        }
        if k.eq_ignore_ascii_case("expires") && expires_passed(v, now) {
            clearing = true;
        }
    }
    Some(SetCookie {
        name: name.to_string(),
        value: Secret::new(value),
        clearing,
    })
}

fn expires_passed(v: &str, now: DateTime<Utc>) -> bool {
    let text = v.trim().replace('-', " ");
    match DateTime::parse_from_rfc2822(&text) {
        Ok(t) => t.with_timezone(&Utc) <= now,
        // Unparseable: only the 1970 of a deletion is recognised.
        Err(_) => text.contains("1970"),
    }
}

/// WeRead's error envelope (LOGINS.md §2.5): `errCode`/`errcode` at the top or under `data`,
/// non-zero. Returns the code and message.
pub fn error_envelope(v: &Value) -> Option<(i64, String)> {
    for scope in [Some(v), v.get("data")].into_iter().flatten() {
        let code = scope
            .get("errCode")
            .or_else(|| scope.get("errcode"))
            .and_then(|c| c.as_i64().or_else(|| c.as_str()?.trim().parse().ok()));
        if let Some(code) = code.filter(|c| *c != 0) {
            let message = scope
                .get("errMsg")
                .or_else(|| scope.get("errmsg"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Some((code, message));
        }
    }
    None
}

/// What a WeRead error code means for a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `-2010`: no usable login.
    NoLogin,
    /// `-2012`: `wr_skey` expired: renew.
    SkeyExpired,
    /// `-2013`: renewal refused (retry later; also a `ql`/`wr_ql` mismatch).
    RenewalRefused,
    /// `-12013`: the web login expired: a scan is needed.
    ScanNeeded,
    /// Anything else.
    Other,
}

/// Classifies a WeRead `errCode`.
pub fn classify(code: i64) -> ErrorKind {
    match code {
        -2010 => ErrorKind::NoLogin,
        -2012 => ErrorKind::SkeyExpired,
        -2013 => ErrorKind::RenewalRefused,
        -12013 => ErrorKind::ScanNeeded,
        _ => ErrorKind::Other,
    }
}

/// Adds what WeRead's web API expects of an authenticated call: the whole jar, a desktop
/// `User-Agent`, JSON `Accept`, `Origin` and `Referer` of `base`.
pub fn authenticated(
    req: reqwest::RequestBuilder,
    base: &str,
    jar: &WereadJar,
) -> reqwest::RequestBuilder {
    let base = base.trim_end_matches('/');
    req.header(reqwest::header::COOKIE, jar.header().expose())
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .header(reqwest::header::ACCEPT, "application/json, text/plain, */*")
        .header(reqwest::header::ORIGIN, base)
        .header(reqwest::header::REFERER, format!("{base}/"))
}

/// A finished WeRead login.
#[derive(Debug, Clone)]
pub struct WereadLogin {
    /// `wr_vid`, the account's number.
    pub vid: String,
    /// The cookie jar (`wr_vid`, `wr_skey`, `wr_rt`, `wr_ql`, and any others WeRead set).
    pub cookies: WereadJar,
    /// Account name from `/api/userInfo` (the vid when it could not be read).
    pub account_name: String,
    /// When the login finished.
    pub logged_in_at: DateTime<Utc>,
    /// Estimated end of `wr_skey` ([`SKEY_LIFETIME`]): renew well before.
    pub skey_expires_at: DateTime<Utc>,
    /// Estimated end of the web login ([`RT_LIFETIME`]): then a scan is needed.
    pub rt_expires_at: DateTime<Utc>,
}

fn later(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

static FLIGHTS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();

/// Proof that this process runs the only login flow for a key; dropping it ends the flight.
#[derive(Debug)]
pub struct Flight(String);

impl Flight {
    /// Starts the flight for `key`.
    ///
    /// # Errors
    /// [`LoginError::InProgress`] when a flow for `key` is running.
    pub fn begin(key: &str) -> Result<Self, LoginError> {
        let mut set = FLIGHTS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.to_string()) {
            return Err(LoginError::InProgress(key.to_string()));
        }
        Ok(Self(key.to_string()))
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Some(m) = FLIGHTS.get() {
            m.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes `s` unless it already is (only unreserved characters and `%XX` escapes,
/// at least one of them): WeRead's refresh token must be encoded once, never twice.
pub fn encode_once(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut escapes = 0;
    let mut i = 0;
    let mut encoded = true;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit()
            {
                escapes += 1;
                i += 3;
                continue;
            }
            encoded = false;
            break;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')) {
            encoded = false;
            break;
        }
        i += 1;
    }
    if encoded && escapes > 0 {
        s.to_string()
    } else {
        percent_encode(s)
    }
}

/// Whether `uid` has the shape WeRead issues: 8–128 of `[A-Za-z0-9-]`.
pub fn valid_uid(uid: &str) -> bool {
    (8..=128).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The QR text for `uid`.
pub fn qr_text(uid: &str) -> String {
    format!("{CONFIRM_URL}{}", percent_encode(uid))
}

fn net(e: &reqwest::Error) -> LoginError {
    // Without the URL: error text reaches logs and the parent.
    LoginError::Network(format!("{}", DisplayNoUrl(e)))
}

struct DisplayNoUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for DisplayNoUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_timeout() {
            f.write_str("timed out")
        } else if self.0.is_connect() {
            f.write_str("connection failed")
        } else if let Some(s) = self.0.status() {
            write!(f, "HTTP {s}")
        } else {
            f.write_str("request failed")
        }
    }
}

/// The client's view of one `getLoginInfo` answer.
enum Info {
    Success {
        vid: String,
        access: Secret,
        refresh: Secret,
        set_cookies: Vec<String>,
    },
    Code(String),
}

struct Client<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
}

impl Client<'_> {
    fn get(&self, path_and_query: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path_and_query}", self.base))
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(reqwest::header::ACCEPT, "application/json, text/plain, */*")
            .header(reqwest::header::REFERER, format!("{}/", self.base))
    }

    async fn json(resp: reqwest::Response) -> Result<(Value, Vec<String>), LoginError> {
        let status = resp.status();
        let set_cookies = set_cookie_lines(resp.headers());
        // WeRead's errors come with 200 and sometimes 499.
        if !status.is_success() && status.as_u16() != 499 {
            return Err(LoginError::Network(format!("HTTP {status}")));
        }
        let body = resp.bytes().await.map_err(|e| net(&e))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| LoginError::Protocol(format!("HTTP {status} without JSON")))?;
        Ok((v, set_cookies))
    }

    async fn login_uid(&self) -> Result<String, LoginError> {
        let resp = self
            .get("/api/auth/getLoginUid")
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| net(&e))?;
        let (v, _) = Self::json(resp).await?;
        if let Some((code, message)) = error_envelope(&v) {
            return Err(LoginError::Upstream { code, message });
        }
        let uid = v
            .get("uid")
            .or_else(|| v.get("data").and_then(|d| d.get("uid")))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !valid_uid(uid) {
            return Err(LoginError::Protocol(
                "getLoginUid gave no uid of 8–128 letters, digits or '-'".into(),
            ));
        }
        Ok(uid.to_string())
    }

    /// One long poll; `Ok(None)` when it ended by our own timeout.
    async fn login_info(
        &self,
        uid: &str,
        otp: Option<&str>,
        wait: Duration,
    ) -> Result<Option<Info>, LoginError> {
        let otp = match otp {
            None => "&otp".to_string(),
            Some(code) => format!("&otp={}", percent_encode(code)),
        };
        let sent = self
            .get(&format!(
                "/api/auth/getLoginInfo?uid={}{otp}",
                percent_encode(uid)
            ))
            .timeout(wait)
            .send()
            .await;
        let resp = match sent {
            Err(e) if e.is_timeout() => return Ok(None),
            Err(e) => return Err(net(&e)),
            Ok(r) => r,
        };
        let (v, set_cookies) = match Self::json(resp).await {
            Err(LoginError::Network(m)) if m == "timed out" => return Ok(None),
            other => other?,
        };
        if let Some((code, message)) = error_envelope(&v) {
            return Err(LoginError::Upstream { code, message });
        }
        let scope = if v.get("succeed").is_some() || v.get("logicCode").is_some() {
            &v
        } else {
            v.get("data").unwrap_or(&v)
        };
        if scope.get("succeed").and_then(Value::as_bool) == Some(true) {
            let vid = match scope.get("webLoginVid") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.trim().to_string(),
                _ => String::new(),
            };
            let text = |k: &str| scope.get(k).and_then(Value::as_str).unwrap_or_default();
            let (access, refresh) = (text("accessToken"), text("refreshToken"));
            if vid.is_empty() || access.is_empty() || refresh.is_empty() {
                return Err(LoginError::Protocol(
                    "login succeeded without webLoginVid, accessToken or refreshToken".into(),
                ));
            }
            return Ok(Some(Info::Success {
                vid,
                access: Secret::new(access),
                refresh: Secret::new(refresh),
                set_cookies,
            }));
        }
        match scope.get("logicCode").and_then(Value::as_str) {
            Some(code) => Ok(Some(Info::Code(code.to_string()))),
            None => Err(LoginError::Protocol(
                "getLoginInfo answered neither success nor a logicCode".into(),
            )),
        }
    }

    async fn account_name(&self, jar: &WereadJar, vid: &str) -> Option<String> {
        let req = authenticated(
            self.http.get(format!(
                "{}/api/userInfo?userVid={}",
                self.base,
                percent_encode(vid)
            )),
            self.base,
            jar,
        )
        .timeout(Duration::from_secs(30));
        let resp = req.send().await.ok()?;
        let (v, _) = Self::json(resp).await.ok()?;
        if let Some((code, _)) = error_envelope(&v) {
            tracing::warn!(code, "WeRead userInfo refused the new login");
            return None;
        }
        v.get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    }
}

fn set_cookie_lines(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// Runs a WeRead QR login with the child's settings and a fresh HTTP client: the entry point
/// for `cascade child login --kind weread` and the node command.
///
/// `progress` receives the QR text and state changes; `otp` is asked for the 4-digit code the
/// phone shows when WeRead wants it (`None` gives up).
///
/// # Errors
/// See [`login_with`].
pub async fn login<F, Fut>(
    config: &CascadeConfig,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    otp: F,
) -> Result<WereadLogin, LoginError>
where
    F: FnMut(OtpAsk) -> Fut + Send,
    Fut: Future<Output = Option<String>> + Send,
{
    let opts = LoginOptions::from_config(config)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| net(&e))?;
    login_with(&http, &opts, progress, otp).await
}

/// Runs a WeRead QR login (LOGINS.md §2.1–§2.2) with `http` and `opts`.
///
/// # Errors
/// [`LoginError::InProgress`] when a flow with the same `flight_key` runs;
/// [`LoginError::Cancelled`] on `LOGIN_CANCEL`; [`LoginError::QrExpired`] when no code was
/// confirmed; [`LoginError::OtpRejected`] / [`LoginError::OtpNotGiven`]; network, protocol and
/// upstream errors.
pub async fn login_with<F, Fut>(
    http: &reqwest::Client,
    opts: &LoginOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    mut otp: F,
) -> Result<WereadLogin, LoginError>
where
    F: FnMut(OtpAsk) -> Fut + Send,
    Fut: Future<Output = Option<String>> + Send,
{
    let _flight = Flight::begin(&opts.flight_key)?;
    let base = opts.base_url.trim_end_matches('/');
    let client = Client { http, base };
    for number in 1..=opts.max_qr_codes.max(1) {
        let uid = client.login_uid().await?;
        let deadline = Instant::now() + opts.qr_lifetime;
        progress(&Progress::Qr {
            text: qr_text(&uid),
            number,
            expires_at: later(Utc::now(), opts.qr_lifetime),
        });
        let Some(info) = poll(&client, opts, &uid, deadline, progress, &mut otp).await? else {
            tracing::info!(number, "WeRead QR code expired");
            progress(&Progress::QrExpired { number });
            continue;
        };
        let Info::Success {
            vid,
            access,
            refresh,
            set_cookies,
        } = info
        else {
            continue;
        };
        let now = Utc::now();
        let mut jar = WereadJar::new();
        jar.merge_set_cookies(set_cookies.iter().map(String::as_str), now);
        jar.set("wr_vid", Secret::new(&vid));
        jar.set("wr_skey", access);
        jar.set("wr_rt", Secret::new(encode_once(refresh.expose())));
        jar.set("wr_ql", Secret::new("0"));
        let account_name = match client.account_name(&jar, &vid).await {
            Some(name) => name,
            None => {
                // The vid identifies the session: it never becomes a name the parent sees.
                tracing::warn!("WeRead account name unknown; the login gets a neutral name");
                let hash = crate::protocol::credentials::sha256_hex(&vid);
                format!("WeRead account {}", hash.get(..6).unwrap_or_default())
            }
        };
        progress(&Progress::LoggedIn {
            account_name: account_name.clone(),
        });
        return Ok(WereadLogin {
            vid,
            cookies: jar,
            account_name,
            logged_in_at: now,
            skey_expires_at: later(now, SKEY_LIFETIME),
            rt_expires_at: later(now, RT_LIFETIME),
        });
    }
    Err(LoginError::QrExpired {
        codes: opts.max_qr_codes.max(1),
    })
}

/// Polls one uid until success (`Some`), its expiry (`None`) or a final error.
async fn poll<F, Fut>(
    client: &Client<'_>,
    opts: &LoginOptions,
    uid: &str,
    deadline: Instant,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    otp: &mut F,
) -> Result<Option<Info>, LoginError>
where
    F: FnMut(OtpAsk) -> Fut + Send,
    Fut: Future<Output = Option<String>> + Send,
{
    let mut code: Option<String> = None;
    let mut tries = 0u32;
    let mut scanned = false;
    let mut network_errors = 0u32;
    loop {
        let started = Instant::now();
        if started >= deadline {
            return Ok(None);
        }
        let wait = opts.poll_timeout.min(deadline - started);
        let info = match client.login_info(uid, code.as_deref(), wait).await {
            Err(LoginError::Network(why)) if network_errors < opts.max_network_errors => {
                network_errors += 1;
                tracing::warn!(error = %why, network_errors, "WeRead getLoginInfo failed; polling again");
                let pause = (opts.min_poll_interval * network_errors)
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                continue;
            }
            other => other?,
        };
        network_errors = 0;
        let Some(info) = info else {
            continue;
        };
        let logic = match info {
            Info::Success { .. } => return Ok(Some(info)),
            Info::Code(logic) => logic,
        };
        tracing::debug!(logic_code = %logic, "WeRead getLoginInfo");
        let ask = match logic.as_str() {
            "WAITING_SCAN" => None,
            "WAITING_CONFIRM" => {
                if !scanned {
                    scanned = true;
                    progress(&Progress::Scanned);
                }
                None
            }
            "NEED_OTP" if code.is_none() => Some(OtpAsk::First),
            "NEED_OTP" | "OTP_NOT_MATCH" => Some(OtpAsk::WrongCode),
            "OTP_EXPIRED" => Some(OtpAsk::CodeExpired),
            "LOGIN_CANCEL" => return Err(LoginError::Cancelled),
            "LOGIN_TIMEOUT" => match opts.timeout_means {
                TimeoutMeans::Retry => None,
                TimeoutMeans::Expired => return Ok(None),
            },
            other => {
                return Err(LoginError::Protocol(format!(
                    "getLoginInfo answered the unknown logicCode {other}"
                )));
            }
        };
        if let Some(mut why) = ask {
            if !scanned {
                scanned = true;
                progress(&Progress::Scanned);
            }
            // Ask until a well-formed code, each answer counting as a try.
            loop {
                if code.is_some() && tries >= opts.max_otp_tries {
                    return Err(LoginError::OtpRejected { tries });
                }
                let given = otp(why).await.ok_or(LoginError::OtpNotGiven)?;
                let given = given.trim().to_string();
                tries += 1;
                code = Some(given.clone());
                if given.len() == 4 && given.bytes().all(|b| b.is_ascii_digit()) {
                    break;
                }
                why = OtpAsk::WrongCode;
            }
            continue;
        }
        let elapsed = started.elapsed();
        if elapsed < opts.min_poll_interval {
            let pause = (opts.min_poll_interval - elapsed)
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }
}

mod renewal;
pub use renewal::{RenewOutcome, RenewalSchedule, RenewalStep, renew};

#[cfg(test)]
mod tests;
