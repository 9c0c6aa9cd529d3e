//! The tool box workers are given on real servers: the built-in tools (`tools`) and the tools
//! of the configured MCP servers (`mcp::McpHub`) behind the executor's one `ToolBox`, and the
//! handle the front ends stop the MCP servers with when the process ends (`McpServers`).
//!
//! It owns what joins them, since neither `tools` nor `mcp` may import `llm`: which names
//! select which tools (`fetch`, `files`, `mcp`, `mcp:SERVER/*`, `mcp:SERVER/TOOL`, `all`),
//! offering MCP tools by function names providers accept and showing them as
//! `mcp:SERVER/TOOL`, starting the servers a call needs before its tools are listed
//! (`prepare`), and a run's own read roots (the files it was given, `for_run`). It must not
//! decide which role gets which tool (the run does), run the loop of calls (the executor
//! does) or read anything a tool's policy did not check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::llm::tools::{ToolBox, ToolCall, ToolOutcome, ToolSet, ToolSpec};
use crate::mcp::{McpConfig, McpHub, McpToolSpec};
use crate::protocol::Attachments;
use crate::tools::{Tools, ToolsConfig};

/// The workers' tool box and the MCP servers behind it, for a front end to stop at its end.
pub fn workers(tools: &ToolsConfig, mcp: &McpConfig) -> (Arc<dyn ToolBox>, McpServers) {
    let side = Arc::new(McpSide {
        hub: McpHub::new(mcp),
        known: Mutex::new(BTreeMap::new()),
    });
    let builtin = Arc::new(Tools::new(tools));
    let tools = WorkerTools {
        set: builtin_toolbox(Arc::clone(&builtin)),
        builtin,
        mcp: Arc::clone(&side),
    };
    (Arc::new(tools), McpServers(Some(side)))
}

/// The MCP servers a tool box started, stopped by [`McpServers::stop`]. Dropping it does not
/// stop them (the hub kills its processes when the last tool box holding it is dropped), but
/// a process that exits runs no destructors, so front ends stop them before they return.
#[derive(Clone, Default)]
pub struct McpServers(Option<Arc<McpSide>>);

impl McpServers {
    /// Stop every server started: close its input, wait a little, then kill it.
    pub async fn stop(&self) {
        if let Some(side) = &self.0 {
            side.hub.shutdown().await;
        }
    }
}

/// Built-in tools and MCP tools as one `ToolBox`.
struct WorkerTools {
    /// The built-in tools (`fetch`, `files`), as configured and as `set` offers them.
    builtin: Arc<Tools>,
    set: ToolSet,
    mcp: Arc<McpSide>,
}

struct McpSide {
    hub: McpHub,
    /// Each prepared server's tools as last listed; a server that stopped has none.
    known: Mutex<BTreeMap<String, Vec<McpToolSpec>>>,
}

/// Whether `names` select every MCP tool.
fn every_mcp_tool(names: &[String]) -> bool {
    names.iter().any(|n| {
        let n = n.trim();
        n.eq_ignore_ascii_case("all") || n.eq_ignore_ascii_case("mcp")
    })
}

impl McpSide {
    async fn prepare(&self, names: &[String]) {
        let servers: Vec<String> = if every_mcp_tool(names) {
            self.hub
                .server_names()
                .into_iter()
                .map(str::to_owned)
                .collect()
        } else {
            let mut named: Vec<String> = names
                .iter()
                .filter_map(|n| crate::mcp::split_name(n.trim()).map(|(s, _)| s.to_owned()))
                .collect();
            named.sort();
            named.dedup();
            named
        };
        if servers.is_empty() {
            return;
        }
        // Servers start side by side (the hub starts each once; later calls only list).
        let listed = futures_util::future::join_all(servers.into_iter().map(|server| async {
            let pattern = [format!("{}{server}/*", crate::mcp::PREFIX)];
            let tools = self.hub.tools_for(&pattern).await;
            (server, tools)
        }))
        .await;
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for (server, tools) in listed {
            known.insert(server, tools);
        }
        // A single tool a role names that its (running) server does not offer would select
        // nothing without a word: say so, with what the server does offer.
        for name in names.iter().map(|n| n.trim()) {
            let Some((server, tool)) = crate::mcp::split_name(name) else {
                continue;
            };
            let Some(offered) = known.get(server).filter(|t| !t.is_empty()) else {
                continue;
            };
            if tool == "*" || offered.iter().any(|spec| spec.name == name) {
                continue;
            }
            let names: Vec<&str> = offered
                .iter()
                .filter_map(|spec| crate::mcp::split_name(&spec.name).map(|(_, t)| t))
                .collect();
            self.hub.notice(format!(
                "MCP server `{server}` has no tool `{tool}`, which a role asks for; it offers: {}",
                names.join(", ")
            ));
        }
    }

