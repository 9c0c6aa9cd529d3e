//! `maestro export`: a saved run as a full report a person can keep or send — query, plan,
//! synthesis, every subtask's result, a table of timings, tokens and attempts, the workers'
//! tool calls and the sources they read, and (in markdown) the run's timeline — in markdown
//! or JSON, on stdout or in a file. A source's text is not exported: it can be long, the
//! export is a report to read or send, and the database keeps the text for the dashboard.
//!
//! Built from what the store saved ([`history::report_of`] and the saved attempts); it reads
//! only, decides nothing about a run and talks to no provider. Model text is sanitised: the
//! output goes to terminals and files alike.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::cli::{ExportArgs, Format};
use crate::config::StoreConfig;
use crate::display::{duration, tokens};
use crate::history::{self, Failure, FailureKind};
use crate::protocol::{CallRole, Usage};
use crate::report::{AttemptTime, RunReport};
use crate::sanitize::{sanitize, sanitize_line};
use crate::store::{self, SavedRun};

/// How much of a parent run's report heads a follow-up's export.
const PARENT_SUMMARY_CHARS: usize = 600;

/// `maestro export`.
pub fn export(store: &StoreConfig, args: &ExportArgs, out: &mut dyn Write) -> Result<(), Failure> {
    // A file that cannot be written is known before the database is read.
    if let Some(path) = &args.out {
        check_parent(path)?;
    }
    let db = history::open_store(store)?;
    let saved = history::resolve(&db, &args.id)?;
    // The parent is context only: a parent deleted since is left out, not an error.
    let parent = saved.summary.parent.and_then(|id| db.load_run(id).ok());
    let text = match args.format {
        Format::Markdown => markdown(&saved, parent.as_ref()).into_bytes(),
        Format::Json => {
            let mut buf = Vec::new();
            let _ = crate::sanitize::write_json(&mut buf, &json(&saved, parent.as_ref()));
            buf.push(b'\n');
            buf
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, &text).map_err(|e| Failure {
            kind: FailureKind::Output,
            message: format!("cannot write {}: {e}", path.display()),
        }),
        None => out
            .write_all(&text)
            .and_then(|()| out.flush())
            .map_err(|e| Failure {
                kind: FailureKind::Output,
                message: format!("cannot write to stdout: {e}"),
            }),
    }
}

