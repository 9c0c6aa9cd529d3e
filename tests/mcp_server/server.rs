//! A small MCP server over stdio for tests/mcp.rs, built with the official SDK's server side.
//! It offers `echo`, `add`, `slow`, `env_var` and `picture`, and its arguments make it
//! misbehave on purpose: `--crash-at-start` exits before the handshake, `--garbage` answers
//! with lines that are not JSON-RPC, `--pid-file PATH` writes its process id so a test can
//! kill it mid-run, `--linger` keeps it alive for a minute after its stdin closes (as some
//! servers do), so only a kill stops it; `--no-tools` starts a server without the tools
//! capability (prompts only), which answers a tool listing with "method not found". It is built only with the `mcp-test-server` feature and is not part of
//! maestro.

use std::io::Write;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SlowArgs {
    millis: u64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EnvArgs {
    name: String,
}

#[derive(Debug, Clone)]
struct TestServer {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl TestServer {
    #[tool(description = "Send the text back")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Result<String, String> {
        a.checked_add(b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| "overflow".to_owned())
    }

    #[tool(description = "Wait, then answer")]
    async fn slow(&self, Parameters(SlowArgs { millis }): Parameters<SlowArgs>) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        "done".to_owned()
    }

    #[tool(description = "The value of an environment variable")]
    fn env_var(&self, Parameters(EnvArgs { name }): Parameters<EnvArgs>) -> String {
        std::env::var(name).unwrap_or_default()
    }

    #[tool(description = "A caption, an image and terminal escapes")]
    fn picture(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::success(vec![
            ContentBlock::text("a red \u{1b}[31msquare\u{1b}[0m"),
            ContentBlock::image("A".repeat(16_384), "image/png"),
        ]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// A server that supports no tools: only the handshake.
#[derive(Debug, Clone)]
struct NoToolsServer;

impl ServerHandler for NoToolsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_prompts().build())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut iter = args.iter();
    let mut linger = false;
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--crash-at-start" => {
                eprintln!("test server: crashing on purpose");
                return std::process::ExitCode::from(3);
            }
            "--garbage" => {
                let mut out = std::io::stdout();
                for _ in 0..50 {
                    let _ = writeln!(out, "this is not json-rpc");
                }
                let _ = out.flush();
                std::thread::sleep(std::time::Duration::from_secs(30));
                return std::process::ExitCode::SUCCESS;
            }
            "--pid-file" => {
                let Some(path) = iter.next() else {
                    return std::process::ExitCode::from(2);
                };
                if std::fs::write(path, std::process::id().to_string()).is_err() {
                    return std::process::ExitCode::from(2);
                }
            }
            "--linger" => linger = true,
            "--no-tools" => {
                let Ok(service) = NoToolsServer.serve(rmcp::transport::stdio()).await else {
                    return std::process::ExitCode::from(1);
                };
                let _ = service.waiting().await;
                return std::process::ExitCode::SUCCESS;
            }
            _ => {}
        }
    }
    let server = TestServer {
        tool_router: TestServer::tool_router(),
    };
    let Ok(service) = server.serve(rmcp::transport::stdio()).await else {
        return std::process::ExitCode::from(1);
    };
    let _ = service.waiting().await;
    if linger {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    std::process::ExitCode::SUCCESS
}
