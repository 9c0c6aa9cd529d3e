//! `fetch_url`: an HTTP(S) GET whose page comes back as readable text.
//!
//! Every hop (the URL, then each redirect target) is checked against the host policy on the
//! addresses its name resolves to: the client's resolver does the check and hands the
//! connector only the checked addresses, so a name that resolves to a public address for a
//! check and a private one for the connection cannot slip through. IP-literal hosts, which
//! no resolver sees, are checked before the request. Redirects are followed here, not by
//! reqwest, for the same reason. System proxies are not used: through a proxy the policy could
//! not see where a request really goes. The body is read in chunks and reading stops at the
//! byte cap; nothing beyond it is downloaded. HTML becomes text with `html2text` (scripts,
//! styles and markup dropped); other text, JSON and XML pass through; binaries are refused.
//!
//! This module decides nothing about runs and never panics on what a server sends.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use super::hosts::{HostPolicy, Refusal, UrlHost};
use super::{SourceKind, SourceRecord, ToolOutput, ToolsConfig, human_bytes, string_arg, truncate};

/// As the provider clients: a server that does not accept a connection in this long is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The same user agent the provider clients send.
const USER_AGENT: &str = concat!("maestro/", env!("CARGO_PKG_VERSION"));
/// How much of a body of unknown type is looked at to tell text from binary.
const SNIFF_BYTES: usize = 8 * 1024;

/// The `fetch_url` tool.
#[derive(Debug, Clone)]
pub struct FetchUrl {
    policy: HostPolicy,
    /// One client for every fetch (connections are pooled), whose resolver applies the
    /// policy; the error when it could not be built.
    client: Result<reqwest::Client, String>,
    timeout: Duration,
    max_bytes: u64,
    max_redirects: usize,
    max_chars: usize,
}

/// Why a fetch produced no page.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not a valid URL: {0}")]
    BadUrl(String),
    #[error("refused: only http and https URLs can be fetched, not {0}:")]
    Scheme(String),
    #[error("{0}")]
    Refused(Refusal),
    #[error("could not resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0}")]
    Request(String),
    #[error("stopped after {0} redirects (the limit); the last one pointed to {1}")]
    TooManyRedirects(usize, String),
    #[error(
        "refused: {url} is binary ({content_type}), not text; fetch_url reads web pages, text, \
         JSON and XML"
    )]
    Binary { url: String, content_type: String },
}

/// A page that was read.
#[derive(Debug)]
struct Page {
    final_url: Url,
    redirects: usize,
    status: StatusCode,
    content_type: String,
    /// Bytes read.
    bytes: u64,
    /// Reading stopped at the cap.
    cut: bool,
    /// The size the server announced, if it did.
    announced: Option<u64>,
    text: String,
    /// The HTML was too deeply nested to lay out and had its tags stripped instead.
    plain_layout: bool,
}

/// How a body is turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Html,
    Text,
    /// Untyped, `application/octet-stream` or an unfamiliar type: decided by its bytes.
    Sniff,
    /// Images, audio, video, fonts, archives: refused without reading.
    Binary,
}

impl FetchUrl {
    pub const NAME: &'static str = "fetch_url";
    pub const DESCRIPTION: &'static str = "Fetch a web page or file over http(s) and return its \
        readable text (HTML converted to text; plain text, JSON and XML as they are).";