/// `--out` must name a file in a folder that exists: a typo in the folder is a usage error,
/// not a reason to create folders.
fn check_parent(path: &Path) -> Result<(), Failure> {
    let usage = |message: String| Failure {
        kind: FailureKind::Usage,
        message,
    };
    if path.is_dir() {
        return Err(usage(format!("--out {}: is a folder", path.display())));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    match parent {
        Some(dir) if !dir.is_dir() => Err(usage(format!(
            "--out {}: the folder {} does not exist",
            path.display(),
            dir.display()
        ))),
        _ => Ok(()),
    }
}

// ---- markdown -------------------------------------------------------------------------------

/// The full markdown report of a saved run; `parent` heads it when the run is a follow-up.
pub fn markdown(saved: &SavedRun, parent: Option<&SavedRun>) -> String {
    let report = history::report_of(saved);
    let s = &saved.summary;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", sanitize_line(&s.query));
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| run | {} |", s.id);
    let _ = writeln!(out, "| status | {} |", s.status.word());
    let _ = writeln!(out, "| started | {} |", crate::display::utc(s.started_ms));
    let _ = writeln!(
        out,
        "| duration | {} |",
        report
            .elapsed_ms
            .map(duration)
            .unwrap_or_else(|| "—".into())
    );
    let _ = writeln!(out, "| provider | {} |", cell(&s.provider));
    for (role, model) in [
        ("planner", &saved.planner_model),
        ("workers", &saved.worker_model),
        ("synthesiser", &saved.synthesizer_model),
    ] {
        if let Some(model) = model {
            let _ = writeln!(out, "| {role} model | {} |", cell(model));
        }
    }
    let _ = writeln!(
        out,
        "| subtasks | {} succeeded, {} failed, {} in all |",
        s.succeeded, s.failed, s.total
    );
    let _ = writeln!(out, "| tokens | {} |", usage_text(s.usage));
    if let Some(error) = &saved.error {
        let _ = writeln!(out, "| error | {} |", cell(error));
    }
    out.push('\n');

    if let Some(parent) = parent {
        let _ = writeln!(out, "## Follow-up of run {}\n", parent.summary.short_id);
        let _ = writeln!(out, "> {}\n", sanitize_line(&parent.summary.query));
        let summary = parent
            .syntheses
            .last()
            .map(|r| summary_of(&r.text))
            .unwrap_or_default();
        if !summary.is_empty() {
            let _ = writeln!(out, "{summary}\n");
        }
    }

    let context = report.context_markdown();
    if !context.is_empty() {
        let _ = writeln!(out, "{context}");
    }

    let _ = writeln!(out, "## Plan\n");
    match &saved.plan {
        None => {
            let _ = writeln!(out, "_The run stopped before it had a plan._\n");
        }
        Some(plan) => {
            if !plan.query_analysis.trim().is_empty() {
                let _ = writeln!(out, "{}\n", sanitize(plan.query_analysis.trim()));
            }
            let _ = writeln!(
                out,
                "| # | id | title | role | depends on | priority |\n|---:|---|---|---|---|---|"
            );
            for (n, p) in plan.subtasks.iter().enumerate() {
                let deps: Vec<&str> = p.depends_on.iter().map(|d| d.as_str()).collect();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    n + 1,
                    cell(p.id.as_str()),
                    cell(&p.title),
                    cell(&p.worker),
                    if deps.is_empty() {
                        "—".to_owned()
                    } else {
                        cell(&deps.join(", "))
                    },
                    cell(&p.priority)
                );
            }
            out.push('\n');
            if !plan.synthesis_guidance.trim().is_empty() {
                let _ = writeln!(
                    out,
                    "Synthesis guidance: {}\n",
                    sanitize_line(plan.synthesis_guidance.trim())
                );
            }
        }
    }

    let _ = writeln!(out, "## Synthesis\n");
    let synthesis = sanitize(report.synthesis.trim());
    if synthesis.is_empty() {
        let _ = writeln!(out, "_No report was written._\n");
    } else {
        let _ = writeln!(out, "{synthesis}\n");
    }
    if saved.syntheses.len() > 1 {
        let _ = writeln!(
            out,
            "_Version {} of the report; earlier versions are in the database._\n",
            saved.syntheses.len()
        );
    }

    let _ = writeln!(out, "## Timings, tokens and attempts\n");
    let _ = writeln!(
        out,
        "| id | title | status | time | tokens in | tokens out | attempts |\n\
         |---|---|---|---:|---:|---:|---:|"
    );
    for t in &saved.subtasks {
        let est = if t.usage.estimated { "~" } else { "" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {est}{} | {est}{} | {} |",
            cell(t.id.as_str()),
            cell(&t.title),
            t.status.word(),
            t.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
            tokens(t.usage.tokens_in),
            tokens(t.usage.tokens_out),
            t.attempts
        );
    }
    let _ = writeln!(
        out,
        "| | **run** | **{}** | **{}** | {} | {} | |\n",
        s.status.word(),
        report
            .elapsed_ms
            .map(duration)
            .unwrap_or_else(|| "—".into()),
        tokens(s.usage.tokens_in),
        tokens(s.usage.tokens_out),
    );
    if !saved.attempts.is_empty() {
        let _ = writeln!(out, "### Attempts\n");
        let _ = writeln!(
            out,
            "| call | attempt | model | time | outcome | error |\n|---|---:|---|---:|---|---|"
        );
        for a in &saved.attempts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                call_name(a),
                a.attempt,
                cell(a.model.as_deref().unwrap_or("—")),
                a.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
                a.outcome.word(),
                a.error.as_deref().map(cell).unwrap_or_default()
            );
        }
        out.push('\n');
    }

    if !saved.tool_calls.is_empty() {
        let _ = writeln!(out, "### Tool calls\n");
        let _ = writeln!(
            out,
            "| subtask | attempt | tool | arguments | time | outcome | bytes |\n\
             |---|---:|---|---|---:|---|---:|"
        );
        for c in &saved.tool_calls {
            let outcome = match (c.ok, &c.summary) {
                (Some(true), Some(summary)) => cell(summary),
                (Some(false), Some(summary)) => format!("failed: {}", cell(summary)),
                _ => "no answer".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(c.subtask.as_str()),
                c.attempt,
                cell(&c.tool),
                cell(&c.arguments),
                c.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
                outcome,
                c.bytes.map(|b| b.to_string()).unwrap_or_else(|| "—".into())
            );
        }
        out.push('\n');
    }

    let sourced: Vec<(&str, &crate::protocol::Source)> = report
        .subtasks
        .iter()
        .flat_map(|t| t.sources.iter().map(move |src| (t.id.as_str(), src)))
        .collect();
    if !sourced.is_empty() {
        // The sources behind the results (each subtask's latest attempt), as the run's own
        // report lists them; their text stays in the database.
        let _ = writeln!(out, "## Sources\n");
        let _ = writeln!(
            out,
            "| # | location | subtask | status | bytes | retrieved |\n|---:|---|---|---|---:|---|"
        );
        for (n, (subtask, src)) in sourced.into_iter().enumerate() {
            let number = if src.number == 0 {
                n as u32 + 1
            } else {
                src.number
            };
            let _ = writeln!(
                out,
                "| {number} | {} | {} | {} | {} | {} |",
                cell(&src.location),
                cell(subtask),
                src.status
                    .map(|code| format!("HTTP {code}"))
                    .unwrap_or_else(|| "—".into()),
                src.bytes,
                crate::display::utc(src.retrieved_ms)
            );
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Appendix: subtask results\n");
    if saved.subtasks.is_empty() {
        let _ = writeln!(out, "_No subtasks._\n");
    }
    for t in &saved.subtasks {
        let _ = writeln!(
            out,
            "### {} — {}\n",
            sanitize_line(t.id.as_str()),
            sanitize_line(&t.title)
        );
        let _ = writeln!(
            out,
            "_{} · {} · {}_\n",
            sanitize_line(&t.worker),
            t.status.word(),
            t.elapsed_ms.map(duration).unwrap_or_else(|| "—".into())
        );
        match (&t.result, &t.error) {
            (Some(result), _) if !result.trim().is_empty() => {
                let _ = writeln!(out, "{}\n", sanitize(result.trim()));
            }
            (_, Some(error)) => {
                let _ = writeln!(out, "_No result: {}._\n", sanitize_line(error));
            }
            _ => {
                let _ = writeln!(out, "_No result._\n");
            }
        }
    }
    // Last, as `maestro run` ends its report: the run over time, from the saved calls.
    if let Some(chart) = report.timeline_chart() {
        let _ = writeln!(out, "## Timeline\n\n```text\n{chart}```");
    }
    out
}

fn cell(text: &str) -> String {
    sanitize_line(text).replace('|', "\\|")
}

fn usage_text(u: Usage) -> String {
    let est = if u.estimated {
        " (partly estimated)"
    } else {
        ""
    };
    format!(
        "{} in, {} out{est}",
        tokens(u.tokens_in),
        tokens(u.tokens_out)
    )
}

/// `planner`, `synthesis`, or the worker's subtask id.
fn call_name(a: &store::SavedAttempt) -> String {
    match a.role {
        CallRole::Planner => "planner".to_owned(),
        CallRole::Synthesizer => "synthesis".to_owned(),
        CallRole::Validator => "validator".to_owned(),
        CallRole::Worker => a
            .subtask
            .as_ref()
            .map_or_else(|| "worker".to_owned(), |s| cell(s.as_str())),
    }
}

/// The report's first paragraph that is not a heading, cut at a word near
/// [`PARENT_SUMMARY_CHARS`].
fn summary_of(report: &str) -> String {
    let paragraph = report
        .split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty() && !p.starts_with('#'))
        .unwrap_or("");
    let text = sanitize_line(paragraph).into_owned();
    if text.chars().count() <= PARENT_SUMMARY_CHARS {
        return text;
    }
    let cut: String = text.chars().take(PARENT_SUMMARY_CHARS).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{cut} …")
}

