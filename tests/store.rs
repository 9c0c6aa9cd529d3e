//! The run store against real SQLite files in temporary folders: events in, rows out (read
//! back with a separate connection, field by field); how soon a result is on disk; several
//! writers and several processes on one file; `kill -9` in the middle of a run; a full disk
//! (a small tmpfs in a private mount namespace); files that are empty, garbage, damaged,
//! read-only, too new or another program's; runs left behind by dead processes; the history
//! queries.
//!
//! Events are built from their JSON form, the same one `--events FILE` writes, so these tests
//! do not depend on where the plan types live. The multi-process tests run this test binary
//! again as a child (`child_writer`, which does nothing unless its environment says so).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use maestro::protocol::{Event, EventKind, RunCommand, RunId, SubtaskId, Usage};
use maestro::store::{
    AttemptOutcome, CommandRecord, RunFilter, RunMeta, SavedRunStatus, SavedSubtaskStatus, Store,
    StoreError, StoreStatus, StoreWriter,
};
use rusqlite::Connection;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ev(run: RunId, ts_ms: u64, kind: Value) -> Event {
    let mut value = kind;
    value["run"] = json!(run);
    value["ts_ms"] = json!(ts_ms);
    serde_json::from_value(value).expect("a valid event")
}

fn meta(id: RunId, query: &str) -> RunMeta {
    RunMeta {
        id,
        query: query.into(),
        provider: "openai".into(),
        planner_model: Some("plan-m".into()),
        worker_model: Some("work-m".into()),
        synthesizer_model: Some("synth-m".into()),
        preset: Some("research".into()),
        settings: json!({"max_concurrency": 4, "openai": {"api_key": "sk-not-a-real-key",
                          "api_key_env": "OPENAI_API_KEY"}}),
        parent: None,
        started_ms: 1_000,
        context: Default::default(),
    }
}

fn plan(n: usize) -> Value {
    let subtasks: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("t{i}"), "worker": "research", "title": format!("Title {i}"),
                   "description": format!("Describe {i}"), "focus_areas": ["x", "y"],
                   "depends_on": [], "priority": "low"})
        })
        .collect();
    json!({"type": "plan_ready", "plan": {"query_analysis": "qa", "subtasks": subtasks,
           "synthesis_guidance": "sg"}})
}

fn usage(i: u64, o: u64) -> Value {
    json!({"tokens_in": i, "tokens_out": o, "estimated": false})
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("maestro.db")
}

fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("raw connection");
    conn.busy_timeout(Duration::from_secs(10)).expect("timeout");
    conn
}

