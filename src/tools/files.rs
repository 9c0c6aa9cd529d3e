//! `read_file` and `list_dir`: reading under the folders the person allowed (`--allow-dir`,
//! `[tools] allow_dirs`), and nowhere else.
//!
//! A path is first normalised without touching the disk (`.` and `..` folded) and must stay
//! under a root; then it is canonicalised (symbolic links resolved) and must still be under a
//! root, so neither `..` nor a link pointing outside can escape, and an absolute path outside
//! every root is refused without saying whether it exists. What is opened is the canonical
//! path that was checked. Files are read up to a byte cap; binary files (NUL bytes, not UTF-8)
//! are refused. The checks guard against what a model asks for, not against a local process
//! swapping links between the check and the read.
//!
//! This module reads; it never writes, and never follows a path it has not checked.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use super::{SourceKind, SourceRecord, ToolOutput, ToolsConfig, human_bytes, string_arg, truncate};

/// The most directory entries looked at, sorted or not: a folder with millions of files
/// costs a bounded amount.
const LIST_SCAN_LIMIT: usize = 100_000;

/// The places the file tools may read: canonical folders, or single files.
#[derive(Debug, Clone, Default)]
pub struct Roots(Vec<Root>);

#[derive(Debug, Clone)]
struct Root {
    path: PathBuf,
    is_dir: bool,
}

impl Root {
    fn contains(&self, canonical: &Path) -> bool {
        if self.is_dir {
            canonical.starts_with(&self.path)
        } else {
            canonical == self.path
        }
    }
}

/// Why a path cannot be read.
#[derive(Debug, thiserror::Error)]
enum PathError {
    #[error(
        "refused: {0} is outside the allowed folders ({1}); the person can allow more with \
         --allow-dir or [tools] allow_dirs"
    )]
    Outside(String, String),
    #[error("refused: {0} leads outside the allowed folders through a symbolic link (to {1})")]
    ThroughLink(String, String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl Roots {
    /// Canonicalises each entry; one that does not exist (any more) is left out, with a log
    /// line, since the configuration checked them when it was read.
    pub fn new(paths: &[PathBuf]) -> Self {
        let mut roots: Vec<Root> = Vec::new();
        for path in paths {
            match std::fs::canonicalize(path).and_then(|p| {
                let meta = std::fs::metadata(&p)?;
                Ok((p, meta.is_dir()))
            }) {
                Ok((path, is_dir)) => {
                    if !roots.iter().any(|r| r.path == path) {
                        roots.push(Root { path, is_dir });
                    }
                }
                Err(e) => {
                    tracing::warn!("allowed folder {} left out: {e}", path.display());
                }
            }
        }
        Self(roots)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|r| r.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The canonical path `asked` names, if it is under a root. A relative path is taken
    /// from each folder root in turn, then from the current folder (attached files are shown
    /// to the model by their path from there); the first where it exists wins.
    fn resolve(&self, asked: &str) -> Result<PathBuf, PathError> {
        let asked_path = Path::new(asked);
        let candidates: Vec<PathBuf> = if asked_path.is_absolute() {
            vec![normalise(asked_path)]
        } else {
            let current = std::env::current_dir().and_then(std::fs::canonicalize).ok();
            self.0
                .iter()
                .filter(|r| r.is_dir)
                .map(|r| r.path.as_path())
                .chain(current.as_deref())
                .map(|base| normalise(&base.join(asked_path)))
                .collect()
        };
        let inside: Vec<&PathBuf> = candidates
            .iter()
            .filter(|c| self.0.iter().any(|r| r.contains(c)))
            .collect();
        let Some(first) = inside.first() else {
            return Err(PathError::Outside(asked.to_owned(), self.describe()));
        };
        let chosen = inside
            .iter()
            .find(|c| c.symlink_metadata().is_ok())
            .unwrap_or(first);
        let canonical = std::fs::canonicalize(chosen).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PathError::NotFound(asked.to_owned()),
            _ => PathError::Io(asked.to_owned(), e),
        })?;
        if !self.0.iter().any(|r| r.contains(&canonical)) {
            return Err(PathError::ThroughLink(
                asked.to_owned(),
                canonical.display().to_string(),
            ));
        }
        Ok(canonical)
    }
}

