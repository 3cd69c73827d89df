//! `metalab reproduce`: from a failed CI run's results (file, run directory, report path or
//! URL) it plans the failed tests' suites with the run's LAB_* variables, refuses a tree at
//! another commit unless told to go on, and, with a real VM, fails again the way CI did and keeps
//! the VM with the line to get in.

mod bench_runs;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::text;
use metalab::exit::Status;
use metalab::ids::RunId;
use metalab::model::record::{ImageInfo, RunRecord, SuiteRecord, TestOutcome, TestRecord};

/// A lab in a git repository: node1, and three suites.
struct Lab {
    dir: tempfile::TempDir,
}

const VAGRANTFILE: &str = "Vagrant.configure(\"2\") do |config|\n  config.vm.box = \"metalab/debian12\"\n  config.vm.define \"node1\"\nend\n";

impl Lab {
    fn new(vagrantfile: &str, config: &str) -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("metalab-reproduce-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let lab = Lab { dir };
        lab.write("Vagrantfile", vagrantfile);
        lab.write("metalab.toml", config);
        for suite in ["net", "policy", "broken"] {
            lab.write(
                &format!("suites/{suite}/suite.toml"),
                &format!(
                    "vms = [\"node1\"]\n[[test]]\nname = \"{suite}-test\"\nrun = \"echo knob=$LAB_KNOB; test {suite} != broken\"\n"
                ),
            );
        }
        lab.git("init -q -b main . && git add -A && git -c user.email=t@t -c user.name=t commit -qm lab");
        lab
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn git(&self, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(format!("git {script}"))
            .current_dir(self.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {script}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A failed CI run of this lab at its HEAD: `failed` suites' tests failed, `policy` passed;
    /// the suites had LAB_KNOB=from-ci. Written as `<ci>/<run-id>/results.json`.
    fn ci_run(&self, ci: &Path, failed: &[&str]) -> PathBuf {
        let id = RunId::generate();
        let mut r = RunRecord::new(id.clone(), "ci-host".into(), chrono::Utc::now());
        r.status = Status::TestsFailed;
        let mut conditions = bench_runs::conditions();
        conditions.lab_commit = Some(self.git("rev-parse HEAD"));
        r.conditions = Some(conditions);
        r.lab_env.insert("LAB_KNOB".into(), "from-ci".into());
        for suite in failed.iter().chain(&["policy"]) {
            let outcome = if *suite == "policy" {
                TestOutcome::Passed
            } else {
                TestOutcome::Failed
            };
            r.suites.push(SuiteRecord {
                snapshot: None,
                name: suite.to_string(),
                duration: Duration::from_secs(3),
                error: None,
                tests: vec![TestRecord {
                    suite: suite.to_string(),
                    name: format!("{suite}-test"),
                    vm: "node1".into(),
                    command: "true".into(),
                    outcome,
                    infra: false,
                    duration: Duration::from_secs(1),
                    message: None,
                    log: PathBuf::from(format!("{suite}/{suite}-test.log")),
                    failed_attempts: Vec::new(),
                }],
                benchmarks: Vec::new(),
            });
        }
        let dir = ci.join(id.as_str());
        std::fs::create_dir_all(dir.join("report")).unwrap();
        std::fs::write(dir.join("report/index.html"), "<!doctype html>").unwrap();
        let results = dir.join("results.json");
        std::fs::write(&results, serde_json::to_string_pretty(&r).unwrap()).unwrap();
        results
    }

    /// `metalab ARGS` in the lab, with a runner's LAB_KNOB of its own.
    fn metalab(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_metalab"))
            .args(args)
            .current_dir(self.path())
            .env("CI", "true")
            .env("LAB_KNOB", "from-this-runner")
            .output()
            .unwrap()
    }
}

/// A CI server's artifacts: `GET .../artifact/<path>` answers the file `<dir>/<path>`.
fn serve(dir: &Path) -> std::net::SocketAddr {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(&stream);
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let path = request.split(' ').nth(1).unwrap_or("");
            let file = path.split_once("/artifact/").map(|(_, p)| dir.join(p));
            let mut stream = &stream;
            let _ = match file.and_then(|f| std::fs::read(f).ok()) {
                Some(body) => write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|_| stream.write_all(&body)),
                None => write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                ),
            };
        }
    });
    addr
}

