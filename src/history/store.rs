//! The history: opening a store (with migrations), storing a run, and the queries the commands,
//! the gate and the report need. Written once, in SQL both stores accept.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::backend::postgres::Postgres;
use super::backend::sqlite::Sqlite;
use super::backend::{Backend, DbError, Tx};
use super::conditions::{ComparableConditions, host_fingerprint};
use super::error::HistoryError;
use super::location::Location;
use super::schema::{self, Migrated, stored_conditions};
use super::value::{Row, Value, name, params, stamp};
use crate::exit::Status;
use crate::ids::RunId;
use crate::model::record::Direction;
use crate::model::record::{Conditions, RunRecord, TestOutcome};

/// How long a writer waits for another one before giving up. Storing a run takes milliseconds,
/// so this only runs out when something holds the store far longer than any run would.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An open history.
pub struct History {
    store: Mutex<Box<dyn Backend>>,
    at: Location,
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

/// Which runs of a metric to read: a window of the newest, and the runs a baseline names.
#[derive(Debug, Clone)]
pub struct MetricWindow<'a> {
    pub key: &'a MetricKey,
    /// Only runs that started no later than this (the run being judged).
    pub until: DateTime<Utc>,
    /// The newest this many runs, and as many again under `conditions`.
    pub runs: usize,
    /// The judged run's conditions; `None` matches no run.
    pub conditions: Option<&'a Conditions>,
    /// A run (by id) or a commit (by prefix) whose runs are read whatever their age.
    pub named_run: Option<&'a str>,
    pub named_commit: Option<&'a str>,
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

/// "No limit", as both stores take it.
const ALL: i64 = i64::MAX;

fn limit(n: Option<usize>) -> i64 {
    n.map_or(ALL, |n| i64::try_from(n).unwrap_or(ALL))
}

impl History {
    /// Opens (creating it if needed) the history at `at`.
    pub fn open(at: impl Into<Location>) -> Result<History, HistoryError> {
        History::open_with(at, DEFAULT_BUSY_TIMEOUT)
    }

