//! Native function calling, in the terms both wire protocols share: what a tool is
//! (`ToolSpec`), a model's request to call one (`ToolCall`) and the answer it gets
//! (`ToolResult`), and the `ToolBox` the executor asks to run calls.
//!
//! Owns the provider-neutral types and `ToolSet`, a `ToolBox` made of plain functions (the
//! built-in tools register into one; tests and the demo make their own). It must not know
//! either protocol's JSON (that is `openai` and `anthropic`), run a loop of calls (the
//! executor does) or know which role gets which tool beyond the names it is given.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::protocol::{Attachments, Source};

/// A tool a model may call: its name, what it does, and its parameters as a JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// A JSON Schema object describing the arguments.
    pub parameters: Value,
}

/// A model's request to call a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The model's id for the call (`call_…`, `toolu_…`); results are matched to it.
    pub id: String,
    pub name: String,
    /// The arguments, parsed; `Value::Null` when they were not valid JSON.
    pub arguments: Value,
    /// The arguments as the model wrote them, when they were not valid JSON, with why: the
    /// tool is not called and the model is told instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed: Option<Malformed>,
}

/// Argument text that did not parse as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Malformed {
    pub raw: String,
    pub error: String,
}

impl ToolCall {
    /// A call from the argument text a model streamed. Empty text is no arguments (`{}`):
    /// some servers send nothing for a tool without parameters.
    pub fn from_text(id: String, name: String, text: &str) -> Self {
        let (arguments, malformed) = if text.trim().is_empty() {
            (Value::Object(Default::default()), None)
        } else {
            match serde_json::from_str::<Value>(text) {
                Ok(value) => (value, None),
                Err(e) => (
                    Value::Null,
                    Some(Malformed {
                        raw: text.to_owned(),
                        error: e.to_string(),
                    }),
                ),
            }
        };
        Self {
            id,
            name,
            arguments,
            malformed,
        }
    }

    /// The arguments as text to send back in the assistant turn: exactly what the model
    /// wrote when it did not parse.
    pub fn arguments_text(&self) -> String {
        match &self.malformed {
            Some(m) => m.raw.clone(),
            None => self.arguments.to_string(),
        }
    }
}

/// The answer to one tool call, as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    pub call_id: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

/// What running a tool gave: the content for the model, whether it is an error, and what
/// was read, for the sources list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
    pub source: Option<Source>,
}

impl ToolOutcome {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
            source: None,
        }
    }
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            source: None,
        }
    }
    pub fn with_source(mut self, source: Source) -> Self {
        self.source = Some(source);
        self
    }
}

/// The tools the executor may offer workers, and how to run a call of one.
pub trait ToolBox: Send + Sync {
    /// The specs of the tools named in `role_tools`: tool names, group names (`fetch`,
    /// `files`) or `all`. Unknown names are skipped.
    fn specs(&self, role_tools: &[String]) -> Vec<ToolSpec>;
    /// Run `call`. A tool that cannot do what was asked returns an error outcome (the model
    /// reads it) rather than failing; `cancel` fires when the call is no longer wanted.
    fn call(&self, call: ToolCall, cancel: CancellationToken) -> BoxFuture<'static, ToolOutcome>;

    /// Get ready to offer the tools named in `role_tools` (start the MCP servers they need),
    /// before `specs` is asked for them; what goes wrong is told by `take_notices`.
    fn prepare<'a>(&'a self, role_tools: &'a [String]) -> BoxFuture<'a, ()> {
        let _ = role_tools;
        Box::pin(std::future::ready(()))
    }

    /// What people should hear about since the last time asked (a tool source that did not
    /// start or stopped), each told once.
    fn take_notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// The name a tool is shown by: `name` is what the model calls it, which provider rules
    /// may have made less readable than the tool's own name.
    fn label(&self, name: &str) -> String {
        name.to_owned()
    }

