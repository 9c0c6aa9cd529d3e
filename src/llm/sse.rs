//! The HTTP transport both adapters share (through `llm::http`): sending a request and
//! classifying connection failures, reading error bodies into the provider's own message,
//! reading a whole answer, telling an event stream from other bodies by its first bytes, and
//! reading a streaming body as server-sent events with an idle timeout between chunks.
//!
//! SSE framing is done by `eventsource-stream` (comments such as `: keep-alive` never reach the
//! adapters). This module knows nothing of either wire protocol's JSON: it does not decide when a
//! stream is complete (each protocol has its own end marker) and it never retries. API keys live
//! only in request headers, which nothing here formats into a message (and `llm::http` redacts
//! every error that leaves a call in case a server reflects one).

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};

use crate::llm::{CallError, human_duration, parse_retry_after};

/// Longest provider message kept in a `CallError`: enough for a sentence or two, short enough
/// for a progress line. HTML error pages from proxies get cut here.
const MAX_MESSAGE_CHARS: usize = 300;

/// The error for a body that ended (or broke) before the protocol's end marker.
pub(crate) fn stream_cut() -> CallError {
    CallError::transient("stream cut", "the stream ended before the model finished")
}

/// A 200 in the protocol's form that could not be read (JSON cut short, an unexpected shape).
/// Retryable: overloaded servers sometimes cut a body short, and the next attempt may be fine.
/// A body that is not the protocol at all (a web page) is `llm::http`'s "not the API" instead,
/// which is not retried.
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

/// The response's content type as sent (empty when there is none).
pub(crate) fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .unwrap_or_default()
}

/// Whether a 2xx answer is one JSON document rather than an event stream.
pub(crate) fn is_json(response: &reqwest::Response) -> bool {
    is_json_type(&content_type(response))
}

/// `application/json`, with or without parameters.
pub(crate) fn is_json_type(content_type: &str) -> bool {
    content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
}

/// Whether a body begins like a JSON document (servers that send JSON as `text/plain`).
pub(crate) fn starts_like_json(body: &[u8]) -> bool {
    matches!(first_meaningful(body).first(), Some(b'{' | b'['))
}

/// The body without a leading UTF-8 byte order mark and whitespace.
fn first_meaningful(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    &body[start..]
}

/// Text from a server made fit for a one-line message: control characters (C0 and C1, so no
/// escape sequence survives) become spaces, runs of whitespace one space, at most `max_chars`.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c.is_whitespace() && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(if c.is_whitespace() { ' ' } else { c });
    }
    truncate(out.trim_end(), max_chars)
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
            Err(_) => return Err(no_response(url, idle)),
        },
        None => sent.await,
    };
    result.map_err(|e| connection_error(&e, url))
}

/// No response headers within `after`: the server was not reached in time, or accepted the
/// connection and never answered. Not "the stream went silent": no stream ever started.
fn no_response(url: &str, after: Duration) -> CallError {
    CallError::transient(
        "no response",
        format!(
            "no response from {} within {} (connect or first-byte timeout: the server sent \
             no headers)",
            display_url(url),
            human_duration(after)
        ),
    )
}

/// A failed `send`: the server could not be reached or dropped the connection before answering.
/// Retryable, except a failed TLS handshake, which fails the same way every time. The message
/// names the URL (without credentials or query) and the innermost cause ("Connection
/// refused"), never a header.
fn connection_error(error: &reqwest::Error, url: &str) -> CallError {
    let shown = display_url(url);
    let cause = innermost_cause(error);
    if is_tls_failure(error) {
        let hint = if url.trim_start().to_ascii_lowercase().starts_with("https:") {
            " (is this an http:// server?)"
        } else {
            ""
        };
        return CallError::fatal(
            "tls",
            format!("TLS handshake with {shown} failed: {cause}{hint}"),
        );
    }
    let message = if error.is_timeout() {
        format!("could not reach {shown}: timed out connecting")
    } else {
        format!("could not reach {shown}: {cause}")
    };
    CallError::transient("connection", message)
}

/// Whether connecting failed in the TLS handshake: rustls reports its errors as an io error of
/// kind `InvalidData` (wrapped in another io error by the connector), so that is looked for in
/// the chain and rustls need not be a direct dependency. An io error's `source` skips the error
/// it wraps, hence `get_ref`.
fn is_tls_failure(error: &reqwest::Error) -> bool {
    if !error.is_connect() {
        return false;
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::InvalidData => return true,
            Some(io) => current = io.get_ref().map(|inner| inner as _),
            None => current = e.source(),
        }
    }
    false
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
    let mut chunks = chunks(response, idle);
    let mut body = Vec::new();
    chunks.read_rest(&mut body).await?;
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

/// A body's chunks, failing with `Idle` when no chunk arrives within `idle`. The timeout sits
/// below the SSE parser on purpose: a `: keep-alive` comment produces no event but is proof of
/// life, so it must reset the clock.
///
/// One timer for the whole body, moved only when it fires: a chunk just notes the time. (A
/// `timeout` per chunk put a timer into tokio's wheel and took it out again for every piece of
/// every stream, a good part of the CPU a streamed answer costs.)
struct Chunks<S> {
    /// `None` after the end or an error: nothing more is read.
    inner: Option<Pin<Box<S>>>,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// When the last chunk arrived (or reading began).
    last: tokio::time::Instant,
}

