//! Colours for state words in the operator commands' tables (`online`, `failed`, `expired`, …):
//! when standard output is a terminal, or `CLICOLOR_FORCE` is set (not `0`); never when
//! `NO_COLOR` is set (not empty), which wins. Plain ANSI SGR codes.

use std::io::IsTerminal;
use std::sync::LazyLock;

/// Whether this process colours its output, decided once.
static ENABLED: LazyLock<bool> = LazyLock::new(|| {
    decide(
        std::env::var_os("NO_COLOR"),
        std::env::var_os("CLICOLOR_FORCE"),
        std::io::stdout().is_terminal(),
    )
});

/// `NO_COLOR` (non-empty) wins, then `CLICOLOR_FORCE` (non-empty, not `0`), then the terminal.
fn decide(
    no_color: Option<std::ffi::OsString>,
    force: Option<std::ffi::OsString>,
    terminal: bool,
) -> bool {
    if no_color.is_some_and(|v| !v.is_empty()) {
        return false;
    }
    if force.is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    terminal
}

/// `word` coloured by what it says, when this process colours its output.
pub fn state(word: &str) -> String {
    paint(word, *ENABLED)
}

/// `word` in its colour when `on` (and it is a state word with one).
fn paint(word: &str, on: bool) -> String {
    let code = match word {
        "online" | "completed" | "valid" | "enabled" | "open" | "ok" | "fresh" => "32",
        "cooling" | "pending" | "recent" | "retry" => "33",
        "claimed" => "36",
        "executing" => "34",
        "offline" | "failed" | "expired" | "closed" | "outdated" | "error" => "31",
        "disabled" | "paused" | "deactivated" | "stale" | "released" | "cancelled" => "2",
        _ => return word.to_string(),
    };
    if on {
        format!("\x1b[{code}m{word}\x1b[0m")
    } else {
        word.to_string()
    }
}

/// Characters of `text` a terminal shows (ANSI SGR sequences take no room).
pub fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters… m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            width += 1;
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_wins_then_the_force_then_the_terminal() {
        let s = |v: &str| Some(std::ffi::OsString::from(v));
        assert!(decide(None, None, true));
        assert!(!decide(None, None, false));
        assert!(decide(None, s("1"), false));
        assert!(!decide(None, s("0"), false));
        assert!(!decide(s("1"), s("1"), true));
        assert!(decide(s(""), None, true), "an empty NO_COLOR is unset");
    }

    #[test]
    fn state_words_are_coloured_and_take_no_extra_room() {
        assert_eq!(paint("failed", true), "\x1b[31mfailed\x1b[0m");
        assert_eq!(paint("completed", true), "\x1b[32mcompleted\x1b[0m");
        assert_eq!(paint("failed", false), "failed");
        assert_eq!(paint("MP_WXS_1", true), "MP_WXS_1", "not a state word");
        assert_eq!(visible_width(&paint("executing", true)), 9);
        assert_eq!(visible_width("公众号"), 3);
    }
}
