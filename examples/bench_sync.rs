//! Measures metalab's SSH transport against OpenSSH on one server, side by side in one run:
//! the first sync of a lab against a second sync of the unchanged lab (bytes and time), a large
//! upload against `scp`, and per-command latency against a fresh `ssh` and ControlMaster.
//!
//! Run by scripts/bench-sync, which starts the sshd and passes:
//!   bench_sync HOST PORT KEY KNOWN_HOSTS LAB_DIR BIG_FILE N

use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use metalab::host::sync::sync_dir;
use metalab::transport::ssh::{HostKeyPolicy, SshSession, SshTarget};
use metalab::transport::{Collect, Command, Transport};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (host, port, key, known, lab, big, n) = (
        &a[1],
        a[2].parse::<u16>()?,
        PathBuf::from(&a[3]),
        PathBuf::from(&a[4]),
        PathBuf::from(&a[5]),
        PathBuf::from(&a[6]),
        a[7].parse::<u32>()?,
    );
    let target = SshTarget {
        host: host.clone(),
        port,
        user: "root".into(),
        identity_files: vec![key.clone()],
    };
    let policy = HostKeyPolicy::KnownHosts {
        path: known.clone(),
        trust_first_use: false,
    };
    let session = SshSession::connect(&target, &policy, Duration::from_secs(10)).await?;
    let remote = format!("/tmp/metalab-bench-sync-{}", std::process::id());
    let ssh_opts = [
        "-p",
        &a[2],
        "-i",
        &a[3],
        "-o",
        &format!("UserKnownHostsFile={}", a[4]),
        "-o",
        "BatchMode=yes",
    ];

    let t = Instant::now();
    let first = sync_dir(
        &session,
        &lab,
        &remote,
        &["artifacts", ".git", "target", ".vagrant"],
    )
    .await?;
    let first_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let second = sync_dir(
        &session,
        &lab,
        &remote,
        &["artifacts", ".git", "target", ".vagrant"],
    )
    .await?;
    let second_s = t.elapsed().as_secs_f64();

    let size = std::fs::metadata(&big)?.len() as f64 / 1e6;
    let t = Instant::now();
    let up = Command::new(format!("cat > {remote}.big"), Duration::from_secs(600)).stdin_file(&big);
    session.exec(&up, &mut Collect::default()).await?;
    let ours = size / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let scp = Process::new("scp")
        .args([
            "-q",
            "-P",
            &a[2],
            "-i",
            &a[3],
            "-o",
            &format!("UserKnownHostsFile={}", a[4]),
            "-o",
            "BatchMode=yes",
        ])
        .arg(&big)
        .arg(format!("root@{host}:{remote}.scp"))
        .status()?;
    anyhow::ensure!(scp.success(), "scp failed");
    let theirs = size / t.elapsed().as_secs_f64();

    let per = |f: &mut dyn FnMut()| {
        f();
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
    };
    let cm = format!("/tmp/metalab-bench-cm-{}", std::process::id());
    let run_ssh = |extra: &[&str]| {
        let ok = Process::new("ssh")
            .args(ssh_opts)
            .args(extra)
            .arg(format!("root@{host}"))
            .arg("true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "ssh failed");
    };
    let rt = tokio::runtime::Handle::current();
    let native = tokio::task::block_in_place(|| {
        per(&mut || {
            rt.block_on(session.exec(
                &Command::new("true", Duration::from_secs(10)),
                &mut Collect::default(),
            ))
            .expect("exec");
        })
    });
    let fresh = per(&mut || run_ssh(&[]));
    let master = [
        "-o",
        "ControlMaster=auto",
        "-o",
        &format!("ControlPath={cm}"),
        "-o",
        "ControlPersist=60",
    ];
    let controlmaster = per(&mut || run_ssh(&master));
    let _ = Process::new("ssh")
        .args(ssh_opts)
        .args(["-o", &format!("ControlPath={cm}"), "-O", "exit"])
        .arg(format!("root@{host}"))
        .status();
    session
        .exec(
            &Command::new(
                format!("rm -rf {remote} {remote}.big {remote}.scp"),
                Duration::from_secs(60),
            ),
            &mut Collect::default(),
        )
        .await?;

    println!("\nlab sync over one SSH connection ({} files)", first.files);
    println!("{:<28} {:>12} {:>10}", "", "bytes sent", "seconds");
    println!(
        "{:<28} {:>12} {:>10.2}",
        "first sync", first.sent_bytes, first_s
    );
    println!(
        "{:<28} {:>12} {:>10.2}",
        "second sync, lab unchanged", second.sent_bytes, second_s
    );
    println!(
        "second / first bytes = {:.4}% (goal <= 1%)",
        100.0 * second.sent_bytes as f64 / first.sent_bytes.max(1) as f64
    );
    println!(
        "\nupload of {size:.0} MB: metalab {ours:.0} MB/s, scp {theirs:.0} MB/s (ratio {:.2})",
        ours / theirs
    );
    println!("\nper-command latency to the host, {n} calls each");
    println!("{:<24} {:>8}  vs metalab", "method", "ms/call");
    for (name, ms) in [
        ("metalab transport", native),
        ("ssh + ControlMaster", controlmaster),
        ("fresh ssh", fresh),
    ] {
        println!("{name:<24} {ms:>8.1}  {:>6.1}x", ms / native);
    }
    println!(
        "metalab / fresh ssh = {:.3} (goal <= 0.2); metalab / ControlMaster = {:.2} (goal <= 1)",
        native / fresh,
        native / controlmaster
    );
    Ok(())
}
