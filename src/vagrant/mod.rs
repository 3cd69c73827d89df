//! Drives the Vagrant CLI on a host, through that host's transport: `up`, `provision`,
//! `ssh-config`, `status` and `destroy`, with machine-readable output where Vagrant offers it.
//!
//! Vagrant always reads the lab's own Vagrantfile through metalab's wrapper ([`WRAPPER`]), which
//! loads it unchanged and then puts the run's prefix into every libvirt name the run creates.
//! Each run also has its own Vagrant state directory (`VAGRANT_DOTFILE_PATH`), so runs never see
//! each other.

pub mod describe;
pub mod index;

use std::path::PathBuf;
use std::time::Duration;

use crate::transport::ssh::SshTarget;
use crate::transport::{
    Collect, Command, Outcome, OutputSink, Transport, TransportError, sh_quote,
};

/// The run-scoped wrapper Vagrant reads instead of the lab's Vagrantfile (see the file itself).
pub const WRAPPER: &str = include_str!("wrapper.rb");

/// The environment variable that tags every Vagrant process of a run with the run id, so that
/// `metalab reap` can end a dead run's orphaned `vagrant` (and its children) and nothing else.
pub const RUN_TAG: &str = "METALAB_RUN_TAG";

/// One Vagrant project on a host: the lab's Vagrantfile plus this run's state directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Project {
    /// The directory holding the Vagrantfile, on the host: Vagrant's working directory.
    pub dir: String,
    /// The Vagrantfile's file name inside `dir`.
    pub vagrantfile: String,
    /// Where metalab's [`WRAPPER`] is on the host; Vagrant reads it, and it loads the lab's file.
    /// Empty in records of older metalab versions, which read the lab's file directly.
    #[serde(default)]
    pub wrapper: String,
    /// `VAGRANT_DOTFILE_PATH`.
    pub dotfile_dir: String,
    pub vagrant_home: String,
    /// Variables for the Vagrantfile and the wrapper (`METALAB_*`).
    pub vars: Vec<(String, String)>,
}

/// Why a Vagrant command failed.
#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("`vagrant {command}` failed ({outcome}){detail}")]
    Failed {
        command: String,
        outcome: String,
        detail: String,
    },
}

impl Project {
    /// Writes the wrapper where [`Project::wrapper`] says, on the host.
    pub async fn install_wrapper(&self, host: &dyn Transport) -> anyhow::Result<()> {
        let path = sh_quote(&self.wrapper);
        let script = format!("mkdir -p \"$(dirname {path})\" && cat > {path}");
        let cmd = Command::new(script, Duration::from_secs(30)).stdin(WRAPPER.as_bytes().to_vec());
        crate::transport::stdout_of(host, &cmd).await.map(drop)
    }

    /// The lab's Vagrantfile, where the host sees it.
    pub fn lab_vagrantfile(&self) -> String {
        format!("{}/{}", self.dir.trim_end_matches('/'), self.vagrantfile)
    }

    fn command(&self, args: &str, timeout: Duration) -> Command {
        let vagrantfile = if self.wrapper.is_empty() {
            self.vagrantfile.clone()
        } else {
            self.wrapper.clone()
        };
        Command::new(format!("exec vagrant {args}"), timeout)
            .cwd(self.dir.clone())
            .env("VAGRANT_VAGRANTFILE", vagrantfile)
            .env("METALAB_LAB_VAGRANTFILE", self.lab_vagrantfile())
            .env("VAGRANT_DOTFILE_PATH", self.dotfile_dir.clone())
            .env("VAGRANT_HOME", self.vagrant_home.clone())
            .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .env("VAGRANT_BOX_UPDATE_CHECK_DISABLE", "1")
            .env("VAGRANT_NO_COLOR", "1")
            .envs(&self.vars)
    }

    /// `vagrant up` of the named machines (in parallel, as vagrant-libvirt does).
    pub async fn up(
        &self,
        host: &dyn Transport,
        vms: &[String],
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        let args = format!("up --no-provision --provider=libvirt {}", quoted(vms));
        host.exec(&self.command(&args, timeout), sink).await
    }