    /// The tool box for one run given `context` (its files become readable), when that
    /// differs from this one; `None`: this one serves the run.
    fn for_run(&self, context: &Attachments) -> Option<Arc<dyn ToolBox>> {
        let _ = context;
        None
    }
}

/// A tool box with no tools: the executor's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTools;

impl ToolBox for NoTools {
    fn specs(&self, _role_tools: &[String]) -> Vec<ToolSpec> {
        Vec::new()
    }
    fn call(&self, call: ToolCall, _cancel: CancellationToken) -> BoxFuture<'static, ToolOutcome> {
        let outcome = ToolOutcome::error(format!("there is no tool called {:?}", call.name));
        Box::pin(std::future::ready(outcome))
    }
}

/// How a registered tool runs: its arguments (parsed) and a cancellation token in, an outcome
/// out.
pub type ToolFn =
    Arc<dyn Fn(Value, CancellationToken) -> BoxFuture<'static, ToolOutcome> + Send + Sync>;

struct Entry {
    spec: ToolSpec,
    group: String,
    run: ToolFn,
}

/// A `ToolBox` of registered functions, each in a group (`fetch`, `files`, …) so a selection
/// can name a whole group.
#[derive(Default)]
pub struct ToolSet {
    entries: Vec<Entry>,
}

impl ToolSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a tool; a later tool of the same name replaces an earlier one.
    pub fn register(&mut self, spec: ToolSpec, group: &str, run: ToolFn) {
        self.entries.retain(|e| e.spec.name != spec.name);
        self.entries.push(Entry {
            spec,
            group: group.to_owned(),
            run,
        });
    }

    /// The names of every registered tool, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.spec.name.clone()).collect()
    }

    fn selected(&self, entry: &Entry, names: &[String]) -> bool {
        names.iter().any(|n| {
            let n = n.trim();
            n.eq_ignore_ascii_case("all")
                || n.eq_ignore_ascii_case(&entry.group)
                || n == entry.spec.name
        })
    }
}

impl ToolBox for ToolSet {
    fn specs(&self, role_tools: &[String]) -> Vec<ToolSpec> {
        self.entries
            .iter()
            .filter(|e| self.selected(e, role_tools))
            .map(|e| e.spec.clone())
            .collect()
    }

    fn call(&self, call: ToolCall, cancel: CancellationToken) -> BoxFuture<'static, ToolOutcome> {
        match self.entries.iter().find(|e| e.spec.name == call.name) {
            Some(entry) => (entry.run)(call.arguments, cancel),
            None => NoTools.call(call, cancel),
        }
    }
}

/// The message a model reads when its arguments did not parse.
pub fn malformed_message(malformed: &Malformed) -> String {
    format!(
        "arguments were not valid JSON: {}. Call the tool again with a JSON object.",
        malformed.error
    )
}

/// Which tools workers get for a run: `--tools` and `[tools] enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoice {
    /// No tools: workers answer from what they know.
    None,
    /// Fetching web pages only.
    Fetch,
    /// Reading local files and folders only.
    Files,
    /// Every tool.
    #[default]
    All,
    /// The tools of every configured MCP server only.
    Mcp,
}

