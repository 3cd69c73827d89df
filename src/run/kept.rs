//! Suites on the VMs of a kept lab (`metalab up`, or a failed run's `--keep-on-failure`):
//! `metalab run --on RUN_ID`. The developer's loop of Test Kitchen's converge and verify: the
//! VMs are put back to their pristine snapshot (unless told not to), the suites directory is
//! copied in afresh, the suites run, and the VMs stay as they are for the next round. Nothing is
//! created or destroyed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::pristine::SNAPSHOT;
use super::suites::{self, SuiteEnv};
use super::{VM_LAB_DIR, announce_signals, note_run_cap, run_phase};
use crate::budget::Budget;
use crate::config::Config;
use crate::exit::Status;
use crate::ids::RunId;
use crate::lab::LabState;
use crate::model::event::{EventKind, Events, Phase};
use crate::signal::Shutdown;
use crate::state::StateDir;
use crate::suite::Suite;
use crate::transport::Transport;
use crate::transport::files;
use crate::transport::local::Local;
use crate::transport::ssh::SshSession;
use crate::vm::{Driver, VagrantLibvirt, Vm};

/// A round of suites on a kept lab.
pub struct OnKept {
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// This round's own id: its results go to `artifacts/<run-id>/`.
    pub run_id: RunId,
    pub lab: LabState,
    pub suites: Vec<Suite>,
    /// Put the VMs back to their pristine snapshot before each suite that wants it.
    pub revert: bool,
}

/// Runs the suites on the kept lab and returns the round's status.
pub async fn on_kept(
    config: &Config,
    state: &StateDir,
    round: OnKept,
    events: Events,
    shutdown: Shutdown,
) -> Status {
    let started = Instant::now();
    let artifacts = config.artifacts_dir.join(round.run_id.as_str());
    events.emit(EventKind::RunStarted {
        run_id: round.run_id.clone(),
        suites: round.suites.iter().map(|s| s.name.clone()).collect(),
        vms: round.lab.vms.iter().map(|v| v.name.clone()).collect(),
        host: format!("{}, kept lab {}", round.lab.host, round.lab.run_id),
        artifacts: artifacts.clone(),
    });
    let announcer = tokio::spawn(announce_signals(shutdown.clone(), events.clone()));
    let budget = Arc::new(Budget::new(config.outputs));
    let status = tokio::select! {
        s = rounds(config, state, &round, &events, &artifacts, &budget) => s,
        sig = shutdown.requested() => sig.status(),
    };
    announcer.abort();
    note_run_cap(&events, &budget);
    events.emit(EventKind::RunFinished {
        status,
        duration: started.elapsed(),
    });
    status
}

async fn rounds(
    config: &Config,
    state: &StateDir,
    round: &OnKept,
    events: &Events,
    artifacts: &std::path::Path,
    budget: &Arc<Budget>,
) -> Status {
    let env = super::images::ImagesEnv {
        events,
        artifacts,
        config,
        state,
        budget,
    };
    let Ok(images) = super::images::build(&env, &round.suites).await else {
        return Status::InfraError;
    };
    let lab = &round.lab;
    let connect = |log: PathBuf| connect(config, state, lab, log);
    let connected = run_phase(
        events,
        artifacts,
        Phase::Connect,
        "",
        "ssh sessions, suites copied in afresh",
        connect,
    )
    .await;
    let Ok((host, jump, mut vms)) = connected else {
        return Status::InfraError;
    };
    let driver = VagrantLibvirt::new(host, lab.project.clone(), lab.prefix());
    let stop = AtomicBool::default();
    let lab_variables = crate::suite::lab_variables(None);
    let env = SuiteEnv {
        events,
        run_id: &round.run_id,
        artifacts,
        timeouts: &config.timeouts,
        fail_fast: round.fail_fast.then_some(&stop),
        lab_variables: &lab_variables,
        budget,
        images: &images,
    };
    let mut status = Status::Passed;
    for (i, suite) in round.suites.iter().enumerate() {
        if env.stopped() {
            skip_rest(&env, &round.suites[i..], suites::FAIL_FAST);
            break;
        }
        if round.revert && suite.pristine {
            let detail = format!(
                "{}: {} back to {SNAPSHOT}",
                suite.name,
                suite.vms.join(", ")
            );
            let reverted = run_phase(events, artifacts, Phase::Snapshot, "", &detail, |_| {
                revert(
                    &driver,
                    &mut vms,
                    suite,
                    jump.as_deref(),
                    &config.suites_dir,
                )
            })
            .await;
            if reverted.is_err() {
                skip_rest(&env, &round.suites[i..], "the VMs could not be put back");
                return status.worst(Status::InfraError);
            }
        }
        let from = (round.revert && suite.pristine).then_some(SNAPSHOT);
        match suites::run_suite(&env, suite, &vms, from).await {
            Ok(s) => status = status.worst(s),
            Err(reason) => {
                skip_rest(&env, &round.suites[i + 1..], &reason);
                return status.worst(Status::InfraError);
            }
        }
    }
    for vm in &vms {
        vm.session.close().await;
    }
    status
}

fn skip_rest(env: &SuiteEnv<'_>, rest: &[Suite], reason: &str) {
    for s in rest {
        suites::skip_suite(env, s, reason);
    }
}

/// The host (and the session to jump through, when it is remote), and each VM connected with
/// the suites copied in.
async fn connect(
    config: &Config,
    state: &StateDir,
    lab: &LabState,
    _log: PathBuf,
) -> anyhow::Result<(Arc<dyn Transport>, Option<Arc<SshSession>>, Vec<Vm>)> {
    let jump = lab.host_session().await?.map(Arc::new);
    let host: Arc<dyn Transport> = match &jump {
        Some(session) => session.clone(),
        None => Arc::new(Local),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut vms = Vec::new();
    for v in &lab.vms {
        let policy = lab.pinned_key(state, &v.name);
        let session = SshSession::connect_until(&v.ssh, &policy, deadline, jump.as_deref()).await?;
        let session = Arc::new(session);
        copy_suites(session.as_ref(), &config.suites_dir).await?;
        vms.push(Vm {
            name: v.name.clone(),
            session,
            lab_address: v.private_ip.clone(),
            target: v.ssh.clone(),
            policy,
        });
    }
    Ok((host, jump, vms))
}

/// The suites directory as it is now, into the VM: the developer edits suites between rounds.
async fn copy_suites(vm: &SshSession, suites_dir: &std::path::Path) -> anyhow::Result<()> {
    let into = format!("{VM_LAB_DIR}/suites");
    files::put_dir(vm, suites_dir, &into, true, Duration::from_secs(120)).await?;
    Ok(())
}

/// Puts the suite's VMs back to the pristine snapshot, and copies the suites in again (the
/// snapshot holds the copy made when it was taken).
async fn revert(
    driver: &dyn Driver,
    vms: &mut [Vm],
    suite: &Suite,
    jump: Option<&SshSession>,
    suites_dir: &std::path::Path,
) -> anyhow::Result<()> {
    for vm in vms.iter_mut().filter(|v| suite.vms.contains(&v.name)) {
        driver.revert(&vm.name, SNAPSHOT).await.map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot put it back to {SNAPSHOT} ({e:#}); `--no-revert` runs on the VMs as they are",
                vm.name
            )
        })?;
        vm.session = vm.reconnect(jump).await.map_err(anyhow::Error::msg)?;
        copy_suites(vm.session.as_ref(), suites_dir).await?;
    }
    Ok(())
}
