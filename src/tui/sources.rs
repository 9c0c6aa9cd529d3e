//! A run's sources in the dashboard: the text each tool call handed to the model (kept once per
//! run and location, sanitised when it arrives), the numbered list the sources pop-up shows,
//! and the reader's lines of one source.
//!
//! State and pure functions only: no drawing (the view lays these out) and no I/O (live texts
//! come from `ToolCallFinished` events, a saved run's from whoever reads the store, through
//! [`SourceTexts::insert`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ratatui::layout::Rect;

use crate::protocol::{Event, EventKind, RunId, Source, SourceKind, SubtaskId};
use crate::report::RunReport;
use crate::sanitize::sanitize;
use crate::tui::model::{Model, Overlay, ToastLevel};
use crate::tui::provenance::{self, Unverified};

/// How many bytes of retrieved text the dashboard keeps per run. Each text is already bounded
/// by its tool; this bounds a run that reads very many pages. Past it, the reader says the text
/// was not kept.
pub const MAX_TEXT_PER_RUN: usize = 32 * 1024 * 1024;

/// The retrieved texts of every run, by location (the same location read again keeps one
/// text: the latest).
#[derive(Debug, Default)]
pub struct SourceTexts {
    runs: HashMap<RunId, RunTexts>,
    /// The reader's wrapped lines of the one source it shows, reused between frames.
    wrapped: RefCell<Wrapped>,
    /// Texts asked of the run store (a run opened from history), and those it did not have.
    asked: HashSet<(RunId, String)>,
    not_saved: HashSet<(RunId, String)>,
}

/// Where the reader's text stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextState {
    Kept,
    /// Being read from the run store.
    Reading,
    /// Neither seen here nor saved.
    Missing,
}

#[derive(Debug, Default)]
struct RunTexts {
    by_location: HashMap<String, Arc<str>>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Wrapped {
    key: Option<(RunId, String, u16)>,
    lines: Vec<String>,
}

impl SourceTexts {
    /// Keep the text a finished tool call read, if it read a source.
    pub fn record(&mut self, event: &Event) {
        if let EventKind::ToolCallFinished {
            source: Some(source),
            text,
            ..
        } = &event.kind
            && !text.is_empty()
        {
            self.insert(event.run, &source.location, text);
        }
    }

    /// Keep `text` as what run `run` read at `location` (raw: it is sanitised here).
    pub fn insert(&mut self, run: RunId, location: &str, text: &str) {
        let clean: Arc<str> = Arc::from(sanitize(text).replace('\t', "    "));
        let texts = self.runs.entry(run).or_default();
        let old = texts.by_location.get(location).map_or(0, |t| t.len());
        let bytes = texts.bytes - old + clean.len();
        if bytes > MAX_TEXT_PER_RUN {
            return;
        }
        texts.bytes = bytes;
        texts.by_location.insert(location.to_owned(), clean);
        // A newer text of the source being read replaces what the reader wrapped.
        let mut wrapped = self.wrapped.borrow_mut();
        if wrapped
            .key
            .as_ref()
            .is_some_and(|(r, l, _)| *r == run && l == location)
        {
            wrapped.key = None;
        }
    }

    /// What run `run` read at `location`, sanitised, if it is kept.
    pub fn text(&self, run: RunId, location: &str) -> Option<&str> {
        self.runs.get(&run)?.by_location.get(location).map(|t| &**t)
    }

    /// Calls `f` with the text of `location` wrapped to `width` columns (empty when the text is
    /// not kept); wrapped once per source and width, not once per frame.
    pub fn with_wrapped<T>(
        &self,
        run: RunId,
        location: &str,
        width: u16,
        f: impl FnOnce(&[String]) -> T,
    ) -> T {
        let mut wrapped = self.wrapped.borrow_mut();
        let key = (run, location.to_owned(), width);
        if wrapped.key.as_ref() != Some(&key) {
            wrapped.lines = self
                .text(run, location)
                .map(|t| wrap(t, width.max(1) as usize))
                .unwrap_or_default();
            wrapped.key = Some(key);
        }
        f(&wrapped.lines)
    }

