//! The history's schema and its migrations, the same tables and columns in both stores.
//!
//! `schema_version` holds one row: the number of migrations applied. Opening a history applies
//! the missing ones in order, in one write transaction (which holds the store's write lock), so
//! two runs opening a fresh store at once never both migrate it. To change the schema, append a
//! migration to [`MIGRATIONS`]; never edit one that has shipped. A store with a version above
//! `MIGRATIONS.len()` was written by a newer metalab and is refused rather than misread.
//!
//! Each migration is written in both dialects: SQLite's REAL and INTEGER are PostgreSQL's
//! DOUBLE PRECISION and BIGINT (its REAL and INTEGER are narrower), and PostgreSQL's sorted text
//! columns use the "C" collation, which orders them as SQLite does.

use super::backend::{Backend, DbError, Dialect, Tx};
use super::conditions::ComparableConditions;
use super::value::{Row, params};
use crate::model::record::{Conditions, HostFingerprint};

/// One step of the schema, in each store's SQL, and what must be computed after it.
struct Migration {
    sqlite: &'static str,
    postgres: &'static str,
    then: Option<DataStep>,
}

/// A migration's work on the data that SQL alone cannot do.
type DataStep = fn(&mut dyn Tx) -> Result<(), DbError>;

/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: MIGRATION_1_SQLITE,
        postgres: MIGRATION_1_POSTGRES,
        then: None,
    },
    Migration {
        sqlite: MIGRATION_2,
        postgres: MIGRATION_2,
        then: Some(rekey_conditions),
    },
    Migration {
        sqlite: MIGRATION_3,
        postgres: MIGRATION_3,
        then: None,
    },
];

/// The version this metalab writes and reads.
pub const CURRENT: u32 = MIGRATIONS.len() as u32;

/// Runs, their conditions, their tests, and one row per benchmark sample. `runs.record` keeps the
/// whole results file, so a run's report can be rebuilt from the history alone.
const MIGRATION_1_SQLITE: &str = "
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

/// [`MIGRATION_1_SQLITE`] for PostgreSQL.
const MIGRATION_1_POSTGRES: &str = r#"
CREATE TABLE runs (
    run_id          TEXT COLLATE "C" PRIMARY KEY,
    started         TEXT COLLATE "C" NOT NULL,
    finished        TEXT,
    duration_s      DOUBLE PRECISION NOT NULL,
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
    run_id           TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
    key              TEXT NOT NULL,
    host_fingerprint TEXT NOT NULL,
    hostname         TEXT NOT NULL,
    cpu_model        TEXT NOT NULL,
    cores            BIGINT NOT NULL,
    kernel           TEXT NOT NULL,
    vm_cpus          BIGINT NOT NULL,
    vm_memory_mib    BIGINT NOT NULL,
    accel            TEXT NOT NULL,
    box_sha256       TEXT NOT NULL,
    metalab_version  TEXT NOT NULL,
    lab_commit       TEXT
);
CREATE INDEX conditions_key ON conditions (key);

CREATE TABLE tests (
    run_id          TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    suite           TEXT COLLATE "C" NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    vm              TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    infra           BIGINT NOT NULL,
    duration_s      DOUBLE PRECISION NOT NULL,
    message         TEXT,
    log             TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL,
    PRIMARY KEY (run_id, suite, name)
);

CREATE TABLE samples (
    run_id       TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    suite        TEXT COLLATE "C" NOT NULL,
    benchmark    TEXT COLLATE "C" NOT NULL,
    metric       TEXT COLLATE "C" NOT NULL,
    unit         TEXT NOT NULL,
    direction    TEXT NOT NULL,
    sample_index BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, suite, benchmark, metric, sample_index)
);
CREATE INDEX samples_metric ON samples (suite, benchmark, metric);
"#;

/// For a fleet: the shard plans that the shards of one pipeline share (see
/// [`crate::shard`]), an index that finds a metric's runs without reading their samples, and
/// conditions keys without the host's name (identical machines of a fleet are comparable).
const MIGRATION_2: &str = "
CREATE TABLE shard_plans (
    plan_id   TEXT PRIMARY KEY,
    created   TEXT NOT NULL,
    source    TEXT NOT NULL,
    durations TEXT NOT NULL
);
CREATE INDEX samples_first ON samples (suite, benchmark, metric, sample_index, run_id);
CREATE INDEX tests_run ON tests (run_id, outcome);
";

