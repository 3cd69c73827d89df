//! The history file: opening (with migrations), storing a run, and the queries the commands, the
//! gate and the report need.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conditions::{ComparableConditions, host_fingerprint};
use super::error::HistoryError;
use super::schema::{self, Migrated};
use crate::exit::Status;
use crate::ids::RunId;
use crate::model::record::Direction;
use crate::model::record::{Conditions, HostFingerprint, RunRecord, TestOutcome};

/// How long a writer waits for another one before giving up. Storing a run takes milliseconds,
/// so this only runs out when something holds the file far longer than any run would.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open history database.
pub struct History {
    conn: Connection,
    path: PathBuf,
    busy_timeout: Duration,
}

/// One run, as `metalab history` lists it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: RunId,
    pub started: DateTime<Utc>,
    pub duration: Duration,
    pub status: Status,
    /// The lab's commit, when the run recorded its conditions.
    pub commit: Option<String>,
    /// The host's name from its fingerprint, or the provider's host name.
    pub host: String,
    /// Equal keys: comparable numbers (see [`ComparableConditions`]).
    pub conditions_key: Option<String>,
    pub tests_passed: u32,
    pub tests_total: u32,
}

/// One test's result in one run, as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub run_id: RunId,
    pub suite: String,
    pub name: String,
    pub outcome: TestOutcome,
    /// Its failure was the infrastructure's (a lost VM, a failed setup), not the test's.
    pub infra: bool,
    pub duration: Duration,
    /// Its log, relative to the run's directory.
    pub log: String,
}

/// A benchmark metric across runs: `suite/benchmark metric`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    pub suite: String,
    pub benchmark: String,
    pub metric: String,
}

impl std::fmt::Display for MetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.suite, self.benchmark, self.metric)
    }
}

/// One run's samples of one metric.
#[derive(Debug, Clone)]
pub struct MetricRun {
    pub run_id: RunId,
    pub started: DateTime<Utc>,
    pub conditions: Option<Conditions>,
    pub unit: String,
    pub direction: Direction,
    pub samples: Vec<f64>,
}

/// One benchmark sample with its run's context, as exported.
#[derive(Debug, Clone)]
pub struct SampleRow {
    pub started: DateTime<Utc>,
    pub run_id: String,
    pub commit: Option<String>,
    pub host_fingerprint: Option<String>,
    pub conditions_key: Option<String>,
    pub suite: String,
    pub benchmark: String,
    pub metric: String,
    pub unit: String,
    pub direction: String,
    pub index: u32,
    pub value: f64,
}