/// Every row of `sql`, each column as JSON (NULL, integer or text).
fn rows(conn: &Connection, sql: &str) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(sql).expect(sql);
    let n = stmt.column_count();
    stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Null => Value::Null,
                    rusqlite::types::Value::Integer(n) => json!(n),
                    rusqlite::types::Value::Text(t) => json!(t),
                    other => json!(format!("{other:?}")),
                })
            })
            .collect::<rusqlite::Result<Vec<Value>>>()
    })
    .expect(sql)
    .collect::<Result<_, _>>()
    .expect(sql)
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// A whole run with a planner retry, a worker retry, a failure, a block, an edit and re-run,
/// two reports and three commands.
#[test]
fn events_become_rows_field_by_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer
        .begin_run(meta(run, "EV impacts?"))
        .wait(WAIT)
        .expect("run row");
    let three = json!({"type": "plan_ready", "plan": {"query_analysis": "qa", "subtasks": [
        {"id": "a", "worker": "research", "title": "A", "description": "desc a",
         "focus_areas": ["f1"], "depends_on": [], "priority": "high"},
        {"id": "b", "worker": "analysis", "title": "B", "description": "desc b",
         "depends_on": ["a"]},
        {"id": "c", "worker": "research", "title": "C", "description": "desc c",
         "depends_on": ["b"], "priority": "low"}], "synthesis_guidance": "sg"}});
    let events = [
        (1000, json!({"type": "run_started", "query": "EV impacts?"})),
        (
            1001,
            json!({"type": "planning_started", "attempt": 1, "model": "plan-m"}),
        ),
        (
            1101,
            json!({"type": "planning_retrying", "attempt": 1, "delay_ms": 50,
                      "reason": "timeout"}),
        ),
        (
            1200,
            json!({"type": "planning_started", "attempt": 2, "model": "plan-m"}),
        ),
        (1300, three),
        (1301, json!({"type": "notice", "message": "plan cut"})),
        (
            1400,
            json!({"type": "subtask_started", "subtask": "a", "attempt": 1,
                      "worker": "research", "model": "work-m"}),
        ),
        (
            1450,
            json!({"type": "subtask_delta", "subtask": "a", "attempt": 1, "text": "res"}),
        ),
        (
            1600,
            json!({"type": "subtask_succeeded", "subtask": "a", "attempt": 1,
                      "elapsed_ms": 200, "usage": usage(10, 20), "result": "result A"}),
        ),
        (
            1610,
            json!({"type": "subtask_started", "subtask": "b", "attempt": 1,
                      "worker": "analysis", "model": "work-m"}),
        ),
        (
            1700,
            json!({"type": "subtask_retrying", "subtask": "b", "attempt": 1,
                      "delay_ms": 250, "reason": "HTTP 500", "error": "HTTP 500: upstream"}),
        ),
        (
            1950,
            json!({"type": "subtask_started", "subtask": "b", "attempt": 2,
                      "worker": "analysis", "model": "work-m"}),
        ),
        (
            2050,
            json!({"type": "subtask_failed", "subtask": "b", "attempt": 2, "elapsed_ms": 100,
                      "error": "boom", "partial": "half of B"}),
        ),
        (
            2051,
            json!({"type": "subtask_blocked", "subtask": "c", "waiting_on": ["b"]}),
        ),
        (
            2100,
            json!({"type": "synthesis_started", "attempt": 1, "model": "synth-m"}),
        ),
        (
            2150,
            json!({"type": "synthesis_delta", "attempt": 1, "text": "Rep"}),
        ),
        (
            2200,
            json!({"type": "synthesis_finished", "attempt": 1, "text": "Report v1",
                      "synthesized": true, "usage": usage(5, 50), "error": null}),
        ),
        (
            2201,
            json!({"type": "run_finished", "status": "partial", "elapsed_ms": 1201,
                      "usage": usage(100, 200), "succeeded": 1, "failed": 2, "total": 3,
                      "error": null}),
        ),
    ];
    for (ts, kind) in events {
        writer.event(&ev(run, ts, kind));
    }
    writer.command(CommandRecord {
        run,
        at_ms: 3000,
        command: RunCommand::EditSubtask {
            id: SubtaskId::new("b"),
            description: Some("desc b, better".into()),
            worker: None,
        },
    });
    let more = [
        (
            3001,
            json!({"type": "subtask_edited", "subtask": "b",
                      "description": "desc b, better", "worker": "analysis"}),
        ),
        (
            3002,
            json!({"type": "subtask_queued", "subtask": "b", "waiting_on": []}),
        ),
        (
            3003,
            json!({"type": "subtask_started", "subtask": "b", "attempt": 3,
                      "worker": "analysis", "model": "work-m"}),
        ),
        (
            3100,
            json!({"type": "subtask_succeeded", "subtask": "b", "attempt": 3,
                      "elapsed_ms": 97, "usage": usage(1, 2), "result": "result B"}),
        ),
        (
            3101,
            json!({"type": "subtask_started", "subtask": "c", "attempt": 1,
                      "worker": "research", "model": "work-m"}),
        ),
        (
            3102,
            json!({"type": "subtask_cancelled", "subtask": "c", "attempt": 1}),
        ),
        (
            3150,
            json!({"type": "subtask_started", "subtask": "a", "attempt": 2,
                      "worker": "research", "model": "work-m"}),
        ),
        (
            3160,
            json!({"type": "subtask_succeeded", "subtask": "a", "attempt": 2,
                      "elapsed_ms": 10, "usage": usage(1, 1), "result": "result A2"}),
        ),
        (
            3200,
            json!({"type": "synthesis_started", "attempt": 2, "model": "synth-m"}),
        ),
        (
            3300,
            json!({"type": "synthesis_finished", "attempt": 2, "text": "Joined",
                      "synthesized": false, "usage": usage(0, 0), "error": "HTTP 400"}),
        ),
        (
            3301,
            json!({"type": "run_finished", "status": "partial", "elapsed_ms": 2301,
                      "usage": usage(101, 202), "succeeded": 2, "failed": 1, "total": 3,
                      "error": "synthesis failed"}),
        ),
    ];
    writer.command(CommandRecord {
        run,
        at_ms: 3050,
        command: RunCommand::CancelSubtask(SubtaskId::new("c")),
    });
    for (ts, kind) in more {
        writer.event(&ev(run, ts, kind));
    }
    writer.command(CommandRecord {
        run,
        at_ms: 4000,
        command: RunCommand::Resynthesize,
    });
    writer.flush().wait(WAIT).expect("flushed");
    assert_eq!(writer.status(), StoreStatus::Saving);
    assert_eq!(writer.stats().skipped, 0);

    let conn = raw(&path);
    let id = run.to_string();
    let row = rows(
        &conn,
        &format!(
            "SELECT query, provider, planner_model, worker_model, synthesizer_model, preset,
                    status, started_at, finished_at, elapsed_ms, tokens_in, tokens_out, error
             FROM runs WHERE id = '{id}'"
        ),
    );
    assert_eq!(
        row,
        vec![vec![
            json!("EV impacts?"),
            json!("openai"),
            json!("plan-m"),
            json!("work-m"),
            json!("synth-m"),
            json!("research"),
            json!("partial"),
            json!(1000),
            json!(3301),
            json!(2301),
            json!(101),
            json!(202),
            json!("synthesis failed"),
        ]]
    );
    let settings: String = conn
        .query_row("SELECT settings FROM runs", [], |r| r.get(0))
        .expect("settings");
    let settings: Value = serde_json::from_str(&settings).expect("json");
    assert_eq!(
        settings,
        json!({"max_concurrency": 4, "openai": {"api_key_env": "OPENAI_API_KEY"}})
    );
    let plan_json: String = conn
        .query_row("SELECT plan FROM runs", [], |r| r.get(0))
        .expect("plan");
    let plan_json: Value = serde_json::from_str(&plan_json).expect("plan json");
    assert_eq!(plan_json["subtasks"][1]["description"], "desc b");

    let subtasks = rows(
        &conn,
        "SELECT id, position, worker, title, description, focus_areas, depends_on, priority,
                status, attempts, model, result, error, tokens_in, tokens_out, started_at,
                finished_at, elapsed_ms
         FROM subtasks ORDER BY position",
    );
    assert_eq!(
        subtasks,
        vec![
            vec![
                json!("a"),
                json!(0),
                json!("research"),
                json!("A"),
                json!("desc a"),
                json!("[\"f1\"]"),
                json!("[]"),
                json!("high"),
                json!("succeeded"),
                json!(2),
                json!("work-m"),
                json!("result A2"),
                Value::Null,
                json!(11),
                json!(21),
                json!(3150),
                json!(3160),
                json!(10),
            ],
            vec![
                json!("b"),
                json!(1),
                json!("analysis"),
                json!("B"),
                json!("desc b, better"),
                json!("[]"),
                json!("[\"a\"]"),
                json!("medium"),
                json!("succeeded"),
                json!(3),
                json!("work-m"),
                json!("result B"),
                Value::Null,
                json!(1),
                json!(2),
                json!(3003),
                json!(3100),
                json!(97),
            ],
            vec![
                json!("c"),
                json!(2),
                json!("research"),
                json!("C"),
                json!("desc c"),
                json!("[]"),
                json!("[\"b\"]"),
                json!("low"),
                json!("cancelled"),
                json!(1),
                json!("work-m"),
                Value::Null,
                Value::Null,
                json!(0),
                json!(0),
                json!(3101),
                json!(3102),
                Value::Null,
            ],
        ]
    );

    let mut stmt = conn
        .prepare(
            "SELECT role, coalesce(subtask_id, '-'), attempt, outcome, started_at,
                    coalesce(finished_at, -1), coalesce(elapsed_ms, -1), coalesce(error, ''),
                    coalesce(retry_delay_ms, -1), coalesce(output, ''), coalesce(tokens_out, -1)
             FROM attempts ORDER BY id",
        )
        .expect("prepare");
    type AttemptRow = (
        String,
        String,
        i64,
        String,
        i64,
        i64,
        i64,
        String,
        i64,
        String,
        i64,
    );
    let attempts: Vec<AttemptRow> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let s = |v: &str| v.to_owned();
    assert_eq!(
        attempts,
        vec![
            (
                s("planner"),
                s("-"),
                1,
                s("retried"),
                1001,
                1101,
                100,
                s("timeout"),
                50,
                s(""),
                -1
            ),
            (
                s("planner"),
                s("-"),
                2,
                s("succeeded"),
                1200,
                1300,
                100,
                s(""),
                -1,
                s(""),
                -1
            ),
            (
                s("worker"),
                s("a"),
                1,
                s("succeeded"),
                1400,
                1600,
                200,
                s(""),
                -1,
                s("result A"),
                20
            ),
            (
                s("worker"),
                s("b"),
                1,
                s("retried"),
                1610,
                1700,
                90,
                s("HTTP 500: upstream"),
                250,
                s(""),
                -1
            ),
            (
                s("worker"),
                s("b"),
                2,
                s("failed"),
                1950,
                2050,
                100,
                s("boom"),
                -1,
                s("half of B"),
                -1
            ),
            (
                s("synthesizer"),
                s("-"),
                1,
                s("succeeded"),
                2100,
                2200,
                100,
                s(""),
                -1,
                s(""),
                50
            ),
            // The current result is in `subtasks` only; a replaced one stays with its attempt.
            (
                s("worker"),
                s("b"),
                3,
                s("succeeded"),
                3003,
                3100,
                97,
                s(""),
                -1,
                s(""),
                2
            ),
            (
                s("worker"),
                s("c"),
                1,
                s("cancelled"),
                3101,
                3102,
                1,
                s(""),
                -1,
                s(""),
                -1
            ),
            (
                s("worker"),
                s("a"),
                2,
                s("succeeded"),
                3150,
                3160,
                10,
                s(""),
                -1,
                s(""),
                1
            ),
            (
                s("synthesizer"),
                s("-"),
                2,
                s("failed"),
                3200,
                3300,
                100,
                s("HTTP 400"),
                -1,
                s(""),
                -1
            ),
        ]
    );

    let syntheses = rows(
        &conn,
        "SELECT version, attempt, model, text, synthesized, error, finished_at
         FROM syntheses ORDER BY version",
    );
    assert_eq!(
        syntheses,
        vec![
            vec![
                json!(1),
                json!(1),
                json!("synth-m"),
                json!("Report v1"),
                json!(1),
                Value::Null,
                json!(2200)
            ],
            vec![
                json!(2),
                json!(2),
                json!("synth-m"),
                json!("Joined"),
                json!(0),
                json!("HTTP 400"),
                json!(3300)
            ],
        ]
    );

    type CommandRow = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let commands: Vec<CommandRow> = conn
        .prepare(
            "SELECT at, kind, subtask_id, old_description, new_description, old_worker,
                    new_worker FROM commands ORDER BY id",
        )
        .expect("prepare")
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        commands,
        vec![
            (
                3000,
                s("edit_subtask"),
                Some(s("b")),
                Some(s("desc b")),
                Some(s("desc b, better")),
                None,
                None
            ),
            (
                3050,
                s("cancel_subtask"),
                Some(s("c")),
                None,
                None,
                None,
                None
            ),
            (4000, s("resynthesize"), None, None, None, None, None),
        ]
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM notices WHERE message = 'plan cut'"
        ),
        1
    );

    // The same run read back through the store.
    drop(writer);
    let store = Store::open(&path).expect("store");
    let saved = store.load_run(run).expect("load");
    assert_eq!(saved.summary.status, SavedRunStatus::Partial);
    assert_eq!(
        (
            saved.summary.succeeded,
            saved.summary.failed,
            saved.summary.total
        ),
        (2, 1, 3)
    );
    assert_eq!(saved.subtasks[2].status, SavedSubtaskStatus::Cancelled);
    assert_eq!(saved.attempts.len(), 10);
    assert_eq!(saved.attempts[4].outcome, AttemptOutcome::Failed);
    assert_eq!(saved.attempts[4].output.as_deref(), Some("half of B"));
    // Read back, every successful attempt carries its result.
    let outputs: Vec<(&str, u32, Option<&str>)> = saved
        .attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Succeeded && a.subtask.is_some())
        .map(|a| {
            (
                a.subtask.as_ref().map_or("", |s| s.as_str()),
                a.attempt,
                a.output.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        outputs,
        [
            ("a", 1, Some("result A")),
            ("b", 3, Some("result B")),
            ("a", 2, Some("result A2"))
        ]
    );
    assert_eq!(saved.syntheses.len(), 2);
    assert_eq!(saved.commands.len(), 3);
    assert_eq!(saved.notices[0].message, "plan cut");
    let resume = saved.resume_state();
    let results: Vec<(&str, &str)> = resume
        .results
        .iter()
        .map(|r| (r.subtask.as_str(), r.result.as_str()))
        .collect();
    assert_eq!(results, [("a", "result A2"), ("b", "result B")]);
    assert_eq!(resume.last_synthesis.as_ref().map(|s| s.version), Some(2));
    let resumed_plan = resume.plan.as_ref().expect("plan");
    assert_eq!(resumed_plan.subtasks[1].description, "desc b, better");
    // The saved plan is the engine's plan, through serde.
    let as_engine = EventKind::PlanReady {
        plan: serde_json::from_value(serde_json::to_value(resumed_plan).expect("to json"))
            .expect("the engine reads the saved plan"),
    };
    let EventKind::PlanReady { plan } = as_engine else {
        unreachable!()
    };
    assert_eq!(plan.subtasks.len(), 3);
    assert_eq!(plan.subtasks[0].focus_areas, ["f1"]);
}

#[test]
fn a_result_is_readable_from_another_connection_within_100ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer.begin_run(meta(run, "q")).wait(WAIT).expect("row");
    writer.event(&ev(run, 1, plan(20)));
    writer.flush().wait(WAIT).expect("flush");
    let conn = raw(&path);
    // The best of several tries, so a scheduling hiccup of a busy machine is not a failure;
    // a writer that held results back for longer would miss every time.
    let mut best = Duration::MAX;
    for i in 0..5 {
        writer.event(&ev(
            run,
            2,
            json!({"type": "subtask_succeeded", "subtask": format!("t{i}"), "attempt": 1,
                   "elapsed_ms": 5, "usage": usage(1, 1), "result": format!("r{i}")}),
        ));
        let sent = Instant::now();
        loop {
            let found = count(
                &conn,
                &format!("SELECT count(*) FROM subtasks WHERE result = 'r{i}'"),
            );
            if found == 1 {
                best = best.min(sent.elapsed());
                break;
            }
            assert!(sent.elapsed() < WAIT, "result r{i} never reached the disk");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(best < Duration::from_millis(100), "best latency {best:?}");
}

fn write_run(writer: &maestro::store::StoreSender, run: RunId, n: usize, tag: &str) {
    writer
        .begin_run(meta(run, &format!("query {tag}")))
        .wait(WAIT)
        .expect("row");
    writer.event(&ev(run, 1, plan(n)));
    for i in 0..n {
        writer.event(&ev(
            run,
            2,
            json!({"type": "subtask_started", "subtask": format!("t{i}"), "attempt": 1,
                   "worker": "research", "model": "m"}),
        ));
        writer.event(&ev(
            run,
            3,
            json!({"type": "subtask_succeeded", "subtask": format!("t{i}"), "attempt": 1,
                   "elapsed_ms": 1, "usage": usage(1, 1), "result": format!("{tag} result {i}")}),
        ));
    }
    writer.event(&ev(
        run,
        4,
        json!({"type": "run_finished", "status": "succeeded", "elapsed_ms": 3,
               "usage": usage(n as u64, n as u64), "succeeded": n, "failed": 0, "total": n,
               "error": null}),
    ));
}

#[test]
fn two_writers_on_one_file_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let n = 300;
    let threads: Vec<_> = (0..2)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let writer = StoreWriter::spawn(&path).expect("writer");
                let runs: Vec<RunId> = (0..2).map(|_| RunId::new()).collect();
                for (k, run) in runs.iter().enumerate() {
                    write_run(&writer, *run, n, &format!("w{w}r{k}"));
                }
                writer.flush().wait(WAIT).expect("flushed");
                let stats = writer.stats();
                assert_eq!(stats.status, StoreStatus::Saving);
                assert_eq!(stats.skipped, 0);
                runs
            })
        })
        .collect();
    // A reader at the same time never sees "locked".
    let reader_path = path.clone();
    let reader = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_millis(500);
        let store = Store::open(&reader_path).expect("reader");
        while Instant::now() < deadline {
            store.list_runs(&RunFilter::default()).expect("list");
        }
    });
    let runs: Vec<RunId> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer thread"))
        .collect();
    reader.join().expect("reader thread");
    let conn = raw(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'succeeded'"
        ),
        4
    );
    for run in runs {
        let n_ok: i64 = conn
            .query_row(
                "SELECT count(*) FROM subtasks WHERE run_id = ?1 AND result IS NOT NULL",
                [run.to_string()],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n_ok, n as i64);
    }
}

