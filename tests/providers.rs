//! The OpenAI-compatible and Anthropic adapters against the in-process mock server: streamed
//! text and usage, request shapes and headers, and the classification of every failure mode
//! (HTTP errors, cut, broken and silent streams, in-stream errors, unreachable servers).
//!
//! These tests check the adapters from the outside only; retrying is not theirs to test.

mod common;

use std::time::{Duration, Instant};

use common::mock::{self, MockServer, Reply};
use maestro::llm::anthropic::{Anthropic, AnthropicConfig};
use maestro::llm::openai::{OpenAi, OpenAiConfig};
use maestro::llm::{
    ApiKey, CallError, ChatRequest, Completion, Delta, DeltaSink, Message, Provider,
};
use maestro::protocol::{CallRole, Usage};

const KEY: &str = "fake-key-secret-0123456789";
const LONG_TEXT: &str = "Electric vehicles cut tailpipe emissions in dense city centres, \
                         but the grid must grow to carry the new evening load.";
/// Generous enough never to fire by accident on a loaded machine.
const IDLE: Duration = Duration::from_secs(5);

fn request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        role: CallRole::Worker,
        system: "You are terse.".into(),
        messages: vec![
            Message::user("First question"),
            Message::assistant("First answer"),
            Message::user("What do EVs change in cities?"),
        ],
        max_tokens: 321,
        temperature: Some(0.5),
        structured: None,
        cache: Default::default(),
        tools: Vec::new(),
    }
}

fn openai_with(base_url: String, key: Option<&str>, stream: bool, include_usage: bool) -> OpenAi {
    OpenAi::new(OpenAiConfig {
        base_url,
        api_key: key.map(|k| ApiKey::new(k.into())),
        stream,
        include_usage,
        idle_timeout: IDLE,
        token_param: None,
    })
}

fn openai(server: &MockServer) -> OpenAi {
    openai_with(server.openai_base_url(), Some(KEY), true, true)
}

fn anthropic_with(base_url: String, stream: bool, idle_timeout: Duration) -> Anthropic {
    Anthropic::new(AnthropicConfig {
        base_url,
        api_key: ApiKey::new(KEY.into()),
        stream,
        idle_timeout,
    })
}

fn anthropic(server: &MockServer) -> Anthropic {
    anthropic_with(server.anthropic_base_url(), true, IDLE)
}

/// Run one call and collect the answer deltas it sent, in order (reasoning left out).
async fn call(
    provider: &dyn Provider,
    request: ChatRequest,
) -> (Result<Completion, CallError>, Vec<String>) {
    let (sink, mut rx) = DeltaSink::new();
    let result = provider.complete(request, sink).await;
    let mut deltas = Vec::new();
    while let Ok(delta) = rx.try_recv() {
        if let Delta::Answer(text) = delta {
            deltas.push(text);
        }
    }
    (result, deltas)
}

async fn ok(provider: &dyn Provider) -> (Completion, Vec<String>) {
    let (result, deltas) = call(provider, request()).await;
    (result.expect("the call should succeed"), deltas)
}

async fn err(provider: &dyn Provider) -> CallError {
    let (result, _) = call(provider, request()).await;
    result.expect_err("the call should fail")
}

fn usage(tokens_in: u64, tokens_out: u64) -> Option<Usage> {
    Some(Usage {
        tokens_in,
        tokens_out,
        estimated: false,
        cached_in: 0,
    })
}

// --- streamed text and usage -----------------------------------------------------------------

#[tokio::test]
async fn openai_streams_text_in_order_with_usage() {
    let server = MockServer::always(Reply::text(LONG_TEXT).usage(12, 34)).await;
    let (completion, deltas) = ok(&openai(&server)).await;
    assert_eq!(completion.text, LONG_TEXT);
    assert!(deltas.len() > 1, "expected several deltas, got {deltas:?}");
    assert_eq!(deltas.concat(), LONG_TEXT);
    assert_eq!(completion.usage, usage(12, 34));
}

