//! The built-in `fetch_url` tool through the real binary: the mock LLM server asks for a page of
//! a local fixture site, the worker's role decides whether it is offered the tool at all, the
//! page's text goes back to the model, and the JSON report records the page as a source. A
//! loopback site is refused unless the person allows its host.

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::plans::{result_for, title};
use common::site::Site;
use common::{Output, Sandbox};
use serde_json::{Value, json};

const QUERY: &str = "When is high water?";
const LIMIT: Duration = Duration::from_secs(30);

/// `a` is a researcher (its role may fetch), `b` an analyst (no tools).
fn plan() -> String {
    json!({
        "query_analysis": "Tides.",
        "subtasks": [
            {"id": "a", "worker": "research", "title": title("a"), "description": "Look it up.",
             "focus_areas": [], "depends_on": [], "priority": "medium"},
            {"id": "b", "worker": "analysis", "title": title("b"), "description": "Reason it out.",
             "focus_areas": [], "depends_on": [], "priority": "medium"},
        ],
        "synthesis_guidance": "Combine.",
    })
    .to_string()
}

/// The researcher asks for the page once when it is offered tools, then answers from what came
/// back.
fn script(page: String) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan();
    move |r| {
        if r.is_planner() {
            return match r.forced_tool() {
                Some(tool) => Reply::tool_call(&tool, plan.clone()),
                None => Reply::text(plan.clone()),
            };
        }
        if r.is_synthesis() {
            return Reply::text("# Tides\n\nHigh water is at noon [1].");
        }
        match r.worker_title() {
            Some(t) if t == title("a") && !r.tools().is_empty() && r.tool_results().is_empty() => {
                let args = json!({ "url": page }).to_string();
                Reply::calls(&[("fetch_url", args.as_str())])
            }
            Some(t) => Reply::text(result_for(&t)),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

async fn run(server: &MockServer, extra: &[&str]) -> Output {
    let config = format!(
        "provider = \"openai\"\n[openai]\nbase_url = \"{}\"\nstarts_per_second = 0\n\
         [limits]\nretries = 0\n",
        server.openai_base_url()
    );
    let sandbox = Sandbox::new(&config);
    let mut args = vec!["run", "--no-save", "--no-cache", "--format", "json"];
    args.extend_from_slice(extra);
    args.push(QUERY);
    sandbox
        .child(&args)
        .env("OPENAI_API_KEY", "openai-test-key")
        .limit(LIMIT)
        .run()
        .await
}

fn worker_requests(server: &MockServer, id: &str) -> Vec<MockRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.worker_title().as_deref() == Some(title(id).as_str()))
        .collect()
}

#[tokio::test]
async fn a_researcher_fetches_an_allowed_page_and_the_report_names_it_as_a_source() {
    let site = Site::start().await;
    let page = site.url("/page.html");
    let server = MockServer::start(script(page.clone())).await;
    let out = run(&server, &["--allow-host", "127.0.0.1"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    let a = worker_requests(&server, "a");
    assert_eq!(a.len(), 2, "the call, then the answer");
    assert_eq!(a[0].tools(), ["fetch_url"], "the research role fetches");
    let results = a[1].tool_results();
    assert_eq!(results.len(), 1);
    // OpenAI's tool messages carry no error flag: the text says what happened.
    let (_, text, _) = &results[0];
    assert!(
        text.contains("High water is at") && text.contains("noon"),
        "{text}"
    );
    assert!(!text.contains("secretToken"), "scripts are dropped: {text}");
    let b = worker_requests(&server, "b");
    assert!(b[0].tools().is_empty(), "the analysis role has no tools");
    assert_eq!(site.requests(), 1);

    let report: Value = out.json();
    let subtask = |id: &str| {
        report["subtasks"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let sources = subtask("a")["sources"].clone();
    assert_eq!(sources[0]["location"], page.as_str(), "{sources}");
    assert_eq!(sources[0]["kind"], "url");
    assert_eq!(sources[0]["status"], 200);
    assert!(subtask("b").get("sources").is_none());
}

#[tokio::test]
async fn a_loopback_page_is_refused_unless_allowed_and_tools_none_offers_nothing() {
    let site = Site::start().await;
    let server = MockServer::start(script(site.url("/page.html"))).await;
    let out = run(&server, &[]).await;
    assert_eq!(
        out.code,
        Some(0),
        "a refused fetch is the model's to read: {out:?}"
    );
    let a = worker_requests(&server, "a");
    let (_, text, _) = a[1].tool_results().remove(0);
    assert!(
        text.contains("refused") && text.contains("loopback") && text.contains("--allow-host"),
        "{text}"
    );
    assert_eq!(site.requests(), 0, "nothing reached the site");

    let server = MockServer::start(script(site.url("/page.html"))).await;
    let out = run(&server, &["--tools", "none", "--allow-host", "127.0.0.1"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let a = worker_requests(&server, "a");
    assert!(a.iter().all(|r| r.tools().is_empty()));
    assert_eq!(site.requests(), 0);
}
