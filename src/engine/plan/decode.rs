//! Lenient decoding of a plan-shaped JSON value: missing optional fields get defaults, ids may
//! be numbers, single values stand for lists, priorities may be in any case. Every type error
//! names its JSON path. No checking of the plan as a whole (that is `check`).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{Plan, PlanError, PlannedSubtask, Priority};
use crate::protocol::Complexity;
use crate::protocol::SubtaskId;

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
/// A missing role is left empty: the check gives it the run's default role, so the default is
/// decided in one place whatever the plan came from.
pub(super) fn decode_plan(value: &Value) -> Result<(Plan, Vec<String>), PlanError> {
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
        let worker = text_value(obj.get("worker"), &at("worker"))?.unwrap_or_default();
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
        // Whether the earlier run has such a subtask is the run's to check: only it knows the
        // earlier run.
        let reuse = id_value(obj.get("reuse"), &at("reuse"))?.map(SubtaskId);
        // Whether it is used (only with the `custom` role, one per plan) is the check's.
        let role_prompt = text_value(obj.get("role_prompt"), &at("role_prompt"))?;
        let model = text_value(obj.get("model"), &at("model"))?;
        subtasks.push(PlannedSubtask {
            id: SubtaskId(id),
            worker,
            title,
            description,
            focus_areas,
            depends_on,
            priority,
            reuse,
            role_prompt,
            model,
        });
    }

    let complexity = match top.get("complexity") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            let found = Complexity::from_word(s);
            if found.is_none() {
                warnings.push(format!(
                    "unknown complexity `{}`; expected straightforward, breadth_first or \
                     depth_first",
                    s.trim()
                ));
            }
            found
        }
        Some(other) => {
            warnings.push(format!(
                "complexity {other} is not straightforward, breadth_first or depth_first"
            ));
            None
        }
    };
    let plan = Plan {
        query_analysis: prose_value(top.get("query_analysis")),
        subtasks,
        synthesis_guidance: prose_value(top.get("synthesis_guidance")),
        complexity,
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
