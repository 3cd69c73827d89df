//! A bad config or suite file never starts anything: exit 2, and a message that names the file,
//! line, column and key, with a hint.

mod common;

use std::path::{Path, PathBuf};

use common::{ScratchLab, text};

const GOOD_SUITE: &str = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n";

/// Runs `metalab ARGS` with a state directory of its own (`METALAB_HOME`, absent) and checks the
/// exit code, the message, and that nothing started: no `artifacts/`, no state directory.
fn refused(lab: &ScratchLab, args: &[&str], expected: &[&str]) -> String {
    let state = tempfile::tempdir().unwrap();
    let home = state.path().join("metalab");
    let out = lab
        .metalab(args)
        .env("METALAB_HOME", &home)
        .env("METAL_AUTH_TOKEN", "x")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    for e in expected {
        assert!(shown.contains(e), "expected {e:?} in:\n{shown}");
    }
    assert!(
        !lab.path().join("artifacts").exists(),
        "a run started:\n{shown}"
    );
    let made = walk(&home);
    assert!(
        made.is_empty(),
        "the state directory was written to: {made:?}\n{shown}"
    );
    shown
}

/// Every path under `dir`: none when it is empty or absent.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for e in entries {
        let path = e.unwrap().path();
        all.extend(walk(&path));
        all.push(path);
    }
    all
}

/// Runs `metalab run ARGS`: see [`refused`].
fn rejected(lab: &ScratchLab, args: &[&str], expected: &[&str]) {
    let mut full = vec!["run"];
    full.extend_from_slice(args);
    refused(lab, &full, expected);
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

const METAL: &str = "[provider]\nkind = \"metal\"\n[provider.metal]\nproject = \"p\"\nplan = \"c3.small.x86\"\noperating_system = \"debian_12\"\napi_url = \"http://127.0.0.1:9\"\n";

/// A suite file with one good test after `head` (what comes first in it).
fn suite_with(head: &str) -> String {
    format!("vms = [\"node1\"]\n{head}[[test]]\nname = \"t\"\nrun = \"true\"\n")
}

#[test]
fn a_zero_timeout_of_a_phase_is_located() {
    for key in ["up", "setup", "test", "destroy"] {
        let lab = ScratchLab::new(
            &format!("[timeouts]\n{key} = \"0s\"\n"),
            &[("s", GOOD_SUITE)],
        );
        rejected(
            &lab,
            &[],
            &[
                &format!(
                    "metalab.toml:2:{}: key `timeouts.{key}`: 0s is no time at all: this duration must be above zero",
                    key.len() + 4
                ),
                "hint: e.g. \"90s\", \"5m\" or \"1h 30m\"",
            ],
        );
    }
}

#[test]
fn a_zero_timeout_in_a_suite_is_located() {
    let cases = [
        (
            "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\ntimeout = \"0s\"\n",
            "5:11: key `test.timeout`",
        ),
        (
            &suite_with("[[setup]]\nrun = \"true\"\ntimeout = \"0ms\"\n") as &str,
            "4:11: key `setup.timeout`",
        ),
        (
            "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n[[teardown]]\nrun = \"true\"\ntimeout = \"0s\"\n",
            "7:11: key `teardown.timeout`",
        ),
        (
            "vms = [\"node1\"]\n[[benchmark]]\nname = \"b\"\nrun = \"true\"\ntimeout = \"0s\"\n[[benchmark.metric]]\nname = \"x\"\nunit = \"s\"\ndirection = \"lower\"\nregex = '(\\d+)'\n",
            "5:11: key `benchmark.timeout`",
        ),
    ];
    for (suite, at) in cases {
        let lab = ScratchLab::new("", &[("s", suite)]);
        rejected(
            &lab,
            &[],
            &[&format!(
                "suites/s/suite.toml:{at}: 0s is no time at all: this duration must be above zero"
            )],
        );
    }
}

#[test]
fn zero_vms_at_once_is_located() {
    let lab = ScratchLab::new("[capacity]\nvms = 0\n", &[("s", GOOD_SUITE)]);
    rejected(
        &lab,
        &[],
        &[
            "metalab.toml:2:7: key `capacity.vms`: 0 is below the minimum of 1",
            "hint: leave `vms` out for what the host's cores and memory allow",
        ],
    );
}

#[test]
fn an_exit_status_above_255_is_located_by_run_and_list() {
    let suite =
        "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\nexpect = { exit = 300 }\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    let expected = [
        "suites/s/suite.toml:5:19: key `test.expect`: 300 is not an exit status: they are 0 to 255",
        "hint: a command killed by signal N exits with 128 + N in a shell",
    ];
    rejected(&lab, &[], &expected);
    refused(&lab, &["list"], &expected);
    let negative = suite.replace("300", "-1");
    let lab = ScratchLab::new("", &[("s", &negative)]);
    rejected(
        &lab,
        &[],
        &["suites/s/suite.toml:5:19: key `test.expect`: -1 is not an exit status"],
    );
}

