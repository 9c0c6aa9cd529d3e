//! Cost estimates through the real binary and the mock server: prices in the JSON and markdown
//! reports (the shipped table found by a dated name, the config's `[prices]` over it, cached
//! input priced apart), the tokens of a failed attempt counted and priced, a model without a
//! price shown with tokens only, and `maestro history` / `show` pricing the saved calls.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::plans::{plan_value, result_for, title};
use common::{Output, Sandbox};
use serde_json::Value;

const QUERY: &str = "What does a heat pump cost to run?";
const SYNTHESIS: &str = "# Heat pumps\n\nThe synthesised answer.";
const LIMIT: Duration = Duration::from_secs(30);

/// Planner and synthesis as scripted; worker `a` is cut after Anthropic's `message_start`
/// reported 1000 input tokens on its first attempt, then answers with 400 of its 1000 input
/// tokens read from the prompt cache; worker `b` answers at once.
fn script() -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan_value(&["a", "b"]).to_string();
    let a_calls = Arc::new(AtomicUsize::new(0));
    move |r| {
        if r.is_planner() {
            return match r.forced_tool() {
                Some(tool) => Reply::tool_call(&tool, plan.clone()),
                None => Reply::text(plan.clone()),
            }
            .usage(2000, 500);
        }
        if r.is_synthesis() {
            return Reply::text(SYNTHESIS).usage(3000, 1000);
        }
        match r.worker_title() {
            Some(t) if t == title("a") => {
                if a_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Reply::cut_after(result_for(&t), 1).usage(1000, 50)
                } else {
                    Reply::text(result_for(&t))
                        .usage(1000, 100)
                        .cached_tokens(400)
                }
            }
            Some(t) => Reply::text(result_for(&t)).usage(1000, 100),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

/// Planner on the shipped table by a dated name; workers on a configured price; the
/// synthesiser on `gpt-4o`, whose shipped price the config replaces.
fn config(server: &MockServer) -> String {
    format!(
        "provider = \"anthropic\"\n[anthropic]\nbase_url = \"{}\"\n\n\
         [limits]\nretries = 1\ntimeout_secs = 20\nidle_timeout_secs = 20\n\n\
         [models]\nplanner = \"claude-3-5-sonnet-20241022\"\nworker = \"worker-x\"\n\
         synthesizer = \"gpt-4o\"\n\n\
         [prices.\"worker-x\"]\ninput = 10.0\noutput = 20.0\ncached_input = 5.0\n\n\
         [prices.\"gpt-4o\"]\ninput = 1.0\noutput = 1.0\n",
        server.anthropic_base_url()
    )
}

async fn maestro(sandbox: &Sandbox, args: &[&str]) -> Output {
    sandbox
        .child(args)
        .env("ANTHROPIC_API_KEY", "anthropic-test-key")
        .env("NO_COLOR", "1")
        .db(sandbox.path("runs.db"))
        .limit(LIMIT)
        .run()
        .await
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - expected).abs() < 1e-9)
}

// planner: 2000 × $3 + 500 × $15 = $0.0135 (claude-3-5-sonnet's shipped price)
const PLANNER: f64 = 0.0135;
// a, failed: 1000 in × $10 + 1 out × $20 (message_start reports one output token)
const A_FAILED: f64 = 0.010_02;
// a, retried: 600 fresh × $10 + 400 cached × $5 + 100 out × $20
const A_DONE: f64 = 0.01;
// b: 1000 × $10 + 100 × $20
const B: f64 = 0.012;
// synthesis: (3000 + 1000) × $1 (the config's gpt-4o, not the shipped one)
const SYNTH: f64 = 0.004;
const TOTAL: f64 = PLANNER + A_FAILED + A_DONE + B + SYNTH;

