//! Shards and their merge, without VMs: the split (complete, disjoint, stable, balanced by a
//! real history), `metalab run --shard` on what starts nothing (bad values, an empty share),
//! `metalab report merge` on made-up shard results, and the GitHub Actions reporter on a
//! made-up event stream.

mod bench_runs;
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bench_runs::{run, samples, with_tests, write_artifacts};
use chrono::Utc;
use common::postgres::PgServer;
use common::{ScratchLab, text};
use metalab::exit::Status;
use metalab::history::{History, Location};
use metalab::model::event::{Event, EventKind, Phase};
use metalab::model::record::{RunRecord, ShardRecord, SuiteRecord, TestOutcome, TestRecord};
use metalab::report::github::GitHubActions;
use metalab::shard::{self, Durations, ShardSpec};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("metalab-shards-")
        .tempdir()
        .expect("temp dir")
}

/// Every shard's share, as `metalab run --shard I/N` would pick it.
fn shares(all: &[String], durations: &Durations, count: u32) -> Vec<Vec<String>> {
    (1..=count)
        .map(|index| shard::assign(ShardSpec { index, count }, all, durations).suites)
        .collect()
}

#[test]
fn the_shards_together_run_every_suite_exactly_once() {
    let all = names(&[
        "connectivity",
        "policy",
        "throughput",
        "dns",
        "mtu",
        "vxlan",
        "ipv6",
    ]);
    let mut durations = Durations::none("test");
    durations.insert("throughput", Duration::from_secs(90));
    durations.insert("policy", Duration::from_secs(12));
    for d in [Durations::none("test"), durations] {
        for count in 1..=9 {
            let mut seen: Vec<String> = shares(&all, &d, count).concat();
            seen.sort();
            let mut expected = all.clone();
            expected.sort();
            assert_eq!(seen, expected, "{count} shards");
        }
    }
}

#[test]
fn the_split_is_the_same_for_the_same_inputs_in_any_order() {
    let all = names(&["a", "b", "c", "d", "e", "f"]);
    let mut reversed = all.clone();
    reversed.reverse();
    let mut d = Durations::none("test");
    d.insert("c", Duration::from_secs(40));
    d.insert("e", Duration::from_secs(40));
    let sorted = |v: Vec<Vec<String>>| -> Vec<Vec<String>> {
        v.into_iter()
            .map(|mut s| {
                s.sort();
                s
            })
            .collect()
    };
    let first = shares(&all, &d, 3);
    assert_eq!(first, shares(&all, &d, 3));
    assert_eq!(sorted(first), sorted(shares(&reversed, &d, 3)));
}

/// A run whose suites took the given seconds.
fn timed_run(n: u32, suites: &[(&str, u64)]) -> RunRecord {
    let mut r = run(n, Vec::new());
    r.suites = suites
        .iter()
        .map(|(name, secs)| SuiteRecord {
            snapshot: None,
            name: name.to_string(),
            duration: Duration::from_secs(*secs),
            error: None,
            tests: Vec::new(),
            benchmarks: Vec::new(),
        })
        .collect();
    r
}

#[test]
fn the_split_is_balanced_by_the_durations_in_the_history() {
    let dir = scratch();
    let db = dir.path().join("history.sqlite");
    let mut h = History::open(&db).expect("opens");
    // `slow` once took 900 s (an outlier): the median over runs (300 s) is what counts.
    for (n, slow) in [(1, 280), (2, 300), (3, 900)] {
        let r = timed_run(
            n,
            &[
                ("alpha", 100),
                ("beta", 100),
                ("gamma", 100),
                ("slow", slow),
            ],
        );
        h.insert(&r).expect("insert");
    }
    let all = names(&["alpha", "beta", "gamma", "slow"]);
    let by_name = shares(&all, &Durations::none("test"), 2);
    assert_eq!(
        by_name,
        vec![names(&["alpha", "gamma"]), names(&["beta", "slow"])]
    );

    let d = Durations::from_history(&h, "the test history").expect("durations");
    assert_eq!(d.get("slow"), Some(Duration::from_secs(300)));
    let by_time = shares(&all, &d, 2);
    assert_eq!(
        by_time,
        vec![names(&["slow"]), names(&["alpha", "beta", "gamma"])]
    );
    let record = shard::assign(ShardSpec { index: 1, count: 2 }, &all, &d);
    assert_eq!(
        record.balanced_by,
        "the durations of 4 of 4 suite(s) from the test history"
    );

    // The history file itself, as `--shard-durations` reads it, splits the same way.
    drop(h);
    let read = Durations::read(&db).expect("read");
    assert_eq!(shares(&all, &read, 2), by_time);
}

