//! Comparing two runs, as data: which subtasks the plans added, removed or changed (matched by
//! id, then by title), each subtask's status, time and tokens side by side, and a line-level
//! diff of two reports. Shared by `maestro diff` and the dashboard's "what changed" view.
//!
//! Pure: no I/O, no colour, no terminal. Callers decide how the lines look.

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::report::{RunReport, SubtaskReport};

/// Whether a report line is in both versions, only the old one or only the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineTag {
    Same,
    Removed,
    Added,
}

impl LineTag {
    /// The mark a unified diff puts before the line: ` `, `-` or `+`.
    pub fn sign(self) -> char {
        match self {
            Self::Same => ' ',
            Self::Removed => '-',
            Self::Added => '+',
        }
    }
}

/// One line of a report diff, without its line break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub tag: LineTag,
    pub text: String,
}

/// The lines of `old` and `new`, in order, each marked as kept, removed or added (a Myers diff
/// over lines). Identical texts give only `Same` lines.
pub fn report_diff(old: &str, new: &str) -> Vec<DiffLine> {
    // A missing final line break would make the last line differ from itself.
    let ended = |t: &str| {
        let mut t = t.replace("\r\n", "\n");
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        t
    };
    let (old, new) = (ended(old), ended(new));
    TextDiff::from_lines(&old, &new)
        .iter_all_changes()
        .map(|change| DiffLine {
            tag: match change.tag() {
                ChangeTag::Equal => LineTag::Same,
                ChangeTag::Delete => LineTag::Removed,
                ChangeTag::Insert => LineTag::Added,
            },
            text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
        })
        .collect()
}

/// Whether two reports differ at all, line by line.
pub fn changed(lines: &[DiffLine]) -> bool {
    lines.iter().any(|l| l.tag != LineTag::Same)
}

/// How many lines were added and removed.
pub fn counts(lines: &[DiffLine]) -> (usize, usize) {
    let of = |t: LineTag| lines.iter().filter(|l| l.tag == t).count();
    (of(LineTag::Added), of(LineTag::Removed))
}

/// What a plan says about one subtask, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubtaskFacts {
    pub id: String,
    pub title: String,
    pub worker: String,
    pub description: String,
    pub depends_on: Vec<String>,
    pub priority: String,
    /// A status word (`done`, `failed`…); callers with richer words (a saved run's
    /// `interrupted`) may replace it.
    pub status: String,
    pub elapsed_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub attempts: u32,
}

impl SubtaskFacts {
    fn of(report: &RunReport, s: &SubtaskReport) -> Self {
        let priority = report
            .plan
            .as_ref()
            .and_then(|p| p.subtasks.iter().find(|p| p.id == s.id))
            .map(|p| p.priority.word())
            .unwrap_or("medium");
        Self {
            id: s.id.as_str().to_owned(),
            title: s.title.clone(),
            worker: s.worker.clone(),
            description: s.description.clone(),
            depends_on: s.depends_on.iter().map(|d| d.as_str().to_owned()).collect(),
            priority: priority.to_owned(),
            status: s.status.word().to_owned(),
            elapsed_ms: s.elapsed_ms,
            tokens_in: s.tokens_in,
            tokens_out: s.tokens_out,
            attempts: s.attempts,
        }
    }
}

/// Every subtask of a report, in plan order.
pub fn facts_of(report: &RunReport) -> Vec<SubtaskFacts> {
    report
        .subtasks
        .iter()
        .map(|s| SubtaskFacts::of(report, s))
        .collect()
}

/// One plan field that differs between matched subtasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// `id`, `title`, `role`, `description`, `depends_on` or `priority`.
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

/// A subtask of either run, paired with its match in the other if it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubtaskPair {
    pub old: Option<SubtaskFacts>,
    pub new: Option<SubtaskFacts>,
    /// The plan fields that differ; empty for an unchanged, added or removed subtask.
    pub changes: Vec<FieldChange>,
}

impl SubtaskPair {
    pub fn kind(&self) -> PairKind {
        match (&self.old, &self.new) {
            (Some(_), None) => PairKind::Removed,
            (None, Some(_)) => PairKind::Added,
            _ if !self.changes.is_empty() => PairKind::Changed,
            _ => PairKind::Same,
        }
    }

    /// The id it is known by: the new run's, else the old one's.
    pub fn id(&self) -> &str {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .map_or("", |s| s.id.as_str())
    }

    pub fn title(&self) -> &str {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .map_or("", |s| s.title.as_str())
    }
}

/// How a subtask's plan entry differs between the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PairKind {
    Same,
    Changed,
    Added,
    Removed,
}

/// Two runs compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunDiff {
    /// Old run's subtasks in plan order (each with its match), then the new run's unmatched
    /// ones in plan order.
    pub subtasks: Vec<SubtaskPair>,
    pub report: Vec<DiffLine>,
}

impl RunDiff {
    /// Whether the plans differ: a subtask added, removed or changed.
    pub fn plan_changed(&self) -> bool {
        self.subtasks.iter().any(|p| p.kind() != PairKind::Same)
    }
}

