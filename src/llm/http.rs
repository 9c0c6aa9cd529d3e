//! The one path every provider call takes over HTTP, whatever the wire protocol: attach the
//! key, send, classify a failed status, tell a stream from a whole answer (and from a body that
//! is neither), and hand the body to the adapter's reader. Every error that leaves a call leaves
//! through here, and here it passes the key's `Redactor`, so a server that reflects the key in
//! an error body ("Incorrect API key provided: sk-…") cannot put it in a message, a log line or
//! an events file.
//!
//! It knows nothing of either protocol's JSON: the adapter passes its body, its extra headers,
//! how it reads a stream and a whole answer, and how it classifies a failed status. It never
//! retries and applies no overall deadline. Besides chat calls it makes the GETs that list a
//! server's models (`get`), with the same key header, classification and redaction.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderName, HeaderValue};

use crate::llm::sse::{self, Head, HttpFailure, SseStream};
use crate::llm::{ApiKey, CONTEXT_LENGTH, CallError, Completion, TOOLS_UNSUPPORTED, quirks};

/// How a protocol sends its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// No key (local servers).
    None,
    /// `Authorization: Bearer <key>` (OpenAI-compatible).
    Bearer(&'a ApiKey),
    /// The key alone in this header (Anthropic's `x-api-key`).
    Header(&'static str, &'a ApiKey),
}

impl<'a> Auth<'a> {
    fn key(self) -> Option<&'a ApiKey> {
        match self {
            Auth::None => None,
            Auth::Bearer(key) | Auth::Header(_, key) => Some(key),
        }
    }
}

/// One call: where it goes and what it sends.
pub(crate) struct Exchange<'a> {
    pub client: &'a reqwest::Client,
    pub url: String,
    pub body: serde_json::Value,
    /// Protocol headers other than the key (`anthropic-version`).
    pub headers: &'a [(&'static str, &'static str)],
    pub auth: Auth<'a>,
    /// `OpenAI` or `Anthropic`, for the message about a key that cannot be sent.
    pub provider: &'static str,
    pub stream: bool,
    /// Longest silence between two body chunks, and before the headers of a stream.
    pub idle: Duration,
    /// Given a failed status and the body that was sent, the body to send instead when the
    /// server refused one of its parameters (`llm::quirks`). Used at most once per call.
    pub adapt: Option<&'a Adapt<'a>>,
    /// The body offers tools to call: a refusal that names them is `TOOLS_UNSUPPORTED`.
    pub offers_tools: bool,
}

/// How an adapter turns a refused body into one the server takes (`llm::quirks::adapt`).
pub(crate) type Adapt<'a> =
    dyn Fn(&HttpFailure, &serde_json::Value) -> Option<serde_json::Value> + Sync + 'a;

/// Perform `exchange`: `http_error` classifies a non-2xx answer, `read_stream` reads an event
/// stream and `read_answer` a whole JSON answer (also when a server ignores `stream: true`).
/// Whatever fails, the error comes back with the key redacted.
pub(crate) async fn call(
    exchange: Exchange<'_>,
    http_error: fn(HttpFailure) -> CallError,
    read_stream: impl AsyncFnOnce(SseStream) -> Result<Completion, CallError>,
    read_answer: impl FnOnce(&[u8]) -> Result<Completion, CallError>,
) -> Result<Completion, CallError> {
    let redactor = Redactor::new(exchange.auth.key());
    perform(exchange, http_error, read_stream, read_answer)
        .await
        .map_err(|error| redactor.error(error))
}