#[tokio::test]
async fn anthropic_streams_text_in_order_with_usage() {
    let server = MockServer::always(Reply::text(LONG_TEXT).usage(12, 34)).await;
    let (completion, deltas) = ok(&anthropic(&server)).await;
    assert_eq!(completion.text, LONG_TEXT);
    assert!(deltas.len() > 1, "expected several deltas, got {deltas:?}");
    assert_eq!(deltas.concat(), LONG_TEXT);
    assert_eq!(completion.usage, usage(12, 34));
}

#[tokio::test]
async fn cached_input_tokens_are_read_from_both_protocols_and_counted_as_input() {
    let expected = Some(Usage {
        tokens_in: 1000,
        tokens_out: 34,
        estimated: false,
        cached_in: 600,
    });
    let reply = Reply::text(LONG_TEXT).usage(1000, 34).cached_tokens(600);
    let server = MockServer::always(reply).await;
    assert_eq!(
        ok(&openai(&server)).await.0.usage,
        expected,
        "openai, streamed"
    );
    let whole = openai_with(server.openai_base_url(), Some(KEY), false, true);
    assert_eq!(ok(&whole).await.0.usage, expected, "openai, whole");
    assert_eq!(ok(&anthropic(&server)).await.0.usage, expected, "anthropic");
    let whole = anthropic_with(server.anthropic_base_url(), false, IDLE);
    assert_eq!(ok(&whole).await.0.usage, expected, "anthropic, whole");
}

#[tokio::test]
async fn a_stream_cut_after_anthropic_reported_its_input_keeps_that_usage() {
    let server = MockServer::always(Reply::cut_after(LONG_TEXT, 2).usage(700, 50)).await;
    let error = err(&anthropic(&server)).await;
    assert_eq!(error.reason, "stream cut");
    // message_start reports the input and one output token; the rest never came.
    assert_eq!(error.usage, usage(700, 1));
    // OpenAI sends usage only at the end: a cut stream has none to report.
    let error = err(&openai(&server)).await;
    assert_eq!(error.usage, None);
}

#[tokio::test]
async fn anthropic_output_tokens_are_cumulative_not_summed() {
    let server = MockServer::always(Reply::raw_sse([
        r#"event: message_start
data: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}

"#,
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}

"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":5}}

"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}

"#,
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ]))
    .await;
    let (completion, _) = ok(&anthropic(&server)).await;
    assert_eq!(completion.text, "Hi");
    assert_eq!(completion.usage, usage(25, 9));
}

#[tokio::test]
async fn missing_usage_is_none() {
    let server = MockServer::always(Reply::text(LONG_TEXT).no_usage()).await;
    let (with_option, _) = ok(&openai(&server)).await;
    assert_eq!(with_option.usage, None);
    // Without include_usage the server sends no usage chunk at all.
    server.set_script(|_| Reply::text(LONG_TEXT));
    let without_option = openai_with(server.openai_base_url(), None, true, false);
    assert_eq!(ok(&without_option).await.0.usage, None);
    server.set_script(|_| Reply::text(LONG_TEXT).no_usage());
    assert_eq!(ok(&anthropic(&server)).await.0.usage, None);
}

#[tokio::test]
async fn keep_alive_comments_and_pings_are_ignored() {
    let server = MockServer::always(Reply::text(LONG_TEXT).keep_alive()).await;
    let (completion, deltas) = ok(&openai(&server)).await;
    assert_eq!(completion.text, LONG_TEXT);
    assert_eq!(deltas.concat(), LONG_TEXT);
    let (completion, deltas) = ok(&anthropic(&server)).await;
    assert_eq!(completion.text, LONG_TEXT);
    assert_eq!(deltas.concat(), LONG_TEXT);
}

#[tokio::test]
async fn openai_reads_lenient_chunks() {
    // No ids, a null and a missing content, `finish_reason: ""`, `usage: {}` then a real usage
    // on a chunk with `choices: []`, a comment, and a chunk that is not JSON.
    let server = MockServer::always(Reply::raw_sse([
        "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":null}}],\"usage\":{}}\n\n",
        ": ping\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"},\"finish_reason\":\"\"}]}\n\n",
        "data: not json\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\", world\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    ]))
    .await;
    let (completion, deltas) = ok(&openai(&server)).await;
    assert_eq!(completion.text, "Hello, world");
    assert_eq!(deltas, ["Hello", ", world"]);
    assert_eq!(completion.usage, usage(3, 2));
}

