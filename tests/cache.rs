//! The result cache through the real binary and the mock server: a second identical run asks
//! no worker and its JSON marks every subtask cached with zero tokens; `--no-cache`, `--no-save`,
//! `[cache] enabled = false`, an answer older than the time to live, `maestro cache clear`, a
//! different worker model or system prompt, and an answer cut off all make the workers be
//! asked again. And in process: the dashboard's `r` on a cached subtask asks the model.
//!
//! Every child gets a clean environment with `HOME`/XDG directories and its database in a
//! temp dir.

mod common;
mod dashboard_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mock::{MockRequest, MockServer, Reply};
use common::{Output, Sandbox};
use rusqlite::Connection;
use serde_json::{Value, json};

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

impl Sandbox {
    fn configure(&self, config: &str) {
        std::fs::write(self.path("config.toml"), config).expect("write the config");
    }

    fn db(&self) -> PathBuf {
        self.path("runs.db")
    }

    fn open_db(&self) -> Connection {
        Connection::open(self.db()).expect("open the database")
    }

    /// `maestro --db <sandbox db> args…` in a clean environment, on a blocking thread.
    async fn run(&self, args: &[&str]) -> Output {
        self.child(args)
            .db(self.db())
            .env("NO_COLOR", "1")
            .limit(PROCESS_LIMIT)
            .run()
            .await
    }

    /// `maestro run --format json QUERY` with `extra` flags; it must succeed.
    async fn run_json(&self, extra: &[&str]) -> Value {
        let mut args = vec!["run", "-q", "--format", "json"];
        args.extend_from_slice(extra);
        args.push(QUERY);
        let out = self.run(&args).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        out.json()
    }
}

fn title(id: &str) -> String {
    format!("Subtask {id} title")
}

fn plan_value(ids: &[&str]) -> String {
    let subtasks: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "id": id, "worker": "research", "title": title(id),
                "description": format!("Find out about {id}."), "focus_areas": [],
                "depends_on": [], "priority": "medium",
            })
        })
        .collect();
    json!({"query_analysis": "q", "subtasks": subtasks, "synthesis_guidance": "g"}).to_string()
}

/// Two independent subtasks; each worker answers with its title and 20/10 tokens, or cut at
/// the token limit when `cut_off`.
fn script(cut_off: bool) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan_value(&["a", "b"]);
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone()).usage(100, 50);
        }
        if r.is_synthesis() {
            return Reply::text("# Report\n\nThe synthesis.").usage(300, 80);
        }
        match r.worker_title() {
            Some(t) if cut_off => Reply::text(format!("Findings for {t}")).cut_off(),
            Some(t) => Reply::text(format!("Findings for {t}.")).usage(20, 10),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

fn config(server: &MockServer, extra: &str) -> String {
    format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 20\nidle_timeout_secs = 20\n{extra}",
        server.openai_base_url()
    )
}

fn worker_calls(server: &MockServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.worker_title().is_some())
        .count()
}

/// Each subtask's `(id, cached, tokens_in, tokens_out)` in a JSON report.
fn subtask_marks(report: &Value) -> Vec<(String, bool, u64, u64)> {
    report["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").to_owned(),
                s["cached"].as_bool().expect("cached is a bool"),
                s["tokens_in"].as_u64().expect("tokens_in"),
                s["tokens_out"].as_u64().expect("tokens_out"),
            )
        })
        .collect()
}

fn fresh() -> Vec<(String, bool, u64, u64)> {
    vec![("a".into(), false, 20, 10), ("b".into(), false, 20, 10)]
}

fn cached() -> Vec<(String, bool, u64, u64)> {
    vec![("a".into(), true, 0, 0), ("b".into(), true, 0, 0)]
}

