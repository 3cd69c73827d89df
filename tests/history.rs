//! The benchmark history and the regression gate, on real SQLite files and the real binary:
//! idempotent imports, the CSV export, concurrent writers, broken databases, verdicts, conditions
//! and change points. No VM is involved.

mod bench_runs;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bench_runs::{run, run_id, samples, write_artifacts};
use common::postgres::PgServer;
use metalab::exit::Status;
use metalab::gate::{self, BaselineSpec, Options};
use metalab::history::{History, HistoryError, Location, MetricKey, MetricWindow};
use metalab::model::event::{EventKind, Events};
use metalab::model::record::{MetricSamples, RunRecord};
use metalab::report;
use metalab::report::ending::{Ending, HistoryEnd};
use metalab::report::terminal::Terminal;
use metalab::stats::Verdict;
use metalab::suite::{Direction, MetricSpec};

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("metalab-history-")
        .tempdir()
        .expect("temp dir")
}

/// `metalab ARGS --db DB` in `dir`, with a private state directory.
fn metalab(dir: &Path, db: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metalab"))
        .args(args)
        .arg("--db")
        .arg(db)
        .current_dir(dir)
        .env("METALAB_HOME", dir.join("state"))
        .env_remove("METALAB_HISTORY")
        .output()
        .expect("metalab runs")
}

/// A history to test against: a SQLite file in a scratch directory, or a database of a real
/// PostgreSQL server that lives as long as it.
struct Store {
    dir: tempfile::TempDir,
    /// What `--db` takes: the file's path or the server's URL.
    db: String,
    _server: Option<PgServer>,
}

impl Store {
    fn sqlite() -> Store {
        let dir = scratch();
        let db = dir.path().join("history.sqlite").display().to_string();
        Store {
            dir,
            db,
            _server: None,
        }
    }

    fn postgres() -> Store {
        let server = PgServer::start();
        Store {
            dir: scratch(),
            db: server.url(),
            _server: Some(server),
        }
    }
}

fn location(db: &str) -> Location {
    Location::parse(db).expect("a history location")
}

/// The tests written as `fn name(store: &Store)`, each run against both stores: `sqlite::name`
/// and `postgres::name`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Store::sqlite()) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&super::Store::postgres()) })*
        }
    };
}

on_both_stores!(
    importing_a_run_twice_replaces_it,
    csv_export_has_one_row_per_sample_with_the_documented_columns,
    concurrent_writers_lose_nothing,
    a_planted_regression_is_flagged_and_exits_4,
    a_run_within_the_run_to_run_noise_is_unchanged_and_one_beyond_it_regressed,
    samples_from_the_same_distribution_are_unchanged,
    different_conditions_are_not_compared_unless_allowed,
    run_and_commit_baselines_pick_their_runs,
    change_points_are_marked_in_the_comparison,
    a_shift_below_the_minimum_effect_is_not_a_change_point,
    bench_compare_json_has_the_tables_verdicts_with_their_numbers,
    history_lists_newest_first_and_shows_a_run,
    a_run_with_a_baseline_records_its_verdicts_and_exits_regressed,
    an_untrusted_run_is_judged_but_never_stored,
    the_gate_reads_a_window_of_the_newest_runs_and_the_runs_its_baseline_names,
);

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn key() -> MetricKey {
    MetricKey {
        suite: bench_runs::SUITE.into(),
        benchmark: bench_runs::BENCH.into(),
        metric: bench_runs::METRIC.into(),
    }
}

/// Five baseline runs around `level`, numbered 1 to 5.
fn baseline_runs(h: &mut History, level: f64) {
    for n in 1..=5 {
        h.insert(&run(n, samples(level, 5, n))).expect("insert");
    }
}

fn judge(h: &History, current: &RunRecord, options: &Options) -> gate::MetricVerdict {
    let report = gate::evaluate(h, current, options).expect("evaluates");
    assert_eq!(report.metrics.len(), 1);
    report.metrics[0].clone()
}