// ---- JSON -----------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct ExportJson<'a> {
    pub run_id: String,
    pub short_id: &'a str,
    pub query: &'a str,
    pub status: &'static str,
    pub error: Option<&'a str>,
    pub provider: &'a str,
    pub models: Models<'a>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub usage: Usage,
    pub parent: Option<ParentJson>,
    pub plan: Option<&'a store::SavedPlan>,
    pub synthesis: SynthesisJson,
    pub subtasks: Vec<SubtaskJson<'a>>,
    /// Every model call, planner and synthesis included, in the order they started.
    pub attempts: Vec<AttemptJson<'a>>,
    /// The files attached to the run (path and size) and those skipped; absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<ContextJson>,
    /// Every tool call of every worker attempt, in the order they started, with the source
    /// it read (its text is not exported: it stays in the database).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ToolCallJson<'a> {
    pub subtask: &'a str,
    pub attempt: u32,
    pub call_id: &'a str,
    pub tool: &'a str,
    pub arguments: &'a str,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub ok: Option<bool>,
    pub bytes: Option<u64>,
    pub summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceJson<'a>>,
}

/// A source as `maestro run --format json` gives it, and how long its text was.
#[derive(Debug, Serialize)]
pub struct SourceJson<'a> {
    #[serde(flatten)]
    pub source: &'a crate::protocol::Source,
    /// Bytes of text handed to the model (the database keeps up to
    /// [`store::SOURCE_TEXT_MAX`] of them).
    pub text_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ContextJson {
    pub files: Vec<crate::protocol::ContextFile>,
    pub skipped: Vec<crate::protocol::SkippedFile>,
}

