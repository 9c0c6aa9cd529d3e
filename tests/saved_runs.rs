//! Saved runs through the real binary: `maestro run` saving as it happens (checked by opening
//! the database with rusqlite), `--db`, `[store] path`, `--no-save`, a database that cannot be
//! opened, `maestro history`, `show`, `resume` (the crash test: `kill -9`, then resume without
//! calling finished subtasks again), `rm` and `gc`.
//!
//! Every child gets a clean environment with `HOME`/XDG directories in a temp dir, and talks to
//! the in-process mock server.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mock::{MockRequest, MockServer, Reply};
use common::plans::{plan_value, result_for, title};
use common::{Maestro, Output, Sandbox};
use rusqlite::Connection;
use serde_json::{Value, json};

const QUERY: &str = "What are the impacts of EV adoption in cities?";
const SYNTHESIS: &str = "# EV report\n\nThe synthesised answer from the mock.";
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

// ---- running the binary -------------------------------------------------------------------

impl Sandbox {
    fn db(&self) -> PathBuf {
        self.path("runs.db")
    }

    /// The child with a clean environment and no `--db` of its own.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Maestro {
        self.child(args)
            .scrub("MY_KEY")
            .env("NO_COLOR", "1")
            .envs(env)
            .limit(PROCESS_LIMIT)
    }

    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).db(self.db()).run().await
    }

    fn run_sync(&self, args: &[&str]) -> Output {
        self.command(args, &[]).db(self.db()).run_blocking()
    }

    fn open_db(&self) -> Connection {
        Connection::open(self.db()).expect("open the database")
    }
}

// ---- scripting the mock -------------------------------------------------------------------

/// Planner answers `plan`; workers whose subtask id is in `failing` answer 500, others their
/// result (after `slow` for those in `slow_ids`); the synthesis answers `SYNTHESIS`.
fn script(
    plan: Value,
    failing: &'static [&'static str],
    slow_ids: &'static [&'static str],
    slow: Duration,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan.to_string();
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone()).usage(100, 50);
        }
        if r.is_synthesis() {
            return Reply::text(SYNTHESIS).usage(300, 80);
        }
        match r.worker_title() {
            Some(t) if failing.iter().any(|id| t == title(id)) => {
                Reply::status(500, "the worker's upstream is broken")
            }
            Some(t) if slow_ids.iter().any(|id| t == title(id)) => {
                Reply::text(result_for(&t)).usage(20, 10).delay(slow)
            }
            Some(t) => Reply::text(result_for(&t)).usage(20, 10),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

fn openai_config(server: &MockServer, extra: &str) -> String {
    format!(
        "provider = \"openai\"\n\n[openai]\nbase_url = \"{}\"\n\n[limits]\nretries = 0\n\
         timeout_secs = 20\nidle_timeout_secs = 20\n{extra}",
        server.openai_base_url()
    )
}

fn query_strings(conn: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).expect("prepare");
    stmt.query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

/// Worker calls of the mock, by subtask title.
fn worker_calls(requests: &[MockRequest], id: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.worker_title() == Some(title(id)))
        .count()
}

// ---- maestro run saves --------------------------------------------------------------------

