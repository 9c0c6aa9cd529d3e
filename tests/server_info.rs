//! Knowing the server: listing models over `GET /v1/models` on both protocols (the adapters
//! against the mock's models route), and `maestro models` / `maestro doctor` as the real
//! binary against a healthy mock, a broken one, and none at all.
//!
//! Children get a clean environment (no keys, no `MAESTRO_*` from the developer's shell) and a
//! config file of the test's own in a temp dir.

mod common;

use std::time::{Duration, Instant};

use common::mock::{MockServer, Reply};
use common::{Output, Sandbox};
use maestro::cli::{EngineArgs, ProviderKind};
use maestro::config::{Config, FileConfig};
use maestro::llm::Provider;
use serde_json::Value;

const KEY: &str = "test-key-not-real-0123456789";
/// The longest one child may run: the doctor bounds each check, so this is never reached.
const PROCESS_LIMIT: Duration = Duration::from_secs(40);

/// A provider as the config builds it, so the test follows the adapters' own settings.
fn provider(
    kind: ProviderKind,
    base_url: String,
    key: Option<&str>,
) -> std::sync::Arc<dyn Provider> {
    let args = EngineArgs {
        provider: Some(kind),
        base_url: Some(base_url),
        api_key_env: key.map(|_| "TEST_KEY".to_owned()),
        ..EngineArgs::default()
    };
    let key = key.map(str::to_owned);
    let env = move |var: &str| (var == "TEST_KEY").then(|| key.clone()).flatten();
    Config::merge(&args, FileConfig::default(), &env)
        .expect("a valid config")
        .provider
        .build()
}

// ---- the adapters ---------------------------------------------------------------------------

#[tokio::test]
async fn openai_lists_data_ids_sorted_and_sends_its_key_as_a_bearer_token() {
    let server = MockServer::always(Reply::text("unused")).await;
    server.set_models(&["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"], 100);
    let provider = provider(ProviderKind::OpenAi, server.openai_base_url(), Some(KEY));
    let ids = provider.list_models().await.expect("a list");
    assert_eq!(ids, ["gpt-4o", "gpt-4o-mini"]);
    let requests = server.model_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(requests[0].header("anthropic-version"), None);
}

#[tokio::test]
async fn anthropic_follows_pages_with_its_key_and_version_headers() {
    let server = MockServer::always(Reply::text("unused")).await;
    let ids = ["claude-e", "claude-a", "claude-d", "claude-b", "claude-c"];
    server.set_models(&ids, 2);
    let provider = provider(
        ProviderKind::Anthropic,
        server.anthropic_base_url(),
        Some(KEY),
    );
    let listed = provider.list_models().await.expect("a list");
    assert_eq!(
        listed,
        ["claude-a", "claude-b", "claude-c", "claude-d", "claude-e"]
    );
    let requests = server.model_requests();
    assert_eq!(requests.len(), 3, "three pages of two: {requests:?}");
    for r in &requests {
        assert_eq!(r.header("x-api-key").as_deref(), Some(KEY));
        assert_eq!(r.header("anthropic-version").as_deref(), Some("2023-06-01"));
        assert_eq!(r.header("authorization"), None);
    }
    let after: Vec<Option<String>> = requests.iter().map(|r| r.param("after_id")).collect();
    assert_eq!(
        after,
        [None, Some("claude-a".into()), Some("claude-b".into())],
        "each page starts after the last id of the one before"
    );
}

#[tokio::test]
async fn a_server_without_the_route_has_no_model_list_on_either_protocol() {
    let server = MockServer::always(Reply::text("unused")).await;
    for provider in [
        provider(ProviderKind::OpenAi, server.openai_base_url(), None),
        provider(
            ProviderKind::Anthropic,
            server.anthropic_base_url(),
            Some(KEY),
        ),
    ] {
        let err = provider.list_models().await.expect_err("a 404");
        assert!(err.message.contains("no model list"), "{err:?}");
        assert!(!err.retryable);
    }
}

