//! A small web site on 127.0.0.1 for the `fetch_url` tests: an HTML page with a script and a
//! style, plain text, JSON, a latin-1 page, a page full of terminal escapes, redirect chains
//! and a loop, redirects to a loopback address that is not allowed and to `file://`, an
//! endless body, binaries, a 404 and a page that never answers.
//!
//! It counts the requests it receives (so a test can show a refusal sent nothing), keeps the
//! path of each (so a test can show what was really fetched) and counts the bytes of the
//! endless body it handed out. Self-contained: axum, tokio, futures-util and std.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

pub const PAGE_HTML: &str = "<!DOCTYPE html><html><head><title>Fixture</title>\
    <style>body { color: red; }</style></head><body>\
    <h1>Tide tables</h1>\
    <script>var secretToken = 'do-not-show';</script>\
    <p>High water is at <b>noon</b>.</p>\
    <ul><li>first item</li><li>second item</li></ul>\
    </body></html>";

pub const PLAIN: &str = "just some plain text\nsecond line\n";

pub const JSON: &str = r#"{"name": "fixture", "items": [1, 2, 3]}"#;

/// The counters the site keeps.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// The path of every request, in order.
    pub paths: std::sync::Mutex<Vec<String>>,
    /// Bytes of `/endless` handed to the connection.
    pub endless_bytes: AtomicU64,
}

#[derive(Clone)]
struct SiteState {
    port: u16,
    counters: Arc<Counters>,
}

pub struct Site {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Site {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let counters = Arc::new(Counters::default());
        let state = SiteState {
            port: addr.port(),
            counters: counters.clone(),
        };
        let app = Router::new()
            .route(
                "/page.html",
                get(|| async { typed("text/html; charset=utf-8", PAGE_HTML) }),
            )
            .route("/plain.txt", get(|| async { typed("text/plain", PLAIN) }))
            .route(
                "/data.json",
                get(|| async { typed("application/json", JSON) }),
            )
            .route(
                "/latin1.txt",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/plain; charset=iso-8859-1")],
                        Bytes::from_static(b"caf\xe9 cr\xe8me\n"),
                    )
                }),
            )
            .route(
                "/escapes.txt",
                get(|| async {
                    typed(
                        "text/plain",
                        "before\u{1b}]0;pwned\u{7}\u{1b}[2Jafter\u{9b}31m done\n",
                    )
                }),
            )
            .route("/loop/a", get(|| async { redirect("/loop/b") }))
            .route("/loop/b", get(|| async { redirect("/loop/a") }))
            .route("/hops/{n}", get(hops))
            .route("/to-private", get(to_private))
            .route("/to-file", get(|| async { redirect("file:///etc/passwd") }))
            .route("/endless", get(endless))
            .route(
                "/binary",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/octet-stream")],
                        Bytes::from_static(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"),
                    )
                }),
            )
            .route(
                "/image.png",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "image/png")],
                        Bytes::from_static(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
                    )
                }),
            )
            .route(
                "/untyped.txt",
                get(|| async {
                    let mut response = Response::new(Body::from("untyped but plainly text\n"));
                    response.headers_mut().remove(header::CONTENT_TYPE);
                    response
                }),
            )
            .route(
                "/missing",
                get(|| async { (StatusCode::NOT_FOUND, typed("text/plain", "no such page\n")) }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    typed("text/plain", "too late\n")
                }),
            )
            .layer(from_fn_with_state(state.clone(), count))
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            counters,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::SeqCst)
    }

    /// The URL of every request the site answered, in order.
    pub fn fetched(&self) -> Vec<String> {
        self.counters
            .paths
            .lock()
            .map(|paths| paths.iter().map(|p| self.url(p)).collect())
            .unwrap_or_default()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn count(State(state): State<SiteState>, request: Request, next: Next) -> Response {
    state.counters.requests.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut paths) = state.counters.paths.lock() {
        paths.push(request.uri().path().to_owned());
    }
    next.run(request).await
}

fn typed(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

async fn hops(Path(n): Path<u32>) -> Response {
    if n == 0 {
        typed("text/plain", "arrived\n")
    } else {
        redirect(&format!("/hops/{}", n - 1))
    }
}

/// A redirect to a loopback address other than the site's own, which tests do not allow. The
/// tool must refuse it before connecting; were it to connect, the traffic would stay on this
/// machine.
async fn to_private(State(state): State<SiteState>) -> Response {
    redirect(&format!("http://127.0.0.2:{}/plain.txt", state.port))
}

/// A text body that never ends, in 64 KiB chunks.
async fn endless(State(state): State<SiteState>) -> Response {
    let chunk = Bytes::from("endless line of text\n".repeat(64 * 1024 / 21));
    let counters = state.counters.clone();
    let stream = futures_util::stream::repeat(chunk).map(move |c| {
        counters
            .endless_bytes
            .fetch_add(c.len() as u64, Ordering::SeqCst);
        Ok::<_, Infallible>(c)
    });
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}