/// Runs this test binary again as a child writing to `path` in `mode`.
fn spawn_child(path: &Path, mode: &str, tag: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STORE_CHILD_DB", path)
        .env("STORE_CHILD_MODE", mode)
        .env("STORE_CHILD_TAG", tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child")
}

/// The child side of the multi-process tests; does nothing when run on its own. Its lines for
/// the parent start with `@@` (the test harness may print before them on the same line).
#[test]
#[ignore = "run by the multi-process tests as a child process"]
fn child_writer() {
    let (Ok(path), Ok(mode)) = (
        std::env::var("STORE_CHILD_DB"),
        std::env::var("STORE_CHILD_MODE"),
    ) else {
        return;
    };
    let tag = std::env::var("STORE_CHILD_TAG").unwrap_or_default();
    let writer = StoreWriter::spawn(Path::new(&path)).expect("child writer");
    match mode.as_str() {
        "write" => {
            let run = RunId::new();
            write_run(&writer, run, 200, &tag);
            writer.flush().wait(WAIT).expect("flushed");
            assert_eq!(writer.stats().skipped, 0);
            println!("@@done {run}");
        }
        "endless" => {
            let run = RunId::new();
            writer
                .begin_run(meta(run, "endless"))
                .wait(WAIT)
                .expect("row");
            writer.event(&ev(run, 1, plan(2000)));
            println!("@@run {run}");
            for i in 0..2000 {
                writer.event(&ev(
                    run,
                    now_ms(),
                    json!({"type": "subtask_succeeded", "subtask": format!("t{i}"),
                           "attempt": 1, "elapsed_ms": 1, "usage": usage(1, 1),
                           "result": format!("result {i} ").repeat(50)}),
                ));
                if i % 25 == 24 {
                    writer.event(&ev(
                        run,
                        now_ms(),
                        json!({"type": "synthesis_finished", "attempt": i / 25 + 1,
                               "text": format!("report {i}"), "synthesized": true,
                               "usage": usage(1, 1), "error": null}),
                    ));
                }
                println!("@@emitted {i} {}", now_ms());
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        "fill" => {
            // On a small file system of its own: write until the disk is full.
            let run = RunId::new();
            writer.begin_run(meta(run, "fill")).wait(WAIT).expect("row");
            writer.event(&ev(run, 1, plan(5000)));
            let start = Instant::now();
            let mut i = 0;
            let reason = loop {
                if let StoreStatus::Unsaved { reason } = writer.status() {
                    break reason;
                }
                assert!(start.elapsed() < WAIT, "the disk never filled");
                writer.event(&ev(
                    run,
                    2,
                    json!({"type": "subtask_succeeded", "subtask": format!("t{}", i % 5000),
                           "attempt": 1, "elapsed_ms": 1, "usage": usage(1, 1),
                           "result": "x".repeat(4000)}),
                ));
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            };
            println!("@@unsaved {reason}");
            // Sending goes on without blocking or failing.
            let sending = Instant::now();
            for _ in 0..100 {
                writer.event(&ev(
                    run,
                    3,
                    json!({"type": "notice", "message": "still here"}),
                ));
            }
            println!("@@sent {}", sending.elapsed().as_millis());
            let other = Path::new(&path).with_file_name("second.db");
            match Store::open(&other) {
                Ok(_) => println!("@@open ok"),
                Err(e) => println!("@@open {e:?} | {e}"),
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn two_processes_and_a_thread_write_one_file_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    Store::open(&path).expect("create");
    let children: Vec<_> = ["p1", "p2"]
        .iter()
        .map(|tag| spawn_child(&path, "write", tag))
        .collect();
    let writer = StoreWriter::spawn(&path).expect("writer");
    write_run(&writer, RunId::new(), 200, "here");
    writer.flush().wait(WAIT).expect("flushed");
    for child in children {
        let out = child.wait_with_output().expect("child output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("@@done "));
    }
    let conn = raw(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'succeeded'"
        ),
        3
    );
    for tag in ["p1", "p2", "here"] {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM subtasks s JOIN runs r ON r.id = s.run_id
                 WHERE r.query = ?1 AND s.result LIKE ?2",
                [format!("query {tag}"), format!("{tag} result %")],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 200, "{tag}");
    }
}

#[cfg(unix)]
#[test]
fn kill_9_keeps_every_result_emitted_100ms_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    Store::open(&path).expect("create");
    let mut child = spawn_child(&path, "endless", "");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut run = None;
    let mut emitted: Vec<(usize, u64)> = Vec::new();
    let start = Instant::now();
    while emitted.len() < 120 {
        let Some(Ok(line)) = lines.next() else {
            panic!("the child stopped early");
        };
        if let Some((_, id)) = line.split_once("@@run ") {
            run = Some(id.to_owned());
        } else if let Some((_, rest)) = line.split_once("@@emitted ") {
            let mut parts = rest.split(' ');
            let i = parts.next().and_then(|p| p.parse().ok()).expect("index");
            let ts = parts.next().and_then(|p| p.parse().ok()).expect("time");
            emitted.push((i, ts));
        }
        assert!(start.elapsed() < WAIT, "the child is too slow");
    }
    let killed_at = now_ms();
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // Lines the child printed before it died.
    for line in lines.map_while(Result::ok) {
        if let Some((_, rest)) = line.split_once("@@emitted ") {
            let mut parts = rest.split(' ');
            if let (Some(Ok(i)), Some(Ok(ts))) = (
                parts.next().map(str::parse::<usize>),
                parts.next().map(str::parse::<u64>),
            ) {
                emitted.push((i, ts));
            }
        }
    }
    let run = run.expect("run id");

    let store = Store::open(&path).expect("the database opens after kill -9");
    let ok: String = store
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity");
    assert_eq!(ok, "ok");
    let conn = raw(&path);
    let status: String = conn
        .query_row("SELECT status FROM runs WHERE id = ?1", [&run], |r| {
            r.get(0)
        })
        .expect("run");
    assert_eq!(status, "interrupted");
    let due: Vec<usize> = emitted
        .iter()
        .filter(|(_, ts)| *ts + 100 < killed_at)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        due.len() > 50,
        "too few results before the kill: {}",
        due.len()
    );
    for i in &due {
        let result: Option<String> = conn
            .query_row(
                "SELECT result FROM subtasks WHERE run_id = ?1 AND id = ?2",
                [run.clone(), format!("t{i}")],
                |r| r.get(0),
            )
            .expect("subtask");
        assert_eq!(
            result,
            Some(format!("result {i} ").repeat(50)),
            "t{i} was emitted more than 100 ms before the kill"
        );
    }
    let reports_due = due.iter().filter(|i| *i % 25 == 24).count() as i64;
    let reports: i64 = conn
        .query_row(
            "SELECT count(*) FROM syntheses WHERE run_id = ?1",
            [&run],
            |r| r.get(0),
        )
        .expect("syntheses");
    assert!(reports >= reports_due, "{reports} < {reports_due}");
}

#[test]
fn an_empty_file_is_migrated_to_the_latest_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").expect("empty file");
    let store = Store::open(&path).expect("open");
    let conn = store.connection();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, maestro::store::latest_version() as i64);
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .expect("app id");
    assert_eq!(app, maestro::store::APPLICATION_ID);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .expect("fk");
    assert_eq!(fk, 1);
    for table in [
        "runs",
        "subtasks",
        "attempts",
        "syntheses",
        "commands",
        "notices",
    ] {
        assert_eq!(
            count(
                conn,
                &format!("SELECT count(*) FROM sqlite_schema WHERE name = '{table}'")
            ),
            1,
            "{table}"
        );
    }
    // Opening again changes nothing.
    drop(store);
    Store::open(&path).expect("open again");
}

#[test]
fn writers_and_readers_creating_the_file_at_once_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..30 {
        let path = dir.path().join(format!("new-{round}.db"));
        let threads: Vec<_> = (0..6)
            .map(|k| {
                let path = path.clone();
                std::thread::spawn(move || {
                    if k % 2 == 0 {
                        StoreWriter::spawn(&path).map(|w| w.close())
                    } else {
                        Store::open(&path).map(|_| ())
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread").expect("open");
        }
    }
}

#[test]
fn garbage_is_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).expect("write");
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("notes.db") && msg.contains("not a maestro database"),
        "{msg}"
    );
    // The file is left as it was.
    assert!(
        std::fs::read_to_string(&path)
            .expect("read")
            .starts_with("these are my notes")
    );
}

#[test]
fn a_damaged_database_is_reported_as_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("damaged.db");
    drop(Store::open(&path).expect("create"));
    {
        // Fold the WAL into the file so the damage below hits the only copy.
        let conn = raw(&path);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .expect("checkpoint");
    }
    let mut bytes = std::fs::read(&path).expect("read");
    // Page 1 holds the schema table after the 100-byte header: scribble over its cells.
    for b in bytes.iter_mut().take(4096).skip(100) {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let err = Store::open(&path).err().expect("refused");
    assert!(
        matches!(
            err,
            StoreError::Corrupt { .. } | StoreError::NotADatabase { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("damaged.db"), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_makes_the_store_unsaved_and_opening_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).expect("mount point");
    // A private mount namespace with a 400 KB file system, around a child writer.
    let probe = Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !probe {
        eprintln!("skipped: this machine cannot make a mount namespace (unshare -rm)");
        return;
    }
    let out = Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=400k tmpfs \"$0\" && shift && exec \"$@\"",
        ])
        .arg(&mount)
        .arg("--")
        .arg(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STORE_CHILD_DB", mount.join("maestro.db"))
        .env("STORE_CHILD_MODE", "fill")
        .output()
        .expect("child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(tag).map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("no {tag} in {stdout}\n{stderr}"))
    };
    assert!(line("@@unsaved ").contains("the disk is full"), "{stdout}");
    let sent_ms: u64 = line("@@sent ").trim().parse().expect("ms");
    assert!(sent_ms < 100, "sending blocked for {sent_ms} ms");
    let open = line("@@open ");
    assert!(open.starts_with("DiskFull"), "{open}");
    assert!(open.contains("second.db: the disk is full"), "{open}");
}

/// Makes `path` read-only for this process, even as root (`chattr +i`); undone on drop.
#[cfg(unix)]
struct ReadOnly(PathBuf, bool);

#[cfg(unix)]
impl ReadOnly {
    fn make(path: &Path) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).ok()?;
        if std::fs::OpenOptions::new().write(true).open(path).is_err() {
            return Some(Self(path.to_path_buf(), false));
        }
        // Root ignores permission bits; the immutable flag it does not.
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(path.to_path_buf(), true))
    }
}

