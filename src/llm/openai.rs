//! OpenAI-compatible Chat Completions (OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter,
//! LiteLLM): `POST {base_url}/chat/completions`, SSE streaming or one JSON answer.
//!
//! Owns this protocol's request body and its lenient reading of answers: every field is
//! optional, an `error` key is looked for before `choices`, `data: [DONE]` is compared as text,
//! and a stream without `[DONE]` is a cut, not a success. Reasoning (`reasoning_content`,
//! `reasoning`, a leading `<think>` block) is kept apart from the answer, and
//! `finish_reason: "length"` marks the answer as cut off. It must not retry, apply an overall
//! deadline, sanitise model text (the consumer does that) or put the API key anywhere but the
//! `Authorization` header.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::llm::http::{self, Auth, Exchange};
use crate::llm::quirks::{self, TokenParam};
use crate::llm::reasoning::{Split, ThinkSplitter};
use crate::llm::sse::{self, HttpFailure, SseStream};
use crate::llm::structured::{self, Dialect, StructuredMode};
use crate::llm::tools::ToolCall;
use crate::llm::{
    ApiKey, CallError, CallFuture, ChatRequest, Completion, DeltaSink, Message, ModelsFuture,
    Provider, models,
};
use crate::protocol::Usage;

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Ends in `/v1` (`https://api.openai.com/v1`, `http://localhost:11434/v1`).
    pub base_url: String,
    /// `None` for local servers that need no key: no `Authorization` header is sent.
    pub api_key: Option<ApiKey>,
    pub stream: bool,
    /// Send `stream_options.include_usage` (some servers reject it).
    pub include_usage: bool,
    /// Longest silence allowed between two stream chunks (or before the headers).
    pub idle_timeout: Duration,
    /// The name of the token limit; `None` picks by server (`TokenParam::for_base_url`).
    pub token_param: Option<TokenParam>,
}

pub struct OpenAi {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl OpenAi {
    pub fn new(config: OpenAiConfig) -> Self {
        Self {
            config,
            client: sse::client(),
        }
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// The JSON body: the system prompt first (when there is one), then the conversation.
    fn body(&self, request: &ChatRequest) -> Value {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if !request.system.is_empty() {
            messages.push(json!({ "role": "system", "content": request.system }));
        }
        for message in &request.messages {
            wire_messages(message, &mut messages);
        }
        let token_param = self
            .config
            .token_param
            .unwrap_or_else(|| TokenParam::for_base_url(&self.config.base_url));
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "stream": self.config.stream,
        });
        body[token_param.name()] = json!(request.max_tokens);
        if let Some(temperature) = request.temperature {
            body["temperature"] = json!(temperature);
        }
        if self.config.stream && self.config.include_usage {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({ "type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters,
                    } })
                })
                .collect();
            body["tool_choice"] = json!("auto");
        }
        quirks::prepare(&self.config.base_url, &mut body);
        body
    }

    async fn call(&self, request: ChatRequest, sink: DeltaSink) -> Result<Completion, CallError> {
        structured::call(Dialect::OpenAi, &self.config.base_url, &request, |mode| {
            self.send(&request, mode, &sink)
        })
        .await
    }

    /// One request, asking for structure the `mode` way.
    async fn send(
        &self,
        request: &ChatRequest,
        mode: StructuredMode,
        sink: &DeltaSink,
    ) -> Result<Completion, CallError> {
        let mut body = self.body(request);
        if let Some(format) = request
            .structured
            .as_ref()
            .and_then(|output| structured::response_format(output, mode))
        {
            body["response_format"] = format;
        }
        let base_url = self.config.base_url.as_str();
        let adapt =
            |failure: &HttpFailure, body: &Value| quirks::adapt(base_url, failure, body, true);
        let exchange = Exchange {
            client: &self.client,
            url: self.url(),
            body,
            headers: &[],
            auth: match &self.config.api_key {
                Some(key) => Auth::Bearer(key),
                None => Auth::None,
            },
            provider: "OpenAI",
            stream: self.config.stream,
            idle: self.config.idle_timeout,
            adapt: Some(&adapt),
            offers_tools: !request.tools.is_empty(),
        };
        http::call(
            exchange,
            HttpFailure::into_call_error,
            async |events| read_stream(events, sink).await,
            |body| read_answer(body, sink),
        )
        .await
    }
}

