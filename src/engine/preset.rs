//! Presets: a team of worker roles with what the planner and the synthesiser are told about
//! using it. The built-in presets ship in `assets/presets/*.toml`, compiled in; a user's preset
//! file has the same format and is read by the same [`parse`].
//!
//! Pure: text in, `Preset` out. Finding files, and which preset a run uses, is the front ends'
//! business (`crate::presets`, `crate::config`); this module does no I/O.

use serde::Deserialize;

use crate::engine::roles::{CUSTOM_ROLE, WorkerRole, same_name};

/// The preset a run uses when none is chosen.
pub const DEFAULT_PRESET: &str = crate::defaults::PRESET;

/// A team of worker roles for one kind of question.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Its name; a file that gives none is named after itself.
    #[serde(default)]
    pub name: String,
    /// One line: what kind of question the team is for.
    #[serde(default)]
    pub description: String,
    /// Added to the planner's prompt: how to split this kind of question.
    #[serde(default)]
    pub planner_guidance: String,
    /// Added to the synthesis prompt: the report's structure.
    #[serde(default)]
    pub synthesis_guidance: String,
    /// Whether results are validated by default in runs of this preset.
    #[serde(default)]
    pub validate: bool,
    /// The roles, in the order the planner sees them; the first is the default.
    #[serde(rename = "role", default)]
    pub roles: Vec<WorkerRole>,
}

/// The built-in presets' files: name and text, the default first.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "research",
        include_str!("../../assets/presets/research.toml"),
    ),
    ("market", include_str!("../../assets/presets/market.toml")),
    ("general", include_str!("../../assets/presets/general.toml")),
    (
        "code-review",
        include_str!("../../assets/presets/code-review.toml"),
    ),
];

/// The built-in presets, the default first.
pub fn builtin() -> Vec<Preset> {
    // The assets are part of the source tree and a unit test parses each, so a failure here
    // is a build defect, not bad input.
    BUILTIN
        .iter()
        .map(|(name, text)| {
            parse(text, name).unwrap_or_else(|e| panic!("assets/presets/{name}.toml: {e}"))
        })
        .collect()
}

/// The default built-in preset.
pub fn builtin_default() -> Preset {
    let (name, text) = BUILTIN[0];
    parse(text, name).unwrap_or_else(|e| panic!("assets/presets/{name}.toml: {e}"))
}

/// The role name as written and where, for the checks serde cannot make.
#[derive(Deserialize)]
struct NamesOnly {
    #[serde(rename = "role", default)]
    roles: Vec<RoleName>,
}

#[derive(Deserialize)]
struct RoleName {
    name: toml::Spanned<String>,
}

