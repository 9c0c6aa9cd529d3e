//! Structured output against the mock server: the OpenAI-compatible fallback from a JSON schema
//! to JSON mode to plain text on servers that reject a mode, the memory of what worked per
//! base URL and model, and Anthropic's forced tool, streamed and whole. Adapters only; the
//! plans that come of it are checked through the engine and the binary elsewhere.

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use maestro::llm::anthropic::{Anthropic, AnthropicConfig};
use maestro::llm::openai::{OpenAi, OpenAiConfig};
use maestro::llm::structured::{self, Structured, StructuredMode, StructuredOutput};
use maestro::llm::{ApiKey, ChatRequest, DeltaSink, Message, Provider};
use maestro::protocol::CallRole;
use serde_json::json;

const PLAN: &str = r#"{"query_analysis":"q","subtasks":[{"id":"a","title":"A","worker":"analysis","description":"d","depends_on":[]}],"synthesis_guidance":"g"}"#;
/// What a server that cannot do `json_schema` says (with a 500).
const NO_SCHEMA: &str = "'response_format' of type 'json_schema' is not supported";

fn request(model: &str, mode: Option<Structured>) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        role: CallRole::Planner,
        system: "Plan, and answer in JSON.".into(),
        messages: vec![Message::user("What do EVs change in cities?")],
        max_tokens: 300,
        temperature: None,
        cache: Default::default(),
        tools: Vec::new(),
        structured: mode.map(|mode| StructuredOutput {
            name: "plan".into(),
            description: "Submit the plan.".into(),
            schema: json!({"type": "object", "properties": {"subtasks": {"type": "array"}}}),
            mode,
        }),
    }
}

fn openai(server: &MockServer, stream: bool) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        base_url: server.openai_base_url(),
        api_key: None,
        stream,
        include_usage: true,
        idle_timeout: Duration::from_secs(5),
        token_param: None,
    })
}

fn anthropic(server: &MockServer, stream: bool) -> Anthropic {
    Anthropic::new(AnthropicConfig {
        base_url: server.anthropic_base_url(),
        api_key: ApiKey::new("anthropic-test-key".into()),
        stream,
        idle_timeout: Duration::from_secs(5),
    })
}

/// The server of the field report: `json_schema` is an HTTP 500, `json_object` with the schema
/// gets schema-valid JSON, and without either the small model writes no JSON at all.
fn rejects_json_schema(r: &MockRequest) -> Reply {
    match r.response_format().as_deref() {
        Some("json_schema") => Reply::status(500, NO_SCHEMA),
        Some("json_object") if r.body["response_format"]["schema"].is_object() => Reply::text(PLAN),
        _ => Reply::text("Sure! First look at emissions, then the grid."),
    }
}

fn formats(server: &MockServer) -> Vec<Option<String>> {
    server
        .requests()
        .iter()
        .map(MockRequest::response_format)
        .collect()
}

#[tokio::test]
async fn a_rejected_json_schema_falls_back_to_json_mode_and_that_is_remembered() {
    let server = MockServer::start(rejects_json_schema).await;
    let provider = openai(&server, true);
    let (sink, _deltas) = DeltaSink::new();
    let done = provider
        .complete(request("small-model", Some(Structured::Auto)), sink)
        .await
        .expect("the fallback succeeds");
    assert_eq!(done.text, PLAN);
    assert_eq!(
        formats(&server),
        [Some("json_schema".into()), Some("json_object".into())]
    );
    let schema = &server.requests()[1].body["response_format"]["schema"];
    assert_eq!(schema["properties"]["subtasks"]["type"], "array");
    assert_eq!(
        structured::remembered(&server.openai_base_url(), "small-model"),
        Some(StructuredMode::JsonObject)
    );

    // The next call to the same server and model asks the way that worked, at once.
    let done = provider
        .complete(
            request("small-model", Some(Structured::Auto)),
            DeltaSink::discard(),
        )
        .await
        .expect("JSON mode again");
    assert_eq!(done.text, PLAN);
    assert_eq!(formats(&server).len(), 3);
    assert_eq!(formats(&server)[2].as_deref(), Some("json_object"));

    // Another model on the same server starts from the best mode again.
    let _ = provider
        .complete(
            request("other-model", Some(Structured::Auto)),
            DeltaSink::discard(),
        )
        .await;
    assert_eq!(formats(&server)[3].as_deref(), Some("json_schema"));
}

