//! Building the planner, worker and synthesis requests. Pure: text in, `ChatRequest` out.
//! The prompt texts live in `assets/prompts/` and are compiled into the binary.

use crate::engine::plan::{PlanRules, PlannedSubtask};
use crate::engine::roles::WorkerRole;
use crate::llm::ChatRequest;

/// Model and limits for one kind of call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSpec {
    pub model: String,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

/// The planner request. `retry` holds the previous answer and what was wrong with it, so the
/// planner can correct itself on the second attempt.
pub fn planner_request(
    query: &str,
    roles: &[WorkerRole],
    rules: &PlanRules,
    spec: &CallSpec,
    retry: Option<(&str, &str)>,
) -> ChatRequest {
    let _ = (query, roles, rules, spec, retry);
    todo!()
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
    let _ = (query, subtask, role, dependencies, spec);
    todo!()
}

/// One finished subtask as the synthesis sees it.
#[derive(Debug, Clone, Copy)]
pub struct Finding<'a> {
    pub title: &'a str,
    pub result: &'a str,
}

/// A subtask with no result, and why (`failed: HTTP 500 …`, `blocked`, `cancelled`).
#[derive(Debug, Clone, Copy)]
pub struct Gap<'a> {
    pub title: &'a str,
    pub why: &'a str,
}

/// The synthesis request: the query, the guidance, every finding in full, and the gaps.
pub fn synthesis_request(
    query: &str,
    guidance: &str,
    findings: &[Finding<'_>],
    gaps: &[Gap<'_>],
    spec: &CallSpec,
) -> ChatRequest {
    let _ = (query, guidance, findings, gaps, spec);
    todo!()
}

/// The report when the synthesis call failed: the findings joined under their titles, clearly
/// marked as unsynthesised, with the gaps listed.
pub fn unsynthesized_report(query: &str, findings: &[Finding<'_>], gaps: &[Gap<'_>], error: &str) -> String {
    let _ = (query, findings, gaps, error);
    todo!()
}
