//! One article per feed whichever source read it (issue 13 §4). The MP list knows an article
//! by `<mid>_<idx>` and the long link, WeRead by its token and the short `/s/<token>` link
//! (sometimes with the long one as `doc_url`), the cover by the token without a publish time.
//! An upload whose id the feed does not have is matched to a stored article of the same feed
//! by a link key the article is known by (`cascade_article_links`), else by the same title
//! with a publish time within the parent's `dedup_window_minutes`. A matched item keeps the
//! stored id, only fills what the stored row lacks, and is no new article (no webhook).
//! Both backends run the same statements; the rule itself is [`choose`].

use super::ArticleIn;
use super::rows::RowExt;
use crate::fetch::links::link_key;

/// Longest link key recorded: real ones are about 40 (short) or 100 (long) characters; a
/// longer one is no article link we can match, and would not fit the column or its index.
const MAX_KEY: usize = 500;

/// The link key `url` is recorded and matched by ([`link_key`]), when it has one that fits.
pub(crate) fn key_of(url: &str) -> Option<String> {
    link_key(url).filter(|k| k.len() <= MAX_KEY)
}

/// The link keys an uploaded item is known by: its `url` and its `doc_url`, when they name a
/// WeChat article ([`key_of`]), each once.
pub(crate) fn item_links(item: &ArticleIn) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for url in [&item.url, &item.doc_url].into_iter().flatten() {
        if let Some(key) = key_of(url)
            && !keys.contains(&key)
        {
            keys.push(key);
        }
    }
    keys
}

/// The title and publish time the fallback compares, when the item has both.
pub(crate) fn title_time(item: &ArticleIn) -> Option<(&str, i64)> {
    let title = item.title.as_deref().filter(|t| !t.trim().is_empty())?;
    let time = item.publish_time.filter(|t| *t > 0)?;
    Some((title, time))
}

/// A stored article of the feed with the item's title and a publish time in the window.
pub(crate) struct Candidate {
    /// Stored id.
    pub(crate) id: String,
    /// Stored publish time (epoch seconds).
    pub(crate) publish_time: i64,
    /// The link keys it is known by.
    pub(crate) links: Vec<String>,
}

/// Whether a link key is the long form (`?__biz=…`) rather than the short `/s/<token>`.
fn is_long(key: &str) -> bool {
    key.contains("/s?")
}

/// The fallback's choice among `candidates` for an item with `links` published at `time`:
/// the one closest in time within `window` seconds, skipping any known by another link of a
/// form the item has too (two different tokens, or two different `mid`/`idx`, are two
/// articles whatever their titles say). `None` when nothing fits.
pub(crate) fn choose(
    candidates: &[Candidate],
    links: &[String],
    time: i64,
    window: i64,
) -> Option<String> {
    let differs = |c: &Candidate| {
        links.iter().any(|mine| {
            c.links
                .iter()
                .any(|theirs| is_long(theirs) == is_long(mine) && theirs != mine)
        })
    };
    candidates
        .iter()
        .filter(|c| (c.publish_time - time).abs() <= window)
        .filter(|c| !differs(c))
        .min_by_key(|c| ((c.publish_time - time).abs(), c.id.clone()))
        .map(|c| c.id.clone())
}

/// A candidate from a [`TITLE_MATCH`] row and its links.
pub(crate) fn candidate(row: &impl RowExt, links: Vec<String>) -> super::Result<Candidate> {
    Ok(Candidate {
        id: row.text("id")?,
        publish_time: row.opt_int("publish_time")?.unwrap_or(0),
        links,
    })
}

/// The stored article of feed `$1` known by link key `$2`.
pub(crate) const LINK_MATCH: &str = "SELECT l.article_id FROM cascade_article_links l
      JOIN we_articles a ON a.id = l.article_id AND a.mp_id = l.mp_id
     WHERE l.mp_id = $1 AND l.link = $2";

/// Stored articles of feed `$1` titled `$2` published between `$3` and `$4`.
pub(crate) const TITLE_MATCH: &str = "SELECT id, publish_time FROM we_articles
     WHERE mp_id = $1 AND title = $2 AND publish_time BETWEEN $3 AND $4
     ORDER BY id LIMIT 20";

/// The link keys article `$1` is known by.
pub(crate) const ARTICLE_LINKS: &str =
    "SELECT link FROM cascade_article_links WHERE article_id = $1 ORDER BY link";

/// Records link key `$2` of article `$3` in feed `$1` (a key already known keeps its article).
pub(crate) const ADD_LINK: &str = "INSERT INTO cascade_article_links (mp_id, link, article_id)
     VALUES ($1, $2, $3) ON CONFLICT (mp_id, link) DO NOTHING";

/// A page of stored articles with a link, after id `$1` (the migration's backfill of
/// `cascade_article_links`).
pub(crate) const LINKS_PAGE: &str = "SELECT id, mp_id, url FROM we_articles
     WHERE id > $1 AND mp_id IS NOT NULL AND url IS NOT NULL ORDER BY id LIMIT 1000";