    pub fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "description": "The absolute http:// or https:// URL to fetch."
                }
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    pub fn new(config: &ToolsConfig) -> Self {
        let policy = HostPolicy {
            allow: config.allow_hosts.clone(),
            deny: config.deny_hosts.clone(),
        };
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                policy: policy.clone(),
            }))
            .build()
            .map_err(|e| e.to_string());
        Self {
            policy,
            client,
            timeout: config.fetch_timeout,
            max_bytes: config.max_fetch_bytes,
            max_redirects: config.max_redirects,
            max_chars: config.max_result_chars,
        }
    }

    /// Runs the tool on the model's arguments, `{"url": "..."}`.
    pub async fn call(&self, args: &Value) -> ToolOutput {
        let url = match string_arg(Self::NAME, args, "url", true) {
            Ok(Some(url)) => url,
            Ok(None) => return ToolOutput::error("fetch_url needs a url"),
            Err(out) => return out,
        };
        let started = Instant::now();
        let fetched = tokio::time::timeout(self.timeout, self.fetch(url)).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let shown =
            Url::parse(url.trim()).map_or_else(|_| url.to_owned(), |u| without_credentials(&u));
        match fetched {
            Err(_) => ToolOutput::error(&format!(
                "fetch_url {shown}: timed out after {} s",
                self.timeout.as_secs_f64()
            )),
            Ok(Err(e)) => ToolOutput::error(&format!("fetch_url {shown}: {e}")),
            Ok(Ok(page)) => self.output(url, page, elapsed_ms),
        }
    }

    fn output(&self, requested: &str, page: Page, elapsed_ms: u64) -> ToolOutput {
        let requested = Url::parse(requested.trim())
            .map_or_else(|_| requested.to_owned(), |u| without_credentials(&u));
        let final_url = without_credentials(&page.final_url);
        let mut note = format!("\n\n---\nURL: {requested}\n");
        if final_url != requested {
            let hops = match page.redirects {
                0 => String::new(),
                1 => " (after 1 redirect)".to_owned(),
                n => format!(" (after {n} redirects)"),
            };
            note.push_str(&format!("Final URL: {final_url}{hops}\n"));
        }
        note.push_str(&format!("Status: {}\n", page.status));
        note.push_str(&format!("Content type: {}\n", page.content_type));
        let size = if page.cut {
            let total = page
                .announced
                .map(|n| format!("; the body is {}", human_bytes(n)))
                .unwrap_or_default();
            format!(
                "{} read, cut at the {} cap{total}",
                human_bytes(page.bytes),
                human_bytes(self.max_bytes)
            )
        } else {
            human_bytes(page.bytes)
        };
        note.push_str(&format!("Size: {size}\n"));
        if page.plain_layout {
            note.push_str(&format!(
                "Layout: tags stripped only (the page nests deeper than {} levels)\n",
                super::html::MAX_DEPTH
            ));
        }
        let source = SourceRecord {
            kind: SourceKind::Url,
            location: final_url.clone(),
            bytes: page.bytes,
            status: Some(page.status.as_u16()),
            elapsed_ms,
        };
        let body = truncate(&page.text, self.max_chars);
        if page.status.is_success() {
            ToolOutput::ok(&format!("{body}{note}"), source)
        } else {
            ToolOutput::error_with_source(
                &format!("HTTP {} from {}\n\n{body}{note}", page.status, final_url),
                source,
            )
        }
    }

    /// Fetches `url`, following redirects, and turns the body into text. No overall timeout:
    /// `call` applies it.
    async fn fetch(&self, url: &str) -> Result<Page, FetchError> {
        let mut url = Url::parse(url.trim()).map_err(|e| FetchError::BadUrl(e.to_string()))?;
        let mut redirects = 0;
        loop {
            check_scheme(&url)?;
            self.check_literal(&url)?;
            let client = self.client.as_ref().map_err(|e| {
                FetchError::Request(format!("could not set up the HTTP client: {e}"))
            })?;
            let response = client
                .get(url.clone())
                .send()
                .await
                .map_err(request_error)?;
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match location {
                Some(location) if is_redirect(status) => {
                    let next = url.join(&location).map_err(|e| {
                        FetchError::BadUrl(format!("redirect to {location:?}: {e}"))
                    })?;
                    if redirects == self.max_redirects {
                        return Err(FetchError::TooManyRedirects(
                            redirects,
                            without_credentials(&next),
                        ));
                    }
                    redirects += 1;
                    url = next;
                }
                _ => return self.read(response, redirects).await,
            }
        }
    }

    /// Refuses an IP-literal host the policy does not accept. (Names are checked by the
    /// client's resolver, at connection time; literals never reach a resolver.)
    fn check_literal(&self, url: &Url) -> Result<(), FetchError> {
        let raw = url
            .host_str()
            .ok_or_else(|| FetchError::BadUrl(format!("{url} has no host")))?;
        let unbracketed = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(raw);
        match unbracketed.parse::<IpAddr>() {
            Ok(ip) => self
                .policy
                .check(&UrlHost::Address(ip), &[ip])
                .map_err(FetchError::Refused),
            Err(_) => Ok(()),
        }
    }

    /// Reads the body up to the cap and turns it into text.
    async fn read(
        &self,
        mut response: reqwest::Response,
        redirects: usize,
    ) -> Result<Page, FetchError> {
        let final_url = response.url().clone();
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_owned();
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let shown_type = if content_type.is_empty() {
            "(none given)".to_owned()
        } else {
            content_type.clone()
        };
        let mut kind = body_kind(&content_type);
        if kind == BodyKind::Binary {
            return Err(FetchError::Binary {
                url: without_credentials(&final_url),
                content_type: shown_type,
            });
        }
        let cap = usize::try_from(self.max_bytes).unwrap_or(usize::MAX);
        let mut body: Vec<u8> = Vec::new();
        let mut cut = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Request(format!("reading the body: {}", describe(&e))))?
        {
            let room = cap - body.len();
            if chunk.len() >= room {
                body.extend_from_slice(&chunk[..room]);
                // Exactly at the cap with nothing left is whole; anything beyond is cut.
                cut = chunk.len() > room || announced.is_some_and(|n| n > self.max_bytes);
                if !cut {
                    cut = response
                        .chunk()
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|c| !c.is_empty());
                }
                break;
            }
            body.extend_from_slice(&chunk);
        }
        // Stop the download: the connection is dropped with the response.
        drop(response);
        if kind == BodyKind::Sniff {
            kind = sniff(&body, cut);
        }
        let decoded = match kind {
            BodyKind::Binary | BodyKind::Sniff => {
                return Err(FetchError::Binary {
                    url: without_credentials(&final_url),
                    content_type: shown_type,
                });
            }
            BodyKind::Html | BodyKind::Text => decode(&body, &content_type),
        };
        let mut plain_layout = false;
        let text = match kind {
            BodyKind::Html => {
                let (text, plain) = html_to_text(decoded).await?;
                plain_layout = plain;
                text
            }
            _ if decoded.contains('\0') => {
                return Err(FetchError::Binary {
                    url: without_credentials(&final_url),
                    content_type: shown_type,
                });
            }
            _ => decoded,
        };
        Ok(Page {
            final_url,
            redirects,
            status,
            content_type: shown_type,
            bytes: body.len() as u64,
            cut,
            announced,
            text,
            plain_layout,
        })
    }
}

