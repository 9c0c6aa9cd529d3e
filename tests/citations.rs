//! Citations through the real binary: a `market` run whose analysts fetch pages of a local
//! fixture site with `fetch_url` (mock LLM server, both protocols), cite them by the numbers the
//! tool results gave them, and a synthesis that cites subtasks and sources. Every citation of
//! the report must point at a page the site really served; a citation of a page never fetched
//! or of a number that does not exist is flagged in the markdown, the JSON and the progress.

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Protocol, Reply};
use common::site::Site;
use common::{Output, Sandbox};
use maestro::citations;
use maestro::protocol::{Source, SubtaskId};
use serde_json::{Value, json};

const QUERY: &str = "How is the e-bike market in Lyon doing?";
const LIMIT: Duration = Duration::from_secs(30);

fn news_title() -> &'static str {
    "Recent news on e-bikes in Lyon"
}

fn rivals_title() -> &'static str {
    "Competitors selling e-bikes in Lyon"
}

/// Two market analysts, both of whose roles may fetch.
fn plan() -> String {
    json!({
        "query_analysis": "A market question.",
        "subtasks": [
            {"id": "news", "worker": "news", "title": news_title(),
             "description": "What happened lately.", "focus_areas": [], "depends_on": [],
             "priority": "medium"},
            {"id": "rivals", "worker": "competitor", "title": rivals_title(),
             "description": "Who sells what.", "focus_areas": [], "depends_on": [],
             "priority": "medium"},
        ],
        "synthesis_guidance": "Combine.",
    })
    .to_string()
}

/// `Source [n]: LOCATION` at the start of each tool result: what the worker may cite.
fn numbered(request: &MockRequest) -> Vec<(u32, String)> {
    request
        .tool_results()
        .iter()
        .filter_map(|(_, text, _)| {
            let rest = text.strip_prefix("Source [")?;
            let (n, rest) = rest.split_once("]: ")?;
            let location = rest.lines().next()?.to_owned();
            Some((n.parse().ok()?, location))
        })
        .collect()
}

/// The synthesis prompt's numbered sources (`[n] LOCATION` lines under `# Sources`).
fn listed_sources(request: &MockRequest) -> Vec<(u32, String)> {
    let user = request.user();
    let Some(section) = user.split("# Sources").nth(1) else {
        return Vec::new();
    };
    section
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (n, location) = rest.split_once("] ")?;
            Some((n.parse().ok()?, location.trim().to_owned()))
        })
        .collect()
}

/// What the synthesis writes, given the sources its prompt lists; `extra` is appended (the
/// second test's bad citations).
type Synthesis = fn(&[(u32, String)], &str) -> String;

fn faithful(sources: &[(u32, String)], asked: &str) -> String {
    let numbers: Vec<String> = sources.iter().map(|(n, _)| n.to_string()).collect();
    let urls: Vec<&str> = sources.iter().map(|(_, l)| l.as_str()).collect();
    format!(
        "# E-bikes in Lyon\n\n\
         The market grows on subsidies and a new rival [subtask: news] [{}].\n\n\
         - Competition is led by two shops [subtask: rivals] [{}].\n\
         - The figures come from [the tide page]({asked}) and {}.\n\n\
         ```\n[42] is not a citation in code, nor is http://127.0.0.1:1/code\n```\n",
        numbers.join(", "),
        numbers.last().map(String::as_str).unwrap_or("0"),
        urls.join(" and ")
    )
}

/// The market analysts fetch pages (the news analyst one page, the competitor a plain page
/// and a redirect) and cite them as the tool results numbered them; the synthesis is written
/// by `synthesis`.
fn script(
    site: &Site,
    synthesis: Synthesis,
    extra: String,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan();
    let news_page = site.url("/page.html");
    let rival_pages = [site.url("/plain.txt"), site.url("/hops/1")];
    let asked = site.url("/hops/1");
    move |r| {
        if r.is_planner() {
            return match r.forced_tool() {
                Some(tool) => Reply::tool_call(&tool, plan.clone()),
                None => Reply::text(plan.clone()),
            };
        }
        if r.is_synthesis() {
            return Reply::text(synthesis(&listed_sources(r), &asked) + &extra);
        }
        let Some(title) = r.worker_title() else {
            return Reply::status(400, "mock: unexpected request");
        };
        if !r.tools().is_empty() && r.tool_results().is_empty() {
            let urls: Vec<String> = if title == news_title() {
                vec![news_page.clone()]
            } else {
                rival_pages.to_vec()
            };
            let args: Vec<String> = urls
                .iter()
                .map(|u| json!({ "url": u }).to_string())
                .collect();
            let calls: Vec<(&str, &str)> = args.iter().map(|a| ("fetch_url", a.as_str())).collect();
            return Reply::calls(&calls);
        }
        let cited: Vec<String> = numbered(r).iter().map(|(n, _)| format!("[{n}]")).collect();
        Reply::text(format!(
            "Findings for {title}: prices fell {}.",
            cited.join("")
        ))
    }
}

