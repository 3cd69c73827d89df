//! Connection sharing for `metalab exec`, like OpenSSH's ControlMaster: the first `exec` on a
//! kept lab starts a small background process that holds one SSH session per VM and serves
//! commands over a unix socket in the run's state directory. Every later `exec` costs a socket
//! round trip and the remote command, not a new SSH handshake.
//!
//! The process leaves by itself: after ten idle minutes, or as soon as the lab's record is gone
//! (the lab was destroyed). `metalab destroy` also stops it by its pid file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc};

use crate::ids::RunId;
use crate::lab::LabState;
use crate::retry::Poll;
use crate::state::{RunDir, StateDir};
use crate::transport::ssh::SshSession;
use crate::transport::{Command, Exit, OutputSink, Stream, Transport};

const IDLE_EXIT: Duration = Duration::from_secs(600);

/// One command for a VM of the lab.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub vm: String,
    pub script: String,
    pub sudo: bool,
    pub timeout_secs: u64,
}

/// Frame tags on the socket: a tag byte, a 4-byte big-endian length, the payload.
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
/// Payload: the exit code as text ("-1" for a signal).
const EXIT: u8 = 3;
/// Payload: why the command could not run.
const FAILED: u8 = 4;

/// What a served command came to, as seen by the client.
pub enum Reply {
    Exited(i32),
    Failed(String),
}

// ---- server ----------------------------------------------------------------------------------

/// Serves the lab of `run` until idle or until the lab is gone.
pub async fn serve(state: StateDir, run: RunId) -> anyhow::Result<()> {
    let dir = state.run(&run);
    let socket = dir.mux_socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::write(dir.mux_pid(), std::process::id().to_string())?;
    let sessions: Arc<Mutex<HashMap<String, Arc<SshSession>>>> = Arc::default();
    let idle = tokio::time::sleep(IDLE_EXIT);
    tokio::pin!(idle);
    let mut lab_check = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let Ok((conn, _)) = conn else { continue };
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE_EXIT);
                tokio::spawn(handle(conn, state.clone(), run.clone(), sessions.clone()));
            }
            _ = &mut idle => break,
            _ = lab_check.tick() => if dir.lab_states().is_empty() { break },
        }
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(dir.mux_pid());
    Ok(())
}

async fn handle(
    conn: UnixStream,
    state: StateDir,
    run: RunId,
    sessions: Arc<Mutex<HashMap<String, Arc<SshSession>>>>,
) {
    let (read, mut write) = conn.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<(u8, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((tag, data)) = rx.recv().await {
            if write_frame(&mut write, tag, &data).await.is_err() {
                break;
            }
        }
    });
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => run_request(&req, &state, &run, &sessions, &tx).await,
        Err(e) => Err(format!("bad request: {e}")),
    };
    let _ = match reply {
        Ok(code) => tx.send((EXIT, code.to_string().into_bytes())),
        Err(why) => tx.send((FAILED, why.into_bytes())),
    };
    drop(tx);
    let _ = writer.await;
}

async fn run_request(
    req: &Request,
    state: &StateDir,
    run: &RunId,
    sessions: &Mutex<HashMap<String, Arc<SshSession>>>,
    tx: &mpsc::UnboundedSender<(u8, Vec<u8>)>,
) -> Result<i32, String> {
    let session = session_for(&req.vm, state, run, sessions).await?;
    let cmd =
        Command::new(req.script.clone(), Duration::from_secs(req.timeout_secs)).sudo(req.sudo);
    let mut sink = Frames(tx.clone());
    match session.exec(&cmd, &mut sink).await {
        Ok(o) => Ok(match o.exit {
            Exit::Code(c) => c,
            Exit::Signal(_) => -1,
        }),
        Err(e) => {
            // The VM was restarted or lost: connect afresh next time.
            sessions.lock().await.remove(&req.vm);
            Err(e.to_string())
        }
    }
}

async fn session_for(
    vm: &str,
    state: &StateDir,
    run: &RunId,
    sessions: &Mutex<HashMap<String, Arc<SshSession>>>,
) -> Result<Arc<SshSession>, String> {
    let mut map = sessions.lock().await;
    if let Some(s) = map.get(vm) {
        return Ok(s.clone());
    }
    let lab = LabState::newest_with_vm(state, Some(run), vm)
        .ok_or_else(|| format!("the lab has no VM `{vm}` (any more)"))?;
    let vm_state = lab.vm(vm).expect("found by this VM").clone();
    let session = Arc::new(
        lab.connect_vm(state, &vm_state)
            .await
            .map_err(|e| format!("{e:#}"))?,
    );
    map.insert(vm.to_string(), session.clone());
    Ok(session)
}

struct Frames(mpsc::UnboundedSender<(u8, Vec<u8>)>);

impl OutputSink for Frames {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let tag = if stream == Stream::Stdout {
            STDOUT
        } else {
            STDERR
        };
        let _ = self.0.send((tag, data.to_vec()));
    }
}

async fn write_frame(
    w: &mut (impl AsyncWriteExt + Unpin),
    tag: u8,
    data: &[u8],
) -> std::io::Result<()> {
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(data).await
}

// ---- client ----------------------------------------------------------------------------------

/// Runs a request through the lab's mux, starting the mux first if it is not running.
pub async fn call(
    run_dir: &RunDir,
    run: &RunId,
    req: &Request,
    sink: &mut dyn OutputSink,
) -> anyhow::Result<Reply> {
    let mut conn = match UnixStream::connect(run_dir.mux_socket()).await {
        Ok(c) => c,
        Err(_) => start(run_dir, run).await?,
    };
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    conn.write_all(&line).await?;
    loop {
        let mut head = [0u8; 5];
        conn.read_exact(&mut head)
            .await
            .context("the mux closed the connection")?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len];
        conn.read_exact(&mut data).await?;
        match head[0] {
            STDOUT => sink.output(Stream::Stdout, &data),
            STDERR => sink.output(Stream::Stderr, &data),
            EXIT => {
                return Ok(Reply::Exited(
                    String::from_utf8_lossy(&data).parse().unwrap_or(-1),
                ));
            }
            _ => return Ok(Reply::Failed(String::from_utf8_lossy(&data).into_owned())),
        }
    }
}

/// Starts `metalab mux-serve` detached (own process group, no terminal) and waits for its socket.
async fn start(run_dir: &RunDir, run: &RunId) -> anyhow::Result<UnixStream> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(run_dir.mux_log())?;
    use std::os::unix::process::CommandExt;
    crate::child_env::command(exe)
        .args(["mux-serve", "--run", run.as_str()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the connection holder")?;
    let socket = run_dir.mux_socket();
    let mut polling = Poll::MUX_SOCKET.times(Poll::MUX_SOCKET_LOOKS);
    loop {
        if let Ok(c) = UnixStream::connect(&socket).await {
            return Ok(c);
        }
        if !polling.pause().await {
            break;
        }
    }
    anyhow::bail!(
        "the connection holder did not start; see {}",
        run_dir.mux_log().display()
    )
}

/// Stops a lab's mux, if one runs.
pub fn stop(run_dir: &RunDir) {
    if let Some(pid) = std::fs::read_to_string(run_dir.mux_pid())
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = std::fs::remove_file(run_dir.mux_socket());
    let _ = std::fs::remove_file(run_dir.mux_pid());
}
