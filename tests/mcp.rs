//! `McpHub` against a real MCP server process: `mcp-test-server` (tests/mcp_server/server.rs,
//! built with the SDK's server side), started by the hub as a child process. Covers listing,
//! calls and their errors, servers that crash at start, answer garbage or die mid-run, and
//! that no server process outlives the hub; a streamable HTTP server (the SDK's, in process);
//! `maestro mcp list` run as the real binary; and workers of `maestro run` calling MCP tools
//! through the mock LLM server (OpenAI and Anthropic), by the function names providers accept.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Sandbox;
use maestro::mcp::{McpConfig, McpHub, McpServerConfig, McpToolResult, ServerName};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SERVER: &str = env!("CARGO_BIN_EXE_mcp-test-server");

fn server(name: &str, args: &[&str]) -> McpServerConfig {
    McpServerConfig {
        name: ServerName(name.to_owned()),
        command: Some(SERVER.to_owned()),
        url: None,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: Default::default(),
    }
}

fn hub(servers: Vec<McpServerConfig>) -> McpHub {
    McpHub::new(&McpConfig { servers })
        .with_timeouts(Duration::from_secs(10), Duration::from_secs(10))
}

async fn call(hub: &McpHub, name: &str, args: serde_json::Value) -> McpToolResult {
    hub.call(name, args, &CancellationToken::new()).await
}

/// The process id the test server wrote, waiting for it to appear.
fn read_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "the server wrote no pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Running, not exited: a zombie has exited and only waits for its parent to read its status.
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn wait_until_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !is_running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !is_running(pid)
}

#[tokio::test]
async fn tools_are_listed_with_their_names_descriptions_and_schemas() {
    let hub = hub(vec![server("t", &[])]);
    let mut names: Vec<String> = hub
        .tools_for(&["mcp:t/*"])
        .await
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "mcp:t/add",
            "mcp:t/echo",
            "mcp:t/env_var",
            "mcp:t/picture",
            "mcp:t/slow"
        ]
    );

    let echo = hub.tools_for(&["mcp:t/echo"]).await;
    assert_eq!(echo.len(), 1);
    assert_eq!(echo[0].name, "mcp:t/echo");
    assert_eq!(echo[0].description, "Send the text back");
    assert_eq!(echo[0].parameters["type"], "object");
    assert_eq!(echo[0].parameters["properties"]["text"]["type"], "string");
    assert_eq!(echo[0].parameters["required"], json!(["text"]));
    assert!(hub.take_notices().is_empty());
    hub.shutdown().await;
}

#[tokio::test]
async fn a_server_starts_only_when_its_tools_are_needed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pid_file = dir.path().join("pid");
    let pid_arg = pid_file.to_str().expect("a utf-8 path");
    let hub = hub(vec![
        server("lazy", &["--pid-file", pid_arg]),
        server("other", &[]),
    ]);
    let other = hub.tools_for(&["mcp:other/add", "fetch_url"]).await;
    assert_eq!(other.len(), 1);
    assert!(!pid_file.exists(), "`lazy` started without being asked for");

    let result = call(&hub, "mcp:lazy/echo", json!({ "text": "hi" })).await;
    assert_eq!(result.text, "hi");
    assert!(pid_file.exists());
    hub.shutdown().await;
}

