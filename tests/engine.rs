//! The engine as a library, end to end against the mock LLM server: planning, scheduling by
//! dependencies, retries and timeouts, cancellation, re-runs and edits, usage totals, and the
//! synthesis, over both wire protocols.
//!
//! Every test scripts the mock by telling planner, worker and synthesis calls apart from the
//! prompts the engine sends (see `MockRequest::call`), drives one run through `Engine::spawn` and checks
//! the events it emits and the requests the mock saw. Backoff is shortened to milliseconds so
//! the whole file stays fast; every wait has a deadline so a bug fails a test instead of
//! hanging it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mock::{self, Call, MockRequest, MockServer, Protocol, Reply};
use maestro::engine::executor::{Engine, EngineHandle, ExecutorSettings};
use maestro::engine::prompt::CallSpec;
use maestro::engine::roles::builtin_roles;
use maestro::engine::run::RunSettings;
use maestro::llm::anthropic::{Anthropic, AnthropicConfig};
use maestro::llm::openai::{OpenAi, OpenAiConfig};
use maestro::llm::{ApiKey, CallError, CallFuture, ChatRequest, Completion, DeltaSink, Provider};
use maestro::protocol::{
    CallRole, Command, CommandName, Event, EventKind, Plan, Refusal, RunCommand, RunId, RunStatus,
    SavedReport, SavedResult, SavedRun, SavedSubtask, SubtaskId, Usage,
};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const KEY: &str = "sk-test-engine-key";
const SYNTHESIS: &str = "# Report\n\nThe synthesised answer, built from every finding.";
/// The longest any single wait in a test may take before it fails.
const WAIT: Duration = Duration::from_secs(10);

// ---- telling calls apart ------------------------------------------------------------------

fn title(id: &str) -> String {
    format!("Subtask {id} title")
}

/// What the default worker answers for a subtask: several chunks long, unique per subtask.
fn result_for(title: &str) -> String {
    format!("Findings for {title}: alpha beta gamma delta epsilon zeta eta theta iota kappa.")
}

/// Plan JSON with one subtask per `(id, depends_on)`, titled `Subtask <id> title`.
fn plan_json(tasks: &[(&str, &[&str])]) -> String {
    plan_value(tasks).to_string()
}

fn plan_value(tasks: &[(&str, &[&str])]) -> serde_json::Value {
    let subtasks: Vec<_> = tasks
        .iter()
        .map(|(id, deps)| {
            json!({
                "id": id,
                "worker": "research",
                "title": title(id),
                "description": format!("Find out everything about {id}."),
                "focus_areas": [format!("{id} first point"), format!("{id} second point")],
                "depends_on": deps,
                "priority": "medium",
            })
        })
        .collect();
    json!({
        "query_analysis": "The user wants the impacts.",
        "subtasks": subtasks,
        "synthesis_guidance": "Weigh the findings against each other.",
    })
}

type Answer = Box<dyn Fn(&MockRequest) -> Reply + Send + Sync>;

/// A mock script: the planner, each worker (by subtask title; unlisted ones answer
/// `result_for(title)`) and the synthesis answer as configured.
struct Script {
    planner: Answer,
    workers: Vec<(String, Answer)>,
    synthesis: Answer,
}

impl Script {
    fn new(plan: String) -> Self {
        Self {
            planner: Box::new(move |_| Reply::text(plan.clone())),
            workers: Vec::new(),
            synthesis: Box::new(|_| Reply::text(SYNTHESIS)),
        }
    }

    fn planner(mut self, f: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static) -> Self {
        self.planner = Box::new(f);
        self
    }

    /// How the worker of subtask `id` answers.
    fn worker(
        mut self,
        id: &str,
        f: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static,
    ) -> Self {
        self.workers.push((title(id), Box::new(f)));
        self
    }

    fn synthesis(mut self, f: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static) -> Self {
        self.synthesis = Box::new(f);
        self
    }

    fn into_fn(self) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
        move |request| match request.call() {
            Call::Planner => (self.planner)(request),
            Call::Synthesis => (self.synthesis)(request),
            Call::Worker(title) => match self.workers.iter().find(|(t, _)| *t == title) {
                Some((_, f)) => f(request),
                None => Reply::text(result_for(&title)),
            },
            Call::Unknown => Reply::status(400, "mock: a request the test did not expect"),
        }
    }
}

fn always(reply: Reply) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    move |_| reply.clone()
}

// ---- the harness --------------------------------------------------------------------------

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
        retries: 2,
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
        structured: maestro::llm::structured::Structured::Auto,
        direct: true,
        validate: false,
        validator: spec("validator-model"),
        preset: Default::default(),
        budget: Default::default(),
        review: false,
    }
}

fn executor() -> ExecutorSettings {
    ExecutorSettings {
        call_timeout: Duration::from_secs(5),
        coalesce: Duration::from_millis(10),
        ..ExecutorSettings::default()
    }
}

fn openai(server: &MockServer, idle_timeout: Duration) -> Arc<dyn Provider> {
    Arc::new(OpenAi::new(OpenAiConfig {
        base_url: server.openai_base_url(),
        api_key: Some(ApiKey::new(KEY.into())),
        stream: true,
        include_usage: true,
        idle_timeout,
        token_param: None,
    }))
}

fn anthropic(server: &MockServer) -> Arc<dyn Provider> {
    Arc::new(Anthropic::new(AnthropicConfig {
        base_url: server.anthropic_base_url(),
        api_key: ApiKey::new(KEY.into()),
        stream: true,
        idle_timeout: Duration::from_secs(5),
    }))
}

/// One engine with one run against one mock server, and every event seen so far.
struct Harness {
    server: MockServer,
    engine: EngineHandle,
    events: UnboundedReceiver<Event>,
    log: Vec<Event>,
    run: RunId,
}

struct Options {
    settings: RunSettings,
    executor: ExecutorSettings,
    idle_timeout: Duration,
    protocol: Protocol,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: settings(),
            executor: executor(),
            idle_timeout: Duration::from_secs(5),
            protocol: Protocol::OpenAi,
        }
    }
}

impl Harness {
    async fn start(script: Script) -> Self {
        Self::start_with(script, Options::default()).await
    }

    async fn start_with(script: Script, options: Options) -> Self {
        let server = MockServer::start(script.into_fn()).await;
        let provider = match options.protocol {
            Protocol::OpenAi => openai(&server, options.idle_timeout),
            Protocol::Anthropic => anthropic(&server),
        };
        let (engine, events) = Engine::spawn(provider, options.settings, options.executor);
        let run = engine.start_run(QUERY, None);
        Self {
            server,
            engine,
            events,
            log: Vec::new(),
            run,
        }
    }

    fn steer(&self, command: RunCommand) {
        self.engine.steer(self.run, command);
    }

    /// Receive events until one matches; return it. Fails the test after `WAIT`, listing
    /// what came.
    async fn until(&mut self, what: &str, pred: impl Fn(&EventKind) -> bool) -> EventKind {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            match next {
                Ok(Some(event)) => {
                    assert_eq!(event.run, self.run, "an event for another run");
                    let kind = event.kind.clone();
                    self.log.push(event);
                    if pred(&kind) {
                        return kind;
                    }
                }
                Ok(None) => panic!(
                    "the engine stopped before {what}; events: {:?}",
                    self.kinds()
                ),
                Err(_) => panic!("no {what} within {WAIT:?}; events: {:?}", self.kinds()),
            }
        }
    }

    /// Receive events until the next `RunFinished`.
    async fn finished(&mut self) -> Finished {
        match self
            .until("RunFinished", |k| {
                matches!(k, EventKind::RunFinished { .. })
            })
            .await
        {
            EventKind::RunFinished {
                status,
                usage,
                error,
                succeeded,
                failed,
                ..
            } => Finished {
                status,
                usage,
                error,
                succeeded,
                failed,
            },
            _ => unreachable!(),
        }
    }

    /// The event types seen so far, for failure messages.
    fn kinds(&self) -> Vec<String> {
        self.log.iter().map(|e| describe(&e.kind)).collect()
    }

    fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.log.iter().filter(|e| pred(&e.kind)).count()
    }

    fn find<T>(&self, f: impl Fn(&EventKind) -> Option<T>) -> Option<T> {
        self.log.iter().find_map(|e| f(&e.kind))
    }

    fn requests(&self, call: Call) -> Vec<MockRequest> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.call() == call)
            .collect()
    }

    fn worker_requests(&self, id: &str) -> Vec<MockRequest> {
        self.requests(Call::Worker(title(id)))
    }

    fn only(&self, call: Call) -> MockRequest {
        let mut requests = self.requests(call.clone());
        assert_eq!(requests.len(), 1, "expected one {call:?} request");
        requests.remove(0)
    }
}

