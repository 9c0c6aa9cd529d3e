//! Structured output: asking a server for JSON that follows a schema, and finding out which way
//! of asking it accepts.
//!
//! Owns the request pieces for each mode (OpenAI's `response_format` with `json_schema` or
//! `json_object`, Anthropic's forced tool), the recognition of a server that rejects them, the
//! fallback order, and the process-wide memory of what worked per base URL and model, so a
//! server that rejects `json_schema` costs one extra request per process, not one per call
//! (`export`/`import` let a front end keep it across processes). It
//! must not know what the schema describes (the engine builds it) nor retry anything but a
//! rejected mode: every other failure is returned as it came.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::llm::{CallError, ChatRequest, Completion};

/// What the configuration asks for (`[planner] structured`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Structured {
    /// The best mode the server accepts: a JSON schema, then JSON mode, then plain text; on
    /// Anthropic the forced tool, then plain text.
    #[default]
    Auto,
    /// A JSON schema (Anthropic: the forced tool) and nothing else; a rejection fails the call.
    Schema,
    /// JSON mode with the schema alongside (Anthropic: the forced tool).
    Json,
    /// Plain text: the answer is read as prose that holds JSON.
    Off,
}

impl Structured {
    /// The setting named by `word` (`auto`, `schema`, `json`, `off`).
    pub fn from_word(word: &str) -> Option<Self> {
        [Self::Auto, Self::Schema, Self::Json, Self::Off]
            .into_iter()
            .find(|s| s.word() == word)
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Schema => "schema",
            Self::Json => "json",
            Self::Off => "off",
        }
    }
}

/// A request for an answer in a given JSON shape, carried by `ChatRequest::structured`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StructuredOutput {
    /// A short identifier of the shape (`plan`); OpenAI requires one for a schema.
    pub name: String,
    /// One sentence on what the answer is, for the Anthropic tool's description.
    pub description: String,
    /// The JSON schema of the answer.
    pub schema: Value,
    /// How to ask; never `Off` (a request that wants plain text carries no `StructuredOutput`).
    pub mode: Structured,
}

/// How one request asks for the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredMode {
    /// OpenAI `response_format: {"type": "json_schema", …}`.
    JsonSchema,
    /// OpenAI `response_format: {"type": "json_object", "schema": …}`: the form some servers
    /// accept where they reject `json_schema`.
    JsonObject,
    /// Anthropic: a tool whose input is the answer, and `tool_choice` naming it.
    Tool,
    /// Nothing asked: the answer is plain text.
    Text,
}

impl StructuredMode {
    const ALL: [Self; 4] = [Self::JsonSchema, Self::JsonObject, Self::Tool, Self::Text];

    /// The mode's name in saved facts and JSON (`json_schema`, `json_object`, `tool`, `text`).
    pub fn name(self) -> &'static str {
        match self {
            Self::JsonSchema => "json_schema",
            Self::JsonObject => "json_object",
            Self::Tool => "tool",
            Self::Text => "text",
        }
    }

    /// The mode [`StructuredMode::name`] gives `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::JsonSchema => "JSON schema",
            Self::JsonObject => "JSON mode",
            Self::Tool => "forced tool",
            Self::Text => "plain text",
        }
    }
}

/// Which wire protocol asks, since each has its own modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// The modes to try for `wanted` on `dialect`, best first.
pub fn modes(dialect: Dialect, wanted: Structured) -> &'static [StructuredMode] {
    use StructuredMode::*;
    match (dialect, wanted) {
        (_, Structured::Off) => &[Text],
        (Dialect::OpenAi, Structured::Auto) => &[JsonSchema, JsonObject, Text],
        (Dialect::OpenAi, Structured::Schema) => &[JsonSchema],
        (Dialect::OpenAi, Structured::Json) => &[JsonObject],
        (Dialect::Anthropic, Structured::Auto) => &[Tool, Text],
        (Dialect::Anthropic, Structured::Schema | Structured::Json) => &[Tool],
    }
}

/// OpenAI's `response_format` for `mode` (`None` for plain text).
pub fn response_format(output: &StructuredOutput, mode: StructuredMode) -> Option<Value> {
    match mode {
        StructuredMode::JsonSchema => Some(json!({
            "type": "json_schema",
            "json_schema": {
                "name": output.name,
                "schema": output.schema,
                // Strict mode would demand every property be required and refuse `maxItems`
                // on some servers; the engine checks the answer anyway.
                "strict": false,
            },
        })),
        StructuredMode::JsonObject => Some(json!({
            "type": "json_object",
            "schema": output.schema,
        })),
        StructuredMode::Tool | StructuredMode::Text => None,
    }
}

