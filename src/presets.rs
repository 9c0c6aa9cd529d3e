//! Presets for the front ends: the catalogue of every preset a run may use (the built-in ones,
//! then the user's files in the config directory's `presets/` folder, then a `--preset PATH`),
//! where each comes from, and `maestro presets` / `maestro presets show NAME`.
//!
//! Reading a preset's text is `engine::preset`'s; this module finds the files and reads them.
//! It must not decide which preset a run uses (that is `config`'s) or run anything.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::preset::{self, Preset};
use crate::engine::roles::same_name;

/// Where a preset comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin => f.write_str("built-in"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// One preset of the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub preset: Preset,
    pub source: Source,
    /// The file's text, for `maestro presets show`.
    pub text: String,
    /// A user's file that replaces the built-in preset of the same name.
    pub overrides: bool,
}

/// A preset file that cannot be used: which file, and what is wrong (with its line and key).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("preset file {}: {message}", path.display())]
pub struct PresetFileError {
    pub path: PathBuf,
    pub message: String,
}

/// Every preset a run may use, the default first.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    pub entries: Vec<Entry>,
}

impl Catalogue {
    /// The built-in presets only.
    pub fn builtin() -> Self {
        let entries = preset::BUILTIN
            .iter()
            .zip(preset::builtin())
            .map(|((_, text), preset)| Entry {
                preset,
                source: Source::Builtin,
                text: (*text).to_owned(),
                overrides: false,
            })
            .collect();
        Self { entries }
    }

    /// The built-in presets and the `*.toml` files of `dir` (in file-name order), when it
    /// exists. A file that cannot be read or parsed is an error: a preset that silently
    /// vanished would make a run use another team than the one asked for.
    pub fn load(dir: Option<&Path>) -> Result<Self, PresetFileError> {
        let mut catalogue = Self::builtin();
        let Some(dir) = dir else {
            return Ok(catalogue);
        };
        let listing = match std::fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(catalogue),
            Err(e) => {
                return Err(PresetFileError {
                    path: dir.to_path_buf(),
                    message: format!("cannot list the folder: {e}"),
                });
            }
        };
        let mut files: Vec<PathBuf> = listing
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        let mut seen: Vec<(String, PathBuf)> = Vec::new();
        for path in files {
            let name = catalogue.add_file(&path)?;
            if let Some((_, first)) = seen.iter().find(|(n, _)| same_name(n, &name)) {
                return Err(PresetFileError {
                    path,
                    message: format!(
                        "the preset `{name}` is already defined by {}",
                        first.display()
                    ),
                });
            }
            seen.push((name, path));
        }
        Ok(catalogue)
    }

    /// Read the preset file at `path` into the catalogue, replacing a preset of the same
    /// name; returns its name.
    pub fn add_file(&mut self, path: &Path) -> Result<String, PresetFileError> {
        let error = |message: String| PresetFileError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let preset = preset::parse(&text, &stem).map_err(error)?;
        let name = preset.name.clone();
        let entry = Entry {
            preset,
            source: Source::File(path.to_path_buf()),
            text,
            overrides: false,
        };
        match self
            .entries
            .iter_mut()
            .find(|e| same_name(&e.preset.name, &name))
        {
            Some(old) => {
                let overrides = old.source == Source::Builtin || old.overrides;
                *old = Entry { overrides, ..entry };
            }
            None => self.entries.push(entry),
        }
        Ok(name)
    }

    /// The preset called `name` (case and surrounding whitespace ignored).
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| same_name(&e.preset.name, name))
    }

    /// The names, for messages: `research`, `market`, ….
    pub fn names(&self) -> String {
        crate::engine::plan::backticked(self.entries.iter().map(|e| e.preset.name.as_str()))
    }
}

/// Whether `--preset`'s value names a file rather than a preset.
pub fn is_path(value: &str) -> bool {
    value.contains('/') || value.contains(std::path::MAIN_SEPARATOR) || value.ends_with(".toml")
}

/// The folder user presets are read from: `presets/` beside the config file.
pub fn dir_beside(config_file: &Path) -> Option<PathBuf> {
    config_file.parent().map(|d| d.join("presets"))
}

