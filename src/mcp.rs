//! MCP servers as a source of tools: the `[[mcp.servers]]` config, and `McpHub`, which starts
//! each configured server as a child process the first time its tools are needed (through the
//! official SDK, `rmcp`, over stdio), lists its tools as specs named `mcp:SERVER/TOOL`, calls
//! them with a timeout and a cancellation token, and stops the processes on `shutdown` or drop.
//!
//! Everything a server sends (names, descriptions, schemas, results, its stderr) is untrusted:
//! it is sanitised before it leaves this module, and a server that fails to start, answers
//! garbage or dies mid-run becomes a notice and error results, never a panic. This module does
//! not know about models, roles or the engine's tool loop; the caller decides which specs a
//! worker sees and shows the notices.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, ResourceContents};
use rmcp::service::{Peer, RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::sanitize::{sanitize, sanitize_line};

/// How long a server may take from spawn to its tool list (an `npx` server may download first).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one tool call may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `shutdown` waits for a server to exit after its stdin closes before killing it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The prefix of every MCP tool name.
pub const PREFIX: &str = "mcp:";
/// Lines of a server's stderr kept to explain why it failed.
const STDERR_LINES: usize = 5;
/// Longest tool result text kept; the rest is cut with a note.
const MAX_RESULT_CHARS: usize = 100_000;

// ---- config -----------------------------------------------------------------------------

/// `[mcp]`: the MCP servers whose tools roles may use.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    #[serde(default)]
    pub servers: Vec<McpServerConfig>,
}

/// One `[[mcp.servers]]` entry: a `command` started as a child process speaking MCP on stdio,
/// or the `url` of a server speaking streamable HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    pub name: ServerName,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to the environment maestro itself runs in.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A server's name as used in tool names (`mcp:NAME/tool`): letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerName(pub String);

impl<'de> Deserialize<'de> for ServerName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if is_plain_name(&name, 64) {
            Ok(Self(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "MCP server name {name:?}: use 1 to 64 letters, digits, `-` or `_`"
            )))
        }
    }
}

impl McpConfig {
    /// Checks what one entry cannot: names are unique, and each server has either a
    /// non-empty `command` or an http(s) `url` (and `args` / `env` only with a command).
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for server in &self.servers {
            let name = &server.name.0;
            if !seen.insert(&server.name) {
                return Err(format!("[[mcp.servers]]: the name `{name}` is used twice"));
            }
            match (&server.command, &server.url) {
                (Some(command), None) if command.trim().is_empty() => {
                    return Err(format!("[[mcp.servers]] `{name}`: `command` is empty"));
                }
                (Some(_), None) => {}
                (None, Some(url)) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(format!(
                            "[[mcp.servers]] `{name}`: `url` must start with http:// or https://"
                        ));
                    }
                    if !server.args.is_empty() || !server.env.is_empty() {
                        return Err(format!(
                            "[[mcp.servers]] `{name}`: `args` and `env` go with `command`, not `url`"
                        ));
                    }
                }
                (Some(_), Some(_)) | (None, None) => {
                    return Err(format!(
                        "[[mcp.servers]] `{name}`: give either `command` (stdio) or `url` \
                         (streamable HTTP)"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn is_plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Tool names as servers send them may also hold dots; nothing that could be confused with
/// our separators (`:` and `/`) or break a provider's function-name rules.
fn is_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

// ---- specs, results, selection ----------------------------------------------------------

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct McpToolSpec {
    /// `mcp:SERVER/TOOL`
    pub name: String,
    /// The name models call it by (`mcp__SERVER__TOOL`): providers take only letters,
    /// digits, `_` and `-`, at most 64. Unique within a hub; see [`function_name`].
    pub function: String,
    pub description: String,
    /// The tool's input JSON schema.
    pub parameters: Value,
}

/// What a call returned: the text for the model, and whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpToolResult {
    pub text: String,
    pub is_error: bool,
}

impl McpToolResult {
    fn error(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            is_error: true,
        }
    }
}

/// `mcp:SERVER/TOOL` → (`SERVER`, `TOOL`).
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (server, tool) = rest.split_once('/')?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

/// Whether a role's tool pattern (`mcp:NAME/*` or `mcp:NAME/tool`) matches a tool name.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let (Some((p_server, p_tool)), Some((server, tool))) = (split_name(pattern), split_name(name))
    else {
        return false;
    };
    p_server == server && (p_tool == "*" || p_tool == tool)
}

/// The specs a role's tool patterns select, in the order of `specs`. Patterns that are not
/// MCP patterns (built-in tools) select nothing here.
pub fn select<'a>(specs: &'a [McpToolSpec], patterns: &[impl AsRef<str>]) -> Vec<&'a McpToolSpec> {
    specs
        .iter()
        .filter(|spec| {
            patterns
                .iter()
                .any(|p| pattern_matches(p.as_ref(), &spec.name))
        })
        .collect()
}

