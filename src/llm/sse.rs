//! The HTTP transport both adapters share: sending a request and classifying connection
//! failures, reading error bodies into the provider's own message, reading a whole answer, and
//! reading a streaming body as server-sent events with an idle timeout between chunks.
//!
//! SSE framing is done by `eventsource-stream` (comments such as `: keep-alive` never reach the
//! adapters). This module knows nothing of either wire protocol's JSON: it does not decide when a
//! stream is complete (each protocol has its own end marker) and it never retries. API keys live
//! only in request headers, which nothing here formats into a message.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

use crate::llm::{CallError, parse_retry_after};

/// Longest provider message kept in a `CallError`: enough for a sentence or two, short enough
/// for a progress line. HTML error pages from proxies get cut here.
const MAX_MESSAGE_CHARS: usize = 300;

/// The error for a body that ended (or broke) before the protocol's end marker.
pub(crate) fn stream_cut() -> CallError {
    CallError::transient("stream cut", "the stream ended before the model finished")
}

/// A 200 whose body could not be understood. Retryable: proxies and overloaded servers
/// sometimes answer with an HTML page or a truncated body, and the next attempt may be fine.
pub(crate) fn bad_response(detail: &str) -> CallError {
    CallError::transient("bad response", format!("unreadable answer: {detail}"))
}

/// How long to wait for a TCP (and TLS) connection before calling the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client an adapter keeps for its lifetime (connections are pooled). No overall
/// timeout: the executor applies the call deadline, and adapters enforce the idle timeout.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("maestro/", env!("CARGO_PKG_VERSION")))
        .build()
        // Building fails only when the TLS backend cannot initialise: a broken installation,
        // not something a caller could handle.
        .expect("the HTTP client (TLS backend) failed to initialise")
}

/// Whether a 2xx answer is one JSON document rather than an event stream.
pub(crate) fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// Send a request. `idle` bounds the wait for the response headers: streaming servers send
/// them at once, so a long silence there is a hung server. Non-streaming callers pass `None`,
/// because such servers only answer once the whole text is generated (the executor's overall
/// timeout covers that).
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
    idle: Option<Duration>,
) -> Result<reqwest::Response, CallError> {
    let sent = request.send();
    let result = match idle {
        Some(idle) => match tokio::time::timeout(idle, sent).await {
            Ok(result) => result,
            Err(_) => return Err(CallError::idle(idle)),
        },
        None => sent.await,
    };
    result.map_err(|e| connection_error(&e, url))
}

/// A failed `send`: the server could not be reached or dropped the connection before answering.
/// Always retryable. The message names the URL (without credentials or query) and the
/// innermost cause ("Connection refused"), never a header.
fn connection_error(error: &reqwest::Error, url: &str) -> CallError {
    let url = display_url(url);
    let cause = innermost_cause(error);
    let message = if error.is_timeout() {
        format!("could not reach {url}: timed out connecting")
    } else {
        format!("could not reach {url}: {cause}")
    };
    CallError::transient("connection", message)
}

/// The last error in the `source` chain: reqwest's own text is generic ("error sending
/// request"), the io error at the bottom says what happened.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// A URL fit for an error message: userinfo and query string dropped, since some proxies
/// take a key there.
fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => "the configured URL".to_owned(),
    }
}

/// A non-2xx answer, read in full so the provider's explanation reaches the user.
#[derive(Debug, Clone)]
pub(crate) struct HttpFailure {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The raw body (possibly empty when it could not be read).
    pub body: String,
}

impl HttpFailure {
    /// Read the body of an error response. A body that cannot be read (or takes longer than
    /// `idle` per chunk) is treated as empty: the status alone still classifies the failure.
    pub(crate) async fn read(response: reqwest::Response, idle: Duration) -> Self {
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers());
        let body = read_body(response, idle)
            .await
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        Self {
            status,
            retry_after,
            body,
        }
    }

    /// The body parsed as JSON, when it is JSON.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// Classified by status, with the provider's message.
    pub(crate) fn into_call_error(self) -> CallError {
        let message = provider_message(&self.body);
        CallError::from_status(self.status, message, self.retry_after)
    }
}

/// The human part of an error body: `error.message` (both protocols), a bare `error` string or
/// a top-level `message` when the body is JSON, else the text itself; truncated.
pub(crate) fn provider_message(body: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(json) => json_message(&json).unwrap_or_else(|| body.trim().to_owned()),
        Err(_) => body.trim().to_owned(),
    };
    if text.is_empty() {
        return "no details from the server".to_owned();
    }
    truncate(&text, MAX_MESSAGE_CHARS)
}