#[tokio::test]
async fn calls_return_text_and_summarise_other_content() {
    let mut config = server("t", &[]);
    config
        .env
        .insert("MAESTRO_MCP_TEST".to_owned(), "from the config".to_owned());
    let hub = hub(vec![config]);

    let add = call(&hub, "mcp:t/add", json!({ "a": 2, "b": 40 })).await;
    assert_eq!(
        add,
        McpToolResult {
            text: "42".to_owned(),
            is_error: false
        }
    );
    let env = call(&hub, "mcp:t/env_var", json!({ "name": "MAESTRO_MCP_TEST" })).await;
    assert_eq!(env.text, "from the config");
    // The escape sequences are gone; the image is described, not pasted.
    let picture = call(&hub, "mcp:t/picture", json!({})).await;
    assert_eq!(picture.text, "a red square\n[image image/png, 12 kB]");
    assert!(!picture.is_error);
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_arguments_and_unknown_names_are_error_results() {
    let hub = hub(vec![server("t", &[])]);
    let wrong_type = call(&hub, "mcp:t/add", json!({ "a": "two", "b": 1 })).await;
    assert!(wrong_type.is_error, "{wrong_type:?}");
    assert!(wrong_type.text.contains("expected i64"), "{wrong_type:?}");

    let tool_error = call(&hub, "mcp:t/add", json!({ "a": i64::MAX, "b": 1 })).await;
    assert_eq!(
        tool_error,
        McpToolResult {
            text: "overflow".to_owned(),
            is_error: true
        }
    );

    let not_object = call(&hub, "mcp:t/echo", json!(["hi"])).await;
    assert!(not_object.is_error && not_object.text.contains("JSON object"));
    let no_tool = call(&hub, "mcp:t/nope", json!({})).await;
    assert!(no_tool.is_error && no_tool.text.contains("no tool `nope`"));
    let no_server = call(&hub, "mcp:gone/echo", json!({})).await;
    assert!(no_server.is_error && no_server.text.contains("no MCP server named `gone`"));
    let not_mcp = call(&hub, "fetch_url", json!({})).await;
    assert!(not_mcp.is_error);

    // Still serving after all that.
    assert_eq!(
        call(&hub, "mcp:t/echo", json!({ "text": "ok" })).await.text,
        "ok"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_server_that_crashes_at_start_is_a_notice_and_no_tools() {
    let hub = hub(vec![
        server("bad", &["--crash-at-start"]),
        server("good", &[]),
    ]);
    let tools = hub.tools_for(&["mcp:bad/*", "mcp:good/echo"]).await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["mcp:good/echo"]);

    let notices = hub.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("`bad` did not start") && notices[0].contains("crashing on purpose"),
        "{notices:?}"
    );
    let result = call(&hub, "mcp:bad/echo", json!({ "text": "hi" })).await;
    assert!(
        result.is_error && result.text.contains("did not start"),
        "{result:?}"
    );
    // Told once, not on every call.
    assert!(hub.take_notices().is_empty());
    hub.shutdown().await;
}

#[tokio::test]
async fn a_pattern_naming_an_unconfigured_server_is_told_once() {
    let hub = hub(vec![server("t", &[])]);
    for _ in 0..3 {
        assert!(hub.tools_for(&["mcp:typo/*"]).await.is_empty());
    }
    let notices = hub.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].contains("`typo` is not configured"),
        "{notices:?}"
    );
}

#[tokio::test]
async fn a_missing_command_or_a_server_speaking_garbage_is_a_notice() {
    let mut missing = server("missing", &[]);
    missing.command = Some("/nonexistent/mcp-server".to_owned());
    let hub = McpHub::new(&McpConfig {
        servers: vec![missing, server("garbage", &["--garbage"])],
    })
    .with_timeouts(Duration::from_secs(2), Duration::from_secs(2));
    assert!(hub.all_tools().await.is_empty());
    // The servers start side by side, so their notices come in either order.
    let mut notices = hub.take_notices();
    notices.sort();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices[0].contains("`garbage` did not start"),
        "{notices:?}"
    );
    assert!(
        notices[1].contains("`missing` did not start: cannot run"),
        "{notices:?}"
    );
    hub.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_server_killed_mid_run_turns_calls_into_errors() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pid_file = dir.path().join("pid");
    let hub = hub(vec![server(
        "t",
        &["--pid-file", pid_file.to_str().expect("a utf-8 path")],
    )]);
    assert_eq!(
        call(&hub, "mcp:t/echo", json!({ "text": "1" })).await.text,
        "1"
    );
    let pid = read_pid(&pid_file);
    // SAFETY: a plain syscall on a process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(wait_until_gone(pid, Duration::from_secs(5)));

    let after = call(&hub, "mcp:t/echo", json!({ "text": "2" })).await;
    assert!(after.is_error, "{after:?}");
    assert!(after.text.contains("`t` stopped"), "{after:?}");
    let again = call(&hub, "mcp:t/add", json!({ "a": 1, "b": 1 })).await;
    assert!(again.is_error, "{again:?}");
    let notices = hub.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("stopped"), "{notices:?}");
    hub.shutdown().await;
}

