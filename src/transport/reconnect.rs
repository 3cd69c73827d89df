//! An SSH transport that reconnects: a host's connection may drop mid-run (the run then fails as
//! an infrastructure error), but the teardown that follows must still reach the host to destroy
//! the VMs. Each command checks the session first and opens a new one when it is gone.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::ssh::{SshAccess, SshSession};
use super::{Command, Outcome, OutputSink, Transport, TransportError};

pub struct Reconnecting {
    access: SshAccess,
    session: Mutex<Arc<SshSession>>,
}

impl Reconnecting {
    pub fn new(session: Arc<SshSession>) -> Reconnecting {
        Reconnecting {
            access: session.access(),
            session: Mutex::new(session),
        }
    }

    /// The live session, reconnecting once when the current one has closed.
    pub async fn session(&self) -> Result<Arc<SshSession>, TransportError> {
        let mut current = self.session.lock().await;
        if current.is_closed() {
            let fresh = SshSession::connect(
                &self.access.target,
                &self.access.policy,
                Duration::from_secs(30),
            )
            .await?;
            *current = Arc::new(fresh);
        }
        Ok(current.clone())
    }
}

#[async_trait]
impl Transport for Reconnecting {
    async fn exec(
        &self,
        cmd: &Command,
        sink: &mut dyn OutputSink,
    ) -> Result<Outcome, TransportError> {
        self.session().await?.exec(cmd, sink).await
    }

    fn target(&self) -> String {
        self.access.target.describe()
    }
}
