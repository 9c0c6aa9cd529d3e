//! Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01`, SSE streaming or one JSON answer.
//!
//! Owns this protocol's request body and its reading of answers: text comes only from
//! `text_delta`s, reasoning from `thinking_delta`s (signatures are skipped; a forced tool's
//! input, asked for as structured output, is the answer instead), `stop_reason: "max_tokens"`
//! marks a cut-off answer, input tokens from
//! `message_start`, cumulative output tokens from `message_delta`, `message_stop` ends the
//! stream, and unknown event types are ignored (new ones get added). It must not retry, apply an
//! overall deadline, sanitise model text, or put the API key anywhere but its header.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::llm::http::{self, Auth, Exchange};
use crate::llm::quirks;
use crate::llm::sse::{self, HttpFailure, SseStream};
use crate::llm::structured::{self, Dialect, StructuredMode};
use crate::llm::tools::ToolCall;
use crate::llm::{
    ApiKey, CallError, CallFuture, ChatRequest, Completion, DeltaSink, Message, ModelsFuture,
    Provider, models,
};
use crate::protocol::Usage;

/// The API version this adapter speaks (the streaming event shapes depend on it).
const API_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    /// The host root (`https://api.anthropic.com`); `/v1/messages` is appended.
    pub base_url: String,
    pub api_key: ApiKey,
    pub stream: bool,
    /// Longest silence allowed between two stream chunks (or before the headers).
    pub idle_timeout: Duration,
}

pub struct Anthropic {
    config: AnthropicConfig,
    client: reqwest::Client,
}

impl Anthropic {
    pub fn new(config: AnthropicConfig) -> Self {
        Self {
            config,
            client: sse::client(),
        }
    }

    fn url(&self) -> String {
        format!("{}/v1/messages", self.config.base_url.trim_end_matches('/'))
    }

    fn body(&self, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(wire_message).collect();
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "stream": self.config.stream,
        });
        // An empty `system` is rejected by some versions of the API: leave it out instead.
        if !request.system.is_empty() {
            body["system"] = json!(request.system);
        }
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({ "name": t.name, "description": t.description,
                            "input_schema": t.parameters })
                })
                .collect();
            body["tool_choice"] = json!({ "type": "auto" });
        }
        body
    }

    async fn call(&self, request: ChatRequest, sink: DeltaSink) -> Result<Completion, CallError> {
        structured::call(
            Dialect::Anthropic,
            &self.config.base_url,
            &request,
            |mode| self.send(&request, mode, &sink),
        )
        .await
    }

    /// One request; in `Tool` mode the answer is the forced tool's input, as text.
    async fn send(
        &self,
        request: &ChatRequest,
        mode: StructuredMode,
        sink: &DeltaSink,
    ) -> Result<Completion, CallError> {
        let base_url = self.config.base_url.as_str();
        // Only `temperature` can be left out here: `max_tokens` is required by this API.
        let adapt =
            |failure: &HttpFailure, body: &Value| quirks::adapt(base_url, failure, body, false);
        let mut body = self.body(request);
        quirks::prepare(base_url, &mut body);
        let tool = request.structured.is_some() && mode == StructuredMode::Tool;
        if let (Some(output), true) = (&request.structured, tool) {
            let (tools, choice) = structured::anthropic_tool(output);
            body["tools"] = tools;
            body["tool_choice"] = choice;
        }
        let exchange = Exchange {
            client: &self.client,
            url: self.url(),
            body,
            headers: &[("anthropic-version", API_VERSION)],
            auth: Auth::Header("x-api-key", &self.config.api_key),
            provider: "Anthropic",
            stream: self.config.stream,
            idle: self.config.idle_timeout,
            adapt: Some(&adapt),
            offers_tools: !request.tools.is_empty(),
        };
        http::call(
            exchange,
            http_error,
            async |events| read_stream(events, sink, tool).await,
            |body| read_answer(body, sink, tool),
        )
        .await
    }
}