/// Anthropic's `tools` and `tool_choice` for the forced tool.
pub fn anthropic_tool(output: &StructuredOutput) -> (Value, Value) {
    let name = tool_name(output);
    (
        json!([{
            "name": name,
            "description": output.description,
            "input_schema": output.schema,
        }]),
        json!({ "type": "tool", "name": name }),
    )
}

/// `submit_plan` for the `plan` shape.
pub fn tool_name(output: &StructuredOutput) -> String {
    format!("submit_{}", output.name)
}

/// Whether `error` is a server refusing the way `mode` asked for structure: a 400, 422 or 500
/// whose message names it. Some servers answer an unsupported `json_schema` with a 500, so the
/// message decides, not the status alone; an unrelated 500 is left to the usual retries.
pub fn is_rejection(error: &CallError, mode: StructuredMode) -> bool {
    if !matches!(error.reason.as_str(), "400" | "422" | "500") {
        return false;
    }
    let message = error.message.to_ascii_lowercase();
    let names: &[&str] = match mode {
        StructuredMode::JsonSchema | StructuredMode::JsonObject => &[
            "response_format",
            "response format",
            "json_schema",
            "json schema",
            "json_object",
        ],
        StructuredMode::Tool => &["tool_choice", "tools", "tool use", "tool_use"],
        StructuredMode::Text => &[],
    };
    names.iter().any(|name| message.contains(name))
}

type MemoryKey = (String, String);

/// What worked, per (base URL, model), for the life of the process.
static MEMORY: Mutex<Option<HashMap<MemoryKey, StructuredMode>>> = Mutex::new(None);

fn key(base_url: &str, model: &str) -> MemoryKey {
    (base_url.trim_end_matches('/').to_owned(), model.to_owned())
}

/// The structured mode that last worked with this server and model in this process, if a
/// structured call was made to them. `maestro doctor` reads this after a test call.
pub fn remembered(base_url: &str, model: &str) -> Option<StructuredMode> {
    let memory = MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    memory.as_ref()?.get(&key(base_url, model)).copied()
}

fn remember(base_url: &str, model: &str, mode: StructuredMode) {
    let mut memory = MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    let previous = memory
        .get_or_insert_with(HashMap::new)
        .insert(key(base_url, model), mode);
    if previous.is_some_and(|p| p != mode) || previous.is_none() && mode == StructuredMode::Text {
        tracing::info!(
            base_url,
            model,
            mode = mode.word(),
            "structured output mode"
        );
    }
}

/// The fact name under which the mode that worked is exported.
pub const FACT: &str = "structured_output";

/// What the memory holds, as facts (`structured_output` = a mode's [`StructuredMode::name`]).
pub fn export() -> Vec<crate::llm::LearntFact> {
    let memory = MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    memory
        .iter()
        .flatten()
        .map(|((base_url, model), mode)| crate::llm::LearntFact {
            base_url: base_url.clone(),
            model: model.clone(),
            fact: FACT.to_owned(),
            value: mode.name().to_owned(),
        })
        .collect()
}

/// Takes the `structured_output` facts among `facts` into the memory, where this process has
/// not learnt a mode of its own for that server and model. Other facts are ignored.
pub fn import(facts: &[crate::llm::LearntFact]) {
    let mut memory = MEMORY.lock().unwrap_or_else(PoisonError::into_inner);
    let memory = memory.get_or_insert_with(HashMap::new);
    for fact in facts.iter().filter(|f| f.fact == FACT) {
        if let Some(mode) = StructuredMode::from_name(&fact.value) {
            memory
                .entry(key(&fact.base_url, &fact.model))
                .or_insert(mode);
        }
    }
}

/// Find out which structured mode `provider` ends up using with `model`: one tiny call asking
/// for `{"ok": true}` in the `wanted` way, then what the memory holds for `base_url` (the
/// provider's configured base URL) and `model`. `Text` when the provider keeps no memory (the
/// demo) or nothing structured was accepted. For `maestro doctor`.
pub async fn probe(
    provider: &dyn crate::llm::Provider,
    base_url: &str,
    model: &str,
    wanted: Structured,
) -> Result<StructuredMode, CallError> {
    let request = crate::llm::ChatRequest {
        model: model.to_owned(),
        role: crate::protocol::CallRole::Planner,
        system: "Answer in JSON.".to_owned(),
        messages: vec![crate::llm::Message::user(
            "Reply with the JSON object {\"ok\": true}.",
        )],
        max_tokens: 20,
        temperature: None,
        cache: crate::llm::CachePolicy::Bypass,
        tools: Vec::new(),
        structured: (wanted != Structured::Off).then(|| StructuredOutput {
            name: "check".to_owned(),
            description: "Confirm that structured output works.".to_owned(),
            schema: json!({
                "type": "object",
                "properties": { "ok": { "type": "boolean" } },
                "required": ["ok"],
            }),
            mode: wanted,
        }),
    };
    provider
        .complete(request, crate::llm::DeltaSink::discard())
        .await?;
    Ok(remembered(base_url, model).unwrap_or(StructuredMode::Text))
}

