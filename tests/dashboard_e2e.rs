//! The dashboard end to end: the real `maestro` binary in a tmux pane (120×40, on a private
//! tmux server that is killed at the end, even on failure), talking to the in-process mock
//! server as an OpenAI-compatible provider. The test types a query, watches the subtasks
//! succeed, fail and block, reads the failure in the detail pane, re-runs the failed subtask
//! once the server is healthy, watches the dependent subtask run and the synthesis update,
//! quits with `q`, and checks the terminal was restored and that an escape sequence in model
//! text never reached the terminal.
//!
//! The run is saved as it happens: after quitting, the test opens the database and finds the
//! run, its re-run command and both reports. Another test starts the dashboard on a file that
//! is not a database: it starts anyway and its status line says "unsaved".
//!
//! Another test quits a run with a failed subtask, starts the dashboard again on the same
//! database, opens the run from history, re-runs the subtask, and compares the two reports.
//!
//! Two more tests send SIGTERM and SIGHUP to the dashboard's pid mid-run and check its exit
//! code (143, 129) and that the terminal was restored.
//!
//! Another starts with `--review`, edits a subtask's title and model on the review
//! screen, approves with Ctrl+S, and finds the edit in the server's requests.
//!
//! One more types `@path` queries on the demo provider: a missing file is an error line with
//! the query kept, an existing one shows under the run and in the demo's plan.
//!
//! One more has a worker call an MCP server's tool: the detail pane names it `mcp:t/echo`, and
//! the server's process is gone once the dashboard quits.
//!
//! Needs `tmux` (`.ci/run` installs it). Without it the test fails, unless
//! `MAESTRO_SKIP_TMUX_TESTS=1` is set, which skips it with a notice.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::mock::{MockRequest, MockServer, Reply};
use common::tmux::{Tmux, WIDTH, quote};
use serde_json::json;
use tempfile::TempDir;

const QUERY: &str = "How do cities adapt to heat waves?";
const TITLE_A: &str = "Alpha survey of cooling";
const TITLE_B: &str = "Beta costs of shade";
const TITLE_C: &str = "Gamma follow-up on costs";
/// What the failing subtask's server says.
const UPSTREAM_ERROR: &str = "upstream exploded";
/// Subtask a's answer carries an OSC that would retitle the terminal if drawn raw.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}";
/// Printed by the pane's shell after the binary exits, with its exit code.
const EXITED: &str = "EXITED:";

// ---- tmux ---------------------------------------------------------------------------------

fn tmux_ready() -> bool {
    common::tmux::ready("the dashboard end-to-end test")
}

// ---- reading the screen -------------------------------------------------------------------

/// The tree row of subtask `id` if it shows `glyph`: from the glyph to the pane's right border.
fn row<'a>(screen: &'a str, glyph: &str, id: &str) -> Option<&'a str> {
    let start = format!("{glyph} {id} ");
    screen.lines().find_map(|line| {
        let at = line.find(&start)?;
        line[at..].split('│').next()
    })
}

/// Whether `text` holds a time like `0.3s` or `12.0s`.
fn has_seconds(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        b[i].is_ascii_digit()
            && b.get(i + 1) == Some(&b'.')
            && b.get(i + 2).is_some_and(u8::is_ascii_digit)
            && b.get(i + 3) == Some(&b's')
    })
}