/// The share of shard `spec` that `metalab run --dry-run` plans in `lab`, against the history
/// `db`, for the pipeline `plan`.
fn planned_share(lab: &ScratchLab, spec: &str, db: &str, plan: &str) -> String {
    let out = lab
        .metalab(&["run", "--dry-run", "--shard", spec])
        .env("METALAB_HISTORY", db)
        .env("METALAB_SHARD_PLAN", plan)
        .env("METALAB_HOME", lab.path().join("state"))
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let line = shown
        .lines()
        .find(|l| l.starts_with(&format!("shard    {spec}: ")))
        .unwrap_or_else(|| panic!("no shard line:\n{shown}"));
    line.to_string()
}

/// Two hosts (each its own lab checkout and state directory) share a PostgreSQL history. The
/// first shard of a pipeline stores the durations it read; the second, started after another
/// run changed the history, takes the same ones, so the two shares are disjoint and complete.
#[test]
fn shards_on_two_hosts_sharing_a_server_split_by_the_same_durations() {
    let server = PgServer::start();
    let db = server.url();
    let mut h = History::open(Location::parse(&db).unwrap()).expect("opens");
    let suites = [("alpha", 100), ("beta", 100), ("gamma", 100), ("slow", 300)];
    for n in 1..=3 {
        h.insert(&timed_run(n, &suites)).expect("insert");
    }
    let labs: Vec<ScratchLab> = (0..2)
        .map(|_| {
            let defs: Vec<(&str, &str)> = suites.iter().map(|(n, _)| (*n, SUITE)).collect();
            ScratchLab::new("", &defs)
        })
        .collect();
    let first = planned_share(&labs[0], "1/2", &db, "pipeline-42");
    assert!(first.contains(": slow of 4 suite(s)"), "{first}");
    assert!(first.contains("(shard plan pipeline-42)"), "{first}");
    assert!(!first.contains(server.password()), "{first}");

    // Meanwhile runs end that make `slow` quick and `alpha` slow.
    let changed = [("alpha", 900), ("beta", 100), ("gamma", 100), ("slow", 10)];
    for n in 4..=9 {
        h.insert(&timed_run(n, &changed)).expect("insert");
    }
    let second = planned_share(&labs[1], "2/2", &db, "pipeline-42");
    assert!(
        second.contains(": alpha, beta, gamma of 4 suite(s)"),
        "{second}"
    );
    // The control: a new pipeline reads the history as it is now.
    let other = planned_share(&labs[1], "1/2", &db, "pipeline-43");
    assert!(other.contains(": alpha of 4 suite(s)"), "{other}");
}

#[test]
fn a_suite_the_history_does_not_know_weighs_the_mean_of_the_known_ones() {
    let dir = scratch();
    let r = timed_run(1, &[("alpha", 200), ("beta", 20), ("gamma", 20)]);
    let file = write_artifacts(&dir.path().join("artifacts"), &r);
    let d = Durations::read(&file).expect("read");
    // new weighs (200 + 20 + 20) / 3 = 80 s: alpha alone; new, beta and gamma (120 s) together.
    let all = names(&["alpha", "beta", "gamma", "new"]);
    assert_eq!(
        shares(&all, &d, 2),
        vec![names(&["alpha"]), names(&["beta", "gamma", "new"])]
    );
}

const SUITE: &str = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n";

