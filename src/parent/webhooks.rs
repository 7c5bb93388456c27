//! Webhooks (DESIGN §8, PROTOCOL §8.5): the new articles of an upload are queued (in the
//! upload's transaction) as one message per enabled task that has a `web_hook_url` and
//! includes their feed. The parent's [`Sender`] sends them (children need no outbound
//! access), with a timeout and retries with doubling back-off.
//!
//! The message is `message_template` rendered with minijinja (WeRSS writes Jinja). A template
//! that mentions `articles` is rendered once with the list; one that does not (WeRSS's
//! `{{ article.title }}`) is rendered per article and the parts joined by blank lines. Both see
//! `feed` (the first article's feed) and `task`. `message_type` 0 (WeRSS "message") picks the
//! body by the URL: WeCom (`qyapi.weixin.qq.com`), DingTalk (`oapi.dingtalk.com`), Feishu/Lark
//! (`open.feishu.cn`, `open.larksuite.com`), else `{"title", "content"}`; `message_type` 1
//! (custom webhook) posts the rendered text itself when it is JSON, else `{"content": text}`.
//! The task's `headers` (a JSON object) are sent with each call.

use super::AppState;
use crate::store::{MessageTask, StoredArticle, WebhookJob, WebhookResult};
use crate::telemetry::untrusted_error;
use serde_json::{Value, json};
use std::time::Duration;

/// Used when a task has no template.
const DEFAULT_TEMPLATE: &str = "{{ feed.mp_name }}: {{ articles | length }} new\n\
{% for a in articles %}- {{ a.title }}{% if a.url %} {{ a.url }}{% endif %}\n{% endfor %}";

/// The chat platform a `message_type` 0 URL belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// WeCom (企业微信) group robot.
    WeCom,
    /// DingTalk (钉钉) robot.
    DingTalk,
    /// Feishu / Lark bot.
    Feishu,
    /// Anything else.
    Generic,
}

impl Platform {
    /// The platform of a webhook URL.
    pub fn of(url: &str) -> Self {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?', ':']).next())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match host.as_str() {
            "qyapi.weixin.qq.com" => Self::WeCom,
            "oapi.dingtalk.com" => Self::DingTalk,
            "open.feishu.cn" | "open.larksuite.com" => Self::Feishu,
            _ => Self::Generic,
        }
    }
}

/// The JSON body for a rendered message.
pub fn body(task: &MessageTask, title: &str, text: &str) -> Value {
    if task.fields.message_type == 1 {
        return serde_json::from_str::<Value>(text)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
            .unwrap_or_else(|| json!({ "content": text }));
    }
    match Platform::of(&task.fields.web_hook_url) {
        Platform::WeCom => json!({"msgtype": "markdown", "markdown": {"content": text}}),
        Platform::DingTalk => {
            json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
        }
        Platform::Feishu => json!({"msg_type": "text", "content": {"text": text}}),
        Platform::Generic => json!({"title": title, "content": text}),
    }
}

fn article_value(a: &StoredArticle) -> Value {
    json!({
        "id": a.id, "mp_id": a.mp_id, "mp_name": a.mp_name, "title": a.title, "url": a.url,
        "link": a.url, "pic_url": a.pic_url, "description": a.description,
        "content": a.content_html, "publish_time": a.publish_time,
    })
}