/// The screen's words in order, borders and line breaks dropped: finds text that the panes
/// wrapped over lines, as long as the neighbouring pane does not interleave (checked with
/// phrases that only one pane shows).
fn words(screen: &str) -> String {
    screen
        .split(|c: char| c.is_whitespace() || "│╭╮╰╯─".contains(c))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The detail pane (left column, below the tree): the id in its title (`╭ b · research ─`)
/// and its words. `None` when it is not on screen.
fn detail(screen: &str) -> Option<(String, String)> {
    // In a wide terminal the left column is the tree over the detail.
    let left: Vec<String> = screen
        .lines()
        .map(|l| l.chars().take(usize::from(WIDTH) * 46 / 100).collect())
        .collect();
    let tree = left.iter().position(|l| l.starts_with("╭ Subtasks"))?;
    let top = tree + 1 + left[tree + 1..].iter().position(|l| l.starts_with('╭'))?;
    let id = left[top]
        .trim_start_matches('╭')
        .split_whitespace()
        .next()?;
    let body: Vec<&str> = left[top + 1..]
        .iter()
        .take_while(|l| !l.starts_with('╰'))
        .map(String::as_str)
        .collect();
    Some((id.to_owned(), words(&body.join("\n"))))
}

/// Whether the detail pane shows subtask `id` and contains `phrase` (even wrapped).
fn detail_shows(screen: &str, id: &str, phrase: &str) -> bool {
    detail(screen).is_some_and(|(shown, text)| shown == id && text.contains(phrase))
}

// ---- the mock's script --------------------------------------------------------------------

fn synthesis_mark(n: usize) -> String {
    format!("SYNTHESIS-MARK-{n}")
}

fn plan() -> String {
    let subtask = |id: &str, title: &str, deps: &[&str]| {
        json!({
            "id": id,
            "worker": "research",
            "title": title,
            "description": format!("Find out about {title}."),
            "focus_areas": ["one point"],
            "depends_on": deps,
            "priority": "medium",
        })
    };
    json!({
        "query_analysis": "Heat adaptation.",
        "subtasks": [
            subtask("a", TITLE_A, &[]),
            subtask("b", TITLE_B, &[]),
            subtask("c", TITLE_C, &["b"]),
        ],
        "synthesis_guidance": "Combine.",
    })
    .to_string()
}

/// Planner: the plan. Workers: text after a short delay, but b answers HTTP 500 while the
/// server is unhealthy. Synthesis: a report with a numbered mark, so a second one is told
/// from the first.
fn script(
    healthy: Arc<AtomicBool>,
    syntheses: Arc<AtomicUsize>,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan();
    let delay = Duration::from_millis(300);
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            let n = syntheses.fetch_add(1, Ordering::SeqCst) + 1;
            let text = format!(
                "# Heat report\n\n{} from the mock.\n\nShade and water cool cities. \
                 \u{1b}]2;pwned\u{7}\n",
                synthesis_mark(n)
            );
            return Reply::text(text).gap(Duration::from_millis(10));
        }
        match r.worker_title().as_deref() {
            Some(TITLE_A) => Reply::text(format!(
                "Alpha findings: trees and {HOSTILE}cool roofs help."
            ))
            .delay(delay),
            Some(TITLE_B) if !healthy.load(Ordering::SeqCst) => Reply::status(500, UPSTREAM_ERROR),
            Some(TITLE_B) => Reply::text("Beta findings: shade is cheap.").delay(delay),
            Some(TITLE_C) => Reply::text("Gamma findings: costs fall over time.").delay(delay),
            _ => Reply::status(400, "mock: unexpected request"),
        }
    }
}

// ---- the test -----------------------------------------------------------------------------

