//! Log subscriber set-up: `RUST_LOG`-style filter (default `info`), human-readable lines on
//! stderr; and [`untrusted`], the one way text from outside reaches a log line.

use std::fmt;
use tracing_subscriber::EnvFilter;

/// The filter without `RUST_LOG`.
const DEFAULT_FILTER: &str = "info,sqlx=warn,hyper=warn,tower_http=warn";

/// Installs the global subscriber once; later calls are ignored.
pub fn init() {
    init_with_default(DEFAULT_FILTER);
}

/// [`init`] with `default` as the filter when `RUST_LOG` is unset (`RUST_LOG` still wins).
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Characters of untrusted text kept in a log line; the rest is cut and marked `…`.
pub const UNTRUSTED_MAX_CHARS: usize = 96;

/// Text from outside (usernames, headers, paths, peers' errors) made safe for one log line.
#[derive(Clone, Copy)]
pub struct Untrusted<'a> {
    text: &'a str,
    max_chars: usize,
}

impl Untrusted<'_> {
    /// Keeps up to `n` characters instead (error messages, which need their detail).
    #[must_use]
    pub fn max_chars(self, n: usize) -> Self {
        Self {
            max_chars: n,
            ..self
        }
    }
}

/// Wraps `text` so that logging it cannot forge lines or colours: control characters
/// (newlines, ESC, …), backslashes and invisible format characters are written as escapes
/// (`\n`, `\u{1b}`, `\\`), and the text is cut after [`UNTRUSTED_MAX_CHARS`] characters.
///
/// ```
/// use werss_cascade::telemetry::untrusted;
/// assert_eq!(untrusted("a\nb\u{1b}[31m").to_string(), r"a\nb\u{1b}[31m");
/// ```
pub fn untrusted(text: &str) -> Untrusted<'_> {
    Untrusted {
        text,
        max_chars: UNTRUSTED_MAX_CHARS,
    }
}

/// Characters of an untrusted error message kept in a log line.
pub const ERROR_MAX_CHARS: usize = 400;

/// [`untrusted`] for the text of an error that may quote outside input (a peer's answer, a
/// value the database refused), kept up to [`ERROR_MAX_CHARS`].
pub fn untrusted_error(error: &dyn fmt::Display) -> String {
    untrusted(&error.to_string())
        .max_chars(ERROR_MAX_CHARS)
        .to_string()
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.text.chars().enumerate() {
            if i == self.max_chars {
                return f.write_str("…");
            }
            match c {
                // Quotes need no escape in a log line; escape_debug would add one.
                '"' | '\'' => fmt::Write::write_char(f, c)?,
                _ => fmt::Display::fmt(&c.escape_debug(), f)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_stays_on_one_line_without_escapes_and_is_cut() {
        let forged = "x\n2026-11-22T14:42:27Z  INFO forged\x1b[31m\r\u{7f}\u{202e}\\";
        let shown = untrusted(forged).to_string();
        assert_eq!(
            shown,
            r"x\n2026-11-22T14:42:27Z  INFO forged\u{1b}[31m\r\u{7f}\u{202e}\\"
        );
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(
            untrusted("plain ümlaut 'q' \"d\"").to_string(),
            "plain ümlaut 'q' \"d\""
        );
        let long = "a".repeat(500);
        let cut = untrusted(&long).to_string();
        assert_eq!(cut.chars().count(), UNTRUSTED_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "b".repeat(UNTRUSTED_MAX_CHARS);
        assert_eq!(untrusted(&exact).to_string(), exact);
        assert_eq!(format!("{:?}", untrusted("a\nb")), r#""a\nb""#);
        assert_eq!(untrusted("abcdef").max_chars(3).to_string(), "abc…");
        assert_eq!(untrusted_error(&"bad\nthing"), r"bad\nthing");
    }
}