/// Updates stored article `$1` from an upload. `$15` true (an item matched under another id):
/// only what the row lacks is filled, its status kept. False (the same id again): non-empty
/// values replace, except the link, kept once known (other forms become link keys). Either
/// way a known publish time never moves, except a first-seen time (`time_estimated`, a cover
/// read) which the first upload with a real time (`$16` false) replaces.
pub(crate) const UPDATE_ARTICLE: &str = "UPDATE we_articles SET
        title = CASE WHEN $15 THEN COALESCE(NULLIF(title, ''), NULLIF($2, '')) ELSE COALESCE(NULLIF($2, ''), title) END,
        url = COALESCE(NULLIF(url, ''), NULLIF($3, '')),
        pic_url = CASE WHEN $15 THEN COALESCE(NULLIF(pic_url, ''), NULLIF($4, '')) ELSE COALESCE(NULLIF($4, ''), pic_url) END,
        description = CASE WHEN $15 THEN COALESCE(NULLIF(description, ''), NULLIF($5, '')) ELSE COALESCE(NULLIF($5, ''), description) END,
        content = CASE WHEN $15 THEN COALESCE(NULLIF(content, ''), NULLIF($6, '')) ELSE COALESCE(NULLIF($6, ''), content) END,
        content_html = CASE WHEN $15 THEN COALESCE(NULLIF(content_html, ''), NULLIF($7, '')) ELSE COALESCE(NULLIF($7, ''), content_html) END,
        content_markdown = CASE WHEN $15 THEN COALESCE(NULLIF(content_markdown, ''), NULLIF($8, '')) ELSE COALESCE(NULLIF($8, ''), content_markdown) END,
        publish_time = CASE WHEN publish_time IS NULL OR publish_time = 0 OR (time_estimated AND NOT $16)
            THEN COALESCE($9, publish_time) ELSE publish_time END,
        time_estimated = CASE WHEN time_estimated AND NOT $16 AND $9 IS NOT NULL THEN FALSE ELSE time_estimated END,
        status = CASE WHEN $15 THEN status ELSE COALESCE($10, status) END,
        extinfo = CASE WHEN $15 THEN COALESCE(NULLIF(extinfo, ''), $11) ELSE COALESCE($11, extinfo) END,
        mp_id = $12, updated_at = $13, updated_at_millis = $14
      WHERE id = $1";

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, publish_time: i64, links: &[&str]) -> Candidate {
        Candidate {
            id: id.into(),
            publish_time,
            links: links.iter().map(|l| (*l).to_string()).collect(),
        }
    }

    const SHORT_A: &str = "https://mp.weixin.qq.com/s/tokA";
    const SHORT_B: &str = "https://mp.weixin.qq.com/s/tokB";
    const LONG_A: &str = "https://mp.weixin.qq.com/s?__biz=MzA=&mid=7&idx=1";

    #[test]
    fn the_fallback_takes_the_closest_in_the_window_unless_links_tell_them_apart() {
        let t = 1_795_000_000;
        // Within the window, the closer one; a long-link article matches a short-link item.
        let stored = [c("far", t - 500, &[LONG_A]), c("near", t + 60, &[LONG_A])];
        assert_eq!(
            choose(&stored, &[SHORT_A.into()], t, 600).as_deref(),
            Some("near")
        );
        // Hours apart: a different article with the same title.
        assert_eq!(choose(&[c("old", t - 3 * 3600, &[])], &[], t, 600), None);
        // At the edge of the window it still matches.
        assert_eq!(
            choose(&[c("edge", t - 600, &[])], &[], t, 600).as_deref(),
            Some("edge")
        );
        // Another token of the same form: two articles that share a title and a moment.
        assert_eq!(
            choose(&[c("other", t, &[SHORT_B])], &[SHORT_A.into()], t, 600),
            None
        );
        // Without links on either side the title and time decide.
        assert_eq!(
            choose(&[c("bare", t + 1, &[])], &[], t, 600).as_deref(),
            Some("bare")
        );
    }

    #[test]
    fn items_are_known_by_wechat_links_only() {
        let item = ArticleIn {
            url: Some("http://mp.weixin.qq.com/s/tokA#rd".into()),
            doc_url: Some("https://mp.weixin.qq.com/s?__biz=MzA=&mid=7&idx=1&sn=x".into()),
            ..ArticleIn::default()
        };
        assert_eq!(item_links(&item), vec![SHORT_A.to_string(), LONG_A.into()]);
        let rss = ArticleIn {
            url: Some("https://example.com/home".into()),
            ..ArticleIn::default()
        };
        assert!(item_links(&rss).is_empty());
        let huge = ArticleIn {
            url: Some(format!("https://mp.weixin.qq.com/s/{}", "x".repeat(3000))),
            ..ArticleIn::default()
        };
        assert!(item_links(&huge).is_empty(), "too long to be a key");
        let untitled = ArticleIn {
            title: Some("  ".into()),
            publish_time: Some(5),
            ..ArticleIn::default()
        };
        assert_eq!(title_time(&untitled), None);
    }
}
