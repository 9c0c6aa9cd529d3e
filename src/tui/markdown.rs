//! The synthesis as rendered markdown, wrapped to the pane's width, and cached: parsing and
//! wrapping a long report costs far more than drawing the few lines on screen, so it is done
//! once per change of text or width, not once per frame.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

use crate::protocol::RunId;
use crate::sanitize::sanitize;

/// The wrapped lines of one synthesis at one width.
#[derive(Debug, Default)]
pub struct MarkdownCache {
    key: Option<(RunId, u64, u16)>,
    rendered_at_ms: u64,
    lines: Vec<Line<'static>>,
}

/// While a synthesis streams, it is parsed again at most this often: a long report costs
/// milliseconds to parse, and a new delta arrives every few tens of milliseconds.
pub const STREAM_REFRESH_MS: u64 = 100;

impl MarkdownCache {
    /// The lines of `text` (version `version` of run `run`'s synthesis) wrapped to `width`.
    /// While `live` (streaming), a newer version is rendered only if the cached one is at least
    /// `STREAM_REFRESH_MS` old by `now_ms`; finished text is always current.
    pub fn lines(
        &mut self,
        run: RunId,
        version: u64,
        width: u16,
        text: &str,
        now_ms: u64,
        live: bool,
    ) -> &[Line<'static>] {
        let key = (run, version, width);
        let fresh_enough = live
            && matches!(self.key, Some((r, _, w)) if r == run && w == width)
            && now_ms < self.rendered_at_ms.saturating_add(STREAM_REFRESH_MS);
        if self.key != Some(key) && !fresh_enough {
            self.lines = render(text, width);
            self.key = Some(key);
            self.rendered_at_ms = now_ms;
        }
        &self.lines
    }
}

/// Markdown → styled lines no wider than `width`. Model text is sanitised first.
pub fn render(text: &str, width: u16) -> Vec<Line<'static>> {
    let clean = sanitize(text);
    let options = tui_markdown::Options::default().table_width(width.max(10));
    let parsed = tui_markdown::from_str_with_options(&clean, &options);
    let mut out = Vec::with_capacity(parsed.lines.len());
    for line in &parsed.lines {
        wrap_line(line, width.max(1) as usize, &mut out);
    }
    out
}

/// Word-wrap one styled line into `out`. Words longer than the width are broken. A word ends
/// at a blank, not where its style changes: the renderer hands `[1]` over as `[` and `1]`, and
/// a citation must not be cut there.
pub fn wrap_line(line: &Line<'_>, width: usize, out: &mut Vec<Line<'static>>) {
    let base = line.style;
    if line.width() <= width {
        out.push(owned(line));
        return;
    }
    let chars: Vec<(char, Style)> = line
        .spans
        .iter()
        .flat_map(|s| s.content.chars().map(move |c| (c, s.style)))
        .collect();
    let cols =
        |run: &[(char, Style)]| -> usize { run.iter().map(|(c, _)| c.width().unwrap_or(0)).sum() };
    let mut current: Vec<Span<'static>> = Vec::new();
    let mut used = 0usize;
    let flush =
        |current: &mut Vec<Span<'static>>, used: &mut usize, out: &mut Vec<Line<'static>>| {
            out.push(Line::from(std::mem::take(current)).style(base));
            *used = 0;
        };
    let mut buf = [0u8; 4];
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i].0 != ' ' {
            i += 1;
        }
        let word = &chars[start..i];
        let blanks_start = i;
        while i < chars.len() && chars[i].0 == ' ' {
            i += 1;
        }
        let blanks = &chars[blanks_start..i];
        let word_width = cols(word);
        if used > 0 && used + word_width > width {
            flush(&mut current, &mut used, out);
        }
        for &(c, style) in word {
            let w = c.width().unwrap_or(0);
            // Only a word wider than the whole line gets here without room: break it
            // wherever the line is full.
            if used + w > width && used > 0 {
                flush(&mut current, &mut used, out);
            }
            push_span(&mut current, c.encode_utf8(&mut buf), style);
            used += w;
        }
        // Blanks at a break vanish instead of indenting the next line.
        for &(c, style) in blanks {
            if used + 1 > width {
                break;
            }
            push_span(&mut current, c.encode_utf8(&mut buf), style);
            used += 1;
        }
    }
    if !current.is_empty() {
        flush(&mut current, &mut used, out);
    }
}

fn push_span(current: &mut Vec<Span<'static>>, text: &str, style: Style) {
    if text.is_empty() {
        return;
    }
    match current.last_mut() {
        Some(last) if last.style == style => last.content.to_mut().push_str(text),
        _ => current.push(Span::styled(text.to_owned(), style)),
    }
}

