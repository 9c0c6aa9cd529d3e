//! The built-in demo provider: offline and simulated, so maestro can be seen working with no
//! key and no network. It plans 4–6 plausible subtasks (one depending on others) for any
//! query but a short factual question (one subtask, answered directly), streams worker text at a readable pace, writes a markdown report, and makes some
//! subtasks fail their first attempts so retries and re-runs can be seen. Everything it
//! writes says it is simulated.
//!
//! It recognises its own subtasks by title in later requests (it keeps the plans it made),
//! and the files attached to a run (the `<attached_files>` block the engine puts first), which
//! its plan and answers name so the feature can be seen; it never parses prompts beyond that.
//!
//! When tools are offered, the "Evidence and data" worker plays tool calls: it asks to fetch
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
                let plan = plan_for(rest.trim(), &files);
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
                let fetches = title == FETCHING_TITLE
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
                    text.push_str(
                        "\n\nThe two pages fetched above (simulated) agree on the broad \
                         picture; see the Sources list.\n",
                    );
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
                (synthesis_text(&query, &found, &missing), false)
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

/// The subtask whose worker plays tool calls.
const FETCHING_TITLE: &str = "Evidence and data";
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
}
