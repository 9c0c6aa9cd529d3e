//! Reading saved runs back into plain structs: the history list, short id prefixes, a whole
//! run, and what a resume needs. Only queries here; writes live in `writer` and `mod`.

use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::error::{Candidate, StoreError};
use crate::protocol::{
    Attachments, CallRole, RunId, RunStatus, Source, SourceKind, SubtaskId, SubtaskStatus, Usage,
};

/// A run's status as saved: the engine's outcomes plus `running` and `interrupted` (its
/// process stopped before the run finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedRunStatus {
    Running,
    Succeeded,
    Partial,
    Failed,
    Cancelled,
    Interrupted,
}

impl SavedRunStatus {
    pub fn word(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Succeeded,
            Self::Partial,
            Self::Failed,
            Self::Cancelled,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }
}

impl From<RunStatus> for SavedRunStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Succeeded => Self::Succeeded,
            RunStatus::Partial => Self::Partial,
            RunStatus::Failed => Self::Failed,
            RunStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// A subtask's status as saved: the protocol's, plus `interrupted` (it was in flight when its
/// process stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SavedSubtaskStatus {
    Pending,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Blocked,
    Cancelled,
    Interrupted,
}

impl SavedSubtaskStatus {
    pub fn word(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Retrying,
            Self::Succeeded,
            Self::Failed,
            Self::Blocked,
            Self::Cancelled,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }

    /// The protocol's status, where there is one.
    pub fn live(self) -> Option<SubtaskStatus> {
        match self {
            Self::Pending => Some(SubtaskStatus::Pending),
            Self::Running => Some(SubtaskStatus::Running),
            Self::Retrying => Some(SubtaskStatus::Retrying),
            Self::Succeeded => Some(SubtaskStatus::Succeeded),
            Self::Failed => Some(SubtaskStatus::Failed),
            Self::Blocked => Some(SubtaskStatus::Blocked),
            Self::Cancelled => Some(SubtaskStatus::Cancelled),
            Self::Interrupted => None,
        }
    }
}

/// How one model call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Running,
    Succeeded,
    /// Failed, and another attempt was scheduled.
    Retried,
    /// The planner's answer was not a usable plan.
    Rejected,
    Failed,
    Cancelled,
    Interrupted,
}

impl AttemptOutcome {
    pub fn word(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Succeeded,
            Self::Retried,
            Self::Rejected,
            Self::Failed,
            Self::Cancelled,
            Self::Interrupted,
        ]
        .into_iter()
        .find(|s| s.word() == word)
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// At most this many, newest first. `None` lists all.
    pub limit: Option<usize>,
    pub status: Option<SavedRunStatus>,
    /// Case-insensitive text to find in the query or in any version of the report.
    pub search: Option<String>,
}

/// One line of the history list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: RunId,
    /// The shortest prefix of the id (hex digits, no dashes, at least 8) that no other saved
    /// run shares.
    pub short_id: String,
    pub parent: Option<RunId>,
    pub query: String,
    pub provider: String,
    pub status: SavedRunStatus,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub usage: Usage,
    pub succeeded: u32,
    /// Subtasks without a result: failed, blocked, cancelled or interrupted.
    pub failed: u32,
    pub total: u32,
}

/// The plan as saved: the same JSON shape as the engine's plan (`docs/ARCHITECTURE.md`, the
/// plan contract), so `serde_json` maps one into the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    #[serde(default)]
    pub query_analysis: String,
    pub subtasks: Vec<SavedPlannedSubtask>,
    #[serde(default)]
    pub synthesis_guidance: String,
    /// How the planner classified the query (`straightforward`, `breadth_first`,
    /// `depth_first`); absent in older plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlannedSubtask {
    pub id: SubtaskId,
    pub worker: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub focus_areas: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<SubtaskId>,
    /// `high`, `medium` or `low`.
    #[serde(default = "medium")]
    pub priority: String,
    /// The earlier run's subtask whose result a follow-up's subtask took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<SubtaskId>,
    /// The model the plan gave this subtask of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

