//! Getting a host ready, once per host and run: packages and daemons (scripts/setup-host),
//! leftovers of earlier runs reaped, the lab synced (remote hosts), the box installed, the
//! accelerator probed, and the conditions recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::log::LogSink;
use super::{RunCtx, Stop, conditions, lanes};
use crate::boxes::Recipe;
use crate::host::{self, Host};
use crate::model::event::{EventKind, Phase};
use crate::model::record::BoxInfo;
use crate::transport::Command;

/// A prepared host: everything a lane needs to bring up VMs there.
pub struct HostReady {
    pub host: Host,
    /// The version metalab built and registered (`METALAB_BOX_VERSION`); `None` when the box is
    /// the Vagrantfile's own.
    pub built_version: Option<String>,
    /// `kvm` or `tcg`.
    pub accel: &'static str,
    /// How this host is named in phases and logs when a run has several ("" otherwise).
    pub scope: String,
    /// How many VMs it may run at once.
    pub vm_slots: usize,
}

/// Names excluded from the lab sync: results, builds and VCS data the host does not need.
const SYNC_EXCLUDE: &[&str] = &["artifacts", ".git", "target", ".vagrant"];

pub async fn prepare(ctx: &RunCtx<'_>, host: Host, scope: String) -> Result<HostReady, Stop> {
    let setup = |log| prepare_host(ctx, &host, &scope, log);
    ctx.phase(
        Phase::Prepare,
        &scope,
        &format!("{}: scripts/setup-host", host.name),
        setup,
    )
    .await?;
    // A box build takes minutes: a run stopped while its host was being set up ends here.
    if let Some(sig) = ctx.shutdown.signal() {
        return Err(Stop::Signal(sig));
    }
    let detail = match &ctx.config.box_recipe {
        Some(_) => "metalab box",
        None => "the Vagrantfile's box",
    };
    let installed = ctx
        .phase(Phase::Box, &scope, detail, |log| async {
            let installed = match &ctx.config.box_recipe {
                Some(recipe) => install_built_box(ctx, &host, recipe, &scope, log).await?,
                None => find_named_box(ctx, &host, &scope).await?,
            };
            ctx.events.emit(EventKind::BoxReady(installed.info.clone()));
            Ok(installed)
        })
        .await?;
    let accel = host::accel::name(
        host::accel::resolve(&host, ctx.config.vm.accel, &installed.kernel, false).await,
    );
    let fingerprint = conditions::host_fingerprint(host.transport.as_ref()).await;
    let vm_slots = vm_slots(ctx, &host, fingerprint.cores, accel).await;
    ctx.events.emit(EventKind::Conditions(conditions::gather(
        fingerprint,
        ctx.config,
        accel,
        &installed.info.sha256,
    )));
    Ok(HostReady {
        host,
        built_version: installed.built_version,
        accel,
        scope,
        vm_slots,
    })
}

/// The box on a host, ready for `vagrant up`.
struct InstalledBox {
    info: BoxInfo,
    /// A kernel on the host for the accelerator probe (the box's, when it has one).
    kernel: String,
    built_version: Option<String>,
}

/// Runs scripts/setup-host (idempotent, a second or so when all is in place), reaps what dead
/// runs left, and syncs the lab to a remote host.
async fn prepare_host(
    ctx: &RunCtx<'_>,
    host: &Host,
    scope: &str,
    log: PathBuf,
) -> anyhow::Result<()> {
    let script = include_str!("../../scripts/setup-host");
    // Passed as the script itself, not on stdin: commands inside it may read stdin.
    let cmd = Command::new(script, Duration::from_secs(20 * 60))
        .env("METALAB_HOME", host.home.clone())
        .sudo(true);
    let mut sink = LogSink::append(&log, &ctx.budget).on_line(|l| {
        if let Some(step) = l.strip_prefix("setup-host: ") {
            ctx.progress(Phase::Prepare, scope, step.to_string());
        }
    });
    let outcome = host.transport.exec(&cmd, &mut sink).await?;
    if !outcome.success() {
        anyhow::bail!(
            "host setup failed ({}): {}",
            outcome.describe(),
            sink.last_line().unwrap_or_default()
        );
    }
    let (_, reaped) = crate::reap::locked_survey_and_reap(host, &ctx.state, false).await?;
    for r in reaped {
        ctx.progress(Phase::Prepare, scope, r.describe());
    }
    if let Some(dir) = &host.lab_dir {
        let stats =
            host::sync::sync_dir(host.transport.as_ref(), &ctx.config.root, dir, SYNC_EXCLUDE)
                .await?;
        ctx.progress(
            Phase::Prepare,
            scope,
            format!(
                "lab synced to {dir}: {} of {} files sent ({} bytes), {} deleted",
                stats.sent_files, stats.files, stats.sent_bytes, stats.deleted
            ),
        );
    }
    Ok(())
}