#[test]
fn a_bad_shard_is_refused_before_anything_starts() {
    let lab = ScratchLab::new("", &[("alpha", SUITE)]);
    for (value, says) in [
        ("3/2", "there is no shard 3 of 2"),
        ("0/2", "there is no shard 0 of 2"),
        ("1/0", "at least 1 shard"),
        ("x/2", "`x` is not a whole number"),
        ("2", "expected I/N"),
    ] {
        let out = lab.metalab(&["run", "--shard", value]).output().unwrap();
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(2), "{value}: {shown}");
        assert!(
            shown.contains(says),
            "{value}: expected {says:?} in:\n{shown}"
        );
    }
    let out = lab
        .metalab(&["run", "--shard", "1/2", "--shard-durations", "nowhere.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nowhere.json"), "{}", text(&out));
    assert!(!lab.path().join("artifacts").exists(), "a run started");
}

#[test]
fn a_shard_without_suites_passes_and_writes_empty_results() {
    let lab = ScratchLab::new("", &[("alpha", SUITE)]);
    let durations = timed_run(1, &[("alpha", 30)]);
    let file = write_artifacts(&lab.path().join("previous"), &durations);
    let out = lab
        .metalab(&["run", "--shard", "2/2", "--shard-durations"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("shard 2/2 has no suites"), "{shown}");
    let results = lab.results();
    assert_eq!(results["status"], "passed");
    assert_eq!(results["suites"].as_array().map(Vec::len), Some(0));
    assert_eq!(results["shard"]["index"], 2);
    assert_eq!(results["shard"]["count"], 2);
    assert_eq!(results["shard"]["selected"], serde_json::json!(["alpha"]));
    let basis = results["shard"]["balanced_by"].as_str().unwrap_or_default();
    assert!(basis.contains("durations of 1 of 1"), "{basis}");
    assert!(lab.junit().contains("tests=\"0\""), "{}", lab.junit());
}

/// A shard's results: `r` given shard `index` of 2, of the suites policy and throughput.
fn as_shard(mut r: RunRecord, index: u32, suites: &[&str]) -> RunRecord {
    r.suites.retain(|s| suites.contains(&s.name.as_str()));
    r.shard = Some(ShardRecord {
        index,
        count: 2,
        suites: names(suites),
        selected: names(&["policy", "throughput"]),
        balanced_by: "suite names".into(),
    });
    r
}

/// Shard 1 passed with the throughput benchmark; shard 2 failed a policy test.
fn two_shards(artifacts: &Path) -> (RunRecord, RunRecord) {
    let one = as_shard(run(1, samples(2.8, 5, 1)), 1, &["throughput"]);
    let two = as_shard(with_tests(run(2, samples(2.8, 5, 2))), 2, &["policy"]);
    assert_eq!(two.status, Status::TestsFailed);
    write_artifacts(artifacts, &one);
    write_artifacts(artifacts, &two);
    (one, two)
}

/// `metalab report merge ARGS` in `dir`, with a private state directory and no CI variables.
fn merge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metalab"))
        .args(["report", "merge"])
        .args(args)
        .current_dir(dir)
        .env("METALAB_HOME", dir.join("state"))
        .env("CI", "true")
        .env_remove("METALAB_HISTORY")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("metalab runs")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn merging_two_shards_gives_one_result_and_the_worst_exit_code() {
    let dir = scratch();
    // Each shard's artifacts collected apart, as CI downloads them, `latest` links and all.
    let (one, two) = two_shards(&dir.path().join("shard-1/artifacts"));
    std::fs::rename(
        dir.path()
            .join("shard-1/artifacts")
            .join(two.run_id.as_str()),
        dir.path().join("shard-2"),
    )
    .expect("moved");
    std::os::unix::fs::symlink(
        one.run_id.as_str(),
        dir.path().join("shard-1/artifacts/latest"),
    )
    .expect("link");
    let out = merge(
        dir.path(),
        &["shard-1", "shard-2/results.json", "--out", "merged"],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        !shown.contains("metalab: merge:"),
        "a complete split has no problems:\n{shown}"
    );

    let merged = dir.path().join("merged");
    let record: RunRecord = serde_json::from_str(&read(&merged.join("results.json"))).unwrap();
    assert_eq!(record.status, Status::TestsFailed);
    let suites: Vec<&str> = record.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(suites, ["throughput", "policy"]);
    assert_eq!(record.count(TestOutcome::Failed), 1);
    assert_eq!(record.benchmarks().count(), 1);
    assert!(record.shard.is_none());
    let scopes: Vec<&str> = record.phases.iter().map(|p| p.scope.as_str()).collect();
    assert_eq!(scopes, ["shard 1/2", "shard 1/2", "shard 2/2", "shard 2/2"]);

    let junit = read(&merged.join("junit.xml"));
    for expected in [
        "<testsuite name=\"throughput\"",
        "<testsuite name=\"policy\"",
        "name=\"up[shard 1/2]\"",
        "name=\"up[shard 2/2]\"",
        "<failure message=\"output does not match /dropped/\"",
    ] {
        assert!(junit.contains(expected), "{expected} not in:\n{junit}");
    }
    // The failed test's log travelled with it, and is quoted in the JUnit file.
    assert!(merged.join("policy/denied-port-dropped.log").is_file());
    assert!(
        junit.contains("nc: connect to 10.210.0.2 port 9090"),
        "{junit}"
    );
    let phase_log = merged
        .join("shards")
        .join(two.run_id.as_str())
        .join("lifecycle/up.log");
    assert!(phase_log.is_file(), "{}", phase_log.display());

    let html = read(&merged.join("report/index.html"));
    assert!(
        html.contains("denied-port-dropped"),
        "the report lacks the failure"
    );
    assert!(
        html.contains("tcp-1-stream"),
        "the report lacks the benchmark"
    );

    // Merging the same shards again gives the same run id.
    let again = merge(dir.path(), &["shard-1", "shard-2", "--out", "again"]);
    let second: RunRecord =
        serde_json::from_str(&read(&dir.path().join("again/results.json"))).unwrap();
    assert_eq!(second.run_id, record.run_id, "{}", text(&again));
}

#[test]
fn passing_shards_merge_to_a_pass() {
    let dir = scratch();
    let mut one = as_shard(run(1, samples(2.8, 5, 1)), 1, &["throughput"]);
    let mut two = as_shard(run(2, samples(2.8, 5, 2)), 2, &[]);
    for shard in [&mut one.shard, &mut two.shard].into_iter().flatten() {
        shard.selected = names(&["throughput"]);
    }
    write_artifacts(&dir.path().join("a"), &one);
    write_artifacts(&dir.path().join("a"), &two);
    let out = merge(dir.path(), &["a"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(dir.path().join("merged/junit.xml").is_file());
}

#[test]
fn a_missing_shard_is_named_with_the_suites_it_had() {
    let dir = scratch();
    let (one, _) = two_shards(&dir.path().join("artifacts"));
    let out = merge(
        dir.path(),
        &[&format!("artifacts/{}", one.run_id), "--out", "merged"],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("shard(s) 2 of 2 missing") && shown.contains("suites policy did not run"),
        "{shown}"
    );
    let record: RunRecord =
        serde_json::from_str(&read(&dir.path().join("merged/results.json"))).unwrap();
    assert_eq!(record.status, Status::InfraError);
    assert!(record.notices.iter().any(|n| n.contains("missing")));
}

#[test]
fn overlapping_or_repeated_shards_are_bad_input() {
    let dir = scratch();
    let one = as_shard(run(1, samples(2.8, 5, 1)), 1, &["throughput"]);
    // Shard 2 split by other durations and also ran throughput.
    let two = as_shard(run(2, samples(2.8, 5, 2)), 2, &["throughput"]);
    write_artifacts(&dir.path().join("a"), &one);
    write_artifacts(&dir.path().join("a"), &two);
    let out = merge(dir.path(), &["a", "--out", "m1"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("policy were given to no shard"), "{shown}");
    assert!(
        shown.contains("suite throughput was given to shards 1/2 and 2/2"),
        "{shown}"
    );

    let again = as_shard(run(3, samples(2.8, 5, 3)), 1, &["throughput"]);
    let policy = as_shard(with_tests(run(4, samples(2.8, 5, 4))), 2, &["policy"]);
    for r in [&one, &again, &policy] {
        write_artifacts(&dir.path().join("b"), r);
    }
    let out = merge(dir.path(), &["b", "--out", "m2"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("shard 1/2 is there 2 times"), "{shown}");
}

#[test]
fn merge_refuses_no_results_and_a_used_output_directory() {
    let dir = scratch();
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    let out = merge(dir.path(), &["empty"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no results.json in empty"),
        "{}",
        text(&out)
    );

    two_shards(&dir.path().join("a"));
    std::fs::create_dir_all(dir.path().join("merged")).unwrap();
    std::fs::write(dir.path().join("merged/old.txt"), "old").unwrap();
    let out = merge(dir.path(), &["a"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
}

/// Shard 2's results.json with one field replaced, as a hostile or broken file would have it.
fn tamper(artifacts: &Path, run: &RunRecord, field: &[&str], value: &str) -> PathBuf {
    let file = artifacts.join(run.run_id.as_str()).join("results.json");
    let mut json: serde_json::Value = serde_json::from_str(&read(&file)).unwrap();
    let mut at = &mut json;
    for key in field {
        at = match key.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*key],
        };
    }
    *at = value.into();
    std::fs::write(&file, json.to_string()).unwrap();
    file
}

#[test]
fn merge_refuses_a_run_id_or_a_log_path_that_leaves_its_directory() {
    let cases: [(&[&str], &str, &str); 3] = [
        (
            &["run_id"],
            "../../etc",
            "field `run_id`: \"../../etc\" is not a metalab run id",
        ),
        (
            &["suites", "0", "tests", "0", "log"],
            "../../../../etc/shadow",
            "field `suites[0].tests[0].log`: \"../../../../etc/shadow\" leaves the directory",
        ),
        (
            &["suites", "0", "name"],
            "/etc",
            "field `suites[0].name`: \"/etc\" leaves the directory",
        ),
    ];
    for (field, value, said) in cases {
        let dir = scratch();
        let artifacts = dir.path().join("a");
        let (_, two) = two_shards(&artifacts);
        let file = tamper(&artifacts, &two, field, value);
        let out = merge(dir.path(), &["a"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let expected = format!(
            "{}: {said}",
            file.strip_prefix(dir.path()).unwrap().display()
        );
        assert!(text(&out).contains(&expected), "{expected}\n{}", text(&out));
        assert!(
            !dir.path().join("merged").exists(),
            "{field:?}: merge wrote"
        );
        assert!(!dir.path().join("etc").exists(), "{field:?}: merge escaped");
    }
}

#[test]
fn under_github_actions_merge_appends_the_step_summary() {
    let dir = scratch();
    two_shards(&dir.path().join("a"));
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_metalab"))
        .args(["report", "merge", "a"])
        .current_dir(dir.path())
        .env("METALAB_HOME", dir.path().join("state"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let md = read(&summary);
    assert!(md.starts_with("earlier step\n## ❌ metalab run "), "{md}");
    assert!(md.contains(": FAILED (exit 1)"), "{md}");
    assert!(
        md.contains("| `policy/denied-port-dropped` | failed | output does not match /dropped/ |"),
        "{md}"
    );
    assert!(
        md.contains("| `throughput/tcp-1-stream` | throughput |"),
        "{md}"
    );
}

/// Standard output that a test can read afterwards.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A suite file where a benchmark with a name like the test's comes first: the annotation must
/// find the test's own line. (A benchmark may not share a test's name: their logs would collide.)
const POLICY_TOML: &str = r#"vms = ["node1"]

[[test]]
name = "listeners-up"
run = "./policy.sh up"

[[benchmark]]
name = "denied-port-dropped-rate"
run = "true"
[[benchmark.metric]]
name = "x"
unit = "s"
direction = "lower"
regex = '(\d+)'

[[test]]
name = "denied-port-dropped"     # the one that fails
run = "./policy.sh probe-denied"
"#;

fn event(kind: EventKind) -> Event {
    Event {
        time: Utc::now(),
        kind,
    }
}

fn test_record(name: &str, outcome: TestOutcome, message: Option<&str>) -> TestRecord {
    TestRecord {
        suite: "policy".into(),
        name: name.into(),
        vm: "node1".into(),
        command: "./policy.sh".into(),
        outcome,
        infra: false,
        duration: Duration::from_secs(2),
        message: message.map(String::from),
        log: PathBuf::from(format!("policy/{name}.log")),
        failed_attempts: Vec::new(),
    }
}

#[test]
fn the_github_reporter_annotates_failures_and_writes_a_summary() {
    let dir = scratch();
    let suite_file = dir.path().join("suites/policy/suite.toml");
    std::fs::create_dir_all(suite_file.parent().unwrap()).unwrap();
    std::fs::write(&suite_file, POLICY_TOML).unwrap();
    let summary = dir.path().join("step-summary.md");
    let stdout = Captured::default();
    let mut record = run(1, Vec::new());
    record.suites.clear();
    record.phases.clear();
    let known = metalab::suite::Known {
        vms: &["node1".to_string()],
        images: &[],
    };
    let suites =
        metalab::suite::load_all(&dir.path().join("suites"), &known).expect("the suite loads");
    let reporter = GitHubActions::new(
        &suites,
        None,
        Some(summary.clone()),
        Box::new(stdout.clone()),
    );

    let bench = run(1, samples(2.8, 5, 1)).suites[0].benchmarks[0].clone();
    for kind in [
        EventKind::SuiteStarted {
            snapshot: None,
            suite: "policy".into(),
            tests: 2,
            benchmarks: 0,
        },
        EventKind::TestFinished(test_record("listeners-up", TestOutcome::Passed, None)),
        EventKind::TestFinished(test_record(
            "denied-port-dropped",
            TestOutcome::Failed,
            Some("output does not match /dropped/\nsee the log"),
        )),
        EventKind::SuiteStarted {
            snapshot: None,
            suite: "throughput".into(),
            tests: 0,
            benchmarks: 1,
        },
        EventKind::BenchmarkFinished(bench),
        EventKind::PhaseFinished {
            phase: Phase::Destroy,
            scope: String::new(),
            duration: Duration::from_secs(3),
            error: Some("virsh: domain still running".into()),
            log: None,
        },
        EventKind::RunFinished {
            status: Status::TestsFailed,
            duration: Duration::from_secs(60),
        },
    ] {
        record.apply(&event(kind));
    }
    reporter.finish(&record);

    let lines: Vec<String> = stdout.text().lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            format!(
                "::error file={},line=17,title=policy/denied-port-dropped::policy/denied-port-dropped \
                 failed on node1: output does not match /dropped/%0Asee the log",
                suite_file.display()
            ),
            "::error title=metalab destroy::infrastructure error in destroy: virsh: domain still running"
                .to_string(),
        ]
    );
    let md = read(&summary);
    assert!(md.starts_with("## ❌ metalab run "), "{md}");
    assert!(
        md.contains("**1 passed, 1 failed** in 2 suite(s), 1 benchmark(s)"),
        "{md}"
    );
    assert!(
        md.contains("| `policy/denied-port-dropped` | failed | output does not match /dropped/ see the log |"),
        "{md}"
    );
    assert!(
        md.contains("| destroy (lifecycle) | infrastructure | virsh: domain still running |"),
        "{md}"
    );
    assert!(
        md.contains("| `throughput/tcp-1-stream` | throughput | 2.8"),
        "{md}"
    );
    assert!(md.contains(" | Gbit/s | 5 | "), "{md}");
}
