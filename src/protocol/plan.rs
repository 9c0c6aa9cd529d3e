//! The plan as data: what the planner proposes, what `maestro plan` prints, what `--plan FILE`
//! holds and what `PlanReady` carries. See DESIGN §4 and the README for the format.
//!
//! Only the types and their strict serde shape live here. Reading a model's sloppy answer into
//! them, and checking that they form a DAG, is `engine::plan`'s job; this module must not
//! import anything of the crate but the protocol.

use serde::{Deserialize, Serialize};

use crate::protocol::SubtaskId;

/// The planner's output.
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
    /// In a follow-up run: the id of the earlier run's subtask whose result this subtask takes
    /// as its own instead of calling a worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<SubtaskId>,
    /// For a subtask whose `worker` is `custom`: the system prompt of the role the planner
    /// wrote for it, because none of the preset's roles fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_prompt: Option<String>,
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
