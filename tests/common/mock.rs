//! An in-process mock LLM server speaking both wire protocols maestro uses:
//! `POST /v1/chat/completions` (OpenAI-compatible) and `POST /v1/messages` (Anthropic), and
//! `GET /v1/models` for both (told apart by Anthropic's `anthropic-version` header), which
//! answers 404 until a test gives it a model list.
//!
//! A test gives it a script, a closure from the received request to a `Reply`; the server
//! records every request (with when it arrived and when its answer was sent) and renders the
//! reply in the protocol and mode (SSE or one JSON answer) the request asked for, really
//! incrementally, so gaps and idle timeouts can be observed. Failure modes are replies too:
//! HTTP errors, cut or silent streams, in-stream errors, raw bodies. A script reads what
//! structured output a request asked for (`response_format`, `forced_tool`) and can answer
//! with an Anthropic tool call (`Reply::tool_call`).
//!
//! Shared by the integration tests and by the benchmark (included with `#[path]`), so it must
//! stay self-contained: only axum, tokio, serde_json, futures-util and std, no `#[test]`, and
//! nothing from the maestro crate (it checks the adapters from the outside).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Which wire protocol a request came in on (decided by its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `POST /v1/chat/completions`
    OpenAi,
    /// `POST /v1/messages`
    Anthropic,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct MockRequest {
    pub protocol: Protocol,
    /// Arrival order, from 0; also the index in `MockServer::requests()`.
    pub seq: usize,
    /// The JSON body (`Value::String` holding the raw text when it was not JSON).
    pub body: Value,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub received_at: Instant,
    /// When the answer's last byte was handed to the connection: set just *before* the final
    /// chunk is yielded, so "a later request arrived after this answer ended" comparisons never
    /// fail spuriously. `None` while the answer is still going and for silent replies.
    pub finished_at: Option<Instant>,
}

impl MockRequest {
    /// The system prompt: the first `system` message (OpenAI) or the `system` field (Anthropic;
    /// a string or an array of text blocks). Empty when absent.
    pub fn system(&self) -> String {
        match self.protocol {
            Protocol::OpenAi => self
                .raw_messages()
                .iter()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("system"))
                .map(|m| content_text(m.get("content")))
                .unwrap_or_default(),
            Protocol::Anthropic => content_text(self.body.get("system")),
        }
    }

    /// The content of the last `user` message (empty when there is none). A user turn that
    /// only carries tool results (Anthropic's shape) is not the prompt and is skipped.
    pub fn user(&self) -> String {
        self.raw_messages()
            .iter()
            .rev()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .find(|m| !is_tool_results(m))
            .map(|m| content_text(m.get("content")))
            .unwrap_or_default()
    }

    /// The names of the tools the request offers (both protocols), in order.
    pub fn tools(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| {
                        t.pointer("/function/name")
                            .or_else(|| t.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `(call id, content, is_error)` of every tool result the request carries: OpenAI's
    /// `tool` messages and Anthropic's `tool_result` blocks (OpenAI has no error flag: false).
    pub fn tool_results(&self) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        for m in self.raw_messages() {
            let text = |key: &str| m.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
            if m.get("role").and_then(Value::as_str) == Some("tool") {
                out.push((text("tool_call_id"), content_text(m.get("content")), false));
            }
            for block in m
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let content = match block.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        other => content_text(other),
                    };
                    let error = block
                        .get("is_error")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    out.push((id.to_owned(), content, error));
                }
            }
        }
        out
    }

    /// `(role, content)` of every message in the body, in order (OpenAI's system message
    /// included, as it was sent).
    pub fn messages(&self) -> Vec<(String, String)> {
        self.raw_messages()
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str).unwrap_or("");
                (role.to_owned(), content_text(m.get("content")))
            })
            .collect()
    }

    pub fn model(&self) -> String {
        self.body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    }

    /// Whether the request asked for a stream (`"stream": true`).
    pub fn stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// OpenAI's `stream_options.include_usage`.
    pub fn include_usage(&self) -> bool {
        self.body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// A top-level field of the body, when it was sent.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name)
    }

    pub fn max_tokens(&self) -> Option<u64> {
        self.body.get("max_tokens").and_then(Value::as_u64)
    }

    pub fn temperature(&self) -> Option<f64> {
        self.body.get("temperature").and_then(Value::as_f64)
    }

    /// OpenAI's `response_format.type` (`json_schema`, `json_object`), if the request set one.
    pub fn response_format(&self) -> Option<String> {
        self.body
            .pointer("/response_format/type")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// The tool an Anthropic request forces (`tool_choice: {"type": "tool", "name": …}`).
    pub fn forced_tool(&self) -> Option<String> {
        (self
            .body
            .pointer("/tool_choice/type")
            .and_then(Value::as_str)
            == Some("tool"))
        .then(|| {
            self.body
                .pointer("/tool_choice/name")
                .and_then(Value::as_str)
        })
        .flatten()
        .map(str::to_owned)
    }

    /// A header's value, looked up case-insensitively (the first one when repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// How long the answer took from arrival to its last chunk, once it has finished.
    pub fn duration(&self) -> Option<Duration> {
        self.finished_at.map(|f| f.duration_since(self.received_at))
    }

    fn raw_messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// What a request is for, told from the prompts maestro builds: the planner's system prompt
/// (`assets/prompts/planner.md`), the worker's `# Your subtask: TITLE` heading and the
/// synthesis's `# Findings` section (`src/engine/prompt.rs`). The one place tests and the
/// benchmark tell calls apart, so a prompt change is fixed here once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    Planner,
    /// A worker call for the subtask with this title.
    Worker(String),
    Synthesis,
    /// None of the above: a request the test did not expect.
    Unknown,
}

