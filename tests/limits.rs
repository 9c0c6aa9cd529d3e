//! Budgets and rate control seen from the outside: the real binary against the mock server for
//! what a person gets (a report that names what the budget skipped, exit codes, a provider
//! paused by its breaker with the mock's log showing no further attempts), and the engine with
//! two runs for what only shows in the mock's counts (one provider limit shared by both runs,
//! call starts spaced).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::plans::{plan_value, result_for, title};
use common::{Call, MockRequest, MockServer, Output, Reply, Sandbox};
use maestro::engine::executor::{Engine, ExecutorSettings};
use maestro::engine::limits::RateSettings;
use maestro::engine::prompt::CallSpec;
use maestro::engine::roles::builtin_roles;
use maestro::engine::run::RunSettings;
use maestro::llm::openai::{OpenAi, OpenAiConfig};
use maestro::protocol::{EventKind, RunStatus};
use serde_json::Value;

const QUERY: &str = "What do heat pumps change for a city grid?";
const LIMIT: Duration = Duration::from_secs(30);

/// Planner answers `plan_value(ids)`, workers their `result_for`, the synthesis a report; each
/// call reports `tokens` in and out.
fn script(ids: &'static [&'static str], tokens: u64) -> impl Fn(&MockRequest) -> Reply {
    move |request| match request.call() {
        Call::Planner => Reply::text(plan_value(ids).to_string()).usage(tokens, tokens),
        Call::Worker(t) => Reply::text(result_for(&t)).usage(tokens, tokens),
        Call::Synthesis => Reply::text("# Report\nShort.").usage(tokens, tokens),
        Call::Unknown => Reply::status(400, "unexpected request"),
    }
}