fn medium() -> String {
    "medium".into()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedSubtask {
    pub id: SubtaskId,
    pub position: u32,
    pub worker: String,
    pub title: String,
    pub description: String,
    pub focus_areas: Vec<String>,
    pub depends_on: Vec<SubtaskId>,
    pub priority: String,
    pub status: SavedSubtaskStatus,
    pub waiting_on: Vec<SubtaskId>,
    pub attempts: u32,
    pub model: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub usage: Usage,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    /// The result stopped at the model's token limit.
    pub cut_off: bool,
    /// The result came from the result cache.
    pub cached: bool,
    /// Why the validator flagged the current result; `None`: not flagged.
    pub flagged: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedAttempt {
    pub role: CallRole,
    pub subtask: Option<SubtaskId>,
    pub attempt: u32,
    pub worker: Option<String>,
    pub model: Option<String>,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    pub retry_delay_ms: Option<u64>,
    /// The result of a successful worker attempt, or the partial text of a failed one.
    pub output: Option<String>,
    /// Known once the call finished.
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSynthesis {
    /// 1 for the first report of the run, then one more for each re-synthesis.
    pub version: u32,
    pub attempt: u32,
    pub model: Option<String>,
    pub text: String,
    /// False when the synthesis call failed and `text` joins the worker results.
    pub synthesized: bool,
    pub error: Option<String>,
    pub usage: Usage,
    pub finished_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedCommand {
    pub at_ms: u64,
    /// `retry_subtask`, `retry_failed`, `cancel_subtask`, `cancel_run`, `edit_subtask`,
    /// `resynthesize` or `replan`.
    pub kind: String,
    pub subtask: Option<SubtaskId>,
    pub old_description: Option<String>,
    pub new_description: Option<String>,
    pub old_worker: Option<String>,
    pub new_worker: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedNotice {
    pub at_ms: u64,
    pub message: String,
}

/// One tool call of a worker attempt, as saved. `finished_ms` and what follows are `None`
/// while it runs (or when its process stopped first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedToolCall {
    pub subtask: SubtaskId,
    pub attempt: u32,
    /// The model's id of the call, unique within its attempt.
    pub call_id: String,
    pub tool: String,
    /// The short, sanitised rendering of what the model passed.
    pub arguments: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub elapsed_ms: Option<u64>,
    pub ok: Option<bool>,
    /// Bytes of content handed back to the model.
    pub bytes: Option<u64>,
    pub summary: Option<String>,
}

/// A source a tool call read, as saved, without its text (which can be long: read it with
/// [`super::Store::source_text`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedSource {
    pub subtask: SubtaskId,
    pub attempt: u32,
    /// The tool call that read it.
    pub call_id: String,
    /// As the event carried it (`number` 0: not numbered).
    pub source: Source,
    /// The size of the text handed to the model; more than the saved text when it was cut at
    /// [`super::SOURCE_TEXT_MAX`].
    pub text_bytes: u64,
}

/// Everything saved about one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SavedRun {
    pub summary: RunSummary,
    pub planner_model: Option<String>,
    pub worker_model: Option<String>,
    pub synthesizer_model: Option<String>,
    pub preset: Option<String>,
    pub settings: serde_json::Value,
    pub error: Option<String>,
    /// The plan as the planner (or `--plan`) gave it; edits are in `subtasks`.
    pub plan: Option<SavedPlan>,
    /// In plan order, with their current (possibly edited) description and worker.
    pub subtasks: Vec<SavedSubtask>,
    /// Every model call, in the order they started.
    pub attempts: Vec<SavedAttempt>,
    /// Every finished report, oldest first.
    pub syntheses: Vec<SavedSynthesis>,
    pub commands: Vec<SavedCommand>,
    pub notices: Vec<SavedNotice>,
    /// The files attached to the run, with their text (empty when none were).
    pub context: Attachments,
    /// Every tool call of every worker attempt, in the order they started.
    pub tool_calls: Vec<SavedToolCall>,
    /// Every source read, of every attempt, in the order their calls finished.
    pub sources: Vec<SavedSource>,
}

impl SavedRun {
    /// The sources of a subtask's attempt, in the order their calls finished: what the
    /// report lists for the subtask when `attempt` is its latest.
    pub fn sources_of(&self, subtask: &SubtaskId, attempt: u32) -> Vec<Source> {
        self.sources
            .iter()
            .filter(|s| &s.subtask == subtask && s.attempt == attempt)
            .map(|s| s.source.clone())
            .collect()
    }

    /// The highest source number saved for the run (0: none numbered), after which a resumed
    /// run numbers new sources.
    pub fn last_source_number(&self) -> u32 {
        self.sources
            .iter()
            .map(|s| s.source.number)
            .max()
            .unwrap_or(0)
    }
}

/// A finished subtask's result, which a resumed run keeps instead of calling again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResult {
    pub subtask: SubtaskId,
    pub result: String,
    pub usage: Usage,
    pub elapsed_ms: Option<u64>,
    /// Attempts made so far, so a resumed run numbers the next one after them.
    pub attempts: u32,
    pub model: Option<String>,
}

/// What resuming a run needs: its plan as it stands (edits applied), the results of the
/// subtasks that succeeded, and the last report. Subtasks not in `results` are to be run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    pub run: RunId,
    pub query: String,
    /// `None` when the run stopped before it had a plan: plan again.
    pub plan: Option<SavedPlan>,
    pub results: Vec<SavedResult>,
    pub last_synthesis: Option<SavedSynthesis>,
    /// Tokens spent so far, planner included when the run had finished once.
    pub usage: Usage,
}

