//! What each server accepts of a request body, learnt from its refusals.
//!
//! Servers disagree about parameters: OpenAI's reasoning models reject `max_tokens` (they want
//! `max_completion_tokens`) and any `temperature` but the default, older OpenAI-compatible
//! servers reject `max_completion_tokens`, some reject `stream_options`.
//! When a 400 (or 422) names one of these as unsupported, `adapt` returns the body changed
//! (that parameter swapped or dropped) for one immediate resend, remembers the change for the
//! base URL and model for the rest of the process (front ends carry it across processes with
//! `export`/`import`), and logs one line. `prepare` applies what was
//! learnt to every later body, so the refusal costs one request per model, not one per call.
//!
//! It owns only JSON bodies and the memory: it must not send anything, retry more than once
//! (`llm::http` resends at most once) or know about runs.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use serde_json::Value;

use crate::llm::sse::HttpFailure;

/// Which name carries the output token limit in an OpenAI-compatible body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenParam {
    /// `max_tokens`: every OpenAI-compatible server but OpenAI's newer models.
    MaxTokens,
    /// `max_completion_tokens`: OpenAI's own API (required by its reasoning models).
    MaxCompletionTokens,
}

impl TokenParam {
    pub fn name(self) -> &'static str {
        match self {
            TokenParam::MaxTokens => "max_tokens",
            TokenParam::MaxCompletionTokens => "max_completion_tokens",
        }
    }

    /// The name to send when the configuration does not say: OpenAI's own API takes
    /// `max_completion_tokens` for every model; other servers know `max_tokens`, and some reject
    /// the newer name.
    pub fn for_base_url(base_url: &str) -> Self {
        if is_openai_api(base_url) {
            TokenParam::MaxCompletionTokens
        } else {
            TokenParam::MaxTokens
        }
    }

    fn other(self) -> Self {
        match self {
            TokenParam::MaxTokens => TokenParam::MaxCompletionTokens,
            TokenParam::MaxCompletionTokens => TokenParam::MaxTokens,
        }
    }
}

/// Whether the URL's host is OpenAI's own API.
fn is_openai_api(base_url: &str) -> bool {
    reqwest::Url::parse(base_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h == "api.openai.com")
}

/// The parameters a server may refuse, checked in this order (the longer name first, so
/// `max_completion_tokens` is not read as `max_tokens`). A refused `response_format` is not
/// here: `llm::structured` answers it by stepping down from a JSON schema to JSON mode to plain
/// text, which dropping the parameter at once would skip.
const ADAPTABLE: [&str; 4] = [
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "stream_options",
];

/// Words with which servers say a parameter is not accepted (OpenAI's "Unsupported
/// parameter", "Unrecognized request argument", vLLM's "Extra inputs are not permitted",
/// "does not support 0.2 with this model").
const REFUSAL_WORDS: [&str; 9] = [
    "unsupported",
    "not supported",
    "does not support",
    "unrecognized",
    "unrecognised",
    "unknown",
    "not permitted",
    "not allowed",
    "extra",
];

/// What was learnt about one base URL and model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Learnt {
    /// The token limit's name, when a refusal showed which one the server takes.
    token_param: Option<TokenParam>,
    drop_temperature: bool,
    drop_stream_options: bool,
    /// The server refused a request that offered tools: workers of this model go without.
    no_tools: bool,
}

type Memory = Mutex<HashMap<(String, String), Learnt>>;

/// For the rest of the process: a model's refusal will not change between calls.
fn memory() -> &'static Memory {
    static MEMORY: OnceLock<Memory> = OnceLock::new();
    MEMORY.get_or_init(Memory::default)
}

/// The memory's key: a trailing `/` does not make another server.
fn key(base_url: &str, model: &str) -> (String, String) {
    (base_url.trim_end_matches('/').to_owned(), model.to_owned())
}

