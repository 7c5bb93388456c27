//! A fake `mp.weixin.qq.com` list API on `127.0.0.1:0`: accounts with publishes, sessions keyed
//! by cookie and token, a per-session sliding-window rate limit answering `200013`, expiry
//! answering `200003`, and a per-session request log for pacing assertions.
//!
//! It also speaks the QR scan login of LOGINS.md §1 (`bizlogin`, `scanloginqrcode`, `home`,
//! `logout`): the QR is a real PNG encoding `<base>/__fake/mp/scan?flow=<id>`, and the phone's
//! side is played by the test through [`FakeWechat::mp_scan`] and friends, the control routes
//! `/__fake/mp/{scan,confirm,cancel,expire,no-email,no-account}`, or an automatic scan
//! ([`MpLoginSettings::auto`]). A confirmed login registers a session the list API accepts
//! until its TTL on the fake's clock ([`FakeWechat::advance`]) has passed.

mod login;
mod page;
mod search;

use login::QrFlow;
pub use login::{MpLoginSettings, ScanAction, png_grey, qr_png};
pub use page::{HumanCheck, PageLogEntry, PageState};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One article of a publish.
#[derive(Debug, Clone)]
pub struct FakeArticle {
    /// 1-based position in the publish.
    pub itemidx: i64,
    /// Title.
    pub title: String,
    /// Summary.
    pub digest: String,
    /// Epoch seconds.
    pub update_time: i64,
}

/// One publish (a push of 1–8 articles).
#[derive(Debug, Clone)]
pub struct FakePublish {
    /// Push id.
    pub appmsgid: i64,
    /// Articles in push order.
    pub articles: Vec<FakeArticle>,
}

/// A fake account, publishes newest first.
#[derive(Debug, Clone)]
pub struct FakeAccount {
    /// Account number (the `MP_WXS_` digits).
    pub number: u64,
    /// Display name.
    pub nickname: String,
    /// Newest first.
    pub publishes: Vec<FakePublish>,
}

impl FakeAccount {
    /// An account with `n` publishes of one article each, the newest at `newest` (epoch s),
    /// one hour apart.
    pub fn generated(number: u64, n: usize, newest: i64) -> Self {
        let publishes = (0..n)
            .map(|i| {
                let appmsgid = 2_247_483_000 + i64::try_from(n - i).unwrap_or(0);
                FakePublish {
                    appmsgid,
                    articles: vec![FakeArticle {
                        itemidx: 1,
                        title: format!("Article {appmsgid} of {number}"),
                        digest: format!("Digest {appmsgid}"),
                        update_time: newest - 3600 * i64::try_from(i).unwrap_or(0),
                    }],
                }
            })
            .collect();
        Self {
            number,
            nickname: format!("Account {number}"),
            publishes,
        }
    }