#[derive(Debug)]
struct Finished {
    status: RunStatus,
    usage: Usage,
    error: Option<String>,
    succeeded: u32,
    failed: u32,
}

fn describe(kind: &EventKind) -> String {
    let value = serde_json::to_value(kind).unwrap_or_default();
    let kind_name = value["type"].as_str().unwrap_or("?").to_owned();
    match kind.subtask() {
        Some(id) => format!("{kind_name}({id})"),
        None => kind_name,
    }
}

fn sid(id: &str) -> SubtaskId {
    SubtaskId::new(id)
}

fn is_subtask(kind: &EventKind, id: &str) -> bool {
    kind.subtask().is_some_and(|s| s.as_str() == id)
}

fn started(id: &'static str) -> impl Fn(&EventKind) -> bool {
    move |k| matches!(k, EventKind::SubtaskStarted { .. }) && is_subtask(k, id)
}

/// The part of a synthesis prompt under `# Missing`.
fn missing_section(synthesis_user: &str) -> &str {
    synthesis_user
        .split("\n# Missing")
        .nth(1)
        .expect("the synthesis prompt has a Missing section")
}

fn findings_section(synthesis_user: &str) -> &str {
    let after = synthesis_user
        .split("\n# Findings")
        .nth(1)
        .expect("the synthesis prompt has a Findings section");
    after.split("\n# Missing").next().unwrap_or(after)
}

// ---- scheduling by dependencies -----------------------------------------------------------

#[tokio::test]
async fn dependent_starts_only_after_all_of_its_dependencies_have_finished() {
    let slow = |ms| {
        move |r: &MockRequest| {
            Reply::text(result_for(&title_of(r))).delay(Duration::from_millis(ms))
        }
    };
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[]), ("c", &["a", "b"])]))
        .worker("a", slow(300))
        .worker("b", slow(200));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    let a = h.worker_requests("a").remove(0);
    let b = h.worker_requests("b").remove(0);
    let c = h.worker_requests("c").remove(0);
    let (a_end, b_end) = (a.finished_at.unwrap(), b.finished_at.unwrap());
    assert!(
        b.received_at < a_end,
        "independent subtasks run in parallel"
    );
    assert!(c.received_at > a_end, "c started before a finished");
    assert!(c.received_at > b_end, "c started before b finished");
}

/// The subtask title a worker request is for.
fn title_of(request: &MockRequest) -> String {
    match request.call() {
        Call::Worker(title) => title,
        other => panic!("not a worker request: {other:?}"),
    }
}

#[tokio::test]
async fn dependent_starts_as_soon_as_its_own_dependency_ends_not_in_waves() {
    // x is fast and y depends on it; z is slow and independent. y must not wait for z.
    let script = Script::new(plan_json(&[("x", &[]), ("y", &["x"]), ("z", &[])]))
        .worker("z", |r| {
            Reply::text(result_for(&title_of(r))).delay(Duration::from_millis(800))
        });
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    let y = h.worker_requests("y").remove(0);
    let z = h.worker_requests("z").remove(0);
    assert!(
        y.received_at < z.finished_at.unwrap(),
        "y waited for the unrelated z: it arrived {:?} after z ended",
        y.received_at - z.finished_at.unwrap()
    );
}

#[tokio::test]
async fn dependency_results_reach_dependents_and_every_result_reaches_the_synthesis() {
    let long_a = format!(
        "## What a found\n\n{}\n\nThe last line of a's answer.",
        "A long paragraph of findings about a. ".repeat(40)
    );
    let answer_a = long_a.clone();
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[]), ("c", &["a", "b"])]))
        .worker("a", move |_| Reply::text(answer_a.clone()));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    let c = h.worker_requests("c").remove(0).user();
    assert!(
        c.contains(&long_a),
        "c's prompt lacks a's full result:\n{c}"
    );
    assert!(
        c.contains(&result_for(&title("b"))),
        "c's prompt lacks b's result"
    );
    assert!(c.contains(&title("a")) && c.contains(&title("b")));

    let synthesis = h.only(Call::Synthesis).user();
    let findings = findings_section(&synthesis);
    assert!(findings.contains(&long_a));
    assert!(findings.contains(&result_for(&title("b"))));
    assert!(findings.contains(&result_for(&title("c"))));
    assert!(synthesis.contains(QUERY));
    assert!(synthesis.contains("Weigh the findings against each other."));
}

#[tokio::test]
async fn failed_subtask_titles_are_named_in_the_synthesis_missing_section() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[]), ("c", &["b"])]))
        .worker("b", always(Reply::status(400, "bad request from the test")));
    let mut h = Harness::start(script).await;
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Partial);
    assert_eq!((end.succeeded, end.failed), (1, 2));

    let synthesis = h.only(Call::Synthesis).user();
    let missing = missing_section(&synthesis);
    assert!(missing.contains(&title("b")), "missing section: {missing}");
    assert!(
        missing.contains(&title("c")),
        "the blocked dependent is missing too: {missing}"
    );
    assert!(!missing.contains(&title("a")));
    assert!(findings_section(&synthesis).contains(&result_for(&title("a"))));
}

// ---- retries ------------------------------------------------------------------------------

#[tokio::test]
async fn worker_failing_twice_with_500_succeeds_on_the_third_attempt() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[])])).worker(
        "a",
        mock::sequence(vec![
            Reply::status(500, "upstream broke"),
            Reply::status(500, "upstream broke"),
            Reply::text(result_for(&title("a"))),
        ]),
    );
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    assert_eq!(h.worker_requests("a").len(), 3);
    let retries =
        h.count(|k| matches!(k, EventKind::SubtaskRetrying { reason, .. } if reason == "500"));
    assert_eq!(retries, 2, "events: {:?}", h.kinds());
    let attempt = h.find(|k| match k {
        EventKind::SubtaskSucceeded {
            subtask, attempt, ..
        } if subtask == &sid("a") => Some(*attempt),
        _ => None,
    });
    assert_eq!(attempt, Some(3));
}

#[tokio::test]
async fn worker_that_always_fails_is_tried_retries_plus_one_times_and_blocks_its_dependents() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[]), ("c", &["a"])]))
        .worker("a", always(Reply::status(500, "permanently broken")));
    let mut h = Harness::start(script).await; // retries = 2
    let end = h.finished().await;

    assert_eq!(h.worker_requests("a").len(), 3);
    assert!(
        h.worker_requests("c").is_empty(),
        "a blocked subtask was called"
    );
    let failure = h.find(|k| match k {
        EventKind::SubtaskFailed {
            subtask,
            attempt,
            error,
            ..
        } if subtask == &sid("a") => Some((*attempt, error.clone())),
        _ => None,
    });
    let (attempt, error) = failure.expect("a failed");
    assert_eq!(attempt, 3);
    assert!(error.contains("permanently broken"), "{error}");
    let blocked = h.find(|k| match k {
        EventKind::SubtaskBlocked {
            subtask,
            waiting_on,
        } if subtask == &sid("c") => Some(waiting_on.clone()),
        _ => None,
    });
    assert_eq!(blocked, Some(vec![sid("a")]));
    assert_eq!(end.status, RunStatus::Partial);
    assert_eq!((end.succeeded, end.failed), (1, 2));
    let missing = missing_section(&h.only(Call::Synthesis).user()).to_owned();
    assert!(
        missing.contains(&title("a")) && missing.contains(&title("c")),
        "{missing}"
    );
}

