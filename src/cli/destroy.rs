//! `metalab destroy`: removes a kept lab's VMs, however it was left.

use std::time::Duration;

use clap::Args;

use super::Failure;
use crate::exit::Status;
use crate::ids::RunId;
use crate::lab::{self, LabState};
use crate::state::StateDir;
use crate::transport::local::Local;

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// The run whose VMs to destroy (default: every kept lab on this host).
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
}

pub async fn destroy(args: DestroyArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let wanted = match &args.run {
        Some(r) => Some(
            RunId::parse(r)
                .ok_or_else(|| Failure::new(Status::BadInput, format!("`{r}` is not a run id")))?,
        ),
        None => None,
    };
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
        let mut sink = crate::transport::Discard;
        match lab::destroy(
            &Local,
            &l.project,
            &l.run_id,
            Duration::from_secs(300),
            &mut sink,
            std::future::pending(),
        )
        .await
        {
            Ok(_) => {
                let _ = std::fs::remove_file(state.run(&l.run_id).lab_state());
                crate::mux::stop(&state.run(&l.run_id));
                crate::reap::mark_done(&state, &l.run_id);
                println!(
                    "destroyed {} ({})",
                    l.run_id,
                    l.vms
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(e) => {
                eprintln!("metalab: error: {}: {e:#}", l.run_id);
                status = Status::InfraError;
            }
        }
    }
    Ok(status)
}
