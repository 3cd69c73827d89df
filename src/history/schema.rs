//! The history's schema and its migrations.
//!
//! `schema_version` holds one row: the number of migrations applied. Opening a database applies
//! the missing ones in order, in one immediate transaction, so two runs opening a fresh file at
//! once never both migrate it. To change the schema, append a migration to [`MIGRATIONS`]; never
//! edit one that has shipped. A database with a version above `MIGRATIONS.len()` was written by a
//! newer metalab and is refused rather than misread.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[MIGRATION_1];

/// The version this metalab writes and reads.
pub const CURRENT: u32 = MIGRATIONS.len() as u32;

/// Runs, their conditions, their tests, and one row per benchmark sample. `runs.record` keeps the
/// whole results file, so a run's report can be rebuilt from the history alone.
const MIGRATION_1: &str = "
CREATE TABLE runs (
    run_id          TEXT PRIMARY KEY,
    started         TEXT NOT NULL,
    finished        TEXT,
    duration_s      REAL NOT NULL,
    status          TEXT NOT NULL,
    host            TEXT NOT NULL,
    metalab_version TEXT NOT NULL,
    box_name        TEXT,
    box_version     TEXT,
    box_sha256      TEXT,
    record          TEXT NOT NULL
);
CREATE INDEX runs_started ON runs (started);

CREATE TABLE conditions (
    run_id           TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    key              TEXT NOT NULL,
    host_fingerprint TEXT NOT NULL,
    hostname         TEXT NOT NULL,
    cpu_model        TEXT NOT NULL,
    cores            INTEGER NOT NULL,
    kernel           TEXT NOT NULL,
    vm_cpus          INTEGER NOT NULL,
    vm_memory_mib    INTEGER NOT NULL,
    accel            TEXT NOT NULL,
    box_sha256       TEXT NOT NULL,
    metalab_version  TEXT NOT NULL,
    lab_commit       TEXT
);
CREATE INDEX conditions_key ON conditions (key);

CREATE TABLE tests (
    run_id          TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    suite           TEXT NOT NULL,
    name            TEXT NOT NULL,
    vm              TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    infra           INTEGER NOT NULL,
    duration_s      REAL NOT NULL,
    message         TEXT,
    log             TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL,
    PRIMARY KEY (run_id, suite, name)
);

CREATE TABLE samples (
    run_id       TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    suite        TEXT NOT NULL,
    benchmark    TEXT NOT NULL,
    metric       TEXT NOT NULL,
    unit         TEXT NOT NULL,
    direction    TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    value        REAL NOT NULL,
    PRIMARY KEY (run_id, suite, benchmark, metric, sample_index)
);
CREATE INDEX samples_metric ON samples (suite, benchmark, metric);
";

/// How a migration run ended.
pub enum Migrated {
    /// The schema is at [`CURRENT`].
    Current,
    /// The file is newer than this metalab; nothing was changed.
    Newer(u32),
}

/// Brings the schema to [`CURRENT`]. Reads first, so that opening an up-to-date history (every
/// open but the first) takes no write lock.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    match version(conn)? {
        v if v > CURRENT => return Ok(Migrated::Newer(v)),
        CURRENT => return Ok(Migrated::Current),
        _ => {}
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while this one waited for the lock.
    let found = version(&tx)?;
    if found > CURRENT {
        return Ok(Migrated::Newer(found));
    }
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    for sql in &MIGRATIONS[found as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [CURRENT],
    )?;
    tx.commit()?;
    Ok(Migrated::Current)
}

/// The applied version: 0 for a new, empty file.
fn version(conn: &Connection) -> rusqlite::Result<u32> {
    let has_table: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !has_table {
        return Ok(0);
    }
    let v: Option<u32> = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    Ok(v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_migrated_once_and_then_left_alone() {
        let mut conn = Connection::open_in_memory().expect("opens");
        assert!(matches!(migrate(&mut conn), Ok(Migrated::Current)));
        assert_eq!(version(&conn).expect("readable"), CURRENT);
        conn.execute("INSERT INTO schema_version (version) VALUES (0)", [])
            .expect("a marker row");
        // Up to date: no write, so the marker row is still there.
        assert!(matches!(migrate(&mut conn), Ok(Migrated::Current)));
        let rows: u32 = conn
            .query_row("SELECT count(*) FROM schema_version", [], |r| r.get(0))
            .expect("counted");
        assert_eq!(rows, 2);
    }
}
