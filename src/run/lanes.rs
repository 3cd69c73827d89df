//! Lane planning: how a run's suites are spread over VM sets ("lanes") and the lanes over the
//! hosts, within each host's room for VMs. Each lane brings up the VMs its suites need and runs
//! them one after the other; lanes run at the same time.

use super::host_prep::HostReady;
use super::lane::Lane;
use super::{Plan, RunCtx};
use crate::host::subnet;
use crate::suite::Suite;

/// A planned lane: the host it goes to (an index into the hosts), its name, suites and VMs.
#[derive(Debug, Clone)]
pub struct Shape {
    pub host: usize,
    /// "" for a run with one lane; `l1`, `l2`, ... otherwise. Part of every libvirt name.
    pub name: String,
    pub suites: Vec<Suite>,
    pub vms: Vec<String>,
}

/// Spreads `suites` over as many lanes as the hosts have `room` for (VMs each), each lane a VM
/// set of its own running its share one suite after the other, heaviest suites first onto the
/// least loaded lane. `pinned`: the lab pins subnets, so two of its lanes cannot be up on one
/// host at once. No suites (`metalab up`): one lane with all of `vms`.
pub fn shapes(suites: &[Suite], vms: &[String], room: &[usize], pinned: bool) -> Vec<Shape> {
    let one = |suites: Vec<Suite>, vms: Vec<String>| Shape {
        host: 0,
        name: String::new(),
        suites,
        vms,
    };
    if suites.is_empty() {
        return vec![one(Vec::new(), vms.to_vec())];
    }
    let most = suites
        .len()
        .min(room.iter().sum::<usize>())
        .min(if pinned { room.len() } else { usize::MAX })
        .max(1);
    for count in (1..=most).rev() {
        let groups = split(suites, count);
        let lane_vms: Vec<Vec<String>> = groups.iter().map(|g| needed_vms(vms, g)).collect();
        let Some(hosts) = place(&lane_vms, room, pinned) else {
            continue;
        };
        return groups
            .into_iter()
            .zip(lane_vms)
            .zip(hosts)
            .enumerate()
            .map(|(i, ((suites, vms), host))| Shape {
                host,
                name: if count == 1 {
                    String::new()
                } else {
                    format!("l{}", i + 1)
                },
                suites,
                vms,
            })
            .collect();
    }
    // Not even one lane fits the hosts' room: run one anyway, on the first host.
    vec![one(suites.to_vec(), needed_vms(vms, suites))]
}

/// The lanes of a run on its prepared hosts.
pub(super) fn plan<'a>(plan: &Plan, ctx: &'a RunCtx<'a>, ready: &'a [HostReady]) -> Vec<Lane<'a>> {
    let room: Vec<usize> = ready.iter().map(|h| h.vm_slots).collect();
    shapes(&plan.suites, &plan.vms, &room, pins_subnets(plan))
        .into_iter()
        .map(|s| Lane::new(ctx, &ready[s.host], s.name, s.suites, s.vms))
        .collect()
}

/// Whether the lab pins subnets (networks whose addresses the Vagrantfile fixes).
pub fn pins_subnets(plan: &Plan) -> bool {
    !plan
        .description
        .pinned_subnets(&plan.vms, Some(&subnet::probe_network()))
        .is_empty()
}

/// How many VMs a host can run at once: one per core under TCG (each keeps a core busy), two
/// under KVM, as many as fit in the available memory (a VM holds about 1.5 times its configured
/// memory), capped by `[capacity] vms`.
pub fn vm_slots(
    cores: u32,
    available_mib: u64,
    vm_memory_mib: u32,
    kvm: bool,
    cap: Option<usize>,
) -> usize {
    let per_vm = u64::from(vm_memory_mib) * 3 / 2;
    let by_memory = (available_mib / per_vm.max(1)) as usize;
    let by_cores = cores as usize * if kvm { 2 } else { 1 };
    let slots = by_memory.min(by_cores).max(1);
    cap.map_or(slots, |cap| slots.min(cap.max(1)))
}