#[tokio::test]
async fn unauthorized_worker_fails_at_once_with_the_providers_message() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[])])).worker(
        "a",
        always(Reply::status(
            401,
            "Incorrect API key provided: sk-te***key",
        )),
    );
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Partial);

    assert_eq!(h.worker_requests("a").len(), 1, "a 401 is not retried");
    assert_eq!(
        h.count(|k| matches!(k, EventKind::SubtaskRetrying { .. })),
        0
    );
    let error = h
        .find(|k| match k {
            EventKind::SubtaskFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("a failed");
    assert!(error.contains("Incorrect API key provided"), "{error}");
    assert!(error.contains("401"), "{error}");
}

// ---- timeouts and broken streams ----------------------------------------------------------

#[tokio::test]
async fn silent_stream_hits_the_idle_timeout_is_retried_then_fails() {
    let mut options = Options {
        idle_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    options.settings.retries = 1;
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[])]))
        .worker("a", always(Reply::silent_after(result_for(&title("a")), 1)));
    let mut h = Harness::start_with(script, options).await;
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Partial);

    let reason = h.find(|k| match k {
        EventKind::SubtaskRetrying { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("idle timeout"));
    let error = h
        .find(|k| match k {
            EventKind::SubtaskFailed { error, partial, .. } => {
                Some((error.clone(), partial.clone()))
            }
            _ => None,
        })
        .expect("a failed");
    assert!(error.0.contains("went silent"), "{}", error.0);
    assert_eq!(h.worker_requests("a").len(), 2);
}

#[tokio::test]
async fn stream_cut_halfway_is_retried_and_the_result_is_the_whole_second_answer() {
    let full = result_for(&title("a"));
    let script = Script::new(plan_json(&[("a", &[])])).worker(
        "a",
        mock::sequence(vec![
            Reply::cut_after(full.clone(), 2),
            Reply::text(full.clone()),
        ]),
    );
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    assert_eq!(h.worker_requests("a").len(), 2);
    let result = h.find(|k| match k {
        EventKind::SubtaskSucceeded {
            result, attempt, ..
        } => Some((result.clone(), *attempt)),
        _ => None,
    });
    assert_eq!(result, Some((full.clone(), 2)));
    let second_attempt: String = h
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SubtaskDelta {
                attempt: 2, text, ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        second_attempt, full,
        "the deltas of attempt 2 are its whole text"
    );
    let synthesis = h.only(Call::Synthesis).user();
    assert_eq!(synthesis.matches("Findings for").count(), 1, "{synthesis}");
    assert!(synthesis.contains(&full));
}

// ---- cancellation -------------------------------------------------------------------------

#[tokio::test]
async fn cancelling_a_running_subtask_blocks_its_dependents_and_the_run_still_synthesises() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[]), ("c", &["a"])])).worker(
        "a",
        always(Reply::text(result_for(&title("a"))).delay(Duration::from_secs(8))),
    );
    let mut h = Harness::start(script).await;
    h.until("a started", started("a")).await;
    let cancelled_at = Instant::now();
    h.steer(RunCommand::CancelSubtask(sid("a")));
    let end = h.finished().await;

    assert!(
        cancelled_at.elapsed() < Duration::from_secs(3),
        "the run waited for a"
    );
    assert_eq!(end.status, RunStatus::Partial);
    assert_eq!(
        h.count(|k| matches!(k, EventKind::SubtaskCancelled { .. }) && is_subtask(k, "a")),
        1
    );
    assert_eq!(
        h.count(|k| matches!(k, EventKind::SubtaskBlocked { .. }) && is_subtask(k, "c")),
        1
    );
    assert!(h.worker_requests("c").is_empty());
    let synthesis = h.only(Call::Synthesis).user();
    let missing = missing_section(&synthesis);
    assert!(
        missing.contains(&title("a")) && missing.contains("cancelled"),
        "{missing}"
    );
}

#[tokio::test]
async fn cancelling_the_run_ends_it_promptly_as_cancelled() {
    let slow = Reply::text("too late").delay(Duration::from_secs(8));
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[]), ("c", &["a"])]))
        .worker("a", always(slow.clone()))
        .worker("b", always(slow));
    let mut h = Harness::start(script).await;
    h.until("a started", started("a")).await;
    h.until("b started", started("b")).await;
    let cancelled_at = Instant::now();
    h.steer(RunCommand::CancelRun);
    let end = h.finished().await;

    assert!(
        cancelled_at.elapsed() < Duration::from_secs(2),
        "cancelling took {:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(end.status, RunStatus::Cancelled);
    assert_eq!(
        h.count(|k| matches!(k, EventKind::SubtaskCancelled { .. })),
        3
    );
    assert!(h.requests(Call::Synthesis).is_empty());
}

// ---- re-running and editing ---------------------------------------------------------------

#[tokio::test]
async fn rerunning_a_fixed_subtask_runs_its_blocked_dependents_and_synthesises_again() {
    let mut options = Options::default();
    options.settings.retries = 0;
    let plan = plan_json(&[("a", &[]), ("b", &[]), ("c", &["a"])]);
    let script = Script::new(plan.clone()).worker("a", always(Reply::status(503, "down for now")));
    let mut h = Harness::start_with(script, options).await;
    assert_eq!(h.finished().await.status, RunStatus::Partial);
    assert!(h.worker_requests("c").is_empty());
    let first_half = h.log.len();

    h.server.set_script(Script::new(plan).into_fn());
    h.steer(RunCommand::RetrySubtask(sid("a")));
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Succeeded, "events: {:?}", h.kinds());
    assert_eq!((end.succeeded, end.failed), (3, 0));

    let later: Vec<String> = h.log[first_half..]
        .iter()
        .map(|e| describe(&e.kind))
        .collect();
    let position = |name: &str| {
        later
            .iter()
            .position(|k| k == name)
            .unwrap_or_else(|| panic!("no {name} after the re-run: {later:?}"))
    };
    assert!(position("subtask_succeeded(a)") < position("subtask_started(c)"));
    assert!(position("subtask_succeeded(c)") < position("synthesis_started"));
    assert!(position("synthesis_started") < position("synthesis_finished"));
    assert_eq!(
        h.count(|k| matches!(k, EventKind::SynthesisStarted { .. })),
        2
    );
    assert_eq!(h.requests(Call::Synthesis).len(), 2);
    assert_eq!(
        h.worker_requests("b").len(),
        1,
        "b's result was kept, not redone"
    );
    let c = h.worker_requests("c").remove(0).user();
    assert!(c.contains(&result_for(&title("a"))));
}

#[tokio::test]
async fn editing_a_running_subtask_sends_the_new_description_to_its_worker() {
    const NEW: &str = "Look only at bus fleets in Oslo, please.";
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[])])).worker(
        "a",
        mock::sequence(vec![
            Reply::text("the old answer").delay(Duration::from_secs(8)),
            Reply::text(result_for(&title("a"))),
        ]),
    );
    let mut h = Harness::start(script).await;
    h.until("a started", started("a")).await;
    h.steer(RunCommand::EditSubtask {
        id: sid("a"),
        description: Some(NEW.to_owned()),
        worker: None,
    });
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Succeeded, "events: {:?}", h.kinds());

    let edited = h.find(|k| match k {
        EventKind::SubtaskEdited { description, .. } => Some(description.clone()),
        _ => None,
    });
    assert_eq!(edited.as_deref(), Some(NEW));
    let requests = h.worker_requests("a");
    assert_eq!(requests.len(), 2);
    assert!(!requests[0].user().contains(NEW));
    assert!(requests[1].user().contains(NEW), "{}", requests[1].user());
    let result = h.find(|k| match k {
        EventKind::SubtaskSucceeded {
            subtask, result, ..
        } if subtask == &sid("a") => Some(result.clone()),
        _ => None,
    });
    assert_eq!(result, Some(result_for(&title("a"))));
}

// ---- usage --------------------------------------------------------------------------------