    /// `faker_id`: base64 of the number.
    pub fn fakeid(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.number.to_string())
    }

    /// The `/s/<token>` token of article `itemidx` of push `appmsgid`: 22 URL-safe base64
    /// characters (with `~` for `-`, as WeRead tokens may carry), the same in every fake.
    pub fn article_token(&self, appmsgid: i64, itemidx: i64) -> String {
        use base64::Engine;
        let hash = crate::protocol::credentials::sha256_hex(&format!(
            "{}/{appmsgid}/{itemidx}",
            self.number
        ));
        let bytes: Vec<u8> = (0..16)
            .filter_map(|i| u8::from_str_radix(hash.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(bytes)
            .replace('-', "~")
    }

    /// The long link of an article as the MP list gives it (`?__biz=&mid=&idx=&sn=`); WeRead
    /// gives the same one as `doc_url`.
    pub fn article_link(&self, appmsgid: i64, itemidx: i64) -> String {
        let sn =
            &crate::protocol::credentials::sha256_hex(&self.article_token(appmsgid, itemidx))[..32];
        format!(
            "http://mp.weixin.qq.com/s?__biz={}&mid={appmsgid}&idx={itemidx}&sn={sn}&chksm=fake#rd",
            self.fakeid()
        )
    }
}

/// A logged-in session on the fake platform.
#[derive(Debug, Clone)]
pub struct FakeSession {
    /// The `token` query value.
    pub token: String,
    /// The `slave_sid` cookie value.
    pub slave_sid: String,
    /// Requests allowed per window, `None` = unlimited.
    pub limit: Option<(usize, Duration)>,
}

impl FakeSession {
    /// Points a child's configuration at `fake` (list and article pages) with this session as
    /// its WeChat login.
    pub fn configure(&self, c: &mut crate::config::CascadeConfig, fake: &FakeWechat) {
        c.wechat_token = crate::protocol::credentials::Secret::new(&self.token);
        c.wechat_cookie = crate::protocol::credentials::Secret::new(self.cookie());
        c.wechat_base_url = fake.base_url().to_string();
        c.mp_page_base_url = fake.base_url().to_string();
    }

    /// This session as a child's `mp` login with id `id`.
    pub fn login(&self, id: &str) -> crate::logins::Login {
        use crate::logins::{Login, LoginKind, LoginSecrets};
        use crate::protocol::credentials::Secret;
        Login::new(
            id,
            LoginKind::Mp,
            &format!("fake {id}"),
            LoginSecrets::from_cookie_header(Some(Secret::new(&self.token)), &self.cookie()),
        )
    }

    /// The `Cookie` header a client sends for this session.
    pub fn cookie(&self) -> String {
        format!(
            "slave_sid={}; slave_user=gh_fake; bizuin=1; data_ticket=t",
            self.slave_sid
        )
    }
}

/// An injected failure for the next request, whatever its session.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An HTTP error status with an HTML body.
    Status(u16),
    /// Answer after this delay (then normally).
    Latency(Duration),
    /// HTTP 200 with the MP login page instead of JSON.
    LoginPage,
    /// `ret` 0 with unreadable JSON inside `publish_page`.
    BadNestedJson,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// When it arrived.
    pub at: Instant,
    /// Token sent.
    pub token: String,
    /// Account asked for.
    pub fakeid: String,
    /// Offset.
    pub begin: usize,
    /// `ok`, `200013`, `200003`, `200040`, `200002`.
    pub outcome: &'static str,
}

#[derive(Default)]
struct SessionState {
    session: Option<FakeSession>,
    /// The `fakeid` of the login's own account (served for an empty `fakeid`, and open
    /// under closure).
    own: Option<String>,
    expired: bool,
    /// On the fake's clock; `None` = until expired by hand.
    expires_at: Option<Instant>,
    hits: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<Fault>,
    accounts: HashMap<String, FakeAccount>,
    sessions: HashMap<String, SessionState>,
    log: Vec<LogEntry>,
    /// How far the fake's clock runs ahead of the real one.
    offset: Duration,
    mp: MpLoginSettings,
    /// QR login flows by `uuid` cookie.
    flows: HashMap<String, QrFlow>,
    next_flow: u64,
    /// The list is closed for other accounts (SOURCES.md §1): `200013` for any `fakeid` but
    /// the login's own or an empty one.
    closed: bool,
    /// The article pages' switches and log.
    pages: page::PageData,
}

impl Inner {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }
}

/// Handle to a running fake WeChat server.
#[derive(Clone)]
pub struct FakeWechat {
    base: String,
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

#[derive(Deserialize)]
struct ListQuery {
    token: Option<String>,
    fakeid: Option<String>,
    begin: Option<usize>,
    count: Option<usize>,
}

/// State of the router: the fake's data and its own base URL (for the QR text).
#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    base: String,
}

fn err(ret: i64, msg: &str) -> Json<Value> {
    Json(json!({ "base_resp": { "ret": ret, "err_msg": msg } }))
}

