//! `metalab exec`: a command in a VM of a running lab, over one native SSH connection.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::exit::Status;
use crate::ids::RunId;
use crate::lab::LabState;
use crate::state::StateDir;
use crate::transport::ssh::{HostKeyPolicy, SshSession};
use crate::transport::{Command, Exit, OutputSink, Stream, Transport};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// The run whose VM to use (default: the newest running lab that has this VM).
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// Run the command as root.
    #[arg(long)]
    sudo: bool,
    /// Kill the command (its whole process group) after this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The VM, as named in the Vagrantfile.
    vm: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Passes the remote output straight through.
struct Passthrough;

impl OutputSink for Passthrough {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let _ = match stream {
            Stream::Stdout => std::io::stdout()
                .write_all(data)
                .and_then(|_| std::io::stdout().flush()),
            Stream::Stderr => std::io::stderr().write_all(data),
        };
    }
}

pub async fn exec(args: ExecArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let lab = find_lab(&state, args.run.as_deref(), &args.vm)?;
    let vm = lab.vm(&args.vm).expect("find_lab checked the VM");
    let policy = HostKeyPolicy::PinFile(state.run(&lab.run_id).host_key(&vm.name));
    let session = SshSession::connect(&vm.ssh, &policy, Duration::from_secs(30))
        .await
        .map_err(|e| Failure::new(Status::InfraError, e.to_string()))?;
    let script = args
        .command
        .iter()
        .map(|a| crate::transport::sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let cmd = Command::new(script, args.timeout).sudo(args.sudo);
    let outcome = session
        .exec(&cmd, &mut Passthrough)
        .await
        .map_err(|e| Failure::new(Status::InfraError, e.to_string()))?;
    session.close().await;
    if outcome.timed_out {
        eprintln!("metalab: {}", outcome.describe());
    }
    // The remote exit code becomes ours, like ssh does.
    let code = match outcome.exit {
        Exit::Code(c) => c,
        Exit::Signal(_) => 255,
    };
    std::process::exit(code);
}

fn find_lab(state: &StateDir, run: Option<&str>, vm: &str) -> Result<LabState, Failure> {
    let labs = LabState::all(state);
    let wanted = match run {
        Some(r) => Some(RunId::parse(r).ok_or_else(|| {
            Failure::new(
                Status::BadInput,
                format!("`{r}` is not a run id (like 20261122-200501-3fa2)"),
            )
        })?),
        None => None,
    };
    let found = labs
        .iter()
        .filter(|l| wanted.as_ref().is_none_or(|w| &l.run_id == w))
        .find(|l| l.vm(vm).is_some());
    found.cloned().ok_or_else(|| {
        let running: Vec<String> = labs
            .iter()
            .map(|l| {
                format!(
                    "{} ({})",
                    l.run_id,
                    l.vms
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .collect();
        let hint = if running.is_empty() {
            "no lab is running; start one with `metalab up`".to_string()
        } else {
            format!("running labs: {}", running.join("; "))
        };
        Failure::new(
            Status::BadInput,
            format!("no running lab has a VM `{vm}`: {hint}"),
        )
    })
}
