//! `maestro diff`: two saved runs side by side — how the plans differ, each subtask's status,
//! time and tokens in both, and a line diff of the two reports — as text (coloured on a
//! terminal) or JSON.
//!
//! The comparing itself is [`crate::diff`]; this module only loads the runs and lays the result
//! out. It reads only and talks to no provider. Model text is sanitised before colour codes
//! are put around it, so a report cannot smuggle its own escapes.

use std::fmt::Write as _;
use std::io::Write;

use serde::Serialize;

use crate::cli::DiffArgs;
use crate::config::StoreConfig;
use crate::diff::{self, DiffLine, LineTag, PairKind, RunDiff, SubtaskFacts, SubtaskPair};
use crate::display::{duration, tokens, truncate};
use crate::history::{self, Failure, FailureKind};
use crate::sanitize::sanitize_line;
use crate::store::SavedRun;

/// Unchanged report lines kept around each change; longer unchanged stretches are folded.
const CONTEXT: usize = 3;

/// `maestro diff`. `colour` is for a terminal that wants it (the caller checks `NO_COLOR`).
pub fn diff(
    store: &StoreConfig,
    args: &DiffArgs,
    colour: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let db = history::open_store(store)?;
    let old = history::resolve(&db, &args.old)?;
    let new = history::resolve(&db, &args.new)?;
    let compared = compare(&old, &new);
    let bytes = if args.json {
        let mut buf = Vec::new();
        let _ = crate::sanitize::write_json(&mut buf, &json(&old, &new, &compared));
        buf.push(b'\n');
        buf
    } else {
        text(&old, &new, &compared, colour).into_bytes()
    };
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure {
            kind: FailureKind::Output,
            message: format!("cannot write to stdout: {e}"),
        })
}

/// The two runs compared, with the saved status words (`interrupted`) rather than the
/// engine's.
pub fn compare(old: &SavedRun, new: &SavedRun) -> RunDiff {
    let old_report = history::report_of(old);
    let new_report = history::report_of(new);
    diff::compare(
        &saved_facts(old, diff::facts_of(&old_report)),
        &saved_facts(new, diff::facts_of(&new_report)),
        &old_report.synthesis,
        &new_report.synthesis,
    )
}

fn saved_facts(saved: &SavedRun, mut facts: Vec<SubtaskFacts>) -> Vec<SubtaskFacts> {
    for f in &mut facts {
        if let Some(s) = saved.subtasks.iter().find(|s| s.id.as_str() == f.id) {
            f.status = s.status.word().to_owned();
        }
    }
    facts
}

// ---- text -----------------------------------------------------------------------------------

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn added(&self, t: &str) -> String {
        self.wrap("32", t)
    }
    fn removed(&self, t: &str) -> String {
        self.wrap("31", t)
    }
    fn changed(&self, t: &str) -> String {
        self.wrap("33", t)
    }
    fn heading(&self, t: &str) -> String {
        self.wrap("1", t)
    }
    fn dim(&self, t: &str) -> String {
        self.wrap("2", t)
    }
}