#[tokio::test]
async fn run_usage_is_the_sum_of_planner_worker_and_synthesis_usage() {
    let plan = plan_json(&[("a", &[]), ("b", &[])]);
    let script = Script::new(plan.clone())
        .planner(move |_| Reply::text(plan.clone()).usage(100, 10))
        .worker("a", |_| Reply::text(result_for(&title("a"))).usage(20, 5))
        .worker("b", |_| Reply::text(result_for(&title("b"))).usage(30, 6))
        .synthesis(always(Reply::text(SYNTHESIS).usage(7, 3)));
    let mut h = Harness::start(script).await;
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Succeeded);
    assert_eq!(
        end.usage,
        Usage {
            tokens_in: 157,
            tokens_out: 24,
            estimated: false,
            cached_in: 0,
        }
    );
}

#[tokio::test]
async fn usage_the_provider_did_not_report_is_estimated_and_marked() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[])]))
        .worker("a", |_| Reply::text(result_for(&title("a"))).no_usage());
    let mut h = Harness::start(script).await;
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Succeeded);
    assert!(end.usage.estimated, "{:?}", end.usage);
    let per_subtask = |id: &'static str| {
        h.find(move |k| match k {
            EventKind::SubtaskSucceeded { subtask, usage, .. } if subtask == &sid(id) => {
                Some(*usage)
            }
            _ => None,
        })
        .expect("succeeded")
    };
    let a = per_subtask("a");
    assert!(a.estimated && a.tokens_in > 0 && a.tokens_out > 0, "{a:?}");
    assert!(!per_subtask("b").estimated);
}

// ---- the plan -----------------------------------------------------------------------------

#[tokio::test]
async fn invalid_plan_is_rejected_once_and_the_corrected_plan_runs() {
    let plan = plan_json(&[("a", &[]), ("b", &[])]);
    let script = Script::new(plan.clone()).planner(mock::sequence(vec![
        Reply::text("Here is my plan: {\"subtasks\": [oops"),
        Reply::text(plan),
    ]));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    let error = h
        .find(|k| match k {
            EventKind::PlanRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("the first plan was rejected");
    let planner = h.requests(Call::Planner);
    assert_eq!(planner.len(), 2);
    assert!(!planner[0].user().contains(&error));
    let second = planner[1].messages();
    assert!(
        second
            .iter()
            .any(|(role, text)| role == "assistant" && text.contains("oops")),
        "the previous answer is sent back: {second:?}"
    );
    assert!(planner[1].user().contains(&error), "{}", planner[1].user());
    assert_eq!(h.worker_requests("a").len(), 1);
}

#[tokio::test]
async fn planner_answering_a_cycle_twice_fails_the_run_naming_the_cycle() {
    let script = Script::new(plan_json(&[("a", &["b"]), ("b", &["a"])]));
    let mut h = Harness::start(script).await;
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Failed);
    let error = end.error.expect("a failed run says why");
    assert!(error.contains("cycle"), "{error}");
    assert_eq!(h.requests(Call::Planner).len(), 2);
    assert_eq!(h.count(|k| matches!(k, EventKind::PlanRejected { .. })), 2);
    assert!(h.requests(Call::Synthesis).is_empty());
}

// ---- the Anthropic protocol ---------------------------------------------------------------

#[tokio::test]
async fn full_run_over_the_anthropic_protocol_succeeds_with_its_headers() {
    let options = Options {
        protocol: Protocol::Anthropic,
        ..Options::default()
    };
    let script = Script::new(plan_json(&[("a", &[]), ("b", &["a"])]));
    let mut h = Harness::start_with(script, options).await;
    let end = h.finished().await;
    assert_eq!(end.status, RunStatus::Succeeded, "events: {:?}", h.kinds());

    let requests = h.server.requests();
    assert_eq!(requests.len(), 4, "planner, two workers, synthesis");
    for r in &requests {
        assert_eq!(r.protocol, Protocol::Anthropic);
        assert_eq!(r.header("x-api-key").as_deref(), Some(KEY));
        assert!(r.header("anthropic-version").is_some());
        assert!(r.header("authorization").is_none());
    }
    let text = h.find(|k| match k {
        EventKind::SynthesisFinished {
            text,
            synthesized: true,
            ..
        } => Some(text.clone()),
        _ => None,
    });
    assert_eq!(text.as_deref(), Some(SYNTHESIS));
}

#[tokio::test]
async fn anthropic_overloaded_529_is_retried_and_then_succeeds() {
    let options = Options {
        protocol: Protocol::Anthropic,
        ..Options::default()
    };
    let script = Script::new(plan_json(&[("a", &[])])).worker(
        "a",
        mock::sequence(vec![
            Reply::status(529, "Overloaded"),
            Reply::text(result_for(&title("a"))),
        ]),
    );
    let mut h = Harness::start_with(script, options).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let reason = h.find(|k| match k {
        EventKind::SubtaskRetrying { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason.as_deref(), Some("529"));
    assert_eq!(h.worker_requests("a").len(), 2);
}

// ---- the synthesis ------------------------------------------------------------------------

#[tokio::test]
async fn failing_synthesis_joins_the_worker_results_and_ends_partial() {
    let mut options = Options::default();
    options.settings.retries = 1;
    let script = Script::new(plan_json(&[("a", &[]), ("b", &[])]))
        .synthesis(always(Reply::status(500, "synthesiser on fire")));
    let mut h = Harness::start_with(script, options).await;
    let end = h.finished().await;

    assert_eq!(end.status, RunStatus::Partial);
    assert!(
        end.error
            .as_deref()
            .is_some_and(|e| e.contains("synthesiser on fire")),
        "{end:?}"
    );
    assert_eq!(h.requests(Call::Synthesis).len(), 2, "one retry");
    let finished = h.find(|k| match k {
        EventKind::SynthesisFinished {
            text,
            synthesized,
            error,
            ..
        } => Some((text.clone(), *synthesized, error.clone())),
        _ => None,
    });
    let (text, synthesized, error) = finished.expect("the synthesis finished");
    assert!(!synthesized);
    assert!(error.is_some_and(|e| e.contains("synthesiser on fire")));
    assert!(text.contains(&result_for(&title("a"))), "{text}");
    assert!(text.contains(&result_for(&title("b"))), "{text}");
}

// ---- limits, priorities, commands after the end ------------------------------------------

#[tokio::test]
async fn concurrency_limit_caps_the_worker_calls_in_flight() {
    let mut options = Options::default();
    options.settings.concurrency = 2;
    let slow =
        |r: &MockRequest| Reply::text(result_for(&title_of(r))).delay(Duration::from_millis(80));
    let script = Script::new(plan_json(&[
        ("a", &[]),
        ("b", &[]),
        ("c", &[]),
        ("d", &[]),
        ("e", &[]),
    ]))
    .worker("a", slow)
    .worker("b", slow)
    .worker("c", slow)
    .worker("d", slow)
    .worker("e", slow);
    let mut h = Harness::start_with(script, options).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let workers: Vec<MockRequest> = h
        .server
        .requests()
        .into_iter()
        .filter(|r| matches!(r.call(), Call::Worker(_)))
        .collect();
    assert_eq!(workers.len(), 5);
    assert_eq!(mock::max_in_flight(&workers.iter().collect::<Vec<_>>()), 2);
}

#[tokio::test]
async fn with_one_slot_higher_priority_subtasks_start_first() {
    let mut options = Options::default();
    options.settings.concurrency = 1;
    let mut plan = plan_value(&[("low", &[]), ("medium", &[]), ("high", &[])]);
    for (i, priority) in ["low", "medium", "high"].into_iter().enumerate() {
        plan["subtasks"][i]["priority"] = json!(priority);
    }
    let mut h = Harness::start_with(Script::new(plan.to_string()), options).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let order: Vec<Call> = h
        .server
        .requests()
        .iter()
        .map(MockRequest::call)
        .filter(|c| matches!(c, Call::Worker(_)))
        .collect();
    let expected: Vec<Call> = ["high", "medium", "low"]
        .into_iter()
        .map(|id| Call::Worker(title(id)))
        .collect();
    assert_eq!(order, expected);
}

#[tokio::test]
async fn resynthesising_a_finished_run_writes_the_report_again() {
    let script = Script::new(plan_json(&[("a", &[])]));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    h.server.set_script(|r| match r.call() {
        Call::Synthesis => Reply::text("# Second report"),
        _ => Reply::status(400, "mock: only the synthesis may be called again"),
    });
    h.steer(RunCommand::Resynthesize);
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let texts: Vec<String> = h
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SynthesisFinished { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, [SYNTHESIS, "# Second report"]);
    assert_eq!(
        h.worker_requests("a").len(),
        1,
        "results are reused, not redone"
    );
}

#[tokio::test]
async fn shutdown_cancels_an_active_run_and_closes_the_event_stream() {
    let script = Script::new(plan_json(&[("a", &[])])).worker(
        "a",
        always(Reply::text("too late").delay(Duration::from_secs(8))),
    );
    let mut h = Harness::start(script).await;
    h.until("a started", started("a")).await;
    h.engine.send(maestro::protocol::Command::Shutdown);
    assert_eq!(h.finished().await.status, RunStatus::Cancelled);
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while h.events.recv().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the event channel stayed open after shutdown"
    );
}

#[tokio::test]
async fn steering_an_unknown_subtask_is_refused_and_changes_nothing() {
    let mut h = Harness::start(Script::new(plan_json(&[("a", &[])]))).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let before = h.log.len();
    h.steer(RunCommand::RetrySubtask(sid("nope")));
    // The engine handles commands one at a time and emits everything a command causes before
    // it reads the next, so the answer to a second command is a barrier: whatever the first
    // one wrongly started would be in the log before it.
    h.steer(RunCommand::CancelSubtask(sid("barrier")));
    h.until("the barrier's refusal", |k| {
        matches!(k, EventKind::CommandRefused { refusal: Refusal::UnknownSubtask { subtask }, .. }
            if subtask.as_str() == "barrier")
    })
    .await;
    let answers: Vec<&EventKind> = h.log[before..].iter().map(|e| &e.kind).collect();
    assert_eq!(
        answers,
        [
            &EventKind::CommandRefused {
                command: CommandName::RetrySubtask,
                refusal: Refusal::UnknownSubtask {
                    subtask: sid("nope")
                },
            },
            &EventKind::CommandRefused {
                command: CommandName::CancelSubtask,
                refusal: Refusal::UnknownSubtask {
                    subtask: sid("barrier")
                },
            },
        ]
    );
    assert_eq!(h.server.request_count(), 3, "planner, worker, synthesis");
}

#[tokio::test]
async fn steering_an_unknown_run_is_refused_naming_the_run() {
    let mut h = Harness::start(Script::new(plan_json(&[("a", &[])]))).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let stranger = RunId::new();
    h.engine.steer(stranger, RunCommand::Resynthesize);
    let event = tokio::time::timeout(WAIT, h.events.recv())
        .await
        .expect("an answer")
        .expect("the engine runs");
    assert_eq!(event.run, stranger);
    assert_eq!(
        event.kind,
        EventKind::CommandRefused {
            command: CommandName::Resynthesize,
            refusal: Refusal::UnknownRun { run: stranger },
        }
    );
}

#[tokio::test]
async fn planner_failing_with_500_is_retried_and_the_run_goes_on() {
    let plan = plan_json(&[("a", &[])]);
    let script = Script::new(plan.clone()).planner(mock::sequence(vec![
        Reply::status(500, "planner hiccup"),
        Reply::text(plan),
    ]));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    assert_eq!(h.requests(Call::Planner).len(), 2);
    assert_eq!(
        h.count(|k| matches!(k, EventKind::PlanningRetrying { reason, .. } if reason == "500")),
        1
    );
    assert_eq!(h.count(|k| matches!(k, EventKind::PlanRejected { .. })), 0);
}

#[tokio::test]
async fn editing_a_failed_subtasks_role_reruns_it_with_that_roles_prompt() {
    let mut options = Options::default();
    options.settings.retries = 0;
    let plan = plan_json(&[("a", &[])]);
    let script = Script::new(plan.clone()).worker("a", always(Reply::status(400, "no")));
    let mut h = Harness::start_with(script, options).await;
    assert_eq!(h.finished().await.status, RunStatus::Failed);
    h.server.set_script(Script::new(plan).into_fn());
    h.steer(RunCommand::EditSubtask {
        id: sid("a"),
        description: None,
        worker: Some("Critique".into()),
    });
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    let roles = builtin_roles();
    let prompt_of = |name: &str| {
        roles
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.system_prompt.trim().to_owned())
            .unwrap()
    };
    let requests = h.worker_requests("a");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].system(), prompt_of("research"));
    assert_eq!(requests[1].system(), prompt_of("critique"));
    let edited = h.find(|k| match k {
        EventKind::SubtaskEdited { worker, .. } => Some(worker.clone()),
        _ => None,
    });
    assert_eq!(edited.as_deref(), Some("critique"));
}