/// The servers a role's patterns name.
fn servers_named(patterns: &[impl AsRef<str>]) -> BTreeSet<&str> {
    patterns
        .iter()
        .filter_map(|p| split_name(p.as_ref()).map(|(server, _)| server))
        .collect()
}

// ---- function names ---------------------------------------------------------------------

/// The prefix of the function names MCP tools are offered to models by.
pub const FUNCTION_PREFIX: &str = "mcp__";
/// The longest function name OpenAI and Anthropic accept.
const FUNCTION_MAX: usize = 64;

/// `mcp:SERVER/TOOL` as a function name providers accept (`^[a-zA-Z0-9_-]{1,64}$`):
/// `mcp__SERVER__TOOL`, any other character as `_`. Longer than 64, it is cut and ends with
/// `_` and a hash of the whole name. A hub makes it unique (the same plain name for
/// `mcp:a/b.c` and `mcp:a/b_c`) by giving a later one a hashed name.
pub fn function_name(tool: &str) -> String {
    let plain = plain_function_name(tool);
    if plain.len() <= FUNCTION_MAX {
        plain
    } else {
        hashed_function_name(&plain, tool, 0)
    }
}

fn plain_function_name(tool: &str) -> String {
    let body = tool
        .strip_prefix(PREFIX)
        .unwrap_or(tool)
        .replacen('/', "__", 1);
    let body: String = body
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{FUNCTION_PREFIX}{body}")
}

/// `plain` cut to leave room for `_` and 8 hex digits of a hash of `tool` (and `salt`, to
/// step past a clash).
fn hashed_function_name(plain: &str, tool: &str, salt: u32) -> String {
    // FNV-1a: stable across runs and builds, so a name means the same tool in saved runs.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tool.bytes().chain(salt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let keep = FUNCTION_MAX - 9;
    // `plain` is ASCII, so any byte index is a character boundary.
    format!("{}_{:08x}", &plain[..plain.len().min(keep)], hash as u32)
}

/// Function names given so far, both ways, so that each stands for one tool.
#[derive(Debug, Default)]
struct FunctionNames {
    by_tool: BTreeMap<String, String>,
    by_function: BTreeMap<String, String>,
}

impl FunctionNames {
    /// The function name of `tool` (`mcp:SERVER/TOOL`): the one it was given before, else
    /// [`function_name`], else (taken by another tool) a hashed one.
    fn assign(&mut self, tool: &str) -> String {
        if let Some(function) = self.by_tool.get(tool) {
            return function.clone();
        }
        let plain = plain_function_name(tool);
        let mut function = function_name(tool);
        let mut salt = 0;
        while self.by_function.contains_key(&function) {
            salt += 1;
            function = hashed_function_name(&plain, tool, salt);
        }
        self.by_tool.insert(tool.to_owned(), function.clone());
        self.by_function.insert(function.clone(), tool.to_owned());
        function
    }
}

// ---- the hub ----------------------------------------------------------------------------

/// The configured servers, each started on first use and kept running until `shutdown` or
/// drop. Shared by every worker of a run (`&self` methods; calls run in parallel).
pub struct McpHub {
    servers: Vec<Slot>,
    notices: Mutex<Notices>,
    functions: Mutex<FunctionNames>,
    start_timeout: Duration,
    call_timeout: Duration,
}

struct Slot {
    config: McpServerConfig,
    state: tokio::sync::Mutex<State>,
}

enum State {
    NotStarted,
    Running(Box<Running>),
    /// Failed to start, or died; the reason is told to every later call.
    Down(String),
}

struct Running {
    service: RunningService<RoleClient, ()>,
    /// Tool names as the server knows them, and their specs.
    tools: Vec<(String, McpToolSpec)>,
    stderr: StderrTail,
}

