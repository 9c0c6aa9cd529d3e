//! What real servers and models do that a well-behaved API does not, seen through the real
//! `maestro` binary against the mock server: parameters a model refuses (`max_tokens`,
//! `temperature`), replies that are not answers (empty, cut at the token limit, reasoning only),
//! a prompt longer than the context window, and stream shapes (comment lines, an in-band error,
//! no usage).
//!
//! Children get a clean environment (no keys or `MAESTRO_*` from the developer's shell) and a
//! temp home, so their logs land where the test can read them.

mod common;

use std::time::Duration;

use common::mock::{Call, MockRequest, MockServer, Protocol, Reply};
use common::{Output, Sandbox};
use serde_json::{Value, json};

const KEY: &str = "test-key-not-real-1234567890";
const QUERY: &str = "What do heat pumps change for a city grid?";
const PROCESS_LIMIT: Duration = Duration::from_secs(20);
const PROTOCOLS: [Protocol; 2] = [Protocol::OpenAi, Protocol::Anthropic];

impl Sandbox {
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.child(args)
            .env("XDG_STATE_HOME", self.path("state"))
            .envs(env)
            .limit(PROCESS_LIMIT)
            .lossy()
            .run()
            .await
    }

    /// Every log file the child left, as one text (at the default log level: the child's
    /// environment has no `MAESTRO_LOG`).
    fn logs(&self) -> String {
        let mut found = String::new();
        collect_logs(self.dir.path(), &mut found);
        found
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("events.jsonl"))
            .expect("the events file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("an event line"))
            .collect()
    }
}

fn collect_logs(dir: &std::path::Path, found: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_logs(&path, found);
        } else if path.to_string_lossy().contains("log")
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            found.push_str(&text);
        }
    }
}

/// A plan of `a` and `b`, where `b` depends on `a`.
fn plan() -> String {
    let subtask = |id: &str, title: &str, deps: &[&str]| {
        json!({
            "id": id,
            "worker": "research",
            "title": title,
            "description": format!("Find out about {title}."),
            "focus_areas": [],
            "depends_on": deps,
            "priority": "high",
        })
    };
    json!({
        "query_analysis": "Two steps.",
        "subtasks": [subtask("a", "Grid load", &[]), subtask("b", "Peak shaving", &["a"])],
        "synthesis_guidance": "Be brief.",
    })
    .to_string()
}

/// `maestro run` against the mock on `protocol`, JSON on stdout (unless `extra` names a
/// `--format`), the events file in the sandbox, and `extra` flags before the query.
async fn run_against(
    sandbox: &Sandbox,
    server: &MockServer,
    protocol: Protocol,
    extra: &[&str],
) -> Output {
    let (provider, var) = match protocol {
        Protocol::OpenAi => ("openai", "OPENAI_API_KEY"),
        Protocol::Anthropic => ("anthropic", "ANTHROPIC_API_KEY"),
    };
    let base_url = server.base_url(protocol);
    let events = sandbox.path("events.jsonl");
    let events = events.to_str().expect("a UTF-8 temp path");
    let mut args = vec!["run", "--provider", provider, "--base-url", &base_url];
    args.extend_from_slice(&["--events", events]);
    if !extra.contains(&"--format") {
        args.extend_from_slice(&["--format", "json"]);
    }
    args.extend_from_slice(extra);
    args.push(QUERY);
    sandbox.run(&args, &[(var, KEY)]).await
}

/// A well-behaved server: the plan, an answer per subtask, a report.
fn answer(request: &MockRequest) -> Reply {
    match request.call() {
        Call::Planner => Reply::text(plan()),
        Call::Worker(title) => Reply::text(format!("Findings on {title}.")),
        Call::Synthesis => Reply::text("# Report\n\nAll done."),
        Call::Unknown => Reply::status(400, "unexpected request"),
    }
}

fn subtask<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["subtasks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no subtask {id} in {report}"))
}

// ---- parameters each server accepts ------------------------------------------------------

