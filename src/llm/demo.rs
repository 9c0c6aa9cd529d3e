//! The built-in demo provider: offline and simulated, so maestro can be seen working with no
//! key and no network. It plans 4–6 plausible subtasks (one depending on others) for any
//! query but a short factual question (one subtask, answered directly), streams worker text at a readable pace, writes a markdown report, and makes some
//! subtasks fail their first attempts so retries and re-runs can be seen. Everything it
//! writes says it is simulated.
//!
//! It plays the team it is given: the planner's prompt lists the roles, so a market team
//! (`news` … `sentiment`) gets a market plan, a code-review team findings with severity, file
//! and line, the general team its four roles, and any other team the research plan (with
//! market titles for a market question). It recognises its own subtasks by title in later
//! requests (it keeps the plans it made), and the files attached to a run (the `<attached_files>`
//! block the engine puts first), which its plan and answers name so the feature can be seen;
//! otherwise it answers generically and never parses prompts beyond that.
//!
//! When tools are offered, the "Evidence and data" worker (and a market plan's "Recent news
//! and events" worker) plays tool calls: it asks to fetch
//! two pages, through the demo tool box ([`toolbox`]), whose `fetch_url` answers with canned
//! text after a pause, so the tool rows and the detail pane can be seen. Both say they are
//! simulated; nothing touches the network.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use crate::llm::{
    CallError, CallFuture, ChatRequest, Completion, DeltaSink, MessageRole, ModelsFuture, Provider,
};
use crate::protocol::{CallRole, Usage};

#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Share of subtasks that fail (0.0–1.0).
    pub failure_rate: f64,
    /// How many calls of such a subtask fail before one succeeds. With the default of 3 and
    /// 2 retries the subtask ends failed, and a re-run (`r`) fixes it.
    pub failures_per_subtask: u32,
    /// Streaming pace.
    pub tokens_per_second: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.2,
            failures_per_subtask: 3,
            tokens_per_second: 60.0,
        }
    }
}

pub const SIMULATED_NOTE: &str = "*Simulated by maestro's demo provider: no model was called.*";

pub struct Demo {
    config: DemoConfig,
    /// Calls seen per subtask title, to fail the first ones of the unlucky subtasks.
    calls: Mutex<HashMap<String, u32>>,
    /// Titles of the subtasks this provider planned, to recognise them later.
    titles: Mutex<Vec<String>>,
}

impl Demo {
    pub fn new(config: DemoConfig) -> Self {
        Self {
            config,
            calls: Mutex::new(HashMap::new()),
            titles: Mutex::new(Vec::new()),
        }
    }

    fn known_titles_in(&self, text: &str) -> Vec<String> {
        let titles = self.titles.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<(usize, String)> = titles
            .iter()
            .filter_map(|t| text.find(t.as_str()).map(|at| (at, t.clone())))
            .collect();
        found.sort();
        found.dedup_by(|a, b| a.1 == b.1);
        found.into_iter().map(|(_, t)| t).collect()
    }

    /// Whether this call should fail, counting the call.
    fn should_fail(&self, key: &str, query: &str) -> bool {
        if self.config.failure_rate <= 0.0 {
            return false;
        }
        let unlucky = unit(hash(&(query, key, "fail"))) < self.config.failure_rate;
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls.entry(format!("{query}\u{0}{key}")).or_insert(0);
        *n += 1;
        unlucky && *n <= self.config.failures_per_subtask
    }

