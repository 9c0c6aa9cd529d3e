//! Building the planner, worker and synthesis requests. Pure: text in, `ChatRequest` out.
//! The prompt texts live in `assets/prompts/` and are compiled into the binary.
//!
//! What each request must contain is a contract (DESIGN §4) and is pinned by the tests below:
//! a worker sees its dependencies' results in full, the synthesis sees every finding in full
//! and the titles of the missing parts. Texts the models produced (results, previous answers)
//! are passed through unchanged; only the engine decides what to cut, never this module.
//! No I/O, no clock, no knowledge of runs or providers.

use std::fmt::Write as _;

use crate::engine::plan::{PlanRules, PlannedSubtask};
use crate::engine::roles::WorkerRole;
use crate::llm::{ChatRequest, Message};
use crate::protocol::{AttachedFile, CallRole};

/// The planner's system prompt, with `{{…}}` placeholders filled in by [`planner_request`].
const PLANNER_PROMPT: &str = include_str!("../../assets/prompts/planner.md");
/// The synthesiser's system prompt, used as is.
const SYNTHESIS_PROMPT: &str = include_str!("../../assets/prompts/synthesis.md");
/// What a follow-up's planner is told about planning on top of an earlier run.
const FOLLOW_UP_PROMPT: &str = include_str!("../../assets/prompts/follow_up.md");
/// The validator's system prompt, used as is.
const VALIDATOR_PROMPT: &str = include_str!("../../assets/prompts/validator.md");

/// Model and limits for one kind of call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSpec {
    pub model: String,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

impl CallSpec {
    fn request(&self, role: CallRole, system: String, messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: self.model.clone(),
            role,
            system,
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            structured: None,
            cache: crate::llm::CachePolicy::Use,
            tools: Vec::new(),
        }
    }
}

/// The planner request: the roles and what each is good at, the preset's `guidance` (if any)
/// and the plan's format. `retry` holds the previous answer and what was wrong with it, so the
/// planner can correct itself on the second attempt.
pub fn planner_request(
    query: &str,
    roles: &[WorkerRole],
    guidance: &str,
    rules: &PlanRules,
    spec: &CallSpec,
    retry: Option<(&str, &str)>,
) -> ChatRequest {
    let max = rules.max_subtasks.max(1);
    let (count, cap) = if max >= 2 {
        (
            format!("2 to {max} subtasks (one for a straightforward query)"),
            format!("{max} subtasks"),
        )
    } else {
        ("a single subtask".to_owned(), "one subtask".to_owned())
    };
    let mut role_list = String::new();
    for role in roles {
        let default = if role.name == rules.default_role {
            " (the default)"
        } else {
            ""
        };
        let _ = writeln!(
            role_list,
            "  - `{}`{default}: {}",
            role.name,
            one_line(&role.description)
        );
    }
    // The example plan must only name roles that exist, or it teaches the model a wrong name.
    // With the built-in roles it reads naturally: research first, analysis building on it.
    let default = roles
        .first()
        .map_or(rules.default_role.as_str(), |r| &r.name);
    let role_a = roles.get(1).map_or(default, |r| &r.name);
    let role_b = default;
    let guidance = if guidance.trim().is_empty() {
        String::new()
    } else {
        format!("\n## For this kind of query\n\n{}\n", guidance.trim())
    };
    let system = fill(
        &PLANNER_PROMPT
            .replace("{{count}}", &count)
            .replace("{{max_subtasks}}", &cap)
            .replace("{{role_a}}", role_a)
            .replace("{{role_b}}", role_b),
        // Last and in one pass, so text from a preset is never taken for a placeholder.
        &[
            ("{{roles}}", role_list.trim_end()),
            ("{{guidance}}", &guidance),
        ],
    );

    let mut messages = vec![Message::user(query)];
    if let Some((previous, error)) = retry {
        messages.push(Message::assistant(previous));
        messages.push(Message::user(format!(
            "Your previous answer could not be used as a plan: {error}\n\n\
             Answer again with only the corrected JSON plan, in exactly the format described, \
             and nothing else."
        )));
    }
    spec.request(CallRole::Planner, system, messages)
}