/// `url` without a user name and password: they must not reach records or terminals.
fn without_credentials(url: &Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

fn check_scheme(url: &Url) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(FetchError::Scheme(other.to_owned())),
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// What a `Content-Type` says about how to read the body.
fn body_kind(content_type: &str) -> BodyKind {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (top, sub) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    match (top, sub) {
        ("text", "html") | ("application", "xhtml+xml") => BodyKind::Html,
        ("text", _) => BodyKind::Text,
        ("application", s)
            if matches!(
                s,
                "json"
                    | "xml"
                    | "javascript"
                    | "x-javascript"
                    | "ecmascript"
                    | "x-ndjson"
                    | "yaml"
                    | "x-yaml"
                    | "toml"
                    | "x-sh"
                    | "sql"
                    | "graphql"
            ) || s.ends_with("+json")
                || s.ends_with("+xml") =>
        {
            BodyKind::Text
        }
        ("image" | "audio" | "video" | "font" | "model", _) => BodyKind::Binary,
        (
            "application",
            "pdf" | "zip" | "gzip" | "x-gzip" | "x-tar" | "x-7z-compressed" | "x-rar-compressed"
            | "wasm" | "x-executable" | "x-msdownload" | "vnd.ms-excel" | "msword",
        ) => BodyKind::Binary,
        _ => BodyKind::Sniff,
    }
}

/// Text or binary, from the body's first bytes: NUL bytes or invalid UTF-8 mean binary. An
/// HTML document without a type is still HTML.
fn sniff(body: &[u8], cut: bool) -> BodyKind {
    let head = &body[..body.len().min(SNIFF_BYTES)];
    if head.contains(&0) {
        return BodyKind::Binary;
    }
    match std::str::from_utf8(head) {
        Ok(text) => looks_like_html(text),
        // A character cut by the sniff window or the cap is not a sign of binary.
        Err(e) if e.error_len().is_none() && (head.len() < body.len() || cut) => {
            looks_like_html(std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""))
        }
        Err(_) => BodyKind::Binary,
    }
}

fn looks_like_html(text: &str) -> BodyKind {
    let start = text
        .trim_start()
        .get(..15)
        .unwrap_or("")
        .to_ascii_lowercase();
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        BodyKind::Html
    } else {
        BodyKind::Text
    }
}

/// The body as a string, in the charset the content type names (UTF-8 otherwise); bytes that
/// do not decode become U+FFFD.
fn decode(body: &[u8], content_type: &str) -> String {
    let label = content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_owned())
    });
    let encoding = label
        .and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(body);
    text.into_owned()
}

/// HTML as text (see `html`), on a blocking thread, since a large page takes a while.
async fn html_to_text(html: String) -> Result<(String, bool), FetchError> {
    tokio::task::spawn_blocking(move || super::html::to_text(&html))
        .await
        .map_err(|e| FetchError::Request(format!("converting the page to text failed: {e}")))
}

/// Name resolution that only ever hands out addresses the policy accepted: the connection
/// goes to what was checked, so a name cannot resolve to a public address for the check and a
/// private one for the connection.
#[derive(Debug)]
struct CheckedResolver {
    policy: HostPolicy,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let fail = |e: FetchError| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) };
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    fail(FetchError::Resolve {
                        host: host.clone(),
                        reason: e.to_string(),
                    })
                })?
                .collect();
            if addrs.is_empty() {
                return Err(fail(FetchError::Resolve {
                    host,
                    reason: "no addresses".to_owned(),
                }));
            }
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            policy
                .check(&UrlHost::name(&host), &ips)
                .map_err(|r| fail(FetchError::Refused(r)))?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A failed request as the refusal or resolution failure the resolver reported, when that
