//! `metalab exec`: a command in a VM of a running lab, over one native SSH connection that a
//! background holder keeps open between calls (see [`crate::mux`]).

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::exit::Status;
use crate::lab::LabState;
use crate::mux;
use crate::state::StateDir;
use crate::transport::{OutputSink, Stream, sh_quote};

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
    #[arg(last = true)]
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
    if args.command.is_empty() {
        return Err(Failure::new(
            Status::BadInput,
            format!(
                "no command: `metalab exec {vm} -- CMD...`, or `metalab login {vm}` for a shell",
                vm = args.vm
            ),
        ));
    }
    let state = StateDir::from_env();
    let lab = find_lab(&state, args.run.as_deref(), &args.vm)?;
    let request = mux::Request {
        vm: args.vm.clone(),
        script: args
            .command
            .iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        sudo: args.sudo,
        timeout_secs: args.timeout.as_secs().max(1),
    };
    let reply = mux::call(
        &state.run(&lab.run_id),
        &lab.run_id,
        &request,
        &mut Passthrough,
    )
    .await
    .map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))?;
    match reply {
        // The remote exit code becomes ours, as with ssh; a signal shows as 255.
        mux::Reply::Exited(code) => std::process::exit(if code < 0 { 255 } else { code }),
        mux::Reply::Failed(why) => Err(Failure::new(
            Status::InfraError,
            format!("{}: {why}", args.vm),
        )),
    }
}

/// `metalab mux-serve`: the connection holder that `exec` starts in the background.
pub async fn serve(run: String) -> Result<Status, Failure> {
    let run = super::parse_run(Some(&run))?.expect("given");
    mux::serve(StateDir::from_env(), run)
        .await
        .map_err(|e| Failure::new(Status::InfraError, format!("{e:#}")))?;
    Ok(Status::Passed)
}

pub(super) fn find_lab(state: &StateDir, run: Option<&str>, vm: &str) -> Result<LabState, Failure> {
    let wanted = super::parse_run(run)?;
    if let Some(lab) = LabState::newest_with_vm(state, wanted.as_ref(), vm) {
        return Ok(lab);
    }
    let running: Vec<String> = LabState::all(state)
        .iter()
        .map(super::describe_lab)
        .collect();
    let hint = if running.is_empty() {
        "no lab is running; start one with `metalab up`".to_string()
    } else {
        format!("running labs: {}", running.join("; "))
    };
    Err(Failure::new(
        Status::BadInput,
        format!("no running lab has a VM `{vm}`: {hint}"),
    ))
}
