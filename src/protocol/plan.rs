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
    /// How the planner judged the query, which sized the plan; absent in plans written
    /// before the planner was asked (they still load). A straightforward query planned as one
    /// subtask is answered directly by that subtask's worker, with no synthesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<Complexity>,
}

/// The kind of query, as the planner classifies it before sizing the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Complexity {
    /// One clear question with one answer: a single subtask.
    Straightforward,
    /// Several independent aspects: parallel subtasks.
    BreadthFirst,
    /// One question needing several perspectives or steps that build on each other.
    DepthFirst,
}

impl Complexity {
    /// `straightforward`, `breadth_first` or `depth_first`, as in the JSON.
    pub fn word(self) -> &'static str {
        match self {
            Self::Straightforward => "straightforward",
            Self::BreadthFirst => "breadth_first",
            Self::DepthFirst => "depth_first",
        }
    }

    /// Read leniently: any case, `-` or a space for `_`, and a few plain synonyms.
    pub fn from_word(word: &str) -> Option<Self> {
        let w = word.trim().to_lowercase().replace(['-', ' '], "_");
        match w.as_str() {
            "straightforward" | "simple" | "direct" => Some(Self::Straightforward),
            "breadth_first" | "breadth" | "broad" => Some(Self::BreadthFirst),
            "depth_first" | "depth" | "deep" => Some(Self::DepthFirst),
            _ => None,
        }
    }
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
    /// The model this subtask's worker calls use, over its role's and the run's worker model
    /// (set in a plan file or while reviewing a plan); `None` keeps those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
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
