//! Drawing the dashboard from a `&Model`: the query box, the subtask tree, the detail of the
//! selected subtask, the synthesis, the status line and the overlays. Views read the model and
//! nothing else (no clock, no I/O); every piece of model text is sanitised before it is drawn.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Borders, Clear, Padding, Paragraph, Scrollbar, ScrollbarOrientation,
    ScrollbarState, Wrap,
};
use unicode_width::UnicodeWidthStr;

use crate::display::{
    CACHED, CUT_OFF, clock, duration, spinner_at, status_glyph, tokens, truncate,
};
use crate::protocol::{RunStatus, SubtaskStatus};
use crate::report::SubtaskReport;
use crate::sanitize::sanitize_line;
use crate::store::SavedRunStatus;
use crate::tui::content::{self, detail_lines, help_lines, with_synthesis_lines};
use crate::tui::layout::{self, areas};
use crate::tui::model::{
    Focus, Model, ModelList, Node, Overlay, PauseWhy, PickRole, Row, RunView, SavedList, ToastLevel,
};

pub fn draw(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    if layout::too_small((area.width, area.height)) {
        draw_too_small(frame, area);
        return;
    }
    let areas = areas(model);
    draw_query(frame, model, areas.query);
    if model.timeline {
        crate::tui::timeline::draw(frame, model, areas.tree);
    } else {
        draw_tree(frame, model, areas.tree);
    }
    if let Some(detail) = areas.detail {
        draw_detail(frame, model, detail);
    }
    draw_synthesis(frame, model, areas.synthesis);
    draw_status(frame, model, areas.status);
    match &model.overlay {
        Some(Overlay::Help { scroll }) => draw_help(frame, model, area, *scroll),
        Some(Overlay::Edit { .. }) => draw_edit(frame, model, area),
        Some(Overlay::ConfirmQuit) => draw_confirm_quit(frame, model, area),
        Some(Overlay::Models { role, cursor }) => draw_models(frame, model, area, *role, *cursor),
        Some(Overlay::Presets { cursor }) => draw_presets(frame, model, area, *cursor),
        Some(Overlay::History { search, cursor }) => {
            draw_history(frame, model, area, search, *cursor)
        }
        Some(Overlay::Stats { scroll }) => draw_stats(frame, model, area, *scroll),
        Some(Overlay::Paused { run, why, raise }) => {
            draw_paused(frame, model, area, *run, why, raise)
        }
        Some(Overlay::Sources {
            run,
            cursor,
            paragraph,
        }) => {
            crate::tui::provenance_view::draw_sources(frame, model, area, *run, *cursor, *paragraph)
        }
        Some(Overlay::Reader {
            run,
            number,
            location,
            scroll,
            ..
        }) => {
            crate::tui::provenance_view::draw_reader(frame, model, *run, *number, location, *scroll)
        }
        Some(Overlay::Review { .. }) => crate::tui::review::draw(frame, model, area),
        None => {}
    }
}

fn draw_too_small(frame: &mut Frame, area: Rect) {
    let text = Text::from(vec![
        Line::from("Terminal too small:"),
        Line::from(format!("{}×{}, needs", area.width, area.height)),
        Line::from(format!(
            "at least {}×{}.",
            layout::MIN_WIDTH,
            layout::MIN_HEIGHT
        )),
    ]);
    let height = 3.min(area.height);
    let y = area.y + area.height.saturating_sub(height) / 2;
    frame.render_widget(
        Paragraph::new(text).alignment(Alignment::Center),
        Rect::new(area.x, y, area.width, height),
    );
}

fn pane<'a>(model: &Model, focus: Focus, title: Line<'a>) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(model.theme.border(model.focus == focus))
        .title(title)
}

fn title(text: &str) -> Span<'static> {
    Span::styled(
        format!(" {text} "),
        Style::new().add_modifier(Modifier::BOLD),
    )
}

// ---- query -----------------------------------------------------------------------------------

fn draw_query(frame: &mut Frame, model: &Model, area: Rect) {
    let mut hint = Line::default();
    let parent = model.follow_up.and_then(|id| model.run(id));
    if model.focus == Focus::Query && parent.is_some() {
        hint = Line::from(Span::styled(
            " Enter ask · Ctrl+F a question of its own ",
            model.theme.dim(),
        ))
        .alignment(Alignment::Right);
    } else if model.focus == Focus::Query {
        hint = Line::from(Span::styled(
            " Enter ask · Alt+Enter newline · ↑ history · Ctrl+U clear ",
            model.theme.dim(),
        ))
        .alignment(Alignment::Right);
    } else if !model.runs.is_empty() {
        hint = Line::from(Span::styled(" / to ask another ", model.theme.dim()))
            .alignment(Alignment::Right);
    }
    let heading = match parent {
        // The parent's query, as much as fits beside the hint.
        Some(view) => {
            let room = (area.width as usize).saturating_sub(hint.width() + 24);
            let query = truncate(&sanitize_line(&view.report.query), room.max(8));
            title(&format!("Follow-up to #{} {query}", view.number))
        }
        None => title("Query"),
    };
    let mut heading = vec![heading];
    if model.models.review_on() {
        // The next run waits after planning: said where it is asked.
        heading.push(Span::styled("review on ", model.theme.warning()));
    }
    let block = pane(model, Focus::Query, Line::from(heading)).title(hint);
    let inner_area = block.inner(area);
    frame.render_widget(block, area);
    let mut query = model.query.clone();
    if model.focus != Focus::Query {
        // No block cursor in an unfocused box.
        query.set_cursor_style(Style::new());
    }
    frame.render_widget(&query, inner_area);
}

// ---- tree ------------------------------------------------------------------------------------