async fn perform(
    exchange: Exchange<'_>,
    http_error: fn(HttpFailure) -> CallError,
    read_stream: impl AsyncFnOnce(SseStream) -> Result<Completion, CallError>,
    read_answer: impl FnOnce(&[u8]) -> Result<Completion, CallError>,
) -> Result<Completion, CallError> {
    let Exchange {
        client,
        url,
        body,
        headers,
        auth,
        provider,
        stream,
        idle,
        adapt,
        offers_tools,
    } = exchange;
    let auth = auth_header(auth, provider)?;
    let request = |body: &serde_json::Value| {
        let mut builder = client.post(&url).json(body);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some((name, value)) = &auth {
            builder = builder.header(name.clone(), value.clone());
        }
        if stream {
            builder = builder.header(ACCEPT, "text/event-stream");
        }
        builder
    };
    let mut response = sse::send(request(&body), &url, stream.then_some(idle)).await?;
    if !response.status().is_success() {
        let failure = HttpFailure::read(response, idle).await;
        // A refused parameter is resent at once without it, within the same attempt: the
        // server said exactly what to change, so waiting or counting a failure would be wrong.
        let Some(changed) = adapt.and_then(|adapt| adapt(&failure, &body)) else {
            return Err(classify(failure, http_error, offers_tools));
        };
        response = sse::send(request(&changed), &url, stream.then_some(idle)).await?;
        if !response.status().is_success() {
            return Err(classify(
                HttpFailure::read(response, idle).await,
                http_error,
                offers_tools,
            ));
        }
    }
    // Some servers ignore `stream: true` and answer with one JSON document; a proxy or a
    // wrong base URL answers with a web page. Both are told apart from the first bytes.
    let content_type = sse::content_type(&response);
    if stream && !sse::is_json(&response) {
        return match SseStream::sniff(response, idle).await? {
            Head::Events(events) => read_stream(events).await,
            Head::Json(body) => read_answer(&body),
            Head::Other(head) => Err(not_the_protocol(&content_type, &head, "an event stream")),
        };
    }
    let body = sse::read_body(response, idle).await?;
    if !sse::is_json_type(&content_type) && !sse::starts_like_json(&body) {
        return Err(not_the_protocol(&content_type, &body, "a JSON answer"));
    }
    read_answer(&body)
}

/// A GET whose answer is one JSON document (a model list): where it goes and how it
/// authenticates, as for `Exchange`, without a body or a stream.
pub(crate) struct Fetch<'a> {
    pub client: &'a reqwest::Client,
    pub url: String,
    pub headers: &'a [(&'static str, &'static str)],
    pub auth: Auth<'a>,
    pub provider: &'static str,
    /// Longest wait for the headers, and between two body chunks.
    pub idle: Duration,
}

/// Perform `fetch` and return the JSON body. A failed status goes through `http_error`, a
/// body that is not JSON is "not the API", and every error leaves with the key redacted.
pub(crate) async fn get(
    fetch: Fetch<'_>,
    http_error: impl FnOnce(HttpFailure) -> CallError,
) -> Result<Vec<u8>, CallError> {
    let redactor = Redactor::new(fetch.auth.key());
    fetch_body(fetch, http_error)
        .await
        .map_err(|error| redactor.error(error))
}

async fn fetch_body(
    fetch: Fetch<'_>,
    http_error: impl FnOnce(HttpFailure) -> CallError,
) -> Result<Vec<u8>, CallError> {
    let Fetch {
        client,
        url,
        headers,
        auth,
        provider,
        idle,
    } = fetch;
    let mut builder = client.get(&url).header(ACCEPT, "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if let Some((name, value)) = auth_header(auth, provider)? {
        builder = builder.header(name, value);
    }
    let response = sse::send(builder, &url, Some(idle)).await?;
    if !response.status().is_success() {
        return Err(http_error(HttpFailure::read(response, idle).await));
    }
    let content_type = sse::content_type(&response);
    let body = sse::read_body(response, idle).await?;
    if !sse::is_json_type(&content_type) && !sse::starts_like_json(&body) {
        return Err(not_the_protocol(&content_type, &body, "a JSON answer"));
    }
    Ok(body)
}

/// The adapter's classification, except that a prompt too long for the model's context window
/// is never retried (some servers say so with a 500) and is labelled so the run can explain it,
/// and a request refused for the tools it offered is labelled so the executor can go without.
fn classify(
    failure: HttpFailure,
    http_error: fn(HttpFailure) -> CallError,
    offers_tools: bool,
) -> CallError {
    let overflow = quirks::exceeds_context(&failure);
    let no_tools = offers_tools && quirks::refuses_tools(&failure);
    let mut error = http_error(failure);
    if overflow {
        error.reason = CONTEXT_LENGTH.to_owned();
        error.retryable = false;
        error.retry_after = None;
    } else if no_tools {
        error.reason = TOOLS_UNSUPPORTED.to_owned();
        error.retryable = false;
        error.retry_after = None;
    }
    error
}

