//! `StoreWriter`: one thread that owns a connection and writes a run's events in order, in
//! batched transactions, off the engine's and the UI's paths.
//!
//! Senders never block: the channel is unbounded and a send to a stopped writer is dropped.
//! A message waits at most `BATCH_WINDOW` before its transaction commits, so a result is on
//! disk within ~50 ms (plus the commit) of its event. When a write fails for a reason that
//! may pass (disk full, lock held too long, read-only), the batch is kept and tried again
//! every `RETRY_EVERY`, and `status()` says "unsaved" meanwhile; the run goes on. A message
//! that fails for any other reason (a bug, odd data) is skipped and counted, so one bad
//! event cannot stop a run from being saved. Streamed deltas are never stored; a tool call's
//! source is, with the text handed to the model up to [`SOURCE_TEXT_MAX`] bytes.
//!
//! This must not decide anything about runs; it records what the events say.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::error::{StoreError, classify, is_transient_sqlite};
use super::owner::OwnerLock;
use super::schema::{BUSY_TIMEOUT, open_connection};
use crate::protocol::{
    Attachments, CallRole, Event, EventKind, RunCommand, RunId, SourceKind, SubtaskId, Usage,
};

/// How long the first message of a batch waits for others before the batch commits.
pub const BATCH_WINDOW: Duration = Duration::from_millis(40);
/// A batch commits early once it holds this many messages.
pub const BATCH_MAX: usize = 512;
/// How often a batch that failed for a passing reason is tried again.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// A source's text is saved up to this many bytes (cut at a character boundary, with
/// [`SOURCE_TEXT_CUT`] after it): enough for any page a tool hands a model whole, while one
/// odd source cannot grow the file by megabytes.
pub const SOURCE_TEXT_MAX: usize = 256 * 1024;

/// The line that follows a source's text cut at [`SOURCE_TEXT_MAX`].
pub const SOURCE_TEXT_CUT: &str = "\n[… cut here: the store keeps the first 256 KiB of a source]";

/// `text` as saved: whole, or its first [`SOURCE_TEXT_MAX`] bytes and the marker.
pub fn capped_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= SOURCE_TEXT_MAX {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = SOURCE_TEXT_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{SOURCE_TEXT_CUT}", &text[..end]))
}

/// What is known about a run before its first event: written as the run's row before the
/// first provider call (see [`StoreSender::begin_run`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub id: RunId,
    pub query: String,
    /// `openai`, `anthropic`, `demo`, …
    pub provider: String,
    pub planner_model: Option<String>,
    pub worker_model: Option<String>,
    pub synthesizer_model: Option<String>,
    pub preset: Option<String>,
    /// The effective settings. Keys that look like secrets are removed before saving (see
    /// [`scrub_secrets`]); callers should not put keys here in the first place.
    pub settings: serde_json::Value,
    /// The run this one follows up, if any.
    pub parent: Option<RunId>,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// The files attached to the run, with their text. Empty keeps what the row has (a
    /// resume need not send them again).
    #[serde(default)]
    pub context: Attachments,
}

/// A user's steering command, recorded with the text it replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub run: RunId,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub command: RunCommand,
}

/// Whether the writer is keeping up, for a status line to poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStatus {
    /// Everything sent so far is saved or about to be.
    Saving,
    /// Writes are failing (the reason says why) and are being retried; or the writer stopped.
    Unsaved { reason: String },
}

/// Figures about the writer, for a status line or a benchmark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterStats {
    pub status: StoreStatus,
    /// Messages (events, commands, run starts) committed.
    pub saved: u64,
    /// Messages waiting in memory for a commit.
    pub pending: u64,
    /// Messages dropped because they could not be applied (see the log).
    pub skipped: u64,
    /// Transactions committed.
    pub commits: u64,
}

#[derive(Debug)]
struct Shared {
    stats: WriterStats,
}

type Ack = Sender<Result<(), StoreError>>;

enum Msg {
    Begin(RunMeta, Ack),
    Event(Event),
    Command(CommandRecord),
    Facts(Vec<super::ServerFact>),
    Flush(Ack),
    Close,
}

impl Msg {
    fn take_ack(&mut self) -> Option<Ack> {
        match self {
            Msg::Begin(_, ack) | Msg::Flush(ack) => {
                let (dead, _) = mpsc::channel();
                Some(std::mem::replace(ack, dead))
            }
            Msg::Event(_) | Msg::Command(_) | Msg::Facts(_) | Msg::Close => None,
        }
    }
}

/// A cheap, clonable handle for sending to the writer from any thread or task.
#[derive(Clone)]
pub struct StoreSender {
    tx: Sender<Msg>,
    shared: Arc<Mutex<Shared>>,
}

/// The writer thread. Dropping it (or [`StoreWriter::close`]) commits what was sent, marks
/// this writer's unfinished runs `interrupted`, and stops the thread.
pub struct StoreWriter {
    sender: StoreSender,
    thread: Option<JoinHandle<()>>,
}

/// Waits for the answer to [`StoreSender::begin_run`] or [`StoreSender::flush`].
#[must_use = "wait() tells whether the write reached the disk"]
pub struct Pending(Receiver<Result<(), StoreError>>);

impl Pending {
    pub fn wait(self, timeout: Duration) -> Result<(), StoreError> {
        match self.0.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::WriterGone),
        }
    }
}