#[tokio::test]
async fn a_server_that_rejects_both_json_modes_gets_plain_text() {
    let server = MockServer::start(|r: &MockRequest| match r.response_format() {
        Some(_) => Reply::status(400, "Unrecognized request argument: response_format"),
        None => Reply::text(PLAN),
    })
    .await;
    let done = openai(&server, false)
        .complete(
            request("plain-model", Some(Structured::Auto)),
            DeltaSink::discard(),
        )
        .await
        .expect("plain text works");
    assert_eq!(done.text, PLAN);
    assert_eq!(
        formats(&server),
        [Some("json_schema".into()), Some("json_object".into()), None]
    );
    assert_eq!(
        structured::remembered(&server.openai_base_url(), "plain-model"),
        Some(StructuredMode::Text)
    );
}

#[tokio::test]
async fn an_unrelated_error_is_not_a_rejection_and_a_forced_mode_does_not_fall_back() {
    let server = MockServer::always(Reply::status(500, "the GPU caught fire")).await;
    let error = openai(&server, true)
        .complete(
            request("hot-model", Some(Structured::Auto)),
            DeltaSink::discard(),
        )
        .await
        .expect_err("a server error");
    assert!(error.retryable, "left to the engine's retries");
    assert_eq!(server.request_count(), 1);

    let server = MockServer::start(rejects_json_schema).await;
    let error = openai(&server, true)
        .complete(
            request("small-model", Some(Structured::Schema)),
            DeltaSink::discard(),
        )
        .await
        .expect_err("`schema` allows nothing else");
    assert!(error.message.contains("json_schema"), "{error:?}");
    assert_eq!(server.request_count(), 1);

    let done = openai(&server, true)
        .complete(
            request("json-model", Some(Structured::Json)),
            DeltaSink::discard(),
        )
        .await
        .expect("`json` asks JSON mode straight away");
    assert_eq!(done.text, PLAN);
    assert_eq!(formats(&server)[1].as_deref(), Some("json_object"));
}

#[tokio::test]
async fn requests_without_structure_carry_no_response_format() {
    let server = MockServer::always(Reply::text("hello")).await;
    let _ = openai(&server, true)
        .complete(request("m", None), DeltaSink::discard())
        .await;
    assert_eq!(formats(&server), [None]);
    let _ = anthropic(&server, true)
        .complete(request("m", None), DeltaSink::discard())
        .await;
    assert!(server.last_request().body.get("tools").is_none());
}

#[tokio::test]
async fn anthropic_forces_the_submit_plan_tool_and_reads_its_input_streamed_or_whole() {
    for stream in [true, false] {
        let server = MockServer::start(|r: &MockRequest| match r.forced_tool().as_deref() {
            Some("submit_plan") => Reply::tool_call("submit_plan", PLAN),
            _ => Reply::text("No tool, no plan."),
        })
        .await;
        let (sink, mut deltas) = DeltaSink::new();
        let done = anthropic(&server, stream)
            .complete(request("claude-test", Some(Structured::Auto)), sink)
            .await
            .expect("a tool call");
        let sent = server.last_request();
        assert_eq!(sent.body["tools"][0]["name"], "submit_plan");
        assert_eq!(
            sent.body["tools"][0]["input_schema"]["properties"]["subtasks"]["type"],
            "array"
        );
        let value: serde_json::Value = serde_json::from_str(&done.text).expect("JSON text");
        assert_eq!(value["subtasks"][0]["id"], "a", "stream {stream}");
        let mut streamed = String::new();
        while let Ok(piece) = deltas.try_recv() {
            match piece {
                maestro::llm::Delta::Answer(text) => streamed.push_str(&text),
                maestro::llm::Delta::Reasoning(text) => panic!("reasoning {text:?}"),
            }
        }
        assert_eq!(streamed, done.text, "the tool input is the streamed text");
    }
}

#[tokio::test]
async fn anthropic_falls_back_to_text_when_a_proxy_rejects_tools() {
    let server = MockServer::start(|r: &MockRequest| match r.forced_tool() {
        Some(_) => Reply::status(400, "tool_choice: Extra inputs are not permitted"),
        None => Reply::text(PLAN),
    })
    .await;
    let done = anthropic(&server, true)
        .complete(
            request("claude-proxy", Some(Structured::Auto)),
            DeltaSink::discard(),
        )
        .await
        .expect("plain text");
    assert_eq!(done.text, PLAN);
    assert_eq!(server.request_count(), 2);
}

#[tokio::test]
async fn probe_reports_the_mode_a_server_ends_up_using() {
    let server = MockServer::start(rejects_json_schema).await;
    let provider = openai(&server, true);
    let mode = structured::probe(
        &provider,
        &server.openai_base_url(),
        "probe-model",
        Structured::Auto,
    )
    .await
    .expect("the probe call works");
    assert_eq!(mode, StructuredMode::JsonObject);
    assert_eq!(
        formats(&server),
        [Some("json_schema".into()), Some("json_object".into())]
    );
}