    /// Forget a run's texts.
    pub fn forget(&mut self, run: RunId) {
        self.runs.remove(&run);
        self.asked.retain(|(r, _)| *r != run);
        self.not_saved.retain(|(r, _)| *r != run);
    }

    /// Whether the text of `location` is here, being read, or not to be had.
    pub fn state(&self, run: RunId, location: &str) -> TextState {
        let key = (run, location.to_owned());
        if self.text(run, location).is_some() {
            TextState::Kept
        } else if self.asked.contains(&key) && !self.not_saved.contains(&key) {
            TextState::Reading
        } else {
            TextState::Missing
        }
    }
}

/// `text` broken into lines no wider than `width`, at spaces where it can (a word wider than
/// the line is broken anywhere).
fn wrap(text: &str, width: usize) -> Vec<String> {
    use unicode_width::UnicodeWidthChar;
    let cols = |s: &str| -> usize { s.chars().map(|c| c.width().unwrap_or(0)).sum() };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        let mut used = 0usize;
        for word in line.trim_end().split_inclusive(' ') {
            let body = word.trim_end_matches(' ');
            let body_w = cols(body);
            if used > 0 && used + body_w > width {
                out.push(std::mem::take(&mut current).trim_end().to_owned());
                used = 0;
            }
            if body_w > width {
                for c in body.chars() {
                    let w = c.width().unwrap_or(0);
                    if used + w > width && used > 0 {
                        out.push(std::mem::take(&mut current));
                        used = 0;
                    }
                    current.push(c);
                    used += w;
                }
            } else {
                current.push_str(body);
                used += body_w;
            }
            let blanks = word.len() - body.len();
            if used + blanks <= width {
                current.push_str(&word[body.len()..]);
                used += blanks;
            }
        }
        out.push(current.trim_end().to_owned());
    }
    out
}

/// One source of a run as the list shows it: its number, what was read, and the subtasks
/// whose latest attempt read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The run-wide number the report cites (`[n]`), or its place in order of retrieval when
    /// the source was not numbered.
    pub number: u32,
    pub source: Source,
    pub subtasks: Vec<SubtaskId>,
}

/// The run's sources, by number: each location once, with every subtask that read it.
/// Numbered sources keep their number; unnumbered ones are numbered in order of retrieval,
/// after the highest number.
pub fn list(report: &RunReport) -> Vec<Listed> {
    let mut out: Vec<Listed> = Vec::new();
    for s in &report.subtasks {
        for source in &s.sources {
            let same = |l: &Listed| {
                if source.number > 0 {
                    l.source.number == source.number
                } else {
                    l.source.number == 0 && l.source.location == source.location
                }
            };
            match out.iter_mut().find(|l| same(l)) {
                Some(listed) => {
                    if !listed.subtasks.contains(&s.id) {
                        listed.subtasks.push(s.id.clone());
                    }
                }
                None => out.push(Listed {
                    number: source.number,
                    source: source.clone(),
                    subtasks: vec![s.id.clone()],
                }),
            }
        }
    }
    out.sort_by_key(|l| (l.source.number == 0, l.source.number, l.source.retrieved_ms));
    let mut next = out.iter().map(|l| l.number).max().unwrap_or(0);
    for listed in out.iter_mut().filter(|l| l.number == 0) {
        next += 1;
        listed.number = next;
    }
    out
}

/// `HTTP 200`, `file`, or `HTTP ?` for a fetch whose status is not known.
pub fn status_label(source: &Source) -> String {
    match (source.kind, source.status) {
        (SourceKind::Url, Some(code)) => format!("HTTP {code}"),
        (SourceKind::Url, None) => "HTTP ?".to_owned(),
        (SourceKind::File, _) => "file".to_owned(),
    }
}