/// The text of `maestro diff`.
pub fn text(old: &SavedRun, new: &SavedRun, d: &RunDiff, colour: bool) -> String {
    let p = Paint { on: colour };
    let mut out = String::new();
    for (sign, run) in [("-", old), ("+", new)] {
        let line = format!(
            "{sign} {}  {}  {}  {}",
            run.summary.short_id,
            crate::display::utc(run.summary.started_ms),
            run.summary.status.word(),
            truncate(&sanitize_line(&run.summary.query), 60)
        );
        out.push_str(&if sign == "-" {
            p.removed(&line)
        } else {
            p.added(&line)
        });
        out.push('\n');
    }

    let _ = writeln!(out, "\n{}", p.heading("Plan"));
    if d.plan_changed() {
        for pair in &d.subtasks {
            let label = format!(
                "{}  {}",
                sanitize_line(pair.id()),
                truncate(&sanitize_line(pair.title()), 50)
            );
            match pair.kind() {
                PairKind::Same => {
                    let _ = writeln!(out, "  {}", p.dim(&format!("  {label}")));
                }
                PairKind::Added => {
                    let _ = writeln!(out, "  {}", p.added(&format!("+ {label}  (added)")));
                }
                PairKind::Removed => {
                    let _ = writeln!(out, "  {}", p.removed(&format!("- {label}  (removed)")));
                }
                PairKind::Changed => {
                    let _ = writeln!(out, "  {}", p.changed(&format!("~ {label}  (changed)")));
                    for c in &pair.changes {
                        let _ = writeln!(
                            out,
                            "      {}: {} → {}",
                            c.field,
                            p.removed(&truncate(&sanitize_line(&c.old), 60)),
                            p.added(&truncate(&sanitize_line(&c.new), 60))
                        );
                    }
                }
            }
        }
    } else {
        let _ = writeln!(
            out,
            "  the same {} subtask{}",
            d.subtasks.len(),
            if d.subtasks.len() == 1 { "" } else { "s" }
        );
    }

    let _ = writeln!(out, "\n{}", p.heading("Subtasks (old → new)"));
    if d.subtasks.is_empty() {
        let _ = writeln!(out, "  (no subtasks in either run)");
    }
    let id_w = d
        .subtasks
        .iter()
        .map(|s| sanitize_line(s.id()).chars().count())
        .max()
        .unwrap_or(2)
        .max(2);
    if !d.subtasks.is_empty() {
        let _ = writeln!(
            out,
            "  {:<id_w$}  {:<24}  {:<15}  {:<15}  {:<13}",
            "ID", "STATUS", "TIME", "TOKENS", "ATTEMPTS"
        );
    }
    for pair in &d.subtasks {
        let _ = writeln!(out, "  {}", subtask_row(pair, id_w, &p));
    }

    let _ = writeln!(out, "\n{}", p.heading("Report"));
    if !diff::changed(&d.report) {
        let _ = writeln!(out, "  the reports are the same");
    } else {
        let _ = writeln!(
            out,
            "{}",
            p.removed(&format!("--- {}", old.summary.short_id))
        );
        let _ = writeln!(out, "{}", p.added(&format!("+++ {}", new.summary.short_id)));
        for line in folded(&d.report) {
            match line {
                None => {
                    let _ = writeln!(out, "{}", p.dim("@@ …"));
                }
                Some(l) => {
                    let text = format!("{}{}", l.tag.sign(), sanitize_line(&l.text));
                    let _ = writeln!(
                        out,
                        "{}",
                        match l.tag {
                            LineTag::Same => text,
                            LineTag::Added => p.added(&text),
                            LineTag::Removed => p.removed(&text),
                        }
                    );
                }
            }
        }
    }
    out
}

fn subtask_row(pair: &SubtaskPair, id_w: usize, p: &Paint) -> String {
    let side = |s: &Option<SubtaskFacts>, f: &dyn Fn(&SubtaskFacts) -> String| {
        s.as_ref().map_or_else(|| "—".to_owned(), f)
    };
    let both = |f: &dyn Fn(&SubtaskFacts) -> String, w: usize| {
        let a = side(&pair.old, f);
        let b = side(&pair.new, f);
        let cell = format!("{a} → {b}");
        let padded = format!("{cell:<w$}");
        if a == b { padded } else { p.changed(&padded) }
    };
    let id = format!("{:<id_w$}", sanitize_line(pair.id()));
    let id = match pair.kind() {
        PairKind::Added => p.added(&id),
        PairKind::Removed => p.removed(&id),
        PairKind::Changed => p.changed(&id),
        PairKind::Same => id,
    };
    format!(
        "{id}  {}  {}  {}  {}",
        both(&|s| s.status.clone(), 24),
        both(
            &|s| s.elapsed_ms.map(duration).unwrap_or_else(|| "—".into()),
            15
        ),
        both(&|s| tokens(s.tokens_in + s.tokens_out), 15),
        both(&|s| s.attempts.to_string(), 13),
    )
}