type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// Notices not yet taken, and every one ever given: each is told once per hub, however many
/// workers ask for the same missing server.
#[derive(Default)]
struct Notices {
    pending: Vec<String>,
    told: BTreeSet<String>,
}

impl McpHub {
    pub fn new(config: &McpConfig) -> Self {
        Self {
            servers: config
                .servers
                .iter()
                .map(|config| Slot {
                    config: config.clone(),
                    state: tokio::sync::Mutex::new(State::NotStarted),
                })
                .collect(),
            notices: Mutex::new(Notices::default()),
            functions: Mutex::new(FunctionNames::default()),
            start_timeout: DEFAULT_START_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    pub fn with_timeouts(mut self, start: Duration, call: Duration) -> Self {
        self.start_timeout = start;
        self.call_timeout = call;
        self
    }

    /// The configured server names.
    pub fn server_names(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(|s| s.config.name.0.as_str())
            .collect()
    }

    /// Notices collected since the last call (a server that did not start or stopped), for
    /// the caller to show.
    pub fn take_notices(&self) -> Vec<String> {
        let mut notices = self.notices.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut notices.pending)
    }

    /// The tool (`mcp:SERVER/TOOL`) a function name stands for, once its server has listed it.
    pub fn tool_for_function(&self, function: &str) -> Option<String> {
        let functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        functions.by_function.get(function).cloned()
    }

    /// Tell `text` once per process, with the hub's other notices.
    pub fn notice(&self, text: String) {
        let mut notices = self.notices.lock().unwrap_or_else(|p| p.into_inner());
        if notices.told.insert(text.clone()) {
            notices.pending.push(text);
        }
    }

    /// The specs a role's patterns select, starting the servers they name if needed. A server
    /// that cannot start adds a notice and contributes no tools; a pattern naming a server
    /// that is not configured adds a notice too.
    pub async fn tools_for(&self, patterns: &[impl AsRef<str>]) -> Vec<McpToolSpec> {
        let mut slots = Vec::new();
        for server in servers_named(patterns) {
            match self.slot(server) {
                Some(slot) => slots.push(slot),
                None => self.notice(format!(
                    "MCP server `{}` is not configured (no [[mcp.servers]] entry with that name)",
                    sanitize_line(server)
                )),
            }
        }
        // Servers start side by side: a slow one (npx downloading) does not hold up the rest.
        let specs: Vec<McpToolSpec> =
            futures_util::future::join_all(slots.into_iter().map(|s| self.server_tools(s)))
                .await
                .into_iter()
                .flatten()
                .collect();
        select(&specs, patterns).into_iter().cloned().collect()
    }

    /// Every tool of every configured server, starting them all (for `maestro mcp list`).
    pub async fn all_tools(&self) -> Vec<McpToolSpec> {
        futures_util::future::join_all(self.servers.iter().map(|s| self.server_tools(s)))
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Call `mcp:SERVER/TOOL` with a JSON object of arguments. Every failure (unknown tool,
    /// server down, bad arguments, timeout, cancellation) is an error result.
    pub async fn call(
        &self,
        name: &str,
        arguments: Value,
        cancel: &CancellationToken,
    ) -> McpToolResult {
        let Some((server, tool)) = split_name(name) else {
            return McpToolResult::error(format!(
                "`{}` is not an MCP tool name (mcp:SERVER/TOOL)",
                sanitize_line(name)
            ));
        };
        let Some(slot) = self.slot(server) else {
            return McpToolResult::error(format!(
                "no MCP server named `{}` is configured",
                sanitize_line(server)
            ));
        };
        let arguments = match arguments {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return McpToolResult::error(format!(
                    "the arguments of `{name}` must be a JSON object, not {}",
                    json_kind(&other)
                ));
            }
        };
        let peer = match self.peer_for(slot, tool).await {
            Ok(peer) => peer,
            Err(message) => return McpToolResult::error(message),
        };
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        // Dropping the request future (timeout, cancellation) tells the server to cancel it.
        let outcome = tokio::select! {
            () = cancel.cancelled() => {
                return McpToolResult::error(format!("`{name}` was cancelled"));
            }
            outcome = tokio::time::timeout(self.call_timeout, peer.call_tool(params)) => outcome,
        };
        match outcome {
            Err(_) => McpToolResult::error(format!(
                "`{name}` did not answer within {} s",
                self.call_timeout.as_secs_f64()
            )),
            Ok(Ok(result)) => render_result(&result),
            Ok(Err(ServiceError::McpError(error))) => McpToolResult::error(format!(
                "`{name}` failed: {}",
                sanitize_line(&error.message)
            )),
            Ok(Err(error)) => {
                // A killed server shows as a broken pipe on the next send, before the
                // connection notices that its stdout closed.
                let gone = matches!(
                    error,
                    ServiceError::TransportSend(_) | ServiceError::TransportClosed
                );
                if gone || peer.is_transport_closed() {
                    let reason = self.mark_down(slot).await;
                    McpToolResult::error(reason)
                } else {
                    McpToolResult::error(format!(
                        "`{name}` failed: {}",
                        sanitize_line(&error.to_string())
                    ))
                }
            }
        }
    }

    /// Stop every started server: close its stdin, wait a little, then kill it.
    pub async fn shutdown(&self) {
        // Side by side, so servers slow to exit cost one wait, not one each.
        futures_util::future::join_all(self.servers.iter().map(|slot| async {
            let mut state = slot.state.lock().await;
            if let State::Running(mut running) =
                std::mem::replace(&mut *state, State::Down("MCP servers were stopped".into()))
            {
                // `close` ends with a kill if the server outlives the timeout; if even that
                // is slow, dropping the service drops the child, which kills it.
                let _ = running.service.close_with_timeout(STOP_TIMEOUT * 2).await;
            }
        }))
        .await;
    }

    fn slot(&self, server: &str) -> Option<&Slot> {
        self.servers.iter().find(|s| s.config.name.0 == server)
    }

    async fn server_tools(&self, slot: &Slot) -> Vec<McpToolSpec> {
        let mut state = slot.state.lock().await;
        self.ensure_started(slot, &mut state).await;
        let stopped = match &*state {
            State::Running(running) if running.service.peer().is_transport_closed() => {
                stopped_reason(&slot.config.name.0, &running.stderr)
            }
            State::Running(running) => {
                return running.tools.iter().map(|(_, s)| s.clone()).collect();
            }
            State::NotStarted | State::Down(_) => return Vec::new(),
        };
        // It died between calls: its tools are no longer offered.
        self.notice(stopped.clone());
        *state = State::Down(stopped);
        Vec::new()
    }

    /// The connection to use for a call of `tool`, or why there is none.
    async fn peer_for(&self, slot: &Slot, tool: &str) -> Result<Peer<RoleClient>, String> {
        let mut state = slot.state.lock().await;
        self.ensure_started(slot, &mut state).await;
        let server = &slot.config.name.0;
        let stopped = match &*state {
            State::Running(running) => {
                if running.service.peer().is_transport_closed() {
                    Some(stopped_reason(server, &running.stderr))
                } else if running.tools.iter().any(|(t, _)| t == tool) {
                    return Ok(running.service.peer().clone());
                } else {
                    return Err(format!(
                        "MCP server `{server}` has no tool `{}`",
                        sanitize_line(tool)
                    ));
                }
            }
            State::Down(reason) => return Err(reason.clone()),
            State::NotStarted => return Err(format!("MCP server `{server}` is not running")),
        };
        let reason = stopped.unwrap_or_default();
        self.notice(reason.clone());
        *state = State::Down(reason.clone());
        Err(reason)
    }

    /// Record that a running server stopped; returns the reason for the caller's result.
    async fn mark_down(&self, slot: &Slot) -> String {
        let mut state = slot.state.lock().await;
        match &*state {
            State::Running(running) => {
                let reason = stopped_reason(&slot.config.name.0, &running.stderr);
                self.notice(reason.clone());
                *state = State::Down(reason.clone());
                reason
            }
            State::Down(reason) => reason.clone(),
            State::NotStarted => format!("MCP server `{}` is not running", slot.config.name.0),
        }
    }

    async fn ensure_started(&self, slot: &Slot, state: &mut State) {
        if !matches!(state, State::NotStarted) {
            return;
        }
        let name = &slot.config.name.0;
        *state = match start(&slot.config, self.start_timeout).await {
            Ok(mut running) => {
                let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
                for (_, spec) in &mut running.0.tools {
                    spec.function = functions.assign(&spec.name);
                }
                drop(functions);
                if running.0.tools.is_empty() {
                    self.notice(format!("MCP server `{name}` started but offers no tools"));
                }
                for skipped in &running.1 {
                    self.notice(format!(
                        "MCP server `{name}`: tool {skipped:?} skipped (its name is not \
                         letters, digits, `-`, `_` or `.`)"
                    ));
                }
                State::Running(Box::new(running.0))
            }
            Err(reason) => {
                let reason = format!(
                    "MCP server `{name}` did not start: {reason}; its tools are not available"
                );
                self.notice(reason.clone());
                State::Down(reason)
            }
        };
    }
}

/// `maestro mcp list`: start every configured server, write its tools (a list, or one JSON
/// array of specs), stop the servers. Returns the notices of servers that did not start.
pub async fn list(
    config: &McpConfig,
    json: bool,
    out: &mut dyn std::io::Write,
) -> std::io::Result<Vec<String>> {
    let hub = McpHub::new(config);
    let mut listed = Vec::new();
    for slot in &hub.servers {
        let tools = hub.server_tools(slot).await;
        let started = matches!(&*slot.state.lock().await, State::Running(_));
        listed.push((&slot.config, started, tools));
    }
    hub.shutdown().await;
    if json {
        let specs: Vec<&McpToolSpec> = listed.iter().flat_map(|(_, _, t)| t).collect();
        crate::sanitize::write_json(&mut *out, &specs).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else {
        for (config, started, tools) in &listed {
            let command = config
                .command
                .iter()
                .chain(&config.args)
                .chain(&config.url)
                .map(|part| sanitize_line(part).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let status = if *started {
                format!("{} tools", tools.len())
            } else {
                "did not start".to_owned()
            };
            writeln!(out, "{} ({command}): {status}", config.name.0)?;
            for tool in tools {
                let summary = tool.description.lines().next().unwrap_or_default();
                writeln!(out, "  {}  {}", tool.name, sanitize_line(summary))?;
            }
        }
    }
    Ok(hub.take_notices())
}

fn stopped_reason(server: &str, stderr: &StderrTail) -> String {
    format!(
        "MCP server `{server}` stopped{}; its tools are not available",
        stderr_note(stderr)
    )
}

/// Start or connect to the server, shake hands and list its tools. Also returns the names of
/// tools skipped.
async fn start(
    config: &McpServerConfig,
    timeout: Duration,
) -> Result<(Running, Vec<String>), String> {
    let tail: StderrTail = Arc::new(Mutex::new(VecDeque::new()));
    let connect = async {
        match (&config.command, &config.url) {
            (Some(command), _) => {
                let transport = spawn(command, config, &tail)?;
                ().serve(transport).await.map_err(|e| e.to_string())
            }
            (None, Some(url)) => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                ().serve(transport).await.map_err(|e| e.to_string())
            }
            (None, None) => Err("neither `command` nor `url` is set".to_owned()),
        }
    };
    let started = tokio::time::timeout(timeout, async {
        let service = connect.await?;
        // A server that says it has no tools is not asked for them (it would answer "method
        // not found"): it is up, with nothing to offer.
        let offers_tools = service
            .peer_info()
            .is_none_or(|info| info.capabilities.tools.is_some());
        let tools = if offers_tools {
            service.list_all_tools().await.map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        Ok::<_, String>((service, tools))
    })
    .await;
    match started {
        Ok(Ok((service, tools))) => Ok(specs_of(config, service, tools, tail)),
        Ok(Err(error)) => {
            // Let the stderr reader catch the server's last words before quoting them.
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(format!("{}{}", sanitize_line(&error), stderr_note(&tail)))
        }
        Err(_) => Err(format!(
            "no MCP handshake within {} s{}",
            timeout.as_secs_f64(),
            stderr_note(&tail)
        )),
    }
}

/// Start a stdio server; its stderr goes to `tail`.
fn spawn(
    program: &str,
    config: &McpServerConfig,
    tail: &StderrTail,
) -> Result<TokioChildProcess, String> {
    let mut command = tokio::process::Command::new(program);
    command.args(&config.args).envs(&config.env);
    let mut command = process_wrap::tokio::CommandWrap::from(command);
    // A process group, so stopping the server also stops what it started (npx → node);
    // killed on drop, so a hub dropped without `shutdown` leaves no process behind.
    #[cfg(unix)]
    command.wrap(process_wrap::tokio::ProcessGroup::leader());
    command.wrap(process_wrap::tokio::KillOnDrop);
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", sanitize_line(program)))?;
    if let Some(stderr) = stderr {
        tokio::spawn(keep_tail(stderr, Arc::clone(tail)));
    }
    Ok(transport)
}

/// The specs of a started server's tools, and the names of tools skipped.
fn specs_of(
    config: &McpServerConfig,
    service: RunningService<RoleClient, ()>,
    tools: Vec<rmcp::model::Tool>,
    tail: StderrTail,
) -> (Running, Vec<String>) {
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    for tool in tools {
        if !is_tool_name(&tool.name) {
            skipped.push(sanitize_line(&tool.name).into_owned());
            continue;
        }
        let mut parameters = Value::Object((*tool.input_schema).clone());
        sanitize_json(&mut parameters);
        specs.push((
            tool.name.to_string(),
            McpToolSpec {
                name: format!("{PREFIX}{}/{}", config.name.0, tool.name),
                // Given by the hub, which knows every server's names.
                function: String::new(),
                description: sanitize(tool.description.as_deref().unwrap_or_default()).into_owned(),
                parameters,
            },
        ));
    }
    (
        Running {
            service,
            tools: specs,
            stderr: tail,
        },
        skipped,
    )
}

async fn keep_tail(stderr: tokio::process::ChildStderr, tail: StderrTail) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = sanitize_line(&line).trim().to_owned();
        if line.is_empty() {
            continue;
        }
        let Ok(mut tail) = tail.lock() else { return };
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(300).collect());
    }
}

/// ` (stderr: …)` with the server's last stderr line, or nothing.
fn stderr_note(tail: &StderrTail) -> String {
    match tail.lock().ok().and_then(|t| t.back().cloned()) {
        Some(line) => format!(" (stderr: {line})"),
        None => String::new(),
    }
}

fn sanitize_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = sanitize(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize_json),
        Value::Object(map) => map.values_mut().for_each(sanitize_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a result: text blocks joined by newlines, other blocks summarised.
fn render_result(result: &CallToolResult) -> McpToolResult {
    let mut parts: Vec<String> = Vec::new();
    for block in &result.content {
        parts.push(match block {
            ContentBlock::Text(text) => sanitize(&text.text).into_owned(),
            ContentBlock::Image(image) => summary("image", &image.mime_type, &image.data),
            ContentBlock::Audio(audio) => summary("audio", &audio.mime_type, &audio.data),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {}]\n{}", sanitize_line(uri), sanitize(text))
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => format!(
                    "[resource {}, {}, {}]",
                    sanitize_line(uri),
                    sanitize_line(mime_type.as_deref().unwrap_or("binary")),
                    size_of_base64(blob)
                ),
                // The SDK's enums are non-exhaustive: a newer kind is named, not dropped.
                _ => "[resource of an unknown kind]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => {
                format!(
                    "[link {} {}]",
                    sanitize_line(&link.name),
                    sanitize_line(&link.uri)
                )
            }
            _ => "[content of an unknown kind]".to_owned(),
        });
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        let mut structured = structured.clone();
        sanitize_json(&mut structured);
        parts.push(structured.to_string());
    }
    let mut text = parts.join("\n");
    if text.chars().count() > MAX_RESULT_CHARS {
        text = text.chars().take(MAX_RESULT_CHARS).collect();
        text.push_str("\n[… cut: the result was longer]");
    }
    McpToolResult {
        text,
        is_error: result.is_error.unwrap_or(false),
    }
}

