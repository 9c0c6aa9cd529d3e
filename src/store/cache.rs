//! The result cache's table (`result_cache`): worker answers keyed by a hash of the request
//! that produced them, read back while they are younger than a time to live.
//!
//! Keys are made by the caller (`crate::cache` hashes the request); this module only stores
//! and finds text under them, and knows nothing of providers, runs or what a key means. It
//! blocks on SQLite: callers on an async runtime use it from a blocking thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::error::{StoreError, classify};
use super::schema::{self, BUSY_TIMEOUT};

/// An answer saved for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub answer: String,
    pub reasoning: String,
}

/// What a new entry holds besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub provider: String,
    pub base_url: String,
    pub model: String,
    pub answer: String,
    pub reasoning: String,
    /// What the call that made the answer spent: the tokens each later hit saves.
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// `maestro cache stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub entries: u64,
    /// Characters of the answers and reasoning held, in bytes.
    pub bytes: u64,
    /// When the oldest and newest entries were saved (ms since the Unix epoch).
    pub oldest_ms: Option<u64>,
    pub newest_ms: Option<u64>,
    /// Times an entry stood in for a call.
    pub hits: u64,
    /// Tokens those hits did not spend.
    pub tokens_saved: u64,
}

/// A connection to the cache's table in the run database.
pub struct ResultCache {
    conn: Connection,
    path: PathBuf,
}

impl ResultCache {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            conn: schema::open_connection(path)?,
            path: path.to_path_buf(),
        })
    }

    fn fail(&self, err: rusqlite::Error) -> StoreError {
        classify(&self.path, err, BUSY_TIMEOUT)
    }

    /// The answer saved under `key` no earlier than `ttl` before `now_ms`, counting the hit.
    pub fn get(
        &self,
        key: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<Option<CachedAnswer>, StoreError> {
        let since = now_ms.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let found = self
            .conn
            .query_row(
                "SELECT answer, reasoning FROM result_cache WHERE key = ?1 AND created_at >= ?2",
                params![key, i64::try_from(since).unwrap_or(i64::MAX)],
                |r| {
                    Ok(CachedAnswer {
                        answer: r.get(0)?,
                        reasoning: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.fail(e))?;
        if found.is_some() {
            self.conn
                .execute(
                    "UPDATE result_cache SET hits = hits + 1, last_hit_at = ?2 WHERE key = ?1",
                    params![key, i64::try_from(now_ms).unwrap_or(i64::MAX)],
                )
                .map_err(|e| self.fail(e))?;
        }
        Ok(found)
    }

    /// Saves `entry` under `key`, replacing what was there (an explicit re-run's answer
    /// replaces the one the user turned down).
    pub fn put(&self, key: &str, entry: &CacheEntry, now_ms: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO result_cache
                     (key, provider, base_url, model, answer, reasoning, tokens_in, tokens_out,
                      created_at, hits, last_hit_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, NULL)",
                params![
                    key,
                    entry.provider,
                    entry.base_url,
                    entry.model,
                    entry.answer,
                    entry.reasoning,
                    i64::try_from(entry.tokens_in).unwrap_or(i64::MAX),
                    i64::try_from(entry.tokens_out).unwrap_or(i64::MAX),
                    i64::try_from(now_ms).unwrap_or(i64::MAX),
                ],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM result_cache", [])
            .map_err(|e| self.fail(e))
    }

    pub fn stats(&self) -> Result<CacheStats, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*),
                        coalesce(sum(length(CAST(answer AS BLOB))
                                     + length(CAST(reasoning AS BLOB))), 0),
                        min(created_at), max(created_at), coalesce(sum(hits), 0),
                        coalesce(sum(hits * (tokens_in + tokens_out)), 0)
                 FROM result_cache",
                [],
                |r| {
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                    let at = |i: usize| {
                        r.get::<_, Option<i64>>(i)
                            .map(|v| v.map(|v| u64::try_from(v).unwrap_or(0)))
                    };
                    Ok(CacheStats {
                        entries: n(0)?,
                        bytes: n(1)?,
                        oldest_ms: at(2)?,
                        newest_ms: at(3)?,
                        hits: n(4)?,
                        tokens_saved: n(5)?,
                    })
                },
            )
            .map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(answer: &str) -> CacheEntry {
        CacheEntry {
            provider: "openai".into(),
            base_url: "http://localhost/v1".into(),
            model: "m".into(),
            answer: answer.into(),
            reasoning: String::new(),
            tokens_in: 10,
            tokens_out: 5,
        }
    }

    #[test]
    fn an_answer_is_found_within_its_ttl_and_not_after() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cache = ResultCache::open(&dir.path().join("m.db")).expect("opens");
        let day = Duration::from_secs(86_400);
        cache.put("k", &entry("A"), 1_000).expect("put");
        let hit = cache.get("k", day, 1_000 + 1_000).expect("get");
        assert_eq!(hit.map(|h| h.answer).as_deref(), Some("A"));
        assert_eq!(cache.get("k", day, 1_000 + 86_400_001).expect("get"), None);
        assert_eq!(cache.get("other", day, 1_000).expect("get"), None);
    }

    #[test]
    fn a_new_answer_replaces_the_old_and_clear_empties_the_table() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let cache = ResultCache::open(&dir.path().join("m.db")).expect("opens");
        let ttl = Duration::from_secs(60);
        cache.put("k", &entry("old"), 0).expect("put");
        cache.put("k", &entry("new"), 10).expect("put");
        let hit = cache.get("k", ttl, 20).expect("get");
        assert_eq!(hit.map(|h| h.answer).as_deref(), Some("new"));
        let stats = cache.stats().expect("stats");
        assert_eq!(
            (stats.entries, stats.bytes, stats.hits, stats.tokens_saved),
            (1, 3, 1, 15)
        );
        assert_eq!((stats.oldest_ms, stats.newest_ms), (Some(10), Some(10)));
        assert_eq!(cache.clear().expect("clear"), 1);
        assert_eq!(cache.stats().expect("stats"), CacheStats::default());
    }
}