fn draw_tree(frame: &mut Frame, model: &Model, area: Rect) {
    let mut heading = vec![title("Subtasks")];
    if let Some(view) = model.current_run()
        && let (done, failed, total) = Model::counts(&view.report)
        && total > 0
    {
        heading.push(Span::styled(
            format!("{done}/{total} ✓"),
            model.theme.status(SubtaskStatus::Succeeded),
        ));
        if failed > 0 {
            heading.push(Span::raw(" "));
            heading.push(Span::styled(
                format!("{failed} ✗"),
                model.theme.status(SubtaskStatus::Failed),
            ));
        }
        heading.push(Span::raw(" "));
    }
    let mut block = pane(model, Focus::Tree, Line::from(heading));
    if !model.runs.is_empty() {
        block = block.title_bottom(
            Line::from(Span::styled(
                " r re-run · e edit · x cancel · ? help ",
                model.theme.dim(),
            ))
            .alignment(Alignment::Right),
        );
    }
    let inner_area = block.inner(area);
    frame.render_widget(block, area);
    if model.runs.is_empty() {
        let mut lines = Vec::new();
        if model.info.demo {
            lines.push(Line::from(Span::styled(
                "Demo provider: simulated, no model is called.",
                model.theme.warning(),
            )));
            lines.push(Line::from(""));
        }
        lines.extend([
            Line::from("No runs yet. Type a question above and press Enter."),
            Line::from(""),
            Line::from("A planner splits it into subtasks, workers answer them in parallel, and the report streams in."),
        ]);
        frame.render_widget(
            Paragraph::new(lines)
                .style(model.theme.dim())
                .wrap(Wrap { trim: true }),
            pad(inner_area),
        );
        return;
    }
    let height = inner_area.height as usize;
    let total = model.row_count();
    // The subtasks the selected paragraph of the report cites are marked.
    let cited = crate::tui::provenance_view::cited(model);
    let lines: Vec<Line> = model
        .visible_rows(model.tree_offset, height)
        .into_iter()
        .map(|row| {
            let (mut line, selected) = match row {
                Row::Run(view) => (
                    run_row(model, view, model.depth(view), inner_area.width),
                    matches!(&model.selected, Some(Node::Run(id)) if Some(*id) == view.id()),
                ),
                Row::Files(view) => (
                    files_row(model, view, inner_area.width),
                    matches!(&model.selected, Some(Node::Files(id)) if Some(*id) == view.id()),
                ),
                Row::Subtask(view, s, widths) => (
                    match &cited {
                        Some((run, ids)) if Some(*run) == view.id() && ids.contains(&s.id) => {
                            crate::tui::provenance_view::mark_cited(
                                model,
                                subtask_row(model, view, s, widths, inner_area.width),
                            )
                        }
                        _ => subtask_row(model, view, s, widths, inner_area.width),
                    },
                    matches!(&model.selected, Some(Node::Subtask(run, id))
                        if Some(*run) == view.id() && *id == s.id),
                ),
            };
            if selected {
                line = line.patch_style(model.theme.selected());
                let pad = (inner_area.width as usize).saturating_sub(line.width());
                line.push_span(Span::styled(" ".repeat(pad), model.theme.selected()));
            }
            line
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner_area);
    if total > height {
        draw_scrollbar(frame, area, total, height, model.tree_offset);
    }
}

fn spinner(model: &Model) -> &'static str {
    spinner_at(model.now_ms)
}

/// `▾ #2 query… succeeded 00:08` (`direct · succeeded` for a direct answer); a follow-up sits indented under its parent, with `↳`.
fn run_row(model: &Model, view: &RunView, depth: usize, width: u16) -> Line<'static> {
    let report = &view.report;
    let arrow = if view.expanded { "▾" } else { "▸" };
    let phase = Model::view_phase(view);
    // A direct run says so: its report is one worker's answer, not a synthesis.
    let direct = if report.direct { "direct · " } else { "" };
    let cost = report
        .spend()
        .label()
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    let right = format!(
        " {direct}{phase} {}{cost} ",
        clock(model.run_elapsed(report))
    );
    // Deep chains stop indenting, so the query keeps its room.
    let lineage = match depth {
        0 => String::new(),
        d => format!("{}↳ ", "  ".repeat(d.min(4) - 1)),
    };
    let left = format!("{lineage}{arrow} #{} ", view.number);
    let query_width = (width as usize).saturating_sub(left.width() + right.width());
    let query = truncate(&sanitize_line(&report.query), query_width);
    let gap = query_width.saturating_sub(query.width());
    Line::from(vec![
        Span::styled(left, model.theme.bold()),
        Span::raw(query),
        Span::raw(" ".repeat(gap)),
        Span::styled(right, model.theme.run_status(report.status)),
    ])
}

/// `  @ notes.md, docs/api.md, +2 more          4 files 12.3 KB · 1 skipped`: the files
/// attached to a run, on one line under it; the detail pane lists them all.
fn files_row(model: &Model, view: &RunView, width: u16) -> Line<'static> {
    let report = &view.report;
    let files = &report.context;
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut right = format!(
        " {} file{} {}",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        crate::display::bytes(total)
    );
    if !report.context_skipped.is_empty() {
        right.push_str(&format!(" · {} skipped", report.context_skipped.len()));
    }
    right.push(' ');
    let left = "  @ ";
    let room = (width as usize).saturating_sub(left.width() + right.width());
    // As many names as fit whole, then how many more.
    let mut names = String::new();
    for (i, f) in files.iter().enumerate() {
        let name = sanitize_line(&f.path).into_owned();
        let sep = if i == 0 { "" } else { ", " };
        let rest = files.len() - i - 1;
        let more = if rest > 0 {
            format!(", +{rest} more")
        } else {
            String::new()
        };
        if names.width() + sep.width() + name.width() + more.width() > room {
            let left_out = files.len() - i;
            let tail = if i == 0 {
                truncate(&name, room)
            } else {
                format!("{sep}+{left_out} more")
            };
            names.push_str(&tail);
            break;
        }
        names.push_str(sep);
        names.push_str(&name);
    }
    let names = truncate(&names, room);
    let gap = room.saturating_sub(names.width());
    Line::from(vec![
        Span::styled(left.to_owned(), model.theme.dim()),
        Span::raw(names),
        Span::raw(" ".repeat(gap)),
        Span::styled(right, model.theme.dim()),
    ])
}