/// Opens the planner's system prompt.
const PLANNER_MARK: &str = "You are the planner";
/// Heads the worker's subtask in its user message; the title follows on the same line.
const WORKER_MARK: &str = "# Your subtask: ";
/// Heads the subtask results in the synthesis's user message.
const SYNTHESIS_MARK: &str = "# Findings";
/// Heads the subtask under review in the validator's user message; the title follows.
const VALIDATOR_MARK: &str = "# The subtask under review: ";

impl Call {
    /// `planner`, `worker`, `synthesis` or `unknown`: for tallies and messages.
    pub fn label(&self) -> &'static str {
        match self {
            Call::Planner => "planner",
            Call::Worker(_) => "worker",
            Call::Synthesis => "synthesis",
            Call::Unknown => "unknown",
        }
    }
}

impl MockRequest {
    /// What this request is for (see `Call`). The planner is recognised first (its prompt
    /// quotes no subtask), then a worker (whose dependencies' results may contain anything),
    /// then the synthesis.
    pub fn call(&self) -> Call {
        if self.system().contains(PLANNER_MARK) {
            return Call::Planner;
        }
        let user = self.user();
        if let Some(rest) = user.split(WORKER_MARK).nth(1) {
            return Call::Worker(rest.lines().next().unwrap_or("").trim().to_owned());
        }
        if user.contains(SYNTHESIS_MARK) {
            Call::Synthesis
        } else {
            Call::Unknown
        }
    }

    pub fn is_planner(&self) -> bool {
        self.call() == Call::Planner
    }

    pub fn is_synthesis(&self) -> bool {
        self.call() == Call::Synthesis
    }

    /// The subtask title of a validator request (the quality gate's check of a result);
    /// `None` for any other call. `call()` tells validator requests `Unknown`: only tests that
    /// turn validation on expect them, and they ask this first.
    pub fn validator_title(&self) -> Option<String> {
        if self.system().contains(PLANNER_MARK) {
            return None;
        }
        let user = self.user();
        let rest = user.split(VALIDATOR_MARK).nth(1)?;
        Some(rest.lines().next().unwrap_or("").trim().to_owned())
    }

    /// The subtask title of a worker request; `None` for any other call.
    pub fn worker_title(&self) -> Option<String> {
        match self.call() {
            Call::Worker(title) => Some(title),
            Call::Planner | Call::Synthesis | Call::Unknown => None,
        }
    }
}

/// Whether a message is a user turn of Anthropic `tool_result` blocks only.
fn is_tool_results(message: &Value) -> bool {
    message
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| {
            !blocks.is_empty()
                && blocks
                    .iter()
                    .all(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        })
}

/// A message content as text: a plain string, or the `text` of an array of content blocks.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// What the server answers to one request. Build with a constructor, adjust with modifiers:
/// `Reply::text("Hello there").gap(Duration::from_millis(20)).usage(10, 3)`.
#[derive(Debug, Clone)]
pub struct Reply {
    kind: Kind,
    delay: Duration,
    gap: Duration,
    usage: UsageSpec,
    /// Of the input tokens, those reported as read from the prompt cache.
    cached_tokens: u64,
    keep_alive: bool,
    headers: Vec<(String, String)>,
    /// Stopped at the token limit: `finish_reason: "length"` / `stop_reason: "max_tokens"`.
    cut_off: bool,
    /// Reasoning sent before the text: in `reasoning_field` deltas (OpenAI) or a thinking
    /// block (Anthropic).
    reasoning: Vec<String>,
    reasoning_field: String,
    /// Anthropic: the text is the input of a `tool_use` block of this tool (streamed as
    /// `input_json_delta`s), not a text block.
    tool: Option<String>,
    /// Calls of offered tools, after the text: `tool_calls` deltas (OpenAI) or `tool_use`
    /// blocks (Anthropic), the arguments streamed in these pieces.
    calls: Vec<MockToolCall>,
}

