//! `maestro run --review` through the real binary and the in-process mock: without a terminal
//! it is a usage error that says how to review a plan in a file; on a terminal (a tmux pane)
//! the run pauses after planning (no worker request reaches the mock), the plan is edited in
//! `$EDITOR` (a script that writes prepared plans: a cycle, a deleted dependency, then a fixed
//! plan with an added subtask on a model of its own), every problem is shown, and the approved
//! plan runs with that model; or the review is cancelled and nothing runs.
//!
//! Needs `tmux` for the terminal tests, as the dashboard's end-to-end tests do.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Sandbox;
use common::mock::{MockServer, Reply};
use common::tmux::{Tmux, quote};
use serde_json::json;

const QUERY: &str = "How do cities adapt to heat waves?";
const EXITED: &str = "EXITED:";

fn plan_json() -> String {
    json!({
        "query_analysis": "Heat.",
        "subtasks": [
            {"id": "a", "worker": "research", "title": "Alpha cooling", "description": "Cooling."},
            {"id": "b", "worker": "research", "title": "Beta shade", "description": "Shade.",
             "depends_on": ["a"]},
        ],
        "synthesis_guidance": "Combine.",
    })
    .to_string()
}

/// Planner: the plan; workers and synthesis: short texts.
async fn mock() -> MockServer {
    let plan = plan_json();
    MockServer::start(move |r| {
        if r.is_planner() {
            Reply::text(plan.clone())
        } else if r.is_synthesis() {
            Reply::text("# Heat report\n\nShade helps.\n")
        } else {
            Reply::text(format!(
                "Findings of {}.",
                r.worker_title().unwrap_or_default()
            ))
        }
    })
    .await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

// ---- without a terminal ---------------------------------------------------------------------

#[test]
fn review_without_a_terminal_is_a_usage_error_that_shows_the_file_workflow() {
    let rt = runtime();
    let server = rt.block_on(mock());
    let sandbox = Sandbox::new("");
    let query = "Heat in cities: what's cheap?";
    let out = sandbox
        .child(&[
            "run",
            "--review",
            "--provider",
            "openai",
            "--base-url",
            &server.openai_base_url(),
            "--model",
            "test",
            query,
        ])
        .run_blocking();
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            r#"maestro plan 'Heat in cities: what'\''s cheap?' > plan.json; $EDITOR plan.json; maestro run --plan plan.json"#
        ),
        "{}",
        out.stderr
    );
    assert_eq!(server.request_count(), 0, "nothing was asked");
}

#[test]
fn a_plan_files_subtask_model_is_the_one_its_worker_calls_use() {
    // `--plan FILE` honours a subtask's `model`: the mock sees it in that subtask's request.
    let rt = runtime();
    let server = rt.block_on(mock());
    let sandbox = Sandbox::new("");
    let file = sandbox.path("plan.json");
    let plan = json!({
        "subtasks": [
            {"id": "a", "title": "Alpha cooling", "description": "Cooling.", "model": "special-model"},
            {"id": "b", "title": "Beta shade", "description": "Shade."},
        ],
    });
    std::fs::write(&file, plan.to_string()).expect("write the plan");
    let out = sandbox
        .child(&[
            "run",
            "--plan",
            file.to_str().expect("a UTF-8 path"),
            "--provider",
            "openai",
            "--base-url",
            &server.openai_base_url(),
            "--model",
            "test",
            "--format",
            "json",
            QUERY,
        ])
        .run_blocking();
    assert_eq!(out.code, Some(0), "{out:?}");
    let models: Vec<(String, String)> = server
        .requests()
        .iter()
        .filter_map(|r| r.worker_title().map(|t| (t, r.model())))
        .collect();
    assert!(
        models.contains(&("Alpha cooling".into(), "special-model".into())),
        "{models:?}"
    );
    assert!(
        models.contains(&("Beta shade".into(), "test".into())),
        "{models:?}"
    );
}

#[test]
fn the_config_key_without_a_terminal_runs_the_plan_unreviewed_with_a_note() {
    let rt = runtime();
    let server = rt.block_on(mock());
    let sandbox = Sandbox::new("[planner]\nreview = true\n");
    let out = sandbox
        .child(&[
            "run",
            "--provider",
            "openai",
            "--base-url",
            &server.openai_base_url(),
            "--model",
            "test",
            QUERY,
        ])
        .run_blocking();
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("no terminal to review the plan on; it runs unreviewed"),
        "{}",
        out.stderr
    );
    assert_eq!(worker_requests(&server), 2);
}

