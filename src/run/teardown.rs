//! A lane's teardown: collect what the VMs can still tell, then destroy them and sweep by name.
//!
//! `vagrant destroy` goes first because it also tidies Vagrant's own state; the sweep by the
//! lane's name prefix then removes whatever Vagrant did not know about (a domain half-created
//! when `up` was killed) and proves that nothing of the lane is left. A second signal skips
//! straight to the sweep.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::lane::{Created, Lane};
use super::log::LogSink;
use super::{Keep, VM_LAB_DIR};
use crate::exit::Status;
use crate::host::subnet;
use crate::lab::LabState;
use crate::model::event::{EventKind, Phase};
use crate::vm::{Driver, guest};

impl Lane<'_> {
    /// Tears down what the lane created, unless the plan keeps it. Returns an error when
    /// something could not be removed.
    /// `retrying`: fresh VMs come next, so nothing is kept.
    pub(super) async fn teardown(&self, status: Status, retrying: bool) -> Result<(), String> {
        let created = self.res.created.lock().expect("not poisoned").take();
        let Some(created) = created else {
            return Ok(());
        };
        if let Some(until) = self.keep_until(status).filter(|_| !retrying) {
            return self.keep(created, until).await;
        }
        let scope = self.scope();
        // Diagnostics are for failures: a passing lane's VMs have nothing to explain. A signal
        // skips them, and one arriving meanwhile cuts them short: the VMs must go first.
        if status != Status::Passed && self.ctx.shutdown.signal().is_none() {
            let collect =
                self.ctx
                    .phase(Phase::Collect, &scope, "diagnostics from every VM", |log| {
                        self.collect(log)
                    });
            tokio::select! {
                _ = collect => {}
                _ = self.ctx.shutdown.requested() => {}
            }
        }
        self.close_sessions().await;
        let driver = &created.driver;
        let result = self
            .ctx
            .phase(
                Phase::Destroy,
                &scope,
                "vagrant destroy, then a sweep by name",
                |log| async move { self.destroy(log, driver).await },
            )
            .await;
        let _ = std::fs::remove_file(self.ctx.state.run(&self.ctx.run_id).lab_state(&self.name));
        if let Some(claim) = &created.claim {
            subnet::release(&self.ready.host, claim).await;
        }
        created.lease.release().await;
        if result.is_err() {
            return Err(
                "teardown incomplete: see lifecycle/destroy.log; `metalab reap` retries it"
                    .to_string(),
            );
        }
        let _ = self
            .ctx
            .journal
            .lock()
            .expect("not poisoned")
            .done(created.entry);
        Ok(())
    }

    /// When the VMs may be removed, if the plan keeps them after this outcome.
    fn keep_until(&self, status: Status) -> Option<DateTime<Utc>> {
        if self.ctx.shutdown.signal().is_some() {
            return None;
        }
        let keep = match self.ctx.keep {
            Keep::Never => None,
            Keep::Always(d) => Some(d),
            Keep::OnFailure(d) => (status != Status::Passed).then_some(d),
        };
        keep.map(|d| {
            Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))
        })
    }

    /// Leaves the VMs up, records until when, and says how to get in and how to remove them.
    async fn keep(&self, created: Created, until: DateTime<Utc>) -> Result<(), String> {
        // The lane's networks now exist on the host, which reserves their subnets from here on.
        if let Some(claim) = &created.claim {
            subnet::release(&self.ready.host, claim).await;
        }
        created.lease.release().await;
        let host = &self.ready.host;
        let mut lab = self
            .res
            .lab
            .lock()
            .expect("not poisoned")
            .clone()
            .unwrap_or_else(|| LabState {
                run_id: self.ctx.run_id.clone(),
                lane: self.name.clone(),
                pid: std::process::id(),
                host: host.name.clone(),
                jump: host.jump.as_ref().map(|j| j.access()),
                project: created.project.clone(),
                subnet: created
                    .claim
                    .as_ref()
                    .map(|c| c.prefix.clone())
                    .unwrap_or_default(),
                vms: Vec::new(),
                created: Utc::now(),
                keep_until: None,
            });
        lab.keep_until = Some(until);
        lab.save(&self.ctx.state)
            .map_err(|e| format!("cannot record the kept lab: {e:#}"))?;
        self.ctx.finish_owner(Some(until));
        let id = &self.ctx.run_id;
        let first = lab.vms.first().map_or("<vm>", |v| v.name.as_str());
        let local = until
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M %Z");
        self.ctx.events.emit(EventKind::Notice {
            message: format!(
                "VMs kept until {local}; then `metalab reap` removes them.\n    \
                 run suites: metalab run --on {id} [SUITE...]\n    \
                 a shell:    metalab login --run {id} {first}\n    \
                 a command:  metalab exec --run {id} {first} -- <command>\n    \
                 remove now: metalab destroy --run {id}"
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

    /// What every VM can still tell, from inside (over its current session) and from the host,
    /// and what it left in its artifacts directory.
    async fn collect(&self, _log: PathBuf) -> anyhow::Result<()> {
        let current = self.res.current.lock().expect("not poisoned").clone();
        let driver = self.driver();
        let dir = if self.name.is_empty() {
            self.ctx.artifacts.join("vms")
        } else {
            self.ctx.artifacts.join("vms").join(&self.name)
        };
        let jobs = self.vms.iter().map(|vm| {
            let dir = dir.clone();
            let session = current.get(vm).cloned();
            let driver = driver.as_ref();
            async move {
                let mut sink = LogSink::append(&dir.join(format!("{vm}.log")), &self.ctx.budget);
                if let Some(driver) = driver {
                    sink.note(&driver.diagnostics(vm).await);
                }
                let Some(session) = session else { return };
                guest::diagnostics(session.as_ref(), &mut sink).await;
                let got = crate::transport::files::get_path(
                    session.as_ref(),
                    &format!("{VM_LAB_DIR}/artifacts"),
                    &dir.join(vm),
                    true,
                    Duration::from_secs(60),
                    &self.ctx.budget,
                )
                .await;
                for line in got.map(|g| g.notes()).unwrap_or_default() {
                    sink.note(&line);
                }
            }
        });
        futures::future::join_all(jobs).await;
        Ok(())
    }

    async fn destroy(&self, log: PathBuf, driver: &dyn Driver) -> anyhow::Result<()> {
        let mut sink = LogSink::append(&log, &self.ctx.budget);
        let started = Instant::now();
        let shutdown = self.ctx.shutdown.clone();
        let hurry = Box::pin(async move {
            shutdown.fast().await;
        });
        let done = driver
            .destroy(self.ctx.config.timeouts.destroy, &mut sink, hurry)
            .await?;
        if let Some(p) = done.problem {
            self.progress_destroy(p);
        }
        if !done.swept.is_empty() {
            self.progress_destroy(format!("swept by name: {}", done.swept.describe()));
        }
        self.progress_destroy(format!(
            "nothing of the run is left ({:.1}s)",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    fn progress_destroy(&self, message: String) {
        self.ctx.progress(Phase::Destroy, &self.scope(), message);
    }
}