    /// `vagrant provision` of the named machines: the Vagrantfile's provisioners, as `vagrant up`
    /// would have run them on a first boot.
    pub async fn provision(
        &self,
        host: &dyn Transport,
        vms: &[String],
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        let args = format!("provision {}", quoted(vms));
        host.exec(&self.command(&args, timeout), sink).await
    }

    /// `vagrant destroy -f`. Idempotent: machines already gone count as destroyed.
    pub async fn destroy(
        &self,
        host: &dyn Transport,
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        host.exec(&self.command("destroy -f", timeout), sink).await
    }

    /// The SSH details of each machine, read once from `vagrant ssh-config`.
    pub async fn ssh_config(
        &self,
        host: &dyn Transport,
        vms: &[String],
    ) -> Result<Vec<(String, SshTarget)>, VagrantError> {
        let out = self
            .checked(
                host,
                &format!("ssh-config {}", quoted(vms)),
                Duration::from_secs(120),
            )
            .await?;
        Ok(parse_ssh_config(&out.stdout_text()))
    }

    pub(crate) async fn checked(
        &self,
        host: &dyn Transport,
        args: &str,
        timeout: Duration,
    ) -> Result<Collect, VagrantError> {
        let mut out = Collect::default();
        let outcome = host.exec(&self.command(args, timeout), &mut out).await?;
        if !outcome.success() {
            let err = out.stderr_text();
            let detail = err
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .map(|l| format!(": {}", l.trim()))
                .unwrap_or_default();
            return Err(VagrantError::Failed {
                command: args.split_whitespace().next().unwrap_or("").to_string(),
                outcome: outcome.describe(),
                detail,
            });
        }
        Ok(out)
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| sh_quote(n))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `vagrant ssh-config` output: one `Host` block per machine.
pub fn parse_ssh_config(text: &str) -> Vec<(String, SshTarget)> {
    let mut out: Vec<(String, SshTarget)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        if key == "Host" {
            out.push((
                value,
                SshTarget {
                    host: String::new(),
                    port: 22,
                    user: "vagrant".into(),
                    identity_files: Vec::new(),
                },
            ));
            continue;
        }
        let Some((_, t)) = out.last_mut() else {
            continue;
        };
        match key {
            "HostName" => t.host = value,
            "Port" => t.port = value.parse().unwrap_or(22),
            "User" => t.user = value,
            "IdentityFile" => t.identity_files.push(PathBuf::from(value)),
            _ => {}
        }
    }
    out
}

/// Parses `vagrant status --machine-readable`: `time,target,state,value` lines name the machines.
pub fn parse_machine_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let (_, target, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "state" && !target.is_empty()).then(|| target.to_string())
        })
        .collect()
}

/// The machine a line of `vagrant up` output is about, and its message: `==> node1: Booting`.
pub fn progress_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("==> ")?;
    let (vm, msg) = rest.split_once(": ")?;
    Some((vm, msg.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_config_blocks_become_targets() {
        let text = "Host node1\n  HostName 192.168.121.10\n  User vagrant\n  Port 22\n  IdentityFile /h/insecure_private_key\n  IdentityFile \"/h/with space\"\n\nHost node2\n  HostName 192.168.121.11\n  User vagrant\n  Port 2222\n";
        let parsed = parse_ssh_config(text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, "node1");
        assert_eq!(parsed[0].1.host, "192.168.121.10");
        assert_eq!(
            parsed[0].1.identity_files,
            vec![
                PathBuf::from("/h/insecure_private_key"),
                PathBuf::from("/h/with space")
            ]
        );
        assert_eq!((parsed[1].0.as_str(), parsed[1].1.port), ("node2", 2222));
    }

    #[test]
    fn machine_readable_status_names_the_machines() {
        let text = "1700000000,node1,metadata,provider,libvirt\n1700000000,node1,state,not_created\n1700000000,node2,state,not_created\n1700000000,,ui,info,Current machine states:\n";
        assert_eq!(parse_machine_names(text), vec!["node1", "node2"]);
    }

    #[test]
    fn up_progress_lines_name_their_machine() {
        assert_eq!(
            progress_line("==> node2: Creating domain with the following settings..."),
            Some(("node2", "Creating domain with the following settings..."))
        );
        assert_eq!(progress_line("    node2: -- Name: x"), None);
    }
}