#[cfg(unix)]
impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
}

#[cfg(unix)]
#[test]
fn a_read_only_database_is_reported_as_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ro.db");
    drop(Store::open(&path).expect("create"));
    {
        let conn = raw(&path);
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }
    for side in ["ro.db-wal", "ro.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(side));
    }
    let guard = ReadOnly::make(&path)
        .expect("this machine can make a read-only file (permission bits or chattr)");
    let err = StoreWriter::spawn(&path).err().expect("refused");
    assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("ro.db") && msg.contains("read-only"), "{msg}");
    drop(guard);
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    drop(Store::open(&path).expect("create"));
    raw(&path)
        .execute_batch("PRAGMA user_version = 99; CREATE TABLE from_the_future (x);")
        .expect("bump");
    let err = Store::open(&path).err().expect("refused");
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (99, maestro::store::latest_version())),
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("newer maestro") && msg.contains("99"), "{msg}");
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 99);
}

#[test]
fn another_programs_database_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.db");
    raw(&path)
        .execute_batch("CREATE TABLE contacts (name TEXT);")
        .expect("other db");
    let err = Store::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert_eq!(
        count(
            &raw(&path),
            "SELECT count(*) FROM sqlite_schema WHERE name = 'runs'"
        ),
        0
    );
}

