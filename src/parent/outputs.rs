//! What readers fetch (DESIGN §8): the stored articles as RSS 2.0 (the `rss` crate), Atom 1.0
//! (`atom_syndication`) and JSON Feed 1.1 (typed serde), with validators for conditional GET;
//! the feed list as OPML 2.0 (the `opml` crate), and OPML import. Every XML document leaves
//! through [`xml::clean`]: text stored before it was checked (an adopted database) cannot make
//! it ill-formed.

use crate::protocol::xml;
use crate::store::{Feed, NewFeed, StoredArticle};
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An output format, from the path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RSS 2.0 (`.rss`, `.xml`).
    Rss,
    /// Atom 1.0 (`.atom`).
    Atom,
    /// JSON Feed 1.1 (`.json`).
    Json,
}

impl Format {
    /// The format of a file extension.
    pub fn from_ext(ext: &str) -> Option<Self> {
        match ext {
            "rss" | "xml" => Some(Self::Rss),
            "atom" => Some(Self::Atom),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Rss => "application/rss+xml; charset=utf-8",
            Self::Atom => "application/atom+xml; charset=utf-8",
            Self::Json => "application/feed+json; charset=utf-8",
        }
    }
}

/// Splits `name.ext` into the name and its format.
pub fn split_file(file: &str) -> Option<(&str, Format)> {
    let (name, ext) = file.rsplit_once('.')?;
    Some((name, Format::from_ext(ext)?)).filter(|(n, _)| !n.is_empty())
}

/// One output document: a channel and its newest articles.
#[derive(Debug, Clone)]
pub struct Channel {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The URL this document is served at.
    pub self_url: String,
    /// The site's URL.
    pub home_url: String,
    /// Newest first.
    pub articles: Vec<StoredArticle>,
}

impl Channel {
    /// When the newest change happened (the feed's validator), if there are articles.
    pub fn last_modified(&self) -> Option<DateTime<Utc>> {
        self.articles
            .iter()
            .filter_map(|a| a.updated_at_millis)
            .max()
            .and_then(|ms| Utc.timestamp_millis_opt(ms - ms % 1000).single())
    }

    /// A strong validator over what the document shows.
    pub fn etag(&self, format: Format) -> String {
        let mut h = Sha256::new();
        h.update(format!("{format:?}\n{}\n{}\n", self.title, self.self_url));
        for a in &self.articles {
            h.update(format!("{}\n{:?}\n", a.id, a.updated_at_millis));
        }
        format!("\"{}\"", &hex::encode(h.finalize())[..32])
    }

