//! The fake's QR scan login (LOGINS.md §1): `bizlogin`, `scanloginqrcode`, `home`, `logout`,
//! the phone's control routes `/__fake/mp/{action}`, the login settings and the PNG QR code.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

use super::{FakeSession, FakeWechat, Inner, SessionState, Shared, err};

/// Adds the QR login routes and the phone's control routes to the fake's router.
pub(super) fn routes(router: Router<Shared>) -> Router<Shared> {
    router
        .route("/cgi-bin/bizlogin", post(bizlogin))
        .route("/cgi-bin/scanloginqrcode", get(scanloginqrcode))
        .route("/cgi-bin/home", get(home))
        .route("/cgi-bin/logout", get(logout))
        .route("/__fake/mp/{action}", get(control).post(control))
}

impl Inner {
    /// The `uuid` of the newest flow, or of flow `id`.
    fn flow_uuid(&self, id: Option<u64>) -> Option<String> {
        self.flows
            .iter()
            .filter(|(_, f)| id.is_none_or(|id| f.id == id))
            .max_by_key(|(_, f)| f.id)
            .map(|(u, _)| u.clone())
    }
}

/// What the phone does with a login QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanAction {
    /// Scanned by a user with an account: `ask` answers 4.
    Scan,
    /// Scanned by a user without any account: `ask` answers 4 with `acct_size` 0.
    ScanWithoutAccount,
    /// Confirmed on the phone: `ask` answers 1.
    Confirm,
    /// Refused on the phone: `ask` answers 2.
    Cancel,
    /// The code timed out: `ask` answers 3.
    Expire,
    /// The account has no bound email: `ask` answers 5.
    NoEmail,
}

impl ScanAction {
    /// The control route name (`/__fake/mp/<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Scan => "scan",
            Self::ScanWithoutAccount => "no-account",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
            Self::Expire => "expire",
            Self::NoEmail => "no-email",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::Scan,
            Self::ScanWithoutAccount,
            Self::Confirm,
            Self::Cancel,
            Self::Expire,
            Self::NoEmail,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    fn apply(self, flow: &mut QrFlow) {
        match self {
            Self::Scan => (flow.status, flow.acct_size) = (4, 1),
            Self::ScanWithoutAccount => (flow.status, flow.acct_size) = (4, 0),
            Self::Confirm => flow.status = 1,
            Self::Cancel => flow.status = 2,
            Self::Expire => flow.status = 3,
            Self::NoEmail => flow.status = 5,
        }
    }
}

/// How the fake's QR login behaves.
#[derive(Debug, Clone)]
pub struct MpLoginSettings {
    /// `wx.cgiData.nick_name` on `/cgi-bin/home`.
    pub nickname: String,
    /// Life of a session from its login (also the `slave_sid` cookie's `Expires`).
    pub session_ttl: Duration,
    /// Life of a QR code from its first download; then `ask` answers 3.
    pub qr_ttl: Duration,
    /// Play the phone: `after` the QR is first downloaded, scan it (with an account); another
    /// `after` later, do the action (usually [`ScanAction::Confirm`]). Every new flow again.
    pub auto: Option<(Duration, ScanAction)>,
    /// The next this many `ask` polls are held this long before they are answered.
    pub slow_asks: (u32, Duration),
}

impl Default for MpLoginSettings {
    fn default() -> Self {
        Self {
            nickname: "Fake MP Account".into(),
            session_ttl: Duration::from_secs(96 * 3600),
            qr_ttl: Duration::from_secs(150),
            auto: None,
            slow_asks: (0, Duration::ZERO),
        }
    }
}

/// One QR login flow (a `startlogin`).
pub(super) struct QrFlow {
    id: u64,
    status: i64,
    acct_size: i64,
    /// First `getqrcode`, on the fake's clock.
    shown_at: Option<Instant>,
    /// Set once `bizlogin?action=login` succeeded: the flow is used up.
    logged_in: bool,
}