impl StoreWriter {
    /// Opens (creating and migrating if needed) the database at `path` and starts the
    /// writer thread. Errors are those of [`super::Store::open`].
    pub fn spawn(path: &Path) -> Result<Self, StoreError> {
        let conn = open_connection(path)?;
        let owner = OwnerLock::acquire(path).map_err(|e| StoreError::CannotOpen {
            path: path.to_path_buf(),
            detail: format!("cannot create its owner lock file: {e}"),
        })?;
        let shared = Arc::new(Mutex::new(Shared {
            stats: WriterStats {
                status: StoreStatus::Saving,
                saved: 0,
                pending: 0,
                skipped: 0,
                commits: 0,
            },
        }));
        let (tx, rx) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let path = path.to_path_buf();
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("maestro-store".into())
            .spawn(move || {
                Worker {
                    conn,
                    path: thread_path,
                    owner,
                    shared: thread_shared,
                }
                .run(rx)
            })
            .map_err(|e| StoreError::CannotOpen {
                path,
                detail: format!("cannot start the store thread: {e}"),
            })?;
        Ok(Self {
            sender: StoreSender { tx, shared },
            thread: Some(thread),
        })
    }

    pub fn sender(&self) -> StoreSender {
        self.sender.clone()
    }

    /// Commits what was sent, marks this writer's unfinished runs interrupted, and stops.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.sender.tx.send(Msg::Close);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store thread panicked");
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::ops::Deref for StoreWriter {
    type Target = StoreSender;
    fn deref(&self) -> &StoreSender {
        &self.sender
    }
}

impl StoreSender {
    /// Writes the run's row now (not batched). Wait on the answer before the first provider
    /// call to be sure the run is saved; an error means the run goes on unsaved.
    pub fn begin_run(&self, mut meta: RunMeta) -> Pending {
        scrub_secrets(&mut meta.settings);
        let (ack, rx) = mpsc::channel();
        self.send(Msg::Begin(meta, ack));
        Pending(rx)
    }

    /// Queues an event. Deltas are dropped here, without a copy.
    pub fn event(&self, event: &Event) {
        if is_delta(&event.kind) {
            return;
        }
        self.send(Msg::Event(event.clone()));
    }

    /// Queues an event the caller no longer needs.
    pub fn event_owned(&self, event: Event) {
        if is_delta(&event.kind) {
            return;
        }
        self.send(Msg::Event(event));
    }

    /// Queues a user command. For an edit, the text it replaces is read from the database
    /// when the command is written, so record it before the engine's `SubtaskEdited`.
    pub fn command(&self, record: CommandRecord) {
        self.send(Msg::Command(record));
    }

    /// Queues facts learnt about servers and models, saved as [`super::Store::save_server_facts`]
    /// saves them.
    pub fn server_facts(&self, facts: Vec<super::ServerFact>) {
        if !facts.is_empty() {
            self.send(Msg::Facts(facts));
        }
    }

    /// Commits everything sent before this call.
    pub fn flush(&self) -> Pending {
        let (ack, rx) = mpsc::channel();
        self.send(Msg::Flush(ack));
        Pending(rx)
    }

    pub fn status(&self) -> StoreStatus {
        self.stats().status
    }

    pub fn stats(&self) -> WriterStats {
        match self.shared.lock() {
            Ok(shared) => shared.stats.clone(),
            Err(poisoned) => poisoned.into_inner().stats.clone(),
        }
    }

    fn send(&self, msg: Msg) {
        if self.tx.send(msg).is_err() {
            set_status(
                &self.shared,
                StoreStatus::Unsaved {
                    reason: StoreError::WriterGone.to_string(),
                },
            );
        }
    }
}

/// Streamed text, which is not saved: the finished results are. (Reasoning streams too, and
/// is counted in the usage the finished call reports.)
fn is_delta(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::SubtaskDelta { .. }
            | EventKind::SynthesisDelta { .. }
            | EventKind::SubtaskReasoning { .. }
            | EventKind::PlanningDelta { .. }
            | EventKind::PlanDrafted { .. }
    )
}

fn set_status(shared: &Mutex<Shared>, status: StoreStatus) {
    let mut guard = match shared.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    guard.stats.status = status;
}

/// Removes object keys that look like secrets (`api_key`, `token`, `password`,
/// `authorization`, `secret`, `*_key`), at any depth. Names of environment variables
/// (`api_key_env`) are kept: they say where a key comes from, not what it is.
pub fn scrub_secrets(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|key, _| !looks_secret(key));
            for v in map.values_mut() {
                scrub_secrets(v);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_secrets),
        _ => {}
    }
}

fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    if key.ends_with("_env") {
        return false;
    }
    ["secret", "password", "passwd", "authorization", "bearer"]
        .iter()
        .any(|w| key.contains(w))
        || key == "key"
        || key == "token"
        || key == "apikey"
        || key.ends_with("_key")
        || key.ends_with("_token")
}