#[tokio::test]
async fn slow_stream_that_keeps_talking_is_not_an_idle_timeout() {
    let options = Options {
        idle_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    // Over a dozen chunks 100ms apart: far longer than the idle timeout in total, never
    // silent for it.
    let long = "word ".repeat(48);
    let script = Script::new(plan_json(&[("a", &[])])).worker("a", move |_| {
        Reply::text(long.clone()).gap(Duration::from_millis(100))
    });
    let mut h = Harness::start_with(script, options).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let a = h.worker_requests("a").remove(0);
    assert!(a.duration().unwrap() > Duration::from_millis(1000));
    assert_eq!(
        h.count(|k| matches!(k, EventKind::SubtaskRetrying { .. })),
        0
    );
}

#[tokio::test]
async fn events_of_a_clean_run_come_in_protocol_order() {
    let script = Script::new(plan_json(&[("a", &[]), ("b", &["a"])]));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);

    let run_level: Vec<String> = h
        .log
        .iter()
        .filter(|e| e.kind.subtask().is_none())
        .map(|e| describe(&e.kind))
        .filter(|k| !["synthesis_delta", "planning_delta", "plan_drafted"].contains(&k.as_str()))
        .collect();
    assert_eq!(
        run_level,
        [
            "run_started",
            "planning_started",
            "call_usage",
            "plan_ready",
            "synthesis_started",
            "call_usage",
            "synthesis_finished",
            "run_finished"
        ]
    );
    for id in ["a", "b"] {
        let mut kinds: Vec<String> = h
            .log
            .iter()
            .filter(|e| is_subtask(&e.kind, id))
            .map(|e| describe(&e.kind))
            .collect();
        kinds.dedup();
        let delta = format!("subtask_delta({id})");
        assert_eq!(
            kinds,
            [
                format!("subtask_started({id})"),
                delta,
                format!("call_usage({id})"),
                format!("subtask_succeeded({id})")
            ]
        );
    }
    let synthesis_deltas: String = h
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SynthesisDelta { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(synthesis_deltas, SYNTHESIS);
    assert!(h.log.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
}

#[tokio::test]
async fn openai_key_with_invalid_characters_fails_at_once_naming_the_key() {
    let server = MockServer::start(Script::new(plan_json(&[("a", &[])])).into_fn()).await;
    let provider: Arc<dyn Provider> = Arc::new(OpenAi::new(OpenAiConfig {
        base_url: server.openai_base_url(),
        api_key: Some(ApiKey::new("sk-bad\nkey".into())),
        stream: true,
        include_usage: true,
        idle_timeout: Duration::from_secs(5),
        token_param: None,
    }));
    let (engine, mut events) = Engine::spawn(provider, settings(), executor());
    engine.start_run(QUERY, None);
    let mut retried = 0;
    let error = loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("the run ends")
            .expect("the engine runs");
        match event.kind {
            EventKind::PlanningRetrying { .. } => retried += 1,
            EventKind::RunFinished { status, error, .. } => {
                assert_eq!(status, RunStatus::Failed);
                break error.unwrap_or_default();
            }
            _ => {}
        }
    };
    assert_eq!(server.request_count(), 0);
    assert_eq!(retried, 0, "a bad key is not worth another attempt");
    assert!(error.contains("API key"), "{error}");
}

/// A provider with a bug: it panics on worker calls.
struct PanickingWorkers;

impl Provider for PanickingWorkers {
    fn name(&self) -> &str {
        "panicking"
    }
    fn complete(
        &self,
        request: maestro::llm::ChatRequest,
        _sink: maestro::llm::DeltaSink,
    ) -> maestro::llm::CallFuture<'_> {
        Box::pin(async move {
            match request.role {
                maestro::protocol::CallRole::Planner => Ok(maestro::llm::Completion {
                    text: plan_json(&[("a", &[])]),
                    usage: None,
                    ..Default::default()
                }),
                maestro::protocol::CallRole::Worker | maestro::protocol::CallRole::Validator => {
                    panic!("a provider bug")
                }
                maestro::protocol::CallRole::Synthesizer => Ok(maestro::llm::Completion {
                    text: "report".into(),
                    usage: None,
                    ..Default::default()
                }),
            }
        })
    }
}

