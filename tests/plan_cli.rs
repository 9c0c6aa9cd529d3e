//! Structured plans through the real binary against the mock server: a server that rejects
//! `json_schema` with a 500 and accepts JSON mode (the fallback, and its memory within the
//! process), a small model that writes a plan only when a schema holds it to one, the forced
//! tool on Anthropic, and the rejected answer in `--events`.

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::{Output, Sandbox};
use serde_json::{Value, json};
use tempfile::TempDir;

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const PROCESS_LIMIT: Duration = Duration::from_secs(20);
const PROSE: &str = "Sure! I would look at emissions first, then at the grid.";

/// Run `maestro` with a config of the test's own and a clean environment.
async fn maestro(config: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, TempDir) {
    let sandbox = Sandbox::new(config);
    let out = sandbox
        .child(args)
        .scrub("NO_COLOR")
        .envs(env)
        .limit(PROCESS_LIMIT)
        .lossy()
        .run()
        .await;
    (out, sandbox.dir)
}

fn openai_config(server: &MockServer, extra: &str) -> String {
    format!(
        "provider = \"openai\"\n{extra}\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 10\n",
        server.openai_base_url()
    )
}

fn plan(ids: &[(&str, &[&str])]) -> String {
    let subtasks: Vec<Value> = ids
        .iter()
        .map(|(id, deps)| {
            json!({
                "id": id, "worker": "research", "title": format!("Subtask {id}"),
                "description": format!("Find out about {id}."), "depends_on": deps,
            })
        })
        .collect();
    json!({ "query_analysis": "q", "subtasks": subtasks, "synthesis_guidance": "g" }).to_string()
}

fn planner_formats(server: &MockServer) -> Vec<Option<String>> {
    server
        .requests()
        .iter()
        .filter(|r| r.is_planner())
        .map(MockRequest::response_format)
        .collect()
}

fn events(dir: &TempDir) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.path().join("events.jsonl")).expect("events file");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_schema_rejected_with_a_500_falls_back_to_json_mode_and_stays_there() {
    let asked = std::sync::atomic::AtomicUsize::new(0);
    let server = MockServer::start(move |r: &MockRequest| {
        if !r.is_planner() {
            return if r.is_synthesis() {
                Reply::text("# Report")
            } else {
                Reply::text("A finding.")
            };
        }
        match r.response_format().as_deref() {
            Some("json_schema") => {
                Reply::status(500, "response_format json_schema is not supported")
            }
            Some("json_object") => {
                // The first answer names an unknown dependency; the re-ask corrects it.
                if asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    Reply::text(plan(&[("a", &["zz"])]))
                } else {
                    Reply::text(plan(&[("a", &[]), ("b", &["a"])]))
                }
            }
            _ => Reply::text(PROSE),
        }
    })
    .await;
    let (out, dir) = maestro(
        &openai_config(&server, ""),
        &["run", "--quiet", "--events", "events.jsonl", QUERY],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    // The re-ask went straight to JSON mode: what worked was remembered.
    assert_eq!(
        planner_formats(&server),
        [
            Some("json_schema".to_owned()),
            Some("json_object".to_owned()),
            Some("json_object".to_owned())
        ]
    );
    let rejected: Vec<Value> = events(&dir)
        .into_iter()
        .filter(|e| e["type"] == "plan_rejected")
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]["error"].as_str().unwrap_or("").contains("zz"),
        "{rejected:?}"
    );
}

/// A small model that writes a plan only when a schema holds it to one.
fn schema_only(r: &MockRequest) -> Reply {
    if !r.is_planner() {
        return Reply::text("Text.");
    }
    match r.response_format() {
        Some(_) => Reply::text(plan(&[("a", &[])])),
        None => Reply::text(PROSE),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_plans_only_with_a_schema_gets_a_plan_unless_structure_is_off() {
    let server = MockServer::start(schema_only).await;
    let (out, _dir) = maestro(&openai_config(&server, ""), &["plan", QUERY], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let printed: Value = serde_json::from_str(&out.stdout).expect("the plan as JSON");
    assert_eq!(printed["subtasks"][0]["id"], "a");

    let server = MockServer::start(schema_only).await;
    let (out, _dir) = maestro(
        &openai_config(&server, "\n[planner]\nstructured = \"off\"\n"),
        &["plan", QUERY],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no usable plan"), "{out:?}");
    assert_eq!(planner_formats(&server), [None, None]);
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_plans_through_the_forced_tool() {
    let server =
        MockServer::start(
            |r: &MockRequest| match (r.is_planner(), r.forced_tool().as_deref()) {
                (true, Some("submit_plan")) => Reply::tool_call("submit_plan", plan(&[("a", &[])])),
                (true, _) => Reply::text(PROSE),
                (false, _) => Reply::text("Text."),
            },
        )
        .await;
    let config = format!(
        "provider = \"anthropic\"\n[anthropic]\nbase_url = \"{}\"\n",
        server.anthropic_base_url()
    );
    let (out, _dir) = maestro(
        &config,
        &["plan", QUERY],
        &[("ANTHROPIC_API_KEY", "anthropic-test-key")],
    )
    .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let printed: Value = serde_json::from_str(&out.stdout).expect("the plan as JSON");
    assert_eq!(printed["subtasks"][0]["id"], "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_rejected_in_the_events_carries_the_answer_sanitised() {
    let answer = "\u{1b}]0;owned\u{7}No plan today, \u{1b}[31msorry\u{1b}[0m.";
    let server = MockServer::always(Reply::text(answer)).await;
    let (out, dir) = maestro(
        &openai_config(&server, ""),
        &["run", "--quiet", "--events", "events.jsonl", QUERY],
        &[],
    )
    .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let answers: Vec<(u64, String)> = events(&dir)
        .iter()
        .filter(|e| e["type"] == "plan_rejected")
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap_or(0),
                e["answer"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            (1, "No plan today, sorry.".to_owned()),
            (2, "No plan today, sorry.".to_owned())
        ]
    );
}