/// Renders `task`'s template for `articles` (all of one batch).
///
/// # Errors
/// The template does not parse or fails to render (the message names the problem).
pub fn render(task: &MessageTask, articles: &[StoredArticle]) -> Result<String, String> {
    let source = Some(task.fields.message_template.trim())
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_TEMPLATE);
    let mut env = minijinja::Environment::new();
    env.add_template("message", source)
        .map_err(|e| format!("message_template: {e}"))?;
    let template = env
        .get_template("message")
        .map_err(|e| format!("message_template: {e}"))?;
    let feed = articles
        .first()
        .map(|a| json!({"id": a.mp_id, "mp_name": a.mp_name.clone().unwrap_or_default()}))
        .unwrap_or(Value::Null);
    let task_value = json!({"id": task.id, "name": task.fields.name});
    let list: Vec<Value> = articles.iter().map(article_value).collect();
    let whole = source.contains("articles");
    let contexts: Vec<Value> = if whole {
        vec![json!({"articles": list, "article": list.first(), "feed": feed, "task": task_value})]
    } else {
        list.iter()
            .map(|a| json!({"articles": [a], "article": a, "feed": feed, "task": task_value}))
            .collect()
    };
    let parts = contexts
        .iter()
        .map(|ctx| {
            template
                .render(ctx)
                .map_err(|e| format!("message_template: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(parts.join("\n\n"))
}

/// The webhook sender: every parent runs one. It claims due outbox rows (written in the
/// upload's transaction), sends each once, and records the outcome: sent, retry at a
/// doubling back-off, or failed after `webhook_attempts`. A claimed row is leased for the
/// call's timeout plus a margin, so a parent that stops mid-send leaves it to another.
#[derive(Clone)]
pub struct Sender {
    state: AppState,
}

/// Rows claimed per pass.
const BATCH: i64 = 20;

impl Sender {
    /// A sender over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// One pass at the state's clock: sends every due webhook; returns how many it tried.
    ///
    /// # Errors
    /// Database failures (the loop logs them and carries on).
    pub async fn run_once(&self) -> crate::store::Result<usize> {
        let s = &self.state;
        let c = &s.config.cascade;
        let lease = i64::try_from(c.webhook_timeout.saturating_add(30)).unwrap_or(60);
        let mut tried = 0;
        loop {
            let jobs = s.store.claim_webhooks(s.clock.now(), BATCH, lease).await?;
            if jobs.is_empty() {
                return Ok(tried);
            }
            tried += jobs.len();
            let mut sends = tokio::task::JoinSet::new();
            for job in jobs {
                let state = s.clone();
                sends.spawn(async move {
                    let result = attempt(&state, &job).await;
                    state.metrics.webhook(&result);
                    if let Err(e) = state
                        .store
                        .finish_webhook(&job.id, result, state.clock.now())
                        .await
                    {
                        tracing::warn!(error = %e, "webhook outcome not recorded");
                    }
                });
            }
            while sends.join_next().await.is_some() {}
        }
    }

    /// Runs until `token` is cancelled: a pass when woken by an upload, else every second.
    pub async fn run(self, token: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %e, "webhook pass failed");
            }
            tokio::select! {
                () = self.state.webhook_wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = token.cancelled() => return,
            }
        }
    }
}

/// One try of one job.
async fn attempt(state: &AppState, job: &WebhookJob) -> WebhookResult {
    let c = &state.config.cascade;
    let task = match state.store.get_task(&job.task_id).await {
        Ok(t) if t.fields.status == 1 && !t.fields.web_hook_url.trim().is_empty() => t,
        Ok(_) => return WebhookResult::Failed("task disabled or without web_hook_url".into()),
        Err(crate::store::Error::NotFound(_)) => {
            return WebhookResult::Failed("task deleted".into());
        }
        Err(e) => return retry_or_fail(state, job, e.to_string()),
    };
    let batch = match state.store.get_articles(job.article_ids.clone()).await {
        Ok(b) if !b.is_empty() => b,
        Ok(_) => return WebhookResult::Failed("articles deleted".into()),
        Err(e) => return retry_or_fail(state, job, e.to_string()),
    };
    let text = match render(&task, &batch) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(task.id = %task.id, error = %untrusted_error(&e), "webhook not sent");
            return WebhookResult::Failed(e);
        }
    };
    let title = format!(
        "{}: {} new",
        batch[0]
            .mp_name
            .clone()
            .unwrap_or_else(|| task.fields.name.clone()),
        batch.len()
    );
    let headers: serde_json::Map<String, Value> = task
        .fields
        .headers
        .as_deref()
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    let mut req = state
        .http
        .post(&task.fields.web_hook_url)
        .timeout(Duration::from_secs(c.webhook_timeout.max(1)))
        .json(&body(&task, &title, &text));
    for (k, v) in &headers {
        if let Some(v) = v.as_str() {
            req = req.header(k, v);
        }
    }
    let platform = Platform::of(&task.fields.web_hook_url);
    let sent = match req.send().await {
        Ok(r) if r.status().is_success() => {
            let reply = r.json::<Value>().await.unwrap_or(Value::Null);
            refused_by_platform(platform, &reply).map_or(Ok(()), Err)
        }
        Ok(r) => Err(format!("status {}", r.status().as_u16())),
        Err(e) => Err(e.without_url().to_string()),
    };
    match sent {
        Ok(()) => {
            tracing::info!(task.id = %task.id, articles = batch.len(), attempt = job.attempts, "webhook sent");
            WebhookResult::Sent
        }
        Err(e) => retry_or_fail(state, job, e),
    }
}