    /// The document in `format`. The XML writers escape markup but pass characters XML
    /// forbids through; those are dropped from the document (JSON escapes them itself).
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Rss => xml::clean(self.rss()),
            Format::Atom => xml::clean(self.atom()),
            Format::Json => self.json(),
        }
    }

    fn rss(&self) -> String {
        let items = self
            .articles
            .iter()
            .map(|a| rss::Item {
                title: Some(a.title.clone()),
                link: a.url.clone(),
                description: a.description.clone(),
                content: a.content_html.clone(),
                // RSS's <author> holds an e-mail address; a name goes in dc:creator.
                dublin_core_ext: a.mp_name.clone().map(|name| {
                    rss::extension::dublincore::DublinCoreExtension {
                        creators: vec![name],
                        ..Default::default()
                    }
                }),
                guid: Some(rss::Guid {
                    value: a.id.clone(),
                    permalink: false,
                }),
                pub_date: published(a).map(|t| t.to_rfc2822()),
                ..Default::default()
            })
            .collect();
        let channel = rss::Channel {
            title: self.title.clone(),
            link: self.home_url.clone(),
            description: self.description.clone(),
            generator: Some("werss-cascade".into()),
            last_build_date: self.last_modified().map(|t| t.to_rfc2822()),
            atom_ext: Some(rss::extension::atom::AtomExtension {
                links: vec![rss::extension::atom::Link {
                    href: self.self_url.clone(),
                    rel: "self".into(),
                    mime_type: Some("application/rss+xml".into()),
                    ..Default::default()
                }],
            }),
            items,
            ..Default::default()
        };
        channel.to_string()
    }

    fn atom(&self) -> String {
        let epoch = || FixedOffset::east_opt(0).and_then(|z| z.timestamp_opt(0, 0).single());
        let updated = self
            .last_modified()
            .map(|t| t.fixed_offset())
            .or_else(epoch)
            .unwrap_or_default();
        let entries = self
            .articles
            .iter()
            .map(|a| {
                let when = published(a).unwrap_or(updated);
                atom_syndication::Entry {
                    id: format!("urn:werss:article:{}", a.id),
                    title: atom_syndication::Text::plain(a.title.clone()),
                    updated: when,
                    published: published(a),
                    authors: a
                        .mp_name
                        .iter()
                        .map(|n| atom_syndication::Person {
                            name: n.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    links: a
                        .url
                        .iter()
                        .map(|u| atom_syndication::Link {
                            href: u.clone(),
                            rel: "alternate".into(),
                            ..Default::default()
                        })
                        .collect(),
                    summary: a.description.clone().map(atom_syndication::Text::plain),
                    content: a
                        .content_html
                        .clone()
                        .map(|html| atom_syndication::Content {
                            value: Some(html),
                            content_type: Some("html".into()),
                            ..Default::default()
                        }),
                    ..Default::default()
                }
            })
            .collect();
        let feed = atom_syndication::Feed {
            id: self.self_url.clone(),
            title: atom_syndication::Text::plain(self.title.clone()),
            subtitle: Some(atom_syndication::Text::plain(self.description.clone())),
            updated,
            links: vec![
                atom_syndication::Link {
                    href: self.self_url.clone(),
                    rel: "self".into(),
                    mime_type: Some("application/atom+xml".into()),
                    ..Default::default()
                },
                atom_syndication::Link {
                    href: self.home_url.clone(),
                    rel: "alternate".into(),
                    ..Default::default()
                },
            ],
            generator: Some(atom_syndication::Generator {
                value: "werss-cascade".into(),
                ..Default::default()
            }),
            entries,
            ..Default::default()
        };
        feed.to_string()
    }

    fn json(&self) -> String {
        let doc = JsonFeed {
            version: "https://jsonfeed.org/version/1.1",
            title: &self.title,
            description: &self.description,
            home_page_url: &self.home_url,
            feed_url: &self.self_url,
            items: self
                .articles
                .iter()
                .map(|a| JsonItem {
                    id: &a.id,
                    url: a.url.as_deref(),
                    title: &a.title,
                    content_html: a.content_html.as_deref(),
                    content_text: a
                        .content_html
                        .is_none()
                        .then(|| a.description.as_deref().unwrap_or(&a.title)),
                    summary: a.description.as_deref(),
                    image: a.pic_url.as_deref(),
                    date_published: published(a).map(|t| t.to_rfc3339()),
                    authors: a.mp_name.as_deref().map(|name| vec![JsonAuthor { name }]),
                })
                .collect(),
        };
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

fn published(a: &StoredArticle) -> Option<DateTime<FixedOffset>> {
    a.publish_time
        .filter(|t| *t > 0 && *t <= crate::parent::ops::articles::LAST_SECOND)
        .and_then(|t| Utc.timestamp_opt(t, 0).single())
        .map(|t| t.fixed_offset())
}

#[derive(Serialize)]
struct JsonFeed<'a> {
    version: &'static str,
    title: &'a str,
    description: &'a str,
    home_page_url: &'a str,
    feed_url: &'a str,
    items: Vec<JsonItem<'a>>,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_html: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_published: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authors: Option<Vec<JsonAuthor<'a>>>,
}

#[derive(Serialize)]
struct JsonAuthor<'a> {
    name: &'a str,
}

/// The feeds as OPML 2.0: each outline subscribes to this parent's RSS output. With
/// `upstream` (admins only: upstream URLs may carry access keys) an RSS-sourced feed also
/// names its upstream in `htmlUrl`, so the file re-imports elsewhere.
pub fn opml_export(feeds: &[Feed], base: &str, upstream: bool) -> String {
    let mut doc = opml::OPML {
        version: "2.0".into(),
        head: Some(opml::Head {
            title: Some("werss-cascade feeds".into()),
            date_created: Some(Utc::now().to_rfc2822()),
            ..Default::default()
        }),
        ..Default::default()
    };
    for f in feeds {
        doc.body.outlines.push(opml::Outline {
            text: f.mp_name.clone(),
            title: Some(f.mp_name.clone()),
            r#type: Some("rss".into()),
            xml_url: Some(format!("{base}/feed/{}.rss", f.id)),
            html_url: f.url.clone().filter(|_| upstream),
            description: f.mp_intro.clone(),
            ..Default::default()
        });
    }
    xml::clean(doc.to_string().unwrap_or_default())
}

/// Deepest nesting of outlines (folders in folders) an imported document may have.
pub const MAX_OUTLINE_DEPTH: usize = 64;

/// Parses an OPML document. The `opml` crate's parser recurses once per nested element, so
/// the nesting is checked first without recursion: a hostile document cannot overflow the
/// stack.
///
/// # Errors
/// Outlines nested deeper than [`MAX_OUTLINE_DEPTH`], or the text is not OPML.
pub fn parse_opml(text: &str) -> Result<opml::OPML, String> {
    // `<opml>` and `<body>` hold the outlines.
    xml::check_depth(text, MAX_OUTLINE_DEPTH + 2).map_err(|e| match e {
        xml::ScanError::TooDeep { .. } => {
            format!("outlines nest deeper than {MAX_OUTLINE_DEPTH} levels")
        }
        xml::ScanError::Malformed(m) => format!("not an OPML document: {m}"),
    })?;
    opml::OPML::from_str(text).map_err(|e| format!("not an OPML document: {e}"))
}

/// Feeds named by an OPML document: an outline whose `xmlUrl` ends in a WeChat feed id
/// (`…/MP_WXS_123.rss`, as WeRSS and this parent export) is that WeChat feed; any other is an
/// RSS feed at `htmlUrl` when the outline points at one of our own outputs, else at `xmlUrl`.
/// Nested outlines (folders) are read too. Returns the feeds and how many outlines were skipped.
///
/// # Errors
/// The text is not OPML, or nests too deep ([`parse_opml`]).
pub fn opml_import(text: &str) -> Result<(Vec<NewFeed>, usize), String> {
    let doc = parse_opml(text)?;
    let (mut feeds, mut skipped) = (Vec::new(), 0);
    let mut stack: Vec<&opml::Outline> = doc.body.outlines.iter().rev().collect();
    while let Some(o) = stack.pop() {
        stack.extend(o.outlines.iter().rev());
        let Some(xml_url) = o
            .xml_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            if o.outlines.is_empty() {
                skipped += 1;
            }
            continue;
        };
        let name = xml::clean(
            o.title
                .clone()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| o.text.clone()),
        );
        let last = xml_url
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let stem = last.split('.').next().unwrap_or_default();
        if stem.starts_with("MP_WXS_") && stem[7..].bytes().all(|b| b.is_ascii_digit()) {
            feeds.push(NewFeed::wechat(stem, &name));
            continue;
        }
        let ours = xml_url.contains("/feed/") && split_file(last).is_some();
        let upstream = match (ours, o.html_url.as_deref()) {
            (true, Some(html)) => html,
            (true, None) => {
                skipped += 1;
                continue;
            }
            (false, _) => xml_url,
        };
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            skipped += 1;
            continue;
        }
        feeds.push(NewFeed::rss(&xml::xml_text(upstream), &name));
    }
    Ok((feeds, skipped))
}