/// OpenAI's reasoning models: `max_tokens` is refused, `max_completion_tokens` wanted.
fn refuse_max_tokens(with_param: bool) -> impl Fn(&MockRequest) -> Reply + Send + Sync {
    move |request: &MockRequest| {
        if request.field("max_tokens").is_some() {
            let refusal = Reply::status(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. \
                 Use 'max_completion_tokens' instead.",
            )
            .error_code("unsupported_parameter");
            return if with_param {
                refusal.error_param("max_tokens")
            } else {
                refusal
            };
        }
        if request.field("max_completion_tokens").is_none() {
            return Reply::status(400, "no token limit was sent");
        }
        answer(request)
    }
}

#[tokio::test]
async fn a_refused_max_tokens_is_swapped_once_and_remembered() {
    for with_param in [true, false] {
        let server = MockServer::start(refuse_max_tokens(with_param)).await;
        let sandbox = Sandbox::new("");
        // No retries: the swap must not spend one.
        let out = run_against(&sandbox, &server, Protocol::OpenAi, &["--retries", "0"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let report = out.json();
        assert_eq!(report["status"], "succeeded", "{report}");
        for id in ["a", "b"] {
            assert_eq!(subtask(&report, id)["attempts"], 1, "{report}");
        }
        // One refused request in the whole run: the model's answer is remembered.
        let requests = server.requests();
        let refused: Vec<_> = requests
            .iter()
            .filter(|r| r.field("max_tokens").is_some())
            .collect();
        assert_eq!(refused.len(), 1, "{requests:#?}");
        assert_eq!(requests.len(), 5, "plan (twice), two workers, synthesis");
        assert_eq!(
            requests[1].field("max_completion_tokens"),
            Some(&json!(4096))
        );
        let logs = sandbox.logs();
        assert_eq!(
            logs.matches("does not accept `max_tokens`").count(),
            1,
            "one log line: {logs}"
        );
        // Nothing failed, so no event says so.
        let events = sandbox.events();
        assert!(
            events.iter().any(|e| e["type"] == "subtask_succeeded"),
            "{events:#?}"
        );
        assert!(
            !events.iter().any(|e| e["type"]
                .as_str()
                .is_some_and(|t| t.contains("retrying") || t.contains("failed"))),
            "{events:#?}"
        );
    }
}

#[tokio::test]
async fn openai_s_own_api_gets_max_completion_tokens_and_config_can_say_otherwise() {
    let server = MockServer::start(answer).await;
    let sandbox = Sandbox::new("[openai]\ntoken_param = \"max_completion_tokens\"\n");
    let out = run_against(&sandbox, &server, Protocol::OpenAi, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for request in server.requests() {
        assert!(request.field("max_tokens").is_none(), "{:?}", request.body);
        assert!(request.field("max_completion_tokens").is_some());
    }
    // Elsewhere `max_tokens` by default.
    let server = MockServer::start(answer).await;
    let out = run_against(&Sandbox::new(""), &server, Protocol::OpenAi, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for request in server.requests() {
        assert_eq!(request.max_tokens(), Some(4096));
        assert!(request.field("max_completion_tokens").is_none());
    }
    // A value the key does not know is a configuration error with its line.
    let sandbox = Sandbox::new("[openai]\ntoken_param = \"max_words\"\n");
    let out = run_against(&sandbox, &server, Protocol::OpenAi, &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("max_completion_tokens"), "{out:?}");
}

#[tokio::test]
async fn a_refused_temperature_is_left_out_without_failing_anything() {
    for protocol in PROTOCOLS {
        let server = MockServer::start(|request: &MockRequest| {
            if let Some(t) = request.temperature() {
                return Reply::status(
                    400,
                    format!(
                        "Unsupported value: 'temperature' does not support {t} with this \
                         model. Only the default (1) value is supported."
                    ),
                )
                .error_code("unsupported_value")
                .error_param("temperature");
            }
            answer(request)
        })
        .await;
        let sandbox = Sandbox::new("[limits]\ntemperature = 0.2\n");
        let out = run_against(&sandbox, &server, protocol, &["--retries", "0"]).await;
        assert_eq!(out.code, Some(0), "{protocol:?}: {out:?}");
        let requests = server.requests();
        assert_eq!(requests.len(), 5, "{protocol:?}: one refusal in the run");
        assert_eq!(requests[0].temperature(), Some(0.2f32 as f64));
        assert!(requests[1..].iter().all(|r| r.temperature().is_none()));
        assert_eq!(
            sandbox
                .logs()
                .matches("does not accept `temperature`")
                .count(),
            1
        );
    }
}

// ---- replies that are not answers --------------------------------------------------------

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The request a worker made for `title`, the last one when it was retried.
fn worker_request(server: &MockServer, title: &str) -> MockRequest {
    server
        .requests()
        .into_iter()
        .rfind(|r| r.call() == Call::Worker(title.to_owned()))
        .unwrap_or_else(|| panic!("no call for {title}"))
}

fn synthesis_request(server: &MockServer) -> MockRequest {
    server
        .requests()
        .into_iter()
        .find(|r| r.call() == Call::Synthesis)
        .expect("a synthesis call")
}

#[tokio::test]
async fn an_empty_reply_is_retried_and_never_passed_on() {
    for protocol in PROTOCOLS {
        for empty in [
            Reply::text(""),
            Reply::text("  \n "),
            Reply::text("").reasoning("Hmm."),
        ] {
            let first = std::sync::atomic::AtomicBool::new(true);
            let server = MockServer::start(move |request: &MockRequest| match request.call() {
                Call::Worker(title) if title == "Grid load" => {
                    if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        empty.clone()
                    } else {
                        Reply::text("Load rises in winter evenings.")
                    }
                }
                _ => answer(request),
            })
            .await;
            let sandbox = Sandbox::new("");
            let out = run_against(&sandbox, &server, protocol, &[]).await;
            assert_eq!(out.code, Some(0), "{protocol:?}: {out:?}");
            let report = out.json();
            assert_eq!(subtask(&report, "a")["attempts"], 2, "{report}");
            assert_eq!(
                subtask(&report, "a")["result"],
                "Load rises in winter evenings."
            );
            let events = sandbox.events();
            let retried = events_of(&events, "subtask_retrying");
            assert_eq!(retried.len(), 1, "{events:#?}");
            assert!(
                retried[0]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("the model returned no text")),
                "{retried:?}"
            );
            // Only the real answer reached the dependent and the synthesis.
            assert!(
                worker_request(&server, "Peak shaving")
                    .user()
                    .contains("Load rises in winter evenings.")
            );
            assert!(
                !worker_request(&server, "Peak shaving")
                    .user()
                    .contains("Hmm.")
            );
            assert!(!synthesis_request(&server).user().contains("Hmm."));
        }
    }
}

#[tokio::test]
async fn a_reply_that_stays_empty_fails_its_subtask_and_blocks_the_dependent() {
    let server = MockServer::start(|request: &MockRequest| match request.call() {
        Call::Worker(title) if title == "Grid load" => Reply::text(""),
        _ => answer(request),
    })
    .await;
    let sandbox = Sandbox::new("");
    let out = run_against(&sandbox, &server, Protocol::OpenAi, &["--retries", "1"]).await;
    let report = out.json();
    assert_eq!(subtask(&report, "a")["status"], "failed", "{report}");
    assert!(
        subtask(&report, "a")["error"]
            .as_str()
            .is_some_and(|e| e.contains("the model returned no text"))
    );
    assert_eq!(subtask(&report, "b")["status"], "blocked", "{report}");
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.call() != Call::Worker("Peak shaving".into()))
    );
}

