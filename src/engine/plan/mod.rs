//! The plan: reading what the planner model proposes, leniently, and checking it, strictly.
//!
//! The plan's types are wire data and live in [`crate::protocol::plan`]; this module owns
//! turning text into them: extraction of the JSON from a model's answer (raw, in ```json fences,
//! or between prose: `extract`), lenient decoding with defaults for missing fields
//! (`decode`), and validation into a DAG (`check`). Pure: no I/O, no clock.
//!
//! Two layers, on purpose:
//! - *Decoding* is lenient, because models are sloppy: optional fields may be missing, ids may
//!   be numbers, `depends_on` may be a single string, priorities may be capitalised. It goes
//!   through `serde_json::Value` so the strict serde shape of [`Plan`] (what we print) stays
//!   exactly the documented contract. A plan file (`--plan FILE`) is read the same way as a
//!   planner's answer ([`read_plan_text`]), so both get the same defaults.
//! - *Checking* ([`check_plan`]) is strict about what would break a run (duplicate ids, unknown
//!   dependencies, cycles) and repairs, with a warning, what merely degrades it (unknown roles,
//!   too many subtasks, a second custom role). A missing role is not a repair: it gets the
//!   default role silently. A plan may hold one role the planner wrote itself: subtasks with
//!   the role `custom` and the same `role_prompt` ([`custom_role_prompt`]).
//!
//! A plan a person reviews before it runs is held to more ([`review_problems`]): every
//! problem at once, each on its subtask, and nothing repaired silently.
//!
//! While the answer streams, `draft_subtasks` reads the subtasks already complete in it, for
//! front ends to show before the plan is checked; `plan_schema` is the shape asked of servers
//! that support structured output.
//!
//! Error messages are written to be read twice: by the user, and by the planner model itself
//! when it is asked to correct its answer, so they name the field and the problem.

mod check;
mod decode;
mod extract;
mod review;
mod schema;

pub use check::check_plan;
pub use extract::{draft_subtasks, parse_plan, read_plan_text};
pub use review::{PlanProblem, review_problems};
pub use schema::plan_schema;
// The types are re-exported for code inside the engine; everything outside it names them
// through `protocol`.
pub use crate::protocol::plan::{Plan, PlannedSubtask, Priority};

use crate::engine::roles::{CUSTOM_ROLE, WorkerRole, same_name};

/// The planner's own role prompt of a `custom` subtask; `None` for any other subtask.
pub fn custom_role_prompt(subtask: &PlannedSubtask) -> Option<&str> {
    subtask
        .role_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty() && same_name(&subtask.worker, CUSTOM_ROLE))
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
pub(crate) fn backticked<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
