//! Talking to language models: a provider-neutral request, streamed text, usage and a
//! classified error, and the adapters that speak each wire protocol.
//!
//! Adapters do one call each: no retry loop and no overall deadline here. Retrying is the run
//! state machine's decision (it knows attempts, limits and what has already been shown) and the
//! overall timeout is applied by the executor; an adapter only classifies what went wrong
//! (`CallError::retryable`, `retry_after`) and enforces the idle timeout between stream chunks,
//! which only it can see. Nothing here knows about runs, subtasks or the terminal.

pub mod anthropic;
pub mod demo;
mod http;
mod models;
pub mod openai;
pub mod quirks;
pub mod reasoning;
pub mod sse;
pub mod structured;
pub mod tools;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::protocol::{CallRole, Usage};

/// An API key read from the environment. Its `Debug` never shows it, so it cannot leak into
/// logs or error messages by accident; `expose` is called only where a header is built.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// One thing an adapter learnt about a server and model (which structured-output mode it
/// takes, a parameter it refuses), as plain data. The adapters keep these for the life of the
/// process; a front end that wants them to last longer saves [`learnt_facts`] somewhere and
/// hands them back with [`import_facts`] in the next process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LearntFact {
    /// The configured base URL, without a trailing `/`.
    pub base_url: String,
    pub model: String,
    /// What is known: `structured_output`, `token_param`, `drop_temperature`,
    /// `drop_stream_options`.
    pub fact: String,
    /// Its value, in the words the fact's owner reads back (`json_object`, `max_tokens`, `true`).
    pub value: String,
}

/// Everything learnt in this process (and imported into it), in a stable order.
pub fn learnt_facts() -> Vec<LearntFact> {
    let mut facts = structured::export();
    facts.extend(quirks::export());
    facts.sort_by(|a, b| (&a.base_url, &a.model, &a.fact).cmp(&(&b.base_url, &b.model, &b.fact)));
    facts
}

/// Adds facts learnt by an earlier process. What this process has learnt already wins; facts
/// that are not understood (an older or newer build wrote them) are skipped.
pub fn import_facts(facts: &[LearntFact]) {
    structured::import(facts);
    quirks::import(facts);
}

/// One chat call, in the terms both wire protocols share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    /// What the call is for. Providers send nothing of it; the demo provider and logs use it.
    pub role: CallRole,
    pub system: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    /// Ask for an answer in this JSON shape (the planner); `None` for plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured: Option<structured::StructuredOutput>,
    /// Whether a saved answer to the same request may stand in for the call. Providers send
    /// nothing of it; the result cache reads it.
    #[serde(default, skip_serializing_if = "CachePolicy::is_use")]
    pub cache: CachePolicy,
    /// Tools the model may call (workers only); empty sends no tool fields at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<tools::ToolSpec>,
}

/// What the result cache may do with a request. The run decides: an attempt started by an
/// explicit re-run or edit bypasses the cache, every other attempt may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePolicy {
    /// A saved answer may stand in for the call; a new answer may be saved.
    #[default]
    Use,
    /// Call the model whatever is saved; its answer replaces the saved one.
    Bypass,
}

impl CachePolicy {
    pub fn is_use(&self) -> bool {
        *self == Self::Use
    }
}

/// One turn of the conversation. Besides text, an assistant turn may carry the tool calls the
/// model made and a user turn the results of those calls (Anthropic's shape; the OpenAI
/// adapter sends each result as a `tool` message). Both lists are left out of the JSON when
/// empty, so a conversation without tools serialises (and is cached) as before they existed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: MessageRole,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<tools::ToolCall>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_results: Vec<tools::ToolResult>,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: MessageRole::User,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_results: Vec::new(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: MessageRole::Assistant,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_results: Vec::new(),
        }
    }
    /// The model's turn that asked for tools: its text (often empty) and the calls.
    pub fn tool_calls(content: impl Into<String>, calls: Vec<tools::ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::assistant(content)
        }
    }
    /// The answers to the previous turn's tool calls.
    pub fn tool_results(results: Vec<tools::ToolResult>) -> Self {
        Self {
            tool_results: results,
            ..Self::user("")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
}

/// A finished call: the answer, the reasoning the model showed apart from it, and what the
/// provider reported of its usage and of why it stopped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    /// The answer only: never the reasoning, which is in `reasoning`.
    pub text: String,
    /// `None` when the provider sent no usage; the engine then estimates it.
    pub usage: Option<Usage>,
    /// The model stopped at the token limit (`finish_reason: "length"`, `stop_reason:
    /// "max_tokens"`): the answer is kept but may be incomplete.
    pub cut_off: bool,
    /// Reasoning (`<think>` blocks, `reasoning_content` / `reasoning` fields, Anthropic
    /// thinking blocks), for people to read; it never reaches another prompt.
    pub reasoning: String,
    /// The answer was saved from an earlier identical call, not asked of the model: no tokens
    /// were spent on it.
    pub cached: bool,
    /// Tools the model asked to call (`finish_reason: "tool_calls"`, `stop_reason:
    /// "tool_use"`); `text` is whatever it said alongside them.
    pub tool_calls: Vec<tools::ToolCall>,
}

/// Where an adapter sends text as it streams in. Dropped deltas (a receiver that went away
/// because the call was cancelled) are not an error for the adapter.
#[derive(Debug, Clone)]
pub struct DeltaSink(mpsc::UnboundedSender<Delta>);

/// A piece of streamed text: answer, or reasoning shown apart from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    Answer(String),
    Reasoning(String),
}