#[tokio::test]
async fn a_panicking_provider_fails_the_call_and_the_run_still_ends() {
    let (engine, mut events) = Engine::spawn(Arc::new(PanickingWorkers), settings(), executor());
    engine.start_run(QUERY, None);
    let mut failure = None;
    let status = loop {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("the run ends instead of hanging")
            .expect("the engine runs");
        match event.kind {
            EventKind::SubtaskFailed { error, .. } => failure = Some(error),
            EventKind::RunFinished { status, .. } => break status,
            _ => {}
        }
    };
    assert_eq!(status, RunStatus::Failed, "its only subtask failed");
    assert!(
        failure
            .expect("the subtask failed")
            .contains("unexpectedly")
    );
}

// ---- in process, in paused time -------------------------------------------------------------
//
// Backoff, Retry-After and the call timeout are about time, so these tests run on tokio's
// paused clock: it jumps to the next timer whenever every task waits, which makes the waits
// exact and instant. That clock must not meet real sockets (it would jump while a request is
// on the wire), so these runs use an in-process provider instead of the mock server.

/// One call the in-process provider received, and when (on the paused clock).
#[derive(Debug, Clone)]
struct FakeCall {
    call: Call,
    at: tokio::time::Instant,
}

/// How the in-process provider answers the `n`th call (0-based) of one kind.
type FakeScript = dyn Fn(&Call, usize) -> (Duration, Result<String, CallError>) + Send + Sync;

/// A provider without sockets: answers from a script after a delay on tokio's clock.
struct Fake {
    script: Box<FakeScript>,
    calls: Arc<std::sync::Mutex<Vec<FakeCall>>>,
}

impl Provider for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        Box::pin(async move {
            let call = match request.role {
                CallRole::Planner => Call::Planner,
                CallRole::Synthesizer => Call::Synthesis,
                CallRole::Validator => Call::Unknown,
                CallRole::Worker => {
                    let user = request
                        .messages
                        .iter()
                        .map(|m| m.content.as_str())
                        .collect::<String>();
                    let title = user
                        .split("# Your subtask: ")
                        .nth(1)
                        .and_then(|rest| rest.lines().next())
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                    Call::Worker(title)
                }
            };
            let n = {
                let mut calls = self.calls.lock().expect("the call log");
                let n = calls.iter().filter(|c| c.call == call).count();
                calls.push(FakeCall {
                    call: call.clone(),
                    at: tokio::time::Instant::now(),
                });
                n
            };
            let (delay, result) = (self.script)(&call, n);
            tokio::time::sleep(delay).await;
            let text = result?;
            sink.send(&text);
            Ok(Completion {
                text,
                usage: Some(Usage {
                    tokens_in: 10,
                    tokens_out: 5,
                    estimated: false,
                    cached_in: 0,
                }),
                ..Default::default()
            })
        })
    }
}

/// An engine over the in-process provider and everything it emitted so far.
struct InProcess {
    engine: EngineHandle,
    events: UnboundedReceiver<Event>,
    calls: Arc<std::sync::Mutex<Vec<FakeCall>>>,
    log: Vec<(tokio::time::Instant, Event)>,
}

/// A virtual deadline: on the paused clock a hang jumps straight to it and fails the test.
const VIRTUAL_WAIT: Duration = Duration::from_secs(24 * 3600);

impl InProcess {
    /// Planner answers `plan`; the synthesis answers `SYNTHESIS`; workers as `worker` says
    /// for (subtask title, nth call), at once unless it says otherwise.
    fn spawn(
        plan: String,
        settings: RunSettings,
        executor: ExecutorSettings,
        worker: impl Fn(&str, usize) -> (Duration, Result<String, CallError>) + Send + Sync + 'static,
    ) -> Self {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let provider = Fake {
            script: Box::new(move |call, n| match call {
                Call::Planner => (Duration::ZERO, Ok(plan.clone())),
                Call::Synthesis => (Duration::ZERO, Ok(SYNTHESIS.to_owned())),
                Call::Worker(title) => worker(title, n),
                Call::Unknown => (Duration::ZERO, Err(CallError::fatal("?", "unknown"))),
            }),
            calls: calls.clone(),
        };
        let (engine, events) = Engine::spawn(Arc::new(provider), settings, executor);
        Self {
            engine,
            events,
            calls,
            log: Vec::new(),
        }
    }

    /// Receive events (of any run) until one of run `run` matches.
    async fn until(&mut self, run: RunId, pred: impl Fn(&EventKind) -> bool) -> EventKind {
        let deadline = tokio::time::Instant::now() + VIRTUAL_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    let matched = event.run == run && pred(&event.kind);
                    let kind = event.kind.clone();
                    self.log.push((tokio::time::Instant::now(), event));
                    if matched {
                        return kind;
                    }
                }
                Ok(None) => panic!("the engine stopped; events: {:?}", self.kinds()),
                Err(_) => panic!("no such event; events: {:?}", self.kinds()),
            }
        }
    }

    async fn finished(&mut self, run: RunId) -> RunStatus {
        match self
            .until(run, |k| matches!(k, EventKind::RunFinished { .. }))
            .await
        {
            EventKind::RunFinished { status, .. } => status,
            _ => unreachable!(),
        }
    }

    fn kinds(&self) -> Vec<String> {
        self.log.iter().map(|(_, e)| describe(&e.kind)).collect()
    }

    fn worker_calls(&self, id: &str) -> Vec<tokio::time::Instant> {
        self.calls
            .lock()
            .expect("the call log")
            .iter()
            .filter(|c| c.call == Call::Worker(title(id)))
            .map(|c| c.at)
            .collect()
    }

    fn all_calls(&self) -> Vec<Call> {
        let calls = self.calls.lock().expect("the call log");
        calls.iter().map(|c| c.call.clone()).collect()
    }

    /// When the first event matching `pred` arrived.
    fn when(&self, pred: impl Fn(&EventKind) -> bool) -> Option<tokio::time::Instant> {
        self.log
            .iter()
            .find(|(_, e)| pred(&e.kind))
            .map(|(at, _)| *at)
    }
}

fn answer(id: &str) -> (Duration, Result<String, CallError>) {
    (Duration::ZERO, Ok(result_for(&title(id))))
}

