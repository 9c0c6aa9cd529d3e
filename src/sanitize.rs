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
    Cow::Owned(strip(text))
}

/// Where the stripper is inside an escape sequence (ECMA-48).
#[derive(Clone, Copy, PartialEq)]
enum State {
    Text,
    /// After ESC: a one-character sequence, an intermediate, or the start of a longer one.
    Escape,
    /// CSI parameters and intermediates until a final byte (`@`..`~`).
    Csi,
    /// OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (ESC `\` or 0x9C).
    Str,
    /// ESC seen inside a string: `\` ends it.
    StrEscape,
}

// Hand-written rather than `strip-ansi-escapes`: that crate also drops tabs (which code blocks
// need) and lets 8-bit C1 introducers such as U+009B (CSI) through with their parameters.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut state = State::Text;
    for c in text.chars() {
        state = match state {
            State::Text => match c {
                '\u{1b}' => State::Escape,
                '\u{9b}' => State::Csi,
                '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => State::Str,
                c if is_unsafe(c) => State::Text,
                c => {
                    out.push(c);
                    State::Text
                }
            },
            State::Escape => match c {
                '[' => State::Csi,
                ']' | 'P' | 'X' | '^' | '_' => State::Str,
                // Intermediates (`ESC ( B`) keep the sequence open for one more byte.
                '\u{20}'..='\u{2f}' => State::Escape,
                _ => State::Text,
            },
            State::Csi => match c {
                '\u{40}'..='\u{7e}' => State::Text,
                '\u{1b}' => State::Escape,
                // Parameters, intermediates, and any control inside a CSI are swallowed.
                _ => State::Csi,
            },
            State::Str => match c {
                '\u{7}' | '\u{9c}' => State::Text,
                '\u{1b}' => State::StrEscape,
                _ => State::Str,
            },
            State::StrEscape => match c {
                '\\' => State::Text,
                '\u{1b}' => State::StrEscape,
                _ => State::Str,
            },
        };
    }
    out
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

/// Pretty JSON with every control character escaped. serde_json escapes only U+0000–U+001F;
/// DEL, the C1 controls (U+0080–U+009F: 8-bit CSI, OSC, DCS…) and U+2028/2029 would reach a
/// terminal raw, so they are written as `\uXXXX` too. The JSON means the same.
pub fn write_json<W: std::io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let formatter = SafeFormatter(serde_json::ser::PrettyFormatter::new());
    value.serialize(&mut serde_json::Serializer::with_formatter(
        writer, formatter,
    ))
}

/// The same on one line (JSON Lines).
pub fn write_json_line<W: std::io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let formatter = SafeFormatter(serde_json::ser::CompactFormatter);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        writer, formatter,
    ))
}

struct SafeFormatter<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for SafeFormatter<F> {
    fn write_string_fragment<W: std::io::Write + ?Sized>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // The layout is the pretty formatter's.
    fn begin_array<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: std::io::Write + ?Sized>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: std::io::Write + ?Sized>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: std::io::Write + ?Sized>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
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
        assert_eq!(sanitize("c1\u{85}\u{80}x"), "c1x");
    }

    #[test]
    fn unterminated_sequences_swallow_only_themselves() {
        assert_eq!(sanitize("ok\u{1b}]0;never ends"), "ok");
        assert_eq!(sanitize("ok\u{1b}[12"), "ok");
        assert_eq!(sanitize("a\u{1b}(Bb"), "ab");
        assert_eq!(sanitize("a\u{1b}cb"), "ab");
    }

    #[test]
    fn dcs_and_apc_strings_are_removed() {
        assert_eq!(sanitize("a\u{1b}P1;2|data\u{1b}\\b"), "ab");
        assert_eq!(sanitize("a\u{1b}_apc\u{9c}b"), "ab");
    }

    #[test]
    fn json_escapes_c1_controls_and_still_means_the_same() {
        let text = "a\u{9b}2J\u{1b}]0;x\u{7}b\u{85}\u{2028}é";
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({ "t": text })).expect("serialises");
        let raw = String::from_utf8(out).expect("utf-8");
        assert!(!raw.chars().any(|c| c.is_control() && c != '\n'), "{raw:?}");
        assert!(raw.contains("\\u009b") && raw.contains("\\u001b"), "{raw}");
        let back: serde_json::Value = serde_json::from_str(&raw).expect("valid JSON");
        assert_eq!(back["t"], text);
        assert!(raw.contains("\n  \"t\""), "pretty layout kept: {raw}");
    }

    #[test]
    fn line_form_flattens_newlines() {
        assert_eq!(sanitize_line("a\nb\tc\u{1b}[1m"), "a b c");
    }
}