#[tokio::test(flavor = "multi_thread")]
async fn the_reports_price_every_call_failed_attempts_included() {
    let server = MockServer::start(script()).await;
    let sandbox = Sandbox::new(&config(&server));
    let out = maestro(&sandbox, &["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    let cost = &json["cost"];
    assert!(close(&cost["usd"], TOTAL), "{cost}");
    assert!(close(&cost["failed_usd"], A_FAILED), "{cost}");
    assert_eq!(cost["unpriced_tokens"], 0);
    assert!(cost["prices_date"].is_string(), "{cost}");
    let models: Vec<&str> = cost["by_model"]
        .as_array()
        .expect("by_model")
        .iter()
        .filter_map(|m| m["model"].as_str())
        .collect();
    assert_eq!(
        models,
        ["claude-3-5-sonnet-20241022", "worker-x", "gpt-4o"],
        "{cost}"
    );
    let worker = &cost["by_model"][1];
    assert_eq!(worker["calls"], 3, "{worker}");
    assert_eq!(worker["tokens_in"], 3000, "{worker}");
    assert_eq!(worker["cached_in"], 400, "{worker}");
    assert!(close(&worker["usd"], A_FAILED + A_DONE + B), "{worker}");
    let subtask = |id: &str| {
        json["subtasks"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(
        close(&subtask("a")["cost_usd"], A_FAILED + A_DONE),
        "{json}"
    );
    assert!(close(&subtask("b")["cost_usd"], B), "{json}");
    // The failed attempt's tokens are in the run's total too.
    assert_eq!(json["usage"]["tokens_in"], 2000 + 1000 + 1000 + 1000 + 3000);
    assert_eq!(json["usage"]["tokens_out"], 500 + 1 + 100 + 100 + 1000);

    // A fresh server, so `a` fails once again (and no cache answers for it).
    let server = MockServer::start(script()).await;
    let sandbox = Sandbox::new(&config(&server));
    let out = maestro(&sandbox, &["run", "-q", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let md = &out.stdout;
    assert!(
        md.contains("| id | title | role | status | time | tokens in/out | attempts | cost |"),
        "{md}"
    );
    assert!(md.contains("| ≈$0.020 |"), "a's two attempts: {md}");
    assert!(md.contains("| ≈$0.012 |"), "b: {md}");
    assert!(
        md.contains("≈$0.050 estimated (≈$0.010 on failed attempts)"),
        "{md}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_and_show_price_the_saved_calls() {
    let server = MockServer::start(script()).await;
    let sandbox = Sandbox::new(&config(&server));
    let out = maestro(&sandbox, &["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let live = out.json();

    let out = maestro(&sandbox, &["history"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.lines().next().unwrap_or("").contains("COST"),
        "{out:?}"
    );
    assert!(out.stdout.contains("≈$0.050"), "{out:?}");

    let out = maestro(&sandbox, &["history", "--json"]).await;
    let list = out.json();
    assert!(close(&list[0]["cost_usd"], TOTAL), "{list}");

    let id = live["run_id"].as_str().expect("a run id");
    let out = maestro(&sandbox, &["show", "--format", "json", id]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown = out.json();
    assert_eq!(shown["cost"], live["cost"], "show prices what run priced");
    assert_eq!(
        shown["subtasks"][0]["cost_usd"],
        live["subtasks"][0]["cost_usd"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_without_a_price_shows_tokens_only() {
    let server = MockServer::start(|r: &MockRequest| {
        if r.is_planner() {
            Reply::text(plan_value(&["a"]).to_string())
        } else {
            Reply::text("Some findings.").usage(100, 10)
        }
    })
    .await;
    let sandbox = Sandbox::new(&format!(
        "provider = \"openai\"\n[openai]\nbase_url = \"{}\"\n\n[models]\nworker = \
         \"mystery-model:7b\"\nplanner = \"mystery-model:7b\"\nsynthesizer = \"mystery-model:7b\"\n",
        server.openai_base_url()
    ));
    let out = maestro(&sandbox, &["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json = out.json();
    assert_eq!(json["cost"]["usd"], Value::Null, "{json}");
    assert_eq!(json["subtasks"][0]["cost_usd"], Value::Null, "{json}");
    assert!(
        json["cost"]["unpriced_tokens"].as_u64().unwrap_or(0) > 0,
        "{json}"
    );
    let out = maestro(&sandbox, &["run", "-q", QUERY]).await;
    assert!(!out.stdout.contains('$'), "{out:?}");
    assert!(!out.stdout.contains("| cost |"), "{out:?}");
    let out = maestro(&sandbox, &["history", "--json"]).await;
    assert_eq!(out.json()[0]["cost_usd"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_over_saved_runs_field_by_field() {
    let server = MockServer::start(script()).await;
    let sandbox = Sandbox::new(&config(&server));
    // No database yet: stats fails and does not create one.
    let out = maestro(&sandbox, &["stats"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!sandbox.path("runs.db").exists());

    let out = maestro(&sandbox, &["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = maestro(&sandbox, &["stats", "--json", "--since", "1d"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let stats = out.json();
    assert_eq!(stats["runs"], 1, "{stats}");
    assert_eq!(stats["calls"], 5, "{stats}");
    assert!(close(&stats["cost_usd"], TOTAL), "{stats}");
    let group = |list: &str, name: &str| {
        stats[list]
            .as_array()
            .and_then(|l| l.iter().find(|g| g["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {list} {name} in {stats}"))
    };
    let research = group("roles", "research");
    assert_eq!(research["calls"], 3);
    assert_eq!(research["subtasks"], 2);
    assert_eq!(research["succeeded"], 2);
    assert!(close(&research["success_rate"], 2.0 / 3.0), "{research}");
    assert_eq!(research["tokens_in"], 3000);
    assert_eq!(research["tokens_out"], 1 + 100 + 100);
    assert_eq!(research["median_tokens_out"], 100);
    assert!(research["median_ms"].is_u64() && research["p90_ms"].is_u64());
    assert!(
        close(&research["cost_usd"], A_FAILED + A_DONE + B),
        "{research}"
    );
    let planner = group("roles", "planner");
    assert_eq!(
        (planner["calls"].clone(), planner["subtasks"].clone()),
        (1.into(), 1.into())
    );
    assert!(close(&planner["cost_usd"], PLANNER), "{planner}");
    let synth = group("models", "gpt-4o");
    assert!(close(&synth["cost_usd"], SYNTH), "{synth}");
    assert_eq!(synth["success_rate"], 1.0);
    let provider = &stats["providers"][0];
    assert_eq!(provider["provider"], "anthropic");
    assert_eq!(provider["calls"], 5);
    assert_eq!(provider["failed"], 1);
    assert_eq!(provider["errors"], serde_json::json!([["stream cut", 1]]));

    // A window after the run holds nothing; a bad one is a usage error.
    let out = maestro(&sandbox, &["stats", "--json", "--since", "9999-01-01"]).await;
    assert_eq!(out.json()["calls"], 0);
    let out = maestro(&sandbox, &["stats", "--since", "last tuesday"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = maestro(&sandbox, &["stats"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("ERRORS BY PROVIDER"), "{out:?}");
    assert!(
        out.stdout
            .contains("anthropic: 1 of 5 calls failed · stream cut ×1"),
        "{out:?}"
    );
}