struct Worker {
    conn: Connection,
    path: PathBuf,
    owner: OwnerLock,
    shared: Arc<Mutex<Shared>>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Msg> = Vec::new();
        let mut closing = false;
        let mut failing = false;
        loop {
            if batch.is_empty() && !closing {
                match rx.recv() {
                    Ok(Msg::Close) | Err(_) => closing = true,
                    Ok(msg) => batch.push(msg),
                }
            }
            // Gather more until the window closes, unless someone waits for an answer.
            let window = if failing { RETRY_EVERY } else { BATCH_WINDOW };
            let deadline = Instant::now() + window;
            // While failing, wait the whole interval whatever arrives: retrying at once would
            // hammer a full disk.
            while !closing && (failing || (batch.len() < BATCH_MAX && !has_waiter(&batch))) {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(Msg::Close) => closing = true,
                    Ok(msg) => batch.push(msg),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => closing = true,
                }
            }
            self.update_pending(batch.len());
            if batch.is_empty() {
                if closing {
                    break;
                }
                continue;
            }
            match self.commit(&batch) {
                Ok(skipped) => {
                    failing = false;
                    // Figures first, so whoever is answered below sees them.
                    {
                        let mut guard = lock(&self.shared);
                        guard.stats.saved += batch.len() as u64 - skipped;
                        guard.stats.skipped += skipped;
                        guard.stats.commits += 1;
                        guard.stats.pending = 0;
                        guard.stats.status = StoreStatus::Saving;
                    }
                    for mut msg in batch.drain(..) {
                        if let Some(ack) = msg.take_ack() {
                            let _ = ack.send(Ok(()));
                        }
                    }
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!("saving runs failed, will retry: {err}");
                    }
                    failing = true;
                    set_status(
                        &self.shared,
                        StoreStatus::Unsaved {
                            reason: err.to_string(),
                        },
                    );
                    // Whoever waits gets the answer now; the messages stay for the retry.
                    for msg in batch.iter_mut() {
                        if let Some(ack) = msg.take_ack() {
                            let _ = ack.send(Err(clone_error(&err)));
                        }
                    }
                    if closing {
                        tracing::error!("{} unsaved messages dropped at exit: {err}", batch.len());
                        break;
                    }
                }
            }
            if closing && batch.is_empty() {
                break;
            }
        }
        self.finish();
    }

    fn update_pending(&self, n: usize) {
        lock(&self.shared).stats.pending = n as u64;
    }

    /// Applies the batch in one transaction. Returns how many messages were skipped.
    fn commit(&mut self, batch: &[Msg]) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e| classify(&path, e, BUSY_TIMEOUT);
        let token = self.owner.token().to_owned();
        // Fast path: the whole batch at once. Only when a message fails is the batch redone
        // with a savepoint per message, so that one bad message is skipped, not the batch.
        let tx = self.conn.transaction().map_err(fail)?;
        let first_try = batch.iter().try_for_each(|msg| apply(&tx, &token, msg));
        match first_try {
            Ok(()) => {
                tx.commit().map_err(fail)?;
                return Ok(0);
            }
            Err(e) if is_transient_sqlite(&e) => return Err(fail(e)),
            Err(_) => drop(tx),
        }
        let mut tx = self.conn.transaction().map_err(fail)?;
        let mut skipped = 0;
        for msg in batch {
            let sp = tx.savepoint().map_err(fail)?;
            match apply(&sp, &token, msg) {
                Ok(()) => sp.commit().map_err(fail)?,
                Err(e) if is_transient_sqlite(&e) => return Err(fail(e)),
                Err(e) => {
                    skipped += 1;
                    tracing::warn!("a store message was skipped: {e}");
                    drop(sp);
                }
            }
        }
        tx.commit().map_err(fail)?;
        Ok(skipped)
    }

    fn finish(self) {
        // Runs this writer started and that never finished cannot go on without it.
        let result = self.conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            mark_owner_interrupted(&self.conn, Some(self.owner.token()))?;
            self.conn.execute_batch("COMMIT")
        });
        if let Err(e) = result {
            tracing::warn!("could not mark unfinished runs interrupted: {e}");
        }
        set_status(
            &self.shared,
            StoreStatus::Unsaved {
                reason: StoreError::WriterGone.to_string(),
            },
        );
        drop(self.conn);
        drop(self.owner);
    }
}

fn has_waiter(batch: &[Msg]) -> bool {
    batch
        .iter()
        .any(|m| matches!(m, Msg::Begin(..) | Msg::Flush(_)))
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    match shared.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn clone_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::DiskFull { path } => StoreError::DiskFull { path: path.clone() },
        StoreError::Busy { path, timeout } => StoreError::Busy {
            path: path.clone(),
            timeout: *timeout,
        },
        StoreError::ReadOnly { path, detail } => StoreError::ReadOnly {
            path: path.clone(),
            detail: detail.clone(),
        },
        other => StoreError::WriteFailed {
            reason: other.to_string(),
        },
    }
}

/// Marks the running runs of `owner` (and their calls in flight) interrupted. Returns how
/// many runs. `None` stands for runs with no owner recorded. Runs inside the caller's
/// transaction.
pub(crate) fn mark_owner_interrupted(
    conn: &Connection,
    owner: Option<&str>,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE subtasks SET status = 'interrupted'
         WHERE status IN ('running', 'retrying')
           AND run_id IN (SELECT id FROM runs WHERE status = 'running' AND owner IS ?1)",
        [owner],
    )?;
    conn.execute(
        "UPDATE attempts SET outcome = 'interrupted'
         WHERE outcome = 'running'
           AND run_id IN (SELECT id FROM runs WHERE status = 'running' AND owner IS ?1)",
        [owner],
    )?;
    conn.execute(
        "UPDATE runs SET status = 'interrupted',
             error = coalesce(error, 'maestro stopped before the run finished')
         WHERE status = 'running' AND owner IS ?1",
        [owner],
    )
}

