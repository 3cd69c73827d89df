//! `metalab destroy`: removes a kept lab's VMs, however it was left.

use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::exit::Status;
use crate::lab::LabState;
use crate::state::StateDir;
use crate::vm::{Driver, VagrantLibvirt};

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// The run whose VMs to destroy (default: every kept lab on this host).
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
}

pub async fn destroy(args: DestroyArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let wanted = super::parse_run(args.run.as_deref())?;
    let labs: Vec<LabState> = LabState::all(&state)
        .into_iter()
        .filter(|l| wanted.as_ref().is_none_or(|w| &l.run_id == w))
        .collect();
    if labs.is_empty() {
        println!("no kept lab to destroy");
        return Ok(Status::Passed);
    }
    let mut status = Status::Passed;
    for l in labs {
        match destroy_one(&state, &l).await {
            Ok(()) => println!("destroyed {}", super::describe_lab(&l)),
            Err(e) => {
                eprintln!("metalab: error: {}: {e:#}", l.run_id);
                status = Status::InfraError;
            }
        }
    }
    Ok(status)
}

async fn destroy_one(state: &StateDir, l: &LabState) -> anyhow::Result<()> {
    let driver = VagrantLibvirt::new(l.host_transport().await?, l.project.clone(), l.prefix());
    driver
        .destroy(
            Duration::from_secs(300),
            &mut crate::transport::Discard,
            Box::pin(std::future::pending()),
        )
        .await?;
    let run = state.run(&l.run_id);
    let _ = std::fs::remove_file(run.lab_state(&l.lane));
    if run.lab_states().is_empty() {
        crate::mux::stop(&run);
        crate::reap::mark_done(state, &l.run_id);
    }
    Ok(())
}