/// One message in this protocol's shape: a tool-calling assistant turn keeps its calls
/// (arguments as the text the model wrote), and each tool result is a `tool` message of its
/// own, after any text of the turn that carried them.
fn wire_messages(message: &Message, out: &mut Vec<Value>) {
    if !message.tool_calls.is_empty() {
        let calls: Vec<Value> = message
            .tool_calls
            .iter()
            .map(|c| {
                json!({ "id": c.id, "type": "function",
                        "function": { "name": c.name, "arguments": c.arguments_text() } })
            })
            .collect();
        let content = if message.content.is_empty() {
            Value::Null
        } else {
            json!(message.content)
        };
        out.push(json!({ "role": message.role, "content": content, "tool_calls": calls }));
        return;
    }
    for result in &message.tool_results {
        out.push(
            json!({ "role": "tool", "tool_call_id": result.call_id, "content": result.content }),
        );
    }
    if message.tool_results.is_empty() || !message.content.is_empty() {
        out.push(json!({ "role": message.role, "content": message.content }));
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &str {
        "openai"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        Box::pin(self.call(request, sink))
    }
    fn list_models(&self) -> ModelsFuture<'_> {
        Box::pin(models::openai(
            &self.client,
            &self.config.base_url,
            self.config.api_key.as_ref(),
            self.config.idle_timeout,
        ))
    }
}

/// One streamed chunk. Only what we read is declared, all of it optional, so servers that add,
/// omit or null fields (`finish_reason: ""`, `usage: {}`, no `id`) still parse.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Chunk {
    choices: Option<Vec<ChunkChoice>>,
    usage: Option<WireUsage>,
    /// Present and not null: an in-band error (its message is read from the raw data).
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ChunkChoice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

/// `reasoning_content` (DeepSeek, vLLM) and `reasoning` (Ollama, OpenRouter) carry reasoning
/// apart from `content`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Delta {
    content: Option<String>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    /// Streamed: pieces of calls by `index`; whole answers: complete calls.
    tool_calls: Option<Vec<WireToolCall>>,
}

/// A tool call or a piece of one. In a stream the `id` and name come with a call's first
/// piece and `arguments` arrive as text in pieces; some servers send the arguments as an
/// object instead of text, which is read too.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireToolCall {
    index: Option<usize>,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<Value>,
}

/// A tool call as its pieces arrive.
#[derive(Debug, Default)]
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

/// More tool calls than this in one answer are folded into the last: an index is the
/// server's word, and must not size a vector.
const MAX_TOOL_CALLS: usize = 32;

/// `finish_reason: "length"`: the model stopped at the token limit.
fn is_cut_off(finish_reason: Option<&str>) -> bool {
    finish_reason == Some("length")
}

/// The answer and reasoning of a call as they build up: reasoning from its own fields and
/// from a `<think>` block at the start of the content.
#[derive(Debug, Default)]
struct Reply {
    text: String,
    reasoning: String,
    splitter: ThinkSplitter,
    cut_off: bool,
    /// Tool calls by their index in the stream.
    calls: Vec<PendingCall>,
}