#[test]
fn dashboard_runs_fails_reruns_resynthesises_and_quits_cleanly() {
    if !tmux_ready() {
        return;
    }
    let started = Instant::now();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let healthy = Arc::new(AtomicBool::new(false));
    let syntheses = Arc::new(AtomicUsize::new(0));
    let server = runtime.block_on(MockServer::start(script(
        healthy.clone(),
        syntheses.clone(),
    )));

    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "[limits]\ntimeout_secs = 10\nidle_timeout_secs = 5\n\n[ui]\nbell = false\n",
    )
    .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    let binary = quote(env!("CARGO_BIN_EXE_maestro"));
    let base_url = quote(&server.openai_base_url());
    tmux.start(&format!(
        "{binary} --provider openai --base-url {base_url} --model test --retries 1; \
         echo {EXITED}$?; exec sleep 60"
    ));

    // 1. The query box is ready; ask.
    tmux.wait_for("the query pane", |s| {
        s.contains("Query") && s.contains("Ask a question")
    });
    tmux.type_text(QUERY);
    tmux.wait_for("the typed query", |s| s.contains(QUERY));
    tmux.send_keys(&["Enter"]);

    // 2. a succeeds with a time, b fails after its retry, c is blocked on b, and the first
    //    synthesis (of a alone) is shown; the run ends with gaps.
    let screen = tmux.wait_for(
        "a ✓ with a time, b ✗ failed, c ⊘ after b, synthesis 1, run partial",
        |s| {
            row(s, "✓", "a").is_some_and(has_seconds)
                && row(s, "✗", "b").is_some_and(|r| r.contains("failed"))
                && row(s, "⊘", "c").is_some_and(|r| r.contains("after b"))
                && s.contains(&synthesis_mark(1))
                && s.contains("#1 partial")
        },
    );
    println!("--- after the first pass ---\n{screen}");
    assert!(
        detail_shows(&screen, "a", "Alpha findings: trees and cool roofs help."),
        "a is selected after the plan arrives, and its result is shown clean:\n{screen}"
    );

    // 3. Select b (the row under a): the detail pane shows why it failed.
    tmux.send_keys(&["j"]);
    let screen = tmux.wait_for("b's error in the detail pane", |s| {
        detail_shows(s, "b", "attempt 2 failed")
            && detail_shows(s, "b", &format!("HTTP 500: {UPSTREAM_ERROR}"))
    });
    println!("--- b selected ---\n{screen}");

    // 4. The server recovers; re-run b. b and then c succeed, and a new synthesis replaces
    //    the first.
    healthy.store(true, Ordering::SeqCst);
    tmux.send_keys(&["r"]);
    let screen = tmux.wait_for("b ✓, c ✓, synthesis 2, run succeeded", |s| {
        row(s, "✓", "a").is_some_and(has_seconds)
            && row(s, "✓", "b").is_some_and(has_seconds)
            && row(s, "✓", "c").is_some_and(has_seconds)
            && s.contains(&synthesis_mark(2))
            && !s.contains(&synthesis_mark(1))
            && s.contains("#1 succeeded")
    });
    println!("--- after the re-run ---\n{screen}");
    // What the server saw: one plan; a once; b twice (one retry) and once more on `r`; c
    // only after b succeeded; two syntheses.
    let requests = server.requests();
    let calls = |title: &str| {
        requests
            .iter()
            .filter(|r| r.worker_title().as_deref() == Some(title))
            .count()
    };
    let planners = requests.iter().filter(|r| r.is_planner()).count();
    assert_eq!(
        (planners, calls(TITLE_A), calls(TITLE_B), calls(TITLE_C)),
        (1, 1, 3, 1),
        "(planner, a, b, c) calls"
    );
    assert_eq!(syntheses.load(Ordering::SeqCst), 2, "two syntheses");

    // Model text never reached the terminal raw: the OSC in a's answer and in the synthesis
    // did not retitle the pane, and nothing of them shows.
    let title = tmux.display("#{pane_title}");
    assert!(
        !title.contains("pwned"),
        "the pane title was set to {title:?}"
    );
    assert!(
        !screen.contains("pwned"),
        "escape text on screen:\n{screen}"
    );
    assert_eq!(
        tmux.display("#{alternate_on} #{mouse_any_flag} #{cursor_flag}"),
        "1 1 0",
        "while the dashboard runs: alternate screen, mouse capture, no cursor in the tree"
    );

    // 5. Nothing runs, so q quits at once; the terminal is restored.
    tmux.send_keys(&["q"]);
    let screen = tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
    println!("--- after quitting ---\n{screen}");
    let code = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix(EXITED))
        .unwrap_or_default();
    assert_eq!(code, "0", "exit code (screen:\n{screen})");
    assert_eq!(
        tmux.display("#{alternate_on} #{mouse_any_flag} #{cursor_flag}"),
        "0 0 1",
        "alternate screen off, mouse capture off, cursor shown after quitting"
    );
    assert!(
        !screen.contains("Subtasks"),
        "the dashboard is gone from the normal screen:\n{screen}"
    );

    // Saved as it happened: the run, the re-run of b, and both reports.
    let db = rusqlite::Connection::open(home.join("data").join("maestro").join("maestro.db"))
        .expect("the dashboard's database");
    let (query, status): (String, String) = db
        .query_row("SELECT query, status FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("one saved run");
    assert_eq!((query.as_str(), status.as_str()), (QUERY, "succeeded"));
    let commands: Vec<String> = db
        .prepare("SELECT kind || ' ' || coalesce(subtask_id, '') FROM commands")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("commands");
    assert_eq!(commands, ["retry_subtask b"]);
    let reports: i64 = db
        .query_row("SELECT count(*) FROM syntheses", [], |r| r.get(0))
        .expect("syntheses");
    assert_eq!(reports, 2);

    drop(tmux);
    drop(server);
    println!("dashboard end-to-end test took {:?}", started.elapsed());
}

// ---- history: a saved run comes back -------------------------------------------------------

