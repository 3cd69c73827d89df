//! The hosts whose libvirt a lab may have used: this machine, and the ssh provider's inventory.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::host::Host;
use crate::provider::local::LocalProvider;
use crate::provider::ssh;
use crate::state::StateDir;
use crate::transport::ssh::SshSession;

/// This machine, plus every inventory host when the lab (if there is one here) uses the ssh
/// provider.
pub async fn all(config: Option<&Config>, state: &StateDir) -> Vec<anyhow::Result<Host>> {
    let mut hosts = vec![Ok(LocalProvider {
        state: state.clone(),
    }
    .host())];
    let Some(config) = config else {
        return hosts;
    };
    for h in &config.ssh_hosts {
        let connect =
            SshSession::connect(&ssh::target(h), &ssh::policy(h), Duration::from_secs(30)).await;
        hosts.push(connect.map_err(Into::into).map(|session| Host {
            name: h.display_name(),
            transport: Arc::new(session),
            home: h.home.clone(),
            lab_dir: None,
            jump: None,
        }));
    }
    hosts
}