impl DeltaSink {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Delta>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }
    /// A sink that throws everything away (non-streaming callers, tests).
    pub fn discard() -> Self {
        Self::new().0
    }
    /// Answer text.
    pub fn send(&self, text: &str) {
        if !text.is_empty() {
            let _ = self.0.send(Delta::Answer(text.to_owned()));
        }
    }
    /// Reasoning text.
    pub fn send_reasoning(&self, text: &str) {
        if !text.is_empty() {
            let _ = self.0.send(Delta::Reasoning(text.to_owned()));
        }
    }
    /// Both parts of a split piece, reasoning first.
    pub fn send_split(&self, split: &reasoning::Split) {
        self.send_reasoning(&split.reasoning);
        self.send(&split.answer);
    }
}

/// The `CallError::reason` of a prompt longer than the model's context window: never retried,
/// and the run adds what was too long and how to bound it.
pub const CONTEXT_LENGTH: &str = "context length";

/// The `CallError::reason` of a request refused because it offered tools (the server or model
/// does not do function calling). The executor then asks again without tools, once.
pub const TOOLS_UNSUPPORTED: &str = "tools unsupported";

/// Why a call failed, classified so the engine can decide whether to try again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What a user reads: the provider's own message where there is one.
    pub message: String,
    /// A short label for progress lines: `429`, `503`, `timeout`, `stream cut`.
    pub reason: String,
    /// Worth another attempt: 429 (unless a hard spend limit), 5xx, 529, timeouts, connection
    /// errors, streams cut before their end.
    pub retryable: bool,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// What the server reported of the call's usage before it failed (Anthropic reports the
    /// input tokens when a stream starts): those tokens are paid for all the same.
    pub usage: Option<Usage>,
}

impl CallError {
    pub fn fatal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            reason: reason.into(),
            retryable: false,
            retry_after: None,
            usage: None,
        }
    }
    pub fn transient(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            reason: reason.into(),
            retryable: true,
            retry_after: None,
            usage: None,
        }
    }
    pub fn timeout(after: Duration) -> Self {
        Self::transient(
            "timeout",
            format!("no complete answer within {}", human_duration(after)),
        )
    }
    pub fn idle(after: Duration) -> Self {
        Self::transient(
            "idle timeout",
            format!("the stream went silent for {}", human_duration(after)),
        )
    }
    /// Classify an HTTP error status the same way for every provider. `message` should be the
    /// provider's own error text.
    pub fn from_status(status: u16, message: String, retry_after: Option<Duration>) -> Self {
        let retryable = matches!(status, 408 | 409 | 429 | 500..=599);
        Self {
            message: format!("HTTP {status}: {message}"),
            reason: status.to_string(),
            retryable,
            retry_after,
            usage: None,
        }
    }

    /// This error with the usage reported before it, if any was.
    pub fn with_usage(mut self, usage: Option<Usage>) -> Self {
        if usage.is_some() {
            self.usage = usage;
        }
        self
    }
}

/// `2.5s`, `30s`, `2m`: for messages.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) && ms < 120_000 {
        format!("{}s", ms / 1000)
    } else if ms < 120_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m", ms / 60_000)
    }
}

/// Parse a `Retry-After` header: seconds, or an HTTP-date (which some gateways send; one in
/// the past means "now"). Also reads `retry-after-ms`, which OpenAI sends. Values no
/// `Duration` can hold (negative, NaN, absurdly large) and unreadable dates count as absent
/// rather than failing.
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after_at(headers, std::time::SystemTime::now())
}

fn parse_retry_after_at(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |v: &str, scale: f64| {
        v.parse::<f64>()
            .ok()
            .and_then(|v| Duration::try_from_secs_f64(v / scale).ok())
    };
    if let Some(ms) = value("retry-after-ms").and_then(|v| seconds(v, 1000.0)) {
        return Some(ms);
    }
    let v = value("retry-after")?;
    seconds(v, 1.0).or_else(|| {
        let date = httpdate::parse_http_date(v).ok()?;
        Some(date.duration_since(now).unwrap_or(Duration::ZERO))
    })
}

pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Completion, CallError>> + Send + 'a>>;

/// The model ids a provider offers, sorted, or why they could not be listed.
pub type ModelsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<String>, CallError>> + Send + 'a>>;

/// A model provider. One call per `complete`; text is sent to `sink` as it arrives (all at
/// once at the end when not streaming) and the whole text is returned.
pub trait Provider: Send + Sync {
    /// `openai`, `anthropic` or `demo`, for the status line and reports.
    fn name(&self) -> &str;
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_>;
    /// The models this provider offers, sorted. One request (or one per page), no retry;
    /// the caller bounds how long it may take. A provider with no way to list models says so.
    fn list_models(&self) -> ModelsFuture<'_> {
        Box::pin(std::future::ready(Err(CallError::fatal(
            "no model list",
            "this provider cannot list its models",
        ))))
    }
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("a header value"));
        h
    }

    #[test]
    fn seconds_and_milliseconds_are_read() {
        assert_eq!(
            parse_retry_after(&headers("retry-after", "7")),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(&headers("retry-after-ms", "1500")),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn http_dates_are_read_and_a_past_one_means_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("a date");
        let at = |value: &str| parse_retry_after_at(&headers("retry-after", value), now);
        assert_eq!(
            at("Sun, 06 Nov 1994 08:50:07 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(
            at("Sunday, 06-Nov-94 08:49:47 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(at("Sun, 32 Nov 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn absurd_values_are_ignored_not_a_panic() {
        for value in [
            "99999999999999999999999",
            "1e30",
            "-5",
            "NaN",
            "inf",
            "soon",
        ] {
            assert_eq!(
                parse_retry_after(&headers("retry-after", value)),
                None,
                "{value}"
            );
            assert_eq!(
                parse_retry_after(&headers("retry-after-ms", value)),
                None,
                "{value}"
            );
        }
    }
}
