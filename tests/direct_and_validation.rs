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
    // The timeline has the planner and the one worker, and no synthesis row.
    let chart = out.stdout.split("## Timeline").nth(1).expect("a timeline");
    assert!(
        chart.contains("planner") && chart.contains(" a "),
        "{chart}"
    );
    assert!(!chart.contains("synthesis"), "{chart}");
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

// ---- the quality gate ---------------------------------------------------------------------------

/// Planner, workers and synthesis as `script`; the validator answers subtask `id`'s checks
/// with `verdicts[id]` in order (the last repeats), and PASS for any other.
fn gated(
    plan: Value,
    verdicts: &'static [(&'static str, &'static [&'static str])],
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let answer = script(plan);
    let seen = std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new());
    move |r| {
        let Some(t) = r.validator_title() else {
            return answer(r);
        };
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let n = seen.entry(t.clone()).or_insert(0);
        *n += 1;
        let text = verdicts
            .iter()
            .find(|(id, _)| title(id) == t)
            .map_or("PASS", |(_, list)| list[(*n - 1).min(list.len() - 1)]);
        Reply::text(text).usage(7, 3)
    }
}

fn validator_calls(server: &MockServer, id: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.validator_title() == Some(title(id)))
        .count()
}

fn worker_calls(server: &MockServer, id: &str) -> Vec<MockRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.worker_title() == Some(title(id)))
        .collect()
}

const BROAD: &str = "breadth_first";

#[tokio::test]
async fn validate_checks_each_result_with_the_validator_model_and_counts_its_tokens() {
    let server = MockServer::start(gated(classified(&["a", "b"], BROAD), &[])).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = run(
        &sandbox,
        &[
            "run",
            "--validate",
            "--validator-model",
            "checker",
            "--format",
            "json",
            QUERY,
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    for (i, id) in ["a", "b"].iter().enumerate() {
        assert_eq!(validator_calls(&server, id), 1);
        let validation = &json["subtasks"][i]["validation"];
        assert_eq!(validation["verdicts"][0]["verdict"], "pass", "{json}");
        assert_eq!(validation["flagged"], Value::Null);
    }
    let models: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.validator_title().is_some())
        .map(MockRequest::model)
        .collect();
    assert_eq!(models, ["checker", "checker"]);
    // Planner 100, workers 2 × 20, validators 2 × 7, synthesis 300.
    assert_eq!(json["usage"]["tokens_in"], 454);

    // Off by default: no validator call, no `validation` in the JSON.
    let before = server.request_count();
    let out = run(&sandbox, &["run", "--no-cache", "--format", "json", QUERY]).await;
    assert_eq!(
        server.request_count() - before,
        4,
        "planner, 2 workers, synthesis"
    );
    assert!(out.json()["subtasks"][0].get("validation").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn a_failed_check_reruns_the_subtask_with_the_reason_and_a_pass_clears_it() {
    let verdicts: &[(&str, &[&str])] = &[("a", &["FAIL: no source for the figure", "PASS"])];
    let server = MockServer::start(gated(classified(&["a", "b"], BROAD), verdicts)).await;
    let sandbox = Sandbox::new(&openai_config(&server, "\n[validation]\nenabled = true\n"));
    let out = run(&sandbox, &["run", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let workers = worker_calls(&server, "a");
    assert_eq!(workers.len(), 2);
    assert!(workers[1].user().contains("no source for the figure"));
    assert_eq!(validator_calls(&server, "a"), 2);
    let json = out.json();
    let a = &json["subtasks"][0];
    assert_eq!(a["attempts"], 2);
    assert_eq!(a["validation"]["verdicts"][0]["verdict"], "fail");
    assert_eq!(
        a["validation"]["verdicts"][0]["reason"],
        "no source for the figure"
    );
    assert_eq!(a["validation"]["verdicts"][1]["verdict"], "pass");
    assert_eq!(a["validation"]["flagged"], Value::Null);
    assert_eq!(json["status"], "succeeded");
    server.shutdown().await;
}

#[tokio::test]
async fn a_second_failed_check_keeps_the_result_flagged_everywhere_it_is_shown() {
    let verdicts: &[(&str, &[&str])] = &[("a", &["FAIL: misses the costs"])];
    let server = MockServer::start(gated(classified(&["a", "b"], BROAD), verdicts)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = run(&sandbox, &["run", "--validate", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "a flag fails nothing: {out:?}");
    assert_eq!(worker_calls(&server, "a").len(), 2, "one re-run only");
    let json = out.json();
    let a = &json["subtasks"][0];
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["validation"]["flagged"], "misses the costs");
    assert_eq!(
        a["validation"]["verdicts"].as_array().map(Vec::len),
        Some(2)
    );
    let synthesis = server
        .requests()
        .into_iter()
        .find(MockRequest::is_synthesis)
        .expect("a synthesis");
    assert!(
        synthesis
            .user()
            .contains("A reviewer flagged this result: misses the costs")
    );

    // Saved, and read back with its flag by `show` (JSON and markdown).
    let id = json["run_id"].as_str().expect("an id").to_owned();
    let shown = run(&sandbox, &["show", &id, "--format", "json"]).await;
    assert_eq!(
        shown.json()["subtasks"][0]["validation"]["flagged"],
        "misses the costs",
        "{shown:?}"
    );
    let shown = run(&sandbox, &["show", &id]).await;
    assert!(shown.stdout.contains("done (flagged)"), "{shown:?}");
    assert!(
        shown.stdout.contains("### Flagged by the validator"),
        "{shown:?}"
    );
    assert!(
        shown.stdout.contains("**a**: misses the costs"),
        "{shown:?}"
    );
    server.shutdown().await;
}

// ---- the demo provider ----------------------------------------------------------------------------

#[tokio::test]
async fn the_demo_answers_a_short_factual_question_directly_and_shows_a_fixed_fail() {
    let sandbox = Sandbox::new(
        "provider = \"demo\"\n[demo]\nfailure_rate = 0.0\ntokens_per_second = 100000\n",
    );
    let out = run(&sandbox, &["run", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    assert_eq!(json["direct"], true);
    assert_eq!(json["subtasks"].as_array().map(Vec::len), Some(1));

    let broad = "What are the impacts of EV adoption in cities?";
    let out = run(&sandbox, &["run", "--validate", "--format", "json", broad]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    assert_eq!(json["direct"], false);
    let subtasks = json["subtasks"].as_array().expect("subtasks");
    let evidence = subtasks
        .iter()
        .find(|s| s["title"] == "Evidence and data")
        .expect("the demo's evidence subtask");
    let verdicts: Vec<&str> = evidence["validation"]["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter_map(|v| v["verdict"].as_str())
        .collect();
    assert_eq!(verdicts, ["fail", "pass"]);
    assert_eq!(evidence["validation"]["flagged"], Value::Null);
    assert!(
        evidence["result"]
            .as_str()
            .is_some_and(|r| r.contains("Source of the main figure"))
    );
}
