//! What the providers learnt about each server and model, kept across processes in the
//! `server_facts` table: one row per base URL, model and fact, its value a short word.
//!
//! The store does not know what a fact means (`llm` owns that, and the front ends translate):
//! it keeps strings, and updates a row's time only when its value changes, so `learnt_at`
//! says when the server last surprised us.

use rusqlite::{Connection, params};

/// One saved fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFact {
    /// The configured base URL, without a trailing `/`.
    pub base_url: String,
    pub model: String,
    pub fact: String,
    pub value: String,
    /// When this value was first saved, in milliseconds since the Unix epoch.
    pub learnt_at_ms: u64,
}

pub(crate) fn read(conn: &Connection) -> rusqlite::Result<Vec<ServerFact>> {
    let mut stmt = conn.prepare(
        "SELECT base_url, model, fact, value, learnt_at FROM server_facts
         ORDER BY base_url, model, fact",
    )?;
    stmt.query_map([], |r| {
        Ok(ServerFact {
            base_url: r.get(0)?,
            model: r.get(1)?,
            fact: r.get(2)?,
            value: r.get(3)?,
            learnt_at_ms: r.get::<_, i64>(4)?.max(0) as u64,
        })
    })?
    .collect()
}

/// Inserts new facts and changes those whose value changed; returns how many rows changed.
pub(crate) fn write(conn: &Connection, facts: &[ServerFact]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare(
        "INSERT INTO server_facts (base_url, model, fact, value, learnt_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (base_url, model, fact) DO UPDATE
             SET value = excluded.value, learnt_at = excluded.learnt_at
             WHERE value <> excluded.value",
    )?;
    let mut changed = 0;
    for f in facts {
        changed += stmt.execute(params![
            f.base_url.trim_end_matches('/'),
            f.model,
            f.fact,
            f.value,
            f.learnt_at_ms.min(i64::MAX as u64) as i64
        ])?;
    }
    Ok(changed)
}

/// Deletes the facts about `base_url` (every model), or every fact when `None`.
pub(crate) fn forget(conn: &Connection, base_url: Option<&str>) -> rusqlite::Result<usize> {
    match base_url {
        Some(url) => conn.execute(
            "DELETE FROM server_facts WHERE base_url = ?1",
            [url.trim_end_matches('/')],
        ),
        None => conn.execute("DELETE FROM server_facts", []),
    }
}