    async fn answer(&self, request: ChatRequest, sink: DeltaSink) -> Result<Completion, CallError> {
        let user = request
            .messages
            .iter()
            .find(|m| m.role == MessageRole::User)
            .map(|m| m.content.as_str())
            .unwrap_or("");
        // Tool results travel in user turns of their own; the prompt is the last real one.
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::User && m.tool_results.is_empty())
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let fetched = request.messages.iter().any(|m| !m.tool_results.is_empty());
        let (text, fail) = match request.role {
            CallRole::Planner => {
                let (files, rest) = attached_in(user);
                let query = rest.trim();
                let plan = match Team::of(&request.system) {
                    Team::Research if is_market_query(query) => market_plan(query, false),
                    Team::Research => plan_for(query, &files),
                    Team::Market => market_plan(query, true),
                    Team::CodeReview => code_review_plan(query),
                    Team::General => general_plan(query),
                };
                {
                    let mut titles = self.titles.lock().unwrap_or_else(|p| p.into_inner());
                    for t in &plan.1 {
                        if !titles.contains(t) {
                            titles.push(t.clone());
                        }
                    }
                }
                // Thinking time before the first token, as a real planner has.
                tokio::time::sleep(self.pace_f(40.0)).await;
                (plan.0, false)
            }
            CallRole::Worker => {
                let title = self
                    .known_titles_in(section(last_user, "# Your subtask", "\n#"))
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| first_line(last_user));
                let query = query_in(last_user);
                let fetches = FETCHING_TITLES.contains(&title.as_str())
                    && !fetched
                    && request.tools.iter().any(|t| t.name == DEMO_TOOL);
                if fetches {
                    return Ok(self.ask_for_pages(&query, &sink).await);
                }
                let fail = !fetched && self.should_fail(&title, &query);
                let mut text = worker_text(&title, &query);
                // A re-run after the validator's FAIL fixes what it named.
                if last_user.contains(REVISION_MARK) {
                    text.push_str(SOURCE_LINE);
                }
                let (files, _) = attached_in(user);
                text.push_str(&files_note(&files));
                if fetched {
                    text.push_str(&format!(
                        "\n\nThe two pages fetched above (simulated) agree on the broad \
                         picture{}.\n",
                        citation(&fetched_numbers(&request))
                    ));
                }
                (text, fail)
            }
            CallRole::Validator => {
                let title = self
                    .known_titles_in(section(last_user, "# The subtask under review", "\n#"))
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| first_line(last_user));
                let query = query_in(last_user);
                tokio::time::sleep(self.pace_f(20.0)).await;
                (self.verdict(&title, &query), false)
            }
            CallRole::Synthesizer => {
                let query = query_in(last_user);
                let found = self.known_titles_in(section(last_user, "# Findings", "\n# "));
                let missing = self.known_titles_in(section(last_user, "# Missing", "\n# "));
                let all = || found.iter().chain(&missing);
                let text = if all().any(|t| MARKET.iter().any(|m| m.title == t)) {
                    market_report(&query, &found, &missing)
                } else if all().any(|t| REVIEW.iter().any(|m| m.title == t)) {
                    review_report(&query, &found, &missing)
                } else {
                    synthesis_text(&query, &found, &missing)
                };
                let text = with_citations(&text, &findings_in(last_user));
                (text, false)
            }
        };
        // The plan is machine output nobody reads as it streams: send it ten times faster.
        let speedup = if request.role == CallRole::Planner {
            10.0
        } else {
            1.0
        };
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        let cut = if fail { words.len() / 3 } else { words.len() };
        for chunk in words[..cut].chunks(3) {
            let piece = chunk.concat();
            // About four characters a token, like the estimate everywhere else.
            let tokens = piece.len() as f64 / 4.0 / speedup;
            tokio::time::sleep(self.pace_f(tokens)).await;
            sink.send(&piece);
        }
        if fail {
            return Err(CallError::from_status(
                503,
                "simulated upstream error (demo provider)".into(),
                None,
            ));
        }
        let prompt_chars = request.system.len()
            + request
                .messages
                .iter()
                .map(|m| m.content.len())
                .sum::<usize>();
        Ok(Completion {
            usage: Some(Usage {
                tokens_in: prompt_chars.div_ceil(4) as u64,
                tokens_out: text.len().div_ceil(4) as u64,
                estimated: false,
                cached_in: 0,
            }),
            text,
            ..Default::default()
        })
    }

    /// The validator's verdict: the first check of `Evidence and data` fails (its figure has
    /// no source), so a FAIL and the fixed re-run can be seen; everything else passes.
    fn verdict(&self, title: &str, query: &str) -> String {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let n = calls
            .entry(format!("{query}\u{0}{title}\u{0}validator"))
            .or_insert(0);
        *n += 1;
        if title == REJECTED_TITLE && *n == 1 {
            "FAIL: the main figure has no source; say where it comes from. [simulated]".to_owned()
        } else {
            "PASS: it answers the subtask and covers its focus areas. [simulated]".to_owned()
        }
    }

    /// The first answer of the fetching worker: a line of text and two `fetch_url` calls.
    async fn ask_for_pages(&self, query: &str, sink: &DeltaSink) -> Completion {
        let text = "Looking for sources first (simulated tool calls).\n";
        tokio::time::sleep(self.pace_f(8.0)).await;
        sink.send(text);
        let slug = topic(query)
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-");
        let calls = ["overview", "figures"]
            .iter()
            .enumerate()
            .map(|(i, page)| {
                crate::llm::tools::ToolCall::from_text(
                    format!("demo_call_{}", i + 1),
                    DEMO_TOOL.to_owned(),
                    &serde_json::json!({ "url": format!("https://example.org/demo/{slug}/{page}") })
                        .to_string(),
                )
            })
            .collect();
        Completion {
            text: text.to_owned(),
            usage: Some(Usage {
                tokens_in: 200,
                tokens_out: 40,
                estimated: false,
                cached_in: 0,
            }),
            tool_calls: calls,
            ..Default::default()
        }
    }

    /// Time for `tokens` tokens at the configured pace.
    fn pace_f(&self, tokens: f64) -> Duration {
        let tps = self.config.tokens_per_second.max(0.001);
        Duration::from_secs_f64((tokens / tps).clamp(0.0, 60.0))
    }
}

impl Provider for Demo {
    fn name(&self) -> &str {
        "demo"
    }
    fn complete(&self, request: ChatRequest, sink: DeltaSink) -> CallFuture<'_> {
        Box::pin(self.answer(request, sink))
    }
    fn list_models(&self) -> ModelsFuture<'_> {
        Box::pin(std::future::ready(Ok(DEMO_MODELS
            .iter()
            .map(|m| (*m).to_owned())
            .collect())))
    }
}

/// The subtasks whose workers play tool calls: one in the general plan, one in the market
/// plan, so a newcomer sees tools whichever question they ask first.
const FETCHING_TITLES: [&str; 2] = ["Evidence and data", "Recent news and events"];
/// The demo's one tool.
const DEMO_TOOL: &str = "fetch_url";
/// How long a simulated fetch takes: long enough to see the row.
const DEMO_FETCH: Duration = Duration::from_millis(1200);

