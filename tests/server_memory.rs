//! What maestro learns about a server and model, and keeps: `maestro doctor`'s structured-output
//! check, and the memory across processes (in the run database) of the structured-output mode
//! that worked and the parameters a model refuses, seen through the real binary against the
//! mock server and its request log.
//!
//! Children get a clean environment (no keys or `MAESTRO_*` from the developer's shell), a temp
//! home and a database of the test's own.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::mock::{Call, MockRequest, MockServer, Reply};
use common::{Output, Sandbox};
use serde_json::json;

const QUERY: &str = "What do heat pumps change for a city grid?";
const PROCESS_LIMIT: Duration = Duration::from_secs(40);
/// What a server that cannot do `json_schema` says (with a 500).
const NO_SCHEMA: &str = "'response_format' of type 'json_schema' is not supported";

/// A sandbox whose config names the mock.
fn sandbox_for(server: &MockServer) -> Sandbox {
    // The result cache is off: each run's worker must reach the server, whose requests
    // are what these tests read.
    Sandbox::new(&format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[cache]\nenabled = false\n",
        server.openai_base_url()
    ))
}

impl Sandbox {
    fn db(&self) -> PathBuf {
        self.path("runs.db")
    }

    async fn maestro(&self, args: &[&str]) -> Output {
        self.child(args)
            .db(self.db())
            .scrub("NO_COLOR")
            .env("XDG_STATE_HOME", self.path("state"))
            .limit(PROCESS_LIMIT)
            .lossy()
            .run()
            .await
    }

    async fn run(&self) -> Output {
        self.maestro(&["run", "--format", "json", "--retries", "0", QUERY])
            .await
    }

    /// The `server_facts` rows, as (model, fact, value).
    fn facts(&self) -> Vec<(String, String, String)> {
        let conn = rusqlite::Connection::open(self.db()).expect("open the database");
        let mut stmt = conn
            .prepare("SELECT model, fact, value FROM server_facts ORDER BY model, fact")
            .expect("the facts table");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }
}

/// The doctor's line for a check whose mark and name start with this.
fn line<'a>(out: &'a Output, start: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}:\n{out:?}"))
}

fn plan() -> String {
    json!({
        "query_analysis": "One step.",
        "subtasks": [{
            "id": "a", "worker": "research", "title": "Grid load",
            "description": "Find out about grid load.", "focus_areas": [],
            "depends_on": [], "priority": "high",
        }],
        "synthesis_guidance": "Be brief.",
    })
    .to_string()
}

/// A well-behaved answer to each call of a run, and "ready" to anything else (the doctor).
fn answer(request: &MockRequest) -> Reply {
    match request.call() {
        Call::Planner => Reply::text(plan()),
        Call::Worker(title) => Reply::text(format!("Findings on {title}.")),
        Call::Synthesis => Reply::text("# Report\n\nAll done."),
        Call::Unknown => Reply::text("{\"ok\": true}"),
    }
}

/// The server of the field report: `json_schema` is a 500, `json_object` is fine.
fn rejects_json_schema(request: &MockRequest) -> Reply {
    match request.response_format().as_deref() {
        Some("json_schema") => Reply::status(500, NO_SCHEMA),
        _ => answer(request),
    }
}

/// A server that rejects both JSON modes (a 400 naming `response_format`).
fn rejects_json_modes(request: &MockRequest) -> Reply {
    match request.response_format().as_deref() {
        Some("json_schema") => Reply::status(500, NO_SCHEMA),
        Some(_) => Reply::status(400, "Unrecognized request argument: response_format"),
        None => answer(request),
    }
}

/// OpenAI's reasoning models: `max_tokens` is refused, `max_completion_tokens` wanted.
fn refuses_max_tokens(request: &MockRequest) -> Reply {
    if request.field("max_tokens").is_some() {
        return Reply::status(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. \
             Use 'max_completion_tokens' instead.",
        )
        .error_code("unsupported_parameter")
        .error_param("max_tokens");
    }
    answer(request)
}

fn formats(requests: &[MockRequest]) -> Vec<Option<String>> {
    requests
        .iter()
        .filter(|r| r.is_planner())
        .map(MockRequest::response_format)
        .collect()
}

// ---- maestro doctor ------------------------------------------------------------------------