/// The workers' tool box over a hub: tools offered by function name and shown by their own,
/// calls that reach the server, and a server killed between calls: an error result the model
/// reads, one notice, and its tools no longer offered.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_workers_tool_box_offers_calls_and_drops_a_server_that_died() {
    use maestro::llm::tools::ToolCall;

    let dir = tempfile::tempdir().expect("a temp dir");
    let pid_file = dir.path().join("pid");
    let config = McpConfig {
        servers: vec![server(
            "t",
            &["--pid-file", pid_file.to_str().expect("a utf-8 path")],
        )],
    };
    let (tools, servers) = maestro::toolbox::workers(&Default::default(), &config);
    let names = vec!["mcp:t/echo".to_owned(), "fetch".to_owned()];
    assert!(
        tools.specs(&names).iter().all(|s| s.name == "fetch_url"),
        "nothing of the server's before it is prepared"
    );
    tools.prepare(&names).await;
    let offered: Vec<String> = tools.specs(&names).into_iter().map(|s| s.name).collect();
    assert_eq!(offered, ["fetch_url", "mcp__t__echo"]);
    assert_eq!(tools.label("mcp__t__echo"), "mcp:t/echo");
    assert_eq!(tools.label("fetch_url"), "fetch_url");
    let echo = |text: &str| {
        ToolCall::from_text(
            "c1".into(),
            "mcp__t__echo".into(),
            &json!({ "text": text }).to_string(),
        )
    };
    let outcome = tools.call(echo("hello"), CancellationToken::new()).await;
    assert_eq!(
        (outcome.content.as_str(), outcome.is_error),
        ("hello", false)
    );
    assert_eq!(outcome.source, None);
    assert!(tools.take_notices().is_empty());

    let pid = read_pid(&pid_file);
    // SAFETY: a plain syscall on a process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(wait_until_gone(pid, Duration::from_secs(5)));
    let outcome = tools.call(echo("again"), CancellationToken::new()).await;
    assert!(outcome.is_error, "{outcome:?}");
    assert!(outcome.content.contains("`t` stopped"), "{outcome:?}");
    tools.prepare(&names).await;
    let offered: Vec<String> = tools.specs(&names).into_iter().map(|s| s.name).collect();
    assert_eq!(
        offered,
        ["fetch_url"],
        "a stopped server's tools are not offered"
    );
    let notices = tools.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    servers.stop().await;
}

