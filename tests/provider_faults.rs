//! Provider faults seen from the outside: the real `maestro` binary against the mock server,
//! on both wire protocols. A key the server reflects in its error body must appear nowhere
//! (stdout, stderr, events file, log), and the messages for faults that used to mislead (a web
//! page on a 200, a `Retry-After` longer than a retry may wait, an empty key variable) must say
//! what happened.
//!
//! Children get a clean environment (no keys or `MAESTRO_*` from the developer's shell) and a
//! temp home, so their logs land where the test can read them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mock::{Call, MockRequest, MockServer, Protocol, Reply};
use common::{Output, Sandbox};
use serde_json::{Value, json};

/// Looks nothing like a real key, so a leak in a log is never mistaken for one.
const KEY: &str = "test-key-not-real-1234567890";
const QUERY: &str = "What do heat pumps change for a city grid?";
const PROCESS_LIMIT: Duration = Duration::from_secs(20);

impl Sandbox {
    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.child(args)
            .env("XDG_STATE_HOME", self.path("state"))
            .env("MAESTRO_LOG", "debug")
            .envs(env)
            .limit(PROCESS_LIMIT)
            .lossy()
            .run()
            .await
    }

    /// Every file the child left in the sandbox (logs, events), as text.
    fn files(&self) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        collect_files(self.dir.path(), &mut found);
        found
    }
}

fn collect_files(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
}

fn plan() -> String {
    json!({
        "query_analysis": "One question.",
        "subtasks": [{
            "id": "a",
            "worker": "research",
            "title": "Grid load",
            "description": "How the evening peak moves.",
            "focus_areas": [],
            "depends_on": [],
            "priority": "high",
        }],
        "synthesis_guidance": "Be brief.",
    })
    .to_string()
}

/// `maestro run` against the mock on `protocol`, with `KEY` in the protocol's default key
/// variable, JSON on stdout and the events file in the sandbox.
async fn run_against(
    sandbox: &Sandbox,
    server: &MockServer,
    protocol: Protocol,
    retries: &str,
) -> Output {
    let (provider, var) = match protocol {
        Protocol::OpenAi => ("openai", "OPENAI_API_KEY"),
        Protocol::Anthropic => ("anthropic", "ANTHROPIC_API_KEY"),
    };
    let base_url = server.base_url(protocol);
    let events = sandbox.path("events.jsonl");
    let events = events.to_str().expect("a UTF-8 temp path");
    let args = [
        "run",
        "--provider",
        provider,
        "--base-url",
        &base_url,
        "--format",
        "json",
        "--events",
        events,
        "--retries",
        retries,
        QUERY,
    ];
    sandbox.run(&args, &[(var, KEY)]).await
}

const PROTOCOLS: [Protocol; 2] = [Protocol::OpenAi, Protocol::Anthropic];

// ---- keys ---------------------------------------------------------------------------------

/// The key is nowhere: not on stdout or stderr, not in the events file, not in the log.
fn assert_no_key(sandbox: &Sandbox, out: &Output) {
    assert!(!out.stdout.contains(KEY), "key on stdout: {out:?}");
    assert!(!out.stderr.contains(KEY), "key on stderr: {out:?}");
    let files = sandbox.files();
    assert!(
        files.iter().any(|(p, _)| p.ends_with("events.jsonl")),
        "the events file was written: {files:?}"
    );
    for (path, text) in files {
        assert!(!text.contains(KEY), "key in {}", path.display());
    }
}