#[tokio::test]
async fn a_second_identical_run_asks_no_worker_and_marks_its_subtasks_cached() {
    let server = MockServer::start(script(false)).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    let first = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&first), fresh());
    assert_eq!(worker_calls(&server), 2);

    let out = sandbox.run(&["run", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let second = out.json();
    assert_eq!(worker_calls(&server), 2, "no worker was asked again");
    assert_eq!(subtask_marks(&second), cached());
    assert_eq!(
        second["subtasks"][0]["result"],
        first["subtasks"][0]["result"]
    );
    // The planner and the synthesis are never cached: asked twice each.
    let requests = server.requests();
    assert_eq!(requests.iter().filter(|r| r.is_planner()).count(), 2);
    assert_eq!(requests.iter().filter(|r| r.is_synthesis()).count(), 2);
    // The run's usage is the planner's and the synthesis's only.
    assert_eq!(second["usage"]["tokens_in"], 400, "{second}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains(&title("a")) && l.contains("done (cached")),
        "{out:?}"
    );

    // Saved as cached, and shown so.
    let conn = sandbox.open_db();
    let marked: i64 = conn
        .query_row(
            "SELECT count(*) FROM subtasks WHERE cached = 1 AND tokens_in = 0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(marked, 2);
    let id = second["run_id"].as_str().expect("run id");
    let shown = sandbox.run(&["show", id]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown.stdout.contains("| done (cached) |"),
        "{}",
        shown.stdout
    );
    let shown = sandbox.run(&["show", "--format", "json", id]).await;
    assert_eq!(subtask_marks(&shown.json()), cached());
}

#[tokio::test]
async fn no_cache_the_config_key_and_no_save_ask_the_workers_again() {
    let server = MockServer::start(script(false)).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    sandbox.run_json(&[]).await;
    let again = sandbox.run_json(&["--no-cache"]).await;
    assert_eq!(subtask_marks(&again), fresh());
    assert_eq!(worker_calls(&server), 4);

    sandbox.configure(&config(&server, "\n[cache]\nenabled = false\n"));
    let again = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&again), fresh());
    assert_eq!(worker_calls(&server), 6);

    // Nothing is read from the database without saving either.
    sandbox.configure(&config(&server, ""));
    let again = sandbox.run_json(&["--no-save"]).await;
    assert_eq!(subtask_marks(&again), fresh());
    assert_eq!(worker_calls(&server), 8);
    let again = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&again), cached(), "still there, unused");
}

#[tokio::test]
async fn an_answer_older_than_the_time_to_live_is_not_used() {
    let server = MockServer::start(script(false)).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    sandbox.run_json(&[]).await;
    let eight_days: i64 = 8 * 86_400_000;
    let aged = sandbox
        .open_db()
        .execute(
            "UPDATE result_cache SET created_at = created_at - ?1",
            [eight_days],
        )
        .expect("age the entries");
    assert_eq!(aged, 2);
    // The default time to live is 7 days.
    let again = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&again), fresh());
    assert_eq!(worker_calls(&server), 4);

    // The new answers replaced the old; aged again, a longer time to live keeps them.
    sandbox
        .open_db()
        .execute(
            "UPDATE result_cache SET created_at = created_at - ?1",
            [eight_days],
        )
        .expect("age the entries");
    sandbox.configure(&config(&server, "\n[cache]\nttl = \"30d\"\n"));
    let again = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&again), cached());
    assert_eq!(worker_calls(&server), 4);
}

#[tokio::test]
async fn cache_clear_forgets_every_answer_and_stats_count_them() {
    let server = MockServer::start(script(false)).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    sandbox.run_json(&[]).await;
    sandbox.run_json(&[]).await;
    let stats = sandbox.run(&["cache", "stats", "--json"]).await;
    assert_eq!(stats.code, Some(0), "{stats:?}");
    let stats: Value = serde_json::from_str(&stats.stdout).expect("JSON");
    assert_eq!(stats["entries"], 2, "{stats}");
    assert_eq!(stats["hits"], 2, "{stats}");
    assert_eq!(stats["tokens_saved"], 60, "{stats}");
    let text = sandbox.run(&["cache", "stats"]).await;
    assert!(text.stdout.contains("entries       2"), "{text:?}");

    let cleared = sandbox.run(&["cache", "clear"]).await;
    assert_eq!(cleared.code, Some(0), "{cleared:?}");
    assert_eq!(cleared.stdout, "deleted 2 cached answers\n");
    let again = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&again), fresh());
    assert_eq!(worker_calls(&server), 4);
}

