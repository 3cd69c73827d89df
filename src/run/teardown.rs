//! Teardown: collect what the VMs can still tell, then destroy them and sweep by name.
//!
//! `vagrant destroy` goes first because it also tidies Vagrant's own state; the sweep by the
//! run's name prefix then removes whatever Vagrant did not know about (a domain half-created when
//! `up` was killed) and proves that nothing of the run is left. A second signal skips straight
//! to the sweep.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::event::{EventKind, Phase};
use super::log::LogSink;
use super::{Engine, VM_LAB_DIR};
use crate::lab;
use crate::transport::{Command, Transport};

/// What each VM is asked for at the end of a run. Every command is allowed to fail: the VM may
/// be half-dead, and whatever it still answers is worth having.
const DIAGNOSTICS: &str = "
for c in 'uname -a' 'uptime' 'ip -d addr' 'ip route' 'ip netns list' 'nft list ruleset' \
         'ss -tanp' 'df -h' 'free -m' 'journalctl -b --no-pager -o short-monotonic -n 3000'; do
  echo \"===== $c\"; timeout 20 $c 2>&1
done";

impl Engine<'_> {
    /// Tears down what the run created. Returns an error when something could not be removed.
    pub(super) async fn teardown(&self) -> Result<(), String> {
        let Some((project, claim)) = self.res.project.lock().expect("not poisoned").take() else {
            return Ok(());
        };
        if self.plan.keep {
            return self.keep(claim);
        }
        if self.shutdown.signal().is_none() {
            let _ = self
                .phase(Phase::Collect, "diagnostics from every VM", |log| {
                    self.collect(log)
                })
                .await;
        }
        self.close_sessions().await;
        let result = self
            .phase(
                Phase::Destroy,
                "vagrant destroy, then a sweep by name",
                |log| async move { self.destroy(log, &project).await },
            )
            .await;
        let _ = std::fs::remove_file(self.state.run(&self.plan.run_id).lab_state());
        drop(claim);
        result.map_err(|e| format!("teardown incomplete: {e:?}"))
    }

    /// For `metalab up`: leave the VMs, and say how to reach and remove them.
    fn keep(&self, claim: super::SubnetClaim) -> Result<(), String> {
        // The network now exists on the host, which reserves the subnet from here on.
        drop(claim);
        let id = &self.plan.run_id;
        let first = self.plan.vms.first().cloned().unwrap_or_default();
        self.events.emit(EventKind::Notice {
            message: format!(
                "VMs kept. Get in: metalab exec --run {id} {first} -- <command>   Remove: metalab destroy --run {id}"
            ),
        });
        Ok(())
    }

    async fn close_sessions(&self) {
        let sessions: Vec<_> = self
            .res
            .sessions
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for s in sessions {
            s.close().await;
        }
    }

    async fn collect(&self, _log: PathBuf) -> anyhow::Result<()> {
        let sessions: Vec<_> = self.res.sessions.lock().expect("not poisoned").clone();
        let lab = self.res.lab.lock().expect("not poisoned").clone();
        let Some(lab) = lab else { return Ok(()) };
        let jobs = lab
            .vms
            .iter()
            .zip(sessions.iter())
            .map(|(vm, session)| async move {
                let mut sink =
                    LogSink::append(&self.artifacts.join("vms").join(format!("{}.log", vm.name)));
                let cmd = Command::new(DIAGNOSTICS, Duration::from_secs(60)).sudo(true);
                let _ = session.exec(&cmd, &mut sink).await;
                let _ = crate::transport::files::get_path(
                    session.as_ref(),
                    &format!("{VM_LAB_DIR}/artifacts"),
                    &self.artifacts.join("vms").join(&vm.name),
                    true,
                    Duration::from_secs(60),
                )
                .await;
            });
        futures::future::join_all(jobs).await;
        Ok(())
    }

    async fn destroy(&self, log: PathBuf, project: &crate::vagrant::Project) -> anyhow::Result<()> {
        let mut sink = LogSink::append(&log);
        let started = Instant::now();
        let fast = async {
            let sig = self.shutdown.fast().await;
            self.events.emit(EventKind::Cancelling {
                signal: sig.name().into(),
                fast: true,
            });
        };
        let done = lab::destroy(
            self.host.as_ref(),
            project,
            &self.plan.run_id,
            self.config.timeouts.destroy,
            &mut sink,
            fast,
        )
        .await?;
        if let Some(p) = done.vagrant_problem {
            self.progress(Phase::Destroy, p);
        }
        if !done.swept.is_empty() {
            self.progress(
                Phase::Destroy,
                format!("swept by name: {}", done.swept.describe()),
            );
        }
        self.progress(
            Phase::Destroy,
            format!(
                "nothing of the run is left ({:.1}s)",
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }
}