/// One scripted tool call.
#[derive(Debug, Clone)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
    /// The argument text in the pieces it streams in; joined, it need not be valid JSON.
    pub pieces: Vec<String>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Model text in the request's protocol and mode, then `ending`.
    Text { chunks: Vec<String>, ending: Ending },
    /// An HTTP error with the protocol's error body.
    Status {
        code: u16,
        message: String,
        error_type: Option<String>,
        error_code: Option<String>,
        /// OpenAI's `error.param`: the request field the error is about.
        error_param: Option<String>,
    },
    /// A 401 whose message quotes the request's `authorization` or `x-api-key` header, as
    /// some servers and gateways do.
    ReflectKey,
    /// Exactly these bytes, in these pieces.
    Raw {
        status: u16,
        content_type: String,
        chunks: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// The protocol's proper end (`[DONE]`, `message_stop`).
    Done,
    /// Close the body cleanly without the end marker.
    Cut,
    /// Break the connection (the client sees a body read error).
    Abort,
    /// Keep the connection open and send nothing more (until the server shuts down).
    Silent,
    /// An in-stream error with this message, after HTTP 200.
    Error(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum UsageSpec {
    /// in = user text chars / 4, out = reply text chars / 4.
    Estimated,
    Fixed(u64, u64),
    Omitted,
}

/// Words per streamed chunk for `Reply::text`.
const WORDS_PER_CHUNK: usize = 4;

impl Reply {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            delay: Duration::ZERO,
            gap: Duration::ZERO,
            usage: UsageSpec::Estimated,
            cached_tokens: 0,
            keep_alive: false,
            headers: Vec::new(),
            cut_off: false,
            reasoning: Vec::new(),
            reasoning_field: "reasoning_content".to_owned(),
            tool: None,
            calls: Vec::new(),
        }
    }

    /// An answer that calls tools: `(name, argument text)` each, the text streamed in three
    /// pieces; ids are `call_N` / `toolu_N` by position. Add text before the calls with
    /// `before_calls`.
    pub fn calls(calls: &[(&str, &str)]) -> Self {
        let mut reply = Self::chunks(Vec::<String>::new());
        reply.calls = calls
            .iter()
            .enumerate()
            .map(|(i, (name, args))| MockToolCall {
                id: format!("call_{}", i + 1),
                name: (*name).to_owned(),
                pieces: split_in(args, 3),
            })
            .collect();
        reply
    }

    /// Text streamed before the tool calls of a `calls` reply.
    pub fn before_calls(mut self, text: &str) -> Self {
        if let Kind::Text { chunks, .. } = &mut self.kind {
            *chunks = split_words(text, WORDS_PER_CHUNK);
        }
        self
    }

    /// Anthropic: answer with a call of tool `name` whose input is `json` (streamed in pieces
    /// as `input_json_delta`s, or one `tool_use` block). OpenAI: `json` as the text.
    pub fn tool_call(name: &str, json: impl Into<String>) -> Self {
        let mut reply = Self::text(json);
        reply.tool = Some(name.to_owned());
        reply
    }

    /// A complete answer. Streamed in pieces of about four words (whitespace kept, so the
    /// pieces concatenate to exactly `text`) when the request asked for a stream, else one
    /// JSON answer. Usage is included (see `usage`, `no_usage`); OpenAI streams only carry it
    /// when the request set `stream_options.include_usage`, as the real API does.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Kind::Text {
            chunks: split_words(&text.into(), WORDS_PER_CHUNK),
            ending: Ending::Done,
        })
    }

    /// A complete answer streamed in exactly these pieces.
    pub fn chunks<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self::new(Kind::Text {
            chunks: chunks.into_iter().map(Into::into).collect(),
            ending: Ending::Done,
        })
    }

    /// The first `n_chunks` pieces of `text`, then the body closes without the end marker.
    /// Without streaming: half of the JSON answer, then the body closes.
    pub fn cut_after(text: impl Into<String>, n_chunks: usize) -> Self {
        Self::partial(text.into(), n_chunks, Ending::Cut)
    }

    /// Like `cut_after`, but the connection breaks instead of closing cleanly, so the client
    /// gets a read error mid-body.
    pub fn abort_after(text: impl Into<String>, n_chunks: usize) -> Self {
        Self::partial(text.into(), n_chunks, Ending::Abort)
    }

    /// The first `n_chunks` pieces of `text`, then silence with the connection open, until the
    /// server is dropped or shut down. Without streaming: half of the JSON answer, then silence.
    pub fn silent_after(text: impl Into<String>, n_chunks: usize) -> Self {
        Self::partial(text.into(), n_chunks, Ending::Silent)
    }

    /// All of `text_before` (may be empty), then an in-stream error after HTTP 200:
    /// `data: {"error":{…}}` (OpenAI) or `event: error` with an `overloaded_error` (Anthropic).
    /// Without streaming: HTTP 200 whose JSON body is that error.
    pub fn stream_error(text_before: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Kind::Text {
            chunks: split_words(&text_before.into(), WORDS_PER_CHUNK),
            ending: Ending::Error(message.into()),
        })
    }

    /// An HTTP error with the protocol's error body: `{"error":{"message","type","code"}}`
    /// (OpenAI) or `{"type":"error","error":{"type","message"}}` (Anthropic). The error type
    /// follows the status (`rate_limit_error` for 429, `overloaded_error` for 529…).
    pub fn status(code: u16, message: impl Into<String>) -> Self {
        Self::new(Kind::Status {
            code,
            message: message.into(),
            error_type: None,
            error_code: None,
            error_param: None,
        })
    }

    /// Anthropic's hard spend limit: a 429 with `error.details.error_code ==
    /// "enforced_spend_limit_reached"`, which must not be retried.
    pub fn spend_limit() -> Self {
        Self::status(429, "You have reached your specified API usage limits.")
            .error_code("enforced_spend_limit_reached")
    }

    /// HTTP 401 with the protocol's error body, whose message quotes the key the request sent
    /// (`Incorrect API key provided: Bearer sk-…`), header value and all.
    pub fn reflect_key() -> Self {
        Self::new(Kind::ReflectKey)
    }

    /// Exactly `body` with this status and content type (non-JSON 200s, proxy error pages).
    pub fn raw(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Self::new(Kind::Raw {
            status,
            content_type: content_type.to_owned(),
            chunks: vec![body.into()],
        })
    }

    /// HTTP 200 `text/event-stream` made of exactly these pieces, each written separately
    /// (with `gap` between them). Each piece should carry its own `\n\n`. For shapes the
    /// typed replies do not produce: `finish_reason: ""`, `usage: {}`, unknown event types.
    pub fn raw_sse<S: Into<String>>(pieces: impl IntoIterator<Item = S>) -> Self {
        Self::new(Kind::Raw {
            status: 200,
            content_type: "text/event-stream".to_owned(),
            chunks: pieces.into_iter().map(Into::into).collect(),
        })
    }

    fn partial(text: String, n_chunks: usize, ending: Ending) -> Self {
        let mut chunks = split_words(&text, WORDS_PER_CHUNK);
        chunks.truncate(n_chunks);
        Self::new(Kind::Text { chunks, ending })
    }

    /// Wait this long before sending the response headers.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Wait this long between two writes of the body.
    pub fn gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// Report this usage instead of the estimate.
    pub fn usage(mut self, tokens_in: u64, tokens_out: u64) -> Self {
        self.usage = UsageSpec::Fixed(tokens_in, tokens_out);
        self
    }

    /// Report `n` of the input tokens as read from the prompt cache (OpenAI:
    /// `prompt_tokens_details.cached_tokens`, part of `prompt_tokens`; Anthropic:
    /// `cache_read_input_tokens`, apart from `input_tokens`).
    pub fn cached_tokens(mut self, n: u64) -> Self {
        self.cached_tokens = n;
        self
    }

    /// Report no usage at all (OpenAI: no usage chunk or field; Anthropic: no `usage` objects).
    pub fn no_usage(mut self) -> Self {
        self.usage = UsageSpec::Omitted;
        self
    }

    /// Interleave keep-alives between streamed pieces: `: keep-alive` comments (OpenAI) or
    /// `ping` events (Anthropic).
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    /// Add a response header (`content-type` replaces the reply's own).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// End as a model stopped by the token limit: `finish_reason: "length"` (OpenAI),
    /// `stop_reason: "max_tokens"` (Anthropic), in the stream and in a whole answer.
    pub fn cut_off(mut self) -> Self {
        self.cut_off = true;
        self
    }

    /// Send `text` as reasoning before the answer: `reasoning_content` deltas or message field
    /// (OpenAI; see `reasoning_field`), a `thinking` block with `thinking_delta`s (Anthropic).
    pub fn reasoning(mut self, text: impl Into<String>) -> Self {
        self.reasoning = split_words(&text.into(), WORDS_PER_CHUNK);
        self
    }

    /// The OpenAI field reasoning goes in: `reasoning_content` (DeepSeek, vLLM; the default)
    /// or `reasoning` (Ollama, OpenRouter).
    pub fn reasoning_field(mut self, name: &str) -> Self {
        self.reasoning_field = name.to_owned();
        self
    }

    /// Add `Retry-After: secs`.
    pub fn retry_after(self, secs: u64) -> Self {
        self.header("retry-after", secs.to_string())
    }

    /// Override the error `type` of a `status` reply.
    pub fn error_type(mut self, error_type: &str) -> Self {
        if let Kind::Status { error_type: t, .. } = &mut self.kind {
            *t = Some(error_type.to_owned());
        }
        self
    }

    /// Set OpenAI's `error.param` on a `status` reply (the field refused).
    pub fn error_param(mut self, param: &str) -> Self {
        if let Kind::Status { error_param: p, .. } = &mut self.kind {
            *p = Some(param.to_owned());
        }
        self
    }

    /// Set an error code on a `status` reply: OpenAI `error.code`, Anthropic
    /// `error.details.error_code`.
    pub fn error_code(mut self, code: &str) -> Self {
        if let Kind::Status { error_code: c, .. } = &mut self.kind {
            *c = Some(code.to_owned());
        }
        self
    }
}