#[derive(Debug, Serialize)]
pub struct Models<'a> {
    pub planner: Option<&'a str>,
    pub worker: Option<&'a str>,
    pub synthesizer: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct ParentJson {
    pub run_id: String,
    pub query: String,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct SynthesisJson {
    pub text: String,
    pub synthesized: bool,
    pub model: Option<String>,
    /// How many versions of the report were saved.
    pub versions: usize,
}

#[derive(Debug, Serialize)]
pub struct SubtaskJson<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub worker: &'a str,
    pub description: &'a str,
    pub depends_on: Vec<&'a str>,
    pub priority: &'a str,
    pub status: &'static str,
    pub model: Option<&'a str>,
    pub elapsed_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub usage_estimated: bool,
    pub attempts: u32,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    pub cut_off: bool,
    /// When it could run, its first call and its end, in ms from the run's first call, as
    /// `maestro run --format json` gives them.
    pub ready_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Each attempt's start, end and the back-off before it, in the same ms.
    pub attempt_times: Vec<AttemptTime>,
    /// What the latest attempt's tools read, as `maestro run --format json` lists them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::protocol::Source>,
}

#[derive(Debug, Serialize)]
pub struct AttemptJson<'a> {
    pub role: CallRole,
    pub subtask: Option<&'a str>,
    pub attempt: u32,
    pub model: Option<&'a str>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub outcome: &'static str,
    pub error: Option<&'a str>,
}