/// `template` with each placeholder replaced by its text, in one pass: a replacement text that
/// happens to hold a placeholder is left as it is.
fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    loop {
        let next = pairs
            .iter()
            .filter_map(|(key, text)| rest.find(key).map(|at| (at, *key, *text)))
            .min_by_key(|(at, _, _)| *at);
        match next {
            Some((at, key, text)) => {
                out.push_str(&rest[..at]);
                out.push_str(text);
                rest = &rest[at + key.len()..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The role of a plan's `custom` subtasks: the planner's `role_prompt` inside the preamble and
/// closing rules every role's prompt has, so a worker the planner invented still keeps to its
/// subtask and writes what the synthesis expects.
pub fn custom_role(role_prompt: &str) -> WorkerRole {
    let system_prompt = format!(
        "You are a specialist working on one subtask of a larger question. Other specialists \
         cover the other parts, and a final step combines everyone's results into one \
         report.\n\n{}\n\nWrite in markdown: short sections or bullet points, concrete facts \
         and figures, uncertainty stated plainly. Start with the substance: no preamble, no \
         restating the task. Stay within your subtask; do not answer the whole question.",
        role_prompt.trim()
    );
    WorkerRole::new(
        crate::engine::roles::CUSTOM_ROLE,
        "A specialist the planner described.",
        &system_prompt,
    )
}

/// A worker request: the role's system prompt; the query, the subtask and each dependency's
/// title and full result in the user message.
pub fn worker_request(
    query: &str,
    subtask: &PlannedSubtask,
    role: &WorkerRole,
    dependencies: &[(&PlannedSubtask, &str)],
    spec: &CallSpec,
) -> ChatRequest {
    // Model-written texts go between tags rather than under markdown headings: a result is
    // itself markdown, and its headings must not be mistaken for the end of the section.
    let mut user = String::new();
    let _ = writeln!(
        user,
        "The user's query, of which your subtask is one part:\n"
    );
    push_tagged(&mut user, "query", query);
    let _ = writeln!(user, "\n# Your subtask: {}\n", one_line(&subtask.title));
    let _ = writeln!(user, "{}", subtask.description.trim());
    if !subtask.focus_areas.is_empty() {
        let _ = writeln!(user, "\nFocus areas:");
        for area in &subtask.focus_areas {
            let _ = writeln!(user, "- {}", one_line(area));
        }
    }
    if !dependencies.is_empty() {
        let _ = writeln!(
            user,
            "\n# Results your subtask builds on\n\n\
             These subtasks are finished. Use their results; do not redo their work."
        );
        for (dependency, result) in dependencies {
            let _ = writeln!(user, "\n## {}\n", one_line(&dependency.title));
            push_tagged(&mut user, "result", result);
        }
    }
    let _ = write!(
        user,
        "\nWrite your part now: the subtask above and its focus areas, nothing else."
    );
    spec.request(
        CallRole::Worker,
        role.system_prompt.trim().to_owned(),
        vec![Message::user(user)],
    )
}

/// `result` cut to at most `max` characters (on a character boundary), with a line that says
/// how much was left out; unchanged without a bound or when it fits.
pub fn bound_result(result: &str, max: Option<usize>) -> std::borrow::Cow<'_, str> {
    let Some(max) = max else {
        return result.into();
    };
    match result.char_indices().nth(max) {
        None => result.into(),
        Some((cut, _)) => {
            let left_out = result[cut..].chars().count();
            format!(
                "{}\n\n[… {left_out} more characters of this result left out \
                 (limits.max_dependency_chars)]",
                &result[..cut]
            )
            .into()
        }
    }
}

/// `text` cut to at most `max` characters (on a character boundary), with a line that says how
/// much of `what` was left out, and whether it was cut.
pub fn cut_text<'a>(text: &'a str, max: usize, what: &str) -> (std::borrow::Cow<'a, str>, bool) {
    match text.char_indices().nth(max) {
        None => (text.into(), false),
        Some((cut, _)) => {
            let left_out = text[cut..].chars().count();
            let text = format!(
                "{}\n\n[… {left_out} more characters of {what} left out]",
                &text[..cut]
            );
            (text.into(), true)
        }
    }
}

/// The earlier run a follow-up builds on, as its prompts quote it (already cut by the engine).
#[derive(Debug, Clone, Copy)]
pub struct Earlier<'a> {
    pub query: &'a str,
    /// Its report; empty when it has none.
    pub report: &'a str,
    /// Its subtasks with a result, for the planner: id, title and an excerpt of the result.
    pub subtasks: &'a [EarlierSubtask<'a>],
}

/// One earlier subtask as a follow-up's planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct EarlierSubtask<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub excerpt: &'a str,
}

/// Put the earlier run before a follow-up planner's query: its question, its report, and its
/// subtasks with an excerpt of each result, with how to reuse them. The system prompt is left
/// alone so a plan's format is described in one place.
pub fn planner_follow_up(request: &mut ChatRequest, earlier: &Earlier<'_>) {
    let mut context = earlier_context(earlier);
    if !earlier.subtasks.is_empty() {
        let _ = writeln!(context, "\n# The earlier run's subtasks\n");
        for subtask in earlier.subtasks {
            let _ = writeln!(
                context,
                "## `{}`: {}\n",
                one_line(subtask.id),
                one_line(subtask.title)
            );
            push_tagged(&mut context, "excerpt", subtask.excerpt);
            context.push('\n');
        }
    }
    let _ = writeln!(context, "\n{}", FOLLOW_UP_PROMPT.trim());
    prepend_context(request, &context, "# The follow-up query");
}