/// Split into `n` pieces of about equal length (on char boundaries), keeping every byte.
fn split_in(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Split into pieces of `words` whitespace-separated words, keeping every byte.
fn split_words(text: &str, words: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut count = 0;
    for piece in text.split_inclusive(char::is_whitespace) {
        current.push_str(piece);
        if !piece.trim().is_empty() {
            count += 1;
        }
        if count == words {
            chunks.push(std::mem::take(&mut current));
            count = 0;
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Replies in order, one per request; the last one repeats. For "fail twice, then succeed".
pub fn sequence(replies: Vec<Reply>) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    assert!(!replies.is_empty(), "sequence needs at least one reply");
    let next = AtomicUsize::new(0);
    move |_| {
        let i = next.fetch_add(1, Ordering::SeqCst);
        replies[i.min(replies.len() - 1)].clone()
    }
}

/// A base URL (`http://127.0.0.1:PORT`) where nothing listens: connecting is refused.
pub fn refused_url() -> String {
    // Bind a free port and release it at once; nothing else on a test machine takes it in
    // the moment before the test connects.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

type Script = dyn Fn(&MockRequest) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<MockRequest>>,
    models: Mutex<Option<Models>>,
    model_requests: Mutex<Vec<ModelsRequest>>,
    script: Mutex<Arc<Script>>,
    /// Becomes `true` (or closed) when the server stops: ends delays, gaps and silences.
    shutdown: watch::Receiver<bool>,
    /// Chat requests whose answer has not ended (or been dropped), and the most there were.
    in_flight: Mutex<(usize, usize)>,
}

/// One chat request in flight, counted until its answer ends or is dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> Self {
        {
            let mut counts = lock(&shared.in_flight);
            counts.0 += 1;
            counts.1 = counts.1.max(counts.0);
        }
        Self(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = lock(&self.0.in_flight);
        counts.0 = counts.0.saturating_sub(1);
    }
}

/// Lock, ignoring poisoning: a panicking script must not hide every later request.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running mock server on `127.0.0.1`, on the current tokio runtime. Stops when dropped.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Start a server answering every request with `script(&request)`.
    pub async fn start(script: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static) -> Self {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            models: Mutex::new(None),
            model_requests: Mutex::new(Vec::new()),
            script: Mutex::new(Arc::new(script)),
            shutdown: shutdown_rx.clone(),
            in_flight: Mutex::new((0, 0)),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .route("/v1/models", get(list_models))
            .fallback(not_found)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock server");
        let addr = listener.local_addr().expect("mock server address");
        let mut signal = shutdown_rx;
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = signal.wait_for(|stop| *stop).await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Self {
            addr,
            shared,
            shutdown,
            task: Some(task),
        }
    }

    /// Start a server that gives every request the same reply.
    pub async fn always(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    /// `http://127.0.0.1:PORT/v1`, for the OpenAI adapter's `base_url`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for the Anthropic adapter's `base_url`.
    pub fn anthropic_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL for either protocol.
    pub fn base_url(&self, protocol: Protocol) -> String {
        match protocol {
            Protocol::OpenAi => self.openai_base_url(),
            Protocol::Anthropic => self.anthropic_base_url(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in arrival order (`seq` == index).
    pub fn requests(&self) -> Vec<MockRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The most chat requests that were in flight at once (arrived, answer not yet ended).
    pub fn in_flight_high_water(&self) -> usize {
        lock(&self.shared.in_flight).1
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The most recent request. Panics when there is none, with a message saying so.
    pub fn last_request(&self) -> MockRequest {
        lock(&self.shared.requests)
            .last()
            .cloned()
            .expect("the mock server has received no request")
    }

    /// Answer `GET /v1/models` with these ids (in this order), in the asking protocol's shape;
    /// Anthropic requests get pages of `page_size` (`has_more`, `last_id`, `after_id`).
    pub fn set_models(&self, ids: &[&str], page_size: usize) {
        *lock(&self.shared.models) = Some(Models::Ids {
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
            page_size: page_size.max(1),
        });
    }

    /// Answer `GET /v1/models` with this reply (an HTTP error, a raw body, a delay).
    pub fn set_models_reply(&self, reply: Reply) {
        *lock(&self.shared.models) = Some(Models::Reply(Box::new(reply)));
    }

    /// Every `GET /v1/models` received so far, in order.
    pub fn model_requests(&self) -> Vec<ModelsRequest> {
        lock(&self.shared.model_requests).clone()
    }

    /// Replace the script; requests arriving from now on use the new one.
    pub fn set_script(&self, script: impl Fn(&MockRequest) -> Reply + Send + Sync + 'static) {
        *lock(&self.shared.script) = Arc::new(script);
    }

    /// Wait until at least `n` requests have arrived and return them all. Panics after
    /// `timeout`, listing how many came.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<MockRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} requests within {timeout:?}, got {}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop now: the port is closed when this returns, and streams still going end (cleanly,
    /// without their end marker; silent ones too).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Aborting the accept loop drops the listener at once; connection tasks end as their
        // bodies see the shutdown signal.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(shared, Protocol::OpenAi, headers, body).await
}

async fn anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(shared, Protocol::Anthropic, headers, body).await
}

/// What `GET /v1/models` answers once a test sets it.
#[derive(Debug, Clone)]
enum Models {
    Ids { ids: Vec<String>, page_size: usize },
    Reply(Box<Reply>),
}

/// One `GET /v1/models` the server received.
#[derive(Debug, Clone)]
pub struct ModelsRequest {
    pub protocol: Protocol,
    /// The query string, without `?` (empty when none).
    pub query: String,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
}

impl ModelsRequest {
    /// A header's value, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_owned())
    }
}

async fn list_models(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let protocol = if headers.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    let request = ModelsRequest {
        protocol,
        query: query.unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), v)
            })
            .collect(),
    };
    lock(&shared.model_requests).push(request.clone());
    let spec = lock(&shared.models).clone();
    match spec {
        None => not_found().await,
        Some(Models::Reply(reply)) => {
            let mut shutdown = shared.shutdown.clone();
            if !reply.delay.is_zero() && !sleep_unless_stopped(reply.delay, &mut shutdown).await {
                return build(503, "text/plain", &[], Body::from("mock stopped"));
            }
            // Rendered as a chat reply to a request of the same protocol and headers.
            let as_chat = MockRequest {
                protocol,
                seq: 0,
                body: Value::Null,
                headers: request.headers,
                received_at: Instant::now(),
                finished_at: None,
            };
            render(&as_chat, *reply, shutdown, Box::new(|| {}))
        }
        Some(Models::Ids { ids, page_size }) => {
            let json = match protocol {
                Protocol::OpenAi => json!({
                    "object": "list",
                    "data": ids.iter().map(|id| json!({
                        "id": id, "object": "model", "created": 0, "owned_by": "mock"
                    })).collect::<Vec<_>>(),
                }),
                Protocol::Anthropic => {
                    let start = request
                        .param("after_id")
                        .and_then(|after| ids.iter().position(|id| *id == after))
                        .map_or(0, |at| at + 1);
                    let page: Vec<&String> = ids.iter().skip(start).take(page_size).collect();
                    json!({
                        "data": page.iter().map(|id| json!({
                            "type": "model", "id": id, "display_name": id,
                            "created_at": "2025-01-01T00:00:00Z"
                        })).collect::<Vec<_>>(),
                        "has_more": start + page.len() < ids.len(),
                        "first_id": page.first(),
                        "last_id": page.last(),
                    })
                }
            };
            build(200, "application/json", &[], Body::from(json.to_string()))
        }
    }
}