impl History {
    /// Opens (creating it and its directory if needed) the history at `path`.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        History::open_with(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// As [`History::open`], waiting at most `busy_timeout` for other writers.
    pub fn open_with(path: &Path, busy_timeout: Duration) -> Result<History, HistoryError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let err = |e| HistoryError::sqlite(path, busy_timeout, e);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(busy_timeout).map_err(err)?;
        // WAL: readers never block the writer, and a crash mid-write leaves the file whole.
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(err)?;
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(err)?;
        if let Migrated::Newer(found) = schema::migrate(&mut conn).map_err(err)? {
            return Err(HistoryError::NewerSchema {
                path: path.to_path_buf(),
                found,
                supported: schema::CURRENT,
            });
        }
        Ok(History {
            conn,
            path: path.to_path_buf(),
            busy_timeout,
        })
    }

    fn err(&self, e: rusqlite::Error) -> HistoryError {
        HistoryError::sqlite(&self.path, self.busy_timeout, e)
    }

    /// Stores a run, replacing any earlier copy of it, in one transaction. An untrusted run is
    /// refused: its numbers could be forged by the change it ran, and later runs compare with
    /// what is stored.
    pub fn insert(&mut self, record: &RunRecord) -> Result<(), HistoryError> {
        if record.untrusted.is_some() {
            return Err(HistoryError::Untrusted {
                path: self.path.clone(),
                run_id: record.run_id.to_string(),
            });
        }
        self.try_insert(record).map_err(|e| self.err(e))
    }

    fn try_insert(&mut self, record: &RunRecord) -> rusqlite::Result<()> {
        // Immediate: take the write lock up front, so the busy timeout applies to waiting for it.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "DELETE FROM runs WHERE run_id = ?1",
            [record.run_id.as_str()],
        )?;
        insert_run(&tx, record)?;
        if let Some(c) = &record.conditions {
            insert_conditions(&tx, record.run_id.as_str(), c)?;
        }
        insert_tests(&tx, record)?;
        insert_samples(&tx, record)?;
        tx.commit()
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: Option<usize>) -> Result<Vec<RunSummary>, HistoryError> {
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let sql = "
            SELECT r.run_id, r.started, r.duration_s, r.status, c.lab_commit,
                   coalesce(c.hostname, r.host), c.key,
                   (SELECT count(*) FROM tests t WHERE t.run_id = r.run_id
                        AND t.outcome IN ('passed', 'flaky')),
                   (SELECT count(*) FROM tests t WHERE t.run_id = r.run_id)
            FROM runs r LEFT JOIN conditions c USING (run_id)
            ORDER BY r.started DESC, r.run_id DESC
            LIMIT ?1";
        self.query(sql, [limit], |row| {
            Ok(RunSummary {
                run_id: run_id(row, 0)?,
                started: time(row, 1)?,
                duration: Duration::from_secs_f64(row.get::<_, f64>(2)?.max(0.0)),
                status: named(row, 3)?,
                commit: row.get(4)?,
                host: row.get(5)?,
                conditions_key: row.get(6)?,
                tests_passed: row.get(7)?,
                tests_total: row.get(8)?,
            })
        })
    }

    /// The tests' results of the newest `runs` runs, by suite and test.
    pub fn test_results(&self, runs: usize) -> Result<Vec<TestResult>, HistoryError> {
        let sql = "
            SELECT t.run_id, t.suite, t.name, t.outcome, t.infra, t.duration_s, t.log
            FROM tests t
            WHERE t.run_id IN (SELECT run_id FROM runs ORDER BY started DESC, run_id DESC LIMIT ?1)
            ORDER BY t.suite, t.name";
        let runs = i64::try_from(runs).unwrap_or(i64::MAX);
        self.query(sql, [runs], |row| {
            Ok(TestResult {
                run_id: run_id(row, 0)?,
                suite: row.get(1)?,
                name: row.get(2)?,
                outcome: named(row, 3)?,
                infra: row.get(4)?,
                duration: Duration::from_secs_f64(row.get::<_, f64>(5)?.max(0.0)),
                log: row.get(6)?,
            })
        })
    }

    /// The run a person means: `latest`, a full run id, or a unique prefix of one.
    pub fn resolve(&self, query: &str) -> Result<RunId, HistoryError> {
        let found: Vec<String> = if query == "latest" {
            self.query(
                "SELECT run_id FROM runs ORDER BY started DESC, run_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?
        } else {
            let exact: Vec<String> =
                self.query("SELECT run_id FROM runs WHERE run_id = ?1", [query], |r| {
                    r.get(0)
                })?;
            if exact.is_empty() {
                self.query(
                    "SELECT run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1
                     ORDER BY run_id LIMIT 6",
                    [query],
                    |r| r.get(0),
                )?
            } else {
                exact
            }
        };
        match found.as_slice() {
            [one] => RunId::parse(one).ok_or_else(|| self.no_such_run(query)),
            [] => Err(self.no_such_run(query)),
            many => Err(HistoryError::AmbiguousRun {
                path: self.path.clone(),
                query: query.to_string(),
                matches: many.to_vec(),
            }),
        }
    }

    fn no_such_run(&self, query: &str) -> HistoryError {
        HistoryError::NoSuchRun {
            path: self.path.clone(),
            query: query.to_string(),
        }
    }

    /// The whole stored results of a run.
    pub fn record(&self, id: &RunId) -> Result<RunRecord, HistoryError> {
        let texts: Vec<String> = self.query(
            "SELECT record FROM runs WHERE run_id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )?;
        let text = texts.first().ok_or_else(|| self.no_such_run(id.as_str()))?;
        serde_json::from_str(text).map_err(|source| HistoryError::BadRecord {
            path: self.path.clone(),
            run_id: id.to_string(),
            source,
        })
    }

    /// Every stored run's samples of one metric, oldest run first.
    pub fn metric_history(&self, key: &MetricKey) -> Result<Vec<MetricRun>, HistoryError> {
        let conditions = self.conditions()?;
        let rows: Vec<(String, DateTime<Utc>, String, Direction, f64)> = self.query(
            "SELECT s.run_id, r.started, s.unit, s.direction, s.value
             FROM samples s JOIN runs r USING (run_id)
             WHERE s.suite = ?1 AND s.benchmark = ?2 AND s.metric = ?3
             ORDER BY r.started, s.run_id, s.sample_index",
            params![key.suite, key.benchmark, key.metric],
            |row| {
                Ok((
                    row.get(0)?,
                    time(row, 1)?,
                    row.get(2)?,
                    named(row, 3)?,
                    row.get(4)?,
                ))
            },
        )?;
        let mut runs: Vec<MetricRun> = Vec::new();
        for (id, started, unit, direction, value) in rows {
            match runs.last_mut() {
                Some(last) if last.run_id.as_str() == id => last.samples.push(value),
                _ => {
                    let Some(run_id) = RunId::parse(&id) else {
                        continue;
                    };
                    runs.push(MetricRun {
                        conditions: conditions.get(&id).cloned(),
                        run_id,
                        started,
                        unit,
                        direction,
                        samples: vec![value],
                    });
                }
            }
        }
        Ok(runs)
    }

    /// Every sample of every run, oldest run first, for exports.
    pub fn samples(&self) -> Result<Vec<SampleRow>, HistoryError> {
        self.newest_samples(None)
    }

    /// The samples of the newest `runs` runs (all runs: `None`), oldest first.
    pub fn newest_samples(&self, runs: Option<usize>) -> Result<Vec<SampleRow>, HistoryError> {
        let limit = runs.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        self.query(
            "SELECT r.started, s.run_id, c.lab_commit, c.host_fingerprint, c.key, s.suite,
                    s.benchmark, s.metric, s.unit, s.direction, s.sample_index, s.value
             FROM samples s JOIN runs r USING (run_id) LEFT JOIN conditions c USING (run_id)
             WHERE s.run_id IN (SELECT run_id FROM runs ORDER BY started DESC, run_id DESC
                                LIMIT ?1)
             ORDER BY r.started, s.run_id, s.suite, s.benchmark, s.metric, s.sample_index",
            [limit],
            |row| {
                Ok(SampleRow {
                    started: time(row, 0)?,
                    run_id: row.get(1)?,
                    commit: row.get(2)?,
                    host_fingerprint: row.get(3)?,
                    conditions_key: row.get(4)?,
                    suite: row.get(5)?,
                    benchmark: row.get(6)?,
                    metric: row.get(7)?,
                    unit: row.get(8)?,
                    direction: row.get(9)?,
                    index: row.get(10)?,
                    value: row.get(11)?,
                })
            },
        )
    }

    /// The recorded conditions of every run that has them, by run id.
    fn conditions(&self) -> Result<HashMap<String, Conditions>, HistoryError> {
        let rows = self.query(
            "SELECT run_id, hostname, cpu_model, cores, kernel, vm_cpus, vm_memory_mib, accel,
                    box_sha256, metalab_version, lab_commit
             FROM conditions",
            [],
            |row| {
                let c = Conditions {
                    host: HostFingerprint {
                        hostname: row.get(1)?,
                        cpu_model: row.get(2)?,
                        cores: row.get(3)?,
                        kernel: row.get(4)?,
                    },
                    vm_cpus: row.get(5)?,
                    vm_memory_mib: row.get(6)?,
                    accel: row.get(7)?,
                    box_sha256: row.get(8)?,
                    metalab_version: row.get(9)?,
                    lab_commit: row.get(10)?,
                };
                Ok((row.get::<_, String>(0)?, c))
            },
        )?;
        Ok(rows.into_iter().collect())
    }

    fn query<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, HistoryError> {
        let run = || -> rusqlite::Result<Vec<T>> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            stmt.query_map(params, map)?.collect()
        };
        run().map_err(|e| self.err(e))
    }
}

