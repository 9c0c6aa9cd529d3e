//! Making model text safe for a terminal. Every piece of text that came from a model or a
//! provider (answers, titles, error messages) passes through `sanitize` before it is printed
//! or drawn: escape sequences (CSI, OSC, DCS…) and C0/C1 control characters other than
//! newline and tab are removed, so a model cannot retitle, clear or recolour the terminal.

use std::borrow::Cow;

/// `text` without escape sequences and control characters (newline and tab are kept).
/// Borrows when there is nothing to remove, which is the common case.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    // The vte-based stripper removes whole sequences (an OSC title with its payload, not just
    // its ESC); the filter after it catches lone controls it lets through, such as a bare CR
    // or C1 characters.
    let stripped = strip_ansi_escapes::strip_str(text);
    Cow::Owned(stripped.chars().filter(|&c| !is_unsafe(c)).collect())
}

/// The same, for one line: newlines and tabs become spaces too.
pub fn sanitize_line(text: &str) -> Cow<'_, str> {
    let clean = sanitize(text);
    if clean.contains(['\n', '\t']) {
        Cow::Owned(clean.replace(['\n', '\t'], " "))
    } else {
        clean
    }
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let text = "Hello — wörld\n\tindented";
        assert!(matches!(sanitize(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn osc_title_is_removed_with_its_payload() {
        assert_eq!(sanitize("a\u{1b}]0;pwned\u{7}b"), "ab");
        assert_eq!(sanitize("a\u{1b}]2;pwned\u{1b}\\b"), "ab");
    }

    #[test]
    fn csi_sequences_are_removed() {
        assert_eq!(sanitize("\u{1b}[2J\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(sanitize("x\u{9b}2Jy"), "xy");
    }

    #[test]
    fn lone_controls_are_removed_but_newline_and_tab_kept() {
        assert_eq!(sanitize("a\rb\u{7}c\u{0}d\n\te\u{7f}"), "abcd\n\te");
        assert_eq!(sanitize("c1\u{85}\u{90}x"), "c1x");
    }

    #[test]
    fn line_form_flattens_newlines() {
        assert_eq!(sanitize_line("a\nb\tc\u{1b}[1m"), "a b c");
    }
}
