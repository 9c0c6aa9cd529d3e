//! The plan: what the planner model proposes, parsed leniently and validated strictly.
//!
//! Owns the plan types (the JSON contract of `maestro plan` and `--plan FILE`), extraction of
//! that JSON from a model's answer (raw, in ```json fences, or between prose), defaults for
//! missing optional fields, and validation into a DAG. Pure: no I/O, no clock.
//!
//! Two layers, on purpose:
//! - *Decoding* is lenient, because models are sloppy: optional fields may be missing, ids may
//!   be numbers, `depends_on` may be a single string, priorities may be capitalised. It goes
//!   through `serde_json::Value` so the strict serde shape of [`Plan`] (what we print and what
//!   `--plan FILE` reads) stays exactly the documented contract.
//! - *Checking* ([`check_plan`]) is strict about what would break a run (duplicate ids, unknown
//!   dependencies, cycles) and repairs, with a warning, what merely degrades it (unknown roles,
//!   too many subtasks).
//!
//! Error messages are written to be read twice: by the user, and by the planner model itself
//! when it is asked to correct its answer, so they name the field and the problem.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::roles::{WorkerRole, same_name};
use crate::protocol::SubtaskId;

/// The planner's output. See DESIGN §4 and the README for the format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    #[serde(default)]
    pub query_analysis: String,
    pub subtasks: Vec<PlannedSubtask>,
    #[serde(default)]
    pub synthesis_guidance: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSubtask {
    pub id: SubtaskId,
    pub worker: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub focus_areas: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<SubtaskId>,
    #[serde(default)]
    pub priority: Priority,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    /// `high`, `medium` or `low`, as in the JSON.
    pub fn word(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

/// What a plan is checked against.
#[derive(Debug, Clone)]
pub struct PlanRules {
    pub max_subtasks: usize,
    /// Worker roles that exist.
    pub roles: Vec<String>,
    /// The role given to subtasks that name none or an unknown one.
    pub default_role: String,
}

impl PlanRules {
    /// Rules for a set of roles: the first role is the default (as in `assets/workers.toml`).
    /// With no roles at all the default is `analysis`, the built-in default.
    pub fn for_roles(roles: &[WorkerRole], max_subtasks: usize) -> Self {
        Self {
            max_subtasks,
            roles: roles.iter().map(|r| r.name.clone()).collect(),
            default_role: roles
                .first()
                .map_or_else(|| "analysis".to_owned(), |r| r.name.clone()),
        }
    }
}

/// A valid plan and what was changed to make it so (unknown roles, cut subtasks…).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPlan {
    pub plan: Plan,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no JSON object found in the planner's answer")]
    NoJson,
    #[error("the plan is not valid JSON: {0}")]
    Json(String),
    /// Valid JSON, but not a plan: there is no `subtasks` list. Holds the keys that were there.
    #[error("the JSON has no `subtasks` list{}", keys_hint(.0))]
    MissingSubtasks(Vec<String>),
    /// A field has a type or value the plan cannot use; `at` is a JSON path like
    /// `subtasks[2].depends_on`.
    #[error("`{at}` {problem}")]
    Invalid { at: String, problem: String },
    #[error("the plan has no subtasks")]
    Empty,
    #[error("two subtasks share the id `{0}`")]
    DuplicateId(String),
    #[error("subtask `{subtask}` depends on `{missing}`, which is not in the plan")]
    UnknownDependency { subtask: String, missing: String },
    #[error("the dependencies form a cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
}

fn keys_hint(keys: &[String]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(
            " (found only {})",
            backticked(keys.iter().map(String::as_str))
        )
    }
}

/// `` `a`, `b` `` for messages.
fn backticked<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many `{` positions are tried as the start of a plan before giving up. Bounds the work
/// on long answers full of braces (the scan from each start is linear).
const MAX_CANDIDATES: usize = 64;