impl FakeWechat {
    /// Starts the fake on `127.0.0.1:0` with `accounts`.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start(accounts: Vec<FakeAccount>) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            accounts: accounts.into_iter().map(|a| (a.fakeid(), a)).collect(),
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let app = page::routes(login::routes(search::routes(
            Router::new().route("/cgi-bin/appmsgpublish", get(list)),
        )))
        .with_state(Shared {
            inner: inner.clone(),
            base: base.clone(),
        });
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        Ok(Self { base, inner, stop })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Adds (or replaces, as a re-login) a session.
    pub fn add_session(&self, session: FakeSession) {
        let mut inner = self.lock();
        inner.sessions.insert(
            session.slave_sid.clone(),
            SessionState {
                session: Some(session),
                ..SessionState::default()
            },
        );
    }

    /// Expires the session with this cookie value.
    pub fn expire(&self, slave_sid: &str) {
        if let Some(s) = self.lock().sessions.get_mut(slave_sid) {
            s.expired = true;
        }
    }

    /// Closes (or reopens) the list for other accounts, as WeChat did around 2026-07-31:
    /// every request for a `fakeid` other than the login's own (or an empty one) answers
    /// `200013 freq control`, on the first request as on every other.
    pub fn set_closed(&self, closed: bool) {
        self.lock().closed = closed;
    }

    /// Makes account `number` the own account of the session with this cookie value: an
    /// empty `fakeid` lists it, and the closure leaves it open.
    pub fn set_own_account(&self, slave_sid: &str, number: u64) {
        let mut inner = self.lock();
        let fakeid = inner
            .accounts
            .values()
            .find(|a| a.number == number)
            .map(FakeAccount::fakeid);
        if let Some(s) = inner.sessions.get_mut(slave_sid) {
            s.own = fakeid;
        }
    }

    /// Queues a fault for the next request.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Adds a publish at the top of an account (newest).
    pub fn publish(&self, number: u64, publish: FakePublish) {
        let mut inner = self.lock();
        if let Some(a) = inner.accounts.values_mut().find(|a| a.number == number) {
            a.publishes.insert(0, publish);
        }
    }

    /// Requests received with this token, in order.
    pub fn log_for(&self, token: &str) -> Vec<LogEntry> {
        self.lock()
            .log
            .iter()
            .filter(|e| e.token == token)
            .cloned()
            .collect()
    }

    /// Smallest gap between consecutive requests of a token.
    pub fn min_gap(&self, token: &str) -> Option<Duration> {
        let log = self.log_for(token);
        log.windows(2).map(|w| w[1].at - w[0].at).min()
    }

    /// Moves the fake's clock forward: sessions and QR codes age by `by` at once.
    pub fn advance(&self, by: Duration) {
        self.lock().offset += by;
    }