#[tokio::test]
async fn a_run_is_saved_with_its_row_subtasks_calls_report_and_no_secret() {
    let server = MockServer::start(script(plan_value(&["a", "b"]), &[], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(
        &server,
        "concurrency = 3\n\n[models]\nplanner = \"big\"\nworker = \"small\"\n",
    ));
    let secret = "test-secret-never-saved-4821";
    let out = sandbox
        .run(
            &["run", "-q", "--api-key-env", "MY_KEY", QUERY],
            &[("MY_KEY", secret)],
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains("warning"), "{out:?}");

    let conn = sandbox.open_db();
    let (query, provider, planner, worker, status, settings, tokens_in): (
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
    ) = conn
        .query_row(
            "SELECT query, provider, planner_model, worker_model, status, settings, tokens_in
             FROM runs",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .expect("one run row");
    assert_eq!(query, QUERY);
    assert_eq!(provider, "openai");
    assert_eq!(planner, "big");
    assert_eq!(worker, "small");
    assert_eq!(status, "succeeded");
    assert_eq!(tokens_in, 100 + 20 + 20 + 300);
    let settings: Value = serde_json::from_str(&settings).expect("settings JSON");
    assert_eq!(settings["concurrency"], 3);
    assert_eq!(settings["api_key_env"], "MY_KEY");
    assert_eq!(settings["base_url"], server.openai_base_url().as_str());
    assert_eq!(settings["worker_model"], "small");

    let subtasks = query_strings(
        &conn,
        "SELECT id || ':' || status || ':' || result FROM subtasks ORDER BY position",
    );
    assert_eq!(
        subtasks,
        [
            format!("a:succeeded:{}", result_for(&title("a"))),
            format!("b:succeeded:{}", result_for(&title("b")))
        ]
    );
    let calls = query_strings(
        &conn,
        "SELECT role || ':' || outcome FROM attempts ORDER BY role, id",
    );
    assert_eq!(
        calls,
        [
            "planner:succeeded",
            "synthesizer:succeeded",
            "worker:succeeded",
            "worker:succeeded"
        ]
    );
    assert_eq!(
        query_strings(&conn, "SELECT text FROM syntheses"),
        [SYNTHESIS]
    );
    drop(conn);
    let bytes = std::fs::read(sandbox.db()).expect("read the db");
    let wal = std::fs::read(sandbox.path("runs.db-wal")).unwrap_or_default();
    for file in [&bytes, &wal] {
        assert!(
            !file.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the key reached the database"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_run_row_is_written_before_the_first_provider_call() {
    let sandbox_dir = tempfile::tempdir().expect("tempdir");
    let db = sandbox_dir.path().join("early.db");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None::<i64>));
    let seen_in_script = seen.clone();
    let db_in_script = db.clone();
    let plan = plan_value(&["a"]).to_string();
    // The planner's request checks the database: the run's row must be there already.
    let server = MockServer::start(move |r| {
        if r.is_planner() {
            let rows = Connection::open(&db_in_script)
                .and_then(|c| c.query_row("SELECT count(*) FROM runs", [], |row| row.get(0)))
                .unwrap_or(-1);
            *seen_in_script.lock().expect("lock") = Some(rows);
            return Reply::text(plan.clone());
        }
        if r.is_synthesis() {
            return Reply::text(SYNTHESIS);
        }
        Reply::text("a result")
    })
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox
        .command(
            &["--db", db.to_str().expect("utf-8 path"), "run", "-q", QUERY],
            &[],
        )
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(*seen.lock().expect("lock"), Some(1));
    server.shutdown().await;
}

#[tokio::test]
async fn the_default_database_is_in_the_data_dir_and_the_config_key_moves_it() {
    let server = MockServer::start(script(plan_value(&["a"]), &[], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    // No --db: the platform data folder (XDG_DATA_HOME here).
    let out = sandbox.command(&["run", "-q", QUERY], &[]).run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let default = sandbox.path("data").join("maestro").join("maestro.db");
    assert!(default.exists(), "no database at {}", default.display());

    let moved = sandbox.path("elsewhere.db");
    std::fs::write(
        sandbox.path("config.toml"),
        openai_config(
            &server,
            &format!("\n[store]\npath = \"{}\"\n", moved.display()),
        ),
    )
    .expect("config");
    let out = sandbox.command(&["run", "-q", QUERY], &[]).run().await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let conn = Connection::open(&moved).expect("the configured database");
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn no_save_writes_no_database() {
    let server = MockServer::start(script(plan_value(&["a"]), &[], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox.run(&["--no-save", "run", "-q", QUERY], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!sandbox.db().exists());
    assert!(
        !sandbox
            .path("data")
            .join("maestro")
            .join("maestro.db")
            .exists()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_warns_once_and_the_run_goes_on() {
    let server =
        MockServer::start(script(plan_value(&["a", "b"]), &["b"], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    std::fs::write(
        sandbox.db(),
        "this is not a database, just some text\n".repeat(200),
    )
    .expect("write garbage");
    let out = sandbox.run(&["run", "-q", QUERY], &[]).await;
    // The exit code is the run's own: a failed subtask makes it 3, as without a store.
    assert_eq!(out.code, Some(3), "{out:?}");
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("warning"))
        .collect();
    assert_eq!(warnings.len(), 1, "{out:?}");
    assert!(
        warnings[0].contains("not saved") && warnings[0].contains("runs.db"),
        "{out:?}"
    );
    assert!(out.stdout.contains(SYNTHESIS), "{out:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_cancel_by_ctrl_c_is_recorded_as_a_command() {
    let server = MockServer::start(script(
        plan_value(&["a"]),
        &[],
        &["a"],
        Duration::from_secs(20),
    ))
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let child = sandbox
        .command(&["run", "-q", QUERY], &[])
        .db(sandbox.db())
        .spawn();
    let pid = child.id().to_string();
    server.wait_for_requests(2, Duration::from_secs(10)).await;
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("runner");
    assert_eq!(out.code, Some(130), "{out:?}");
    let conn = sandbox.open_db();
    assert_eq!(
        query_strings(&conn, "SELECT kind FROM commands"),
        ["cancel_run"]
    );
    assert_eq!(
        query_strings(&conn, "SELECT status FROM runs"),
        ["cancelled"]
    );
    server.shutdown().await;
}

// ---- history and show ---------------------------------------------------------------------

/// Runs `maestro run --format json` and returns its JSON report.
async fn saved_run(sandbox: &Sandbox, query: &str) -> Value {
    let out = sandbox
        .run(&["run", "-q", "--format", "json", query], &[])
        .await;
    assert!(matches!(out.code, Some(0 | 3)), "{out:?}");
    out.json()
}

#[tokio::test]
async fn history_lists_runs_newest_first_with_their_figures() {
    let server =
        MockServer::start(script(plan_value(&["a", "b"]), &["b"], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let first = saved_run(&sandbox, "First question about buses").await;
    let second = saved_run(&sandbox, "Second question about trams").await;

    let out = sandbox.run(&["history", "--json"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let list = out.json();
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], second["run_id"]);
    assert_eq!(list[1]["id"], first["run_id"]);
    let entry = &list[0];
    let keys: Vec<&str> = entry
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "id",
        "short_id",
        "parent",
        "query",
        "provider",
        "status",
        "started_ms",
        "finished_ms",
        "elapsed_ms",
        "usage",
        "cost_usd",
        "succeeded",
        "failed",
        "total",
    ];
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected);
    assert_eq!(entry["query"], "Second question about trams");
    assert_eq!(entry["provider"], "openai");
    assert_eq!(entry["status"], "partial");
    assert_eq!(entry["parent"], Value::Null);
    assert_eq!(entry["succeeded"], 1);
    assert_eq!(entry["failed"], 1);
    assert_eq!(entry["total"], 2);
    assert_eq!(entry["usage"], second["usage"]);
    assert_eq!(entry["elapsed_ms"], second["elapsed_ms"]);
    let short = entry["short_id"].as_str().expect("short id");
    assert!(short.len() >= 8);
    assert!(
        second["run_id"]
            .as_str()
            .expect("id")
            .replace('-', "")
            .starts_with(short)
    );
    assert!(entry["finished_ms"].as_u64() >= entry["started_ms"].as_u64());

    // --limit, --search, --status
    let out = sandbox
        .run(&["history", "--json", "--limit", "1"], &[])
        .await;
    assert_eq!(out.json().as_array().map(Vec::len), Some(1));
    let out = sandbox
        .run(&["history", "--json", "--search", "BUSES"], &[])
        .await;
    let found = out.json();
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["id"], first["run_id"]);
    let out = sandbox
        .run(&["history", "--json", "--status", "succeeded"], &[])
        .await;
    assert_eq!(out.json(), json!([]));

    // The table: one line per run under a header, the short id first.
    let out = sandbox.run(&["history"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0].starts_with("ID"), "{out:?}");
    assert!(lines[1].starts_with(short), "{out:?}");
    assert!(
        lines[1].contains("partial") && lines[1].contains("1/1/2"),
        "{out:?}"
    );
    assert!(lines[1].contains("Second question about trams"), "{out:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn show_prints_the_same_json_and_markdown_as_the_run_did() {
    let server =
        MockServer::start(script(plan_value(&["a", "b"]), &["b"], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let ran = saved_run(&sandbox, QUERY).await;
    let id = ran["run_id"].as_str().expect("id").to_owned();
    let prefix: String = id.chars().take(10).collect();

    let out = sandbox
        .run(&["show", &prefix, "--format", "json"], &[])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown = out.json();
    let fields = [
        "run_id",
        "query",
        "status",
        "error",
        "plan",
        "synthesis",
        "synthesized",
        "usage",
        "elapsed_ms",
        "notices",
    ];
    for field in fields {
        assert_eq!(shown[field], ran[field], "field {field}");
    }
    let ran_subtasks = ran["subtasks"].as_array().expect("subtasks");
    let shown_subtasks = shown["subtasks"].as_array().expect("subtasks");
    assert_eq!(ran_subtasks.len(), shown_subtasks.len());
    for (r, s) in ran_subtasks.iter().zip(shown_subtasks) {
        for (key, value) in r.as_object().expect("object") {
            assert_eq!(&s[key], value, "subtask {} field {key}", r["id"]);
        }
        assert_eq!(
            s.as_object().map(|o| o.len()),
            r.as_object().map(|o| o.len())
        );
    }
    assert_eq!(
        shown.as_object().map(|o| o.len()),
        ran.as_object().map(|o| o.len())
    );

    // Markdown: the same report `maestro run` prints.
    let md_run = sandbox.run(&["show", &id], &[]).await;
    assert_eq!(md_run.code, Some(0), "{md_run:?}");
    assert!(md_run.stdout.contains(SYNTHESIS), "{md_run:?}");
    assert!(md_run.stdout.contains(&title("b")), "{md_run:?}");

    // Unknown id: a usage error naming it.
    let out = sandbox.run(&["show", "ffffffff"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("ffffffff"), "{out:?}");
    let out = sandbox.run(&["show", "not-hex!"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    server.shutdown().await;
}

#[test]
fn history_of_a_database_that_does_not_exist_says_so_and_creates_nothing() {
    let sandbox = Sandbox::new("");
    let out = sandbox.run_sync(&["history"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("runs.db"), "{out:?}");
    assert!(!sandbox.db().exists());
}

#[test]
fn history_needs_no_provider_key() {
    // A config whose provider has no key would stop `maestro run`; history only reads.
    let sandbox = Sandbox::new("provider = \"anthropic\"\n");
    Connection::open(sandbox.db()).expect("create an empty file");
    let out = sandbox.run_sync(&["history", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json(), json!([]));
}

// ---- resume -------------------------------------------------------------------------------

fn succeeded_subtasks(db: &Path) -> i64 {
    Connection::open(db)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM subtasks WHERE status = 'succeeded'",
                [],
                |r| r.get(0),
            )
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn after_kill_9_resume_finishes_the_run_without_calling_finished_subtasks_again() {
    let server = MockServer::start(script(
        plan_value(&["a", "b", "c", "d"]),
        &[],
        &["c", "d"],
        Duration::from_secs(60),
    ))
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, "concurrency = 4\n"));
    let mut child = sandbox
        .command(&["run", "-q", QUERY], &[])
        .db(sandbox.db())
        .spawn();
    // Wait until a and b are on disk (c and d hang), then kill the process outright.
    let deadline = Instant::now() + Duration::from_secs(15);
    while succeeded_subtasks(&sandbox.db()) < 2 {
        assert!(Instant::now() < deadline, "a and b were never saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.child.kill().expect("kill -9");
    child.child.wait().expect("reap");

    let conn = sandbox.open_db();
    assert_eq!(query_strings(&conn, "SELECT status FROM runs"), ["running"]);
    drop(conn);
    let before = server.requests().len();
    assert_eq!(worker_calls(&server.requests(), "a"), 1);

    // The mock answers c and d at once now.
    server.set_script(script(
        plan_value(&["a", "b", "c", "d"]),
        &[],
        &[],
        Duration::ZERO,
    ));
    let history = sandbox.run(&["history", "--json"], &[]).await;
    let list = history.json();
    assert_eq!(list[0]["status"], "interrupted", "{history:?}");
    let short = list[0]["short_id"].as_str().expect("short id").to_owned();

    let out = sandbox
        .run(&["resume", &short, "--format", "json", "-q"], &[])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let report = out.json();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["synthesis"], SYNTHESIS);
    assert_eq!(report["run_id"], list[0]["id"]);

    let requests = server.requests();
    let after = &requests[before..];
    assert_eq!(worker_calls(after, "a"), 0, "a was called again");
    assert_eq!(worker_calls(after, "b"), 0, "b was called again");
    assert_eq!(worker_calls(after, "c"), 1);
    assert_eq!(worker_calls(after, "d"), 1);
    assert_eq!(after.iter().filter(|r| r.is_planner()).count(), 0);
    assert_eq!(after.iter().filter(|r| r.is_synthesis()).count(), 1);
    // The resumed calls used the saved settings: the same mock, the same model.
    assert!(after.iter().all(|r| r.model() == requests[0].model()));

    let conn = sandbox.open_db();
    assert_eq!(
        query_strings(&conn, "SELECT status FROM runs"),
        ["succeeded"]
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 1);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM subtasks WHERE status = 'succeeded'"
        ),
        4
    );
    // Saved results were not written again: one synthesis, a's tokens counted once.
    assert_eq!(count(&conn, "SELECT count(*) FROM syntheses"), 1);
    assert_eq!(
        count(&conn, "SELECT tokens_in FROM subtasks WHERE id = 'a'"),
        20
    );
    server.shutdown().await;
}

#[tokio::test]
async fn resume_of_a_partly_failed_run_calls_only_the_failed_subtask_and_exits_0() {
    let server = MockServer::start(script(
        plan_value(&["a", "b", "c"]),
        &["b"],
        &[],
        Duration::ZERO,
    ))
    .await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let ran = saved_run(&sandbox, QUERY).await;
    assert_eq!(ran["status"], "partial");
    let before = server.requests().len();
    server.set_script(script(
        plan_value(&["a", "b", "c"]),
        &[],
        &[],
        Duration::ZERO,
    ));
    let id = ran["run_id"].as_str().expect("id").to_owned();
    let out = sandbox.run(&["resume", &id, "-q"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(SYNTHESIS), "{out:?}");
    let requests = server.requests();
    let after = &requests[before..];
    assert_eq!(worker_calls(after, "a"), 0);
    assert_eq!(worker_calls(after, "b"), 1);
    assert_eq!(worker_calls(after, "c"), 0);
    assert_eq!(after.len(), 2, "b and a new synthesis");

    // A run with every result and a written report has nothing left to call.
    let before = server.requests().len();
    let out = sandbox.run(&["resume", &id, "-q"], &[]).await;
    assert_eq!(out.code, Some(0), "nothing left to do: {out:?}");
    assert_eq!(server.requests().len(), before);
    server.shutdown().await;
}

#[test]
fn resume_of_an_unknown_run_is_a_usage_error() {
    let sandbox = Sandbox::new("");
    Connection::open(sandbox.db()).expect("create an empty file");
    let out = sandbox.run_sync(&["resume", "0123abcd"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("0123abcd"), "{out:?}");
}

// ---- rm and gc ----------------------------------------------------------------------------

#[tokio::test]
async fn rm_deletes_runs_by_prefix_and_gc_deletes_old_ones() {
    let server = MockServer::start(script(plan_value(&["a"]), &[], &[], Duration::ZERO)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let one = saved_run(&sandbox, "one").await;
    let two = saved_run(&sandbox, "two").await;
    let three = saved_run(&sandbox, "three").await;
    let id = |v: &Value| v["run_id"].as_str().expect("id").to_owned();

    // The short id `history` shows is a unique prefix (ids made in the same second share
    // their first digits, so a fixed length would not be).
    let list = sandbox.run(&["history", "--json"], &[]).await.json();
    let short = list[2]["short_id"].as_str().expect("short id").to_owned();
    assert_eq!(list[2]["id"], one["run_id"]);
    let out = sandbox.run(&["rm", &short], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "deleted 1 run");
    let conn = sandbox.open_db();
    assert_eq!(
        count(
            &conn,
            &format!("SELECT count(*) FROM runs WHERE id = '{}'", id(&one))
        ),
        0
    );
    assert_eq!(
        count(
            &conn,
            &format!(
                "SELECT count(*) FROM subtasks WHERE run_id = '{}'",
                id(&one)
            )
        ),
        0,
        "its subtasks went with it"
    );
    // An unknown id deletes nothing, even with a good one beside it.
    let out = sandbox.run(&["rm", &id(&two), "ffffffff"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 2);

    // gc: nothing is 30 days old yet; make `two` 40 days old.
    let out = sandbox.run(&["gc", "--older-than", "30d"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("deleted 0 runs"), "{out:?}");
    let forty_days_ms: i64 = 40 * 86_400 * 1000;
    conn.execute(
        "UPDATE runs SET started_at = started_at - ?1 WHERE id = ?2",
        rusqlite::params![forty_days_ms, id(&two)],
    )
    .expect("age a run");
    let out = sandbox.run(&["gc", "--older-than", "30d"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("deleted 1 run "), "{out:?}");
    assert_eq!(query_strings(&conn, "SELECT id FROM runs"), [id(&three)]);
    let out = sandbox.run(&["gc", "--older-than", "soon"], &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--older-than"), "{out:?}");
    server.shutdown().await;
}

// ---- tool calls and sources ------------------------------------------------------------------

/// `a` (a researcher) fetches two pages of the fixture site, one per round (the mock names
/// both calls `call_1`), then answers; `b` answers at once, or fails while `b_fails`.
fn fetching_script(
    site: &common::site::Site,
    b_fails: bool,
) -> impl Fn(&MockRequest) -> Reply + Send + Sync + 'static {
    let plan = plan_value(&["a", "b"]).to_string();
    let pages = [site.url("/page.html"), site.url("/plain.txt")];
    move |r| {
        if r.is_planner() {
            return Reply::text(plan.clone()).usage(100, 50);
        }
        if r.is_synthesis() {
            return Reply::text(SYNTHESIS).usage(300, 80);
        }
        match r.worker_title() {
            Some(t) if t == title("a") && !r.tools().is_empty() => {
                match pages.get(r.tool_results().len()) {
                    Some(page) => {
                        let args = json!({ "url": page }).to_string();
                        Reply::calls(&[("fetch_url", args.as_str())]).usage(20, 5)
                    }
                    None => Reply::text(result_for(&t)).usage(20, 10),
                }
            }
            Some(t) if t == title("b") && b_fails => Reply::status(500, "b's upstream is broken"),
            Some(t) => Reply::text(result_for(&t)).usage(20, 10),
            None => Reply::status(400, "mock: unexpected request"),
        }
    }
}

fn sources_of(report: &Value, id: &str) -> Value {
    report["subtasks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .map(|s| s["sources"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_run_that_fetches_saves_its_tool_calls_and_sources_and_show_lists_them_as_it_did() {
    let site = common::site::Site::start().await;
    let server = MockServer::start(fetching_script(&site, false)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let out = sandbox
        .run(
            &[
                "run",
                "-q",
                "--format",
                "json",
                "--allow-host",
                "127.0.0.1",
                QUERY,
            ],
            &[],
        )
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let ran = out.json();
    let live = sources_of(&ran, "a");
    assert_eq!(live.as_array().map(Vec::len), Some(2), "{ran}");
    assert_eq!(live[0]["location"], site.url("/page.html").as_str());
    assert_eq!(live[1]["location"], site.url("/plain.txt").as_str());
    assert_eq!(site.requests(), 2);

    let conn = sandbox.open_db();
    assert_eq!(
        query_strings(
            &conn,
            "SELECT tool || ' ' || call_id || ' ' || ok || ' ' || summary FROM tool_calls
             WHERE subtask_id = 'a' ORDER BY id"
        ),
        [
            format!("fetch_url call_1 1 HTTP 200 · {}", site.url("/page.html")),
            format!("fetch_url call_1 1 HTTP 200 · {}", site.url("/plain.txt")),
        ]
    );
    let texts = query_strings(
        &conn,
        "SELECT text FROM sources WHERE subtask_id = 'a' ORDER BY id",
    );
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0].contains("High water is at") && !texts[0].contains("secretToken"),
        "the text the model was handed: {}",
        texts[0]
    );
    assert!(texts[1].contains("second line"), "{}", texts[1]);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM sources WHERE subtask_id = 'b'"),
        0
    );

    // `show` lists the same sources, field by field, as the live run did.
    let id = ran["run_id"].as_str().expect("id").to_owned();
    let out = sandbox.run(&["show", &id, "--format", "json"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let shown = out.json();
    assert_eq!(sources_of(&shown, "a"), live);
    assert_eq!(sources_of(&shown, "b"), Value::Null);
    let out = sandbox.run(&["show", &id], &[]).await;
    assert!(out.stdout.contains("## Sources"), "{out:?}");
    assert!(out.stdout.contains(&site.url("/plain.txt")), "{out:?}");

    // The export has every call with its source and no text.
    let out = sandbox.run(&["export", &id, "--format", "json"], &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let exported = out.json();
    let calls = exported["tool_calls"].as_array().expect("tool calls");
    assert_eq!(calls.len(), 2, "{exported}");
    assert_eq!(
        calls[1]["source"]["location"],
        site.url("/plain.txt").as_str()
    );
    assert_eq!(calls[1]["source"]["text_bytes"], texts[1].len());
    assert_eq!(sources_of(&exported, "a"), live);
    assert!(!out.stdout.contains("High water is at"), "no source text");
    let out = sandbox.run(&["export", &id], &[]).await;
    assert!(out.stdout.contains("### Tool calls"), "{out:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_resumed_run_keeps_the_sources_of_the_results_it_kept() {
    let site = common::site::Site::start().await;
    let server = MockServer::start(fetching_script(&site, true)).await;
    let sandbox = Sandbox::new(&openai_config(&server, ""));
    let allow = ["--allow-host", "127.0.0.1"];
    let mut args = vec!["run", "-q", "--format", "json"];
    args.extend(allow);
    args.push(QUERY);
    let out = sandbox.run(&args, &[]).await;
    assert_eq!(out.code, Some(3), "b failed: {out:?}");
    let ran = out.json();
    let live = sources_of(&ran, "a");
    assert_eq!(live.as_array().map(Vec::len), Some(2), "{ran}");

    server.set_script(fetching_script(&site, false));
    let id = ran["run_id"].as_str().expect("id").to_owned();
    let before = server.requests().len();
    let mut args = vec!["resume", &id, "-q", "--format", "json"];
    args.extend(allow);
    let out = sandbox.run(&args, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let after = &server.requests()[before..];
    assert_eq!(worker_calls(after, "a"), 0, "a's result is kept");
    assert_eq!(site.requests(), 2, "nothing fetched again");
    let resumed = out.json();
    assert_eq!(sources_of(&resumed, "a"), live, "{resumed}");

    let conn = sandbox.open_db();
    assert_eq!(
        count(&conn, "SELECT count(*) FROM sources"),
        2,
        "saved once"
    );
    let out = sandbox.run(&["show", &id, "--format", "json"], &[]).await;
    assert_eq!(sources_of(&out.json(), "a"), live);
    server.shutdown().await;
}