#[test]
fn maestro_plan_prints_a_subtask_model_only_when_the_planner_set_one() {
    let rt = runtime();
    let plan = json!({"subtasks": [
        {"id": "a", "title": "Alpha cooling", "description": "Cooling.", "model": "big-model"},
        {"id": "b", "title": "Beta shade", "description": "Shade."},
    ]})
    .to_string();
    let server = rt.block_on(MockServer::start(move |_| Reply::text(plan.clone())));
    let sandbox = Sandbox::new("");
    let out = sandbox
        .child(&[
            "plan",
            "--provider",
            "openai",
            "--base-url",
            &server.openai_base_url(),
            "--model",
            "test",
            QUERY,
        ])
        .run_blocking();
    assert_eq!(out.code, Some(0), "{out:?}");
    let printed = out.json();
    assert_eq!(printed["subtasks"][0]["model"], "big-model");
    assert!(printed["subtasks"][1].get("model").is_none(), "{printed}");
}

// ---- on a terminal --------------------------------------------------------------------------

/// A terminal whose `$EDITOR` is `editor`.
fn terminal(home: &Path, editor: &Path) -> Tmux {
    let mut tmux = Tmux::in_sandbox(home, &home.join("config.toml"));
    tmux.env
        .push(("EDITOR".into(), editor.to_string_lossy().into_owned()));
    tmux
}

fn tmux_ready() -> bool {
    common::tmux::ready("the terminal review tests")
}

/// An editor that replaces the file with `edits[n]` on its n-th run.
fn editor(home: &Path, edits: &[String]) -> PathBuf {
    for (i, edit) in edits.iter().enumerate() {
        std::fs::write(home.join(format!("edit{}.json", i + 1)), edit).expect("write an edit");
    }
    let script = home.join("editor.sh");
    let dir = quote(&home.to_string_lossy());
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nn=$(cat {dir}/count 2>/dev/null || echo 0)\nn=$((n+1))\n\
             echo $n > {dir}/count\ncp {dir}/edit$n.json \"$1\"\n"
        ),
    )
    .expect("write the editor");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    assert!(status.success());
    script
}

fn start_review(tmux: &Tmux, home: &Path, server: &MockServer) {
    let binary = quote(env!("CARGO_BIN_EXE_maestro"));
    let report = quote(&home.join("report.md").to_string_lossy());
    tmux.start(&format!(
        "{binary} run --review --provider openai --base-url {} --model test {} > {report}; \
         echo {EXITED}$?; exec sleep 60",
        quote(&server.openai_base_url()),
        quote(QUERY)
    ));
}

fn worker_requests(server: &MockServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.worker_title().is_some())
        .count()
}