async fn not_found() -> Response {
    let body = json!({ "error": { "message": "mock: no such route", "type": "not_found" } });
    build(404, "application/json", &[], Body::from(body.to_string()))
}

async fn handle(
    shared: Arc<Shared>,
    protocol: Protocol,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at = Instant::now();
    let gauge = InFlight::new(shared.clone());
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let request = {
        let mut requests = lock(&shared.requests);
        let request = MockRequest {
            protocol,
            seq: requests.len(),
            body,
            headers,
            received_at,
            finished_at: None,
        };
        requests.push(request.clone());
        request
    };
    let script = lock(&shared.script).clone();
    let reply = script(&request);

    let mut shutdown = shared.shutdown.clone();
    if !reply.delay.is_zero() && !sleep_unless_stopped(reply.delay, &mut shutdown).await {
        return build(503, "text/plain", &[], Body::from("mock stopped"));
    }
    let seq = request.seq;
    let record = shared.clone();
    let on_finish: Finish = Box::new(move || {
        drop(gauge);
        if let Some(r) = lock(&record.requests).get_mut(seq) {
            r.finished_at = Some(Instant::now());
        }
    });
    render(&request, reply, shutdown, on_finish)
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

type Finish = Box<dyn FnOnce() + Send>;

fn render(
    request: &MockRequest,
    reply: Reply,
    shutdown: watch::Receiver<bool>,
    on_finish: Finish,
) -> Response {
    let gap = reply.gap;
    let extra = &reply.headers;
    let body = |status, content_type, pieces, ending| {
        let plan = Plan {
            pieces,
            gap,
            started: false,
            ending,
            on_finish: Some(on_finish),
            shutdown,
        };
        let stream = futures_util::stream::unfold(plan, next_piece);
        build(status, content_type, extra, Body::from_stream(stream))
    };
    match &reply.kind {
        Kind::Raw {
            status,
            content_type,
            chunks,
        } => body(
            *status,
            content_type.as_str(),
            chunks.iter().cloned().collect(),
            Ending::Done,
        ),
        Kind::ReflectKey => {
            let sent = request
                .header("authorization")
                .or_else(|| request.header("x-api-key"))
                .unwrap_or_default();
            let message = format!("Incorrect API key provided: {sent}. Check your key.");
            let error_type = default_error_type(request.protocol, 401);
            let json = error_body(request.protocol, error_type, &message, None);
            body(
                401,
                "application/json",
                VecDeque::from([json.to_string()]),
                Ending::Done,
            )
        }
        Kind::Status {
            code,
            message,
            error_type,
            error_code,
            error_param,
        } => {
            let error_type = error_type
                .clone()
                .unwrap_or_else(|| default_error_type(request.protocol, *code).to_owned());
            let mut json = error_body(
                request.protocol,
                &error_type,
                message,
                error_code.as_deref(),
            );
            if let (Protocol::OpenAi, Some(param)) = (request.protocol, error_param) {
                json["error"]["param"] = json!(param);
            }
            body(
                *code,
                "application/json",
                VecDeque::from([json.to_string()]),
                Ending::Done,
            )
        }
        Kind::Text { chunks, ending } if request.stream() => {
            let pieces = match request.protocol {
                Protocol::OpenAi => openai_stream(request, &reply, chunks, ending),
                Protocol::Anthropic => anthropic_stream(request, &reply, chunks, ending),
            };
            // The stream's own error/end frames are in `pieces`; only the transport ending
            // (cut, abort, silence) is left for the body.
            let transport = match ending {
                Ending::Abort | Ending::Silent => ending.clone(),
                _ => Ending::Done,
            };
            body(200, "text/event-stream", pieces, transport)
        }
        Kind::Text { chunks, ending } => {
            let text: String = chunks.concat();
            let json = match ending {
                Ending::Error(message) => {
                    let kind = match request.protocol {
                        Protocol::OpenAi => "server_error",
                        Protocol::Anthropic => "overloaded_error",
                    };
                    error_body(request.protocol, kind, message, None)
                }
                _ => answer_json(request, &reply, &text),
            }
            .to_string();
            let pieces = match ending {
                // Half a JSON document: unreadable for the client, whatever comes next.
                Ending::Cut | Ending::Abort | Ending::Silent => {
                    let mut half = json.len() / 2;
                    while !json.is_char_boundary(half) {
                        half -= 1;
                    }
                    VecDeque::from([json[..half].to_owned()])
                }
                _ => VecDeque::from([json]),
            };
            let transport = match ending {
                Ending::Abort | Ending::Silent => ending.clone(),
                _ => Ending::Done,
            };
            body(200, "application/json", pieces, transport)
        }
    }
}

fn usage_of(request: &MockRequest, reply: &Reply, text: &str) -> Option<(u64, u64)> {
    match reply.usage {
        UsageSpec::Estimated => Some((
            (request.user().chars().count() / 4) as u64,
            (text.chars().count() / 4) as u64,
        )),
        UsageSpec::Fixed(i, o) => Some((i, o)),
        UsageSpec::Omitted => None,
    }
}

fn openai_usage(reply: &Reply, i: u64, o: u64) -> Value {
    let mut usage = json!({ "prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o });
    if reply.cached_tokens > 0 {
        usage["prompt_tokens_details"] = json!({ "cached_tokens": reply.cached_tokens });
    }
    usage
}

/// Anthropic counts cache reads apart from `input_tokens`: `i` is the whole input.
fn anthropic_usage(reply: &Reply, i: u64, o: u64) -> Value {
    let cached = reply.cached_tokens.min(i);
    let mut usage = json!({ "input_tokens": i - cached, "output_tokens": o });
    if cached > 0 {
        usage["cache_read_input_tokens"] = json!(cached);
    }
    usage
}

fn sse_data(json: &Value) -> String {
    format!("data: {json}\n\n")
}

fn sse_event(name: &str, json: &Value) -> String {
    format!("event: {name}\ndata: {json}\n\n")
}

fn openai_stream(
    request: &MockRequest,
    reply: &Reply,
    chunks: &[String],
    ending: &Ending,
) -> VecDeque<String> {
    let id = format!("chatcmpl-mock-{}", request.seq);
    let model = request.model();
    let with_usage = request.include_usage();
    let chunk = |delta: Value, finish: Value| {
        let mut json = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        if with_usage {
            json["usage"] = Value::Null;
        }
        sse_data(&json)
    };
    let mut pieces = VecDeque::new();
    pieces.push_back(chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    ));
    for thought in &reply.reasoning {
        let mut delta = json!({ "content": null });
        delta[reply.reasoning_field.as_str()] = json!(thought);
        pieces.push_back(chunk(delta, Value::Null));
    }
    for (i, text) in chunks.iter().enumerate() {
        if reply.keep_alive && i > 0 {
            pieces.push_back(": keep-alive\n\n".to_owned());
        }
        pieces.push_back(chunk(json!({ "content": text }), Value::Null));
    }
    for (index, call) in reply.calls.iter().enumerate() {
        pieces.push_back(chunk(
            json!({ "tool_calls": [{ "index": index, "id": call.id, "type": "function",
                                     "function": { "name": call.name, "arguments": "" } }] }),
            Value::Null,
        ));
        for piece in &call.pieces {
            pieces.push_back(chunk(
                json!({ "tool_calls": [{ "index": index, "function": { "arguments": piece } }] }),
                Value::Null,
            ));
        }
    }
    match ending {
        Ending::Done => {
            let finish = if reply.cut_off {
                "length"
            } else if !reply.calls.is_empty() {
                "tool_calls"
            } else {
                "stop"
            };
            pieces.push_back(chunk(json!({}), json!(finish)));
            let text = chunks.concat();
            if let (true, Some((i, o))) = (with_usage, usage_of(request, reply, &text)) {
                pieces.push_back(sse_data(&json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": model,
                    "choices": [],
                    "usage": openai_usage(reply, i, o),
                })));
            }
            pieces.push_back("data: [DONE]\n\n".to_owned());
        }
        Ending::Error(message) => {
            pieces.push_back(sse_data(&json!({
                "error": { "message": message, "type": "server_error", "param": null, "code": null }
            })));
        }
        Ending::Cut | Ending::Abort | Ending::Silent => {}
    }
    pieces
}