/// `✓ task_1 research  Emissions over…   3.1s 1.2k ×2`
fn subtask_row(
    model: &Model,
    view: &RunView,
    s: &SubtaskReport,
    widths: (usize, usize),
    width: u16,
) -> Line<'static> {
    let glyph = if s.status == SubtaskStatus::Running {
        spinner(model)
    } else {
        status_glyph(s.status)
    };
    let (id_w, role_w) = widths;
    let mut right = match s.status {
        // Read from the planner's answer as it streams: nothing about it is known yet.
        _ if s.drafted => "planned".to_owned(),
        SubtaskStatus::Pending if s.waiting_on.is_empty() => "queued".to_owned(),
        SubtaskStatus::Pending | SubtaskStatus::Blocked => format!("after {}", join(&s.waiting_on)),
        SubtaskStatus::Running
            if s.waiting_until
                .as_ref()
                .is_some_and(|(until, _)| *until > model.now_ms) =>
        {
            // The reason (`provider rate-limited`) is in the progress and the events; the
            // row has room for the wait only.
            let until = s.waiting_until.as_ref().map_or(0, |(until, _)| *until);
            format!(
                "waiting {:>6}",
                duration(until.saturating_sub(model.now_ms))
            )
        }
        SubtaskStatus::Running => {
            let ms = s
                .started_ts
                .map(|t| model.now_ms.saturating_sub(t))
                .unwrap_or(0);
            // The token column stays empty until the usage is known, so times line up.
            format!("{:>6} {:>5}", duration(ms), "")
        }
        SubtaskStatus::Retrying => match &s.retry {
            Some((delay, reason)) => {
                format!(
                    "retry {} {}",
                    duration(*delay),
                    truncate(&sanitize_line(reason), 8)
                )
            }
            None => "retrying".into(),
        },
        // Taken from the earlier run without a call: no time, no tokens of its own.
        SubtaskStatus::Succeeded if s.reused.is_some() => format!("{:>12}", "reused"),
        SubtaskStatus::Succeeded => format!(
            "{:>6} {:>5}",
            s.elapsed_ms.map(duration).unwrap_or_default(),
            tokens(s.tokens_in + s.tokens_out)
        ),
        SubtaskStatus::Failed => "failed".into(),
        SubtaskStatus::Cancelled => "cancelled".into(),
        SubtaskStatus::Validating => format!("{:>12}", "validating"),
    };
    // A fixed slot for the attempt count keeps the time and token columns aligned.
    let attempts = if s.attempts > 1 {
        format!("×{}", s.attempts)
    } else {
        String::new()
    };
    right.push_str(&format!(" {attempts:<3}"));
    // Every attempt's cost, failed ones included; only where a price is known.
    if let Some(cost) = view.report.subtask_spend(&s.id).label() {
        right.push_str(&format!(" {cost:>8}"));
    }
    let left = format!(
        "  {glyph} {:<id_w$} {:<role_w$} ",
        truncate(s.id.as_str(), id_w),
        truncate(&s.worker, role_w)
    );
    let right = format!(" {right}");
    let title_w = (width as usize).saturating_sub(left.width() + right.width());
    // While a tool call runs, the row says which, in place of the title.
    let title_text = match s.current_tool() {
        Some(call) => std::borrow::Cow::Owned(crate::tui::content::tool_label(call)),
        None => sanitize_line(&s.title),
    };
    // A result cut at the token limit says so after its title: in full where it fits.
    let mark = (s.status == SubtaskStatus::Succeeded && s.cut_off).then(|| {
        let full = format!(" {CUT_OFF}");
        if title_text.width() + full.width() <= title_w {
            full
        } else {
            " cut off".to_owned()
        }
    });
    // A result the validator failed twice says so first: it is kept, not trusted.
    let flagged = s.status == SubtaskStatus::Succeeded && s.validation.flagged.is_some();
    let mark = if flagged {
        Some(" ⚑ flagged".to_owned())
    } else {
        mark
    };
    // A result from the result cache says so likewise, quieter: nothing is wrong with it.
    let cached = !flagged && !s.cut_off && s.status == SubtaskStatus::Succeeded && s.cached;
    let mark = mark.or_else(|| cached.then(|| format!(" {CACHED}")));
    let mark_w = mark.as_ref().map_or(0, |m| m.width());
    let title = truncate(&title_text, title_w.saturating_sub(mark_w));
    let mark = mark
        .map(|m| truncate(&m, title_w.saturating_sub(title.width())))
        .unwrap_or_default();
    let gap = title_w.saturating_sub(title.width() + mark.width());
    let style = if s.drafted {
        model.theme.dim()
    } else {
        model.theme.status(s.status)
    };
    Line::from(vec![
        Span::styled(left, style),
        Span::raw(title),
        Span::styled(
            mark,
            if cached {
                model.theme.dim()
            } else {
                model.theme.warning()
            },
        ),
        Span::raw(" ".repeat(gap)),
        Span::styled(right, style),
    ])
}

// ---- detail ----------------------------------------------------------------------------------

