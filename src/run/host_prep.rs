//! Getting a host ready, once per host and run: packages and daemons (scripts/setup-host),
//! leftovers of earlier runs reaped, the lab synced (remote hosts), the box installed, the
//! accelerator probed, and the conditions recorded.

use std::path::PathBuf;
use std::time::Duration;

use super::event::{EventKind, Phase};
use super::log::LogSink;
use super::{RunCtx, Stop, conditions};
use crate::boxes::{BuiltBox, Recipe};
use crate::host::{self, Host};
use crate::transport::Command;

/// A prepared host: everything a lane needs to bring up VMs there.
pub struct HostReady {
    pub host: Host,
    pub built: BuiltBox,
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
    let built = ctx
        .phase(Phase::Box, &scope, "metalab box", |log| {
            install_box(ctx, &host, &scope, log)
        })
        .await?;
    let kernel = built.1;
    let accel =
        host::accel::name(host::accel::resolve(&host, ctx.config.vm.accel, &kernel, false).await);
    let fingerprint = conditions::host_fingerprint(host.transport.as_ref()).await;
    let vm_slots = vm_slots(ctx, &host, fingerprint.cores, accel).await;
    ctx.events.emit(EventKind::Conditions(conditions::gather(
        fingerprint,
        ctx.config,
        accel,
        &built.0.info.sha256,
    )));
    Ok(HostReady {
        host,
        built: built.0,
        accel,
        scope,
        vm_slots,
    })
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
    let mut sink = LogSink::append(&log).on_line(|l| {
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
        ctx.progress(
            Phase::Prepare,
            scope,
            format!("reaped run {}: {}", r.run_id, r.leftovers.describe()),
        );
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

/// Builds the box on this machine if the recipe changed, and installs it on the host. Returns
/// the box and its kernel's path on the host.
async fn install_box(
    ctx: &RunCtx<'_>,
    host: &Host,
    scope: &str,
    log: PathBuf,
) -> anyhow::Result<(BuiltBox, String)> {
    let recipe = Recipe::new(&ctx.config.box_recipe);
    let mut sink = LogSink::append(&log).on_line(|l| {
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
    ctx.events.emit(EventKind::BoxReady(built.info.clone()));
    Ok((built, installed.kernel))
}

/// How many VMs the host can run at once: one per core under TCG (each keeps a core busy), two
/// under KVM, as many as fit in the available memory (a VM holds about 1.5 times its configured
/// memory), capped by `[capacity] vms`.
async fn vm_slots(ctx: &RunCtx<'_>, host: &Host, cores: u32, accel: &str) -> usize {
    let mut out = crate::transport::Collect::default();
    let cmd = Command::new(
        "sed -n 's/^MemAvailable: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo",
        Duration::from_secs(30),
    );
    let _ = host.transport.exec(&cmd, &mut out).await;
    let available_mib = out.stdout_text().trim().parse::<u64>().unwrap_or(0) / 1024;
    let per_vm = u64::from(ctx.config.vm.memory) * 3 / 2;
    let by_memory = (available_mib / per_vm.max(1)) as usize;
    let by_cores = cores as usize * if accel == "kvm" { 2 } else { 1 };
    let slots = by_memory.min(by_cores).max(1);
    ctx.config
        .capacity
        .vms
        .map_or(slots, |cap| slots.min(cap.max(1)))
}