    /// Stops the server.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

async fn list(
    State(Shared { inner, .. }): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> axum::response::Response {
    use axum::response::{Html, IntoResponse};
    let fault = inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .faults
        .pop_front();
    match fault {
        Some(Fault::Status(code)) => {
            let status = axum::http::StatusCode::from_u16(code)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            return (status, Html("<html><body>Bad Gateway</body></html>")).into_response();
        }
        Some(Fault::LoginPage) => {
            return Html("<!DOCTYPE html><html><title>微信公众平台</title></html>").into_response();
        }
        Some(Fault::BadNestedJson) => {
            let page = json!({"total_count": 1, "publish_list": [{"publish_info": "{broken"}]});
            return Json(
                json!({"base_resp": {"ret": 0, "err_msg": "ok"}, "publish_page": page.to_string()}),
            )
            .into_response();
        }
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    respond(&inner, &headers, q).into_response()
}

/// The `slave_sid` cookie of a request.
fn session_id(headers: &HeaderMap) -> String {
    let cookie = headers
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    cookie
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "slave_sid")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

impl Inner {
    /// The session checks every `/cgi-bin` request passes, in order: cookies (`200003`),
    /// token (`200040`), expiry (`200003`); then `closed` (`200013`, when given) and the
    /// rate limit (`200013`), which counts the request. `None` = the session may go on.
    fn session_outcome(
        &mut self,
        sid: &str,
        token: &str,
        closed: bool,
        now: Instant,
    ) -> Option<&'static str> {
        let fake_now = self.now();
        let Some(s) = self.sessions.get_mut(sid) else {
            return Some("200003");
        };
        let session = s.session.clone().unwrap_or_else(|| FakeSession {
            token: String::new(),
            slave_sid: sid.to_string(),
            limit: None,
        });
        if session.token != token {
            return Some("200040");
        }
        if s.expired || s.expires_at.is_some_and(|t| fake_now >= t) {
            return Some("200003");
        }
        if closed {
            return Some("200013");
        }
        if let Some((limit, window)) = session.limit {
            while s
                .hits
                .front()
                .is_some_and(|t| now.duration_since(*t) >= window)
            {
                s.hits.pop_front();
            }
            s.hits.push_back(now);
            if s.blocked_until.is_some_and(|t| now < t) || s.hits.len() > limit {
                s.blocked_until.get_or_insert(now + window);
                return Some("200013");
            }
            s.blocked_until = None;
        }
        None
    }
}

fn respond(inner: &Arc<Mutex<Inner>>, headers: &HeaderMap, q: ListQuery) -> Json<Value> {
    let now = Instant::now();
    let sid = session_id(headers);
    let token = q.token.unwrap_or_default();
    let asked = q.fakeid.unwrap_or_default();
    let begin = q.begin.unwrap_or(0);
    let count = q.count.unwrap_or(5).clamp(1, 20);
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let inner = &mut *guard;
    let own = inner.sessions.get(&sid).and_then(|s| s.own.clone());
    let fakeid = match (&own, asked.is_empty()) {
        (Some(own), true) => own.clone(),
        _ => asked.clone(),
    };
    let closed_for_it = inner.closed && !asked.is_empty() && own.as_deref() != Some(&asked);
    let outcome = match inner.session_outcome(&sid, &token, closed_for_it, now) {
        Some(refused) => refused,
        None if inner.accounts.contains_key(&fakeid) => "ok",
        None => "200002",
    };
    inner.log.push(LogEntry {
        at: now,
        token,
        fakeid: fakeid.clone(),
        begin,
        outcome,
    });
    match outcome {
        "200003" => return err(200_003, "invalid session"),
        "200040" => return err(200_040, "invalid csrf token"),
        "200013" => return err(200_013, "freq control"),
        "200002" => return err(200_002, "invalid args"),
        _ => {}
    }
    let account = &inner.accounts[&fakeid];
    let page: Vec<Value> = account
        .publishes
        .iter()
        .skip(begin)
        .take(count)
        .map(|p| {
            let items: Vec<Value> = p
                .articles
                .iter()
                .map(|a| {
                    json!({"aid": format!("{}_{}", p.appmsgid, a.itemidx), "appmsgid": p.appmsgid, "itemidx": a.itemidx,
                           "title": a.title, "digest": a.digest, "cover": format!("https://mmbiz.qpic.cn/{}/0", p.appmsgid),
                           "link": account.article_link(p.appmsgid, a.itemidx),
                           "create_time": a.update_time - 60, "update_time": a.update_time, "is_deleted": false, "item_show_type": 0})
                })
                .collect();
            let info = json!({"type": 9, "msgid": p.appmsgid, "sent_info": {"time": p.articles.first().map_or(0, |a| a.update_time)}, "appmsgex": items});
            json!({"publish_type": 1, "publish_info": info.to_string()})
        })
        .collect();
    let total = account.publishes.len();
    let publish_page = json!({"total_count": total, "publish_count": total, "masssend_count": total, "featured_count": 0, "publish_list": page});
    Json(
        json!({"base_resp": {"ret": 0, "err_msg": "ok"}, "publish_page": publish_page.to_string()}),
    )
}