/// is what it was.
fn request_error(error: reqwest::Error) -> FetchError {
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        match cause.downcast_ref::<FetchError>() {
            Some(FetchError::Refused(r)) => return FetchError::Refused(r.clone()),
            Some(FetchError::Resolve { host, reason }) => {
                return FetchError::Resolve {
                    host: host.clone(),
                    reason: reason.clone(),
                };
            }
            _ => {}
        }
        source = cause.source();
    }
    FetchError::Request(describe(&error))
}

/// A reqwest error as one line: what went wrong and its causes, without repeating the URL
/// (the result names it already).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the body could not be read"
    } else {
        "the request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    if causes.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::HostPattern;

    #[test]
    fn content_types_decide_how_a_body_is_read() {
        assert_eq!(body_kind("text/html; charset=utf-8"), BodyKind::Html);
        assert_eq!(body_kind("Application/XHTML+XML"), BodyKind::Html);
        assert_eq!(body_kind("text/plain"), BodyKind::Text);
        assert_eq!(body_kind("application/json"), BodyKind::Text);
        assert_eq!(body_kind("application/ld+json"), BodyKind::Text);
        assert_eq!(body_kind("application/rss+xml"), BodyKind::Text);
        assert_eq!(body_kind("image/png"), BodyKind::Binary);
        assert_eq!(body_kind("application/pdf"), BodyKind::Binary);
        assert_eq!(body_kind("application/octet-stream"), BodyKind::Sniff);
        assert_eq!(body_kind(""), BodyKind::Sniff);
    }

    #[test]
    fn sniffing_tells_text_html_and_binary_apart() {
        assert_eq!(sniff(b"hello\n", false), BodyKind::Text);
        assert_eq!(sniff(b"  <!DOCTYPE html><p>x", false), BodyKind::Html);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0", false), BodyKind::Binary);
        assert_eq!(sniff(b"caf\xff", false), BodyKind::Binary);
        // A character cut at the cap is still text.
        assert_eq!(sniff("café".as_bytes().split_at(4).0, true), BodyKind::Text);
    }

    #[test]
    fn the_charset_of_the_content_type_is_used() {
        assert_eq!(decode(b"caf\xe9", "text/plain; charset=ISO-8859-1"), "café");
        assert_eq!(decode("café".as_bytes(), "text/plain"), "café");
    }

    #[tokio::test]
    async fn html_keeps_text_and_drops_scripts_and_styles() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
                    <h1>Heading</h1><script>var secret = 1;</script><p>Some <b>text</b>.</p>\
                    </body></html>";
        let (text, _) = html_to_text(html.to_owned()).await.expect("converts");
        // Headings and emphasis come out marked as in markdown, which models read well.
        assert!(
            text.contains("# Heading") && text.contains("Some **text**."),
            "{text}"
        );
        assert!(
            !text.contains("secret") && !text.contains("color"),
            "{text}"
        );
    }

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        let url = Url::parse("https://user:hunter2@example.com/a?b=1").expect("a URL");
        assert_eq!(without_credentials(&url), "https://example.com/a?b=1");
    }

    #[tokio::test]
    async fn the_resolver_hands_out_only_checked_addresses() {
        use reqwest::dns::Resolve;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().expect("a name");
        let refusing = CheckedResolver {
            policy: HostPolicy::default(),
        };
        let err = match refusing.resolve(name("localhost")).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        let refusal = err.downcast_ref::<FetchError>();
        assert!(matches!(refusal, Some(FetchError::Refused(_))), "{err}");
        let allowing = CheckedResolver {
            policy: HostPolicy {
                allow: vec![HostPattern::parse("localhost").expect("valid")],
                deny: Vec::new(),
            },
        };
        let addrs: Vec<SocketAddr> = allowing
            .resolve(name("localhost"))
            .await
            .expect("allowed")
            .collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()),
            "{addrs:?}"
        );
    }

    #[tokio::test]
    async fn other_schemes_are_refused_before_any_request() {
        let tool = FetchUrl::new(&ToolsConfig::default());
        for url in ["file:///etc/passwd", "ftp://example.com/x", "gopher://x"] {
            let out = tool.call(&json!({ "url": url })).await;
            assert!(out.is_error, "{url}");
            assert!(out.text.contains("only http and https"), "{}", out.text);
            assert_eq!(out.source, None);
        }
    }
}
