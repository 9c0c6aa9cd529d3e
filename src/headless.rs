//! `maestro run` and `maestro plan`: the engine without the dashboard.
//!
//! Consumes the same events the dashboard does. Progress goes to stderr (a line per event, or
//! a compact live view when stderr is a terminal), the report to stdout, every event to
//! `--events FILE`. Model text is sanitised before it reaches either stream; JSON output is
//! escaped by the serialiser. Ctrl-C cancels the run cleanly and still prints what finished;
//! a second Ctrl-C quits at once.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossterm::style::Stylize;

use crate::cli::{Format, RunArgs};
use crate::config::Config;
use crate::engine::executor::Engine;
use crate::llm::Provider;
use crate::protocol::{Event, EventKind, Plan, RunCommand, RunStatus, SubtaskStatus};
use crate::report::{RunReport, SPINNER, format_ms, format_tokens, status_glyph, truncate};
use crate::sanitize::sanitize_line;

/// Exit codes of `maestro run` (and `plan`).
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const PARTIAL: i32 = 3;
    pub const INTERRUPTED: i32 = 130;
}

/// The exit code for how a run ended.
pub fn exit_code(status: Option<RunStatus>) -> i32 {
    match status {
        Some(RunStatus::Succeeded) => exit::OK,
        Some(RunStatus::Partial) => exit::PARTIAL,
        Some(RunStatus::Failed) | None => exit::FAILED,
        Some(RunStatus::Cancelled) => exit::INTERRUPTED,
    }
}

/// Read the query, from standard input when it is `-`.
pub fn read_query(query: &str) -> anyhow::Result<String> {
    let text = if query == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the query from stdin")?
    } else {
        query.to_owned()
    };
    let text = text.trim().to_owned();
    anyhow::ensure!(!text.is_empty(), "the query is empty");
    Ok(text)
}

/// Read `--plan FILE` exactly as a planner's answer is read (same lenient defaults); the run
/// checks it. Values that had to be replaced are reported on stderr.
pub fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read plan file {}", path.display()))?;
    let (plan, warnings) = crate::engine::plan::read_plan_text(&text)
        .with_context(|| format!("plan file {} is not a valid plan", path.display()))?;
    for warning in warnings {
        eprintln!("maestro: plan file: {}", sanitize_line(&warning));
    }
    Ok(plan)
}

/// `maestro run`. Returns the exit code.
pub async fn run(
    config: Config,
    provider: Arc<dyn Provider>,
    query: String,
    plan: Option<Plan>,
    args: &RunArgs,
) -> anyhow::Result<i32> {
    let mut events_file = match &args.events {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create events file {}", path.display()))?,
        )),
        None => None,
    };
    let describe = config.describe();
    let (engine, mut events) = Engine::spawn(provider, config.run, config.executor);
    let id = engine.start_run(query, plan);

    let stderr = std::io::stderr();
    let mut progress = Progress::new(
        !args.quiet,
        stderr.is_terminal(),
        std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        describe,
    );
    let mut report = RunReport::default();
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut interrupted = false;
    let mut events_error = None;

    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                if let Some(file) = events_file.as_mut()
                    && events_error.is_none()
                    && let Err(e) = write_event(file, &event)
                {
                    events_error = Some(e.to_string());
                }
                report.apply(&event);
                progress.on_event(&event, &report);
                if matches!(event.kind, EventKind::RunFinished { .. }) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => {
                if interrupted {
                    progress.clear();
                    eprintln!("maestro: interrupted");
                    if let Some(file) = events_file.as_mut() {
                        let _ = file.flush();
                    }
                    return Ok(exit::INTERRUPTED);
                }
                interrupted = true;
                progress.note("cancelling… (Ctrl-C again to quit at once)");
                engine.steer(id, RunCommand::CancelRun);
            }
            _ = ticker.tick(), if progress.live => progress.redraw(&report),
        }
    }
    engine.send(crate::protocol::Command::Shutdown);
    progress.finish(&report);
    if let Some(file) = events_file.as_mut()
        && let Err(e) = file.flush()
    {
        events_error.get_or_insert(e.to_string());
    }
    if let Some(e) = events_error {
        eprintln!("maestro: writing the events file failed: {e}");
    }

    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Markdown => write!(stdout, "{}", report.to_markdown())?,
        Format::Json => {
            crate::sanitize::write_json(&mut stdout, &report.to_json())?;
            writeln!(stdout)?;
        }
    }
    stdout.flush()?;
    Ok(exit_code(report.status))
}