/// Put the earlier run's question and report before a follow-up worker's instructions.
pub fn worker_follow_up(request: &mut ChatRequest, earlier: &Earlier<'_>) {
    let mut context = earlier_context(earlier);
    let _ = writeln!(
        context,
        "\nThe query below follows up on that analysis: build on it, do not repeat it."
    );
    prepend_context(request, &context, "# Your task");
}

fn earlier_context(earlier: &Earlier<'_>) -> String {
    let mut context = String::new();
    let _ = writeln!(context, "# An earlier analysis\n\nIts query:\n");
    push_tagged(&mut context, "earlier_query", earlier.query);
    if earlier.report.trim().is_empty() {
        let _ = writeln!(context, "\nIt wrote no report.");
    } else {
        let _ = writeln!(context, "\nIts report:\n");
        push_tagged(&mut context, "earlier_report", earlier.report);
    }
    context
}

/// `context`, then `heading`, then the request's first user message.
fn prepend_context(request: &mut ChatRequest, context: &str, heading: &str) {
    if let Some(first) = request.messages.first_mut() {
        first.content = format!("{}\n\n{heading}\n\n{}", context.trim_end(), first.content);
    }
}

/// The heading of the attached files' block, which opens the first message of the planner's
/// and every worker's request.
pub const ATTACHED_HEADING: &str = "# Files the user attached";

/// Put the files the person attached before everything else in the request's first message:
/// one block, the same bytes for every call of the run (files in their given order, paths as
/// named, no sizes or times), so identical requests stay identical for the result cache and
/// share the longest possible prefix for a server's prompt cache. Each file is between
/// `<file path="…">` tags, its text unchanged.
pub fn attach_files(request: &mut ChatRequest, files: &[AttachedFile]) {
    if files.is_empty() {
        return;
    }
    let mut block = String::new();
    let _ = writeln!(
        block,
        "{ATTACHED_HEADING}\n\n\
         The user attached these files to the query. Use them where they bear on the task, \
         and name the file when you rely on one. They end at `</attached_files>`; the request \
         follows.\n\n<attached_files>"
    );
    for file in files {
        let _ = writeln!(
            block,
            "<file path=\"{}\">\n{}\n</file>",
            attribute(&file.path),
            file.text.trim_matches('\n')
        );
    }
    block.push_str("</attached_files>");
    if let Some(first) = request.messages.first_mut() {
        first.content = format!("{block}\n\n{}", first.content);
    }
}

/// A path as an attribute value: one line, its quotes and angle brackets escaped.
fn attribute(path: &str) -> String {
    one_line(path)
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One finished subtask as the synthesis sees it.
#[derive(Debug, Clone, Copy)]
pub struct Finding<'a> {
    pub title: &'a str,
    pub result: &'a str,
    /// The model stopped at the token limit: the result may end mid-way.
    pub cut_off: bool,
    /// The validator failed it twice, for this reason; it is kept, flagged.
    pub flagged: Option<&'a str>,
}

/// Said of a result that stopped at the token limit, wherever it is shown or quoted.
pub const CUT_OFF: &str = "cut off at the token limit";

/// A subtask with no result, and why (`failed: HTTP 500 …`, `blocked`, `cancelled`).
#[derive(Debug, Clone, Copy)]
pub struct Gap<'a> {
    pub title: &'a str,
    pub why: &'a str,
}

