//! The fake's account search, `GET /cgi-bin/searchbiz` (LOGINS.md §1, UPSTREAMS.md §1.2):
//! the same session checks as the list (cookies, token, expiry, rate limit), then the
//! accounts whose nickname or alias contains the query, case-insensitively, paged by
//! `begin`/`count`. The article pages a link subscription reads (`var biz`, `var nickname`)
//! are the full-text fakes' (`page.rs`).

use super::{FakeAccount, LogEntry, Shared, err, session_id};
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

pub(super) fn routes(router: Router<Shared>) -> Router<Shared> {
    router.route("/cgi-bin/searchbiz", get(searchbiz))
}

impl FakeAccount {
    /// The account's WeChat id (`alias`) in search answers: `fake<number>`.
    pub fn alias(&self) -> String {
        format!("fake{}", self.number)
    }

    /// Its avatar URL in search answers.
    pub fn avatar(&self) -> String {
        format!(
            "http://mmbiz.qpic.cn/mmbiz_png/{}/0?wx_fmt=png",
            self.number
        )
    }

    /// Its description in search answers.
    pub fn signature(&self) -> String {
        format!("The fake account {}", self.nickname)
    }

    /// The short link `https://mp.weixin.qq.com/s/<token>` of an article of this account.
    pub fn short_link(&self, appmsgid: i64, itemidx: i64) -> String {
        format!(
            "https://mp.weixin.qq.com/s/{}",
            self.article_token(appmsgid, itemidx)
        )
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    action: Option<String>,
    query: Option<String>,
    token: Option<String>,
    begin: Option<usize>,
    count: Option<usize>,
}

async fn searchbiz(
    State(Shared { inner, .. }): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Json<Value> {
    let now = Instant::now();
    let sid = session_id(&headers);
    let token = q.token.unwrap_or_default();
    let begin = q.begin.unwrap_or(0);
    let count = q.count.unwrap_or(5).clamp(1, 20);
    let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
    let inner = &mut *guard;
    let outcome = inner
        .session_outcome(&sid, &token, false, now)
        .unwrap_or("ok");
    inner.log.push(LogEntry {
        at: now,
        token,
        fakeid: String::new(),
        begin,
        outcome,
    });
    match outcome {
        "200003" => return err(200_003, "invalid session"),
        "200040" => return err(200_040, "invalid csrf token"),
        "200013" => return err(200_013, "freq control"),
        _ => {}
    }
    if q.action.as_deref() != Some("search_biz") {
        return err(200_002, "invalid args");
    }
    let query = q.query.unwrap_or_default().trim().to_lowercase();
    let mut found: Vec<&FakeAccount> = inner
        .accounts
        .values()
        .filter(|a| {
            !query.is_empty()
                && (a.nickname.to_lowercase().contains(&query)
                    || a.alias().to_lowercase().contains(&query))
        })
        .collect();
    found.sort_by_key(|a| a.number);
    let list: Vec<Value> = found
        .iter()
        .skip(begin)
        .take(count)
        .map(|a| {
            json!({"fakeid": a.fakeid(), "nickname": a.nickname, "alias": a.alias(),
                   "round_head_img": a.avatar(), "service_type": 1, "signature": a.signature()})
        })
        .collect();
    Json(json!({"base_resp": {"ret": 0, "err_msg": "ok"}, "list": list, "total": found.len()}))
}
