//! A lock on a whole host, so that two runs never share an inventory host by accident. It is
//! `flock` on the host, held by a command that lives exactly as long as the runner's connection:
//! if metalab dies, the connection drops and the lock goes with it; no stale lock is possible.

use std::time::Duration;

use crate::state::StateDir;
use crate::transport::sh_quote;
use crate::transport::ssh::{Held, SshSession};

const READY: &str = "metalab-host-locked";

/// Takes the lock of the host whose state directory is `state`, without waiting; `None` when
/// another run holds it.
pub async fn try_lock(session: &SshSession, state: &StateDir) -> anyhow::Result<Option<Held>> {
    let script = format!(
        "mkdir -p {d} && exec flock -n {lock} sh -c 'echo {READY}; exec cat >/dev/null'",
        d = sh_quote(&state.locks().display().to_string()),
        lock = sh_quote(&state.lock("host").display().to_string()),
    );
    let script = if session_user_is_root(session) {
        script
    } else {
        format!("sudo -n sh -c {}", sh_quote(&script))
    };
    Ok(session
        .hold(&script, READY, Duration::from_secs(30))
        .await?)
}

fn session_user_is_root(session: &SshSession) -> bool {
    crate::transport::Transport::target(session).starts_with("root@")
}
