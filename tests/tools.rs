//! Workers that call tools, end to end against the mock LLM server over both wire protocols:
//! the tool loop (model, tools, model), its bound in rounds, arguments that are not JSON, a
//! server that refuses tools, the user cancelling a tool call, and the tokens of every round.
//!
//! The tool box here records every call it runs, so a test sees exactly what reached the tools
//! and what the model was sent back (the mock records the requests).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mock::{MockRequest, MockServer, Protocol, Reply};
use common::plans::{plan_value, result_for, title};
use futures_util::future::BoxFuture;
use maestro::engine::executor::{Engine, EngineHandle, ExecutorSettings};
use maestro::engine::prompt::CallSpec;
use maestro::engine::roles::builtin_roles;
use maestro::engine::run::RunSettings;
use maestro::llm::anthropic::{Anthropic, AnthropicConfig};
use maestro::llm::openai::{OpenAi, OpenAiConfig};
use maestro::llm::tools::{ToolBox, ToolCall, ToolOutcome, ToolSpec};
use maestro::llm::{ApiKey, Provider};
use maestro::protocol::{Command, Event, EventKind, RunId, Source, SourceKind};
use rstest::rstest;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "sk-test-tools-key";
/// How long the `slow` tool takes.
const SLOW: Duration = Duration::from_millis(400);

/// `lookup` answers at once with a source; `hang` waits until it is cancelled.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, Value)>>,
}

impl Recorder {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl ToolBox for Recorder {
    fn specs(&self, role_tools: &[String]) -> Vec<ToolSpec> {
        if role_tools.is_empty() {
            return Vec::new();
        }
        ["lookup", "hang"]
            .iter()
            .map(|name| ToolSpec {
                name: (*name).to_owned(),
                description: format!("The {name} tool."),
                parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            })
            .collect()
    }

    fn call(&self, call: ToolCall, cancel: CancellationToken) -> BoxFuture<'static, ToolOutcome> {
        self.calls
            .lock()
            .expect("lock")
            .push((call.name.clone(), call.arguments.clone()));
        let q = call
            .arguments
            .get("q")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match call.name.as_str() {
            "hang" => Box::pin(async move {
                cancel.cancelled().await;
                ToolOutcome::error("hang: cancelled")
            }),
            "slow" => Box::pin(async move {
                tokio::time::sleep(SLOW).await;
                ToolOutcome::ok(format!("slow: {q}"))
            }),
            _ => Box::pin(std::future::ready(
                ToolOutcome::ok(format!("found: {q}")).with_source(Source {
                    number: 0,
                    kind: SourceKind::Url,
                    location: format!("https://example.test/{q}"),
                    bytes: 9,
                    status: Some(200),
                    retrieved_ms: 1,
                }),
            )),
        }
    }
}

fn spec(model: &str) -> CallSpec {
    CallSpec {
        model: model.to_owned(),
        max_tokens: 1000,
        temperature: None,
    }
}

fn settings() -> RunSettings {
    RunSettings {
        max_subtasks: 8,
        concurrency: 4,
        retries: 0,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        retry_after_limit: Duration::from_secs(5),
        planner: spec("planner-model"),
        worker: spec("worker-model"),
        synthesizer: spec("synth-model"),
        roles: builtin_roles(),
        seed: 7,
        stop_after_plan: false,
        max_dependency_chars: None,
        structured: maestro::llm::structured::Structured::Off,
        direct: true,
        validate: false,
        validator: spec("validator-model"),
        preset: Default::default(),
        budget: Default::default(),
        review: false,
    }
}

fn executor(max_tool_rounds: u32) -> ExecutorSettings {
    ExecutorSettings {
        call_timeout: Duration::from_secs(8),
        coalesce: Duration::from_millis(5),
        max_tool_rounds,
        tools: Some(vec!["all".into()]),
        ..ExecutorSettings::default()
    }
}

