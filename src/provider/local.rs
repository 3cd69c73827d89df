//! The machine metalab runs on: nothing to create or release.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Host, Provider};
use crate::ids::RunId;
use crate::transport::local::Local;

pub struct LocalProvider;

#[async_trait]
impl Provider for LocalProvider {
    async fn acquire(&self, _run: &RunId) -> anyhow::Result<Host> {
        Ok(Host {
            name: "local".to_string(),
            transport: Arc::new(Local),
        })
    }

    async fn release(&self, _run: &RunId) -> anyhow::Result<()> {
        Ok(())
    }
}