async fn run(server: &MockServer, protocol: Protocol, format: &str) -> Output {
    let (provider, key) = match protocol {
        Protocol::OpenAi => ("openai", "OPENAI_API_KEY"),
        Protocol::Anthropic => ("anthropic", "ANTHROPIC_API_KEY"),
    };
    let config = format!(
        "provider = \"{provider}\"\n[{provider}]\nbase_url = \"{}\"\nstarts_per_second = 0\n\
         [limits]\nretries = 0\n",
        server.base_url(protocol)
    );
    let sandbox = Sandbox::new(&config);
    sandbox
        .child(&[
            "run",
            "--no-save",
            "--no-cache",
            "--preset",
            "market",
            "--allow-host",
            "127.0.0.1",
            "--format",
            format,
            QUERY,
        ])
        .env(key, "test-key")
        .limit(LIMIT)
        .run()
        .await
}

/// The sources of the JSON report's subtasks, as the engine recorded them.
fn sources_of(report: &Value) -> Vec<Source> {
    report["subtasks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["sources"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| serde_json::from_value(s).ok())
        .collect()
}

fn ids() -> Vec<SubtaskId> {
    vec![SubtaskId::from("news"), SubtaskId::from("rivals")]
}

#[tokio::test]
async fn every_citation_of_a_market_report_points_at_a_page_that_was_fetched() {
    let site = Site::start().await;
    let server = MockServer::start(script(&site, faithful, String::new())).await;
    let out = run(&server, Protocol::OpenAi, "json").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains('⚠'), "{out:?}");
    let report = out.json();
    let synthesis = report["synthesis"].as_str().expect("a report").to_owned();
    assert_eq!(report["unverified_citations"], json!([]), "{synthesis}");

    // The worker read its page's number first and cited it.
    let news: Vec<MockRequest> = server
        .requests()
        .into_iter()
        .filter(|r| r.worker_title().as_deref() == Some(news_title()))
        .collect();
    assert_eq!(news.len(), 2, "the fetch, then the answer");
    assert!(
        news[0]
            .user()
            .contains("`Source [n]: LOCATION`. Put [n] right after each claim"),
        "a worker with tools is told how to cite: {}",
        news[0].user()
    );
    let (_, text, _) = &news[1].tool_results()[0];
    let first_line = text.lines().next().unwrap_or("");
    assert!(
        first_line.starts_with("Source [") && first_line.ends_with(&site.url("/page.html")),
        "{text}"
    );

    // Three pages (one through a redirect), three numbers, each once, from 1.
    let sources = sources_of(&report);
    let mut numbers: Vec<u32> = sources.iter().map(|s| s.number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers, [1, 2, 3], "{sources:?}");
    let fetched = site.fetched();
    for source in &sources {
        assert!(
            fetched.contains(&source.location),
            "{source:?} not in {fetched:?}"
        );
    }
    // The redirect's final URL is the source; the URL asked for was fetched too.
    assert!(sources.iter().any(|s| s.location == site.url("/hops/0")));
    assert!(fetched.contains(&site.url("/hops/1")));

    // The synthesis was told the numbers and the subtask ids, and kept them.
    let synthesis_request = server
        .requests()
        .into_iter()
        .find(MockRequest::is_synthesis)
        .expect("a synthesis call");
    assert_eq!(listed_sources(&synthesis_request).len(), 3);
    assert!(synthesis_request.user().contains("[subtask: rivals]"));

    // Every citation in the report, read with the module, points at a page the site served.
    let paragraphs = citations::paragraphs(&synthesis, &ids());
    let cited: Vec<u32> = paragraphs.iter().flat_map(|p| p.sources.clone()).collect();
    assert!(cited.contains(&1) && cited.contains(&3), "{paragraphs:?}");
    for n in cited {
        let source = sources.iter().find(|s| s.number == n);
        assert!(
            source.is_some_and(|s| fetched.contains(&s.location)),
            "[{n}] points at nothing fetched"
        );
    }
    let cited_subtasks: Vec<&str> = paragraphs
        .iter()
        .flat_map(|p| p.subtasks.iter().map(SubtaskId::as_str))
        .collect();
    assert_eq!(cited_subtasks, ["news", "rivals"], "{synthesis}");
    let mut retrieved = sources.clone();
    // What the report folds in for a redirect: the URL asked for under the same number.
    retrieved.extend(
        sources
            .iter()
            .filter(|s| s.location.ends_with("/hops/0"))
            .map(|s| Source {
                location: site.url("/hops/1"),
                ..s.clone()
            }),
    );
    assert_eq!(citations::unverified(&synthesis, &retrieved, &ids()), []);
    for word in synthesis.split_whitespace() {
        let Some(at) = word.find("http://") else {
            continue;
        };
        let url = word[at..].trim_end_matches(['.', ')']);
        if url.starts_with("http://127.0.0.1:1/") {
            continue; // in the code block: not a citation
        }
        assert!(
            fetched.iter().any(|f| f == url),
            "{url} was not fetched: {fetched:?}"
        );
    }
}