/// A run ends with b failed; the dashboard quits. Started again on the same database, the run
/// is opened from history (`H`, Enter), b is re-run (`r`) with the server healthy, the new
/// synthesis arrives, and `D` shows what changed in the report.
#[test]
fn a_saved_run_is_opened_from_history_rerun_and_its_report_compared() {
    if !tmux_ready() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let healthy = Arc::new(AtomicBool::new(false));
    let syntheses = Arc::new(AtomicUsize::new(0));
    let server = runtime.block_on(MockServer::start(script(
        healthy.clone(),
        syntheses.clone(),
    )));
    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "[limits]\ntimeout_secs = 10\nidle_timeout_secs = 5\n\n[ui]\nbell = false\n",
    )
    .expect("write the config");
    let db = home.join("runs.db");
    let tmux = Tmux::in_sandbox(home, &config);
    let dashboard = format!(
        "{} --provider openai --base-url {} --model test --retries 1 --db {}; \
         echo {EXITED}$?; exec sleep 60",
        quote(env!("CARGO_BIN_EXE_maestro")),
        quote(&server.openai_base_url()),
        quote(&db.to_string_lossy()),
    );
    let quit = |tmux: &Tmux| {
        tmux.send_keys(&["q"]);
        let screen = tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
        let code = screen
            .lines()
            .find_map(|l| l.trim().strip_prefix(EXITED))
            .unwrap_or_default()
            .to_owned();
        assert_eq!(code, "0", "exit code (screen:\n{screen})");
    };

    // 1. The first session: b fails, c is blocked, the report has a alone; quit.
    tmux.start(&dashboard);
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text(QUERY);
    tmux.send_keys(&["Enter"]);
    tmux.wait_for("b ✗, c ⊘, synthesis 1, run partial", |s| {
        row(s, "✗", "b").is_some()
            && row(s, "⊘", "c").is_some()
            && s.contains(&synthesis_mark(1))
            && s.contains("#1 partial")
    });
    // The session's own run is in history at once.
    tmux.send_keys(&["H"]);
    tmux.wait_for("this session's run in history", |s| {
        s.contains("Search:") && s.contains("partial") && s.contains("1/2/3")
    });
    tmux.send_keys(&["Escape"]);
    tmux.wait_for("history closed", |s| !s.contains("Search:"));
    quit(&tmux);

    // 2. A new dashboard on the same database: no run in it, until one is opened from history.
    tmux.run(&["respawn-pane", "-k", "-t", "e2e", &dashboard]);
    tmux.wait_for("the new dashboard", |s| {
        s.contains("Ask a question") && s.contains("No runs yet")
    });
    // Esc and H apart: a terminal reads them together as Alt+H.
    tmux.send_keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.send_keys(&["H"]);
    let screen = tmux.wait_for("the saved run in history", |s| {
        s.contains("History") && s.contains("partial") && s.contains(QUERY)
    });
    println!("--- history ---\n{screen}");
    // A search that matches nothing, then one that matches the report's text.
    tmux.type_text("zebra");
    tmux.wait_for("no match", |s| s.contains("No saved run has that"));
    tmux.send_keys(&["C-u"]);
    tmux.type_text("mark-1");
    tmux.wait_for("the run found by its report", |s| {
        s.contains("Search: mark-1") && s.contains(QUERY)
    });
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the opened run in the panes", |s| {
        row(s, "✗", "b").is_some()
            && row(s, "✓", "a").is_some()
            && s.contains(&synthesis_mark(1))
            && s.contains("#1 partial")
    });
    println!("--- opened ---\n{screen}");

    // 3. Select b and re-run it with the server healthy: the run goes on live, c follows and
    //    a new report is written.
    tmux.send_keys(&["j", "j"]);
    tmux.wait_for("b in the detail pane", |s| {
        detail_shows(s, "b", UPSTREAM_ERROR)
    });
    healthy.store(true, Ordering::SeqCst);
    tmux.send_keys(&["r"]);
    let screen = tmux.wait_for("b ✓, c ✓, synthesis 2, run succeeded", |s| {
        row(s, "✓", "b").is_some()
            && row(s, "✓", "c").is_some()
            && s.contains(&synthesis_mark(2))
            && !s.contains(&synthesis_mark(1))
            && s.contains("#1 succeeded")
    });
    println!("--- resumed ---\n{screen}");

    // 4. D: the report's change, signed; D again: the report.
    tmux.send_keys(&["D"]);
    let screen = tmux.wait_for("the report diff", |s| {
        s.contains("changes since the previous version")
            && s.contains(&format!("- {}", synthesis_mark(1)))
            && s.contains(&format!("+ {}", synthesis_mark(2)))
    });
    println!("--- diff ---\n{screen}");
    tmux.send_keys(&["D"]);
    tmux.wait_for("the report again", |s| {
        s.contains(&synthesis_mark(2)) && !s.contains(&synthesis_mark(1))
    });
    quit(&tmux);

    // The server saw one plan, a once (its result was kept), b twice then once more, c once
    // b had a result, and two reports.
    let requests = server.requests();
    let calls = |title: &str| {
        requests
            .iter()
            .filter(|r| r.worker_title().as_deref() == Some(title))
            .count()
    };
    let planners = requests.iter().filter(|r| r.is_planner()).count();
    assert_eq!(
        (planners, calls(TITLE_A), calls(TITLE_B), calls(TITLE_C)),
        (1, 1, 3, 1),
        "(planner, a, b, c) calls"
    );
    assert_eq!(syntheses.load(Ordering::SeqCst), 2, "two syntheses");

    // One run, finished; the re-run on record; each report saved once.
    let db = rusqlite::Connection::open(&db).expect("the database");
    let (count, status): (i64, String) = db
        .query_row("SELECT count(*), max(status) FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("the runs");
    assert_eq!((count, status.as_str()), (1, "succeeded"));
    let commands: Vec<String> = db
        .prepare("SELECT kind || ' ' || coalesce(subtask_id, '') FROM commands")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("commands");
    assert_eq!(commands, ["retry_subtask b"]);
    let reports: i64 = db
        .query_row("SELECT count(*) FROM syntheses", [], |r| r.get(0))
        .expect("syntheses");
    assert_eq!(reports, 2);
}

// ---- planning you can watch ----------------------------------------------------------------

/// What the planner says while the model "cannot" plan.
const NO_PLAN: &str = "Heat waves are serious and cities respond in many ways.";

