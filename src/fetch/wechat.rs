//! The `wechat` fetcher: the MP platform's `appmsgpublish` list (UPSTREAMS §1), paged back to
//! what the parent already has, every page through the login's pacer, WeChat's `ret` codes
//! mapped to failure reasons (§2.1).

use super::pacer::Pacer;
use super::{Article, FetchError, Fetched, Reserve};
use crate::protocol::credentials::Secret;
use crate::protocol::ids::article_id;
use crate::protocol::wire::PackageFeed;
use serde_json::Value;
use std::sync::Arc;

/// Page size asked of WeChat.
const PAGE: usize = 5;

/// Longest wait for one MP backend answer (the client itself bounds only the connect).
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One WeChat login: token, cookie and the pacer all its fetches share.
#[derive(Clone)]
pub struct WechatFetcher {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    cookie: Secret,
    pacer: Arc<Pacer>,
    max_pages: usize,
    reserve: Option<Reserve>,
}

impl WechatFetcher {
    /// A fetcher for one login against `base_url` (`https://mp.weixin.qq.com` or a fake).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        token: Secret,
        cookie: Secret,
        pacer: Arc<Pacer>,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            cookie,
            pacer,
            max_pages: 5,
            reserve: None,
        }
    }

    /// Every page first reserves one unit of the login's budget (issue 13 §7).
    #[must_use]
    pub fn with_budget(mut self, reserve: Reserve) -> Self {
        self.reserve = Some(reserve);
        self
    }

    /// Articles of `feed` newer than its `since` (all of the first pages without one).
    ///
    /// # Errors
    /// A typed [`FetchError`]; articles gathered before it are lost with it only for this feed.
    pub async fn fetch(&self, feed: &PackageFeed) -> Result<Fetched, FetchError> {
        let fakeid = feed
            .faker_id
            .clone()
            .or_else(|| crate::protocol::ids::faker_id_from_feed_id(&feed.id))
            .ok_or_else(|| FetchError::NotFound(format!("feed {} has no faker_id", feed.id)))?;
        let mut articles = Vec::new();
        for page in 0..self.max_pages {
            let begin = page * PAGE;
            let (items, total) = match self.page(&fakeid, begin).await {
                // The budget ran out after some pages: what was read is kept.
                Err(FetchError::OutOfBudget { .. }) if page > 0 => break,
                other => other?,
            };
            let before = articles.len();
            let mut reached_known = false;
            for item in items {
                match feed.since {
                    Some(since) if item.publish_time <= since => reached_known = true,
                    _ => articles.push(Article {
                        id: article_id(&feed.id, &item.id),
                        mp_id: feed.id.clone(),
                        ..item
                    }),
                }
            }
            if reached_known || articles.len() == before || begin + PAGE >= total {
                break;
            }
        }
        Ok(Fetched {
            articles,
            ..Fetched::default()
        })
    }

    /// WeChat accounts whose name matches `query` (`searchbiz`, LOGINS.md §1), at most
    /// `count` (1–20), through the login's pacer.
    ///
    /// # Errors
    /// A typed [`FetchError`] (`rate_limited`, `session_expired`, …).
    pub async fn search(&self, query: &str, count: usize) -> Result<Vec<Value>, FetchError> {
        self.pacer.wait_turn().await;
        if let Some(reserve) = &self.reserve {
            reserve()?;
        }
        let url = format!("{}/cgi-bin/searchbiz", self.base_url);
        let count = count.clamp(1, 20).to_string();
        let query = [
            ("action", "search_biz"),
            ("begin", "0"),
            ("count", count.as_str()),
            ("query", query),
            ("token", self.token.expose()),
            ("lang", "zh_CN"),
            ("f", "json"),
            ("ajax", "1"),
        ];
        let text = self.get(&url, &query).await?;
        parse_search(&text)
    }

    /// One MP backend call with the login's cookie: its answer's text (bounded in time and
    /// size); a 5xx is a `network` error.
    async fn get(&self, url: &str, query: &[(&str, &str)]) -> Result<String, FetchError> {
        let resp = self
            .http
            .get(url)
            .query(query)
            .header("Cookie", self.cookie.expose())
            .header("Referer", "https://mp.weixin.qq.com/")
            .header("X-Requested-With", "XMLHttpRequest")
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| FetchError::Network(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(FetchError::Network(format!("HTTP {status}")));
        }
        super::answer_text(resp).await
    }

    /// One list page: articles (ids not yet normalised) and `total_count`.
    async fn page(&self, fakeid: &str, begin: usize) -> Result<(Vec<Article>, usize), FetchError> {
        self.pacer.wait_turn().await;
        if let Some(reserve) = &self.reserve {
            reserve()?;
        }
        let url = format!("{}/cgi-bin/appmsgpublish", self.base_url);
        let begin_s = begin.to_string();
        let count = PAGE.to_string();
        let query = [
            ("sub", "list"),
            ("sub_action", "list_ex"),
            ("begin", begin_s.as_str()),
            ("count", count.as_str()),
            ("fakeid", fakeid),
            ("token", self.token.expose()),
            ("lang", "zh_CN"),
            ("f", "json"),
            ("ajax", "1"),
        ];
        let text = self.get(&url, &query).await?;
        parse_page(&text)
    }
}

