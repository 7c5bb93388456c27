//! QR scan login to the MP platform (`mp.weixin.qq.com`, LOGINS.md §1) over plain HTTP, no
//! browser: `startlogin` → `getqrcode` (an image) → poll `ask` → `bizlogin?action=login` →
//! token from `redirect_url`, the session cookies, the expiry from `slave_sid`'s `Expires`, the
//! account name from `/cgi-bin/home`.
//!
//! Every call sends the MP `Referer` and a desktop `User-Agent` and one cookie jar for the
//! whole flow. Every step has a timeout and the whole flow a deadline. Progress (the QR image
//! to show, scanned, refreshed…) goes to a callback so the CLI, the parent's command channel
//! and webhooks can all show it. [`MpFlights`] keeps one running flow per login id.

mod flights;

pub use flights::{MpFlights, MpFlow};

use crate::protocol::credentials::Secret;
use chrono::{NaiveDateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `Referer` of every call (LOGINS.md §1).
pub const REFERER: &str = "https://mp.weixin.qq.com/";

/// A desktop browser `User-Agent`.
pub const USER_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Largest answer read from any step, in bytes.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Consecutive failed `ask` polls tolerated before the flow gives up.
const ASK_FAILURES: u32 = 3;

/// Timing and bounds of a flow.
#[derive(Debug, Clone)]
pub struct MpQrOptions {
    /// Pause between two `ask` polls (clients use about 2 s).
    pub poll_interval: Duration,
    /// New QR codes fetched after an expired one (`ask` 2 or 3) before giving up.
    pub max_refreshes: u32,
    /// Timeout of one HTTP call.
    pub step_timeout: Duration,
    /// Deadline of the whole flow, scan included.
    pub deadline: Duration,
    /// Session life assumed when no cookie names an expiry.
    pub default_lifetime: Duration,
}

impl Default for MpQrOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            max_refreshes: 3,
            step_timeout: Duration::from_secs(15),
            deadline: Duration::from_secs(600),
            default_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

impl MpQrOptions {
    /// The options a child's configuration names (`login_poll_ms`, `login_qr_refreshes`,
    /// `login_timeout`).
    pub fn from_config(c: &crate::config::CascadeConfig) -> Self {
        Self {
            poll_interval: Duration::from_millis(c.login_poll_ms.max(100)),
            max_refreshes: u32::try_from(c.login_qr_refreshes).unwrap_or(u32::MAX),
            deadline: Duration::from_secs(c.login_timeout.max(1)),
            ..Self::default()
        }
    }
}

/// A logged-in MP session: what a fetcher needs, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpLogin {
    /// The `token` query value of every authenticated call.
    pub token: Secret,
    /// The session cookies of the login answer, in order (no `EXPIRED` values).
    pub cookies: Vec<(String, Secret)>,
    /// When the session ends (UTC): `slave_sid`'s `Expires`, or a fallback.
    pub expires_at: NaiveDateTime,
    /// The account's nickname (`wx.cgiData.nick_name`), or its `slave_user` id.
    pub account_name: String,
}

impl MpLogin {
    /// The `Cookie` header of authenticated calls (`name=value; …`).
    pub fn cookie_header(&self) -> Secret {
        let header = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect::<Vec<_>>()
            .join("; ");
        Secret::new(header)
    }
}

/// Progress of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpEvent {
    /// A QR code to show (PNG or JPEG bytes); again after each refresh.
    Qr(Vec<u8>),
    /// The code was scanned; the phone must confirm.
    Scanned,
    /// The code expired; this is refresh number `n` (a new [`MpEvent::Qr`] follows).
    Refreshed(u32),
    /// Confirmed on the phone; the session is being set up.
    Confirmed,
}