#[tokio::test]
async fn a_reply_cut_at_the_token_limit_is_kept_and_marked_everywhere() {
    for protocol in PROTOCOLS {
        let server = MockServer::start(|request: &MockRequest| match request.call() {
            Call::Worker(title) if title == "Grid load" => {
                Reply::text("Load rises in winter and").cut_off()
            }
            _ => answer(request),
        })
        .await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, &[]).await;
        assert_eq!(out.code, Some(0), "{protocol:?}: {out:?}");
        let report = out.json();
        assert_eq!(subtask(&report, "a")["status"], "succeeded");
        assert_eq!(subtask(&report, "a")["cut_off"], true, "{report}");
        assert_eq!(subtask(&report, "b")["cut_off"], false, "{report}");
        assert_eq!(subtask(&report, "a")["result"], "Load rises in winter and");
        assert!(
            synthesis_request(&server)
                .user()
                .contains("cut off at the token limit"),
            "the synthesis is told"
        );
        let events = sandbox.events();
        assert_eq!(
            events_of(&events, "subtask_succeeded")
                .iter()
                .filter(|e| e["cut_off"] == true)
                .count(),
            1
        );
        // The markdown report and the progress lines say so too.
        let md = run_against(
            &Sandbox::new(""),
            &server,
            protocol,
            &["--format", "markdown"],
        )
        .await;
        assert!(
            md.stdout.contains("| done (cut off at the token limit) |"),
            "{md:?}"
        );
        assert!(md.stderr.contains("cut off at the token limit"), "{md:?}");
    }
}

