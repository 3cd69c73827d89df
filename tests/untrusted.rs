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

const TRUSTED_CONFIG: &str =
    "[untrusted]\nlab_env = [\"LAB_ALLOWED\"]\nallow = [\"192.0.2.7:443\"]\n";

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
    assert_eq!(plan["untrusted"]["allow"][0], "192.0.2.7:443");
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
/// fails (or, for the log, when it is harmless), except the last, the control: a destination the
/// trusted config allows answers, so the attempts that fail could have succeeded.
///
/// `targets` (written by the test, read as data in the VM) names another run's VM (`OTHER`), the
/// host's addresses (`HOST`), a service on the host (`RECORDER`) and the allowed port (`ALLOWED`).
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
name = "another-runs-vm-is-out-of-reach"
run = """
. ./targets
chmod 600 insecure
printf '#!/bin/sh\\necho vagrant\\n' > askpass && chmod +x askpass
for ip in $OTHER; do
  if sh reach $ip 22; then echo "REACHED $ip:22"; exit 1; fi
  if ssh -i insecure -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null vagrant@$ip true; then echo "insecure key into $ip"; exit 1; fi
  if SSH_ASKPASS=$PWD/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0 setsid -w ssh -o PreferredAuthentications=password,keyboard-interactive -o PubkeyAuthentication=no -o ConnectTimeout=3 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null vagrant@$ip true </dev/null; then echo "password into $ip"; exit 1; fi
  echo "out of reach: $ip"
done
"""

[[test]]
name = "host-services-are-out-of-reach"
run = """
. ./targets
reached=$(for ip in $HOST; do for port in $RECORDER 22 53; do (sh reach $ip $port && echo "REACHED $ip:$port") & done; done; wait)
echo "tried $HOST on $RECORDER, 22 and 53"
test -z "$reached" || { echo "$reached"; exit 1; }
"""

[[test]]
name = "a-flood-of-output"
run = "head -c 3000000 /dev/zero | tr '\\0' x; echo"

[[test]]
name = "links-and-devices-for-the-host"
run = "cd $METALAB_ARTIFACTS && ln -s /etc/shadow shadow && mknod null c 1 3 && mkfifo fifo && echo fine > regular"

[[test]]
name = "the-allowed-destination-answers"
run = ". ./targets && sh reach 192.168.121.1 $ALLOWED"
"#;

/// `sh reach HOST PORT`, in the VM: whether a TCP connection opens within 3 s.
const REACH: &str = "timeout 3 bash -c \"</dev/tcp/$1/$2\" 2>/dev/null\n";

/// A TCP service on every address of the host that records what it is sent.
struct Listener {
    port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Listener {
    fn start() -> Listener {
        let socket = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, c) = (received.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in socket.incoming().flatten() {
                c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut stream = stream;
                    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                    let mut buf = Vec::new();
                    let _ = stream.read_to_end(&mut buf);
                    r.lock().unwrap().extend(buf);
                });
            }
        });
        Listener {
            port,
            received,
            connections,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A lab kept by `metalab up` in `dir`, destroyed on drop.
struct KeptLab {
    dir: PathBuf,
    run: String,
}

impl Drop for KeptLab {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_metalab"))
            .args(["destroy", "--run", &self.run])
            .current_dir(&self.dir)
            .output();
    }
}

/// The addresses of a kept lab's VMs, from `metalab status --json`.
fn kept_addresses(run: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_metalab"))
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lab = status["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["run_id"] == run)
        .unwrap_or_else(|| panic!("{run} not in {status}"))
        .clone();
    lab["vms"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|vm| [vm["address"].clone(), vm["lab_address"].clone()])
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Whether this machine opens a TCP connection to `ip:port` within 3 s.
fn reachable(ip: &str, port: u16) -> bool {
    let addr = std::net::SocketAddr::new(ip.parse().unwrap(), port);
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3)).is_ok()
}

/// This machine's IPv4 addresses, every bridge's included.
fn host_addresses() -> Vec<String> {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
        .collect()
}

