//! Worker roles: the specialists a planner can assign subtasks to. The built-in set ships in
//! `assets/workers.toml`; the config file can add roles or override fields of built-in ones.
//! Pure data: no I/O.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRole {
    pub name: String,
    /// One line for the planner: what this role is good at.
    pub description: String,
    pub system_prompt: String,
    /// A model for this role only; otherwise the worker model.
    #[serde(default)]
    pub model: Option<String>,
}

/// The built-in roles, in the order the planner sees them. The first is the default.
pub fn builtin_roles() -> Vec<WorkerRole> {
    todo!()
}