    /// As [`History::open`], waiting at most `busy_timeout` for other writers.
    pub fn open_with(
        at: impl Into<Location>,
        busy_timeout: Duration,
    ) -> Result<History, HistoryError> {
        let at = at.into();
        let err = |e| HistoryError::store(&at, busy_timeout, e);
        let mut store: Box<dyn Backend> = match &at {
            Location::File(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir {
                        path: path.clone(),
                        source,
                    })?;
                }
                Box::new(Sqlite::open(path, busy_timeout).map_err(err)?)
            }
            Location::Server(server) => {
                Box::new(Postgres::connect(server.config(), busy_timeout).map_err(err)?)
            }
        };
        if let Migrated::Newer(found) = schema::migrate(store.as_mut()).map_err(err)? {
            return Err(HistoryError::NewerSchema {
                at,
                found,
                supported: schema::CURRENT,
            });
        }
        Ok(History {
            store: Mutex::new(store),
            at,
            busy_timeout,
        })
    }

    /// Where this history lives.
    pub fn location(&self) -> &Location {
        &self.at
    }

    fn err(&self, e: DbError) -> HistoryError {
        HistoryError::store(&self.at, self.busy_timeout, e)
    }

    fn store(&self) -> MutexGuard<'_, Box<dyn Backend>> {
        // A panic elsewhere while the lock was held leaves nothing half-done in the store: its
        // transactions roll back. So a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn query<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl Fn(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, HistoryError> {
        let rows = self.store().query(sql, params).map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| map(r).map_err(|e| self.err(e)))
            .collect()
    }

    fn write(
        &self,
        work: &mut (dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + Send),
    ) -> Result<(), HistoryError> {
        self.store().write(work).map_err(|e| self.err(e))
    }

    /// Stores a run, replacing any earlier copy of it, in one transaction. An untrusted run is
    /// refused: its numbers could be forged by the change it ran, and later runs compare with
    /// what is stored.
    pub fn insert(&mut self, record: &RunRecord) -> Result<(), HistoryError> {
        if record.untrusted.is_some() {
            return Err(HistoryError::Untrusted {
                at: self.at.clone(),
                run_id: record.run_id.to_string(),
            });
        }
        let json = serde_json::to_string(record).map_err(|e| HistoryError::BadRecord {
            at: self.at.clone(),
            run_id: record.run_id.to_string(),
            source: e,
        })?;
        self.write(&mut |tx| {
            tx.execute(
                "DELETE FROM runs WHERE run_id = $1",
                &params![record.run_id.as_str()],
            )?;
            insert_run(tx, record, &json)?;
            if let Some(c) = &record.conditions {
                insert_conditions(tx, record.run_id.as_str(), c)?;
            }
            insert_tests(tx, record)?;
            insert_samples(tx, record)
        })
    }

    /// How many runs the history holds.
    pub fn run_count(&self) -> Result<usize, HistoryError> {
        let counts = self.query("SELECT count(*) FROM runs", &[], |r| r.count(0))?;
        Ok(counts.first().copied().unwrap_or(0))
    }

    /// Runs, newest first.
    pub fn runs(&self, most: Option<usize>) -> Result<Vec<RunSummary>, HistoryError> {
        let sql = "
            SELECT r.run_id, r.started, r.duration_s, r.status, c.lab_commit,
                   coalesce(c.hostname, r.host), c.key,
                   (SELECT count(*) FROM tests t WHERE t.run_id = r.run_id
                        AND t.outcome IN ('passed', 'flaky')),
                   (SELECT count(*) FROM tests t WHERE t.run_id = r.run_id)
            FROM runs r LEFT JOIN conditions c ON c.run_id = r.run_id
            ORDER BY r.started DESC, r.run_id DESC
            LIMIT $1";
        self.query(sql, &params![limit(most)], |row| {
            Ok(RunSummary {
                run_id: row.run_id(0)?,
                started: row.time(1)?,
                duration: Duration::from_secs_f64(row.real(2)?.max(0.0)),
                status: row.named(3)?,
                commit: row.opt_text(4)?,
                host: row.text(5)?,
                conditions_key: row.opt_text(6)?,
                tests_passed: row.count(7)?,
                tests_total: row.count(8)?,
            })
        })
    }

    /// The tests' results of the newest `runs` runs, by suite and test.
    pub fn test_results(&self, runs: usize) -> Result<Vec<TestResult>, HistoryError> {
        let sql = "
            SELECT t.run_id, t.suite, t.name, t.outcome, t.infra, t.duration_s, t.log
            FROM tests t
            WHERE t.run_id IN (SELECT run_id FROM runs ORDER BY started DESC, run_id DESC
                               LIMIT $1)
            ORDER BY t.suite, t.name";
        self.query(sql, &params![runs], |row| {
            Ok(TestResult {
                run_id: row.run_id(0)?,
                suite: row.text(1)?,
                name: row.text(2)?,
                outcome: row.named(3)?,
                infra: row.flag(4)?,
                duration: Duration::from_secs_f64(row.real(5)?.max(0.0)),
                log: row.text(6)?,
            })
        })
    }

    /// The run a person means: `latest`, a full run id, or a unique prefix of one.
    pub fn resolve(&self, query: &str) -> Result<RunId, HistoryError> {
        let id = |r: &Row| r.text(0);
        let found: Vec<String> = if query == "latest" {
            self.query(
                "SELECT run_id FROM runs ORDER BY started DESC, run_id DESC LIMIT 1",
                &[],
                id,
            )?
        } else {
            let exact = self.query(
                "SELECT run_id FROM runs WHERE run_id = $1",
                &params![query],
                id,
            )?;
            if exact.is_empty() {
                self.query(
                    "SELECT run_id FROM runs WHERE substr(run_id, 1, length($1)) = $1
                     ORDER BY run_id LIMIT 6",
                    &params![query],
                    id,
                )?
            } else {
                exact
            }
        };
        match found.as_slice() {
            [one] => RunId::parse(one).ok_or_else(|| self.no_such_run(query)),
            [] => Err(self.no_such_run(query)),
            many => Err(HistoryError::AmbiguousRun {
                at: self.at.clone(),
                query: query.to_string(),
                matches: many.to_vec(),
            }),
        }
    }

    fn no_such_run(&self, query: &str) -> HistoryError {
        HistoryError::NoSuchRun {
            at: self.at.clone(),
            query: query.to_string(),
        }
    }

    /// The whole stored results of a run.
    pub fn record(&self, id: &RunId) -> Result<RunRecord, HistoryError> {
        let texts = self.query(
            "SELECT record FROM runs WHERE run_id = $1",
            &params![id.as_str()],
            |r| r.text(0),
        )?;
        let text = texts.first().ok_or_else(|| self.no_such_run(id.as_str()))?;
        serde_json::from_str(text).map_err(|source| HistoryError::BadRecord {
            at: self.at.clone(),
            run_id: id.to_string(),
            source,
        })
    }

    /// The samples of one metric in the runs `window` selects, oldest run first: the newest
    /// runs up to the judged one (of any conditions, and as many under the judged run's), and
    /// the runs its baseline names. Reads only those, however long the history: each window
    /// walks the runs newest first (an index) and stops when it has enough.
    pub fn metric_history(&self, w: &MetricWindow<'_>) -> Result<Vec<MetricRun>, HistoryError> {
        let comparable = w.conditions.map(ComparableConditions::of);
        let c = comparable.as_ref();
        let has_metric = "EXISTS (SELECT 1 FROM samples s WHERE s.run_id = r.run_id
                                  AND s.suite = $1 AND s.benchmark = $2 AND s.metric = $3
                                  AND s.sample_index = 0)";
        let newest = format!(
            "SELECT r.run_id FROM runs r WHERE r.started <= $4 AND {has_metric}
             ORDER BY r.started DESC, r.run_id DESC LIMIT $5"
        );
        let same = format!(
            "SELECT r.run_id FROM runs r JOIN conditions c ON c.run_id = r.run_id
             WHERE r.started <= $4 AND c.cpu_model = $6 AND c.cores = $7 AND c.kernel = $8
               AND c.accel = $9 AND c.vm_cpus = $10 AND c.vm_memory_mib = $11
               AND c.box_sha256 = $12 AND {has_metric}
             ORDER BY r.started DESC, r.run_id DESC LIMIT $5"
        );
        let mut ids: Vec<String> = Vec::new();
        let id = |r: &Row| r.text(0);
        let window = params![
            &w.key.suite,
            &w.key.benchmark,
            &w.key.metric,
            stamp(&w.until),
            w.runs,
        ];
        ids.extend(self.query(&newest, &window, id)?);
        if let Some(c) = c {
            let mut p = window.to_vec();
            p.extend(params![
                c.cpu_model,
                c.cores,
                c.kernel,
                c.accel,
                c.vm_cpus,
                c.vm_memory_mib,
                c.box_sha256,
            ]);
            ids.extend(self.query(&same, &p, id)?);
        }
        if let Some(run) = w.named_run {
            ids.push(run.to_string());
        }
        if let Some(sha) = w.named_commit {
            ids.extend(self.query(
                "SELECT run_id FROM conditions
                 WHERE substr(lab_commit, 1, length($1)) = $1 AND lab_commit NOT LIKE '%-dirty'",
                &params![sha],
                id,
            )?);
        }
        ids.sort();
        ids.dedup();
        self.samples_of(w.key, &ids)
    }

    /// The samples of one metric in the runs `ids`, oldest run first, with their conditions.
    fn samples_of(&self, key: &MetricKey, ids: &[String]) -> Result<Vec<MetricRun>, HistoryError> {
        let mut runs: Vec<MetricRun> = Vec::new();
        // A bounded number of parameters per statement (SQLite allows 32,766).
        for chunk in ids.chunks(500) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
            let sql = format!(
                "SELECT s.run_id, r.started, s.unit, s.direction, s.value,
                        c.hostname, c.cpu_model, c.cores, c.kernel, c.vm_cpus, c.vm_memory_mib,
                        c.accel, c.box_sha256, c.metalab_version, c.lab_commit
                 FROM samples s JOIN runs r ON r.run_id = s.run_id
                      LEFT JOIN conditions c ON c.run_id = s.run_id
                 WHERE s.suite = $1 AND s.benchmark = $2 AND s.metric = $3
                   AND s.run_id IN ({})
                 ORDER BY r.started, s.run_id, s.sample_index",
                list.join(", ")
            );
            let mut p = params![&key.suite, &key.benchmark, &key.metric].to_vec();
            p.extend(chunk.iter().map(Value::from));
            let rows = self.query(&sql, &p, |row| {
                let conditions = match row.opt_text(5)? {
                    Some(_) => Some(stored_conditions(row, 5)?),
                    None => None,
                };
                Ok((
                    row.run_id(0)?,
                    row.time(1)?,
                    row.text(2)?,
                    row.named::<Direction>(3)?,
                    row.real(4)?,
                    conditions,
                ))
            })?;
            for (run_id, started, unit, direction, value, conditions) in rows {
                match runs.last_mut() {
                    Some(last) if last.run_id == run_id => last.samples.push(value),
                    _ => runs.push(MetricRun {
                        conditions,
                        run_id,
                        started,
                        unit,
                        direction,
                        samples: vec![value],
                    }),
                }
            }
        }
        runs.sort_by(|a, b| (a.started, &a.run_id).cmp(&(b.started, &b.run_id)));
        Ok(runs)
    }

    /// Every sample of every run, oldest run first, for exports.
    pub fn samples(&self) -> Result<Vec<SampleRow>, HistoryError> {
        self.newest_samples(None)
    }

    /// The samples of the newest `runs` runs (all runs: `None`), oldest first.
    pub fn newest_samples(&self, runs: Option<usize>) -> Result<Vec<SampleRow>, HistoryError> {
        self.query(
            "SELECT r.started, s.run_id, c.lab_commit, c.host_fingerprint, c.key, s.suite,
                    s.benchmark, s.metric, s.unit, s.direction, s.sample_index, s.value
             FROM samples s JOIN runs r ON r.run_id = s.run_id
                  LEFT JOIN conditions c ON c.run_id = s.run_id
             WHERE s.run_id IN (SELECT run_id FROM runs ORDER BY started DESC, run_id DESC
                                LIMIT $1)
             ORDER BY r.started, s.run_id, s.suite, s.benchmark, s.metric, s.sample_index",
            &params![limit(runs)],
            |row| {
                Ok(SampleRow {
                    started: row.time(0)?,
                    run_id: row.text(1)?,
                    commit: row.opt_text(2)?,
                    host_fingerprint: row.opt_text(3)?,
                    conditions_key: row.opt_text(4)?,
                    suite: row.text(5)?,
                    benchmark: row.text(6)?,
                    metric: row.text(7)?,
                    unit: row.text(8)?,
                    direction: row.text(9)?,
                    index: row.count(10)?,
                    value: row.real(11)?,
                })
            },
        )
    }
}

