//! `metalab run --untrusted`: the lab definition comes from a trusted git ref or directory, and
//! from the change under test only its suites, as inert files. A hostile change (a Vagrantfile
//! whose Ruby writes a marker and the environment to a file, a `metalab.toml` naming another
//! provider and API, a suite file that is a link to a host file, an `artifacts` link) is loaded
//! the way a run loads it, through real Vagrant; none of it runs or is followed. No VM is booted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::text;

/// Records the environment Vagrant gives it (`ENV_FILE` is replaced by a path), so the test sees
/// what metalab's children get.
const TRUSTED_VAGRANTFILE: &str = r#"
File.write("ENV_FILE", ENV.keys.sort.join("\n"))
Vagrant.configure("2") do |config|
  config.vm.box = "metalab/debian12"
  config.vm.define "node1"
end
"#;

const TRUSTED_CONFIG: &str = "[untrusted]\nlab_env = [\"LAB_ALLOWED\"]\n";

const SUITE: &str = "vms = [\"node1\"]\n[[test]]\nname = \"NAME\"\nrun = \"true\"\n";

/// A repository whose `main` holds a trusted lab, and a work tree holding a hostile change of it.
struct Change {
    dir: tempfile::TempDir,
    /// Where the hostile Vagrantfile writes, when Vagrant loads it.
    marker: PathBuf,
    /// Where the trusted Vagrantfile writes the names of its environment's variables.
    env_file: PathBuf,
}