async fn run(server: &MockServer, extra: &[&str]) -> (Output, Value) {
    let sandbox = Sandbox::new("");
    let base_url = server.openai_base_url();
    let mut args = vec![
        "run",
        "--provider",
        "openai",
        "--base-url",
        &base_url,
        "--format",
        "json",
        "--no-save",
    ];
    args.extend_from_slice(extra);
    args.push(QUERY);
    let out = sandbox.child(&args).limit(LIMIT).run().await;
    let json = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

fn workers(server: &MockServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| match r.call() {
            Call::Worker(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn synthesis_prompt(server: &MockServer) -> String {
    server
        .requests()
        .iter()
        .find(|r| r.call() == Call::Synthesis)
        .map(|r| r.user())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_spent_token_budget_stops_dispatch_and_the_report_names_what_was_skipped() {
    // 200 tokens a call: the planner and subtask a spend 400 of a 300-token budget.
    let server = MockServer::start(script(&["a", "b", "c"], 100)).await;
    let (out, json) = run(&server, &["--concurrency", "1", "--max-tokens", "300"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(workers(&server), [title("a")], "b and c never started");
    let prompt = synthesis_prompt(&server);
    for id in ["b", "c"] {
        assert!(prompt.contains(&title(id)), "{prompt}");
    }
    assert!(prompt.contains("budget"), "{prompt}");
    assert_eq!(json["status"], "partial");
    assert_eq!(json["skipped_for_budget"], serde_json::json!(["b", "c"]));
    assert_eq!(json["budget_reached"]["limit"], "tokens");
    assert_eq!(json["budget_reached"]["max"], 300);
    assert!(out.stderr.contains("token budget reached"), "{out:?}");
    assert!(
        out.stderr.contains("skipped for the budget: b, c"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_spent_cost_budget_stops_dispatch_priced_by_the_config() {
    // $1 a million tokens, 200 tokens a call: the planner and subtask a cost $0.0004 of a
    // $0.0003 budget.
    let server = MockServer::start(script(&["a", "b", "c"], 100)).await;
    let sandbox = Sandbox::new("[prices.\"priced-x\"]\ninput = 1.0\noutput = 1.0\n");
    let base_url = server.openai_base_url();
    let out = sandbox
        .child(&[
            "run",
            "--provider",
            "openai",
            "--base-url",
            &base_url,
            "--model",
            "priced-x",
            "--format",
            "json",
            "--no-save",
            "--concurrency",
            "1",
            "--max-cost",
            "0.0003",
            QUERY,
        ])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(workers(&server), [title("a")], "b and c never started");
    let json: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(json["skipped_for_budget"], serde_json::json!(["b", "c"]));
    assert_eq!(json["budget_reached"]["limit"], "cost");
    assert_eq!(json["budget_reached"]["max_micros"], 300);
    assert_eq!(json["budget_reached"]["spent_micros"], 400);
    assert!(out.stderr.contains("cost budget reached"), "{out:?}");

    // A model with no price cannot be held to a cost: refused before any call.
    let before = server.requests().len();
    let out = sandbox
        .child(&[
            "run",
            "--provider",
            "openai",
            "--base-url",
            &base_url,
            "--model",
            "unpriced-y",
            "--no-save",
            "--max-cost",
            "1",
            QUERY,
        ])
        .limit(LIMIT)
        .run()
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("`unpriced-y`"), "{out:?}");
    assert_eq!(server.requests().len(), before);
}

#[tokio::test]
async fn a_passed_deadline_stops_dispatch_and_still_writes_the_report() {
    let server = MockServer::start(|request: &MockRequest| match request.call() {
        Call::Planner => Reply::text(plan_value(&["a", "b"]).to_string()),
        // Subtask a outlasts the run's one-second deadline.
        Call::Worker(t) => Reply::text(result_for(&t)).delay(Duration::from_millis(1200)),
        Call::Synthesis => Reply::text("# Report"),
        Call::Unknown => Reply::status(400, "unexpected request"),
    })
    .await;
    let (out, json) = run(&server, &["--concurrency", "1", "--deadline", "1s"]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(workers(&server), [title("a")]);
    assert_eq!(json["skipped_for_budget"], serde_json::json!(["b"]));
    assert_eq!(json["budget_reached"]["limit"], "deadline");
    assert!(synthesis_prompt(&server).contains(&title("b")));
}

#[tokio::test]
async fn a_bad_deadline_is_a_usage_error() {
    let server = MockServer::start(script(&["a"], 1)).await;
    let (out, _) = run(&server, &["--deadline", "soon"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--deadline"), "{out:?}");
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn three_refused_keys_pause_the_provider_and_nothing_more_is_asked() {
    let server = MockServer::start(|request: &MockRequest| match request.call() {
        Call::Planner => Reply::text(plan_value(&["a", "b", "c", "d", "e"]).to_string()),
        _ => Reply::status(401, "invalid api key"),
    })
    .await;
    let (out, json) = run(&server, &["--concurrency", "1"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        workers(&server),
        [title("a"), title("b"), title("c")],
        "no attempt after the third refusal"
    );
    assert!(out.stderr.contains("provider paused"), "{out:?}");
    assert!(out.stderr.contains("HTTP 401"), "{out:?}");
    assert_eq!(json["status"], "cancelled");
}

#[tokio::test]
async fn repeated_rate_limits_after_retries_pause_the_provider() {
    let server = MockServer::start(|request: &MockRequest| match request.call() {
        Call::Planner => Reply::text(plan_value(&["a", "b", "c", "d", "e", "f"]).to_string()),
        _ => Reply::status(429, "slow down").retry_after(0),
    })
    .await;
    let (out, _) = run(&server, &["--concurrency", "1", "--retries", "1"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    // One call at a time, and a subtask waiting to retry holds no slot, so the next one
    // starts meanwhile. The fifth retried 429 trips the breaker: no sixth retry is asked.
    let asked = workers(&server);
    let retried = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .filter(|id| asked.iter().filter(|t| **t == title(id)).count() == 2)
        .count();
    assert_eq!(retried, 5, "{asked:?}");
    assert_eq!(
        server.requests().last().map(|r| r.call()),
        Some(Call::Worker(asked.last().cloned().unwrap_or_default())),
        "no synthesis: the run was stopped"
    );
    assert!(out.stderr.contains("still rate-limited"), "{out:?}");
}

// ---- the engine: one limit for two runs, spaced starts --------------------------------------

fn settings(concurrency: usize) -> RunSettings {
    let spec = |model: &str| CallSpec {
        model: model.to_owned(),
        max_tokens: 100,
        temperature: None,
    };
    RunSettings {
        max_subtasks: 8,
        concurrency,
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
        budget: Default::default(),
        direct: true,
        validate: false,
        validator: spec("validator-model"),
        preset: Default::default(),
        review: false,
    }
}

fn engine_for(server: &MockServer, rate: RateSettings, concurrency: usize) -> Engine2 {
    let provider = Arc::new(OpenAi::new(OpenAiConfig {
        base_url: server.openai_base_url(),
        api_key: None,
        stream: true,
        include_usage: true,
        idle_timeout: Duration::from_secs(5),
        token_param: None,
    }));
    let executor = ExecutorSettings {
        provider_key: server.openai_base_url(),
        rate,
        ..ExecutorSettings::default()
    };
    let (handle, events) = Engine::spawn(provider, settings(concurrency), executor);
    Engine2 { handle, events }
}

struct Engine2 {
    handle: maestro::engine::executor::EngineHandle,
    events: tokio::sync::mpsc::UnboundedReceiver<maestro::protocol::Event>,
}

impl Engine2 {
    /// Wait until `runs` runs have finished; their statuses.
    async fn finish(&mut self, runs: usize) -> Vec<RunStatus> {
        let mut done = Vec::new();
        while done.len() < runs {
            let event = tokio::time::timeout(LIMIT, self.events.recv())
                .await
                .expect("the runs end in time")
                .expect("the engine runs");
            if let EventKind::RunFinished { status, .. } = event.kind {
                done.push(status);
            }
        }
        done
    }
}

fn slow_script(ids: &'static [&'static str]) -> impl Fn(&MockRequest) -> Reply {
    move |request| match request.call() {
        Call::Planner => Reply::text(plan_value(ids).to_string()),
        Call::Worker(t) => Reply::text(result_for(&t)).delay(Duration::from_millis(150)),
        Call::Synthesis => Reply::text("# Report"),
        Call::Unknown => Reply::status(400, "unexpected request"),
    }
}

#[tokio::test]
async fn two_runs_share_one_provider_limit() {
    let server = MockServer::start(slow_script(&["a", "b", "c", "d"])).await;
    let rate = RateSettings {
        max_in_flight: Some(3),
        ..RateSettings::default()
    };
    let mut engine = engine_for(&server, rate, 4);
    engine.handle.start_run(QUERY, None);
    engine.handle.start_run(QUERY, None);
    let statuses = engine.finish(2).await;
    assert_eq!(statuses, [RunStatus::Succeeded, RunStatus::Succeeded]);
    assert_eq!(workers(&server).len(), 8);
    // Each run alone would have four in flight; together eight.
    assert_eq!(server.in_flight_high_water(), 3);
}

#[tokio::test]
async fn without_a_shared_limit_two_runs_reach_their_own_limits() {
    let server = MockServer::start(slow_script(&["a", "b", "c", "d"])).await;
    let mut engine = engine_for(&server, RateSettings::default(), 4);
    engine.handle.start_run(QUERY, None);
    engine.handle.start_run(QUERY, None);
    engine.finish(2).await;
    assert!(
        server.in_flight_high_water() > 4,
        "{}",
        server.in_flight_high_water()
    );
}

#[tokio::test]
async fn call_starts_to_one_provider_are_spaced() {
    let server = MockServer::start(slow_script(&["a", "b", "c", "d", "e"])).await;
    let rate = RateSettings {
        starts_per_second: Some(10.0),
        ..RateSettings::default()
    };
    let mut engine = engine_for(&server, rate, 5);
    engine.handle.start_run(QUERY, None);
    assert_eq!(engine.finish(1).await, [RunStatus::Succeeded]);
    let starts: Vec<_> = server.requests().iter().map(|r| r.received_at).collect();
    assert_eq!(starts.len(), 7, "planner, five workers, synthesis");
    for pair in starts.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        // 100 ms apart at the limiter; what reaches the server may be a little less apart.
        assert!(
            gap >= Duration::from_millis(80),
            "{gap:?} between two starts"
        );
    }
}

#[tokio::test]
async fn a_retry_after_holds_every_call_to_the_provider_and_they_say_so() {
    let server = MockServer::start(|request: &MockRequest| match request.call() {
        Call::Planner => Reply::text(plan_value(&["a", "b"]).to_string()),
        // The first worker call is told to wait a second; every later one is answered.
        Call::Worker(_) if request.seq == 1 => Reply::status(429, "slow down").retry_after(1),
        Call::Worker(t) => Reply::text(result_for(&t)),
        Call::Synthesis => Reply::text("# Report"),
        Call::Unknown => Reply::status(400, "unexpected request"),
    })
    .await;
    let rate = RateSettings {
        breaker: true,
        ..RateSettings::default()
    };
    let mut engine = engine_for(&server, rate, 1);
    engine.handle.start_run(QUERY, None);
    let mut waiting = Vec::new();
    loop {
        let event = tokio::time::timeout(LIMIT, engine.events.recv())
            .await
            .expect("the run ends in time")
            .expect("the engine runs");
        match event.kind {
            EventKind::SubtaskWaiting {
                subtask,
                delay_ms,
                reason,
                ..
            } => waiting.push((subtask.0, delay_ms, reason)),
            EventKind::RunFinished { status, .. } => {
                // No retries in these settings: a fails, b waits out the shared second.
                assert_eq!(status, RunStatus::Partial);
                break;
            }
            _ => {}
        }
    }
    assert!(
        waiting.iter().any(|(id, delay, reason)| id == "b"
            && *delay > 500
            && reason == "provider rate-limited"),
        "{waiting:?}"
    );
    let requests = server.requests();
    let limited = requests[1].received_at;
    for later in &requests[2..] {
        assert!(
            later.received_at.duration_since(limited) >= Duration::from_millis(900),
            "a call went out during the shared wait"
        );
    }
}

#[tokio::test]
async fn a_paused_provider_resumed_by_the_person_is_asked_again() {
    let server = MockServer::start(|request: &MockRequest| match request.call() {
        Call::Planner => Reply::text(plan_value(&["a", "b", "c", "d"]).to_string()),
        _ => Reply::status(401, "invalid api key"),
    })
    .await;
    let rate = RateSettings {
        breaker: true,
        ..RateSettings::default()
    };
    let mut engine = engine_for(&server, rate, 1);
    let run = engine.handle.start_run(QUERY, None);
    loop {
        let event = tokio::time::timeout(LIMIT, engine.events.recv())
            .await
            .expect("the provider is paused in time")
            .expect("the engine runs");
        match event.kind {
            EventKind::ProviderPaused { message } => {
                assert!(message.contains("HTTP 401"), "{message}");
                break;
            }
            EventKind::RunFinished { .. } => panic!("the run ended instead of pausing"),
            _ => {}
        }
    }
    assert_eq!(workers(&server).len(), 3);
    // The key is fixed; the person resumes.
    server.set_script(|request: &MockRequest| match request.call() {
        Call::Worker(t) => Reply::text(result_for(&t)),
        Call::Synthesis => Reply::text("# Report"),
        _ => Reply::status(400, "unexpected request"),
    });
    engine
        .handle
        .steer(run, maestro::protocol::RunCommand::ResumeProvider);
    assert_eq!(engine.finish(1).await, [RunStatus::Partial]);
    assert_eq!(
        workers(&server).last().cloned(),
        Some(title("d")),
        "d ran once the provider was resumed"
    );
}
