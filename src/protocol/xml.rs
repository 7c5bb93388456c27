//! XML rules for what we write and what we read: the characters XML 1.0 allows in a document
//! (text from nodes, feeds and old databases may carry others, which would make every XML
//! output ill-formed), and a bound on element nesting checked, without recursion, before a
//! recursive parser sees a document.

use std::borrow::Cow;

/// Whether XML 1.0 allows `c` anywhere in a document (its `Char` production: tab, LF, CR,
/// U+0020–U+D7FF, U+E000–U+FFFD, U+10000 and up; not the other C0 controls, U+FFFE, U+FFFF).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` without the characters XML 1.0 forbids (NUL and the other C0 controls but tab,
/// LF and CR; U+FFFE, U+FFFF); borrowed when there are none. Nothing else changes.
pub fn xml_text(text: &str) -> Cow<'_, str> {
    if text.chars().all(is_xml_char) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().filter(|c| is_xml_char(*c)).collect())
    }
}

/// [`xml_text`] of an owned string, reusing it when it is clean.
pub fn clean(text: String) -> String {
    match xml_text(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cleaned) => cleaned,
    }
}

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Elements nest deeper than the bound.
    #[error("elements nest deeper than {limit} levels")]
    TooDeep {
        /// The bound.
        limit: usize,
    },
    /// The text is not well-formed XML.
    #[error("{0}")]
    Malformed(String),
}

/// Checks that no element of `xml` nests deeper than `limit` (the root is level 1), reading
/// the document once as a flat token stream (comments, CDATA, processing instructions, the
/// DTD and quoted attribute values are tokens of their own, so a `<` or `>` inside them does
/// not count), before a recursive parser may overflow its stack on it.
///
/// # Errors
/// [`ScanError::TooDeep`], or [`ScanError::Malformed`] with the tokenizer's message.
pub fn check_depth(xml: &str, limit: usize) -> Result<(), ScanError> {
    use xmlparser::{ElementEnd, Token};
    let mut depth = 0usize;
    for token in xmlparser::Tokenizer::from(xml) {
        match token.map_err(|e| ScanError::Malformed(e.to_string()))? {
            Token::ElementStart { .. } => {
                depth += 1;
                if depth > limit {
                    return Err(ScanError::TooDeep { limit });
                }
            }
            Token::ElementEnd {
                end: ElementEnd::Close(..) | ElementEnd::Empty,
                ..
            } => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_go_and_the_rest_stays() {
        assert_eq!(
            xml_text("a\u{1}b\u{1b}c\0d\u{fffe}e\u{ffff}f"),
            "abcdef",
            "C0 controls, U+FFFE and U+FFFF are not XML characters"
        );
        let allowed = "tab\tlf\ncr\r é 公众号 \u{85} \u{d7ff} \u{e000} \u{fffd} \u{10000} 😀";
        assert!(matches!(xml_text(allowed), Cow::Borrowed(_)));
        assert_eq!(clean(allowed.to_string()), allowed);
        assert_eq!(clean("\u{7}bell".to_string()), "bell");
    }

    fn nested(depth: usize) -> String {
        format!(
            "<?xml version=\"1.0\"?><!-- <a><a> --><r>{}{}</r>",
            "<a x='>'><![CDATA[<a><a>]]>".repeat(depth - 1),
            "</a>".repeat(depth - 1)
        )
    }

    #[test]
    fn depth_counts_elements_only() {
        assert_eq!(check_depth(&nested(64), 64), Ok(()));
        assert_eq!(
            check_depth(&nested(65), 64),
            Err(ScanError::TooDeep { limit: 64 })
        );
        let flat = format!("<r>{}</r>", "<a/><b x=\"/>\"></b>".repeat(10_000));
        assert_eq!(check_depth(&flat, 2), Ok(()), "self-closing and siblings");
        assert_eq!(
            check_depth(&format!("<r>{}", "<a>".repeat(100_000)), 64),
            Err(ScanError::TooDeep { limit: 64 }),
            "refused early, whatever the size"
        );
        assert!(matches!(
            check_depth("<r><a x=1/></r>", 64),
            Err(ScanError::Malformed(_))
        ));
    }
}