/// Parse a planner's answer (raw JSON, fenced, or between prose) and check it.
///
/// Candidates are tried in this order: the whole answer when it starts with `{`, the content
/// of each ```json or bare ``` fence, then every `{ … }` span in the text (matched with a
/// scanner that skips braces inside strings). The first candidate that is JSON and holds a
/// `subtasks` list is *the* plan: its decoding or checking errors are returned as they are,
/// since a later candidate is far more likely an example than a better plan.
pub fn parse_plan(answer: &str, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    let mut tried: HashSet<(usize, usize)> = HashSet::new();
    // What to report when no candidate is a plan, from most to least telling: broken JSON that
    // mentions `subtasks` (most likely the plan itself, e.g. cut off by max_tokens), valid JSON
    // without `subtasks`, any broken JSON.
    let mut broken_plan: Option<PlanError> = None;
    let mut not_a_plan: Option<PlanError> = None;
    let mut broken_other: Option<PlanError> = None;

    // What one candidate turned out to be.
    enum Outcome {
        Plan(Result<CheckedPlan, PlanError>),
        OtherJson,
        Broken,
    }
    let mut attempt = |start: usize, text: &str| -> Outcome {
        match parse_json(text) {
            Ok(value) => match plan_value(&value) {
                Some(plan) => Outcome::Plan(decode_and_check(plan, rules)),
                None => {
                    not_a_plan.get_or_insert_with(|| PlanError::MissingSubtasks(keys_of(&value)));
                    Outcome::OtherJson
                }
            },
            Err(err) => {
                let slot = if text.contains("\"subtasks\"") {
                    &mut broken_plan
                } else {
                    &mut broken_other
                };
                slot.get_or_insert_with(|| json_error(answer, start, &err));
                Outcome::Broken
            }
        }
    };

    let trimmed = answer.trim_start();
    let mut first: Vec<(usize, &str)> = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        first.push((answer.len() - trimmed.len(), trimmed.trim_end()));
    }
    first.extend(fenced_blocks(answer));
    for (start, text) in first {
        if !tried.insert((start, start + text.len())) {
            continue;
        }
        if let Outcome::Plan(result) = attempt(start, text) {
            return result;
        }
    }

    // Every `{` may start the plan: prose can contain a stray brace (or a quote that throws the
    // string tracking off) before the real object, so one failed span does not end the search.
    // Starts inside a span that was valid JSON are skipped: its nested objects were seen.
    let mut skip_until = 0;
    let mut scanned = 0;
    for (start, _) in answer.match_indices('{') {
        if start < skip_until {
            continue;
        }
        if scanned == MAX_CANDIDATES {
            break;
        }
        scanned += 1;
        let end = matching_brace(answer, start);
        // No match: the answer was probably cut off; parsing the rest gives a precise error.
        let end = end.unwrap_or(answer.len());
        let text = &answer[start..end];
        if !tried.insert((start, end)) {
            continue;
        }
        match attempt(start, text) {
            Outcome::Plan(result) => return result,
            Outcome::OtherJson => skip_until = end,
            Outcome::Broken => {}
        }
    }

    Err(broken_plan
        .or(not_a_plan)
        .or(broken_other)
        .unwrap_or(PlanError::NoJson))
}

/// Check a plan that is already JSON-decoded (e.g. read from `--plan FILE`).
///
/// Order matters and is deliberate: ids, dependencies and cycles are validated on the *full*
/// plan, so an error names what the planner actually wrote (a cycle through a subtask that
/// would have been cut is still the planner's mistake, and the retry message must say so).
/// Only then is the plan cut to `max_subtasks`, dependencies on cut subtasks are dropped, and
/// roles are resolved (after the cut, so there are no warnings about subtasks that are gone).
/// Checking a checked plan changes nothing and warns of nothing.
fn clean_id(id: &str) -> String {
    crate::sanitize::sanitize_line(id).trim().to_owned()
}

pub fn check_plan(mut plan: Plan, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    let mut warnings = Vec::new();

    for task in &mut plan.subtasks {
        // Ids are shown everywhere (tree rows, progress lines, event files): no control
        // characters or escape sequences in them, whatever the planner wrote.
        task.id.0 = clean_id(&task.id.0);
        trim_in_place(&mut task.worker);
        trim_in_place(&mut task.title);
        trim_in_place(&mut task.description);
        // Duplicates in depends_on say nothing the first mention did not; drop them quietly.
        let mut seen = HashSet::new();
        task.depends_on = std::mem::take(&mut task.depends_on)
            .into_iter()
            .map(|d| SubtaskId(clean_id(&d.0)))
            .filter(|d| !d.0.is_empty() && seen.insert(d.clone()))
            .collect();
    }

    if plan.subtasks.is_empty() {
        return Err(PlanError::Empty);
    }

    let mut ids = HashSet::new();
    for (i, task) in plan.subtasks.iter().enumerate() {
        if task.id.0.is_empty() {
            return Err(PlanError::Invalid {
                at: format!("subtasks[{i}].id"),
                problem: "is empty".to_owned(),
            });
        }
        if !ids.insert(task.id.as_str()) {
            return Err(PlanError::DuplicateId(task.id.0.clone()));
        }
    }
    for task in &plan.subtasks {
        if let Some(missing) = task.depends_on.iter().find(|d| !ids.contains(d.as_str())) {
            return Err(PlanError::UnknownDependency {
                subtask: task.id.0.clone(),
                missing: missing.0.clone(),
            });
        }
    }
    if let Some(cycle) = find_cycle(&plan.subtasks) {
        return Err(PlanError::Cycle(cycle));
    }

    // A plan always keeps at least one subtask, whatever the configured cap says.
    let max = rules.max_subtasks.max(1);
    if plan.subtasks.len() > max {
        warnings.push(format!(
            "plan had {} subtasks; kept the first {max} (max_subtasks)",
            plan.subtasks.len()
        ));
        plan.subtasks.truncate(max);
        let kept: HashSet<SubtaskId> = plan.subtasks.iter().map(|t| t.id.clone()).collect();
        for task in &mut plan.subtasks {
            let (keep, cut): (Vec<_>, Vec<_>) = std::mem::take(&mut task.depends_on)
                .into_iter()
                .partition(|d| kept.contains(d));
            if !cut.is_empty() {
                warnings.push(format!(
                    "subtask `{}` no longer depends on {}, which was cut by max_subtasks",
                    task.id,
                    backticked(cut.iter().map(SubtaskId::as_str))
                ));
            }
            task.depends_on = keep;
        }
    }

    for task in &mut plan.subtasks {
        match rules.roles.iter().find(|r| same_name(r, &task.worker)) {
            // Use the role's own spelling so later lookups need not care about case.
            Some(role) => task.worker.clone_from(role),
            None => {
                if !task.worker.is_empty() {
                    warnings.push(format!(
                        "subtask `{}`: unknown worker role `{}`; using `{}`",
                        task.id, task.worker, rules.default_role
                    ));
                }
                task.worker.clone_from(&rules.default_role);
            }
        }
    }

    Ok(CheckedPlan { plan, warnings })
}

