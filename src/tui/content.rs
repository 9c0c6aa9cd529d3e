//! What the scrollable panes and the help hold, as lines: the detail of the selection (or
//! the run's summary), the synthesis, the help. The view draws these; `update` counts them to
//! bound scrolling, which is why they live here and not in the view.
//!
//! Reads the model only (no clock, no I/O); every piece of model text is sanitised here.

use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

use crate::diff::{self, LineTag};
use crate::display::{CACHED, CUT_OFF, clock, duration, status_glyph};
use crate::protocol::SubtaskStatus;
use crate::report::{AttemptOutcome, PlannerOutcome, RunReport, ToolCallRecord};
use crate::sanitize::{sanitize, sanitize_line};
use crate::tui::keymap::{BINDINGS, KeyAction};
use crate::tui::layout::{self, areas};
use crate::tui::markdown::wrap_line;
use crate::tui::model::{Focus, Model, RunView};

/// Lines of content and visible height of a scrollable pane (`None` for the others, or when
/// the pane is not on screen).
pub fn extent(model: &Model, pane: Focus) -> Option<(usize, usize)> {
    let area = layout::content(areas(model).of(pane)?);
    let total = match pane {
        Focus::Detail => detail_lines(model, area.width).len(),
        Focus::Synthesis => synthesis_line_count(model, area.width),
        Focus::Tree | Focus::Query => return None,
    };
    Some((total, area.height as usize))
}

/// The detail pane's content, wrapped to `width` (also used to size its scrolling).
/// The validator's verdicts on the subtask, and the flag with its reason (in the warning
/// colour and with a `⚑`, so it reads without colour too).
fn validation_lines(
    s: &crate::report::SubtaskReport,
    theme: &crate::tui::theme::Theme,
    width: usize,
    out: &mut Vec<Line<'static>>,
) {
    if s.validation.is_empty() && s.status != SubtaskStatus::Validating {
        return;
    }
    out.push(Line::default());
    if let Some(why) = &s.validation.flagged {
        wrap_line(
            &Line::from(vec![
                Span::styled("⚑ flagged: ", theme.warning().add_modifier(Modifier::BOLD)),
                Span::styled(sanitize_line(why).into_owned(), theme.warning()),
            ]),
            width,
            out,
        );
    }
    for v in &s.validation.verdicts {
        let style = if v.verdict == "pass" {
            theme.status(SubtaskStatus::Succeeded)
        } else {
            theme.error()
        };
        wrap_line(
            &Line::from(vec![
                Span::styled(format!("check of attempt {} ", v.attempt), theme.dim()),
                Span::styled(v.verdict.to_uppercase(), style),
                Span::raw(": "),
                Span::raw(sanitize_line(&v.reason).into_owned()),
            ]),
            width,
            out,
        );
    }
    if s.status == SubtaskStatus::Validating {
        wrap_line(
            &Line::from(Span::styled(
                format!(
                    "{} the validator is checking this answer…",
                    status_glyph(s.status)
                ),
                theme.status(SubtaskStatus::Validating),
            )),
            width,
            out,
        );
    }
}

