//! The JSON schema of a plan, as the planner is asked to follow it when the server supports
//! structured output. Built from the run's rules, so the roles are an `enum` of the roles
//! that exist (and `custom`, with its `role_prompt`) and the list is bounded by
//! `max_subtasks`. A schema cannot say everything the checks do (unique ids, known
//! dependencies, no cycles, one custom role), so answers are checked all the same.

use serde_json::{Value, json};

use super::PlanRules;

/// The plan's schema for `rules`. (Servers that turn a schema into a grammar generate the
/// properties in the order they are listed; serde_json lists them alphabetically, which
/// happens to put the classification first, the analysis before the subtasks and the
/// guidance last.)
pub fn plan_schema(rules: &PlanRules) -> Value {
    let mut worker = json!({ "type": "string" });
    if !rules.roles.is_empty() {
        let mut names = rules.roles.clone();
        names.push(crate::engine::roles::CUSTOM_ROLE.to_owned());
        worker["enum"] = json!(names);
    }
    json!({
        "type": "object",
        "properties": {
            "complexity": {
                "type": "string",
                "enum": ["straightforward", "breadth_first", "depth_first"],
            },
            "query_analysis": { "type": "string" },
            "subtasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": rules.max_subtasks.max(1),
                "items": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "title": { "type": "string" },
                        "worker": worker,
                        "description": { "type": "string" },
                        "focus_areas": { "type": "array", "items": { "type": "string" } },
                        "depends_on": { "type": "array", "items": { "type": "string" } },
                        "priority": { "type": "string", "enum": ["high", "medium", "low"] },
                        "role_prompt": { "type": "string" },
                    },
                    "required": ["id", "title", "worker", "description", "depends_on"],
                },
            },
            "synthesis_guidance": { "type": "string" },
        },
        "required": ["complexity", "query_analysis", "subtasks", "synthesis_guidance"],
    })
}
