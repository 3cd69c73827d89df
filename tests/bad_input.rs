//! A bad config or suite file never starts anything: exit 2, and a message that names the file,
//! line, column and key, with a hint.

mod common;

use common::{ScratchLab, text};

const GOOD_SUITE: &str = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n";

/// Runs `metalab run` and checks the exit code, the message, and that no run started.
fn rejected(lab: &ScratchLab, args: &[&str], expected: &[&str]) {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    let out = lab.metalab(&full).output().unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    for e in expected {
        assert!(shown.contains(e), "expected {e:?} in:\n{shown}");
    }
    assert!(
        !lab.path().join("artifacts").exists(),
        "a run started:\n{shown}"
    );
}

#[test]
fn an_unknown_key_is_located_with_a_suggestion() {
    let lab = ScratchLab::new("[vm]\ncpus = 1\nmemroy = 512\n", &[("s", GOOD_SUITE)]);
    rejected(
        &lab,
        &[],
        &[
            "metalab.toml:3:1: key `vm.memroy`: unknown field `memroy`",
            "hint: did you mean `memory`?",
        ],
    );
}

#[test]
fn a_wrong_type_is_located() {
    let lab = ScratchLab::new("[vm]\nmemory = \"lots\"\n", &[("s", GOOD_SUITE)]);
    rejected(
        &lab,
        &[],
        &[
            "metalab.toml:2:10: key `vm.memory`: invalid type: string \"lots\"",
            "2 | memory = \"lots\"",
        ],
    );
}

#[test]
fn a_value_below_its_minimum_is_located() {
    let lab = ScratchLab::new("[vm]\nmemory = 64\n", &[("s", GOOD_SUITE)]);
    rejected(
        &lab,
        &[],
        &["metalab.toml:2:10: key `vm.memory`: 64 is below the minimum of 256"],
    );
}

#[test]
fn a_missing_vagrantfile_is_located() {
    let lab = ScratchLab::new(
        "[lab]\nvagrantfile = \"vm/Vagrantfile\"\n",
        &[("s", GOOD_SUITE)],
    );
    rejected(
        &lab,
        &[],
        &[
            "metalab.toml:2:15: key `lab.vagrantfile`: file",
            "vm/Vagrantfile does not exist",
        ],
    );
}

#[test]
fn a_syntax_error_is_located() {
    let lab = ScratchLab::new("[vm\nmemory = 512\n", &[("s", GOOD_SUITE)]);
    rejected(&lab, &[], &["metalab.toml:1:"]);
}

#[test]
fn a_suite_naming_an_unknown_vm_is_located_with_the_known_ones() {
    let suite = "vms = [\"node1\", \"node3\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &[
            "suites/s/suite.toml:1:17: key `vms`: unknown VM `node3`",
            "hint: the Vagrantfile defines: node1, node2",
        ],
    );
}

#[test]
fn a_step_on_a_vm_outside_the_suite_is_located() {
    let suite = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nvm = \"node2\"\nrun = \"true\"\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &["suites/s/suite.toml:4:6: key `test.vm`: VM `node2` is not among this suite's `vms`"],
    );
}

#[test]
fn an_invalid_regex_in_an_expectation_is_located() {
    let suite = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\nexpect = { output = \"(unclosed\" }\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &["suites/s/suite.toml:5:21: key `test.expect`: invalid regex"],
    );
}

#[test]
fn an_unknown_key_in_a_suite_is_located() {
    let suite = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\ncommand = \"true\"\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &["suites/s/suite.toml:4:1: key `test.command`: unknown field `command`"],
    );
}

#[test]
fn an_unknown_suite_on_the_command_line_is_bad_input() {
    let lab = ScratchLab::new("", &[("s", GOOD_SUITE)]);
    rejected(&lab, &["nosuch"], &["no suite named `nosuch` (known: s)"]);
}
