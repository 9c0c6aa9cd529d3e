//! The plan the tests that script a mock planner share: subtasks named by id, each with a
//! title and a result the workers' script can derive from it, so a test can tell from a
//! request or a report which subtask it is about.

use serde_json::{Value, json};

/// The title of subtask `id` in [`plan_value`].
pub fn title(id: &str) -> String {
    format!("Subtask {id} title")
}

/// What a worker scripted to succeed answers for the subtask titled `title`.
pub fn result_for(title: &str) -> String {
    format!("Findings for {title}: alpha beta gamma delta.")
}

/// A plan of independent `research` subtasks with these ids, as a planner answers it.
pub fn plan_value(ids: &[&str]) -> Value {
    let subtasks: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "worker": "research",
                "title": title(id),
                "description": format!("Find out about {id}."),
                "focus_areas": ["one point"],
                "depends_on": [],
                "priority": "medium",
            })
        })
        .collect();
    json!({
        "query_analysis": "The impacts.",
        "subtasks": subtasks,
        "synthesis_guidance": "Combine.",
    })
}