fn insert_run(tx: &Transaction<'_>, r: &RunRecord) -> rusqlite::Result<()> {
    let record = serde_json::to_string(r).map_err(|e| to_sql_error(Box::new(e)))?;
    let b = r.box_info.as_ref();
    tx.execute(
        "INSERT INTO runs (run_id, started, finished, duration_s, status, host, metalab_version,
                           box_name, box_version, box_sha256, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            r.run_id.as_str(),
            stamp(&r.started),
            r.finished.as_ref().map(stamp),
            r.duration.as_secs_f64(),
            name(&r.status),
            r.host,
            r.metalab_version,
            b.map(|b| &b.name),
            b.map(|b| &b.version),
            b.map(|b| &b.sha256),
            record,
        ],
    )?;
    Ok(())
}

fn insert_conditions(tx: &Transaction<'_>, run_id: &str, c: &Conditions) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO conditions (run_id, key, host_fingerprint, hostname, cpu_model, cores, kernel,
                                 vm_cpus, vm_memory_mib, accel, box_sha256, metalab_version,
                                 lab_commit)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            run_id,
            ComparableConditions::of(c).key(),
            host_fingerprint(&c.host),
            c.host.hostname,
            c.host.cpu_model,
            c.host.cores,
            c.host.kernel,
            c.vm_cpus,
            c.vm_memory_mib,
            c.accel,
            c.box_sha256,
            c.metalab_version,
            c.lab_commit,
        ],
    )?;
    Ok(())
}

