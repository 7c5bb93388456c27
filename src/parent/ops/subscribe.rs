//! Subscribing by name or by link (issue 13 §6).
//!
//! By name: WeChat's account search (`searchbiz`, LOGINS.md §1) needs an `mp` login, which
//! only the children hold. The parent records a `search` command for an online node that
//! takes commands and reports a valid `mp` login, wakes the node's held claim
//! (`commands_pending`), hands the command out in the node's next heartbeat answer and waits —
//! on the notifier, not by polling — for the node to post the candidates to
//! `POST {P}/node-commands/{id}/answer`. Any parent of a shared database may take the answer:
//! the waiting request reads it from the database when woken.
//!
//! By link: a long article link (`/s?__biz=…`) names the account; a short one (`/s/<token>`)
//! is fetched from the configured WeChat host only (`wechat_base_url`), bounded in size and
//! time and without redirects, and its `var biz = "…"` read.

use crate::parent::AppState;
use crate::parent::error::{ApiError, ApiResult};
use crate::protocol::ids::{faker_id_from_feed_id, feed_id_from_faker_id};
use crate::protocol::wire::{CommandAnswer, CreateFeed};
use crate::protocol::xml::clean;
use crate::store::NewNodeCommand;
use crate::telemetry::untrusted;
use chrono::TimeDelta;
use serde_json::{Value, json};
use std::time::Duration;

/// Longest search text, in characters (account names are short).
pub const MAX_QUERY_CHARS: usize = 64;

/// Most candidates asked for, and kept from an answer.
pub const MAX_CANDIDATES: usize = 20;

/// Candidates asked for without `limit`.
const DEFAULT_CANDIDATES: usize = 10;

/// Commands that ended this long ago are removed.
const KEEP_ENDED: TimeDelta = TimeDelta::days(1);

/// Most bytes of an article page read to find its account.
const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// How long fetching an article page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The validated search text.
fn query_text(raw: Option<&str>) -> ApiResult<String> {
    let q = raw.map(str::trim).unwrap_or_default();
    if q.is_empty() {
        return Err(ApiError::bad_field(
            "q",
            "missing query parameter 'q' (the account name to look for)",
        ));
    }
    if q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) {
        return Err(ApiError::bad_field(
            "q",
            format!("q must be at most {MAX_QUERY_CHARS} printable characters"),
        ));
    }
    Ok(q.to_string())
}