fn draw_detail(frame: &mut Frame, model: &Model, area: Rect) {
    let heading = match model.selected_subtask() {
        Some((_, s)) => Line::from(vec![title(&format!(
            "{} · {}",
            truncate(s.id.as_str(), 20),
            truncate(&s.worker, 16)
        ))]),
        None => Line::from(title("Detail")),
    };
    let hint = match model.selected_subtask().map(|(_, s)| s.status) {
        Some(
            SubtaskStatus::Running
            | SubtaskStatus::Retrying
            | SubtaskStatus::Pending
            | SubtaskStatus::Validating,
        ) => " x cancel · e edit ",
        Some(SubtaskStatus::Blocked) => " e edit · x cancel ",
        Some(_) => " r re-run · e edit ",
        None => "",
    };
    let block = pane(model, Focus::Detail, heading).title_bottom(
        Line::from(Span::styled(hint, model.theme.dim())).alignment(Alignment::Right),
    );
    frame.render_widget(block, area);
    let inner_area = layout::content(area);
    let lines = detail_lines(model, inner_area.width);
    let height = inner_area.height as usize;
    let top = model
        .detail_scroll
        .top(lines.len(), height, model.detail_live());
    let total = lines.len();
    let visible: Vec<Line> = lines.into_iter().skip(top).take(height).collect();
    frame.render_widget(Paragraph::new(visible), inner_area);
    if total > height {
        draw_scrollbar(frame, area, total, height, top);
    }
}

// ---- synthesis -------------------------------------------------------------------------------

fn draw_synthesis(frame: &mut Frame, model: &Model, area: Rect) {
    let view = model.current_run();
    let mut heading = vec![title("Synthesis")];
    if let Some((added, removed)) = content::shown_diff_counts(model) {
        heading.push(Span::styled(
            format!("· changes since the previous version: +{added} -{removed} (D back) "),
            model.theme.warning(),
        ));
    } else if let Some(view) = view {
        let r = &view.report;
        if r.synthesizing {
            heading.push(Span::styled(
                format!("{} writing ", spinner(model)),
                model.theme.status(SubtaskStatus::Running),
            ));
        }
        if r.synthesis_stale && !r.synthesizing {
            heading.push(Span::styled(
                "stale: subtasks changed since (s to redo) ",
                model.theme.warning(),
            ));
        } else if r.synthesis_stale {
            heading.push(Span::styled("stale ", model.theme.warning()));
        }
        if r.direct {
            heading.push(Span::styled("direct answer ", model.theme.dim()));
        }
        if !r.synthesis.is_empty() && !r.synthesizing && !r.synthesized {
            heading.push(Span::styled("unsynthesised ", model.theme.warning()));
        }
    }
    let mut block = pane(model, Focus::Synthesis, Line::from(heading));
    let inner_area = layout::content(area);
    let height = inner_area.height as usize;
    let live = model.synthesis_live();
    let (total, top, mut visible) = with_synthesis_lines(model, inner_area.width, |lines| {
        let top = model.synthesis_scroll.top(lines.len(), height, live);
        let visible: Vec<Line<'static>> = lines.iter().skip(top).take(height).cloned().collect();
        (lines.len(), top, visible)
    });
    crate::tui::provenance_view::highlight(model, inner_area.width, top, &mut visible);
    if let Some(footer) = crate::tui::provenance_view::footer(model, area.width.saturating_sub(16))
    {
        block = block.title_bottom(footer);
    }
    if total > height {
        let position = format!(" {}–{} of {total} ", top + 1, (top + height).min(total));
        block = block.title_bottom(
            Line::from(Span::styled(position, model.theme.dim())).alignment(Alignment::Right),
        );
    }
    frame.render_widget(block, area);
    if total == 0 {
        let message = match view {
            None => "The report appears here as the synthesis streams in.".to_owned(),
            Some(v) if v.report.status.is_some() => v
                .report
                .error
                .as_deref()
                .map(|e| format!("No report: {}", sanitize_line(e)))
                .unwrap_or_else(|| "No report.".into()),
            Some(v) if v.review.is_some() => {
                "The plan waits for your review: approve it (Ctrl+S) and the subtasks start.".into()
            }
            Some(v) if v.report.plan.is_none() => "Planning…".into(),
            Some(_) => "Waiting for the subtasks; the report streams in when they are done.".into(),
        };
        frame.render_widget(
            Paragraph::new(message)
                .style(model.theme.dim())
                .wrap(Wrap { trim: true }),
            inner_area,
        );
        return;
    }
    frame.render_widget(Paragraph::new(visible), inner_area);
    if total > height {
        draw_scrollbar(frame, area, total, height, top);
    }
}

// ---- status line -----------------------------------------------------------------------------