pub fn detail_lines(model: &Model, width: u16) -> Vec<Line<'static>> {
    let width = width.max(1) as usize;
    let theme = &model.theme;
    let mut out: Vec<Line<'static>> = Vec::new();
    let para = |out: &mut Vec<Line<'static>>, line: Line<'static>| wrap_line(&line, width, out);
    let Some((view, s)) = model.selected_subtask() else {
        if let Some(view) = model.current_run() {
            run_summary(model, view, width, &mut out);
        } else {
            para(
                &mut out,
                Line::from(Span::styled(
                    "Select a subtask to see its description, attempts and output.",
                    theme.dim(),
                )),
            );
        }
        return out;
    };
    let status = Line::from(vec![
        if s.drafted {
            Span::styled("planned · not yet checked", theme.dim())
        } else {
            Span::styled(
                format!("{} {}", status_glyph(s.status), s.status.word()),
                theme.status(s.status).add_modifier(Modifier::BOLD),
            )
        },
        Span::styled(
            match (&s.model, s.attempts) {
                (Some(m), n) if n > 1 => format!(" · {} · attempt {n}", sanitize_line(m)),
                (Some(m), _) => format!(" · {}", sanitize_line(m)),
                (None, _) => String::new(),
            },
            theme.dim(),
        ),
        Span::styled(
            if s.result.is_some() && s.cut_off {
                format!(" · {CUT_OFF}")
            } else {
                String::new()
            },
            theme.warning(),
        ),
        Span::styled(
            match &s.reused {
                Some(earlier) if s.status == SubtaskStatus::Succeeded => format!(
                    " · reused `{}` of the earlier run, no call",
                    sanitize_line(earlier.as_str())
                ),
                _ if s.result.is_some() && s.cached => format!(" · {CACHED}, no tokens spent"),
                _ => String::new(),
            },
            theme.dim(),
        ),
    ]);
    para(&mut out, status);
    let spend = view.report.subtask_spend(&s.id);
    if let Some(cost) = spend.label() {
        let mut text = format!("cost {cost} (estimate)");
        let failed = view.report.subtask_failed_spend(&s.id);
        let failed_tokens = view.report.subtask_failed_tokens(&s.id);
        if failed_tokens > 0 {
            let figure = failed.label().unwrap_or_else(|| "no price".to_owned());
            text.push_str(&format!(
                " · spent on failed attempts: {figure} ({} tokens)",
                crate::display::tokens(failed_tokens)
            ));
        }
        para(&mut out, Line::from(Span::styled(text, theme.dim())));
    }
    para(
        &mut out,
        Line::from(Span::styled(
            sanitize_line(&s.title).into_owned(),
            theme.bold(),
        )),
    );
    for line in sanitize(&s.description).lines() {
        para(&mut out, Line::from(line.to_owned()));
    }
    if !s.focus_areas.is_empty() {
        let areas: Vec<String> = s
            .focus_areas
            .iter()
            .map(|a| sanitize_line(a).into_owned())
            .collect();
        para(
            &mut out,
            Line::from(vec![
                Span::styled("Focus: ", theme.dim()),
                Span::raw(areas.join(" · ")),
            ]),
        );
    }
    // A role the planner wrote itself: what the worker is told is worth reading.
    let role_prompt = view
        .report
        .plan
        .as_ref()
        .and_then(|p| p.subtasks.iter().find(|t| t.id == s.id))
        .filter(|t| t.worker == s.worker)
        .and_then(|t| t.role_prompt.as_deref());
    if let Some(prompt) = role_prompt {
        para(
            &mut out,
            Line::from(Span::styled(
                "Role prompt (written by the planner):",
                theme.dim(),
            )),
        );
        for line in sanitize(prompt).lines() {
            para(&mut out, Line::from(format!("  {line}")));
        }
    }
    if !s.depends_on.is_empty() {
        let mut spans = vec![Span::styled("After: ", theme.dim())];
        for (i, dep) in s.depends_on.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(", "));
            }
            let status = view.report.subtask(dep).map(|d| d.status);
            spans.push(Span::raw(dep.to_string()));
            if let Some(status) = status {
                spans.push(Span::styled(
                    format!(" {}", status_glyph(status)),
                    theme.status(status),
                ));
            }
        }
        para(&mut out, Line::from(spans));
    }
    if !s.history.is_empty() {
        out.push(Line::default());
        for record in &s.history {
            let time = record
                .elapsed_ms
                .or_else(|| {
                    (record.outcome == AttemptOutcome::Running)
                        .then(|| model.now_ms.saturating_sub(record.started_ts))
                })
                .map(duration)
                .unwrap_or_default();
            let (word, style, error) = match &record.outcome {
                AttemptOutcome::Running => ("running", theme.status(SubtaskStatus::Running), None),
                AttemptOutcome::Succeeded => ("done", theme.status(SubtaskStatus::Succeeded), None),
                AttemptOutcome::Retried { error, delay_ms } => (
                    "failed, retried",
                    theme.status(SubtaskStatus::Retrying),
                    Some(format!(
                        "{} (waited {})",
                        sanitize_line(error),
                        duration(*delay_ms)
                    )),
                ),
                AttemptOutcome::Failed { error } => (
                    "failed",
                    theme.status(SubtaskStatus::Failed),
                    Some(sanitize_line(error).into_owned()),
                ),
                AttemptOutcome::Cancelled => ("cancelled", theme.dim(), None),
            };
            let mut spans = vec![
                Span::styled(format!("attempt {} ", record.attempt), theme.dim()),
                Span::styled(word.to_owned(), style),
                Span::styled(format!(" {time}"), theme.dim()),
            ];
            if let Some(error) = error {
                spans.push(Span::raw(": "));
                spans.push(Span::styled(error, theme.error()));
            }
            para(&mut out, Line::from(spans));
        }
    }
    validation_lines(s, theme, width, &mut out);
    reasoning_lines(model, s, width, &mut out);
    let calls = s.history.last().map_or(&[][..], |r| r.tools.as_slice());
    // A finished attempt lists its tool calls above the result (which is the last round's
    // answer); a running one shows them between its streamed text, where they happened.
    if !calls.is_empty() && s.status != SubtaskStatus::Running {
        out.push(Line::default());
        let rule = "── Tool calls ";
        out.push(Line::from(Span::styled(
            format!("{rule}{}", "─".repeat(width.saturating_sub(rule.width()))),
            theme.dim(),
        )));
        for call in calls {
            wrap_line(&tool_line(model, call), width, &mut out);
        }
    }
    let (label, body) = match (&s.result, s.status) {
        (Some(result), _) if s.cut_off => ("Result, cut off at the token limit", result.as_str()),
        (Some(result), _) => ("Result", result.as_str()),
        (None, SubtaskStatus::Failed) if !s.output.is_empty() => {
            ("Partial output of the failed attempt", s.output.as_str())
        }
        (None, SubtaskStatus::Running) => ("Output (streaming)", s.output.as_str()),
        (None, SubtaskStatus::Validating) => ("Output, being validated", s.output.as_str()),
        _ => ("", ""),
    };
    if !label.is_empty() {
        out.push(Line::default());
        let rule = format!("── {label} ");
        let fill = width.saturating_sub(rule.width());
        out.push(Line::from(Span::styled(
            format!("{rule}{}", "─".repeat(fill)),
            theme.dim(),
        )));
        if s.status == SubtaskStatus::Running && !calls.is_empty() {
            let mut from = 0;
            for call in calls {
                let piece = body.get(from..call.at).unwrap_or("");
                if !piece.trim().is_empty() {
                    out.extend(crate::tui::markdown::render(piece, width as u16));
                }
                wrap_line(&tool_line(model, call), width, &mut out);
                from = call.at.max(from);
            }
            out.extend(crate::tui::markdown::render(
                body.get(from..).unwrap_or(""),
                width as u16,
            ));
        } else {
            out.extend(crate::tui::markdown::render(body, width as u16));
        }
        if s.status == SubtaskStatus::Running && body.is_empty() && calls.is_empty() {
            para(
                &mut out,
                Line::from(Span::styled("waiting for the first words…", theme.dim())),
            );
        }
    }
    out
}