/// The planner fails twice (prose, no JSON); the run fails and its detail pane shows the
/// answers. `r` on the run's row plans it again: the new answer streams
/// slowly, one subtask at a time, and the subtasks appear in the tree as `planned` before the
/// checked plan arrives and the run goes on to succeed.
#[test]
fn a_failed_planning_shows_the_answers_and_r_plans_again_with_subtasks_streaming_in() {
    if !tmux_ready() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let planner_calls = Arc::new(AtomicUsize::new(0));
    let calls = planner_calls.clone();
    let plan = plan();
    // One piece per subtask, each ending just after the subtask's object closes.
    let pieces: Vec<String> = {
        let mut pieces = Vec::new();
        let mut rest = plan.as_str();
        while let Some(end) = rest.find("\"worker\":\"research\"}") {
            let cut = end + "\"worker\":\"research\"}".len();
            pieces.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
        pieces.push(rest.to_owned());
        pieces
    };
    let server = runtime.block_on(MockServer::start(move |r: &MockRequest| {
        if r.is_planner() {
            return if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Reply::text(NO_PLAN)
            } else {
                Reply::chunks(pieces.clone()).gap(Duration::from_millis(1500))
            };
        }
        if r.is_synthesis() {
            return Reply::text(format!("# Heat report\n\n{}\n", synthesis_mark(1)));
        }
        Reply::text("Findings.")
    }));

    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "[limits]\ntimeout_secs = 15\nidle_timeout_secs = 5\n\n[ui]\nbell = false\n",
    )
    .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    let binary = quote(env!("CARGO_BIN_EXE_maestro"));
    let base_url = quote(&server.openai_base_url());
    tmux.start(&format!(
        "{binary} --provider openai --base-url {base_url} --model test --retries 0; \
         echo {EXITED}$?; exec sleep 60"
    ));
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text(QUERY);
    tmux.wait_for("the typed query", |s| s.contains(QUERY));
    tmux.send_keys(&["Enter"]);

    let screen = tmux.wait_for(
        "the failed run with the planner's answer in the detail",
        |s| {
            s.contains("#1 failed")
                && detail(s).is_some_and(|(_, text)| {
                    text.contains("Planner, attempt 1 · test · rejected")
                        && text.contains("Heat waves are serious")
                })
        },
    );
    println!("--- planning failed ---\n{screen}");

    tmux.send_keys(&["r"]);
    let screen = tmux.wait_for("a subtask drafted before the plan is ready", |s| {
        s.contains("#1 planning") && s.contains("planned")
    });
    println!("--- mid-plan ---\n{screen}");
    assert!(
        words(&screen).contains(TITLE_A),
        "the first subtask's title is in the tree:\n{screen}"
    );
    let screen = tmux.wait_for("the run to succeed", |s| {
        s.contains("#1 succeeded") && s.contains(&synthesis_mark(1))
    });
    assert!(!screen.contains("planned"), "drafts replaced:\n{screen}");
    assert_eq!(planner_calls.load(Ordering::SeqCst), 3);
    tmux.send_keys(&["q"]);
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
}

#[test]
fn dashboard_starts_on_a_database_it_cannot_open_and_says_unsaved() {
    if !tmux_ready() {
        return;
    }
    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(&config, "provider = \"demo\"\n\n[ui]\nbell = false\n")
        .expect("write the config");
    let db = home.join("not-a-db.txt");
    std::fs::write(&db, "plain text, not SQLite\n".repeat(100)).expect("write the file");
    let tmux = Tmux::in_sandbox(home, &config);
    tmux.start(&format!(
        "{} --db {}; echo {EXITED}$?; exec sleep 60",
        quote(env!("CARGO_BIN_EXE_maestro")),
        quote(&db.to_string_lossy())
    ));
    let screen = tmux.wait_for("the dashboard, unsaved", |s| {
        s.contains("Ask a question") && s.lines().last().is_some_and(|l| l.contains("unsaved"))
    });
    println!("--- unsaved ---\n{screen}");
    // It still runs queries.
    tmux.type_text("How do cities adapt to heat waves?");
    tmux.send_keys(&["Enter"]);
    tmux.wait_for("a run going", |s| s.contains("#1 "));
    // Ctrl-C asks while a run is going; a second one quits.
    tmux.send_keys(&["C-c"]);
    tmux.send_keys(&["C-c"]);
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
    assert_eq!(
        std::fs::read_to_string(&db).expect("the file"),
        "plain text, not SQLite\n".repeat(100),
        "the file was not touched"
    );
}

#[test]
fn t_shows_the_run_as_a_timeline_that_grows_until_the_synthesis_and_t_brings_the_tree_back() {
    if !tmux_ready() {
        return;
    }
    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "provider = \"demo\"\n\n[demo]\ntokens_per_second = 400\nfailure_rate = 0.0\n\n\
         [ui]\nbell = false\n",
    )
    .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    tmux.start(&format!(
        "{} --no-save; echo {EXITED}$?; exec sleep 60",
        quote(env!("CARGO_BIN_EXE_maestro"))
    ));
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text("How do cities adapt to heat waves?");
    tmux.send_keys(&["Enter"]);
    tmux.wait_for("a run going", |s| s.contains("#1 "));
    tmux.send_keys(&["T"]);
    let screen = tmux.wait_for("the timeline with its axis and the planner's row", |s| {
        s.contains("Timeline #1") && s.contains("planner") && s.contains("synthesis")
    });
    println!("--- the timeline ---\n{screen}");
    let screen = tmux.wait_for(
        "the run done, its critical path through the synthesis",
        |s| {
            s.contains("#1 succeeded")
                && s.lines()
                    .any(|l| l.contains("*✓ synthesis") && l.contains('█'))
                && s.contains("path ")
                && s.contains(", peak ")
                && s.contains("in flight ")
        },
    );
    println!("--- the finished timeline ---\n{screen}");
    tmux.send_keys(&["T"]);
    tmux.wait_for("the tree again", |s| {
        s.contains("Subtasks") && !s.contains("Timeline #1")
    });
    tmux.send_keys(&["q"]);
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
}

