//! The built-in demo provider: offline and simulated, so maestro can be seen working with no
//! key and no network. It plans 4–6 plausible subtasks (one depending on others) for any
//! query, streams worker text at a readable pace, writes a markdown report, and makes some
//! subtasks fail their first attempts so retries and re-runs can be seen. Everything it
//! writes says it is simulated.
//!
//! It recognises its own subtasks by title in later requests (it keeps the plans it made),
//! and otherwise answers generically; it never parses prompts beyond that.

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
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::User)
            .map(|m| m.content.as_str())
            .unwrap_or("");
        let (text, fail) = match request.role {
            CallRole::Planner => {
                let query = user.trim();
                let plan = plan_for(query);
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
                let fail = self.should_fail(&title, &query);
                (worker_text(&title, &query), fail)
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
                cached_in: 0,
            }),
            text,
            ..Default::default()
        })
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

/// The plan JSON and its subtask titles.
fn plan_for(query: &str) -> (String, Vec<String>) {
    let t = topic(query);
    let h = hash(&query);
    let pool: [(&str, &str, String, &str, [&str; 2]); 6] = [
        (
            "research",
            "high",
            "Background and key facts".into(),
            "Establish what is known",
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