/// `path` with `.` dropped and `..` applied to what precedes it, without reading the disk;
/// `..` at the root stays at the root.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The `read_file` tool.
#[derive(Debug, Clone)]
pub struct ReadFile {
    roots: Roots,
    max_bytes: u64,
    max_chars: usize,
}

impl ReadFile {
    pub const NAME: &'static str = "read_file";
    pub const DESCRIPTION: &'static str =
        "Read a UTF-8 text file from the folders the user allowed and return its contents.";

    pub fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "The file's path: relative to an allowed folder, or absolute \
                                    inside one."
                }
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    pub fn new(roots: Roots, config: &ToolsConfig) -> Self {
        Self {
            roots,
            max_bytes: config.max_file_bytes,
            max_chars: config.max_result_chars,
        }
    }

    /// Runs the tool on the model's arguments, `{"path": "..."}`.
    pub async fn call(&self, args: &Value) -> ToolOutput {
        let path = match string_arg(Self::NAME, args, "path", true) {
            Ok(Some(path)) => path.to_owned(),
            Ok(None) => return ToolOutput::error("read_file needs a path"),
            Err(out) => return out,
        };
        let tool = self.clone();
        tokio::task::spawn_blocking(move || tool.read(&path))
            .await
            .unwrap_or_else(|e| ToolOutput::error(&format!("read_file failed: {e}")))
    }

    fn read(&self, asked: &str) -> ToolOutput {
        let started = Instant::now();
        let path = match self.roots.resolve(asked) {
            Ok(path) => path,
            Err(e) => return ToolOutput::error(&format!("read_file: {e}")),
        };
        let shown = path.display().to_string();
        let fail = |what: String| ToolOutput::error(&format!("read_file {shown}: {what}"));
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return fail(e.to_string()),
        };
        if meta.is_dir() {
            return fail("is a folder; list it with list_dir".to_owned());
        }
        if !meta.is_file() {
            return fail("is not a regular file".to_owned());
        }
        let mut bytes = Vec::new();
        let read =
            std::fs::File::open(&path).and_then(|f| f.take(self.max_bytes).read_to_end(&mut bytes));
        if let Err(e) = read {
            return fail(e.to_string());
        }
        let cut = meta.len() > bytes.len() as u64;
        if bytes.contains(&0) {
            return fail("refused: a binary file (it has NUL bytes), not text".to_owned());
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            // The cap may cut a character in two; that is not a sign of binary.
            Err(e) if cut && e.error_len().is_none() => {
                std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("")
            }
            Err(e) => {
                return fail(format!(
                    "refused: not UTF-8 text (an invalid byte at offset {})",
                    e.valid_up_to()
                ));
            }
        };
        let size = if cut {
            format!(
                "{} of {} read, cut at the {} cap",
                human_bytes(bytes.len() as u64),
                human_bytes(meta.len()),
                human_bytes(self.max_bytes)
            )
        } else {
            human_bytes(meta.len())
        };
        let body = truncate(text, self.max_chars);
        let source = SourceRecord {
            kind: SourceKind::File,
            location: shown.clone(),
            bytes: bytes.len() as u64,
            status: None,
            elapsed_ms: elapsed_ms(started),
        };
        ToolOutput::ok(
            &format!("{body}\n\n---\nFile: {shown}\nSize: {size}\n"),
            source,
        )
    }
}

/// The `list_dir` tool.
#[derive(Debug, Clone)]
pub struct ListDir {
    roots: Roots,
    max_entries: usize,
    max_chars: usize,
}

/// One line of a listing.
struct Entry {
    name: String,
    kind: &'static str,
    size: Option<u64>,
}

impl ListDir {
    pub const NAME: &'static str = "list_dir";
    pub const DESCRIPTION: &'static str = "List a folder the user allowed: each entry's name, \
        kind (file, dir, link) and size, sorted by name. Without a path, the allowed folders.";

