//! Finding the plan's JSON in a model's answer: raw, in a ```json (or bare) fence, or between
//! prose, forgiving trailing commas, with error positions that point into the answer as the
//! model wrote it; and the subtasks already complete in an answer still streaming
//! (`draft_subtasks`). Decoding the JSON found is `decode`'s job, checking it `check`'s.

use std::collections::HashSet;

use serde_json::Value;

use super::check::check_plan;
use super::decode::decode_plan;
use super::{CheckedPlan, Plan, PlanError, PlanRules, PlannedSubtask};

/// How many `{` positions are tried as the start of a plan before giving up. Bounds the work
/// on long answers full of braces (the scan from each start is linear).
const MAX_CANDIDATES: usize = 64;

/// Parse a planner's answer (raw JSON, fenced, or between prose), decode it leniently and check
/// it against `rules`. See `find_plan` for how the plan is found in the text.
pub fn parse_plan(answer: &str, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    find_plan(answer, |value| {
        let (plan, mut warnings) = decode_plan(value)?;
        let checked = check_plan(plan, rules)?;
        warnings.extend(checked.warnings);
        Ok(CheckedPlan {
            plan: checked.plan,
            warnings,
        })
    })
}

/// Read a plan file's text exactly as a planner's answer is read (same extraction, same lenient
/// defaults), but do not check it: the run checks every plan it is given against its own rules,
/// and reports what it changed as notices. A subtask without a role keeps an empty `worker`,
/// which the check turns into the default role without a warning, as for the planner.
/// Returns the plan and warnings about values that were replaced (an unknown priority…).
pub fn read_plan_text(text: &str) -> Result<(Plan, Vec<String>), PlanError> {
    find_plan(text, decode_plan)
}

/// What one candidate turned out to be.
enum Outcome<T> {
    Plan(Result<T, PlanError>),
    OtherJson,
    Broken,
}

/// Find the plan in `answer` and hand its JSON to `use_plan`.
///
/// Candidates are tried in this order: the whole answer when it starts with `{`, the content
/// of each ```json or bare ``` fence, then every `{ … }` span in the text (matched with a
/// scanner that skips braces inside strings). The first candidate that is JSON and holds a
/// `subtasks` list is *the* plan: its decoding or checking errors are returned as they are,
/// since a later candidate is far more likely an example than a better plan.
fn find_plan<T>(
    answer: &str,
    mut use_plan: impl FnMut(&Value) -> Result<T, PlanError>,
) -> Result<T, PlanError> {
    let mut tried: HashSet<(usize, usize)> = HashSet::new();
    // What to report when no candidate is a plan, from most to least telling: broken JSON that
    // mentions `subtasks` (most likely the plan itself, e.g. cut off by max_tokens), valid JSON
    // without `subtasks`, any broken JSON.
    let mut broken_plan: Option<PlanError> = None;
    let mut not_a_plan: Option<PlanError> = None;
    let mut broken_other: Option<PlanError> = None;

    let mut attempt = |start: usize, text: &str| -> Outcome<T> {
        match parse_json(text) {
            Ok(value) => match plan_value(&value) {
                Some(plan) => Outcome::Plan(use_plan(plan)),
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

/// The subtasks whose objects are complete in a planner's answer that is still streaming: the
/// objects of the `"subtasks": [ … ]` list, from its start up to the first one that has not
/// closed yet, decoded leniently as a finished plan's would be (ids generated the same way).
/// Pure and cheap: one scan of the text per call, so it can run on every streamed piece. An
/// answer with no such list yet, or whose complete objects do not decode, gives what it can:
/// the longest run of objects from the first that does decode, possibly none.
pub fn draft_subtasks(partial: &str) -> Vec<PlannedSubtask> {
    let Some(list) = subtasks_list_start(partial) else {
        return Vec::new();
    };
    let bytes = partial.as_bytes();
    let mut objects = Vec::new();
    let mut at = list;
    loop {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b',') {
            at += 1;
        }
        if at >= bytes.len() || bytes[at] != b'{' {
            break;
        }
        let Some(end) = matching_brace(partial, at) else {
            break;
        };
        match parse_json(&partial[at..end]) {
            Ok(value) => objects.push(value),
            Err(_) => break,
        }
        at = end;
    }
    // A complete object that does not decode (a number for a title…) stops the draft there:
    // the check of the finished answer will say what is wrong with it.
    while !objects.is_empty() {
        if let Ok((plan, _)) = decode_plan(&Value::Array(objects.clone())) {
            return plan.subtasks;
        }
        objects.pop();
    }
    Vec::new()
}

/// The byte just past the `[` of the first `"subtasks": [` outside a string.
fn subtasks_list_start(text: &str) -> Option<usize> {
    const KEY: &str = "\"subtasks\"";
    let mut from = 0;
    while let Some(found) = text[from..].find(KEY) {
        let after = from + found + KEY.len();
        let rest = text[after..].trim_start();
        if let Some(rest) = rest.strip_prefix(':') {
            let rest = rest.trim_start();
            if rest.starts_with('[') {
                return Some(text.len() - rest.len() + 1);
            }
        }
        from = after;
    }
    None
}