/// The demo's tool box: a `fetch_url` that returns canned text after a pause, without any
/// network, and says so.
pub fn toolbox() -> crate::llm::tools::ToolSet {
    use crate::llm::tools::{ToolOutcome, ToolSet, ToolSpec};
    let mut set = ToolSet::new();
    set.register(
        ToolSpec {
            name: DEMO_TOOL.to_owned(),
            description: "Fetch a web page (demo: simulated, returns canned text, no network)."
                .to_owned(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": { "url": { "type": "string", "description": "The page's URL" } },
                "required": ["url"],
            }),
        },
        "fetch",
        std::sync::Arc::new(|args, cancel| {
            Box::pin(async move {
                let url = args
                    .get("url")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                tokio::select! {
                    _ = tokio::time::sleep(DEMO_FETCH) => {}
                    _ = cancel.cancelled() => return ToolOutcome::error("cancelled"),
                }
                let content = format!(
                    "[Simulated page from maestro's demo tool: nothing was fetched.]\n\
                     {url}\n\nA canned page of plausible figures and a short summary, so \
                     the worker has something to cite."
                );
                let source = crate::protocol::Source {
                    number: 0,
                    kind: crate::protocol::SourceKind::Url,
                    location: url,
                    bytes: content.len() as u64,
                    status: Some(200),
                    retrieved_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as u64)
                        .unwrap_or(0),
                };
                ToolOutcome::ok(content).with_source(source)
            })
        }),
    );
    set
}

/// The models the demo provider pretends to offer, sorted (`demo` is the default). It
/// answers the same whichever is asked for.
pub const DEMO_MODELS: &[&str] = &["demo", "demo-large", "demo-small"];

fn hash<T: Hash>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("the subtask")
        .trim_start_matches('#')
        .trim()
        .chars()
        .take(60)
        .collect()
}

/// The query as the worker and synthesis prompts carry it (between `<query>` tags), else
/// the first line.
fn query_in(message: &str) -> String {
    message
        .split_once("<query>")
        .and_then(|(_, rest)| rest.split_once("</query>"))
        .map(|(q, _)| q.trim().to_owned())
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| first_line(message))
}

/// The part of a message from the line starting with `heading` up to the next line starting
/// with `until` (or the end).
fn section<'a>(message: &'a str, heading: &str, until: &str) -> &'a str {
    let Some(start) = message.find(heading) else {
        return "";
    };
    let rest = &message[start..];
    match rest[heading.len()..].find(until) {
        Some(end) => &rest[..heading.len() + end],
        None => rest,
    }
}

/// An attached file as the demo sees it: its path and its first line of text.
struct Attached {
    path: String,
    first_line: String,
}

/// The files of the `<attached_files>` block that opens a message, and the message after it.
fn attached_in(message: &str) -> (Vec<Attached>, &str) {
    let Some((_, block)) = message.split_once("<attached_files>") else {
        return (Vec::new(), message);
    };
    let Some((block, rest)) = block.split_once("</attached_files>") else {
        return (Vec::new(), message);
    };
    let mut files = Vec::new();
    for piece in block.split("<file path=\"").skip(1) {
        let Some((path, text)) = piece.split_once("\">") else {
            continue;
        };
        let text = text.split("</file>").next().unwrap_or("");
        files.push(Attached {
            path: path
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
            first_line: first_line(text),
        });
    }
    (files, rest)
}

/// What a worker says about the attached files, so a newcomer sees them reach the workers.
fn files_note(files: &[Attached]) -> String {
    if files.is_empty() {
        return String::new();
    }
    let mut note = String::from("\n**From the attached files:**\n\n");
    for f in files.iter().take(3) {
        note.push_str(&format!(
            "- `{}` opens with “{}”.\n",
            f.path.replace('`', "'"),
            f.first_line
        ));
    }
    if files.len() > 3 {
        note.push_str(&format!("- and {} more files.\n", files.len() - 3));
    }
    note
}

/// A short form of the query for titles and prose.
fn topic(query: &str) -> String {
    let words: Vec<&str> = query
        .trim_end_matches(['?', '.', '!'])
        .split_whitespace()
        .collect();
    let short = if words.len() > 8 {
        format!("{}…", words[..8].join(" "))
    } else {
        words.join(" ")
    };
    if short.is_empty() {
        "the question".into()
    } else {
        short
    }
}

/// The subtask whose first answer the demo validator rejects.
const REJECTED_TITLE: &str = "Evidence and data";
/// How a worker's prompt says its previous answer was rejected (`prompt::worker_revision`).
const REVISION_MARK: &str = "A reviewer rejected your previous answer";
/// What a re-run worker adds to fix the rejected answer.
const SOURCE_LINE: &str =
    "\n*Source of the main figure: a (simulated) survey of published city studies.*\n";

/// The one subtask's title of a straightforward query's plan.
const DIRECT_TITLE: &str = "Direct answer";

/// A short factual question (`What is the capital of France?`): the demo planner calls it
/// straightforward and plans one subtask, which answers it directly.
fn is_straightforward(query: &str) -> bool {
    let q = query.trim().to_lowercase();
    let short = q.split_whitespace().count() <= 8;
    let factual = [
        "what is ",
        "what's ",
        "who ",
        "when ",
        "where ",
        "which ",
        "how many ",
        "how much ",
        "define ",
    ]
    .iter()
    .any(|start| q.starts_with(start));
    short && factual
}

