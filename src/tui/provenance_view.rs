//! Drawing provenance from a `&Model`: the selected paragraph's bar and footer in the report
//! pane, the cited subtasks' marks in the tree, the sources pop-up and the source reader.
//! Views only: what is selected and listed is `provenance`'s and `sources`' business; every
//! piece of model or page text is sanitised before it is drawn.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use crate::display::{bytes, truncate, utc};
use crate::protocol::{RunId, SubtaskId};
use crate::sanitize::sanitize_line;
use crate::tui::model::Model;
use crate::tui::provenance::{self, GUTTER};
use crate::tui::sources::{self, Listed};
use crate::tui::view::{list_scrollbar, popup, selected_row};

/// The glyph that marks a subtask the selected paragraph cites (readable without colour).
pub const CITED: &str = "◆";

/// Put the bar beside the selected paragraph's lines; `visible` are the pane's lines from
/// `top`, as drawn at `width`.
pub fn highlight(model: &Model, width: u16, top: usize, visible: &mut [Line<'static>]) {
    let Some((view, index)) = provenance::selected(model) else {
        return;
    };
    let Some(range) = provenance::paragraph_lines(model, view, width, index) else {
        return;
    };
    for (i, line) in visible.iter_mut().enumerate() {
        if range.contains(&(top + i))
            && let Some(gutter) = line.spans.first_mut()
            && gutter.content.width() == GUTTER as usize
        {
            *gutter = Span::styled("▌ ", model.theme.key());
        }
    }
}

/// The report pane's footer while a paragraph is selected:
/// ` ¶ 2/7 · cites: subtask a, b · sources [1] [3] · Enter sources · Esc leaves `.
pub fn footer(model: &Model, width: u16) -> Option<Line<'static>> {
    let (view, index) = provenance::selected(model)?;
    let count = provenance::with_analysis(model, view, |a| a.paragraphs.len());
    let paragraph = provenance::selected_paragraph(model)?;
    let cites = sanitize_line(&provenance::cites_label(&paragraph)).into_owned();
    let position = format!(" ¶ {}/{count} · ", index + 1);
    let keys = if paragraph.sources.is_empty() {
        " · Esc leaves "
    } else {
        " · Enter sources · Esc leaves "
    };
    let room = (width as usize).saturating_sub(position.width() + 2);
    let keys = if cites.width() + keys.width() <= room {
        keys
    } else {
        " "
    };
    let cites = truncate(&cites, room.saturating_sub(keys.width()));
    Some(Line::from(vec![
        Span::styled(position, model.theme.dim()),
        Span::styled(cites, model.theme.key()),
        Span::styled(keys.to_owned(), model.theme.dim()),
    ]))
}

/// The subtasks the selected paragraph cites, with their run, for the tree's marks.
pub fn cited(model: &Model) -> Option<(RunId, Vec<SubtaskId>)> {
    provenance::cited_subtasks(model)
}

/// A tree row of a cited subtask: `◆` in place of its indent, its id in bold.
pub fn mark_cited(model: &Model, mut line: Line<'static>) -> Line<'static> {
    let Some(first) = line.spans.first_mut() else {
        return line;
    };
    let Some(rest) = first.content.strip_prefix("  ").map(str::to_owned) else {
        return line;
    };
    let style = first.style.add_modifier(Modifier::BOLD);
    *first = Span::styled(rest, style);
    line.spans
        .insert(0, Span::styled(format!("{CITED} "), model.theme.key()));
    line
}

/// One source as the list shows it: `[n] location · HTTP 200 · 12.1 KB · date · subtask a, b`.
/// The location, status and size come first; the date and the readers where they fit.
fn source_row(model: &Model, listed: &Listed, width: usize) -> Line<'static> {
    let s = &listed.source;
    let number = format!("[{}] ", listed.number);
    let base = format!(" · {} · {}", sources::status_label(s), bytes(s.bytes));
    let date = format!(" · {}", utc(s.retrieved_ms));
    let who = format!(" · {}", sources::subtasks_label(&listed.subtasks));
    let location = truncate(
        &sanitize_line(&s.location),
        width.saturating_sub(number.width() + base.width()),
    );
    let mut room = width.saturating_sub(number.width() + location.width() + base.width());
    let mut meta = base;
    // The readers matter more than the date: the date goes first when both do not fit.
    if date.width() + who.width() <= room {
        meta.push_str(&date);
        room -= date.width();
    }
    meta.push_str(&truncate(&who, room));
    let status_style = match s.status {
        Some(code) if !(200..300).contains(&code) => model.theme.warning(),
        _ => model.theme.dim(),
    };
    Line::from(vec![
        Span::styled(number, model.theme.bold()),
        Span::raw(location),
        Span::styled(meta, status_style),
    ])
}