impl SavedRun {
    pub fn resume_state(&self) -> ResumeState {
        let plan = self.plan.as_ref().map(|p| SavedPlan {
            query_analysis: p.query_analysis.clone(),
            subtasks: self
                .subtasks
                .iter()
                .map(|s| SavedPlannedSubtask {
                    id: s.id.clone(),
                    worker: s.worker.clone(),
                    title: s.title.clone(),
                    description: s.description.clone(),
                    focus_areas: s.focus_areas.clone(),
                    depends_on: s.depends_on.clone(),
                    priority: s.priority.clone(),
                    reuse: p
                        .subtasks
                        .iter()
                        .find(|planned| planned.id == s.id)
                        .and_then(|planned| planned.reuse.clone()),
                    model: p
                        .subtasks
                        .iter()
                        .find(|planned| planned.id == s.id)
                        .and_then(|planned| planned.model.clone()),
                })
                .collect(),
            synthesis_guidance: p.synthesis_guidance.clone(),
            complexity: p.complexity.clone(),
        });
        ResumeState {
            run: self.summary.id,
            query: self.summary.query.clone(),
            plan,
            results: self
                .subtasks
                .iter()
                .filter(|s| s.status == SavedSubtaskStatus::Succeeded)
                .filter_map(|s| {
                    Some(SavedResult {
                        subtask: s.id.clone(),
                        result: s.result.clone()?,
                        usage: s.usage,
                        elapsed_ms: s.elapsed_ms,
                        attempts: s.attempts,
                        model: s.model.clone(),
                    })
                })
                .collect(),
            last_synthesis: self.syntheses.last().cloned(),
            usage: self.summary.usage,
        }
    }
}

/// `RunId` ⇄ the text in `runs.id` (hyphenated lowercase uuid).
pub(crate) fn parse_id(text: &str) -> Option<RunId> {
    uuid::Uuid::parse_str(text).ok().map(RunId)
}

fn hex(id: &str) -> String {
    id.chars().filter(|c| *c != '-').collect()
}

/// The shortest unique prefix (at least `min` digits) of each id among `sorted` (hex, no
/// dashes, sorted): one more digit than it shares with either neighbour.
pub(crate) fn short_prefixes(sorted: &[String], min: usize) -> Vec<String> {
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    (0..sorted.len())
        .map(|i| {
            let id = &sorted[i];
            let before = if i > 0 { common(id, &sorted[i - 1]) } else { 0 };
            let after = sorted.get(i + 1).map_or(0, |n| common(id, n));
            let len = (before.max(after) + 1).max(min).min(id.len());
            id[..len].to_owned()
        })
        .collect()
}

