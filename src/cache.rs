//! The result cache for the front ends: [`wrap`] puts a [`CachedProvider`] around the
//! configured provider, so a worker call identical to one that finished within the time to
//! live is answered from the run database instead of the model; and `maestro cache
//! clear|stats`.
//!
//! A call is identical when the provider, base URL, model, system prompt, messages,
//! sampling settings (temperature, max tokens), structured output request and the tools
//! offered are the same: the key is the SHA-256 of those fields as canonical JSON. With tools,
//! the messages hold every earlier tool call and result, so a round is answered from the cache
//! only when the whole exchange before it is identical; an answer that asks for tools is never
//! saved (what follows it depends on what the tools return now). Only worker calls are looked up
//! or saved, only answers that are not blank and not cut off are saved, and an answer from
//! the cache is marked (`Completion::cached`) so the run spends no tokens on it.
//!
//! This module decides nothing about a run: whether a call may use the cache is the run's
//! decision (`ChatRequest::cache`, `Bypass` for explicit re-runs and edits). SQLite is only
//! touched on blocking threads, never on the async runtime's; a database that cannot be
//! opened or written turns the cache off for the process (logged), never fails a call.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cli::{CacheAction, CacheArgs};
use crate::config::{Config, StoreConfig};
use crate::display::{duration, now_ms, tokens};
use crate::history::{Failure, FailureKind};
use crate::llm::structured::StructuredOutput;
use crate::llm::tools::ToolSpec;
use crate::llm::{
    CachePolicy, CallFuture, ChatRequest, Completion, DeltaSink, Message, ModelsFuture, Provider,
};
use crate::protocol::{CallRole, Usage};
use crate::store::{CacheEntry, ResultCache, StoreError};

/// `provider` with the result cache in front of it, when the cache is on and there is a
/// database; otherwise `provider` itself.
pub fn wrap(provider: Arc<dyn Provider>, config: &Config) -> Arc<dyn Provider> {
    match (&config.store.path, config.store.cache.enabled) {
        (Some(path), true) => Arc::new(CachedProvider {
            inner: provider,
            base_url: config.provider.base_url().to_owned(),
            ttl: config.store.cache.ttl,
            path: path.clone(),
            conn: Arc::new(Mutex::new(Conn::Unopened)),
        }),
        (None, _) | (_, false) => provider,
    }
}

/// The fields that determine an answer, in a fixed order: their JSON is the key's input.
#[derive(Serialize)]
struct KeyFields<'a> {
    /// Bumped if what goes into a key changes, so old entries stop matching.
    version: u32,
    provider: &'a str,
    base_url: &'a str,
    model: &'a str,
    system: &'a str,
    messages: &'a [Message],
    temperature: Option<f32>,
    max_tokens: u32,
    structured: &'a Option<StructuredOutput>,
    /// Left out when empty, so keys of calls without tools are what they were before tools.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tools: &'a [ToolSpec],
}

/// The cache key of `request` sent by `provider` to `base_url`: lowercase hex SHA-256.
pub fn key(provider: &str, base_url: &str, request: &ChatRequest) -> String {
    let fields = KeyFields {
        version: 1,
        provider,
        base_url: base_url.trim_end_matches('/'),
        model: &request.model,
        system: &request.system,
        messages: &request.messages,
        temperature: request.temperature,
        max_tokens: request.max_tokens,
        structured: &request.structured,
        tools: &request.tools,
    };
    // Serialising plain strings and numbers cannot fail; an empty input would only make
    // every key equal, so it is never used.
    let json = serde_json::to_vec(&fields).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

enum Conn {
    Unopened,
    Open(ResultCache),
    /// The database could not be opened: the cache is off for this process.
    Broken,
}

/// A provider that answers worker calls from the result cache when it can.
pub struct CachedProvider {
    inner: Arc<dyn Provider>,
    base_url: String,
    ttl: Duration,
    path: PathBuf,
    conn: Arc<Mutex<Conn>>,
}

impl CachedProvider {
    /// Runs `f` with the cache's connection on a blocking thread; `None` when the cache is
    /// unavailable or `f` failed (logged).
    async fn with_cache<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ResultCache) -> Result<T, StoreError> + Send + 'static,
    ) -> Option<T> {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().ok()?;
            if let Conn::Unopened = *conn {
                *conn = match ResultCache::open(&path) {
                    Ok(cache) => Conn::Open(cache),
                    Err(e) => {
                        tracing::warn!("result cache off: {e}");
                        Conn::Broken
                    }
                };
            }
            match &*conn {
                Conn::Open(cache) => f(cache)
                    .map_err(|e| tracing::warn!("result cache: {e}"))
                    .ok(),
                Conn::Unopened | Conn::Broken => None,
            }
        })
        .await;
        done.ok().flatten()
    }
}