// ---- signals ------------------------------------------------------------------------------

/// The dashboard on the demo provider with a run going; `signal` is sent to its pid. It must
/// exit with `code` after restoring the terminal (normal screen, no mouse capture, cursor
/// shown), as a shell reports a process stopped by that signal.
fn exits_on_signal_with_the_terminal_restored(signal: &str, code: &str) {
    if !tmux_ready() {
        return;
    }
    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(&config, "provider = \"demo\"\n\n[ui]\nbell = false\n")
        .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    let pid_file = home.join("maestro.pid");
    // The inner shell writes its pid and becomes the binary, so that pid is the dashboard's.
    let inner = format!(
        "echo $$ > {}; exec {}",
        quote(&pid_file.to_string_lossy()),
        quote(env!("CARGO_BIN_EXE_maestro"))
    );
    tmux.start(&format!(
        "sh -c {}; echo {EXITED}$?; exec sleep 60",
        quote(&inner)
    ));
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text("How do cities adapt to heat waves?");
    tmux.send_keys(&["Enter"]);
    tmux.wait_for("a run going", |s| s.contains("#1 "));
    assert_eq!(
        tmux.display("#{alternate_on} #{mouse_any_flag}"),
        "1 1",
        "while the dashboard runs: alternate screen and mouse capture"
    );

    let pid = std::fs::read_to_string(&pid_file).expect("the dashboard's pid");
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.trim().to_owned()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}: {status}");

    let screen = tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
    let exit = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix(EXITED))
        .unwrap_or_default();
    assert_eq!(
        exit, code,
        "exit code after SIG{signal} (screen:\n{screen})"
    );
    assert_eq!(
        tmux.display("#{alternate_on} #{mouse_any_flag} #{cursor_flag}"),
        "0 0 1",
        "alternate screen off, mouse capture off, cursor shown after SIG{signal}"
    );
    assert!(
        !screen.contains("Subtasks"),
        "the dashboard is gone from the normal screen:\n{screen}"
    );
}

#[test]
fn sigterm_restores_the_terminal_and_exits_143() {
    exits_on_signal_with_the_terminal_restored("TERM", "143");
}

#[test]
fn sighup_restores_the_terminal_and_exits_129() {
    exits_on_signal_with_the_terminal_restored("HUP", "129");
}

// ---- attached files -----------------------------------------------------------------------

/// `@path` in the query box on the demo provider: a path that does not exist is an error line
/// with the query kept; a file that does shows under the run and in the demo's plan.
#[test]
fn an_at_path_in_the_query_box_attaches_the_file_or_says_what_is_wrong() {
    if !tmux_ready() {
        return;
    }
    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "provider = \"demo\"\n\n[demo]\nfailure_rate = 0.0\ntokens_per_second = 2000\n\n\
         [ui]\nbell = false\n",
    )
    .expect("write the config");
    std::fs::write(home.join("notes.md"), "# Heat plan\n\nShade first.\n").expect("notes");
    let tmux = Tmux::in_sandbox(home, &config);
    tmux.start(&format!(
        "cd {} && {}; echo {EXITED}$?; exec sleep 60",
        quote(&home.to_string_lossy()),
        quote(env!("CARGO_BIN_EXE_maestro"))
    ));
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text("Summarise @missing.md");
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the error line", |s| {
        s.contains("@missing.md: no such file or folder")
    });
    assert!(
        screen.contains("Summarise @missing.md") && !screen.contains("#1 "),
        "the query is kept and no run starts:\n{screen}"
    );

    tmux.send_keys(&["C-u"]);
    tmux.type_text("Summarise @notes.md");
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the files line and the demo's plan", |s| {
        s.contains("@ notes.md") && s.contains("What notes.md says")
    });
    println!("--- attached ---\n{screen}");
    assert!(screen.contains("1 file 26 B"), "{screen}");
    tmux.send_keys(&["C-c"]);
    tmux.send_keys(&["C-c"]);
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
}

// ---- MCP servers ----------------------------------------------------------------------------

