//! `maestro export` and `maestro diff` through the real binary: runs made against the mock and
//! saved in a temp database, then exported (markdown sections, JSON fields, `--out`) and
//! compared (the same plan with a subtask that failed then succeeded; two different plans),
//! and unknown ids as usage errors.

mod common;

use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::{Output, Sandbox};
use serde_json::{Value, json};

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const SYNTHESIS: &str = "# EV report\n\nThe first finding.\n\nThe closing line.";
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

impl Sandbox {
    async fn run(&self, args: &[&str]) -> Output {
        self.child(args)
            .db(self.path("runs.db"))
            .env("NO_COLOR", "1")
            .limit(PROCESS_LIMIT)
            .run()
            .await
    }

    /// A saved run of `QUERY`; its id.
    async fn saved_run(&self) -> String {
        let out = self.run(&["run", "-q", "--format", "json", QUERY]).await;
        assert!(matches!(out.code, Some(0 | 3)), "{out:?}");
        out.json()["run_id"].as_str().expect("a run id").to_owned()
    }
}

fn title(id: &str) -> String {
    format!("Subtask {id} title")
}

fn result_for(title: &str) -> String {
    format!("Findings for {title}: alpha beta gamma delta.")
}

/// Subtasks `(id, title, depends_on, priority)`.
fn plan_value(subtasks: &[(&str, &str, &[&str], &str)]) -> Value {
    let subtasks: Vec<Value> = subtasks
        .iter()
        .map(|(id, title, deps, priority)| {
            json!({
                "id": id,
                "worker": if *id == "a" { "analysis" } else { "research" },
                "title": title,
                "description": format!("Find out about {id}."),
                "focus_areas": ["one point"],
                "depends_on": deps,
                "priority": priority,
            })
        })
        .collect();
    json!({
        "query_analysis": "The impacts, city by city.",
        "subtasks": subtasks,
        "synthesis_guidance": "Combine.",
    })
}

fn abc() -> Value {
    plan_value(&[
        ("a", &title("a"), &[], "high"),
        ("b", &title("b"), &[], "medium"),
        ("c", &title("c"), &["a"], "low"),
    ])
}

/// Planner answers `plan`; workers whose title is in `failing` answer 500, others their
/// result; the synthesis answers `synthesis`.
fn script(
    plan: Value,
    failing: &'static [&'static str],
    synthesis: &'static str,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan.to_string();
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone()).usage(100, 50);
        }
        if r.is_synthesis() {
            return Reply::text(synthesis).usage(300, 80);
        }
        match r.worker_title() {
            Some(t) if failing.iter().any(|id| t == title(id)) => {
                Reply::status(500, "the worker's upstream is broken")
            }
            Some(t) => Reply::text(result_for(&t)).usage(20, 10),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

fn openai_config(server: &MockServer) -> String {
    format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 20\nidle_timeout_secs = 20\n",
        server.openai_base_url()
    )
}

fn subtask<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no subtask {id} in {list}"))
}

/// The text between a heading and the next heading of the same level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{text}"));
    let body = &text[start + heading.len() + 2..];
    let level = heading.split(' ').next().unwrap_or("##");
    let end = body.find(&format!("\n{level} ")).unwrap_or(body.len());
    &body[..end]
}