/// The message inside an error JSON of either protocol, if it has one.
pub(crate) fn json_message(json: &serde_json::Value) -> Option<String> {
    let candidates = [
        json.pointer("/error/message"),
        json.get("error").filter(|e| e.is_string()),
        json.get("message"),
        json.get("detail"),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Read a whole (non-streamed) body, allowing at most `idle` between two chunks of it.
pub(crate) async fn read_body(
    response: reqwest::Response,
    idle: Duration,
) -> Result<Vec<u8>, CallError> {
    let mut chunks = std::pin::pin!(idle_bounded(response, idle));
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => body.extend_from_slice(bytes.as_ref()),
            Err(e) => return Err(e.into_call_error()),
        }
    }
    Ok(body)
}

/// Why reading the body stopped early.
#[derive(Debug)]
enum BodyError {
    Idle(Duration),
    Read(reqwest::Error),
}

impl BodyError {
    fn into_call_error(self) -> CallError {
        match self {
            BodyError::Idle(after) => CallError::idle(after),
            // The connection broke mid-body: to the user this is the same as a cut stream.
            BodyError::Read(e) => {
                let mut error = stream_cut();
                error.message = format!(
                    "the stream broke before the model finished: {}",
                    innermost_cause(&e)
                );
                error
            }
        }
    }
}

/// The body as byte chunks, failing with `Idle` when no chunk arrives within `idle`. The
/// timeout sits below the SSE parser on purpose: a `: keep-alive` comment produces no event
/// but is proof of life, so it must reset the clock.
fn idle_bounded(
    response: reqwest::Response,
    idle: Duration,
) -> impl Stream<Item = Result<impl AsRef<[u8]> + Send, BodyError>> + Send {
    // One timer for the whole body, moved only when it fires: a chunk just notes the time.
    // (A `timeout` per chunk put a timer into tokio's wheel and took it out again for every
    // piece of every stream, a good part of the CPU a streamed answer costs.)
    let state = IdleState {
        inner: Box::pin(response.bytes_stream()),
        timer: Box::pin(tokio::time::sleep(idle)),
        last: tokio::time::Instant::now(),
    };
    futures_util::stream::unfold(Some(state), move |state| async move {
        // `None` after an error: the stream yields nothing more.
        let mut state = state?;
        loop {
            tokio::select! {
                biased;
                next = state.inner.next() => {
                    state.last = tokio::time::Instant::now();
                    return match next {
                        None => None,
                        Some(Ok(bytes)) => Some((Ok(bytes), Some(state))),
                        Some(Err(e)) => Some((Err(BodyError::Read(e)), None)),
                    };
                }
                () = &mut state.timer => {
                    let deadline = state.last + idle;
                    if tokio::time::Instant::now() >= deadline {
                        return Some((Err(BodyError::Idle(idle)), None));
                    }
                    state.timer.as_mut().reset(deadline);
                }
            }
        }
    })
}

struct IdleState<S> {
    inner: Pin<Box<S>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the last chunk arrived (or reading began).
    last: tokio::time::Instant,
}

type EventItem = Result<Event, EventStreamError<BodyError>>;

/// A streaming body read as server-sent events.
pub(crate) struct SseStream {
    events: Pin<Box<dyn Stream<Item = EventItem> + Send>>,
}

impl SseStream {
    pub(crate) fn new(response: reqwest::Response, idle: Duration) -> Self {
        Self {
            events: Box::pin(idle_bounded(response, idle).eventsource()),
        }
    }

    /// The next event; `Ok(None)` when the body ended cleanly. Whether that end was expected is
    /// the adapter's call (it knows the protocol's end marker): usually it is `stream_cut()`.
    pub(crate) async fn next(&mut self) -> Result<Option<Event>, CallError> {
        match self.events.next().await {
            None => Ok(None),
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(EventStreamError::Transport(e))) => Err(e.into_call_error()),
            Some(Err(EventStreamError::Utf8(_))) => Err(bad_response("the stream is not UTF-8")),
            Some(Err(EventStreamError::Parser(_))) => {
                Err(bad_response("the stream is not server-sent events"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_message_prefers_error_message() {
        let body =
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#;
        assert_eq!(provider_message(body), "Incorrect API key provided");
        assert_eq!(
            provider_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(provider_message("  Bad Gateway \n"), "Bad Gateway");
        assert_eq!(provider_message(""), "no details from the server");
    }

    #[test]
    fn provider_message_is_truncated_on_a_char_boundary() {
        let body = "é".repeat(400);
        let message = provider_message(&body);
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }

    #[test]
    fn display_url_drops_credentials_and_query() {
        assert_eq!(
            display_url("http://user:secret@example.com/v1/chat/completions?key=abc"),
            "http://example.com/v1/chat/completions"
        );
    }
}