/// Pairs the subtasks of two runs (same id first; then, among those left, same title) and
/// diffs the reports.
pub fn compare(
    old: &[SubtaskFacts],
    new: &[SubtaskFacts],
    old_report: &str,
    new_report: &str,
) -> RunDiff {
    let mut matched: Vec<Option<usize>> = vec![None; old.len()];
    let mut taken = vec![false; new.len()];
    for (i, o) in old.iter().enumerate() {
        if let Some(j) = new.iter().position(|n| n.id == o.id) {
            matched[i] = Some(j);
            taken[j] = true;
        }
    }
    for (i, o) in old.iter().enumerate() {
        if matched[i].is_some() {
            continue;
        }
        if let Some(j) = (0..new.len()).find(|&j| !taken[j] && new[j].title == o.title) {
            matched[i] = Some(j);
            taken[j] = true;
        }
    }
    let mut subtasks: Vec<SubtaskPair> = old
        .iter()
        .zip(&matched)
        .map(|(o, m)| {
            let n = m.map(|j| &new[j]);
            SubtaskPair {
                old: Some(o.clone()),
                new: n.cloned(),
                changes: n.map(|n| field_changes(o, n)).unwrap_or_default(),
            }
        })
        .collect();
    subtasks.extend(
        new.iter()
            .zip(&taken)
            .filter(|(_, taken)| !**taken)
            .map(|(n, _)| SubtaskPair {
                old: None,
                new: Some(n.clone()),
                changes: Vec::new(),
            }),
    );
    RunDiff {
        subtasks,
        report: report_diff(old_report, new_report),
    }
}

/// [`compare`] of two reports as the front ends hold them.
pub fn compare_reports(old: &RunReport, new: &RunReport) -> RunDiff {
    compare(
        &facts_of(old),
        &facts_of(new),
        &old.synthesis,
        &new.synthesis,
    )
}

fn field_changes(old: &SubtaskFacts, new: &SubtaskFacts) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, a: String, b: String| {
        if a != b {
            out.push(FieldChange {
                field: name,
                old: a,
                new: b,
            });
        }
    };
    field("id", old.id.clone(), new.id.clone());
    field("title", old.title.clone(), new.title.clone());
    field("role", old.worker.clone(), new.worker.clone());
    field(
        "description",
        old.description.clone(),
        new.description.clone(),
    );
    field(
        "depends_on",
        old.depends_on.join(", "),
        new.depends_on.join(", "),
    );
    field("priority", old.priority.clone(), new.priority.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_in_place_whatever_the_line_endings() {
        let lines = report_diff("# Title\r\nold claim\r\nend\r\n", "# Title\nnew claim\nend");
        let marked: Vec<(LineTag, &str)> = lines.iter().map(|l| (l.tag, l.text.as_str())).collect();
        assert_eq!(
            marked,
            [
                (LineTag::Same, "# Title"),
                (LineTag::Removed, "old claim"),
                (LineTag::Added, "new claim"),
                (LineTag::Same, "end"),
            ]
        );
        assert_eq!(counts(&lines), (1, 1));
        assert_eq!(counts(&report_diff("a\nb\n", "a\nb")), (0, 0));
    }

    fn facts(id: &str, title: &str) -> SubtaskFacts {
        SubtaskFacts {
            id: id.into(),
            title: title.into(),
            worker: "research".into(),
            description: format!("About {title}."),
            depends_on: Vec::new(),
            priority: "medium".into(),
            status: "done".into(),
            elapsed_ms: Some(1000),
            tokens_in: 10,
            tokens_out: 5,
            attempts: 1,
        }
    }

    #[test]
    fn report_lines_are_marked_kept_removed_and_added() {
        let lines = report_diff("# R\nold line\nsame\n", "# R\nnew line\nsame\nmore\n");
        let marked: Vec<String> = lines
            .iter()
            .map(|l| format!("{}{}", l.tag.sign(), l.text))
            .collect();
        assert_eq!(marked, [" # R", "-old line", "+new line", " same", "+more"]);
        assert!(changed(&lines));
        assert!(!changed(&report_diff("a\nb", "a\nb")));
        // A missing final line break is not a change of the line.
        assert!(!changed(&report_diff("a\nb\n", "a\nb")));
    }

    #[test]
    fn subtasks_match_by_id_then_by_title() {
        let old = vec![facts("a", "Alpha"), facts("b", "Beta"), facts("c", "Gamma")];
        let mut renamed = facts("b2", "Beta");
        renamed.priority = "high".into();
        let new = vec![facts("a", "Alpha"), renamed, facts("d", "Delta")];
        let diff = compare(&old, &new, "", "");
        let kinds: Vec<(&str, PairKind)> =
            diff.subtasks.iter().map(|p| (p.id(), p.kind())).collect();
        assert_eq!(
            kinds,
            [
                ("a", PairKind::Same),
                ("b2", PairKind::Changed),
                ("c", PairKind::Removed),
                ("d", PairKind::Added),
            ]
        );
        let fields: Vec<&str> = diff.subtasks[1].changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["id", "priority"]);
        assert!(diff.plan_changed());
    }

    #[test]
    fn the_same_plan_is_unchanged_even_when_outcomes_differ() {
        let old = vec![facts("a", "Alpha")];
        let mut failed = facts("a", "Alpha");
        failed.status = "failed".into();
        let diff = compare(&[failed], &old, "x\n", "x\n");
        assert!(!diff.plan_changed());
        assert_eq!(
            diff.subtasks[0].old.as_ref().map(|s| s.status.as_str()),
            Some("failed")
        );
        assert!(!changed(&diff.report));
    }
}