impl FakeWechat {
    /// Changes how the QR login behaves (nickname, TTLs, automatic scan).
    pub fn mp_login_settings(&self, change: impl FnOnce(&mut MpLoginSettings)) {
        change(&mut self.lock().mp);
    }

    /// Plays the phone on the newest QR flow; `false` when no flow was started yet.
    pub fn mp_act(&self, action: ScanAction) -> bool {
        let mut inner = self.lock();
        let Some(uuid) = inner.flow_uuid(None) else {
            return false;
        };
        if let Some(flow) = inner.flows.get_mut(&uuid) {
            action.apply(flow);
        }
        true
    }

    /// Scans the newest QR code (with an account).
    pub fn mp_scan(&self) -> bool {
        self.mp_act(ScanAction::Scan)
    }

    /// Confirms the newest QR login on the phone.
    pub fn mp_confirm(&self) -> bool {
        self.mp_act(ScanAction::Confirm)
    }

    /// Refuses the newest QR login on the phone (`ask` answers 2).
    pub fn mp_cancel(&self) -> bool {
        self.mp_act(ScanAction::Cancel)
    }

    /// Expires the newest QR code (`ask` answers 3).
    pub fn mp_expire(&self) -> bool {
        self.mp_act(ScanAction::Expire)
    }

    /// The `ask` status of the newest flow and how many flows were started.
    pub fn mp_flows(&self) -> (Option<i64>, usize) {
        let inner = self.lock();
        let status = inner
            .flow_uuid(None)
            .and_then(|u| inner.flows.get(&u).map(|f| f.status));
        (status, inner.flows.len())
    }
}

/// A greyscale 8-bit PNG of `width`×`height` `pixels` (row by row).
///
/// # Panics
/// `pixels` does not hold `width * height` values.
pub fn png_grey(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("PNG header into memory");
    writer
        .write_image_data(pixels)
        .expect("PNG data of the stated size");
    writer.finish().expect("PNG end into memory");
    out
}

/// A PNG QR code for `text`, `scale` pixels per module, with a 4-module quiet zone.
///
/// # Panics
/// `text` is too long for a QR code.
pub fn qr_png(text: &str, scale: usize) -> Vec<u8> {
    let code = qrcode::QrCode::new(text.as_bytes()).expect("text fits a QR code");
    let (size, margin) = (code.width(), 4);
    let side = (size + 2 * margin) * scale;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (y, row) in pixels.chunks_mut(side).enumerate() {
        for (x, px) in row.iter_mut().enumerate() {
            let (mx, my) = (x / scale, y / scale);
            let inside =
                (margin..margin + size).contains(&mx) && (margin..margin + size).contains(&my);
            if inside && colors[(my - margin) * size + (mx - margin)] == qrcode::Color::Dark {
                *px = 0;
            }
        }
    }
    let side = u32::try_from(side).expect("a QR image fits u32");
    png_grey(side, side, &pixels)
}

/// A cookie's value from a `Cookie` header.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request carries the `Referer` and desktop `User-Agent` every MP client sends.
fn browser_like(headers: &HeaderMap) -> bool {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    header("referer").starts_with("https://mp.weixin.qq.com/")
        && header("user-agent").starts_with("Mozilla/5.0")
}