/// A shard plan as stored: where its durations came from, and the durations as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub source: String,
    pub durations: String,
}

impl History {
    /// The plan stored under `plan_id`, storing `proposed` first if there is none: every
    /// caller with the same id gets the same plan, whichever came first (the write lock
    /// orders them).
    pub fn shard_plan(
        &self,
        plan_id: &str,
        proposed: &StoredPlan,
    ) -> Result<StoredPlan, HistoryError> {
        let mut agreed = None;
        self.write(&mut |tx| {
            tx.execute(
                "INSERT INTO shard_plans (plan_id, created, source, durations)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id) DO NOTHING",
                &params![
                    plan_id,
                    stamp(&Utc::now()),
                    &proposed.source,
                    &proposed.durations
                ],
            )?;
            let rows = tx.query(
                "SELECT source, durations FROM shard_plans WHERE plan_id = $1",
                &params![plan_id],
            )?;
            agreed = match rows.first() {
                Some(r) => Some(StoredPlan {
                    source: r.text(0)?,
                    durations: r.text(1)?,
                }),
                None => None,
            };
            Ok(())
        })?;
        agreed.ok_or_else(|| HistoryError::Store {
            at: self.at.clone(),
            detail: format!("shard plan {plan_id} was stored but cannot be read back"),
        })
    }
}