/// One message in this protocol's shape: plain text stays a string; a tool-calling assistant
/// turn is repeated with its `tool_use` blocks, and tool results are `tool_result` blocks of a
/// user turn.
fn wire_message(message: &Message) -> Value {
    if message.tool_calls.is_empty() && message.tool_results.is_empty() {
        return json!({ "role": message.role, "content": message.content });
    }
    let mut blocks = Vec::new();
    for result in &message.tool_results {
        let mut block = json!({ "type": "tool_result", "tool_use_id": result.call_id,
                                "content": result.content });
        if result.is_error {
            block["is_error"] = json!(true);
        }
        blocks.push(block);
    }
    if !message.content.is_empty() {
        blocks.push(json!({ "type": "text", "text": message.content }));
    }
    for call in &message.tool_calls {
        // Input that did not parse is sent back as an empty object: the API takes only
        // objects, and the tool result already told the model what was wrong.
        let input = if call.arguments.is_object() {
            call.arguments.clone()
        } else {
            json!({})
        };
        blocks.push(
            json!({ "type": "tool_use", "id": call.id, "name": call.name,
                            "input": input }),
        );
    }
    json!({ "role": message.role, "content": blocks })
}

impl Provider for Anthropic {
    fn name(&self) -> &str {
        "anthropic"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        Box::pin(self.call(request, sink))
    }
    fn list_models(&self) -> ModelsFuture<'_> {
        Box::pin(models::anthropic(
            &self.client,
            &self.config.base_url,
            &self.config.api_key,
            API_VERSION,
            self.config.idle_timeout,
        ))
    }
}

/// Classified by status, except that a 429 for a hard spend limit will not clear by waiting.
fn http_error(failure: HttpFailure) -> CallError {
    let spend_limit = failure.status == 429
        && failure.json().is_some_and(|json| {
            json.pointer("/error/details/error_code")
                .and_then(Value::as_str)
                == Some("enforced_spend_limit_reached")
        });
    let mut error = failure.into_call_error();
    if spend_limit {
        error.retryable = false;
        error.retry_after = None;
    }
    error
}