/// Builds the box on this machine if the recipe changed, and installs it on the host.
async fn install_built_box(
    ctx: &RunCtx<'_>,
    host: &Host,
    recipe: &Path,
    scope: &str,
    log: PathBuf,
) -> anyhow::Result<InstalledBox> {
    let recipe = Recipe::new(recipe);
    let mut sink = LogSink::append(&log, &ctx.budget).on_line(|l| {
        if let Some(step) = l.strip_prefix("box: ") {
            ctx.progress(Phase::Box, scope, step.to_string());
        }
    });
    if recipe.cached(&ctx.state)?.is_none() {
        ctx.progress(
            Phase::Box,
            scope,
            format!(
                "building {} (a few minutes, once per recipe)",
                recipe.box_name()
            ),
        );
    }
    let built = recipe.ensure_built(&ctx.state, &mut sink).await?;
    let installed = host::boxes::install(host, &built, &mut sink).await?;
    if installed.shipped > 0 {
        ctx.progress(
            Phase::Box,
            scope,
            format!("shipped {} MB to {}", installed.shipped >> 20, host.name),
        );
    }
    if installed.registered {
        ctx.progress(
            Phase::Box,
            scope,
            format!("registered {} {}", built.info.name, built.info.version),
        );
    }
    Ok(InstalledBox {
        built_version: Some(built.info.version.clone()),
        info: built.info,
        kernel: installed.kernel,
    })
}

/// The boxes the Vagrantfile names, as Vagrant finds them on the host (registered in metalab's
/// Vagrant home, or in another one there, from which they are registered in metalab's). The run
/// records the first machine's box. A box found nowhere is left for Vagrant to fetch.
async fn find_named_box(
    ctx: &RunCtx<'_>,
    host: &Host,
    scope: &str,
) -> anyhow::Result<InstalledBox> {
    let mut first: Option<InstalledBox> = None;
    let mut seen = Vec::new();
    for m in &ctx.description.machines {
        let Some(name) = m.box_name.clone() else {
            continue;
        };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        let exact = m.box_version.as_deref().filter(|v| is_exact_version(v));
        let found = host::boxes::find_registered(host, &name, exact).await?;
        let info = match &found {
            Some(r) => {
                if let Some(from) = &r.imported_from {
                    ctx.progress(
                        Phase::Box,
                        scope,
                        format!("registered {name} {} from {from}", r.version),
                    );
                }
                ctx.progress(
                    Phase::Box,
                    scope,
                    format!("{name} {} (sha256 {})", r.version, r.sha256),
                );
                BoxInfo {
                    name: name.clone(),
                    version: r.version.clone(),
                    sha256: r.sha256.clone(),
                    recipe_hash: String::new(),
                }
            }
            None => {
                ctx.progress(
                    Phase::Box,
                    scope,
                    format!(
                        "{name} is not registered on {}: Vagrant fetches it during `up`",
                        host.name
                    ),
                );
                BoxInfo {
                    name: name.clone(),
                    version: m.box_version.clone().unwrap_or_default(),
                    sha256: String::new(),
                    recipe_hash: String::new(),
                }
            }
        };
        if first.is_none() {
            first = Some(InstalledBox {
                kernel: found
                    .map(|r| host::boxes::kernel_in(&r.dir))
                    .unwrap_or_default(),
                info,
                built_version: None,
            });
        }
    }
    first.ok_or_else(|| anyhow::anyhow!("the Vagrantfile names no box for any machine"))
}

/// `1.2.3` names one version; `>= 1.0` or `~> 2` constrains, and Vagrant picks.
fn is_exact_version(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// How many VMs the host can run at once (see [`lanes::vm_slots`]).
async fn vm_slots(ctx: &RunCtx<'_>, host: &Host, cores: u32, accel: &str) -> usize {
    let mut out = crate::transport::Collect::default();
    let cmd = Command::new(
        "sed -n 's/^MemAvailable: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo",
        Duration::from_secs(30),
    );
    let _ = host.transport.exec(&cmd, &mut out).await;
    let available_mib = out.stdout_text().trim().parse::<u64>().unwrap_or(0) / 1024;
    let config = ctx.config;
    lanes::vm_slots(
        cores,
        available_mib,
        config.vm.memory,
        accel == "kvm",
        config.capacity.vms,
    )
}
