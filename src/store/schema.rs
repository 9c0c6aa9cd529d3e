//! The schema (versioned migrations kept by `rusqlite_migration` in `PRAGMA user_version`),
//! the pragmas every connection sets, and opening a file into a ready connection with
//! precise errors. `docs/STORE.md` describes the tables for people; keep the two in step.
//!
//! Migrations are append-only: never edit one that has shipped, add the next.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use rusqlite_migration::{M, Migrations};

use super::error::{StoreError, classify};

/// `PRAGMA application_id` of a maestro database ("maes"), so another program's SQLite file
/// is recognised and left alone.
pub const APPLICATION_ID: i32 = 0x6d61_6573;

/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const V1: &str = r#"
PRAGMA application_id = 1835099507;

CREATE TABLE runs (
    id                TEXT PRIMARY KEY NOT NULL,
    parent_id         TEXT REFERENCES runs(id) ON DELETE SET NULL,
    query             TEXT NOT NULL,
    provider          TEXT NOT NULL DEFAULT '',
    planner_model     TEXT,
    worker_model      TEXT,
    synthesizer_model TEXT,
    preset            TEXT,
    settings          TEXT NOT NULL DEFAULT '{}',
    plan              TEXT,
    status            TEXT NOT NULL DEFAULT 'running' CHECK (status IN
                      ('running', 'succeeded', 'partial', 'failed', 'cancelled', 'interrupted')),
    error             TEXT,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    elapsed_ms        INTEGER,
    tokens_in         INTEGER NOT NULL DEFAULT 0,
    tokens_out        INTEGER NOT NULL DEFAULT 0,
    usage_estimated   INTEGER NOT NULL DEFAULT 0,
    owner             TEXT
);
CREATE INDEX runs_by_start ON runs(started_at);
CREATE INDEX runs_by_status ON runs(status);
CREATE INDEX runs_by_parent ON runs(parent_id);

CREATE TABLE subtasks (
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    id              TEXT NOT NULL,
    position        INTEGER NOT NULL,
    worker          TEXT NOT NULL,
    title           TEXT NOT NULL,
    description     TEXT NOT NULL,
    focus_areas     TEXT NOT NULL DEFAULT '[]',
    depends_on      TEXT NOT NULL DEFAULT '[]',
    priority        TEXT NOT NULL DEFAULT 'medium',
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running',
                    'retrying', 'succeeded', 'failed', 'blocked', 'cancelled', 'interrupted')),
    waiting_on      TEXT NOT NULL DEFAULT '[]',
    attempts        INTEGER NOT NULL DEFAULT 0,
    model           TEXT,
    result          TEXT,
    cut_off         INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    tokens_in       INTEGER NOT NULL DEFAULT 0,
    tokens_out      INTEGER NOT NULL DEFAULT 0,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    started_at      INTEGER,
    finished_at     INTEGER,
    elapsed_ms      INTEGER,
    PRIMARY KEY (run_id, id)
);

CREATE TABLE attempts (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('planner', 'worker', 'synthesizer')),
    subtask_id      TEXT,
    attempt         INTEGER NOT NULL,
    worker          TEXT,
    model           TEXT,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    elapsed_ms      INTEGER,
    outcome         TEXT NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'succeeded',
                    'retried', 'rejected', 'failed', 'cancelled', 'interrupted')),
    error           TEXT,
    retry_delay_ms  INTEGER,
    output          TEXT,
    tokens_in       INTEGER,
    tokens_out      INTEGER,
    usage_estimated INTEGER
);
CREATE INDEX attempts_by_call ON attempts(run_id, role, subtask_id, attempt);

CREATE TABLE syntheses (
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    model           TEXT,
    text            TEXT NOT NULL,
    synthesized     INTEGER NOT NULL,
    error           TEXT,
    tokens_in       INTEGER NOT NULL DEFAULT 0,
    tokens_out      INTEGER NOT NULL DEFAULT 0,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    finished_at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, version)
);