#[tokio::test]
async fn anthropic_keeps_only_text_deltas_and_ignores_unknown_events() {
    let server = MockServer::always(Reply::raw_sse([
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":4}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"abc\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"future_delta\",\"text\":\"not answer text\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: brand_new_event\ndata: {\"type\":\"brand_new_event\",\"x\":[1,2]}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Answer\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ]))
    .await;
    let (completion, deltas) = ok(&anthropic(&server)).await;
    assert_eq!(completion.text, "Answer");
    assert_eq!(deltas, ["Answer"]);
    assert_eq!(completion.usage, usage(4, 7));
}

#[tokio::test]
async fn escape_sequences_arrive_unchanged() {
    // Sanitising is the consumer's job: the adapter must not alter a byte.
    let text = "before \u{1b}]0;pwned\u{7} after \u{1b}[2J done";
    let server = MockServer::always(Reply::text(text)).await;
    let (completion, deltas) = ok(&openai(&server)).await;
    assert_eq!(completion.text, text);
    assert_eq!(deltas.concat(), text);
    let (completion, _) = ok(&anthropic(&server)).await;
    assert_eq!(completion.text, text);
}

// --- request shapes ---------------------------------------------------------------------------

#[tokio::test]
async fn openai_request_body_and_auth_header() {
    let server = MockServer::always(Reply::text("ok")).await;
    ok(&openai(&server)).await;
    let sent = server.last_request();
    assert_eq!(sent.model(), "test-model");
    assert!(sent.stream());
    assert_eq!(sent.max_tokens(), Some(321));
    assert_eq!(sent.temperature(), Some(0.5));
    assert_eq!(
        sent.messages(),
        [
            ("system".to_owned(), "You are terse.".to_owned()),
            ("user".to_owned(), "First question".to_owned()),
            ("assistant".to_owned(), "First answer".to_owned()),
            (
                "user".to_owned(),
                "What do EVs change in cities?".to_owned()
            ),
        ]
    );
    assert_eq!(sent.system(), "You are terse.");
    assert_eq!(sent.user(), "What do EVs change in cities?");
    assert!(sent.include_usage());
    assert_eq!(
        sent.header("authorization").as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(
        sent.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[tokio::test]
async fn openai_options_follow_the_config() {
    let server = MockServer::always(Reply::text("ok")).await;
    // No key: no Authorization header. No include_usage: no stream_options.
    let provider = openai_with(server.openai_base_url() + "/", None, true, false);
    let mut no_system = request();
    no_system.system.clear();
    no_system.temperature = None;
    call(&provider, no_system).await.0.unwrap();
    let sent = server.last_request();
    assert_eq!(sent.header("authorization"), None);
    assert!(sent.body.get("stream_options").is_none());
    assert!(sent.body.get("temperature").is_none());
    assert_eq!(sent.messages()[0].0, "user", "no empty system message");
    // Not streaming: no stream_options even when include_usage is on.
    let provider = openai_with(server.openai_base_url(), Some(KEY), false, true);
    ok(&provider).await;
    let sent = server.last_request();
    assert!(!sent.stream());
    assert!(sent.body.get("stream_options").is_none());
}

#[tokio::test]
async fn anthropic_request_body_and_headers() {
    let server = MockServer::always(Reply::text("ok")).await;
    ok(&anthropic(&server)).await;
    let sent = server.last_request();
    assert_eq!(sent.protocol, mock::Protocol::Anthropic);
    assert_eq!(sent.system(), "You are terse.");
    assert_eq!(sent.max_tokens(), Some(321));
    assert_eq!(sent.model(), "test-model");
    assert!(sent.stream());
    assert_eq!(
        sent.messages().len(),
        3,
        "the system prompt is not a message"
    );
    assert_eq!(sent.user(), "What do EVs change in cities?");
    assert_eq!(sent.header("x-api-key").as_deref(), Some(KEY));
    assert_eq!(
        sent.header("anthropic-version").as_deref(),
        Some("2023-06-01")
    );
    assert_eq!(
        sent.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(sent.header("authorization"), None);

    let mut no_system = request();
    no_system.system.clear();
    call(&anthropic(&server), no_system).await.0.unwrap();
    assert!(server.last_request().body.get("system").is_none());
}

// --- HTTP errors ------------------------------------------------------------------------------

#[tokio::test]
async fn unauthorized_is_fatal_with_the_provider_message() {
    let server = MockServer::always(Reply::status(401, "Incorrect API key provided")).await;
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert!(!error.retryable, "{error:?}");
        assert_eq!(error.reason, "401");
        assert!(
            error.message.contains("Incorrect API key provided"),
            "{error:?}"
        );
        assert!(!error.message.contains(KEY));
    }
}

#[tokio::test]
async fn rate_limit_is_retryable_with_retry_after() {
    let server = MockServer::always(Reply::status(429, "Slow down").retry_after(7)).await;
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
        assert!(error.message.contains("Slow down"), "{error:?}");
    }
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_read_on_both_protocols() {
    let later = std::time::SystemTime::now() + Duration::from_secs(60);
    let reply =
        Reply::status(429, "Slow down").header("retry-after", httpdate::fmt_http_date(later));
    let server = MockServer::always(reply).await;
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        let after = error.retry_after.expect("the date is read");
        // Whole seconds on the wire, and the request took a moment.
        assert!(
            after > Duration::from_secs(55) && after <= Duration::from_secs(60),
            "{error:?}"
        );
    }
    let past =
        Reply::status(503, "Back soon").header("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT");
    server.set_script(move |_| past.clone());
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert_eq!(error.retry_after, Some(Duration::ZERO), "{error:?}");
    }
}

#[tokio::test]
async fn a_key_reflected_in_an_error_body_is_redacted_on_both_protocols() {
    let server = MockServer::always(Reply::reflect_key()).await;
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert!(!error.message.contains(KEY), "{error:?}");
        assert!(!error.message.contains(&KEY[..12]), "{error:?}");
        assert!(
            error.message.contains("Incorrect API key provided"),
            "{error:?}"
        );
        assert!(error.message.contains("[redacted]"), "{error:?}");
        assert_eq!(error.reason, "401");
        assert!(!error.retryable);
    }
    let requests = server.requests();
    assert_eq!(
        requests[0].header("authorization").as_deref(),
        Some(format!("Bearer {KEY}").as_str()),
        "the mock really had the key to reflect"
    );
    assert_eq!(requests[1].header("x-api-key").as_deref(), Some(KEY));
}

#[tokio::test]
async fn a_reflected_key_cut_by_truncation_is_redacted_too() {
    // A long message puts the key across the point where it is shortened.
    let server = MockServer::always(Reply::reflect_key()).await;
    let padding = "x".repeat(280);
    server.set_script(move |r| {
        let sent = r.header("x-api-key").unwrap_or_default();
        Reply::raw(401, "text/plain", format!("{padding} {sent}"))
    });
    let error = err(&anthropic(&server)).await;
    assert!(error.message.ends_with("[redacted]…"), "{error:?}");
    assert!(!error.message.contains("fake-key-sec"), "{error:?}");
}

#[tokio::test]
async fn overloaded_and_server_errors_are_retryable() {
    let server = MockServer::always(Reply::status(529, "Overloaded")).await;
    let error = err(&anthropic(&server)).await;
    assert!(error.retryable, "{error:?}");
    assert_eq!(error.reason, "529");
    server.set_script(|_| Reply::status(500, "upstream error"));
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert!(error.retryable, "{error:?}");
        assert!(error.message.contains("upstream error"), "{error:?}");
    }
}

#[tokio::test]
async fn anthropic_spend_limit_is_not_retryable() {
    let server = MockServer::always(Reply::spend_limit().retry_after(60)).await;
    let error = err(&anthropic(&server)).await;
    assert!(!error.retryable, "{error:?}");
    assert!(error.message.contains("usage limits"), "{error:?}");
}

#[tokio::test]
async fn non_json_error_bodies_are_quoted_and_truncated() {
    let page = format!("<html>{}</html>", "Bad gateway ".repeat(100));
    let server = MockServer::always(Reply::raw(502, "text/html", page)).await;
    let error = err(&openai(&server)).await;
    assert!(error.retryable);
    assert!(error.message.contains("<html>Bad gateway"), "{error:?}");
    assert!(error.message.chars().count() < 400, "{error:?}");
}

// --- broken streams ---------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_without_its_end_marker_is_a_retryable_cut() {
    let server = MockServer::always(Reply::cut_after(LONG_TEXT, 2)).await;
    for provider in [&openai(&server) as &dyn Provider, &anthropic(&server)] {
        let (result, deltas) = call(provider, request()).await;
        let error = result.expect_err("a cut stream is not a success");
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.reason, "stream cut");
        assert_eq!(deltas.len(), 2, "the text before the cut was streamed");
    }
}