fn u64_of(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

fn usage_of(row: &Row<'_>, base: usize) -> rusqlite::Result<Usage> {
    Ok(Usage {
        tokens_in: row.get::<_, i64>(base)?.max(0) as u64,
        tokens_out: row.get::<_, i64>(base + 1)?.max(0) as u64,
        estimated: row.get(base + 2)?,
        cached_in: 0,
    })
}

fn json_or<T: for<'de> Deserialize<'de> + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

const SUMMARY_SELECT: &str = "
    SELECT r.id, r.parent_id, r.query, r.provider, r.status, r.started_at, r.finished_at,
           r.elapsed_ms, r.tokens_in, r.tokens_out, r.usage_estimated,
           (SELECT count(*) FROM subtasks s WHERE s.run_id = r.id AND s.status = 'succeeded'),
           (SELECT count(*) FROM subtasks s WHERE s.run_id = r.id
                AND s.status IN ('failed', 'blocked', 'cancelled', 'interrupted')),
           (SELECT count(*) FROM subtasks s WHERE s.run_id = r.id)
    FROM runs r";

fn summary_of(row: &Row<'_>) -> rusqlite::Result<(String, RunSummaryParts)> {
    let id: String = row.get(0)?;
    Ok((
        id,
        RunSummaryParts {
            parent: row.get::<_, Option<String>>(1)?,
            query: row.get(2)?,
            provider: row.get(3)?,
            status: row.get(4)?,
            started_ms: row.get::<_, i64>(5)?.max(0) as u64,
            finished_ms: u64_of(row.get(6)?),
            elapsed_ms: u64_of(row.get(7)?),
            usage: usage_of(row, 8)?,
            succeeded: row.get(11)?,
            failed: row.get(12)?,
            total: row.get(13)?,
        },
    ))
}

struct RunSummaryParts {
    parent: Option<String>,
    query: String,
    provider: String,
    status: String,
    started_ms: u64,
    finished_ms: Option<u64>,
    elapsed_ms: Option<u64>,
    usage: Usage,
    succeeded: u32,
    failed: u32,
    total: u32,
}

fn bad(id: &str, detail: impl Into<String>) -> StoreError {
    StoreError::BadData {
        run: parse_id(id).unwrap_or(RunId(uuid::Uuid::nil())),
        detail: detail.into(),
    }
}

fn finish_summary(
    id: String,
    parts: RunSummaryParts,
    short_id: String,
) -> Result<RunSummary, StoreError> {
    Ok(RunSummary {
        id: parse_id(&id).ok_or_else(|| bad(&id, format!("`{id}` is not a run id")))?,
        short_id,
        parent: parts.parent.as_deref().and_then(parse_id),
        query: parts.query,
        provider: parts.provider,
        status: SavedRunStatus::parse(&parts.status)
            .ok_or_else(|| bad(&id, format!("unknown status `{}`", parts.status)))?,
        started_ms: parts.started_ms,
        finished_ms: parts.finished_ms,
        elapsed_ms: parts.elapsed_ms,
        usage: parts.usage,
        succeeded: parts.succeeded,
        failed: parts.failed,
        total: parts.total,
    })
}

/// Short ids of every saved run, keyed by the full id.
fn short_ids(conn: &Connection) -> rusqlite::Result<std::collections::HashMap<String, String>> {
    let mut stmt = conn.prepare("SELECT id FROM runs")?;
    let mut ids: Vec<(String, String)> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .map(|r| r.map(|id| (hex(&id), id)))
        .collect::<rusqlite::Result<_>>()?;
    ids.sort();
    let hexes: Vec<String> = ids.iter().map(|(h, _)| h.clone()).collect();
    let shorts = short_prefixes(&hexes, 8);
    Ok(ids.into_iter().map(|(_, id)| id).zip(shorts).collect())
}

pub(crate) fn list_runs(
    conn: &Connection,
    filter: &RunFilter,
) -> rusqlite::Result<Vec<Result<RunSummary, StoreError>>> {
    let mut sql = format!("{SUMMARY_SELECT} WHERE 1");
    let status = filter.status.map(|s| s.word().to_owned());
    let search = filter.search.as_ref().map(|s| {
        let escaped = s
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    if status.is_some() {
        sql.push_str(" AND r.status = :status");
    }
    if search.is_some() {
        sql.push_str(
            " AND (lower(r.query) LIKE :search ESCAPE '\\'
                   OR EXISTS (SELECT 1 FROM syntheses y WHERE y.run_id = r.id
                              AND lower(y.text) LIKE :search ESCAPE '\\'))",
        );
    }
    sql.push_str(" ORDER BY r.started_at DESC, r.id DESC");
    if filter.limit.is_some() {
        sql.push_str(" LIMIT :limit");
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut named: Vec<(&str, &dyn rusqlite::ToSql)> = Vec::new();
    let limit = filter.limit.map(|l| l as i64);
    if let Some(s) = &status {
        named.push((":status", s));
    }
    if let Some(s) = &search {
        named.push((":search", s));
    }
    if let Some(l) = &limit {
        named.push((":limit", l));
    }
    let rows: Vec<(String, RunSummaryParts)> = stmt
        .query_map(named.as_slice(), summary_of)?
        .collect::<rusqlite::Result<_>>()?;
    let shorts = short_ids(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, parts)| {
            let short = shorts.get(&id).cloned().unwrap_or_else(|| hex(&id));
            finish_summary(id, parts, short)
        })
        .collect())
}

pub(crate) fn resolve(conn: &Connection, input: &str) -> Result<RunId, StoreError> {
    let prefix: String = input.trim().to_ascii_lowercase().replace('-', "");
    if prefix.is_empty() || prefix.len() > 32 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::InvalidId {
            input: input.to_owned(),
        });
    }
    let map = |e| StoreError::Sqlite {
        path: Default::default(),
        source: e,
    };
    let mut stmt = conn
        .prepare(
            "SELECT id, started_at, query FROM runs
             WHERE replace(id, '-', '') LIKE ?1 || '%' ORDER BY started_at, id LIMIT 11",
        )
        .map_err(map)?;
    let found: Vec<(String, i64, String)> = stmt
        .query_map([&prefix], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(map)?
        .collect::<rusqlite::Result<_>>()
        .map_err(map)?;
    match found.as_slice() {
        [] => Err(StoreError::NotFound {
            prefix: input.to_owned(),
        }),
        [(id, _, _)] => parse_id(id).ok_or_else(|| bad(id, format!("`{id}` is not a run id"))),
        many => Err(StoreError::Ambiguous {
            prefix: input.to_owned(),
            candidates: many
                .iter()
                .filter_map(|(id, started, query)| {
                    Some(Candidate {
                        id: parse_id(id)?,
                        started_ms: (*started).max(0) as u64,
                        query: query.clone(),
                    })
                })
                .collect(),
        }),
    }
}