impl Provider for CachedProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn list_models(&self) -> ModelsFuture<'_> {
        self.inner.list_models()
    }

    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        Box::pin(async move {
            match request.role {
                CallRole::Worker => {}
                CallRole::Planner | CallRole::Synthesizer | CallRole::Validator => {
                    return self.inner.complete(request, sink).await;
                }
            }
            let key = key(self.inner.name(), &self.base_url, &request);
            match request.cache {
                CachePolicy::Use => {
                    let (k, ttl) = (key.clone(), self.ttl);
                    if let Some(Some(hit)) =
                        self.with_cache(move |c| c.get(&k, ttl, now_ms())).await
                    {
                        return Ok(Completion {
                            text: hit.answer,
                            usage: Some(Usage::default()),
                            cut_off: false,
                            reasoning: hit.reasoning,
                            cached: true,
                            tool_calls: Vec::new(),
                        });
                    }
                }
                CachePolicy::Bypass => {}
            }
            let model = request.model.clone();
            let result = self.inner.complete(request, sink).await;
            // An answer that asks for tools is not an answer: what it leads to depends on what
            // the tools return now. A later round's answer is saved, keyed by the whole
            // exchange before it (tool calls and results are in the messages).
            if let Ok(done) = &result
                && !done.cut_off
                && done.tool_calls.is_empty()
                && !done.text.trim().is_empty()
            {
                let usage = done.usage.unwrap_or_default();
                let entry = CacheEntry {
                    provider: self.inner.name().to_owned(),
                    base_url: self.base_url.clone(),
                    model,
                    answer: done.text.clone(),
                    reasoning: done.reasoning.clone(),
                    tokens_in: usage.tokens_in,
                    tokens_out: usage.tokens_out,
                };
                self.with_cache(move |c| c.put(&key, &entry, now_ms()))
                    .await;
            }
            result
        })
    }
}

/// `maestro cache clear|stats`.
pub fn command(store: &StoreConfig, args: &CacheArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let Some(path) = &store.path else {
        return Err(Failure {
            kind: FailureKind::Usage,
            message: "no data folder is known; name the database with --db".into(),
        });
    };
    let failed = |e: StoreError| Failure {
        kind: FailureKind::Store,
        message: e.to_string(),
    };
    // Nothing to clear or count in a database that does not exist; do not create one.
    let cache = if path.exists() {
        Some(ResultCache::open(path).map_err(failed)?)
    } else {
        None
    };
    let text = match &args.action {
        CacheAction::Clear => {
            let n = match &cache {
                Some(c) => c.clear().map_err(failed)?,
                None => 0,
            };
            format!(
                "deleted {n} cached answer{}\n",
                if n == 1 { "" } else { "s" }
            )
        }
        CacheAction::Stats { json } => {
            let stats = match &cache {
                Some(c) => c.stats().map_err(failed)?,
                None => Default::default(),
            };
            if *json {
                let mut s = serde_json::to_string_pretty(&stats).unwrap_or_default();
                s.push('\n');
                s
            } else {
                let now = now_ms();
                let age = |at: Option<u64>| {
                    at.map_or("—".to_owned(), |t| {
                        format!("{} ago", duration(now.saturating_sub(t)))
                    })
                };
                format!(
                    "entries       {}\nsize          {} bytes\noldest        {}\nnewest        {}\n\
                     hits          {}\ntokens saved  {}\n",
                    stats.entries,
                    stats.bytes,
                    age(stats.oldest_ms),
                    age(stats.newest_ms),
                    stats.hits,
                    tokens(stats.tokens_saved)
                )
            }
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Failure {
            kind: FailureKind::Output,
            message: format!("cannot write to stdout: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            role: CallRole::Worker,
            system: "S".into(),
            messages: vec![Message::user("U")],
            max_tokens: 100,
            temperature: Some(0.2),
            structured: None,
            cache: CachePolicy::Use,
            tools: Vec::new(),
        }
    }

    #[test]
    fn every_field_that_decides_the_answer_changes_the_key_and_the_policy_does_not() {
        let base = key("openai", "http://h/v1", &request());
        assert_eq!(base.len(), 64);
        assert_eq!(base, key("openai", "http://h/v1/", &request()));
        let mut bypass = request();
        bypass.cache = CachePolicy::Bypass;
        assert_eq!(base, key("openai", "http://h/v1", &bypass));
        let changed: Vec<ChatRequest> = vec![
            ChatRequest {
                model: "m2".into(),
                ..request()
            },
            ChatRequest {
                system: "S2".into(),
                ..request()
            },
            ChatRequest {
                messages: vec![Message::user("U2")],
                ..request()
            },
            ChatRequest {
                max_tokens: 101,
                ..request()
            },
            ChatRequest {
                temperature: None,
                ..request()
            },
            ChatRequest {
                tools: vec![ToolSpec {
                    name: "fetch_url".into(),
                    description: "d".into(),
                    parameters: serde_json::json!({"type": "object"}),
                }],
                ..request()
            },
            ChatRequest {
                messages: vec![
                    Message::user("U"),
                    Message::tool_calls(
                        "",
                        vec![crate::llm::tools::ToolCall::from_text(
                            "c".into(),
                            "t".into(),
                            "{}",
                        )],
                    ),
                ],
                ..request()
            },
        ];
        for r in &changed {
            assert_ne!(base, key("openai", "http://h/v1", r), "{r:?}");
        }
        assert_ne!(base, key("anthropic", "http://h/v1", &request()));
        assert_ne!(base, key("openai", "http://other/v1", &request()));
    }
}