#[tokio::test]
async fn doctor_names_the_structured_output_mode_the_planner_gets() {
    // Accepts a JSON schema.
    let server = MockServer::start(answer).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox.maestro(&["doctor"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(line(&out, "✓ plans").contains("a JSON schema"), "{out:?}");
    let structured: Vec<_> = server
        .requests()
        .iter()
        .filter_map(MockRequest::response_format)
        .collect();
    assert_eq!(structured, ["json_schema"]);

    // A 500 on json_schema, json_object taken.
    let server = MockServer::start(rejects_json_schema).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox.maestro(&["doctor"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(line(&out, "✓ plans").contains("JSON mode"), "{out:?}");
    let structured: Vec<_> = server
        .requests()
        .iter()
        .filter_map(MockRequest::response_format)
        .collect();
    assert_eq!(structured, ["json_schema", "json_object"]);
    // What it found is remembered for the next runs.
    assert!(
        sandbox
            .facts()
            .iter()
            .any(|(_, fact, value)| fact == "structured_output" && value == "json_object"),
        "{:?}",
        sandbox.facts()
    );

    // Both rejected: plain text, with a word of warning and its fix, but not a failure.
    let server = MockServer::start(rejects_json_modes).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox.maestro(&["doctor"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(line(&out, "! plans").contains("plain text"), "{out:?}");
    let fix = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("! plans"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        fix.contains("fix:") && fix.contains("bigger") && fix.contains("[planner] structured"),
        "{out:?}"
    );
}

#[tokio::test]
async fn doctor_fails_a_forced_mode_the_server_refuses_and_skips_it_without_a_planner() {
    let server = MockServer::start(rejects_json_schema).await;
    let sandbox = sandbox_for(&server);
    let config = sandbox.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("the config");
    text.push_str("\n[planner]\nstructured = \"schema\"\n");
    std::fs::write(&config, text).expect("write the config");
    let out = sandbox.maestro(&["doctor"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(line(&out, "✗ plans").contains("json_schema"), "{out:?}");
    assert!(out.stdout.contains("\"auto\""), "{out:?}");

    // The planner model does not answer at all: nothing to check.
    let server = MockServer::always(Reply::status(404, "no such model")).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox.maestro(&["doctor"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(line(&out, "- plans").contains("not checked"), "{out:?}");
}

// ---- memory across runs --------------------------------------------------------------------

#[tokio::test]
async fn the_structured_mode_that_worked_is_used_first_by_the_next_run() {
    let server = MockServer::start(rejects_json_schema).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox.run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        formats(&server.requests()),
        [Some("json_schema".into()), Some("json_object".into())]
    );
    assert!(
        sandbox
            .facts()
            .iter()
            .any(|(_, fact, value)| fact == "structured_output" && value == "json_object"),
        "{:?}",
        sandbox.facts()
    );

    // Another process, the same database: no request is spent on json_schema.
    let before = server.request_count();
    let out = sandbox.run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let second = &server.requests()[before..];
    assert_eq!(formats(second), [Some("json_object".into())]);
    assert_eq!(second.len(), 3, "plan, one worker, synthesis: {second:#?}");

    // Another database knows nothing: the first request tries the best mode again.
    let other = sandbox_for(&server);
    let before = server.request_count();
    let out = other.run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        formats(&server.requests()[before..]),
        [Some("json_schema".into()), Some("json_object".into())]
    );
}

#[tokio::test]
async fn a_refused_max_tokens_is_not_sent_again_by_the_next_run() {
    let server = MockServer::start(refuses_max_tokens).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox.run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let refused = |requests: &[MockRequest]| {
        requests
            .iter()
            .filter(|r| r.field("max_tokens").is_some())
            .count()
    };
    assert_eq!(refused(&server.requests()), 1);
    assert!(
        sandbox
            .facts()
            .iter()
            .any(|(_, fact, value)| fact == "token_param" && value == "max_completion_tokens"),
        "{:?}",
        sandbox.facts()
    );

    let before = server.request_count();
    let out = sandbox.run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let second = &server.requests()[before..];
    assert_eq!(refused(second), 0, "{second:#?}");
    assert!(second[0].field("max_completion_tokens").is_some());
    assert_eq!(second.len(), 3, "plan, one worker, synthesis: {second:#?}");
}

#[tokio::test]
async fn the_doctor_replaces_what_runs_remembered_and_no_save_keeps_nothing() {
    // A server that rejected json_schema once, and has been upgraded since.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let upgraded = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    let (is_upgraded, is_down) = (upgraded.clone(), down.clone());
    let server = MockServer::start(move |request| {
        if is_down.load(Ordering::SeqCst) {
            Reply::status(404, "no such model")
        } else if is_upgraded.load(Ordering::SeqCst) {
            answer(request)
        } else {
            rejects_json_schema(request)
        }
    })
    .await;
    let sandbox = sandbox_for(&server);
    assert_eq!(sandbox.run().await.code, Some(0));
    upgraded.store(true, Ordering::SeqCst);
    let out = sandbox.maestro(&["doctor"]).await;
    assert!(line(&out, "✓ plans").contains("a JSON schema"), "{out:?}");
    assert!(
        sandbox
            .facts()
            .iter()
            .any(|(_, fact, value)| fact == "structured_output" && value == "json_schema"),
        "{:?}",
        sandbox.facts()
    );
    let before = server.request_count();
    assert_eq!(sandbox.run().await.code, Some(0));
    assert_eq!(
        formats(&server.requests()[before..]),
        [Some("json_schema".into())]
    );

    // A doctor whose planner model does not answer learns nothing, so it forgets nothing.
    down.store(true, Ordering::SeqCst);
    let facts = sandbox.facts();
    assert!(!facts.is_empty());
    assert_eq!(sandbox.maestro(&["doctor"]).await.code, Some(1));
    assert_eq!(sandbox.facts(), facts);

    // --no-save neither reads nor writes the memory.
    let server = MockServer::start(rejects_json_schema).await;
    let sandbox = sandbox_for(&server);
    let out = sandbox
        .maestro(&["run", "--no-save", "--format", "json", QUERY])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!sandbox.db().exists());
}
