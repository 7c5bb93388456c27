//! WeChat article links as the sources give them (SOURCES.md §2): WeRead knows an article by
//! its token (`https://mp.weixin.qq.com/s/<token>`), the MP list by the long
//! `?__biz=&mid=&idx=&sn=` form, and WeRead sometimes gives that long form too (`doc_url`).
//! [`normalise`] gives one spelling per form, so the same article read through two sources
//! can be matched; [`mp_item_id`] gives the MP list's item id (`<mid>_<idx>`) of a long link.

/// Where article pages live.
pub const MP_HOST: &str = "https://mp.weixin.qq.com";

/// `https://mp.weixin.qq.com/s/<token>`, with each `~` written `_` when `tilde_rewrite`
/// (clients disagree which one WeChat accepts: a setting, `weread_tilde_rewrite`).
pub fn short_link(token: &str, tilde_rewrite: bool) -> String {
    let token = token.trim();
    if tilde_rewrite {
        format!("{MP_HOST}/s/{}", token.replace('~', "_"))
    } else {
        format!("{MP_HOST}/s/{token}")
    }
}

/// The long link's query keys that name an article, in the order they are written back.
const ARTICLE_KEYS: [&str; 4] = ["__biz", "mid", "idx", "sn"];

/// Splits `http(s)://mp.weixin.qq.com/s…` into what follows `/s`; `None` for other hosts.
fn mp_path(url: &str) -> Option<&str> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .or_else(|| url.trim().strip_prefix("http://"))
        .or_else(|| url.trim().strip_prefix("//"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !host.eq_ignore_ascii_case("mp.weixin.qq.com") {
        return None;
    }
    let path = path.split('#').next().unwrap_or_default();
    path.strip_prefix("/s")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The article keys of a long link's query (`&amp;` read as `&`, values percent-decoded).
fn article_query(query: &str) -> Vec<(&'static str, String)> {
    let query = query.replace("&amp;", "&");
    let mut found: Vec<(&'static str, String)> = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some(key) = ARTICLE_KEYS.iter().find(|a| **a == k)
            && !v.is_empty()
            && !found.iter().any(|(f, _)| f == key)
        {
            found.push((key, percent_decode(v)));
        }
    }
    found.sort_by_key(|(k, _)| ARTICLE_KEYS.iter().position(|a| a == k));
    found
}

/// One spelling per article link: `https://mp.weixin.qq.com/s/<token>` (a `~` written `_`)
/// for the short form, `https://mp.weixin.qq.com/s?__biz=…&mid=…&idx=…&sn=…` (only those
/// keys, in that order, decoded) for the long form; `http`, a fragment, `&amp;` and tracking
/// keys (`chksm`, `scene`, …) make no difference. Other links come back trimmed.
pub fn normalise(url: &str) -> String {
    let Some(path) = mp_path(url) else {
        return url.trim().to_string();
    };
    if let Some(token) = path.strip_prefix('/') {
        let token = token.split('?').next().unwrap_or_default();
        if !token.is_empty() && !token.contains('/') {
            return short_link(token, true);
        }
    }
    if let Some(query) = path.strip_prefix('?').or_else(|| path.strip_prefix("/?")) {
        let keys = article_query(query);
        if !keys.is_empty() {
            let q: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return format!("{MP_HOST}/s?{}", q.join("&"));
        }
    }
    url.trim().to_string()
}

/// The key an article link is matched by across sources (issue 13 §4), or `None` for a
/// link that names no WeChat article (an RSS item's link, a home page): the short form's
/// [`normalise`]d spelling, or the long form's `__biz`, `mid` and `idx` (which name one
/// article; `sn` is a signature some links lack). Other links are never matched, so feeds
/// whose items share one link keep each item.
pub fn link_key(url: &str) -> Option<String> {
    let path = mp_path(url)?;
    if let Some(token) = path.strip_prefix('/') {
        let token = token.split('?').next().unwrap_or_default();
        if !token.is_empty() && !token.contains('/') {
            return Some(short_link(token, true));
        }
    }
    let query = path.strip_prefix('?').or_else(|| path.strip_prefix("/?"))?;
    let keys = article_query(query);
    let get = |name: &str| {
        keys.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    };
    Some(format!(
        "{MP_HOST}/s?__biz={}&mid={}&idx={}",
        get("__biz")?,
        get("mid")?,
        get("idx")?
    ))
}

/// The MP list's item id of a long link, `<mid>_<idx>` (as `appmsgpublish`'s `aid`), so an
/// article keeps its id whichever source read it; `None` without both keys.
pub fn mp_item_id(url: &str) -> Option<String> {
    let path = mp_path(url)?;
    let query = path.strip_prefix('?').or_else(|| path.strip_prefix("/?"))?;
    let keys = article_query(query);
    let get = |name: &str| {
        keys.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
    };
    Some(format!("{}_{}", get("mid")?, get("idx")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_links_rewrite_the_tilde_only_when_asked() {
        assert_eq!(
            short_link("9gm5~Wle7", true),
            "https://mp.weixin.qq.com/s/9gm5_Wle7"
        );
        assert_eq!(
            short_link("9gm5~Wle7", false),
            "https://mp.weixin.qq.com/s/9gm5~Wle7"
        );
    }

    #[test]
    fn both_forms_have_one_spelling() {
        assert_eq!(
            normalise("http://mp.weixin.qq.com/s/9gm5~Wle7#rd"),
            "https://mp.weixin.qq.com/s/9gm5_Wle7"
        );
        let a = normalise(
            "http://mp.weixin.qq.com/s?__biz=MzA%3D&amp;mid=22&amp;idx=1&amp;sn=ab&amp;chksm=x#rd",
        );
        let b = normalise("https://mp.weixin.qq.com/s?sn=ab&idx=1&mid=22&__biz=MzA=&scene=4");
        assert_eq!(
            a,
            "https://mp.weixin.qq.com/s?__biz=MzA=&mid=22&idx=1&sn=ab"
        );
        assert_eq!(a, b);
        assert_eq!(normalise(" https://e.org/x "), "https://e.org/x");
        assert_eq!(
            mp_item_id("http://mp.weixin.qq.com/s?__biz=MzA=&mid=22&idx=3&sn=ab").as_deref(),
            Some("22_3")
        );
        assert_eq!(mp_item_id("https://mp.weixin.qq.com/s/tok"), None);
    }

    #[test]
    fn link_keys_name_wechat_articles_only() {
        assert_eq!(
            link_key("http://mp.weixin.qq.com/s/9gm5~Wle7?scene=1#rd").as_deref(),
            Some("https://mp.weixin.qq.com/s/9gm5_Wle7")
        );
        let with_sn = link_key(
            "http://mp.weixin.qq.com/s?__biz=MzA%3D&amp;mid=22&amp;idx=1&amp;sn=ab&amp;chksm=x",
        );
        assert_eq!(
            with_sn.as_deref(),
            Some("https://mp.weixin.qq.com/s?__biz=MzA=&mid=22&idx=1")
        );
        assert_eq!(
            link_key("https://mp.weixin.qq.com/s?idx=1&mid=22&__biz=MzA="),
            with_sn
        );
        assert_eq!(link_key("https://mp.weixin.qq.com/s?mid=22&idx=1"), None);
        assert_eq!(link_key("https://example.com/s/9gm5"), None);
        assert_eq!(link_key("https://mp.weixin.qq.com/s/"), None);
    }
}