impl ToolChoice {
    /// The names this choice selects, for `ToolBox::specs`.
    pub fn names(self) -> Vec<String> {
        match self {
            ToolChoice::None => Vec::new(),
            ToolChoice::Fetch => vec!["fetch".to_owned()],
            ToolChoice::Files => vec!["files".to_owned()],
            ToolChoice::All => vec!["all".to_owned()],
            ToolChoice::Mcp => vec!["mcp".to_owned()],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ToolChoice::None => "none",
            ToolChoice::Fetch => "fetch",
            ToolChoice::Files => "files",
            ToolChoice::All => "all",
            ToolChoice::Mcp => "mcp",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::None, Self::Fetch, Self::Files, Self::All, Self::Mcp]
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// The tool names a `--tools` value selects: a comma-separated list of `none`, `fetch`,
/// `files`, `all`, `mcp` (every MCP server's tools), `mcp:SERVER/*` and `mcp:SERVER/TOOL`;
/// `none` alone selects nothing. An item that is none of these is an error naming it.
pub fn parse_selection(text: &str) -> Result<Vec<String>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    if items.len() == 1 && items[0].eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    items
        .into_iter()
        .map(|item| {
            let known = ["fetch", "files", "all", "mcp"]
                .iter()
                .find(|k| k.eq_ignore_ascii_case(item));
            if let Some(known) = known {
                return Ok((*known).to_owned());
            }
            let mcp = item
                .strip_prefix("mcp:")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(server, tool)| !server.is_empty() && !tool.is_empty());
            if mcp {
                Ok(item.to_owned())
            } else {
                Err(format!(
                    "--tools: {item:?} is not a tool choice; use none, fetch, files, all, mcp, \
                     mcp:SERVER/* or mcp:SERVER/TOOL (several separated by commas)"
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
        }
    }

    fn set() -> ToolSet {
        let mut set = ToolSet::new();
        let echo: ToolFn =
            Arc::new(|args, _| Box::pin(std::future::ready(ToolOutcome::ok(args.to_string()))));
        set.register(spec("fetch_url"), "fetch", echo.clone());
        set.register(spec("read_file"), "files", echo.clone());
        set.register(spec("list_dir"), "files", echo);
        set
    }

    #[test]
    fn specs_are_selected_by_name_group_or_all() {
        let set = set();
        let names = |sel: &[&str]| -> Vec<String> {
            let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
            set.specs(&sel).into_iter().map(|s| s.name).collect()
        };
        assert_eq!(names(&["all"]), ["fetch_url", "read_file", "list_dir"]);
        assert_eq!(names(&["files"]), ["read_file", "list_dir"]);
        assert_eq!(names(&["fetch_url", "nope"]), ["fetch_url"]);
        assert!(names(&[]).is_empty());
        assert!(set.specs(&ToolChoice::None.names()).is_empty());
    }

    #[tokio::test]
    async fn unknown_tools_answer_an_error_the_model_reads() {
        let set = set();
        let call = ToolCall::from_text("c1".into(), "delete_all".into(), "{}");
        let outcome = set.call(call, CancellationToken::new()).await;
        assert!(outcome.is_error);
        assert!(outcome.content.contains("delete_all"));
    }

    #[test]
    fn a_tools_flag_is_a_list_of_choices_and_mcp_patterns() {
        assert_eq!(parse_selection("none"), Ok(Vec::new()));
        assert_eq!(parse_selection("ALL"), Ok(vec!["all".to_owned()]));
        assert_eq!(
            parse_selection("fetch, mcp:gh/*,mcp:fs/read"),
            Ok(vec![
                "fetch".into(),
                "mcp:gh/*".into(),
                "mcp:fs/read".into()
            ])
        );
        assert_eq!(parse_selection("mcp"), Ok(vec!["mcp".to_owned()]));
        // `[tools] enabled` takes one choice, with the same names.
        let enabled: std::collections::BTreeMap<String, ToolChoice> =
            toml::from_str("enabled = \"mcp\"").expect("parses");
        assert_eq!(enabled["enabled"].names(), ["mcp"]);
        for bad in ["everything", "mcp:gh", "mcp:/x", "fetch,", "none,fetch"] {
            let error = parse_selection(bad).expect_err(bad);
            assert!(error.starts_with("--tools: "), "{error}");
        }
    }

    #[test]
    fn broken_argument_text_is_kept_with_its_error() {
        let call = ToolCall::from_text("c".into(), "t".into(), r#"{"url": "x"#);
        let malformed = call.malformed.clone().expect("malformed");
        assert_eq!(call.arguments_text(), r#"{"url": "x"#);
        assert!(malformed_message(&malformed).starts_with("arguments were not valid JSON: "));
        let empty = ToolCall::from_text("c".into(), "t".into(), "  ");
        assert_eq!(empty.arguments, serde_json::json!({}));
        assert!(empty.malformed.is_none());
    }
}