/// `subtask a, b` / `subtasks a, b`.
pub fn subtasks_label(ids: &[SubtaskId]) -> String {
    let names: Vec<String> = ids
        .iter()
        .map(|id| crate::sanitize::sanitize_line(id.as_str()).into_owned())
        .collect();
    format!("subtask {}", names.join(", "))
}

/// What the sources pop-up of run `run` lists: its sources (only those paragraph `paragraph`
/// of the report cites, when given), then the citations that point at nothing retrieved (those
/// of that paragraph).
pub fn shown(
    model: &Model,
    run: RunId,
    paragraph: Option<usize>,
) -> (Vec<Listed>, Vec<Unverified>) {
    let Some(view) = model.run(run) else {
        return (Vec::new(), Vec::new());
    };
    let mut listed = list(&view.report);
    let mut unverified = if provenance::readable(view) {
        provenance::with_analysis(model, view, |a| a.unverified.clone())
    } else {
        Vec::new()
    };
    if let Some(index) = paragraph {
        let Some(p) = provenance::with_analysis(model, view, |a| a.paragraphs.get(index).cloned())
        else {
            return (Vec::new(), Vec::new());
        };
        listed.retain(|l| p.sources.contains(&l.number));
        // `Unverified::line` counts from 1; the paragraph's lines from 0.
        unverified.retain(|u| p.lines.contains(&u.line.saturating_sub(1)));
    }
    (listed, unverified)
}

/// Open the sources of the current run (only those the selected paragraph cites, with
/// `paragraph`).
pub fn open(model: &mut Model, paragraph: bool) {
    let Some(run) = model.current_run().and_then(|v| v.id()) else {
        model.toast("no run yet".into(), ToastLevel::Info);
        return;
    };
    let paragraph = if paragraph {
        match provenance::selected(model) {
            Some((_, index)) => Some(index),
            None => return,
        }
    } else {
        None
    };
    let (listed, unverified) = shown(model, run, paragraph);
    if listed.is_empty() && unverified.is_empty() {
        let what = if paragraph.is_some() {
            "this paragraph cites no source"
        } else {
            "this run read no sources"
        };
        model.toast(what.into(), ToastLevel::Info);
        return;
    }
    model.overlay = Some(Overlay::Sources {
        run,
        cursor: 0,
        paragraph,
    });
}

/// Move the sources pop-up's cursor by `step` sources.
pub fn move_cursor(model: &mut Model, step: isize) {
    let Some(Overlay::Sources { run, paragraph, .. }) = &model.overlay else {
        return;
    };
    let count = shown(model, *run, *paragraph).0.len();
    if let Some(Overlay::Sources { cursor, .. }) = &mut model.overlay {
        *cursor = (*cursor as isize)
            .saturating_add(step)
            .clamp(0, count.saturating_sub(1) as isize) as usize;
    }
}

/// Open the reader on the highlighted source; a text this dashboard did not see arrive (a run
/// opened from history) is asked of the run store, once.
pub fn read(model: &mut Model, actions: &mut Vec<crate::tui::update::Action>) {
    let Some(Overlay::Sources {
        run,
        cursor,
        paragraph,
    }) = model.overlay
    else {
        return;
    };
    let Some(listed) = shown(model, run, paragraph).0.into_iter().nth(cursor) else {
        return;
    };
    let key = (run, listed.source.location.clone());
    if model.sources.text(run, &key.1).is_none()
        && !model.sources.asked.contains(&key)
        && let Some(subtask) = listed.subtasks.first()
    {
        model.sources.asked.insert(key);
        actions.push(crate::tui::update::Action::ReadSourceText {
            run,
            subtask: subtask.clone(),
            source: listed.source.clone(),
        });
    }
    model.overlay = Some(Overlay::Reader {
        run,
        number: listed.number,
        location: listed.source.location,
        scroll: 0,
        cursor,
        paragraph,
    });
}