fn insert_run(tx: &mut dyn Tx, r: &RunRecord, json: &str) -> Result<(), DbError> {
    let b = r.box_info.as_ref();
    tx.execute(
        "INSERT INTO runs (run_id, started, finished, duration_s, status, host, metalab_version,
                           box_name, box_version, box_sha256, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &params![
            r.run_id.as_str(),
            stamp(&r.started),
            r.finished.as_ref().map(stamp),
            r.duration.as_secs_f64(),
            name(&r.status),
            &r.host,
            &r.metalab_version,
            b.map(|b| &b.name),
            b.map(|b| &b.version),
            b.map(|b| &b.sha256),
            json,
        ],
    )?;
    Ok(())
}

fn insert_conditions(tx: &mut dyn Tx, run_id: &str, c: &Conditions) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO conditions (run_id, key, host_fingerprint, hostname, cpu_model, cores, kernel,
                                 vm_cpus, vm_memory_mib, accel, box_sha256, metalab_version,
                                 lab_commit)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &params![
            run_id,
            ComparableConditions::of(c).key(),
            host_fingerprint(&c.host),
            &c.host.hostname,
            &c.host.cpu_model,
            c.host.cores,
            &c.host.kernel,
            c.vm_cpus,
            c.vm_memory_mib,
            &c.accel,
            &c.box_sha256,
            &c.metalab_version,
            c.lab_commit.as_ref(),
        ],
    )?;
    Ok(())
}

