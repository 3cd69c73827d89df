//! `metalab reap`: finds what earlier runs left behind on a host and removes it.
//!
//! Candidates come from three places: the run journals in the state directory, the real libvirt
//! resources, whose names carry run ids (domains, networks, volumes, and an untrusted run's
//! nftables fence), and the processes on the
//! host tagged with a run id (a `vagrant up` whose metalab was killed goes on creating VMs). The
//! real resources are the truth; a journal only adds what Vagrant knew (the project to `vagrant
//! destroy`). A run whose owner process still lives, or whose kept VMs have not expired, is never
//! touched. A dead run's processes are ended first, then its VMs destroyed, then libvirt and
//! Vagrant's index are surveyed again: a run counts as removed only when that survey finds
//! nothing of it, and a survey that fails is an error, never "nothing left".

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::host::Host;
use crate::ids::RunId;
use crate::journal::{Journal, Owner, Resource};
pub use crate::journal::{Verdict, judge};
use crate::libvirt::{self, Leftovers};
use crate::state::{FileLock, StateDir};
use crate::transport::Discard;

/// What reap decided about one run.
#[derive(Debug, Clone)]
pub struct Finding {
    pub run_id: RunId,
    pub verdict: Verdict,
    /// The libvirt resources of the run on the host.
    pub leftovers: Leftovers,
    /// Vagrant projects the journal says were created and not torn down.
    pub projects: Vec<crate::vagrant::Project>,
    /// How many processes on the host carry the run's tag.
    pub processes: usize,
}

impl Finding {
    pub fn is_empty(&self) -> bool {
        self.leftovers.is_empty() && self.projects.is_empty() && self.processes == 0
    }

    /// What the run left, in words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.processes > 0 {
            parts.push(format!("{} process(es)", self.processes));
        }
        if !self.leftovers.is_empty() {
            parts.push(self.leftovers.describe());
        }
        if parts.is_empty() {
            parts.push(format!(
                "{} Vagrant project(s) on record",
                self.projects.len()
            ));
        }
        parts.join("; ")
    }
}

/// How removing one run's leftovers ended.
#[derive(Debug, Clone)]
pub struct Reaped {
    /// What the run had.
    pub finding: Finding,
    /// `None`: a survey afterwards found nothing of it. Otherwise what is left, or why it could
    /// not be checked.
    pub problem: Option<String>,
}

impl Reaped {
    /// "reaped run X: what it had", or "run X is not gone: why".
    pub fn describe(&self) -> String {
        let f = &self.finding;
        match &self.problem {
            None => format!("reaped run {}: {}", f.run_id, f.describe()),
            Some(p) => format!("run {} is not gone ({}): {p}", f.run_id, f.describe()),
        }
    }
}