/// `count` groups of suites, balanced by weight; each group sorted by name.
fn split(suites: &[Suite], count: usize) -> Vec<Vec<Suite>> {
    let mut groups: Vec<Vec<Suite>> = vec![Vec::new(); count];
    let mut load = vec![0usize; count];
    let mut by_weight: Vec<&Suite> = suites.iter().collect();
    by_weight.sort_by_key(|s| (std::cmp::Reverse(weight(s)), s.name.clone()));
    for s in by_weight {
        let i = (0..count).min_by_key(|&i| load[i]).unwrap_or(0);
        load[i] += weight(s);
        groups[i].push(s.clone());
    }
    for g in &mut groups {
        g.sort_by(|a, b| a.name.cmp(&b.name));
    }
    groups
}

/// The Vagrantfile's VMs (in its order) that any of the suites needs.
fn needed_vms(all: &[String], suites: &[Suite]) -> Vec<String> {
    all.iter()
        .filter(|v| suites.iter().any(|s| s.vms.contains(v)))
        .cloned()
        .collect()
}

/// Which host each lane goes to, biggest lanes first into the host with most room left (with
/// `one_per_host`, a host takes one lane at most); `None` when they do not all fit.
fn place(lanes: &[Vec<String>], room: &[usize], one_per_host: bool) -> Option<Vec<usize>> {
    let mut room = room.to_vec();
    let mut order: Vec<usize> = (0..lanes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lanes[i].len()));
    let mut host_of = vec![0; lanes.len()];
    for i in order {
        let h = (0..room.len()).max_by_key(|&h| (room[h], std::cmp::Reverse(h)))?;
        if room[h] < lanes[i].len() {
            return None;
        }
        room[h] = if one_per_host {
            0
        } else {
            room[h] - lanes[i].len()
        };
        host_of[i] = h;
    }
    Some(host_of)
}

/// A rough cost of a suite, for balancing lanes until recorded durations are used.
fn weight(s: &Suite) -> usize {
    1 + s.tests.len()
        + s.benchmarks
            .iter()
            .map(|b| (b.warmup + b.repeats) as usize * 3)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(name: &str, vms: &[&str], tests: usize) -> Suite {
        let text = format!(
            "vms = {vms:?}\n{}",
            (0..tests)
                .map(|i| format!("[[test]]\nname = \"t{i}\"\nrun = \"true\"\n"))
                .collect::<String>()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join("suite.toml"), text).unwrap();
        let known = vec!["node1".to_string(), "node2".to_string()];
        let known = crate::suite::Known {
            vms: &known,
            images: &[],
        };
        crate::suite::load_all(dir.path(), &known)
            .unwrap()
            .remove(0)
    }

    fn vms(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lanes_that_fit_are_placed_and_lanes_that_do_not_are_refused() {
        // Two single-VM lanes fit a host with two slots; a two-VM lane and a one-VM lane do not.
        assert_eq!(
            place(&[vms(&["node1"]), vms(&["node1"])], &[2], false),
            Some(vec![0, 0])
        );
        assert_eq!(
            place(&[vms(&["node1", "node2"]), vms(&["node1"])], &[2], false),
            None
        );
        // Over two hosts, the bigger lane goes where there is most room.
        assert_eq!(
            place(&[vms(&["node1"]), vms(&["node1", "node2"])], &[1, 2], false),
            Some(vec![0, 1])
        );
        // A lab that pins subnets gets a host to each lane, however much room one has.
        assert_eq!(place(&[vms(&["node1"]), vms(&["node1"])], &[4], true), None);
        assert_eq!(
            place(&[vms(&["node1"]), vms(&["node1"])], &[4, 1], true),
            Some(vec![0, 1])
        );
    }

    #[test]
    fn suites_split_by_weight_and_every_suite_lands_once() {
        let all = vec![
            suite("a", &["node1"], 5),
            suite("b", &["node1"], 1),
            suite("c", &["node1", "node2"], 1),
        ];
        let groups = split(&all, 2);
        let mut names: Vec<String> = groups.iter().flatten().map(|s| s.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
        // The heaviest suite gets a lane to itself.
        assert!(groups.iter().any(|g| g.len() == 1 && g[0].name == "a"));
        assert_eq!(
            needed_vms(&vms(&["node1", "node2"]), &groups[1]),
            vms(&["node1", "node2"])
        );
    }
}