/// The run store answered for a source's text.
pub fn text_read(
    model: &mut Model,
    run: RunId,
    location: &str,
    result: Result<Option<String>, String>,
) {
    match result {
        Ok(Some(text)) => {
            model.sources.insert(run, location, &text);
            if model.sources.text(run, location).is_none() {
                // Over what the dashboard keeps per run.
                model.sources.not_saved.insert((run, location.to_owned()));
            }
        }
        Ok(None) => {
            model.sources.not_saved.insert((run, location.to_owned()));
        }
        Err(why) => {
            model.sources.not_saved.insert((run, location.to_owned()));
            model.toast(
                format!(
                    "could not read the source's text: {}",
                    crate::sanitize::sanitize_line(&why)
                ),
                ToastLevel::Error,
            );
        }
    }
}

/// From the reader back to the list it was opened from.
pub fn back(model: &mut Model) {
    if let Some(Overlay::Reader {
        run,
        cursor,
        paragraph,
        ..
    }) = model.overlay
    {
        model.overlay = Some(Overlay::Sources {
            run,
            cursor,
            paragraph,
        });
    }
}

/// How the reader moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderMove {
    Lines(isize),
    Pages(isize),
    Top,
    Bottom,
}

/// Scroll the reader.
pub fn scroll_reader(model: &mut Model, how: ReaderMove) {
    let Some(Overlay::Reader { run, location, .. }) = &model.overlay else {
        return;
    };
    let text = reader_text_area(model.size);
    let total = model
        .sources
        .with_wrapped(*run, location, text.width, |lines| lines.len());
    let height = text.height.max(1) as usize;
    let max = total.saturating_sub(height) as isize;
    if let Some(Overlay::Reader { scroll, .. }) = &mut model.overlay {
        let at = (*scroll as isize).min(max);
        let page = height.saturating_sub(1).max(1) as isize;
        let next = match how {
            ReaderMove::Lines(n) => at.saturating_add(n),
            ReaderMove::Pages(n) => at.saturating_add(n.saturating_mul(page)),
            ReaderMove::Top => 0,
            ReaderMove::Bottom => max,
        };
        *scroll = next.clamp(0, max.max(0)) as usize;
    }
}

/// Lines of the reader above its text: the source's header, who read it, a rule.
pub const READER_HEADER: u16 = 3;

/// Where the reader pop-up goes on a screen of `size`.
pub fn reader_rect(size: (u16, u16)) -> Rect {
    let (w, h) = size;
    let width = w.saturating_sub(4).min(120);
    let height = h.saturating_sub(2);
    Rect::new(
        w.saturating_sub(width) / 2,
        h.saturating_sub(height) / 2,
        width,
        height,
    )
}

/// Where the reader's text goes (inside the frame and its padding, under the header).
pub fn reader_text_area(size: (u16, u16)) -> Rect {
    let rect = reader_rect(size);
    Rect {
        x: rect.x.saturating_add(2),
        y: rect.y.saturating_add(1 + READER_HEADER),
        width: rect.width.saturating_sub(4),
        height: rect.height.saturating_sub(2 + READER_HEADER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_every_word_within_the_width() {
        let lines = wrap("one two three four five six seven\n\nabcdefghijklmnop", 10);
        assert!(lines.iter().all(|l| l.chars().count() <= 10), "{lines:?}");
        assert_eq!(
            lines.concat().replace(' ', ""),
            "onetwothreefourfivesixsevenabcdefghijklmnop"
        );
        assert!(lines.contains(&String::new()));
    }

    #[test]
    fn texts_are_sanitised_and_bounded_per_run() {
        let mut texts = SourceTexts::default();
        let run = RunId::new();
        texts.insert(run, "https://a.example/", "title\u{1b}]0;pwned\u{7}\tbody");
        assert_eq!(texts.text(run, "https://a.example/"), Some("title    body"));
        let big = "x".repeat(MAX_TEXT_PER_RUN);
        texts.insert(run, "https://b.example/", &big);
        assert_eq!(texts.text(run, "https://b.example/"), None);
    }
}
