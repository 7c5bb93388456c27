//! Identifier rules: WeChat feed ids ⇔ `faker_id`, RSS feed ids, article ids.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const WECHAT_PREFIX: &str = "MP_WXS_";

/// `Mzg5Mjc3MjIyMA==` → `MP_WXS_3892772220`; `None` unless it decodes to digits.
pub fn feed_id_from_faker_id(faker_id: &str) -> Option<String> {
    let bytes = STANDARD.decode(faker_id.trim()).ok()?;
    let digits = String::from_utf8(bytes).ok()?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{WECHAT_PREFIX}{digits}"))
}

/// `MP_WXS_3892772220` → `Mzg5Mjc3MjIyMA==`; `None` unless the id is `MP_WXS_<digits>`.
pub fn faker_id_from_feed_id(feed_id: &str) -> Option<String> {
    let digits = feed_id.strip_prefix(WECHAT_PREFIX)?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| STANDARD.encode(digits.as_bytes()))
}

/// `RSS_` + the first 16 hex digits of SHA-256 of the feed URL.
pub fn rss_feed_id(url: &str) -> String {
    let hash = super::credentials::sha256_hex(url);
    format!("RSS_{}", &hash[..16])
}

/// The key articles of a feed are prefixed with: the feed id without `MP_WXS_`.
pub fn article_key(feed_id: &str) -> &str {
    feed_id.strip_prefix(WECHAT_PREFIX).unwrap_or(feed_id)
}

/// Stored article id: `<key>-<id>` unless `id` already starts with `<key>-`.
pub fn article_id(feed_id: &str, item_id: &str) -> String {
    let key = article_key(feed_id);
    match item_id.strip_prefix(key) {
        Some(rest) if rest.starts_with('-') => item_id.to_string(),
        _ => format!("{key}-{item_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faker_id_and_feed_id_derive_each_other() {
        assert_eq!(
            feed_id_from_faker_id("Mzg5Mjc3MjIyMA==").as_deref(),
            Some("MP_WXS_3892772220")
        );
        assert_eq!(
            faker_id_from_feed_id("MP_WXS_3892772220").as_deref(),
            Some("Mzg5Mjc3MjIyMA==")
        );
        assert!(feed_id_from_faker_id("not base64!").is_none());
        assert!(feed_id_from_faker_id("YWJj").is_none()); // "abc"
        assert!(faker_id_from_feed_id("MP_WXS_12a").is_none());
    }

    #[test]
    fn article_ids_are_normalised_once() {
        assert_eq!(
            article_id("MP_WXS_3892772220", "2247483701_1"),
            "3892772220-2247483701_1"
        );
        assert_eq!(
            article_id("MP_WXS_3892772220", "3892772220-2247483701_1"),
            "3892772220-2247483701_1"
        );
        assert_eq!(article_id("RSS_ab", "RSS_ab-x"), "RSS_ab-x");
        assert_eq!(rss_feed_id("https://e.org/f").len(), 20);
    }
}