#[tokio::test]
async fn a_different_worker_model_or_system_prompt_asks_the_workers_again() {
    let server = MockServer::start(script(false)).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    sandbox.run_json(&[]).await;
    let other_model = sandbox.run_json(&["--worker-model", "other-model"]).await;
    assert_eq!(subtask_marks(&other_model), fresh());
    assert_eq!(worker_calls(&server), 4);

    sandbox.configure(&config(
        &server,
        "\n[roles.research]\nsystem_prompt = \"You research, briefly.\"\n",
    ));
    let other_prompt = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&other_prompt), fresh());
    assert_eq!(worker_calls(&server), 6);
    // And each of those is cached in turn.
    let again = sandbox.run_json(&[]).await;
    assert_eq!(subtask_marks(&again), cached());
    assert_eq!(worker_calls(&server), 6);
}

#[tokio::test]
async fn an_answer_cut_off_at_the_token_limit_is_not_cached() {
    let server = MockServer::start(script(true)).await;
    let sandbox = Sandbox::new(&config(&server, ""));
    sandbox.run_json(&[]).await;
    sandbox.run_json(&[]).await;
    assert_eq!(worker_calls(&server), 4);
}

// ---- the dashboard's `r` ------------------------------------------------------------------

mod dashboard {
    use super::*;
    use crate::dashboard_support::{ch, key, model, sid};
    use maestro::cli::EngineArgs;
    use maestro::config::{Config, FileConfig};
    use maestro::engine::executor::Engine;
    use maestro::llm::{CallFuture, ChatRequest, Completion, DeltaSink, Provider};
    use maestro::protocol::{CallRole, Command, Event, EventKind, ModelOverrides, RunId};
    use maestro::tui::model::{Model, Node};
    use maestro::tui::update::{Action, Msg, update};
    use maestro::tui::{content, view};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    /// The tree's row of subtask `id` as drawn, and the detail pane's text.
    fn drawn(model: &mut Model, id: &str) -> (String, String) {
        let (w, h) = model.size;
        update(model, Msg::Resize(w, h));
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("a test terminal");
        terminal
            .draw(|frame| view::draw(frame, model))
            .expect("drawn");
        let buffer = terminal.backend().buffer();
        let row = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .find(|l| l.contains(&format!("✓ {id} ")))
            .unwrap_or_default();
        let detail = content::detail_lines(model, 80)
            .iter()
            .map(|l| {
                l.spans
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n");
        (row, detail)
    }
    use ratatui::crossterm::event::KeyCode;

    /// Answers at once and counts worker calls by subtask title.
    struct Counter {
        workers: Arc<Mutex<Vec<String>>>,
    }

    impl Provider for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn complete(&self, request: ChatRequest, _sink: DeltaSink) -> CallFuture<'_> {
            let text = match request.role {
                CallRole::Planner => plan_value(&["a", "b"]),
                CallRole::Worker => {
                    let user = request
                        .messages
                        .last()
                        .map(|m| m.content.clone())
                        .unwrap_or_default();
                    let which = if user.contains(&title("a")) { "a" } else { "b" };
                    self.workers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(which.to_owned());
                    format!("Findings for {which}.")
                }
                CallRole::Synthesizer => "# Report".to_owned(),
                CallRole::Validator => "PASS".to_owned(),
            };
            Box::pin(std::future::ready(Ok(Completion {
                text,
                ..Completion::default()
            })))
        }
    }