/// The chunks of a response's body.
fn chunks(
    response: reqwest::Response,
    idle: Duration,
) -> Chunks<impl Stream<Item = reqwest::Result<impl AsRef<[u8]> + Send>> + Send> {
    Chunks::from_stream(response.bytes_stream(), idle)
}

impl<S, B> Chunks<S>
where
    S: Stream<Item = reqwest::Result<B>> + Send,
    B: AsRef<[u8]> + Send,
{
    fn from_stream(stream: S, idle: Duration) -> Self {
        Self {
            inner: Some(Box::pin(stream)),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            last: tokio::time::Instant::now(),
        }
    }

    async fn next(&mut self) -> Option<Result<B, BodyError>> {
        let inner = self.inner.as_mut()?;
        let item = loop {
            tokio::select! {
                biased;
                next = inner.next() => {
                    self.last = tokio::time::Instant::now();
                    match next {
                        None => break None,
                        Some(Ok(bytes)) => return Some(Ok(bytes)),
                        Some(Err(e)) => break Some(Err(BodyError::Read(e))),
                    }
                }
                () = &mut self.timer => {
                    let deadline = self.last + self.idle;
                    if tokio::time::Instant::now() >= deadline {
                        break Some(Err(BodyError::Idle(self.idle)));
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        };
        self.inner = None;
        item
    }

    async fn read_rest(&mut self, body: &mut Vec<u8>) -> Result<(), CallError> {
        while let Some(chunk) = self.next().await {
            match chunk {
                Ok(bytes) => body.extend_from_slice(bytes.as_ref()),
                Err(e) => return Err(e.into_call_error()),
            }
        }
        Ok(())
    }

    /// The rest of the body as a stream, after `head` (bytes already read).
    fn into_stream(self, head: Vec<u8>) -> impl Stream<Item = Result<Piece<B>, BodyError>> + Send {
        let head = (!head.is_empty()).then_some(Ok(Piece::Head(head)));
        futures_util::stream::iter(head).chain(futures_util::stream::unfold(
            self,
            |mut chunks| async move {
                let item = chunks.next().await?;
                Some((item.map(Piece::Chunk), chunks))
            },
        ))
    }
}

/// A piece of body: the bytes read to recognise it, then the chunks as they arrive.
enum Piece<B> {
    Head(Vec<u8>),
    Chunk(B),
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Piece<B> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Piece::Head(bytes) => bytes,
            Piece::Chunk(bytes) => bytes.as_ref(),
        }
    }
}

/// How many bytes are enough to recognise a body when no line has ended yet.
const SNIFF_BYTES: usize = 64;

/// What a 200 to a stream request turned out to be, from its first bytes.
pub(crate) enum Head {
    /// Server-sent events (or an empty body, which the adapter reports as a cut stream).
    Events(SseStream),
    /// One JSON document, read whole: a server that ignored `stream: true`.
    Json(Vec<u8>),
    /// Something else (an HTML page): these first bytes of it.
    Other(Vec<u8>),
}

/// Whether the first line of a body is an SSE line: a comment, or one of the four fields.
fn looks_like_sse(head: &[u8]) -> bool {
    let body = first_meaningful(head);
    let line = body
        .split(|&b| b == b'\n' || b == b'\r')
        .next()
        .unwrap_or(b"");
    if body.is_empty() || line.starts_with(b":") {
        return true;
    }
    let field = line.split(|&b| b == b':').next().unwrap_or(b"");
    matches!(field, b"data" | b"event" | b"id" | b"retry")
}

type EventItem = Result<Event, EventStreamError<BodyError>>;

/// A streaming body read as server-sent events.
pub(crate) struct SseStream {
    events: Pin<Box<dyn Stream<Item = EventItem> + Send>>,
}

impl SseStream {
    /// Read the first line (or first bytes) of a 200 to a stream request and decide what it
    /// is. Proxies and wrong base URLs answer with web pages labelled anything, and some
    /// servers label their event stream wrongly, so the bytes decide, not the content type.
    pub(crate) async fn sniff(
        response: reqwest::Response,
        idle: Duration,
    ) -> Result<Head, CallError> {
        let mut chunks = chunks(response, idle);
        let mut head = Vec::new();
        while !first_meaningful(&head).contains(&b'\n') && head.len() < SNIFF_BYTES {
            match chunks.next().await {
                Some(Ok(bytes)) => head.extend_from_slice(bytes.as_ref()),
                Some(Err(e)) => return Err(e.into_call_error()),
                None => break,
            }
        }
        if looks_like_sse(&head) {
            let events = chunks.into_stream(head).eventsource();
            return Ok(Head::Events(Self {
                events: Box::pin(events),
            }));
        }
        if starts_like_json(&head) {
            chunks.read_rest(&mut head).await?;
            return Ok(Head::Json(head));
        }
        Ok(Head::Other(head))
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