impl Reply {
    /// A streamed delta or a whole message. Some servers (vLLM during its rename) send the
    /// same reasoning under both names, so one name is read: `reasoning_content` first.
    fn delta(&mut self, delta: Delta, sink: &DeltaSink) {
        if let Some(piece) = delta.reasoning_content.or(delta.reasoning) {
            sink.send_reasoning(&piece);
            self.reasoning.push_str(&piece);
        }
        if let Some(content) = delta.content {
            let split = self.splitter.push(&content);
            self.take(split, sink);
        }
        for (n, piece) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
            // Without an index (a whole answer, or a server that omits it) calls are in order.
            let index = piece.index.unwrap_or(n).min(MAX_TOOL_CALLS);
            if self.calls.len() <= index {
                self.calls.resize_with(index + 1, PendingCall::default);
            }
            let call = &mut self.calls[index];
            if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
                call.id = id;
            }
            let function = piece.function.unwrap_or_default();
            if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                call.name = name;
            }
            match function.arguments {
                Some(Value::String(text)) => call.arguments.push_str(&text),
                Some(Value::Null) | None => {}
                Some(other) => call.arguments.push_str(&other.to_string()),
            }
        }
    }

    fn take(&mut self, split: Split, sink: &DeltaSink) {
        sink.send_split(&split);
        self.reasoning.push_str(&split.reasoning);
        self.text.push_str(&split.answer);
    }

    fn finish(mut self, usage: Option<Usage>, sink: &DeltaSink) -> Completion {
        let rest = self.splitter.finish();
        self.take(rest, sink);
        let tool_calls = self
            .calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.name.is_empty())
            .map(|(i, c)| {
                let id = if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                };
                ToolCall::from_text(id, c.name, &c.arguments)
            })
            .collect();
        Completion {
            text: self.text,
            usage,
            cut_off: self.cut_off,
            reasoning: self.reasoning,
            cached: false,
            tool_calls,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    /// `cached_tokens`: of the prompt tokens, those read from OpenAI's prompt cache.
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

impl WireUsage {
    /// `usage: {}` counts as no usage: the engine's estimate beats a reported zero.
    fn into_usage(self) -> Option<Usage> {
        if self.prompt_tokens.is_none() && self.completion_tokens.is_none() {
            return None;
        }
        Some(Usage {
            tokens_in: self.prompt_tokens.unwrap_or(0),
            tokens_out: self.completion_tokens.unwrap_or(0),
            estimated: false,
            cached_in: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        })
    }
}

/// An error that arrived inside a 200 answer (`data: {"error":…}`, `event: error`, or a JSON
/// body with an `error` key). Retryable: these are mostly overloads and upstream hiccups.
fn in_band_error(reason: &str, data: &str) -> CallError {
    let message = match serde_json::from_str::<Value>(data) {
        Ok(json) => sse::json_message(&json),
        Err(_) => None,
    }
    .unwrap_or_else(|| sse::provider_message(data));
    CallError::transient(reason, message)
}

fn has_error(json: &Value) -> bool {
    json.get("error").is_some_and(|e| !e.is_null())
}

/// A stream that fails after its usage chunk still carries that usage in its error.
async fn read_stream(events: SseStream, sink: &DeltaSink) -> Result<Completion, CallError> {
    let mut usage = None;
    let result = read_events(events, sink, &mut usage).await;
    result.map_err(|e| e.with_usage(usage))
}

async fn read_events(
    mut events: SseStream,
    sink: &DeltaSink,
    usage: &mut Option<Usage>,
) -> Result<Completion, CallError> {
    let mut reply = Reply::default();
    while let Some(event) = events.next().await? {
        if event.event == "error" {
            return Err(in_band_error("stream error", &event.data));
        }
        let data = event.data.trim();
        // The end marker is not JSON: compare it before parsing.
        if data == "[DONE]" {
            return Ok(reply.finish(usage.take(), sink));
        }
        // Straight into `Chunk`: building a `Value` first cost a dozen allocations a chunk.
        // Only a chunk that does not fit is parsed again, to tell an error from junk.
        let chunk: Chunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                match serde_json::from_str::<Value>(data) {
                    Ok(json) if has_error(&json) => {
                        return Err(in_band_error("stream error", data));
                    }
                    Ok(_) => {
                        tracing::warn!(error = %e, "skipping a stream chunk of an unexpected shape")
                    }
                    Err(_) => tracing::warn!(
                        bytes = data.len(),
                        "skipping a stream chunk that is not JSON"
                    ),
                }
                continue;
            }
        };
        if chunk.error.is_some() {
            return Err(in_band_error("stream error", data));
        }
        // Only a usage that says something replaces an earlier one.
        if let Some(reported) = chunk.usage.and_then(WireUsage::into_usage) {
            *usage = Some(reported);
        }
        // `n` is never set, so every choice is choice 0; the usage chunk has `choices: []`.
        for choice in chunk.choices.unwrap_or_default() {
            reply.cut_off |= is_cut_off(choice.finish_reason.as_deref());
            if let Some(delta) = choice.delta {
                reply.delta(delta, sink);
            }
        }
    }
    Err(sse::stream_cut())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Answer {
    choices: Option<Vec<AnswerChoice>>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnswerChoice {
    message: Option<Delta>,
    finish_reason: Option<String>,
}

/// A whole (non-streamed) answer: `choices[0].message.content`, sent to the sink at once.
fn read_answer(body: &[u8], sink: &DeltaSink) -> Result<Completion, CallError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| sse::bad_response("the answer is not JSON"))?;
    if has_error(&json) {
        return Err(in_band_error(
            "provider error",
            &String::from_utf8_lossy(body),
        ));
    }
    let answer: Answer = serde_json::from_value(json)
        .map_err(|_| sse::bad_response("the answer has an unexpected shape"))?;
    let Some(choice) = answer.choices.unwrap_or_default().into_iter().next() else {
        return Err(sse::bad_response("the answer has no choices"));
    };
    let mut reply = Reply {
        cut_off: is_cut_off(choice.finish_reason.as_deref()),
        ..Reply::default()
    };
    if let Some(message) = choice.message {
        reply.delta(message, sink);
    }
    Ok(reply.finish(answer.usage.and_then(WireUsage::into_usage), sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_sent_under_both_names_is_read_once_and_kept_from_the_answer() {
        let (sink, mut rx) = DeltaSink::new();
        let mut reply = Reply::default();
        for chunk in [
            r#"{"choices":[{"delta":{"reasoning_content":"Hm, ","reasoning":"Hm, "}}]}"#,
            r#"{"choices":[{"delta":{"reasoning":"yes."}}]}"#,
            r#"{"choices":[{"delta":{"content":"<think>more</think>Yes."},"finish_reason":"length"}]}"#,
        ] {
            let chunk: Chunk = serde_json::from_str(chunk).unwrap();
            for choice in chunk.choices.unwrap() {
                reply.cut_off |= is_cut_off(choice.finish_reason.as_deref());
                reply.delta(choice.delta.unwrap(), &sink);
            }
        }
        let done = reply.finish(None, &sink);
        assert_eq!(done.text, "Yes.");
        assert_eq!(done.reasoning, "Hm, yes.more");
        assert!(done.cut_off);
        let mut answer = String::new();
        while let Ok(delta) = rx.try_recv() {
            if let crate::llm::Delta::Answer(text) = delta {
                answer.push_str(&text);
            }
        }
        assert_eq!(answer, "Yes.");
    }

    #[test]
    fn tool_calls_streamed_in_pieces_are_joined_by_index() {
        let sink = DeltaSink::discard();
        let mut reply = Reply::default();
        for chunk in [
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"fetch_url","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"url\": "}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list_dir","arguments":{"path":"."}}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"https://a.example\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ] {
            let chunk: Chunk = serde_json::from_str(chunk).unwrap();
            for choice in chunk.choices.unwrap() {
                if let Some(delta) = choice.delta {
                    reply.delta(delta, &sink);
                }
            }
        }
        let done = reply.finish(None, &sink);
        assert_eq!(done.tool_calls.len(), 2);
        assert_eq!(done.tool_calls[0].id, "call_a");
        assert_eq!(done.tool_calls[0].name, "fetch_url");
        assert_eq!(
            done.tool_calls[0].arguments,
            json!({"url": "https://a.example"})
        );
        assert_eq!(done.tool_calls[1].arguments, json!({"path": "."}));
    }

    #[test]
    fn tool_turns_become_assistant_tool_calls_and_tool_messages() {
        use crate::llm::tools::ToolResult;
        let call = ToolCall::from_text("c1".into(), "t".into(), "{bad");
        let mut out = Vec::new();
        wire_messages(&Message::tool_calls("", vec![call]), &mut out);
        wire_messages(
            &Message::tool_results(vec![ToolResult {
                call_id: "c1".into(),
                content: "no".into(),
                is_error: true,
            }]),
            &mut out,
        );
        assert_eq!(out[0]["content"], Value::Null);
        assert_eq!(out[0]["tool_calls"][0]["function"]["arguments"], "{bad");
        assert_eq!(
            out[1],
            json!({"role": "tool", "tool_call_id": "c1", "content": "no"})
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn empty_usage_object_is_no_usage() {
        let chunk: Chunk = serde_json::from_str(r#"{"choices":[],"usage":{}}"#).unwrap();
        assert_eq!(chunk.usage.and_then(WireUsage::into_usage), None);
    }

    #[test]
    fn a_null_error_is_no_error_and_any_other_is_one() {
        let parse = |data: &str| serde_json::from_str::<Chunk>(data).map(|c| c.error.is_some());
        assert!(!parse(r#"{"choices":[],"error":null}"#).unwrap());
        assert!(!parse(r#"{"choices":[]}"#).unwrap());
        assert!(parse(r#"{"error":{"message":"overloaded"}}"#).unwrap());
        assert!(parse(r#"{"error":"overloaded"}"#).unwrap());
    }

    #[test]
    fn nulls_and_empty_finish_reason_parse() {
        let chunk: Chunk = serde_json::from_str(
            r#"{"choices":[{"index":0,"delta":{"content":null},"finish_reason":""}],"usage":null}"#,
        )
        .unwrap();
        let choices = chunk.choices.unwrap();
        assert!(choices[0].delta.as_ref().unwrap().content.is_none());
    }
}