    async fn until_finished(
        events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
        run: RunId,
        mut each: impl FnMut(Event),
    ) {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("the run ends in time")
                .expect("the engine is running");
            let done = event.run == run && matches!(event.kind, EventKind::RunFinished { .. });
            each(event);
            if done {
                return;
            }
        }
    }

    #[tokio::test]
    async fn r_on_a_cached_subtask_asks_the_model() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let args = EngineArgs {
            db: Some(dir.path().join("runs.db")),
            ..EngineArgs::default()
        };
        let config =
            Config::merge(&args, FileConfig::default(), &|_: &str| None).expect("a config");
        let workers = Arc::new(Mutex::new(Vec::new()));
        let provider = maestro::cache::wrap(
            Arc::new(Counter {
                workers: Arc::clone(&workers),
            }),
            &config,
        );
        let (engine, mut events) =
            Engine::spawn(provider, config.run.clone(), config.executor.clone());
        let start = |id: RunId| Command::StartRun {
            id,
            query: QUERY.into(),
            plan: None,
            models: ModelOverrides::default(),
            follow_up: None,
            context: Default::default(),
        };
        let calls = || workers.lock().unwrap_or_else(|p| p.into_inner()).clone();

        let first = RunId::new();
        engine.send(start(first));
        until_finished(&mut events, first, |_| {}).await;
        assert_eq!(calls().len(), 2);

        let mut dashboard = model(false, (120, 40));
        let second = RunId::new();
        engine.send(start(second));
        until_finished(&mut events, second, |e| {
            update(&mut dashboard, Msg::Engine(e));
        })
        .await;
        assert_eq!(
            calls().len(),
            2,
            "the second run was answered from the cache"
        );
        // Out of the query box, onto `a` in the tree.
        key(&mut dashboard, KeyCode::Esc);
        dashboard.selected = Some(Node::Subtask(second, sid("a")));
        let (_, a) = dashboard.selected_subtask().expect("a is selected");
        assert!(a.cached);
        let (row, detail) = drawn(&mut dashboard, "a");
        assert!(
            row.contains("Subtask a") && row.contains(" cached "),
            "{row}"
        );
        assert!(detail.contains("cached, no tokens spent"), "{detail}");

        let actions = ch(&mut dashboard, 'r');
        assert!(!actions.is_empty(), "r does something");
        for action in actions {
            match action {
                Action::Send(command) => engine.send(command),
                other => panic!("r should only send a command, not {other:?}"),
            }
        }
        until_finished(&mut events, second, |e| {
            update(&mut dashboard, Msg::Engine(e));
        })
        .await;
        let calls = calls();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[2], "a", "r asked the model for `a` again");
        let (_, a) = dashboard.selected_subtask().expect("a is selected");
        assert!(!a.cached, "the new answer is the model's");
        let (row, detail) = drawn(&mut dashboard, "a");
        assert!(
            !row.contains("cached") && !detail.contains("cached"),
            "{row}\n{detail}"
        );
    }
}

#[tokio::test]
async fn a_resumed_run_keeps_its_cached_results_marked() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Phase 0: the plan is [a]. Phase 1: [a, b] and b fails. Phase 2: b answers.
    let phase = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&phase);
    let server = MockServer::start(move |r| {
        let phase = seen.load(Ordering::SeqCst);
        if r.is_planner() {
            let ids: &[&str] = if phase == 0 { &["a"] } else { &["a", "b"] };
            return Reply::text(plan_value(ids)).usage(100, 50);
        }
        if r.is_synthesis() {
            return Reply::text("# Report").usage(300, 80);
        }
        match r.worker_title() {
            Some(t) if t == title("b") && phase == 1 => Reply::status(500, "b is down"),
            Some(t) => Reply::text(format!("Findings for {t}.")).usage(20, 10),
            None => Reply::status(400, "mock: unexpected request"),
        }
    })
    .await;
    let sandbox = Sandbox::new(&config(&server, ""));
    sandbox.run_json(&[]).await;
    phase.store(1, Ordering::SeqCst);
    let out = sandbox.run(&["run", "-q", "--format", "json", QUERY]).await;
    assert_eq!(out.code, Some(3), "{out:?}");
    let partial = out.json();
    assert_eq!(partial["subtasks"][0]["cached"], true, "{partial}");
    let id = partial["run_id"].as_str().expect("run id");

    phase.store(2, Ordering::SeqCst);
    let out = sandbox.run(&["resume", "-q", "--format", "json", id]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        subtask_marks(&out.json()),
        [("a".into(), true, 0, 0), ("b".into(), false, 20, 10)]
    );
    let calls: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.worker_title())
        .collect();
    assert_eq!(calls, [title("a"), title("b"), title("b")]);
}