/// `fetch_url example.org/page`: a tool call in a few words, for the tree row and the detail
/// (the engine already sanitised and shortened the arguments).
pub fn tool_label(call: &ToolCallRecord) -> String {
    let args = call
        .arguments
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    sanitize_line(&format!("{} {args}", call.tool)).into_owned()
}

/// One tool call: a glyph (spinner while it runs), what was called, then its time, size and
/// outcome.
fn tool_line(model: &Model, call: &ToolCallRecord) -> Line<'static> {
    let theme = &model.theme;
    let (glyph, style, tail) = match &call.finished {
        None => (
            crate::display::spinner_at(model.now_ms),
            theme.status(SubtaskStatus::Running),
            format!(
                " · {} · running (c cancels)",
                duration(model.now_ms.saturating_sub(call.started_ts))
            ),
        ),
        Some(end) => (
            if end.ok { "✓" } else { "✗" },
            if end.ok {
                theme.status(SubtaskStatus::Succeeded)
            } else {
                theme.error()
            },
            format!(
                " · {} · {} · {}",
                duration(end.ms),
                size(end.bytes),
                sanitize_line(&end.summary)
            ),
        ),
    };
    Line::from(vec![
        Span::styled(format!("  ⚙ {glyph} "), style),
        Span::raw(tool_label(call)),
        Span::styled(tail, theme.dim()),
    ])
}

