//! Worker roles: the specialists a planner can assign subtasks to. The built-in set ships in
//! `assets/workers.toml`; the config file can add roles or override fields of built-in ones.
//! Pure data: no I/O (the asset is compiled in), no knowledge of plans or prompts beyond the
//! role's own text.

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

/// The built-in roles as written in the asset, compiled into the binary so a fresh install
/// works without any files on disk.
const BUILTIN_TOML: &str = include_str!("../../assets/workers.toml");

/// The shape of `assets/workers.toml`: a list of `[[role]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    role: Vec<WorkerRole>,
}

/// The built-in roles, in the order the planner sees them. The first is the default.
pub fn builtin_roles() -> Vec<WorkerRole> {
    // The asset is part of the source tree and a unit test parses it, so a failure here is a
    // build defect, not bad input.
    toml::from_str::<RolesFile>(BUILTIN_TOML)
        .expect("assets/workers.toml is valid (checked by a unit test)")
        .role
}

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
    fn builtin_asset_parses_into_five_roles_with_analysis_first() {
        let roles: RolesFile = toml::from_str(BUILTIN_TOML).expect("workers.toml parses");
        let names: Vec<&str> = roles.role.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["analysis", "research", "compare", "critique", "writing"]
        );
        assert_eq!(builtin_roles(), roles.role);
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