/// The same content as [`markdown`], as one object.
pub fn json<'a>(saved: &'a SavedRun, parent: Option<&SavedRun>) -> ExportJson<'a> {
    let report: RunReport = history::report_of(saved);
    let s = &saved.summary;
    let timed = report.subtask_times();
    let times = |t: &store::SavedSubtask| timed.iter().find(|j| j.subtask.id == t.id);
    ExportJson {
        run_id: s.id.to_string(),
        short_id: &s.short_id,
        query: &s.query,
        status: s.status.word(),
        error: saved.error.as_deref(),
        provider: &s.provider,
        models: Models {
            planner: saved.planner_model.as_deref(),
            worker: saved.worker_model.as_deref(),
            synthesizer: saved.synthesizer_model.as_deref(),
        },
        started_ms: s.started_ms,
        finished_ms: s.finished_ms,
        elapsed_ms: report.elapsed_ms,
        usage: s.usage,
        parent: parent.map(|p| ParentJson {
            run_id: p.summary.id.to_string(),
            query: p.summary.query.clone(),
            summary: p
                .syntheses
                .last()
                .map(|r| summary_of(&r.text))
                .unwrap_or_default(),
        }),
        plan: saved.plan.as_ref(),
        synthesis: SynthesisJson {
            text: report.synthesis.clone(),
            synthesized: report.synthesized,
            model: report.synthesis_model.clone(),
            versions: saved.syntheses.len(),
        },
        subtasks: saved
            .subtasks
            .iter()
            .map(|t| SubtaskJson {
                id: t.id.as_str(),
                title: &t.title,
                worker: &t.worker,
                description: &t.description,
                depends_on: t.depends_on.iter().map(|d| d.as_str()).collect(),
                priority: &t.priority,
                status: t.status.word(),
                model: t.model.as_deref(),
                elapsed_ms: t.elapsed_ms,
                tokens_in: t.usage.tokens_in,
                tokens_out: t.usage.tokens_out,
                usage_estimated: t.usage.estimated,
                attempts: t.attempts,
                result: t.result.as_deref(),
                error: t.error.as_deref(),
                cut_off: t.cut_off,
                ready_ms: times(t).and_then(|j| j.ready_ms),
                started_ms: times(t).and_then(|j| j.started_ms),
                finished_ms: times(t).and_then(|j| j.finished_ms),
                attempt_times: times(t)
                    .map(|j| j.attempt_times.clone())
                    .unwrap_or_default(),
                sources: saved.sources_of(&t.id, t.attempts),
            })
            .collect(),
        attempts: saved
            .attempts
            .iter()
            .map(|a| AttemptJson {
                role: a.role,
                subtask: a.subtask.as_ref().map(|s| s.as_str()),
                attempt: a.attempt,
                model: a.model.as_deref(),
                started_ms: a.started_ms,
                finished_ms: a.finished_ms,
                elapsed_ms: a.elapsed_ms,
                outcome: a.outcome.word(),
                error: a.error.as_deref(),
            })
            .collect(),
        context: (!saved.context.is_empty()).then(|| ContextJson {
            files: saved.context.listed(),
            skipped: saved.context.skipped.clone(),
        }),
        tool_calls: saved
            .tool_calls
            .iter()
            .map(|c| ToolCallJson {
                subtask: c.subtask.as_str(),
                attempt: c.attempt,
                call_id: &c.call_id,
                tool: &c.tool,
                arguments: &c.arguments,
                started_ms: c.started_ms,
                finished_ms: c.finished_ms,
                elapsed_ms: c.elapsed_ms,
                ok: c.ok,
                bytes: c.bytes,
                summary: c.summary.as_deref(),
                source: saved
                    .sources
                    .iter()
                    .rev()
                    .find(|s| {
                        s.subtask == c.subtask && s.attempt == c.attempt && s.call_id == c.call_id
                    })
                    .map(|s| SourceJson {
                        source: &s.source,
                        text_bytes: s.text_bytes,
                    }),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_read_as_the_calendar_does() {
        assert_eq!(crate::display::utc(0), "1970-01-01 00:00 UTC");
        // 2024-02-29 12:34:56 UTC, a leap day.
        assert_eq!(
            crate::display::utc(1_709_210_096_000),
            "2024-02-29 12:34 UTC"
        );
        assert_eq!(
            crate::display::utc(1_798_675_200_000),
            "2026-12-31 00:00 UTC"
        );
    }

    #[test]
    fn a_parent_summary_is_its_first_paragraph_cut_at_a_word() {
        assert_eq!(
            summary_of("# Title\n\nFirst para.\n\nSecond."),
            "First para."
        );
        let long = "word ".repeat(200);
        let cut = summary_of(&long);
        assert!(cut.ends_with(" …"), "{cut}");
        assert!(cut.chars().count() <= PARENT_SUMMARY_CHARS + 2);
    }
}