fn draw_status(frame: &mut Frame, model: &Model, area: Rect) {
    let theme = &model.theme;
    // Segments in order of importance; those that do not fit are left out from the least
    // important, so the run's state and clock always show.
    let mut segments: Vec<(u8, Vec<Span>)> = Vec::new();
    // Models picked in the dashboard replace the configured ones in what the line says.
    let picked = PickRole::ORDER
        .iter()
        .any(|r| model.models.picked(*r).is_some());
    if model.info.demo {
        segments.push((
            0,
            vec![Span::styled(" DEMO · simulated ", theme.demo_banner())],
        ));
        if picked {
            segments.push((
                4,
                vec![Span::raw(
                    sanitize_line(&model.models.describe()).into_owned(),
                )],
            ));
        }
    } else if picked {
        let text = format!(" {} · {}", model.models.provider, model.models.describe());
        segments.push((4, vec![Span::raw(sanitize_line(&text).into_owned())]));
    } else {
        segments.push((4, vec![Span::raw(format!(" {}", model.info.describe))]));
    }
    if let Some(view) = model.current_run() {
        let r = &view.report;
        let (done, failed, total) = Model::counts(r);
        segments.push((
            0,
            vec![Span::styled(
                format!("#{} {}", view.number, Model::view_phase(view)),
                theme.run_status(r.status),
            )],
        ));
        if total > 0 {
            let mut counts = vec![Span::raw(format!("{done}/{total} ✓"))];
            if failed > 0 {
                counts.push(Span::styled(
                    format!(" {failed} ✗"),
                    theme.status(SubtaskStatus::Failed),
                ));
            }
            segments.push((1, counts));
        }
        let usage = r.tokens();
        if usage.total() > 0 {
            let est = if usage.estimated { "~" } else { "" };
            segments.push((
                3,
                vec![Span::raw(format!(
                    "{est}{} in · {est}{} out",
                    tokens(usage.tokens_in),
                    tokens(usage.tokens_out)
                ))],
            ));
        }
        if let Some(cost) = r.spend().label() {
            segments.push((2, vec![Span::raw(cost)]));
        }
        segments.push((2, vec![Span::raw(clock(model.run_elapsed(r)))]));
        let unverified = crate::tui::provenance::unverified_count(model, view);
        if unverified > 0 {
            segments.push((
                1,
                vec![Span::styled(
                    format!("⚠ {unverified} unverified"),
                    theme.warning(),
                )],
            ));
        }
    } else if model.info.demo {
        segments.push((5, vec![Span::styled("no model is called", theme.dim())]));
    }
    let preset = model.models.effective_preset();
    if !preset.is_empty() {
        segments.push((
            3,
            vec![Span::raw(format!("preset {}", sanitize_line(preset)))],
        ));
    }
    if model.models.review_on() {
        segments.push((2, vec![Span::styled("review on", theme.warning())]));
    }
    // A run waits for its plan to be reviewed while another is in view: say so.
    let waiting: Vec<usize> = model
        .runs
        .iter()
        .filter(|v| v.review.is_some() && v.report.status.is_none())
        .filter(|v| v.id() != model.current_run().and_then(|c| c.id()))
        .map(|v| v.number)
        .collect();
    if let Some(first) = waiting.first() {
        segments.push((
            0,
            vec![Span::styled(
                format!("#{first} waits for review (P on it)"),
                theme.warning(),
            )],
        ));
    }
    if model.unsaved.is_some() {
        // Runs are not being kept: worth more room than the figures.
        segments.push((1, vec![Span::styled("unsaved", theme.warning())]));
    }
    let room = area.width as usize;
    let width_of = |segs: &[(u8, Vec<Span>)]| -> usize {
        segs.iter()
            .map(|(_, spans)| spans.iter().map(Span::width).sum::<usize>() + 3)
            .sum()
    };
    while width_of(&segments) > room && segments.len() > 1 {
        let Some(least) = segments
            .iter()
            .enumerate()
            .max_by_key(|(i, (rank, _))| (*rank, *i))
            .map(|(i, _)| i)
        else {
            break;
        };
        segments.remove(least);
    }
    let mut left: Vec<Span> = Vec::new();
    for (i, (_, spans)) in segments.into_iter().enumerate() {
        if i > 0 {
            left.push(Span::styled(" │ ", theme.dim()));
        }
        left.extend(spans);
    }
    let left_line = Line::from(left);
    // The hint gives way to the run's figures when the line is short; a message does not.
    let right = match &model.toast {
        Some(toast) => {
            let style = match toast.level {
                ToastLevel::Info => theme.bold(),
                ToastLevel::Warning => theme.warning(),
                ToastLevel::Error => theme.error().add_modifier(Modifier::BOLD),
            };
            Span::styled(format!(" {} ", sanitize_line(&toast.text)), style)
        }
        None => {
            let room = (area.width as usize).saturating_sub(left_line.width());
            let hint = [" ? help · q quit ", " ? help "]
                .into_iter()
                .find(|h| h.width() <= room)
                .unwrap_or("");
            Span::styled(hint, theme.dim())
        }
    };
    let right_width = right.width().min(area.width as usize / 2 + 10) as u16;
    let [l, r] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(right_width)]).areas(area);
    frame.render_widget(Paragraph::new(left_line).style(theme.status_bar()), l);
    frame.render_widget(
        Paragraph::new(Line::from(right).alignment(Alignment::Right)).style(theme.status_bar()),
        r,
    );
}

// ---- overlays --------------------------------------------------------------------------------

/// A pop-up in `rect`: cleared, framed with its title and its keys along the bottom; the
/// area inside the frame is where its content goes.
pub(crate) fn popup(
    frame: &mut Frame,
    rect: Rect,
    theme: &crate::tui::theme::Theme,
    title_text: &str,
    keys: &str,
) -> Rect {
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme.border(true))
        .padding(Padding::horizontal(1))
        .title(title(title_text))
        .title_bottom(
            Line::from(Span::styled(keys.to_owned(), theme.dim())).alignment(Alignment::Right),
        );
    let inside = block.inner(rect);
    frame.render_widget(block, rect);
    inside
}

pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}

fn draw_help(frame: &mut Frame, model: &Model, area: Rect, scroll: usize) {
    let lines = help_lines(model);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = centered(area, 82, height);
    let fits = lines.len() + 2 <= rect.height as usize;
    let hint = if fits {
        " any key closes "
    } else {
        " j/k scroll · any other key closes "
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .scroll((
                if fits {
                    0
                } else {
                    scroll.min(content::help_max_scroll(model)) as u16
                },
                0,
            ))
            .block(
                Block::bordered()
                    .border_type(BorderType::Rounded)
                    .border_style(model.theme.border(true))
                    .padding(Padding::horizontal(1))
                    .title(title("Keys"))
                    .title_bottom(
                        Line::from(Span::styled(hint, model.theme.dim()))
                            .alignment(Alignment::Right),
                    ),
            ),
        rect,
    );
}

