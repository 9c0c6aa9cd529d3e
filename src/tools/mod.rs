//! The built-in tools a worker model may call: `fetch_url` (a web page as text), `read_file`
//! and `list_dir` (under the folders the person allowed), and [`Tools`], the registry built
//! from the `[tools]` settings that names them, describes their arguments and calls them.
//!
//! Each tool is a name, a one-line description, a JSON Schema of its arguments and an async
//! `call` returning a [`ToolOutput`]: text for the model (always sanitised, since it is shown
//! on terminals later, and cut to `max_result_chars` with a visible marker), whether it is an
//! error, and the source it touched. A tool never panics or fails a run: every problem
//! (bad arguments, a refusal, a timeout) is an error result the model can read.
//!
//! This module must not import the engine or a front end: the model ↔ tool loop calls it,
//! not the other way round. Its policies (which hosts, which folders, what sizes) are decided
//! here, from [`ToolsConfig`], and nowhere else.

pub mod fetch;
pub mod files;
pub mod hosts;
mod html;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::defaults;
use crate::sanitize::sanitize;

pub use fetch::FetchUrl;
pub use files::{ListDir, ReadFile};
pub use hosts::{HostPattern, HostPolicy};

/// What a tool call gives back to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// Sanitised text for the model.
    pub text: String,
    /// The call failed or was refused; `text` says why.
    pub is_error: bool,
    /// What the call read, when it read something.
    pub source: Option<SourceRecord>,
}

impl ToolOutput {
    /// A result; `text` is sanitised here, so no tool can forget to.
    pub fn ok(text: &str, source: SourceRecord) -> Self {
        Self {
            text: sanitize(text).into_owned(),
            is_error: false,
            source: Some(source),
        }
    }

    /// An error result the model can read.
    pub fn error(text: &str) -> Self {
        Self {
            text: sanitize(text).into_owned(),
            is_error: true,
            source: None,
        }
    }

    /// An error after something was read (an HTTP error status with its page).
    pub fn error_with_source(text: &str, source: SourceRecord) -> Self {
        Self {
            source: Some(source),
            ..Self::error(text)
        }
    }
}

/// Which kind of thing a tool read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Url,
    File,
}

/// One source a tool call touched, for the run's record of what its answers rest on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub kind: SourceKind,
    /// The final URL (after redirects) or the canonical path.
    pub location: String,
    /// Bytes read (at most the cap).
    pub bytes: u64,
    /// The HTTP status, for URLs.
    pub status: Option<u16>,
    pub elapsed_ms: u64,
}

/// A tool as the model is told about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// The `[tools]` settings, merged from the file and the flags by `config`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolsConfig {
    /// Hosts `fetch_url` may reach even when they are private or loopback.
    pub allow_hosts: Vec<HostPattern>,
    /// Hosts `fetch_url` never reaches; wins over `allow_hosts`.
    pub deny_hosts: Vec<HostPattern>,
    /// Folders (or single files) `read_file` and `list_dir` may read under. Empty: the file
    /// tools are not offered.
    pub allow_dirs: Vec<PathBuf>,
    pub max_result_chars: usize,
    pub fetch_timeout: Duration,
    pub max_fetch_bytes: u64,
    pub max_redirects: usize,
    pub max_file_bytes: u64,
    pub max_list_entries: usize,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            allow_dirs: Vec::new(),
            max_result_chars: usize::try_from(defaults::TOOL_MAX_RESULT_CHARS)
                .unwrap_or(usize::MAX),
            fetch_timeout: Duration::from_secs(defaults::FETCH_TIMEOUT_SECS),
            max_fetch_bytes: defaults::FETCH_MAX_BYTES,
            max_redirects: defaults::FETCH_MAX_REDIRECTS,
            max_file_bytes: defaults::FILE_MAX_BYTES,
            max_list_entries: usize::try_from(defaults::LIST_MAX_ENTRIES).unwrap_or(usize::MAX),
        }
    }
}

/// The built-in tools, as configured: `fetch_url` always, `read_file` and `list_dir` only when
/// some folder is allowed.
#[derive(Debug, Clone)]
pub struct Tools {
    fetch: FetchUrl,
    read: Option<ReadFile>,
    list: Option<ListDir>,
    /// What they were made from, for [`Tools::with_roots`].
    config: ToolsConfig,
}

impl Tools {
    pub fn new(config: &ToolsConfig) -> Self {
        let (read, list) = file_tools(config);
        Self {
            fetch: FetchUrl::new(config),
            read,
            list,
            config: config.clone(),
        }
    }

    /// The same tools, with `read_file` and `list_dir` also reading under `extra` (the files
    /// and folders a run was given): one run's tools, beside the others'. The same checks
    /// apply under every root; the fetch client is shared.
    pub fn with_roots(&self, extra: &[PathBuf]) -> Self {
        let mut config = self.config.clone();
        for root in extra {
            if !config.allow_dirs.contains(root) {
                config.allow_dirs.push(root.clone());
            }
        }
        let (read, list) = file_tools(&config);
        Self {
            fetch: self.fetch.clone(),
            read,
            list,
            config,
        }
    }