/// A change whose suite attacks from inside its VM, run untrusted beside a trusted lab of the same
/// lab definition, with real VMs: nothing of the change runs on the host, no secret reaches the
/// VM or the API server the change names, the VM reaches neither the other run's VM nor the
/// host's services (only the destination the trusted config allows), the flood is cut at the log
/// cap, what the VM sends back is inert, the trusted lab is untouched, and the history learns
/// nothing from the untrusted run.
#[test]
fn a_hostile_change_stays_inside_its_vm_beside_a_trusted_run() {
    let _slots = common::vm_slots(2);
    let recorder = Listener::start();
    let allowed = Listener::start();
    let change = Change::new();
    // The trusted lab: the repository's own Vagrantfile and box, with small caps, and one
    // destination its VMs may reach.
    change.write(
        "metalab.toml",
        &format!(
            "[vm]\nmemory = 640\n[outputs]\nlog_cap = \"1 MiB\"\n[untrusted]\nlab_env = [\"LAB_ALLOWED\"]\n\
             allow = [\"192.168.121.1:{}\"]\n",
            allowed.port
        ),
    );
    std::fs::copy(
        common::repo().join("Vagrantfile"),
        change.path().join("Vagrantfile"),
    )
    .unwrap();
    std::os::unix::fs::symlink(common::repo().join("boxes"), change.path().join("boxes")).unwrap();
    std::fs::remove_file(change.path().join("suites/net/shadow")).unwrap();
    change.git("add -A && git -c user.email=t@t -c user.name=t commit -qm 'the real lab'");
    // A trusted lab beside it, kept up from a copy of the trusted tree; with the host's own state
    // directory, where the box is.
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
    let up = change
        .metalab_command(&["up", "net"])
        .current_dir(copy.path())
        .env_remove("METALAB_HOME")
        .output()
        .unwrap();
    assert_eq!(up.status.code(), Some(0), "{}", text(&up));
    let kept: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(copy.path().join("artifacts/latest/results.json")).unwrap(),
    )
    .unwrap();
    let trusted = KeptLab {
        dir: copy.path().to_path_buf(),
        run: kept["run_id"].as_str().unwrap().to_string(),
    };
    let other = kept_addresses(&trusted.run);
    assert_eq!(other.len(), 2, "{other:?}");
    assert!(reachable(&other[0], 22), "the trusted VM is not up");
    // The change: a Vagrantfile that marks the host, a config that names a server of its own, and
    // a suite that attacks from inside.
    let hostile_vagrantfile = format!(
        "File.write({:?}, \"#{{Dir.pwd}} #{{ARGV.join(' ')}} #{{ENV['VAGRANT_VAGRANTFILE']}} #{{ENV['METALAB_LAB_VAGRANTFILE']}}\")\n{}",
        change.marker.display().to_string(),
        std::fs::read_to_string(common::repo().join("Vagrantfile")).unwrap()
    );
    change.write("Vagrantfile", &hostile_vagrantfile);
    change.write(
        "metalab.toml",
        &format!(
            "[provider]\nkind = \"metal\"\n[provider.metal]\nproject = \"p\"\nplan = \"x\"\n\
             operating_system = \"debian_12\"\nmetros = [\"da\"]\napi_url = \"http://127.0.0.1:{}/\"\n",
            recorder.port
        ),
    );
    change.write("suites/hostile/suite.toml", HOSTILE_SUITE);
    change.write("suites/hostile/reach", REACH);
    change.write(
        "suites/hostile/targets",
        &format!(
            "OTHER=\"{}\"\nHOST=\"{}\"\nRECORDER={}\nALLOWED={}\n",
            other.join(" "),
            host_addresses().join(" "),
            recorder.port,
            allowed.port
        ),
    );
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

    let shown = text(&untrusted);
    let logs = Command::new("sh")
        .arg("-c")
        .arg("tail -n 5 artifacts/latest/hostile/*.log")
        .current_dir(change.path())
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(0), "{shown}\n{}", text(&logs));
    assert!(
        shown.contains("the VMs are fenced (nftables metalab-"),
        "{shown}"
    );
    assert!(
        !change.marker.exists(),
        "the change's Vagrantfile ran on the host: {:?}",
        std::fs::read_to_string(&change.marker)
    );
    // The control: the allowed destination answered, and the other run's VM is still up.
    assert!(
        allowed.connections() > 0,
        "the allowed destination was not reached"
    );
    assert!(reachable(&other[0], 22), "the trusted VM went down");
    assert_eq!(recorder.connections(), 0, "the host's service was reached");
    assert!(recorder.received.lock().unwrap().is_empty());
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
    // The trusted lab is untouched: its suite passes on it after all that.
    let round = change
        .metalab_command(&["run", "--on", &trusted.run, "net"])
        .current_dir(copy.path())
        .env_remove("METALAB_HOME")
        .output()
        .unwrap();
    assert_eq!(round.status.code(), Some(0), "{}", text(&round));
    let trusted_run = trusted.run.clone();
    drop(trusted);
    assert_eq!(
        common::leftovers(&trusted_run, copy.path()),
        Vec::<String>::new()
    );
}

/// An interface the fence cannot name (a public network: macvtap, no tap) would bypass it: the
/// untrusted run refuses the lab before any VM is made.
#[test]
fn a_lab_with_a_public_network_is_refused_in_the_mode() {
    let change = Change::new();
    change.write(
        "Vagrantfile",
        "Vagrant.configure(\"2\") do |config|\n  config.vm.box = \"metalab/debian12\"\n  \
         config.vm.define \"node1\" do |n|\n    n.vm.network :public_network, dev: \"eth0\"\n  end\nend\n",
    );
    std::os::unix::fs::symlink(common::repo().join("boxes"), change.path().join("boxes")).unwrap();
    change.write("metalab.toml", TRUSTED_CONFIG);
    std::fs::remove_file(change.path().join("suites/net/shadow")).unwrap();
    change.git("add -A && git -c user.email=t@t -c user.name=t commit -qm 'a public network'");
    let out = change
        .metalab_command(&["run", "--untrusted", "--lab-from", "main"])
        .env_remove("METALAB_HOME")
        .output()
        .unwrap();
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(change.path().join("artifacts/latest/results.json"))
            .unwrap_or_else(|e| panic!("{e}: {shown}")),
    )
    .unwrap();
    let run = results["run_id"].as_str().unwrap();
    let up = std::fs::read_to_string(
        change
            .path()
            .join("artifacts")
            .join(run)
            .join("lifecycle/up.log"),
    )
    .unwrap();
    assert!(
        up.contains("node1 has a public_network: an untrusted run fences its VMs"),
        "{up}"
    );
    assert_eq!(common::leftovers(run, change.path()), Vec::<String>::new());
}