/// `maestro presets`: every preset with its roles and where it comes from; `in_use` is marked.
pub fn list(
    catalogue: &Catalogue,
    in_use: &str,
    json: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if json {
        let presets: Vec<serde_json::Value> = catalogue
            .entries
            .iter()
            .map(|e| {
                let roles: Vec<serde_json::Value> = e
                    .preset
                    .roles
                    .iter()
                    .map(|r| serde_json::json!({ "name": r.name, "description": r.description }))
                    .collect();
                serde_json::json!({
                    "name": e.preset.name,
                    "description": e.preset.description,
                    "source": e.source.to_string(),
                    "overrides_builtin": e.overrides,
                    "in_use": same_name(&e.preset.name, in_use),
                    "validate": e.preset.validate,
                    "roles": roles,
                })
            })
            .collect();
        let value = serde_json::json!({ "presets": presets });
        crate::sanitize::write_json(&mut *out, &value)?;
        return writeln!(out);
    }
    let clean = crate::sanitize::sanitize_line;
    for (i, e) in catalogue.entries.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let mark = if same_name(&e.preset.name, in_use) {
            "  (in use)"
        } else {
            ""
        };
        writeln!(out, "{}{mark}", clean(&e.preset.name))?;
        if !e.preset.description.trim().is_empty() {
            writeln!(out, "  {}", clean(&e.preset.description))?;
        }
        let from = match (&e.source, e.overrides) {
            (Source::Builtin, _) => "built-in".to_owned(),
            (Source::File(path), false) => clean(&path.display().to_string()).into_owned(),
            (Source::File(path), true) => format!(
                "{} (overrides the built-in preset)",
                clean(&path.display().to_string())
            ),
        };
        writeln!(out, "  from: {from}")?;
        if e.preset.validate {
            writeln!(out, "  validates results by default")?;
        }
        writeln!(out, "  roles:")?;
        let width = e
            .preset
            .roles
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        for role in &e.preset.roles {
            writeln!(
                out,
                "    {:width$}  {}",
                clean(&role.name),
                clean(&role.description)
            )?;
        }
    }
    Ok(())
}

/// `maestro presets show NAME`: the preset's file as it is, to copy and change. `Err` holds
/// the message for an unknown name.
pub fn show(catalogue: &Catalogue, name: &str, out: &mut dyn Write) -> Result<(), ShowError> {
    let Some(entry) = catalogue.find(name) else {
        return Err(ShowError::Unknown(format!(
            "no preset named `{}`; the presets are {}",
            crate::sanitize::sanitize_line(name),
            catalogue.names()
        )));
    };
    out.write_all(crate::sanitize::sanitize(&entry.text).as_bytes())
        .map_err(ShowError::Output)
}

/// Why `maestro presets show` failed.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error("{0}")]
    Unknown(String),
    #[error("cannot write the preset: {0}")]
    Output(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    const ROLE: &str = "[[role]]\nname = \"a\"\ndescription = \"d\"\nsystem_prompt = \"p\"\n";

    #[test]
    fn user_files_add_presets_and_override_builtin_ones_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "legal.toml", ROLE);
        write(
            dir.path(),
            "mine.toml",
            &format!("name = \"market\"\n{ROLE}"),
        );
        write(dir.path(), "notes.txt", "not a preset");
        let catalogue = Catalogue::load(Some(dir.path())).expect("loads");
        let names: Vec<&str> = catalogue
            .entries
            .iter()
            .map(|e| e.preset.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["research", "market", "general", "code-review", "legal"]
        );
        let market = catalogue.find("Market").expect("market");
        assert!(market.overrides);
        assert_eq!(market.preset.roles[0].name, "a");
        assert!(!catalogue.find("legal").expect("legal").overrides);
    }

    #[test]
    fn a_missing_folder_is_no_error_but_a_broken_file_names_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("presets");
        assert_eq!(
            Catalogue::load(Some(&missing))
                .expect("no folder")
                .entries
                .len(),
            4
        );
        let path = write(dir.path(), "bad.toml", &format!("{ROLE}colour = 3\n"));
        let err = Catalogue::load(Some(dir.path())).expect_err("broken");
        assert_eq!(err.path, path);
        let text = err.to_string();
        assert!(text.contains("bad.toml") && text.contains("line 5") && text.contains("colour"));
    }

    #[test]
    fn two_files_with_one_name_are_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a.toml", &format!("name = \"x\"\n{ROLE}"));
        write(dir.path(), "b.toml", &format!("name = \"x\"\n{ROLE}"));
        let err = Catalogue::load(Some(dir.path())).expect_err("twice");
        assert!(err.to_string().contains("a.toml"), "{err}");
    }

    #[test]
    fn values_name_files_when_they_look_like_paths() {
        assert!(is_path("./team.toml"));
        assert!(is_path("team.toml"));
        assert!(is_path("dir/team"));
        assert!(!is_path("code-review"));
    }
}
