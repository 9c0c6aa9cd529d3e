//! OpenAI-compatible Chat Completions (OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter,
//! LiteLLM): `POST {base_url}/chat/completions`, SSE streaming or one JSON answer.

use std::time::Duration;

use crate::llm::{ApiKey, CallFuture, ChatRequest, DeltaSink, Provider};

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
}

pub struct OpenAi {
    config: OpenAiConfig,
    client: reqwest::Client,
}

impl OpenAi {
    pub fn new(config: OpenAiConfig) -> Self {
        let _ = &config;
        todo!()
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &str {
        "openai"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        let _ = (request, sink, &self.config, &self.client);
        todo!()
    }
}