/// Looks at every run the state directory or the host knows about.
pub async fn survey(
    host: &Host,
    state: &StateDir,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Finding>> {
    let all = libvirt::find(host.transport.as_ref(), "metalab-").await?;
    let processes = tagged_processes(host).await?;
    let mut by_run: BTreeMap<RunId, Leftovers> = BTreeMap::new();
    for (names, pick) in [
        (&all.domains, 0usize),
        (&all.networks, 1),
        (&all.volumes, 2),
        (&all.fences, 3),
    ] {
        for entry in names {
            // A fence is "<family> <name>".
            let name = entry.rsplit(' ').next().unwrap_or(entry);
            if let Some(id) = RunId::from_resource_name(name) {
                let l = by_run.entry(id).or_default();
                [
                    &mut l.domains,
                    &mut l.networks,
                    &mut l.volumes,
                    &mut l.fences,
                ][pick]
                    .push(entry.clone());
            }
        }
    }
    for id in state.run_ids().into_iter().chain(processes.keys().cloned()) {
        by_run.entry(id).or_default();
    }
    Ok(by_run
        .into_iter()
        .map(|(run_id, leftovers)| {
            let projects = pending_projects(state, &run_id, &host.name);
            let verdict = judge(state, &run_id, now);
            Finding {
                processes: processes.get(&run_id).copied().unwrap_or(0),
                run_id,
                verdict,
                leftovers,
                projects,
            }
        })
        .filter(|f| !f.is_empty())
        .collect())
}

/// Vagrant projects on `host` that the run's journal says were created and not torn down.
fn pending_projects(state: &StateDir, run: &RunId, host: &str) -> Vec<crate::vagrant::Project> {
    Journal::pending(&state.run(run).journal())
        .into_iter()
        .filter_map(|(_, r)| match r {
            Resource::VagrantProject {
                project, host: h, ..
            } if h == host => Some(project),
            Resource::VagrantProject { .. }
            | Resource::MetalDevice { .. }
            | Resource::MetalKey { .. }
            | Resource::Ec2 { .. } => None,
            Resource::Subnet { .. } => None,
        })
        .collect()
}

/// Removes what `survey` marked for reaping: ends the run's processes, destroys its VMs, sweeps
/// its names, and surveys again. Each run says whether that survey found it gone.
pub async fn reap(host: &Host, state: &StateDir, findings: &[Finding]) -> Vec<Reaped> {
    let mut reaped = Vec::new();
    for f in findings
        .iter()
        .filter(|f| matches!(f.verdict, Verdict::Reap { .. }))
    {
        let problem = remove_run(host, state, f)
            .await
            .err()
            .map(|e| format!("{e:#}"));
        reaped.push(Reaped {
            finding: f.clone(),
            problem,
        });
    }
    for r in reaped.iter_mut().filter(|r| r.problem.is_none()) {
        let under = format!("/{}/{}/", crate::state::RUNS, r.finding.run_id);
        r.problem =
            crate::vagrant::index::forget(host.transport.as_ref(), &host.vagrant_home(), &under)
                .await
                .err()
                .map(|e| format!("{e:#}"));
        if r.problem.is_none() {
            mark_done(state, &r.finding.run_id);
        }
    }
    reaped
}

async fn remove_run(host: &Host, state: &StateDir, f: &Finding) -> anyhow::Result<()> {
    let t = host.transport.as_ref();
    end_processes(host, &f.run_id).await?;
    for project in &f.projects {
        // Lets Vagrant drop the machines from its index; the sweep below does the rest.
        let _ = tokio::time::timeout(
            Duration::from_secs(120),
            project.destroy(t, Duration::from_secs(110), &mut Discard),
        )
        .await;
    }
    let prefix = f.run_id.resource_prefix();
    libvirt::sweep(t, &prefix).await?;
    let left = libvirt::find(t, &prefix).await?;
    if !left.is_empty() {
        anyhow::bail!("still present after removal: {}", left.describe());
    }
    let run = state.run(&f.run_id);
    crate::mux::stop(&run);
    for lab in run.lab_states() {
        let _ = std::fs::remove_file(lab);
    }
    Ok(())
}

/// Lists the run ids in the environment of processes on the host, with how many carry each.
const TAGGED: &str = r#"grep -saozh "^@VAR@=[^[:cntrl:]]*" /proc/[0-9]*/environ | tr '\0' '\n' | cut -d= -f2 | sort | uniq -c"#;

/// Ends a dead run's processes on the host (TERM, then KILL after 10 s): Vagrant and whatever it
/// started, found by the run's tag in their environment. Fails if any survive.
const END_TAGGED: &str = r#"
list() { grep -lsaz "^@VAR@=$RUN\$" /proc/[0-9]*/environ | cut -d/ -f3 | grep -vx "$$" || true; }
p=$(list); [ -n "$p" ] || exit 0
kill -TERM $p 2>/dev/null || true
for _ in $(seq 50); do p=$(list); [ -n "$p" ] || exit 0; sleep 0.2; done
kill -KILL $p 2>/dev/null || true
sleep 0.5; p=$(list); [ -n "$p" ] || exit 0
echo "processes of run $RUN survive SIGKILL: $p" >&2; exit 1
"#;

async fn tagged_processes(host: &Host) -> anyhow::Result<BTreeMap<RunId, usize>> {
    let script = TAGGED.replace("@VAR@", crate::vagrant::RUN_TAG);
    let cmd = crate::transport::Command::new(script, Duration::from_secs(30)).sudo(true);
    let listed = crate::transport::stdout_of(host.transport.as_ref(), &cmd).await?;
    Ok(listed
        .lines()
        .filter_map(|l| {
            let (count, id) = l.trim().split_once(' ')?;
            Some((RunId::parse(id.trim())?, count.parse().ok()?))
        })
        .collect())
}

async fn end_processes(host: &Host, run: &RunId) -> anyhow::Result<()> {
    let script = END_TAGGED.replace("@VAR@", crate::vagrant::RUN_TAG);
    let cmd = crate::transport::Command::new(script, Duration::from_secs(60))
        .env("RUN", run.as_str())
        .sudo(true);
    crate::transport::stdout_of(host.transport.as_ref(), &cmd)
        .await
        .map(drop)
}

/// Closes a reaped run's journal and owner record, so later surveys skip it.
pub fn mark_done(state: &StateDir, run: &RunId) {
    let dir = state.run(run);
    if let Ok(mut j) = Journal::open(&dir) {
        for (id, _) in Journal::pending(&dir.journal()) {
            let _ = j.done(id);
        }
    }
    let mut owner = Owner::load(&dir).unwrap_or_else(Owner::me);
    owner.finished = true;
    owner.keep_until = None;
    let _ = owner.save(&dir);
}

/// Reaps under the host's reap lock, so two reapers (or two starting runs) never race.
pub async fn locked_survey_and_reap(
    host: &Host,
    state: &StateDir,
    dry_run: bool,
) -> anyhow::Result<(Vec<Finding>, Vec<Reaped>)> {
    let _lock = FileLock::acquire(state.lock("reap")).await?;
    let findings = survey(host, state, Utc::now()).await?;
    let reaped = if dry_run {
        Vec::new()
    } else {
        reap(host, state, &findings).await
    };
    Ok((findings, reaped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, StateDir) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().to_path_buf());
        (dir, state)
    }

    fn with_owner(state: &StateDir, edit: impl FnOnce(&mut Owner)) -> RunId {
        let id = RunId::generate();
        let mut o = Owner::me();
        edit(&mut o);
        o.save(&state.run(&id)).unwrap();
        id
    }

    #[test]
    fn a_run_whose_process_lives_is_left_alone() {
        let (_d, state) = state();
        let id = with_owner(&state, |_| {});
        assert!(matches!(
            judge(&state, &id, Utc::now()),
            Verdict::Live { .. }
        ));
    }

    #[test]
    fn a_dead_owner_or_a_finished_run_is_reaped() {
        let (_d, state) = state();
        let dead = with_owner(&state, |o| o.boot_id = "before a reboot".into());
        let finished = with_owner(&state, |o| o.finished = true);
        assert!(matches!(
            judge(&state, &dead, Utc::now()),
            Verdict::Reap { .. }
        ));
        assert!(matches!(
            judge(&state, &finished, Utc::now()),
            Verdict::Reap { .. }
        ));
    }

    #[test]
    fn kept_vms_are_reaped_only_after_their_expiry() {
        let (_d, state) = state();
        let until = Utc::now() + chrono::TimeDelta::hours(2);
        let id = with_owner(&state, |o| o.keep_until = Some(until));
        assert_eq!(judge(&state, &id, Utc::now()), Verdict::Kept { until });
        let later = until + chrono::TimeDelta::minutes(1);
        assert!(matches!(judge(&state, &id, later), Verdict::Reap { .. }));
    }

    #[test]
    fn a_run_unknown_here_is_reaped_only_when_old() {
        let (_d, state) = state();
        let id = RunId::generate();
        assert_eq!(judge(&state, &id, Utc::now()), Verdict::Recent);
        let later = Utc::now() + chrono::TimeDelta::hours(2);
        assert!(matches!(judge(&state, &id, later), Verdict::Reap { .. }));
    }
}