    /// The tools offered, in a stable order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = vec![ToolSpec {
            name: FetchUrl::NAME,
            description: FetchUrl::DESCRIPTION,
            parameters: FetchUrl::schema(),
        }];
        if self.read.is_some() {
            specs.push(ToolSpec {
                name: ReadFile::NAME,
                description: ReadFile::DESCRIPTION,
                parameters: ReadFile::schema(),
            });
        }
        if self.list.is_some() {
            specs.push(ToolSpec {
                name: ListDir::NAME,
                description: ListDir::DESCRIPTION,
                parameters: ListDir::schema(),
            });
        }
        specs
    }

    /// Calls the tool named `name`; an unknown or unoffered name is an error result.
    pub async fn call(&self, name: &str, args: &Value) -> ToolOutput {
        match (name, &self.read, &self.list) {
            (FetchUrl::NAME, _, _) => self.fetch.call(args).await,
            (ReadFile::NAME, Some(read), _) => read.call(args).await,
            (ListDir::NAME, _, Some(list)) => list.call(args).await,
            _ => {
                let offered: Vec<&str> = self.specs().iter().map(|s| s.name).collect();
                ToolOutput::error(&format!(
                    "no tool named {name:?}; the tools are: {}",
                    offered.join(", ")
                ))
            }
        }
    }
}

/// `read_file` and `list_dir` over the configured roots, when there are any.
fn file_tools(config: &ToolsConfig) -> (Option<ReadFile>, Option<ListDir>) {
    let roots = files::Roots::new(&config.allow_dirs);
    if roots.is_empty() {
        (None, None)
    } else {
        (
            Some(ReadFile::new(roots.clone(), config)),
            Some(ListDir::new(roots, config)),
        )
    }
}

/// `text` cut to at most `max` characters, with a marker saying how much was left out. Cuts
/// at a line end when one is near, so the last line shown is whole.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    let cut = text.char_indices().nth(max).map_or(text.len(), |(i, _)| i);
    let head = &text[..cut];
    // A line end in the last tenth keeps the last line whole without losing much.
    let head = match head.rfind('\n') {
        Some(nl) if head[nl..].chars().count() <= max / 10 + 1 => &head[..nl],
        _ => head,
    };
    let shown = head.chars().count();
    format!("{head}\n[… truncated: {shown} of {total} characters shown]")
}

/// The string argument `key` of a tool call, or an error result naming the expected shape.
pub(crate) fn string_arg<'a>(
    tool: &str,
    args: &'a Value,
    key: &str,
    required: bool,
) -> Result<Option<&'a str>, ToolOutput> {
    let shape = || {
        ToolOutput::error(&format!(
            "{tool} takes {{\"{key}\": string}}{}; got {}",
            if required { "" } else { " (optional)" },
            abbreviate(&args.to_string(), 200)
        ))
    };
    let object = match args {
        Value::Object(o) => o,
        // Some models send no arguments at all for a tool whose only argument is optional.
        Value::Null if !required => return Ok(None),
        _ => return Err(shape()),
    };
    match object.get(key) {
        Some(Value::String(s)) => Ok(Some(s)),
        None | Some(Value::Null) if !required => Ok(None),
        _ => Err(shape()),
    }
}

fn abbreviate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `1234567` → "1.2 MB"; for notes about sizes and caps.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const KB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KB {
        format!("{bytes} bytes")
    } else if b < KB * KB {
        format!("{:.1} KB", b / KB)
    } else {
        format!("{:.1} MB", b / (KB * KB))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn long_text_is_cut_with_a_marker_counting_characters() {
        let text = "é".repeat(50);
        let cut = truncate(&text, 10);
        assert!(cut.starts_with(&"é".repeat(10)), "{cut}");
        assert!(
            cut.ends_with("[… truncated: 10 of 50 characters shown]"),
            "{cut}"
        );
    }

    #[test]
    fn a_cut_near_a_line_end_keeps_the_last_line_whole() {
        let text = format!("{}\n{}", "a".repeat(95), "b".repeat(100));
        let cut = truncate(&text, 100);
        assert!(cut.starts_with(&format!("{}\n[…", "a".repeat(95))), "{cut}");
    }

    #[test]
    fn outputs_are_sanitised() {
        let out = ToolOutput::error("bad \u{1b}]0;title\u{7}name");
        assert_eq!(out.text, "bad name");
    }

    #[test]
    fn arguments_of_the_wrong_shape_are_error_results() {
        let args = serde_json::json!({"url": 5});
        let err = string_arg("fetch_url", &args, "url", true).expect_err("a number");
        assert!(
            err.is_error && err.text.contains("{\"url\": string}"),
            "{}",
            err.text
        );
        let none = string_arg("list_dir", &Value::Null, "path", false).expect("optional");
        assert_eq!(none, None);
    }

    #[test]
    fn file_tools_are_offered_only_with_a_folder() {
        let names = |t: &Tools| t.specs().iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(&Tools::new(&ToolsConfig::default())), ["fetch_url"]);
        let dir = std::env::temp_dir();
        let config = ToolsConfig {
            allow_dirs: vec![dir],
            ..ToolsConfig::default()
        };
        assert_eq!(
            names(&Tools::new(&config)),
            ["fetch_url", "read_file", "list_dir"]
        );
    }

    #[tokio::test]
    async fn an_unknown_tool_is_an_error_result() {
        let out = Tools::new(&ToolsConfig::default())
            .call("read_file", &serde_json::json!({"path": "x"}))
            .await;
        assert!(out.is_error);
        assert!(
            out.text.contains("the tools are: fetch_url"),
            "{}",
            out.text
        );
    }
}
