//! `metalab reap` and `metalab hosts` in EC2: the instances, key pairs and security groups that
//! carry a `metalab:run` tag, judged by their run. Nothing without that tag is looked at.
//!
//! A run this state directory knows is judged as on the host: never while its metalab lives,
//! nor kept VMs before their expiry. A run it does not know may be another runner's, still
//! going: it is judged by its `metalab:expires` tag alone, however old.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Ec2Provider, RELEASE_DEADLINE, api_error};
use crate::ec2::{EXPIRES_TAG, Instance, RUN_TAG};
use crate::ids::RunId;
use crate::journal::{Owner, Verdict, judge};
use crate::provider::found::{Found, Outcome};
use crate::state::StateDir;

impl Ec2Provider {
    /// The region's instances that carry a `metalab:run` tag, terminated ones left out.
    pub async fn instances(&self) -> anyhow::Result<Vec<Instance>> {
        self.ec2()
            .await
            .instances_tagged(RUN_TAG, None)
            .await
            .map_err(api_error)
    }

    /// Terminates the instances, then deletes the security groups and key pairs, of runs that
    /// are over or past their expiry; with `dry_run`, only says which. Every list is read
    /// before anything is removed: a list that cannot be read is an error.
    pub async fn reap(&self, dry_run: bool) -> anyhow::Result<Vec<Found>> {
        let now = Utc::now();
        let ec2 = self.ec2().await;
        let instances = self.instances().await?;
        let groups = ec2
            .security_groups_tagged(RUN_TAG, None)
            .await
            .map_err(api_error)?;
        let keys = ec2
            .key_pairs_tagged(RUN_TAG, None)
            .await
            .map_err(api_error)?;
        let deadline = Instant::now() + RELEASE_DEADLINE;
        let judged = |tags: &BTreeMap<String, String>| due(tags, &self.state, now);

        let mut found = Vec::new();
        let doomed: Vec<&Instance> = instances
            .iter()
            .filter(|i| judged(&i.tags).is_ok())
            .collect();
        if !dry_run && !doomed.is_empty() {
            let ids: Vec<String> = doomed.iter().map(|i| i.id.clone()).collect();
            // A failed terminate shows below, as an instance that is not gone.
            let _ = ec2.terminate(&ids).await;
        }
        for i in &instances {
            let what = format!(
                "instance {} ({}, {}, {})",
                i.name, i.id, i.instance_type, i.state
            );
            let outcome = self
                .settle(judged(&i.tags), dry_run, async {
                    self.until_terminated(&i.id, deadline).await.map(drop)
                })
                .await;
            found.push(Found {
                what,
                run: run_of(&i.tags),
                outcome,
            });
        }
        for g in &groups {
            let outcome = self
                .settle(
                    judged(&g.tags),
                    dry_run,
                    self.delete_group_until_gone(&g.id, deadline),
                )
                .await;
            found.push(Found {
                what: format!("security group {} ({})", g.name, g.id),
                run: run_of(&g.tags),
                outcome,
            });
        }
        for k in &keys {
            // The key pair, and the private key beside the run's record, if this runner made it.
            let delete = async {
                ec2.delete_key_pair(&k.name).await.map_err(api_error)?;
                let mut left = Vec::new();
                if let Some(run) = run_of(&k.tags) {
                    self.remove_private_key(&run, &mut left);
                }
                anyhow::ensure!(left.is_empty(), "{}", left.join("; "));
                Ok(())
            };
            let outcome = self.settle(judged(&k.tags), dry_run, delete).await;
            found.push(Found {
                what: format!("key pair {} ({})", k.name, k.id),
                run: run_of(&k.tags),
                outcome,
            });
        }
        Ok(found)
    }

    /// What becomes of one resource judged `verdict`: kept, left by a dry run, or removed by
    /// `remove`.
    async fn settle(
        &self,
        verdict: Result<String, String>,
        dry_run: bool,
        remove: impl Future<Output = anyhow::Result<()>>,
    ) -> Outcome {
        match verdict {
            Err(why) => Outcome::Kept { why },
            Ok(why) if dry_run => Outcome::WouldRemove { why },
            Ok(why) => match remove.await {
                Ok(()) => Outcome::Removed { why },
                Err(e) => Outcome::NotRemoved {
                    why,
                    problem: format!("{e:#}"),
                },
            },
        }
    }
}

fn run_of(tags: &BTreeMap<String, String>) -> Option<RunId> {
    tags.get(RUN_TAG).and_then(|r| RunId::parse(r))
}

/// Whether a resource is due for removal (`Ok(why)`), or why it is kept (`Err(why)`).
fn due(
    tags: &BTreeMap<String, String>,
    state: &StateDir,
    now: DateTime<Utc>,
) -> Result<String, String> {
    let Some(run) = run_of(tags) else {
        return Err(format!("its {RUN_TAG} tag is not a run id"));
    };
    if Owner::load(&state.run(&run)).is_none() {
        let expires = tags
            .get(EXPIRES_TAG)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        return match expires {
            Some(t) if t <= now => Ok(format!(
                "its run is not known here, and its expiry ({}) has passed",
                t.format("%Y-%m-%d %H:%M UTC")
            )),
            Some(t) => Err(format!(
                "its run is not known here (another runner's?) and expires at {}",
                t.format("%Y-%m-%d %H:%M UTC")
            )),
            None => Err(format!(
                "its run is not known here and it has no readable {EXPIRES_TAG} tag"
            )),
        };
    }
    match judge(state, &run, now) {
        Verdict::Reap { why } => Ok(why),
        Verdict::Live { pid } => Err(format!("its run is still going (pid {pid})")),
        Verdict::Kept { until } => Err(format!("its run is kept until {until}")),
        Verdict::Recent => Err("its run began under an hour ago".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(run: &RunId, expires: DateTime<Utc>) -> BTreeMap<String, String> {
        BTreeMap::from([
            (RUN_TAG.to_string(), run.to_string()),
            (EXPIRES_TAG.to_string(), expires.to_rfc3339()),
        ])
    }

    #[test]
    fn a_run_not_known_here_goes_by_its_expiry_alone() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().to_path_buf());
        let now = Utc::now();
        // Begun a day ago, on another runner: its age says nothing.
        let run = RunId::parse(&format!(
            "{}-abcd",
            (now - chrono::TimeDelta::days(1)).format("%Y%m%d-%H%M%S")
        ))
        .unwrap();
        let kept = due(&tags(&run, now + chrono::TimeDelta::hours(1)), &state, now).unwrap_err();
        assert!(kept.contains("another runner's"), "{kept}");
        let why = due(
            &tags(&run, now - chrono::TimeDelta::minutes(1)),
            &state,
            now,
        )
        .unwrap();
        assert!(why.contains("expiry"), "{why}");
        let mut untagged = tags(&run, now);
        untagged.remove(EXPIRES_TAG);
        assert!(due(&untagged, &state, now).is_err());
        untagged.insert(RUN_TAG.into(), "not-a-run".into());
        assert!(
            due(&untagged, &state, now)
                .unwrap_err()
                .contains("not a run id")
        );
    }
}