/// The key's header, marked sensitive so reqwest's own `Debug` hides it too.
fn auth_header(
    auth: Auth<'_>,
    provider: &str,
) -> Result<Option<(HeaderName, HeaderValue)>, CallError> {
    let (name, value) = match auth {
        Auth::None => return Ok(None),
        Auth::Bearer(key) => (AUTHORIZATION, format!("Bearer {}", key.expose())),
        Auth::Header(name, key) => (HeaderName::from_static(name), key.expose().to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        CallError::fatal(
            "api key",
            format!(
                "the {provider} API key contains characters that cannot be sent in a header \
                 (a stray newline or space?)"
            ),
        )
    })?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

/// A 2xx whose body is not the protocol at all: a login page, a proxy's notice, a wrong base
/// URL. Not retryable: the same URL will answer the same way. Says what arrived, flattened to
/// one line and bounded, since this text is printed.
fn not_the_protocol(content_type: &str, head: &[u8], expected: &str) -> CallError {
    let what = if content_type.is_empty() {
        "no content type".to_owned()
    } else {
        sse::one_line(content_type, 60)
    };
    let text = sse::one_line(&String::from_utf8_lossy(head), 80);
    let starts = if text.is_empty() {
        "an empty body".to_owned()
    } else {
        format!("starting {text:?}")
    };
    CallError::fatal(
        "not the API",
        format!(
            "the server answered HTTP 200 with {what}, {starts}, instead of {expected} \
             (is the base URL that of the API?)"
        ),
    )
}

/// Shown in place of a key.
const REDACTED: &str = "[redacted]";

/// Keys shorter than this are not searched for: a one- or two-letter placeholder key (local
/// servers accept anything) would garble every message, and protects nothing.
const MIN_REDACTED_LEN: usize = 4;

/// Removes one key from error text: every whole occurrence (so its `Bearer <key>` form too),
/// and a start of the key cut off by a truncation mark (`…`), which messages get when a long
/// body is shortened in the middle of the reflected key.
pub(crate) struct Redactor<'a> {
    key: Option<&'a str>,
}

impl<'a> Redactor<'a> {
    pub(crate) fn new(key: Option<&'a ApiKey>) -> Self {
        Self {
            key: key
                .map(ApiKey::expose)
                .filter(|k| k.len() >= MIN_REDACTED_LEN),
        }
    }

    pub(crate) fn error(&self, mut error: CallError) -> CallError {
        error.message = self.text(&error.message);
        error.reason = self.text(&error.reason);
        error
    }

    pub(crate) fn text(&self, text: &str) -> String {
        let Some(key) = self.key else {
            return text.to_owned();
        };
        let mut out = text.replace(key, REDACTED);
        // A truncated key: the text just before a `…` ends with the key's first characters.
        let mut search_from = 0;
        while let Some(found) = out[search_from..].find('…') {
            let at = search_from + found;
            let before = &out[..at];
            let cut = (MIN_REDACTED_LEN..key.len())
                .rev()
                .filter(|&n| key.is_char_boundary(n))
                .find(|&n| before.ends_with(&key[..n]));
            match cut {
                Some(n) => {
                    out.replace_range(at - n..at, REDACTED);
                    search_from = at - n + REDACTED.len() + '…'.len_utf8();
                }
                None => search_from = at + '…'.len_utf8(),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "test-key-not-real-1234567890";

    fn redact(text: &str) -> String {
        let key = ApiKey::new(KEY.into());
        Redactor::new(Some(&key)).text(text)
    }

    #[test]
    fn whole_keys_and_the_bearer_form_are_redacted() {
        assert_eq!(
            redact(&format!(
                "Incorrect API key provided: Bearer {KEY}. Check it."
            )),
            "Incorrect API key provided: Bearer [redacted]. Check it."
        );
        assert_eq!(redact(&format!("{KEY}{KEY}")), "[redacted][redacted]");
        assert_eq!(redact("nothing secret"), "nothing secret");
    }

    #[test]
    fn a_key_cut_by_truncation_is_redacted() {
        assert_eq!(
            redact("invalid key: test-key-not-re…"),
            "invalid key: [redacted]…"
        );
        // Text that merely ends like a word before an ellipsis is left alone.
        assert_eq!(redact("wait te…"), "wait te…");
    }

    #[test]
    fn tiny_keys_are_not_searched_for() {
        let key = ApiKey::new("x".into());
        assert_eq!(Redactor::new(Some(&key)).text("x marks"), "x marks");
        assert_eq!(Redactor::new(None).text(KEY), KEY);
    }
}