/// `maestro plan`: plan only, print the plan JSON.
pub async fn plan(
    mut config: Config,
    provider: Arc<dyn Provider>,
    query: String,
) -> anyhow::Result<i32> {
    config.run.stop_after_plan = true;
    let (engine, mut events) = Engine::spawn(provider, config.run, config.executor);
    engine.start_run(query, None);
    let mut plan = None;
    let mut failure = None;
    while let Some(event) = events.recv().await {
        match event.kind {
            EventKind::PlanReady { plan: p } => plan = Some(p),
            EventKind::Notice { message } => eprintln!("maestro: {}", sanitize_line(&message)),
            EventKind::PlanRejected { error, .. } => {
                eprintln!(
                    "maestro: the planner's answer was rejected: {}",
                    sanitize_line(&error)
                );
            }
            EventKind::PlanningRetrying {
                delay_ms, reason, ..
            } => {
                eprintln!(
                    "maestro: planner call failed ({reason}); retrying in {}",
                    format_ms(delay_ms)
                );
            }
            EventKind::RunFinished { error, .. } => {
                failure = error;
                break;
            }
            _ => {}
        }
    }
    engine.send(crate::protocol::Command::Shutdown);
    match plan {
        Some(plan) => {
            let mut stdout = std::io::stdout().lock();
            crate::sanitize::write_json(&mut stdout, &plan)?;
            writeln!(stdout)?;
            Ok(exit::OK)
        }
        None => {
            eprintln!(
                "maestro: {}",
                sanitize_line(failure.as_deref().unwrap_or("planning failed"))
            );
            Ok(exit::FAILED)
        }
    }
}

fn write_event(file: &mut impl Write, event: &Event) -> std::io::Result<()> {
    crate::sanitize::write_json_line(&mut *file, event)?;
    file.write_all(b"\n")
}

/// Progress on stderr: a line per event, or a live block redrawn in place on a terminal.
struct Progress {
    enabled: bool,
    live: bool,
    color: bool,
    describe: String,
    /// Lines of the live block on screen now.
    drawn: u16,
    spinner: usize,
}

impl Progress {
    fn new(enabled: bool, terminal: bool, color: bool, describe: String) -> Self {
        Self {
            enabled,
            live: enabled && terminal,
            color: color && terminal,
            describe,
            drawn: 0,
            spinner: 0,
        }
    }

    fn on_event(&mut self, event: &Event, report: &RunReport) {
        if !self.enabled {
            return;
        }
        if self.live {
            // Notices and failures also stay in the scrollback above the live block.
            match &event.kind {
                EventKind::Notice { .. }
                | EventKind::CommandRefused { .. }
                | EventKind::PlanRejected { .. }
                | EventKind::SubtaskFailed { .. } => {
                    if let Some(line) = event_line(event, report) {
                        self.note(&line);
                    }
                }
                _ => {}
            }
            if !matches!(
                event.kind,
                EventKind::SubtaskDelta { .. } | EventKind::SynthesisDelta { .. }
            ) {
                self.redraw(report);
            }
        } else if let Some(line) = event_line(event, report) {
            let at = report
                .started_ts
                .map(|t| event.ts_ms.saturating_sub(t))
                .unwrap_or(0);
            eprintln!("[{}] {line}", clock(at));
        }
    }

    /// A line above the live block (or a plain line).
    fn note(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        self.clear();
        eprintln!("maestro: {line}");
    }

    fn clear(&mut self) {
        if self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = crossterm::queue!(
                err,
                crossterm::cursor::MoveToPreviousLine(self.drawn),
                crossterm::terminal::Clear(crossterm::terminal::ClearType::FromCursorDown)
            );
            let _ = err.flush();
            self.drawn = 0;
        }
    }

    fn redraw(&mut self, report: &RunReport) {
        if !self.live {
            return;
        }
        self.spinner = self.spinner.wrapping_add(1);
        let (columns, rows) = crossterm::terminal::size().unwrap_or((80, 24));
        let width = (columns as usize).saturating_sub(1).max(20);
        let mut lines = live_lines(report, &self.describe, self.spinner, now_ms());
        // A block taller than the screen could not be moved back over: keep it to the screen.
        let room = (rows as usize).saturating_sub(1).max(3);
        if lines.len() > room {
            let hidden = lines.len() - (room - 1);
            lines.truncate(room - 1);
            lines.push((None, format!("  … {hidden} more")));
        }
        self.clear();
        let mut err = std::io::stderr().lock();
        for (status, line) in &lines {
            let line = truncate(line, width);
            let styled = match status {
                Some(s) if self.color => paint(*s, &line),
                _ => line,
            };
            let _ = writeln!(err, "{styled}");
        }
        let _ = err.flush();
        self.drawn = lines.len() as u16;
    }

    fn finish(&mut self, report: &RunReport) {
        if !self.enabled {
            return;
        }
        if self.live {
            self.redraw(report);
        }
        let succeeded = report.count(SubtaskStatus::Succeeded);
        let usage = report.tokens();
        let status = report.status.map(|s| s.word()).unwrap_or("stopped");
        let mut line = format!(
            "{status}: {succeeded}/{} subtasks · {} tokens · {}",
            report.subtasks.len(),
            format_tokens(usage.total()),
            report.elapsed_ms.map(format_ms).unwrap_or_default()
        );
        if let Some(e) = &report.error {
            line.push_str(&format!(" · {}", sanitize_line(e)));
        }
        eprintln!("maestro: {line}");
        self.drawn = 0;
    }
}