/// Make `request`: in plain text when it asks for no structure, otherwise through
/// [`call_with_fallback`]. Both adapters' `call` is this, with their own `send`.
pub async fn call<F>(
    dialect: Dialect,
    base_url: &str,
    request: &ChatRequest,
    mut send: impl FnMut(StructuredMode) -> F,
) -> Result<Completion, CallError>
where
    F: Future<Output = Result<Completion, CallError>>,
{
    match request.structured.as_ref().map(|s| s.mode) {
        None => send(StructuredMode::Text).await,
        Some(wanted) => call_with_fallback(dialect, base_url, &request.model, wanted, send).await,
    }
}

/// Make a call with structured output, falling back while the server rejects a mode.
///
/// `send` performs one request in the given mode. Tried in order: the mode remembered for this
/// server and model (when `wanted` allows it), then every mode of `wanted` from the best. A
/// rejection (see [`is_rejection`]) moves to the next mode at once, with one log line; any
/// other outcome is final. What succeeded is remembered. When the last allowed mode is
/// rejected too, its error is returned.
pub async fn call_with_fallback<F>(
    dialect: Dialect,
    base_url: &str,
    model: &str,
    wanted: Structured,
    mut send: impl FnMut(StructuredMode) -> F,
) -> Result<Completion, CallError>
where
    F: Future<Output = Result<Completion, CallError>>,
{
    let allowed = modes(dialect, wanted);
    let start = remembered(base_url, model)
        .and_then(|mode| allowed.iter().position(|m| *m == mode))
        .unwrap_or(0);
    let mut last = None;
    for &mode in &allowed[start..] {
        match send(mode).await {
            Err(error) if is_rejection(&error, mode) && mode != StructuredMode::Text => {
                tracing::warn!(
                    base_url,
                    model,
                    mode = mode.word(),
                    error = %error.message,
                    "the server rejected this structured output mode; trying the next"
                );
                last = Some(error);
            }
            outcome => {
                if outcome.is_ok() {
                    remember(base_url, model, mode);
                }
                return outcome;
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        CallError::fatal("structured output", "no structured output mode to try")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, message: &str) -> CallError {
        CallError::from_status(status, message.to_owned(), None)
    }

    #[test]
    fn a_rejection_names_the_feature_whatever_the_status_among_400_422_500() {
        let schema = StructuredMode::JsonSchema;
        assert!(is_rejection(
            &error(500, "response_format type json_schema is not supported"),
            schema
        ));
        assert!(is_rejection(
            &error(400, "Invalid parameter: 'response_format'"),
            schema
        ));
        assert!(is_rejection(
            &error(422, "unknown field json_schema"),
            schema
        ));
        // An unrelated 500 is an ordinary server error, left to the retries.
        assert!(!is_rejection(&error(500, "upstream crashed"), schema));
        // A rate limit that happens to quote the body is not a rejection.
        assert!(!is_rejection(
            &error(429, "response_format: slow down"),
            schema
        ));
        assert!(is_rejection(
            &error(400, "tool_choice is not supported"),
            StructuredMode::Tool
        ));
        assert!(!is_rejection(
            &error(400, "tool_choice is not supported"),
            StructuredMode::Text
        ));
    }

    #[test]
    fn modes_follow_the_setting_and_the_protocol() {
        use StructuredMode::*;
        assert_eq!(
            modes(Dialect::OpenAi, Structured::Auto),
            &[JsonSchema, JsonObject, Text]
        );
        assert_eq!(modes(Dialect::OpenAi, Structured::Json), &[JsonObject]);
        assert_eq!(modes(Dialect::Anthropic, Structured::Auto), &[Tool, Text]);
        assert_eq!(modes(Dialect::Anthropic, Structured::Off), &[Text]);
    }

    #[test]
    fn the_bodies_carry_the_schema() {
        let output = StructuredOutput {
            name: "plan".into(),
            description: "The plan.".into(),
            schema: json!({"type": "object"}),
            mode: Structured::Auto,
        };
        let schema = response_format(&output, StructuredMode::JsonSchema).expect("a format");
        assert_eq!(schema["json_schema"]["schema"], json!({"type": "object"}));
        assert_eq!(schema["json_schema"]["name"], "plan");
        let object = response_format(&output, StructuredMode::JsonObject).expect("a format");
        assert_eq!(
            object,
            json!({"type": "json_object", "schema": {"type": "object"}})
        );
        assert_eq!(response_format(&output, StructuredMode::Text), None);
        let (tools, choice) = anthropic_tool(&output);
        assert_eq!(tools[0]["name"], "submit_plan");
        assert_eq!(tools[0]["input_schema"], json!({"type": "object"}));
        assert_eq!(choice, json!({"type": "tool", "name": "submit_plan"}));
    }

    fn ok() -> Result<Completion, CallError> {
        Ok(Completion {
            text: "{}".into(),
            ..Completion::default()
        })
    }

    #[tokio::test]
    async fn falls_back_on_rejection_and_remembers_what_worked() {
        let url = "http://fallback.test/v1";
        let mut tried = Vec::new();
        let result = call_with_fallback(Dialect::OpenAi, url, "m", Structured::Auto, |mode| {
            tried.push(mode);
            let outcome = match mode {
                StructuredMode::JsonSchema => Err(error(500, "json_schema not supported")),
                _ => ok(),
            };
            async move { outcome }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(
            tried,
            [StructuredMode::JsonSchema, StructuredMode::JsonObject]
        );
        assert_eq!(remembered(url, "m"), Some(StructuredMode::JsonObject));
        assert_eq!(remembered(url, "other"), None);

        // The next call starts from what worked.
        let mut again = Vec::new();
        let _ = call_with_fallback(
            Dialect::OpenAi,
            &format!("{url}/"),
            "m",
            Structured::Auto,
            |mode| {
                again.push(mode);
                async { ok() }
            },
        )
        .await;
        assert_eq!(again, [StructuredMode::JsonObject]);
    }

    #[test]
    fn facts_round_trip_and_what_the_process_learnt_wins() {
        let url = "http://import.test/v1";
        let fact = |model: &str, value: &str| crate::llm::LearntFact {
            base_url: url.to_owned(),
            model: model.to_owned(),
            fact: FACT.to_owned(),
            value: value.to_owned(),
        };
        remember(url, "known", StructuredMode::JsonSchema);
        import(&[
            fact("new", "json_object"),
            fact("known", "text"),
            fact("odd", "from_the_future"),
            crate::llm::LearntFact {
                fact: "token_param".into(),
                ..fact("other", "max_tokens")
            },
        ]);
        assert_eq!(remembered(url, "new"), Some(StructuredMode::JsonObject));
        assert_eq!(
            remembered(&format!("{url}/"), "new"),
            Some(StructuredMode::JsonObject)
        );
        assert_eq!(remembered(url, "known"), Some(StructuredMode::JsonSchema));
        assert_eq!(remembered(url, "odd"), None);
        assert_eq!(remembered(url, "other"), None);
        let exported: Vec<_> = export().into_iter().filter(|f| f.base_url == url).collect();
        assert_eq!(exported.len(), 2, "{exported:?}");
        assert!(exported.contains(&fact("new", "json_object")));
        for mode in StructuredMode::ALL {
            assert_eq!(StructuredMode::from_name(mode.name()), Some(mode));
        }
    }

    #[tokio::test]
    async fn a_forced_mode_does_not_fall_back_and_other_errors_are_final() {
        let url = "http://forced.test/v1";
        let mut tried = Vec::new();
        let result = call_with_fallback(Dialect::OpenAi, url, "m", Structured::Schema, |mode| {
            tried.push(mode);
            async { Err(error(400, "response_format is not supported")) }
        })
        .await;
        assert_eq!(tried, [StructuredMode::JsonSchema]);
        assert_eq!(result.expect_err("rejected").reason, "400");

        let mut tried = Vec::new();
        let result = call_with_fallback(Dialect::OpenAi, url, "n", Structured::Auto, |mode| {
            tried.push(mode);
            async { Err(error(503, "busy")) }
        })
        .await;
        assert_eq!(tried, [StructuredMode::JsonSchema]);
        assert_eq!(result.expect_err("busy").reason, "503");
        assert_eq!(remembered(url, "n"), None);
    }
}