fn provider(server: &MockServer, protocol: Protocol, stream: bool) -> Arc<dyn Provider> {
    match protocol {
        Protocol::OpenAi => Arc::new(OpenAi::new(OpenAiConfig {
            base_url: server.openai_base_url(),
            api_key: Some(ApiKey::new(KEY.into())),
            stream,
            include_usage: true,
            idle_timeout: Duration::from_secs(5),
            token_param: None,
        })),
        Protocol::Anthropic => Arc::new(Anthropic::new(AnthropicConfig {
            base_url: server.anthropic_base_url(),
            api_key: ApiKey::new(KEY.into()),
            stream,
            idle_timeout: Duration::from_secs(5),
        })),
    }
}

/// The planner answers a one-subtask plan (`a`), the synthesis a fixed report, the worker
/// with `worker`.
fn script(
    worker: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    move |request| {
        if request.is_planner() {
            Reply::text(plan_value(&["a"]).to_string())
        } else if request.is_synthesis() {
            Reply::text("# Report\n\nDone.")
        } else {
            worker(request)
        }
    }
}

struct Run {
    server: MockServer,
    tools: Arc<Recorder>,
    engine: EngineHandle,
    events: UnboundedReceiver<Event>,
    log: Vec<EventKind>,
    id: RunId,
}

impl Run {
    async fn start(
        protocol: Protocol,
        stream: bool,
        max_tool_rounds: u32,
        worker: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(protocol, stream, executor(max_tool_rounds), worker).await
    }

    async fn start_with(
        protocol: Protocol,
        stream: bool,
        executor: ExecutorSettings,
        worker: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let server = MockServer::start(script(worker)).await;
        let tools = Arc::new(Recorder::default());
        let (engine, events) = Engine::spawn_with_tools(
            provider(&server, protocol, stream),
            tools.clone(),
            settings(),
            executor,
        );
        let id = engine.start_run("What about a?", None);
        Self {
            server,
            tools,
            engine,
            events,
            log: Vec::new(),
            id,
        }
    }

    /// Events until one matches `until` (which is kept in the log).
    async fn wait_for(&mut self, until: impl Fn(&EventKind) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the awaited event within the deadline")
                .expect("the engine is running");
            let done = until(&event.kind);
            self.log.push(event.kind);
            if done {
                return;
            }
        }
    }

    async fn finish(&mut self) {
        self.wait_for(|k| matches!(k, EventKind::RunFinished { .. }))
            .await;
    }

    /// Every request but the planner's and the synthesis's. (A final answer without tools
    /// ends with the tool turns written out, so its last user message is not the prompt.)
    fn worker_requests(&self) -> Vec<MockRequest> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| !r.is_planner() && !r.is_synthesis())
            .collect()
    }

    fn succeeded(&self) -> (String, maestro::protocol::Usage) {
        self.log
            .iter()
            .find_map(|k| match k {
                EventKind::SubtaskSucceeded { result, usage, .. } => Some((result.clone(), *usage)),
                _ => None,
            })
            .expect("the subtask succeeded")
    }

    fn finished_tools(&self) -> Vec<(bool, String, Option<Source>)> {
        self.log
            .iter()
            .filter_map(|k| match k {
                EventKind::ToolCallFinished {
                    ok,
                    summary,
                    source,
                    ..
                } => Some((*ok, summary.clone(), source.clone())),
                _ => None,
            })
            .collect()
    }
}