/// Read a preset file's text. `fallback_name` names it when the file does not (its file
/// name). The error is a message that names the line and the key, as toml writes them.
pub fn parse(text: &str, fallback_name: &str) -> Result<Preset, String> {
    let mut preset: Preset = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
    preset.name = preset.name.trim().to_owned();
    if preset.name.is_empty() {
        fallback_name.trim().clone_into(&mut preset.name);
    }
    if preset.roles.is_empty() {
        return Err(
            "no worker roles: add at least one `[[role]]` table with `name`, \
                    `description` and `system_prompt`"
                .to_owned(),
        );
    }
    let names: NamesOnly = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    for (i, role) in names.roles.iter().enumerate() {
        let name = role.name.get_ref().trim();
        let line = at(role.name.span());
        if name.is_empty() {
            return Err(format!("line {line}, key `name`: a role's name is empty"));
        }
        if same_name(name, CUSTOM_ROLE) {
            return Err(format!(
                "line {line}, key `name`: `{CUSTOM_ROLE}` is reserved for the role a planner \
                 may write itself; name this role otherwise"
            ));
        }
        if names.roles[..i]
            .iter()
            .any(|r| same_name(r.name.get_ref(), name))
        {
            return Err(format!(
                "line {line}, key `name`: the role `{name}` is defined twice"
            ));
        }
    }
    for (role, raw) in preset.roles.iter_mut().zip(&names.roles) {
        let line = at(raw.name.span());
        role.name = role.name.trim().to_owned();
        for (key, value) in [
            ("description", &role.description),
            ("system_prompt", &role.system_prompt),
        ] {
            if value.trim().is_empty() {
                return Err(format!(
                    "role `{}` (line {line}), key `{key}`: must not be empty",
                    role.name
                ));
            }
        }
    }
    Ok(preset)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// The preset called `name` (case and surrounding whitespace ignored).
pub fn find<'a>(presets: &'a [Preset], name: &str) -> Option<&'a Preset> {
    presets.iter().find(|p| same_name(&p.name, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_preset_parses_named_after_its_file() {
        let presets = builtin();
        let names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["research", "market", "general", "code-review"]);
        assert_eq!(presets[0].name, DEFAULT_PRESET);
        for preset in &presets {
            assert!(!preset.description.contains('\n'), "{}", preset.name);
            assert!(!preset.description.is_empty(), "{}", preset.name);
            for role in &preset.roles {
                assert!(role.system_prompt.len() > 300, "{}", role.name);
                assert!(role.system_prompt.contains("markdown"), "{}", role.name);
                assert!(!role.description.contains('\n'), "{}", role.name);
            }
        }
    }

    #[test]
    fn the_builtin_teams_are_the_documented_ones() {
        let roles = |name: &str| -> Vec<String> {
            find(&builtin(), name)
                .expect(name)
                .roles
                .iter()
                .map(|r| r.name.clone())
                .collect()
        };
        assert_eq!(
            roles("market"),
            ["news", "competitor", "trend", "sentiment"]
        );
        assert_eq!(
            roles("general"),
            ["researcher", "specialist", "writer", "validator"]
        );
        assert_eq!(
            roles("code-review"),
            ["security", "performance", "correctness", "style"]
        );
        let presets = builtin();
        let validate: Vec<bool> = presets.iter().map(|p| p.validate).collect();
        assert_eq!(validate, [false, false, true, false]);
        assert!(presets[0].planner_guidance.is_empty());
        assert!(presets[1].synthesis_guidance.contains("Executive summary"));
        assert!(presets[3].synthesis_guidance.contains("file:line"));
    }

    #[test]
    fn a_file_without_a_name_is_named_after_the_file_and_keeps_role_settings() {
        let text = "description = \"Legal\"\n\n[[role]]\nname = \"law\"\n\
                    description = \"statutes\"\nsystem_prompt = \"Be careful.\"\n\
                    temperature = 0.1\nmax_tokens = 500\nmodel = \"big\"\n\
                    tools = [\"fetch_url\"]\n";
        let preset = parse(text, "legal").expect("parses");
        assert_eq!(preset.name, "legal");
        assert!(!preset.validate);
        let role = &preset.roles[0];
        assert_eq!(role.temperature, Some(0.1));
        assert_eq!(role.max_tokens, Some(500));
        assert_eq!(role.model.as_deref(), Some("big"));
        assert_eq!(role.tools, ["fetch_url"]);
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let role = "[[role]]\nname = \"a\"\ndescription = \"d\"\nsystem_prompt = \"p\"\n";
        let cases = [
            (format!("{role}temprature = 1\n"), "line 5", "temprature"),
            (format!("{role}temperature = 3\n"), "line 5", "0 to 2"),
            (format!("{role}max_tokens = 0\n"), "line 5", "above 0"),
            (format!("{role}{role}"), "line 6", "defined twice"),
            (role.replace("\"a\"", "\"custom\""), "line 2", "reserved"),
            (
                role.replace("system_prompt = \"p\"", "system_prompt = \" \""),
                "line 2",
                "system_prompt",
            ),
            ("description = \"x\"\n".to_owned(), "", "no worker roles"),
            ("validate = \"yes\"\n".to_owned(), "line 1", "validate"),
        ];
        for (text, line, key) in cases {
            let err = parse(&text, "x").expect_err(&text);
            assert!(err.contains(line) && err.contains(key), "{text}\n→ {err}");
        }
    }
}
