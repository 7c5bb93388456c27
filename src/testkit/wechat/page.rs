//! The fake's article pages (UPSTREAMS.md §3, SOURCES.md §4): `GET /s/<token>` and the long
//! form `/s?__biz=&mid=&idx=&sn=` for the fake accounts' articles, shaped like the real page
//! (`og:*` meta, `var biz = "…"`, `#js_article > #js_content[style="visibility: hidden;"]`,
//! lazy `img[data-src]`, `#publish_time`); per-article states answering the `.weui-msg` error
//! pages (deleted, under review, unavailable); a switchable human check (the `环境异常` page or
//! a 302 to `/mp/wappoc_appmsgcaptcha?…`), for everyone or one client (its `slave_sid`
//! cookie, empty for anonymous fetches); and a request log.

use super::{FakeAccount, FakeWechat, Inner, Shared};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use tokio::time::Instant;

/// What an article's page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageState {
    /// The article.
    #[default]
    Live,
    /// `该内容已被发布者删除`.
    Deleted,
    /// `内容审核中`.
    UnderReview,
    /// `此内容因违规无法查看`.
    Unavailable,
}

/// The human check the pages answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HumanCheck {
    /// Pages are served.
    #[default]
    Off,
    /// The `当前环境异常，完成验证后即可继续访问` page.
    Page,
    /// A 302 to `/mp/wappoc_appmsgcaptcha?…`.
    Redirect,
}

/// One article page request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLogEntry {
    /// When it arrived.
    pub at: Instant,
    /// The client: its `slave_sid` cookie, empty when anonymous.
    pub client: String,
    /// The article's token, or the path asked when unknown.
    pub token: String,
    /// `ok`, `deleted`, `under_review`, `unavailable`, `human_check`, `captcha_redirect`, `404`.
    pub outcome: &'static str,
}

/// The pages' switches and log.
#[derive(Debug, Default)]
pub(super) struct PageData {
    states: HashMap<String, PageState>,
    bodies: HashMap<String, String>,
    check: HumanCheck,
    check_for: HashMap<String, HumanCheck>,
    log: Vec<PageLogEntry>,
    /// `/s/<token>` (each `~` as `_`) → `(fakeid, appmsgid, itemidx)`, rebuilt when a token is
    /// missing.
    tokens: HashMap<String, (String, i64, i64)>,
}

impl FakeWechat {
    /// Sets what the page of the article with `token` shows.
    pub fn set_page_state(&self, token: &str, state: PageState) {
        self.lock().pages.states.insert(token.to_string(), state);
    }

    /// Sets the inner HTML of the `#js_content` of the article with `token` (default: its
    /// digest and one lazy image).
    pub fn set_page_body(&self, token: &str, html: &str) {
        self.lock()
            .pages
            .bodies
            .insert(token.to_string(), html.to_string());
    }

    /// Turns the human check on or off for every client.
    pub fn set_human_check(&self, check: HumanCheck) {
        self.lock().pages.check = check;
    }

    /// Turns the human check on or off for one client (its `slave_sid`; `""` = anonymous).
    pub fn set_human_check_for(&self, client: &str, check: HumanCheck) {
        self.lock()
            .pages
            .check_for
            .insert(client.to_string(), check);
    }

    /// Every article page request, in order.
    pub fn page_requests(&self) -> Vec<PageLogEntry> {
        self.lock().pages.log.clone()
    }
}

/// The article page routes.
pub(super) fn routes(router: axum::Router<Shared>) -> axum::Router<Shared> {
    router
        .route("/s", axum::routing::get(long_form))
        .route("/s/{token}", axum::routing::get(short_form))
}

#[derive(Deserialize)]
struct LongQuery {
    __biz: Option<String>,
    mid: Option<i64>,
    idx: Option<i64>,
}

async fn short_form(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    // WeRead links may write the token's `~` as `_`.
    let key = token.replace('~', "_");
    let found = by_token(&shared, &key)
        .and_then(|(biz, mid, idx)| find(&shared, &biz, |appmsgid, i| appmsgid == mid && i == idx));
    answer(&shared, &headers, found, token)
}

async fn long_form(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<LongQuery>,
) -> Response {
    let asked = format!(
        "__biz={}&mid={}&idx={}",
        q.__biz.as_deref().unwrap_or_default(),
        q.mid.unwrap_or_default(),
        q.idx.unwrap_or_default()
    );
    let found = find(
        &shared,
        q.__biz.as_deref().unwrap_or_default(),
        |appmsgid, idx| q.mid == Some(appmsgid) && q.idx == Some(idx),
    );
    answer(&shared, &headers, found, asked)
}

/// One article found: its account, push id and article.
type Found = (FakeAccount, i64, super::FakeArticle);

/// The article of account `biz` (its `fakeid`) that `matches` its push id and position.
fn find(shared: &Shared, biz: &str, matches: impl Fn(i64, i64) -> bool) -> Option<Found> {
    let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let acc = inner.accounts.get(biz)?;
    acc.publishes.iter().find_map(|p| {
        p.articles
            .iter()
            .find(|a| matches(p.appmsgid, a.itemidx))
            .map(|a| (acc.clone(), p.appmsgid, a.clone()))
    })
}