/// The plan JSON and its subtask titles. With attached files, the first subtask reads them
/// and its title names them.
fn plan_for(query: &str, files: &[Attached]) -> (String, Vec<String>) {
    let t = topic(query);
    if is_straightforward(query) {
        let plan = serde_json::json!({
            "complexity": "straightforward",
            "query_analysis": format!("[simulated] A short factual question about {t}: one answer, no research plan."),
            "subtasks": [{
                "id": "task_1",
                "worker": "research",
                "title": DIRECT_TITLE,
                "description": format!("Answer the question about {} directly and briefly. [simulated]", t.trim_end_matches('…')),
                "focus_areas": ["the answer", "one line of context"],
                "depends_on": [],
                "priority": "high",
            }],
            "synthesis_guidance": "",
        });
        return (
            serde_json::to_string_pretty(&plan).unwrap_or_default(),
            vec![DIRECT_TITLE.to_owned()],
        );
    }
    let h = hash(&query);
    let first = match files {
        [] => (
            "Background and key facts".to_owned(),
            "Establish what is known",
        ),
        [one] => (
            format!("What {} says", one.path),
            "Read the attached file and establish what it says",
        ),
        [one, rest @ ..] => (
            format!(
                "What {} and {} more file{} say",
                one.path,
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
            "Read the attached files and establish what they say",
        ),
    };
    let pool: [(&str, &str, String, &str, [&str; 2]); 6] = [
        (
            "research",
            "high",
            first.0,
            first.1,
            ["definitions", "current figures"],
        ),
        (
            "research",
            "high",
            "Evidence and data".into(),
            "Gather measured evidence",
            ["studies", "data quality"],
        ),
        (
            "analysis",
            "medium",
            "Causes and mechanisms".into(),
            "Explain what drives the outcomes",
            ["drivers", "feedback loops"],
        ),
        (
            "compare",
            "medium",
            "Alternatives and trade-offs".into(),
            "Compare the main options",
            ["costs", "benefits"],
        ),
        (
            "critique",
            "low",
            "Risks and open questions".into(),
            "Find weak points and unknowns",
            ["uncertainty", "counter-arguments"],
        ),
        (
            "analysis",
            "medium",
            "Outlook and recommendations".into(),
            "Draw conclusions from the findings",
            ["scenarios", "next steps"],
        ),
    ];
    let n = 4 + (h % 3) as usize;
    // Always keep the first two (facts) and the last (outlook, which depends on them).
    let mut picked: Vec<usize> = vec![0, 1];
    let middle = [2usize, 3, 4];
    let skip = (h >> 8) as usize % 3;
    picked.extend(
        middle
            .iter()
            .copied()
            .filter(|&i| n == 6 || i != middle[skip])
            .take(n - 3),
    );
    picked.push(5);
    let subtasks: Vec<serde_json::Value> = picked
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            let (worker, priority, title, what, focus) = &pool[i];
            let depends: Vec<String> = if i == 5 {
                vec!["task_1".into(), "task_2".into()]
            } else {
                vec![]
            };
            serde_json::json!({
                "id": format!("task_{}", k + 1),
                "worker": worker,
                "title": title,
                "description": format!("{what} about {}. [simulated]", t.trim_end_matches('…')),
                "focus_areas": focus,
                "depends_on": depends,
                "priority": priority,
            })
        })
        .collect();
    let titles = picked.iter().map(|&i| pool[i].2.clone()).collect();
    let plan = serde_json::json!({
        "complexity": "breadth_first",
        "query_analysis": format!("[simulated] The question about {t} splits into facts, mechanisms, options and risks."),
        "subtasks": subtasks,
        "synthesis_guidance": "Lead with the answer, then the evidence; name what is missing. [simulated]",
    });
    (
        serde_json::to_string_pretty(&plan).unwrap_or_default(),
        titles,
    )
}

fn worker_text(title: &str, query: &str) -> String {
    if let Some(m) = MARKET.iter().find(|m| m.title == title) {
        return market_text(m, query);
    }
    if let Some(r) = REVIEW.iter().find(|r| r.title == title) {
        return review_text(r, query);
    }
    let t = topic(query);
    if title == DIRECT_TITLE {
        return format!(
            "# {t}\n\n{SIMULATED_NOTE}\n\n\
             **The short answer:** a real model would answer this question in a sentence or \
             two here, since it needs no research plan and no synthesis.\n\n\
             - One line of context a reader would want next to the answer.\n"
        );
    }
    let h = hash(&(title, query));
    let pct = 12 + h % 30;
    let years = 3 + (h >> 5) % 7;
    format!(
        "{SIMULATED_NOTE}\n\n\
         ### {title}\n\n\
         For **{t}**, the picture that emerges is mixed but readable. The strongest signal is \
         that outcomes depend more on local conditions than on any single factor, and that \
         effects build up over about {years} years rather than at once.\n\n\
         - The main effect is on the order of **{pct}%**, with wide uncertainty.\n\
         - Two drivers dominate: cost over time and how quickly infrastructure follows.\n\
         - Evidence is strongest for short-term effects and weakest for long-term ones.\n\n\
         *Confidence: moderate.* A real model would cite its sources here; this text only \
         shows how a worker's answer streams in.\n"
    )
}

fn synthesis_text(query: &str, titles: &[String], missing: &[String]) -> String {
    let t = topic(query);
    let mut out = format!(
        "# {t}\n\n{SIMULATED_NOTE}\n\n\
         ## Summary\n\n\
         The subtasks agree on the direction and differ on the size of the effect. The answer \
         below weighs the evidence they gathered and says where it is thin.\n\n\
         ## Key findings\n\n"
    );
    if titles.is_empty() {
        out.push_str("1. No findings were recognised in the request.\n");
    }
    for (i, title) in titles.iter().enumerate() {
        out.push_str(&format!(
            "{}. **{title}**: the effect is real but depends on local conditions.\n",
            i + 1
        ));
    }
    out.push_str(
        "\n## Comparison\n\n\
         | factor | short term | long term |\n\
         |---|---|---|\n\
         | cost | higher | lower |\n\
         | risk | moderate | uncertain |\n\n\
         > Conclusions are only as good as the findings above; re-run a subtask to refresh them.\n\n\
         ## Method\n\n\
         ```text\n\
         plan → workers in parallel → synthesis\n\
         ```\n",
    );
    if !missing.is_empty() {
        out.push_str("\n## What this report cannot cover\n\n");
        for title in missing {
            out.push_str(&format!(
                "- **{title}** produced no result; re-run it to fill the gap.\n"
            ));
        }
    }
    out
}

