//! Listing the models a server offers: `GET {base}/models` on OpenAI-compatible servers and
//! `GET {base}/v1/models` (paged) on Anthropic's API, read leniently into sorted model ids.
//!
//! Sends through `llm::http::get`, so the key travels only in its header and every error is
//! classified and redacted like a chat call's. It must not know about roles, configs or what
//! the ids are used for; a 404 is said in words ("this server has no model list"), since many
//! OpenAI-compatible servers and proxies simply have no such route.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::llm::http::{self, Auth, Fetch};
use crate::llm::sse::HttpFailure;
use crate::llm::{ApiKey, CallError};

/// More pages than any real server needs; a server that keeps saying `has_more` is cut off
/// here rather than followed forever.
const MAX_PAGES: usize = 20;

/// Anthropic's largest page.
const ANTHROPIC_PAGE: usize = 1000;

/// A model list page, every field optional: OpenAI-compatible servers return `data[].id`,
/// Anthropic adds `has_more` and `last_id`, and a few servers also (or only) send `models`
/// with `id` or `name`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Page {
    data: Option<Vec<Value>>,
    models: Option<Vec<Value>>,
    has_more: Option<bool>,
    last_id: Option<String>,
}

impl Page {
    fn ids(&self) -> Vec<String> {
        let entries = self
            .data
            .as_deref()
            .filter(|d| !d.is_empty())
            .or(self.models.as_deref())
            .unwrap_or(&[]);
        entries
            .iter()
            .filter_map(|entry| match entry {
                Value::String(id) => Some(id.as_str()),
                _ => entry
                    .get("id")
                    .or_else(|| entry.get("name"))
                    .and_then(Value::as_str),
            })
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn read_page(body: &[u8]) -> Result<Page, CallError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| CallError::fatal("bad response", "the model list is not JSON".to_owned()))?;
    if json.get("error").is_some_and(|e| !e.is_null()) {
        let message = crate::llm::sse::json_message(&json)
            .unwrap_or_else(|| "the server answered with an error".to_owned());
        return Err(CallError::fatal("provider error", message));
    }
    let page: Page = serde_json::from_value(json).map_err(|_| {
        CallError::fatal(
            "bad response",
            "the model list has an unexpected shape".to_owned(),
        )
    })?;
    if page.data.is_none() && page.models.is_none() {
        return Err(CallError::fatal(
            "bad response",
            "the model list has no `data` array".to_owned(),
        ));
    }
    Ok(page)
}

/// A failed status, classified as for a call; a 404 means the route does not exist.
fn list_error(failure: HttpFailure) -> CallError {
    if failure.status == 404 {
        return CallError::fatal(
            "no model list",
            "this server has no model list (GET …/models answered HTTP 404)",
        );
    }
    failure.into_call_error()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids.dedup();
    ids
}

/// `GET {base_url}/models` with `Authorization: Bearer` when there is a key.
pub(crate) async fn openai(
    client: &reqwest::Client,
    base_url: &str,
    api_key: Option<&ApiKey>,
    idle: Duration,
) -> Result<Vec<String>, CallError> {
    let fetch = Fetch {
        client,
        url: format!("{}/models", base_url.trim_end_matches('/')),
        headers: &[],
        auth: match api_key {
            Some(key) => Auth::Bearer(key),
            None => Auth::None,
        },
        provider: "OpenAI",
        idle,
    };
    let body = http::get(fetch, list_error).await?;
    Ok(sorted(read_page(&body)?.ids()))
}

/// `GET {base_url}/v1/models` with `x-api-key` and `anthropic-version`, following
/// `has_more` / `after_id` pages.
pub(crate) async fn anthropic(
    client: &reqwest::Client,
    base_url: &str,
    api_key: &ApiKey,
    version: &'static str,
    idle: Duration,
) -> Result<Vec<String>, CallError> {
    let base = format!("{}/v1/models", base_url.trim_end_matches('/'));
    let headers = [("anthropic-version", version)];
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = reqwest::Url::parse(&base).map_err(|_| {
            CallError::fatal("bad url", "the base URL cannot take a path".to_owned())
        })?;
        url.query_pairs_mut()
            .append_pair("limit", &ANTHROPIC_PAGE.to_string());
        if let Some(after) = &after {
            url.query_pairs_mut().append_pair("after_id", after);
        }
        let fetch = Fetch {
            client,
            url: url.into(),
            headers: &headers,
            auth: Auth::Header("x-api-key", api_key),
            provider: "Anthropic",
            idle,
        };
        let body = http::get(fetch, list_error).await?;
        let page = read_page(&body)?;
        let found = page.ids();
        let more = page.has_more == Some(true) && !found.is_empty();
        ids.extend(found);
        match (more, page.last_id) {
            (true, Some(last)) if after.as_deref() != Some(last.as_str()) => after = Some(last),
            _ => break,
        }
    }
    Ok(sorted(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_data_or_models_and_blank_ones_are_skipped() {
        let page =
            read_page(br#"{"object":"list","data":[{"id":"b"},{"id":" "},{"x":1},{"id":"a"}]}"#)
                .expect("a page");
        assert_eq!(sorted(page.ids()), ["a", "b"]);
        let page = read_page(br#"{"models":[{"name":"llama3"},"qwen"]}"#).expect("a page");
        assert_eq!(page.ids(), ["llama3", "qwen"]);
    }

    #[test]
    fn a_body_without_a_list_or_with_an_error_is_an_error() {
        assert!(read_page(br#"{"object":"list"}"#).is_err());
        let err = read_page(br#"{"error":{"message":"nope"}}"#).expect_err("an error");
        assert_eq!(err.message, "nope");
        assert!(read_page(b"[1,2]").is_err());
    }
}