fn trim_in_place(s: &mut String) {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        *s = trimmed.to_owned();
    }
}

/// The first cycle found (in plan order), as ids along `depends_on` edges with the first id
/// repeated at the end: `a → b → c → a`. All dependencies must name known ids.
fn find_cycle(tasks: &[PlannedSubtask]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }

    fn visit(
        i: usize,
        tasks: &[PlannedSubtask],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::OnPath;
        path.push(i);
        for dep in &tasks[i].depends_on {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::OnPath => {
                    let from = path.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|&k| tasks[k].id.0.clone())
                        .collect();
                    cycle.push(tasks[j].id.0.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(j, tasks, index, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }

    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; tasks.len()];
    let mut path = Vec::new();
    (0..tasks.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, tasks, &index, &mut marks, &mut path)
        } else {
            None
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Finding the JSON

/// The content of each ```json or bare ``` fence whose content looks like JSON, with its byte
/// offset in `answer`. An unclosed fence runs to the end (an answer cut off by max_tokens).
fn fenced_blocks(answer: &str) -> Vec<(usize, &str)> {
    let mut blocks = Vec::new();
    let mut from = 0;
    while let Some(found) = answer[from..].find("```") {
        let info_start = from + found + 3;
        let line_end = answer[info_start..]
            .find('\n')
            .map_or(answer.len(), |n| info_start + n);
        let info = answer[info_start..line_end].trim();
        let content_start = (line_end + 1).min(answer.len());
        let close = answer[content_start..]
            .find("```")
            .map(|n| content_start + n);
        let content_end = close.unwrap_or(answer.len());
        if info.is_empty() || info.to_ascii_lowercase().starts_with("json") {
            let content = &answer[content_start..content_end];
            let body = content.trim_start();
            let offset = content_start + (content.len() - body.len());
            let body = body.trim_end();
            if body.starts_with('{') || body.starts_with('[') {
                blocks.push((offset, body));
            }
        }
        match close {
            Some(close) => from = close + 3,
            None => break,
        }
    }
    blocks
}

/// The byte index just past the `}` matching the `{` at `open`, skipping braces inside JSON
/// strings (with their escapes). `None` when the object never closes.
fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Bytes are fine: every character looked at is ASCII, and UTF-8 continuation bytes never
    // equal an ASCII byte, so the returned index is always a char boundary.
    for (i, &b) in text.as_bytes().iter().enumerate().skip(open) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Parse JSON, forgiving trailing commas (`[1, 2,]`, `{"a": 1,}`), a common model slip. Errors
/// are those of the text as written, so positions match what the model produced.
fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text).or_else(|err| match without_trailing_commas(text) {
        Some(fixed) => serde_json::from_str(&fixed).map_err(|_| err),
        None => Err(err),
    })
}

