//! The real `maestro` binary as a subprocess: the demo provider, OpenAI-compatible runs
//! against the in-process mock server, output formats, the events file, `--plan`, terminal
//! safety of model text, configuration errors and their exit codes, key hygiene, and the
//! precedence of flags over environment over file.
//!
//! Every child gets a clean environment: no API keys, no `MAESTRO_*` from the developer's
//! shell, a config file of the test's own, and `HOME`/XDG directories in a temp dir so logs
//! land there.

mod common;

use std::time::{Duration, Instant};

use common::mock::{self, MockRequest, MockServer, Reply};
use common::plans::{plan_value, result_for, title};
use common::{Maestro, Output, Sandbox};
use serde_json::{Value, json};

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const SYNTHESIS: &str = "# EV report\n\nThe synthesised answer from the mock.";
/// The longest one child process may run before the test fails.
const PROCESS_LIMIT: Duration = Duration::from_secs(20);

// ---- running the binary -------------------------------------------------------------------

impl Sandbox {
    /// The child with a clean environment (no colour setting either) and a debug log.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Maestro {
        self.child(args)
            .scrub("MY_KEY")
            .scrub("NO_COLOR")
            .env("MAESTRO_LOG", "debug")
            .envs(env)
            .limit(PROCESS_LIMIT)
    }

    /// Run to the end (killed after `PROCESS_LIMIT`) without blocking the async runtime.
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).run().await
    }

    fn run_sync(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).run_blocking()
    }
}

// ---- scripting the mock -------------------------------------------------------------------

/// Planner answers `plan`; worker of subtask `failing` (if any) answers 500; other workers
/// answer `result_for(title)`; the synthesis answers `SYNTHESIS`.
fn script(
    plan: Value,
    failing: Option<&'static str>,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan.to_string();
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            return Reply::text(SYNTHESIS);
        }
        match r.worker_title() {
            Some(t) if failing.is_some_and(|id| t == title(id)) => {
                Reply::status(500, "the worker's upstream is broken")
            }
            Some(t) => Reply::text(result_for(&t)),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

/// A config for the OpenAI-compatible provider pointed at the mock, with no retries (the
/// binary's backoff is a second), no key (a local server needs none) and no start spacing
/// (these tests measure the run's own limits, which the provider's spacing would hide).
fn openai_config(server: &MockServer, extra: &str) -> String {
    format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\nstarts_per_second = 0\n\n\
         [limits]\nretries = 0\n\
         timeout_secs = 10\nidle_timeout_secs = 5\n{extra}",
        server.openai_base_url()
    )
}

fn no_escapes(what: &str, text: &str) {
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{what} contains ESC or BEL: {text:?}"
    );
}

// ---- the demo provider --------------------------------------------------------------------

const FAST_DEMO: &str = "[demo]\ntokens_per_second = 5000\nfailure_rate = 0.0\n";

#[test]
fn demo_run_prints_one_json_report_of_a_successful_simulated_run() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let out = sandbox.run_sync(&["run", "--format", "json", QUERY], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(report["status"], "succeeded", "{out:?}");
    assert_eq!(report["query"], QUERY);
    let subtasks = report["subtasks"].as_array().expect("a subtasks list");
    assert!(
        (4..=6).contains(&subtasks.len()),
        "{} subtasks",
        subtasks.len()
    );
    assert!(subtasks.iter().all(|s| s["status"] == "succeeded"));
    let synthesis = report["synthesis"].as_str().expect("a synthesis");
    assert!(synthesis.contains("Simulated"), "{synthesis}");
    assert_eq!(report["synthesized"], true);
}

#[test]
fn demo_plan_prints_plan_json_with_subtasks() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let out = sandbox.run_sync(&["plan", QUERY], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let plan = out.json();
    let subtasks = plan["subtasks"].as_array().expect("a subtasks list");
    assert!(!subtasks.is_empty());
    for s in subtasks {
        for key in [
            "id",
            "worker",
            "title",
            "description",
            "depends_on",
            "priority",
        ] {
            assert!(s.get(key).is_some(), "subtask without `{key}`: {s}");
        }
    }
    assert!(plan["synthesis_guidance"].is_string());
}

