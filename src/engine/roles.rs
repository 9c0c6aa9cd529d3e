//! Worker roles: the specialists a planner can assign subtasks to. Roles come in teams, the
//! presets (`engine::preset`, `assets/presets/`); the config file can add roles or override
//! fields of the preset's ones. Pure data: no I/O, no knowledge of plans or prompts beyond the
//! role's own text.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerRole {
    pub name: String,
    /// One line for the planner: what this role is good at.
    pub description: String,
    pub system_prompt: String,
    /// A model for this role only; otherwise the worker model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A sampling temperature for this role only; otherwise the configured one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "temperature"
    )]
    pub temperature: Option<f32>,
    /// A token limit for this role's answers only; otherwise the configured one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "max_tokens"
    )]
    pub max_tokens: Option<u32>,
    /// Names of the tools this role may use. Kept as written; which names exist is decided
    /// where tools are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}

impl WorkerRole {
    /// A role with only the texts set (no model, sampling or tools of its own).
    pub fn new(name: &str, description: &str, system_prompt: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            system_prompt: system_prompt.to_owned(),
            model: None,
            temperature: None,
            max_tokens: None,
            tools: Vec::new(),
        }
    }
}

/// Checked while deserialising, so a bad value in a preset file is reported at its line.
fn temperature<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    let v = f32::deserialize(d)?;
    if crate::defaults::TEMPERATURE_RANGE.contains(&v) {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(format!(
            "invalid value {v:?}: expected a number from 0 to 2"
        )))
    }
}

fn max_tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = u32::deserialize(d)?;
    if v > 0 {
        Ok(Some(v))
    } else {
        Err(serde::de::Error::custom(
            "invalid value 0: expected a whole number above 0",
        ))
    }
}

/// The roles of the default preset, in the order the planner sees them. The first is the
/// default role.
pub fn builtin_roles() -> Vec<WorkerRole> {
    crate::engine::preset::builtin_default().roles
}

/// The role a planner may write itself for one kind of subtask: a plan subtask with this role
/// carries its own `role_prompt`. No preset may name a role so.
pub const CUSTOM_ROLE: &str = "custom";

/// The role called `name`, ignoring case and surrounding whitespace.
pub fn find<'a>(roles: &'a [WorkerRole], name: &str) -> Option<&'a WorkerRole> {
    roles.iter().find(|r| same_name(&r.name, name))
}

/// Whether two role names are the same name: case and surrounding whitespace do not count, so
/// a planner writing `Research` gets the `research` role.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_roles_are_five_with_analysis_first() {
        let names: Vec<String> = builtin_roles().into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            ["analysis", "research", "compare", "critique", "writing"]
        );
    }

    #[test]
    fn builtin_roles_are_complete_and_one_line_described() {
        let roles = builtin_roles();
        for role in &roles {
            assert!(!role.description.trim().is_empty(), "{}", role.name);
            assert!(!role.description.contains('\n'), "{}", role.name);
            assert!(role.system_prompt.len() > 200, "{}", role.name);
            assert!(role.system_prompt.contains("markdown"), "{}", role.name);
            assert!(role.model.is_none(), "{}", role.name);
            // Only the researcher looks things up; it is told how to cite what it fetched.
            let fetches = role.tools == ["fetch"];
            assert_eq!(fetches, role.name == "research", "{}", role.name);
            assert!(fetches || role.tools.is_empty(), "{}", role.name);
            assert_eq!(
                fetches,
                role.system_prompt.contains("fetch_url"),
                "{}",
                role.name
            );
        }
        let mut names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), roles.len(), "role names are unique");
    }

    #[test]
    fn find_ignores_case_and_whitespace() {
        let roles = builtin_roles();
        assert_eq!(
            find(&roles, "Research").map(|r| r.name.as_str()),
            Some("research")
        );
        assert_eq!(
            find(&roles, " CRITIQUE ").map(|r| r.name.as_str()),
            Some("critique")
        );
        assert!(find(&roles, "poetry").is_none());
        assert!(find(&[], "analysis").is_none());
    }
}