#[test]
fn runs_of_dead_owners_are_interrupted_and_live_ones_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let live = StoreWriter::spawn(&path).expect("live writer");
    let live_run = RunId::new();
    live.begin_run(meta(live_run, "live"))
        .wait(WAIT)
        .expect("row");
    live.event(&ev(live_run, 1, plan(2)));
    live.event(&ev(
        live_run,
        2,
        json!({"type": "subtask_started", "subtask": "t0", "attempt": 1, "worker": "research",
               "model": "m"}),
    ));
    live.flush().wait(WAIT).expect("flush");
    // A run whose owner token names no live process, and one with no owner at all.
    let dead_run = RunId::new();
    let orphan_run = RunId::new();
    {
        let conn = raw(&path);
        conn.execute(
            "INSERT INTO runs (id, query, started_at, owner) VALUES (?1, 'dead', 1, ?2)",
            [
                dead_run.to_string(),
                "00000000000000000000000000000000".into(),
            ],
        )
        .expect("dead run");
        conn.execute(
            "INSERT INTO subtasks (run_id, id, position, worker, title, description, status)
             VALUES (?1, 't', 0, 'w', 't', 'd', 'running')",
            [dead_run.to_string()],
        )
        .expect("dead subtask");
        conn.execute(
            "INSERT INTO attempts (run_id, role, subtask_id, attempt, started_at)
             VALUES (?1, 'worker', 't', 1, 1)",
            [dead_run.to_string()],
        )
        .expect("dead attempt");
        conn.execute(
            "INSERT INTO runs (id, query, started_at) VALUES (?1, 'orphan', 1)",
            [orphan_run.to_string()],
        )
        .expect("orphan run");
    }
    let store = Store::open(&path).expect("open");
    let status = |run: RunId| store.load_run(run).expect("load").summary.status;
    assert_eq!(status(live_run), SavedRunStatus::Running);
    assert_eq!(status(dead_run), SavedRunStatus::Interrupted);
    assert_eq!(status(orphan_run), SavedRunStatus::Interrupted);
    let dead = store.load_run(dead_run).expect("load");
    assert_eq!(dead.subtasks[0].status, SavedSubtaskStatus::Interrupted);
    assert_eq!(dead.attempts[0].outcome, AttemptOutcome::Interrupted);
    let live_saved = store.load_run(live_run).expect("load");
    assert_eq!(live_saved.subtasks[0].status, SavedSubtaskStatus::Running);

    // The live writer goes away with its run unfinished: that run is interrupted too.
    live.close();
    assert_eq!(status(live_run), SavedRunStatus::Interrupted);
    assert_eq!(
        store.load_run(live_run).expect("load").subtasks[0].status,
        SavedSubtaskStatus::Interrupted
    );
}

#[test]
fn a_run_that_gets_more_work_after_it_finished_is_running_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer.begin_run(meta(run, "q")).wait(WAIT).expect("row");
    writer.event(&ev(run, 1, plan(1)));
    writer.event(&ev(
        run,
        2,
        json!({"type": "run_finished", "status": "failed", "elapsed_ms": 1,
               "usage": usage(0, 0), "succeeded": 0, "failed": 1, "total": 1, "error": "x"}),
    ));
    writer.flush().wait(WAIT).expect("flush");
    let store = Store::open(&path).expect("store");
    assert_eq!(
        store.load_run(run).expect("load").summary.status,
        SavedRunStatus::Failed
    );
    writer.event(&ev(
        run,
        3,
        json!({"type": "subtask_queued", "subtask": "t0", "waiting_on": []}),
    ));
    writer.flush().wait(WAIT).expect("flush");
    let saved = store.load_run(run).expect("load");
    assert_eq!(saved.summary.status, SavedRunStatus::Running);
    assert_eq!(saved.summary.finished_ms, None);
}

#[test]
fn history_lists_filters_resolves_deletes_and_collects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let day = 86_400_000;
    let now = 100 * day;
    let mut ids = Vec::new();
    for (k, (query, status, report, started)) in [
        (
            "Solar power in Spain",
            "succeeded",
            "Sunny FINDINGS",
            now - 40 * day,
        ),
        ("Wind in Denmark", "failed", "", now - 2 * day),
        ("EV adoption", "partial", "batteries 100%", now - day),
    ]
    .into_iter()
    .enumerate()
    {
        let run = RunId::new();
        ids.push(run);
        let mut m = meta(run, query);
        m.started_ms = started;
        m.parent = (k == 2).then(|| ids[0]);
        writer.begin_run(m).wait(WAIT).expect("row");
        writer.event(&ev(
            run,
            started,
            json!({"type": "run_started", "query": query}),
        ));
        writer.event(&ev(run, started + 1, plan(2)));
        writer.event(&ev(
            run,
            started + 2,
            json!({"type": "subtask_succeeded", "subtask": "t0", "attempt": 1, "elapsed_ms": 1,
                   "usage": usage(3, 4), "result": "r"}),
        ));
        if !report.is_empty() {
            writer.event(&ev(
                run,
                started + 3,
                json!({"type": "synthesis_finished", "attempt": 1, "text": report,
                       "synthesized": true, "usage": usage(1, 1), "error": null}),
            ));
        }
        writer.event(&ev(
            run,
            started + 4,
            json!({"type": "run_finished", "status": status, "elapsed_ms": 4,
                   "usage": usage(10, 20), "succeeded": 1, "failed": 1, "total": 2,
                   "error": null}),
        ));
    }
    writer.flush().wait(WAIT).expect("flush");
    let store = Store::open(&path).expect("store");

    let all = store.list_runs(&RunFilter::default()).expect("list");
    let queries: Vec<&str> = all.iter().map(|r| r.query.as_str()).collect();
    assert_eq!(
        queries,
        ["EV adoption", "Wind in Denmark", "Solar power in Spain"]
    );
    let ev_run = &all[0];
    assert_eq!(ev_run.parent, Some(ids[0]));
    assert_eq!(ev_run.status, SavedRunStatus::Partial);
    assert_eq!((ev_run.succeeded, ev_run.failed, ev_run.total), (1, 0, 2));
    assert_eq!(
        ev_run.usage,
        Usage {
            tokens_in: 10,
            tokens_out: 20,
            estimated: false,
            cached_in: 0,
        }
    );
    assert_eq!(ev_run.elapsed_ms, Some(4));
    assert!(ev_run.short_id.len() >= 8);
    assert!(
        ev_run
            .id
            .to_string()
            .replace('-', "")
            .starts_with(&ev_run.short_id)
    );
    assert_eq!(store.resolve(&ev_run.short_id).expect("resolve"), ev_run.id);

    let limited = store
        .list_runs(&RunFilter {
            limit: Some(1),
            ..RunFilter::default()
        })
        .expect("list");
    assert_eq!(limited.len(), 1);
    let failed = store
        .list_runs(&RunFilter {
            status: Some(SavedRunStatus::Failed),
            ..RunFilter::default()
        })
        .expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].query, "Wind in Denmark");
    let search = |text: &str| -> Vec<String> {
        store
            .list_runs(&RunFilter {
                search: Some(text.into()),
                ..RunFilter::default()
            })
            .expect("search")
            .into_iter()
            .map(|r| r.query)
            .collect()
    };
    assert_eq!(search("denmark"), ["Wind in Denmark"]);
    assert_eq!(search("findings"), ["Solar power in Spain"]);
    // `%` and `_` are literal text, not patterns.
    assert_eq!(search("100%"), ["EV adoption"]);
    assert_eq!(search("_"), Vec::<String>::new());

    // All three share the first hex digits of their uuid v7: too short a prefix is ambiguous.
    match store.resolve(&ev_run.id.to_string()[..4]) {
        Err(StoreError::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 3),
        other => panic!("{other:?}"),
    }
    let err = store
        .resolve(&ev_run.id.to_string()[..4])
        .expect_err("ambiguous");
    assert!(err.to_string().contains("EV adoption"), "{err}");
    assert_eq!(
        store
            .resolve(&ev_run.id.to_string().to_uppercase())
            .expect("full id"),
        ev_run.id
    );
    assert!(matches!(
        store.resolve("ffffffffffff"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.resolve("not-hex!"),
        Err(StoreError::InvalidId { .. })
    ));

    // Older than 30 days: only the Spain run, and the child keeps its place.
    assert_eq!(
        store
            .gc_older_than(Duration::from_millis(30 * day), now)
            .expect("gc"),
        1
    );
    let left = store.list_runs(&RunFilter::default()).expect("list");
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].parent, None);
    assert_eq!(store.delete_runs(&[ids[1]]).expect("rm"), 1);
    assert!(matches!(
        store.load_run(ids[1]),
        Err(StoreError::NotFound { .. })
    ));
    let conn = raw(&path);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM subtasks"),
        2,
        "the deleted runs' subtasks went with them"
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM syntheses"), 1);
}