#[tokio::test]
async fn a_key_the_server_reflects_when_planning_appears_nowhere() {
    for protocol in PROTOCOLS {
        let server = MockServer::always(Reply::reflect_key()).await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, "2").await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_no_key(&sandbox, &out);
        // Still a meaningful error: what the server said, with the key blanked out.
        let error = serde_json::from_str::<Value>(&out.stdout).expect("JSON on stdout")["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains("HTTP 401"), "{protocol:?}: {error}");
        assert!(
            error.contains("Incorrect API key provided"),
            "{protocol:?}: {error}"
        );
        assert!(error.contains("[redacted]"), "{protocol:?}: {error}");
        assert!(out.stderr.contains("Incorrect API key provided"), "{out:?}");
        // The mock really was sent the key, and a 401 is not retried.
        assert_eq!(server.request_count(), 1);
        let sent = server.last_request();
        let header = sent
            .header("authorization")
            .or_else(|| sent.header("x-api-key"));
        assert!(header.is_some_and(|h| h.contains(KEY)));
    }
}

#[tokio::test]
async fn a_key_a_worker_call_reflects_appears_nowhere() {
    for protocol in PROTOCOLS {
        let plan = plan();
        let server = MockServer::start(move |r: &MockRequest| match r.call() {
            Call::Planner => Reply::text(plan.clone()),
            Call::Worker(_) => Reply::reflect_key(),
            Call::Synthesis => Reply::text("# Report"),
            Call::Unknown => Reply::status(400, "unexpected"),
        })
        .await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, "2").await;
        assert_no_key(&sandbox, &out);
        let events = std::fs::read_to_string(sandbox.path("events.jsonl")).expect("events");
        let failed = events
            .lines()
            .find(|l| l.contains("Incorrect API key provided"))
            .unwrap_or_else(|| panic!("{protocol:?}: no failure event in {events}"));
        assert!(failed.contains("[redacted]"), "{failed}");
    }
}

// ---- messages that used to mislead --------------------------------------------------------

#[tokio::test]
async fn a_web_page_on_a_200_is_named_and_not_retried() {
    let page = "<!DOCTYPE html><html><head><title>Gateway sign-in</title></head></html>";
    for protocol in PROTOCOLS {
        let server = MockServer::always(Reply::raw(200, "text/html", page)).await;
        let sandbox = Sandbox::new("");
        let out = run_against(&sandbox, &server, protocol, "2").await;
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(server.request_count(), 1, "not retried: {out:?}");
        assert!(out.stderr.contains("text/html"), "{out:?}");
        assert!(out.stderr.contains("Gateway sign-in"), "{out:?}");
        assert!(!out.stderr.contains("stream ended"), "{out:?}");
    }
}

#[tokio::test]
async fn a_retry_after_longer_than_a_retry_may_wait_fails_saying_so() {
    for protocol in PROTOCOLS {
        let server =
            MockServer::always(Reply::status(429, "Too many requests").retry_after(600)).await;
        let sandbox = Sandbox::new("");
        let started = Instant::now();
        let out = run_against(&sandbox, &server, protocol, "2").await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.code, Some(1), "{out:?}");
        assert_eq!(server.request_count(), 1, "{out:?}");
        assert!(
            out.stderr.contains("the server asked to wait 600 s"),
            "{out:?}"
        );
        assert!(out.stderr.contains("Too many requests"), "{out:?}");
    }
}

#[tokio::test]
async fn an_empty_key_variable_is_called_empty_not_unset() {
    let sandbox = Sandbox::new("");
    let out = sandbox
        .run(
            &["run", "--provider", "anthropic", QUERY],
            &[("ANTHROPIC_API_KEY", "  ")],
        )
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("ANTHROPIC_API_KEY is empty"), "{out:?}");
    assert!(!out.stderr.contains("not set"), "{out:?}");
    let out = sandbox
        .run(
            &[
                "run",
                "--provider",
                "openai",
                "--api-key-env",
                "MY_MAESTRO_KEY",
                QUERY,
            ],
            &[("MY_MAESTRO_KEY", "")],
        )
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("MY_MAESTRO_KEY is empty"), "{out:?}");
    let out = sandbox
        .run(&["run", "--provider", "anthropic", QUERY], &[])
        .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("ANTHROPIC_API_KEY is not set"),
        "{out:?}"
    );
}