fn importing_a_run_twice_replaces_it(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let first = write_artifacts(&dir.path().join("a"), &run(1, samples(2.8, 5, 1)));
    // The same run id, re-measured with fewer samples: the second import must win whole.
    let second = write_artifacts(&dir.path().join("b"), &run(1, samples(2.2, 3, 2)));
    for file in [&first, &first, &second] {
        let out = metalab(dir.path(), db, &["history", "import", path(file)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let h = History::open(location(db)).expect("opens");
    assert_eq!(h.runs(None).expect("runs").len(), 1);
    let key = key();
    let stored = h
        .metric_history(&MetricWindow {
            key: &key,
            until: chrono::Utc::now(),
            runs: 100,
            conditions: None,
            named_run: None,
            named_commit: None,
        })
        .expect("history");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].samples, samples(2.2, 3, 2));
}

fn csv_export_has_one_row_per_sample_with_the_documented_columns(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    h.insert(&run(1, samples(2.8, 5, 1))).expect("insert");
    h.insert(&run(2, samples(2.7, 4, 2))).expect("insert");
    drop(h);
    let csv = dir.path().join("out.csv");
    let out = metalab(
        dir.path(),
        db,
        &["history", "export", "--csv", "--out", path(&csv)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let content = std::fs::read_to_string(&csv).expect("written");
    let mut lines = content.lines();
    assert_eq!(
        lines.next(),
        Some(
            "time,run_id,commit,host_fingerprint,conditions,suite,benchmark,metric,unit,direction,sample,value"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9, "5 + 4 samples");
    let first = &rows[0];
    assert_eq!(first[0], "2026-11-01T09:00:00Z");
    assert_eq!(first[1], run_id(1).as_str());
    assert_eq!(first[2], "16dbf78aa1b2c3d4e5f60718293a4b5c6d7e8f90");
    assert_eq!(first[3].len(), 16, "a host fingerprint: {first:?}");
    assert_eq!(
        &first[5..11],
        [
            "throughput",
            "tcp-1-stream",
            "throughput",
            "Gbit/s",
            "higher",
            "0"
        ]
    );
    let value: f64 = first[11].parse().expect("a number");
    assert!((value - samples(2.8, 5, 1)[0]).abs() < 1e-12);
    assert_eq!(rows[8][1], run_id(2).as_str());
    assert_eq!(rows[8][10], "3");
}

fn concurrent_writers_lose_nothing(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    const PER_WRITER: u32 = 60;
    let writers: Vec<_> = (0..3u32)
        .map(|w| {
            let db = db.to_string();
            std::thread::spawn(move || {
                // Each thread its own connection, as each run process has.
                let mut h = History::open(location(&db)).expect("opens");
                for i in 0..PER_WRITER {
                    let n = w * 1000 + i;
                    h.insert(&run(n, samples(2.8, 5, n)))
                        .expect("insert under contention");
                }
            })
        })
        .collect();
    // Meanwhile, two processes import results files into the same database.
    let files: Vec<PathBuf> = (0..20)
        .map(|i| {
            write_artifacts(
                &dir.path().join("artifacts"),
                &run(5000 + i, samples(2.5, 5, i)),
            )
        })
        .collect();
    let (a, b) = files.split_at(10);
    let spawn = |files: &[PathBuf]| {
        Command::new(env!("CARGO_BIN_EXE_metalab"))
            .args(["history", "import"])
            .args(files)
            .arg("--db")
            .arg(db)
            .env("METALAB_HOME", dir.path().join("state"))
            .current_dir(dir.path())
            .output()
            .expect("runs")
    };
    let (pa, pb) = std::thread::scope(|s| {
        let pa = s.spawn(|| spawn(a));
        let pb = s.spawn(|| spawn(b));
        (pa.join().expect("joined"), pb.join().expect("joined"))
    });
    for w in writers {
        w.join().expect("writer finished");
    }
    assert!(pa.status.success(), "{}", text(&pa));
    assert!(pb.status.success(), "{}", text(&pb));
    let h = History::open(location(db)).expect("opens");
    assert_eq!(
        h.runs(None).expect("runs").len(),
        3 * PER_WRITER as usize + 20
    );
    assert_eq!(
        h.samples().expect("samples").len(),
        (3 * PER_WRITER as usize + 20) * 5
    );
}

#[test]
fn a_locked_database_is_reported_with_its_file() {
    let dir = scratch();
    let db = dir.path().join("history.sqlite");
    History::open(&db).expect("creates");
    let holder = rusqlite::Connection::open(&db).expect("opens");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("takes the write lock");
    let mut h =
        History::open_with(&db, Duration::from_millis(200)).expect("reading is not blocked");
    let err = h.insert(&run(1, samples(2.8, 5, 1))).expect_err("locked");
    assert!(matches!(err, HistoryError::Locked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("locked"), "{message}");
    holder.execute_batch("ROLLBACK").expect("releases");
    h.insert(&run(1, samples(2.8, 5, 1))).expect("free again");
}

#[test]
fn a_corrupt_database_is_reported_with_its_file() {
    let dir = scratch();
    let db = dir.path().join("history.sqlite");
    std::fs::write(
        &db,
        "this is not a database, just some text long enough to look like a header".repeat(40),
    )
    .expect("garbage written");
    let err = History::open(&db).err().expect("refused");
    assert!(matches!(err, HistoryError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&db.display().to_string()));
    let out = metalab(dir.path(), &db, &["history"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains(&db.display().to_string()), "{shown}");
    assert!(shown.contains("not a readable SQLite database"), "{shown}");
}

#[test]
fn a_newer_schema_is_refused_with_its_file() {
    let dir = scratch();
    let db = dir.path().join("history.sqlite");
    History::open(&db).expect("creates");
    let c = rusqlite::Connection::open(&db).expect("opens");
    c.execute("UPDATE schema_version SET version = 99", [])
        .expect("bumped");
    drop(c);
    let err = History::open(&db).err().expect("refused");
    let message = err.to_string();
    assert!(
        matches!(
            err,
            HistoryError::NewerSchema {
                found: 99,
                supported: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("newer metalab"), "{message}");
}

fn a_planted_regression_is_flagged_and_exits_4(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    baseline_runs(&mut h, 2.8);
    h.insert(&run(6, samples(2.2, 5, 6))).expect("insert");
    let m = judge(&h, &run(6, samples(2.2, 5, 6)), &Options::default());
    assert_eq!(m.verdict, Verdict::Regressed, "{m:?}");
    assert_eq!(m.baseline_runs.len(), 5);
    let c = m.comparison.expect("compared");
    assert!(c.change.expect("a change") < -0.15);
    drop(h);

    let out = metalab(dir.path(), db, &["bench", "compare"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(4), "{shown}");
    assert_eq!(Status::Regressed.code(), 4);
    let row = shown
        .lines()
        .find(|l| l.starts_with("throughput/tcp-1-stream throughput"))
        .expect("a row for the metric");
    for cell in ["Gbit/s", "%", "REGRESSED"] {
        assert!(row.contains(cell), "{row}");
    }
    assert!(shown.contains("1 regressed"), "{shown}");
}

fn a_run_within_the_run_to_run_noise_is_unchanged_and_one_beyond_it_regressed(store: &Store) {
    let db = store.db.as_str();
    let mut h = History::open(location(db)).expect("opens");
    // Runs that drift as whole runs do under TCG, each one steady within itself.
    for (n, level) in [(1, 2.2), (2, 2.8), (3, 2.5), (4, 2.3), (5, 2.9)] {
        h.insert(&run(n, samples(level, 5, n))).expect("insert");
    }
    // Below most baseline samples (the rank test alone would call it a regression), but no
    // further from the runs' medians than they are from each other.
    let drift = judge(&h, &run(6, samples(2.25, 5, 6)), &Options::default());
    assert_eq!(drift.verdict, Verdict::Unchanged, "{drift:?}");
    let why = drift.reason.expect("says why");
    assert!(why.contains("within the run-to-run noise"), "{why}");
    let c = drift.comparison.expect("compared");
    assert!(c.p_value < 0.05, "the samples alone differ: {c:?}");
    // Half the throughput is beyond anything these runs do by themselves.
    let halved = judge(&h, &run(6, samples(1.2, 5, 6)), &Options::default());
    assert_eq!(halved.verdict, Verdict::Regressed, "{halved:?}");
}

fn samples_from_the_same_distribution_are_unchanged(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    baseline_runs(&mut h, 2.8);
    h.insert(&run(6, samples(2.8, 5, 6))).expect("insert");
    let m = judge(&h, &run(6, samples(2.8, 5, 6)), &Options::default());
    assert_eq!(m.verdict, Verdict::Unchanged, "{m:?}");
    drop(h);
    let out = metalab(dir.path(), db, &["bench", "compare", "latest"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("UNCHANGED"));
}

fn different_conditions_are_not_compared_unless_allowed(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    for n in 1..=5 {
        let mut r = run(n, samples(2.8, 5, n));
        if let Some(c) = r.conditions.as_mut() {
            c.accel = "kvm".into();
        }
        h.insert(&r).expect("insert");
    }
    let current = run(6, samples(2.2, 5, 6));
    h.insert(&current).expect("insert");
    let m = judge(&h, &current, &Options::default());
    assert_eq!(m.verdict, Verdict::NotComparable);
    let reason = m.reason.clone().expect("explained");
    assert!(reason.contains("accel: kvm → tcg"), "{reason}");
    assert!(reason.contains("--allow-different-conditions"), "{reason}");

    let allowed = Options {
        allow_different_conditions: true,
        ..Options::default()
    };
    let m = judge(&h, &current, &allowed);
    assert_eq!(m.verdict, Verdict::Regressed);
    let note = m.conditions_note.expect("says so");
    assert!(
        note.contains("compared across different conditions (accel: kvm → tcg)"),
        "{note}"
    );
    drop(h);

    let out = metalab(dir.path(), db, &["bench", "compare"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("NOT COMPARABLE"), "{}", text(&out));
    let out = metalab(
        dir.path(),
        db,
        &["bench", "compare", "--allow-different-conditions"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("under any conditions"),
        "{}",
        text(&out)
    );
}

fn run_and_commit_baselines_pick_their_runs(store: &Store) {
    let db = store.db.as_str();
    let mut h = History::open(location(db)).expect("opens");
    baseline_runs(&mut h, 2.8);
    let mut other_commit = run(6, samples(2.2, 5, 6));
    if let Some(c) = other_commit.conditions.as_mut() {
        c.lab_commit = Some("aaaabbbbccccdddd".into());
    }
    h.insert(&other_commit).expect("insert");
    let current = run(7, samples(2.2, 5, 7));

    let by_run = Options {
        baseline: BaselineSpec::Run(run_id(3).as_str()[..17].to_string()),
        ..Options::default()
    };
    let m = judge(&h, &current, &by_run);
    assert_eq!(m.baseline_runs, vec![run_id(3)]);

    let by_commit = Options {
        baseline: "commit:aaaab".parse().expect("valid"),
        ..Options::default()
    };
    let m = judge(&h, &current, &by_commit);
    assert_eq!(m.baseline_runs, vec![run_id(6)]);
    // That commit measured the same level as this run.
    assert_eq!(m.verdict, Verdict::Unchanged, "{m:?}");
}

fn change_points_are_marked_in_the_comparison(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    for n in 1..=7 {
        h.insert(&run(n, samples(2.8, 5, n))).expect("insert");
    }
    for n in 8..=11 {
        h.insert(&run(n, samples(2.2, 5, n))).expect("insert");
    }
    let m = judge(&h, &run(11, samples(2.2, 5, 11)), &Options::default());
    assert_eq!(m.history.len(), 11);
    assert_eq!(m.change_points.len(), 1, "{:?}", m.change_points);
    let cp = &m.change_points[0];
    assert_eq!((cp.index, &cp.run_id), (7, &run_id(8)));
    assert!(cp.before > 2.7 && cp.after < 2.3, "{cp:?}");
    drop(h);
    let out = metalab(dir.path(), db, &["bench", "compare"]);
    let shown = text(&out);
    assert!(
        shown.contains(&format!("change point at run {}", run_id(8))),
        "{shown}"
    );
}

/// A 2% shift is a change in distribution the detector finds, but less than the gate's minimum
/// effect (5%): not marked, in the comparison or the report, as the gate would not call it one.
fn a_shift_below_the_minimum_effect_is_not_a_change_point(store: &Store) {
    let db = store.db.as_str();
    let mut h = History::open(location(db)).expect("opens");
    for n in 1..=8 {
        h.insert(&run(n, samples(2.8, 5, n))).expect("insert");
    }
    for n in 9..=16 {
        h.insert(&run(n, samples(2.8 * 0.98, 5, n)))
            .expect("insert");
    }
    let m = judge(
        &h,
        &run(16, samples(2.8 * 0.98, 5, 16)),
        &Options::default(),
    );
    let medians: Vec<f64> = m.history.iter().map(|p| p.median).collect();
    let found = metalab::stats::change_points(&medians, &Default::default()).expect("computes");
    assert_eq!(
        found.len(),
        1,
        "the detector alone finds the shift: {found:?}"
    );
    assert!(m.change_points.is_empty(), "{:?}", m.change_points);
    let loose = Options {
        min_effect: 0.01,
        ..Options::default()
    };
    let m = judge(&h, &run(16, samples(2.8 * 0.98, 5, 16)), &loose);
    assert_eq!(m.change_points.len(), 1, "{:?}", m.change_points);
}

/// The `n`th run with throughput around `level` and a p99 latency steady around 50 us; with
/// `jitter`, also a metric no other run has.
fn three_metrics(n: u32, level: f64, jitter: bool) -> RunRecord {
    let mut r = run(n, samples(level, 5, n));
    let metrics = &mut r.suites[0].benchmarks[0].metrics;
    let mut metric = |name: &str, unit: &str, direction, level| {
        metrics.push(MetricSamples {
            spec: MetricSpec {
                name: name.into(),
                unit: unit.into(),
                direction,
            },
            samples: samples(level, 5, n),
            summary: None,
        });
    };
    metric("p99", "us", Direction::Lower, 50.0);
    if jitter {
        metric("jitter", "us", Direction::Lower, 3.0);
    }
    r
}

fn bench_compare_json_has_the_tables_verdicts_with_their_numbers(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    for n in 1..=11 {
        let level = if n <= 7 { 2.8 } else { 2.2 };
        h.insert(&three_metrics(n, level, n == 11)).expect("insert");
    }
    drop(h);
    // One baseline run (by a prefix of its id): no run-to-run noise band to soften the verdict.
    let baseline = format!("run:{}", &run_id(7).as_str()[..17]);
    let args = ["bench", "compare", "--baseline", baseline.as_str()];
    let table = metalab(dir.path(), db, &args);
    let out = metalab(dir.path(), db, &[&args[..], &["--json"]].concat());
    assert_eq!(table.status.code(), Some(4), "{}", text(&table));
    assert_eq!(
        out.status.code(),
        Some(4),
        "the same exit status: {}",
        text(&out)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    assert_eq!(json["run_id"], run_id(11).as_str());
    assert_eq!(json["baseline"], format!("run:{}", run_id(7)), "resolved");
    assert_eq!(json["baseline_description"], format!("run {}", run_id(7)));
    assert_eq!(json["min_effect"], 0.05);
    assert_eq!(json["alpha"], 0.05);
    assert_eq!(json["allow_different_conditions"], false);
    let metrics = json["metrics"].as_array().expect("metrics");
    let names: Vec<&str> = metrics
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["throughput", "p99", "jitter"]);

    let throughput = &metrics[0];
    assert_eq!(throughput["suite"], bench_runs::SUITE);
    assert_eq!(throughput["benchmark"], bench_runs::BENCH);
    assert_eq!(throughput["unit"], "Gbit/s");
    assert_eq!(throughput["direction"], "higher");
    assert_eq!(throughput["verdict"], "regressed");
    let number = |m: &serde_json::Value, field: &str| {
        m[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is not a number: {m}"))
    };
    assert!(
        (number(throughput, "baseline_median") - 2.8).abs() < 0.06,
        "{throughput}"
    );
    assert!(
        (number(throughput, "current_median") - 2.2).abs() < 0.05,
        "{throughput}"
    );
    assert!(number(throughput, "change") < -0.15, "{throughput}");
    assert!(number(throughput, "p_value") < 0.05, "{throughput}");
    assert_eq!(throughput["reason"], serde_json::Value::Null);
    assert_eq!(throughput["baseline_runs"], serde_json::json!([run_id(7)]));
    assert_eq!(
        (
            throughput["baseline_samples"].as_u64(),
            throughput["current_samples"].as_u64()
        ),
        (Some(5), Some(5))
    );
    let change_points = throughput["change_points"].as_array().expect("a list");
    assert_eq!(change_points.len(), 1, "{throughput}");
    let cp = &change_points[0];
    assert_eq!(cp["run_id"], run_id(8).as_str());
    assert!(
        cp["started"]
            .as_str()
            .is_some_and(|s| s.starts_with("2026-11-01T16:00:00")),
        "{cp}"
    );
    assert!(
        number(cp, "before") > 2.7 && number(cp, "after") < 2.3,
        "{cp}"
    );
    assert!(number(cp, "p_value") < 0.05, "{cp}");

    assert_eq!(metrics[1]["direction"], "lower");
    assert_eq!(metrics[1]["verdict"], "unchanged");
    assert!(metrics[1]["reason"].is_string(), "{}", metrics[1]);

    let jitter = &metrics[2];
    assert_eq!(jitter["verdict"], "not_comparable");
    for absent in ["baseline_median", "change", "p_value"] {
        assert!(jitter[absent].is_null(), "{absent}: {jitter}");
    }
    assert!(
        (number(jitter, "current_median") - 3.0).abs() < 0.1,
        "{jitter}"
    );
    assert_eq!(jitter["baseline_runs"], serde_json::json!([]));

    // Each metric's verdict is its table row's.
    let shown = String::from_utf8_lossy(&table.stdout);
    for m in metrics {
        let name = format!(
            "{}/{} {} ",
            m["suite"].as_str().unwrap(),
            m["benchmark"].as_str().unwrap(),
            m["metric"].as_str().unwrap()
        );
        let row = shown
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{shown}"));
        let word = m["verdict"]
            .as_str()
            .unwrap()
            .replace('_', " ")
            .to_uppercase();
        assert!(row.ends_with(&word), "JSON says {word}, the table: {row}");
    }
}

fn history_lists_newest_first_and_shows_a_run(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    for n in 1..=3 {
        h.insert(&bench_runs::with_tests(run(n, samples(2.8, 5, n))))
            .expect("insert");
    }
    drop(h);
    let out = metalab(dir.path(), db, &["history", "--limit", "2"]);
    let shown = text(&out);
    let ids: Vec<&str> = shown.lines().skip(1).map(|l| &l[..20]).collect();
    assert_eq!(ids, [run_id(3).as_str(), run_id(2).as_str()], "{shown}");
    assert!(
        shown.contains("tests_failed") && shown.contains("2/3"),
        "{shown}"
    );

    let out = metalab(
        dir.path(),
        db,
        &["history", "show", &run_id(2).as_str()[..15]],
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("failed    policy/denied-port-dropped"),
        "{shown}"
    );
    assert!(
        shown.contains("throughput/tcp-1-stream throughput: median"),
        "{shown}"
    );

    let out = metalab(dir.path(), db, &["history", "show", "20991231"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Ends a finished `record`'s reporting as `metalab run --baseline last:5` does; true when the
/// gate found a regression.
fn finish_run(record: &RunRecord, artifacts: &Path, db: Location) -> bool {
    let ending = Ending {
        run_dir: artifacts.join(record.run_id.as_str()),
        junit_copies: Vec::new(),
        history: Some(HistoryEnd {
            db,
            options: Options::default(),
            judge: true,
        }),
        github: None,
        color: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (events, rx) = Events::channel();
        let driving = tokio::spawn(report::drive(
            rx,
            record.clone(),
            Terminal::new(false),
            ending,
        ));
        events.emit(EventKind::RunFinished {
            status: Status::Passed,
            duration: Duration::from_secs(150),
        });
        drop(events);
        driving.await.expect("reporting ends").regressed
    })
}

#[test]
fn a_broken_history_leaves_the_result_files_and_the_exit_status_alone() {
    let dir = scratch();
    let db = dir.path().join("history.sqlite");
    std::fs::write(&db, "garbage ".repeat(512)).expect("garbage written");
    let artifacts = dir.path().join("artifacts");
    let record = run(6, samples(2.2, 5, 6));
    let regressed = finish_run(&record, &artifacts, Location::File(db.clone()));
    let run_dir = artifacts.join(record.run_id.as_str());
    for file in ["results.json", "junit.xml", "report/index.html"] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    assert!(!regressed, "a broken history cannot judge anything");
    let junit = std::fs::read_to_string(run_dir.join("junit-benchmarks.xml")).expect("written");
    assert!(junit.contains("<error"), "{junit}");
    assert!(junit.contains(&db.display().to_string()), "{junit}");
    let page = std::fs::read_to_string(run_dir.join("report/index.html")).expect("written");
    assert!(
        page.contains("The benchmarks are not judged"),
        "the report says why"
    );
}

fn a_run_with_a_baseline_records_its_verdicts_and_exits_regressed(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    baseline_runs(&mut History::open(location(db)).expect("opens"), 2.8);
    let artifacts = dir.path().join("artifacts");
    let record = run(6, samples(2.2, 5, 6));
    let regressed = finish_run(&record, &artifacts, location(db));
    assert!(regressed);
    // How `metalab run` applies it: a pass becomes 4, failures stay 1.
    assert_eq!(Status::Passed.worst(Status::Regressed), Status::Regressed);
    assert_eq!(
        Status::TestsFailed.worst(Status::Regressed),
        Status::TestsFailed,
        "failures stay 1"
    );
    let run_dir = artifacts.join(record.run_id.as_str());
    let junit = std::fs::read_to_string(run_dir.join("junit-benchmarks.xml")).expect("written");
    assert!(junit.contains("testsuite name=\"benchmarks\""), "{junit}");
    assert_eq!(
        common::junit_schema::violations(&junit),
        Vec::<String>::new()
    );
    assert!(junit.contains("<failure"), "{junit}");
    assert!(
        junit.contains("throughput/tcp-1-stream throughput: regressed"),
        "{junit}"
    );
    let h = History::open(location(db)).expect("opens");
    assert_eq!(
        h.runs(None).expect("runs")[0].run_id,
        record.run_id,
        "stored"
    );
    assert!(artifacts.join("index.html").is_file(), "the runs' index");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An untrusted run (`metalab run --untrusted`) could forge its numbers: it is judged against the
/// history, but never becomes part of it, neither at its end nor by a later import.
fn an_untrusted_run_is_judged_but_never_stored(store: &Store) {
    let (dir, db) = (&store.dir, store.db.as_str());
    let mut h = History::open(location(db)).expect("opens");
    baseline_runs(&mut h, 2.8);
    let mut untrusted = run(6, samples(2.2, 5, 6));
    untrusted.untrusted = Some(metalab::model::record::UntrustedRecord {
        lab_from: "origin/main (commit 0123456789ab)".into(),
    });
    let m = judge(&h, &untrusted, &Options::default());
    assert_eq!(m.verdict, Verdict::Regressed, "{m:?}");
    assert_eq!(m.baseline_runs.len(), 5);
    let refused = h.insert(&untrusted).unwrap_err();
    assert!(
        matches!(refused, HistoryError::Untrusted { .. }),
        "{refused}"
    );
    drop(h);

    let file = write_artifacts(&dir.path().join("u"), &untrusted);
    let out = metalab(dir.path(), db, &["history", "import", path(&file)]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("is of an untrusted change"), "{shown}");
    let h = History::open(location(db)).expect("opens");
    assert_eq!(h.runs(None).expect("runs").len(), 5);
}

/// A server that goes away before the run ends: the run's files and exit status are whole, the
/// run says how to add it later, and `metalab history import` does once the server is back.
#[test]
fn a_server_gone_at_the_end_of_a_run_leaves_its_files_and_the_run_can_be_imported_later() {
    let store = Store::postgres();
    let server = store._server.as_ref().expect("a server");
    baseline_runs(&mut History::open(location(&store.db)).expect("opens"), 2.8);
    server.stop();
    let artifacts = store.dir.path().join("artifacts");
    let record = run(6, samples(2.2, 5, 6));
    let regressed = finish_run(&record, &artifacts, location(&store.db));
    assert!(!regressed, "a history that cannot be read judges nothing");
    let run_dir = artifacts.join(record.run_id.as_str());
    for file in ["results.json", "junit.xml", "report/index.html"] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let junit = std::fs::read_to_string(run_dir.join("junit-benchmarks.xml")).expect("written");
    assert!(junit.contains("cannot be reached"), "{junit}");
    assert!(
        !junit.contains(server.password()),
        "the password leaked: {junit}"
    );

    server.resume();
    let results = run_dir.join("results.json");
    let out = metalab(
        store.dir.path(),
        &store.db,
        &["history", "import", path(&results)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let h = History::open(location(&store.db)).expect("opens");
    assert_eq!(h.runs(None).expect("runs")[0].run_id, record.run_id);
}

/// A refused login is the configuration's fault (exit 2), says which server and where a
/// password comes from, and never shows one.
#[test]
fn refused_credentials_exit_2_and_no_password_is_ever_shown() {
    let store = Store::postgres();
    let server = store._server.as_ref().expect("a server");
    let wrong = server.url().replace(server.password(), "not-the-password");
    let out = metalab(store.dir.path(), &wrong, &["history"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("refused the credentials"), "{shown}");
    assert!(!shown.contains("not-the-password"), "{shown}");

    let bare = server.url_without_password();
    let out = metalab(store.dir.path(), &bare, &["history"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("set PGPASSWORD"), "{shown}");

    // PGPASSWORD completes a URL without one; nothing prints it.
    let mut c = Command::new(env!("CARGO_BIN_EXE_metalab"));
    let out = c
        .args(["history", "--db", &bare])
        .env("PGPASSWORD", server.password())
        .env("METALAB_HOME", store.dir.path().join("state"))
        .output()
        .expect("runs");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("no runs in the history postgres://metalab@127.0.0.1:"),
        "{shown}"
    );
    assert!(!shown.contains(server.password()), "{shown}");
}

/// `metalab history copy --to URL` moves a host's SQLite history into the server: every run,
/// checked there, and repeatable.
#[test]
fn history_copy_moves_a_sqlite_history_into_the_server() {
    let file = Store::sqlite();
    let server = Store::postgres();
    let mut h = History::open(location(&file.db)).expect("opens");
    for n in 1..=7 {
        h.insert(&bench_runs::with_tests(run(n, samples(2.8, 5, n))))
            .expect("insert");
    }
    drop(h);
    for _ in 0..2 {
        let out = metalab(
            file.dir.path(),
            &file.db,
            &["history", "copy", "--to", &server.db],
        );
        let shown = text(&out);
        assert!(out.status.success(), "{shown}");
        assert!(shown.contains("copied 7 run(s)"), "{shown}");
        let pg = server._server.as_ref().expect("a server");
        assert!(!shown.contains(pg.password()), "{shown}");
        assert_eq!(pg.psql("metalab", "SELECT count(*) FROM runs"), "7");
        assert_eq!(pg.psql("metalab", "SELECT count(*) FROM samples"), "35");
    }
    // The same listing and the same samples, to the last bit, from either store.
    for args in [&["history", "--json"][..], &["history", "export", "--csv"]] {
        let a = metalab(file.dir.path(), &file.db, args);
        let b = metalab(server.dir.path(), &server.db, args);
        assert_eq!(
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout),
            "{args:?}"
        );
    }
}

#[test]
fn a_newer_schema_on_the_server_is_refused() {
    let store = Store::postgres();
    History::open(location(&store.db)).expect("creates");
    let server = store._server.as_ref().expect("a server");
    server.psql("metalab", "UPDATE schema_version SET version = 99");
    let err = History::open(location(&store.db)).err().expect("refused");
    assert!(
        matches!(err, HistoryError::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("postgres://metalab@127.0.0.1:"),
        "{err}"
    );
}

/// However long the history, the gate reads the newest `gate::WINDOW` runs of a metric (the plot
/// and change points cover as many), and still finds the runs a `commit:` baseline names far
/// behind them; runs on another machine of the same kind are comparable.
fn the_gate_reads_a_window_of_the_newest_runs_and_the_runs_its_baseline_names(store: &Store) {
    let mut h = History::open(location(&store.db)).expect("opens");
    let total = gate::WINDOW as u32 + 30;
    for n in 1..=total {
        let mut r = run(n, samples(2.8, 3, n));
        if let Some(c) = r.conditions.as_mut() {
            c.lab_commit = Some(format!("{n:040x}"));
            // Every other run on a second machine of the same kind.
            if n % 2 == 0 {
                c.host.hostname = "lab2".into();
            }
        }
        h.insert(&r).expect("insert");
    }
    let current = run(total + 1, samples(2.8, 3, total + 1));
    let m = judge(&h, &current, &Options::default());
    assert_eq!(
        m.history.len(),
        gate::WINDOW,
        "the window and the current run"
    );
    assert_eq!(
        m.history.first().map(|p| p.run_id.clone()),
        Some(run_id(32))
    );
    let baseline: Vec<_> = (total - 4..=total).map(run_id).collect();
    assert_eq!(
        m.baseline_runs, baseline,
        "the 5 newest, from both machines"
    );
    assert_eq!(m.conditions_note, None, "{:?}", m.conditions_note);

    let old = Options {
        baseline: BaselineSpec::Commit(format!("{:040x}", 3)),
        ..Options::default()
    };
    let m = judge(&h, &current, &old);
    assert_eq!(
        m.baseline_runs,
        vec![run_id(3)],
        "a run far behind the window"
    );
}

/// A server that admits metalab over TLS only: the connection verifies the server's certificate
/// against the CA in PGSSLROOTCERT; without that CA, or with TLS turned off in the URL, it is
/// refused (exit 2) and says why.
#[test]
fn a_server_that_requires_tls_is_reached_with_its_ca_and_refused_without() {
    let store = Store::postgres();
    let server = store._server.as_ref().expect("a server");
    let ca = server.require_tls();
    let history = |url: &str, ca: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_metalab"));
        c.args(["history", "--db", url])
            .env("METALAB_HOME", store.dir.path().join("state"))
            .env_remove("PGSSLROOTCERT");
        if let Some(ca) = ca {
            c.env("PGSSLROOTCERT", ca);
        }
        let out = c.output().expect("runs");
        assert!(!text(&out).contains(server.password()), "{}", text(&out));
        out
    };
    for url in [store.db.clone(), format!("{}?sslmode=require", store.db)] {
        let out = history(&url, Some(&ca));
        assert!(out.status.success(), "{url}: {}", text(&out));
        assert!(
            text(&out).contains("no runs in the history"),
            "{}",
            text(&out)
        );
    }
    let out = history(&store.db, None);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("TLS failed") && shown.contains("PGSSLROOTCERT"),
        "{shown}"
    );
    let out = history(&format!("{}?sslmode=disable", store.db), Some(&ca));
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("no encryption"),
        "the server refused a plain connection: {shown}"
    );
}