/// The sources pop-up: the run's sources (or a paragraph's), then its unverified citations.
pub fn draw_sources(
    frame: &mut Frame,
    model: &Model,
    area: Rect,
    run: RunId,
    cursor: usize,
    paragraph: Option<usize>,
) {
    let (listed, unverified) = sources::shown(model, run, paragraph);
    let mut below: Vec<Line<'static>> = Vec::new();
    if !unverified.is_empty() {
        below.push(Line::default());
        below.push(Line::from(Span::styled(
            format!(
                "⚠ {} at nothing this run retrieved",
                if unverified.len() == 1 {
                    "1 citation points".to_owned()
                } else {
                    format!("{} citations point", unverified.len())
                }
            ),
            model.theme.warning().add_modifier(Modifier::BOLD),
        )));
    }
    let width = area.width.saturating_sub(4).min(140);
    let inner_width = width.saturating_sub(4) as usize;
    for u in &unverified {
        let text = format!(
            "⚠ {} · line {} · {}",
            sanitize_line(&u.cited),
            u.line,
            sanitize_line(&u.why)
        );
        below.push(Line::from(Span::styled(
            truncate(&text, inner_width),
            model.theme.warning(),
        )));
    }
    let wanted = listed.len().max(1) + below.len() + 2;
    let height = (wanted as u16).min(area.height.saturating_sub(2)).max(3);
    let rect = Rect::new(
        area.x + area.width.saturating_sub(width) / 2,
        area.y + area.height.saturating_sub(height) / 2,
        width,
        height,
    );
    let title = match paragraph {
        Some(index) => format!("Sources cited by paragraph {}", index + 1),
        None => format!("Sources · {}", listed.len()),
    };
    let keys = if listed.is_empty() {
        " Esc close "
    } else {
        " ↑↓ move · Enter read · Esc close "
    };
    let inside = popup(frame, rect, &model.theme, &title, keys);
    // The unverified citations keep their lines while there is room for a few sources.
    let below_rows = below
        .len()
        .min((inside.height as usize).saturating_sub(3.min(listed.len().max(1))));
    let list_height = (inside.height as usize).saturating_sub(below_rows);
    let list_area = Rect {
        height: list_height as u16,
        ..inside
    };
    let top = cursor.saturating_sub(list_height.saturating_sub(1));
    let mut lines: Vec<Line<'static>> = Vec::new();
    if listed.is_empty() {
        lines.push(Line::from(Span::styled(
            "No source was retrieved.",
            model.theme.dim(),
        )));
    }
    for (i, l) in listed.iter().enumerate().skip(top).take(list_height) {
        let line = source_row(model, l, inside.width as usize);
        lines.push(if i == cursor {
            selected_row(line, &model.theme, inside.width as usize)
        } else {
            line
        });
    }
    frame.render_widget(Paragraph::new(lines), list_area);
    list_scrollbar(frame, rect, list_area, listed.len(), top);
    if below_rows > 0 {
        let below_area = Rect {
            y: inside.y + list_height as u16,
            height: below_rows as u16,
            ..inside
        };
        let shown: Vec<Line> = below.into_iter().take(below_rows).collect();
        frame.render_widget(Paragraph::new(shown), below_area);
    }
}

/// The source reader: the header (number, location, status, size, who read it) and the text
/// retrieved, scrolled to `scroll`.
pub fn draw_reader(
    frame: &mut Frame,
    model: &Model,
    run: RunId,
    number: u32,
    location: &str,
    scroll: usize,
) {
    let rect = sources::reader_rect(model.size);
    let text_area = sources::reader_text_area(model.size);
    let listed = model.run(run).and_then(|v| {
        sources::list(&v.report)
            .into_iter()
            .find(|l| l.number == number)
    });
    let (total, top, lines) = model
        .sources
        .with_wrapped(run, location, text_area.width, |lines| {
            let height = text_area.height as usize;
            let top = scroll.min(lines.len().saturating_sub(height));
            let shown: Vec<Line<'static>> = lines
                .iter()
                .skip(top)
                .take(height)
                .map(|l| Line::from(l.clone()))
                .collect();
            (lines.len(), top, shown)
        });
    let inside = popup(
        frame,
        rect,
        &model.theme,
        &format!("Source [{number}]"),
        " ↑↓ PgUp PgDn Home End · Esc back ",
    );
    let width = inside.width as usize;
    let mut header = vec![Line::from(Span::styled(
        truncate(&sanitize_line(location), width),
        model.theme.bold(),
    ))];
    let mut meta = Vec::new();
    if let Some(l) = &listed {
        meta.push(sources::status_label(&l.source));
        meta.push(bytes(l.source.bytes));
        meta.push(utc(l.source.retrieved_ms));
        meta.push(sources::subtasks_label(&l.subtasks));
    }
    header.push(Line::from(Span::styled(
        truncate(&meta.join(" · "), width),
        model.theme.dim(),
    )));
    // Where the text is, at the end of the rule under the header.
    let position = if total > text_area.height as usize {
        format!(
            " lines {}–{} of {total}",
            top + 1,
            (top + text_area.height as usize).min(total)
        )
    } else {
        String::new()
    };
    let position = truncate(&position, width);
    header.push(Line::from(vec![
        Span::styled(
            "─".repeat(width.saturating_sub(position.width())),
            model.theme.dim(),
        ),
        Span::styled(position, model.theme.dim()),
    ]));
    let header_area = Rect {
        height: inside.height.min(sources::READER_HEADER),
        ..inside
    };
    frame.render_widget(Paragraph::new(header), header_area);
    let text_area = text_area.intersection(inside);
    if total == 0 {
        let message = match model.sources.state(run, location) {
            sources::TextState::Reading => "Reading the saved text…",
            sources::TextState::Kept => "The source retrieved no text.",
            sources::TextState::Missing => {
                "The text this source retrieved is not kept (a run saved without it, or more \
                 than the dashboard keeps per run)."
            }
        };
        frame.render_widget(
            Paragraph::new(message)
                .style(model.theme.dim())
                .wrap(ratatui::widgets::Wrap { trim: true }),
            text_area,
        );
        return;
    }
    frame.render_widget(Paragraph::new(lines), text_area);
    list_scrollbar(frame, rect, text_area, total, top);
}