/// A worker of a dashboard run calls a tool of a configured MCP server: the screen names it
/// `mcp:t/echo`, and quitting stops the server's process.
#[test]
fn a_dashboard_worker_calls_an_mcp_tool_and_quitting_stops_the_server() {
    if !tmux_ready() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let plan = json!({
        "query_analysis": "Heat adaptation.",
        "subtasks": [{
            "id": "a", "worker": "research", "title": TITLE_A,
            "description": "Find out.", "focus_areas": [], "depends_on": [],
            "priority": "medium",
        }],
        "synthesis_guidance": "Combine.",
    })
    .to_string();
    let server = runtime.block_on(MockServer::start(move |r: &MockRequest| {
        if r.is_planner() {
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            return Reply::text(format!("# Heat report\n\n{}\n", synthesis_mark(1)));
        }
        if !r.tools().is_empty() && r.tool_results().is_empty() {
            return Reply::calls(&[("mcp__t__echo", r#"{"text": "echoed by the server"}"#)]);
        }
        Reply::text("Alpha findings: the server echoed.")
    }));

    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let pid_file = home.join("server.pid");
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[ui]\nbell = false\n\n[roles.research]\ntools = [\"mcp:t/echo\"]\n\n\
             [[mcp.servers]]\nname = \"t\"\ncommand = {:?}\nargs = [\"--pid-file\", {:?}]\n",
            env!("CARGO_BIN_EXE_mcp-test-server"),
            pid_file.to_string_lossy()
        ),
    )
    .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    tmux.start(&format!(
        "{} --provider openai --base-url {} --model test; echo {EXITED}$?; exec sleep 60",
        quote(env!("CARGO_BIN_EXE_maestro")),
        quote(&server.openai_base_url())
    ));
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text(QUERY);
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the run done, the MCP call shown", |s| {
        s.contains("#1 succeeded") && s.contains(&synthesis_mark(1)) && s.contains("mcp:t/echo")
    });
    println!("--- the run ---\n{screen}");
    assert!(!screen.contains("mcp__t__echo"), "{screen}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the server started")
        .trim()
        .parse()
        .expect("a pid");
    let running = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
        })
    };
    assert!(running(pid), "the server runs while the dashboard does");

    tmux.send_keys(&["q"]);
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
    let deadline = Instant::now() + Duration::from_secs(2);
    while running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!running(pid), "MCP server {pid} outlived the dashboard");
    drop(tmux);
    drop(server);
}

// ---- sources -------------------------------------------------------------------------------

/// A researcher fetches a page of the local fixture site (its host allowed), the report cites
/// it, and in the dashboard `o` lists the page as source [1] and Enter shows the page's text;
/// the run opened from history in a new dashboard shows it again, read from the store.
#[test]
fn a_fetched_page_is_listed_as_a_source_and_enter_shows_its_text() {
    if !tmux_ready() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let site = runtime.block_on(common::site::Site::start());
    let page = site.url("/page.html");
    let plan = json!({
        "query_analysis": "Tides.",
        "subtasks": [
            {"id": "a", "worker": "research", "title": TITLE_A, "description": "Look it up.",
             "focus_areas": [], "depends_on": [], "priority": "medium"},
        ],
        "synthesis_guidance": "Combine.",
    })
    .to_string();
    let fetch = json!({ "url": page }).to_string();
    let server = runtime.block_on(MockServer::start(move |r: &MockRequest| {
        if r.is_planner() {
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            return Reply::text("# Tides\n\nHigh water is at noon [subtask: a] [1].\n");
        }
        match r.worker_title().as_deref() {
            Some(TITLE_A) if !r.tools().is_empty() && r.tool_results().is_empty() => {
                Reply::calls(&[("fetch_url", fetch.as_str())])
            }
            Some(TITLE_A) => Reply::text("High water is at noon [1]."),
            _ => Reply::status(400, "mock: unexpected request"),
        }
    }));

    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "[limits]\ntimeout_secs = 10\nidle_timeout_secs = 5\n\n[ui]\nbell = false\n",
    )
    .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    let binary = quote(env!("CARGO_BIN_EXE_maestro"));
    let base_url = quote(&server.openai_base_url());
    let dashboard = format!(
        "{binary} --provider openai --base-url {base_url} --model test --retries 0 \
         --allow-host 127.0.0.1; echo {EXITED}$?; exec sleep 60"
    );
    tmux.start(&dashboard);
    tmux.wait_for("the query pane", |s| s.contains("Ask a question"));
    tmux.type_text("When is high water?");
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the run to succeed with its report", |s| {
        s.contains("#1 succeeded") && s.contains("High water is at noon")
    });
    assert!(
        !screen.contains("unverified"),
        "the report cites only what was fetched:\n{screen}"
    );
    // Esc and `o` apart: together they read as Alt+o.
    tmux.send_keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.send_keys(&["o"]);
    let screen = tmux.wait_for("the page listed as source [1]", |s| {
        s.contains(&format!("[1] {page}")) && s.contains("HTTP 200")
    });
    println!("--- the sources ---\n{screen}");
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the page's text in the reader", |s| {
        s.contains("Source [1]") && s.contains("Tide tables") && s.contains("High water is at")
    });
    println!("--- the reader ---\n{screen}");
    assert!(
        !screen.contains("secretToken"),
        "the page's script is not its text:\n{screen}"
    );
    for key in ["Escape", "Escape", "q"] {
        tmux.send_keys(&[key]);
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));

    // A new dashboard on the same database opens the run from history: the page's text comes
    // from the store.
    tmux.run(&["respawn-pane", "-k", "-t", "e2e", &dashboard]);
    tmux.wait_for("the new dashboard", |s| s.contains("No runs yet"));
    tmux.send_keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.send_keys(&["H"]);
    tmux.wait_for("the saved run in history", |s| {
        s.contains("History") && s.contains("When is high water?")
    });
    tmux.send_keys(&["Enter"]);
    tmux.wait_for("the opened run", |s| {
        s.contains("#1 succeeded") && s.contains("High water is at noon")
    });
    tmux.send_keys(&["o"]);
    tmux.wait_for("the saved source listed", |s| {
        s.contains(&format!("[1] {page}"))
    });
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the saved page's text in the reader", |s| {
        s.contains("Source [1]") && s.contains("Tide tables")
    });
    println!("--- the reader of the saved run ---\n{screen}");
    for key in ["Escape", "Escape", "q"] {
        tmux.send_keys(&[key]);
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
    drop(tmux);
    drop(server);
    drop(site);
}

