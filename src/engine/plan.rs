//! The plan: what the planner model proposes, parsed leniently and validated strictly.
//!
//! Owns the plan types (the JSON contract of `maestro plan` and `--plan FILE`), extraction of
//! that JSON from a model's answer (raw, in ```json fences, or between prose), defaults for
//! missing optional fields, and validation into a DAG. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
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
    #[error("the plan has no subtasks")]
    Empty,
    #[error("two subtasks share the id `{0}`")]
    DuplicateId(String),
    #[error("subtask `{subtask}` depends on `{missing}`, which is not in the plan")]
    UnknownDependency { subtask: String, missing: String },
    #[error("the dependencies form a cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
}

/// Parse a planner's answer (raw JSON, fenced, or between prose) and check it.
pub fn parse_plan(answer: &str, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    let _ = (answer, rules);
    todo!()
}

/// Check a plan that is already JSON-decoded (e.g. read from `--plan FILE`).
pub fn check_plan(plan: Plan, rules: &PlanRules) -> Result<CheckedPlan, PlanError> {
    let _ = (plan, rules);
    todo!()
}