fn apply(tx: &Connection, owner: &str, msg: &Msg) -> rusqlite::Result<()> {
    match msg {
        Msg::Begin(meta, _) => begin(tx, owner, meta),
        Msg::Event(event) => apply_event(tx, owner, event),
        Msg::Command(record) => apply_command(tx, record),
        Msg::Facts(facts) => super::facts::write(tx, facts).map(|_| ()),
        Msg::Flush(_) | Msg::Close => Ok(()),
    }
}

fn begin(tx: &Connection, owner: &str, meta: &RunMeta) -> rusqlite::Result<()> {
    let settings = serde_json::to_string(&meta.settings).unwrap_or_else(|_| "{}".into());
    // A parent that is not (or no longer) saved is forgotten rather than refusing the run.
    let parent = match meta.parent {
        Some(p) => tx
            .query_row("SELECT id FROM runs WHERE id = ?1", [p.to_string()], |r| {
                r.get::<_, String>(0)
            })
            .optional()?,
        None => None,
    };
    let context = (!meta.context.is_empty())
        .then(|| serde_json::to_string(&meta.context).ok())
        .flatten();
    tx.execute(
        "INSERT INTO runs (id, parent_id, query, provider, planner_model, worker_model,
                           synthesizer_model, preset, settings, status, started_at, owner,
                           context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET
             parent_id = coalesce(excluded.parent_id, parent_id),
             context = coalesce(excluded.context, context),
             query = excluded.query, provider = excluded.provider,
             planner_model = excluded.planner_model, worker_model = excluded.worker_model,
             synthesizer_model = excluded.synthesizer_model, preset = excluded.preset,
             settings = excluded.settings, status = 'running', finished_at = NULL,
             owner = excluded.owner",
        params![
            meta.id.to_string(),
            parent,
            meta.query,
            meta.provider,
            meta.planner_model,
            meta.worker_model,
            meta.synthesizer_model,
            meta.preset,
            settings,
            meta.started_ms as i64,
            owner,
            context,
        ],
    )?;
    Ok(())
}

fn json_list(ids: &[SubtaskId]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// One model call of a run: which role, which subtask (workers), which attempt.
#[derive(Clone, Copy)]
struct Call<'a> {
    run: &'a str,
    role: &'static str,
    subtask: Option<&'a str>,
    attempt: u32,
}

impl<'a> Call<'a> {
    fn planner(run: &'a str, attempt: u32) -> Self {
        Self {
            run,
            role: "planner",
            subtask: None,
            attempt,
        }
    }
    fn worker(run: &'a str, subtask: &'a SubtaskId, attempt: u32) -> Self {
        Self {
            run,
            role: "worker",
            subtask: Some(subtask.as_str()),
            attempt,
        }
    }
    fn synthesizer(run: &'a str, attempt: u32) -> Self {
        Self {
            run,
            role: "synthesizer",
            subtask: None,
            attempt,
        }
    }

    /// The row id of the latest attempt of this call.
    fn row(&self, tx: &Connection) -> rusqlite::Result<Option<i64>> {
        tx.query_row(
            "SELECT max(id) FROM attempts
             WHERE run_id = ?1 AND role = ?2 AND subtask_id IS ?3 AND attempt = ?4",
            params![self.run, self.role, self.subtask, self.attempt],
            |r| r.get(0),
        )
    }

    fn start(
        &self,
        tx: &Connection,
        worker: Option<&str>,
        model: &str,
        ts: i64,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO attempts (run_id, role, subtask_id, attempt, worker, model, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                self.run,
                self.role,
                self.subtask,
                self.attempt,
                worker,
                model,
                ts
            ],
        )?;
        Ok(())
    }

    /// Records how the call ended. Returns its row, if it was recorded starting.
    fn close(
        &self,
        tx: &Connection,
        ts: i64,
        outcome: &str,
        elapsed_ms: Option<u64>,
        error: Option<&str>,
    ) -> rusqlite::Result<Option<i64>> {
        let Some(row) = self.row(tx)? else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE attempts SET outcome = ?2, finished_at = ?3,
                 elapsed_ms = coalesce(?4, ?3 - started_at), error = ?5
             WHERE id = ?1",
            params![row, outcome, ts, elapsed_ms.map(|v| v as i64), error],
        )?;
        Ok(Some(row))
    }
}

fn set_usage(tx: &Connection, row: i64, usage: &Usage) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE attempts SET tokens_in = ?2, tokens_out = ?3, usage_estimated = ?4,
             tokens_cached = ?5
         WHERE id = ?1",
        params![
            row,
            usage.tokens_in as i64,
            usage.tokens_out as i64,
            usage.estimated,
            usage.cached_in as i64
        ],
    )?;
    Ok(())
}

fn add_run_usage(tx: &Connection, run: &str, usage: &Usage) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE runs SET tokens_in = tokens_in + ?2, tokens_out = tokens_out + ?3,
             usage_estimated = usage_estimated OR ?4
         WHERE id = ?1",
        params![
            run,
            usage.tokens_in as i64,
            usage.tokens_out as i64,
            usage.estimated
        ],
    )?;
    Ok(())
}

/// A run that gets more work after it finished is running again, under this writer.
fn reopen(tx: &Connection, owner: &str, run: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE runs SET status = 'running', finished_at = NULL, owner = ?2
         WHERE id = ?1 AND (status <> 'running' OR owner IS NOT ?2)",
        params![run, owner],
    )?;
    Ok(())
}