fn anthropic_stream(
    request: &MockRequest,
    reply: &Reply,
    chunks: &[String],
    ending: &Ending,
) -> VecDeque<String> {
    let text = chunks.concat();
    let usage = usage_of(request, reply, &text);
    let mut message = json!({
        "id": format!("msg_mock_{}", request.seq),
        "type": "message",
        "role": "assistant",
        "model": request.model(),
        "content": [],
        "stop_reason": null,
        "stop_sequence": null,
    });
    if let Some((i, _)) = usage {
        message["usage"] = anthropic_usage(reply, i, 1);
    }
    let ping = || sse_event("ping", &json!({ "type": "ping" }));
    let mut pieces = VecDeque::new();
    pieces.push_back(sse_event(
        "message_start",
        &json!({ "type": "message_start", "message": message }),
    ));
    // A thinking block first (index 0), when there is reasoning; then the text block.
    let text_index = usize::from(!reply.reasoning.is_empty());
    if text_index == 1 {
        pieces.push_back(sse_event(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": 0,
                     "content_block": { "type": "thinking", "thinking": "" } }),
        ));
        for thought in &reply.reasoning {
            pieces.push_back(sse_event(
                "content_block_delta",
                &json!({ "type": "content_block_delta", "index": 0,
                         "delta": { "type": "thinking_delta", "thinking": thought } }),
            ));
        }
        pieces.push_back(sse_event(
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": 0,
                     "delta": { "type": "signature_delta", "signature": "c2lnbmVk" } }),
        ));
        pieces.push_back(sse_event(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": 0 }),
        ));
    }
    let block = match &reply.tool {
        Some(name) => json!({ "type": "tool_use", "id": "toolu_mock", "name": name, "input": {} }),
        None => json!({ "type": "text", "text": "" }),
    };
    pieces.push_back(sse_event(
        "content_block_start",
        &json!({ "type": "content_block_start", "index": text_index, "content_block": block }),
    ));
    pieces.push_back(ping());
    for (i, piece) in chunks.iter().enumerate() {
        if reply.keep_alive && i > 0 {
            pieces.push_back(ping());
        }
        let delta = match &reply.tool {
            Some(_) => json!({ "type": "input_json_delta", "partial_json": piece }),
            None => json!({ "type": "text_delta", "text": piece }),
        };
        pieces.push_back(sse_event(
            "content_block_delta",
            &json!({ "type": "content_block_delta", "index": text_index, "delta": delta }),
        ));
    }
    if !reply.calls.is_empty() {
        pieces.push_back(sse_event(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": text_index }),
        ));
    }
    for (n, call) in reply.calls.iter().enumerate() {
        let index = text_index + 1 + n;
        let id = call.id.replace("call_", "toolu_");
        pieces.push_back(sse_event(
            "content_block_start",
            &json!({ "type": "content_block_start", "index": index,
                     "content_block": { "type": "tool_use", "id": id, "name": call.name,
                                        "input": {} } }),
        ));
        for piece in &call.pieces {
            pieces.push_back(sse_event(
                "content_block_delta",
                &json!({ "type": "content_block_delta", "index": index,
                         "delta": { "type": "input_json_delta", "partial_json": piece } }),
            ));
        }
        pieces.push_back(sse_event(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": index }),
        ));
    }
    match ending {
        Ending::Done => {
            if reply.calls.is_empty() {
                pieces.push_back(sse_event(
                    "content_block_stop",
                    &json!({ "type": "content_block_stop", "index": text_index }),
                ));
            }
            let stop = if reply.cut_off {
                "max_tokens"
            } else if !reply.calls.is_empty() {
                "tool_use"
            } else {
                "end_turn"
            };
            let mut delta = json!({
                "type": "message_delta",
                "delta": { "stop_reason": stop, "stop_sequence": null },
            });
            if let Some((_, o)) = usage {
                delta["usage"] = json!({ "output_tokens": o });
            }
            pieces.push_back(sse_event("message_delta", &delta));
            pieces.push_back(sse_event(
                "message_stop",
                &json!({ "type": "message_stop" }),
            ));
        }
        Ending::Error(message) => {
            pieces.push_back(sse_event(
                "error",
                &json!({ "type": "error",
                         "error": { "type": "overloaded_error", "message": message } }),
            ));
        }
        Ending::Cut | Ending::Abort | Ending::Silent => {}
    }
    pieces
}

