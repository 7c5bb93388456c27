//! Article bodies (UPSTREAMS.md §3, SOURCES.md §4): fetching an article page (WeRead's
//! `/web/mp/content?reviewId=` or an MP `/s` page) within a size and time bound, and reading
//! it: the inner HTML of `#js_content` (else `#js_article`) with lazy images made eager and the
//! shipped `visibility: hidden` dropped, the `og:*` meta; the `.weui-msg` error pages as a
//! status; the human-check page as its own outcome. A hand-written bounded scanner: the pages
//! are machine-made and only one element is wanted, so no HTML parser is pulled in.

use super::FetchError;
use std::time::Duration;

/// Most bytes of one page read (WeRead pages are 2–4 MB).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// The browser a page fetch says it is (WeChat serves article pages to browsers).
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
/// Longest one page fetch may take.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a page says an article cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// `该内容已被发布者删除`.
    Deleted,
    /// `内容审核中`.
    UnderReview,
    /// `该内容暂时无法查看`, `违规无法查看`, `发送失败无法查看`, a violation.
    Unavailable,
}

/// A readable article page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Body {
    /// The body as HTML (inner HTML of `#js_content`, else `#js_article`), cleaned.
    pub html: String,
    /// `og:title`.
    pub title: Option<String>,
    /// `og:description`.
    pub description: Option<String>,
    /// `og:image`.
    pub image: Option<String>,
    /// `og:article:author`.
    pub author: Option<String>,
}

/// What an article page is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOutcome {
    /// The article.
    Body(Body),
    /// An error page: the article is to be stored with status 1000 and no body.
    Gone(Gone),
    /// The human-check page (`当前环境异常…`, or a redirect to a `captcha` path): stop page
    /// fetches of this identity for a while.
    HumanCheck,
}

impl PageOutcome {
    /// The article status this outcome gives (1000 for an error page, WeRSS `DELETED`).
    pub fn status(&self) -> i64 {
        match self {
            Self::Gone(_) => 1000,
            _ => 1,
        }
    }
}

/// Sends `req` and reads the answer as an article page: at most [`MAX_PAGE_BYTES`] within
/// [`PAGE_TIMEOUT`]; a redirect to a `captcha` path is the human check.
///
/// # Errors
/// `network` for transport trouble or a 5xx, `not_found` for a 404, `parse` for a page too
/// large or one that is neither an article nor a known error page.
pub async fn fetch_page(req: reqwest::RequestBuilder) -> Result<PageOutcome, FetchError> {
    let net = |e: reqwest::Error| FetchError::Network(e.without_url().to_string());
    let resp = req.timeout(PAGE_TIMEOUT).send().await.map_err(net)?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if resp.url().path().contains("captcha")
        || (status.is_redirection() && location.contains("captcha"))
    {
        return Ok(PageOutcome::HumanCheck);
    }
    if status.is_server_error() || status.is_redirection() {
        return Err(FetchError::Network(format!("HTTP {status}")));
    }
    if status.as_u16() == 404 {
        return Err(FetchError::NotFound("HTTP 404".into()));
    }
    let bytes = super::read_capped(resp, MAX_PAGE_BYTES).await?;
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        // An error page may come with a 4xx; one that is not a known page is the status.
        return match read_page(&text) {
            Ok(PageOutcome::Body(_)) | Err(_) => Err(FetchError::Network(format!("HTTP {status}"))),
            Ok(other) => Ok(other),
        };
    }
    read_page(&text)
}

const HUMAN_CHECK: &[&str] = &["当前环境异常", "环境异常，完成验证后即可继续访问"];
const DELETED: &[&str] = &[
    "该内容已被发布者删除",
    "The content has been deleted by the author",
];
const UNDER_REVIEW: &[&str] = &["内容审核中"];
const UNAVAILABLE: &[&str] = &[
    "该内容暂时无法查看",
    "违规无法查看",
    "发送失败无法查看",
    "Unable to view this content because it violates regulation",
    "此内容因违规无法查看",
];

