//! The HTML report as a person sees it: built from made-up runs (a regression with a change
//! point, a failed and a flaky test with logs), checked as files, then opened in Debian's
//! headless Chromium: it loads without console messages, a line anchor opens its collapsed log,
//! the plots are well-formed SVG, and a screenshot is saved for a person to look at.

mod bench_runs;
mod browser;

use std::path::{Path, PathBuf};
use std::process::Command;

use bench_runs::{run, run_id, samples, with_failed_setup, with_tests, write_artifacts};
use browser::{chromium, console, have_chromium};
use metalab::gate::{BaselineSpec, Options};
use metalab::history::History;
use metalab::report::html;

/// A history of ten runs (seven around 2.8 Gbit/s, then three around 2.2) and an eleventh run,
/// at 2.2 with a failed and a flaky test and a suite whose setup failed, whose report is built
/// against run 5 (at 2.8).
struct Lab {
    _dir: tempfile::TempDir,
    artifacts: PathBuf,
    run_dir: PathBuf,
    report: PathBuf,
}

fn lab() -> Lab {
    let dir = tempfile::Builder::new()
        .prefix("metalab-html-")
        .tempdir()
        .expect("temp dir");
    let db = dir.path().join("history.sqlite");
    let artifacts = dir.path().join("artifacts");
    let mut h = History::open(&db).expect("opens");
    for n in 1..=10 {
        let level = if n <= 7 { 2.8 } else { 2.2 };
        let r = run(n, samples(level, 5, n));
        write_artifacts(&artifacts, &r);
        h.insert(&r).expect("insert");
    }
    let current = with_failed_setup(with_tests(run(11, samples(2.2, 5, 11))));
    write_artifacts(&artifacts, &current);
    h.insert(&current).expect("insert");
    drop(h);
    let run_dir = artifacts.join(current.run_id.as_str());
    let options = Options {
        baseline: BaselineSpec::Run(run_id(5).to_string()),
        ..Options::default()
    };
    let judged = metalab::report::gate::judge(&db.clone().into(), &current, &options);
    assert!(judged.warning.is_none(), "{:?}", judged.warning);
    let built = html::build(&current, &run_dir, &judged).expect("built");
    Lab {
        _dir: dir,
        artifacts,
        run_dir,
        report: built.report,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `href="..."` and `src="..."` value of a page.
fn links(page: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"(?:href|src)="([^"]*)""#).expect("regex");
    re.captures_iter(page).map(|c| c[1].to_string()).collect()
}

#[test]
fn the_report_is_complete_self_contained_and_ordered() {
    let lab = lab();
    let page = read(&lab.report);
    let report_dir = lab.report.parent().expect("in report/");
    for link in links(&page) {
        assert!(!link.contains("://"), "nothing from the network: {link}");
        let target = link.split('#').next().unwrap_or_default();
        if !target.is_empty() {
            assert!(report_dir.join(target).exists(), "broken link {link}");
        }
    }
    assert!(!read(&report_dir.join("style.css")).contains("://"));
    let plots: Vec<String> = links(&page)
        .into_iter()
        .filter(|l| l.ends_with(".svg"))
        .collect();
    assert_eq!(plots.len(), 2, "samples and history: {plots:?}");

    // One anchor per log line, and log text escaped.
    for n in 1..=5 {
        assert!(
            page.contains(&format!("id=\"policy-denied-port-dropped-L{n}\"")),
            "line {n}"
        );
    }
    assert!(page.contains("&lt;script&gt;alert"), "log text is escaped");
    assert!(!page.contains("<script>alert"));

    // Failures first, flaky marked, the regression called out.
    let at = |needle: &str| {
        page.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing"))
    };
    assert!(at("id=\"policy-denied-port-dropped\" open") < at("id=\"policy-ping-allowed\""));
    assert!(at("id=\"policy-ping-allowed\"") < at("id=\"policy-listeners-up\""));
    assert!(page.contains("FLAKY"));
    // A failed suite setup is the failure; its tests did not run, and say so.
    assert!(page.contains("connectivity (suite)</a>: setup step 1 on node1 failed (exit 2) "));
    assert!(page.contains("(1 test(s) not run)"));
    assert!(page.contains("id=\"suite-connectivity\" open"));
    assert!(page.contains("id=\"connectivity-setup-L2\""));
    assert!(page.contains("NOT RUN</span><span class=\"name\">connectivity / same-vm-bridge"));
    assert!(page.contains("REGRESSED"));
    assert!(page.contains("change point</span> at run"));

    let history = read(&report_dir.join(&plots[1]));
    assert!(
        history.contains("median throughput (Gbit/s)"),
        "y axis label with unit"
    );
    assert!(
        history.contains("change point"),
        "legend of the change point line"
    );
    let index = read(&lab.artifacts.join("index.html"));
    assert_eq!(index.matches("<tr><td>").count(), 11, "every run listed");
    let own = format!("{}/report/index.html", run_id(11));
    assert!(index.contains(&own), "the run links to its report");
    assert!(lab.run_dir.join("report/index.html").is_file());
}

#[test]
fn the_report_reads_well_in_a_browser() {
    if !have_chromium() {
        eprintln!("SKIPPED: chromium is not installed and could not be installed with apt");
        return;
    }
    let lab = lab();
    let url = |path: &Path, anchor: &str| format!("file://{}{anchor}", path.display());

    // The console check must be able to see a console message at all.
    let probe = lab.artifacts.join("probe.html");
    std::fs::write(&probe, "<script>console.error('metalab-probe')</script>").expect("probe");
    let (_, stderr) = chromium(&url(&probe, ""), &["--dump-dom"]);
    assert!(
        console(&stderr).iter().any(|l| l.contains("metalab-probe")),
        "{stderr}"
    );

    // A link to a line of a passed test's log: collapsed in the file, opened by the page.
    let anchor = "policy-listeners-up-L2";
    let (dom, stderr) = chromium(&url(&lab.report, &format!("#{anchor}")), &["--dump-dom"]);
    assert!(
        console(&stderr).is_empty(),
        "console: {:?}",
        console(&stderr)
    );
    assert!(
        dom.contains(&format!("id=\"{anchor}\"")),
        "the anchor exists"
    );
    assert!(!read(&lab.report).contains("id=\"policy-listeners-up\" open"));
    assert!(
        dom.contains("id=\"policy-listeners-up\" open=\"\""),
        "its log was opened"
    );
    assert!(dom.contains("<img src=\"plots/"), "plots in the page");

    // The plots are SVG documents the browser parses.
    for svg in std::fs::read_dir(lab.report.with_file_name("plots")).expect("plots") {
        let path = svg.expect("entry").path();
        let (dom, stderr) = chromium(&url(&path, ""), &["--dump-dom"]);
        assert!(dom.contains("<svg"), "{}: {dom:.200}", path.display());
        assert!(
            !dom.contains("parsererror"),
            "{}: {dom:.400}",
            path.display()
        );
        assert!(console(&stderr).is_empty(), "{}", path.display());
    }
    let (_, stderr) = chromium(&url(&lab.artifacts.join("index.html"), ""), &["--dump-dom"]);
    assert!(console(&stderr).is_empty(), "index: {:?}", console(&stderr));

    // The report itself, kept for a person to open, and pictures of it: the whole report, and what a shared link to a line of a passed
    // test's log shows (tall enough not to scroll: headless screenshots of a scrolled page come
    // out blank at the top).
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    let _ = std::fs::remove_dir_all(&shots);
    copy_dir(&lab.artifacts, &shots.join("artifacts"));
    println!(
        "report: {}",
        shots
            .join("artifacts")
            .join(lab.report.strip_prefix(&lab.artifacts).expect("inside"))
            .display()
    );
    for (name, anchor, size) in [
        ("report.png", "", "1280,2000"),
        ("line-link.png", "#policy-listeners-up-L3", "1280,2600"),
        ("index.png", "", "1280,700"),
    ] {
        let page = if name == "index.png" {
            lab.artifacts.join("index.html")
        } else {
            lab.report.clone()
        };
        let shot = shots.join(name);
        let _ = std::fs::remove_file(&shot);
        chromium(
            &url(&page, anchor),
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={size}"),
            ],
        );
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is {size} bytes", shot.display());
        println!("screenshot: {}", shot.display());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("named"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copied");
        }
    }
}

#[test]
fn metalab_report_rebuilds_from_results_json_or_from_the_history() {
    let dir = tempfile::Builder::new()
        .prefix("metalab-report-")
        .tempdir()
        .expect("temp dir");
    let db = dir.path().join("history.sqlite");
    let artifacts = dir.path().join("artifacts");
    let on_disk = with_tests(run(1, samples(2.8, 5, 1)));
    write_artifacts(&artifacts, &on_disk);
    let only_stored = run(2, samples(2.8, 5, 2));
    History::open(&db)
        .expect("opens")
        .insert(&only_stored)
        .expect("insert");
    let report = |id: &str| {
        Command::new(env!("CARGO_BIN_EXE_metalab"))
            .args(["report", id, "--db"])
            .arg(&db)
            .current_dir(dir.path())
            .env("METALAB_HOME", dir.path().join("state"))
            .output()
            .expect("runs")
    };
    for id in [run_id(1), run_id(2)] {
        let out = report(id.as_str());
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{shown}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let page = artifacts.join(id.as_str()).join("report/index.html");
        let printed = format!("artifacts/{id}/report/index.html");
        assert_eq!(shown.lines().next(), Some(printed.as_str()), "{shown}");
        assert!(page.is_file(), "{}", page.display());
    }
    let page = read(&artifacts.join(run_id(1).as_str()).join("report/index.html"));
    assert!(
        page.contains("policy / denied-port-dropped"),
        "from results.json"
    );
    let index = read(&artifacts.join("index.html"));
    assert!(
        index.contains(run_id(2).as_str()),
        "the index lists the history's runs"
    );
}