fn learnt(base_url: &str, model: &str) -> Learnt {
    memory()
        .lock()
        .map(|m| m.get(&key(base_url, model)).copied().unwrap_or_default())
        .unwrap_or_default()
}

/// Apply `change` to what is known of `base_url` and `model`; true when it was news (so
/// calls refused at the same time log it once).
fn remember(base_url: &str, model: &str, change: impl FnOnce(&mut Learnt)) -> bool {
    let Ok(mut m) = memory().lock() else {
        return true;
    };
    let learnt = m.entry(key(base_url, model)).or_default();
    let before = *learnt;
    change(learnt);
    *learnt != before
}

/// What the memory holds, as facts: `token_param` (the name the server takes), and
/// `drop_temperature` / `drop_stream_options` (`true`) for parameters it refuses.
pub fn export() -> Vec<crate::llm::LearntFact> {
    let Ok(m) = memory().lock() else {
        return Vec::new();
    };
    let mut facts = Vec::new();
    for ((base_url, model), learnt) in m.iter() {
        let mut add = |fact: &str, value: &str| {
            facts.push(crate::llm::LearntFact {
                base_url: base_url.clone(),
                model: model.clone(),
                fact: fact.to_owned(),
                value: value.to_owned(),
            })
        };
        if let Some(param) = learnt.token_param {
            add(FACT_TOKEN_PARAM, param.name());
        }
        if learnt.drop_temperature {
            add(FACT_DROP_TEMPERATURE, "true");
        }
        if learnt.drop_stream_options {
            add(FACT_DROP_STREAM_OPTIONS, "true");
        }
        if learnt.no_tools {
            add(FACT_NO_TOOLS, "true");
        }
    }
    facts
}

/// Takes the facts [`export`] writes among `facts` into the memory; what this process learnt
/// already wins. Facts it does not know, or with a value it does not know, are ignored.
pub fn import(facts: &[crate::llm::LearntFact]) {
    for fact in facts {
        let change: Box<dyn FnOnce(&mut Learnt)> = match (fact.fact.as_str(), fact.value.as_str()) {
            (FACT_TOKEN_PARAM, value) => {
                let Some(param) = [TokenParam::MaxTokens, TokenParam::MaxCompletionTokens]
                    .into_iter()
                    .find(|p| p.name() == value)
                else {
                    continue;
                };
                Box::new(move |l: &mut Learnt| {
                    l.token_param.get_or_insert(param);
                })
            }
            (FACT_DROP_TEMPERATURE, "true") => Box::new(|l: &mut Learnt| l.drop_temperature = true),
            (FACT_DROP_STREAM_OPTIONS, "true") => {
                Box::new(|l: &mut Learnt| l.drop_stream_options = true)
            }
            (FACT_NO_TOOLS, "true") => Box::new(|l: &mut Learnt| l.no_tools = true),
            _ => continue,
        };
        remember(&fact.base_url, &fact.model, change);
    }
}

const FACT_TOKEN_PARAM: &str = "token_param";
const FACT_DROP_TEMPERATURE: &str = "drop_temperature";
const FACT_DROP_STREAM_OPTIONS: &str = "drop_stream_options";
const FACT_NO_TOOLS: &str = "no_tools";

/// Apply what was learnt for `base_url` and the body's model to `body`.
pub(crate) fn prepare(base_url: &str, body: &mut Value) {
    let model = model_of(body);
    let learnt = learnt(base_url, &model);
    let Some(object) = body.as_object_mut() else {
        return;
    };
    if let Some(wanted) = learnt.token_param {
        let unwanted = wanted.other().name();
        if let Some(limit) = object.remove(unwanted) {
            object.insert(wanted.name().to_owned(), limit);
        }
    }
    if learnt.drop_temperature {
        object.remove("temperature");
    }
    if learnt.drop_stream_options {
        object.remove("stream_options");
    }
    // Called before Anthropic's structured-output tool is added, so only offered tools go.
    if learnt.no_tools {
        object.remove("tools");
        object.remove("tool_choice");
    }
}

