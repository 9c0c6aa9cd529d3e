//! The store's errors, each with a message a person can act on, and the classification of
//! SQLite's error codes into them. No I/O here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

use crate::protocol::RunId;

/// A run that a short id prefix could mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: RunId,
    pub started_ms: u64,
    pub query: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{}: not a maestro database (the file is not SQLite, or its header is damaged); \
         move it away or choose another file with --db",
        path.display()
    )]
    NotADatabase { path: PathBuf },
    #[error(
        "{}: the database is damaged ({detail}); move it away to start a new one \
         (`sqlite3 FILE .recover` may save its contents)",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "{}: an SQLite database of another program (it holds tables maestro did not create); \
         choose another file with --db",
        path.display()
    )]
    Foreign { path: PathBuf },
    #[error(
        "{}: written by a newer maestro (schema version {found}, this build knows up to \
         {supported}); upgrade maestro or choose another file with --db",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: usize,
    },
    #[error("{}: read-only, runs cannot be saved there ({detail})", path.display())]
    ReadOnly { path: PathBuf, detail: String },
    #[error("{}: the disk is full, runs cannot be saved until space is freed", path.display())]
    DiskFull { path: PathBuf },
    #[error("{}: cannot open the database ({detail})", path.display())]
    CannotOpen { path: PathBuf, detail: String },
    #[error(
        "{}: another process kept the database busy for more than {} s",
        path.display(),
        timeout.as_secs()
    )]
    Busy { path: PathBuf, timeout: Duration },
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no saved run matches `{prefix}`")]
    NotFound { prefix: String },
    #[error("{}", ambiguous_message(prefix, candidates))]
    Ambiguous {
        prefix: String,
        candidates: Vec<Candidate>,
    },
    #[error("`{input}` is not a run id (expected hexadecimal digits, dashes allowed)")]
    InvalidId { input: String },
    #[error("saved run {run} is unreadable: {detail}")]
    BadData { run: RunId, detail: String },
    #[error("runs cannot be saved: {reason}")]
    WriteFailed { reason: String },
    #[error("the store writer has stopped; this run is not being saved")]
    WriterGone,
    #[error("the store did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

fn ambiguous_message(prefix: &str, candidates: &[Candidate]) -> String {
    let mut out = format!("`{prefix}` matches {} runs:", candidates.len());
    for c in candidates {
        let query: String = c.query.chars().take(60).collect();
        out.push_str(&format!("\n  {}  {}", c.id, query));
    }
    out
}

impl StoreError {
    /// Worth trying again later: the disk may get space, the lock may be released.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::DiskFull { .. } | Self::Busy { .. } | Self::ReadOnly { .. } | Self::Timeout(_)
        ) || matches!(self, Self::Sqlite { source, .. } if is_transient_sqlite(source))
    }
}

/// Errors that come from the file system or other processes rather than from the data.
pub(crate) fn is_transient_sqlite(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// Turns an SQLite error on `path` into the error a person should see.
pub(crate) fn classify(path: &Path, err: rusqlite::Error, busy_timeout: Duration) -> StoreError {
    let path = path.to_path_buf();
    let detail = err.to_string();
    match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { path, detail },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, detail },
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { path },
        Some(ErrorCode::CannotOpen) => StoreError::CannotOpen { path, detail },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy {
            path,
            timeout: busy_timeout,
        },
        _ => StoreError::Sqlite { path, source: err },
    }
}
