//! Anthropic Messages API: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01`, SSE streaming or one JSON answer.

use std::time::Duration;

use crate::llm::{ApiKey, CallFuture, ChatRequest, DeltaSink, Provider};

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
        let _ = &config;
        todo!()
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &str {
        "anthropic"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        let _ = (request, sink, &self.config, &self.client);
        todo!()
    }
}