#[tokio::test]
async fn a_broken_connection_mid_stream_is_a_retryable_cut() {
    let server = MockServer::always(Reply::abort_after(LONG_TEXT, 1)).await;
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.reason, "stream cut");
    }
}

#[tokio::test]
async fn a_silent_stream_hits_the_idle_timeout() {
    let server = MockServer::always(Reply::silent_after(LONG_TEXT, 1)).await;
    let idle = Duration::from_millis(200);
    let openai = OpenAi::new(OpenAiConfig {
        base_url: server.openai_base_url(),
        api_key: None,
        stream: true,
        include_usage: true,
        idle_timeout: idle,
        token_param: None,
    });
    let anthropic = anthropic_with(server.anthropic_base_url(), true, idle);
    let started = Instant::now();
    let (a, b) = tokio::join!(err(&openai), err(&anthropic));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    for error in [a, b] {
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.reason, "idle timeout");
    }
}

#[tokio::test]
async fn silence_before_the_headers_is_a_first_byte_timeout_not_a_silent_stream() {
    let server = MockServer::always(Reply::text("late").delay(Duration::from_secs(3))).await;
    let idle = Duration::from_millis(150);
    let openai = OpenAi::new(OpenAiConfig {
        base_url: server.openai_base_url(),
        api_key: None,
        stream: true,
        include_usage: true,
        idle_timeout: idle,
        token_param: None,
    });
    let anthropic = anthropic_with(server.anthropic_base_url(), true, idle);
    let started = Instant::now();
    let (a, b) = tokio::join!(err(&openai), err(&anthropic));
    assert!(started.elapsed() < Duration::from_secs(1));
    for error in [a, b] {
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.reason, "no response");
        assert!(error.message.contains("first-byte timeout"), "{error:?}");
        assert!(error.message.contains("150ms"), "{error:?}");
        assert!(!error.message.contains("went silent"), "{error:?}");
    }
}