#[test]
fn a_write_lock_held_too_long_makes_the_store_unsaved_then_it_catches_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer.begin_run(meta(run, "q")).wait(WAIT).expect("row");
    writer.event(&ev(run, 1, plan(3)));
    writer.flush().wait(WAIT).expect("flush");

    let blocker = raw(&path);
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("hold the lock");
    writer.event(&ev(
        run,
        2,
        json!({"type": "subtask_succeeded", "subtask": "t0", "attempt": 1, "elapsed_ms": 1,
               "usage": usage(1, 1), "result": "kept in memory"}),
    ));
    let start = Instant::now();
    while writer.status() == StoreStatus::Saving {
        assert!(start.elapsed() < WAIT, "the writer never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    match writer.status() {
        StoreStatus::Unsaved { reason } => assert!(reason.contains("busy"), "{reason}"),
        StoreStatus::Saving => unreachable!(),
    }
    blocker.execute_batch("COMMIT").expect("release");
    writer.flush().wait(WAIT).expect("caught up");
    assert_eq!(writer.status(), StoreStatus::Saving);
    let result: Option<String> = raw(&path)
        .query_row("SELECT result FROM subtasks WHERE id = 't0'", [], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(result.as_deref(), Some("kept in memory"));
}

#[test]
fn a_stopped_writer_says_unsaved_and_never_blocks_its_senders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = StoreWriter::spawn(&db(&dir)).expect("writer");
    let sender = writer.sender();
    writer.close();
    let run = RunId::new();
    sender.event(&ev(run, 1, json!({"type": "notice", "message": "x"})));
    assert!(matches!(sender.status(), StoreStatus::Unsaved { .. }));
    assert!(matches!(
        sender.flush().wait(Duration::from_secs(1)),
        Err(StoreError::WriterGone)
    ));
}

/// Figures for the store: events written per second and database size per 1000 subtasks.
/// `cargo test --release --test store -- --ignored --nocapture store_figures`
#[test]
#[ignore = "a measurement, not a check"]
fn store_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let n = 1000;
    let result = "lorem ipsum dolor sit amet ".repeat(80); // ~2 KB, a typical worker answer
    let run = RunId::new();
    writer
        .begin_run(meta(run, "figures"))
        .wait(WAIT)
        .expect("row");
    writer.event(&ev(run, 1, plan(n)));
    let start = Instant::now();
    let mut events = 0;
    for i in 0..n {
        writer.event(&ev(
            run,
            2,
            json!({"type": "subtask_started", "subtask": format!("t{i}"), "attempt": 1,
                   "worker": "research", "model": "m"}),
        ));
        writer.event(&ev(
            run,
            3,
            json!({"type": "subtask_succeeded", "subtask": format!("t{i}"), "attempt": 1,
                   "elapsed_ms": 1, "usage": usage(100, 500), "result": result}),
        ));
        events += 2;
    }
    writer
        .flush()
        .wait(Duration::from_secs(120))
        .expect("flush");
    let elapsed = start.elapsed();
    let stats = writer.stats();
    drop(writer);
    raw(&path)
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    raw(&path).execute_batch("VACUUM;").expect("vacuum");
    let conn = raw(&path);
    for sql in [
        "SELECT sum(length(result)) FROM subtasks",
        "SELECT coalesce(sum(length(output)), 0) FROM attempts",
        "SELECT length(plan) FROM runs",
        "PRAGMA page_count",
        "PRAGMA page_size",
    ] {
        println!("{sql}: {}", count(&conn, sql));
    }
    let vacuumed = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "{events} events in {elapsed:?}: {:.0} events/s, {} commits; \
         {n} subtasks with {} B results: {:.2} MB ({:.1} KB per subtask), {:.2} MB after VACUUM",
        events as f64 / elapsed.as_secs_f64(),
        stats.commits,
        result.len(),
        size as f64 / 1e6,
        size as f64 / 1e3 / n as f64,
        vacuumed as f64 / 1e6,
    );
}

/// What saving sources costs: 500 tool calls (one round each), 20 of them handed a 1 MB page
/// (saved cut at the cap), the others 20 KB pages; how long the writer takes and how large the
/// file grows. `cargo test --test store -- --ignored --nocapture source_figures`
#[test]
#[ignore = "a measurement, not a check"]
fn source_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer
        .begin_run(meta(run, "figures"))
        .wait(WAIT)
        .expect("row");
    writer.event(&ev(run, 1, plan(1)));
    let small = "tide tables and harbour notes ".repeat(700); // ~20 KB
    let big = "x".repeat(1 << 20);
    let n = 500;
    let start = Instant::now();
    let mut handed = 0usize;
    for i in 0..n {
        let call = format!("call_{i}");
        let url = format!("https://a.test/{i}");
        let text = if i % 25 == 0 { &big } else { &small };
        handed += text.len();
        writer.event(&ev(run, 2, tool_started("t0", 1, &call, &url)));
        writer.event(&ev(run, 3, tool_finished("t0", 1, &call, &url, text)));
    }
    writer
        .flush()
        .wait(Duration::from_secs(120))
        .expect("flush");
    let elapsed = start.elapsed();
    drop(writer);
    raw(&path)
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let kept = count(
        &raw(&path),
        "SELECT sum(length(CAST(text AS BLOB))) FROM sources",
    );
    println!(
        "{n} tool calls with sources in {elapsed:?} ({:.0} calls/s); {:.1} MB handed to the \
         model, {:.1} MB of text kept; the file is {:.1} MB",
        n as f64 / elapsed.as_secs_f64(),
        handed as f64 / 1e6,
        kept as f64 / 1e6,
        size as f64 / 1e6,
    );
}

#[test]
fn a_message_that_cannot_be_applied_is_skipped_and_the_rest_saved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer.begin_run(meta(run, "q")).wait(WAIT).expect("row");
    // In one batch: a notice for a run that was never started (no run row to belong to)
    // between two good events.
    writer.event(&ev(run, 1, plan(1)));
    writer.event(&ev(
        RunId::new(),
        2,
        json!({"type": "notice", "message": "orphan"}),
    ));
    writer.event(&ev(
        run,
        3,
        json!({"type": "subtask_succeeded", "subtask": "t0", "attempt": 1, "elapsed_ms": 1,
               "usage": usage(1, 1), "result": "saved"}),
    ));
    writer.flush().wait(WAIT).expect("flush");
    let stats = writer.stats();
    assert_eq!((stats.skipped, stats.status), (1, StoreStatus::Saving));
    let conn = raw(&path);
    assert_eq!(count(&conn, "SELECT count(*) FROM notices"), 0);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM subtasks WHERE result = 'saved'"
        ),
        1
    );
}

#[test]
fn a_version_1_database_is_migrated_and_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v1.db");
    let id = RunId::new();
    {
        let mut conn = Connection::open(&path).expect("create");
        maestro::store::migrations_up_to(1)
            .to_latest(&mut conn)
            .expect("the version 1 schema");
        conn.execute(
            "INSERT INTO runs (id, query, status, started_at, finished_at)
             VALUES (?1, 'an old question', 'succeeded', 1000, 2000)",
            [id.to_string()],
        )
        .expect("a run");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, 1);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'server_facts'",
                [],
                |r| r.get(0),
            )
            .expect("tables");
        assert_eq!(tables, 0, "version 1 has no server_facts");
    }
    let store = Store::open(&path).expect("opens and migrates");
    let version: i64 = store
        .connection()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, maestro::store::latest_version() as i64);
    assert_eq!(maestro::store::latest_version(), 7);
    let runs = store.list_runs(&RunFilter::default()).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, id);
    assert_eq!(runs[0].query, "an old question");
    assert_eq!(store.server_facts().expect("facts"), []);
    // A run saved before files could be attached has none.
    let saved = store.load_run(id).expect("loads");
    assert!(saved.context.is_empty());
}