#[tokio::test]
async fn a_reflected_key_is_redacted_and_a_web_page_is_not_the_api() {
    let server = MockServer::always(Reply::text("unused")).await;
    server.set_models_reply(Reply::reflect_key());
    let openai = provider(ProviderKind::OpenAi, server.openai_base_url(), Some(KEY));
    let err = openai.list_models().await.expect_err("a 401");
    assert!(
        err.message.contains("401") && !err.message.contains(KEY),
        "{err:?}"
    );

    server.set_models_reply(Reply::raw(200, "text/html", "<html>Sign in</html>"));
    let err = openai.list_models().await.expect_err("a login page");
    assert_eq!(err.reason, "not the API", "{err:?}");
}

// ---- the binary -----------------------------------------------------------------------------

/// Run the binary with `config` as its config file and a clean environment, off the runtime.
async fn maestro(config: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let sandbox = Sandbox::new(config);
    sandbox
        .child(args)
        .scrub("NO_COLOR")
        .envs(env)
        .limit(PROCESS_LIMIT)
        .lossy()
        .run()
        .await
}

fn openai_config(server: &MockServer, models: &str) -> String {
    format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[models]\n{models}\n",
        server.openai_base_url()
    )
}

/// The doctor's line for a check whose name and text start with these.
fn line<'a>(out: &'a Output, start: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?}:\n{out:?}"))
}

