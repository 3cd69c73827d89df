//! The SSH transport against a real OpenSSH server on loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::sshd::{Sshd, free_port};
use metalab::budget::Budget;
use metalab::config::Outputs;
use metalab::transport::ssh::{HostKeyPolicy, SshSession};
use metalab::transport::{Collect, Command, Exit, Transport, TransportError, files};

async fn connect(sshd: &Sshd, pins: &tempfile::TempDir) -> SshSession {
    let policy = HostKeyPolicy::PinFile(pins.path().join("pin"));
    SshSession::connect(&sshd.target(), &policy, Duration::from_secs(10))
        .await
        .unwrap()
}

#[tokio::test]
async fn output_streams_and_exit_codes_come_back() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let s = connect(&sshd, &pins).await;
    let mut out = Collect::default();
    let o = s
        .exec(
            &Command::new("echo out; echo err >&2; exit 3", Duration::from_secs(10)),
            &mut out,
        )
        .await
        .unwrap();
    assert_eq!(o.exit, Exit::Code(3));
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err\n");
    // One connection serves many commands.
    for i in 0..5 {
        let mut out = Collect::default();
        s.exec(
            &Command::new(format!("echo {i}"), Duration::from_secs(10)),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(out.stdout_text(), format!("{i}\n"));
    }
}

#[tokio::test]
async fn env_cwd_and_stdin_reach_the_remote_command() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let s = connect(&sshd, &pins).await;
    let mut out = Collect::default();
    let cmd = Command::new(
        "echo \"$GREETING from $(pwd)\"; cat",
        Duration::from_secs(10),
    )
    .env("GREETING", "it's me")
    .cwd("/tmp")
    .stdin(b"piped".to_vec());
    s.exec(&cmd, &mut out).await.unwrap();
    assert_eq!(out.stdout_text(), "it's me from /tmp\npiped");
}

#[tokio::test]
async fn a_timeout_kills_the_remote_process_group_and_what_left_it() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let s = connect(&sshd, &pins).await;
    let marker = sshd.dir.path().join("survived");
    let escaped = sshd.dir.path().join("escaped");
    // A child in the background, and one in a session of its own (outside the process group).
    let script = format!(
        "(sleep 2; touch {}) & setsid sh -c 'sleep 2; touch {}' & sleep 60",
        marker.display(),
        escaped.display()
    );
    let o = s
        .exec(
            &Command::new(script, Duration::from_secs(1)),
            &mut Collect::default(),
        )
        .await
        .unwrap();
    assert!(o.timed_out);
    assert_eq!(o.exit, Exit::Signal("TERM".into()));
    assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !marker.exists(),
        "a process of the timed-out command survived"
    );
    assert!(
        !escaped.exists(),
        "a process that left the command's process group survived"
    );
}

#[tokio::test]
async fn a_changed_host_key_is_refused() {
    let first = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let port = first.port;
    connect(&first, &pins).await.close().await;
    drop(first);
    let keys = Sshd::start();
    let impostor = Sshd::impostor_on(port, &keys);
    let policy = HostKeyPolicy::PinFile(pins.path().join("pin"));
    let err = SshSession::connect(
        &keys.target_on(impostor.port),
        &policy,
        Duration::from_secs(10),
    )
    .await
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, TransportError::Connect { .. }), "{msg}");
    assert!(
        msg.contains("host key differs from the one pinned"),
        "{msg}"
    );
}

#[tokio::test]
async fn files_travel_both_ways() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let s = connect(&sshd, &pins).await;
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("d")).unwrap();
    std::fs::write(src.path().join("d/f.txt"), "payload").unwrap();
    let remote = sshd.dir.path().join("upload");
    let t = Duration::from_secs(20);
    files::put_dir(&s, src.path(), remote.to_str().unwrap(), false, t)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(remote.join("d/f.txt")).unwrap(),
        "payload"
    );
    let back = tempfile::tempdir().unwrap();
    files::get_path(
        &s,
        remote.join("d").to_str().unwrap(),
        back.path(),
        false,
        t,
        &budget(1 << 30),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(back.path().join("d/f.txt")).unwrap(),
        "payload"
    );
}

fn budget(run_cap: u64) -> Arc<Budget> {
    Arc::new(Budget::new(Outputs {
        log_cap: 1 << 20,
        run_cap,
    }))
}