fn owned(line: &Line<'_>) -> Line<'static> {
    let spans: Vec<Span<'static>> = line
        .spans
        .iter()
        .map(|s| Span::styled(s.content.to_string(), s.style))
        .collect();
    let mut out = Line::from(spans).style(line.style);
    out.alignment = line.alignment;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn long_lines_wrap_at_words_within_the_width() {
        let lines = render("one two three four five six seven eight nine ten", 12);
        assert!(lines.iter().all(|l| l.width() <= 12), "{:?}", text(&lines));
        assert_eq!(
            text(&lines).join("").replace(' ', ""),
            "onetwothreefourfivesixseveneightnineten"
        );
        assert!(lines.len() >= 4);
    }

    #[test]
    fn wrapped_lines_never_start_with_a_blank() {
        for width in 5..12 {
            let line = Line::from(vec![
                Span::raw("size of"),
                Span::raw(" the effect is large"),
            ]);
            let mut out = Vec::new();
            wrap_line(&line, width, &mut out);
            assert!(out.iter().all(|l| l.width() <= width), "{:?}", text(&out));
            assert!(
                out.iter().all(|l| !l.to_string().starts_with(' ')),
                "{:?}",
                text(&out)
            );
        }
        let line = Line::from("differ on the size of the effect");
        let mut out = Vec::new();
        wrap_line(&line, 23, &mut out);
        assert!(
            out.iter().all(|l| !l.to_string().starts_with(' ')),
            "{:?}",
            text(&out)
        );
    }

    #[test]
    fn a_word_made_of_several_spans_is_not_cut_where_its_style_changes() {
        let line = Line::from(vec![
            Span::raw("aaaa bbbb ["),
            Span::styled(
                "1]",
                Style::new().add_modifier(ratatui::style::Modifier::BOLD),
            ),
            Span::raw(" cc"),
        ]);
        let mut out = Vec::new();
        wrap_line(&line, 10, &mut out);
        assert_eq!(text(&out), ["aaaa bbbb ", "[1] cc"]);
    }

    #[test]
    fn a_word_longer_than_the_width_is_broken() {
        let lines = render("abcdefghijklmnopqrstuvwxyz", 10);
        assert_eq!(text(&lines), ["abcdefghij", "klmnopqrst", "uvwxyz"]);
    }

    #[test]
    fn styles_survive_wrapping() {
        let lines = render("plain **bold words that go on and on** end", 10);
        let bold = lines
            .iter()
            .flat_map(|l| l.spans.iter())
            .filter(|s| {
                s.style
                    .add_modifier
                    .contains(ratatui::style::Modifier::BOLD)
            })
            .map(|s| s.content.to_string())
            .collect::<String>();
        assert!(bold.contains("bold") && bold.contains("on"), "{bold:?}");
    }

    #[test]
    fn escape_sequences_never_reach_the_lines() {
        let lines = render("# Title\u{1b}]0;pwned\u{7}\n\ntext \u{1b}[2J more", 40);
        let all = text(&lines).join("\n");
        assert!(!all.contains('\u{1b}') && !all.contains('\u{7}'), "{all:?}");
        assert!(all.contains("Title") && all.contains("more"));
    }

    #[test]
    fn the_cache_renders_again_only_when_text_or_width_change() {
        let run = RunId::new();
        let mut cache = MarkdownCache::default();
        let first = cache.lines(run, 1, 20, "first", 0, false).to_vec();
        assert_eq!(text(&first), ["first"]);
        let same = cache.lines(run, 1, 20, "ignored: same version", 0, false);
        assert_eq!(text(same), ["first"]);
        assert_eq!(
            text(cache.lines(run, 2, 20, "second", 0, false)),
            ["second"]
        );
        assert_eq!(text(cache.lines(run, 2, 30, "wider", 0, false)), ["wider"]);
    }

    #[test]
    fn a_streaming_synthesis_is_parsed_at_most_every_refresh_interval() {
        let run = RunId::new();
        let mut cache = MarkdownCache::default();
        assert_eq!(text(cache.lines(run, 1, 20, "a", 1000, true)), ["a"]);
        assert_eq!(text(cache.lines(run, 2, 20, "a b", 1050, true)), ["a"]);
        let later = 1000 + STREAM_REFRESH_MS;
        assert_eq!(
            text(cache.lines(run, 3, 20, "a b c", later, true)),
            ["a b c"]
        );
        // The finished text is never held back.
        assert_eq!(
            text(cache.lines(run, 4, 20, "done", later + 1, false)),
            ["done"]
        );
    }
}