CREATE TABLE commands (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('retry_subtask', 'retry_failed',
                    'cancel_subtask', 'cancel_run', 'edit_subtask', 'resynthesize', 'replan')),
    subtask_id      TEXT,
    old_description TEXT,
    new_description TEXT,
    old_worker      TEXT,
    new_worker      TEXT
);
CREATE INDEX commands_by_run ON commands(run_id);

CREATE TABLE notices (
    id              INTEGER PRIMARY KEY,
    run_id          TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    message         TEXT NOT NULL
);
CREATE INDEX notices_by_run ON notices(run_id);
"#;

/// What the providers learnt about each server and model (the structured-output mode that
/// works, parameters it refuses), kept so the next process does not learn it again.
const V2: &str = r#"
CREATE TABLE server_facts (
    base_url        TEXT NOT NULL,
    model           TEXT NOT NULL,
    fact            TEXT NOT NULL,
    value           TEXT NOT NULL,
    learnt_at       INTEGER NOT NULL,
    PRIMARY KEY (base_url, model, fact)
) WITHOUT ROWID;
"#;

/// The result cache: worker answers keyed by a hash of their request, and which subtask
/// results came from it.
const V3: &str = r#"
ALTER TABLE subtasks ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;

CREATE TABLE result_cache (
    key         TEXT PRIMARY KEY NOT NULL,
    provider    TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    model       TEXT NOT NULL,
    answer      TEXT NOT NULL,
    reasoning   TEXT NOT NULL DEFAULT '',
    tokens_in   INTEGER NOT NULL DEFAULT 0,
    tokens_out  INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    hits        INTEGER NOT NULL DEFAULT 0,
    last_hit_at INTEGER
);
CREATE INDEX result_cache_by_created ON result_cache(created_at);
"#;

/// The quality gate: why the validator flagged a subtask's current result (NULL: not
/// flagged).
const V4: &str = r#"
ALTER TABLE subtasks ADD COLUMN flagged TEXT;
"#;

/// The files attached to a run (`@path`, `--context`), with their text, so a resume or a
/// re-run gives the workers the same material.
const V5: &str = r#"
ALTER TABLE runs ADD COLUMN context TEXT;
"#;

/// Of a call's input tokens, those the provider read from its prompt cache (priced lower).
const V6: &str = r#"
ALTER TABLE attempts ADD COLUMN tokens_cached INTEGER;
"#;

/// What workers' tools did: every tool call of a worker attempt, and every source one read
/// (a page fetched, a file read) with the text handed to the model, capped at
/// `SOURCE_TEXT_MAX` bytes (`text_bytes` is the size before the cap).
const V7: &str = r#"
CREATE TABLE tool_calls (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    subtask_id  TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    call_id     TEXT NOT NULL,
    tool        TEXT NOT NULL,
    arguments   TEXT NOT NULL DEFAULT '',
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    elapsed_ms  INTEGER,
    ok          INTEGER,
    bytes       INTEGER,
    summary     TEXT
);
CREATE INDEX tool_calls_by_call ON tool_calls(run_id, subtask_id, attempt, call_id);

CREATE TABLE sources (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    subtask_id   TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    call_id      TEXT NOT NULL,
    number       INTEGER NOT NULL DEFAULT 0,
    kind         TEXT NOT NULL CHECK (kind IN ('url', 'file')),
    location     TEXT NOT NULL,
    bytes        INTEGER NOT NULL DEFAULT 0,
    status       INTEGER,
    retrieved_at INTEGER NOT NULL,
    text         TEXT NOT NULL DEFAULT '',
    text_bytes   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sources_by_run ON sources(run_id, subtask_id, attempt);
"#;

/// Every schema version's SQL, oldest first; the database's version is the count applied.
const VERSIONS: [&str; 7] = [V1, V2, V3, V4, V5, V6, V7];

/// Every schema version, oldest first; the database's version is its count.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(VERSIONS.iter().map(|sql| M::up(sql)).collect())
}