#[tokio::test]
async fn reasoning_is_kept_apart_from_the_answer_on_every_server_shape() {
    let think = "<think>The grid peaks at six.</think>\n\nLoad rises in winter evenings.";
    let shapes: Vec<(Protocol, Reply)> = vec![
        // A `<think>` block with its tags cut across chunks.
        (
            Protocol::OpenAi,
            Reply::chunks([
                "<thi",
                "nk>The grid peaks",
                " at six.</th",
                "ink>\n\nLoad rises",
                " in winter evenings.",
            ]),
        ),
        (Protocol::OpenAi, Reply::text(think)),
        (
            Protocol::OpenAi,
            Reply::text("Load rises in winter evenings.").reasoning("The grid peaks at six."),
        ),
        (
            Protocol::OpenAi,
            Reply::text("Load rises in winter evenings.")
                .reasoning("The grid peaks at six.")
                .reasoning_field("reasoning"),
        ),
        (
            Protocol::Anthropic,
            Reply::text("Load rises in winter evenings.").reasoning("The grid peaks at six."),
        ),
    ];
    for (protocol, reply) in shapes {
        for stream in [true, false] {
            let reply = reply.clone();
            let server = MockServer::start(move |request: &MockRequest| match request.call() {
                Call::Worker(title) if title == "Grid load" => reply.clone(),
                _ => answer(request),
            })
            .await;
            let config = match (protocol, stream) {
                (_, true) => String::new(),
                (Protocol::OpenAi, false) => "[openai]\nstream = false\n".into(),
                (Protocol::Anthropic, false) => "[anthropic]\nstream = false\n".into(),
            };
            let sandbox = Sandbox::new(&config);
            let out = run_against(&sandbox, &server, protocol, &[]).await;
            assert_eq!(out.code, Some(0), "{protocol:?} {stream}: {out:?}");
            let report = out.json();
            assert_eq!(
                subtask(&report, "a")["result"],
                "Load rises in winter evenings.",
                "{protocol:?} {stream}"
            );
            for request in [
                worker_request(&server, "Peak shaving"),
                synthesis_request(&server),
            ] {
                assert!(
                    !request.user().contains("peaks at six"),
                    "{protocol:?} {stream}"
                );
                assert!(!request.user().contains("think>"), "{protocol:?} {stream}");
            }
            let events = sandbox.events();
            let reasoning: String = events_of(&events, "subtask_reasoning")
                .iter()
                .filter_map(|e| e["text"].as_str())
                .collect();
            assert_eq!(reasoning, "The grid peaks at six.", "{protocol:?} {stream}");
            let answer: String = events_of(&events, "subtask_delta")
                .iter()
                .filter(|e| e["subtask"] == "a")
                .filter_map(|e| e["text"].as_str())
                .collect();
            assert_eq!(
                answer, "Load rises in winter evenings.",
                "{protocol:?} {stream}"
            );
        }
    }
}

// ---- stream shapes -----------------------------------------------------------------------