fn apply_event(tx: &Connection, owner: &str, event: &Event) -> rusqlite::Result<()> {
    let run = event.run.to_string();
    let run = run.as_str();
    let ts = event.ts_ms as i64;
    match &event.kind {
        EventKind::RunStarted { query } => {
            tx.execute(
                "INSERT INTO runs (id, query, status, started_at, owner)
                 VALUES (?1, ?2, 'running', ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET query = excluded.query, status = 'running',
                     finished_at = NULL, owner = excluded.owner",
                params![run, query, ts, owner],
            )?;
        }
        EventKind::PlanningStarted { attempt, model } => {
            Call::planner(run, *attempt).start(tx, None, model, ts)?;
            tx.execute(
                "UPDATE runs SET planner_model = ?2 WHERE id = ?1",
                params![run, model],
            )?;
        }
        EventKind::PlanningRetrying {
            attempt,
            delay_ms,
            reason,
        } => {
            if let Some(row) =
                Call::planner(run, *attempt).close(tx, ts, "retried", None, Some(reason))?
            {
                tx.execute(
                    "UPDATE attempts SET retry_delay_ms = ?2 WHERE id = ?1",
                    params![row, *delay_ms as i64],
                )?;
            }
        }
        EventKind::PlanRejected {
            attempt,
            error,
            answer,
        } => {
            // The answer is kept beside the problem found in it, as the dashboard shows them.
            if let Some(row) =
                Call::planner(run, *attempt).close(tx, ts, "rejected", None, Some(error))?
            {
                tx.execute(
                    "UPDATE attempts SET output = ?2 WHERE id = ?1",
                    params![row, answer],
                )?;
            }
        }
        EventKind::PlanReady { plan } => {
            let json = serde_json::to_string(plan)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tx.execute(
                "UPDATE runs SET plan = ?2 WHERE id = ?1",
                params![run, json],
            )?;
            tx.execute(
                "UPDATE attempts SET outcome = 'succeeded', finished_at = ?2,
                     elapsed_ms = ?2 - started_at
                 WHERE run_id = ?1 AND role = 'planner' AND outcome = 'running'",
                params![run, ts],
            )?;
            for (position, p) in plan.subtasks.iter().enumerate() {
                let priority = serde_json::to_value(p.priority)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "medium".into());
                let focus = serde_json::to_string(&p.focus_areas).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "INSERT INTO subtasks (run_id, id, position, worker, title, description,
                                           focus_areas, depends_on, priority, waiting_on)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8)
                     ON CONFLICT (run_id, id) DO UPDATE SET position = excluded.position,
                         worker = excluded.worker, title = excluded.title,
                         description = excluded.description,
                         focus_areas = excluded.focus_areas,
                         depends_on = excluded.depends_on, priority = excluded.priority",
                    params![
                        run,
                        p.id.as_str(),
                        position as i64,
                        p.worker,
                        p.title,
                        p.description,
                        focus,
                        json_list(&p.depends_on),
                        priority,
                    ],
                )?;
            }
        }
        EventKind::Notice { message } => {
            tx.execute(
                "INSERT INTO notices (run_id, at, message) VALUES (?1, ?2, ?3)",
                params![run, ts, message],
            )?;
        }
        // Budget and provider pauses are kept with the notices, in the words a person reads;
        // skipped subtasks are cancelled ones, whose notice says why.
        EventKind::BudgetReached { reason, .. } => notice(tx, run, ts, &reason.to_string())?,
        EventKind::BudgetRaised {
            max_tokens,
            deadline_ms,
            max_cost_micros,
        } => notice(
            tx,
            run,
            ts,
            &crate::protocol::budget_raised_words(*max_tokens, *deadline_ms, *max_cost_micros),
        )?,
        EventKind::SubtasksSkipped { subtasks, reason } => {
            for subtask in subtasks {
                tx.execute(
                    "UPDATE subtasks SET status = 'cancelled' WHERE run_id = ?1 AND id = ?2",
                    params![run, subtask.as_str()],
                )?;
            }
            let ids: Vec<&str> = subtasks.iter().map(|s| s.as_str()).collect();
            notice(tx, run, ts, &format!("{}: {reason}", ids.join(", ")))?;
        }
        EventKind::ProviderPaused { message } => notice(tx, run, ts, message)?,
        EventKind::ProviderResumed => notice(tx, run, ts, "provider resumed")?,
        // A wait before a call went out: the attempt's times say how long it took.
        EventKind::SubtaskWaiting { .. } => {}
        // The plan is saved once approved, by `PlanReady`.
        EventKind::PlanAwaitingReview { .. } => {}
        // A refused command changed nothing; it is kept with the notices, in the words a
        // person reads.
        EventKind::CommandRefused { refusal, .. } => {
            tx.execute(
                "INSERT INTO notices (run_id, at, message) VALUES (?1, ?2, ?3)",
                params![run, ts, refusal.to_string()],
            )?;
        }
        EventKind::SubtaskQueued {
            subtask,
            waiting_on,
        } => {
            reopen(tx, owner, run)?;
            tx.execute(
                "UPDATE subtasks SET status = 'pending', waiting_on = ?3
                 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), json_list(waiting_on)],
            )?;
        }
        EventKind::SubtaskStarted {
            subtask,
            attempt,
            worker,
            model,
        } => {
            reopen(tx, owner, run)?;
            // The result this attempt may replace moves to the attempt that wrote it (only
            // the current result lives in `subtasks` alone, so results are stored once).
            tx.execute(
                "UPDATE attempts SET output = (SELECT result FROM subtasks
                                               WHERE run_id = ?1 AND id = ?2)
                 WHERE id = (SELECT max(id) FROM attempts WHERE run_id = ?1 AND role = 'worker'
                             AND subtask_id = ?2 AND outcome = 'succeeded')
                   AND output IS NULL",
                params![run, subtask.as_str()],
            )?;
            tx.execute(
                "UPDATE subtasks SET status = 'running', attempts = ?3, worker = ?4, model = ?5,
                     started_at = ?6, finished_at = NULL, elapsed_ms = NULL, error = NULL,
                     waiting_on = '[]', flagged = NULL
                 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), attempt, worker, model, ts],
            )?;
            Call::worker(run, subtask, *attempt).start(tx, Some(worker), model, ts)?;
        }
        EventKind::SubtaskDelta { .. }
        | EventKind::SynthesisDelta { .. }
        | EventKind::SubtaskReasoning { .. }
        | EventKind::PlanningDelta { .. }
        | EventKind::PlanDrafted { .. } => {}
        // The files and their text came with the run's row (`RunMeta::context`).
        EventKind::ContextAttached { .. } => {}
        EventKind::ToolCallStarted {
            subtask,
            attempt,
            call_id,
            tool,
            arguments,
        } => {
            tx.execute(
                "INSERT INTO tool_calls (run_id, subtask_id, attempt, call_id, tool, arguments,
                                         started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run, subtask.as_str(), attempt, call_id, tool, arguments, ts],
            )?;
        }
        EventKind::ToolCallFinished {
            subtask,
            attempt,
            call_id,
            ok,
            bytes,
            ms,
            summary,
            source,
            text,
        } => {
            // The latest unfinished call of that id: a model may reuse an id in a later round.
            let closed = tx.execute(
                "UPDATE tool_calls SET finished_at = ?5, elapsed_ms = ?6, ok = ?7, bytes = ?8,
                     summary = ?9
                 WHERE id = (SELECT max(id) FROM tool_calls
                             WHERE run_id = ?1 AND subtask_id = ?2 AND attempt = ?3
                               AND call_id = ?4 AND finished_at IS NULL)",
                params![
                    run,
                    subtask.as_str(),
                    attempt,
                    call_id,
                    ts,
                    *ms as i64,
                    ok,
                    *bytes as i64,
                    summary
                ],
            )?;
            if closed == 0 {
                // Its start was not saved (an events file cut at the front): the end says
                // enough to keep the call.
                tx.execute(
                    "INSERT INTO tool_calls (run_id, subtask_id, attempt, call_id, tool,
                                             started_at, finished_at, elapsed_ms, ok, bytes,
                                             summary)
                     VALUES (?1, ?2, ?3, ?4, '', ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        run,
                        subtask.as_str(),
                        attempt,
                        call_id,
                        ts.saturating_sub(*ms as i64),
                        ts,
                        *ms as i64,
                        ok,
                        *bytes as i64,
                        summary
                    ],
                )?;
            }
            if let Some(source) = source {
                let kind = match source.kind {
                    SourceKind::Url => "url",
                    SourceKind::File => "file",
                };
                tx.execute(
                    "INSERT INTO sources (run_id, subtask_id, attempt, call_id, number, kind,
                                          location, bytes, status, retrieved_at, text,
                                          text_bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        run,
                        subtask.as_str(),
                        attempt,
                        call_id,
                        source.number,
                        kind,
                        source.location,
                        source.bytes as i64,
                        source.status,
                        source.retrieved_ms as i64,
                        capped_text(text),
                        text.len() as i64,
                    ],
                )?;
            }
        }
        EventKind::SubtaskRetrying {
            subtask,
            attempt,
            delay_ms,
            reason: _,
            error,
        } => {
            tx.execute(
                "UPDATE subtasks SET status = 'retrying', error = ?3 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), error],
            )?;
            if let Some(row) =
                Call::worker(run, subtask, *attempt).close(tx, ts, "retried", None, Some(error))?
            {
                tx.execute(
                    "UPDATE attempts SET retry_delay_ms = ?2 WHERE id = ?1",
                    params![row, *delay_ms as i64],
                )?;
            }
        }
        EventKind::SubtaskSucceeded {
            subtask,
            attempt,
            elapsed_ms,
            usage,
            result,
            cut_off,
            cached,
        } => {
            tx.execute(
                "UPDATE subtasks SET status = 'succeeded', result = ?3, error = NULL,
                     elapsed_ms = ?4, finished_at = ?5,
                     tokens_in = tokens_in + ?6, tokens_out = tokens_out + ?7,
                     usage_estimated = usage_estimated OR ?8, cut_off = ?9, cached = ?10
                 WHERE run_id = ?1 AND id = ?2",
                params![
                    run,
                    subtask.as_str(),
                    result,
                    *elapsed_ms as i64,
                    ts,
                    usage.tokens_in as i64,
                    usage.tokens_out as i64,
                    usage.estimated,
                    cut_off,
                    cached,
                ],
            )?;
            if let Some(row) = Call::worker(run, subtask, *attempt).close(
                tx,
                ts,
                "succeeded",
                Some(*elapsed_ms),
                None,
            )? {
                set_usage(tx, row, usage)?;
            }
            add_run_usage(tx, run, usage)?;
        }
        EventKind::SubtaskFailed {
            subtask,
            attempt,
            elapsed_ms,
            error,
            partial,
        } => {
            tx.execute(
                "UPDATE subtasks SET status = 'failed', result = NULL, error = ?3,
                     elapsed_ms = ?4, finished_at = ?5
                 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), error, *elapsed_ms as i64, ts],
            )?;
            if let Some(row) = Call::worker(run, subtask, *attempt).close(
                tx,
                ts,
                "failed",
                Some(*elapsed_ms),
                Some(error),
            )? && !partial.is_empty()
            {
                tx.execute(
                    "UPDATE attempts SET output = ?2 WHERE id = ?1",
                    params![row, partial],
                )?;
            }
        }
        EventKind::SubtaskBlocked {
            subtask,
            waiting_on,
        } => {
            tx.execute(
                "UPDATE subtasks SET status = 'blocked', waiting_on = ?3
                 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), json_list(waiting_on)],
            )?;
        }
        EventKind::SubtaskCancelled { subtask, attempt } => {
            tx.execute(
                "UPDATE subtasks SET status = 'cancelled',
                     finished_at = CASE WHEN status IN ('running', 'retrying') THEN ?3
                                        ELSE finished_at END
                 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), ts],
            )?;
            tx.execute(
                "UPDATE attempts SET outcome = 'cancelled', finished_at = ?4,
                     elapsed_ms = ?4 - started_at
                 WHERE id = (SELECT max(id) FROM attempts WHERE run_id = ?1 AND role = 'worker'
                             AND subtask_id = ?2 AND attempt = ?3)
                   AND outcome = 'running'",
                params![run, subtask.as_str(), attempt, ts],
            )?;
        }
        EventKind::SubtaskEdited {
            subtask,
            description,
            worker,
        } => {
            tx.execute(
                "UPDATE subtasks SET description = ?3, worker = ?4 WHERE run_id = ?1 AND id = ?2",
                params![run, subtask.as_str(), description, worker],
            )?;
        }
        EventKind::SynthesisStarted { attempt, model } => {
            reopen(tx, owner, run)?;
            Call::synthesizer(run, *attempt).start(tx, None, model, ts)?;
            tx.execute(
                "UPDATE runs SET synthesizer_model = ?2 WHERE id = ?1",
                params![run, model],
            )?;
        }
        EventKind::SynthesisRetrying {
            attempt,
            delay_ms,
            reason,
        } => {
            if let Some(row) =
                Call::synthesizer(run, *attempt).close(tx, ts, "retried", None, Some(reason))?
            {
                tx.execute(
                    "UPDATE attempts SET retry_delay_ms = ?2 WHERE id = ?1",
                    params![row, *delay_ms as i64],
                )?;
            }
        }
        EventKind::SynthesisCancelled { attempt } => {
            Call::synthesizer(run, *attempt).close(tx, ts, "cancelled", None, None)?;
        }
        EventKind::SynthesisFinished {
            attempt,
            text,
            synthesized,
            usage,
            error,
        } => {
            let outcome = if *synthesized { "succeeded" } else { "failed" };
            let row =
                Call::synthesizer(run, *attempt).close(tx, ts, outcome, None, error.as_deref())?;
            let model: Option<String> = match row {
                Some(row) => {
                    // A failed synthesis's tokens came with its `CallUsage`.
                    if *synthesized {
                        set_usage(tx, row, usage)?;
                    }
                    tx.query_row("SELECT model FROM attempts WHERE id = ?1", [row], |r| {
                        r.get(0)
                    })?
                }
                None => None,
            };
            tx.execute(
                "INSERT INTO syntheses (run_id, version, attempt, model, text, synthesized,
                                        error, tokens_in, tokens_out, usage_estimated,
                                        finished_at)
                 VALUES (?1, (SELECT coalesce(max(version), 0) + 1 FROM syntheses
                              WHERE run_id = ?1),
                         ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    run,
                    attempt,
                    model,
                    text,
                    synthesized,
                    error,
                    usage.tokens_in as i64,
                    usage.tokens_out as i64,
                    usage.estimated,
                    ts,
                ],
            )?;
            add_run_usage(tx, run, usage)?;
        }
        // Nothing to save: the plan's `complexity` and a report with no synthesis call say it.
        EventKind::DirectAnswer { .. } => {}
        // The subtask's row stays `running` while the validator checks its answer: the
        // status words are a CHECK of the schema, and nothing is lost by it.
        EventKind::SubtaskValidating { .. } => {}
        EventKind::SubtaskValidated {
            subtask,
            attempt,
            passed,
            reason,
            usage,
            flagged,
        } => {
            if *flagged {
                tx.execute(
                    "UPDATE subtasks SET flagged = ?3 WHERE run_id = ?1 AND id = ?2",
                    params![run, subtask.as_str(), reason],
                )?;
            } else if !*passed {
                // Rejected: the attempt is over and another follows with the reason.
                let error = format!("rejected by the validator: {reason}");
                Call::worker(run, subtask, *attempt).close(
                    tx,
                    ts,
                    "retried",
                    None,
                    Some(&error),
                )?;
            }
            add_run_usage(tx, run, usage)?;
        }
        EventKind::CallUsage {
            role,
            subtask,
            attempt,
            model: _,
            usage,
            failed,
        } => {
            let call = match (role, subtask) {
                (CallRole::Worker, Some(id)) => Call::worker(run, id, *attempt),
                (CallRole::Planner, _) => Call::planner(run, *attempt),
                (CallRole::Synthesizer, _) => Call::synthesizer(run, *attempt),
                // Validator calls have no attempt row; their tokens came with the verdict.
                (CallRole::Worker, None) | (CallRole::Validator, _) => return Ok(()),
            };
            if let Some(row) = call.row(tx)? {
                set_usage(tx, row, usage)?;
            }
            // Successful worker and synthesis calls are summed with their results; the
            // planner's and failed calls' tokens only here.
            if *failed || *role == CallRole::Planner {
                add_run_usage(tx, run, usage)?;
            }
        }
        EventKind::RunFinished {
            status,
            elapsed_ms,
            usage,
            succeeded: _,
            failed: _,
            total: _,
            error,
        } => {
            // The engine's total (planner included) replaces the running sum.
            tx.execute(
                "UPDATE runs SET status = ?2, finished_at = ?3, elapsed_ms = ?4,
                     tokens_in = ?5, tokens_out = ?6, usage_estimated = ?7, error = ?8
                 WHERE id = ?1",
                params![
                    run,
                    status.word(),
                    ts,
                    *elapsed_ms as i64,
                    usage.tokens_in as i64,
                    usage.tokens_out as i64,
                    usage.estimated,
                    error,
                ],
            )?;
        }
    }
    Ok(())
}

