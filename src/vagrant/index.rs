//! Vagrant's global machine index on a host (`$VAGRANT_HOME/data/machine-index/index`), which
//! `vagrant global-status` lists and `vagrant box remove` consults.
//!
//! A machine stays in the index when its `vagrant destroy` fails (a `vagrant up` cut short, a
//! fast teardown), even once its domain is swept away by name. Vagrant forgets such an entry only
//! in its own housekeeping, which loads every indexed environment: each run's through metalab's
//! wrapper, outside the run that wrote it.

use std::time::Duration;

use crate::transport::{Command, Discard, Transport, sh_quote, stdout_of};

/// A Vagrant command that loads every indexed environment (`global-status --prune`, `box
/// remove`). Run outside any run, a wrapper then loads an empty lab (wrappers written by older
/// metalab versions fail without one): its environment has none of the run's machines, so an
/// entry of a run that is over is forgotten instead of failing the command.
pub fn housekeeping(script: String, vagrant_home: &str, timeout: Duration) -> Command {
    Command::new(script, timeout)
        .env("VAGRANT_HOME", vagrant_home)
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("METALAB_LAB_VAGRANTFILE", "/dev/null")
        .sudo(true)
}

/// `vagrant global-status --prune`: forgets the machines that no longer exist.
pub async fn prune(host: &dyn Transport, vagrant_home: &str) {
    let cmd = housekeeping(
        "vagrant global-status --prune".into(),
        vagrant_home,
        Duration::from_secs(120),
    );
    let _ = host.exec(&cmd, &mut Discard).await;
}

/// How many machines the index lists whose Vagrant state is under `path` (a run's or a lane's
/// `VAGRANT_DOTFILE_PATH`, or a part of it), read from the index itself rather than through
/// Vagrant.
pub async fn entries_under(
    host: &dyn Transport,
    vagrant_home: &str,
    path: &str,
) -> anyhow::Result<usize> {
    let index = format!("{vagrant_home}/data/machine-index/index");
    let pattern = format!("\"local_data_path\":\"[^\"]*{path}");
    let script = format!(
        "[ -f {i} ] || exit 0; grep -o {p} {i} || true",
        i = sh_quote(&index),
        p = sh_quote(&pattern),
    );
    let cmd = Command::new(script, Duration::from_secs(30)).sudo(true);
    Ok(stdout_of(host, &cmd).await?.lines().count())
}

/// Makes sure the index lists no machine under `path`, pruning it if it does.
pub async fn forget(host: &dyn Transport, vagrant_home: &str, path: &str) -> anyhow::Result<()> {
    if entries_under(host, vagrant_home, path).await? == 0 {
        return Ok(());
    }
    prune(host, vagrant_home).await;
    let left = entries_under(host, vagrant_home, path).await?;
    anyhow::ensure!(
        left == 0,
        "Vagrant's index ({vagrant_home}/data/machine-index/index) still lists {left} machine(s) \
         of the run"
    );
    Ok(())
}