/// An HTTP date for a `Set-Cookie` `Expires`.
fn http_date(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn random_digits(n: usize) -> String {
    (0..n)
        .map(|i| {
            let d = rand::random_range(if i == 0 { 1 } else { 0 }..10u8);
            char::from(b'0' + d)
        })
        .collect()
}

#[derive(Deserialize)]
struct ActionQuery {
    action: Option<String>,
}

/// `POST /cgi-bin/bizlogin?action=startlogin|login`.
async fn bizlogin(
    State(Shared { inner, .. }): State<Shared>,
    Query(q): Query<ActionQuery>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::{AppendHeaders, IntoResponse};
    if !browser_like(&headers) {
        return err(200_040, "invalid referer or user agent").into_response();
    }
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let inner = &mut *guard;
    match q.action.as_deref() {
        Some("startlogin") => {
            if form.get("sessionid").is_none_or(String::is_empty)
                || form.get("login_type").map(String::as_str) != Some("3")
            {
                return err(200_002, "invalid args").into_response();
            }
            inner.next_flow += 1;
            let uuid = crate::protocol::credentials::random_token();
            inner.flows.insert(
                uuid.clone(),
                QrFlow {
                    id: inner.next_flow,
                    status: 0,
                    acct_size: 0,
                    shown_at: None,
                    logged_in: false,
                },
            );
            (
                AppendHeaders([(
                    axum::http::header::SET_COOKIE,
                    format!("uuid={uuid}; Path=/; Secure; HttpOnly"),
                )]),
                Json(json!({"base_resp": {"ret": 0, "err_msg": "ok"}})),
            )
                .into_response()
        }
        Some("login") => {
            let now = inner.now();
            let flow = cookie_value(&headers, "uuid").and_then(|u| inner.flows.get_mut(&u));
            let Some(flow) = flow.filter(|f| f.status == 1 && !f.logged_in) else {
                return err(200_003, "no confirmed scan").into_response();
            };
            flow.logged_in = true;
            let ttl = inner.mp.session_ttl;
            let token = random_digits(10);
            let slave_sid = crate::protocol::credentials::random_token();
            inner.sessions.insert(
                slave_sid.clone(),
                SessionState {
                    session: Some(FakeSession {
                        token: token.clone(),
                        slave_sid: slave_sid.clone(),
                        limit: None,
                    }),
                    expires_at: Some(now + ttl),
                    ..SessionState::default()
                },
            );
            let wall = chrono::Utc::now()
                + chrono::Duration::from_std(ttl + inner.offset).unwrap_or_default();
            let expires = http_date(wall);
            let cookie = |kv: String| (axum::http::header::SET_COOKIE, kv);
            let cookies = [
                cookie("uuid=EXPIRED; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT".into()),
                cookie(format!(
                    "slave_sid={slave_sid}; Path=/; Expires={expires}; Secure; HttpOnly"
                )),
                cookie(format!(
                    "slave_user=gh_fake{}; Path=/; Expires={expires}; Secure; HttpOnly",
                    flow.id
                )),
                cookie(format!("bizuin=3{}; Path=/; Expires={expires}", flow.id)),
                cookie(format!(
                    "data_bizuin=3{}; Path=/; Expires={expires}",
                    flow.id
                )),
                cookie(format!(
                    "data_ticket={}; Path=/; Expires={expires}",
                    crate::protocol::credentials::random_token()
                )),
                cookie("rand_info=CAESIFakeRandInfo; Path=/".into()),
                cookie("mm_lang=zh_CN; Path=/".into()),
            ];
            (
                AppendHeaders(cookies),
                Json(json!({
                    "base_resp": {"ret": 0, "err_msg": "ok"},
                    "redirect_url": format!("/cgi-bin/home?t=home/index&lang=zh_CN&token={token}")
                })),
            )
                .into_response()
        }
        _ => err(200_002, "invalid args").into_response(),
    }
}

/// `GET /cgi-bin/scanloginqrcode?action=getqrcode|ask`.
async fn scanloginqrcode(
    State(Shared { inner, base }): State<Shared>,
    Query(q): Query<ActionQuery>,
    headers: HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !browser_like(&headers) {
        return err(200_040, "invalid referer or user agent").into_response();
    }
    if q.action.as_deref() == Some("ask") {
        let hold = {
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            let (left, hold) = &mut inner.mp.slow_asks;
            (*left > 0).then(|| {
                *left -= 1;
                *hold
            })
        };
        if let Some(hold) = hold {
            tokio::time::sleep(hold).await;
        }
    }
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let inner = &mut *guard;
    let now = inner.now();
    let settings = inner.mp.clone();
    let Some(flow) = cookie_value(&headers, "uuid").and_then(|u| inner.flows.get_mut(&u)) else {
        return err(1, "no login flow").into_response();
    };
    match q.action.as_deref() {
        Some("getqrcode") => {
            flow.shown_at.get_or_insert(now);
            let png = qr_png(&format!("{base}/__fake/mp/scan?flow={}", flow.id), 4);
            ([(axum::http::header::CONTENT_TYPE, "image/png")], png).into_response()
        }
        Some("ask") => {
            if let Some(shown) = flow.shown_at {
                let age = now.saturating_duration_since(shown);
                if let Some((after, action)) = settings.auto {
                    if flow.status == 0 && age >= after {
                        let scan = if action == ScanAction::ScanWithoutAccount {
                            ScanAction::ScanWithoutAccount
                        } else {
                            ScanAction::Scan
                        };
                        scan.apply(flow);
                    }
                    if flow.status == 4 && age >= after * 2 {
                        action.apply(flow);
                    }
                }
                if matches!(flow.status, 0 | 4) && age >= settings.qr_ttl {
                    flow.status = 3;
                }
            }
            let mut body = json!({"base_resp": {"ret": 0, "err_msg": "ok"}, "status": flow.status});
            if matches!(flow.status, 4 | 6) {
                body["acct_size"] = json!(flow.acct_size);
                body["binduin"] = json!(if flow.acct_size > 0 { "3" } else { "" });
            }
            Json(body).into_response()
        }
        _ => err(200_002, "invalid args").into_response(),
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The session of a request (by `slave_sid` and `token`), if alive on the fake's clock.
fn live_session(inner: &Inner, headers: &HeaderMap, token: Option<&str>) -> Option<String> {
    let sid = cookie_value(headers, "slave_sid")?;
    let state = inner.sessions.get(&sid)?;
    let session = state.session.as_ref()?;
    let alive = !state.expired && state.expires_at.is_none_or(|t| inner.now() < t);
    (alive && Some(session.token.as_str()) == token).then_some(sid)
}

/// `GET /cgi-bin/home`: the nickname of a live session asked like a browser, else the login
/// page.
async fn home(
    State(Shared { inner, .. }): State<Shared>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> axum::response::Html<String> {
    let inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    if !browser_like(&headers) || live_session(&inner, &headers, q.token.as_deref()).is_none() {
        return axum::response::Html(
            "<!DOCTYPE html><html><title>微信公众平台</title></html>".into(),
        );
    }
    let nick = serde_json::to_string(&inner.mp.nickname).unwrap_or_default();
    axum::response::Html(format!(
        "<!DOCTYPE html><html><head><script>\nwx.cgiData = wx.cgiData || {{}};\n\
         wx.cgiData.nick_name = {nick};\nwx.cgiData.head_img = \"http://wx.qlogo.cn/mmhead/fake/0\";\n\
         </script></head><body></body></html>"
    ))
}

/// `GET /cgi-bin/logout`: ends the session.
async fn logout(
    State(Shared { inner, .. }): State<Shared>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> axum::response::Html<&'static str> {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sid) = live_session(&inner, &headers, q.token.as_deref())
        && let Some(state) = inner.sessions.get_mut(&sid)
    {
        state.expired = true;
    }
    axum::response::Html("<!DOCTYPE html><html><title>微信公众平台</title></html>")
}

#[derive(Deserialize)]
struct FlowQuery {
    flow: Option<u64>,
}

/// `/__fake/mp/{action}[?flow=ID]`: the phone's side, on the newest flow or flow `ID`.
async fn control(
    State(Shared { inner, .. }): State<Shared>,
    axum::extract::Path(action): axum::extract::Path<String>,
    Query(q): Query<FlowQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(action) = ScanAction::from_name(&action) else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            err(404, "unknown action"),
        )
            .into_response();
    };
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    let Some(uuid) = inner.flow_uuid(q.flow) else {
        return (axum::http::StatusCode::NOT_FOUND, err(404, "no such flow")).into_response();
    };
    let Some(flow) = inner.flows.get_mut(&uuid) else {
        return (axum::http::StatusCode::NOT_FOUND, err(404, "no such flow")).into_response();
    };
    action.apply(flow);
    Json(json!({"base_resp": {"ret": 0, "err_msg": "ok"}, "flow": flow.id, "status": flow.status}))
        .into_response()
}