#[test]
fn attached_files_are_saved_with_the_run_and_kept_by_a_resume_that_sends_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.db");
    let id = RunId::new();
    let writer = StoreWriter::spawn(&path).expect("writer");
    let mut first = meta(id, "q");
    first.context = maestro::protocol::Attachments {
        files: vec![maestro::protocol::AttachedFile {
            path: "notes.md".into(),
            text: "the notes, as they were".into(),
        }],
        skipped: vec![maestro::protocol::SkippedFile {
            path: "logo.png".into(),
            reason: "binary".into(),
        }],
        ..Default::default()
    };
    writer
        .begin_run(first.clone())
        .wait(Duration::from_secs(5))
        .expect("row");
    // A resume writes the row again with no files: the saved ones stay.
    writer
        .begin_run(meta(id, "q"))
        .wait(Duration::from_secs(5))
        .expect("row again");
    writer.close();
    let store = Store::open(&path).expect("open");
    let saved = store.load_run(id).expect("loads");
    assert_eq!(saved.context, first.context);
}

#[test]
fn a_schema_one_past_this_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("next.db");
    drop(Store::open(&path).expect("create"));
    let next = maestro::store::latest_version() as i64 + 1;
    raw(&path)
        .execute_batch(&format!("PRAGMA user_version = {next};"))
        .expect("bump");
    let err = Store::open(&path).err().expect("refused");
    assert!(
        matches!(&err, StoreError::TooNew { found, .. } if *found == next),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer maestro"), "{err}");
    assert!(StoreWriter::spawn(&path).is_err());
}

#[test]
fn server_facts_are_saved_changed_only_when_their_value_changes_and_forgotten() {
    use maestro::store::ServerFact;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facts.db");
    let store = Store::open(&path).expect("open");
    let fact = |url: &str, model: &str, value: &str, at: u64| ServerFact {
        base_url: url.into(),
        model: model.into(),
        fact: "structured_output".into(),
        value: value.into(),
        learnt_at_ms: at,
    };
    let a = "http://a.test/v1";
    let b = "http://b.test/v1";
    assert_eq!(
        store
            .save_server_facts(&[
                fact(&format!("{a}/"), "m", "json_object", 10),
                fact(b, "m", "json_schema", 10)
            ])
            .expect("save"),
        2
    );
    // The same value again changes nothing, not even its time.
    assert_eq!(
        store
            .save_server_facts(&[fact(a, "m", "json_object", 20)])
            .expect("save"),
        0
    );
    assert_eq!(
        store
            .save_server_facts(&[fact(b, "m", "text", 30)])
            .expect("save"),
        1
    );
    assert_eq!(
        store.server_facts().expect("read"),
        [fact(a, "m", "json_object", 10), fact(b, "m", "text", 30)]
    );
    // Through the writer too.
    let writer = StoreWriter::spawn(&path).expect("writer");
    writer.server_facts(vec![fact(a, "n", "tool", 40)]);
    writer
        .flush()
        .wait(Duration::from_secs(5))
        .expect("flushed");
    writer.close();
    assert_eq!(store.server_facts().expect("read").len(), 3);
    assert_eq!(
        store
            .forget_server_facts(Some(&format!("{a}/")))
            .expect("forget"),
        2
    );
    assert_eq!(
        store.server_facts().expect("read"),
        [fact(b, "m", "text", 30)]
    );
    assert_eq!(store.forget_server_facts(None).expect("forget"), 1);
}

// ---- tool calls and sources -----------------------------------------------------------------

fn tool_started(subtask: &str, attempt: u32, call: &str, url: &str) -> Value {
    json!({"type": "tool_call_started", "subtask": subtask, "attempt": attempt,
           "call_id": call, "tool": "fetch_url", "arguments": url})
}

fn tool_finished(subtask: &str, attempt: u32, call: &str, url: &str, text: &str) -> Value {
    json!({"type": "tool_call_finished", "subtask": subtask, "attempt": attempt,
           "call_id": call, "ok": true, "bytes": text.len(), "ms": 40,
           "summary": format!("HTTP 200 · {url}"), "text": text,
           "source": {"number": 0, "kind": "url", "location": url, "bytes": text.len(),
                      "status": 200, "retrieved_ms": 5_000}})
}

/// A worker fetches two pages in two rounds (the model reuses the id `call_1`, as providers
/// do), a file read fails; a retried attempt fetches again. Every call and source is saved,
/// the text of each source is read back on its own, and a text over the cap is cut with the
/// marker.
#[test]
fn tool_calls_and_sources_are_saved_with_their_text_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer
        .begin_run(meta(run, "Tides?"))
        .wait(WAIT)
        .expect("run row");
    let long = format!(
        "{}€ and more",
        "x".repeat(maestro::store::SOURCE_TEXT_MAX - 1)
    );
    let failed_read = json!({"type": "tool_call_finished", "subtask": "t0", "attempt": 2,
        "call_id": "call_2", "ok": false, "bytes": 0, "ms": 3,
        "summary": "no such file: notes.md"});
    let events = [
        (1000, json!({"type": "run_started", "query": "Tides?"})),
        (1100, plan(1)),
        (
            1200,
            json!({"type": "subtask_started", "subtask": "t0", "attempt": 1,
                      "worker": "research", "model": "work-m"}),
        ),
        (1300, tool_started("t0", 1, "call_1", "https://a.test/one")),
        (
            1340,
            tool_finished("t0", 1, "call_1", "https://a.test/one", "page one"),
        ),
        (
            1400,
            json!({"type": "subtask_retrying", "subtask": "t0", "attempt": 1,
                      "delay_ms": 10, "reason": "HTTP 500", "error": "HTTP 500"}),
        ),
        (
            1500,
            json!({"type": "subtask_started", "subtask": "t0", "attempt": 2,
                      "worker": "research", "model": "work-m"}),
        ),
        (1600, tool_started("t0", 2, "call_1", "https://a.test/one")),
        (
            1640,
            tool_finished("t0", 2, "call_1", "https://a.test/one", "page one again"),
        ),
        (1700, tool_started("t0", 2, "call_1", "https://a.test/long")),
        (
            1740,
            tool_finished("t0", 2, "call_1", "https://a.test/long", &long),
        ),
        (
            1750,
            json!({"type": "tool_call_started", "subtask": "t0", "attempt": 2,
                      "call_id": "call_2", "tool": "read_file", "arguments": "notes.md"}),
        ),
        (1753, failed_read),
        (
            1900,
            json!({"type": "subtask_succeeded", "subtask": "t0", "attempt": 2,
                      "elapsed_ms": 400, "usage": usage(10, 20), "result": "high water"}),
        ),
    ];
    for (ts, kind) in events {
        writer.event(&ev(run, ts, kind));
    }
    writer.flush().wait(WAIT).expect("flushed");

    let conn = raw(&path);
    assert_eq!(
        rows(
            &conn,
            "SELECT subtask_id, attempt, call_id, tool, arguments, started_at, finished_at,
                    elapsed_ms, ok, bytes, summary FROM tool_calls ORDER BY id"
        ),
        vec![
            vec![
                json!("t0"),
                json!(1),
                json!("call_1"),
                json!("fetch_url"),
                json!("https://a.test/one"),
                json!(1300),
                json!(1340),
                json!(40),
                json!(1),
                json!(8),
                json!("HTTP 200 · https://a.test/one"),
            ],
            vec![
                json!("t0"),
                json!(2),
                json!("call_1"),
                json!("fetch_url"),
                json!("https://a.test/one"),
                json!(1600),
                json!(1640),
                json!(40),
                json!(1),
                json!(14),
                json!("HTTP 200 · https://a.test/one"),
            ],
            vec![
                json!("t0"),
                json!(2),
                json!("call_1"),
                json!("fetch_url"),
                json!("https://a.test/long"),
                json!(1700),
                json!(1740),
                json!(40),
                json!(1),
                json!(long.len()),
                json!("HTTP 200 · https://a.test/long"),
            ],
            vec![
                json!("t0"),
                json!(2),
                json!("call_2"),
                json!("read_file"),
                json!("notes.md"),
                json!(1750),
                json!(1753),
                json!(3),
                json!(0),
                json!(0),
                json!("no such file: notes.md"),
            ],
        ]
    );
    assert_eq!(
        rows(
            &conn,
            "SELECT attempt, call_id, number, kind, location, bytes, status, retrieved_at,
                    text_bytes FROM sources ORDER BY id"
        ),
        vec![
            vec![
                json!(1),
                json!("call_1"),
                json!(0),
                json!("url"),
                json!("https://a.test/one"),
                json!(8),
                json!(200),
                json!(5000),
                json!(8),
            ],
            vec![
                json!(2),
                json!("call_1"),
                json!(0),
                json!("url"),
                json!("https://a.test/one"),
                json!(14),
                json!(200),
                json!(5000),
                json!(14),
            ],
            vec![
                json!(2),
                json!("call_1"),
                json!(0),
                json!("url"),
                json!("https://a.test/long"),
                json!(long.len()),
                json!(200),
                json!(5000),
                json!(long.len()),
            ],
        ]
    );

    let store = Store::open(&path).expect("open");
    let saved = store.load_run(run).expect("loads");
    assert_eq!(saved.tool_calls.len(), 4);
    assert_eq!(saved.tool_calls[3].ok, Some(false));
    assert_eq!(saved.sources.len(), 3);
    // The report's sources are the latest attempt's, in the order their calls finished.
    let latest: Vec<String> = saved
        .sources_of(&SubtaskId("t0".into()), 2)
        .into_iter()
        .map(|s| s.location)
        .collect();
    assert_eq!(latest, ["https://a.test/one", "https://a.test/long"]);
    assert_eq!(saved.sources[2].text_bytes, long.len() as u64);
    assert_eq!(saved.last_source_number(), 0, "nothing numbered yet");

    let t0 = SubtaskId("t0".into());
    assert_eq!(
        store.source_text(run, &t0, 1, "call_1").expect("read"),
        Some("page one".to_owned())
    );
    // The id repeats in attempt 2: the latest call of it.
    let cut = store
        .source_text(run, &t0, 2, "call_1")
        .expect("read")
        .expect("a text");
    assert_eq!(
        cut,
        format!(
            "{}{}",
            "x".repeat(maestro::store::SOURCE_TEXT_MAX - 1),
            maestro::store::SOURCE_TEXT_CUT
        ),
        "cut before the character that crosses the cap"
    );
    assert_eq!(
        store.source_text(run, &t0, 2, "call_2").expect("read"),
        None
    );
    // As a report holds a source (no call id): by location and time read, the latest read.
    let listed = saved.sources_of(&t0, 1).remove(0);
    assert_eq!(
        store.text_of_source(run, &t0, &listed).expect("read"),
        Some("page one again".to_owned()),
        "attempt 2 read the same page at the same time: the latest"
    );
    let mut other = listed.clone();
    other.retrieved_ms += 1;
    assert_eq!(store.text_of_source(run, &t0, &other).expect("read"), None);
    assert_eq!(
        maestro::history::saved_source_text(Some(&path), run, &t0, &saved.sources[2].source),
        Ok(Some(cut.clone()))
    );
    assert_eq!(
        maestro::history::saved_source_text(Some(&dir.path().join("none.db")), run, &t0, &listed),
        Ok(None),
        "no database, no text, and none created"
    );
    assert!(!dir.path().join("none.db").exists());
    assert_eq!(store.numbered_source_text(run, 0).expect("read"), None);

    // Deleting the run deletes its calls and sources.
    assert_eq!(store.delete_runs(&[run]).expect("deleted"), 1);
    assert_eq!(
        count(store.connection(), "SELECT count(*) FROM tool_calls"),
        0
    );
    assert_eq!(count(store.connection(), "SELECT count(*) FROM sources"), 0);
    writer.close();
}