fn plan(out: &Output) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn it_plans_the_failed_suites_with_the_runs_knobs_from_any_form_of_the_run() {
    let lab = Lab::new(VAGRANTFILE, "");
    let ci = tempfile::tempdir().unwrap();
    let results = lab.ci_run(ci.path(), &["net", "broken"]);
    let run_dir = results.parent().unwrap();
    let report = run_dir.join("report/index.html");
    let ci_server = serve(ci.path());
    let run_id = run_dir.file_name().unwrap().to_string_lossy();
    for source in [
        results.display().to_string(),
        run_dir.display().to_string(),
        report.display().to_string(),
        format!("file://{}#net-net-test-L2", report.display()),
        format!("http://{ci_server}/job/7/artifact/{run_id}/report/index.html#net-net-test-L2"),
    ] {
        let out = lab.metalab(&["reproduce", &source, "--dry-run", "--json"]);
        let plan = plan(&out);
        let suites: Vec<&str> = plan["suites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(suites, ["broken", "net"], "{source}: {plan}");
        assert_eq!(plan["lab_env"]["LAB_KNOB"], "from-ci", "{source}: {plan}");
        assert!(
            plan["keep"]
                .as_str()
                .unwrap()
                .contains("when the run fails"),
            "{plan}"
        );
        assert!(
            text(&out).contains("this tree is at the run's lab commit"),
            "{}",
            text(&out)
        );
    }
    let named = lab.metalab(&[
        "reproduce",
        &results.display().to_string(),
        "--suite",
        "policy",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(plan(&named)["suites"][0]["name"], "policy");
}

#[test]
fn a_tree_at_another_commit_is_refused_with_what_differs_unless_told_to_go_on() {
    let lab = Lab::new(VAGRANTFILE, "");
    let ci = tempfile::tempdir().unwrap();
    let results = lab.ci_run(ci.path(), &["net"]);
    let theirs = lab.git("rev-parse HEAD");
    lab.write(
        "suites/net/suite.toml",
        "vms = [\"node1\"]\n[[test]]\nname = \"net-test\"\nrun = \"true\"\n",
    );
    lab.git("commit -qam 'net passes now'");
    let source = results.display().to_string();
    let out = lab.metalab(&["reproduce", &source, "--dry-run"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!("the run was at lab commit {theirs}")),
        "{shown}"
    );
    assert!(
        shown.contains("suites/net/suite.toml"),
        "what differs: {shown}"
    );
    assert!(shown.contains(&format!("git checkout {theirs}")), "{shown}");
    let out = lab.metalab(&["reproduce", &source, "--go-on", "--dry-run", "--json"]);
    assert_eq!(plan(&out)["suites"][0]["name"], "net");
    assert!(text(&out).contains("going on (--go-on)"), "{}", text(&out));
    // A run with no failed test has nothing to reproduce.
    let passed = lab.ci_run(ci.path(), &[]);
    let out = lab.metalab(&[
        "reproduce",
        &passed.display().to_string(),
        "--go-on",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("has no failed test"), "{}", text(&out));
}

#[test]
fn the_runs_container_images_are_checked_against_this_trees_recipes() {
    let lab = Lab::new(VAGRANTFILE, "");
    lab.write("images/netbox/build.sh", "#!/bin/sh\n: > \"$1\"\n");
    lab.git("add -A && git -c user.email=t@t -c user.name=t commit -qm image");
    let ours = metalab::boxes::recipe_hash(&lab.path().join("images/netbox")).unwrap();
    let ci = tempfile::tempdir().unwrap();
    let results = lab.ci_run(ci.path(), &["net"]);
    let mut record: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    record.images = vec![
        ImageInfo {
            name: "netbox".into(),
            recipe_hash: ours.clone(),
        },
        ImageInfo {
            name: "alpine".into(),
            recipe_hash: "0".repeat(64),
        },
    ];
    std::fs::write(&results, serde_json::to_string(&record).unwrap()).unwrap();
    let source = results.display().to_string();
    let shown = text(&lab.metalab(&["reproduce", &source, "--dry-run"]));
    assert!(
        shown.contains(&format!(
            "image netbox: the recipe is the run's ({})",
            &ours[..12]
        )),
        "{shown}"
    );
    assert!(
        shown.contains("image alpine: this lab has no recipe for it"),
        "{shown}"
    );
    lab.write("images/netbox/packages", "busybox\n");
    let shown = text(&lab.metalab(&["reproduce", &source, "--go-on", "--dry-run"]));
    assert!(
        shown.contains("image netbox: the recipe differs from the run's"),
        "{shown}"
    );
}

/// With a real VM: the CI failure happens again here, with CI's LAB_KNOB, and the VM stays
/// for `metalab exec`, which the output says how to use.
#[test]
fn a_failure_is_reproduced_in_a_real_vm_which_is_kept() {
    let _slots = common::vm_slots(1);
    let vagrantfile = std::fs::read_to_string(common::repo().join("Vagrantfile")).unwrap();
    let lab = Lab::new(&vagrantfile, common::CONFIG);
    std::os::unix::fs::symlink(common::repo().join("boxes"), lab.path().join("boxes")).unwrap();
    lab.git("add -A && git -c user.email=t@t -c user.name=t commit -qm box");
    let ci = tempfile::tempdir().unwrap();
    let results = lab.ci_run(ci.path(), &["broken"]);
    let out = lab.metalab(&["reproduce", &results.display().to_string()]);
    let shown = text(&out);
    let latest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.path().join("artifacts/latest/results.json")).unwrap(),
    )
    .unwrap();
    let run = latest["run_id"].as_str().unwrap().to_string();
    let destroy = || {
        Command::new(env!("CARGO_BIN_EXE_metalab"))
            .args(["destroy", "--run", &run])
            .current_dir(lab.path())
            .output()
            .unwrap()
    };
    if out.status.code() != Some(1) {
        destroy();
        panic!("{shown}");
    }
    let log = std::fs::read_to_string(
        lab.path()
            .join("artifacts")
            .join(&run)
            .join("broken/broken-test.log"),
    )
    .unwrap();
    let exec = lab.metalab(&["exec", "--run", &run, "node1", "--", "hostname"]);
    let destroyed = destroy();
    assert!(log.contains("knob=from-ci"), "{log}");
    assert_eq!(latest["lab_env"]["LAB_KNOB"], "from-ci");
    assert!(
        shown.contains(&format!("metalab exec --run {run} node1")),
        "{shown}"
    );
    assert_eq!(exec.status.code(), Some(0), "{}", text(&exec));
    assert_eq!(String::from_utf8_lossy(&exec.stdout).trim(), "node1");
    assert!(destroyed.status.success(), "{}", text(&destroyed));
    assert_eq!(common::leftovers(&run, lab.path()), Vec::<String>::new());
}
