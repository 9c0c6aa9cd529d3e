//! The timeline view: the selected run drawn over time in the tree pane (key `T`), one row per
//! track (the planner, each subtask in the tree's order with its glyph, the synthesis), the
//! time axis on top and the critical path and calls in flight in the bottom border; and the
//! rows `j`/`k` move through while it shows.
//!
//! Draws from `&Model` only; the shape of the run is `crate::timeline`'s. Per frame the work
//! is one pass over the run's tracks and one bar per visible row, written into one reused
//! buffer of cells: nothing here grows with the run's text.

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use unicode_width::UnicodeWidthStr;

use crate::display::{spinner_at, truncate};
use crate::protocol::SubtaskStatus;
use crate::sanitize::sanitize_line;
use crate::timeline::{Cell, TrackKind, footer, footer_short};
use crate::tui::layout;
use crate::tui::model::{Focus, Model, Node, RunView};

/// The run the timeline shows: the selected one, else the latest.
fn shown(model: &Model) -> Option<&RunView> {
    model.current_run()
}

/// The rows `j`/`k` move through while the timeline shows: the run (its planner row) and its
/// subtasks. The synthesis row has nothing of its own to select.
pub fn rows(model: &Model) -> Vec<Node> {
    let Some(view) = shown(model) else {
        return Vec::new();
    };
    let Some(id) = view.id() else {
        return Vec::new();
    };
    std::iter::once(Node::Run(id))
        .chain(
            view.report
                .subtasks
                .iter()
                .map(|s| Node::Subtask(id, s.id.clone())),
        )
        .collect()
}

/// The track the selection is on: 0 for the run (planner), 1 + i for its i-th subtask.
fn selected_track(model: &Model, view: &RunView) -> Option<usize> {
    match &model.selected {
        Some(Node::Run(id)) if Some(*id) == view.id() => Some(0),
        Some(Node::Subtask(id, sub)) if Some(*id) == view.id() => view
            .report
            .subtasks
            .iter()
            .position(|s| &s.id == sub)
            .map(|i| i + 1),
        _ => None,
    }
}

/// The first track drawn when `height` rows fit under the axis: the selected one stays on
/// screen, with the rows above it first.
fn first_row(model: &Model, view: &RunView, height: usize) -> usize {
    match selected_track(model, view) {
        Some(at) if at >= height => at + 1 - height,
        _ => 0,
    }
}

/// The row at `line` of the pane's inside (0 is the axis), for a click: the run for the
/// planner's row, a subtask for its own; nothing for the axis or the synthesis.
pub fn node_at(model: &Model, line: usize) -> Option<Node> {
    let view = shown(model)?;
    let height = layout::inner(layout::areas(model).tree)
        .height
        .saturating_sub(1) as usize;
    let track = first_row(model, view, height) + line.checked_sub(1)?;
    rows(model).get(track).cloned()
}

pub fn draw(frame: &mut Frame, model: &Model, area: Rect) {
    let theme = &model.theme;
    let Some(view) = shown(model) else {
        let block = block(model, Line::from(" Timeline "));
        let inside = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new("No run yet: the timeline shows the selected run.").style(theme.dim()),
            inside,
        );
        return;
    };
    let report = &view.report;
    let timeline = report.timeline(model.now_ms);
    let summary = timeline.summary();
    let heading = Line::from(vec![Span::styled(
        format!(" Timeline #{} ", view.number),
        theme.bold(),
    )]);
    let mut block = block(model, heading);
    if report.plan.is_some() {
        // The long form where the border has room for it.
        let mut text = footer(&summary, report.limit);
        if text.width() + 4 > area.width as usize {
            text = footer_short(&summary, report.limit);
        }
        block = block.title_bottom(
            Line::from(Span::styled(format!(" {text} "), theme.dim())).alignment(Alignment::Left),
        );
    }
    let inside = block.inner(area);
    frame.render_widget(block, area);
    if inside.height < 2 || inside.width < 12 {
        return;
    }
    let tracks = timeline.tracks();
    // Mark, glyph, space, label, space: the label as wide as the widest, within reason.
    let label_w = tracks
        .iter()
        .map(|t| t.label.width())
        .max()
        .unwrap_or(0)
        .min(12);
    let bar_x = 4 + label_w;
    let bar_w = (inside.width as usize).saturating_sub(bar_x + 1).max(1);
    let span = timeline.end_ts.saturating_sub(timeline.start_ts);
    let mut lines = Vec::with_capacity(inside.height as usize);
    lines.push(Line::from(vec![
        Span::raw(" ".repeat(bar_x)),
        Span::styled(crate::timeline::axis(span, bar_w), theme.dim()),
    ]));
    let height = inside.height as usize - 1;
    let selected = selected_track(model, view);
    let top = first_row(model, view, height);
    let mut cells = vec![Cell::Empty; bar_w];
    for (i, track) in tracks.iter().enumerate().skip(top).take(height) {
        timeline.bar(i, span, &mut cells);
        let status = match track.kind {
            TrackKind::Subtask => report.subtasks.get(i - 1).map(|s| s.status),
            TrackKind::Planner | TrackKind::Synthesis => None,
        };
        let running = status == Some(SubtaskStatus::Running)
            || (track.kind == TrackKind::Synthesis && report.synthesizing)
            || (track.kind == TrackKind::Planner && report.plan.is_none() && view.is_active());
        let glyph = if running {
            spinner_at(model.now_ms)
        } else {
            track.glyph
        };
        let critical = summary.critical.contains(&i);
        let row_style = match status {
            Some(s) => theme.status(s),
            None => Style::new(),
        };
        let label = truncate(&sanitize_line(track.label), label_w);
        let mut spans = vec![Span::styled(
            format!(
                "{}{glyph} {label:<label_w$} ",
                if critical { '*' } else { ' ' }
            ),
            if critical {
                row_style.patch(theme.bold())
            } else {
                row_style
            },
        )];
        push_cells(&mut spans, &cells, |cell| match cell {
            Cell::Empty => Style::new(),
            Cell::Queued => theme.dim(),
            // A back-off is a retry waiting: the tree's style for one.
            Cell::Wait => theme.status(SubtaskStatus::Retrying),
            Cell::Failed | Cell::FailedEnd => theme.error(),
            Cell::Call(_) => row_style,
        });
        let mut line = Line::from(spans);
        if selected == Some(i) {
            line = line.patch_style(theme.selected());
            let pad = (inside.width as usize).saturating_sub(line.width());
            line.push_span(Span::styled(" ".repeat(pad), theme.selected()));
        }
        lines.push(line);
    }
    frame.render_widget(Paragraph::new(lines), inside);
}

/// Runs of cells of one style as one span each.
fn push_cells(spans: &mut Vec<Span<'static>>, cells: &[Cell], style: impl Fn(Cell) -> Style) {
    let mut text = String::new();
    let mut current: Option<Style> = None;
    for &cell in cells {
        let s = style(cell);
        if current.is_some_and(|c| c != s) {
            spans.push(Span::styled(
                std::mem::take(&mut text),
                current.unwrap_or_default(),
            ));
        }
        current = Some(s);
        text.push(cell.glyph());
    }
    if !text.is_empty() {
        spans.push(Span::styled(text, current.unwrap_or_default()));
    }
}

fn block<'a>(model: &Model, title: Line<'a>) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(model.theme.border(model.focus == Focus::Tree))
        .title(title)
        .title(Line::from(Span::styled(" T tree ", model.theme.dim())).alignment(Alignment::Right))
}