#[tokio::test]
async fn export_writes_every_section_in_markdown_and_the_same_content_in_json() {
    let server = MockServer::start(script(abc(), &["b"], SYNTHESIS)).await;
    let sandbox = Sandbox::new(&openai_config(&server));
    let id = sandbox.saved_run().await;

    let out = sandbox.run(&["export", &id[..id.len() - 4]]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let md = &out.stdout;
    assert!(md.starts_with(&format!("# {QUERY}\n")), "{md}");
    assert!(md.contains(&format!("| run | {id} |")), "{md}");
    assert!(md.contains("| status | partial |"), "{md}");
    assert!(
        md.contains("| subtasks | 2 succeeded, 1 failed, 3 in all |"),
        "{md}"
    );

    let plan = section(md, "## Plan");
    assert!(plan.contains("The impacts, city by city."), "{plan}");
    assert!(
        plan.contains("| 1 | a | Subtask a title | analysis | — | high |"),
        "{plan}"
    );
    assert!(
        plan.contains("| 3 | c | Subtask c title | research | a | low |"),
        "{plan}"
    );
    assert!(plan.contains("Synthesis guidance: Combine."), "{plan}");

    let synthesis = section(md, "## Synthesis");
    assert!(synthesis.contains("The first finding."), "{synthesis}");
    assert!(synthesis.contains("The closing line."), "{synthesis}");

    let table = section(md, "## Timings, tokens and attempts");
    assert!(
        table.contains("| a | Subtask a title | succeeded |"),
        "{table}"
    );
    assert!(
        table.contains("| b | Subtask b title | failed |"),
        "{table}"
    );
    assert!(
        table.contains("| 20 | 10 | 1 |"),
        "a's tokens and attempts: {table}"
    );
    let attempts = section(md, "### Attempts");
    assert!(attempts.contains("| planner | 1 |"), "{attempts}");
    assert!(attempts.contains("| synthesis | 1 |"), "{attempts}");
    let b_attempt = attempts
        .lines()
        .find(|l| l.starts_with("| b |"))
        .unwrap_or_else(|| panic!("no attempt of b: {attempts}"));
    assert!(b_attempt.contains("| failed |"), "{b_attempt}");
    assert!(b_attempt.contains("500"), "the error: {b_attempt}");

    let appendix = section(md, "## Appendix: subtask results");
    for id in ["a", "c"] {
        assert!(
            appendix.contains(&format!("### {id} — {}", title(id))),
            "{appendix}"
        );
        assert!(appendix.contains(&result_for(&title(id))), "{appendix}");
    }
    let b = section(appendix, "### b — Subtask b title");
    assert!(b.contains("_research · failed ·"), "{b}");
    assert!(b.contains("_No result:"), "{b}");
    assert!(b.contains("500"), "{b}");

    // The same content as one JSON object.
    let out = sandbox.run(&["export", &id, "--format", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = out.json();
    assert_eq!(v["run_id"], id.as_str());
    assert_eq!(v["query"], QUERY);
    assert_eq!(v["status"], "partial");
    assert_eq!(v["provider"], "openai");
    assert!(v["parent"].is_null(), "{v}");
    assert_eq!(v["usage"]["tokens_in"], 100 + 20 + 20 + 300);
    assert_eq!(v["plan"]["query_analysis"], "The impacts, city by city.");
    let planned = &v["plan"]["subtasks"];
    assert_eq!(subtask(planned, "a")["worker"], "analysis");
    assert_eq!(subtask(planned, "a")["priority"], "high");
    assert_eq!(subtask(planned, "c")["depends_on"], json!(["a"]));
    assert_eq!(v["synthesis"]["text"], SYNTHESIS);
    assert_eq!(v["synthesis"]["synthesized"], true);
    assert_eq!(v["synthesis"]["versions"], 1);
    let subtasks = &v["subtasks"];
    let a = subtask(subtasks, "a");
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["result"], result_for(&title("a")).as_str());
    assert_eq!(a["tokens_in"], 20);
    assert_eq!(a["tokens_out"], 10);
    assert_eq!(a["attempts"], 1);
    assert!(a["elapsed_ms"].is_u64(), "{a}");
    let b = subtask(subtasks, "b");
    assert_eq!(b["status"], "failed");
    assert!(b["result"].is_null(), "{b}");
    assert!(
        b["error"].as_str().is_some_and(|e| e.contains("500")),
        "{b}"
    );
    let attempts = v["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 5, "planner, three workers, synthesis: {v}");
    let b_attempt = attempts
        .iter()
        .find(|a| a["subtask"] == "b")
        .expect("b's attempt");
    assert_eq!(b_attempt["role"], "worker");
    assert_eq!(b_attempt["outcome"], "failed");
    assert!(
        b_attempt["error"]
            .as_str()
            .is_some_and(|e| e.contains("500"))
    );
    assert_eq!(attempts[0]["role"], "planner");
    server.shutdown().await;
}

#[tokio::test]
async fn export_out_writes_or_replaces_a_file_and_a_missing_folder_is_a_usage_error() {
    let server = MockServer::start(script(abc(), &[], SYNTHESIS)).await;
    let sandbox = Sandbox::new(&openai_config(&server));
    let id = sandbox.saved_run().await;
    let stdout = sandbox.run(&["export", &id]).await;
    assert_eq!(stdout.code, Some(0), "{stdout:?}");

    let file = sandbox.path("report.md");
    std::fs::write(&file, "an older export that is longer than nothing").expect("write");
    let file_arg = file.display().to_string();
    let out = sandbox.run(&["export", &id, "--out", &file_arg]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let written = std::fs::read_to_string(&file).expect("the export");
    assert_eq!(written, stdout.stdout, "the file holds what stdout would");

    let missing = sandbox.path("no-such-folder").join("report.md");
    let missing_arg = missing.display().to_string();
    let out = sandbox.run(&["export", &id, "--out", &missing_arg]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("does not exist"), "{out:?}");
    assert!(!missing.exists());
    assert!(
        !sandbox.path("no-such-folder").exists(),
        "no folder is made"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn diff_of_the_same_plan_shows_the_subtask_that_failed_then_succeeded() {
    let server = MockServer::start(script(abc(), &["b"], SYNTHESIS)).await;
    let sandbox = Sandbox::new(&openai_config(&server));
    let first = sandbox.saved_run().await;
    server.set_script(script(
        abc(),
        &[],
        "# EV report\n\nThe first finding.\n\nB's finding, new.\n\nThe closing line.",
    ));
    let second = sandbox.saved_run().await;

    let out = sandbox.run(&["diff", &first, &second, "--json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = out.json();
    assert_eq!(v["old"]["run_id"], first.as_str());
    assert_eq!(v["old"]["status"], "partial");
    assert_eq!(v["new"]["run_id"], second.as_str());
    assert_eq!(v["new"]["status"], "succeeded");
    assert_eq!(v["plan_changed"], false);
    let pairs = &v["subtasks"];
    assert_eq!(pairs.as_array().map(Vec::len), Some(3));
    let b = subtask(pairs, "b");
    assert_eq!(b["change"], "same");
    assert_eq!(b["old"]["status"], "failed");
    assert_eq!(b["new"]["status"], "succeeded");
    assert_eq!(b["old"]["tokens_in"], 0);
    assert_eq!(b["new"]["tokens_in"], 20);
    assert_eq!(subtask(pairs, "a")["old"]["status"], "succeeded");
    assert_eq!(v["report_changed"], true);
    let report = v["report"].as_array().expect("report lines");
    let added: Vec<&Value> = report.iter().filter(|l| l["tag"] == "added").collect();
    assert_eq!(
        added.len(),
        2,
        "the new paragraph and its blank line: {report:?}"
    );
    assert!(added.iter().any(|l| l["text"] == "B's finding, new."));
    assert!(report.iter().all(|l| l["tag"] != "removed"), "{report:?}");

    // Text, by the short ids: plain when not a terminal (and NO_COLOR is set).
    let short = |side: &str| v[side]["short_id"].as_str().expect("a short id").to_owned();
    let (old_short, new_short) = (short("old"), short("new"));
    assert!(old_short.len() < first.len(), "{old_short}");
    let out = sandbox.run(&["diff", &old_short, &new_short]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = &out.stdout;
    assert!(!text.contains('\x1b'), "no colour: {text}");
    assert!(text.contains("the same 3 subtasks"), "{text}");
    let b_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("b "))
        .unwrap_or_else(|| panic!("no row for b: {text}"));
    assert!(b_row.contains("failed → succeeded"), "{b_row}");
    assert!(b_row.contains("1 → 1"), "attempts: {b_row}");
    assert!(text.contains("\n+B's finding, new.\n"), "{text}");
    assert!(text.contains("\n The first finding.\n"), "context: {text}");
    server.shutdown().await;
}

#[tokio::test]
async fn diff_of_two_plans_lists_subtasks_added_removed_and_changed() {
    let server = MockServer::start(script(abc(), &[], SYNTHESIS)).await;
    let sandbox = Sandbox::new(&openai_config(&server));
    let first = sandbox.saved_run().await;
    // a dropped, b renamed to b2 with the same title (matched by title), c's dependency and
    // priority changed, d new.
    server.set_script(script(
        plan_value(&[
            ("b2", &title("b"), &[], "medium"),
            ("c", &title("c"), &[], "high"),
            ("d", "Subtask d title", &[], "medium"),
        ]),
        &[],
        "# Another report\n\nEntirely different.",
    ));
    let second = sandbox.saved_run().await;

    let out = sandbox.run(&["diff", &first, &second, "--json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = out.json();
    assert_eq!(v["plan_changed"], true);
    let pairs = &v["subtasks"];
    let kinds: Vec<(String, String)> = pairs
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or("").to_owned(),
                p["change"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let kinds: Vec<(&str, &str)> = kinds
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a", "removed"),
            ("b2", "changed"),
            ("c", "changed"),
            ("d", "added"),
        ]
    );
    let b2 = subtask(pairs, "b2");
    assert_eq!(b2["old"]["id"], "b");
    assert_eq!(b2["changes"][0]["field"], "id");
    assert_eq!(b2["changes"][0]["old"], "b");
    assert_eq!(b2["changes"][0]["new"], "b2");
    let c_fields: Vec<&str> = subtask(pairs, "c")["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(c_fields, ["depends_on", "priority"]);
    assert!(subtask(pairs, "a")["new"].is_null());
    assert!(subtask(pairs, "d")["old"].is_null());
    let report = v["report"].as_array().expect("report lines");
    assert!(
        report
            .iter()
            .any(|l| l["tag"] == "removed" && l["text"] == "# EV report")
    );
    assert!(
        report
            .iter()
            .any(|l| l["tag"] == "added" && l["text"] == "Entirely different.")
    );

    let out = sandbox.run(&["diff", &first, &second]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = &out.stdout;
    assert!(text.contains("- a  Subtask a title  (removed)"), "{text}");
    assert!(text.contains("+ d  Subtask d title  (added)"), "{text}");
    assert!(text.contains("~ b2  Subtask b title  (changed)"), "{text}");
    assert!(text.contains("id: b → b2"), "{text}");
    assert!(text.contains("priority: low → high"), "{text}");
    assert!(text.contains("\n-# EV report\n"), "{text}");
    assert!(text.contains("\n+# Another report\n"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_ids_are_usage_errors() {
    let server = MockServer::start(script(abc(), &[], SYNTHESIS)).await;
    let sandbox = Sandbox::new(&openai_config(&server));
    let id = sandbox.saved_run().await;
    for args in [
        vec!["export", "0123abcd"],
        vec!["export", "0123abcd", "--format", "json"],
        vec!["diff", &id, "0123abcd"],
        vec!["diff", "0123abcd", &id, "--json"],
        vec!["diff", "not-an-id", &id],
    ] {
        let out = sandbox.run(&args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("maestro: "), "{args:?}: {out:?}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_follow_up_export_starts_with_its_parent_query_and_report_summary() {
    let server = MockServer::start(script(abc(), &[], SYNTHESIS)).await;
    let sandbox = Sandbox::new(&openai_config(&server));
    let parent = sandbox.saved_run().await;
    let child = sandbox.saved_run().await;
    // Follow-ups are made by `run --follow-up`; the link is all export reads.
    let conn = rusqlite::Connection::open(sandbox.path("runs.db")).expect("open the database");
    let linked = conn
        .execute(
            "UPDATE runs SET parent_id = ?1 WHERE id = ?2",
            [&parent, &child],
        )
        .expect("link the runs");
    assert_eq!(linked, 1);
    drop(conn);

    let out = sandbox.run(&["export", &child]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let heading = out
        .stdout
        .lines()
        .find(|l| l.starts_with("## Follow-up of run "))
        .unwrap_or_else(|| panic!("no follow-up heading: {out:?}"));
    let short = heading.trim_start_matches("## Follow-up of run ");
    assert!(
        short.len() >= 8 && parent.replace('-', "").starts_with(short),
        "{heading}"
    );
    let follow = section(&out.stdout, heading);
    assert!(follow.contains(&format!("> {QUERY}")), "{follow}");
    assert!(
        follow.contains("The first finding."),
        "the summary: {follow}"
    );
    assert!(
        !follow.contains("The closing line."),
        "only the first paragraph: {follow}"
    );
    let plan_at = out.stdout.find("## Plan").expect("a plan");
    assert!(
        out.stdout
            .find("## Follow-up")
            .is_some_and(|at| at < plan_at)
    );

    let out = sandbox.run(&["export", &child, "--format", "json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v = out.json();
    assert_eq!(v["parent"]["run_id"], parent.as_str());
    assert_eq!(v["parent"]["query"], QUERY);
    assert_eq!(v["parent"]["summary"], "The first finding.");

    // A run without a parent has no such section.
    let out = sandbox.run(&["export", &parent]).await;
    assert!(!out.stdout.contains("## Follow-up"), "{out:?}");
    server.shutdown().await;
}