#[test]
fn an_empty_command_is_located() {
    let cases = [
        (
            "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"\"\n",
            "4:7: key `test.run`",
        ),
        (
            &suite_with("[[setup]]\nrun = \"  \\n \"\n") as &str,
            "3:7: key `setup.run`",
        ),
        (
            "vms = [\"node1\"]\n[[benchmark]]\nname = \"b\"\nrun = \"\"\n[[benchmark.metric]]\nname = \"x\"\nunit = \"s\"\ndirection = \"lower\"\nregex = '(\\d+)'\n",
            "4:7: key `benchmark.run`",
        ),
    ];
    for (suite, at) in cases {
        let lab = ScratchLab::new("", &[("s", suite)]);
        rejected(
            &lab,
            &[],
            &[
                &format!(
                    "suites/s/suite.toml:{at}: `run` is empty: it is the command to run in the VM"
                ),
                "hint: e.g. run = \"./check-routes.sh\"",
            ],
        );
    }
}

#[test]
fn a_suite_with_nothing_to_run_is_refused() {
    let suite = "vms = [\"node1\"]\n[[setup]]\nrun = \"true\"\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &[
            "suites/s/suite.toml:1:1: a suite needs at least one [[test]] or [[benchmark]]",
            "hint: add a [[test]] with a `name` and the command it runs (`run`)",
        ],
    );
}

#[test]
fn a_test_and_a_benchmark_of_one_name_are_located() {
    let suite = "vms = [\"node1\"]\n[[test]]\nname = \"same\"\nrun = \"true\"\n[[benchmark]]\nname = \"same\"\nrun = \"true\"\n[[benchmark.metric]]\nname = \"x\"\nunit = \"s\"\ndirection = \"lower\"\nregex = '(\\d+)'\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &[
            "suites/s/suite.toml:6:8: key `benchmark.name`: duplicate name `same`: the test on line 3 has it too",
            "hint: give each test and benchmark of a suite a name of its own",
        ],
    );
}

#[test]
fn a_suite_directory_that_is_no_name_is_refused() {
    for name in ["my suite", "a;touch x"] {
        let lab = ScratchLab::new("", &[("good", GOOD_SUITE), (name, GOOD_SUITE)]);
        rejected(
            &lab,
            &[],
            &[&format!(
                "suites/{name}: `{name}` is not a valid suite name: use letters, digits, '-', '_' and '.'"
            )],
        );
        assert!(!lab.path().join("x").exists());
    }
}

#[test]
fn no_metros_are_located() {
    let lab = ScratchLab::new(&format!("{METAL}metros = []\n"), &[("s", GOOD_SUITE)]);
    rejected(
        &lab,
        &[],
        &[
            "metalab.toml:8:10: key `provider.metal.metros`: no metro to create the devices in",
            "hint: name at least one",
        ],
    );
}