#[tokio::test]
async fn a_citation_of_a_page_never_fetched_or_a_missing_number_is_flagged_everywhere() {
    let site = Site::start().await;
    let never = site.url("/never-fetched");
    let extra = format!("\nSee also {never} for the rest [9].\n");
    let server = MockServer::start(script(&site, faithful, extra)).await;

    let out = run(&server, Protocol::Anthropic, "markdown").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("⚠ 2 citations point at nothing this run retrieved"),
        "{out:?}"
    );
    let flagged = out
        .stdout
        .split("## Unverified citations")
        .nth(1)
        .expect("an unverified citations section");
    let flagged = flagged.split("\n## ").next().unwrap_or("");
    let line_of = |needle: &str| {
        out.stdout
            .lines()
            .position(|l| l.contains(needle) && !l.starts_with("- ⚠"))
            .map(|i| i + 1)
    };
    let at = line_of("never-fetched").expect("the citing line");
    assert!(
        flagged.contains(&format!(
            "- ⚠ line {at}: `{never}` — not retrieved in this run"
        )),
        "{flagged}"
    );
    assert!(
        flagged.contains(&format!("- ⚠ line {at}: `[9]` — no source [9] in this run")),
        "{flagged}"
    );
    assert_eq!(flagged.matches("- ⚠").count(), 2, "{flagged}");
    assert!(!site.fetched().contains(&never));

    let out = run(&server, Protocol::Anthropic, "json").await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    let unverified = report["unverified_citations"].as_array().expect("a list");
    let cited: Vec<&str> = unverified
        .iter()
        .filter_map(|u| u["cited"].as_str())
        .collect();
    assert_eq!(cited, [never.as_str(), "[9]"], "{unverified:?}");
    let synthesis = report["synthesis"].as_str().unwrap_or("");
    let line = unverified[0]["line"].as_u64().unwrap_or(0) as usize;
    assert!(
        synthesis
            .lines()
            .nth(line.saturating_sub(1))
            .is_some_and(|l| l.contains("never-fetched")),
        "line {line} of {synthesis}"
    );
    assert!(out.stderr.contains("⚠ 2 citations"), "{out:?}");
}

#[test]
fn the_demo_cites_the_pages_its_simulated_fetches_got_and_flags_nothing() {
    let sandbox = Sandbox::new("[demo]\ntokens_per_second = 5000\nfailure_rate = 0.0\n");
    let out = sandbox
        .child(&["run", "--no-save", "--format", "json", "electric buses"])
        .run_blocking();
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    let synthesis = report["synthesis"].as_str().unwrap_or("");
    let ids: Vec<SubtaskId> = report["subtasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(SubtaskId::from))
        .collect();
    let paragraphs = citations::paragraphs(synthesis, &ids);
    let sources: Vec<u32> = paragraphs.iter().flat_map(|p| p.sources.clone()).collect();
    let subtasks = paragraphs.iter().flat_map(|p| p.subtasks.clone()).count();
    assert!(sources.contains(&1) && sources.contains(&2), "{synthesis}");
    assert!(subtasks >= ids.len(), "{synthesis}");
    assert_eq!(report["unverified_citations"], json!([]), "{synthesis}");
    // The fetching worker cites what its tool results were numbered.
    let cited = report["subtasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s.get("sources").is_some())
        .filter_map(|s| s["result"].as_str())
        .map(citations::sources_cited)
        .next();
    assert_eq!(cited, Some(vec![1, 2]));
}