/// The report diff with long unchanged stretches folded: `None` stands for folded lines.
fn folded(lines: &[DiffLine]) -> Vec<Option<&DiffLine>> {
    let near_change = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(lines.len());
        lines[lo..hi].iter().any(|l| l.tag != LineTag::Same)
    };
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.tag != LineTag::Same || near_change(i) {
            out.push(Some(line));
        } else if out.last().is_some_and(Option::is_some) || out.is_empty() {
            out.push(None);
        }
    }
    out
}

// ---- JSON -----------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct DiffJson<'a> {
    pub old: RunRef<'a>,
    pub new: RunRef<'a>,
    pub plan_changed: bool,
    pub subtasks: Vec<PairJson<'a>>,
    pub report_changed: bool,
    pub report: &'a [DiffLine],
}

#[derive(Debug, Serialize)]
pub struct RunRef<'a> {
    pub run_id: String,
    pub short_id: &'a str,
    pub query: &'a str,
    pub status: &'static str,
}

#[derive(Debug, Serialize)]
pub struct PairJson<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub change: PairKind,
    #[serde(flatten)]
    pub pair: &'a SubtaskPair,
}

fn run_ref(run: &SavedRun) -> RunRef<'_> {
    RunRef {
        run_id: run.summary.id.to_string(),
        short_id: &run.summary.short_id,
        query: &run.summary.query,
        status: run.summary.status.word(),
    }
}

pub fn json<'a>(old: &'a SavedRun, new: &'a SavedRun, d: &'a RunDiff) -> DiffJson<'a> {
    DiffJson {
        old: run_ref(old),
        new: run_ref(new),
        plan_changed: d.plan_changed(),
        subtasks: d
            .subtasks
            .iter()
            .map(|pair| PairJson {
                id: pair.id(),
                title: pair.title(),
                change: pair.kind(),
                pair,
            })
            .collect(),
        report_changed: diff::changed(&d.report),
        report: &d.report,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{RunId, Usage};
    use crate::store::{RunSummary, SavedRunStatus, SavedSynthesis};

    fn run(report: &str) -> SavedRun {
        SavedRun {
            summary: RunSummary {
                id: RunId::new(),
                short_id: "0123abcd".into(),
                parent: None,
                query: "q".into(),
                provider: "openai".into(),
                status: SavedRunStatus::Succeeded,
                started_ms: 0,
                finished_ms: Some(10),
                elapsed_ms: Some(10),
                usage: Usage::default(),
                succeeded: 0,
                failed: 0,
                total: 0,
            },
            planner_model: None,
            worker_model: None,
            synthesizer_model: None,
            preset: None,
            settings: serde_json::json!({}),
            error: None,
            plan: None,
            subtasks: Vec::new(),
            attempts: Vec::new(),
            syntheses: vec![SavedSynthesis {
                version: 1,
                attempt: 1,
                model: None,
                text: report.into(),
                synthesized: true,
                error: None,
                usage: Usage::default(),
                finished_ms: 10,
            }],
            commands: Vec::new(),
            notices: Vec::new(),
            context: Default::default(),
            tool_calls: Vec::new(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn colour_wraps_sanitised_lines_and_plain_text_has_no_escapes() {
        let old = run("# R\nkept\n");
        let new = run("# R\nkept\nnew \x1b]52;c;bWFs\x07line\n");
        let d = compare(&old, &new);
        let coloured = text(&old, &new, &d, true);
        assert!(coloured.contains("\x1b[32m+new "), "{coloured:?}");
        assert!(
            !coloured.contains("\x1b]52"),
            "model escapes are stripped: {coloured:?}"
        );
        let plain = text(&old, &new, &d, false);
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(plain.contains("\n+new "), "{plain:?}");
    }

    #[test]
    fn long_unchanged_stretches_fold_to_one_marker() {
        let old: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 10\n", "line ten\n");
        let lines = diff::report_diff(&old, &new);
        let shown = folded(&lines);
        let markers = shown.iter().filter(|l| l.is_none()).count();
        assert_eq!(markers, 2, "before and after the change");
        let texts: Vec<&str> = shown.iter().flatten().map(|l| l.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "line 7", "line 8", "line 9", "line 10", "line ten", "line 11", "line 12",
                "line 13"
            ]
        );
    }
}