#[test]
fn a_zero_ttl_is_located() {
    let lab = ScratchLab::new(&format!("{METAL}ttl = \"0s\"\n"), &[("s", GOOD_SUITE)]);
    rejected(
        &lab,
        &[],
        &["metalab.toml:8:7: key `provider.metal.ttl`: 0s is no time at all"],
    );
}

#[test]
fn a_missing_identity_file_is_located_at_its_value() {
    let config = "[provider]\nkind = \"ssh\"\n[[provider.hosts]]\naddress = \"127.0.0.1\"\nidentity = \"keys/id_ed25519\"\n";
    let lab = ScratchLab::new(config, &[("s", GOOD_SUITE)]);
    let missing = lab.path().canonicalize().unwrap().join("keys/id_ed25519");
    rejected(
        &lab,
        &[],
        &[
            &format!(
                "metalab.toml:5:12: key `provider.hosts.identity`: identity {} of host 127.0.0.1 does not exist",
                missing.display()
            ),
            "hint: set `identity` to the private key's path, relative to",
        ],
    );
}

#[test]
fn a_config_that_is_a_directory_is_named_and_said_to_be_one() {
    let lab = ScratchLab::new("", &[("s", GOOD_SUITE)]);
    std::fs::remove_file(lab.path().join("metalab.toml")).unwrap();
    std::fs::create_dir(lab.path().join("metalab.toml")).unwrap();
    let expected = ["metalab.toml: is a directory, not a file"];
    rejected(&lab, &[], &expected);
    rejected(&lab, &["--config", "metalab.toml"], &expected);
}

#[test]
fn an_unknown_table_is_named_as_written() {
    let lab = ScratchLab::new(
        "[lab]\nprovision = true\n\n[timout]\ntest = \"1m\"\n",
        &[("s", GOOD_SUITE)],
    );
    let shown = refused(
        &lab,
        &["run"],
        &[
            "metalab.toml:4:2: key `timout`: unknown field `timout`",
            "hint: did you mean `timeouts`?",
        ],
    );
    assert!(!shown.contains("key `lab`"), "{shown}");
}

#[test]
fn a_header_that_does_not_close_names_no_key() {
    let lab = ScratchLab::new(
        "[lab]\nprovision = true\n[vm\nmemory = 512\n",
        &[("s", GOOD_SUITE)],
    );
    let shown = refused(
        &lab,
        &["run"],
        &["metalab.toml:3:4: unclosed table, expected `]`"],
    );
    assert!(!shown.contains("key `"), "{shown}");
}

#[test]
fn a_missing_required_key_is_named_with_its_table() {
    let ssh = "[provider]\nkind = \"ssh\"\n[[provider.hosts]]\nidentity = \"k\"\n";
    let metal = "[provider]\nkind = \"metal\"\n[provider.metal]\nplan = \"c3.small.x86\"\noperating_system = \"debian_12\"\napi_url = \"http://127.0.0.1:9\"\n";
    for (config, expected) in [
        (
            ssh,
            "metalab.toml:3:1: key `provider.hosts.address`: missing required key `address` in [[provider.hosts]]",
        ),
        (
            metal,
            "metalab.toml:3:1: key `provider.metal.project`: missing required key `project` in [provider.metal]",
        ),
    ] {
        let lab = ScratchLab::new(config, &[("s", GOOD_SUITE)]);
        rejected(&lab, &[], &[expected]);
    }
    let no_run = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\n";
    let no_metric = "vms = [\"node1\"]\n[[benchmark]]\nname = \"b\"\nrun = \"true\"\n";
    for (suite, expected) in [
        (
            no_run,
            "suites/s/suite.toml:2:1: key `test.run`: missing required key `run` in [[test]]",
        ),
        (
            no_metric,
            "suites/s/suite.toml:2:1: key `benchmark.metric`: missing required key `metric` in [[benchmark]]",
        ),
    ] {
        let lab = ScratchLab::new("", &[("s", suite)]);
        rejected(&lab, &[], &[expected]);
    }
}