#[tokio::test]
async fn models_lists_the_servers_models_marking_configured_ones_and_flagging_unknown_ones() {
    let server = MockServer::always(Reply::text("unused")).await;
    server.set_models(&["small", "big", "other"], 100);
    let config = openai_config(
        &server,
        "planner = \"big\"\nworker = \"small\"\nsynthesizer = \"missing\"",
    );
    let out = maestro(&config, &["models"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "* big      planner",
            "✗ missing  synthesizer (not offered by the server)",
            "  other",
            "* small    worker",
        ],
        "{out:?}"
    );
    assert!(
        out.stderr.contains("1 configured model is not offered"),
        "{out:?}"
    );

    let out = maestro(&config, &["models", "--json"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let json: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(json["provider"], "openai");
    let ids: Vec<&str> = json["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, ["big", "missing", "other", "small"]);
    assert_eq!(json["models"][1]["offered"], false);
    assert_eq!(json["models"][1]["configured_for"][0], "synthesizer");
    assert_eq!(json["models"][0]["configured_for"][0], "planner");
}

#[tokio::test]
async fn models_exits_1_when_the_server_cannot_list_and_2_on_a_config_error() {
    let server = MockServer::always(Reply::text("unused")).await;
    let out = maestro(&openai_config(&server, ""), &["models"], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("no model list"), "{out:?}");

    let out = maestro("provider = \"anthropic\"\n", &["models"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("ANTHROPIC_API_KEY"), "{out:?}");
}

#[tokio::test]
async fn doctor_passes_every_check_against_a_healthy_server() {
    let server = MockServer::always(Reply::text("ready").usage(9, 1)).await;
    server.set_models(&["big", "small"], 100);
    let config = openai_config(
        &server,
        "planner = \"big\"\nworker = \"small\"\nsynthesizer = \"big\"",
    );
    let out = maestro(&config, &["doctor"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(line(&out, "✓ config").contains("config.toml"), "{out:?}");
    assert!(line(&out, "✓ key").contains("none needed"), "{out:?}");
    assert!(line(&out, "✓ server").contains("lists 2 models"), "{out:?}");
    assert!(line(&out, "✓ model    big").contains("planner, synthesizer"));
    assert!(line(&out, "✓ model    small").contains("worker"));
    assert!(line(&out, "✓ call     big").contains("answered in"));
    assert!(line(&out, "✓ call     small").contains("answered in"));
    assert!(line(&out, "✓ usage").contains("stream reports token usage"));
    assert!(line(&out, "✓ plans").contains("big is asked for plans with a JSON schema"));
    assert!(!out.stdout.contains('✗'), "{out:?}");
    assert!(out.stdout.trim_end().ends_with("checks passed"), "{out:?}");
    // One tiny call per distinct model and one structured call to the planner's, a few
    // tokens each, streamed.
    let calls = server.requests();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2].model(), "big");
    assert_eq!(calls[2].response_format().as_deref(), Some("json_schema"));
    assert!(
        calls
            .iter()
            .all(|r| r.max_tokens() <= Some(64) && r.stream())
    );
}

#[tokio::test]
async fn doctor_names_each_broken_thing_with_its_fix_and_exits_1() {
    // The worker model is unknown to the server (not listed, its calls answer 404) and the
    // stream carries no usage.
    let server = MockServer::start(|request| {
        if request.model() == "gone" {
            Reply::status(404, "The model `gone` does not exist")
        } else {
            Reply::text("ready").no_usage()
        }
    })
    .await;
    server.set_models(&["big", "gone-v2"], 100);
    let config = openai_config(
        &server,
        "planner = \"big\"\nworker = \"gone\"\nsynthesizer = \"big\"",
    );
    let out = maestro(&config, &["doctor"], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        line(&out, "✗ model    gone").contains("not offered"),
        "{out:?}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("✗ model    gone"))
        .expect("the model line");
    assert!(
        lines[at + 1].contains("fix:") && lines[at + 1].contains("gone-v2"),
        "the fix follows the failure and suggests the close match:\n{out:?}"
    );
    assert!(
        line(&out, "✗ call     gone").contains("does not exist"),
        "{out:?}"
    );
    assert!(
        line(&out, "✓ call     big").contains("answered in"),
        "{out:?}"
    );
    assert!(line(&out, "! usage").contains("estimated"), "{out:?}");
    assert!(out.stdout.contains("2 of "), "{out:?}");
}

#[tokio::test]
async fn doctor_against_nothing_listening_fails_fast_without_calling_anything() {
    let url = common::mock::refused_url();
    let config = format!("provider = \"openai\"\n[openai]\nbase_url = \"{url}/v1\"\n");
    let started = Instant::now();
    let out = maestro(&config, &["doctor"], &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let server = line(&out, "✗ server");
    assert!(server.contains("could not reach"), "{out:?}");
    assert!(out.stdout.contains("fix: is the server running"), "{out:?}");
    assert!(line(&out, "- calls").contains("not tried"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "{out:?}");
}

#[tokio::test]
async fn doctor_gives_up_on_a_server_that_never_answers_after_its_check_timeout() {
    // The adapter's own idle timeout is longer, so only the doctor's bound can end this.
    let server = MockServer::always(Reply::text("ready")).await;
    server.set_models_reply(Reply::text("unused").delay(Duration::from_secs(120)));
    let config = format!(
        "{}\n[limits]\nidle_timeout_secs = 100\n",
        openai_config(&server, "")
    );
    let started = Instant::now();
    let out = maestro(&config, &["doctor"], &[]).await;
    let took = started.elapsed();
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(line(&out, "✗ server").contains("within 15s"), "{out:?}");
    assert!(
        took >= Duration::from_secs(14) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test]
async fn doctor_exits_2_on_a_config_error_naming_the_key_variable_never_its_value() {
    let out = maestro("provider = \"anthropic\"\n", &["doctor"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        line(&out, "✗ key").contains("ANTHROPIC_API_KEY is not set"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("fix: export ANTHROPIC_API_KEY="),
        "{out:?}"
    );

    let out = maestro("[limits]\nconcurency = 3\n", &["doctor"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(line(&out, "✗ config").contains("line 2"), "{out:?}");

    // A key the server refuses and quotes back: named, refused, never shown.
    let server = MockServer::always(Reply::reflect_key()).await;
    server.set_models_reply(Reply::reflect_key());
    let config = format!(
        "provider = \"anthropic\"\n[anthropic]\nbase_url = \"{}\"\n",
        server.anthropic_base_url()
    );
    let out = maestro(&config, &["doctor"], &[("ANTHROPIC_API_KEY", KEY)]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        line(&out, "✓ key").contains("ANTHROPIC_API_KEY is set"),
        "{out:?}"
    );
    assert!(line(&out, "✗ server").contains("401"), "{out:?}");
    assert!(out.stdout.contains("the key was refused"), "{out:?}");
    assert!(
        !out.stdout.contains(KEY) && !out.stderr.contains(KEY),
        "{out:?}"
    );
}

#[tokio::test]
async fn doctor_with_the_demo_provider_says_so_and_passes() {
    let out = maestro("", &["doctor"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(line(&out, "✓ provider").contains("demo"), "{out:?}");
    let out = maestro("", &["models"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("* demo"), "{out:?}");
}