#[tokio::test]
async fn gaps_shorter_than_the_idle_timeout_are_fine() {
    let reply = Reply::text(LONG_TEXT)
        .gap(Duration::from_millis(30))
        .keep_alive();
    let server = MockServer::always(reply).await;
    let provider = anthropic_with(
        server.anthropic_base_url(),
        true,
        Duration::from_millis(300),
    );
    assert_eq!(ok(&provider).await.0.text, LONG_TEXT);
}

#[tokio::test]
async fn an_error_inside_a_200_stream_is_retryable_with_its_message() {
    let server =
        MockServer::always(Reply::stream_error("Partial text", "Overloaded, try later")).await;
    for provider in [&openai(&server) as &dyn Provider, &anthropic(&server)] {
        let (result, deltas) = call(provider, request()).await;
        let error = result.expect_err("an in-stream error is a failure");
        assert!(error.retryable, "{error:?}");
        assert!(error.message.contains("Overloaded, try later"), "{error:?}");
        assert_eq!(deltas.concat(), "Partial text");
    }
}

#[tokio::test]
async fn openai_error_events_are_failures() {
    let server = MockServer::always(Reply::raw_sse([
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "event: error\ndata: {\"message\":\"vLLM engine died\"}\n\n",
    ]))
    .await;
    let error = err(&openai(&server)).await;
    assert!(error.retryable);
    assert_eq!(error.reason, "stream error");
    assert!(error.message.contains("vLLM engine died"), "{error:?}");
}