fn draw_stats(frame: &mut Frame, model: &Model, area: Rect, scroll: usize) {
    let lines = content::stats_lines(model);
    let height = (lines.len() as u16 + 2).min(area.height);
    let rect = centered(area, 100, height);
    let fits = lines.len() + 2 <= rect.height as usize;
    let hint = if fits {
        " any key closes "
    } else {
        " j/k scroll · any other key closes "
    };
    let scroll = if fits {
        0
    } else {
        scroll.min(lines.len().saturating_sub(1)) as u16
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(model.theme.border(true))
                .padding(Padding::horizontal(1))
                .title(title("Statistics of the saved runs (estimates)"))
                .title_bottom(
                    Line::from(Span::styled(hint, model.theme.dim())).alignment(Alignment::Right),
                ),
        ),
        rect,
    );
}

fn draw_edit(frame: &mut Frame, model: &Model, area: Rect) {
    let Some(Overlay::Edit {
        run,
        subtask,
        text,
        role,
    }) = &model.overlay
    else {
        return;
    };
    let rect = centered(
        area,
        90.min(area.width.saturating_sub(4)),
        14.min(area.height.saturating_sub(2)),
    );
    let inside = popup(
        frame,
        rect,
        &model.theme,
        &format!("Edit {}", truncate(subtask.as_str(), 30)),
        " Enter save & re-run · Alt+Enter new line · Tab role · Esc cancel ",
    );
    let [role_area, _, text_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inside);
    let roles = model.edit_roles(*run, subtask);
    let role_name = roles.get(*role).map(String::as_str).unwrap_or("—");
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Role: ", model.theme.dim()),
            Span::styled(format!("‹ {role_name} ›"), model.theme.key()),
            Span::styled("   Description:", model.theme.dim()),
        ])),
        role_area,
    );
    frame.render_widget(text.as_ref(), text_area);
}