fn real_backoff() -> RunSettings {
    RunSettings {
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(30),
        retry_after_limit: Duration::from_secs(120),
        ..settings()
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_exactly_the_delays_it_announces_and_grows() {
    let mut e = InProcess::spawn(
        plan_json(&[("a", &[])]),
        real_backoff(),
        executor(),
        |_, n| match n {
            0 | 1 => (
                Duration::ZERO,
                Err(CallError::from_status(500, "upstream broke".into(), None)),
            ),
            _ => answer("a"),
        },
    );
    let begun = std::time::Instant::now();
    let run = e.engine.start_run(QUERY, None);
    assert_eq!(e.finished(run).await, RunStatus::Succeeded);

    let delays: Vec<u64> = e
        .log
        .iter()
        .filter_map(|(_, ev)| match ev.kind {
            EventKind::SubtaskRetrying { delay_ms, .. } => Some(delay_ms),
            _ => None,
        })
        .collect();
    let calls = e.worker_calls("a");
    assert_eq!(calls.len(), 3);
    assert_eq!(delays.len(), 2);
    // Equal jitter: the nth retry waits between half of and the full base × 2ⁿ.
    assert!((500..=1000).contains(&delays[0]), "{delays:?}");
    assert!((1000..=2000).contains(&delays[1]), "{delays:?}");
    for (k, delay) in delays.iter().enumerate() {
        let waited = calls[k + 1] - calls[k];
        // The timer wheel counts whole milliseconds; the announced delay is rounded down.
        assert!(
            waited >= Duration::from_millis(*delay) && waited <= Duration::from_millis(delay + 1),
            "retry {k}: announced {delay} ms, waited {waited:?}"
        );
    }
    assert!(
        begun.elapsed() < Duration::from_secs(1),
        "paused time did not jump"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_worker_waits_exactly_its_retry_after() {
    let mut e = InProcess::spawn(
        plan_json(&[("a", &[])]),
        real_backoff(),
        executor(),
        |_, n| match n {
            0 => (
                Duration::ZERO,
                Err(CallError::from_status(
                    429,
                    "slow down".into(),
                    Some(Duration::from_secs(7)),
                )),
            ),
            _ => answer("a"),
        },
    );
    let run = e.engine.start_run(QUERY, None);
    assert_eq!(e.finished(run).await, RunStatus::Succeeded);
    let delay = e.log.iter().find_map(|(_, ev)| match ev.kind {
        EventKind::SubtaskRetrying { delay_ms, .. } => Some(delay_ms),
        _ => None,
    });
    assert_eq!(
        delay,
        Some(7000),
        "the Retry-After is the delay, not the backoff"
    );
    let calls = e.worker_calls("a");
    assert_eq!(calls[1] - calls[0], Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_limit_fails_at_once_instead_of_waiting() {
    let mut e = InProcess::spawn(
        plan_json(&[("a", &[]), ("b", &[])]),
        RunSettings {
            retry_after_limit: Duration::from_secs(5),
            ..real_backoff()
        },
        executor(),
        |title_, _| {
            if title_ == title("a") {
                let e = CallError::from_status(
                    429,
                    "come back tomorrow".into(),
                    Some(Duration::from_secs(60)),
                );
                (Duration::ZERO, Err(e))
            } else {
                answer("b")
            }
        },
    );
    let started = tokio::time::Instant::now();
    let run = e.engine.start_run(QUERY, None);
    assert_eq!(e.finished(run).await, RunStatus::Partial);
    assert_eq!(e.worker_calls("a").len(), 1);
    let failed = e
        .when(|k| matches!(k, EventKind::SubtaskFailed { error, .. } if error.contains("come back tomorrow")))
        .expect("a failed");
    assert_eq!(failed - started, Duration::ZERO, "it did not wait at all");
}

#[tokio::test(start_paused = true)]
async fn the_call_timeout_cuts_a_call_at_exactly_its_limit() {
    let mut settings = real_backoff();
    settings.retries = 0;
    let mut e = InProcess::spawn(
        plan_json(&[("a", &[]), ("b", &[])]),
        settings,
        ExecutorSettings {
            call_timeout: Duration::from_millis(500),
            ..executor()
        },
        |title_, _| {
            if title_ == title("a") {
                (Duration::from_secs(3600), Ok("too late".into()))
            } else {
                answer("b")
            }
        },
    );
    let run = e.engine.start_run(QUERY, None);
    assert_eq!(e.finished(run).await, RunStatus::Partial);
    let failure = e.log.iter().find_map(|(_, ev)| match &ev.kind {
        EventKind::SubtaskFailed {
            error, elapsed_ms, ..
        } => Some((error.clone(), *elapsed_ms)),
        _ => None,
    });
    let (error, elapsed_ms) = failure.expect("a failed");
    assert!(error.contains("no complete answer within 500ms"), "{error}");
    assert_eq!(elapsed_ms, 500);
}

// ---- resuming a saved run, and which runs the engine keeps ---------------------------------

fn saved_run(tasks: &[(&str, &[&str])]) -> SavedRun {
    let plan: Plan = serde_json::from_str(&plan_json(tasks)).expect("a plan");
    SavedRun {
        query: QUERY.to_owned(),
        plan,
        subtasks: Vec::new(),
        synthesis_attempts: 0,
        follow_up: None,
        context: Default::default(),
        sources: Vec::new(),
        report: None,
        usage: Usage::default(),
        elapsed_ms: 0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_calls_only_what_was_left_and_keeps_its_id() {
    let mut saved = saved_run(&[("a", &[]), ("b", &["a"]), ("c", &[])]);
    saved.subtasks = vec![SavedSubtask {
        id: sid("a"),
        attempts: 1,
        result: Some(SavedResult {
            text: "the saved finding".into(),
            usage: Usage::default(),
            elapsed_ms: 900,
            cut_off: false,
            cached: false,
            flagged: None,
        }),
    }];
    let mut e = InProcess::spawn(String::new(), settings(), executor(), |t, _| {
        (Duration::ZERO, Ok(format!("answer for {t}")))
    });
    let id = RunId::new();
    e.engine.resume_run(id, saved.clone());
    assert_eq!(e.finished(id).await, RunStatus::Succeeded);
    let mut calls = e.all_calls();
    calls.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        calls,
        [
            Call::Synthesis,
            Call::Worker(title("b")),
            Call::Worker(title("c"))
        ],
        "no planner, and a was not asked again"
    );
    assert!(e.log.iter().all(|(_, ev)| ev.run == id));

    e.engine.resume_run(id, saved);
    let refusal = e
        .until(id, |k| matches!(k, EventKind::CommandRefused { .. }))
        .await;
    assert_eq!(
        refusal,
        EventKind::CommandRefused {
            command: CommandName::ResumeRun,
            refusal: Refusal::RunOpen { run: id },
        }
    );
}

/// A run that is finished at once: every result saved, and a report.
fn complete_saved_run() -> SavedRun {
    let mut saved = saved_run(&[("a", &[])]);
    saved.subtasks = vec![SavedSubtask {
        id: sid("a"),
        attempts: 1,
        result: Some(SavedResult {
            text: "A".into(),
            usage: Usage::default(),
            elapsed_ms: 1,
            cut_off: false,
            cached: false,
            flagged: None,
        }),
    }];
    saved.report = Some(SavedReport {
        text: "report".into(),
        synthesized: true,
        usage: Usage::default(),
    });
    saved
}

#[tokio::test(start_paused = true)]
async fn finished_runs_stay_reachable_up_to_the_limit_then_the_oldest_is_dropped() {
    let mut e = InProcess::spawn(
        String::new(),
        settings(),
        ExecutorSettings {
            keep_finished: 2,
            ..executor()
        },
        |t, _| (Duration::ZERO, Ok(format!("answer for {t}"))),
    );
    let runs: Vec<RunId> = (0..3).map(|_| RunId::new()).collect();
    for &id in &runs {
        e.engine.resume_run(id, complete_saved_run());
        assert_eq!(e.finished(id).await, RunStatus::Succeeded);
    }
    assert!(e.all_calls().is_empty(), "complete saved runs make no call");

    // The first run to finish is the one dropped; the two later ones can still be reopened.
    e.engine.steer(runs[0], RunCommand::Resynthesize);
    let refusal = e
        .until(runs[0], |k| matches!(k, EventKind::CommandRefused { .. }))
        .await;
    assert_eq!(
        refusal,
        EventKind::CommandRefused {
            command: CommandName::Resynthesize,
            refusal: Refusal::UnknownRun { run: runs[0] },
        }
    );
    for &id in &runs[1..] {
        e.engine.steer(id, RunCommand::Resynthesize);
        assert_eq!(e.finished(id).await, RunStatus::Succeeded);
    }
    assert_eq!(e.all_calls(), [Call::Synthesis, Call::Synthesis]);

    // Reopening a run makes it the latest to finish: run 1 is now the oldest and goes next.
    let fourth = RunId::new();
    e.engine.resume_run(fourth, complete_saved_run());
    assert_eq!(e.finished(fourth).await, RunStatus::Succeeded);
    e.engine.steer(runs[1], RunCommand::Resynthesize);
    e.engine.steer(runs[2], RunCommand::Resynthesize);
    let refusal = e
        .until(runs[1], |k| matches!(k, EventKind::CommandRefused { .. }))
        .await;
    assert!(matches!(
        refusal,
        EventKind::CommandRefused {
            refusal: Refusal::UnknownRun { .. },
            ..
        }
    ));
    assert_eq!(e.finished(runs[2]).await, RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn closing_a_run_cancels_it_if_open_and_forgets_it() {
    let mut e = InProcess::spawn(plan_json(&[("a", &[])]), settings(), executor(), |_, _| {
        (Duration::from_secs(3600), Ok("never".into()))
    });
    let open = e.engine.start_run(QUERY, None);
    e.until(open, |k| matches!(k, EventKind::SubtaskStarted { .. }))
        .await;
    e.engine.send(Command::CloseRun { id: open });
    assert_eq!(e.finished(open).await, RunStatus::Cancelled);

    let done = RunId::new();
    e.engine.resume_run(done, complete_saved_run());
    assert_eq!(e.finished(done).await, RunStatus::Succeeded);
    e.engine.send(Command::CloseRun { id: done });

    for id in [open, done] {
        e.engine.steer(id, RunCommand::RetryFailed);
        let refusal = e
            .until(id, |k| matches!(k, EventKind::CommandRefused { .. }))
            .await;
        assert_eq!(
            refusal,
            EventKind::CommandRefused {
                command: CommandName::RetryFailed,
                refusal: Refusal::UnknownRun { run: id },
            }
        );
    }
}

#[tokio::test(start_paused = true)]
async fn keeping_no_finished_run_drops_each_as_it_ends() {
    let mut e = InProcess::spawn(
        plan_json(&[("a", &[])]),
        settings(),
        ExecutorSettings {
            keep_finished: 0,
            ..executor()
        },
        |_, _| answer("a"),
    );
    let run = e.engine.start_run(QUERY, None);
    assert_eq!(e.finished(run).await, RunStatus::Succeeded);
    e.engine.steer(run, RunCommand::Resynthesize);
    let refusal = e
        .until(run, |k| matches!(k, EventKind::CommandRefused { .. }))
        .await;
    assert!(
        matches!(
            refusal,
            EventKind::CommandRefused {
                refusal: Refusal::UnknownRun { .. },
                ..
            }
        ),
        "{refusal:?}"
    );
}

// ---- structured plans, streamed planning, planning again --------------------------------

/// The plan's JSON in pieces that end right after each subtask's object, so each streamed
/// piece completes one more subtask.
fn plan_pieces(tasks: &[(&str, &[&str])]) -> Vec<String> {
    let text = plan_json(tasks);
    let mut pieces = Vec::new();
    let mut rest = text.as_str();
    // Cut after each `}` that closes a subtask: the subtasks have no nested objects.
    const CLOSE: &str = "\"worker\":\"research\"}";
    while let Some(end) = rest.find(CLOSE) {
        let cut = end + CLOSE.len();
        pieces.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    pieces.push(rest.to_owned());
    pieces
}

#[tokio::test]
async fn subtasks_are_drafted_as_the_plan_streams_and_the_checked_plan_follows() {
    let tasks: &[(&str, &[&str])] = &[("a", &[]), ("b", &["a"]), ("c", &["a"])];
    let pieces = plan_pieces(tasks);
    assert_eq!(pieces.len(), 4, "{pieces:?}");
    let script = Script::new(plan_json(tasks))
        .planner(move |_| Reply::chunks(pieces.clone()).gap(Duration::from_millis(150)));
    let mut h = Harness::start(script).await;
    h.until("PlanReady", |k| matches!(k, EventKind::PlanReady { .. }))
        .await;
    let drafts: Vec<Vec<String>> = h
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanDrafted { subtasks, .. } => {
                Some(subtasks.iter().map(|s| s.id.to_string()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(drafts, [vec!["a"], vec!["a", "b"], vec!["a", "b", "c"]]);
    let streamed: String = h
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanningDelta { attempt: 1, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, plan_json(tasks));
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn the_planner_is_asked_for_the_plan_schema_and_a_rejected_answer_is_carried() {
    let prose = "I would look at emissions first, then at the grid.";
    let script = Script::new(plan_json(&[("a", &[])])).planner(move |_| Reply::text(prose));
    let mut h = Harness::start(script).await;
    let finished = h.finished().await;
    assert_eq!(finished.status, RunStatus::Failed);
    let planner = h.requests(Call::Planner);
    assert_eq!(planner.len(), 2, "asked once more after the first answer");
    for request in &planner {
        assert_eq!(request.response_format().as_deref(), Some("json_schema"));
        let schema = &request.body["response_format"]["json_schema"]["schema"];
        assert_eq!(schema["properties"]["subtasks"]["maxItems"], 8);
        let mut roles: Vec<String> = builtin_roles().into_iter().map(|r| r.name).collect();
        // The one role a planner may write itself, with its `role_prompt`.
        roles.push("custom".to_owned());
        assert_eq!(
            schema["properties"]["subtasks"]["items"]["properties"]["worker"]["enum"],
            json!(roles)
        );
    }
    let answers: Vec<(u32, String)> = h
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::PlanRejected {
                attempt, answer, ..
            } => Some((*attempt, answer.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(answers, [(1, prose.to_owned()), (2, prose.to_owned())]);
}

#[tokio::test]
async fn anthropic_plans_through_a_forced_submit_plan_tool() {
    let plan = plan_json(&[("a", &[]), ("b", &["a"])]);
    let script = Script::new(plan.clone()).planner(move |r| {
        if r.forced_tool().as_deref() == Some("submit_plan") {
            Reply::tool_call("submit_plan", plan.clone())
        } else {
            Reply::text("No tool was forced, so here is prose without a plan.")
        }
    });
    let options = Options {
        protocol: Protocol::Anthropic,
        ..Options::default()
    };
    let mut h = Harness::start_with(script, options).await;
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    let planner = h.only(Call::Planner);
    assert_eq!(planner.body["tools"][0]["name"], "submit_plan");
    assert_eq!(
        planner.body["tools"][0]["input_schema"]["properties"]["subtasks"]["type"],
        "array"
    );
    // The tool's input streamed as the planner's text, so subtasks were drafted from it.
    assert!(
        h.count(|k| matches!(k, EventKind::PlanningDelta { .. })) > 0,
        "{:?}",
        h.kinds()
    );
    assert!(h.count(|k| matches!(k, EventKind::PlanDrafted { .. })) > 0);
}

#[tokio::test]
async fn a_run_whose_planning_failed_plans_again_on_replan() {
    let plan = plan_json(&[("a", &[])]);
    let script = Script::new(plan.clone()).planner(mock::sequence(vec![
        Reply::text("No plan here."),
        Reply::text("Still no plan."),
        Reply::text(plan),
    ]));
    let mut h = Harness::start(script).await;
    assert_eq!(h.finished().await.status, RunStatus::Failed);
    h.steer(RunCommand::Replan);
    let started = h
        .until("PlanningStarted", |k| {
            matches!(k, EventKind::PlanningStarted { .. })
        })
        .await;
    assert!(matches!(
        started,
        EventKind::PlanningStarted { attempt: 3, .. }
    ));
    assert_eq!(h.finished().await.status, RunStatus::Succeeded);
    // The new plan was asked for afresh, not as a correction of the old answers.
    let third = h.requests(Call::Planner).remove(2);
    assert_eq!(third.messages().len(), 2, "system and query only");

    h.steer(RunCommand::Replan);
    let refused = h
        .until("CommandRefused", |k| {
            matches!(k, EventKind::CommandRefused { .. })
        })
        .await;
    assert!(matches!(
        refused,
        EventKind::CommandRefused {
            command: CommandName::Replan,
            refusal: Refusal::PlanExists
        }
    ));
}
