//! Provenance of a finished report in the dashboard: its paragraphs and what each cites
//! (subtasks, numbered sources), the paragraph selected (`n` / `N`), the report drawn in blocks
//! so a paragraph's lines on screen are known, and the citations that point at nothing the run
//! retrieved.
//!
//! The citation syntax is `citations`' business; this file only asks it. State changes happen
//! through the functions `update` calls; the views read the rest. No drawing, no I/O.

use std::cell::RefCell;
use std::ops::Range;

use ratatui::text::{Line, Span};

use crate::citations;
pub use crate::citations::{Paragraph, Unverified};
use crate::protocol::{RunId, SubtaskId};
use crate::tui::model::{Model, RunView, ToastLevel};

/// The paragraph selected in a report, and what was worked out from the report (kept while
/// the report stays the same).
#[derive(Debug, Default)]
pub struct Provenance {
    /// The run whose report is being read paragraph by paragraph, and the paragraph (an index
    /// into its paragraphs).
    pub selected: Option<(RunId, usize)>,
    analysis: RefCell<Option<Analysis>>,
    blocks: RefCell<Option<Blocks>>,
}

/// What makes the analysis of a report current: the run, its synthesis version, how many
/// sources and subtasks it has (a re-run subtask changes what is retrieved).
type Key = (RunId, u64, usize, usize);

/// A report's paragraphs and unverified citations.
#[derive(Debug, Default)]
pub struct Analysis {
    key: Option<Key>,
    pub paragraphs: Vec<Paragraph>,
    pub unverified: Vec<Unverified>,
}

/// The report rendered block by block at one width: its lines (each starting with a two-column
/// gutter for the highlight) and each paragraph's lines among them.
#[derive(Debug, Default)]
struct Blocks {
    key: Option<(Key, u16)>,
    lines: Vec<Line<'static>>,
    ranges: Vec<Range<usize>>,
}

/// Columns the gutter takes left of the report's lines in paragraph mode.
pub const GUTTER: u16 = 2;

fn key_of(view: &RunView) -> Option<Key> {
    let sources = view
        .report
        .subtasks
        .iter()
        .map(|s| s.sources.len())
        .sum::<usize>()
        + view.report.retrieved.len();
    Some((
        view.id()?,
        view.synthesis_version,
        sources,
        view.report.subtasks.len(),
    ))
}

/// The report of `view` is finished and there is one to read.
pub fn readable(view: &RunView) -> bool {
    !view.report.synthesizing && !view.report.synthesis.trim().is_empty()
}

/// Calls `f` with the analysis of `view`'s report (worked out again only when it changed).
pub fn with_analysis<T>(model: &Model, view: &RunView, f: impl FnOnce(&Analysis) -> T) -> T {
    let mut cache = model.provenance.analysis.borrow_mut();
    let cache = cache.get_or_insert_with(Analysis::default);
    let key = key_of(view);
    if cache.key != key || key.is_none() {
        let known: Vec<SubtaskId> = view.report.subtasks.iter().map(|s| s.id.clone()).collect();
        let text = &view.report.synthesis;
        cache.paragraphs = citations::paragraphs(text, &known);
        // As the reports flag them, so the count matches the JSON and the printed report.
        cache.unverified = view.report.unverified_citations();
        cache.key = key;
    }
    f(cache)
}

/// How many citations of the finished report point at nothing the run retrieved.
pub fn unverified_count(model: &Model, view: &RunView) -> usize {
    if !readable(view) {
        return 0;
    }
    with_analysis(model, view, |a| a.unverified.len())
}

/// The run and paragraph selected, when the current run's report is the one being read.
pub fn selected(model: &Model) -> Option<(&RunView, usize)> {
    let (run, index) = model.provenance.selected?;
    // The diff of two reports has no paragraphs to point at.
    if model.show_diff {
        return None;
    }
    let view = model.current_run().filter(|v| v.id() == Some(run))?;
    readable(view).then_some((view, index))
}

