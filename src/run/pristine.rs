//! A pristine VM for every suite: right after boot (and provisioning) each VM of a lane is
//! snapshotted, memory included, and before every further suite its VMs are put back to that
//! snapshot: reverted, reconnected, checked (SSH answers, the address did not change) and their
//! clock set, since it jumps back to the snapshot's time. A revert answers SSH in seconds where a
//! cold boot takes most of a minute under TCG.

use std::time::Instant;

use super::Keep;
use super::lane::Lane;
use crate::model::event::{EventKind, Phase};
use crate::suite::Suite;
use crate::vm::{Driver, Vm};

/// The one snapshot a lane takes of each VM.
pub const SNAPSHOT: &str = "metalab-pristine";

impl Lane<'_> {
    /// Snapshots every VM, when a later suite of the lane wants pristine VMs or the VMs may be
    /// kept (`metalab run --on` puts them back to it). Returns the snapshot's name, or `None`
    /// when not needed or not possible here (said once).
    pub(super) async fn snapshots(&self, driver: &dyn Driver, vms: &[Vm]) -> Option<String> {
        let later = self.suites.iter().skip(1).any(|s| s.pristine);
        if !later && self.ctx.keep == Keep::Never {
            return None;
        }
        let take = |_log| async move {
            for vm in vms {
                driver.snapshot(&vm.name, SNAPSHOT).await?;
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
        driver: &dyn Driver,
        vms: &mut [Vm],
        suite: &Suite,
        snapshot: &str,
    ) -> Result<(), String> {
        let started = Instant::now();
        let who = suite.vms.join(", ");
        self.progress(
            Phase::Snapshot,
            format!("{}: putting {who} back to {snapshot}", suite.name),
        );
        let jump = self.ready.host.jump.as_deref();
        let jobs = vms
            .iter()
            .filter(|v| suite.vms.contains(&v.name))
            .map(|vm| async move {
                let fail = |e: String| format!("reverting {} to {snapshot}: {e}", vm.name);
                driver
                    .revert(&vm.name, snapshot)
                    .await
                    .map_err(|e| fail(format!("revert: {e:#}")))?;
                vm.reconnect(jump).await.map_err(fail)
            });
        let sessions = futures::future::join_all(jobs).await;
        let mut fresh = sessions.into_iter();
        for vm in vms.iter_mut().filter(|v| suite.vms.contains(&v.name)) {
            let session = fresh.next().expect("one per VM")?;
            self.res.opened(&vm.name, &session);
            vm.session = session;
        }
        self.progress(
            Phase::Snapshot,
            format!(
                "{}: {who} put back to {snapshot} in {:.1}s",
                suite.name,
                started.elapsed().as_secs_f64()
            ),
        );
        Ok(())
    }
}