#[tokio::test]
async fn a_slow_call_times_out_or_is_cancelled_and_the_server_stays_usable() {
    let hub = McpHub::new(&McpConfig {
        servers: vec![server("t", &[])],
    })
    .with_timeouts(Duration::from_secs(10), Duration::from_millis(300));
    let slow = call(&hub, "mcp:t/slow", json!({ "millis": 5_000 })).await;
    assert!(
        slow.is_error && slow.text.contains("did not answer"),
        "{slow:?}"
    );

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let cancelled = hub
        .call("mcp:t/slow", json!({ "millis": 5_000 }), &cancel)
        .await;
    assert!(
        cancelled.is_error && cancelled.text.contains("cancelled"),
        "{cancelled:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(300));

    assert_eq!(
        call(&hub, "mcp:t/echo", json!({ "text": "ok" })).await.text,
        "ok"
    );
    hub.shutdown().await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn shutdown_stops_every_server_process() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let files: Vec<_> = (0..2).map(|i| dir.path().join(format!("pid{i}"))).collect();
    let hub = hub(vec![
        server("a", &["--pid-file", files[0].to_str().expect("utf-8")]),
        // Does not exit when its stdin closes: shutdown must kill it.
        server(
            "b",
            &["--linger", "--pid-file", files[1].to_str().expect("utf-8")],
        ),
    ]);
    assert_eq!(hub.all_tools().await.len(), 10);
    let pids: Vec<i32> = files.iter().map(|f| read_pid(f)).collect();
    assert!(pids.iter().all(|&pid| is_running(pid)));

    hub.shutdown().await;
    for pid in pids {
        assert!(!is_running(pid), "server {pid} outlived shutdown");
    }
    let after = call(&hub, "mcp:a/echo", json!({ "text": "late" })).await;
    assert!(after.is_error, "{after:?}");
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_the_hub_and_its_runtime_leaves_no_server_process() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pid_file = dir.path().join("pid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        // Does not exit when its stdin closes: only a kill stops it.
        let hub = hub(vec![server(
            "t",
            &["--linger", "--pid-file", pid_file.to_str().expect("utf-8")],
        )]);
        assert_eq!(
            call(&hub, "mcp:t/echo", json!({ "text": "x" })).await.text,
            "x"
        );
        drop(hub);
    });
    let pid = read_pid(&pid_file);
    drop(runtime);
    assert!(
        wait_until_gone(pid, Duration::from_secs(5)),
        "server {pid} outlived the hub"
    );
}

fn list_config(servers: &[(&str, &str)]) -> String {
    servers
        .iter()
        .map(|(name, args)| {
            format!("[[mcp.servers]]\nname = \"{name}\"\ncommand = {SERVER:?}\nargs = [{args}]\n")
        })
        .collect()
}

#[test]
fn mcp_list_shows_each_servers_tools_and_which_did_not_start() {
    let sandbox = Sandbox::new(&list_config(&[
        ("good", ""),
        ("bad", "\"--crash-at-start\""),
    ]));
    let out = sandbox.child(&["mcp", "list"]).run_blocking();
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "good ({SERVER}): 5 tools\n  mcp:good/add  Add two integers\n"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("bad ({SERVER} --crash-at-start): did not start\n")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("`bad` did not start") && out.stderr.contains("crashing on purpose"),
        "{}",
        out.stderr
    );
}

#[test]
fn mcp_list_json_is_the_tool_specs() {
    let sandbox = Sandbox::new(&list_config(&[("good", "")]));
    let out = sandbox.child(&["mcp", "list", "--json"]).run_blocking();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let specs = out.json();
    let names: Vec<&str> = specs
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names.len(), 5, "{specs}");
    assert!(names.contains(&"mcp:good/echo"), "{specs}");
    assert_eq!(specs[0]["parameters"]["type"], "object");
}

#[test]
fn mcp_list_rejects_a_bad_config_before_starting_anything() {
    let sandbox = Sandbox::new(&format!(
        "{}{}",
        list_config(&[("twice", "")]),
        list_config(&[("twice", "")])
    ));
    let out = sandbox.child(&["mcp", "list"]).run_blocking();
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("used twice"), "{}", out.stderr);
}

mod http {
    use rmcp::handler::server::router::tool::ToolRouter;
    use rmcp::handler::server::wrapper::Parameters;
    use rmcp::model::{ServerCapabilities, ServerConfig};
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};

    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    struct Shout {
        text: String,
    }

    #[derive(Debug, Clone)]
    struct Loud {
        tool_router: ToolRouter<Self>,
    }

    #[tool_router]
    impl Loud {
        #[tool(description = "The text in capitals")]
        fn shout(&self, Parameters(Shout { text }): Parameters<Shout>) -> String {
            text.to_uppercase()
        }
    }

    #[tool_handler(router = self.tool_router)]
    impl ServerHandler for Loud {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }
    }

    /// An MCP server on a local port; its URL.
    pub async fn serve() -> String {
        let service: StreamableHttpService<Loud, LocalSessionManager> = StreamableHttpService::new(
            || {
                Ok(Loud {
                    tool_router: Loud::tool_router(),
                })
            },
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
        let router = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{addr}/mcp")
    }
}