#[tokio::test]
async fn comment_lines_and_an_in_band_error_mid_stream_are_a_retry_not_a_result() {
    for protocol in PROTOCOLS {
        let first = std::sync::atomic::AtomicBool::new(true);
        let server = MockServer::start(move |request: &MockRequest| match request.call() {
            Call::Worker(title) if title == "Grid load" => {
                if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    Reply::stream_error("Half of an answer that", "upstream model crashed")
                        .keep_alive()
                } else {
                    Reply::text("Load rises in winter evenings.").keep_alive()
                }
            }
            _ => answer(request),
        })
        .await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, &[]).await;
        assert_eq!(out.code, Some(0), "{protocol:?}: {out:?}");
        let report = out.json();
        assert_eq!(subtask(&report, "a")["attempts"], 2);
        assert_eq!(
            subtask(&report, "a")["result"],
            "Load rises in winter evenings."
        );
        let events = sandbox.events();
        let retried = events_of(&events, "subtask_retrying");
        assert!(
            retried[0]["error"]
                .as_str()
                .is_some_and(|e| e.contains("upstream model crashed")),
            "{retried:?}"
        );
        assert!(
            !worker_request(&server, "Peak shaving")
                .user()
                .contains("Half of")
        );
    }
}

#[tokio::test]
async fn no_usage_in_the_stream_is_estimated_and_marked() {
    for protocol in PROTOCOLS {
        let server = MockServer::start(|request: &MockRequest| answer(request).no_usage()).await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, &[]).await;
        assert_eq!(out.code, Some(0), "{protocol:?}: {out:?}");
        let report = out.json();
        for id in ["a", "b"] {
            let s = subtask(&report, id);
            assert_eq!(s["usage_estimated"], true, "{report}");
            assert!(s["tokens_out"].as_u64().is_some_and(|t| t > 0), "{report}");
        }
        assert_eq!(report["usage"]["estimated"], true, "{report}");
    }
}

// ---- the context window ------------------------------------------------------------------

#[tokio::test]
async fn a_prompt_longer_than_the_context_fails_once_saying_what_to_bound() {
    let long = "Grid load detail. ".repeat(400);
    for protocol in PROTOCOLS {
        let long = long.clone();
        let script = move |request: &MockRequest| {
            // A small context for workers: the dependent's prompt, quoting `a` in full, does
            // not fit.
            if request.worker_title().is_some() && request.user().chars().count() > 4000 {
                return match request.protocol {
                    Protocol::OpenAi => Reply::status(
                        400,
                        "This model's maximum context length is 1024 tokens. However, your \
                         messages resulted in 1900 tokens. Please reduce the length of the \
                         messages.",
                    )
                    .error_code("context_length_exceeded")
                    .error_param("messages"),
                    Protocol::Anthropic => {
                        Reply::status(400, "prompt is too long: 1900 tokens > 1024 maximum")
                    }
                };
            }
            match request.call() {
                Call::Worker(title) if title == "Grid load" => Reply::text(long.clone()),
                _ => answer(request),
            }
        };
        let server = MockServer::start(script.clone()).await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, &[]).await;
        let report = out.json();
        let b = subtask(&report, "b");
        assert_eq!(b["status"], "failed", "{protocol:?}: {report}");
        assert_eq!(b["attempts"], 1, "not retried: {report}");
        let error = b["error"].as_str().unwrap_or_default();
        for needle in [
            "subtask `b` (Peak shaving)",
            "does not fit the model's context window",
            "characters, about",
            "tokens",
            "limits.max_dependency_chars",
        ] {
            assert!(
                error.contains(needle),
                "{protocol:?}: {needle:?} in {error}"
            );
        }
        let prompt_chars = error
            .split("window: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok())
            .expect("the prompt size in the message");
        assert!(prompt_chars > 7200, "{error}");

        // Bounded, the dependent's prompt fits and quotes the start of `a` with a marker.
        let server = MockServer::start(script).await;
        let sandbox = Sandbox::new("[limits]\nmax_dependency_chars = 1000\n");
        let out = run_against(&sandbox, &server, protocol, &[]).await;
        assert_eq!(out.code, Some(0), "{protocol:?}: {out:?}");
        let prompt = worker_request(&server, "Peak shaving").user();
        assert!(prompt.contains("Grid load detail."), "{prompt}");
        assert!(
            prompt.contains("more characters of this result left out"),
            "{prompt}"
        );
        assert!(prompt.chars().count() < 4000);
    }
}
