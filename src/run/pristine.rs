//! A pristine VM for every suite: right after boot each VM of a lane is snapshotted, memory
//! included, and before every further suite its VMs are put back to that snapshot: reverted,
//! reconnected, checked (SSH answers, the address did not change) and their clock set, since it
//! jumps back to the snapshot's time. A revert answers SSH in seconds where a cold boot takes
//! most of a minute under TCG.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lane::{Lane, Vm};
use crate::libvirt;
use crate::model::event::{EventKind, Phase};
use crate::suite::Suite;
use crate::transport::ssh::SshSession;
use crate::transport::{Collect, Command, Transport};

/// The one snapshot a lane takes of each VM.
pub const SNAPSHOT: &str = "metalab-pristine";

impl Lane<'_> {
    fn domain(&self, vm: &str) -> String {
        format!("{}{vm}", self.prefix())
    }

    /// Snapshots every VM, when a later suite of the lane wants pristine VMs. Returns the
    /// snapshot's name, or `None` when not needed or not possible here (said once).
    pub(super) async fn snapshots(&self, vms: &[Vm]) -> Option<String> {
        if !self.suites.iter().skip(1).any(|s| s.pristine) {
            return None;
        }
        let host = self.ready.host.transport.as_ref();
        let take = |_log| async move {
            for vm in vms {
                libvirt::snapshot(host, &self.domain(&vm.name), SNAPSHOT).await?;
            }
            Ok(())
        };
        match self
            .ctx
            .phase_raw(
                Phase::Snapshot,
                &self.scope(),
                "of every VM, memory included",
                take,
            )
            .await
        {
            Ok(()) => Some(SNAPSHOT.to_string()),
            Err(e) => {
                self.ctx.events.emit(EventKind::Notice {
                    message: format!("snapshots do not work here ({e:#}): suites share their VMs instead of starting pristine"),
                });
                None
            }
        }
    }

    /// Puts the suite's VMs back to the snapshot, replacing their sessions.
    pub(super) async fn revert(
        &self,
        vms: &mut [Vm],
        suite: &Suite,
        snapshot: &str,
    ) -> Result<(), String> {
        let started = Instant::now();
        self.ctx.progress(
            Phase::Snapshot,
            &self.scope(),
            format!(
                "{}: putting {} back to {snapshot}",
                suite.name,
                suite.vms.join(", ")
            ),
        );
        let jobs = vms
            .iter()
            .filter(|v| suite.vms.contains(&v.name))
            .map(|vm| self.revert_one(vm, snapshot));
        let sessions = futures::future::join_all(jobs).await;
        let mut fresh = sessions.into_iter();
        for vm in vms.iter_mut().filter(|v| suite.vms.contains(&v.name)) {
            let session = fresh.next().expect("one per VM")?;
            self.res
                .sessions
                .lock()
                .expect("not poisoned")
                .push(session.clone());
            vm.session = session;
        }
        self.ctx.progress(
            Phase::Snapshot,
            &self.scope(),
            format!(
                "{}: {} put back to {snapshot} in {:.1}s",
                suite.name,
                suite.vms.join(", "),
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }

    async fn revert_one(&self, vm: &Vm, snapshot: &str) -> Result<Arc<SshSession>, String> {
        let host = &self.ready.host;
        let fail =
            |what: &str, e: String| format!("reverting {} to {snapshot}: {what}: {e}", vm.name);
        libvirt::revert(host.transport.as_ref(), &self.domain(&vm.name), snapshot)
            .await
            .map_err(|e| fail("revert", format!("{e:#}")))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let session =
            SshSession::connect_until(&vm.target, &vm.policy, deadline, host.jump.as_deref())
                .await
                .map_err(|e| fail("reconnect", e.to_string()))?;
        // The guest clock stands at the snapshot's time: set it, and check the address held.
        let now = chrono::Utc::now().timestamp();
        let check = format!("date -u -s @{now} >/dev/null && ip -o -4 addr show");
        let mut out = Collect::default();
        session
            .exec(
                &Command::new(check, Duration::from_secs(30)).sudo(true),
                &mut out,
            )
            .await
            .map_err(|e| fail("clock", e.to_string()))?;
        if let Some(ip) = &vm.private_ip
            && !out.stdout_text().contains(&format!(" {ip}/"))
        {
            return Err(fail("address", format!("{ip} is gone after the revert")));
        }
        Ok(Arc::new(session))
    }
}