/// An `error` event after a 200 (or an error JSON with a 200). Overloads and server errors are
/// worth another attempt; a request the API rejects will be rejected again.
fn in_band_error(data: &str) -> CallError {
    let json: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let kind = json
        .pointer("/error/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = sse::json_message(&json).unwrap_or_else(|| sse::provider_message(data));
    match kind {
        "overloaded_error" => CallError::transient("overloaded", message),
        "rate_limit_error" => CallError::transient("rate limited", message),
        "invalid_request_error"
        | "authentication_error"
        | "permission_error"
        | "not_found_error"
        | "request_too_large"
        | "billing_error" => {
            CallError::fatal(kind.trim_end_matches("_error").replace('_', " "), message)
        }
        // `api_error` and anything new: the server failed, not the request.
        _ => CallError::transient("stream error", message),
    }
}

/// The fields of any stream event that we read, all optional: one lenient shape for every
/// event type, so a new field or type never breaks parsing.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `message_start`.
    message: Option<StartMessage>,
    /// `content_block_delta` (text) and `message_delta` (stop reason).
    delta: Option<EventDelta>,
    /// `message_delta`.
    usage: Option<WireUsage>,
    /// `content_block_start` / `_delta`: which block.
    index: Option<usize>,
    /// `content_block_start`: the block, for a `tool_use` its id and name.
    content_block: Option<ContentBlock>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartMessage {
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventDelta {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    /// `thinking_delta`.
    thinking: Option<String>,
    /// `message_delta`.
    stop_reason: Option<String>,
    /// `input_json_delta`: a piece of a tool call's input.
    partial_json: Option<String>,
}

/// `stop_reason: "max_tokens"`: the model stopped at the token limit.
fn is_cut_off(stop_reason: Option<&str>) -> bool {
    stop_reason == Some("max_tokens")
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireUsage {
    /// Input tokens not read from nor written to the prompt cache.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// Usage as it builds up over a stream: `None` until the server reports something.
#[derive(Debug, Default, Clone, Copy)]
struct UsageSoFar {
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
}

impl UsageSoFar {
    /// Both counts are totals so far (`message_delta`'s output is cumulative), so a later
    /// report replaces an earlier one rather than adding to it.
    fn update(&mut self, usage: WireUsage) {
        if usage.input_tokens.is_some() {
            self.tokens_in = usage.input_tokens;
        }
        if usage.output_tokens.is_some() {
            self.tokens_out = usage.output_tokens;
        }
        if usage.cache_read_input_tokens.is_some() {
            self.cache_read = usage.cache_read_input_tokens;
        }
        if usage.cache_creation_input_tokens.is_some() {
            self.cache_creation = usage.cache_creation_input_tokens;
        }
    }

    /// `tokens_in` counts every input token, cached or not, as OpenAI's `prompt_tokens` does;
    /// `cached_in` those read from the cache. (Cache writes are counted as plain input.)
    fn finish(self) -> Option<Usage> {
        if self.tokens_in.is_none() && self.tokens_out.is_none() {
            return None;
        }
        let cache_read = self.cache_read.unwrap_or(0);
        Some(Usage {
            tokens_in: self.tokens_in.unwrap_or(0) + cache_read + self.cache_creation.unwrap_or(0),
            tokens_out: self.tokens_out.unwrap_or(0),
            estimated: false,
            cached_in: cache_read,
        })
    }
}

/// `tool`: a tool was forced, and its input is the answer. A stream that fails after
/// `message_start` carries the input tokens it reported (they are paid for) in its error.
async fn read_stream(
    events: SseStream,
    sink: &DeltaSink,
    tool: bool,
) -> Result<Completion, CallError> {
    let mut usage = UsageSoFar::default();
    let result = read_events(events, sink, tool, &mut usage).await;
    result.map_err(|e| e.with_usage(usage.finish()))
}

async fn read_events(
    mut events: SseStream,
    sink: &DeltaSink,
    tool: bool,
    usage: &mut UsageSoFar,
) -> Result<Completion, CallError> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut cut_off = false;
    // The forced tool's input (structured output), streamed as the answer's text.
    let mut tool_input = String::new();
    // Tools the model chose to call, when tools were offered rather than forced.
    let mut uses: Vec<PendingUse> = Vec::new();
    while let Some(event) = events.next().await? {
        if event.event == "error" {
            return Err(in_band_error(&event.data));
        }
        let parsed: StreamEvent = match serde_json::from_str(&event.data) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(event = %event.event, error = %e, "skipping an unreadable stream event");
                continue;
            }
        };
        // The data's `type` is authoritative; the SSE event name is a fallback for proxies
        // that drop one of them.
        let kind = parsed.kind.as_deref().unwrap_or(&event.event);
        match kind {
            "message_start" => {
                if let Some(reported) = parsed.message.and_then(|m| m.usage) {
                    usage.update(reported);
                }
            }
            "content_block_start" => {
                if let Some(block) = parsed.content_block
                    && block.kind.as_deref() == Some("tool_use")
                    && !tool
                {
                    uses.push(PendingUse {
                        index: parsed.index.unwrap_or(uses.len()),
                        id: block.id.unwrap_or_default(),
                        name: block.name.unwrap_or_default(),
                        input: String::new(),
                    });
                }
            }
            "content_block_delta" => {
                let Some(delta) = parsed.delta else { continue };
                // signature_delta is neither answer nor reasoning; input_json_delta is only
                // asked for as the answer itself (the forced tool of structured output).
                match (
                    delta.kind.as_deref(),
                    delta.text,
                    delta.thinking,
                    delta.partial_json,
                ) {
                    (Some("text_delta"), Some(piece), _, _) => {
                        sink.send(&piece);
                        text.push_str(&piece);
                    }
                    (Some("thinking_delta"), _, Some(piece), _) => {
                        sink.send_reasoning(&piece);
                        reasoning.push_str(&piece);
                    }
                    (Some("input_json_delta"), _, _, Some(piece)) if tool => {
                        sink.send(&piece);
                        tool_input.push_str(&piece);
                    }
                    (Some("input_json_delta"), _, _, Some(piece)) => {
                        let at = parsed.index;
                        if let Some(call) = uses
                            .iter_mut()
                            .rev()
                            .find(|u| at.is_none_or(|i| i == u.index))
                        {
                            call.input.push_str(&piece);
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reported) = parsed.usage {
                    usage.update(reported);
                }
                cut_off |= is_cut_off(parsed.delta.and_then(|d| d.stop_reason).as_deref());
            }
            "message_stop" => {
                return Ok(Completion {
                    text: if tool_input.is_empty() {
                        text
                    } else {
                        tool_input
                    },
                    usage: usage.finish(),
                    cut_off,
                    reasoning,
                    cached: false,
                    tool_calls: uses.into_iter().map(PendingUse::finish).collect(),
                });
            }
            "error" => return Err(in_band_error(&event.data)),
            // ping, content_block_start/stop and event types added after this was written.
            _ => {}
        }
    }
    Err(sse::stream_cut())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Answer {
    content: Option<Vec<ContentBlock>>,
    usage: Option<WireUsage>,
    stop_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: Option<String>,
    thinking: Option<String>,
    /// A `tool_use` block's input.
    input: Option<Value>,
    /// A `tool_use` block's id and tool.
    id: Option<String>,
    name: Option<String>,
}

/// A `tool_use` block as its input arrives.
#[derive(Debug)]
struct PendingUse {
    index: usize,
    id: String,
    name: String,
    input: String,
}

impl PendingUse {
    fn finish(self) -> ToolCall {
        ToolCall::from_text(self.id, self.name, &self.input)
    }
}

/// A whole (non-streamed) answer: the text blocks joined (or the forced tool's input, for
/// structured output), sent to the sink at once.
fn read_answer(body: &[u8], sink: &DeltaSink, tool: bool) -> Result<Completion, CallError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| sse::bad_response("the answer is not JSON"))?;
    if json.get("type").and_then(Value::as_str) == Some("error")
        || json.get("error").is_some_and(|e| !e.is_null())
    {
        return Err(in_band_error(&String::from_utf8_lossy(body)));
    }
    let answer: Answer = serde_json::from_value(json)
        .map_err(|_| sse::bad_response("the answer has an unexpected shape"))?;
    let Some(blocks) = answer.content else {
        return Err(sse::bad_response("the answer has no content"));
    };
    let tool_input = blocks
        .iter()
        .filter(|_| tool)
        .find(|b| b.kind.as_deref() == Some("tool_use"))
        .and_then(|b| b.input.as_ref())
        .map(Value::to_string);
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for (n, block) in blocks.into_iter().enumerate() {
        match (block.kind.as_deref(), block.text, block.thinking) {
            (Some("text"), Some(piece), _) => text.push_str(&piece),
            (Some("thinking"), _, Some(piece)) => reasoning.push_str(&piece),
            (Some("tool_use"), _, _) if !tool => tool_calls.push(ToolCall {
                id: block.id.unwrap_or_else(|| format!("toolu_{n}")),
                name: block.name.unwrap_or_default(),
                arguments: block.input.unwrap_or_else(|| json!({})),
                malformed: None,
            }),
            _ => {}
        }
    }
    if let Some(input) = tool_input {
        text = input;
    }
    sink.send_reasoning(&reasoning);
    sink.send(&text);
    let mut usage = UsageSoFar::default();
    if let Some(reported) = answer.usage {
        usage.update(reported);
    }
    Ok(Completion {
        text,
        usage: usage.finish(),
        cut_off: is_cut_off(answer.stop_reason.as_deref()),
        reasoning,
        cached: false,
        tool_calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_turns_are_tool_use_and_tool_result_blocks() {
        use crate::llm::tools::ToolResult;
        let call = ToolCall::from_text("toolu_1".into(), "t".into(), r#"{"a":1}"#);
        let turn = wire_message(&Message::tool_calls("Looking.", vec![call]));
        assert_eq!(
            turn["content"][0],
            json!({"type": "text", "text": "Looking."})
        );
        assert_eq!(
            turn["content"][1],
            json!({"type": "tool_use", "id": "toolu_1", "name": "t", "input": {"a": 1}})
        );
        let results = wire_message(&Message::tool_results(vec![ToolResult {
            call_id: "toolu_1".into(),
            content: "done".into(),
            is_error: true,
        }]));
        assert_eq!(results["role"], "user");
        assert_eq!(
            results["content"],
            json!([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "done",
                    "is_error": true}])
        );
        assert_eq!(
            wire_message(&Message::user("hi")),
            json!({"role": "user", "content": "hi"})
        );
    }

    #[test]
    fn spend_limit_429_is_not_retryable() {
        let failure = HttpFailure {
            status: 429,
            retry_after: Some(Duration::from_secs(5)),
            body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"spend limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#.into(),
        };
        let error = http_error(failure);
        assert!(!error.retryable);
        assert!(error.message.contains("spend limit"));
    }

    #[test]
    fn plain_429_is_retryable() {
        let failure = HttpFailure {
            status: 429,
            retry_after: None,
            body: r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#
                .into(),
        };
        assert!(http_error(failure).retryable);
    }

    #[test]
    fn in_band_errors_are_classified_by_type() {
        let overloaded = in_band_error(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert!(overloaded.retryable);
        assert_eq!(overloaded.reason, "overloaded");
        assert_eq!(overloaded.message, "Overloaded");
        let invalid = in_band_error(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#,
        );
        assert!(!invalid.retryable);
    }
}