/// Chat platforms answer 200 with an error code in the body (bad key, rate limit, keyword
/// rule): such a message was not delivered.
pub(crate) fn refused_by_platform(platform: Platform, reply: &Value) -> Option<String> {
    let code = match platform {
        Platform::WeCom | Platform::DingTalk => reply.get("errcode"),
        Platform::Feishu => reply.get("code").or_else(|| reply.get("StatusCode")),
        Platform::Generic => None,
    }?;
    let ok = code.as_i64() == Some(0);
    let message = ["errmsg", "msg", "StatusMessage"]
        .iter()
        .find_map(|k| reply.get(*k).and_then(Value::as_str))
        .unwrap_or_default();
    (!ok).then(|| format!("refused by the platform: {code} {message}"))
}

fn retry_or_fail(state: &AppState, job: &WebhookJob, error: String) -> WebhookResult {
    let c = &state.config.cascade;
    if u64::try_from(job.attempts).unwrap_or(u64::MAX) >= c.webhook_attempts.max(1) {
        tracing::warn!(task.id = %job.task_id, attempt = job.attempts, error = %untrusted_error(&error), "webhook failed, giving up");
        return WebhookResult::Failed(error);
    }
    let exp = u32::try_from((job.attempts - 1).clamp(0, 16)).unwrap_or(16);
    let wait = c.webhook_backoff_ms.saturating_mul(1 << exp);
    let wait = chrono::TimeDelta::milliseconds(i64::try_from(wait).unwrap_or(i64::MAX / 2));
    tracing::info!(task.id = %job.task_id, attempt = job.attempts, error = %untrusted_error(&error), "webhook failed, will retry");
    WebhookResult::Retry(state.clock.now() + wait, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskFields;

    fn task(message_type: i64, url: &str) -> MessageTask {
        MessageTask {
            id: "t".into(),
            fields: TaskFields {
                name: "n".into(),
                message_type,
                web_hook_url: url.into(),
                ..TaskFields::default()
            },
            created_at: None,
            updated_at: None,
            next_run_at: None,
            last_run_at: None,
        }
    }

    #[test]
    fn message_bodies_follow_the_platform_of_the_url() {
        let wecom = body(
            &task(0, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"),
            "T",
            "x",
        );
        assert_eq!(
            wecom,
            json!({"msgtype": "markdown", "markdown": {"content": "x"}})
        );
        let ding = body(
            &task(0, "https://oapi.dingtalk.com/robot/send?access_token=t"),
            "T",
            "x",
        );
        assert_eq!(
            ding,
            json!({"msgtype": "markdown", "markdown": {"title": "T", "text": "x"}})
        );
        let feishu = body(
            &task(0, "https://open.feishu.cn/open-apis/bot/v2/hook/h"),
            "T",
            "x",
        );
        assert_eq!(
            feishu,
            json!({"msg_type": "text", "content": {"text": "x"}})
        );
        let other = body(&task(0, "http://127.0.0.1:9/h"), "T", "x");
        assert_eq!(other, json!({"title": "T", "content": "x"}));
        // Custom webhooks post the rendered JSON, or wrap plain text.
        assert_eq!(
            body(&task(1, "http://h/"), "T", "{\"a\": 1}"),
            json!({"a": 1})
        );
        assert_eq!(
            body(&task(1, "http://h/"), "T", "plain"),
            json!({"content": "plain"})
        );
    }

    #[test]
    fn chat_platform_error_codes_are_failures() {
        let refused = refused_by_platform(
            Platform::WeCom,
            &json!({"errcode": 93000, "errmsg": "invalid webhook url"}),
        );
        assert_eq!(
            refused.as_deref(),
            Some("refused by the platform: 93000 invalid webhook url")
        );
        assert_eq!(
            refused_by_platform(Platform::DingTalk, &json!({"errcode": 0, "errmsg": "ok"})),
            None
        );
        assert!(
            refused_by_platform(
                Platform::Feishu,
                &json!({"code": 19024, "msg": "Key Words Not Found"})
            )
            .is_some()
        );
        assert_eq!(
            refused_by_platform(Platform::Generic, &json!({"errcode": 1})),
            None
        );
    }

    #[test]
    fn a_broken_template_is_reported_not_sent() {
        let mut t = task(1, "http://h/");
        t.fields.message_template = "{% for %}".into();
        let err = render(&t, &[]).expect_err("template error");
        assert!(err.starts_with("message_template:"), "{err}");
    }
}
