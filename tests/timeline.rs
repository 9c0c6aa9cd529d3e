//! The run's timeline outside the dashboard: `maestro run --format markdown` ends with it as a
//! text chart, and `--format json` carries each subtask's ready, start and finish times and
//! each attempt's start, end and back-off, checked against when the mock server saw the calls;
//! `maestro export` of the saved run gives the same chart and times.
//!
//! The run is the real binary against the in-process mock: `a` fails once (500) and succeeds
//! on its retry, `b` waits for `a`, `c` fails for good (400).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::mock::{MockRequest, MockServer, Reply};
use common::plans::{result_for, title};
use common::{Output, Sandbox};
use serde_json::{Value, json};

const QUERY: &str = "How long does each part take?";
const WORK: Duration = Duration::from_millis(300);

fn plan() -> Value {
    let subtask = |id: &str, deps: &[&str]| {
        json!({
            "id": id,
            "worker": "research",
            "title": title(id),
            "description": format!("Find out about {id}."),
            "focus_areas": [],
            "depends_on": deps,
            "priority": "medium",
        })
    };
    json!({
        "query_analysis": "Parts.",
        "subtasks": [subtask("a", &[]), subtask("b", &["a"]), subtask("c", &[])],
        "synthesis_guidance": "Combine.",
    })
}

async fn run(format: &str) -> (Output, Vec<MockRequest>) {
    let (out, requests, _) = run_in(format, &["--no-save"]).await;
    (out, requests)
}

/// The run, with `extra` flags; the sandbox is kept for commands that read what it saved.
async fn run_in(format: &str, extra: &[&str]) -> (Output, Vec<MockRequest>, Sandbox) {
    let plan = plan().to_string();
    let a_calls = Arc::new(AtomicUsize::new(0));
    let server = MockServer::start(move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            return Reply::text("# Report\n\nDone.").delay(WORK);
        }
        match r.worker_title() {
            Some(t) if t == title("a") && a_calls.fetch_add(1, Ordering::SeqCst) == 0 => {
                Reply::status(500, "upstream hiccup").delay(WORK)
            }
            Some(t) if t == title("c") => Reply::status(400, "bad request").delay(WORK),
            Some(t) => Reply::text(result_for(&t)).delay(WORK),
            None => Reply::status(400, "mock: unexpected request"),
        }
    })
    .await;
    let config = format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 1\n\
         concurrency = 2\ntimeout_secs = 10\nidle_timeout_secs = 5\n",
        server.openai_base_url()
    );
    let sandbox = Sandbox::new(&config);
    let mut args = vec!["run", "--format", format];
    args.extend(extra);
    args.push(QUERY);
    let out = sandbox
        .child(&args)
        .scrub("NO_COLOR")
        .limit(Duration::from_secs(30))
        .run()
        .await;
    let requests = server.requests();
    server.shutdown().await;
    (out, requests, sandbox)
}

/// The chart of a markdown report that ends with one.
fn chart_of(out: &Output) -> String {
    let (_, timeline) = out
        .stdout
        .split_once("## Timeline\n\n```text\n")
        .unwrap_or_else(|| panic!("no timeline: {out:?}"));
    timeline
        .strip_suffix("```\n")
        .unwrap_or_else(|| panic!("the chart does not end the report: {out:?}"))
        .to_owned()
}

fn worker_requests<'a>(requests: &'a [MockRequest], id: &str) -> Vec<&'a MockRequest> {
    requests
        .iter()
        .filter(|r| r.worker_title() == Some(title(id)))
        .collect()
}

fn ms(from: Instant, to: Instant) -> i64 {
    to.duration_since(from).as_millis() as i64
}

fn number(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("a number of ms, not {v}"))
}

/// Times measured by the binary and by the mock differ by the network and the scheduling
/// between them, a few ms here; this much leaves room for a loaded machine.
const SLACK_MS: i64 = 150;