/// The selected paragraph (a copy: it is small).
pub fn selected_paragraph(model: &Model) -> Option<Paragraph> {
    let (view, index) = selected(model)?;
    with_analysis(model, view, |a| a.paragraphs.get(index).cloned())
}

/// The subtasks the selected paragraph cites, with their run.
pub fn cited_subtasks(model: &Model) -> Option<(RunId, Vec<SubtaskId>)> {
    let (view, _) = selected(model)?;
    Some((view.id()?, selected_paragraph(model)?.subtasks))
}

/// Calls `f` with the report of `view` rendered in blocks at `width` (gutter included), when
/// the pane reads it paragraph by paragraph; otherwise `f` comes back unused.
pub fn with_block_lines<T, F: FnOnce(&[Line<'static>]) -> T>(
    model: &Model,
    view: &RunView,
    width: u16,
    f: F,
) -> Result<T, F> {
    if selected(model).is_none_or(|(v, _)| v.id() != view.id()) {
        return Err(f);
    }
    with_blocks(model, view, width, |b| Ok(f(&b.lines)))
}

fn with_blocks<T>(model: &Model, view: &RunView, width: u16, f: impl FnOnce(&Blocks) -> T) -> T {
    let key = with_analysis(model, view, |a| a.key).map(|k| (k, width));
    let mut cache = model.provenance.blocks.borrow_mut();
    let cache = cache.get_or_insert_with(Blocks::default);
    if cache.key != key || key.is_none() {
        let (lines, ranges) = with_analysis(model, view, |a| {
            render_blocks(&view.report.synthesis, &a.paragraphs, width)
        });
        cache.lines = lines;
        cache.ranges = ranges;
        cache.key = key;
    }
    f(cache)
}

/// The lines of the report that paragraph `index` takes, as the pane draws it at `width`.
pub fn paragraph_lines(
    model: &Model,
    view: &RunView,
    width: u16,
    index: usize,
) -> Option<Range<usize>> {
    with_blocks(model, view, width, |b| b.ranges.get(index).cloned())
}

/// `text` rendered as markdown one paragraph at a time (and what lies between, such as code
/// blocks), so each paragraph's lines are known. One blank line stands for the blank lines
/// between blocks; every line starts with the gutter.
fn render_blocks(
    text: &str,
    paragraphs: &[Paragraph],
    width: u16,
) -> (Vec<Line<'static>>, Vec<Range<usize>>) {
    let source: Vec<&str> = text.lines().collect();
    let inner = width.saturating_sub(GUTTER).max(1);
    let mut lines: Vec<Line<'static>> = Vec::new();
    let mut ranges = Vec::with_capacity(paragraphs.len());
    let push_block = |lines: &mut Vec<Line<'static>>, block: &[&str]| {
        if block.iter().all(|l| l.trim().is_empty()) {
            if !block.is_empty() && lines.last().is_some_and(|l| l.width() > GUTTER as usize) {
                lines.push(Line::from(" ".repeat(GUTTER as usize)));
            }
            return;
        }
        let rendered = crate::tui::markdown::render(&block.join("\n"), inner);
        let start = rendered
            .iter()
            .position(|l| l.width() > 0)
            .unwrap_or(rendered.len());
        let end = rendered
            .iter()
            .rposition(|l| l.width() > 0)
            .map_or(start, |i| i + 1);
        for line in &rendered[start..end] {
            let mut spans = vec![Span::raw(" ".repeat(GUTTER as usize))];
            spans.extend(line.spans.iter().cloned());
            let mut out = Line::from(spans).style(line.style);
            out.alignment = line.alignment;
            lines.push(out);
        }
    };
    let table_row = |p: &Paragraph| {
        source
            .get(p.lines.start)
            .is_some_and(|l| l.trim_start().starts_with('|'))
    };
    let mut at = 0usize;
    let mut i = 0usize;
    while i < paragraphs.len() {
        // A table's rows are paragraphs of their own but only render as a table together:
        // adjacent rows are one block, and each row's range is the table's.
        let mut last = i;
        while table_row(&paragraphs[i])
            && last + 1 < paragraphs.len()
            && table_row(&paragraphs[last + 1])
            && paragraphs[last + 1].lines.start == paragraphs[last].lines.end
        {
            last += 1;
        }
        let start = paragraphs[i].lines.start.min(source.len());
        let end = paragraphs[last].lines.end.clamp(start, source.len());
        if start > at {
            push_block(&mut lines, &source[at..start]);
        }
        let first = lines.len();
        push_block(&mut lines, &source[start.max(at)..end.max(at)]);
        for _ in i..=last {
            ranges.push(first..lines.len());
        }
        at = at.max(end);
        i = last + 1;
    }
    if at < source.len() {
        push_block(&mut lines, &source[at..]);
    }
    (lines, ranges)
}