impl Change {
    fn new() -> Change {
        let dir = tempfile::Builder::new()
            .prefix("metalab-untrusted-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let marker = dir.path().join("../").join(format!(
            "{}-vagrantfile-ran",
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        let env_file = marker.with_extension("env");
        let trusted = TRUSTED_VAGRANTFILE.replace("ENV_FILE", &env_file.display().to_string());
        let c = Change {
            dir,
            marker,
            env_file,
        };
        c.write("Vagrantfile", &trusted);
        c.write("metalab.toml", TRUSTED_CONFIG);
        c.write(
            "suites/net/suite.toml",
            &SUITE.replace("NAME", "trusted-test"),
        );
        c.git("init -q -b main . && git add -A && git -c user.email=t@t -c user.name=t commit -qm base");
        let hostile = format!(
            "File.write({:?}, ENV.map {{ |k, v| \"#{{k}}=#{{v}}\" }}.join(\"\\n\"))\n{trusted}",
            c.marker.display().to_string()
        );
        c.write("Vagrantfile", &hostile);
        c.write(
            "metalab.toml",
            "[provider]\nkind = \"metal\"\n[provider.metal]\nproject = \"p\"\nplan = \"x\"\n\
             operating_system = \"debian_12\"\nmetros = [\"da\"]\napi_url = \"http://127.0.0.1:9/\"\n\
             token_env = \"GITHUB_TOKEN\"\n",
        );
        c.write(
            "suites/net/suite.toml",
            &SUITE.replace("NAME", "from-the-change"),
        );
        std::os::unix::fs::symlink("/etc/shadow", c.path().join("suites/net/shadow")).unwrap();
        c
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn git(&self, script: &str) {
        let ok = Command::new("sh")
            .arg("-ec")
            .arg(format!("git {script}"))
            .current_dir(self.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {script}");
    }

    /// `metalab ARGS` in the change, with secrets in its environment and a state directory of
    /// its own.
    fn metalab_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_metalab"));
        c.args(args)
            .current_dir(self.path())
            .env("CI", "true")
            .env(
                "METALAB_HOME",
                self.path().join("../").join(format!(
                    "{}-state",
                    self.path().file_name().unwrap().to_string_lossy()
                )),
            )
            .env("METAL_AUTH_TOKEN", "secret-metal-token")
            .env("GITHUB_TOKEN", "secret-github-token")
            .env("LAB_ALLOWED", "1")
            .env("LAB_OTHER", "2")
            .env("ACME_MEMORY", "640")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }

    /// [`Change::metalab_command`], run to its end.
    fn metalab(&self, args: &[&str]) -> std::process::Output {
        self.metalab_command(args).output().unwrap()
    }
}

impl Drop for Change {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
        let _ = std::fs::remove_file(&self.env_file);
        let state = self.path().join("../").join(format!(
            "{}-state",
            self.path().file_name().unwrap().to_string_lossy()
        ));
        let _ = std::fs::remove_dir_all(state);
    }
}

fn plan(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

#[test]
fn the_lab_comes_from_the_trusted_ref_and_the_change_gives_only_inert_suites() {
    let change = Change::new();
    let out = change.metalab(&[
        "run",
        "--untrusted",
        "--lab-from",
        "main",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !change.marker.exists(),
        "the change's Vagrantfile ran on the host"
    );
    let plan = plan(&out);
    assert_eq!(plan["suites"][0]["tests"][0], "from-the-change", "{plan}");
    assert_eq!(plan["provider"], "local: this machine", "{plan}");
    assert!(
        plan["untrusted"]["lab_from"]
            .as_str()
            .unwrap()
            .starts_with("main (commit "),
        "{plan}"
    );
    assert_eq!(
        plan["untrusted"]["skipped"][0],
        "net/shadow (symbolic link)"
    );
    assert_eq!(plan["untrusted"]["lab_env"][0], "LAB_ALLOWED");
    assert!(!text(&out).contains("secret-"), "{}", text(&out));
    // Vagrant, and so the trusted Vagrantfile, got only the allow list: no secret, and none of
    // the runner's other variables either.
    let names = std::fs::read_to_string(&change.env_file).expect("the trusted Vagrantfile ran");
    let names: Vec<&str> = names.lines().collect();
    assert!(
        names.contains(&"PATH") && names.contains(&"VAGRANT_HOME"),
        "{names:?}"
    );
    for absent in [
        "METAL_AUTH_TOKEN",
        "GITHUB_TOKEN",
        "ACME_MEMORY",
        "LAB_OTHER",
        "CI",
    ] {
        assert!(
            !names.contains(&absent),
            "{absent} reached Vagrant: {names:?}"
        );
    }
}

/// The control: outside the mode, the change's Vagrantfile is the lab's, and Vagrant runs it
/// (which is why the mode exists, and what makes the test above able to fail).
#[test]
fn outside_the_mode_the_changes_vagrantfile_runs_on_the_host() {
    let change = Change::new();
    std::fs::write(change.path().join("metalab.toml"), "").unwrap();
    let out = change.metalab(&["run", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let seen = std::fs::read_to_string(&change.marker).expect("the Vagrantfile ran");
    assert!(seen.contains("PATH="), "{seen}");
}

#[test]
fn a_trusted_lab_inside_the_change_or_a_link_for_the_artifacts_is_refused() {
    let change = Change::new();
    let inside = change.path().join("suites").display().to_string();
    let out = change.metalab(&["run", "--untrusted", "--lab-from", &inside, "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("inside the change's own tree"),
        "{}",
        text(&out)
    );

    std::os::unix::fs::symlink("/etc", change.path().join("artifacts")).unwrap();
    let out = change.metalab(&["run", "--untrusted", "--lab-from", "main", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("artifacts is a symbolic link"),
        "{}",
        text(&out)
    );

    let out = change.metalab(&[
        "run",
        "--untrusted",
        "--lab-from",
        "no-such-ref",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--lab-from no-such-ref"),
        "{}",
        text(&out)
    );
    assert!(!change.marker.exists());
}

/// What a hostile change's suite tries inside its VM; every test passes only when the attempt
/// fails (or, for the log, when it is harmless).
const HOSTILE_SUITE: &str = r#"
vms = ["node1"]

[[test]]
name = "no-secret-in-reach"
# (The brackets keep the pattern from matching the command's own text, which is in its environment.)
run = "env | grep -E '^LAB_|secre[t]' ; ! env | grep -q 'secre[t]-' && test \"$LAB_ALLOWED\" = 1 && test -z \"${LAB_OTHER:-}\""

[[test]]
name = "the-insecure-key-is-refused"
run = "chmod 600 insecure && ! ssh -i insecure -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null vagrant@127.0.0.1 true"

[[test]]
name = "no-password-login"
run = "sshd -T | grep -qx 'passwordauthentication no' && passwd -S vagrant | grep -q '^vagrant L '"

[[test]]
name = "a-flood-of-output"
run = "head -c 3000000 /dev/zero | tr '\\0' x; echo"

[[test]]
name = "links-and-devices-for-the-host"
run = "cd $METALAB_ARTIFACTS && ln -s /etc/shadow shadow && mknod null c 1 3 && mkfifo fifo && echo fine > regular"
"#;

/// A change whose suite attacks from inside its VM, run untrusted beside a trusted run of the same
/// lab, with real VMs: nothing of the change runs on the host, no secret reaches the VM, the
/// intrusions fail, the flood is cut at the log cap, what the VM sends back is inert, the trusted
/// run is untouched, and the history learns nothing from the untrusted run.
#[test]
fn a_hostile_change_stays_inside_its_vm_beside_a_trusted_run() {
    let _slots = common::vm_slots(2);
    let change = Change::new();
    // The trusted lab: the repository's own Vagrantfile and box, with small caps.
    change.write(
        "metalab.toml",
        "[vm]\nmemory = 640\n[outputs]\nlog_cap = \"1 MiB\"\n[untrusted]\nlab_env = [\"LAB_ALLOWED\"]\n",
    );
    std::fs::copy(
        common::repo().join("Vagrantfile"),
        change.path().join("Vagrantfile"),
    )
    .unwrap();
    std::os::unix::fs::symlink(common::repo().join("boxes"), change.path().join("boxes")).unwrap();
    std::fs::remove_file(change.path().join("suites/net/shadow")).unwrap();
    change.git("add -A && git -c user.email=t@t -c user.name=t commit -qm 'the real lab'");
    // A trusted run of the lab, from a copy of the trusted tree, beside the untrusted one; both
    // with the host's own state directory, where the box is.
    let copy = tempfile::Builder::new()
        .prefix("metalab-trusted-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", change.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(copied.success());
    let trusted = change
        .metalab_command(&["run", "net"])
        .current_dir(copy.path())
        .env_remove("METALAB_HOME")
        .spawn()
        .unwrap();
    // The change: a Vagrantfile that marks the host, and a suite that attacks from inside.
    let hostile_vagrantfile = format!(
        "File.write({:?}, \"#{{Dir.pwd}} #{{ARGV.join(' ')}} #{{ENV['VAGRANT_VAGRANTFILE']}} #{{ENV['METALAB_LAB_VAGRANTFILE']}}\")\n{}",
        change.marker.display().to_string(),
        std::fs::read_to_string(common::repo().join("Vagrantfile")).unwrap()
    );
    change.write("Vagrantfile", &hostile_vagrantfile);
    change.write("suites/hostile/suite.toml", HOSTILE_SUITE);
    let shipped = std::fs::read_dir("/usr/share/rubygems-integration/all/gems")
        .unwrap()
        .map(|e| e.unwrap().path().join("keys/vagrant"))
        .find(|p| p.is_file())
        .unwrap();
    std::fs::copy(shipped, change.path().join("suites/hostile/insecure")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", change.path().join("suites/hostile/shadow")).unwrap();
    let untrusted = change
        .metalab_command(&["run", "--untrusted", "--lab-from", "main", "hostile"])
        .env_remove("METALAB_HOME")
        .output()
        .unwrap();
    let trusted = trusted.wait_with_output().unwrap();

    let shown = text(&untrusted);
    let logs = Command::new("sh")
        .arg("-c")
        .arg("tail -n 5 artifacts/latest/hostile/*.log")
        .current_dir(change.path())
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(0), "{shown}\n{}", text(&logs));
    assert_eq!(trusted.status.code(), Some(0), "{}", text(&trusted));
    assert!(
        !change.marker.exists(),
        "the change's Vagrantfile ran on the host: {:?}",
        std::fs::read_to_string(&change.marker)
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(change.path().join("artifacts/latest/results.json")).unwrap(),
    )
    .unwrap();
    let run = results["run_id"].as_str().unwrap().to_string();
    let dir = change.path().join("artifacts").join(&run).join("hostile");
    let flood = std::fs::read_to_string(dir.join("a-flood-of-output.log")).unwrap();
    assert!(
        flood.len() < 1024 * 1024 + 4096,
        "{} bytes kept",
        flood.len()
    );
    assert!(
        flood.contains("[metalab: log cut at 1 MiB"),
        "{}",
        &flood[flood.len() - 300..]
    );
    let artifacts = dir.join("node1");
    let kept: Vec<String> = std::fs::read_dir(&artifacts)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(kept, ["regular"], "{}", artifacts.display());
    let listed = std::fs::read_to_string(dir.join("artifacts.log")).unwrap();
    for name in ["shadow", "null", "fifo"] {
        assert!(listed.contains(name), "{name} not listed: {listed}");
    }
    for secret in ["secret-metal-token", "secret-github-token"] {
        let found = std::process::Command::new("grep")
            .args(["-rl", secret])
            .arg(change.path().join("artifacts"))
            .output()
            .unwrap();
        assert!(found.stdout.is_empty(), "{secret} in {}", text(&found));
    }
    let history = change
        .metalab_command(&["history", "--json"])
        .env_remove("METALAB_HOME")
        .output()
        .unwrap();
    assert!(!text(&history).contains(&run), "{}", text(&history));
    assert_eq!(common::leftovers(&run, change.path()), Vec::<String>::new());
}