fn insert_tests(tx: &mut dyn Tx, r: &RunRecord) -> Result<(), DbError> {
    // Test names are unique within a suite (the suite loader checks); should a record repeat
    // one anyway, the later result wins rather than failing the whole run's insert.
    for t in r.tests() {
        tx.execute(
            "INSERT INTO tests (run_id, suite, name, vm, outcome, infra, duration_s, message, log,
                                failed_attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (run_id, suite, name) DO UPDATE SET
                 vm = excluded.vm, outcome = excluded.outcome, infra = excluded.infra,
                 duration_s = excluded.duration_s, message = excluded.message,
                 log = excluded.log, failed_attempts = excluded.failed_attempts",
            &params![
                r.run_id.as_str(),
                &t.suite,
                &t.name,
                &t.vm,
                name(&t.outcome),
                t.infra,
                t.duration.as_secs_f64(),
                t.message.as_ref(),
                t.log.to_string_lossy().into_owned(),
                t.failed_attempts.len(),
            ],
        )?;
    }
    Ok(())
}

fn insert_samples(tx: &mut dyn Tx, r: &RunRecord) -> Result<(), DbError> {
    for b in r.benchmarks() {
        for m in &b.metrics {
            for (i, value) in m.samples.iter().enumerate() {
                tx.execute(
                    "INSERT INTO samples (run_id, suite, benchmark, metric, unit, direction,
                                          sample_index, value)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (run_id, suite, benchmark, metric, sample_index)
                     DO UPDATE SET unit = excluded.unit, direction = excluded.direction,
                                   value = excluded.value",
                    &params![
                        r.run_id.as_str(),
                        &b.suite,
                        &b.name,
                        &m.spec.name,
                        &m.spec.unit,
                        name(&m.spec.direction),
                        i,
                        *value,
                    ],
                )?;
            }
        }
    }
    Ok(())
}