#[test]
fn zero_repeats_are_located_at_repeats() {
    let suite = "vms = [\"node1\"]\n[[benchmark]]\nname = \"b\"\nrun = \"true\"\nrepeats = 0\n[[benchmark.metric]]\nname = \"x\"\nunit = \"s\"\ndirection = \"lower\"\nregex = '(\\d+)'\n";
    let lab = ScratchLab::new("", &[("s", suite)]);
    rejected(
        &lab,
        &[],
        &[
            "suites/s/suite.toml:5:11: key `benchmark.repeats`: 0 is below the minimum of 1",
            "hint: a benchmark needs at least one repeat",
        ],
    );
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let lab = ScratchLab::new("", &[("s", GOOD_SUITE)]);
    std::fs::write(
        lab.path().join("metalab.toml"),
        b"[vm]\n# caf\xc3\xa9\nmemory = 512 # caf\xe9\n",
    )
    .unwrap();
    rejected(
        &lab,
        &[],
        &[
            "metalab.toml:3:19: key `vm.memory`: byte 0xe9 is not UTF-8: metalab.toml must be UTF-8 text",
            "hint: save the file as UTF-8",
        ],
    );
    let lab = ScratchLab::new("", &[("s", GOOD_SUITE)]);
    let mut suite = GOOD_SUITE.as_bytes().to_vec();
    suite.extend_from_slice(b"expect = { output = \"\xff\" }\n");
    std::fs::write(lab.path().join("suites/s/suite.toml"), suite).unwrap();
    rejected(
        &lab,
        &[],
        &[
            "suites/s/suite.toml:5:22: key `test.expect`: byte 0xff is not UTF-8: suite.toml must be UTF-8 text",
        ],
    );
}

#[test]
fn a_huge_line_is_cut_and_shown_once() {
    let huge = "a".repeat(5_000_000);
    for (config, suite) in [
        (
            format!("[vm]\nmemory = \"{huge}\"\n"),
            GOOD_SUITE.to_string(),
        ),
        (
            String::new(),
            format!(
                "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\nretries = \"{huge}\"\n"
            ),
        ),
    ] {
        let lab = ScratchLab::new(&config, &[("s", &suite)]);
        let shown = refused(&lab, &["run"], &["invalid type: string \"aaaa"]);
        assert!(shown.len() < 2_000, "{} bytes shown", shown.len());
        assert_eq!(shown.matches("(line cut: it is 5000").count(), 1, "{shown}");
        assert_eq!(shown.matches(&"a".repeat(150)).count(), 1, "{shown}");
    }
}

/// Command lines that would have started a run for nothing: a kept lab with no time to live, a
/// JUnit copy nowhere to write, a suite named twice, a test the suite does not have.
#[test]
fn bad_command_lines_start_nothing() {
    let lab = ScratchLab::new("", &[("s", GOOD_SUITE)]);
    refused(
        &lab,
        &["up", "--keep", "0s"],
        &["invalid value '0s' for '--keep <DURATION>': it must be more than zero"],
    );
    refused(
        &lab,
        &["run", "--keep-on-failure=0s"],
        &["it must be more than zero"],
    );
    refused(
        &lab,
        &["run", "--junit", "/proc/no-such-dir/junit.xml"],
        &["cannot write /proc/no-such-dir/junit.xml: /proc is not writable"],
    );
    refused(
        &lab,
        &["run", "--junit", "/etc/hostname/junit.xml"],
        &["cannot write /etc/hostname/junit.xml: /etc/hostname is not a directory"],
    );
    refused(&lab, &["run", "s", "s"], &["suite `s` is named twice"]);
    refused(
        &lab,
        &["run", "s/nope"],
        &["suite `s` has no test or benchmark `nope` (it has: t)"],
    );
    refused(
        &lab,
        &["run", "--on", "20261126-004459-977e"],
        &["no kept lab of run 20261126-004459-977e"],
    );
}