/// The synthesis request: the query, the guidance, every finding in full, and the gaps. The
/// preset's `structure` (if any) is added to the system prompt, the plan's `guidance` to the
/// user message.
pub fn synthesis_request(
    query: &str,
    structure: &str,
    guidance: &str,
    findings: &[Finding<'_>],
    gaps: &[Gap<'_>],
    spec: &CallSpec,
) -> ChatRequest {
    let mut user = String::new();
    let _ = writeln!(user, "The user's query:\n");
    push_tagged(&mut user, "query", query);
    let _ = writeln!(user, "\n# Synthesis guidance\n");
    if guidance.trim().is_empty() {
        let _ = writeln!(user, "None given: use your judgement.");
    } else {
        let _ = writeln!(user, "{}", guidance.trim());
    }
    let _ = writeln!(user, "\n# Findings");
    if findings.is_empty() {
        let _ = writeln!(user, "\nNo part of the work produced a result.");
    }
    for (n, finding) in findings.iter().enumerate() {
        let _ = writeln!(user, "\n## {}. {}\n", n + 1, one_line(finding.title));
        if finding.cut_off {
            let _ = writeln!(
                user,
                "This result was {CUT_OFF}: it may end mid-way. Use what it says; do not \
                 present it as complete.\n"
            );
        }
        if let Some(reason) = finding.flagged {
            let _ = writeln!(
                user,
                "A reviewer flagged this result: {}. Treat its claims with caution; where \
                 the report relies on it, say that it is uncertain.\n",
                one_line(reason).trim_end_matches('.')
            );
        }
        push_tagged(&mut user, "finding", finding.result);
    }
    let _ = writeln!(user, "\n# Missing\n");
    if gaps.is_empty() {
        let _ = writeln!(user, "Nothing: every part of the work produced a result.");
    } else {
        let _ = writeln!(
            user,
            "These parts of the work produced no result; the report must say what it cannot \
             cover because of them:\n"
        );
        for gap in gaps {
            let _ = writeln!(user, "- {} ({})", one_line(gap.title), one_line(gap.why));
        }
    }
    let _ = write!(user, "\nWrite the report now.");
    let mut system = SYNTHESIS_PROMPT.trim().to_owned();
    if !structure.trim().is_empty() {
        let _ = write!(
            system,
            "\n\n## The report's structure\n\n{}",
            structure.trim()
        );
    }
    spec.request(CallRole::Synthesizer, system, vec![Message::user(user)])
}

/// The report when the synthesis call failed: the findings joined under their titles, clearly
/// marked as unsynthesised, with the gaps listed.
pub fn unsynthesized_report(
    query: &str,
    findings: &[Finding<'_>],
    gaps: &[Gap<'_>],
    error: &str,
) -> String {
    let note = format!(
        "**Unsynthesised:** the synthesis step failed ({}); below are the worker results as \
         they came.",
        one_line(error)
    );
    joined_report(query, findings, gaps, &note)
}

/// The findings joined under their titles, after a one-line `note` that says why they were
/// not synthesised (a failed synthesis, an interrupted run), with the gaps listed.
pub fn joined_report(
    query: &str,
    findings: &[Finding<'_>],
    gaps: &[Gap<'_>],
    note: &str,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", one_line(query));
    let _ = writeln!(out, "> {}", one_line(note));
    if findings.is_empty() {
        let _ = writeln!(out, "\n_No subtask produced a result._");
    }
    for finding in findings {
        let _ = writeln!(out, "\n## {}\n", one_line(finding.title));
        if finding.cut_off {
            let _ = writeln!(out, "_({CUT_OFF})_\n");
        }
        if let Some(reason) = finding.flagged {
            let _ = writeln!(out, "_(flagged: {})_\n", one_line(reason));
        }
        let _ = writeln!(out, "{}", finding.result.trim());
    }
    if !gaps.is_empty() {
        let _ = writeln!(out, "\n## Missing\n");
        for gap in gaps {
            let _ = writeln!(out, "- **{}**: {}", one_line(gap.title), one_line(gap.why));
        }
    }
    out
}

/// The validator request: the query, the subtask (title, description, focus areas) and the
/// result to judge, in full.
pub fn validator_request(
    query: &str,
    subtask: &PlannedSubtask,
    result: &str,
    spec: &CallSpec,
) -> ChatRequest {
    let mut user = String::new();
    let _ = writeln!(user, "The user's query:\n");
    push_tagged(&mut user, "query", query);
    let _ = writeln!(
        user,
        "\n# The subtask under review: {}\n",
        one_line(&subtask.title)
    );
    let _ = writeln!(user, "{}", subtask.description.trim());
    if !subtask.focus_areas.is_empty() {
        let _ = writeln!(user, "\nFocus areas:");
        for area in &subtask.focus_areas {
            let _ = writeln!(user, "- {}", one_line(area));
        }
    }
    let _ = writeln!(user, "\n# The worker's result\n");
    push_tagged(&mut user, "result", result);
    let _ = write!(
        user,
        "\nGive your verdict now: PASS or FAIL, with the reason."
    );
    spec.request(
        CallRole::Validator,
        VALIDATOR_PROMPT.trim().to_owned(),
        vec![Message::user(user)],
    )
}

/// Tell a worker that its previous answer to this subtask was rejected, and why, so the next
/// one fixes it.
pub fn worker_revision(request: &mut ChatRequest, reason: &str) {
    if let Some(first) = request.messages.first_mut() {
        let _ = write!(
            first.content,
            "\n\nA reviewer rejected your previous answer to this subtask: {}\nWrite the \
             whole answer again, fixing that.",
            one_line(reason)
        );
    }
}

/// A validator's verdict as read from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// Why, as the validator said it; empty when it gave no reason.
    pub reason: String,
}

/// The most characters of a verdict's reason kept.
const REASON_MAX_CHARS: usize = 500;

/// Read a validator's answer leniently: `PASS`, `FAIL: reason`, `**FAIL** - reason`,
/// `Verdict: fail - …`, a JSON object with a `verdict` (and `reason`), any case, after leading
/// prose. `None` when no verdict can be found (the caller takes that as a pass, with a notice).
pub fn parse_verdict(answer: &str) -> Option<Verdict> {
    json_verdict(answer).or_else(|| text_verdict(answer))
}

fn json_verdict(answer: &str) -> Option<Verdict> {
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    let value: serde_json::Value = serde_json::from_str(answer.get(start..=end)?).ok()?;
    let object = value.as_object()?;
    let word = object
        .iter()
        .find(|(k, _)| matches!(k.to_lowercase().as_str(), "verdict" | "result" | "status"))
        .map(|(_, v)| v)?;
    let passed = match word {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(w) => verdict_word(w)?,
        _ => return None,
    };
    let reason = object
        .iter()
        .find(|(k, _)| {
            matches!(
                k.to_lowercase().as_str(),
                "reason" | "reasons" | "explanation" | "why" | "feedback"
            )
        })
        .map(|(_, v)| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    Some(Verdict {
        passed,
        reason: bounded_reason(&reason),
    })
}

/// `pass`/`passed`/`fail`/`failed` in any case, as a whole word.
fn verdict_word(word: &str) -> Option<bool> {
    match word.trim().to_lowercase().as_str() {
        "pass" | "passed" | "passes" => Some(true),
        "fail" | "failed" | "fails" => Some(false),
        _ => None,
    }
}

/// The first line that opens with a verdict (after markdown marks and a `Verdict:` label), or
/// failing that the only verdict word in the answer; the reason is what follows it on that
/// line, else the lines after.
fn text_verdict(answer: &str) -> Option<Verdict> {
    let lines: Vec<&str> = answer.lines().collect();
    let words_of = |line: &str| -> Vec<String> {
        line.split(|c: char| !c.is_alphanumeric() && c != '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    // A line whose first word (after an optional label) is the verdict.
    for (n, line) in lines.iter().enumerate() {
        let words = words_of(line);
        let first = match words.first().map(String::as_str) {
            Some("verdict" | "answer" | "result" | "decision") => words.get(1),
            _ => words.first(),
        };
        if let Some(passed) = first.and_then(|w| verdict_word(w)) {
            return Some(Verdict {
                passed,
                reason: reason_after(line, &lines[n + 1..]),
            });
        }
    }
    // Prose that names one verdict only, as a capitalised word (`… so: PASS`).
    let mut found = None;
    for (n, line) in lines.iter().enumerate() {
        for word in line.split(|c: char| !c.is_alphanumeric()) {
            let passed = match word {
                "PASS" | "PASSED" => true,
                "FAIL" | "FAILED" => false,
                _ => continue,
            };
            match found {
                Some((p, _)) if p != passed => return None,
                Some(_) => {}
                None => found = Some((passed, n)),
            }
        }
    }
    found.map(|(passed, n)| Verdict {
        passed,
        reason: reason_after(lines[n], &lines[n + 1..]),
    })
}

/// The text after the verdict word on `line` (without `:`, `-`, `—` or markdown marks), else
/// the lines after it.
fn reason_after(line: &str, rest: &[&str]) -> String {
    let lower = line.to_lowercase();
    let after = ["passed", "failed", "passes", "fails", "pass", "fail"]
        .iter()
        .filter_map(|w| lower.find(w).map(|at| at + w.len()))
        .min()
        .and_then(|at| line.get(at..))
        .unwrap_or("");
    let trimmed = after.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, ':' | '-' | '–' | '—' | '*' | '_' | '`' | '.' | ',')
    });
    let reason = if trimmed.trim().is_empty() {
        rest.join("\n")
    } else {
        trimmed.to_owned()
    };
    bounded_reason(reason.trim_end_matches(['*', '_', '`']))
}

fn bounded_reason(reason: &str) -> String {
    let line = one_line(reason);
    match line.char_indices().nth(REASON_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// `text` between `<tag>` lines, unchanged but for surrounding blank lines.
fn push_tagged(out: &mut String, tag: &str, text: &str) {
    let _ = writeln!(out, "<{tag}>\n{}\n</{tag}>", text.trim_matches('\n'));
}

/// Collapse whitespace (newlines included) to single spaces: for headings, list items and other
/// places where a line break would break the markdown.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::plan::{PlanRules, Priority, parse_plan};
    use crate::engine::roles::builtin_roles;
    use crate::llm::MessageRole;
    use crate::protocol::SubtaskId;

    fn spec() -> CallSpec {
        CallSpec {
            model: "test-model".to_owned(),
            max_tokens: 1234,
            temperature: Some(0.3),
        }
    }

    fn subtask(id: &str, title: &str) -> PlannedSubtask {
        PlannedSubtask {
            id: SubtaskId::new(id),
            worker: "analysis".to_owned(),
            title: title.to_owned(),
            description: format!("Work out {title}."),
            focus_areas: vec![],
            depends_on: vec![],
            priority: Priority::Medium,
            reuse: None,
            role_prompt: None,
            model: None,
        }
    }

    fn rules(max: usize) -> PlanRules {
        PlanRules::for_roles(&builtin_roles(), max)
    }

    const QUERY: &str = "What are the impacts of EV adoption in cities?";

    #[test]
    fn planner_request_lists_every_role_and_the_limits() {
        let roles = builtin_roles();
        let req = planner_request(QUERY, &roles, "", &rules(6), &spec(), None);
        assert_eq!(req.role, CallRole::Planner);
        assert_eq!(req.model, "test-model");
        assert_eq!(req.max_tokens, 1234);
        assert_eq!(req.temperature, Some(0.3));
        for role in &roles {
            assert!(
                req.system.contains(&format!("`{}`", role.name)),
                "{}",
                role.name
            );
            assert!(req.system.contains(&role.description), "{}", role.name);
        }
        assert!(req.system.contains("`analysis` (the default)"));
        assert!(req.system.contains("2 to 6 subtasks"));
        assert!(req.system.contains("never use more than 6 subtasks"));
        assert!(req.system.contains("ONLY"));
        assert!(!req.system.contains("{{"), "every placeholder is filled");
        assert_eq!(req.messages, [Message::user(QUERY)]);
    }

    #[test]
    fn planner_example_is_a_valid_plan_with_existing_roles() {
        // The example in the prompt is what models copy; it must pass our own parser cleanly.
        let roles = builtin_roles();
        let req = planner_request(QUERY, &roles, "", &rules(6), &spec(), None);
        let checked = parse_plan(&req.system, &rules(6)).expect("the example parses");
        assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
        assert_eq!(checked.plan.subtasks.len(), 2);
        assert_eq!(checked.plan.subtasks[0].worker, "research");
        assert_eq!(checked.plan.subtasks[1].worker, "analysis");
    }

    #[test]
    fn planner_guidance_and_the_custom_role_are_explained_and_placeholders_stay_text() {
        let roles = vec![WorkerRole::new("news", "Recent {{guidance}} events.", "p")];
        let guidance = "Cover news. {{roles}} stays as written.";
        let rules = PlanRules::for_roles(&roles, 6);
        let req = planner_request(QUERY, &roles, guidance, &rules, &spec(), None);
        assert!(
            req.system
                .contains("## For this kind of query\n\nCover news. {{roles}}")
        );
        assert!(
            req.system
                .contains("`news` (the default): Recent {{guidance}} events.")
        );
        assert!(req.system.contains("`custom`") && req.system.contains("`role_prompt`"));
        let plain = planner_request(QUERY, &roles, "  ", &rules, &spec(), None);
        assert!(!plain.system.contains("For this kind of query"));
        assert!(!plain.system.contains("{{guidance}}\n## Answer"));
    }

    #[test]
    fn a_custom_role_keeps_its_worker_in_scope() {
        let role = custom_role("You are a tax lawyer.");
        assert_eq!(role.name, "custom");
        assert!(
            role.system_prompt
                .contains("one subtask of a larger question")
        );
        assert!(role.system_prompt.contains("\n\nYou are a tax lawyer.\n\n"));
        assert!(role.system_prompt.contains("Stay within your subtask"));
    }

    #[test]
    fn the_preset_structure_goes_into_the_synthesis_system_prompt() {
        let req = synthesis_request(QUERY, "1. Summary\n2. Risks", "lead", &[], &[], &spec());
        assert!(
            req.system
                .ends_with("## The report's structure\n\n1. Summary\n2. Risks")
        );
        let plain = synthesis_request(QUERY, "", "lead", &[], &[], &spec());
        assert_eq!(plain.system, SYNTHESIS_PROMPT.trim());
    }

    #[test]
    fn planner_with_a_cap_of_one_asks_for_one_subtask() {
        let req = planner_request(QUERY, &builtin_roles(), "", &rules(1), &spec(), None);
        assert!(
            req.system
                .contains("Split the query into a single subtask.")
        );
        assert!(req.system.contains("never use more than one subtask"));
    }

    #[test]
    fn planner_retry_shows_the_previous_answer_and_the_error() {
        let previous = "{\"subtasks\": [}";
        let error = "the plan is not valid JSON: expected value at line 1 column 15";
        let req = planner_request(
            QUERY,
            &builtin_roles(),
            "",
            &rules(6),
            &spec(),
            Some((previous, error)),
        );
        let roles: Vec<MessageRole> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [MessageRole::User, MessageRole::Assistant, MessageRole::User]
        );
        assert_eq!(req.messages[0].content, QUERY);
        assert_eq!(req.messages[1].content, previous);
        assert!(req.messages[2].content.contains(error));
        assert!(req.messages[2].content.contains("only the corrected JSON"));
    }

    #[test]
    fn worker_request_holds_query_subtask_and_full_dependency_results() {
        let roles = builtin_roles();
        let role = &roles[1];
        let mut task = subtask("task_3", "Grid load");
        task.focus_areas = vec!["peak demand".to_owned(), "charging at night".to_owned()];
        task.depends_on = vec![SubtaskId::new("task_1"), SubtaskId::new("task_2")];
        let dep1 = subtask("task_1", "Emissions");
        let dep2 = subtask("task_2", "Fleet size");
        // Long, markdown-laden results must arrive whole: no cutting, no reformatting.
        let result1 = format!(
            "# Emissions\n\n{}\n\n## Tail\nlast line",
            "CO2 falls. ".repeat(2000)
        );
        let result2 = "| city | EVs |\n|---|---|\n| Oslo | 30% |";
        let req = worker_request(
            QUERY,
            &task,
            role,
            &[(&dep1, &result1), (&dep2, result2)],
            &spec(),
        );
        assert_eq!(req.role, CallRole::Worker);
        assert_eq!(req.system, role.system_prompt.trim());
        assert_eq!(req.messages.len(), 1);
        let user = &req.messages[0].content;
        assert!(user.contains(&format!("<query>\n{QUERY}\n</query>")));
        assert!(user.contains("# Your subtask: Grid load"));
        assert!(user.contains("Work out Grid load."));
        assert!(user.contains("- peak demand\n- charging at night"));
        assert!(user.contains("## Emissions"));
        assert!(user.contains("## Fleet size"));
        assert!(user.contains(&format!("<result>\n{result1}\n</result>")));
        assert!(user.contains(&format!("<result>\n{result2}\n</result>")));
    }

    #[test]
    fn worker_request_without_dependencies_has_no_results_section() {
        let roles = builtin_roles();
        let req = worker_request(QUERY, &subtask("a", "Costs"), &roles[0], &[], &spec());
        let user = &req.messages[0].content;
        assert!(!user.contains("<result>"));
        assert!(!user.contains("builds on"));
        assert!(!user.contains("Focus areas"));
    }

    #[test]
    fn synthesis_request_holds_every_finding_in_full_and_every_gap() {
        let long = "Detail. ".repeat(3000);
        let findings = [
            Finding {
                title: "Emissions",
                result: &long,
                cut_off: false,
                flagged: None,
            },
            Finding {
                title: "Grid load",
                result: "Peak demand rises 5–10%.",
                cut_off: false,
                flagged: None,
            },
        ];
        let gaps = [
            Gap {
                title: "Costs",
                why: "failed: HTTP 500 upstream error",
            },
            Gap {
                title: "Jobs",
                why: "blocked",
            },
        ];
        let req = synthesis_request(QUERY, "", "Lead with emissions.", &findings, &gaps, &spec());
        assert_eq!(req.role, CallRole::Synthesizer);
        assert_eq!(req.model, "test-model");
        assert!(req.system.contains("markdown"));
        assert!(req.system.contains("contradict"));
        let user = &req.messages[0].content;
        assert!(user.contains(QUERY));
        assert!(user.contains("Lead with emissions."));
        assert!(user.contains("## 1. Emissions"));
        assert!(user.contains("## 2. Grid load"));
        assert!(user.contains(&format!("<finding>\n{long}\n</finding>")));
        assert!(user.contains("Peak demand rises 5–10%."));
        assert!(user.contains("- Costs (failed: HTTP 500 upstream error)"));
        assert!(user.contains("- Jobs (blocked)"));
    }

    #[test]
    fn bound_results_are_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(bound_result("short", None), "short");
        assert_eq!(bound_result("short", Some(5)), "short");
        let cut = bound_result("ééééé tail", Some(3));
        assert!(cut.starts_with("ééé\n\n[… 7 more characters"), "{cut}");
        assert!(cut.contains("limits.max_dependency_chars"));
    }

    #[test]
    fn synthesis_request_says_when_nothing_is_missing_or_no_guidance_given() {
        let findings = [Finding {
            title: "A",
            result: "a",
            cut_off: false,
            flagged: None,
        }];
        let req = synthesis_request(QUERY, "", "  ", &findings, &[], &spec());
        let user = &req.messages[0].content;
        assert!(user.contains("None given"));
        assert!(user.contains("Nothing: every part of the work produced a result."));
    }

    #[test]
    fn unsynthesized_report_marks_itself_and_lists_findings_and_gaps() {
        let findings = [
            Finding {
                title: "Emissions",
                result: "CO2 falls.\n",
                cut_off: false,
                flagged: None,
            },
            Finding {
                title: "Grid load",
                result: "Peaks rise.",
                cut_off: false,
                flagged: None,
            },
        ];
        let gaps = [Gap {
            title: "Costs",
            why: "failed: HTTP 500",
        }];
        let report = unsynthesized_report("EVs in\ncities?", &findings, &gaps, "timeout after 2m");
        assert_eq!(
            report,
            "# EVs in cities?\n\n\
             > **Unsynthesised:** the synthesis step failed (timeout after 2m); below are the \
             worker results as they came.\n\n\
             ## Emissions\n\nCO2 falls.\n\n\
             ## Grid load\n\nPeaks rise.\n\n\
             ## Missing\n\n- **Costs**: failed: HTTP 500\n"
        );
    }

    #[test]
    fn unsynthesized_report_without_gaps_has_no_missing_section() {
        let report = unsynthesized_report(QUERY, &[], &[], "boom");
        assert!(report.contains("_No subtask produced a result._"));
        assert!(!report.contains("## Missing"));
    }

    #[rstest::rstest]
    #[case::bare_pass("PASS", true, "")]
    #[case::pass_with_reason("PASS: covers every focus area", true, "covers every focus area")]
    #[case::bold_fail("**FAIL**: no sources given", false, "no sources given")]
    #[case::labelled(
        "Verdict: fail - the numbers contradict",
        false,
        "the numbers contradict"
    )]
    #[case::lower_case("pass — fine", true, "fine")]
    #[case::leading_prose(
        "I read the answer carefully.\n\nFAIL: it stops mid-sentence.",
        false,
        "it stops mid-sentence."
    )]
    #[case::verdict_then_reason_below(
        "**PASS**\n\nIt answers the subtask.",
        true,
        "It answers the subtask."
    )]
    #[case::json(
        r#"{"verdict": "FAIL", "reason": "misses costs"}"#,
        false,
        "misses costs"
    )]
    #[case::json_in_a_fence("```json\n{\"verdict\": \"pass\"}\n```", true, "")]
    #[case::capitalised_in_prose("All points are covered, so my verdict is PASS.", true, "")]
    fn verdicts_are_read_leniently(
        #[case] answer: &str,
        #[case] passed: bool,
        #[case] reason: &str,
    ) {
        let verdict = parse_verdict(answer).expect("a verdict");
        assert_eq!(verdict.passed, passed, "{answer}");
        assert_eq!(verdict.reason, reason, "{answer}");
    }

    #[rstest::rstest]
    #[case::none("Looks good to me.")]
    #[case::both_named("It could PASS or FAIL depending on the reader.")]
    #[case::empty("")]
    #[case::json_without_a_verdict(r#"{"score": 3}"#)]
    fn an_answer_without_a_verdict_is_none(#[case] answer: &str) {
        assert_eq!(parse_verdict(answer), None);
    }

    #[test]
    fn the_validator_sees_the_query_the_subtask_and_the_result_in_full() {
        let rules = PlanRules::for_roles(&builtin_roles(), 6);
        let plan = parse_plan(
            r#"{"subtasks": [{"id": "a", "title": "Costs", "description": "Find costs.",
                "focus_areas": ["capex"]}]}"#,
            &rules,
        )
        .expect("a plan")
        .plan;
        let long = "Result line. ".repeat(2000);
        let req = validator_request(QUERY, &plan.subtasks[0], &long, &spec());
        assert_eq!(req.role, CallRole::Validator);
        assert!(req.system.contains("PASS") && req.system.contains("FAIL"));
        let user = &req.messages[0].content;
        assert!(user.contains(QUERY));
        assert!(user.contains("# The subtask under review: Costs"));
        assert!(user.contains("Find costs.") && user.contains("- capex"));
        assert!(user.contains(long.trim()));
        assert!(
            !user.contains("# Your subtask: "),
            "not taken for a worker call"
        );
    }

    #[test]
    fn the_synthesis_is_asked_to_name_conflicting_findings() {
        let req = synthesis_request(QUERY, "", "", &[], &[], &spec());
        assert!(req.system.contains("## Conflicting findings"));
    }

    #[test]
    fn attached_files_open_the_first_message_in_one_block_with_safe_paths() {
        let roles = builtin_roles();
        let mut req = planner_request(QUERY, &roles, "", &rules(6), &spec(), None);
        let system = req.system.clone();
        attach_files(&mut req, &[]);
        assert_eq!(
            req.messages[0].content, QUERY,
            "nothing attached, nothing changes"
        );
        let files = [
            AttachedFile {
                path: "notes.md".into(),
                text: "\nline one\n\n".into(),
            },
            AttachedFile {
                path: "a \"b\" <c>\n.txt".into(),
                text: "x".into(),
            },
        ];
        attach_files(&mut req, &files);
        let user = &req.messages[0].content;
        assert!(user.starts_with(ATTACHED_HEADING), "{user}");
        assert!(
            user.contains("<file path=\"notes.md\">\nline one\n</file>"),
            "{user}"
        );
        assert!(
            user.contains("<file path=\"a &quot;b&quot; &lt;c&gt; .txt\">\nx\n</file>"),
            "{user}"
        );
        assert!(
            user.ends_with(&format!("</attached_files>\n\n{QUERY}")),
            "{user}"
        );
        assert_eq!(req.system, system, "the system prompt is left alone");
    }
}