/// Whether this model of `base_url` is known to refuse tools (`prepare` leaves them out).
pub fn refuses_tools_known(base_url: &str, model: &str) -> bool {
    learnt(base_url, model).no_tools
}

/// Words with which servers say they do not do function calling: Ollama's "does not support
/// tools", llama.cpp's "tools param requires --jinja", vLLM's "\"auto\" tool choice requires
/// --enable-auto-tool-choice", OpenAI-style `functions`.
const TOOL_WORDS: [&str; 8] = [
    "tools",
    "tool_choice",
    "tool choice",
    "functions",
    "function calling",
    "tool calling",
    "tool use",
    "tool_use",
];

/// Whether `failure`, the answer to a request that offered tools, says the server or model
/// does not take them: a 400 or 422 whose error names them. Such a request is not resent here:
/// the executor asks again without tools and tells the user.
pub(crate) fn refuses_tools(failure: &HttpFailure) -> bool {
    if !matches!(failure.status, 400 | 422) || exceeds_context(failure) {
        return false;
    }
    let message = failure
        .json()
        .as_ref()
        .and_then(crate::llm::sse::json_message)
        .unwrap_or_else(|| failure.body.clone())
        .to_ascii_lowercase();
    TOOL_WORDS
        .iter()
        .any(|w| first_mention(&message, w).is_some())
}

/// Remember that the model of `body` at `base_url` refuses tools; logged once.
pub(crate) fn learn_no_tools(base_url: &str, body: &Value) {
    let model = model_of(body);
    if remember(base_url, &model, |l| l.no_tools = true) {
        tracing::info!(
            model = %model,
            base_url = %base_url,
            "the server does not take tools for this model: its workers go without from now on"
        );
    }
}

/// When `failure` says that a parameter of `body` is not supported, the body without it (or
/// with the token limit under its other name), remembered for later calls and logged once;
/// `None` when the failure is anything else or nothing is left to change. `swap_token_param`
/// is false for protocols where the token limit has one name (Anthropic requires `max_tokens`).
pub(crate) fn adapt(
    base_url: &str,
    failure: &HttpFailure,
    body: &Value,
    swap_token_param: bool,
) -> Option<Value> {
    if !matches!(failure.status, 400 | 422) || exceeds_context(failure) {
        return None;
    }
    // Offered tools that are refused are not resent without them here: the executor must
    // know, to tell the user and to stop offering them.
    if body.get("tools").is_some() && body.get("tool_choice").is_some() && refuses_tools(failure) {
        learn_no_tools(base_url, body);
        return None;
    }
    let refused = refused_param(failure, body)?;
    let model = model_of(body);
    let mut changed = body.clone();
    let object = changed.as_object_mut()?;
    let (news, what) = match refused {
        "max_tokens" | "max_completion_tokens" => {
            if !swap_token_param {
                return None;
            }
            let from = if refused == "max_tokens" {
                TokenParam::MaxTokens
            } else {
                TokenParam::MaxCompletionTokens
            };
            let to = from.other();
            // Both names refused: swapping back would loop.
            if object.contains_key(to.name()) {
                return None;
            }
            let limit = object.remove(from.name())?;
            object.insert(to.name().to_owned(), limit);
            let news = remember(base_url, &model, |l| l.token_param = Some(to));
            (
                news,
                format!("sending `{}` instead of `{}`", to.name(), from.name()),
            )
        }
        other => {
            object.remove(other)?;
            let news = remember(base_url, &model, |l| match other {
                "temperature" => l.drop_temperature = true,
                _ => l.drop_stream_options = true,
            });
            (news, format!("leaving `{other}` out"))
        }
    };
    if news {
        tracing::info!(
            model = %model,
            base_url = %base_url,
            "the server does not accept `{refused}` for this model: {what} from now on"
        );
    }
    Some(changed)
}

