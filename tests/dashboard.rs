//! The dashboard (`artifacts/index.html`) from a history of 32 runs made through the real binary
//! (`history import` of results files, then `metalab report` for each): checked as files (the
//! grid's cells match the history, a flaky and a "failing since" test show as such, infrastructure
//! errors stand apart, every link resolves to a file and an anchor), then in headless Chromium:
//! no console messages, the URL fragment's filters hide the right rows, the controls write the
//! fragment back, and a screenshot is kept.

mod bench_runs;
mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use bench_runs::{run, run_id, samples, write_artifacts};
use browser::{chromium, console, have_chromium};
use metalab::exit::Status;
use metalab::model::record::{Attempt, RunRecord, SuiteRecord, TestOutcome, TestRecord};

const RUNS: u32 = 32;
/// The run that ended in an infrastructure error, on host lab2.
const INFRA_RUN: u32 = 12;
/// `policy/denied-port-dropped` fails from this run on.
const FAILING_FROM: u32 = 27;

/// The commit of run `n`: runs 15 and 16 share one.
fn commit(n: u32) -> String {
    let n = if n == 16 { 15 } else { n };
    format!("c{n:02}{}", "0".repeat(38))
}

/// What each test did in run `n`.
fn outcome(n: u32, suite: &str, name: &str) -> TestOutcome {
    match (suite, name) {
        ("policy", "denied-port-dropped") if n >= FAILING_FROM => TestOutcome::Failed,
        ("policy", "ping-allowed") if n.is_multiple_of(10) => TestOutcome::Flaky,
        // Failed and passed on the same commit: a flake.
        ("connectivity", "same-vm-bridge") if n == 15 => TestOutcome::Failed,
        _ => TestOutcome::Passed,
    }
}

const TESTS: [(&str, &str); 4] = [
    ("connectivity", "same-vm-bridge"),
    ("policy", "denied-port-dropped"),
    ("policy", "listeners-up"),
    ("policy", "ping-allowed"),
];

/// The throughput benchmark drops by a fifth from this run on.
const SLOWER_FROM: u32 = 21;

fn record(n: u32) -> RunRecord {
    let level = if n < SLOWER_FROM { 2.8 } else { 2.2 };
    let mut r = run(n, samples(level, 5, n));
    let infra = n == INFRA_RUN;
    let conditions = r.conditions.as_mut().expect("conditions");
    conditions.lab_commit = Some(commit(n));
    if infra {
        conditions.host.hostname = "lab2".into();
    }
    let test = |suite: &str, name: &str| {
        let outcome = if infra {
            TestOutcome::Error
        } else {
            outcome(n, suite, name)
        };
        TestRecord {
            suite: suite.into(),
            name: name.into(),
            vm: "node1".into(),
            command: format!("./{suite}.sh {name}"),
            outcome,
            infra,
            duration: Duration::from_millis(1000 + u64::from(n) * 50),
            message: (outcome != TestOutcome::Passed).then(|| "exit 1, expected 0".into()),
            log: PathBuf::from(format!("{suite}/{name}.log")),
            failed_attempts: match outcome {
                TestOutcome::Flaky => vec![Attempt {
                    outcome: TestOutcome::Failed,
                    message: Some("exit 1, expected 0".into()),
                    duration: Duration::from_secs(1),
                }],
                _ => Vec::new(),
            },
        }
    };
    for suite in ["connectivity", "policy"] {
        r.suites.push(SuiteRecord {
            snapshot: None,
            name: suite.into(),
            duration: Duration::from_secs(10),
            error: None,
            tests: TESTS
                .iter()
                .filter(|(s, _)| *s == suite)
                .map(|(s, name)| test(s, name))
                .collect(),
            benchmarks: Vec::new(),
        });
    }
    r.status = if infra {
        Status::InfraError
    } else if r.tests().any(|t| t.outcome == TestOutcome::Failed) {
        Status::TestsFailed
    } else {
        Status::Passed
    };
    r
}