pub(crate) fn load_run(conn: &Connection, run: RunId) -> Result<Option<SavedRun>, StoreError> {
    let map = |e| StoreError::Sqlite {
        path: Default::default(),
        source: e,
    };
    let id = run.to_string();
    let head = conn
        .query_row(
            &format!("{SUMMARY_SELECT} WHERE r.id = ?1"),
            [&id],
            summary_of,
        )
        .optional()
        .map_err(map)?;
    let Some((_, parts)) = head else {
        return Ok(None);
    };
    let shorts = short_ids(conn).map_err(map)?;
    let short = shorts.get(&id).cloned().unwrap_or_else(|| hex(&id));
    let summary = finish_summary(id.clone(), parts, short)?;

    type Extra = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let (planner_model, worker_model, synthesizer_model, preset, settings, plan, error, context): Extra =
        conn.query_row(
            "SELECT planner_model, worker_model, synthesizer_model, preset, settings, plan, error,
                    context
             FROM runs WHERE id = ?1",
            [&id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .map_err(map)?;
    let context = match context {
        Some(text) => serde_json::from_str::<Attachments>(&text)
            .map_err(|e| bad(&id, format!("its attached files are not valid JSON: {e}")))?,
        None => Attachments::default(),
    };
    let plan = match plan {
        Some(text) => Some(
            serde_json::from_str::<SavedPlan>(&text)
                .map_err(|e| bad(&id, format!("its plan is not valid JSON: {e}")))?,
        ),
        None => None,
    };

    let mut stmt = conn
        .prepare(
            "SELECT id, position, worker, title, description, focus_areas, depends_on, priority,
                    status, waiting_on, attempts, model, result, error, tokens_in, tokens_out,
                    usage_estimated, started_at, finished_at, elapsed_ms, cut_off, cached,
                    flagged
             FROM subtasks WHERE run_id = ?1 ORDER BY position",
        )
        .map_err(map)?;
    let subtasks = stmt
        .query_map([&id], |r| {
            let status: String = r.get(8)?;
            Ok((
                status,
                SavedSubtask {
                    id: SubtaskId(r.get(0)?),
                    position: r.get(1)?,
                    worker: r.get(2)?,
                    title: r.get(3)?,
                    description: r.get(4)?,
                    focus_areas: json_or(&r.get::<_, String>(5)?),
                    depends_on: json_or(&r.get::<_, String>(6)?),
                    priority: r.get(7)?,
                    status: SavedSubtaskStatus::Pending,
                    waiting_on: json_or(&r.get::<_, String>(9)?),
                    attempts: r.get(10)?,
                    model: r.get(11)?,
                    result: r.get(12)?,
                    error: r.get(13)?,
                    usage: usage_of(r, 14)?,
                    started_ms: u64_of(r.get(17)?),
                    finished_ms: u64_of(r.get(18)?),
                    elapsed_ms: u64_of(r.get(19)?),
                    cut_off: r.get(20)?,
                    cached: r.get(21)?,
                    flagged: r.get(22)?,
                },
            ))
        })
        .map_err(map)?
        .map(|row| {
            let (status, mut s) = row.map_err(map)?;
            s.status = SavedSubtaskStatus::parse(&status)
                .ok_or_else(|| bad(&id, format!("unknown subtask status `{status}`")))?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let mut stmt = conn
        .prepare(
            "SELECT role, subtask_id, attempt, worker, model, started_at, finished_at,
                    elapsed_ms, outcome, error, retry_delay_ms,
                    coalesce(output, CASE WHEN role = 'worker' AND outcome = 'succeeded' THEN
                        (SELECT s.result FROM subtasks s
                         WHERE s.run_id = a.run_id AND s.id = a.subtask_id) END),
                    tokens_in, tokens_out, usage_estimated, tokens_cached
             FROM attempts a WHERE run_id = ?1 ORDER BY id",
        )
        .map_err(map)?;
    let attempts = stmt
        .query_map([&id], |r| {
            let tokens_in: Option<i64> = r.get(12)?;
            let tokens_out: Option<i64> = r.get(13)?;
            let estimated: Option<bool> = r.get(14)?;
            let cached: Option<i64> = r.get(15)?;
            let usage = match (tokens_in, tokens_out) {
                (Some(i), Some(o)) => Some(Usage {
                    tokens_in: i.max(0) as u64,
                    tokens_out: o.max(0) as u64,
                    estimated: estimated.unwrap_or(false),
                    cached_in: cached.unwrap_or(0).max(0) as u64,
                }),
                _ => None,
            };
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(8)?,
                SavedAttempt {
                    role: CallRole::Worker,
                    subtask: r.get::<_, Option<String>>(1)?.map(SubtaskId),
                    attempt: r.get(2)?,
                    worker: r.get(3)?,
                    model: r.get(4)?,
                    started_ms: r.get::<_, i64>(5)?.max(0) as u64,
                    finished_ms: u64_of(r.get(6)?),
                    elapsed_ms: u64_of(r.get(7)?),
                    outcome: AttemptOutcome::Running,
                    error: r.get(9)?,
                    retry_delay_ms: u64_of(r.get(10)?),
                    output: r.get(11)?,
                    usage,
                },
            ))
        })
        .map_err(map)?
        .map(|row| {
            let (role, outcome, mut a) = row.map_err(map)?;
            a.role = match role.as_str() {
                "planner" => CallRole::Planner,
                "worker" => CallRole::Worker,
                "synthesizer" => CallRole::Synthesizer,
                other => return Err(bad(&id, format!("unknown call role `{other}`"))),
            };
            a.outcome = AttemptOutcome::parse(&outcome)
                .ok_or_else(|| bad(&id, format!("unknown attempt outcome `{outcome}`")))?;
            Ok(a)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let mut stmt = conn
        .prepare(
            "SELECT version, attempt, model, text, synthesized, error, tokens_in, tokens_out,
                    usage_estimated, finished_at
             FROM syntheses WHERE run_id = ?1 ORDER BY version",
        )
        .map_err(map)?;
    let syntheses = stmt
        .query_map([&id], |r| {
            Ok(SavedSynthesis {
                version: r.get(0)?,
                attempt: r.get(1)?,
                model: r.get(2)?,
                text: r.get(3)?,
                synthesized: r.get(4)?,
                error: r.get(5)?,
                usage: usage_of(r, 6)?,
                finished_ms: r.get::<_, i64>(9)?.max(0) as u64,
            })
        })
        .map_err(map)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map)?;

    let mut stmt = conn
        .prepare(
            "SELECT at, kind, subtask_id, old_description, new_description, old_worker,
                    new_worker
             FROM commands WHERE run_id = ?1 ORDER BY id",
        )
        .map_err(map)?;
    let commands = stmt
        .query_map([&id], |r| {
            Ok(SavedCommand {
                at_ms: r.get::<_, i64>(0)?.max(0) as u64,
                kind: r.get(1)?,
                subtask: r.get::<_, Option<String>>(2)?.map(SubtaskId),
                old_description: r.get(3)?,
                new_description: r.get(4)?,
                old_worker: r.get(5)?,
                new_worker: r.get(6)?,
            })
        })
        .map_err(map)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map)?;

    let mut stmt = conn
        .prepare("SELECT at, message FROM notices WHERE run_id = ?1 ORDER BY id")
        .map_err(map)?;
    let notices = stmt
        .query_map([&id], |r| {
            Ok(SavedNotice {
                at_ms: r.get::<_, i64>(0)?.max(0) as u64,
                message: r.get(1)?,
            })
        })
        .map_err(map)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(map)?;

    let tool_calls = tool_calls(conn, &id).map_err(map)?;
    let sources = sources(conn, &id).map_err(map)?;

    Ok(Some(SavedRun {
        summary,
        planner_model,
        worker_model,
        synthesizer_model,
        preset,
        settings: serde_json::from_str(&settings).unwrap_or(serde_json::Value::Null),
        error,
        plan,
        subtasks,
        attempts,
        syntheses,
        commands,
        notices,
        context,
        tool_calls,
        sources,
    }))
}

fn tool_calls(conn: &Connection, run: &str) -> rusqlite::Result<Vec<SavedToolCall>> {
    let mut stmt = conn.prepare(
        "SELECT subtask_id, attempt, call_id, tool, arguments, started_at, finished_at,
                elapsed_ms, ok, bytes, summary
         FROM tool_calls WHERE run_id = ?1 ORDER BY id",
    )?;
    stmt.query_map([run], |r| {
        Ok(SavedToolCall {
            subtask: SubtaskId(r.get(0)?),
            attempt: r.get(1)?,
            call_id: r.get(2)?,
            tool: r.get(3)?,
            arguments: r.get(4)?,
            started_ms: r.get::<_, i64>(5)?.max(0) as u64,
            finished_ms: u64_of(r.get(6)?),
            elapsed_ms: u64_of(r.get(7)?),
            ok: r.get(8)?,
            bytes: u64_of(r.get(9)?),
            summary: r.get(10)?,
        })
    })?
    .collect()
}

/// Rows of a kind this build does not know are left out rather than failing the run.
fn sources(conn: &Connection, run: &str) -> rusqlite::Result<Vec<SavedSource>> {
    let mut stmt = conn.prepare(
        "SELECT subtask_id, attempt, call_id, number, kind, location, bytes, status,
                retrieved_at, text_bytes
         FROM sources WHERE run_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([run], |r| {
        let kind = match r.get::<_, String>(4)?.as_str() {
            "url" => SourceKind::Url,
            "file" => SourceKind::File,
            _ => return Ok(None),
        };
        Ok(Some(SavedSource {
            subtask: SubtaskId(r.get(0)?),
            attempt: r.get(1)?,
            call_id: r.get(2)?,
            source: Source {
                number: r.get::<_, i64>(3)?.clamp(0, u32::MAX as i64) as u32,
                kind,
                location: r.get(5)?,
                bytes: r.get::<_, i64>(6)?.max(0) as u64,
                status: r
                    .get::<_, Option<i64>>(7)?
                    .and_then(|v| u16::try_from(v).ok()),
                retrieved_ms: r.get::<_, i64>(8)?.max(0) as u64,
            },
            text_bytes: r.get::<_, i64>(9)?.max(0) as u64,
        }))
    })?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(source) = row? {
            out.push(source);
        }
    }
    Ok(out)
}

/// The saved text of the source `call_id` of a subtask's attempt read (the latest, should
/// the id repeat); `None` when there is no such source.
pub(crate) fn source_text(
    conn: &Connection,
    run: RunId,
    subtask: &SubtaskId,
    attempt: u32,
    call_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT text FROM sources
         WHERE run_id = ?1 AND subtask_id = ?2 AND attempt = ?3 AND call_id = ?4
         ORDER BY id DESC LIMIT 1",
        rusqlite::params![run.to_string(), subtask.as_str(), attempt, call_id],
        |r| r.get(0),
    )
    .optional()
}

/// The saved text of `source` as a subtask's report holds it (matched by location and the
/// time it was read; the latest such read); `None` when it was not saved.
pub(crate) fn text_of_source(
    conn: &Connection,
    run: RunId,
    subtask: &SubtaskId,
    source: &Source,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT text FROM sources
         WHERE run_id = ?1 AND subtask_id = ?2 AND location = ?3 AND retrieved_at = ?4
         ORDER BY id DESC LIMIT 1",
        rusqlite::params![
            run.to_string(),
            subtask.as_str(),
            source.location,
            source.retrieved_ms as i64
        ],
        |r| r.get(0),
    )
    .optional()
}

