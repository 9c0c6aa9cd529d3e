//! Which process owns a running run, so that opening the database can tell a run left behind
//! by a dead process (to be marked `interrupted`) from one another live process is running.
//!
//! Each writer holds an exclusive OS lock (`File::try_lock`: `flock` on Unix, `LockFileEx` on
//! Windows) on its own file `<db>-owners/<token>.lock`, and stamps its token in `runs.owner`.
//! The kernel drops the lock when the process dies, even by `kill -9`, so a token whose file
//! can be locked (or is gone) belongs to nobody. No clocks or heartbeats are involved, and a
//! reused process id cannot be mistaken for the owner. This must not touch the database.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The folder of owner lock files beside the database file.
pub fn owners_dir(db: &Path) -> PathBuf {
    let mut name = db
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "maestro.db".into());
    name.push("-owners");
    db.with_file_name(name)
}

/// A token is 32 lowercase hex digits; anything else in `runs.owner` names no file.
fn valid_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// This process's claim on the runs it writes; released (and its file removed) on drop.
#[derive(Debug)]
pub struct OwnerLock {
    token: String,
    path: PathBuf,
    file: Option<File>,
}

impl OwnerLock {
    pub fn acquire(db: &Path) -> io::Result<Self> {
        let dir = owners_dir(db);
        std::fs::create_dir_all(&dir)?;
        let token = uuid::Uuid::now_v7().simple().to_string();
        let path = dir.join(format!("{token}.lock"));
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::other(
                    "a fresh owner file is locked by someone else",
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        Ok(Self {
            token,
            path,
            file: Some(file),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for OwnerLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock, so a sweeper never finds it unlocked
        // while this process still owns runs.
        let _ = std::fs::remove_file(&self.path);
        if let Some(file) = self.file.take() {
            let _ = file.unlock();
        }
    }
}

/// Whether the owner `token` of a running run may still be alive. Errs on the side of
/// "alive": a run is only marked interrupted when its owner is certainly gone.
pub fn owner_alive(db: &Path, token: Option<&str>) -> bool {
    let Some(token) = token.filter(|t| valid_token(t)) else {
        return false;
    };
    let path = owners_dir(db).join(format!("{token}.lock"));
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        Err(_) => return true,
    };
    match file.try_lock() {
        Ok(()) => {
            // Nobody holds it: its process died without cleaning up.
            let _ = std::fs::remove_file(&path);
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_alive_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("h.db");
        let lock = OwnerLock::acquire(&db).expect("lock");
        let token = lock.token().to_owned();
        assert!(owner_alive(&db, Some(&token)));
        drop(lock);
        assert!(!owner_alive(&db, Some(&token)));
    }

    #[test]
    fn an_unlocked_leftover_file_is_dead_and_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("h.db");
        let token = "0123456789abcdef0123456789abcdef";
        std::fs::create_dir_all(owners_dir(&db)).expect("dir");
        let path = owners_dir(&db).join(format!("{token}.lock"));
        std::fs::write(&path, b"").expect("file");
        assert!(!owner_alive(&db, Some(token)));
        assert!(!path.exists());
    }

    #[test]
    fn odd_tokens_name_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("h.db");
        assert!(!owner_alive(&db, Some("../../etc/passwd")));
        assert!(!owner_alive(&db, None));
    }

    #[test]
    fn owners_dir_sits_beside_the_database() {
        assert_eq!(
            owners_dir(Path::new("data/runs.db")),
            Path::new("data/runs.db-owners")
        );
    }
}