/// `POST {P}/feeds/search?q=&limit=`: candidates `[{fakeid, biz, feed_id, nickname, alias,
/// avatar, signature, service_type, already_subscribed}]`, found through a node.
///
/// # Errors
/// 400 for a bad `q` or `limit`; 503 when no node can search; 504 when the node does not
/// answer within `search_timeout`; 502 when its search failed.
pub async fn search(state: &AppState, q: Option<&str>, limit: Option<i64>) -> ApiResult<Value> {
    let query = query_text(q)?;
    let limit = match limit {
        None => DEFAULT_CANDIDATES,
        Some(n) if (1..=MAX_CANDIDATES as i64).contains(&n) => usize::try_from(n).unwrap_or(1),
        Some(_) => {
            return Err(ApiError::bad_field(
                "limit",
                format!("limit must be between 1 and {MAX_CANDIDATES}"),
            ));
        }
    };
    let c = &state.config.cascade;
    let now = state.clock.now();
    let offline_after = i64::try_from(c.offline_after).unwrap_or(180);
    let nodes = state
        .store
        .search_nodes(now - TimeDelta::seconds(offline_after), now)
        .await?;
    let Some(node_id) = nodes.into_iter().next() else {
        return Err(ApiError::unavailable_because(
            "no node can search WeChat accounts now: searching needs an online node of this \
             version (it reports the 'commands' feature) with a valid mp login; log one in \
             with `cascade child login` on a node or POST /nodes/{id}/logins",
        ));
    };
    // A day at most: the command's expiry and this wait stay the same, and no setting can
    // overflow the clock.
    let timeout = c.search_timeout.clamp(1, 86_400);
    let id = uuid::Uuid::new_v4().to_string();
    let secs = i64::try_from(timeout).unwrap_or(86_400);
    state
        .store
        .create_node_command(
            NewNodeCommand {
                id: id.clone(),
                node_id: node_id.clone(),
                command: "search".into(),
                payload: json!({"query": query, "limit": limit}).to_string(),
                expires_at: now + TimeDelta::seconds(secs),
                prune_before: now - KEEP_ENDED,
            },
            now,
        )
        .await?;
    tracing::info!(node.id = %node_id, command.id = %id, "search asked of a node");
    // A claim of the node held here answers at once; one held by another parent of the
    // database looks at the commands table when woken.
    state.notifier.command_for(&node_id);
    state.notifier.wake_peers();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let command = loop {
        let answered = state.notifier.answered();
        tokio::pin!(answered);
        answered.as_mut().enable();
        let command = state.store.get_node_command(&id).await?;
        if command.state == "answered" {
            break command;
        }
        tokio::select! {
            () = &mut answered => {}
            () = tokio::time::sleep_until(deadline) => {
                let command = state.store.get_node_command(&id).await?;
                if command.state == "answered" {
                    break command;
                }
                state.store.expire_node_command(&id, state.clock.now()).await?;
                tracing::warn!(node.id = %node_id, command.id = %id, "the node did not answer a search in time");
                return Err(ApiError::gateway_timeout(format!(
                    "the node asked to search ({node_id}) did not answer within {timeout} s \
                     (search_timeout); try again"
                )));
            }
            () = state.shutdown.cancelled() => return Err(ApiError::unavailable()),
        }
    };
    if let Some(error) = command.error.filter(|e| !e.is_empty()) {
        return Err(ApiError::bad_gateway(format!(
            "the search on node {node_id} failed: {error}"
        )));
    }
    let found: Vec<Value> = command
        .answer
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    for mut candidate in found.into_iter().take(limit) {
        let feed_id = candidate["feed_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let subscribed = match state.store.get_feed(&feed_id).await {
            Ok(_) => true,
            Err(crate::store::Error::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        candidate["already_subscribed"] = json!(subscribed);
        out.push(candidate);
    }
    Ok(Value::Array(out))
}

/// Bounded printable text of a node's answer.
fn bounded(v: &Value, max: usize) -> String {
    let text: String = v
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    clean(text.trim().to_string())
}

/// The candidates a node found, checked: a `fakeid` that names an account (base64 of its
/// digits), bounded text, an http(s) avatar; others are dropped.
fn candidates(raw: &[Value]) -> Vec<Value> {
    raw.iter()
        .filter_map(|c| {
            let fakeid = c["fakeid"].as_str()?.trim();
            if fakeid.len() > 64 {
                return None;
            }
            let feed_id = feed_id_from_faker_id(fakeid)?;
            let biz = feed_id
                .strip_prefix("MP_WXS_")
                .unwrap_or_default()
                .to_string();
            let avatar = bounded(&c["avatar"], 1000);
            let avatar =
                (avatar.starts_with("https://") || avatar.starts_with("http://")).then_some(avatar);
            Some(json!({
                "fakeid": fakeid,
                "biz": biz,
                "feed_id": feed_id,
                "nickname": bounded(&c["nickname"], 200),
                "alias": bounded(&c["alias"], 100),
                "avatar": avatar,
                "signature": bounded(&c["signature"], 1000),
                "service_type": c["service_type"].as_i64(),
            }))
        })
        .take(MAX_CANDIDATES)
        .collect()
}

/// `POST {P}/node-commands/{id}/answer` (node): the node's answer to its own command.
///
/// # Errors
/// 400 for an answer with more than [`MAX_CANDIDATES`] candidates; 404 for another node's
/// command; 409 for one answered already or expired.
pub async fn answer(
    state: &AppState,
    node_id: &str,
    id: &str,
    body: CommandAnswer,
) -> ApiResult<Value> {
    let raw = body.candidates.unwrap_or_default();
    if raw.len() > MAX_CANDIDATES {
        return Err(ApiError::bad_field(
            "candidates",
            format!("at most {MAX_CANDIDATES} candidates"),
        ));
    }
    let error = body
        .error
        .map(|e| bounded(&Value::String(e), 500))
        .filter(|e| !e.is_empty());
    let answer = (error.is_none()).then(|| Value::Array(candidates(&raw)).to_string());
    let command = state
        .store
        .answer_node_command(node_id, id, answer, error, state.clock.now())
        .await?;
    state.notifier.answer_arrived();
    tracing::info!(node.id = %node_id, command.id = %untrusted(id), "command answered");
    Ok(json!({"id": command.id, "state": command.state}))
}

/// The search commands waiting for a node: `[{id, type: "search", query, limit}]`.
///
/// # Errors
/// Database failures.
pub async fn commands(state: &AppState, node_id: &str) -> ApiResult<Vec<Value>> {
    let list = state
        .store
        .deliver_node_commands(node_id, state.clock.now())
        .await?;
    Ok(list
        .into_iter()
        .map(|c| {
            let payload: Value = serde_json::from_str(&c.payload).unwrap_or_default();
            json!({"id": c.id, "type": c.command, "query": payload["query"], "limit": payload["limit"]})
        })
        .collect())
}

/// The host (and port) of the configured WeChat base URL.
fn wechat_host(state: &AppState) -> ApiResult<reqwest::Url> {
    reqwest::Url::parse(state.config.cascade.wechat_base_url.trim())
        .map_err(|_| ApiError::internal(&"wechat_base_url is not a URL"))
}

/// What an article link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// A long link: its `__biz`.
    Biz(String),
    /// A short link: its `/s/<token>` token, to be read from the page.
    Token(String),
}

/// Reads an article link on `mp.weixin.qq.com` or the configured WeChat host; any other host
/// is refused before any request.
///
/// # Errors
/// 400 naming `url`.
pub fn parse_link(raw: &str, configured: &reqwest::Url) -> ApiResult<LinkTarget> {
    let bad = |m: &str| ApiError::bad_field("url", m.to_string());
    if raw.len() > 2048 {
        return Err(bad("url is too long"));
    }
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|_| bad("url must be a WeChat article link (https://mp.weixin.qq.com/s/…)"))?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let same_as_configured = configured.host_str() == url.host_str()
        && configured.port_or_known_default() == url.port_or_known_default();
    if !matches!(url.scheme(), "http" | "https")
        || (host != "mp.weixin.qq.com" && !same_as_configured)
    {
        return Err(bad(
            "url must be a WeChat article link on mp.weixin.qq.com; other hosts are not fetched",
        ));
    }
    if let Some((_, biz)) = url.query_pairs().find(|(k, _)| k == "__biz") {
        // Form decoding reads a raw `+` of base64 as a space.
        return Ok(LinkTarget::Biz(biz.trim().replace(' ', "+")));
    }
    let token = url.path().strip_prefix("/s/").unwrap_or_default();
    let token_ok = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~'));
    if token_ok {
        return Ok(LinkTarget::Token(token.to_string()));
    }
    Err(bad(
        "url must be an article link: /s?__biz=… or /s/<token> on mp.weixin.qq.com",
    ))
}