// --- non-streaming ----------------------------------------------------------------------------

#[tokio::test]
async fn non_streaming_answers_are_read_whole() {
    let server = MockServer::always(Reply::text(LONG_TEXT).usage(8, 9)).await;
    let openai = openai_with(server.openai_base_url(), Some(KEY), false, true);
    let anthropic = anthropic_with(server.anthropic_base_url(), false, IDLE);
    for provider in [&openai as &dyn Provider, &anthropic] {
        let (result, deltas) = call(provider, request()).await;
        let completion = result.unwrap();
        assert_eq!(completion.text, LONG_TEXT);
        assert_eq!(deltas, [LONG_TEXT], "the whole text is sent once");
        assert_eq!(completion.usage, usage(8, 9));
        assert!(!server.last_request().stream());
    }
}

#[tokio::test]
async fn non_streaming_failures_are_classified() {
    let server = MockServer::always(Reply::raw(200, "text/html", "<html>proxy</html>")).await;
    let openai = openai_with(server.openai_base_url(), Some(KEY), false, true);
    let anthropic = anthropic_with(server.anthropic_base_url(), false, IDLE);
    for error in [err(&openai).await, err(&anthropic).await] {
        // A web page is not the API: the same URL answers the same way next time.
        assert!(!error.retryable, "{error:?}");
        assert_eq!(error.reason, "not the API");
        assert!(error.message.contains("text/html"), "{error:?}");
        assert!(error.message.contains("<html>proxy"), "{error:?}");
    }
    // Half a JSON answer is the API's, cut short: worth another attempt.
    server.set_script(|_| Reply::cut_after(LONG_TEXT, 1));
    for error in [err(&openai).await, err(&anthropic).await] {
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.reason, "bad response");
    }
    server.set_script(|_| Reply::stream_error("", "model crashed"));
    for error in [err(&openai).await, err(&anthropic).await] {
        assert!(error.retryable, "{error:?}");
        assert!(error.message.contains("model crashed"), "{error:?}");
    }
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_accepted() {
    let answer = r#"{"choices":[{"message":{"role":"assistant","content":"plain"}}]}"#;
    let server = MockServer::always(Reply::raw(200, "application/json", answer)).await;
    let (completion, deltas) = ok(&openai(&server)).await;
    assert_eq!(completion.text, "plain");
    assert_eq!(deltas, ["plain"]);
}

#[tokio::test]
async fn a_web_page_on_a_200_stream_says_what_arrived_and_is_not_retried() {
    let page = "<!DOCTYPE html>\n<html><head><title>Sign in \u{1b}[31m</title></head>\
                <body>Please sign in to continue to the gateway.</body></html>";
    let server = MockServer::always(Reply::raw(200, "text/html; charset=utf-8", page)).await;
    for provider in [&openai(&server) as &dyn Provider, &anthropic(&server)] {
        let error = err(provider).await;
        assert!(!error.retryable, "{error:?}");
        assert_eq!(error.reason, "not the API");
        assert!(!error.message.contains("stream ended"), "{error:?}");
        assert!(
            error.message.contains("text/html; charset=utf-8"),
            "{error:?}"
        );
        assert!(
            error
                .message
                .contains("<!DOCTYPE html> <html><head><title>Sign in"),
            "{error:?}"
        );
        assert!(
            !error.message.contains('\u{1b}'),
            "escapes are dropped: {error:?}"
        );
        assert!(error.message.chars().count() < 300, "bounded: {error:?}");
    }
    // Labelled as an event stream, but a page all the same.
    server.set_script(move |_| Reply::raw(200, "text/event-stream", page));
    let error = err(&openai(&server)).await;
    assert_eq!(error.reason, "not the API", "{error:?}");
    assert!(error.message.contains("text/event-stream"), "{error:?}");
}