// ---- plan review ----------------------------------------------------------------------------

/// Started with `--review`, the dashboard says `review on` and its run pauses with its plan on
/// the review screen. b is edited
/// (a new title and a model of its own), Ctrl+S approves, the run completes, and the server saw
/// b's worker request with the new title on that model.
#[test]
fn a_reviewed_plan_is_edited_and_approved_and_the_run_uses_the_edit() {
    if !tmux_ready() {
        return;
    }
    const EDITED: &str = "Beta shade costs, edited";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let plan = plan();
    let server = runtime.block_on(MockServer::start(move |r: &MockRequest| {
        if r.is_planner() {
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            return Reply::text(format!("# Heat report\n\n{}\n", synthesis_mark(1)));
        }
        match r.worker_title() {
            Some(title) => Reply::text(format!("Findings on {title}.")),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }));
    let sandbox = TempDir::new().expect("a temp dir");
    let home = sandbox.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        "[limits]\ntimeout_secs = 10\n\n[ui]\nbell = false\n",
    )
    .expect("write the config");
    let tmux = Tmux::in_sandbox(home, &config);
    tmux.start(&format!(
        "{} --review --provider openai --base-url {} --model test; echo {EXITED}$?; \
         exec sleep 60",
        quote(env!("CARGO_BIN_EXE_maestro")),
        quote(&server.openai_base_url())
    ));
    tmux.wait_for("the query pane, review on", |s| {
        s.contains("Ask a question") && s.contains("Query review on")
    });
    tmux.type_text(QUERY);
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the review screen with the plan", |s| {
        s.contains("Review the plan of #1") && s.contains(TITLE_B) && s.contains("Estimate:")
    });
    println!("--- review ---\n{screen}");
    assert!(screen.contains("reviewing"), "{screen}");
    assert!(
        server.requests().iter().all(|r| r.worker_title().is_none()),
        "no worker is called before the approval"
    );

    // b: a new title and a model of its own.
    tmux.send_keys(&["j", "e"]);
    tmux.wait_for("the form on b", |s| s.contains("Edit b"));
    let backspaces = vec!["BSpace"; TITLE_B.len() + 2];
    tmux.send_keys(&backspaces);
    tmux.type_text(EDITED);
    tmux.send_keys(&["Tab", "Tab"]);
    tmux.type_text("edited-model");
    tmux.send_keys(&["Enter"]);
    let screen = tmux.wait_for("the edited row", |s| {
        s.contains(EDITED) && s.contains("edited-model") && !s.contains("Edit b")
    });
    println!("--- edited ---\n{screen}");

    tmux.send_keys(&["C-s"]);
    let screen = tmux.wait_for("the run to succeed", |s| {
        s.contains("#1 succeeded") && s.contains(&synthesis_mark(1))
    });
    println!("--- done ---\n{screen}");
    let requests = server.requests();
    let edited: Vec<&MockRequest> = requests
        .iter()
        .filter(|r| r.worker_title().as_deref() == Some(EDITED))
        .collect();
    assert_eq!(edited.len(), 1, "b ran once, with its new title");
    assert_eq!(edited[0].model(), "edited-model");
    assert!(
        requests
            .iter()
            .all(|r| r.worker_title().as_deref() != Some(TITLE_B)),
        "the old title was never asked"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.worker_title().as_deref() == Some(TITLE_A))
            .all(|r| r.model() == "test"),
        "the others keep the run's model"
    );
    tmux.send_keys(&["q"]);
    tmux.wait_for("the binary to exit", |s| s.contains(EXITED));
}
