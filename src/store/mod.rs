//! Saved runs: one SQLite file that every run is written to as it happens, and the queries
//! that read runs back (history, show, resume).
//!
//! - `schema`: migrations, pragmas, opening a file with precise errors (`error`).
//! - `writer`: [`StoreWriter`], the thread that turns `protocol::Event`s into rows, batched,
//!   never blocking its senders.
//! - `read`: plain structs for the history list, a whole run (its workers' tool calls and
//!   sources included, a source's text by a query of its own), and a resume.
//! - `facts`: what the providers learnt about each server and model ([`ServerFact`]).
//! - `owner`: which live process owns a running run, so runs of dead processes can be
//!   marked `interrupted`.
//! - `cache`: [`ResultCache`], the result cache's table (answers under a caller's key, with a
//!   time to live).
//!
//! This module depends on `protocol` only: it never imports the engine, providers or any
//! front end, and nothing here decides what a run does next. `docs/STORE.md` describes the
//! tables for people using the `sqlite3` shell.

mod cache;
mod error;
mod facts;
mod owner;
mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};

pub use cache::{CacheEntry, CacheStats, CachedAnswer, ResultCache};
pub use error::{Candidate, StoreError};
pub use facts::ServerFact;
pub use read::{
    AttemptOutcome, CallRecord, ResumeState, RunFilter, RunSummary, SavedAttempt, SavedCommand,
    SavedNotice, SavedPlan, SavedPlannedSubtask, SavedResult, SavedRun, SavedRunStatus,
    SavedSource, SavedSubtask, SavedSubtaskStatus, SavedSynthesis, SavedToolCall,
};
pub use schema::{APPLICATION_ID, BUSY_TIMEOUT, latest_version, migrations_up_to};
pub use writer::{
    BATCH_MAX, BATCH_WINDOW, CommandRecord, Pending, RETRY_EVERY, RunMeta, SOURCE_TEXT_CUT,
    SOURCE_TEXT_MAX, StoreSender, StoreStatus, StoreWriter, WriterStats, capped_text,
    scrub_secrets,
};

use crate::protocol::{RunId, SubtaskId};

/// The file name of the database in the platform data folder.
pub const DB_FILE: &str = "maestro.db";

/// The database's default place: `maestro.db` in the platform data folder (on Linux
/// `$XDG_DATA_HOME/maestro`, usually `~/.local/share/maestro`).
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "maestro").map(|d| d.data_dir().join(DB_FILE))
}