#[test]
fn version_and_help_exit_zero() {
    let sandbox = Sandbox::new("");
    let version = sandbox.run_sync(&["--version"], &[]);
    assert_eq!(version.code, Some(0), "{version:?}");
    assert!(
        version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    let help = sandbox.run_sync(&["--help"], &[]);
    assert_eq!(help.code, Some(0), "{help:?}");
    assert!(
        help.stdout.contains("run") && help.stdout.contains("--config"),
        "{help:?}"
    );
    for default in [
        format!("[default: {}]", maestro::defaults::CONCURRENCY),
        format!("[default: {}]", maestro::defaults::TIMEOUT_SECS),
    ] {
        assert!(help.stdout.contains(&default), "{default} not in {help:?}");
    }
    let run_help = sandbox.run_sync(&["run", "--help"], &[]);
    assert_eq!(run_help.code, Some(0), "{run_help:?}");
    assert!(run_help.stdout.contains("--events"), "{run_help:?}");
}

// ---- OpenAI-compatible runs against the mock ----------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn openai_run_prints_the_markdown_report_with_a_subtask_table_and_logs_to_the_data_dir() {
    let server = MockServer::start(script(plan_value(&["a", "b"]), None)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", QUERY], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with(SYNTHESIS), "{out:?}");
    assert!(
        out.stdout.contains("| id | title | role | status |"),
        "{out:?}"
    );
    for id in ["a", "b"] {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .unwrap_or_else(|| panic!("no table row for {id}: {out:?}"));
        assert!(
            row.contains(&title(id)) && row.contains("| done |"),
            "{row}"
        );
    }
    assert!(out.stderr.contains("run succeeded"), "{out:?}");
    assert_eq!(server.request_count(), 4);
    // Logs went to the sandbox's data dir, not the developer's.
    let log = sandbox.path("data").join("maestro").join("maestro.log");
    assert!(log.exists(), "no log at {}", log.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subtask_that_always_fails_makes_the_run_exit_3() {
    let server = MockServer::start(script(plan_value(&["a", "b"]), Some("b"))).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", QUERY], &[]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stdout.contains("the worker's upstream is broken"),
        "{out:?}"
    );
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("| b |"))
        .unwrap_or("");
    assert!(row.contains("| failed |"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn planner_answering_garbage_makes_the_run_exit_1_and_say_why() {
    let server = MockServer::always(Reply::text("I would rather write a poem.")).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", QUERY], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no usable plan"), "{out:?}");
    assert!(out.stderr.contains("no JSON object found"), "{out:?}");
    assert_eq!(server.request_count(), 2, "asked once more, then gave up");

    let plan = sandbox.run(&["plan", QUERY], &[]).await;
    assert_eq!(plan.code, Some(1), "{plan:?}");
    assert!(plan.stdout.is_empty(), "{plan:?}");
    assert!(plan.stderr.contains("no usable plan"), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_file_holds_one_json_event_per_line_from_run_started_to_run_finished() {
    let server = MockServer::start(script(plan_value(&["a", "b"]), None)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let events = sandbox.path("events.jsonl");
    let out = sandbox
        .run(
            &[
                "run",
                "--quiet",
                "--events",
                events.to_str().unwrap(),
                QUERY,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = std::fs::read_to_string(&events).expect("the events file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 8, "{text}");
    let run = lines[0]["run"].clone();
    for line in &lines {
        assert!(line.is_object());
        assert!(line["type"].is_string(), "{line}");
        assert!(line["ts_ms"].is_u64(), "{line}");
        assert_eq!(line["run"], run, "one run id throughout");
    }
    assert_eq!(lines[0]["type"], "run_started");
    assert_eq!(lines[0]["query"], QUERY);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "run_finished");
    assert_eq!(last["status"], "succeeded");
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    for expected in [
        "plan_ready",
        "subtask_started",
        "subtask_succeeded",
        "synthesis_finished",
    ] {
        assert!(types.contains(&expected), "no {expected}: {types:?}");
    }
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["ts_ms"].as_u64() <= w[1]["ts_ms"].as_u64()),
        "timestamps go forward"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_file_is_run_without_asking_the_planner() {
    let server = MockServer::start(script(plan_value(&["planned"]), None)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let plan_file = sandbox.path("plan.json");
    let plan = plan_value(&["x", "y", "z"]);
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let out = sandbox
        .run(
            &[
                "run",
                "--plan",
                plan_file.to_str().unwrap(),
                "--format",
                "json",
                QUERY,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let requests = server.requests();
    assert!(
        !requests.iter().any(MockRequest::is_planner),
        "the planner was called"
    );
    let mut titles: Vec<String> = requests
        .iter()
        .filter_map(MockRequest::worker_title)
        .collect();
    titles.sort();
    assert_eq!(titles, [title("x"), title("y"), title("z")]);
    let report = out.json();
    assert_eq!(report["subtasks"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_file_that_is_not_a_plan_is_a_usage_error() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let plan_file = sandbox.path("plan.json");
    std::fs::write(&plan_file, "{\"not\": \"a plan\"}").unwrap();
    let out = sandbox
        .run(&["run", "--plan", plan_file.to_str().unwrap(), QUERY], &[])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("plan.json"), "{out:?}");
}

// ---- terminal safety ----------------------------------------------------------------------

const HOSTILE: &str = "Evil \u{1b}]0;pwned\u{7}title and \u{1b}[2Jcleared screen.";

fn hostile_script() -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan_value(&["a"]).to_string();
    move |r| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.is_synthesis() {
            Reply::text(format!("# Report\n\n{HOSTILE}"))
        } else {
            Reply::text(format!("Worker says: {HOSTILE}"))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_from_models_never_reach_the_terminal_in_markdown_mode() {
    let server = MockServer::start(hostile_script()).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", QUERY], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    no_escapes("stdout", &out.stdout);
    no_escapes("stderr", &out.stderr);
    assert!(
        out.stdout.contains("Evil title and cleared screen."),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_in_json_output_are_escaped_not_raw() {
    let server = MockServer::start(hostile_script()).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", "--format", "json", QUERY], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    no_escapes("stdout", &out.stdout);
    no_escapes("stderr", &out.stderr);
    let report = out.json();
    let synthesis = report["synthesis"].as_str().unwrap();
    assert!(
        synthesis.contains(HOSTILE),
        "the JSON keeps the text as it was: {synthesis:?}"
    );
    let result = report["subtasks"][0]["result"].as_str().unwrap();
    assert!(result.contains(HOSTILE), "{result:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_in_provider_error_messages_never_reach_stderr() {
    let plan = plan_value(&["a", "b"]).to_string();
    let server = MockServer::start(move |r| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.is_synthesis() {
            Reply::text(SYNTHESIS)
        } else if r.worker_title() == Some(title("a")) {
            Reply::status(400, format!("bad: {HOSTILE}"))
        } else {
            Reply::text("fine")
        }
    })
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", QUERY], &[]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(
        out.stderr.contains("Evil title"),
        "the error is shown: {out:?}"
    );
    no_escapes("stdout", &out.stdout);
    no_escapes("stderr", &out.stderr);
}

// ---- configuration errors -----------------------------------------------------------------

#[test]
fn unknown_config_key_exits_2_naming_the_key_the_file_and_the_line() {
    let sandbox = Sandbox::new("provider = \"demo\"\n\n[limits]\nconcurrency = 2\nturbo = true\n");
    let out = sandbox.run_sync(&["run", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("turbo"), "{out:?}");
    assert!(out.stderr.contains("config.toml"), "{out:?}");
    assert!(out.stderr.contains("line 5"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn zero_concurrency_in_the_config_exits_2_pointing_at_its_line() {
    let sandbox = Sandbox::new("[limits]\n\nconcurrency = 0\n");
    let out = sandbox.run_sync(&["run", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("line 3"), "{out:?}");
    assert!(out.stderr.contains("above 0"), "{out:?}");
}

#[test]
fn anthropic_without_its_key_variable_exits_2_naming_the_variable() {
    let sandbox = Sandbox::new("");
    let out = sandbox.run_sync(&["--provider", "anthropic", "run", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("ANTHROPIC_API_KEY"), "{out:?}");
}

#[test]
fn openai_without_a_key_for_its_own_api_exits_2_naming_the_variable() {
    let sandbox = Sandbox::new("provider = \"openai\"\n");
    let out = sandbox.run_sync(&["plan", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("OPENAI_API_KEY"), "{out:?}");
}

#[test]
fn base_url_flag_that_is_not_http_exits_2() {
    let sandbox = Sandbox::new("provider = \"openai\"\n");
    let out = sandbox.run_sync(
        &["--base-url", "ftp://example.invalid/v1", "plan", QUERY],
        &[],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--base-url"), "{out:?}");
}

#[test]
fn named_key_variable_that_is_unset_exits_2_naming_it() {
    let sandbox = Sandbox::new(
        "provider = \"openai\"\n[openai]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         api_key_env = \"MY_KEY\"\n",
    );
    let out = sandbox.run_sync(&["run", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("MY_KEY"), "{out:?}");
}

#[test]
fn config_flag_naming_a_missing_file_exits_2() {
    let sandbox = Sandbox::new("");
    let missing = sandbox.path("nowhere.toml");
    let out = sandbox.run_sync(&["--config", missing.to_str().unwrap(), "run", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("nowhere.toml"), "{out:?}");
}

#[test]
fn unknown_flag_exits_2() {
    let sandbox = Sandbox::new("");
    let out = sandbox.run_sync(&["run", "--no-such-flag", QUERY], &[]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--no-such-flag"), "{out:?}");
}

// ---- keys ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn api_key_is_sent_as_a_bearer_token_and_never_printed() {
    const SECRET: &str = "fake-key-SECRET1234567890abcdef";
    let server = MockServer::always(Reply::status(401, "Incorrect API key provided.")).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    for format in ["markdown", "json"] {
        let out = sandbox
            .run(
                &["run", "--format", format, QUERY],
                &[("OPENAI_API_KEY", SECRET)],
            )
            .await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert!(out.stderr.contains("Incorrect API key provided"), "{out:?}");
        assert!(
            !out.stdout.contains("SECRET") && !out.stderr.contains("SECRET"),
            "{out:?}"
        );
    }
    let log = std::fs::read_to_string(sandbox.path("data").join("maestro").join("maestro.log"))
        .unwrap_or_default();
    assert!(!log.contains("SECRET"), "the key is in the log");
    let request = server.last_request();
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {SECRET}"))
    );
}

// ---- precedence ---------------------------------------------------------------------------

/// The most worker requests the mock had in flight at once.
fn max_in_flight(requests: &[MockRequest]) -> usize {
    let workers: Vec<&MockRequest> = requests
        .iter()
        .filter(|r| r.worker_title().is_some())
        .collect();
    mock::max_in_flight(&workers)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_flag_beats_environment_which_beats_the_config_file() {
    let plan = plan_value(&["a", "b", "c", "d"]).to_string();
    let server = MockServer::start(move |r| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.is_synthesis() {
            Reply::text(SYNTHESIS)
        } else {
            Reply::text("a worker result").delay(Duration::from_millis(150))
        }
    })
    .await;
    // The same run three times: the workers must be asked each time, not the result cache.
    let sandbox = Sandbox::new(&openai_config(
        &server,
        "concurrency = 4\n\n[cache]\nenabled = false\n",
    ));
    let mut seen = Vec::new();
    for (args, env) in [
        (vec!["run", "-q", QUERY], vec![]),
        (vec!["run", "-q", QUERY], vec![("MAESTRO_CONCURRENCY", "2")]),
        (
            vec!["--concurrency", "1", "run", "-q", QUERY],
            vec![("MAESTRO_CONCURRENCY", "2")],
        ),
    ] {
        let before = server.request_count();
        let out = sandbox.run(&args, &env).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        seen.push(max_in_flight(&server.requests()[before..]));
    }
    assert_eq!(seen, [4, 2, 1], "file 4, env 2, flag 1");
}

#[test]
fn config_file_given_by_flag_wins_over_the_environment_variable() {
    let sandbox = Sandbox::new("[limits]\nturbo = 1\n");
    let good = sandbox.path("good.toml");
    std::fs::write(&good, FAST_DEMO).unwrap();
    let out = sandbox.run_sync(&["--config", good.to_str().unwrap(), "plan", QUERY], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.json()["subtasks"].is_array());
}

#[test]
fn query_dash_is_read_from_standard_input() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let child = sandbox
        .command(&["run", "--format", "json", "-"], &[])
        .stdin(QUERY)
        .spawn();
    let out = child.wait();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["query"], QUERY);
    let empty = sandbox
        .command(&["run", "-"], &[])
        .stdin("  \n")
        .spawn()
        .wait();
    assert_eq!(empty.code, Some(2), "{empty:?}");
    assert!(empty.stderr.contains("empty"), "{empty:?}");
}

// ---- interruption -------------------------------------------------------------------------

/// What an interrupted run left behind.
struct Interrupted {
    out: Output,
    /// The events file as it was on disk while the run was still going (before the signal).
    events_before: String,
    /// The events file after the process ended.
    events_after: String,
    /// From the signal to the process's end.
    took: Duration,
}

/// Start a run of two subtasks where b depends on a and b's call hangs; once b's call arrives
/// (so a has succeeded), send `signal` to the process.
async fn interrupted_run(signal: &str, extra_args: &[&str]) -> Interrupted {
    let mut plan = plan_value(&["a", "b"]);
    plan["subtasks"][1]["depends_on"] = json!(["a"]);
    let plan = plan.to_string();
    let server = MockServer::start(move |r| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.worker_title() == Some(title("b")) {
            Reply::text("too late").delay(Duration::from_secs(15))
        } else {
            Reply::text(result_for(&title("a")))
        }
    })
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let events = sandbox.path("events.jsonl");
    let mut args = vec!["run", "--events", events.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    args.push(QUERY);
    let child = sandbox.command(&args, &[]).spawn();
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .requests()
        .iter()
        .any(|r| r.worker_title() == Some(title("b")))
    {
        assert!(Instant::now() < deadline, "b's worker was never called");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The engine emits a's success before it starts b; give the printer a moment to write it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events_before = std::fs::read_to_string(&events).unwrap_or_default();
    let sent_at = Instant::now();
    let kill = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    let took = sent_at.elapsed();
    let events_after = std::fs::read_to_string(&events).unwrap_or_default();
    Interrupted {
        out,
        events_before,
        events_after,
        took,
    }
}

/// Every line whole JSON and the text ending in a newline; the events' types.
fn event_types(text: &str) -> Vec<String> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a cut line: {text:?}"
    );
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            v["type"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_cancels_the_run_prints_the_finished_results_and_exits_130() {
    let Interrupted { out, took, .. } = interrupted_run("INT", &[]).await;
    assert_eq!(out.code, Some(130), "{out:?}");
    assert!(took < Duration::from_secs(5), "{out:?}");
    let row = |id: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {id} |")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("a").contains("| done |"), "{out:?}");
    assert!(row("b").contains("| cancelled |"), "{out:?}");
    // What finished is in the report itself, joined and marked, not only in the table.
    assert!(out.stdout.contains("Interrupted"), "{out:?}");
    assert!(out.stdout.contains(&result_for(&title("a"))), "{out:?}");
    assert!(!out.stdout.contains("No report"), "{out:?}");
    assert!(out.stderr.contains("cancelled"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_sighup_cancel_like_ctrl_c_print_the_report_and_keep_the_events() {
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let run = interrupted_run(signal, &["--format", "json"]).await;
        let out = &run.out;
        assert_eq!(out.code, Some(code), "SIG{signal}: {out:?}");
        assert!(run.took < Duration::from_secs(5), "SIG{signal}: {out:?}");
        let report = out.json();
        assert_eq!(report["status"], "cancelled", "SIG{signal}: {out:?}");
        assert_eq!(report["subtasks"][0]["status"], "succeeded");
        assert_eq!(report["subtasks"][0]["result"], result_for(&title("a")));
        assert_eq!(report["subtasks"][1]["status"], "cancelled");

        // Each event is on disk, whole, as soon as it happened.
        let before = event_types(&run.events_before);
        assert!(
            before.iter().any(|t| t == "subtask_succeeded"),
            "SIG{signal}: a's success was not on disk while b ran: {before:?}"
        );
        let after = event_types(&run.events_after);
        assert!(after.iter().any(|t| t == "subtask_cancelled"), "{after:?}");
        assert_eq!(after.last().map(String::as_str), Some("run_finished"));
    }
}

// ---- output that cannot be written --------------------------------------------------------

/// Run `command` with the given stdout and stderr (stdin null) and wait for it.
fn run_with(
    mut command: std::process::Command,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> std::process::ExitStatus {
    let mut child = command
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start maestro");
    let deadline = Instant::now() + PROCESS_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for maestro") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("maestro ran longer than {PROCESS_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full")
}

/// A pipe whose reading end is already closed: every write to it fails (EPIPE).
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer
}

#[test]
fn a_stderr_that_cannot_be_written_never_costs_the_report() {
    let sandbox = Sandbox::new(FAST_DEMO);
    for (what, stderr) in [
        ("/dev/full", std::process::Stdio::from(dev_full())),
        ("a closed pipe", std::process::Stdio::from(closed_pipe())),
    ] {
        let report = sandbox.path("report.json");
        let status = run_with(
            sandbox
                .command(&["run", "--format", "json", QUERY], &[])
                .command(),
            std::process::Stdio::from(std::fs::File::create(&report).unwrap()),
            stderr,
        );
        assert_eq!(status.code(), Some(0), "stderr to {what}");
        let text = std::fs::read_to_string(&report).unwrap();
        let report: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("stderr to {what}: no JSON report ({e}): {text}"));
        assert_eq!(report["status"], "succeeded", "stderr to {what}");
        let log = std::fs::read_to_string(sandbox.path("data").join("maestro").join("maestro.log"))
            .unwrap_or_default();
        assert!(log.contains("cannot write to stderr"), "not logged: {log}");
    }
}

#[test]
fn a_stdout_that_cannot_be_written_exits_4_and_says_so() {
    let sandbox = Sandbox::new(FAST_DEMO);
    for args in [
        vec!["run", "-q", QUERY],
        vec!["run", "-q", "--format", "json", QUERY],
        vec!["plan", QUERY],
    ] {
        let errors = sandbox.path("stderr.txt");
        let status = run_with(
            sandbox.command(&args, &[]).command(),
            std::process::Stdio::from(dev_full()),
            std::process::Stdio::from(std::fs::File::create(&errors).unwrap()),
        );
        let stderr = std::fs::read_to_string(&errors).unwrap();
        assert_eq!(status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.contains("to stdout"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

// ---- exit codes ---------------------------------------------------------------------------

/// Where a row of the exit-code table points the binary.
enum Setup {
    /// The demo provider, fast and without failures.
    Demo,
    /// The mock: plan a, b; b's worker always fails.
    Mock,
    /// The OpenAI provider at a port nothing listens on.
    Refused,
    /// This config file, as written.
    Config(&'static str),
}

/// The plan file (written to `plan.json` in the sandbox) of a `plan with …` row.
fn bad_plan(row: &str) -> Value {
    let mut plan = plan_value(&["a", "b"]);
    match row {
        "plan with a cycle" => {
            plan["subtasks"][0]["depends_on"] = json!(["b"]);
            plan["subtasks"][1]["depends_on"] = json!(["a"]);
        }
        "plan with a duplicate id" => plan["subtasks"][1]["id"] = json!("a"),
        "plan with an unknown dependency" => plan["subtasks"][1]["depends_on"] = json!(["nowhere"]),
        "plan with a subtask that is not an object" => plan["subtasks"][0] = json!(5),
        "plan with no subtasks" => plan["subtasks"] = json!([]),
        other => panic!("no plan {other}"),
    }
    plan
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_are_as_documented() {
    const PLAN: &str = "{plan}";
    const EVENTS: &str = "{events}";
    const MISSING_DIR: &str = "{missing}/events.jsonl";
    #[rustfmt::skip]
    let table: Vec<(&str, Setup, Vec<&str>, i32, &str)> = vec![
        ("success", Setup::Demo, vec!["run", "-q", QUERY], 0, ""),
        ("a failed subtask", Setup::Mock, vec!["run", "-q", QUERY], 3, ""),
        ("no plan (nothing listening)", Setup::Refused, vec!["run", "-q", QUERY], 1, ""),
        ("unknown flag", Setup::Demo, vec!["run", "--no-such-flag", QUERY], 2, "--no-such-flag"),
        ("empty query", Setup::Demo, vec!["run", " "], 2, "empty"),
        ("plan with a cycle", Setup::Mock, vec!["run", "--plan", PLAN, QUERY], 2, "cycle"),
        ("plan with a duplicate id", Setup::Mock, vec!["run", "--plan", PLAN, QUERY], 2, "share the id"),
        ("plan with an unknown dependency", Setup::Mock, vec!["run", "--plan", PLAN, QUERY], 2, "nowhere"),
        ("plan with a subtask that is not an object", Setup::Mock, vec!["run", "--plan", PLAN, QUERY], 2, "must be an object"),
        ("plan with no subtasks", Setup::Mock, vec!["run", "--plan", PLAN, QUERY], 2, "no subtasks"),
        ("events file in a missing dir", Setup::Mock, vec!["run", "--events", MISSING_DIR, QUERY], 2, "events file"),
        ("malformed base URL flag", Setup::Mock, vec!["--base-url", "http://[::1", "run", QUERY], 2, "--base-url"),
        ("malformed base URL in the file", Setup::Config("provider = \"openai\"\n[openai]\nbase_url = \"http://[::1\"\n"), vec!["run", QUERY], 2, "line 3"),
        ("temperature 9.5", Setup::Config("[limits]\ntemperature = 9.5\n"), vec!["run", QUERY], 2, "0 to 2"),
        ("temperature -1", Setup::Config("[limits]\ntemperature = -1\n"), vec!["run", QUERY], 2, "0 to 2"),
        ("temperature nan", Setup::Config("[limits]\ntemperature = nan\n"), vec!["run", QUERY], 2, "0 to 2"),
        ("temperature inf", Setup::Config("[limits]\ntemperature = inf\n"), vec!["run", QUERY], 2, "0 to 2"),
        ("events file that fills up", Setup::Demo, vec!["run", "-q", "--events", "/dev/full", QUERY], 4, "events file"),
    ];
    let server = MockServer::start(script(plan_value(&["a", "b"]), Some("b"))).await;
    for (name, setup, args, code, says) in table {
        let config = match setup {
            Setup::Demo => FAST_DEMO.to_owned(),
            Setup::Mock => openai_config(&server, ""),
            Setup::Refused => format!(
                "provider = \"openai\"\n[openai]\nbase_url = \"{}/v1\"\n[limits]\nretries = 0\n",
                mock::refused_url()
            ),
            Setup::Config(text) => text.to_owned(),
        };
        let sandbox = Sandbox::new(&config);
        let plan = sandbox.path("plan.json");
        if name.starts_with("plan with") {
            std::fs::write(&plan, bad_plan(name).to_string()).unwrap();
        }
        let events = sandbox.path("events.jsonl");
        let missing = sandbox.path("no-such-dir");
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace(PLAN, plan.to_str().unwrap())
                    .replace(EVENTS, events.to_str().unwrap())
                    .replace("{missing}", missing.to_str().unwrap())
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let before = server.request_count();
        let out = sandbox.run(&args, &[]).await;
        assert_eq!(out.code, Some(code), "{name}: {out:?}");
        assert!(out.stderr.contains(says), "{name}: {out:?}");
        if code == 2 {
            assert_eq!(server.request_count(), before, "{name}: something ran");
            assert!(out.stdout.is_empty(), "{name}: {out:?}");
        } else {
            assert!(!out.stdout.is_empty(), "{name}: no report: {out:?}");
        }
    }
}

// ---- terminal safety of planner-chosen ids ------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_in_planner_chosen_subtask_ids_never_reach_stderr() {
    let mut plan = plan_value(&["a", "b"]);
    let hostile_id = "a\u{1b}]0;pwned\u{7}\u{1b}[2J";
    plan["subtasks"][0]["id"] = json!(hostile_id);
    plan["subtasks"][1]["depends_on"] = json!([hostile_id]);
    let plan = plan.to_string();
    let server = MockServer::start(move |r| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.is_synthesis() {
            Reply::text(SYNTHESIS)
        } else if r.worker_title() == Some(title("a")) {
            Reply::status(400, "rejected")
        } else {
            Reply::text("fine")
        }
    })
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["run", QUERY], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    no_escapes("stdout", &out.stdout);
    no_escapes("stderr", &out.stderr);
}