/// The first quoted value assigned to `name` in a page's script (`var biz = "…"`, `window.biz
/// = "…"`, `var biz = "" || "…"`, `htmlDecode("…")`), the first non-empty one.
fn script_value(html: &str, names: &[&str]) -> Option<String> {
    for name in names {
        let mut rest = html;
        while let Some(at) = rest.find(name) {
            let after = &rest[at + name.len()..];
            rest = after;
            let Some(expr) = after.trim_start().strip_prefix('=') else {
                continue;
            };
            if let Some(v) = quoted_values(expr)
                .into_iter()
                .find(|v| !v.trim().is_empty())
            {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

/// The quoted strings of a script expression up to its end (`;` or a line break outside
/// quotes), at most 2 KiB of it read.
fn quoted_values(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars().take(2048);
    while let Some(c) = chars.next() {
        match c {
            ';' | '\n' => break,
            '"' | '\'' => {
                let mut value = String::new();
                let mut escaped = false;
                for d in chars.by_ref() {
                    match d {
                        _ if escaped => {
                            value.push(d);
                            escaped = false;
                        }
                        '\\' => escaped = true,
                        _ if d == c => break,
                        _ => value.push(d),
                    }
                }
                out.push(value);
            }
            _ => {}
        }
    }
    out
}

/// The account of an article page: its `biz` (base64 of the account number) and the
/// account's name when the page gives it.
pub fn page_account(html: &str) -> Option<(String, Option<String>)> {
    let biz = script_value(html, &["var biz", "window.biz"])?;
    let name = script_value(html, &["var nickname", "window.nickname"])
        .map(|n| html_unescape(&n))
        .filter(|n| !n.is_empty());
    Some((biz, name))
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("\\x26", "&")
}

/// Fetches `/s/<token>` from the configured WeChat host (never another), bounded in time and
/// size, no redirects followed.
async fn fetch_page(base: &reqwest::Url, state: &AppState, token: &str) -> ApiResult<String> {
    // Only the token comes from the link; scheme, host and port are the configured ones.
    let mut url = base.clone();
    url.set_path(&format!("/s/{token}"));
    url.set_query(None);
    url.set_fragment(None);
    let failed =
        |why: String| ApiError::bad_gateway(format!("the article page could not be read: {why}"));
    let mut resp = state
        .http
        .get(url)
        .timeout(PAGE_TIMEOUT)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(failed(format!("HTTP {}", resp.status().as_u16())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = tokio::time::timeout(PAGE_TIMEOUT, resp.chunk())
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err(failed(format!("larger than {MAX_PAGE_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `POST {P}/feeds/resolve?url=&name=`: subscribes to the account of an article link.
/// Returns the feed and whether it was created (false: the account was a feed already).
///
/// # Errors
/// 400 for a link on another host or without an account; 502 when the page cannot be read.
pub async fn resolve(
    state: &AppState,
    url: Option<&str>,
    name: Option<&str>,
) -> ApiResult<(crate::store::Feed, bool)> {
    let raw = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ApiError::bad_field("url", "missing query parameter 'url' (an article link)")
        })?;
    let base = wechat_host(state)?;
    let (biz, page_name) = match parse_link(raw, &base)? {
        LinkTarget::Biz(biz) => (biz, None),
        LinkTarget::Token(token) => {
            let html = fetch_page(&base, state, &token).await?;
            page_account(&html).ok_or_else(|| {
                ApiError::bad_field(
                    "url",
                    "the article page names no account (deleted, or not an article)",
                )
            })?
        }
    };
    let feed_id = feed_id_from_faker_id(&biz)
        .ok_or_else(|| ApiError::bad_field("url", "the link's __biz is not an account id"))?;
    let faker_id = faker_id_from_feed_id(&feed_id).unwrap_or(biz);
    if let Ok(feed) = state.store.get_feed(&feed_id).await {
        return Ok((feed, false));
    }
    let given = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(200).collect::<String>());
    let page_name = page_name.map(|n| n.chars().take(200).collect::<String>());
    let mp_name = given.or(page_name).unwrap_or_else(|| feed_id.clone());
    let new = super::new_feed(CreateFeed {
        id: Some(feed_id),
        faker_id: Some(faker_id),
        mp_name,
        mp_cover: None,
        mp_intro: None,
        status: None,
        source: Some("wechat".into()),
        url: None,
    })?;
    let feed = state.store.create_feed(new, state.clock.now()).await?;
    tracing::info!(feed.id = %feed.id, "subscribed by article link");
    Ok((feed, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_is_read_from_an_article_page() {
        let page = r#"<html><script>
            var appmsg_type = "9";
            var biz = ""||"MzA5MDAwNTM4MQ==";
            var nickname = htmlDecode("人民 &amp; 日报");
            </script></html>"#;
        assert_eq!(
            page_account(page),
            Some(("MzA5MDAwNTM4MQ==".into(), Some("人民 & 日报".into())))
        );
        let window = "<script>window.biz = 'MzA5';\nwindow.nickname = \"\";</script>";
        assert_eq!(page_account(window), Some(("MzA5".into(), None)));
        let spaced = "var biz   =   \"Mzg5\" ; var nickname=\"A\";";
        assert_eq!(
            page_account(spaced),
            Some(("Mzg5".into(), Some("A".into())))
        );
        assert_eq!(
            page_account("<p>var bizarre</p><script>var biz = \"\";</script>"),
            None
        );
        assert_eq!(page_account("<html>nothing</html>"), None);
    }

    #[test]
    fn links_name_an_account_only_on_the_wechat_host() {
        let base = reqwest::Url::parse("http://127.0.0.1:4000").unwrap();
        let long = "https://mp.weixin.qq.com/s?__biz=MzA5MDAwNTM4MQ==&mid=1&idx=1&sn=x#rd";
        assert_eq!(
            parse_link(long, &base).unwrap(),
            LinkTarget::Biz("MzA5MDAwNTM4MQ==".into())
        );
        assert_eq!(
            parse_link("https://mp.weixin.qq.com/s/AbC_d-e~f", &base).unwrap(),
            LinkTarget::Token("AbC_d-e~f".into())
        );
        assert_eq!(
            parse_link("http://127.0.0.1:4000/s/tok", &base).unwrap(),
            LinkTarget::Token("tok".into())
        );
        for bad in [
            "https://evil.example/s/tok",
            "https://evil.example/s?__biz=MzA5",
            "http://127.0.0.1:4001/s/tok",
            "https://mp.weixin.qq.com.evil.example/s/tok",
            "ftp://mp.weixin.qq.com/s/tok",
            "https://mp.weixin.qq.com/s/../x",
            "https://mp.weixin.qq.com/",
            "not a url",
        ] {
            assert_eq!(parse_link(bad, &base).unwrap_err().status(), 400, "{bad}");
        }
    }
}