/// Why a flow ended without a login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MpLoginError {
    /// `ask` answered 2 or 3 more often than refreshes are allowed.
    #[error(
        "the QR code expired or the login was cancelled on the phone (status {status}); \
         {refreshes} new code(s) were shown, no more are fetched"
    )]
    QrExpired {
        /// The last `ask` status.
        status: i64,
        /// Refreshes done.
        refreshes: u32,
    },
    /// Scanned by a WeChat user with no account to log into (`acct_size` 0).
    #[error(
        "the WeChat user who scanned has no MP account to log into; \
         scan with an administrator of the account"
    )]
    NoAccount,
    /// `ask` answered 5.
    #[error("scan login refused: the account has no bound email (status 5)")]
    NoEmail,
    /// No login within the deadline.
    #[error("no confirmed scan within {0} s")]
    Timeout(u64),
    /// Stopped by its caller.
    #[error("the login was cancelled")]
    Cancelled,
    /// Another flow runs for this login.
    #[error("a QR login for '{0}' is already running")]
    AlreadyRunning(String),
    /// Transport failure or timeout of one step.
    #[error("{step}: network: {message}")]
    Network {
        /// The step.
        step: &'static str,
        /// What failed (no URL, no secrets).
        message: String,
    },
    /// The platform answered `base_resp.ret` other than 0.
    #[error("{step}: the MP platform refused: ret {ret} {message}")]
    Refused {
        /// The step.
        step: &'static str,
        /// `base_resp.ret`.
        ret: i64,
        /// `base_resp.err_msg`.
        message: String,
    },
    /// An answer that does not follow the protocol.
    #[error("{step}: unexpected answer: {message}")]
    Protocol {
        /// The step.
        step: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// One cookie of the jar.
#[derive(Debug, Clone)]
struct Cookie {
    name: String,
    value: String,
    expires: Option<NaiveDateTime>,
}

/// Parses a cookie date: RFC 1123 (`Wed, 21 Oct 2026 07:28:00 GMT`), its dashed variant
/// (`Wed, 21-Oct-2026 …`), RFC 850 (`Wednesday, 21-Oct-26 …`) or RFC 2822 with an offset.
fn parse_cookie_date(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%a, %d-%b-%Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        chrono::DateTime::parse_from_rfc2822(s)
            .ok()
            .map(|d| d.naive_utc())
    })
}

/// Parses one `Set-Cookie` value; `Max-Age` wins over `Expires`.
fn parse_set_cookie(header: &str, now: NaiveDateTime) -> Option<Cookie> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let (mut expires, mut max_age) = (None, None);
    for attr in parts {
        let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "expires" => expires = parse_cookie_date(v),
            "max-age" => max_age = v.trim().parse::<i64>().ok(),
            _ => {}
        }
    }
    if let Some(secs) = max_age {
        expires = Some(now + chrono::Duration::seconds(secs.clamp(-1, 400 * 86_400)));
    }
    Some(Cookie {
        name: name.to_string(),
        value: value.trim().trim_matches('"').to_string(),
        expires,
    })
}

/// The flow's cookie jar (one site, so names are enough).
#[derive(Default)]
struct Jar {
    cookies: Vec<Cookie>,
}

impl Jar {
    /// Takes the `Set-Cookie`s of an answer; returns those set, in order. An `EXPIRED` value
    /// or an expiry in the past removes the cookie instead.
    fn absorb(&mut self, headers: &reqwest::header::HeaderMap, now: NaiveDateTime) -> Vec<Cookie> {
        let mut set = Vec::new();
        for header in headers.get_all(reqwest::header::SET_COOKIE) {
            let Some(cookie) = header.to_str().ok().and_then(|h| parse_set_cookie(h, now)) else {
                continue;
            };
            self.cookies.retain(|c| c.name != cookie.name);
            set.retain(|c: &Cookie| c.name != cookie.name);
            if cookie.value == "EXPIRED" || cookie.expires.is_some_and(|t| t <= now) {
                continue;
            }
            self.cookies.push(cookie.clone());
            set.push(cookie);
        }
        set
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One `ask` answer.
#[derive(Debug)]
struct Ask {
    status: i64,
    acct_size: Option<i64>,
}

/// The token of a `redirect_url` (its `token` query parameter, nothing else).
///
/// # Errors
/// No non-empty `token` parameter.
pub fn token_from_redirect(redirect_url: &str) -> Result<String, MpLoginError> {
    let bad = |message: &str| MpLoginError::Protocol {
        step: "login",
        message: message.to_string(),
    };
    let url = reqwest::Url::parse(REFERER)
        .and_then(|base| base.join(redirect_url.trim()))
        .map_err(|_| bad("redirect_url is not a URL"))?;
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("redirect_url has no token"))
}

/// The nickname in a `/cgi-bin/home` page: the string after `nick_name` and `=` (or `:`).
pub fn nick_name_from_home(html: &str) -> Option<String> {
    let mut rest = html;
    while let Some(at) = rest.find("nick_name") {
        rest = &rest[at + "nick_name".len()..];
        let after = rest
            .trim_start()
            .trim_start_matches(['"', '\''])
            .trim_start();
        let Some(after) = after
            .strip_prefix('=')
            .or_else(|| after.strip_prefix(':'))
            .map(str::trim_start)
        else {
            continue;
        };
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            continue;
        };
        if let Some(name) = read_js_string(&after[1..], quote).filter(|n| !n.trim().is_empty()) {
            return Some(name.trim().to_string());
        }
    }
    None
}

