//! `metalab login`: an interactive shell in a VM of a kept lab. It is OpenSSH's own `ssh` (a
//! terminal, its window size, its escape keys), given the VM's key and only the host key the run
//! pinned when it first connected, and jumping through the lab's host when that is remote.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use clap::Args;

use super::Failure;
use super::exec::find_lab;
use crate::exit::Status;
use crate::state::StateDir;
use crate::transport::ssh::{HostKeyPolicy, SshTarget};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The run whose VM to log in to (default: the newest kept lab that has this VM).
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// Log in as root (`sudo -i` in the VM).
    #[arg(long)]
    sudo: bool,
    /// The VM, as named in the Vagrantfile.
    vm: String,
}

pub fn login(args: LoginArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let lab = find_lab(&state, args.run.as_deref(), &args.vm)?;
    let vm = lab.vm(&args.vm).expect("find_lab found it");
    let known = known_hosts(&lab.pinned_key(&state, &vm.name), &vm.ssh)?;
    let mut ssh = crate::child_env::command("ssh");
    ssh.args(options(&vm.ssh, &known));
    if let Some(jump) = &lab.jump {
        let host_known = known_hosts(&jump.policy, &jump.target)?;
        ssh.arg("-o").arg(format!(
            "ProxyCommand={}",
            proxy_command(&jump.target, &host_known)
        ));
    }
    ssh.arg(format!("{}@{}", vm.ssh.user, vm.ssh.host));
    if args.sudo {
        ssh.args(["-t", "sudo", "-i"]);
    }
    // Only returns when ssh could not be started.
    let e = ssh.exec();
    Err(Failure::new(
        Status::InfraError,
        format!("cannot start ssh (OpenSSH's client; scripts/setup-host installs it): {e}"),
    ))
}

/// What makes `ssh` use this key, this port and only this known host.
fn options(target: &SshTarget, known_hosts: &Path) -> Vec<String> {
    let mut opts = vec!["-p".to_string(), target.port.to_string()];
    for id in &target.identity_files {
        opts.extend(["-i".to_string(), id.display().to_string()]);
    }
    for o in [
        "IdentitiesOnly=yes".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".to_string(),
        "LogLevel=ERROR".to_string(),
    ] {
        opts.extend(["-o".to_string(), o]);
    }
    opts
}

/// `ssh -W` through the lab's host, checking the host's key as the run did.
fn proxy_command(host: &SshTarget, known_hosts: &Path) -> String {
    let quoted: Vec<String> = options(host, known_hosts)
        .iter()
        .map(|o| crate::transport::sh_quote(o))
        .collect();
    format!(
        "ssh {} -W %h:%p {}@{}",
        quoted.join(" "),
        host.user,
        host.host
    )
}

/// The OpenSSH known_hosts file that holds the host key the run trusts for `target`: the file
/// itself for an inventory host, or one written beside a key pinned at first contact (a VM's).
fn known_hosts(policy: &HostKeyPolicy, target: &SshTarget) -> Result<PathBuf, Failure> {
    let pin = match policy {
        HostKeyPolicy::KnownHosts { path, .. } => return Ok(path.clone()),
        HostKeyPolicy::PinFile(pin) => pin,
    };
    let key = std::fs::read_to_string(pin).map_err(|e| {
        Failure::new(
            Status::InfraError,
            format!(
                "no pinned host key for {} ({}): {e}",
                target.host,
                pin.display()
            ),
        )
    })?;
    let host = match target.port {
        22 => target.host.clone(),
        port => format!("[{}]:{port}", target.host),
    };
    let file = pin.with_extension("known_hosts");
    std::fs::write(&file, format!("{host} {}\n", key.trim())).map_err(|e| {
        Failure::new(
            Status::InfraError,
            format!("cannot write {}: {e}", file.display()),
        )
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_gets_the_key_the_port_and_only_the_pinned_host() {
        let target = SshTarget {
            host: "192.168.121.7".into(),
            port: 2222,
            user: "vagrant".into(),
            identity_files: vec![PathBuf::from("/k/id")],
        };
        let opts = options(&target, Path::new("/run/known"));
        let text = opts.join(" ");
        assert!(text.starts_with("-p 2222 -i /k/id "), "{text}");
        assert!(text.contains("-o StrictHostKeyChecking=yes"), "{text}");
        assert!(text.contains("-o UserKnownHostsFile=/run/known"), "{text}");
        let proxy = proxy_command(&target, Path::new("/h/known"));
        assert!(
            proxy.ends_with(" -W %h:%p vagrant@192.168.121.7"),
            "{proxy}"
        );
        assert!(proxy.contains("UserKnownHostsFile=/h/known"), "{proxy}");
    }
}
