//! Direct answers and the quality gate through the real binary against the mock server: a
//! straightforward query answered by one worker call (and `--no-direct`), its resume with no
//! call; validator verdicts that pass, fail then pass on the re-run, and fail twice (the
//! result kept, flagged in the JSON, the report and the store).

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::plans::{plan_value, result_for, title};
use common::{Output, Sandbox};
use serde_json::Value;

const QUERY: &str = "What is the capital of France?";
const SYNTHESIS: &str = "# Synthesised\n\nThe synthesis from the mock.";
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

fn openai_config(server: &MockServer, extra: &str) -> String {
    format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 20\nidle_timeout_secs = 20\n{extra}",
        server.openai_base_url()
    )
}

async fn run(sandbox: &Sandbox, args: &[&str]) -> Output {
    sandbox
        .child(args)
        .env("NO_COLOR", "1")
        .db(sandbox.path("runs.db"))
        .limit(PROCESS_LIMIT)
        .run()
        .await
}

/// `plan_value(ids)` with the planner's classification.
fn classified(ids: &[&str], complexity: &str) -> Value {
    let mut plan = plan_value(ids);
    plan["complexity"] = complexity.into();
    plan
}

/// The planner answers `plan`, each worker its result, the synthesis `SYNTHESIS`.
fn script(plan: Value) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan.to_string();
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone()).usage(100, 50);
        }
        if r.is_synthesis() {
            return Reply::text(SYNTHESIS).usage(300, 80);
        }
        match r.worker_title() {
            Some(t) => Reply::text(result_for(&t)).usage(20, 10),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

fn synthesis_calls(server: &MockServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.is_synthesis())
        .count()
}

// ---- direct answers ---------------------------------------------------------------------------

#[tokio::test]
async fn a_straightforward_query_is_answered_directly_by_one_worker_call() {
    let server = MockServer::start(script(classified(&["a"], "straightforward"))).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));

    let out = run(&sandbox, &["run", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    assert_eq!(json["direct"], true);
    assert_eq!(json["complexity"], "straightforward");
    assert_eq!(json["plan"]["complexity"], "straightforward");
    assert_eq!(json["synthesis"], result_for(&title("a")));
    assert_eq!(json["subtasks"].as_array().map(Vec::len), Some(1));
    assert_eq!(server.request_count(), 2, "the planner and one worker");
    assert_eq!(synthesis_calls(&server), 0);
    // Tokens: the planner's and the worker's, nothing for a synthesis.
    assert_eq!(json["usage"]["tokens_in"], 120);

    let out = run(&sandbox, &["run", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(&result_for(&title("a"))), "{out:?}");
    assert!(
        out.stdout.contains("direct answer · straightforward"),
        "{out:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn no_direct_plans_works_and_synthesises_even_a_straightforward_query() {
    let server = MockServer::start(script(classified(&["a"], "straightforward"))).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = run(&sandbox, &["run", "--no-direct", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    assert_eq!(json["direct"], false);
    assert_eq!(json["complexity"], "straightforward");
    assert_eq!(json["synthesis"], SYNTHESIS);
    assert_eq!(synthesis_calls(&server), 1);

    // The config key does the same.
    let sandbox = Sandbox::new(&openai_config(&server, "\n[planner]\ndirect = false\n"));
    let out = run(&sandbox, &["run", "--format", "json", QUERY]).await;
    assert_eq!(out.json()["direct"], false, "{out:?}");
    assert_eq!(synthesis_calls(&server), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn a_broad_query_is_planned_and_synthesised_as_before() {
    let server = MockServer::start(script(classified(&["a", "b"], "breadth_first"))).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = run(&sandbox, &["run", "--format", "json", QUERY]).await;
    let json = out.json();
    assert_eq!(json["direct"], false, "{out:?}");
    assert_eq!(json["complexity"], "breadth_first");
    assert_eq!(json["synthesis"], SYNTHESIS);
    server.shutdown().await;
}

#[tokio::test]
async fn a_saved_direct_run_resumes_without_a_call_and_shows_as_direct() {
    let server = MockServer::start(script(classified(&["a"], "straightforward"))).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = run(&sandbox, &["run", "--format", "json", QUERY]).await;
    let id = out.json()["run_id"].as_str().expect("an id").to_owned();
    let before = server.request_count();

    let out = run(&sandbox, &["resume", &id, "--format", "json", "-q"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(server.request_count(), before, "nothing left to call");
    let json = out.json();
    assert_eq!(json["synthesis"], result_for(&title("a")));
    assert_eq!(json["direct"], true);

    let out = run(&sandbox, &["show", &id, "--format", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["direct"], true, "{out:?}");
    server.shutdown().await;
}