/// The schema version this build writes.
pub fn latest_version() -> usize {
    VERSIONS.len()
}

/// The migrations up to `version` only: for tests that need a database as an older build
/// left it.
#[doc(hidden)]
pub fn migrations_up_to(version: usize) -> Migrations<'static> {
    Migrations::new(
        VERSIONS
            .iter()
            .take(version)
            .map(|sql| M::up(sql))
            .collect(),
    )
}

/// Opens `path` (creating it and its folder), sets the pragmas, checks it is ours and not
/// too new, and migrates it. Safe against other processes doing the same at the same time.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    // SQLite skips the busy handler where waiting could deadlock: two connections switching
    // a new file to WAL at once both hold a shared lock and want an exclusive one, and one
    // gets SQLITE_BUSY at once. Starting over with a fresh connection resolves it.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match try_open(path) {
            Err(StoreError::Busy { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

fn try_open(path: &Path) -> Result<Connection, StoreError> {
    let fail = |e| classify(path, e, BUSY_TIMEOUT);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("cannot create its folder: {e}"),
        })?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let mut conn = Connection::open_with_flags(path, flags).map_err(fail)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
    // SQLite quietly opens a file it may not write read-only; say so now rather than at the
    // first write of a run.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
        return Err(StoreError::ReadOnly {
            path: path.to_path_buf(),
            detail: "the file is not writable".into(),
        });
    }
    // Write transactions take the lock up front: a deferred one that reads first and then
    // wants to write can fail with SQLITE_BUSY at once, without waiting for the timeout.
    conn.set_transaction_behavior(TransactionBehavior::Immediate);

    // The first read of the file: NOTADB and CORRUPT show up here.
    let (app_id, version, tables) = conn
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_schema WHERE type = 'table')",
            [],
            |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .map_err(fail)?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    if version > latest_version() as i64 {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: latest_version(),
        });
    }

    // WAL lets readers work while one process writes; NORMAL syncing in WAL mode keeps every
    // commit across a crash of the process (only a power cut can lose the last ones).
    // Switching a new file to WAL needs it to itself; while another process has it open the
    // pragma quietly answers the old mode, so ask again until the busy timeout.
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if mode.eq_ignore_ascii_case("wal") {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::CannotOpen {
                path: path.to_path_buf(),
                detail: format!("cannot switch it to WAL mode (it stays in `{mode}` mode)"),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(fail)?;
    migrate(path, &mut conn)?;
    Ok(conn)
}

fn migrate(path: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let migrations = migrations();
    // Two processes opening a new file at once both see version 0; the second one's
    // migration then fails on tables that now exist. Seeing the latest version afterwards
    // means someone else did the work.
    let mut tries = 0;
    loop {
        match migrations.to_latest(conn) {
            Ok(()) => return Ok(()),
            Err(err) => {
                tries += 1;
                let now: i64 = conn
                    .query_row("SELECT user_version FROM pragma_user_version", [], |r| {
                        r.get(0)
                    })
                    .map_err(|e| classify(path, e, BUSY_TIMEOUT))?;
                if now == latest_version() as i64 {
                    return Ok(());
                }
                if tries < 3 {
                    continue;
                }
                return Err(match err {
                    rusqlite_migration::Error::RusqliteError { err, .. } => {
                        classify(path, err, BUSY_TIMEOUT)
                    }
                    other => StoreError::CannotOpen {
                        path: path.to_path_buf(),
                        detail: format!("cannot update the schema: {other}"),
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().expect("valid migrations");
    }

    #[test]
    fn application_id_in_sql_matches_the_constant() {
        assert!(V1.contains(&format!("application_id = {APPLICATION_ID};")));
    }

    #[test]
    fn latest_version_counts_the_migrations() {
        let conn_dir = tempfile::tempdir().expect("tempdir");
        let path = conn_dir.path().join("v.db");
        let conn = open_connection(&path).expect("open");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, latest_version() as i64);
    }
}