/// The model picker: the three roles with the model each will use, and the provider's list
/// (or why there is none yet) with the highlighted one.
fn draw_models(frame: &mut Frame, model: &Model, area: Rect, role: PickRole, cursor: usize) {
    let theme = &model.theme;
    // Tall enough for the whole list where the screen allows: roles, a gap, the list, borders.
    let rows = match &model.models.list {
        ModelList::Ready(ids) => ids.len(),
        ModelList::NotAsked | ModelList::Loading | ModelList::Failed(_) => 3,
    };
    let rect = centered(
        area,
        72.min(area.width.saturating_sub(4)),
        (rows as u16 + 6)
            .clamp(10, 32)
            .min(area.height.saturating_sub(2)),
    );
    let inside = popup(
        frame,
        rect,
        theme,
        "Models for the next run",
        " ↑↓ choose · Enter use · Tab role · c configured · Esc close ",
    );
    let [roles_area, _, list_area] = Layout::vertical([
        Constraint::Length(PickRole::ORDER.len() as u16),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inside);
    let width = inside.width as usize;
    let roles: Vec<Line> = PickRole::ORDER
        .iter()
        .map(|&r| {
            let current = r == role;
            let name = truncate(
                &sanitize_line(model.models.effective(r)),
                width.saturating_sub(26),
            );
            let (mark, style) = if current {
                ("▸", theme.key())
            } else {
                (" ", Style::new())
            };
            let note = match model.models.picked(r) {
                Some(_) => " (picked)",
                None => " (configured)",
            };
            Line::from(vec![
                Span::styled(format!("{mark} {:<10} ", r.label()), style),
                Span::styled(name, style.add_modifier(Modifier::BOLD)),
                Span::styled(note, theme.dim()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(roles), roles_area);
    let message = |text: String| {
        Paragraph::new(text)
            .style(theme.dim())
            .wrap(Wrap { trim: true })
    };
    match &model.models.list {
        ModelList::NotAsked | ModelList::Loading => frame.render_widget(
            message(format!(
                "{} Asking the server for its models…",
                spinner(model)
            )),
            list_area,
        ),
        ModelList::Failed(why) => frame.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled(
                    format!("Could not list the models: {}", sanitize_line(why)),
                    theme.error(),
                )),
                Line::default(),
                Line::from(Span::styled(
                    "Esc closes; m asks again. The configured models stay in use.",
                    theme.dim(),
                )),
            ])
            .wrap(Wrap { trim: true }),
            list_area,
        ),
        ModelList::Ready(ids) if ids.is_empty() => {
            frame.render_widget(message("The server lists no models.".to_owned()), list_area)
        }
        ModelList::Ready(ids) => {
            let height = list_area.height as usize;
            let top = cursor.saturating_sub(height.saturating_sub(1));
            let lines: Vec<Line> = ids
                .iter()
                .enumerate()
                .skip(top)
                .take(height)
                .map(|(i, id)| {
                    let in_use = PickRole::ORDER
                        .iter()
                        .filter(|r| model.models.effective(**r) == id)
                        .map(|r| r.label().to_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ");
                    let id = truncate(&sanitize_line(id), width.saturating_sub(24).max(8));
                    let mark = if i == cursor { "▸" } else { " " };
                    let mut line = Line::from(vec![
                        Span::raw(format!("{mark} {id}")),
                        Span::styled(
                            if in_use.is_empty() {
                                String::new()
                            } else {
                                format!("  ({in_use})")
                            },
                            theme.dim(),
                        ),
                    ]);
                    if i == cursor {
                        line = selected_row(line, theme, width);
                    }
                    line
                })
                .collect();
            frame.render_widget(Paragraph::new(lines), list_area);
            list_scrollbar(frame, rect, list_area, ids.len(), top);
        }
    }
}

fn draw_presets(frame: &mut Frame, model: &Model, area: Rect, cursor: usize) {
    let theme = &model.theme;
    let presets = &model.models.presets;
    // A preset takes three lines: name and source, what it is for, its roles.
    let rect = centered(
        area,
        76.min(area.width.saturating_sub(4)),
        (presets.len() as u16 * 3 + 2)
            .clamp(8, 32)
            .min(area.height.saturating_sub(2)),
    );
    let inside = popup(
        frame,
        rect,
        theme,
        "Preset for the next run",
        " ↑↓ choose · Enter use · Esc close ",
    );
    if presets.is_empty() {
        frame.render_widget(
            Paragraph::new("No presets are known.").style(theme.dim()),
            inside,
        );
        return;
    }
    let width = inside.width as usize;
    let per_page = (inside.height as usize / 3).max(1);
    let top = cursor.saturating_sub(per_page - 1);
    let mut lines: Vec<Line> = Vec::new();
    for (i, preset) in presets.iter().enumerate().skip(top).take(per_page) {
        let mark = if i == cursor { "▸" } else { " " };
        let mut notes = Vec::new();
        if preset.name == model.models.effective_preset() {
            notes.push("in use".to_owned());
        }
        if preset.name == model.models.preset {
            notes.push("configured".to_owned());
        }
        notes.push(preset.source.clone());
        let note = format!("  ({})", notes.join(", "));
        let name = truncate(&sanitize_line(&preset.name), width.saturating_sub(4));
        let note = truncate(
            &sanitize_line(&note),
            width.saturating_sub(name.chars().count() + 2),
        );
        let mut head = Line::from(vec![
            Span::styled(
                format!("{mark} {name}"),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(note, theme.dim()),
        ]);
        if i == cursor {
            head = selected_row(head, theme, width);
        }
        lines.push(head);
        lines.push(Line::from(format!(
            "  {}",
            truncate(&sanitize_line(&preset.description), width.saturating_sub(2))
        )));
        let roles = format!("roles: {}", preset.roles.join(", "));
        lines.push(Line::from(Span::styled(
            format!(
                "  {}",
                truncate(&sanitize_line(&roles), width.saturating_sub(2))
            ),
            theme.dim(),
        )));
    }
    frame.render_widget(Paragraph::new(lines), inside);
    list_scrollbar(frame, rect, inside, presets.len(), top);
}

/// Glyph and word of a saved run's status (the glyph never stands alone).
fn saved_status(status: SavedRunStatus) -> (&'static str, Option<RunStatus>) {
    match status {
        SavedRunStatus::Running => ("▶", None),
        SavedRunStatus::Succeeded => ("✓", Some(RunStatus::Succeeded)),
        SavedRunStatus::Partial => ("◐", Some(RunStatus::Partial)),
        SavedRunStatus::Failed => ("✗", Some(RunStatus::Failed)),
        SavedRunStatus::Cancelled => ("⊗", Some(RunStatus::Cancelled)),
        SavedRunStatus::Interrupted => ("⚠", Some(RunStatus::Partial)),
    }
}

/// The history pop-up: the search, then one saved run a line (status, age, counts, tokens,
/// query), the highlighted one marked.
fn draw_history(frame: &mut Frame, model: &Model, area: Rect, search: &str, cursor: usize) {
    let theme = &model.theme;
    let rect = centered(
        area,
        120.min(area.width.saturating_sub(2)),
        area.height.saturating_sub(2),
    );
    let inside = popup(
        frame,
        rect,
        theme,
        "History",
        " type to search · ↑↓ choose · Enter open · Esc close ",
    );
    let [search_area, header_area, list_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inside);
    let width = inside.width as usize;
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!(
                "  {:<13} {:>8}  {:>9}  {:>6}  query",
                "status", "started", "ok/fail/n", "tokens"
            ),
            theme.dim(),
        )),
        header_area,
    );
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Search: ", theme.dim()),
            Span::styled(
                truncate(&sanitize_line(search), width.saturating_sub(10)),
                theme.bold(),
            ),
            Span::styled("▏", theme.key()),
        ])),
        search_area,
    );
    let runs = crate::tui::update::saved_listed(&model.saved_runs);
    let message =
        |text: String, style: Style| Paragraph::new(text).style(style).wrap(Wrap { trim: true });
    match &model.saved_runs {
        SavedList::NotAsked | SavedList::Loading(_) if runs.is_empty() => frame.render_widget(
            message("Reading the saved runs…".into(), theme.dim()),
            list_area,
        ),
        SavedList::Failed(why) => frame.render_widget(
            message(
                format!("Could not read the saved runs: {}", sanitize_line(why)),
                theme.error(),
            ),
            list_area,
        ),
        _ if runs.is_empty() && search.trim().is_empty() => {
            frame.render_widget(message("No saved runs yet.".into(), theme.dim()), list_area)
        }
        _ if runs.is_empty() => frame.render_widget(
            message(
                "No saved run has that in its query or report.".into(),
                theme.dim(),
            ),
            list_area,
        ),
        _ => {
            let height = list_area.height as usize;
            let top = cursor.saturating_sub(height.saturating_sub(1));
            let lines: Vec<Line> = runs
                .iter()
                .enumerate()
                .skip(top)
                .take(height)
                .map(|(i, run)| {
                    let (glyph, style) = saved_status(run.status);
                    let status = format!("{glyph} {:<11}", run.status.word());
                    let figures = format!(
                        " {:>8}  {:>9}  {:>6}  ",
                        crate::history::age(model.now_ms.saturating_sub(run.started_ms)),
                        format!("{}/{}/{}", run.succeeded, run.failed, run.total),
                        tokens(run.usage.total()),
                    );
                    let mark = if i == cursor { "▸ " } else { "  " };
                    let room =
                        width.saturating_sub(mark.width() + status.width() + figures.width());
                    let mut line = Line::from(vec![
                        Span::raw(mark),
                        Span::styled(status, theme.run_status(style)),
                        Span::styled(figures, theme.dim()),
                        Span::raw(truncate(&sanitize_line(&run.query), room)),
                    ]);
                    if i == cursor {
                        line = selected_row(line, theme, width);
                    }
                    line
                })
                .collect();
            frame.render_widget(Paragraph::new(lines), list_area);
            list_scrollbar(frame, rect, list_area, runs.len(), top);
        }
    }
}