/// `text` without commas that directly precede `}` or `]` outside strings; `None` if there are
/// none.
fn without_trailing_commas(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut drop = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let next = bytes[i + 1..].iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                drop.push(i);
            }
        }
    }
    if drop.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for i in drop {
        out.push_str(&text[last..i]);
        last = i + 1;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// A serde_json error with its position translated from the candidate to the whole answer,
/// so `line 3 column 5` points at the model's text as the user (and the model) sees it.
fn json_error(answer: &str, start: usize, err: &serde_json::Error) -> PlanError {
    let message = err.to_string();
    if err.line() == 0 {
        return PlanError::Json(message);
    }
    let what = message
        .rfind(" at line ")
        .map_or(message.as_str(), |i| &message[..i]);
    let before = &answer[..start];
    let line = err.line() + before.matches('\n').count();
    let column = if err.line() == 1 {
        err.column() + before.len() - before.rfind('\n').map_or(0, |n| n + 1)
    } else {
        err.column()
    };
    PlanError::Json(format!("{what} at line {line} column {column}"))
}

/// The part of a JSON value that is the plan: an object with `subtasks`; such an object one
/// level down (`{"plan": {...}}`); or a bare list of subtask-like objects.
fn plan_value(value: &Value) -> Option<&Value> {
    match value {
        Value::Object(map) if map.contains_key("subtasks") => Some(value),
        Value::Object(map) => map
            .values()
            .find(|v| v.as_object().is_some_and(|o| o.contains_key("subtasks"))),
        Value::Array(items)
            if !items.is_empty()
                && items.iter().all(|item| {
                    item.get("title").is_some() || item.get("description").is_some()
                }) =>
        {
            Some(value)
        }
        _ => None,
    }
}

fn keys_of(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn decode_and_check(value: &Value, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    let (plan, mut warnings) = decode_plan(value, &rules.default_role)?;
    let checked = check_plan(plan, rules)?;
    warnings.extend(checked.warnings);
    Ok(CheckedPlan {
        plan: checked.plan,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// Lenient decoding

/// "a string", "an object"…: for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn invalid(at: impl Into<String>, problem: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        at: at.into(),
        problem: problem.into(),
    }
}

/// Decode a plan-shaped value. Missing optional fields get their defaults; see the module docs.
fn decode_plan(value: &Value, default_role: &str) -> Result<(Plan, Vec<String>), PlanError> {
    let empty = Map::new();
    let (top, items) = match value {
        Value::Array(items) => (&empty, items.as_slice()),
        Value::Object(top) => match top.get("subtasks") {
            Some(Value::Array(items)) => (top, items.as_slice()),
            None | Some(Value::Null) => (top, &[][..]),
            Some(other) => {
                return Err(invalid(
                    "subtasks",
                    format!("must be a list of subtasks, not {}", kind_of(other)),
                ));
            }
        },
        other => {
            return Err(invalid(
                "(top level)",
                format!("must be an object, not {}", kind_of(other)),
            ));
        }
    };

    let mut objects = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::Object(obj) => objects.push(obj),
            other => {
                return Err(invalid(
                    format!("subtasks[{i}]"),
                    format!("must be an object, not {}", kind_of(other)),
                ));
            }
        }
    }

    // Ids first, all of them: a generated `task_N` must not clash with an id given later.
    let mut given = Vec::with_capacity(objects.len());
    for (i, obj) in objects.iter().enumerate() {
        given.push(id_value(obj.get("id"), &format!("subtasks[{i}].id"))?);
    }
    let mut taken: HashSet<String> = given.iter().flatten().cloned().collect();
    let ids: Vec<String> = given
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            id.unwrap_or_else(|| {
                let base = format!("task_{}", i + 1);
                let id = std::iter::once(base.clone())
                    .chain((2..).map(|k| format!("{base}_{k}")))
                    .find(|candidate| !taken.contains(candidate))
                    .unwrap_or(base);
                taken.insert(id.clone());
                id
            })
        })
        .collect();

    let mut warnings = Vec::new();
    let mut subtasks = Vec::with_capacity(objects.len());
    for (i, (obj, id)) in objects.into_iter().zip(ids).enumerate() {
        let at = |field: &str| format!("subtasks[{i}].{field}");
        let worker = text_value(obj.get("worker"), &at("worker"))?
            .unwrap_or_else(|| default_role.to_owned());
        let title = text_value(obj.get("title"), &at("title"))?;
        let description = text_value(obj.get("description"), &at("description"))?;
        let (title, description) = match (title, description) {
            (Some(t), Some(d)) => (t, d),
            (Some(t), None) => (t.clone(), t),
            (None, Some(d)) => (title_from(&d), d),
            (None, None) => {
                return Err(invalid(
                    format!("subtasks[{i}]"),
                    "has neither a title nor a description",
                ));
            }
        };
        let focus_areas = list_value(obj.get("focus_areas"), &at("focus_areas"))?;
        let depends_on = list_value(obj.get("depends_on"), &at("depends_on"))?
            .into_iter()
            .map(SubtaskId)
            .collect();
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => Priority::Medium,
            Some(Value::String(s)) => match s.trim().to_lowercase().as_str() {
                "high" => Priority::High,
                "medium" | "" => Priority::Medium,
                "low" => Priority::Low,
                _ => {
                    warnings.push(format!(
                        "subtask `{id}`: unknown priority `{}`; using medium",
                        s.trim()
                    ));
                    Priority::Medium
                }
            },
            Some(other) => {
                warnings.push(format!(
                    "subtask `{id}`: priority {other} is not high, medium or low; using medium"
                ));
                Priority::Medium
            }
        };
        subtasks.push(PlannedSubtask {
            id: SubtaskId(id),
            worker,
            title,
            description,
            focus_areas,
            depends_on,
            priority,
        });
    }

    let plan = Plan {
        query_analysis: prose_value(top.get("query_analysis")),
        subtasks,
        synthesis_guidance: prose_value(top.get("synthesis_guidance")),
    };
    Ok((plan, warnings))
}

/// An id: a string or a number (`1` → `"1"`); missing, null or blank → `None`.
fn id_value(value: Option<&Value>, at: &str) -> Result<Option<String>, PlanError> {
    scalar_value(value, at, "a string or a number")
}

/// A short text field: a string (numbers are taken as text); missing, null or blank → `None`.
fn text_value(value: Option<&Value>, at: &str) -> Result<Option<String>, PlanError> {
    scalar_value(value, at, "a string")
}

/// A string or number as trimmed text; missing, null or blank → `None`; anything else is an
/// error saying it must be `expected`.
fn scalar_value(
    value: Option<&Value>,
    at: &str,
    expected: &str,
) -> Result<Option<String>, PlanError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(invalid(
            at,
            format!("must be {expected}, not {}", kind_of(other)),
        )),
    }
}

