//! Quoting outside text: one implementation for error messages and terminal output.
//!
//! Control, zero-width and bidirectional-override characters are escaped (so hostile input
//! cannot drive a terminal or disguise itself; CVE-2021-42574, "Trojan Source", is why the
//! bidirectional overrides are in the set). The callers differ only in whether backticks are
//! escaped (text quoted inside backticks must not close the quote) and in the length cut.

/// Longest excerpt of outside text put into an error message, in characters.
pub const EXCERPT_CHARS: usize = 80;

/// Outside text made safe to quote in backticks in a message: escaped, backticks escaped
/// (so it cannot close the quote), and cut to [`EXCERPT_CHARS`] characters.
pub fn excerpt(text: &str) -> String {
    sanitize(text, EXCERPT_CHARS, true)
}

/// [`excerpt`] with another length cut: escaped, backticks escaped, at most `max_chars`
/// characters.
pub fn quote(text: &str, max_chars: usize) -> String {
    sanitize(text, max_chars, true)
}

/// Outside text made safe to print whole (escaped as [`excerpt`] does, backticks kept, up
/// to 1024 characters): for values a user asked to see, such as a verified SAN.
pub fn escape(text: &str) -> String {
    sanitize(text, 1024, false)
}

/// A library's error message that may quote input (serde_json's, for example), made safe as
/// [`excerpt`] does but keeping its backticks and allowing `max_chars` characters.
pub fn sanitize_message(text: &str, max_chars: usize) -> String {
    sanitize(text, max_chars, false)
}

/// Outside text (from an SBOM, an OSV record, an attestation) made safe for a terminal:
/// escaped as [`escape`] does, backticks kept, not shortened.
pub fn printable(text: &str) -> String {
    sanitize(text, usize::MAX, false)
}

fn sanitize(text: &str, max_chars: usize, escape_backticks: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars));
    for (count, c) in text.chars().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        if c == '`' && escape_backticks {
            out.push_str("\\`");
        } else if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_control_characters_and_backticks() {
        assert_eq!(excerpt("a\u{1b}[31mb`c"), "a\\u{1b}[31mb\\`c");
    }

    #[test]
    fn sanitize_message_keeps_backticks_and_escapes_bidi_overrides() {
        assert_eq!(
            sanitize_message("field `a`\u{202e}", 80),
            "field `a`\\u{202e}"
        );
    }

    #[test]
    fn excerpt_shortens_long_input() {
        let long = "x".repeat(500);
        let short = excerpt(&long);
        assert_eq!(short.chars().count(), EXCERPT_CHARS + 1);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn printable_escapes_terminal_controls_and_keeps_length() {
        assert_eq!(printable("lodash"), "lodash");
        assert_eq!(printable("a\u{1b}[2Jb`"), "a\\u{1b}[2Jb`");
        assert_eq!(printable("x\u{202e}y\u{2066}z"), "x\\u{202e}y\\u{2066}z");
        let long = "y".repeat(5000);
        assert_eq!(printable(&long), long);
    }
}