// ---- what the keys do -------------------------------------------------------------------------

/// Move the selection `delta` paragraphs through the current run's report (into the mode
/// from the first or last paragraph), and scroll the report to show it.
pub fn step(model: &mut Model, delta: isize) {
    let Some(view) = model.current_run() else {
        model.toast("no report to read yet".into(), ToastLevel::Info);
        return;
    };
    let Some(run) = view.id().filter(|_| readable(view)) else {
        model.toast(
            "no finished report to move through yet".into(),
            ToastLevel::Info,
        );
        return;
    };
    let count = with_analysis(model, view, |a| a.paragraphs.len());
    if count == 0 {
        model.toast("the report has no paragraphs".into(), ToastLevel::Info);
        return;
    }
    let index = match model.provenance.selected {
        Some((r, i)) if r == run => (i as isize)
            .saturating_add(delta)
            .clamp(0, count as isize - 1) as usize,
        _ if delta < 0 => count - 1,
        _ => 0,
    };
    model.provenance.selected = Some((run, index));
    model.show_diff = false;
    scroll_to_selected(model);
}

/// Scroll the report so the selected paragraph shows (its start, when it is taller than the
/// pane).
pub fn scroll_to_selected(model: &mut Model) {
    let Some((view, index)) = selected(model) else {
        return;
    };
    let area = crate::tui::layout::content(crate::tui::layout::areas(model).synthesis);
    let Some(range) = paragraph_lines(model, view, area.width, index) else {
        return;
    };
    let Some((total, height)) =
        crate::tui::content::extent(model, crate::tui::model::Focus::Synthesis)
    else {
        return;
    };
    let top = model.synthesis_scroll.top(total, height, false);
    let wanted = if range.start < top || range.len() > height {
        range.start
    } else if range.end > top + height {
        range.end - height
    } else {
        top
    };
    let scroll = &mut model.synthesis_scroll;
    scroll.offset = wanted.min(total.saturating_sub(height));
    scroll.follow = false;
    scroll.pinned = false;
}

/// A new report of the run being read replaces the paragraphs: the mode ends.
pub fn on_event(model: &mut Model, event: &crate::protocol::Event) {
    if matches!(
        event.kind,
        crate::protocol::EventKind::SynthesisStarted { .. }
    ) && model
        .provenance
        .selected
        .is_some_and(|(run, _)| run == event.run)
    {
        model.provenance.selected = None;
    }
}

/// Leave paragraph mode.
pub fn leave(model: &mut Model) {
    model.provenance.selected = None;
}

/// Paragraph mode is on for the current run (its keys apply).
pub fn active(model: &Model) -> bool {
    selected(model).is_some()
}

/// `cites: subtask a, b · sources [1] [3]` for a paragraph.
pub fn cites_label(paragraph: &Paragraph) -> String {
    let mut parts = Vec::new();
    if !paragraph.subtasks.is_empty() {
        parts.push(crate::tui::sources::subtasks_label(&paragraph.subtasks));
    }
    if !paragraph.sources.is_empty() {
        let numbers: Vec<String> = paragraph.sources.iter().map(|n| format!("[{n}]")).collect();
        parts.push(format!(
            "source{} {}",
            if numbers.len() == 1 { "" } else { "s" },
            numbers.join(" ")
        ));
    }
    if parts.is_empty() {
        "cites nothing".to_owned()
    } else {
        format!("cites: {}", parts.join(" · "))
    }
}