// ---- citations --------------------------------------------------------------------------------

/// The source numbers the tool results of this conversation start with (`Source [n]: …`, as
/// the executor numbers every source of a run), in order, each once.
fn fetched_numbers(request: &ChatRequest) -> Vec<u32> {
    let mut out = Vec::new();
    for result in request.messages.iter().flat_map(|m| &m.tool_results) {
        let number = result
            .content
            .strip_prefix("Source [")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(n, _)| n.parse::<u32>().ok());
        if let Some(n) = number
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// ` [1, 2]`, or nothing for no numbers.
fn citation(numbers: &[u32]) -> String {
    if numbers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = numbers.iter().map(u32::to_string).collect();
    format!(" [{}]", list.join(", "))
}

/// One finding of a synthesis prompt: the id it is cited by, its title, and the source
/// numbers its text cites.
struct CitedFinding {
    id: String,
    title: String,
    sources: Vec<u32>,
}

/// The findings of a synthesis prompt, from their headings (`## 1. [subtask: id] Title`) and
/// the `[n]` in their text.
fn findings_in(user: &str) -> Vec<CitedFinding> {
    let mut out: Vec<CitedFinding> = Vec::new();
    for line in section(user, "# Findings", "\n# ").lines() {
        let heading = line
            .strip_prefix("## ")
            .and_then(|rest| rest.split_once(". [subtask: "))
            .and_then(|(_, rest)| rest.split_once("] "));
        if let Some((id, title)) = heading {
            out.push(CitedFinding {
                id: id.to_owned(),
                title: title.trim().to_owned(),
                sources: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            for n in bracketed_numbers(line) {
                if !last.sources.contains(&n) {
                    last.sources.push(n);
                }
            }
        }
    }
    out
}

/// The numbers of `[n]` and `[n, m]` on a line.
fn bracketed_numbers(line: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for piece in line.split('[').skip(1) {
        let Some((inside, _)) = piece.split_once(']') else {
            continue;
        };
        let numbers: Option<Vec<u32>> = inside.split(',').map(|n| n.trim().parse().ok()).collect();
        out.extend(numbers.unwrap_or_default());
    }
    out
}

/// The report with citations, as a model following the synthesis prompt writes them: a line
/// that names a finding's title (or the first line of prose under a heading that does) ends
/// with `[subtask: id]` and the finding's sources; the summary cites every finding.
fn with_citations(report: &str, findings: &[CitedFinding]) -> String {
    if findings.is_empty() {
        return report.to_owned();
    }
    let cite = |found: &[&CitedFinding]| {
        let ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
        let text = match ids.as_slice() {
            [one] => format!(" [subtask: {one}]"),
            several => format!(" [subtasks: {}]", several.join(", ")),
        };
        let mut sources = Vec::new();
        for f in found {
            for n in &f.sources {
                if !sources.contains(n) {
                    sources.push(*n);
                }
            }
        }
        text + &citation(&sources)
    };
    let mut out = String::with_capacity(report.len() + 200);
    let mut pending: Vec<&CitedFinding> = Vec::new();
    let mut in_code = false;
    for line in report.lines() {
        let trimmed = line.trim_start();
        let named: Vec<&CitedFinding> = findings
            .iter()
            .filter(|f| line.contains(f.title.as_str()))
            .collect();
        out.push_str(line);
        let fence = trimmed.starts_with("```");
        in_code ^= fence;
        let prose = !(in_code
            || fence
            || trimmed.is_empty()
            || trimmed.starts_with('|')
            || trimmed.starts_with('>'));
        if trimmed.starts_with('#') && !in_code {
            let summary = trimmed.to_lowercase().contains("summary");
            pending = if summary {
                findings.iter().collect()
            } else {
                named
            };
        } else if prose && !named.is_empty() {
            out.push_str(&cite(&named));
            pending.clear();
        } else if prose && !pending.is_empty() {
            out.push_str(&cite(&pending));
            pending.clear();
        }
        out.push('\n');
    }
    out
}

// ---- teams ------------------------------------------------------------------------------------

/// The kind of team the planner's prompt lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Team {
    Research,
    Market,
    CodeReview,
    General,
}

impl Team {
    /// Recognised by the role names the planner's prompt lists (as `` `name` ``).
    fn of(system: &str) -> Self {
        let has = |names: &[&str]| names.iter().all(|n| system.contains(&format!("`{n}`")));
        if has(&["news", "competitor", "trend", "sentiment"]) {
            Self::Market
        } else if has(&["security", "performance", "correctness", "style"]) {
            Self::CodeReview
        } else if has(&["researcher", "specialist", "writer", "validator"]) {
            Self::General
        } else {
            Self::Research
        }
    }
}

/// A question about a market, a company or an industry.
fn is_market_query(query: &str) -> bool {
    let q = query.to_lowercase();
    [
        "market",
        "competitor",
        "competition",
        "industry",
        "brand",
        "customers",
        "investors",
        "market share",
    ]
    .iter()
    .any(|w| q.contains(w))
}

/// One subtask of a scripted team plan.
struct Part {
    /// The role in the team's own preset.
    role: &'static str,
    /// The research preset's role for the same work (a market question without the market
    /// team).
    research_role: &'static str,
    title: &'static str,
    what: &'static str,
    focus: [&'static str; 2],
    priority: &'static str,
}

const MARKET: [Part; 4] = [
    Part {
        role: "news",
        research_role: "research",
        title: "Recent news and events",
        what: "List the launches, deals, funding and regulation of the last two years",
        focus: ["dated events", "what each changes"],
        priority: "high",
    },
    Part {
        role: "competitor",
        research_role: "compare",
        title: "Competitive landscape",
        what: "Map the main players, their positioning and market shares",
        focus: ["market shares", "strengths and weaknesses"],
        priority: "high",
    },
    Part {
        role: "trend",
        research_role: "analysis",
        title: "Market size and trends",
        what: "Size the market and find the drivers of its growth",
        focus: ["growth forecast", "drivers and brakes"],
        priority: "medium",
    },
    Part {
        role: "sentiment",
        research_role: "research",
        title: "Customer and investor sentiment",
        what: "Assess how customers, investors and the press feel, and why",
        focus: ["reviews and ratings", "investor mood"],
        priority: "medium",
    },
];

const REVIEW: [Part; 4] = [
    Part {
        role: "security",
        research_role: "critique",
        title: "Security review",
        what: "Find injection, authorisation and secret-handling problems",
        focus: ["untrusted input", "secrets"],
        priority: "high",
    },
    Part {
        role: "correctness",
        research_role: "analysis",
        title: "Correctness review",
        what: "Trace the logic for bugs and unhandled cases",
        focus: ["edge cases", "error handling"],
        priority: "high",
    },
    Part {
        role: "performance",
        research_role: "analysis",
        title: "Performance review",
        what: "Find costly work on inputs that grow",
        focus: ["loops and queries", "allocations"],
        priority: "medium",
    },
    Part {
        role: "style",
        research_role: "critique",
        title: "Style and maintainability review",
        what: "Check naming, structure, duplication and tests",
        focus: ["readability", "tests"],
        priority: "low",
    },
];

const GENERAL: [Part; 4] = [
    Part {
        role: "researcher",
        research_role: "research",
        title: "Facts and background",
        what: "Gather the facts and figures the task needs",
        focus: ["key facts", "how sure each is"],
        priority: "high",
    },
    Part {
        role: "specialist",
        research_role: "analysis",
        title: "Expert assessment",
        what: "Work the problem out and recommend what to do",
        focus: ["method", "recommendation"],
        priority: "high",
    },
    Part {
        role: "writer",
        research_role: "writing",
        title: "Clear answer for the reader",
        what: "Turn the findings into a clear answer",
        focus: ["structure", "plain words"],
        priority: "medium",
    },
    Part {
        role: "validator",
        research_role: "critique",
        title: "Check of the answer",
        what: "Check the findings and the draft for errors",
        focus: ["facts", "reasoning"],
        priority: "medium",
    },
];

/// A plan of `parts` (as the team's roles, or the research preset's), with `depends` as
/// `(subtask index, indices it depends on)`.
fn team_plan(
    query: &str,
    parts: &[Part],
    own_roles: bool,
    depends: &[(usize, &[usize])],
    analysis: &str,
    guidance: &str,
) -> (String, Vec<String>) {
    let t = topic(query);
    let subtasks: Vec<serde_json::Value> = parts
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let deps: Vec<String> = depends
                .iter()
                .find(|(i, _)| *i == k)
                .map(|(_, d)| d.iter().map(|j| format!("task_{}", j + 1)).collect())
                .unwrap_or_default();
            serde_json::json!({
                "id": format!("task_{}", k + 1),
                "worker": if own_roles { p.role } else { p.research_role },
                "title": p.title,
                "description": format!("{} for {}. [simulated]", p.what, t.trim_end_matches('…')),
                "focus_areas": p.focus,
                "depends_on": deps,
                "priority": p.priority,
            })
        })
        .collect();
    let plan = serde_json::json!({
        "query_analysis": format!("[simulated] {analysis} {t}."),
        "subtasks": subtasks,
        "synthesis_guidance": format!("{guidance} [simulated]"),
    });
    (
        serde_json::to_string_pretty(&plan).unwrap_or_default(),
        parts.iter().map(|p| p.title.to_owned()).collect(),
    )
}

fn market_plan(query: &str, own_roles: bool) -> (String, Vec<String>) {
    team_plan(
        query,
        &MARKET,
        own_roles,
        // Sentiment is read against the news that moved it.
        &[(3, &[0])],
        "A market-intelligence question: news, competitors, trends and sentiment for",
        "Executive summary first, then findings per dimension, recommendations, risks and \
         action items.",
    )
}

fn code_review_plan(query: &str) -> (String, Vec<String>) {
    team_plan(
        query,
        &REVIEW,
        true,
        &[],
        "A code review from four sides of",
        "Findings by severity, each with file and line and a fix.",
    )
}

fn general_plan(query: &str) -> (String, Vec<String>) {
    team_plan(
        query,
        &GENERAL,
        true,
        &[(2, &[0, 1]), (3, &[2])],
        "Facts, an expert view, a clear answer and a check of it, for",
        "Lead with the direct answer; correct what the check found.",
    )
}

fn market_text(part: &Part, query: &str) -> String {
    let t = topic(query);
    let h = hash(&(part.title, query));
    let share = 18 + h % 15;
    let growth = 6 + (h >> 7) % 12;
    let body = match part.role {
        "news" => format!(
            "- **Q1 last year**: the second-largest player launched a lower-priced line; rivals \
             cut prices within a quarter.\n\
             - **Q3 last year**: a funding round of about 120 M for a fast-growing challenger.\n\
             - **This year**: new rules on labelling and safety; compliance costs rise most for \
             small firms.\n\n\
             Together these point to consolidation in **{t}**: scale matters more each year."
        ),
        "competitor" => format!(
            "| player | share | positioning | strength | weakness |\n\
             |---|---:|---|---|---|\n\
             | Leader A | ~{share}% | premium | brand, dealers | price |\n\
             | Challenger B | ~{}% | value | cost, online sales | service |\n\
             | Niche C | ~5% | specialist | product depth | scale |\n\n\
             The gap: a mid-priced offer with good service is served by nobody well.",
            share / 2 + 4
        ),
        "trend" => format!(
            "- Size: growing about **{growth}% a year**, forecasts differ by ±4 points.\n\
             - Drivers: falling component costs, urban policy, subscription models.\n\
             - Brakes: supply chains, interest rates, second-hand competition.\n\
             - Structural, not a fad: demand held up through the last downturn."
        ),
        _ => "- **Customers**: positive and improving; praise for design, complaints about \
              repairs and waiting times.\n\
              - **Investors**: mixed; growth is valued, margins doubted.\n\
              - **Press**: positive, with loud coverage of recalls that reviews do not echo.\n\n\
              Sentiment moved most after the price cuts in the news."
            .to_owned(),
    };
    format!(
        "{SIMULATED_NOTE}\n\n### {}\n\n{body}\n\n*Confidence: moderate.* A real model \
         would date and source each point; this text only shows how an analyst's answer streams \
         in.\n",
        part.title
    )
}

/// File names the query mentions (`src/db.rs`, `app.py`), else two plausible ones.
fn files_in(query: &str) -> Vec<String> {
    const EXTENSIONS: [&str; 12] = [
        "rs", "py", "js", "ts", "go", "java", "c", "cpp", "h", "rb", "kt", "cs",
    ];
    let mut files: Vec<String> = Vec::new();
    for word in query.split(|c: char| c.is_whitespace() || "`'\"(),:;".contains(c)) {
        let word = word.trim_end_matches('.');
        if let Some((stem, ext)) = word.rsplit_once('.')
            && !stem.is_empty()
            && EXTENSIONS.contains(&ext)
            && !files.iter().any(|f| f == word)
        {
            files.push(word.to_owned());
        }
    }
    if files.is_empty() {
        files = vec!["src/handlers.rs".to_owned(), "src/db.rs".to_owned()];
    }
    files
}

/// The simulated findings of one reviewer: severity, file, line, title, fix.
fn review_findings(
    part: &Part,
    query: &str,
) -> Vec<(&'static str, String, u64, &'static str, &'static str)> {
    let files = files_in(query);
    let file = |i: usize| files[i % files.len()].clone();
    let h = hash(&(part.title, query));
    let line = |k: u64| 12 + (h >> (k * 5)) % 180;
    match part.role {
        "security" => vec![
            (
                "critical",
                file(0),
                line(0),
                "SQL built from request input",
                "use a parameterised query",
            ),
            (
                "medium",
                file(1),
                line(1),
                "secret written to the log",
                "log the key's name, never its value",
            ),
        ],
        "correctness" => vec![
            (
                "high",
                file(1),
                line(2),
                "error from the write ignored",
                "return the error to the caller",
            ),
            (
                "medium",
                file(0),
                line(3),
                "empty list makes the average divide by zero",
                "handle the empty case first",
            ),
        ],
        "performance" => vec![(
            "medium",
            file(1),
            line(4),
            "one query per item inside the loop (N+1)",
            "fetch the items in one query",
        )],
        _ => vec![(
            "low",
            file(0),
            line(5),
            "function does three things and is 90 lines long",
            "split parsing, checking and saving",
        )],
    }
}

fn review_text(part: &Part, query: &str) -> String {
    let mut out = format!("{SIMULATED_NOTE}\n\n### {}\n\n", part.title);
    for (severity, file, line, what, fix) in review_findings(part, query) {
        out.push_str(&format!(
            "- **{severity}** `{file}:{line}`: {what}. Fix: {fix}.\n"
        ));
    }
    out.push_str(
        "\nA real model would quote the code it means; these findings only show how a \
         reviewer's answer streams in.\n",
    );
    out
}

fn market_report(query: &str, found: &[String], missing: &[String]) -> String {
    let t = topic(query);
    let mut out = format!(
        "# {t}\n\n{SIMULATED_NOTE}\n\n\
         ## Executive summary\n\n\
         The market is growing and consolidating: the leaders gain from scale, a challenger \
         competes on price, and the middle of the market is served badly. Sentiment is good \
         among customers and mixed among investors.\n\n\
         ## Findings\n\n"
    );
    for title in found {
        if let Some(part) = MARKET.iter().find(|p| p.title == title) {
            let line = match part.role {
                "news" => "price cuts and new rules favour firms with scale.",
                "competitor" => "two players lead; nobody owns the mid-priced segment.",
                "trend" => "steady growth, driven by costs and policy, slowed by supply.",
                _ => "customers like the products, investors doubt the margins.",
            };
            out.push_str(&format!("### {title}\n\n{line}\n\n"));
        }
    }
    out.push_str(
        "## Strategic recommendations\n\n\
         1. Enter or grow in the mid-priced segment, with service as the difference.\n\
         2. Partner for repairs rather than build a network.\n\n\
         ## Risks\n\n\
         - A price war led by the challenger (likely, moderate impact).\n\
         - Stricter rules raising costs (possible, high impact for small firms).\n\n\
         ## Action items\n\n\
         1. Size the mid-priced segment with a customer survey.\n\
         2. Shortlist three repair partners.\n\
         3. Track competitors' prices monthly.\n",
    );
    cannot_cover(&mut out, missing);
    out
}

fn review_report(query: &str, found: &[String], missing: &[String]) -> String {
    let t = topic(query);
    let mut out = format!(
        "# Code review: {t}\n\n{SIMULATED_NOTE}\n\n\
         ## Summary\n\n\
         **Request changes.** One critical security finding must be fixed first; the rest are \
         ordinary fixes.\n\n\
         ## Findings\n"
    );
    let mut findings: Vec<_> = found
        .iter()
        .filter_map(|t| REVIEW.iter().find(|p| p.title == t))
        .flat_map(|p| {
            review_findings(p, query)
                .into_iter()
                .map(move |f| (p.role, f))
        })
        .collect();
    let rank = |s: &str| match s {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        _ => 3,
    };
    findings.sort_by_key(|(_, f)| rank(f.0));
    let mut heading = "";
    for (area, (severity, file, line, what, fix)) in findings {
        if severity != heading {
            heading = severity;
            let mut name = severity.to_owned();
            name[..1].make_ascii_uppercase();
            out.push_str(&format!("\n### {name}\n\n"));
        }
        out.push_str(&format!(
            "- `{file}:{line}`: {what} ({area}). Fix: {fix}.\n"
        ));
    }
    out.push_str(
        "\n## What is good\n\n\
         Clear module boundaries and consistent naming.\n",
    );
    cannot_cover(&mut out, missing);
    out
}

fn cannot_cover(out: &mut String, missing: &[String]) {
    if !missing.is_empty() {
        out.push_str("\n## What this report cannot cover\n\n");
        for title in missing {
            out.push_str(&format!(
                "- **{title}** produced no result; re-run it to fill the gap.\n"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "# Files the user attached\n\nThe user attached these files.\n\n\
        <attached_files>\n<file path=\"notes.md\">\n# Meeting notes\nPrices rose.\n</file>\n\
        <file path=\"a &quot;b&quot;.txt\">\nsecond\n</file>\n</attached_files>\n\n\
        What do the notes say?";

    #[test]
    fn the_attached_block_is_read_apart_from_the_query() {
        let (files, rest) = attached_in(MESSAGE);
        assert_eq!(rest.trim(), "What do the notes say?");
        let read: Vec<(&str, &str)> = files
            .iter()
            .map(|f| (f.path.as_str(), f.first_line.as_str()))
            .collect();
        assert_eq!(
            read,
            [("notes.md", "Meeting notes"), ("a \"b\".txt", "second")]
        );
        assert!(attached_in("no block here").0.is_empty());
    }

    #[test]
    fn a_plan_with_attached_files_names_them_in_its_first_subtask() {
        let (files, rest) = attached_in(MESSAGE);
        let (plan, titles) = plan_for(rest.trim(), &files);
        assert_eq!(titles[0], "What notes.md and 1 more file say");
        assert!(plan.contains("Read the attached files"));
        let (_, titles) = plan_for("What do the notes say?", &[]);
        assert_eq!(titles[0], "Background and key facts");
    }

    #[test]
    fn a_worker_answer_quotes_how_each_file_opens() {
        let (files, _) = attached_in(MESSAGE);
        let note = files_note(&files);
        assert!(
            note.contains("`notes.md` opens with “Meeting notes”"),
            "{note}"
        );
        assert_eq!(files_note(&[]), "");
    }

    #[test]
    fn the_team_is_read_from_the_roles_the_planner_is_shown() {
        let market = "- `news`: a\n- `competitor`: b\n- `trend`: c\n- `sentiment`: d";
        assert_eq!(Team::of(market), Team::Market);
        assert_eq!(
            Team::of("`security` `performance` `correctness` `style`"),
            Team::CodeReview
        );
        assert_eq!(
            Team::of("`researcher` `specialist` `writer` `validator`"),
            Team::General
        );
        assert_eq!(Team::of("`analysis` `research`"), Team::Research);
    }

    #[test]
    fn a_market_plan_uses_the_team_roles_or_the_research_ones() {
        let (plan, titles) = market_plan("How is the e-bike market doing?", true);
        let value: serde_json::Value = serde_json::from_str(&plan).expect("json");
        let workers: Vec<&str> = value["subtasks"]
            .as_array()
            .expect("subtasks")
            .iter()
            .filter_map(|s| s["worker"].as_str())
            .collect();
        assert_eq!(workers, ["news", "competitor", "trend", "sentiment"]);
        assert_eq!(titles.len(), 4);
        let (plan, _) = market_plan("How is the e-bike market doing?", false);
        assert!(plan.contains("\"compare\"") && !plan.contains("\"sentiment\""));
        assert!(is_market_query("Who are the competitors of X?"));
        assert!(!is_market_query("Why is the sky blue?"));
    }

    #[test]
    fn a_market_plan_and_a_general_plan_each_have_a_worker_that_fetches() {
        for market in [true, false] {
            let (_, titles) = market_plan("How is the e-bike market doing?", market);
            assert!(
                titles.iter().any(|t| FETCHING_TITLES.contains(&t.as_str())),
                "{titles:?}"
            );
        }
        let (_, titles) = plan_for("Why is the sky blue?", &[]);
        assert!(
            titles.iter().any(|t| FETCHING_TITLES.contains(&t.as_str())),
            "{titles:?}"
        );
    }

    #[test]
    fn review_findings_name_severity_file_and_line() {
        let text = review_text(&REVIEW[0], "Review src/auth.rs and db.py please");
        assert!(text.contains("**critical** `src/auth.rs:"), "{text}");
        assert!(text.contains("`db.py:"), "{text}");
        assert!(text.starts_with(SIMULATED_NOTE));
        let report = review_report(
            "Review src/auth.rs",
            &[REVIEW[3].title.to_owned(), REVIEW[0].title.to_owned()],
            &[],
        );
        let critical = report.find("### Critical").expect("critical first");
        let low = report.find("### Low").expect("low last");
        assert!(critical < low, "{report}");
        assert!(report.contains(SIMULATED_NOTE));
    }
}