/// Reads an article page (whole or a fragment holding `#js_content`).
///
/// # Errors
/// `parse` when the page is neither an article, a known error page, nor the human check.
pub fn read_page(html: &str) -> Result<PageOutcome, FetchError> {
    let tags = scan(html);
    let element =
        find_by_id(html, &tags, "js_content").or_else(|| find_by_id(html, &tags, "js_article"));
    if let Some(inner) = element {
        let inner = inner.map_err(FetchError::Parse)?;
        let meta = |name: &str| og(html, &tags, name);
        return Ok(PageOutcome::Body(Body {
            html: clean(inner),
            title: meta("og:title"),
            description: meta("og:description"),
            image: meta("og:image"),
            author: meta("og:article:author"),
        }));
    }
    if HUMAN_CHECK.iter().any(|t| html.contains(t)) {
        return Ok(PageOutcome::HumanCheck);
    }
    let error_page = tags.iter().any(|t| {
        attr(html, t, "class").is_some_and(|c| {
            c.split_whitespace()
                .any(|c| c == "weui-msg" || c == "weui-msg__title")
        })
    });
    if error_page {
        let has = |list: &[&str]| list.iter().any(|t| html.contains(t));
        if has(DELETED) {
            return Ok(PageOutcome::Gone(Gone::Deleted));
        }
        if has(UNDER_REVIEW) {
            return Ok(PageOutcome::Gone(Gone::UnderReview));
        }
        if has(UNAVAILABLE) {
            return Ok(PageOutcome::Gone(Gone::Unavailable));
        }
        return Err(FetchError::Parse("an unknown WeChat error page".into()));
    }
    Err(FetchError::Parse(
        "no #js_content in the article page".into(),
    ))
}

/// One tag of the page: byte range of the whole tag, its lower-case name, whether it closes,
/// and the byte range of its attribute text.
#[derive(Debug, Clone)]
struct Tag {
    start: usize,
    end: usize,
    name: String,
    closing: bool,
    attrs: (usize, usize),
}

/// The tags of a page, in order; comments, doctypes and the text of `script`/`style` are
/// skipped. Linear in the page's length.
fn scan(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(off) = memchr(b'<', &bytes[i..]) {
        let start = i + off;
        if html[start..].starts_with("<!--") {
            i = html[start + 4..]
                .find("-->")
                .map_or(bytes.len(), |e| start + 4 + e + 3);
            continue;
        }
        let mut j = start + 1;
        let closing = bytes.get(j) == Some(&b'/');
        if closing {
            j += 1;
        }
        let name_start = j;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
            j += 1;
        }
        if j == name_start {
            // `<!DOCTYPE`, `<?xml`, a stray `<`: skip to the next `>` or past the `<`.
            i = if bytes
                .get(start + 1)
                .is_some_and(|b| *b == b'!' || *b == b'?')
            {
                memchr(b'>', &bytes[start..]).map_or(bytes.len(), |e| start + e + 1)
            } else {
                start + 1
            };
            continue;
        }
        let name = html[name_start..j].to_ascii_lowercase();
        // The end of the tag: the first `>` outside quotes.
        let attrs_start = j;
        let mut quote = None;
        while j < bytes.len() {
            match (quote, bytes[j]) {
                (None, b'"' | b'\'') => quote = Some(bytes[j]),
                (Some(q), b) if b == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
            j += 1;
        }
        if j >= bytes.len() {
            break;
        }
        let end = j + 1;
        tags.push(Tag {
            start,
            end,
            name: name.clone(),
            closing,
            attrs: (attrs_start, j),
        });
        i = end;
        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            i = find_ci(html, end, &close).unwrap_or(bytes.len());
        }
    }
    tags
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// The first case-insensitive (ASCII) occurrence of `needle` at or after `from`.
fn find_ci(hay: &str, from: usize, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()
        .get(from..)?
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
        .map(|p| from + p)
}

/// The attributes of a tag: `(lower-case name, raw value)`, in order.
fn attributes(text: &str) -> Vec<(String, Option<&str>)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let s = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if s == i {
            if i < b.len() {
                i += 1;
            }
            continue;
        }
        let name = text[s..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            out.push((name, None));
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match b.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let vs = i + 1;
                let ve = memchr(q, &b[vs..]).map_or(b.len(), |e| vs + e);
                i = (ve + 1).min(b.len());
                &text[vs..ve]
            }
            _ => {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                &text[vs..i]
            }
        };
        out.push((name, Some(value)));
    }
    out
}

fn attr<'a>(html: &'a str, tag: &Tag, name: &str) -> Option<&'a str> {
    if tag.closing {
        return None;
    }
    attributes(&html[tag.attrs.0..tag.attrs.1])
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v)
}