/// A JavaScript string literal's value up to its closing `quote`.
fn read_js_string(s: &str, quote: char) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == quote => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

/// The session's end: `slave_sid`'s expiry, else `slave_user`'s, else `bizuin`'s, else
/// `now + default`.
fn session_expiry(cookies: &[Cookie], now: NaiveDateTime, default: Duration) -> NaiveDateTime {
    ["slave_sid", "slave_user", "bizuin"]
        .iter()
        .find_map(|n| cookies.iter().find(|c| c.name == *n)?.expires)
        .unwrap_or_else(|| now + chrono::Duration::from_std(default).unwrap_or_default())
}

fn network(step: &'static str) -> impl Fn(reqwest::Error) -> MpLoginError {
    move |e| MpLoginError::Network {
        step,
        message: e.without_url().to_string(),
    }
}

/// The `base_resp` of a JSON answer, as an error when `ret` is not 0.
fn check_base_resp(step: &'static str, body: &Value) -> Result<(), MpLoginError> {
    let ret = body["base_resp"]["ret"]
        .as_i64()
        .ok_or_else(|| MpLoginError::Protocol {
            step,
            message: "no base_resp.ret".into(),
        })?;
    if ret == 0 {
        return Ok(());
    }
    Err(MpLoginError::Refused {
        step,
        ret,
        message: body["base_resp"]["err_msg"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
    })
}

/// A QR login client for one MP platform base URL.
#[derive(Clone)]
pub struct MpQrClient {
    http: reqwest::Client,
    base: String,
    options: MpQrOptions,
}

impl MpQrClient {
    /// A client for `base_url` (`https://mp.weixin.qq.com` or a fake).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(base_url: &str, options: MpQrOptions) -> Result<Self, MpLoginError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(options.step_timeout)
            .timeout(options.step_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MpLoginError::Network {
                step: "client",
                message: e.to_string(),
            })?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            options,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &MpQrOptions {
        &self.options
    }

    fn request(&self, method: reqwest::Method, path: &str, jar: &Jar) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::REFERER, REFERER)
            .header(reqwest::header::USER_AGENT, USER_AGENT);
        let cookie = jar.header();
        if !cookie.is_empty() {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        req
    }

    /// Sends `req`, takes its cookies into `jar` and reads its body (bounded).
    async fn send(
        &self,
        step: &'static str,
        req: reqwest::RequestBuilder,
        jar: &mut Jar,
    ) -> Result<(Vec<u8>, Vec<Cookie>), MpLoginError> {
        let mut resp = req.send().await.map_err(network(step))?;
        let set = jar.absorb(resp.headers(), Utc::now().naive_utc());
        let status = resp.status();
        if !status.is_success() {
            return Err(MpLoginError::Network {
                step,
                message: format!("HTTP {status}"),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(network(step))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(MpLoginError::Protocol {
                    step,
                    message: "answer too large".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, set))
    }

    async fn send_json(
        &self,
        step: &'static str,
        req: reqwest::RequestBuilder,
        jar: &mut Jar,
    ) -> Result<(Value, Vec<Cookie>), MpLoginError> {
        let (body, set) = self.send(step, req, jar).await?;
        let json: Value = serde_json::from_slice(&body).map_err(|_| MpLoginError::Protocol {
            step,
            message: "answer is not JSON".into(),
        })?;
        check_base_resp(step, &json)?;
        Ok((json, set))
    }

    /// Step 1: a new flow (the `uuid` cookie).
    async fn start(&self, jar: &mut Jar) -> Result<(), MpLoginError> {
        let sessionid = format!(
            "{}{}",
            Utc::now().timestamp_millis(),
            rand::random_range(10..100u32)
        );
        let form = [
            ("userlang", "zh_CN"),
            ("redirect_url", ""),
            ("login_type", "3"),
            ("sessionid", sessionid.as_str()),
            ("token", ""),
            ("lang", "zh_CN"),
            ("f", "json"),
            ("ajax", "1"),
        ];
        let req = self
            .request(
                reqwest::Method::POST,
                "/cgi-bin/bizlogin?action=startlogin",
                jar,
            )
            .form(&form);
        self.send_json("startlogin", req, jar).await?;
        if !jar.cookies.iter().any(|c| c.name == "uuid") {
            return Err(MpLoginError::Protocol {
                step: "startlogin",
                message: "no uuid cookie".into(),
            });
        }
        Ok(())
    }

    /// Step 2: the QR image (PNG or JPEG; a JSON answer is an error).
    async fn qr(&self, jar: &mut Jar) -> Result<Vec<u8>, MpLoginError> {
        let path = format!(
            "/cgi-bin/scanloginqrcode?action=getqrcode&random={}",
            Utc::now().timestamp_millis()
        );
        let req = self.request(reqwest::Method::GET, &path, jar);
        let (body, _) = self.send("getqrcode", req, jar).await?;
        if super::qr_term::sniff(&body).is_some() {
            return Ok(body);
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(json) => {
                check_base_resp("getqrcode", &json)?;
                Err(MpLoginError::Protocol {
                    step: "getqrcode",
                    message: "JSON instead of an image".into(),
                })
            }
            Err(_) => Err(MpLoginError::Protocol {
                step: "getqrcode",
                message: "neither a PNG/JPEG image nor JSON".into(),
            }),
        }
    }

    /// Step 3: one poll.
    async fn ask(&self, jar: &mut Jar) -> Result<Ask, MpLoginError> {
        let req = self.request(
            reqwest::Method::GET,
            "/cgi-bin/scanloginqrcode?action=ask&token=&lang=zh_CN&f=json&ajax=1",
            jar,
        );
        let (json, _) = self.send_json("ask", req, jar).await?;
        let status = json["status"].as_i64().ok_or(MpLoginError::Protocol {
            step: "ask",
            message: "no status".into(),
        })?;
        Ok(Ask {
            status,
            acct_size: json["acct_size"].as_i64(),
        })
    }

    /// Step 4: the session (token and cookies).
    async fn bizlogin(&self, jar: &mut Jar) -> Result<(String, Vec<Cookie>), MpLoginError> {
        let form = [
            ("userlang", "zh_CN"),
            ("redirect_url", ""),
            ("cookie_forbidden", "0"),
            ("cookie_cleaned", "0"),
            ("plugin_used", "0"),
            ("login_type", "3"),
            ("token", ""),
            ("lang", "zh_CN"),
            ("f", "json"),
            ("ajax", "1"),
        ];
        let req = self
            .request(reqwest::Method::POST, "/cgi-bin/bizlogin?action=login", jar)
            .form(&form);
        let (json, cookies) = self.send_json("login", req, jar).await?;
        let redirect = json["redirect_url"]
            .as_str()
            .ok_or(MpLoginError::Protocol {
                step: "login",
                message: "no redirect_url".into(),
            })?;
        let token = token_from_redirect(redirect)?;
        if !cookies.iter().any(|c| c.name == "slave_sid") {
            return Err(MpLoginError::Protocol {
                step: "login",
                message: "no slave_sid session cookie".into(),
            });
        }
        Ok((token, cookies))
    }

    /// Step 5: the nickname, if the home page shows one.
    async fn nick_name(&self, jar: &mut Jar, token: &str) -> Result<Option<String>, MpLoginError> {
        let req = self
            .request(reqwest::Method::GET, "/cgi-bin/home", jar)
            .query(&[("t", "home/index"), ("token", token), ("lang", "zh_CN")]);
        let (body, _) = self.send("home", req, jar).await?;
        Ok(nick_name_from_home(&String::from_utf8_lossy(&body)))
    }

    /// Runs the whole flow: `on_event` sees each QR code and the progress. Ends at the
    /// deadline, on `cancel`, or with the login.
    ///
    /// # Errors
    /// Why no login came of it ([`MpLoginError`]).
    pub async fn login(
        &self,
        cancel: &CancellationToken,
        on_event: &mut (dyn FnMut(MpEvent) + Send),
    ) -> Result<MpLogin, MpLoginError> {
        tokio::select! {
            () = cancel.cancelled() => Err(MpLoginError::Cancelled),
            r = tokio::time::timeout(self.options.deadline, self.flow(on_event)) => {
                r.unwrap_or(Err(MpLoginError::Timeout(self.options.deadline.as_secs())))
            }
        }
    }

    async fn flow(
        &self,
        on_event: &mut (dyn FnMut(MpEvent) + Send),
    ) -> Result<MpLogin, MpLoginError> {
        let mut jar = Jar::default();
        let mut refreshes = 0;
        'codes: loop {
            self.start(&mut jar).await?;
            on_event(MpEvent::Qr(self.qr(&mut jar).await?));
            let (mut scanned, mut failures) = (false, 0);
            loop {
                tokio::time::sleep(self.options.poll_interval).await;
                let ask = match self.ask(&mut jar).await {
                    Ok(ask) => ask,
                    Err(MpLoginError::Network { .. }) if failures + 1 < ASK_FAILURES => {
                        failures += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                failures = 0;
                match ask.status {
                    0 => {}
                    4 | 6 if ask.acct_size == Some(0) => return Err(MpLoginError::NoAccount),
                    4 | 6 => {
                        if !scanned {
                            scanned = true;
                            on_event(MpEvent::Scanned);
                        }
                    }
                    1 => break 'codes,
                    2 | 3 => {
                        if refreshes >= self.options.max_refreshes {
                            return Err(MpLoginError::QrExpired {
                                status: ask.status,
                                refreshes,
                            });
                        }
                        refreshes += 1;
                        on_event(MpEvent::Refreshed(refreshes));
                        continue 'codes;
                    }
                    5 => return Err(MpLoginError::NoEmail),
                    other => tracing::debug!(status = other, "unknown MP ask status; polling on"),
                }
            }
        }
        on_event(MpEvent::Confirmed);
        let (token, cookies) = self.bizlogin(&mut jar).await?;
        let expires_at = session_expiry(
            &cookies,
            Utc::now().naive_utc(),
            self.options.default_lifetime,
        );
        let slave_user = cookies
            .iter()
            .find(|c| c.name == "slave_user")
            .map(|c| c.value.clone());
        let account_name = match self.nick_name(&mut jar, &token).await {
            Ok(Some(name)) => name,
            Ok(None) | Err(_) => {
                tracing::warn!("the MP home page shows no nickname; naming the login by its id");
                slave_user.unwrap_or_else(|| "unknown".into())
            }
        };
        Ok(MpLogin {
            token: Secret::new(token),
            cookies: cookies
                .into_iter()
                .map(|c| (c.name, Secret::new(c.value)))
                .collect(),
            expires_at,
            account_name,
        })
    }

    /// Ends `login`'s session on the platform (`/cgi-bin/logout`).
    ///
    /// # Errors
    /// The call failed.
    pub async fn logout(&self, login: &MpLogin) -> Result<(), MpLoginError> {
        let mut jar = Jar {
            cookies: login
                .cookies
                .iter()
                .map(|(k, v)| Cookie {
                    name: k.clone(),
                    value: v.expose().to_string(),
                    expires: None,
                })
                .collect(),
        };
        let req = self
            .request(reqwest::Method::GET, "/cgi-bin/logout", &jar)
            .query(&[
                ("t", "wxm-logout"),
                ("token", login.token.expose()),
                ("lang", "zh_CN"),
            ]);
        self.send("logout", req, &mut jar).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests;