fn insert_tests(tx: &Transaction<'_>, r: &RunRecord) -> rusqlite::Result<()> {
    // Test names are unique within a suite (the suite loader checks); should a record repeat
    // one anyway, the later result wins rather than failing the whole run's insert.
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO tests (run_id, suite, name, vm, outcome, infra, duration_s,
                                       message, log, failed_attempts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for t in r.tests() {
        stmt.execute(params![
            r.run_id.as_str(),
            t.suite,
            t.name,
            t.vm,
            name(&t.outcome),
            t.infra,
            t.duration.as_secs_f64(),
            t.message,
            t.log.to_string_lossy(),
            t.failed_attempts.len() as i64,
        ])?;
    }
    Ok(())
}

fn insert_samples(tx: &Transaction<'_>, r: &RunRecord) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO samples (run_id, suite, benchmark, metric, unit, direction,
                                         sample_index, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for b in r.benchmarks() {
        for m in &b.metrics {
            for (i, value) in m.samples.iter().enumerate() {
                stmt.execute(params![
                    r.run_id.as_str(),
                    b.suite,
                    b.name,
                    m.spec.name,
                    m.spec.unit,
                    name(&m.spec.direction),
                    i as i64,
                    value,
                ])?;
            }
        }
    }
    Ok(())
}

/// Times as RFC 3339 in UTC with a fixed number of digits, so text order is time order.
fn stamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time(row: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(i)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| from_sql_error(i, Box::new(e)))
}

fn run_id(row: &Row<'_>, i: usize) -> rusqlite::Result<RunId> {
    let text: String = row.get(i)?;
    RunId::parse(&text).ok_or_else(|| from_sql_error(i, format!("bad run id {text:?}").into()))
}

/// An enum's name as serde writes it (`passed`, `higher`): the same words as results.json.
fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn named<T: DeserializeOwned>(row: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    serde_json::from_value(serde_json::Value::String(text))
        .map_err(|e| from_sql_error(i, Box::new(e)))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn from_sql_error(i: usize, e: BoxError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e)
}

fn to_sql_error(e: BoxError) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e)
}