/// `812 B`, `12.1 KB`, `3.4 MB`.
fn size(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}

/// The reasoning of the latest attempt that has some, dimmed: one line saying how long it is
/// and which key shows it, or, once shown, the text itself (sanitised, never rendered as
/// markdown: it is the model's scratch work, not a result).
fn reasoning_lines(
    model: &Model,
    s: &crate::report::SubtaskReport,
    width: usize,
    out: &mut Vec<Line<'static>>,
) {
    let Some(record) = s.history.iter().rev().find(|r| !r.reasoning.is_empty()) else {
        return;
    };
    let theme = &model.theme;
    let key = BINDINGS
        .iter()
        .find(|b| b.keys.iter().any(|(_, a)| *a == KeyAction::ToggleReasoning))
        .map(|b| b.label())
        .unwrap_or_default();
    let chars = record.reasoning.chars().count();
    out.push(Line::default());
    let what = if model.show_reasoning {
        format!("── Reasoning, attempt {} ({key} hides) ", record.attempt)
    } else {
        format!(
            "── Reasoning, attempt {}: {chars} characters ({key} shows) ",
            record.attempt
        )
    };
    let fill = width.saturating_sub(what.width());
    out.push(Line::from(Span::styled(
        format!("{what}{}", "─".repeat(fill)),
        theme.dim(),
    )));
    if model.show_reasoning {
        let style = theme.dim().add_modifier(Modifier::ITALIC);
        for line in sanitize(&record.reasoning).lines() {
            wrap_line(
                &Line::from(Span::styled(line.to_owned(), style)),
                width,
                out,
            );
        }
    }
}

fn run_summary(model: &Model, view: &RunView, width: usize, out: &mut Vec<Line<'static>>) {
    let theme = &model.theme;
    let report = &view.report;
    let mut para = |line: Line<'static>| wrap_line(&line, width, out);
    para(Line::from(vec![
        Span::styled(format!("Run #{} ", view.number), theme.bold()),
        Span::styled(
            Model::view_phase(view).to_owned(),
            theme.run_status(report.status),
        ),
        Span::styled(
            format!(" · {}", clock(model.run_elapsed(report))),
            theme.dim(),
        ),
    ]));
    for line in sanitize(&report.query).lines() {
        para(Line::from(line.to_owned()));
    }
    if view.has_files() {
        para(Line::default());
        para(Line::from(Span::styled(
            "Attached files (the planner and the workers read them)",
            theme.dim(),
        )));
        for f in &report.context {
            para(Line::from(vec![
                Span::raw(format!("@ {}", sanitize_line(&f.path))),
                Span::styled(format!("  {}", crate::display::bytes(f.bytes)), theme.dim()),
            ]));
        }
        for skipped in &report.context_skipped {
            para(Line::from(Span::styled(
                format!(
                    "  {} skipped: {}",
                    sanitize_line(&skipped.path),
                    sanitize_line(&skipped.reason)
                ),
                theme.warning(),
            )));
        }
    }
    let spend = report.spend();
    if let Some(cost) = spend.label() {
        let mut text = format!("cost {cost} (estimate)");
        let failed = report.failed_spend();
        if failed.usd > 0.0 {
            text.push_str(&format!(
                " · spent on failed attempts: {}",
                crate::engine::cost::show_usd(failed.usd)
            ));
        }
        para(Line::from(Span::styled(text, theme.dim())));
    }
    if let Some(saved) = &view.saved {
        para(Line::default());
        let (note, style) = match saved.status {
            crate::store::SavedRunStatus::Interrupted => (
                "Interrupted: maestro stopped before this run finished. r resumes it (finished \
                 results are kept; the rest runs again).",
                theme.warning(),
            ),
            crate::store::SavedRunStatus::Running => (
                "Saved run, going on in another maestro right now.",
                theme.dim(),
            ),
            _ => ("Saved run. r, R, e or s resume it here.", theme.dim()),
        };
        para(Line::from(Span::styled(note, style)));
    }
    if let Some(plan) = &report.plan
        && !plan.query_analysis.trim().is_empty()
    {
        para(Line::default());
        para(Line::from(Span::styled("Plan", theme.dim())));
        for line in sanitize(&plan.query_analysis).lines() {
            para(Line::from(line.to_owned()));
        }
    }
    // In the order things happened: the planner's answers, then how the run ended.
    planner_answers(model, report, width, out);
    let mut para = |line: Line<'static>| wrap_line(&line, width, out);
    if let Some(error) = &report.error {
        para(Line::default());
        para(Line::from(Span::styled(
            sanitize_line(error).into_owned(),
            theme.error(),
        )));
    }
    for notice in &report.notices {
        para(Line::from(Span::styled(
            format!("note: {}", sanitize_line(notice)),
            theme.warning(),
        )));
    }
    if report.plan.is_none() && report.status.is_some() && !report.planning.is_empty() {
        para(Line::default());
        para(Line::from(Span::styled(
            "r plans the run again",
            theme.dim(),
        )));
    }
}