fn paint(status: SubtaskStatus, line: &str) -> String {
    match status {
        SubtaskStatus::Succeeded => line.green().to_string(),
        SubtaskStatus::Failed => line.red().to_string(),
        SubtaskStatus::Retrying => line.yellow().to_string(),
        SubtaskStatus::Blocked | SubtaskStatus::Cancelled => line.dark_grey().to_string(),
        SubtaskStatus::Pending | SubtaskStatus::Running => line.to_owned(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `01:04.2`
fn clock(ms: u64) -> String {
    format!(
        "{:02}:{:02}.{}",
        ms / 60_000,
        (ms / 1000) % 60,
        (ms / 100) % 10
    )
}

/// The live block: a header, a line per subtask, the synthesis.
fn live_lines(
    report: &RunReport,
    describe: &str,
    tick: usize,
    now: u64,
) -> Vec<(Option<SubtaskStatus>, String)> {
    let elapsed = report
        .elapsed_ms
        .or(report.started_ts.map(|t| now.saturating_sub(t)))
        .unwrap_or(0);
    let phase = if let Some(s) = report.status {
        s.word().to_owned()
    } else if report.plan.is_none() {
        "planning…".to_owned()
    } else if report.synthesizing {
        "synthesising…".to_owned()
    } else {
        format!(
            "{}/{} done",
            report.count(SubtaskStatus::Succeeded),
            report.subtasks.len()
        )
    };
    let mut lines = vec![(
        None,
        format!("maestro · {describe} · {} · {phase}", clock(elapsed)),
    )];
    let title_w = report
        .subtasks
        .iter()
        .map(|s| s.title.chars().count())
        .max()
        .unwrap_or(0)
        .min(36);
    for s in &report.subtasks {
        let glyph = if s.status == SubtaskStatus::Running {
            SPINNER[tick % SPINNER.len()]
        } else {
            status_glyph(s.status)
        };
        let title: String = sanitize_line(&s.title).chars().take(title_w).collect();
        let detail = match s.status {
            SubtaskStatus::Running => {
                let ms = s.started_ts.map(|t| now.saturating_sub(t)).unwrap_or(0);
                format!("{:>6}", format_ms(ms))
            }
            SubtaskStatus::Succeeded => format!(
                "{:>6} {:>6} tok",
                s.elapsed_ms.map(format_ms).unwrap_or_default(),
                format_tokens(s.tokens_in + s.tokens_out)
            ),
            SubtaskStatus::Retrying => match &s.retry {
                Some((delay, reason)) => format!("retry in {} ({reason})", format_ms(*delay)),
                None => "retrying".into(),
            },
            SubtaskStatus::Failed => format!(
                "failed: {}",
                sanitize_line(s.error.as_deref().unwrap_or(""))
            ),
            SubtaskStatus::Blocked | SubtaskStatus::Pending if !s.waiting_on.is_empty() => format!(
                "after {}",
                s.waiting_on
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.word().to_owned(),
        };
        let attempts = if s.attempts > 1 {
            format!(" ×{}", s.attempts)
        } else {
            String::new()
        };
        lines.push((
            Some(s.status),
            format!(
                "  {glyph} {:<8} {:<9} {:<title_w$}  {detail}{attempts}",
                s.id.as_str(),
                s.worker,
                title
            ),
        ));
    }
    if report.synthesizing {
        let words = report.synthesis.split_whitespace().count();
        lines.push((
            None,
            format!(
                "  {} synthesis · {words} words",
                SPINNER[tick % SPINNER.len()]
            ),
        ));
    }
    lines
}

/// One progress line for an event, or `None` for events that are not worth a line (deltas).
fn event_line(event: &Event, report: &RunReport) -> Option<String> {
    let title = |id: &crate::protocol::SubtaskId| {
        report
            .subtask(id)
            .map(|s| format!("{id} \"{}\"", sanitize_line(&s.title)))
            .unwrap_or_else(|| id.to_string())
    };
    Some(match &event.kind {
        EventKind::RunStarted { query } => format!("run {}: {}", event.run, sanitize_line(query)),
        EventKind::PlanningStarted { attempt, model } => {
            format!("planning with {model} (attempt {attempt})")
        }
        EventKind::PlanningRetrying {
            delay_ms, reason, ..
        } => {
            format!(
                "planner call failed ({reason}); retrying in {}",
                format_ms(*delay_ms)
            )
        }
        EventKind::PlanRejected { error, .. } => {
            format!("plan rejected: {}", sanitize_line(error))
        }
        EventKind::PlanReady { plan } => format!("plan ready: {} subtasks", plan.subtasks.len()),
        EventKind::Notice { message } => format!("note: {}", sanitize_line(message)),
        EventKind::CommandRefused { refusal, .. } => {
            format!("note: {}", sanitize_line(&refusal.to_string()))
        }
        EventKind::SubtaskQueued {
            subtask,
            waiting_on,
        } => {
            if waiting_on.is_empty() {
                format!("· {} queued", title(subtask))
            } else {
                let ids: Vec<&str> = waiting_on.iter().map(|d| d.as_str()).collect();
                format!("· {} queued after {}", title(subtask), ids.join(", "))
            }
        }
        EventKind::SubtaskStarted {
            subtask,
            attempt,
            worker,
            model,
        } => {
            format!(
                "▶ {} started ({worker}, {model}, attempt {attempt})",
                title(subtask)
            )
        }
        EventKind::SubtaskDelta { .. } | EventKind::SynthesisDelta { .. } => return None,
        EventKind::SubtaskRetrying {
            subtask,
            attempt,
            delay_ms,
            reason,
            ..
        } => format!(
            "↻ {} attempt {attempt} failed ({reason}); retrying in {}",
            title(subtask),
            format_ms(*delay_ms)
        ),
        EventKind::SubtaskSucceeded {
            subtask,
            elapsed_ms,
            usage,
            ..
        } => format!(
            "✓ {} done in {} ({} in, {} out{})",
            title(subtask),
            format_ms(*elapsed_ms),
            format_tokens(usage.tokens_in),
            format_tokens(usage.tokens_out),
            if usage.estimated { ", estimated" } else { "" }
        ),
        EventKind::SubtaskFailed {
            subtask,
            attempt,
            error,
            ..
        } => format!(
            "✗ {} failed after {attempt} attempt{}: {}",
            title(subtask),
            if *attempt == 1 { "" } else { "s" },
            sanitize_line(error)
        ),
        EventKind::SubtaskBlocked {
            subtask,
            waiting_on,
        } => {
            let ids: Vec<&str> = waiting_on.iter().map(|d| d.as_str()).collect();
            format!("⊘ {} blocked by {}", title(subtask), ids.join(", "))
        }
        EventKind::SubtaskCancelled { subtask, .. } => format!("⊗ {} cancelled", title(subtask)),
        EventKind::SubtaskEdited {
            subtask, worker, ..
        } => {
            format!("✎ {} edited (role {worker})", title(subtask))
        }
        EventKind::SynthesisStarted { attempt, model } => {
            format!("synthesising with {model} (attempt {attempt})")
        }
        EventKind::SynthesisRetrying {
            delay_ms, reason, ..
        } => {
            format!(
                "synthesis call failed ({reason}); retrying in {}",
                format_ms(*delay_ms)
            )
        }
        EventKind::SynthesisCancelled { .. } => {
            "synthesis dropped (its subtasks changed, or the run was cancelled)".to_owned()
        }
        EventKind::SynthesisFinished {
            synthesized, error, ..
        } => {
            if *synthesized {
                "synthesis written".to_owned()
            } else {
                format!(
                    "synthesis failed ({}); the report joins the worker results unsynthesised",
                    sanitize_line(error.as_deref().unwrap_or("unknown error"))
                )
            }
        }
        EventKind::RunFinished {
            status,
            elapsed_ms,
            succeeded,
            total,
            ..
        } => format!(
            "run {}: {succeeded}/{total} subtasks in {}",
            status.word(),
            format_ms(*elapsed_ms)
        ),
    })
}