/// A connection for reading and managing saved runs. Writing a run's events is the
/// [`StoreWriter`]'s job; this opens its own connection, so both can be used at once.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens the database at `path`, creating the file and its folder if needed and
    /// migrating it to this build's schema, then marks runs left `running` by processes that
    /// are gone as `interrupted`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = schema::open_connection(path)?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.mark_interrupted()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, err: rusqlite::Error) -> StoreError {
        error::classify(&self.path, err, BUSY_TIMEOUT)
    }

    /// Marks runs whose owning process is gone (crashed, killed, or quit mid-run) as
    /// `interrupted`, with their calls in flight. Runs of live processes are left alone.
    /// Returns how many runs were marked.
    pub fn mark_interrupted(&self) -> Result<usize, StoreError> {
        let owners: Vec<Option<String>> = {
            let mut stmt = self
                .conn
                .prepare("SELECT DISTINCT owner FROM runs WHERE status = 'running'")
                .map_err(|e| self.fail(e))?;
            stmt.query_map([], |r| r.get(0))
                .map_err(|e| self.fail(e))?
                .collect::<rusqlite::Result<_>>()
                .map_err(|e| self.fail(e))?
        };
        let dead: Vec<Option<String>> = owners
            .into_iter()
            .filter(|o| !owner::owner_alive(&self.path, o.as_deref()))
            .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.fail(e))?;
        let mut marked = 0;
        for token in &dead {
            // Limited to the dead token, which no live process can hold: a run another
            // process took over meanwhile carries that process's token and is left alone.
            marked +=
                writer::mark_owner_interrupted(&tx, token.as_deref()).map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(marked)
    }

    /// Saved runs, newest first.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        read::list_runs(&self.conn, filter)
            .map_err(|e| self.fail(e))?
            .into_iter()
            .collect()
    }

    /// Every saved model call that started at or after `since_ms`, oldest first.
    pub fn calls(&self, since_ms: Option<u64>) -> Result<Vec<CallRecord>, StoreError> {
        read::calls(&self.conn, since_ms).map_err(|e| self.fail(e))
    }

    /// The run a full id or a unique prefix of one names (dashes optional).
    pub fn resolve(&self, prefix: &str) -> Result<RunId, StoreError> {
        read::resolve(&self.conn, prefix).map_err(|e| self.with_path(e))
    }

    /// Everything saved about a run; `NotFound` if there is no such run.
    pub fn load_run(&self, id: RunId) -> Result<SavedRun, StoreError> {
        read::load_run(&self.conn, id)
            .map_err(|e| self.with_path(e))?
            .ok_or_else(|| StoreError::NotFound {
                prefix: id.to_string(),
            })
    }

    /// The saved text of the source a tool call read (`call_id` of a subtask's attempt): what
    /// the model was handed, raw (sanitise it before it reaches a terminal), cut at
    /// [`SOURCE_TEXT_MAX`]. Kept out of [`Store::load_run`] because it can be long. `None`
    /// when the call read no source.
    pub fn source_text(
        &self,
        run: RunId,
        subtask: &SubtaskId,
        attempt: u32,
        call_id: &str,
    ) -> Result<Option<String>, StoreError> {
        read::source_text(&self.conn, run, subtask, attempt, call_id).map_err(|e| self.fail(e))
    }

    /// The saved text of a source as a report lists it under `subtask` (what a source reader
    /// has in hand: no call id), found by its location and the time it was read. See
    /// [`Store::source_text`].
    pub fn text_of_source(
        &self,
        run: RunId,
        subtask: &SubtaskId,
        source: &crate::protocol::Source,
    ) -> Result<Option<String>, StoreError> {
        read::text_of_source(&self.conn, run, subtask, source).map_err(|e| self.fail(e))
    }

    /// The saved text of the run's source numbered `number` (see [`Store::source_text`]);
    /// `None` when none has that number (sources saved before numbering have 0).
    pub fn numbered_source_text(
        &self,
        run: RunId,
        number: u32,
    ) -> Result<Option<String>, StoreError> {
        if number == 0 {
            return Ok(None);
        }
        read::numbered_source_text(&self.conn, run, number).map_err(|e| self.fail(e))
    }

    /// What resuming a run needs (see [`ResumeState`]).
    pub fn resume_state(&self, id: RunId) -> Result<ResumeState, StoreError> {
        Ok(self.load_run(id)?.resume_state())
    }

    /// Deletes runs and everything saved with them. Follow-up runs keep their place and
    /// forget their parent. Returns how many runs were deleted.
    pub fn delete_runs(&self, ids: &[RunId]) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.fail(e))?;
        let mut deleted = 0;
        for id in ids {
            deleted += tx
                .execute("DELETE FROM runs WHERE id = ?1", [id.to_string()])
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(deleted)
    }

    /// Deletes runs that started more than `age` before `now_ms` (milliseconds since the
    /// Unix epoch) and are not running. Returns how many. The file keeps its size (SQLite
    /// reuses the freed pages); `VACUUM` shrinks it.
    pub fn gc_older_than(&self, age: Duration, now_ms: u64) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(age.as_millis().min(u64::MAX as u128) as u64);
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.fail(e))?;
        let deleted = tx
            .execute(
                "DELETE FROM runs WHERE started_at < ?1 AND status <> 'running'",
                params![cutoff as i64],
            )
            .map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(deleted)
    }

    /// What the providers learnt about servers and models, by base URL, model and fact.
    pub fn server_facts(&self) -> Result<Vec<ServerFact>, StoreError> {
        facts::read(&self.conn).map_err(|e| self.fail(e))
    }

    /// Saves facts: new ones are added, a changed value replaces the old one (and its time).
    /// Returns how many rows changed.
    pub fn save_server_facts(&self, facts: &[ServerFact]) -> Result<usize, StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.fail(e))?;
        let changed = facts::write(&tx, facts).map_err(|e| self.fail(e))?;
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(changed)
    }

    /// Forgets what was learnt about `base_url` (every model), or about every server when
    /// `None`. Saved runs are not touched. Returns how many facts were deleted.
    pub fn forget_server_facts(&self, base_url: Option<&str>) -> Result<usize, StoreError> {
        facts::forget(&self.conn, base_url).map_err(|e| self.fail(e))
    }

    /// The raw connection, for tests and one-off queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn with_path(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::Sqlite { path, source } if path.as_os_str().is_empty() => {
                error::classify(&self.path, source, BUSY_TIMEOUT)
            }
            other => other,
        }
    }
}