/// What the planner said: every answer while the run has no plan (the one streaming, and
/// each rejected one beside the problem found in it), and once it has one, the answers that
/// were not used, so a re-ask can still be understood.
fn planner_answers(model: &Model, report: &RunReport, width: usize, out: &mut Vec<Line<'static>>) {
    let theme = &model.theme;
    let mut para = |line: Line<'static>| wrap_line(&line, width, out);
    for attempt in &report.planning {
        if report.plan.is_some() && attempt.outcome == PlannerOutcome::Accepted {
            continue;
        }
        let state = match &attempt.outcome {
            PlannerOutcome::Running => "streaming",
            PlannerOutcome::Accepted => "used",
            PlannerOutcome::Rejected(_) => "rejected",
            PlannerOutcome::Failed(_) => "failed",
        };
        para(Line::default());
        let rule = format!(
            "── Planner, attempt {} · {} · {state} ",
            attempt.attempt,
            sanitize_line(&attempt.model)
        );
        let fill = width.saturating_sub(rule.width());
        para(Line::from(Span::styled(
            format!("{rule}{}", "─".repeat(fill)),
            theme.dim(),
        )));
        let text = sanitize(&attempt.text);
        if text.trim().is_empty() {
            let empty = match attempt.outcome {
                PlannerOutcome::Running => "waiting for the first words…",
                _ => "(no text)",
            };
            para(Line::from(Span::styled(empty, theme.dim())));
        }
        for line in text.trim_end().lines() {
            para(Line::from(line.to_owned()));
        }
        match &attempt.outcome {
            PlannerOutcome::Rejected(problem) => para(Line::from(vec![
                Span::styled(
                    "✗ not a usable plan: ",
                    theme.error().add_modifier(Modifier::BOLD),
                ),
                Span::styled(sanitize_line(problem).into_owned(), theme.error()),
            ])),
            PlannerOutcome::Failed(reason) => para(Line::from(Span::styled(
                format!("✗ the call failed: {}", sanitize_line(reason)),
                theme.error(),
            ))),
            PlannerOutcome::Running | PlannerOutcome::Accepted => {}
        }
    }
}

/// Lines the synthesis of the current run takes at `width` (for scrolling).
pub fn synthesis_line_count(model: &Model, width: u16) -> usize {
    with_synthesis_lines(model, width, |lines| lines.len())
}