#[tokio::test]
async fn a_transfer_over_the_cap_is_stopped_on_the_remote_side() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let s = connect(&sshd, &pins).await;
    // tar reads this sparse file as 64 GiB of zeros: only killing it ends the transfer early.
    let sparse = sshd.dir.path().join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let back = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let got = files::get_path(
        &s,
        sparse.to_str().unwrap(),
        back.path(),
        false,
        Duration::from_secs(120),
        &budget(4 << 20),
    )
    .await
    .unwrap();
    assert!(got.cut.is_some(), "{:?}", got.notes());
    assert_eq!(
        std::fs::metadata(back.path().join("sparse")).unwrap().len(),
        4 << 20
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The session still serves commands.
    let mut out = Collect::default();
    s.exec(
        &Command::new("echo still here", Duration::from_secs(10)),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(out.stdout_text(), "still here\n");
}

/// A TCP relay in front of sshd that can be cut, like a network that goes away.
async fn relay(to: u16, cut: Arc<AtomicBool>) -> u16 {
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let (mut inbound, _) = listener.accept().await.unwrap();
        let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", to))
            .await
            .unwrap();
        let (mut ri, mut wi) = inbound.split();
        let (mut ro, mut wo) = outbound.split();
        let watch = async {
            while !cut.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = tokio::io::copy(&mut ri, &mut wo) => {}
            _ = tokio::io::copy(&mut ro, &mut wi) => {}
            _ = watch => {}
        }
    });
    port
}

#[tokio::test]
async fn a_dropped_connection_is_an_infrastructure_error() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let port = relay(sshd.port, cut.clone()).await;
    let policy = HostKeyPolicy::PinFile(pins.path().join("pin"));
    let s = SshSession::connect(&sshd.target_on(port), &policy, Duration::from_secs(10))
        .await
        .unwrap();
    let cutter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cut.store(true, Ordering::SeqCst);
    });
    let err = s
        .exec(
            &Command::new("sleep 30", Duration::from_secs(60)),
            &mut Collect::default(),
        )
        .await
        .err()
        .unwrap();
    cutter.await.unwrap();
    assert!(matches!(err, TransportError::Dropped { .. }), "{err}");
}

#[tokio::test]
async fn known_hosts_refuses_an_unknown_host_unless_trusting_on_first_use() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    let strict = HostKeyPolicy::KnownHosts {
        path: known.clone(),
        trust_first_use: false,
    };
    let err = SshSession::connect(&sshd.target(), &strict, Duration::from_secs(10))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("is not in"), "{err}");

    let tofu = HostKeyPolicy::KnownHosts {
        path: known.clone(),
        trust_first_use: true,
    };
    SshSession::connect(&sshd.target(), &tofu, Duration::from_secs(10))
        .await
        .unwrap()
        .close()
        .await;
    assert!(
        std::fs::read_to_string(&known)
            .unwrap()
            .contains(&format!("[127.0.0.1]:{}", sshd.port))
    );
    // Now known: strict accepts it.
    SshSession::connect(&sshd.target(), &strict, Duration::from_secs(10))
        .await
        .unwrap()
        .close()
        .await;

    // Another machine at the same address is refused, even when trusting on first use.
    let port = sshd.port;
    let keys = Sshd::start();
    drop(sshd);
    let impostor = Sshd::impostor_on(port, &keys);
    let err = SshSession::connect(
        &keys.target_on(impostor.port),
        &tofu,
        Duration::from_secs(10),
    )
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("HOST KEY CHANGED"), "{err}");
}

#[tokio::test]
async fn a_session_jumps_through_a_host_to_reach_another_server() {
    let host = Sshd::start();
    let inner = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let via = connect(&host, &pins).await;
    let inner_target = {
        let mut t = inner.target();
        t.identity_files = vec![inner.client_key()];
        t
    };
    let policy = HostKeyPolicy::PinFile(pins.path().join("inner-pin"));
    let s = via
        .connect_via(&inner_target, &policy, Duration::from_secs(10))
        .await
        .unwrap();
    let mut out = Collect::default();
    let cmd = Command::new(
        format!(
            "echo through; test -f {}/host_key && echo inner",
            inner.dir.path().display()
        ),
        Duration::from_secs(10),
    );
    s.exec(&cmd, &mut out).await.unwrap();
    assert_eq!(out.stdout_text(), "through\ninner\n");
}

#[tokio::test]
async fn a_local_port_forwards_to_a_service_behind_the_server() {
    let sshd = Sshd::start();
    let pins = tempfile::tempdir().unwrap();
    let s = Arc::new(connect(&sshd, &pins).await);
    // A service only the server side is meant to reach: an echo server on loopback.
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_port = service.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut c, _) = service.accept().await.unwrap();
        let (mut r, mut w) = c.split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
    });
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local_port = local.local_addr().unwrap().port();
    tokio::spawn(s.clone().forward(local, "127.0.0.1".into(), service_port));
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local_port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"ping through the tunnel").await.unwrap();
    let mut buf = [0u8; 23];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping through the tunnel");
}