    fn specs(&self, names: &[String]) -> Vec<ToolSpec> {
        let every = every_mcp_tool(names);
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .values()
            .flatten()
            .filter(|spec| {
                every
                    || names
                        .iter()
                        .any(|n| crate::mcp::pattern_matches(n.trim(), &spec.name))
            })
            .map(|spec| ToolSpec {
                name: spec.function.clone(),
                description: spec.description.clone(),
                parameters: spec.parameters.clone(),
            })
            .collect()
    }
}

impl ToolBox for WorkerTools {
    fn specs(&self, role_tools: &[String]) -> Vec<ToolSpec> {
        let mut specs = self.set.specs(role_tools);
        specs.extend(self.mcp.specs(role_tools));
        specs
    }

    fn call(&self, call: ToolCall, cancel: CancellationToken) -> BoxFuture<'static, ToolOutcome> {
        let Some(tool) = self.mcp.hub.tool_for_function(&call.name) else {
            return self.set.call(call, cancel);
        };
        let mcp = Arc::clone(&self.mcp);
        Box::pin(async move {
            let result = mcp.hub.call(&tool, call.arguments, &cancel).await;
            // No source: an MCP tool may have read anything or nothing, and its result does
            // not say which.
            ToolOutcome {
                content: result.text,
                is_error: result.is_error,
                source: None,
            }
        })
    }

    fn prepare<'a>(&'a self, role_tools: &'a [String]) -> BoxFuture<'a, ()> {
        Box::pin(self.mcp.prepare(role_tools))
    }

    fn take_notices(&self) -> Vec<String> {
        self.mcp.hub.take_notices()
    }

    fn label(&self, name: &str) -> String {
        self.mcp
            .hub
            .tool_for_function(name)
            .unwrap_or_else(|| name.to_owned())
    }

    fn for_run(&self, context: &Attachments) -> Option<Arc<dyn ToolBox>> {
        if context.roots.is_empty() {
            return None;
        }
        let roots: Vec<PathBuf> = context.roots.iter().map(PathBuf::from).collect();
        let builtin = Arc::new(self.builtin.with_roots(&roots));
        Some(Arc::new(WorkerTools {
            set: builtin_toolbox(Arc::clone(&builtin)),
            builtin,
            mcp: Arc::clone(&self.mcp),
        }))
    }
}

/// The built-in tools as the executor offers them: `fetch_url` in the `fetch` group, the file
/// tools in `files`, so a role's `tools = ["fetch"]` or `--tools files` selects them.
fn builtin_toolbox(tools: Arc<Tools>) -> ToolSet {
    let mut set = ToolSet::new();
    for spec in tools.specs() {
        let group = if spec.name == crate::tools::FetchUrl::NAME {
            "fetch"
        } else {
            "files"
        };
        let name = spec.name;
        let shared = tools.clone();
        set.register(
            ToolSpec {
                name: spec.name.to_owned(),
                description: spec.description.to_owned(),
                parameters: spec.parameters,
            },
            group,
            Arc::new(move |args, cancel| {
                let tools = shared.clone();
                Box::pin(async move {
                    let output = tokio::select! {
                        output = tools.call(name, &args) => output,
                        _ = cancel.cancelled() => return ToolOutcome::error("cancelled"),
                    };
                    let source = output.source.map(|s| crate::protocol::Source {
                        number: 0,
                        kind: match s.kind {
                            crate::tools::SourceKind::Url => crate::protocol::SourceKind::Url,
                            crate::tools::SourceKind::File => crate::protocol::SourceKind::File,
                        },
                        location: s.location,
                        bytes: s.bytes,
                        status: s.status,
                        retrieved_ms: crate::display::now_ms(),
                    });
                    ToolOutcome {
                        content: output.text,
                        is_error: output.is_error,
                        source,
                    }
                })
            }),
        );
    }
    set
}