/// Calls `f` with the current run's synthesis as wrapped lines, from the cache: a frame copies
/// only the lines it shows, never the whole report.
pub fn with_synthesis_lines<T>(
    model: &Model,
    width: u16,
    f: impl FnOnce(&[Line<'static>]) -> T,
) -> T {
    let Some(view) = model.current_run() else {
        return f(&[]);
    };
    // Read paragraph by paragraph, the report is drawn in blocks with a gutter.
    let f = match crate::tui::provenance::with_block_lines(model, view, width, f) {
        Ok(out) => return out,
        Err(f) => f,
    };
    if let Some(lines) = diff_shown(model, view, width) {
        return f(&lines);
    }
    let (Some(id), false) = (view.id(), view.report.synthesis.is_empty()) else {
        return f(&[]);
    };
    let mut cache = model.markdown.borrow_mut();
    f(cache.lines(
        id,
        view.synthesis_version,
        width.max(1),
        &view.report.synthesis,
        model.now_ms,
        view.report.synthesizing,
    ))
}

/// The previous and current report of `view`, when the synthesis pane shows their diff.
fn diff_pair<'a>(model: &Model, view: &'a RunView) -> Option<(&'a str, &'a str)> {
    let previous = view.previous_synthesis.as_deref()?;
    (model.show_diff && !view.report.synthesizing && !view.report.synthesis.is_empty())
        .then_some((previous, view.report.synthesis.as_str()))
}

/// Lines added and removed since the previous report, when the pane shows the diff.
pub fn shown_diff_counts(model: &Model) -> Option<(usize, usize)> {
    let view = model.current_run()?;
    let (old, new) = diff_pair(model, view)?;
    Some(diff::counts(&diff::report_diff(old, new)))
}

/// The diff as the synthesis pane shows it: each line signed `+`, `-` or blank (so it reads
/// without colour), coloured as added or removed, wrapped to `width`.
fn diff_shown(model: &Model, view: &RunView, width: u16) -> Option<Vec<Line<'static>>> {
    let (old, new) = diff_pair(model, view)?;
    let theme = &model.theme;
    let width = width.max(1) as usize;
    let mut out = Vec::new();
    for line in diff::report_diff(&sanitize(old), &sanitize(new)) {
        let style = match line.tag {
            LineTag::Same => ratatui::style::Style::new(),
            LineTag::Added => theme.status(SubtaskStatus::Succeeded),
            LineTag::Removed => theme.error(),
        };
        let text = format!("{} {}", line.tag.sign(), sanitize_line(&line.text));
        wrap_line(&Line::from(Span::styled(text, style)), width, &mut out);
    }
    Some(out)
}

/// The furthest the help scrolls on a terminal of `size`: its last line at the pop-up's bottom
/// (the pop-up is the screen's height, less its two borders, when the help is taller).
/// The statistics panel's lines: `maestro stats`'s text, or that it is being read, or why it
/// could not be.
pub fn stats_lines(model: &Model) -> Vec<Line<'static>> {
    match &model.stats {
        None => vec![Line::from(Span::styled(
            "Reading the saved runs…",
            model.theme.dim(),
        ))],
        Some(Err(why)) => vec![Line::from(Span::styled(
            format!("The saved runs cannot be read: {}", sanitize_line(why)),
            model.theme.error(),
        ))],
        Some(Ok(stats)) => crate::stats::render(stats)
            .into_iter()
            .map(Line::from)
            .collect(),
    }
}

pub fn help_max_scroll(model: &Model) -> usize {
    let visible = usize::from(model.size.1).saturating_sub(2);
    help_lines(model).len().saturating_sub(visible)
}

/// What the help says of the mouse, under the keys (the mouse is not in the key map).
pub const HELP_MOUSE: &str = "Mouse: click to focus and select, wheel to scroll.";

/// One help line per binding of the key map, under its context's heading, then the mouse.
/// Generated from `keymap::BINDINGS`, so it lists every key the dashboard handles.
pub fn help_lines(model: &Model) -> Vec<Line<'static>> {
    let width = BINDINGS
        .iter()
        .map(|b| b.label().width())
        .max()
        .unwrap_or(0)
        + 2;
    let mut lines: Vec<Line> = Vec::new();
    let mut heading = None;
    for binding in BINDINGS {
        let this = binding.context.heading();
        if heading != Some(this) {
            if heading.is_some() {
                lines.push(Line::default());
            }
            lines.push(Line::from(Span::styled(this, model.theme.bold())));
            heading = Some(this);
        }
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<width$}", binding.label()), model.theme.key()),
            Span::raw(binding.what),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(HELP_MOUSE, model.theme.dim())));
    lines
}