#[tokio::test]
async fn a_streamable_http_server_is_listed_and_called() {
    let url = http::serve().await;
    let hub = hub(vec![
        McpServerConfig {
            url: Some(url),
            command: None,
            ..server("web", &[])
        },
        McpServerConfig {
            url: Some("http://127.0.0.1:9/mcp".to_owned()),
            command: None,
            ..server("closed", &[])
        },
    ]);
    let tools = hub.tools_for(&["mcp:web/*", "mcp:closed/*"]).await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["mcp:web/shout"]);
    assert_eq!(tools[0].parameters["properties"]["text"]["type"], "string");
    let result = call(&hub, "mcp:web/shout", json!({ "text": "hi" })).await;
    assert_eq!(
        result,
        McpToolResult {
            text: "HI".to_owned(),
            is_error: false
        }
    );
    let notices = hub.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("`closed` did not start"), "{notices:?}");
    hub.shutdown().await;
}

// ---- MCP tools in the workers' hands, through the binary and the mock -----------------------

mod workers {
    use std::path::Path;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::{SERVER, read_pid, wait_until_gone};
    use crate::common::mock::{MockRequest, MockServer, Protocol, Reply};
    use crate::common::plans::{plan_value, result_for, title};
    use crate::common::{Output, Sandbox};

    const QUERY: &str = "What about a and b?";