#[test]
fn a_terminal_review_edits_the_plan_in_the_editor_until_it_is_valid_then_runs_it() {
    if !tmux_ready() {
        return;
    }
    let rt = runtime();
    let server = rt.block_on(mock());
    let sandbox = Sandbox::new("");
    let home = sandbox.home();
    let subtask = |id: &str, title: &str, deps: &[&str]| {
        json!({"id": id, "worker": "research", "title": title, "description": title,
               "depends_on": deps})
    };
    let cycle = json!({"subtasks": [
        subtask("a", "Alpha cooling", &["b"]),
        subtask("b", "Beta shade", &["a"]),
    ]});
    let deleted = json!({"subtasks": [subtask("b", "Beta shade", &["a"])]});
    let mut added = subtask("c", "Gamma costs", &["a", "b"]);
    added["model"] = json!("special-model");
    let fixed = json!({"subtasks": [
        subtask("a", "Alpha cooling", &[]),
        subtask("b", "Beta shade", &["a"]),
        added,
    ]});
    let editor = editor(
        home,
        &[cycle.to_string(), deleted.to_string(), fixed.to_string()],
    );
    let tmux = terminal(home, &editor);
    start_review(&tmux, home, &server);

    let screen = tmux.wait_for_in_scrollback("the review prompt", |s| {
        s.contains("approve [a] · edit in $EDITOR [e] · cancel [c]")
    });
    assert!(screen.contains("plan for review: 2 subtasks"), "{screen}");
    assert!(screen.contains("≈ 3 calls"), "{screen}");
    assert!(screen.contains("(rule of thumb)"), "{screen}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(worker_requests(&server), 0, "nothing runs before approval");

    tmux.send_keys(&["e", "Enter"]);
    tmux.wait_for_in_scrollback("the cycle named", |s| {
        s.contains("✗ the dependencies form a cycle: a → b → a")
    });
    // Approving a plan with problems is refused on the spot.
    tmux.send_keys(&["a", "Enter"]);
    tmux.wait_for_in_scrollback("the refusal", |s| s.contains("the plan cannot run yet:"));

    tmux.send_keys(&["e", "Enter"]);
    tmux.wait_for_in_scrollback("the missing dependency named", |s| {
        s.contains("✗ subtask `b` depends on `a`, which is not in the plan")
    });
    assert_eq!(worker_requests(&server), 0);

    tmux.send_keys(&["e", "Enter"]);
    let screen = tmux.wait_for_in_scrollback("the fixed plan", |s| {
        s.contains("plan for review: 3 subtasks") && s.contains("special-model")
    });
    assert!(screen.contains("≈ 4 calls"), "{screen}");
    tmux.send_keys(&["a", "Enter"]);
    let screen = tmux.wait_for_in_scrollback("the run to end", |s| s.contains(EXITED));
    assert!(screen.contains(&format!("{EXITED}0")), "{screen}");

    let models: Vec<(String, String)> = server
        .requests()
        .iter()
        .filter_map(|r| r.worker_title().map(|t| (t, r.model())))
        .collect();
    assert_eq!(models.len(), 3, "{models:?}");
    assert!(
        models.contains(&("Gamma costs".into(), "special-model".into())),
        "{models:?}"
    );
    let report = std::fs::read_to_string(home.join("report.md")).expect("the report");
    assert!(report.contains("Shade helps."), "{report}");
    assert!(
        report.contains("| Gamma costs | research · special-model |"),
        "the report names the subtask's own model: {report}"
    );
}

#[test]
fn cancelling_a_terminal_review_runs_nothing_and_exits_130() {
    if !tmux_ready() {
        return;
    }
    let rt = runtime();
    let server = rt.block_on(mock());
    let sandbox = Sandbox::new("");
    let home = sandbox.home();
    let editor = editor(home, &[]);
    let tmux = terminal(home, &editor);
    start_review(&tmux, home, &server);
    tmux.wait_for_in_scrollback("the review prompt", |s| s.contains("cancel [c]"));
    tmux.send_keys(&["c", "Enter"]);
    let screen = tmux.wait_for_in_scrollback("the run to end", |s| s.contains(EXITED));
    assert!(screen.contains(&format!("{EXITED}130")), "{screen}");
    assert_eq!(worker_requests(&server), 0);
    assert_eq!(server.request_count(), 1, "the planner only");
}

#[test]
fn a_resumed_run_keeps_a_subtasks_own_model() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = runtime();
    let healthy = Arc::new(AtomicBool::new(false));
    let up = healthy.clone();
    let server = rt.block_on(MockServer::start(move |r| {
        if r.is_synthesis() {
            return Reply::text("# Report\n\nDone.\n");
        }
        match r.worker_title().as_deref() {
            Some("Beta shade") if !up.load(Ordering::SeqCst) => Reply::status(500, "down"),
            Some(title) => Reply::text(format!("Findings of {title}.")),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }));
    let sandbox = Sandbox::new("");
    let file = sandbox.path("plan.json");
    let plan = json!({"subtasks": [
        {"id": "a", "title": "Alpha cooling", "description": "Cooling."},
        {"id": "b", "title": "Beta shade", "description": "Shade.", "model": "special-model"},
    ]});
    std::fs::write(&file, plan.to_string()).expect("write the plan");
    let base_url = server.openai_base_url();
    let common = [
        "--provider",
        "openai",
        "--base-url",
        base_url.as_str(),
        "--model",
        "test",
        "--retries",
        "0",
    ];
    let mut args = vec!["run", "--plan", file.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(&common);
    args.extend_from_slice(&["--format", "json", QUERY]);
    let out = sandbox.child(&args).run_blocking();
    assert_eq!(out.code, Some(3), "b failed: {out:?}");
    let id = out.json()["run_id"].as_str().expect("a run id").to_owned();

    healthy.store(true, Ordering::SeqCst);
    let before = server.request_count();
    let mut args = vec!["resume", id.as_str()];
    args.extend_from_slice(&common);
    let out = sandbox.child(&args).run_blocking();
    assert_eq!(out.code, Some(0), "{out:?}");
    let again: Vec<(String, String)> = server.requests()[before..]
        .iter()
        .filter_map(|r| r.worker_title().map(|t| (t, r.model())))
        .collect();
    assert_eq!(
        again,
        vec![("Beta shade".to_owned(), "special-model".to_owned())]
    );
}