/// The saved text of the run's source numbered `number` (the first read of it); `None`
/// when no source has that number.
pub(crate) fn numbered_source_text(
    conn: &Connection,
    run: RunId,
    number: u32,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT text FROM sources WHERE run_id = ?1 AND number = ?2 ORDER BY id LIMIT 1",
        rusqlite::params![run.to_string(), number],
        |r| r.get(0),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_prefixes_grow_only_where_ids_are_close() {
        let ids: Vec<String> = [
            "0190aaaa11110000",
            "0190aaaa11120000",
            "0190bbbb00000000",
            "0291000000000000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            short_prefixes(&ids, 8),
            ["0190aaaa1111", "0190aaaa1112", "0190bbbb", "02910000"]
        );
        assert_eq!(short_prefixes(&ids[3..], 4), ["0291"]);
    }

    #[test]
    fn statuses_round_trip_through_their_words() {
        for s in [
            SavedRunStatus::Running,
            SavedRunStatus::Succeeded,
            SavedRunStatus::Partial,
            SavedRunStatus::Failed,
            SavedRunStatus::Cancelled,
            SavedRunStatus::Interrupted,
        ] {
            assert_eq!(SavedRunStatus::parse(s.word()), Some(s));
        }
        assert_eq!(SavedRunStatus::parse("done"), None);
        // The engine's words are the saved words.
        for s in [
            RunStatus::Succeeded,
            RunStatus::Partial,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(SavedRunStatus::from(s).word(), s.word());
        }
    }
}

