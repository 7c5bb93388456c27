//! Reading uploaded article objects (PROTOCOL §8.5): ids as strings, `publish_time` in its
//! several forms, `ext`/`extinfo` as JSON text. Checks against the allocation are the store's.

use crate::protocol::xml::clean;
use crate::store::ArticleIn;
use chrono::{DateTime, NaiveDateTime};
use serde_json::Value;

/// Epoch seconds from a number (ms when > 10¹²), a digit string, `YYYY-MM-DD HH:MM:SS` or ISO.
pub fn publish_time(v: &Value) -> Option<i64> {
    publish_time_any(v).filter(|t| (0..=LAST_SECOND).contains(t))
}

/// 9999-12-31 23:59:59 UTC: later times cannot be written in feeds (RFC 2822 has 4-digit years).
pub const LAST_SECOND: i64 = 253_402_300_799;

fn publish_time_any(v: &Value) -> Option<i64> {
    let from_number = |n: f64| {
        let n = if n > 1e12 { n / 1000.0 } else { n };
        (n.is_finite() && n >= 0.0).then_some(n as i64)
    };
    match v {
        Value::Number(n) => n.as_f64().and_then(from_number),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse::<f64>().ok().and_then(from_number);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.timestamp());
            }
            [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|t| t.and_utc().timestamp())
        }
        _ => None,
    }
}

/// Reads each item; non-objects become items without an id (rejected by the store). Text
/// loses the characters XML forbids (NUL, which PostgreSQL text cannot hold, among them):
/// they mean nothing in an article and would break every feed output.
pub fn parse_articles(items: Vec<Value>) -> Vec<ArticleIn> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let Value::Object(o) = item else {
                return ArticleIn {
                    index,
                    ..ArticleIn::default()
                };
            };
            let text = |k: &str| match o.get(k) {
                Some(Value::String(s)) => Some(clean(s.clone())),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let extinfo = o
                .get("extinfo")
                .or_else(|| o.get("ext"))
                .and_then(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(clean(s.clone())),
                    other => Some(other.to_string().replace("\\u0000", "")),
                });
            ArticleIn {
                index,
                id: text("id"),
                mp_id: text("mp_id"),
                title: text("title"),
                url: text("url"),
                pic_url: text("pic_url"),
                description: text("description"),
                content: text("content"),
                content_html: text("content_html"),
                content_markdown: text("content_markdown"),
                publish_time: o.get("publish_time").and_then(publish_time),
                status: o
                    .get("status")
                    .and_then(Value::as_i64)
                    .map(|s| s.clamp(0, i64::from(i32::MAX))),
                extinfo,
                doc_url: text("doc_url"),
                time_estimated: o.get("time_estimated").and_then(Value::as_bool) == Some(true),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn publish_time_forms() {
        assert_eq!(publish_time(&json!(1_795_358_591)), Some(1_795_358_591));
        assert_eq!(
            publish_time(&json!(1_795_358_591_123_i64)),
            Some(1_795_358_591)
        );
        assert_eq!(publish_time(&json!("1795358591")), Some(1_795_358_591));
        assert_eq!(
            publish_time(&json!(999_999_999_999_i64)),
            None,
            "year 33658"
        );
        assert_eq!(
            publish_time(&json!("2026-11-22 14:43:11")),
            Some(1_795_358_591)
        );
        assert_eq!(
            publish_time(&json!("2026-11-22T14:43:11Z")),
            Some(1_795_358_591)
        );
        assert_eq!(
            publish_time(&json!("2026-11-22T22:43:11+08:00")),
            Some(1_795_358_591)
        );
        assert_eq!(publish_time(&json!("soon")), None);
    }

    #[test]
    fn ids_may_be_numbers_and_ext_becomes_text() {
        let items = parse_articles(vec![json!({"id": 22474837, "ext": {"a": 1}}), json!("x")]);
        assert_eq!(items[0].id.as_deref(), Some("22474837"));
        assert_eq!(items[0].extinfo.as_deref(), Some("{\"a\":1}"));
        assert_eq!(items[1].id, None);
        assert_eq!(items[1].index, 1);
    }
}