/// The parameter a refusal names, among those `body` sent. OpenAI puts it in `error.param`;
/// other servers only in the message, where it is the first one named (OpenAI's message also
/// names the replacement: "'max_tokens' is not supported … Use 'max_completion_tokens'
/// instead"), and only when the message says it is refused rather than out of range.
fn refused_param(failure: &HttpFailure, body: &Value) -> Option<&'static str> {
    let sent = |name: &str| body.get(name).is_some();
    let json = failure.json();
    let param = json
        .as_ref()
        .and_then(|j| j.pointer("/error/param"))
        .and_then(Value::as_str);
    let code = json
        .as_ref()
        .and_then(|j| j.pointer("/error/code"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let message = json
        .as_ref()
        .and_then(crate::llm::sse::json_message)
        .unwrap_or_else(|| failure.body.clone())
        .to_ascii_lowercase();
    let says_refused =
        code.starts_with("unsupported") || REFUSAL_WORDS.iter().any(|w| message.contains(w));
    if !says_refused {
        return None;
    }
    if let Some(param) = param
        && let Some(&name) = ADAPTABLE.iter().find(|&&n| n == param)
        && sent(name)
    {
        return Some(name);
    }
    ADAPTABLE
        .iter()
        .filter(|&&name| sent(name))
        .filter_map(|&name| first_mention(&message, name).map(|at| (at, name)))
        .min_by_key(|&(at, _)| at)
        .map(|(_, name)| name)
}

/// Where `name` first occurs in `message` as a whole word (`max_tokens` inside
/// `max_completion_tokens` does not count, nor does it inside `max_tokens_limit`).
fn first_mention(message: &str, name: &str) -> Option<usize> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    message.match_indices(name).map(|(at, _)| at).find(|&at| {
        let before = message[..at].chars().next_back();
        let after = message[at + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Words with which servers say a prompt does not fit the model's context window: OpenAI's
/// `context_length_exceeded` / "maximum context length" (vLLM, LiteLLM say it the same way),
/// Anthropic's "prompt is too long", llama.cpp's "exceeds the available context size".
const CONTEXT_WORDS: [&str; 6] = [
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "available context size",
];

/// Whether `failure` says the request is longer than the model's context window. Such a call
/// fails the same way every time, whatever its status.
pub(crate) fn exceeds_context(failure: &HttpFailure) -> bool {
    if !matches!(failure.status, 400 | 413 | 422 | 500) {
        return false;
    }
    let body = failure.body.to_ascii_lowercase();
    CONTEXT_WORDS.iter().any(|w| body.contains(w))
}

fn model_of(body: &Value) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failure(status: u16, body: Value) -> HttpFailure {
        HttpFailure {
            status,
            retry_after: None,
            body: body.to_string(),
        }
    }

    fn openai_error(message: &str, param: Option<&str>, code: Option<&str>) -> Value {
        json!({ "error": { "message": message, "type": "invalid_request_error",
                           "param": param, "code": code } })
    }

    #[test]
    fn a_refusal_naming_tools_is_recognised_and_remembered() {
        let url = "http://quirks-test-tools/v1";
        for message in [
            "registry.ollama.ai/library/gemma:2b does not support tools",
            "tools param requires --jinja flag",
            "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser",
        ] {
            assert!(
                refuses_tools(&failure(400, openai_error(message, None, None))),
                "{message}"
            );
        }
        assert!(!refuses_tools(&failure(
            400,
            openai_error("temperature is not supported", None, None)
        )));
        assert!(!refuses_tools(&failure(
            500,
            openai_error("tools broke", None, None)
        )));
        let mut body = json!({ "model": "m", "tools": [], "tool_choice": "auto" });
        learn_no_tools(url, &body);
        assert!(refuses_tools_known(url, "m"));
        prepare(url, &mut body);
        assert_eq!(body, json!({ "model": "m" }));
        assert!(
            export()
                .iter()
                .any(|f| f.base_url == url && f.fact == "no_tools")
        );
    }

    #[test]
    fn openai_url_gets_max_completion_tokens_and_others_max_tokens() {
        assert_eq!(
            TokenParam::for_base_url("https://api.openai.com/v1"),
            TokenParam::MaxCompletionTokens
        );
        for other in [
            "http://localhost:11434/v1",
            "https://openrouter.ai/api/v1",
            "https://api.openai.com.example.net/v1",
        ] {
            assert_eq!(
                TokenParam::for_base_url(other),
                TokenParam::MaxTokens,
                "{other}"
            );
        }
    }

    #[test]
    fn max_tokens_refused_by_param_is_swapped_and_remembered() {
        let url = "http://quirks-test-swap/v1";
        let body = json!({ "model": "m1", "max_tokens": 100, "temperature": 0.2 });
        let refusal = failure(
            400,
            openai_error(
                "Unsupported parameter: 'max_tokens' is not supported with this model. \
                 Use 'max_completion_tokens' instead.",
                Some("max_tokens"),
                Some("unsupported_parameter"),
            ),
        );
        let changed = adapt(url, &refusal, &body, true).expect("adapted");
        assert_eq!(
            changed,
            json!({ "model": "m1", "max_completion_tokens": 100, "temperature": 0.2 })
        );
        let mut later = json!({ "model": "m1", "max_tokens": 50 });
        prepare(url, &mut later);
        assert_eq!(later, json!({ "model": "m1", "max_completion_tokens": 50 }));
        // Another model on the same server is not affected.
        let mut other = json!({ "model": "m2", "max_tokens": 50 });
        prepare(url, &mut other);
        assert_eq!(other, json!({ "model": "m2", "max_tokens": 50 }));
    }

    #[test]
    fn facts_round_trip_and_what_the_process_learnt_wins() {
        let url = "http://quirks-test-facts/v1";
        let fact = |model: &str, fact: &str, value: &str| crate::llm::LearntFact {
            base_url: url.to_owned(),
            model: model.to_owned(),
            fact: fact.to_owned(),
            value: value.to_owned(),
        };
        remember(url, "known", |l| {
            l.token_param = Some(TokenParam::MaxTokens)
        });
        import(&[
            fact("new", "token_param", "max_completion_tokens"),
            fact("new", "drop_temperature", "true"),
            fact("known", "token_param", "max_completion_tokens"),
            fact("odd", "token_param", "max_output_tokens"),
            fact("odd", "structured_output", "json_object"),
        ]);
        let mut body = json!({ "model": "new", "max_tokens": 9, "temperature": 0.5 });
        prepare(&format!("{url}/"), &mut body);
        assert_eq!(body, json!({ "model": "new", "max_completion_tokens": 9 }));
        let mut body = json!({ "model": "known", "max_completion_tokens": 9 });
        prepare(url, &mut body);
        assert_eq!(body, json!({ "model": "known", "max_tokens": 9 }));
        let mut exported: Vec<_> = export().into_iter().filter(|f| f.base_url == url).collect();
        exported.sort_by(|a, b| (&a.model, &a.fact).cmp(&(&b.model, &b.fact)));
        assert_eq!(
            exported,
            [
                fact("known", "token_param", "max_tokens"),
                fact("new", "drop_temperature", "true"),
                fact("new", "token_param", "max_completion_tokens"),
            ]
        );
    }

    #[test]
    fn the_first_name_in_a_message_is_the_refused_one() {
        let url = "http://quirks-test-message/v1";
        let body = json!({ "model": "m", "max_tokens": 100 });
        let refusal = failure(
            400,
            openai_error(
                "Unsupported parameter: 'max_tokens' is not supported with this model. \
                 Use 'max_completion_tokens' instead.",
                None,
                None,
            ),
        );
        let changed = adapt(url, &refusal, &body, true).expect("adapted");
        assert_eq!(
            changed,
            json!({ "model": "m", "max_completion_tokens": 100 })
        );
    }

    #[test]
    fn temperature_and_stream_options_are_dropped() {
        let url = "http://quirks-test-drop/v1";
        let body = json!({ "model": "m", "max_tokens": 1, "temperature": 0.3,
                           "stream_options": { "include_usage": true } });
        let refusal = failure(
            400,
            openai_error(
                "Unsupported value: 'temperature' does not support 0.3 with this model. \
                 Only the default (1) value is supported.",
                Some("temperature"),
                Some("unsupported_value"),
            ),
        );
        let changed = adapt(url, &refusal, &body, true).expect("adapted");
        assert!(changed.get("temperature").is_none());
        let refusal = failure(
            422,
            json!({ "detail": "stream_options: Extra inputs are not permitted" }),
        );
        let changed = adapt(url, &refusal, &changed, true).expect("adapted");
        assert!(changed.get("stream_options").is_none());
        let mut later = body.clone();
        prepare(url, &mut later);
        assert_eq!(later, json!({ "model": "m", "max_tokens": 1 }));
    }

    #[test]
    fn other_failures_are_left_alone() {
        let url = "http://quirks-test-other/v1";
        let body = json!({ "model": "m", "max_tokens": 100000, "temperature": 0.3 });
        let cases = [
            // Out of range, not unsupported.
            failure(
                400,
                openai_error(
                    "max_tokens is too large: 100000. This model supports at most 16384 completion tokens",
                    Some("max_tokens"),
                    None,
                ),
            ),
            // Not a client error.
            failure(
                500,
                openai_error(
                    "unsupported parameter: temperature",
                    Some("temperature"),
                    None,
                ),
            ),
            // Names nothing we sent.
            failure(
                400,
                openai_error("Unsupported parameter: 'top_p'", Some("top_p"), None),
            ),
            failure(401, openai_error("unknown key", None, None)),
        ];
        for refusal in cases {
            assert_eq!(adapt(url, &refusal, &body, true), None, "{}", refusal.body);
        }
    }

    #[test]
    fn context_overflows_are_recognised_and_never_adapted() {
        let url = "http://quirks-test-context/v1";
        let body = json!({ "model": "m", "max_tokens": 4000 });
        let overflows = [
            failure(
                400,
                openai_error(
                    "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens (5000 in the messages, 4000 in the completion).",
                    Some("messages"),
                    Some("context_length_exceeded"),
                ),
            ),
            failure(
                400,
                json!({ "type": "error", "error": { "type": "invalid_request_error", "message": "prompt is too long: 201234 tokens > 200000 maximum" } }),
            ),
            failure(
                400,
                json!({ "error": { "code": 400, "message": "the request exceeds the available context size, try increasing it", "type": "exceed_context_size_error" } }),
            ),
        ];
        for overflow in overflows {
            assert!(exceeds_context(&overflow), "{}", overflow.body);
            assert_eq!(adapt(url, &overflow, &body, true), None);
        }
        assert!(!exceeds_context(&failure(
            400,
            openai_error("Unsupported parameter: 'max_tokens'", None, None)
        )));
        assert!(!exceeds_context(&failure(
            401,
            openai_error("maximum context length", None, None)
        )));
    }

    #[test]
    fn both_token_names_refused_do_not_loop_and_anthropic_never_swaps() {
        let url = "http://quirks-test-loop/v1";
        let body = json!({ "model": "m", "max_tokens": 1, "max_completion_tokens": 1 });
        let refusal = failure(400, openai_error("unsupported", Some("max_tokens"), None));
        assert_eq!(adapt(url, &refusal, &body, true), None);
        let body = json!({ "model": "m", "max_tokens": 1 });
        assert_eq!(adapt(url, &refusal, &body, false), None);
    }
}