/// Runs in the order every window reads them, newest first with ties by id, without a sort.
const MIGRATION_3: &str = "CREATE INDEX runs_newest ON runs (started, run_id);";

/// How a migration run ended.
pub enum Migrated {
    /// The schema is at [`CURRENT`].
    Current,
    /// The store is newer than this metalab; nothing was changed.
    Newer(u32),
}

/// Brings the schema to [`CURRENT`]. Reads first, so that opening an up-to-date history (every
/// open but the first) takes no write lock.
pub fn migrate(store: &mut dyn Backend) -> Result<Migrated, DbError> {
    let dialect = store.dialect();
    match version(&mut |sql| store.query(sql, &[]), dialect)? {
        v if v > CURRENT => return Ok(Migrated::Newer(v)),
        CURRENT => return Ok(Migrated::Current),
        _ => {}
    }
    let mut outcome = Migrated::Current;
    store.write(&mut |tx| {
        // Another process may have migrated while this one waited for the lock.
        let found = version(&mut |sql| tx.query(sql, &[]), dialect)?;
        if found > CURRENT {
            outcome = Migrated::Newer(found);
            return Ok(());
        }
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
            &[],
        )?;
        for m in &MIGRATIONS[found as usize..] {
            for statement in statements(m, dialect) {
                tx.execute(statement, &[])?;
            }
            if let Some(then) = m.then {
                then(tx)?;
            }
        }
        tx.execute("DELETE FROM schema_version", &[])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &params![CURRENT],
        )?;
        Ok(())
    })?;
    Ok(outcome)
}

/// A migration's statements in `dialect`, one at a time (a prepared statement holds one).
fn statements(m: &Migration, dialect: Dialect) -> impl Iterator<Item = &'static str> {
    let sql = match dialect {
        Dialect::Sqlite => m.sqlite,
        Dialect::Postgres => m.postgres,
    };
    sql.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// The applied version: 0 for a new, empty store.
fn version(
    query: &mut dyn FnMut(&str) -> Result<Vec<Row>, DbError>,
    dialect: Dialect,
) -> Result<u32, DbError> {
    let exists = match dialect {
        Dialect::Sqlite => {
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        }
        Dialect::Postgres => {
            "SELECT count(*) FROM pg_catalog.pg_tables
             WHERE schemaname = current_schema() AND tablename = 'schema_version'"
        }
    };
    let has_table = query(exists)?.first().map(|r| r.int(0)).transpose()? == Some(1);
    if !has_table {
        return Ok(0);
    }
    let rows = query("SELECT version FROM schema_version")?;
    rows.first().map_or(Ok(0), |r| r.count(0))
}

/// Recomputes every stored run's conditions key, after the key's definition changed.
fn rekey_conditions(tx: &mut dyn Tx) -> Result<(), DbError> {
    let rows = tx.query(
        "SELECT run_id, hostname, cpu_model, cores, kernel, vm_cpus, vm_memory_mib, accel,
                box_sha256, metalab_version, lab_commit
         FROM conditions",
        &[],
    )?;
    for row in rows {
        let c = stored_conditions(&row, 1)?;
        tx.execute(
            "UPDATE conditions SET key = $1 WHERE run_id = $2",
            &params![ComparableConditions::of(&c).key(), row.text(0)?],
        )?;
    }
    Ok(())
}

/// The conditions in the columns from `first` on: hostname, cpu_model, cores, kernel, vm_cpus,
/// vm_memory_mib, accel, box_sha256, metalab_version, lab_commit (as every query lists them).
pub fn stored_conditions(row: &Row, first: usize) -> Result<Conditions, DbError> {
    Ok(Conditions {
        host: HostFingerprint {
            hostname: row.text(first)?,
            cpu_model: row.text(first + 1)?,
            cores: row.count(first + 2)?,
            kernel: row.text(first + 3)?,
        },
        vm_cpus: row.count(first + 4)?,
        vm_memory_mib: row.count(first + 5)?,
        accel: row.text(first + 6)?,
        box_sha256: row.text(first + 7)?,
        metalab_version: row.text(first + 8)?,
        lab_commit: row.opt_text(first + 9)?,
    })
}
