//! `maestro run --plan FILE` through the real binary: a plan file is read exactly as a planner's
//! answer is (same lenient defaults, same extraction from fences and prose), checked by the run
//! as any plan, and refused as a usage error when it holds no plan. The offline demo provider
//! answers, so no network is involved; each child gets a clean environment in a temp dir.

mod common;

use std::path::PathBuf;

use common::{Output, Sandbox};
use serde_json::Value;

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const FAST_DEMO: &str = "[demo]\ntokens_per_second = 5000\nfailure_rate = 0.0\n";

impl Sandbox {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        self.child(args).scrub("NO_COLOR").lossy().run_blocking()
    }

    /// `maestro run --plan FILE --format json --events events.jsonl QUERY`.
    fn run_plan(&self, plan: &str) -> Output {
        let file = self.write("plan.json", plan);
        let events = self.dir.path().join("events.jsonl");
        self.run(&[
            "run",
            "--plan",
            file.to_str().expect("a UTF-8 path"),
            "--format",
            "json",
            "--events",
            events.to_str().expect("a UTF-8 path"),
            QUERY,
        ])
    }

    fn event_types(&self) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.dir.path().join("events.jsonl")).expect("the events file");
        text.lines()
            .map(|line| {
                let event: Value = serde_json::from_str(line).expect("an event per line");
                event["type"].as_str().unwrap_or("?").to_owned()
            })
            .collect()
    }
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value["subtasks"]
        .as_array()
        .expect("a subtasks list")
        .iter()
        .map(|s| match &s[field] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn a_plan_file_gets_the_defaults_a_planners_answer_gets() {
    // No `worker`, no `priority`, no `focus_areas`, a numeric id, a missing id, a single
    // dependency given as a string, and no description: all fine in a planner's answer.
    let plan = r#"{
        "subtasks": [
            {"id": 1, "title": "Emissions", "description": "Measure them."},
            {"title": "Costs", "depends_on": "1"}
        ]
    }"#;
    let sandbox = Sandbox::new(FAST_DEMO);
    let out = sandbox.run_plan(plan);
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(strings(&report, "id"), ["1", "task_2"]);
    assert_eq!(strings(&report, "worker"), ["analysis", "analysis"]);
    assert_eq!(strings(&report, "status"), ["succeeded", "succeeded"]);
    assert_eq!(report["plan"]["subtasks"][1]["depends_on"][0], "1");
    assert_eq!(report["plan"]["subtasks"][1]["description"], "Costs");
    assert_eq!(report["plan"]["subtasks"][0]["priority"], "medium");
    let types = sandbox.event_types();
    assert!(
        !types.iter().any(|t| t == "planning_started"),
        "the planner was asked: {types:?}"
    );
    assert!(
        report["notices"].as_array().is_some_and(Vec::is_empty),
        "a missing role is a default, not a repair: {report}"
    );
}

#[test]
fn a_plan_file_may_hold_a_planners_answer_with_prose_and_a_fence() {
    let answer = "Here is the plan:\n\n```json\n{\"subtasks\": [{\"id\": \"a\", \"worker\": \
                  \"Research\", \"title\": \"A\", \"priority\": \"HIGH\"},]}\n```\n\nGood luck!";
    let sandbox = Sandbox::new(FAST_DEMO);
    let out = sandbox.run_plan(answer);
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(strings(&report, "worker"), ["research"]);
    assert_eq!(report["plan"]["subtasks"][0]["priority"], "high");
}

#[test]
fn replaced_values_are_reported_and_the_run_goes_on() {
    let plan = r#"{"subtasks": [
        {"id": "a", "title": "A", "priority": "urgent"},
        {"id": "b", "title": "B", "worker": "poet"}
    ]}"#;
    let sandbox = Sandbox::new(FAST_DEMO);
    let out = sandbox.run_plan(plan);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("maestro: plan file: subtask `a`: unknown priority `urgent`; using medium"),
        "{out:?}"
    );
    // An unknown role is the run's repair, reported as a notice like any plan's.
    let report = out.json();
    assert_eq!(strings(&report, "worker"), ["analysis", "analysis"]);
    assert_eq!(
        report["notices"],
        serde_json::json!(["subtask `b`: unknown worker role `poet`; using `analysis`"])
    );
}

#[test]
fn the_plan_that_maestro_plan_prints_runs_as_a_plan_file() {
    let sandbox = Sandbox::new(FAST_DEMO);
    let planned = sandbox.run(&["plan", QUERY]);
    assert_eq!(planned.code, Some(0), "{planned:?}");
    let out = sandbox.run_plan(&planned.stdout);
    assert_eq!(out.code, Some(0), "{out:?}");
    let plan: Value = serde_json::from_str(&planned.stdout).expect("plan JSON");
    assert_eq!(out.json()["plan"], plan);
}

#[test]
fn a_file_without_a_plan_is_a_usage_error_that_says_why() {
    let sandbox = Sandbox::new(FAST_DEMO);
    for (text, why) in [
        (
            r#"{"not": "a plan"}"#,
            "has no `subtasks` list (found only `not`)",
        ),
        (
            r#"{"subtasks": [{"id": "a"}]}"#,
            "`subtasks[0]` has neither a title nor a description",
        ),
        ("just some words", "no JSON object found"),
    ] {
        let out = sandbox.run_plan(text);
        assert_eq!(out.code, Some(2), "{text}: {out:?}");
        assert!(
            out.stderr.contains("plan.json is not a valid plan"),
            "{out:?}"
        );
        assert!(out.stderr.contains(why), "{text}: {out:?}");
    }
}

#[test]
fn a_plan_file_with_a_cycle_is_refused_before_anything_runs() {
    let plan = r#"{"subtasks": [
        {"id": "a", "title": "A", "depends_on": ["b"]},
        {"id": "b", "title": "B", "depends_on": ["a"]}
    ]}"#;
    let out = Sandbox::new(FAST_DEMO).run_plan(plan);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("plan.json is not a valid plan") && out.stderr.contains("cycle"),
        "{out:?}"
    );
}