/// Numbers given by the engine are kept; a resume learns the highest one, and a source's
/// text can be found by its number.
#[test]
fn numbered_sources_are_kept_and_the_highest_number_is_known() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer.begin_run(meta(run, "q")).wait(WAIT).expect("row");
    let mut second = tool_finished("t1", 1, "call_1", "https://b.test/", "bee");
    second["source"]["number"] = json!(2);
    let mut first = tool_finished("t0", 1, "call_1", "https://a.test/", "ay");
    first["source"]["number"] = json!(1);
    for (ts, kind) in [
        (1000, json!({"type": "run_started", "query": "q"})),
        (1100, plan(2)),
        (1200, tool_started("t0", 1, "call_1", "https://a.test/")),
        (1210, first),
        (1300, tool_started("t1", 1, "call_1", "https://b.test/")),
        (1310, second),
    ] {
        writer.event(&ev(run, ts, kind));
    }
    writer.flush().wait(WAIT).expect("flushed");
    let store = Store::open(&path).expect("open");
    let saved = store.load_run(run).expect("loads");
    assert_eq!(saved.last_source_number(), 2);
    assert_eq!(
        store.numbered_source_text(run, 2).expect("read"),
        Some("bee".to_owned())
    );
    assert_eq!(store.numbered_source_text(run, 3).expect("read"), None);
    writer.close();
}

/// A database an older build left at version 6, with a finished run, opens under this build:
/// the two new tables are there, empty, and the run reads back with no tool calls.
#[test]
fn a_version_6_database_is_migrated_to_tool_calls_and_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v6.db");
    let id = RunId::new();
    {
        let mut conn = Connection::open(&path).expect("create");
        maestro::store::migrations_up_to(6)
            .to_latest(&mut conn)
            .expect("the version 6 schema");
        conn.execute(
            "INSERT INTO runs (id, query, status, started_at, finished_at)
             VALUES (?1, 'a question from before', 'succeeded', 1000, 2000)",
            [id.to_string()],
        )
        .expect("a run");
        conn.execute(
            "INSERT INTO subtasks (run_id, id, position, worker, title, description, status,
                                   attempts, result)
             VALUES (?1, 'a', 0, 'research', 'A', 'd', 'succeeded', 1, 'found')",
            [id.to_string()],
        )
        .expect("a subtask");
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_schema WHERE name IN ('tool_calls', 'sources')"
            ),
            0
        );
    }
    let store = Store::open(&path).expect("opens and migrates");
    let conn = store.connection();
    assert_eq!(count(conn, "PRAGMA user_version"), 7);
    assert_eq!(
        count(
            conn,
            "SELECT count(*) FROM sqlite_schema WHERE name IN ('tool_calls', 'sources')"
        ),
        2
    );
    let saved = store.load_run(id).expect("loads");
    assert_eq!(saved.subtasks[0].result.as_deref(), Some("found"));
    assert!(saved.tool_calls.is_empty() && saved.sources.is_empty());
}

/// The migration is one transaction: when it cannot finish (a table of that name is in the
/// way), nothing of it stays and the file is still at version 6 with its runs.
#[test]
fn a_migration_to_version_7_that_fails_leaves_version_6_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v6.db");
    let id = RunId::new();
    {
        let mut conn = Connection::open(&path).expect("create");
        maestro::store::migrations_up_to(6)
            .to_latest(&mut conn)
            .expect("the version 6 schema");
        conn.execute(
            "INSERT INTO runs (id, query, status, started_at) VALUES (?1, 'q', 'succeeded', 1)",
            [id.to_string()],
        )
        .expect("a run");
        // `sources` is created after `tool_calls`: the first table must be rolled back.
        conn.execute_batch("CREATE TABLE sources (x INTEGER);")
            .expect("a table in the way");
    }
    assert!(Store::open(&path).is_err(), "the migration cannot finish");
    let conn = raw(&path);
    assert_eq!(count(&conn, "PRAGMA user_version"), 6);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM sqlite_schema WHERE name = 'tool_calls'"
        ),
        0,
        "no part of version 7 stays"
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 1);
}

/// A tool call in flight when its writer stopped (the process quit mid-call) has no end saved;
/// read back, its attempt is interrupted and the call reads as ended without an answer, not as
/// one still running.
#[test]
fn a_tool_call_cut_off_by_the_end_of_its_process_reads_as_unanswered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let writer = StoreWriter::spawn(&path).expect("writer");
    let run = RunId::new();
    writer.begin_run(meta(run, "q")).wait(WAIT).expect("row");
    for (ts, kind) in [
        (1000, json!({"type": "run_started", "query": "q"})),
        (1100, plan(1)),
        (
            1200,
            json!({"type": "subtask_started", "subtask": "t0", "attempt": 1,
                   "worker": "research", "model": "work-m"}),
        ),
        (1300, tool_started("t0", 1, "call_1", "https://a.test/slow")),
    ] {
        writer.event(&ev(run, ts, kind));
    }
    writer.close();

    let store = Store::open(&path).expect("open");
    let saved = store.load_run(run).expect("loads");
    assert_eq!(saved.summary.status, SavedRunStatus::Interrupted);
    assert_eq!(saved.tool_calls.len(), 1);
    assert_eq!(saved.tool_calls[0].finished_ms, None);
    let report = maestro::history::report_of(&saved);
    let call = &report.subtasks[0].history[0].tools[0];
    let end = call.finished.as_ref().expect("ended");
    assert!(!end.ok);
    assert_eq!(end.summary, "no answer was saved");
    assert!(report.subtasks[0].sources.is_empty());
}