/// The inner HTML of the first element with `id`: `None` without one; `Some(Err)` when it
/// is never closed. Depth counts only tags of the element's own name.
fn find_by_id<'a>(html: &'a str, tags: &[Tag], id: &str) -> Option<Result<&'a str, String>> {
    let open = tags
        .iter()
        .position(|t| attr(html, t, "id").is_some_and(|v| v.trim() == id))?;
    let name = &tags[open].name;
    if html[tags[open].attrs.0..tags[open].attrs.1]
        .trim_end()
        .ends_with('/')
    {
        return Some(Ok(""));
    }
    let mut depth = 0usize;
    for t in &tags[open + 1..] {
        if &t.name != name {
            continue;
        }
        if t.closing {
            if depth == 0 {
                return Some(Ok(&html[tags[open].end..t.start]));
            }
            depth -= 1;
        } else if !html[t.attrs.0..t.attrs.1].trim_end().ends_with('/') {
            depth += 1;
        }
    }
    Some(Err(format!("#{id} is not closed in the article page")))
}

/// A `meta[property=name]` (or `name=`) content, entities decoded.
fn og(html: &str, tags: &[Tag], name: &str) -> Option<String> {
    tags.iter()
        .filter(|t| t.name == "meta")
        .find(|t| attr(html, t, "property").or_else(|| attr(html, t, "name")) == Some(name))
        .and_then(|t| attr(html, t, "content"))
        .map(decode_entities)
        .filter(|s| !s.trim().is_empty())
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The body cleaned: `img[data-src]` gets `src` from it; `visibility: hidden` leaves every
/// `style`. Other markup is kept byte for byte.
fn clean(inner: &str) -> String {
    let tags = scan(inner);
    let mut out = String::with_capacity(inner.len());
    let mut at = 0;
    for t in tags.iter().filter(|t| !t.closing) {
        let text = &inner[t.attrs.0..t.attrs.1];
        let attrs = attributes(text);
        let lazy = t.name == "img" && attrs.iter().any(|(n, v)| n == "data-src" && v.is_some());
        let hidden = attrs
            .iter()
            .any(|(n, v)| n == "style" && v.is_some_and(|v| v.contains("visibility")));
        if !lazy && !hidden {
            continue;
        }
        out.push_str(&inner[at..t.start]);
        out.push('<');
        out.push_str(&t.name);
        let data_src = attrs
            .iter()
            .find(|(n, _)| n == "data-src")
            .and_then(|(_, v)| *v);
        for (n, v) in &attrs {
            if lazy && n == "src" {
                continue;
            }
            let v = if n == "style" {
                v.map(drop_hidden)
            } else {
                v.map(str::to_string)
            };
            if n == "style" && v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                continue;
            }
            push_attr(&mut out, n, v.as_deref());
        }
        if lazy {
            push_attr(&mut out, "src", data_src);
        }
        if text.trim_end().ends_with('/') {
            out.push_str(" /");
        }
        out.push('>');
        at = t.end;
    }
    out.push_str(&inner[at..]);
    out
}

fn push_attr(out: &mut String, name: &str, value: Option<&str>) {
    out.push(' ');
    out.push_str(name);
    if let Some(v) = value {
        if v.contains('"') {
            out.push_str("='");
            out.push_str(&v.replace('\'', "&#39;"));
            out.push('\'');
        } else {
            out.push_str("=\"");
            out.push_str(v);
            out.push('"');
        }
    }
}

/// A style without its `visibility: hidden` declaration.
fn drop_hidden(style: &str) -> String {
    style
        .split(';')
        .filter(|d| {
            let mut kv = d.splitn(2, ':');
            let k = kv.next().unwrap_or_default().trim();
            let v = kv.next().unwrap_or_default().trim();
            !(k.eq_ignore_ascii_case("visibility") && v.eq_ignore_ascii_case("hidden"))
        })
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The URL an MP article link is fetched from: its path and query on `base` (so a test can
/// point it at a fake); `None` for a link to any other host, which is never fetched. The
/// `#fragment` is dropped.
pub fn page_url(link: &str, base: &str) -> Option<String> {
    let link = link.split('#').next().unwrap_or(link);
    for prefix in ["https://mp.weixin.qq.com", "http://mp.weixin.qq.com"] {
        if let Some(rest) = link.strip_prefix(prefix)
            && rest.starts_with('/')
        {
            return Some(format!("{}{rest}", base.trim_end_matches('/')));
        }
    }
    None
}

#[cfg(test)]
mod tests;