/// A whole non-streamed answer in the request's protocol.
fn answer_json(request: &MockRequest, reply: &Reply, text: &str) -> Value {
    let usage = usage_of(request, reply, text);
    match request.protocol {
        Protocol::OpenAi => {
            let mut json = json!({
                "id": format!("chatcmpl-mock-{}", request.seq),
                "object": "chat.completion",
                "created": 0,
                "model": request.model(),
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": text },
                    "finish_reason": if reply.cut_off { "length" } else { "stop" },
                }],
            });
            if !reply.reasoning.is_empty() {
                json["choices"][0]["message"][reply.reasoning_field.as_str()] =
                    json!(reply.reasoning.concat());
            }
            if !reply.calls.is_empty() {
                json["choices"][0]["message"]["tool_calls"] = reply
                    .calls
                    .iter()
                    .map(|c| {
                        json!({ "id": c.id, "type": "function",
                                "function": { "name": c.name, "arguments": c.pieces.concat() } })
                    })
                    .collect();
                json["choices"][0]["finish_reason"] = json!("tool_calls");
            }
            if let Some((i, o)) = usage {
                json["usage"] = openai_usage(reply, i, o);
            }
            json
        }
        Protocol::Anthropic => {
            let mut json = json!({
                "id": format!("msg_mock_{}", request.seq),
                "type": "message",
                "role": "assistant",
                "model": request.model(),
                "content": [match &reply.tool {
                    Some(name) => json!({
                        "type": "tool_use",
                        "id": "toolu_mock",
                        "name": name,
                        "input": serde_json::from_str::<Value>(text).unwrap_or(Value::Null),
                    }),
                    None => json!({ "type": "text", "text": text }),
                }],
                "stop_reason": if reply.tool.is_some() {
                    "tool_use"
                } else if reply.cut_off {
                    "max_tokens"
                } else {
                    "end_turn"
                },
                "stop_sequence": null,
            });
            if !reply.reasoning.is_empty() {
                json["content"] = json!([
                    { "type": "thinking", "thinking": reply.reasoning.concat(),
                      "signature": "c2lnbmVk" },
                    { "type": "text", "text": text },
                ]);
            }
            if !reply.calls.is_empty() {
                let blocks = json["content"].as_array_mut().expect("content is an array");
                for c in &reply.calls {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": c.id.replace("call_", "toolu_"),
                        "name": c.name,
                        "input": serde_json::from_str::<Value>(&c.pieces.concat())
                            .unwrap_or(json!({})),
                    }));
                }
                json["stop_reason"] = json!("tool_use");
            }
            if let Some((i, o)) = usage {
                json["usage"] = anthropic_usage(reply, i, o);
            }
            json
        }
    }
}

