//! Operator alerts (issue 12 §3(c), §4): short messages for the person running the fleet — a
//! login about to expire or expired ([`super::reminders`]), and whatever else needs a human.
//! [`raise`] logs the alert once at warn and, when `cascade.alert_webhook_url` is set, posts it
//! there in the background, rendered for the platform of the URL like task webhooks: WeCom and
//! DingTalk markdown, Feishu text, anything else JSON `{"title", "content", "event", …fields}`.
//! Sending has the task webhooks' timeout and retries (`webhook_timeout`, `webhook_attempts`,
//! `webhook_backoff_ms` doubling); a failure is logged once. Sends are tracked by the parent
//! and end at its shutdown. An alert carries only what its raiser put in it: never a secret.

use super::AppState;
use super::webhooks::{Platform, refused_by_platform};
use crate::telemetry::{untrusted, untrusted_error};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Keys of the generic JSON body that [`Alert::fields`] cannot replace.
const RESERVED: [&str; 3] = ["title", "content", "event"];

/// One alert: what happened (`event`, a stable machine name such as `login_expired`), a
/// one-line `title`, a few lines of plain `text`, and structured `fields` (flattened into the
/// generic JSON body; chat platforms get only the title and text).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Machine name of the event, e.g. `login_expires_24h`.
    pub event: String,
    /// One line.
    pub title: String,
    /// The message, plain text (sent as markdown to WeCom and DingTalk).
    pub text: String,
    /// Structured details for generic receivers (`title`, `content` and `event` are ignored).
    pub fields: Map<String, Value>,
}

impl Alert {
    /// An alert without fields.
    pub fn new(
        event: impl Into<String>,
        title: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            event: event.into(),
            title: title.into(),
            text: text.into(),
            fields: Map::new(),
        }
    }

    /// Adds a structured field.
    #[must_use]
    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

/// The JSON body of `alert` for the receiver at `url`.
pub fn body(url: &str, alert: &Alert) -> Value {
    match Platform::of(url) {
        Platform::WeCom => json!({"msgtype": "markdown",
            "markdown": {"content": format!("**{}**\n{}", alert.title, alert.text)}}),
        Platform::DingTalk => json!({"msgtype": "markdown",
            "markdown": {"title": alert.title, "text": format!("#### {}\n\n{}", alert.title, alert.text)}}),
        Platform::Feishu => json!({"msg_type": "text",
            "content": {"text": format!("{}\n{}", alert.title, alert.text)}}),
        Platform::Generic => {
            let mut out = Map::new();
            for (k, v) in &alert.fields {
                if !RESERVED.contains(&k.as_str()) {
                    out.insert(k.clone(), v.clone());
                }
            }
            out.insert("title".into(), json!(alert.title));
            out.insert("content".into(), json!(alert.text));
            out.insert("event".into(), json!(alert.event));
            Value::Object(out)
        }
    }
}

/// Raises `alert`: logs it once at warn and, when `alert_webhook_url` is set, sends it in the
/// background (a task the parent waits for at shutdown, cancelled by it). Never fails.
pub fn raise(state: &AppState, alert: Alert) {
    let fields = Value::Object(alert.fields.clone()).to_string();
    tracing::warn!(
        event = %untrusted(&alert.event),
        title = %untrusted(&alert.title).max_chars(200),
        fields = %untrusted(&fields).max_chars(600),
        "alert"
    );
    let url = state.config.cascade.alert_webhook_url.trim().to_string();
    if url.is_empty() {
        state.metrics.alert(&alert.event, "logged");
        return;
    }
    let task_state = state.clone();
    state.alert_tasks.spawn(async move {
        let state = task_state;
        let outcome = tokio::select! {
            sent = send(&state, &url, &alert) => sent,
            () = state.shutdown.cancelled() => Err("the parent shut down".into()),
        };
        match outcome {
            Ok(()) => {
                state.metrics.alert(&alert.event, "sent");
                tracing::info!(event = %untrusted(&alert.event), "alert sent");
            }
            Err(e) => {
                state.metrics.alert(&alert.event, "failed");
                tracing::warn!(event = %untrusted(&alert.event), error = %untrusted_error(&e), "alert not sent");
            }
        }
    });
}

/// Posts `alert` to `url` with the webhook timeout, retrying with doubling back-off.
async fn send(state: &AppState, url: &str, alert: &Alert) -> Result<(), String> {
    let c = &state.config.cascade;
    let attempts = c.webhook_attempts.max(1);
    let platform = Platform::of(url);
    let payload = body(url, alert);
    let mut wait = Duration::from_millis(c.webhook_backoff_ms);
    let mut attempt = 1;
    loop {
        let sent = state
            .http
            .post(url)
            .timeout(Duration::from_secs(c.webhook_timeout.max(1)))
            .json(&payload)
            .send()
            .await;
        let error = match sent {
            Ok(r) if r.status().is_success() => {
                // A reply is a small JSON status; a larger one is read no further.
                let reply = crate::fetch::read_capped(r, 64 * 1024)
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .unwrap_or(Value::Null);
                match refused_by_platform(platform, &reply) {
                    None => return Ok(()),
                    Some(e) => e,
                }
            }
            Ok(r) => format!("status {}", r.status().as_u16()),
            Err(e) => e.without_url().to_string(),
        };
        if attempt >= attempts {
            return Err(format!("after {attempt} attempts: {error}"));
        }
        tracing::debug!(event = %untrusted(&alert.event), attempt, error = %untrusted_error(&error), "alert not sent, will retry");
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert::new("login_expired", "Login expired: a", "line one\nline two")
            .field("node_id", "n1")
            .field("title", "not this")
    }

    #[test]
    fn alert_bodies_follow_the_platform_of_the_url() {
        assert_eq!(
            body(
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
                &alert()
            ),
            json!({"msgtype": "markdown",
                   "markdown": {"content": "**Login expired: a**\nline one\nline two"}})
        );
        assert_eq!(
            body(
                "https://oapi.dingtalk.com/robot/send?access_token=t",
                &alert()
            ),
            json!({"msgtype": "markdown", "markdown": {"title": "Login expired: a",
                   "text": "#### Login expired: a\n\nline one\nline two"}})
        );
        assert_eq!(
            body("https://open.feishu.cn/open-apis/bot/v2/hook/h", &alert()),
            json!({"msg_type": "text", "content": {"text": "Login expired: a\nline one\nline two"}})
        );
        // Generic: the fields flattened, never replacing title, content or event.
        assert_eq!(
            body("http://127.0.0.1:9/hook", &alert()),
            json!({"title": "Login expired: a", "content": "line one\nline two",
                   "event": "login_expired", "node_id": "n1"})
        );
    }
}