/// Maps WeChat's `base_resp.ret` to a reason (UPSTREAMS §2.1); `Ok` for `0`.
fn check_ret(body: &Value) -> Result<(), FetchError> {
    let ret = body["base_resp"]["ret"]
        .as_i64()
        .ok_or_else(|| FetchError::Parse("no base_resp.ret".into()))?;
    let msg = body["base_resp"]["err_msg"].as_str().unwrap_or_default();
    match ret {
        0 => Ok(()),
        200_013 => Err(FetchError::RateLimited { retry_after: None }),
        200_003 | 200_040 => Err(FetchError::SessionExpired(format!("{ret} {msg}"))),
        200_002 => Err(FetchError::NotFound(format!("{ret} {msg}"))),
        _ => Err(FetchError::Network(format!("ret {ret} {msg}"))),
    }
}

/// Reads one `searchbiz` answer (LOGINS.md §1): `[{fakeid, nickname, alias, avatar,
/// signature, service_type}]`.
///
/// # Errors
/// The reason the answer carries, or `parse`.
pub fn parse_search(text: &str) -> Result<Vec<Value>, FetchError> {
    let body: Value = serde_json::from_str(text).map_err(|_| {
        if text.contains("<html") || text.contains("<!DOCTYPE") {
            FetchError::SessionExpired("login page instead of JSON".into())
        } else {
            FetchError::Parse("answer is not JSON".into())
        }
    })?;
    check_ret(&body)?;
    Ok(body["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["fakeid"].is_string())
        .map(|a| {
            serde_json::json!({
                "fakeid": a["fakeid"], "nickname": a["nickname"], "alias": a["alias"],
                "avatar": a["round_head_img"], "signature": a["signature"],
                "service_type": a["service_type"],
            })
        })
        .collect())
}

/// Reads one `appmsgpublish` answer (UPSTREAMS §1.2, codes of §2.1).
///
/// # Errors
/// The reason the answer carries, or `parse`.
pub fn parse_page(text: &str) -> Result<(Vec<Article>, usize), FetchError> {
    let body: Value = serde_json::from_str(text).map_err(|_| {
        if text.contains("<html") || text.contains("<!DOCTYPE") {
            FetchError::SessionExpired("login page instead of JSON".into())
        } else {
            FetchError::Parse("answer is not JSON".into())
        }
    })?;
    check_ret(&body)?;
    let Some(page_text) = body["publish_page"].as_str() else {
        return Ok((Vec::new(), 0));
    };
    let page: Value = serde_json::from_str(page_text)
        .map_err(|_| FetchError::Parse("publish_page is not JSON".into()))?;
    let total = page["total_count"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let mut out = Vec::new();
    for publish in page["publish_list"].as_array().into_iter().flatten() {
        let Some(info_text) = publish["publish_info"].as_str().filter(|s| !s.is_empty()) else {
            continue;
        };
        let info: Value = serde_json::from_str(info_text)
            .map_err(|_| FetchError::Parse("publish_info is not JSON".into()))?;
        let sent = info["sent_info"]["time"].as_i64();
        for item in info["appmsgex"].as_array().into_iter().flatten() {
            let Some(aid) = item["aid"].as_str() else {
                continue;
            };
            let text = |k: &str| item[k].as_str().map(str::to_string);
            out.push(Article {
                id: aid.to_string(),
                mp_id: String::new(),
                title: text("title").unwrap_or_default(),
                url: text("link").unwrap_or_default(),
                pic_url: text("cover"),
                description: text("digest"),
                content: String::new(),
                publish_time: item["update_time"]
                    .as_i64()
                    .or(item["create_time"].as_i64())
                    .or(sent)
                    .unwrap_or(0),
                status: if item["is_deleted"].as_bool() == Some(true) {
                    1000
                } else {
                    1
                },
                doc_url: None,
                read_num: None,
                like_num: None,
                time_estimated: false,
                review_id: None,
            });
        }
    }
    Ok((out, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_answers_become_candidates_and_codes_reasons() {
        let ok = r#"{"base_resp":{"ret":0,"err_msg":"ok"},"total":2,"list":[
            {"fakeid":"MzA5","nickname":"A","alias":"a","round_head_img":"http://i/0","service_type":1,"signature":"s","extra":1},
            {"nickname":"no fakeid"}]}"#;
        let found = parse_search(ok).expect("parsed");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0]["fakeid"], "MzA5");
        assert_eq!(found[0]["avatar"], "http://i/0");
        assert!(found[0].get("extra").is_none());
        let code =
            |ret: i64| parse_search(&format!(r#"{{"base_resp":{{"ret":{ret},"err_msg":"x"}}}}"#));
        assert!(matches!(code(200_013), Err(FetchError::RateLimited { .. })));
        assert!(matches!(code(200_003), Err(FetchError::SessionExpired(_))));
        assert!(matches!(
            parse_search("<html>login</html>"),
            Err(FetchError::SessionExpired(_))
        ));
        assert_eq!(
            parse_search(r#"{"base_resp":{"ret":0}}"#)
                .expect("empty")
                .len(),
            0
        );
    }

    #[test]
    fn codes_map_to_reasons() {
        let e = |ret: i64| {
            parse_page(&format!(r#"{{"base_resp":{{"ret":{ret},"err_msg":"x"}}}}"#))
                .expect_err("error")
        };
        assert_eq!(e(200_013).reason(), "rate_limited");
        assert_eq!(e(200_003).reason(), "session_expired");
        assert_eq!(e(200_040).reason(), "session_expired");
        assert_eq!(e(200_002).reason(), "not_found");
        assert_eq!(e(-1).reason(), "network");
        assert_eq!(
            parse_page("<html>login</html>")
                .expect_err("login")
                .reason(),
            "session_expired"
        );
        assert_eq!(parse_page("{").expect_err("bad").reason(), "parse");
        let bad_inner = r#"{"base_resp":{"ret":0,"err_msg":"ok"},"publish_page":"{not json"}"#;
        assert_eq!(parse_page(bad_inner).expect_err("bad").reason(), "parse");
    }

    #[test]
    fn nested_pages_are_read_and_empty_infos_skipped() {
        let info = serde_json::json!({"sent_info": {"time": 5}, "appmsgex": [{"aid": "22_1", "title": "T", "link": "L", "update_time": 7}]});
        let page = serde_json::json!({"total_count": 3, "publish_list": [{"publish_info": info.to_string()}, {"publish_info": ""}, {}]});
        let body = serde_json::json!({"base_resp": {"ret": 0, "err_msg": "ok"}, "publish_page": page.to_string()});
        let (items, total) = parse_page(&body.to_string()).expect("page");
        assert_eq!(total, 3);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, "22_1");
        assert_eq!(items[0].publish_time, 7);
    }
}