/// One model call as saved, with its run's provider: what statistics and costs are made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub run: RunId,
    pub provider: String,
    pub role: CallRole,
    /// The subtask and its worker role, for worker calls.
    pub subtask: Option<SubtaskId>,
    pub worker: Option<String>,
    pub model: Option<String>,
    pub started_ms: u64,
    pub elapsed_ms: Option<u64>,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    /// `None` when the call reported nothing (in flight, cut off by a cancel, or saved before
    /// failed calls' usage was kept).
    pub usage: Option<Usage>,
}

/// Every saved call that started at or after `since_ms` (all of them for `None`), oldest
/// first. Rows with a role or outcome this build does not know are skipped.
pub(crate) fn calls(conn: &Connection, since_ms: Option<u64>) -> rusqlite::Result<Vec<CallRecord>> {
    let mut stmt = conn.prepare(
        "SELECT a.run_id, r.provider, a.role, a.worker, a.model, a.started_at, a.elapsed_ms,
                a.outcome, a.error, a.tokens_in, a.tokens_out, a.usage_estimated, a.tokens_cached,
                a.subtask_id
         FROM attempts a JOIN runs r ON r.id = a.run_id
         WHERE a.started_at >= ?1 ORDER BY a.id",
    )?;
    let since = since_ms.map_or(i64::MIN, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let rows = stmt.query_map([since], |r| {
        let tokens_in: Option<i64> = r.get(9)?;
        let tokens_out: Option<i64> = r.get(10)?;
        let estimated: Option<bool> = r.get(11)?;
        let cached: Option<i64> = r.get(12)?;
        let usage = match (tokens_in, tokens_out) {
            (Some(i), Some(o)) => Some(Usage {
                tokens_in: i.max(0) as u64,
                tokens_out: o.max(0) as u64,
                estimated: estimated.unwrap_or(false),
                cached_in: cached.unwrap_or(0).max(0) as u64,
            }),
            _ => None,
        };
        let role = match r.get::<_, String>(2)?.as_str() {
            "planner" => Some(CallRole::Planner),
            "worker" => Some(CallRole::Worker),
            "synthesizer" => Some(CallRole::Synthesizer),
            _ => None,
        };
        let outcome = AttemptOutcome::parse(&r.get::<_, String>(7)?);
        let run = parse_id(&r.get::<_, String>(0)?);
        let (Some(role), Some(outcome), Some(run)) = (role, outcome, run) else {
            return Ok(None);
        };
        Ok(Some(CallRecord {
            run,
            provider: r.get(1)?,
            role,
            subtask: r.get::<_, Option<String>>(13)?.map(SubtaskId),
            worker: r.get(3)?,
            model: r.get(4)?,
            started_ms: r.get::<_, i64>(5)?.max(0) as u64,
            elapsed_ms: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
            outcome,
            error: r.get(8)?,
            usage,
        }))
    })?;
    let mut out = Vec::new();
    for row in rows {
        if let Some(call) = row? {
            out.push(call);
        }
    }
    Ok(out)
}