fn notice(tx: &Connection, run: &str, ts: i64, message: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO notices (run_id, at, message) VALUES (?1, ?2, ?3)",
        params![run, ts, message],
    )?;
    Ok(())
}

fn apply_command(tx: &Connection, record: &CommandRecord) -> rusqlite::Result<()> {
    let run = record.run.to_string();
    let at = record.at_ms as i64;
    let (kind, subtask, description, worker) = match &record.command {
        RunCommand::RetrySubtask(id) => ("retry_subtask", Some(id), None, None),
        RunCommand::RetryFailed => ("retry_failed", None, None, None),
        RunCommand::CancelSubtask(id) => ("cancel_subtask", Some(id), None, None),
        RunCommand::CancelRun => ("cancel_run", None, None, None),
        RunCommand::EditSubtask {
            id,
            description,
            worker,
        } => (
            "edit_subtask",
            Some(id),
            description.as_deref(),
            worker.as_deref(),
        ),
        RunCommand::Resynthesize => ("resynthesize", None, None, None),
        RunCommand::Replan => ("replan", None, None, None),
        // The events they answer with (`BudgetRaised`, `SubtasksSkipped`, `ProviderResumed`)
        // are kept as notices; the commands table's kinds stay those it was made with.
        // An approved plan is saved by the `PlanReady` that answers it.
        RunCommand::RaiseBudget { .. }
        | RunCommand::SynthesizeNow
        | RunCommand::ResumeProvider
        | RunCommand::ApprovePlan { .. } => {
            return Ok(());
        }
    };
    let (old_description, old_worker) = match subtask {
        Some(id) if description.is_some() || worker.is_some() => tx
            .query_row(
                "SELECT description, worker FROM subtasks WHERE run_id = ?1 AND id = ?2",
                params![run, id.as_str()],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                },
            )
            .optional()?
            .unwrap_or((None, None)),
        _ => (None, None),
    };
    tx.execute(
        "INSERT INTO commands (run_id, at, kind, subtask_id, old_description, new_description,
                               old_worker, new_worker)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            run,
            at,
            kind,
            subtask.map(|s| s.as_str()),
            description.and(old_description),
            description,
            worker.and(old_worker),
            worker,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_scrubbed_at_any_depth_and_env_names_kept() {
        let mut v = json!({
            "provider": "openai",
            "api_key": "sk-test-not-real",
            "openai": {"api_key_env": "OPENAI_API_KEY", "Authorization": "Bearer x",
                       "base_url": "http://localhost"},
            "list": [{"token": "t", "tokens": 5, "max_tokens": 9}],
            "anthropic_key": "k",
        });
        scrub_secrets(&mut v);
        assert_eq!(
            v,
            json!({
                "provider": "openai",
                "openai": {"api_key_env": "OPENAI_API_KEY", "base_url": "http://localhost"},
                "list": [{"tokens": 5, "max_tokens": 9}],
            })
        );
    }

    #[test]
    fn a_long_source_text_is_cut_at_a_character_boundary_with_the_marker() {
        assert_eq!(capped_text("short"), "short");
        let exact = "a".repeat(SOURCE_TEXT_MAX);
        assert_eq!(capped_text(&exact), exact.as_str());
        // A three-byte character straddles the limit: the cut comes before it.
        let long = format!("{}€tail", "a".repeat(SOURCE_TEXT_MAX - 1));
        let cut = capped_text(&long);
        assert_eq!(
            cut,
            format!("{}{SOURCE_TEXT_CUT}", "a".repeat(SOURCE_TEXT_MAX - 1))
        );
    }

    #[test]
    fn deltas_are_not_messages() {
        assert!(is_delta(&EventKind::SynthesisDelta {
            attempt: 1,
            text: "x".into()
        }));
        assert!(!is_delta(&EventKind::Notice {
            message: "x".into()
        }));
    }
}