fn close(what: &str, binary: i64, mock: i64) {
    assert!(
        (binary - mock).abs() <= SLACK_MS,
        "{what}: the report says {binary} ms, the mock saw {mock} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_report_times_each_attempt_as_the_server_saw_the_calls() {
    let (out, requests) = run("json").await;
    assert_eq!(
        out.code,
        Some(3),
        "c failed, so the report has a gap: {out:?}"
    );
    let report = out.json();
    let subtask = |id: &str| -> Value {
        report["subtasks"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no subtask {id}: {report}"))
    };
    let (a, b, c) = (subtask("a"), subtask("b"), subtask("c"));
    let a_times = a["attempt_times"].as_array().expect("attempt_times");
    assert_eq!(a_times.len(), 2, "{a}");
    let a_requests = worker_requests(&requests, "a");
    let b_requests = worker_requests(&requests, "b");
    assert_eq!((a_requests.len(), b_requests.len()), (2, 1));

    // Both a and c were ready when the plan was; their first calls went out at once.
    assert_eq!(a["ready_ms"], c["ready_ms"], "{a}\n{c}");
    assert_eq!(a["started_ms"], a_times[0]["start_ms"]);
    let first = a_requests[0].received_at;
    let start0 = number(&a_times[0]["start_ms"]);
    // The retry: the second call began as long after the first as the server saw.
    close(
        "a's second attempt after its first",
        number(&a_times[1]["start_ms"]) - start0,
        ms(first, a_requests[1].received_at),
    );
    // Its back-off is the gap between the failed answer and the next call.
    assert_eq!(a_times[0]["wait_ms"], 0);
    let failed_end = a_requests[0].finished_at.expect("the 500 was sent");
    close(
        "a's back-off",
        number(&a_times[1]["wait_ms"]),
        ms(failed_end, a_requests[1].received_at),
    );
    assert!(number(&a_times[1]["wait_ms"]) >= 300, "{a}");
    // b became ready when a finished, and its call went out then.
    assert_eq!(b["ready_ms"], a["finished_ms"], "{a}\n{b}");
    close(
        "b's start after a's first call",
        number(&b["started_ms"]) - start0,
        ms(first, b_requests[0].received_at),
    );
    // Each attempt's end is after its start by about what the mock took to answer.
    for (attempt, request) in a_times.iter().zip(&a_requests) {
        let took = ms(request.received_at, request.finished_at.expect("answered"));
        close(
            "an attempt's length",
            number(&attempt["end_ms"]) - number(&attempt["start_ms"]),
            took,
        );
    }
    assert_eq!(c["attempt_times"].as_array().map(Vec::len), Some(1), "{c}");
    assert!(c["finished_ms"].is_number(), "a failure is a finish: {c}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_markdown_report_ends_with_the_timeline_and_its_critical_path() {
    let (out, _) = run("markdown").await;
    assert_eq!(out.code, Some(3), "{out:?}");
    let (_, timeline) = out
        .stdout
        .split_once("## Timeline\n\n```text\n")
        .unwrap_or_else(|| panic!("no timeline: {out:?}"));
    let chart = timeline
        .strip_suffix("```\n")
        .expect("the chart ends the report");
    let rows: Vec<&str> = chart.lines().take(5).collect();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| r.split_whitespace().nth(1).unwrap_or("").to_owned())
        .collect();
    assert_eq!(labels, ["planner", "a", "b", "c", "synthesis"], "{chart}");
    // a failed once and backed off; c failed for good; everything else is a solid call.
    assert!(
        rows[1].contains('▓') && rows[1].contains('╌') && rows[1].contains('█'),
        "{chart}"
    );
    assert!(
        rows[3].starts_with(" ✗ c") && rows[3].contains('▓'),
        "{chart}"
    );
    assert!(
        chart.contains("critical path: planner → a → b → synthesis"),
        "{chart}"
    );
    assert!(chart.contains("peak 2 of 2"), "{chart}");
    assert!(chart.contains("0 "), "an axis from 0: {chart}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_run_ends_with_the_timeline_of_its_saved_calls() {
    let (out, _, sandbox) = run_in("json", &[]).await;
    let ran = out.json();
    let id = ran["run_id"].as_str().expect("a run id").to_owned();
    // The JSON export gives each subtask the times the run gave it.
    let exported = sandbox
        .child(&["export", &id, "--format", "json"])
        .scrub("NO_COLOR")
        .limit(Duration::from_secs(20))
        .run()
        .await;
    assert_eq!(exported.code, Some(0), "{exported:?}");
    let exported = exported.json();
    for (r, e) in ran["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .zip(exported["subtasks"].as_array().expect("subtasks"))
    {
        for field in ["ready_ms", "started_ms", "finished_ms", "attempt_times"] {
            assert_eq!(r[field], e[field], "{} {field}", r["id"]);
        }
    }
    let export = sandbox
        .child(&["export", &id])
        .scrub("NO_COLOR")
        .limit(Duration::from_secs(20))
        .run()
        .await;
    assert_eq!(export.code, Some(0), "{export:?}");
    let chart = chart_of(&export);
    let rows: Vec<&str> = chart.lines().take(5).collect();
    assert!(rows[0].starts_with("*✓ planner"), "{chart}");
    assert!(
        rows[1].contains('▓') && rows[1].contains('╌'),
        "the retry: {chart}"
    );
    assert!(rows[4].starts_with("*✓ synthesis"), "{chart}");
    assert!(
        chart.contains("critical path: planner → a → b → synthesis"),
        "{chart}"
    );
}