fn metalab(dir: &Path, db: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_metalab"))
        .args(args)
        .arg("--db")
        .arg(db)
        .current_dir(dir)
        .env("METALAB_HOME", dir.join("state"))
        .env_remove("METALAB_HISTORY")
        .output()
        .expect("metalab runs");
    assert!(
        out.status.success(),
        "metalab {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The history of [`RUNS`] runs, imported and reported one by one as CI would; the dashboard.
struct Lab {
    _dir: tempfile::TempDir,
    artifacts: PathBuf,
}

fn lab() -> Lab {
    let dir = tempfile::Builder::new()
        .prefix("metalab-dashboard-")
        .tempdir()
        .expect("temp dir");
    let db = dir.path().join("history.sqlite");
    let artifacts = dir.path().join("artifacts");
    for n in 1..=RUNS {
        let results = write_artifacts(&artifacts, &record(n));
        metalab(
            dir.path(),
            &db,
            &["history", "import", &results.display().to_string()],
        );
        metalab(dir.path(), &db, &["report", run_id(n).as_str()]);
    }
    Lab {
        _dir: dir,
        artifacts,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `<tr>` of a test in the grid.
fn row<'a>(page: &'a str, suite: &str, name: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"test-{suite}-{name}\""))
        .unwrap_or_else(|| panic!("no row for {suite}/{name}"));
    let end = page[start..].find("</tr>").expect("a closed row");
    &page[start..start + end]
}

/// The classes of a row's cells, newest run first.
fn cells(row: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"<td class="cell (\w+)""#).expect("regex");
    re.captures_iter(row).map(|c| c[1].to_string()).collect()
}

#[test]
fn the_dashboard_shows_the_history_as_a_grid_and_reads_well_in_a_browser() {
    let lab = lab();
    let index = lab.artifacts.join("index.html");
    let page = read(&index);

    // The newest 30 runs are the columns, newest first.
    assert_eq!(page.matches("<th class=\"run ").count(), 30);
    let newest = (RUNS - 29..=RUNS).rev();
    for (suite, name) in TESTS {
        let expected: Vec<&str> = newest
            .clone()
            .map(|n| match (n == INFRA_RUN, outcome(n, suite, name)) {
                (true, _) => "infra",
                (_, TestOutcome::Failed) => "failed",
                (_, TestOutcome::Flaky) => "flaky",
                _ => "passed",
            })
            .collect();
        assert_eq!(cells(row(&page, suite, name)), expected, "{suite}/{name}");
    }
    // Failing since run 27, with its commit; the failure links to the log's first failing line.
    let failing = row(&page, "policy", "denied-port-dropped");
    assert!(failing.contains("data-failing=\"1\""), "{failing}");
    assert!(failing.contains("(c270000000)"), "{failing}");
    assert!(
        failing.contains("<td class=\"num\">21%</td>"),
        "6 of 29 that ran: {failing}"
    );
    assert!(
        failing.contains(&format!(
            "{}/report/index.html#policy-denied-port-dropped-L3",
            run_id(RUNS)
        )),
        "{failing}"
    );
    // Flaky: passed on a retry in runs 10, 20 and 30; failed and passed on one commit.
    let retried = row(&page, "policy", "ping-allowed");
    assert!(retried.contains("data-flaky=\"1\""), "{retried}");
    assert!(retried.contains("<td class=\"num\">10%</td>"), "{retried}");
    let same_commit = row(&page, "connectivity", "same-vm-bridge");
    assert!(same_commit.contains("data-flaky=\"1\""), "{same_commit}");
    let steady = row(&page, "policy", "listeners-up");
    assert!(steady.contains("data-flaky=\"0\"") && steady.contains("data-failing=\"0\""));
    // The benchmark's drop is marked where it happened, as the gate would call it.
    let benchmarks = &page[page.find("id=\"benchmarks\"").expect("benchmarks section")..];
    let benchmarks = &benchmarks[..benchmarks.find("</section>").expect("closed")];
    assert!(
        benchmarks.contains("throughput/tcp-1-stream throughput"),
        "{benchmarks}"
    );
    assert!(
        benchmarks.contains(&format!(
            "{}/report/index.html#benchmarks",
            run_id(SLOWER_FROM)
        )) && benchmarks.contains("2.80 → 2.20"),
        "{benchmarks}"
    );
    assert_eq!(
        benchmarks.matches("class=\"shift\"").count(),
        1,
        "{benchmarks}"
    );
    // Infrastructure errors apart, by host.
    let infra = &page[page.find("id=\"infra\"").expect("infra section")..];
    assert!(
        infra.contains("<td>lab2</td><td class=\"num\">1</td>"),
        "{infra:.600}"
    );
    // Every link resolves to a file, and its anchor to an element of that file.
    let re = regex::Regex::new(r##"href="([^"#]*)(?:#([^"]*))?""##).expect("regex");
    let mut checked = 0;
    for c in re.captures_iter(&page) {
        let target = lab.artifacts.join(&c[1]);
        let text = read(&target);
        if let Some(anchor) = c.get(2) {
            assert!(
                text.contains(&format!("id=\"{}\"", anchor.as_str())),
                "no #{} in {}",
                anchor.as_str(),
                target.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 30 * 4, "only {checked} links");

    if !have_chromium() {
        eprintln!("SKIPPED (browser part): chromium is not installed and could not be installed");
        return;
    }
    let url = |fragment: &str| format!("file://{}{fragment}", index.display());
    let (dom, stderr) = chromium(&url(""), &["--dump-dom"]);
    assert!(console(&stderr).is_empty(), "{:?}", console(&stderr));
    assert!(dom.contains("4 of 4 tests"), "{dom:.2000}");
    // A shared link's filters: only the failing test, and only the connectivity suite.
    let (dom, _) = chromium(&url("#failing=1"), &["--dump-dom"]);
    assert!(dom.contains("1 of 4 tests"), "{dom:.2000}");
    let visible = |dom: &str, suite: &str, name: &str| {
        let r = row(dom, suite, name);
        !r.contains("hidden")
    };
    assert!(visible(&dom, "policy", "denied-port-dropped"));
    assert!(!visible(&dom, "policy", "listeners-up"));
    let (dom, _) = chromium(&url("#suite=connectivity&status=failed"), &["--dump-dom"]);
    assert!(dom.contains("1 of 4 tests"), "{dom:.2000}");
    assert!(visible(&dom, "connectivity", "same-vm-bridge"));
    // The controls write the fragment: the page, with a script acting as a person would.
    let driven = lab.artifacts.join("driven.html");
    std::fs::write(
        &driven,
        page.replace(
            "</body>",
            "<script>var f = document.getElementById('filters'); f.flaky.checked = true;\
             f.dispatchEvent(new Event('change'));\
             document.body.setAttribute('data-fragment', location.hash);</script></body>",
        ),
    )
    .expect("write");
    let (dom, stderr) = chromium(&format!("file://{}", driven.display()), &["--dump-dom"]);
    assert!(console(&stderr).is_empty(), "{:?}", console(&stderr));
    assert!(dom.contains("data-fragment=\"#flaky=1\""), "{dom:.300}");
    assert!(dom.contains("2 of 4 tests"), "{dom:.2000}");

    // Kept for a person to look at, with a picture of it.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("mkdir");
    let shot = shots.join("dashboard.png");
    chromium(
        &url(""),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1250",
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "{} is {size} bytes", shot.display());
    println!("screenshot: {}", shot.display());
}