fn summary(kind: &str, mime: &str, base64: &str) -> String {
    format!(
        "[{kind} {}, {}]",
        sanitize_line(mime),
        size_of_base64(base64)
    )
}

/// The decoded size of base64 data, as people read it.
fn size_of_base64(data: &str) -> String {
    let bytes = data.trim_end_matches('=').len() * 3 / 4;
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{} kB", bytes.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> McpToolSpec {
        McpToolSpec {
            name: name.to_owned(),
            function: function_name(name),
            description: String::new(),
            parameters: Value::Null,
        }
    }

    #[test]
    fn names_split_into_server_and_tool() {
        assert_eq!(split_name("mcp:fs/read"), Some(("fs", "read")));
        assert_eq!(split_name("mcp:fs/"), None);
        assert_eq!(split_name("mcp:/read"), None);
        assert_eq!(split_name("fetch_url"), None);
    }

    #[test]
    fn patterns_select_a_whole_server_or_one_tool() {
        let specs = [spec("mcp:a/x"), spec("mcp:a/y"), spec("mcp:b/x")];
        let names = |patterns: &[&str]| -> Vec<String> {
            select(&specs, patterns)
                .into_iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(&["mcp:a/*"]), ["mcp:a/x", "mcp:a/y"]);
        assert_eq!(names(&["mcp:b/x", "fetch_url"]), ["mcp:b/x"]);
        assert_eq!(names(&["mcp:b/y", "mcp:*/x"]), Vec::<String>::new());
    }

    fn provider_accepts(function: &str) -> bool {
        (1..=64).contains(&function.len())
            && function
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn function_names_are_what_providers_accept() {
        assert_eq!(
            function_name("mcp:github/search_issues"),
            "mcp__github__search_issues"
        );
        assert_eq!(function_name("mcp:fs/read.file"), "mcp__fs__read_file");
        let long = format!("mcp:{}/{}", "s".repeat(64), "t".repeat(64));
        let function = function_name(&long);
        assert_eq!(function.len(), 64);
        assert!(function.starts_with("mcp__sss"), "{function}");
        assert!(provider_accepts(&function), "{function}");
        // The hash tells long names with the same beginning apart.
        let other = format!("mcp:{}/{}", "s".repeat(64), "u".repeat(64));
        assert_ne!(function_name(&other), function);
    }

    #[test]
    fn function_names_are_unique_both_ways() {
        let mut names = FunctionNames::default();
        let tools = [
            "mcp:a/b__c",
            "mcp:a__b/c",
            "mcp:fs/read.file",
            "mcp:fs/read_file",
            "mcp:fs/read-file",
        ];
        let functions: Vec<String> = tools.iter().map(|t| names.assign(t)).collect();
        let distinct: BTreeSet<&String> = functions.iter().collect();
        assert_eq!(distinct.len(), tools.len(), "{functions:?}");
        assert_eq!(
            functions[0], "mcp__a__b__c",
            "the first keeps the plain name"
        );
        for (tool, function) in tools.iter().zip(&functions) {
            assert!(provider_accepts(function), "{function}");
            assert_eq!(names.by_function[function], *tool);
            assert_eq!(names.assign(tool), *function, "asked again, the same name");
        }
    }

    #[test]
    fn results_join_text_and_summarise_the_rest() {
        let mut result = CallToolResult::success(vec![
            ContentBlock::text("one\u{1b}[2J"),
            ContentBlock::image("A".repeat(16_384), "image/png"),
            ContentBlock::text("two"),
        ]);
        result.is_error = Some(true);
        let rendered = render_result(&result);
        assert_eq!(rendered.text, "one\n[image image/png, 12 kB]\ntwo");
        assert!(rendered.is_error);
    }

    #[test]
    fn config_rejects_bad_names_and_duplicates() {
        let bad: Result<McpConfig, _> =
            toml::from_str("[[servers]]\nname = \"a/b\"\ncommand = \"x\"\n");
        assert!(bad.is_err());
        let twice: McpConfig = toml::from_str(
            "[[servers]]\nname = \"a\"\ncommand = \"x\"\n[[servers]]\nname = \"a\"\ncommand = \"y\"\n",
        )
        .expect("parses");
        assert!(twice.validate().is_err());
        let check = |entry: &str| -> Result<(), String> {
            let config: McpConfig =
                toml::from_str(&format!("[[servers]]\nname = \"a\"\n{entry}")).expect("parses");
            config.validate()
        };
        assert!(check("command = \"x\"\n").is_ok());
        assert!(check("url = \"https://example.com/mcp\"\n").is_ok());
        assert!(check("command = \" \"\n").is_err());
        assert!(check("url = \"example.com/mcp\"\n").is_err());
        assert!(check("command = \"x\"\nurl = \"http://h/mcp\"\n").is_err());
        assert!(check("").is_err());
        assert!(check("url = \"http://h/mcp\"\nargs = [\"-v\"]\n").is_err());
    }
}