    /// A `[[mcp.servers]]` entry for the test server with these arguments.
    fn server_entry(name: &str, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[[mcp.servers]]\nname = \"{name}\"\ncommand = {SERVER:?}\nargs = [{}]\n",
            args.join(", ")
        )
    }

    /// Plans subtasks `a` and `b` (both `research`); a worker offered tools and not yet given
    /// results makes `calls`; everything else answers.
    fn script(calls: Vec<(String, String)>) -> impl Fn(&MockRequest) -> Reply + Send + Sync {
        let plan = plan_value(&["a", "b"]).to_string();
        move |r| {
            if r.is_planner() {
                return match r.forced_tool() {
                    Some(tool) => Reply::tool_call(&tool, plan.clone()),
                    None => Reply::text(plan.clone()),
                };
            }
            if r.is_synthesis() {
                return Reply::text("# Report\n\nDone.");
            }
            match r.worker_title() {
                Some(_)
                    if !calls.is_empty()
                        && !r.tools().is_empty()
                        && r.tool_results().is_empty() =>
                {
                    let calls: Vec<(&str, &str)> = calls
                        .iter()
                        .map(|(n, a)| (n.as_str(), a.as_str()))
                        .collect();
                    Reply::calls(&calls)
                }
                Some(t) => Reply::text(result_for(&t)),
                None => Reply::status(400, "mock: unexpected request"),
            }
        }
    }

    fn config(server: &MockServer, protocol: Protocol, rest: &str) -> String {
        let (name, url) = match protocol {
            Protocol::OpenAi => ("openai", server.openai_base_url()),
            Protocol::Anthropic => ("anthropic", server.anthropic_base_url()),
        };
        format!(
            "provider = \"{name}\"\n[{name}]\nbase_url = \"{url}\"\nstarts_per_second = 0\n\
             [limits]\nretries = 0\n{rest}"
        )
    }

    async fn run(sandbox: &Sandbox, protocol: Protocol, extra: &[&str]) -> Output {
        let events = sandbox.path("events.jsonl");
        let events = events.to_str().expect("a utf-8 path").to_owned();
        let mut args = vec![
            "run",
            "--no-save",
            "--no-cache",
            "--format",
            "json",
            "--events",
            &events,
        ];
        args.extend_from_slice(extra);
        args.push(QUERY);
        let (key, value) = match protocol {
            Protocol::OpenAi => ("OPENAI_API_KEY", "openai-test-key"),
            Protocol::Anthropic => ("ANTHROPIC_API_KEY", "anthropic-test-key"),
        };
        sandbox
            .child(&args)
            .env(key, value)
            .limit(Duration::from_secs(60))
            .run()
            .await
    }

    fn events(sandbox: &Sandbox) -> Vec<Value> {
        std::fs::read_to_string(sandbox.path("events.jsonl"))
            .expect("the events file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
        events.iter().filter(|e| e["type"] == kind).collect()
    }

    fn notices(events: &[Value]) -> Vec<String> {
        of_type(events, "notice")
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect()
    }

    fn worker_requests(server: &MockServer, id: &str) -> Vec<MockRequest> {
        server
            .requests()
            .into_iter()
            .filter(|r| r.worker_title().as_deref() == Some(title(id).as_str()))
            .collect()
    }

    fn pid_arg(sandbox: &Sandbox) -> String {
        sandbox
            .path("server.pid")
            .to_str()
            .expect("a utf-8 path")
            .to_owned()
    }

    fn gone_after_exit(pid_file: &Path) {
        let pid = read_pid(pid_file);
        assert!(
            wait_until_gone(pid, Duration::from_secs(2)),
            "MCP server {pid} outlived maestro"
        );
    }

    #[tokio::test]
    async fn a_worker_calls_an_mcp_tool_by_its_function_name_openai() {
        let server = MockServer::start(script(vec![(
            "mcp__t__echo".to_owned(),
            json!({ "text": "ping from the model" }).to_string(),
        )]))
        .await;
        let sandbox = Sandbox::new("");
        let pid = pid_arg(&sandbox);
        let rest = format!(
            "[roles.research]\ntools = [\"mcp:t/*\"]\n{}",
            server_entry("t", &["--pid-file", &pid])
        );
        std::fs::write(
            sandbox.config_path(),
            config(&server, Protocol::OpenAi, &rest),
        )
        .expect("write the config");
        let out = run(&sandbox, Protocol::OpenAi, &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");

        let a = worker_requests(&server, "a");
        assert_eq!(a.len(), 2, "the call, then the answer");
        let mut offered = a[0].tools();
        offered.sort();
        assert_eq!(
            offered,
            [
                "mcp__t__add",
                "mcp__t__echo",
                "mcp__t__env_var",
                "mcp__t__picture",
                "mcp__t__slow"
            ],
            "the role's MCP tools and nothing else"
        );
        // The echo ran in the server process and its answer reached the model.
        let results = a[1].tool_results();
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!(results[0].1, "ping from the model");

        let events = events(&sandbox);
        let started = of_type(&events, "tool_call_started");
        assert_eq!(started.len(), 2, "a and b each called it: {events:?}");
        assert!(
            started.iter().all(|e| e["tool"] == "mcp:t/echo"),
            "{started:?}"
        );
        assert_eq!(started[0]["arguments"], "ping from the model");
        let finished = of_type(&events, "tool_call_finished");
        assert!(finished.iter().all(|e| e["ok"] == true), "{finished:?}");
        assert!(
            finished
                .iter()
                .all(|e| e.get("source").is_none_or(Value::is_null)),
            "an MCP result names no source: {finished:?}"
        );
        assert!(notices(&events).is_empty(), "{events:?}");
        gone_after_exit(&sandbox.path("server.pid"));
    }

    #[tokio::test]
    async fn a_role_limited_to_one_mcp_tool_is_offered_only_that_anthropic() {
        let server = MockServer::start(script(vec![(
            "mcp__t__add".to_owned(),
            json!({ "a": 2, "b": 40 }).to_string(),
        )]))
        .await;
        let sandbox = Sandbox::new("");
        let rest = format!(
            "[roles.research]\ntools = [\"mcp:t/add\"]\n{}",
            server_entry("t", &[])
        );
        std::fs::write(
            sandbox.config_path(),
            config(&server, Protocol::Anthropic, &rest),
        )
        .expect("write the config");
        let out = run(&sandbox, Protocol::Anthropic, &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let a = worker_requests(&server, "a");
        assert_eq!(a[0].tools(), ["mcp__t__add"]);
        let results = a[1].tool_results();
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!((results[0].1.as_str(), results[0].2), ("42", false));
        let events = events(&sandbox);
        let started = of_type(&events, "tool_call_started");
        assert!(
            !started.is_empty() && started.iter().all(|e| e["tool"] == "mcp:t/add"),
            "{started:?}"
        );
    }

    #[tokio::test]
    async fn a_role_naming_a_tool_the_server_lacks_gets_a_notice_naming_what_it_offers() {
        let server = MockServer::start(script(Vec::new())).await;
        let sandbox = Sandbox::new("");
        let rest = format!(
            "[roles.research]\ntools = [\"mcp:t/nope\", \"mcp:t/add\"]\n{}",
            server_entry("t", &[])
        );
        std::fs::write(
            sandbox.config_path(),
            config(&server, Protocol::OpenAi, &rest),
        )
        .expect("write the config");
        let out = run(&sandbox, Protocol::OpenAi, &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let a = worker_requests(&server, "a");
        assert_eq!(a[0].tools(), ["mcp__t__add"]);
        let events = events(&sandbox);
        let told: Vec<_> = notices(&events)
            .into_iter()
            .filter(|n| n.contains("no tool `nope`"))
            .collect();
        assert_eq!(told.len(), 1, "once for both workers: {events:?}");
        assert!(
            told[0].contains("echo") && told[0].contains("add"),
            "{told:?}"
        );
    }

    #[tokio::test]
    async fn a_server_that_crashes_at_start_is_one_notice_and_the_run_goes_on() {
        let server = MockServer::start(script(Vec::new())).await;
        let sandbox = Sandbox::new("");
        let rest = format!(
            "[roles.research]\ntools = [\"mcp:bad/*\", \"fetch\"]\n{}",
            server_entry("bad", &["--crash-at-start"])
        );
        std::fs::write(
            sandbox.config_path(),
            config(&server, Protocol::OpenAi, &rest),
        )
        .expect("write the config");
        let out = run(&sandbox, Protocol::OpenAi, &[]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        for id in ["a", "b"] {
            let requests = worker_requests(&server, id);
            assert_eq!(
                requests[0].tools(),
                ["fetch_url"],
                "without the server's tools"
            );
        }
        let told = notices(&events(&sandbox));
        assert_eq!(told.len(), 1, "once, for two workers: {told:?}");
        assert!(
            told[0].contains("MCP server `bad` did not start")
                && told[0].contains("crashing on purpose"),
            "{told:?}"
        );
        let report = out.json();
        assert_eq!(
            report["notices"].as_array().map(Vec::len),
            Some(1),
            "{report}"
        );
    }

    #[tokio::test]
    async fn a_server_without_tools_is_a_notice_and_no_tools() {
        let server = MockServer::start(script(Vec::new())).await;
        let sandbox = Sandbox::new("");
        let pid = pid_arg(&sandbox);
        let rest = server_entry("bare", &["--pid-file", &pid, "--no-tools"]);
        std::fs::write(
            sandbox.config_path(),
            config(&server, Protocol::OpenAi, &rest),
        )
        .expect("write the config");
        // `--tools mcp`: every configured server's tools, for every worker.
        let out = run(&sandbox, Protocol::OpenAi, &["--tools", "mcp"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let workers: Vec<MockRequest> = server
            .requests()
            .into_iter()
            .filter(|r| r.worker_title().is_some())
            .collect();
        assert_eq!(workers.len(), 2);
        assert!(workers.iter().all(|r| r.tools().is_empty()));
        let told = notices(&events(&sandbox));
        assert_eq!(told, ["MCP server `bare` started but offers no tools"]);
        gone_after_exit(&sandbox.path("server.pid"));
    }

    #[tokio::test]
    async fn a_bad_tools_flag_is_a_usage_error() {
        let sandbox = Sandbox::new("provider = \"demo\"\n");
        let out = sandbox
            .child(&["run", "--no-save", "--tools", "mcp:nothing", QUERY])
            .run()
            .await;
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("\"mcp:nothing\""), "{}", out.stderr);
    }
}