/// A list of strings or numbers; a single one stands for a list of one; blanks are dropped.
fn list_value(value: Option<&Value>, at: &str) -> Result<Vec<String>, PlanError> {
    let items: &[Value] = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(single) => std::slice::from_ref(single),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) if s.trim().is_empty() => {}
            Value::String(s) => out.push(s.trim().to_owned()),
            Value::Number(n) => out.push(n.to_string()),
            other => {
                let at = match value {
                    Some(Value::Array(_)) => format!("{at}[{i}]"),
                    _ => at.to_owned(),
                };
                return Err(invalid(
                    at,
                    format!("must be a string, not {}", kind_of(other)),
                ));
            }
        }
    }
    Ok(out)
}

/// Free text at the top of the plan. Never an error: a list of lines is joined, anything else
/// is kept as its JSON text, because losing guidance is worse than odd formatting.
fn prose_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    }
}

/// How many words of a description make a title when the planner gave none.
const TITLE_WORDS: usize = 8;

/// A title from a description: its first few words, with `…` when there were more.
fn title_from(description: &str) -> String {
    let mut words = description.split_whitespace();
    let title = words
        .by_ref()
        .take(TITLE_WORDS)
        .collect::<Vec<_>>()
        .join(" ");
    if words.next().is_some() {
        format!("{}…", title.trim_end_matches([',', ';', ':', '.']))
    } else {
        title
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PlanRules {
        PlanRules {
            max_subtasks: 6,
            roles: ["analysis", "research", "compare", "critique", "writing"]
                .map(String::from)
                .to_vec(),
            default_role: "analysis".to_owned(),
        }
    }

    const TWO_TASKS: &str = r#"{
  "query_analysis": "impacts of EVs",
  "subtasks": [
    {"id": "task_1", "worker": "research", "title": "Emissions", "description": "Tailpipe and grid emissions",
     "focus_areas": ["CO2", "NOx"], "depends_on": [], "priority": "high"},
    {"id": "task_2", "worker": "analysis", "title": "Costs", "description": "Costs for cities",
     "focus_areas": [], "depends_on": ["task_1"], "priority": "low"}
  ],
  "synthesis_guidance": "lead with emissions"
}"#;

    fn task(id: &str, deps: &[&str]) -> PlannedSubtask {
        PlannedSubtask {
            id: SubtaskId::new(id),
            worker: "analysis".to_owned(),
            title: format!("Title {id}"),
            description: format!("Description {id}"),
            focus_areas: Vec::new(),
            depends_on: deps.iter().map(|d| SubtaskId::new(*d)).collect(),
            priority: Priority::Medium,
        }
    }

    fn plan_of(tasks: Vec<PlannedSubtask>) -> Plan {
        Plan {
            query_analysis: String::new(),
            subtasks: tasks,
            synthesis_guidance: String::new(),
        }
    }

    fn ids(plan: &Plan) -> Vec<&str> {
        plan.subtasks.iter().map(|t| t.id.as_str()).collect()
    }

    fn parse(answer: &str) -> CheckedPlan {
        parse_plan(answer, &rules()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(answer: &str) -> PlanError {
        parse_plan(answer, &rules()).expect_err("the answer is not a usable plan")
    }

    fn expected_two_tasks() -> Plan {
        Plan {
            query_analysis: "impacts of EVs".to_owned(),
            subtasks: vec![
                PlannedSubtask {
                    id: SubtaskId::new("task_1"),
                    worker: "research".to_owned(),
                    title: "Emissions".to_owned(),
                    description: "Tailpipe and grid emissions".to_owned(),
                    focus_areas: vec!["CO2".to_owned(), "NOx".to_owned()],
                    depends_on: vec![],
                    priority: Priority::High,
                },
                PlannedSubtask {
                    id: SubtaskId::new("task_2"),
                    worker: "analysis".to_owned(),
                    title: "Costs".to_owned(),
                    description: "Costs for cities".to_owned(),
                    focus_areas: vec![],
                    depends_on: vec![SubtaskId::new("task_1")],
                    priority: Priority::Low,
                },
            ],
            synthesis_guidance: "lead with emissions".to_owned(),
        }
    }

    // --- extraction ---

    #[test]
    fn raw_json_is_parsed_exactly() {
        let checked = parse(TWO_TASKS);
        assert_eq!(checked.plan, expected_two_tasks());
        assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    }

    #[test]
    fn json_fence_is_parsed() {
        let answer = format!("Here is the plan:\n\n```json\n{TWO_TASKS}\n```\n\nGood luck!");
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn bare_and_uppercase_fences_are_parsed() {
        let bare = format!("```\n{TWO_TASKS}\n```");
        assert_eq!(parse(&bare).plan, expected_two_tasks());
        let upper = format!("```JSON\n{TWO_TASKS}\n```");
        assert_eq!(parse(&upper).plan, expected_two_tasks());
    }

    #[test]
    fn a_fence_in_another_language_is_skipped_for_the_json_one() {
        let answer = format!(
            "```python\nprint({{'subtasks': 1}})\n```\nand the plan:\n```json\n{TWO_TASKS}\n```"
        );
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn json_between_prose_is_parsed() {
        let answer = format!("Sure! I split it up as follows. {TWO_TASKS} Let me know if…");
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn braces_and_escaped_quotes_inside_strings_do_not_confuse_the_scanner() {
        let answer = r#"Plan: {"subtasks": [{"id": "a", "title": "Sets {x}", "description": "a \"quoted\" } brace and a \\ backslash {"}]} trailing } text"#;
        let plan = parse(answer).plan;
        assert_eq!(plan.subtasks[0].title, "Sets {x}");
        assert_eq!(
            plan.subtasks[0].description,
            r#"a "quoted" } brace and a \ backslash {"#
        );
    }

    #[test]
    fn raw_json_followed_by_prose_is_parsed() {
        let answer = format!("{TWO_TASKS}\n\nThis plan covers the main angles.");
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn a_non_plan_object_before_the_plan_is_skipped() {
        let answer = format!("Format: {{\"note\": \"example\"}}. The plan: {TWO_TASKS}");
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn a_stray_brace_in_prose_before_the_plan_is_skipped() {
        let answer = format!("Use {{curly braces properly. {TWO_TASKS}");
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn a_plan_wrapped_in_an_outer_object_is_found() {
        let answer = format!("{{\"plan\": {TWO_TASKS}}}");
        assert_eq!(parse(&answer).plan, expected_two_tasks());
    }

    #[test]
    fn a_bare_list_of_subtasks_is_a_plan() {
        let plan = parse(r#"[{"title": "One"}, {"title": "Two"}]"#).plan;
        assert_eq!(ids(&plan), ["task_1", "task_2"]);
    }

    #[test]
    fn trailing_commas_are_forgiven() {
        let answer = r#"{"subtasks": [{"id": "a", "title": "A", "focus_areas": ["x",],},],}"#;
        let plan = parse(answer).plan;
        assert_eq!(plan.subtasks[0].focus_areas, ["x"]);
    }

    // --- lenient decoding and defaults ---

    #[test]
    fn missing_optional_fields_get_defaults() {
        let plan =
            parse(r#"{"subtasks": [{"title": "Emissions", "description": "Measure them"}]}"#).plan;
        let t = &plan.subtasks[0];
        assert_eq!(t.id.as_str(), "task_1");
        assert_eq!(t.worker, "analysis");
        assert_eq!(t.priority, Priority::Medium);
        assert!(t.depends_on.is_empty());
        assert!(t.focus_areas.is_empty());
        assert_eq!(plan.query_analysis, "");
        assert_eq!(plan.synthesis_guidance, "");
    }

    #[test]
    fn description_defaults_to_title_and_title_to_the_first_words_of_description() {
        let plan = parse(
            r#"{"subtasks": [
                {"title": "Only a title"},
                {"description": "Estimate the effect of congestion pricing on inner-city traffic volumes over ten years"},
                {"description": "Short one"}
            ]}"#,
        )
        .plan;
        assert_eq!(plan.subtasks[0].description, "Only a title");
        assert_eq!(
            plan.subtasks[1].title,
            "Estimate the effect of congestion pricing on inner-city…"
        );
        assert_eq!(plan.subtasks[2].title, "Short one");
    }

    #[test]
    fn generated_ids_avoid_ids_given_elsewhere() {
        let plan = parse(
            r#"{"subtasks": [{"title": "A"}, {"id": "task_1", "title": "B"}, {"title": "C"}]}"#,
        )
        .plan;
        assert_eq!(ids(&plan), ["task_1_2", "task_1", "task_3"]);
    }

    #[test]
    fn numeric_ids_and_a_single_string_dependency_are_accepted() {
        let plan = parse(
            r#"{"subtasks": [
                {"id": 1, "title": "A"},
                {"id": 2, "title": "B", "depends_on": 1},
                {"id": "3", "title": "C", "depends_on": "2", "focus_areas": "one area"}
            ]}"#,
        )
        .plan;
        assert_eq!(ids(&plan), ["1", "2", "3"]);
        assert_eq!(plan.subtasks[1].depends_on, [SubtaskId::new("1")]);
        assert_eq!(plan.subtasks[2].depends_on, [SubtaskId::new("2")]);
        assert_eq!(plan.subtasks[2].focus_areas, ["one area"]);
    }

    #[test]
    fn priority_is_read_in_any_case_and_unknown_ones_warn() {
        let checked = parse(
            r#"{"subtasks": [
                {"id": "a", "title": "A", "priority": "High"},
                {"id": "b", "title": "B", "priority": "LOW"},
                {"id": "c", "title": "C", "priority": "urgent"},
                {"id": "d", "title": "D", "priority": 1}
            ]}"#,
        );
        let priorities: Vec<Priority> = checked.plan.subtasks.iter().map(|t| t.priority).collect();
        assert_eq!(
            priorities,
            [
                Priority::High,
                Priority::Low,
                Priority::Medium,
                Priority::Medium
            ]
        );
        assert_eq!(
            checked.warnings,
            [
                "subtask `c`: unknown priority `urgent`; using medium",
                "subtask `d`: priority 1 is not high, medium or low; using medium",
            ]
        );
    }

    #[test]
    fn ids_roles_and_dependencies_are_trimmed_and_roles_matched_ignoring_case() {
        let checked = parse(
            r#"{"subtasks": [
                {"id": " a ", "worker": " Research ", "title": "A"},
                {"id": "b", "worker": "CRITIQUE", "title": "B", "depends_on": [" a ", "a"]}
            ]}"#,
        );
        assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
        let plan = checked.plan;
        assert_eq!(ids(&plan), ["a", "b"]);
        assert_eq!(plan.subtasks[0].worker, "research");
        assert_eq!(plan.subtasks[1].worker, "critique");
        assert_eq!(plan.subtasks[1].depends_on, [SubtaskId::new("a")]);
    }

    #[test]
    fn list_guidance_is_joined_into_lines() {
        let plan =
            parse(r#"{"subtasks": [{"title": "A"}], "synthesis_guidance": ["one", "two"]}"#).plan;
        assert_eq!(plan.synthesis_guidance, "one\ntwo");
    }

    // --- errors from parsing, with their messages ---

    #[test]
    fn no_json_at_all_is_no_json() {
        let err = parse_err("I cannot help with that.");
        assert_eq!(err, PlanError::NoJson);
        assert_eq!(
            err.to_string(),
            "no JSON object found in the planner's answer"
        );
    }

    #[test]
    fn broken_json_reports_line_and_column_in_the_answer() {
        // The missing comma is on line 3 of the answer; the object itself starts on line 2.
        let err =
            parse_err("Here you go:\n{\"subtasks\": [\n  {\"id\": \"a\" \"title\": \"A\"}\n]}");
        assert_eq!(
            err.to_string(),
            "the plan is not valid JSON: expected `,` or `}` at line 3 column 14"
        );
    }

    #[test]
    fn error_column_on_the_first_line_counts_from_the_start_of_the_answer() {
        let err = parse_err(r#"Plan: {"subtasks": [1 2]}"#);
        assert_eq!(
            err,
            PlanError::Json("expected `,` or `]` at line 1 column 23".to_owned())
        );
    }

    #[test]
    fn a_cut_off_plan_is_reported_as_such() {
        let cut = &TWO_TASKS[..TWO_TASKS.len() / 2];
        let err = parse_err(&format!("```json\n{cut}"));
        let PlanError::Json(message) = &err else {
            panic!("expected a JSON error, got {err:?}");
        };
        assert!(message.starts_with("EOF while parsing"), "{message}");
    }

    #[test]
    fn json_without_subtasks_says_so_and_lists_its_keys() {
        let err = parse_err(r#"{"query_analysis": "x", "tasks": []}"#);
        assert_eq!(
            err,
            PlanError::MissingSubtasks(vec!["query_analysis".to_owned(), "tasks".to_owned()])
        );
        assert_eq!(
            err.to_string(),
            "the JSON has no `subtasks` list (found only `query_analysis`, `tasks`)"
        );
    }

    #[test]
    fn wrongly_typed_fields_name_their_path() {
        let cases = [
            (
                r#"{"subtasks": "do it"}"#,
                "`subtasks` must be a list of subtasks, not a string",
            ),
            (
                r#"{"subtasks": [{"title": "A"}, 3]}"#,
                "`subtasks[1]` must be an object, not a number",
            ),
            (
                r#"{"subtasks": [{"id": true, "title": "A"}]}"#,
                "`subtasks[0].id` must be a string or a number, not a boolean",
            ),
            (
                r#"{"subtasks": [{"title": "A", "depends_on": [{"id": "b"}]}]}"#,
                "`subtasks[0].depends_on[0]` must be a string, not an object",
            ),
            (
                r#"{"subtasks": [{"id": "a", "focus_areas": ["x"]}]}"#,
                "`subtasks[0]` has neither a title nor a description",
            ),
        ];
        for (answer, message) in cases {
            assert_eq!(parse_err(answer).to_string(), message, "{answer}");
        }
    }

    #[test]
    fn an_empty_subtask_list_is_empty() {
        let err = parse_err(r#"{"subtasks": []}"#);
        assert_eq!(err, PlanError::Empty);
        assert_eq!(err.to_string(), "the plan has no subtasks");
    }

    #[test]
    fn the_first_plan_found_decides_even_when_it_is_invalid() {
        // A later, valid-looking object is more likely an example than a better plan.
        let answer = format!(
            "{{\"subtasks\": [{{\"id\": \"a\", \"title\": \"A\", \"depends_on\": [\"a\"]}}]}} \
             and {TWO_TASKS}"
        );
        assert_eq!(
            parse_err(&answer),
            PlanError::Cycle(vec!["a".into(), "a".into()])
        );
    }

    // --- checking ---

    #[test]
    fn duplicate_ids_are_refused() {
        let err = check_plan(plan_of(vec![task("a", &[]), task(" a", &[])]), &rules())
            .expect_err("duplicate");
        assert_eq!(err, PlanError::DuplicateId("a".to_owned()));
        assert_eq!(err.to_string(), "two subtasks share the id `a`");
    }

    #[test]
    fn an_empty_id_is_refused() {
        let err = check_plan(plan_of(vec![task("a", &[]), task("  ", &[])]), &rules())
            .expect_err("empty id");
        assert_eq!(err.to_string(), "`subtasks[1].id` is empty");
    }

    #[test]
    fn unknown_dependencies_are_refused() {
        let err = check_plan(plan_of(vec![task("a", &[]), task("b", &["zz"])]), &rules())
            .expect_err("unknown dependency");
        assert_eq!(
            err.to_string(),
            "subtask `b` depends on `zz`, which is not in the plan"
        );
    }

    #[test]
    fn a_self_dependency_is_a_cycle() {
        let err = check_plan(plan_of(vec![task("a", &["a"])]), &rules()).expect_err("cycle");
        assert_eq!(err.to_string(), "the dependencies form a cycle: a → a");
    }

    #[test]
    fn a_cycle_is_reported_along_its_path() {
        let plan = plan_of(vec![
            task("start", &["a"]),
            task("a", &["b"]),
            task("b", &["c"]),
            task("c", &["a"]),
        ]);
        let err = check_plan(plan, &rules()).expect_err("cycle");
        assert_eq!(
            err,
            PlanError::Cycle(["a", "b", "c", "a"].map(String::from).to_vec())
        );
        assert_eq!(
            err.to_string(),
            "the dependencies form a cycle: a → b → c → a"
        );
    }

    #[test]
    fn a_diamond_is_not_a_cycle() {
        let plan = plan_of(vec![
            task("d", &["b", "c"]),
            task("b", &["a"]),
            task("c", &["a"]),
            task("a", &[]),
        ]);
        assert!(check_plan(plan, &rules()).is_ok());
    }

    #[test]
    fn duplicate_dependencies_are_dropped_silently() {
        let checked = check_plan(
            plan_of(vec![task("a", &[]), task("b", &["a", "a", " a"])]),
            &rules(),
        )
        .expect("valid");
        assert_eq!(checked.plan.subtasks[1].depends_on, [SubtaskId::new("a")]);
        assert!(checked.warnings.is_empty());
    }

    #[test]
    fn an_unknown_role_becomes_the_default_with_a_warning() {
        let mut t = task("poem", &[]);
        t.worker = "poet".to_owned();
        let checked = check_plan(plan_of(vec![t]), &rules()).expect("valid");
        assert_eq!(checked.plan.subtasks[0].worker, "analysis");
        assert_eq!(
            checked.warnings,
            ["subtask `poem`: unknown worker role `poet`; using `analysis`"]
        );
    }

    #[test]
    fn too_many_subtasks_are_cut_and_dependencies_on_cut_ones_dropped() {
        let rules = PlanRules {
            max_subtasks: 2,
            ..rules()
        };
        let plan = plan_of(vec![
            task("a", &["c"]),
            task("b", &["a", "d"]),
            task("c", &[]),
            task("d", &[]),
        ]);
        let checked = check_plan(plan, &rules).expect("valid");
        assert_eq!(ids(&checked.plan), ["a", "b"]);
        assert!(checked.plan.subtasks[0].depends_on.is_empty());
        assert_eq!(checked.plan.subtasks[1].depends_on, [SubtaskId::new("a")]);
        assert_eq!(
            checked.warnings,
            [
                "plan had 4 subtasks; kept the first 2 (max_subtasks)",
                "subtask `a` no longer depends on `c`, which was cut by max_subtasks",
                "subtask `b` no longer depends on `d`, which was cut by max_subtasks",
            ]
        );
    }

    #[test]
    fn errors_refer_to_the_full_plan_before_it_is_cut() {
        let rules = PlanRules {
            max_subtasks: 1,
            ..rules()
        };
        let plan = plan_of(vec![task("a", &[]), task("b", &["c"]), task("c", &["b"])]);
        let err = check_plan(plan, &rules).expect_err("cycle beyond the cap");
        assert_eq!(
            err,
            PlanError::Cycle(["b", "c", "b"].map(String::from).to_vec())
        );
    }

    #[test]
    fn roles_of_cut_subtasks_are_not_warned_about() {
        let rules = PlanRules {
            max_subtasks: 1,
            ..rules()
        };
        let mut cut = task("b", &[]);
        cut.worker = "poet".to_owned();
        let checked = check_plan(plan_of(vec![task("a", &[]), cut]), &rules).expect("valid");
        assert_eq!(
            checked.warnings,
            ["plan had 2 subtasks; kept the first 1 (max_subtasks)"]
        );
    }

    #[test]
    fn checking_a_checked_plan_changes_nothing() {
        let once = parse(TWO_TASKS);
        let twice = check_plan(once.plan.clone(), &rules()).expect("still valid");
        assert_eq!(twice.plan, once.plan);
        assert!(twice.warnings.is_empty());
    }

    #[test]
    fn rules_for_roles_take_the_first_as_default() {
        let roles = crate::engine::roles::builtin_roles();
        let rules = PlanRules::for_roles(&roles, 5);
        assert_eq!(rules.default_role, "analysis");
        assert_eq!(rules.roles.len(), roles.len());
        assert_eq!(rules.max_subtasks, 5);
    }

    // --- the serde contract ---

    #[test]
    fn plan_round_trips_through_serde_json() {
        let plan = expected_two_tasks();
        let json = serde_json::to_string_pretty(&plan).expect("serialises");
        let back: Plan = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, plan);
        // The documented field names and the lowercase priority are the contract.
        let value: Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["subtasks"][1]["depends_on"][0], "task_1");
        assert_eq!(value["subtasks"][0]["priority"], "high");
        assert_eq!(value["subtasks"][0]["worker"], "research");
    }
}