    pub fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "The folder: relative to an allowed folder, or absolute \
                                    inside one. Omit it to start at the allowed folders."
                }
            },
            "additionalProperties": false
        })
    }

    pub fn new(roots: Roots, config: &ToolsConfig) -> Self {
        Self {
            roots,
            max_entries: config.max_list_entries,
            max_chars: config.max_result_chars,
        }
    }

    /// Runs the tool on the model's arguments, `{"path": "..."}` or `{}`.
    pub async fn call(&self, args: &Value) -> ToolOutput {
        let path = match string_arg(Self::NAME, args, "path", false) {
            Ok(path) => path.map(str::to_owned),
            Err(out) => return out,
        };
        let tool = self.clone();
        tokio::task::spawn_blocking(move || tool.list(path.as_deref()))
            .await
            .unwrap_or_else(|e| ToolOutput::error(&format!("list_dir failed: {e}")))
    }

    fn list(&self, asked: Option<&str>) -> ToolOutput {
        let started = Instant::now();
        let asked = asked.map(str::trim).filter(|p| !p.is_empty() && *p != ".");
        let Some(asked) = asked else {
            // With one folder, start in it; with several, show them.
            return match self.roots.0.as_slice() {
                [only] if only.is_dir => self.list_path(&only.path.clone(), started),
                roots => self.list_roots(roots, started),
            };
        };
        match self.roots.resolve(asked) {
            Ok(path) => self.list_path(&path, started),
            Err(e) => ToolOutput::error(&format!("list_dir: {e}")),
        }
    }

    fn list_roots(&self, roots: &[Root], started: Instant) -> ToolOutput {
        let mut text = String::from("The allowed folders and files:\n");
        for root in roots {
            let kind = if root.is_dir { "dir " } else { "file" };
            text.push_str(&format!("{kind}  {}\n", root.path.display()));
        }
        let source = SourceRecord {
            kind: SourceKind::File,
            location: self.roots.describe(),
            bytes: 0,
            status: None,
            elapsed_ms: elapsed_ms(started),
        };
        ToolOutput::ok(&truncate(&text, self.max_chars), source)
    }

    fn list_path(&self, path: &Path, started: Instant) -> ToolOutput {
        let shown = path.display().to_string();
        let fail = |what: String| ToolOutput::error(&format!("list_dir {shown}: {what}"));
        let reader = match std::fs::read_dir(path) {
            Ok(reader) => reader,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
                return fail("is a file; read it with read_file".to_owned());
            }
            Err(e) => return fail(e.to_string()),
        };
        let mut entries = Vec::new();
        let mut scanned_all = true;
        for entry in reader {
            if entries.len() == LIST_SCAN_LIMIT {
                scanned_all = false;
                break;
            }
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let (kind, size) = match entry.file_type() {
                Ok(t) if t.is_symlink() => ("link", None),
                Ok(t) if t.is_dir() => ("dir", None),
                Ok(t) if t.is_file() => ("file", entry.metadata().ok().map(|m| m.len())),
                _ => ("other", None),
            };
            entries.push(Entry { name, kind, size });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let total = entries.len();
        let mut text = format!(
            "{shown}: {total}{} entries\n",
            if scanned_all { "" } else { "+" }
        );
        for e in entries.iter().take(self.max_entries) {
            let line = match (e.kind, e.size) {
                ("dir", _) => format!("dir   {}/\n", e.name),
                (kind, Some(size)) => format!("{kind:<5} {}  ({})\n", e.name, human_bytes(size)),
                (kind, None) => format!("{kind:<5} {}\n", e.name),
            };
            text.push_str(&line);
        }
        if total > self.max_entries {
            text.push_str(&format!(
                "[… {} more entries not listed (the cap is {})]\n",
                total - self.max_entries,
                self.max_entries
            ));
        }
        let source = SourceRecord {
            kind: SourceKind::File,
            location: shown,
            bytes: 0,
            status: None,
            elapsed_ms: elapsed_ms(started),
        };
        ToolOutput::ok(&truncate(&text, self.max_chars), source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_folds_dots_without_leaving_the_root() {
        assert_eq!(
            normalise(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        assert_eq!(normalise(Path::new("/a/../../..")), PathBuf::from("/"));
        assert_eq!(
            normalise(Path::new("/r/x/../../etc")),
            PathBuf::from("/etc")
        );
    }
}
