//! No process metalab starts inherits a secret: a lab's Vagrantfile, run by the real `vagrant`
//! that `metalab list` starts to read the lab (no VM is booted), writes down the environment it
//! was given.

mod common;

use std::collections::BTreeMap;

use common::{ScratchLab, text};

/// A Vagrantfile that records `ENV` beside itself, then defines one machine.
const ENV_RECORDING_VAGRANTFILE: &str = r#"
require "json"
File.write(File.join(File.dirname(__FILE__), "env.json"), JSON.generate(ENV.to_h))
Vagrant.configure("2") do |config|
  config.vm.define "node1" do |node|
    node.vm.box = "debian12"
  end
end
"#;

const SUITE: &str = "vms = [\"node1\"]\n[[test]]\nname = \"t\"\nrun = \"true\"\n";

/// The Metal token in the variable the lab's `token_env` names, and CI credentials besides.
const SECRETS: [(&str, &str); 5] = [
    ("ACME_METAL_TOKEN", "tok-acme-5e1f-never-inherited"),
    ("METAL_AUTH_TOKEN", "tok-metal-88c2-never-inherited"),
    ("GITHUB_TOKEN", "ghs-never-inherited"),
    (
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "https://oidc.example/never-inherited",
    ),
    ("AWS_SECRET_ACCESS_KEY", "aws-never-inherited"),
];

#[test]
fn a_vagrantfile_sees_the_teams_variables_but_no_secret() {
    let config = "[provider]\nkind = \"local\"\n[provider.metal]\nproject = \"p\"\nplan = \"c3.small.x86\"\noperating_system = \"debian_12\"\ntoken_env = \"ACME_METAL_TOKEN\"\n";
    let lab = ScratchLab::new(config, &[("s", SUITE)]);
    lab.write("Vagrantfile", ENV_RECORDING_VAGRANTFILE);
    let state = tempfile::tempdir().unwrap();

    let out = lab
        .metalab(&["list"])
        .env("METALAB_HOME", state.path().join("metalab"))
        .env("ACME_MEMORY", "640")
        .envs(SECRETS)
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let recorded = std::fs::read_to_string(lab.path().join("env.json"))
        .expect("the Vagrantfile was loaded and wrote env.json");
    let env: BTreeMap<String, String> = serde_json::from_str(&recorded).unwrap();
    assert_eq!(env.get("ACME_MEMORY").map(String::as_str), Some("640"));
    for (name, value) in SECRETS {
        assert!(!env.contains_key(name), "the Vagrantfile got {name}");
        assert!(
            !recorded.contains(value),
            "the Vagrantfile got {name}'s value"
        );
    }
}