#[tokio::test]
async fn an_empty_200_is_a_cut_stream_and_mislabelled_streams_and_json_are_read() {
    let server = MockServer::always(Reply::raw(200, "text/event-stream", "")).await;
    for error in [err(&openai(&server)).await, err(&anthropic(&server)).await] {
        assert_eq!(error.reason, "stream cut", "{error:?}");
        assert!(error.retryable, "{error:?}");
    }
    // Real SSE with a wrong content type, split mid-field, after a blank line.
    server.set_script(|_| {
        Reply::raw_sse([
            "\nda",
            "ta: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: [DONE]\n\n",
        ])
        .header("content-type", "text/plain")
    });
    let (completion, _) = ok(&openai(&server)).await;
    assert_eq!(completion.text, "Hi");
    // A JSON answer labelled text/plain.
    let answer = r#"{"choices":[{"message":{"role":"assistant","content":"plain"}}]}"#;
    server.set_script(move |_| Reply::raw(200, "text/plain", answer));
    assert_eq!(ok(&openai(&server)).await.0.text, "plain");
}

// --- connection failures ----------------------------------------------------------------------

#[tokio::test]
async fn https_to_a_plain_http_server_is_not_retried_and_says_so() {
    let server = MockServer::always(Reply::text("hi")).await;
    let url = format!("https://{}", server.addr());
    let openai = openai_with(format!("{url}/v1"), Some(KEY), true, true);
    let anthropic = anthropic_with(url.clone(), true, IDLE);
    for error in [err(&openai).await, err(&anthropic).await] {
        assert!(!error.retryable, "{error:?}");
        assert_eq!(error.reason, "tls");
        assert!(
            error.message.contains("is this an http:// server?"),
            "{error:?}"
        );
        assert!(error.message.contains(&url), "{error:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_retryable_connection_error() {
    let url = mock::refused_url();
    let openai = openai_with(format!("{url}/v1"), Some(KEY), true, true);
    let anthropic = anthropic_with(url.clone(), true, IDLE);
    for error in [err(&openai).await, err(&anthropic).await] {
        assert!(error.retryable, "{error:?}");
        assert_eq!(error.reason, "connection");
        assert!(error.message.contains(&url), "{error:?}");
        assert!(!error.message.contains(KEY));
    }
}

#[tokio::test]
async fn a_stopped_server_refuses_connections() {
    let server = MockServer::always(Reply::text("hi")).await;
    let provider = openai(&server);
    ok(&provider).await;
    server.shutdown().await;
    let error = err(&provider).await;
    assert!(error.retryable, "{error:?}");
    assert!(
        ["connection", "stream cut"].contains(&error.reason.as_str()),
        "{error:?}"
    );
}

// --- the mock itself --------------------------------------------------------------------------

#[tokio::test]
async fn mock_records_timing_and_follows_scripts() {
    let server = MockServer::start(mock::sequence(vec![
        Reply::status(500, "first fails"),
        Reply::text("then works").gap(Duration::from_millis(10)),
    ]))
    .await;
    let provider = openai(&server);
    assert!(err(&provider).await.retryable);
    assert_eq!(ok(&provider).await.0.text, "then works");
    assert_eq!(
        ok(&provider).await.0.text,
        "then works",
        "the last reply repeats"
    );
    let requests = server.wait_for_requests(3, Duration::from_secs(1)).await;
    assert_eq!(
        requests.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for pair in requests.windows(2) {
        let finished = pair[0].finished_at.expect("the answer finished");
        assert!(finished <= pair[1].received_at);
        assert!(pair[0].received_at <= finished);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_serves_hundreds_of_concurrent_streams() {
    let server = MockServer::start(|request| {
        Reply::text(format!("answer to {}", request.user())).gap(Duration::from_millis(5))
    })
    .await;
    let provider = openai(&server);
    let calls = (0..300).map(|i| {
        let mut request = request();
        request.messages = vec![Message::user(format!("question {i}"))];
        let provider = &provider;
        async move { (i, call(provider, request).await.0) }
    });
    for (i, result) in futures_util::future::join_all(calls).await {
        assert_eq!(result.unwrap().text, format!("answer to question {i}"));
    }
    assert_eq!(server.request_count(), 300);
}