fn draw_confirm_quit(frame: &mut Frame, model: &Model, area: Rect) {
    let active = model.runs.iter().filter(|r| r.is_active()).count();
    let text = vec![
        Line::from(if active == 1 {
            "A run is still going.".to_owned()
        } else {
            format!("{active} runs are still going.")
        }),
        Line::from(if active == 1 {
            "Quit and cancel it?"
        } else {
            "Quit and cancel them?"
        }),
        Line::default(),
        Line::from(vec![
            Span::styled("y", model.theme.key()),
            Span::raw(" quit   "),
            Span::styled("any other key", model.theme.key()),
            Span::raw(" stay"),
        ]),
    ];
    let rect = centered(area, 70, 6);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(model.theme.warning())
                .padding(Padding::horizontal(1))
                .title(title("Quit?")),
        ),
        rect,
    );
}

/// A run that waits: why, what waits, and the three ways on.
fn draw_paused(
    frame: &mut Frame,
    model: &Model,
    area: Rect,
    run: crate::protocol::RunId,
    why: &PauseWhy,
    raise: &str,
) {
    let waiting: Vec<String> = model
        .run(run)
        .map(|v| {
            v.report
                .subtasks
                .iter()
                .filter(|s| matches!(s.status, SubtaskStatus::Pending | SubtaskStatus::Retrying))
                .map(|s| sanitize_line(s.id.as_str()).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let number = model.run(run).map_or(0, |v| v.number);
    let key = |k: &'static str| Span::styled(k, model.theme.key());
    let mut text = Vec::new();
    let title_text = match why {
        PauseWhy::Budget(reason) => {
            text.push(Line::from(format!("Run #{number}: {reason}.")));
            "Budget reached"
        }
        PauseWhy::Provider(message) => {
            text.push(Line::from(format!(
                "Run #{number}: {}.",
                sanitize_line(message)
            )));
            "Provider paused"
        }
    };
    text.push(Line::from(format!(
        "Waiting to start: {}. Running subtasks finish.",
        if waiting.is_empty() {
            "none".to_owned()
        } else {
            waiting.join(", ")
        }
    )));
    text.push(Line::default());
    let enter = match why {
        PauseWhy::Budget(reason) => {
            let unit = match reason {
                crate::protocol::BudgetReason::Tokens { .. } => "tokens",
                crate::protocol::BudgetReason::Deadline { .. } => "(90s, 5m, 1h)",
                crate::protocol::BudgetReason::Cost { .. } => "US dollars",
            };
            text.push(Line::from(vec![
                Span::raw("Raise by: "),
                Span::styled(format!("{raise}▌"), model.theme.bold()),
                Span::raw(format!(" {unit}")),
            ]));
            text.push(Line::default());
            " raise   "
        }
        PauseWhy::Provider(_) => " resume   ",
    };
    text.push(Line::from(vec![
        key("Enter"),
        Span::raw(enter),
        key("Ctrl+S"),
        Span::raw(" report now   "),
        key("Ctrl+X"),
        Span::raw(" cancel run   "),
        key("Esc"),
        Span::raw(" later (P)"),
    ]));
    let rect = centered(area, 76, text.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(model.theme.warning())
                .padding(Padding::horizontal(1))
                .title(title(title_text)),
        ),
        rect,
    );
}

// ---- helpers ---------------------------------------------------------------------------------

/// A scrollbar on the right border of a pane showing `height` of `total` lines from `top`.
pub(crate) fn draw_scrollbar(
    frame: &mut Frame,
    area: Rect,
    total: usize,
    height: usize,
    top: usize,
) {
    let mut state = ScrollbarState::new(total.saturating_sub(height)).position(top);
    frame.render_stateful_widget(
        Scrollbar::new(ScrollbarOrientation::VerticalRight),
        area.inner(ratatui::layout::Margin {
            vertical: 1,
            horizontal: 0,
        }),
        &mut state,
    );
}

fn pad(area: Rect) -> Rect {
    Rect {
        x: area.x + 1,
        width: area.width.saturating_sub(2),
        ..area
    }
}

fn join(ids: &[crate::protocol::SubtaskId]) -> String {
    ids.iter()
        .map(|i| i.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A pop-up list's selected row: highlighted across the whole `width`.
pub(crate) fn selected_row<'a>(
    line: Line<'a>,
    theme: &crate::tui::theme::Theme,
    width: usize,
) -> Line<'a> {
    let mut line = line.patch_style(theme.selected());
    let pad = width.saturating_sub(line.width());
    line.push_span(Span::styled(" ".repeat(pad), theme.selected()));
    line
}

/// A pop-up list's scrollbar, when its `len` rows do not fit: beside the list only, on the
/// pop-up's (`rect`) right border.
pub(crate) fn list_scrollbar(
    frame: &mut Frame,
    rect: Rect,
    list_area: Rect,
    len: usize,
    top: usize,
) {
    let height = usize::from(list_area.height);
    if len > height {
        let beside = Rect {
            y: list_area.y.saturating_sub(1),
            height: list_area.height + 2,
            ..rect
        };
        draw_scrollbar(frame, beside, len, height, top);
    }
}