/// The worker calls `lookup` once (arguments streamed in pieces), then answers.
fn lookup_then_answer(request: &MockRequest) -> Reply {
    if request.tool_results().is_empty() {
        Reply::calls(&[("lookup", r#"{"q": "alpha"}"#)])
            .before_calls("Let me look. ")
            .usage(10, 3)
    } else {
        Reply::text(result_for(&title("a"))).usage(20, 5)
    }
}

#[rstest]
#[case::openai_stream(Protocol::OpenAi, true)]
#[case::openai_whole(Protocol::OpenAi, false)]
#[case::anthropic_stream(Protocol::Anthropic, true)]
#[case::anthropic_whole(Protocol::Anthropic, false)]
#[tokio::test]
async fn a_worker_calls_a_tool_reads_its_result_and_answers(
    #[case] protocol: Protocol,
    #[case] stream: bool,
) {
    let mut run = Run::start(protocol, stream, 6, lookup_then_answer).await;
    run.finish().await;

    assert_eq!(
        run.tools.calls(),
        [("lookup".into(), json!({"q": "alpha"}))]
    );
    let workers = run.worker_requests();
    assert_eq!(
        workers.len(),
        2,
        "one call that asked for the tool, one that answered"
    );
    assert_eq!(workers[0].tools(), ["lookup", "hang"]);
    let results = workers[1].tool_results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].1, "found: alpha");
    // The planner and the synthesis are offered nothing.
    for r in run.server.requests() {
        if r.is_planner() || r.is_synthesis() {
            assert!(r.tools().is_empty(), "{:?}", r.call());
        }
    }

    let (result, usage) = run.succeeded();
    assert_eq!(result, result_for(&title("a")));
    assert_eq!(
        (usage.tokens_in, usage.tokens_out),
        (30, 8),
        "both rounds count"
    );
    assert!(!usage.estimated);

    let started: Vec<(String, String)> = run
        .log
        .iter()
        .filter_map(|k| match k {
            EventKind::ToolCallStarted {
                tool, arguments, ..
            } => Some((tool.clone(), arguments.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(started, [("lookup".to_owned(), "alpha".to_owned())]);
    let finished = run.finished_tools();
    assert_eq!(finished.len(), 1);
    assert!(finished[0].0);
    assert_eq!(
        finished[0].2.as_ref().map(|s| s.location.as_str()),
        Some("https://example.test/alpha")
    );
    // The text streamed before the call is shown before it.
    let text_at = run.log.iter().position(
        |k| matches!(k, EventKind::SubtaskDelta { text, .. } if text.contains("Let me look")),
    );
    let call_at = run
        .log
        .iter()
        .position(|k| matches!(k, EventKind::ToolCallStarted { .. }));
    if stream {
        assert!(text_at.expect("streamed text") < call_at.expect("a call"));
    }
}

#[rstest]
#[case::openai(Protocol::OpenAi)]
#[case::anthropic(Protocol::Anthropic)]
#[tokio::test]
async fn after_the_last_round_the_model_must_answer_without_tools(#[case] protocol: Protocol) {
    let mut run = Run::start(protocol, true, 2, |request| {
        if request.tools().is_empty() {
            Reply::text("Final answer from what I have.")
        } else {
            Reply::calls(&[("lookup", r#"{"q": "more"}"#)])
        }
    })
    .await;
    run.finish().await;

    let workers = run.worker_requests();
    assert_eq!(
        workers.len(),
        3,
        "two rounds of tools, then the final answer"
    );
    assert_eq!(run.tools.calls().len(), 2);
    let last = &workers[2];
    assert!(last.tools().is_empty());
    assert!(
        last.tool_results().is_empty(),
        "tool turns are written out as text"
    );
    let sent: String = last.messages().into_iter().map(|(_, c)| c).collect();
    assert!(sent.contains("found: more"), "{sent}");
    assert!(sent.contains("Answer now"), "{sent}");
    assert_eq!(run.succeeded().0, "Final answer from what I have.");
}

#[rstest]
#[case::openai(Protocol::OpenAi)]
#[case::anthropic(Protocol::Anthropic)]
#[tokio::test]
async fn arguments_that_are_not_json_become_an_error_the_model_reads(#[case] protocol: Protocol) {
    let mut run = Run::start(protocol, true, 6, |request| {
        if request.tool_results().is_empty() {
            Reply::calls(&[("lookup", r#"{"q": "alpha"#)])
        } else {
            Reply::text("Answered after the broken call.")
        }
    })
    .await;
    run.finish().await;

    assert!(run.tools.calls().is_empty(), "the tool was not called");
    let results = run.worker_requests()[1].tool_results();
    assert_eq!(results.len(), 1);
    assert!(
        results[0].1.starts_with("arguments were not valid JSON: "),
        "{}",
        results[0].1
    );
    if protocol == Protocol::Anthropic {
        assert!(results[0].2, "sent as an error result");
    }
    let finished = run.finished_tools();
    assert!(!finished[0].0);
    assert_eq!(run.succeeded().0, "Answered after the broken call.");
}

#[rstest]
#[case::openai(Protocol::OpenAi)]
#[case::anthropic(Protocol::Anthropic)]
#[tokio::test]
async fn a_server_without_tools_gets_a_notice_and_the_worker_answers_without(
    #[case] protocol: Protocol,
) {
    let mut run = Run::start(protocol, true, 6, |request| {
        if request.tools().is_empty() {
            Reply::text("Answered without tools.")
        } else {
            Reply::status(400, "registry.example/worker-model does not support tools")
        }
    })
    .await;
    run.finish().await;

    let workers = run.worker_requests();
    assert_eq!(workers.len(), 2, "refused once, then asked without tools");
    assert!(workers[1].tools().is_empty());
    let notice = run
        .log
        .iter()
        .find_map(|k| match k {
            EventKind::Notice { message } => Some(message.clone()),
            _ => None,
        })
        .expect("a notice");
    assert!(notice.contains("does not take tools"), "{notice}");
    assert_eq!(run.succeeded().0, "Answered without tools.");
}

#[tokio::test]
async fn the_user_cancels_a_hanging_tool_call_and_the_subtask_goes_on() {
    let mut run = Run::start(Protocol::OpenAi, true, 6, |request| {
        match request.tool_results().first() {
            None => Reply::calls(&[("hang", r#"{"q": "slow"}"#)]),
            Some((_, content, _)) => Reply::text(format!("Went on after: {content}")),
        }
    })
    .await;
    run.wait_for(|k| matches!(k, EventKind::ToolCallStarted { .. }))
        .await;
    run.engine.send(Command::CancelTools {
        id: run.id,
        subtask: "a".into(),
    });
    run.finish().await;

    assert_eq!(run.succeeded().0, "Went on after: cancelled by the user");
    let finished = run.finished_tools();
    assert_eq!(finished.len(), 1);
    assert!(!finished[0].0);
    assert!(
        !run.log
            .iter()
            .any(|k| matches!(k, EventKind::SubtaskFailed { .. }))
    );
}

#[tokio::test]
async fn several_calls_in_one_answer_run_at_once_and_their_results_go_back_in_order() {
    let mut run = Run::start(Protocol::Anthropic, true, 6, |request| {
        if request.tool_results().is_empty() {
            Reply::calls(&[("slow", r#"{"q": "one"}"#), ("slow", r#"{"q": "two"}"#)])
        } else {
            Reply::text("Both read.")
        }
    })
    .await;
    run.finish().await;

    let results = run.worker_requests()[1].tool_results();
    let contents: Vec<&str> = results.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(contents, ["slow: one", "slow: two"]);
    let ids: Vec<&str> = results.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, ["toolu_1", "toolu_2"]);
    // Both started before either finished: they ran side by side.
    let order: Vec<bool> = run
        .log
        .iter()
        .filter_map(|k| match k {
            EventKind::ToolCallStarted { .. } => Some(true),
            EventKind::ToolCallFinished { .. } => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(order, [true, true, false, false]);
    let ms: Vec<u64> = run
        .log
        .iter()
        .filter_map(|k| match k {
            EventKind::ToolCallFinished { ms, .. } => Some(*ms),
            _ => None,
        })
        .collect();
    assert!(ms.iter().all(|&m| m >= SLOW.as_millis() as u64), "{ms:?}");
}

#[tokio::test]
async fn a_tool_that_outlasts_the_call_timeout_fails_the_attempt_as_a_timeout() {
    let executor = ExecutorSettings {
        call_timeout: Duration::from_millis(600),
        ..executor(6)
    };
    let mut run = Run::start_with(Protocol::OpenAi, true, executor, |request| {
        if request.tool_results().is_empty() {
            Reply::calls(&[("hang", r#"{"q": "forever"}"#)])
        } else {
            Reply::text("unreachable")
        }
    })
    .await;
    run.finish().await;

    let error = run
        .log
        .iter()
        .find_map(|k| match k {
            EventKind::SubtaskFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("the attempt failed");
    assert!(error.contains("no complete answer within"), "{error}");
    assert_eq!(
        run.worker_requests().len(),
        1,
        "the model was not asked again"
    );
}

#[tokio::test]
async fn a_worker_without_tools_offered_makes_one_call_as_before() {
    let server = MockServer::start(script(|_| Reply::text("Plain."))).await;
    let (engine, mut events) = Engine::spawn(
        provider(&server, Protocol::OpenAi, true),
        settings(),
        executor(6),
    );
    engine.start_run("What about a?", None);
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if matches!(event.kind, EventKind::RunFinished { .. }) {
            break;
        }
    }
    let workers: Vec<MockRequest> = server
        .requests()
        .into_iter()
        .filter(|r| r.worker_title().is_some())
        .collect();
    assert_eq!(workers.len(), 1);
    assert!(workers[0].field("tools").is_none());
    assert!(workers[0].field("tool_choice").is_none());
}

// ---- the binary, with the demo provider's simulated tools -------------------------------------

const DEMO_CONFIG: &str =
    "provider = \"demo\"\n[demo]\nfailure_rate = 0.0\ntokens_per_second = 20000\n";

#[test]
fn tool_calls_reach_the_events_file_and_sources_the_json_report() {
    let sandbox = common::Sandbox::new(DEMO_CONFIG);
    let events = sandbox.path("events.jsonl");
    let events_arg = events.to_string_lossy().into_owned();
    let out = sandbox
        .child(&[
            "run",
            "--no-save",
            "--format",
            "json",
            "--events",
            &events_arg,
            "electric buses",
        ])
        .run_blocking();
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<Value> = std::fs::read_to_string(&events)
        .expect("the events file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let of_type = |t: &str| -> Vec<&Value> { lines.iter().filter(|l| l["type"] == t).collect() };
    let started = of_type("tool_call_started");
    let finished = of_type("tool_call_finished");
    assert_eq!(started.len(), 2, "{lines:?}");
    assert_eq!(finished.len(), 2);
    assert_eq!(started[0]["tool"], "fetch_url");
    assert!(
        started[0]["arguments"]
            .as_str()
            .is_some_and(|a| a.starts_with("https://example.org/demo/"))
    );
    assert_eq!(finished[0]["ok"], true);
    assert_eq!(finished[0]["source"]["status"], 200);

    let report = out.json();
    let with_sources: Vec<&Value> = report["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .filter(|s| s.get("sources").is_some())
        .collect();
    assert_eq!(with_sources.len(), 1);
    let sources = with_sources[0]["sources"].as_array().expect("a list");
    assert_eq!(sources.len(), 2);
    for source in sources {
        assert_eq!(source["kind"], "url");
        assert!(source["bytes"].as_u64().is_some_and(|b| b > 0));
        assert!(source["retrieved_ms"].as_u64().is_some_and(|t| t > 0));
    }
}

#[test]
fn tools_none_runs_the_demo_without_tool_calls_and_markdown_lists_sources_otherwise() {
    let sandbox = common::Sandbox::new(DEMO_CONFIG);
    let without = sandbox
        .child(&["run", "--no-save", "--tools", "none", "electric buses"])
        .run_blocking();
    assert_eq!(without.code, Some(0), "{without:?}");
    assert!(!without.stdout.contains("## Sources"), "{without:?}");
    assert!(!without.stderr.contains("fetch_url"), "{without:?}");

    let with = sandbox
        .child(&["run", "--no-save", "electric buses"])
        .run_blocking();
    assert_eq!(with.code, Some(0), "{with:?}");
    let sources = with
        .stdout
        .split("## Sources")
        .nth(1)
        .expect("a sources section");
    assert!(
        sources.contains("1. https://example.org/demo/"),
        "{sources}"
    );
    assert!(
        sources.contains("2. https://example.org/demo/"),
        "{sources}"
    );
    assert!(sources.contains("HTTP 200"), "{sources}");
}

// ---- the result cache ------------------------------------------------------------------------

/// Asks for a tool until it has a result, then answers with the result quoted; counts calls.
struct Asker {
    calls: Arc<Mutex<u32>>,
}

impl Provider for Asker {
    fn name(&self) -> &str {
        "asker"
    }
    fn complete(
        &self,
        request: maestro::llm::ChatRequest,
        _sink: maestro::llm::DeltaSink,
    ) -> maestro::llm::CallFuture<'_> {
        *self.calls.lock().expect("lock") += 1;
        let result = request
            .messages
            .iter()
            .flat_map(|m| m.tool_results.iter())
            .map(|r| r.content.clone())
            .next();
        let completion = match result {
            Some(content) => maestro::llm::Completion {
                text: format!("Answer from {content}."),
                ..Default::default()
            },
            // With text beside the calls, as models often write: not a blank answer.
            None => maestro::llm::Completion {
                text: "Let me look.".into(),
                tool_calls: vec![ToolCall::from_text(
                    "c1".into(),
                    "lookup".into(),
                    r#"{"q":"x"}"#,
                )],
                ..Default::default()
            },
        };
        Box::pin(std::future::ready(Ok(completion)))
    }
}

#[tokio::test]
async fn the_cache_keeps_final_answers_by_the_whole_exchange_and_never_a_request_for_tools() {
    use maestro::llm::tools::ToolResult;
    use maestro::llm::{ChatRequest, DeltaSink, Message};
    let dir = tempfile::tempdir().expect("a temp dir");
    let args = maestro::cli::EngineArgs {
        db: Some(dir.path().join("runs.db")),
        ..Default::default()
    };
    let config = maestro::config::Config::merge(
        &args,
        maestro::config::FileConfig::default(),
        &|_: &str| None,
    )
    .expect("a config");
    let calls = Arc::new(Mutex::new(0));
    let provider = maestro::cache::wrap(
        Arc::new(Asker {
            calls: Arc::clone(&calls),
        }),
        &config,
    );
    let first = ChatRequest {
        model: "m".into(),
        role: maestro::protocol::CallRole::Worker,
        system: "S".into(),
        messages: vec![Message::user("Q")],
        max_tokens: 100,
        temperature: None,
        structured: None,
        cache: Default::default(),
        tools: Recorder::default().specs(&["all".into()]),
    };
    for _ in 0..2 {
        let done = provider
            .complete(first.clone(), DeltaSink::discard())
            .await
            .expect("an answer");
        assert_eq!(done.tool_calls.len(), 1);
        assert!(!done.cached);
    }
    assert_eq!(
        *calls.lock().expect("lock"),
        2,
        "a request for tools is not saved"
    );

    let after = |content: &str| {
        let mut request = first.clone();
        request.messages.push(Message::tool_calls(
            "",
            vec![ToolCall::from_text(
                "c1".into(),
                "lookup".into(),
                r#"{"q":"x"}"#,
            )],
        ));
        request
            .messages
            .push(Message::tool_results(vec![ToolResult {
                call_id: "c1".into(),
                content: content.into(),
                is_error: false,
            }]));
        request
    };
    let live = provider
        .complete(after("page one"), DeltaSink::discard())
        .await
        .expect("an answer");
    assert!(!live.cached);
    let again = provider
        .complete(after("page one"), DeltaSink::discard())
        .await
        .expect("an answer");
    assert!(again.cached, "the same exchange is answered from the cache");
    assert_eq!(again.text, "Answer from page one.");
    let changed = provider
        .complete(after("page two"), DeltaSink::discard())
        .await
        .expect("an answer");
    assert!(!changed.cached, "another tool result is another exchange");
    assert_eq!(*calls.lock().expect("lock"), 4);
}