fn default_error_type(protocol: Protocol, code: u16) -> &'static str {
    match (protocol, code) {
        (Protocol::OpenAi, 401) => "invalid_request_error",
        (Protocol::OpenAi, 429) => "rate_limit_exceeded",
        (Protocol::OpenAi, 500..) => "server_error",
        (Protocol::OpenAi, _) => "invalid_request_error",
        (Protocol::Anthropic, 401) => "authentication_error",
        (Protocol::Anthropic, 403) => "permission_error",
        (Protocol::Anthropic, 404) => "not_found_error",
        (Protocol::Anthropic, 413) => "request_too_large",
        (Protocol::Anthropic, 429) => "rate_limit_error",
        (Protocol::Anthropic, 529) => "overloaded_error",
        (Protocol::Anthropic, 500..) => "api_error",
        (Protocol::Anthropic, _) => "invalid_request_error",
    }
}

fn error_body(protocol: Protocol, error_type: &str, message: &str, code: Option<&str>) -> Value {
    match protocol {
        Protocol::OpenAi => json!({
            "error": { "message": message, "type": error_type, "param": null, "code": code }
        }),
        Protocol::Anthropic => {
            let mut error = json!({ "type": error_type, "message": message });
            if let Some(code) = code {
                error["details"] = json!({ "error_code": code });
            }
            json!({ "type": "error", "error": error })
        }
    }
}

/// The pieces of a body still to write, and what happens after the last one.
struct Plan {
    pieces: VecDeque<String>,
    gap: Duration,
    started: bool,
    ending: Ending,
    on_finish: Option<Finish>,
    shutdown: watch::Receiver<bool>,
}

impl Plan {
    fn finish(&mut self) {
        if let Some(f) = self.on_finish.take() {
            f();
        }
    }
}

/// Sleep, or return `false` early when the server stops.
async fn sleep_unless_stopped(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

/// One step of the body stream: the next piece after the gap, then the ending.
async fn next_piece(mut plan: Plan) -> Option<(Result<String, std::io::Error>, Plan)> {
    if let Some(piece) = plan.pieces.pop_front() {
        if plan.started
            && !plan.gap.is_zero()
            && !sleep_unless_stopped(plan.gap, &mut plan.shutdown).await
        {
            return None;
        }
        plan.started = true;
        if plan.pieces.is_empty() && plan.ending != Ending::Silent {
            plan.finish();
        }
        return Some((Ok(piece), plan));
    }
    match std::mem::replace(&mut plan.ending, Ending::Done) {
        Ending::Silent => {
            // Until the server stops (a closed channel counts: the server was dropped).
            let _ = plan.shutdown.wait_for(|stop| *stop).await;
            None
        }
        Ending::Abort => {
            plan.finish();
            // Let the connection flush what came before (hyper writes out while the body is
            // pending), so the client sees a break mid-body, not a connection that never
            // answered.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "mock abort");
            Some((Err(error), plan))
        }
        _ => {
            plan.finish();
            None
        }
    }
}

fn build(
    status: u16,
    content_type: &str,
    extra_headers: &[(String, String)],
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    for (name, value) in extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value).expect("a valid header value");
        // A reply's own content type replaces the default one instead of adding a second.
        if name == header::CONTENT_TYPE {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    }
    response
}

/// The most of `requests` that were in flight at once (received, response not yet finished).
pub fn max_in_flight(requests: &[&MockRequest]) -> usize {
    requests
        .iter()
        .map(|r| {
            requests
                .iter()
                .filter(|o| {
                    o.received_at <= r.received_at
                        && o.finished_at.is_none_or(|end| end > r.received_at)
                })
                .count()
        })
        .max()
        .unwrap_or(0)
}
