//! Reporters: each consumes the run's event stream and renders it one way. None of them reaches
//! back into the engine; a run with no reporters at all behaves the same. [`merge`] makes one
//! record of several runs' (a pipeline's shards) for the same renderers.

pub mod files;
pub mod gate;
pub mod github;
pub mod history;
pub mod html;
pub mod junit;
pub mod merge;

pub mod summary;
pub mod terminal;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::model::event::Event;

/// One way of rendering a run.
pub trait Reporter: Send {
    fn on_event(&mut self, event: &Event);

    /// Called once the stream has closed: flush, write files. Errors are reported, not fatal.
    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Feeds every event to every reporter until the engine drops its sender.
pub async fn drive(mut rx: UnboundedReceiver<Event>, mut reporters: Vec<Box<dyn Reporter>>) {
    while let Some(event) = rx.recv().await {
        for r in reporters.iter_mut() {
            r.on_event(&event);
        }
    }
    for r in reporters.iter_mut() {
        if let Err(e) = r.finish() {
            eprintln!("metalab: error: {e:#}");
        }
    }
}
