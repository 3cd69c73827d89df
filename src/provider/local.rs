//! The machine metalab runs on: nothing to create or release, and the lab is used in place.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Host, Provider, RunHooks};
use crate::ids::RunId;
use crate::state::StateDir;
use crate::transport::local::Local;

pub struct LocalProvider {
    pub state: StateDir,
}

impl LocalProvider {
    pub fn host(&self) -> Host {
        Host {
            name: "local".to_string(),
            transport: Arc::new(Local),
            home: self.state.root().display().to_string(),
            lab_dir: None,
            jump: None,
        }
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn describe(&self) -> String {
        "local".to_string()
    }

    async fn acquire(
        &self,
        _run: &RunId,
        _wanted: usize,
        _hooks: &dyn RunHooks,
    ) -> anyhow::Result<Vec<Host>> {
        Ok(vec![self.host()])
    }

    async fn release(&self, _run: &RunId, _hooks: &dyn RunHooks) -> anyhow::Result<()> {
        Ok(())
    }
}