/// Where the article with `token` (each `~` as `_`) is, from the token index (rebuilt once when it is missing:
/// publishes may have been added).
fn by_token(shared: &Shared, token: &str) -> Option<(String, i64, i64)> {
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = inner.pages.tokens.get(token) {
        return Some(hit.clone());
    }
    let index: HashMap<String, (String, i64, i64)> = inner
        .accounts
        .iter()
        .flat_map(|(biz, acc)| {
            acc.publishes.iter().flat_map(move |p| {
                p.articles.iter().map(move |a| {
                    (
                        acc.article_token(p.appmsgid, a.itemidx).replace('~', "_"),
                        (biz.clone(), p.appmsgid, a.itemidx),
                    )
                })
            })
        })
        .collect();
    inner.pages.tokens = index;
    inner.pages.tokens.get(token).cloned()
}

fn client(headers: &HeaderMap) -> String {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == "slave_sid")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

fn log(inner: &mut Inner, client: String, token: String, outcome: &'static str) {
    inner.pages.log.push(PageLogEntry {
        at: Instant::now(),
        client,
        token,
        outcome,
    });
}

fn answer(shared: &Shared, headers: &HeaderMap, found: Option<Found>, asked: String) -> Response {
    let client = client(headers);
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let check = inner
        .pages
        .check_for
        .get(&client)
        .copied()
        .unwrap_or(inner.pages.check);
    let token = found
        .as_ref()
        .map_or(asked, |(acc, mid, a)| acc.article_token(*mid, a.itemidx));
    match check {
        HumanCheck::Page => {
            log(&mut inner, client, token, "human_check");
            return Html(error_page("当前环境异常，完成验证后即可继续访问。")).into_response();
        }
        HumanCheck::Redirect => {
            log(&mut inner, client, token, "captcha_redirect");
            return (
                StatusCode::FOUND,
                [(
                    header::LOCATION,
                    "/mp/wappoc_appmsgcaptcha?poc_token=fake&target_url=%2Fs",
                )],
            )
                .into_response();
        }
        HumanCheck::Off => {}
    }
    let Some((acc, mid, article)) = found else {
        log(&mut inner, client, token, "404");
        return (StatusCode::NOT_FOUND, Html("<html><body>404</body></html>")).into_response();
    };
    let state = inner.pages.states.get(&token).copied().unwrap_or_default();
    let (outcome, text) = match state {
        PageState::Live => ("ok", None),
        PageState::Deleted => ("deleted", Some("该内容已被发布者删除")),
        PageState::UnderReview => ("under_review", Some("内容审核中")),
        PageState::Unavailable => ("unavailable", Some("此内容因违规无法查看")),
    };
    let body = inner.pages.bodies.get(&token).cloned();
    log(&mut inner, client, token.clone(), outcome);
    drop(inner);
    if let Some(text) = text {
        return Html(error_page(text)).into_response();
    }
    Html(live_page(&acc, mid, &article, &token, body)).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(title: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title></title></head><body>\
         <div class=\"weui-msg\"><div class=\"weui-msg__icon-area\"><i class=\"weui-icon-warn weui-icon_msg\"></i></div>\
         <div class=\"weui-msg__text-area\"><h2 class=\"weui-msg__title\">{title}</h2></div></div></body></html>"
    )
}

fn live_page(
    acc: &FakeAccount,
    mid: i64,
    a: &super::FakeArticle,
    token: &str,
    body: Option<String>,
) -> String {
    let title = escape(&a.title);
    let digest = escape(&a.digest);
    let nick = escape(&acc.nickname);
    let date = chrono::DateTime::from_timestamp(a.update_time, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let body = body.unwrap_or_else(|| {
        format!(
            "<p>{digest}</p><p><img class=\"rich_pages\" data-src=\"https://mmbiz.qpic.cn/fake/{token}/1\" \
             src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\" style=\"width: 677px;\"></p>"
        )
    });
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta property=\"og:title\" content=\"{title}\"><meta property=\"og:description\" content=\"{digest}\">\
         <meta property=\"og:image\" content=\"https://mmbiz.qpic.cn/fake/{token}/0\">\
         <meta property=\"og:article:author\" content=\"{nick}\">\
         <meta property=\"og:url\" content=\"{link}\">\
         <script type=\"text/javascript\">var biz = \"{biz}\" || \"\"; var mid = \"{mid}\" || \"\"; var idx = \"{idx}\" || \"\";\
         var nickname = htmlDecode(\"{nick}\"); var msg_title = '{title}'.html(false);</script></head><body id=\"activity-detail\">\
         <div class=\"rich_media_wrp\"><div id=\"js_article\" class=\"rich_media\"><div class=\"rich_media_inner\">\
         <h1 class=\"rich_media_title\" id=\"activity-name\">{title}</h1>\
         <div id=\"meta_content\"><a id=\"js_name\">{nick}</a><em id=\"publish_time\">{date}</em></div>\
         <div class=\"rich_media_content js_underline_content\" id=\"js_content\" style=\"visibility: hidden;\">{body}</div>\
         </div></div></div><span id=\"js_wx_follow_nickname\">{nick}</span></body></html>",
        link = escape(&acc.article_link(mid, a.itemidx)),
        biz = acc.fakeid(),
        idx = a.itemidx,
    )
}
