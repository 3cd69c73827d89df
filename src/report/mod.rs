//! Reporting: the run's event stream is folded once into its record ([`RunRecord::apply`]) while
//! the terminal shows it live, and at the end the [`ending`] writes and shows the record in a
//! fixed order: result files, history, the gate (judged once), then the views. Nothing here
//! reaches back into the engine; [`merge`] makes one record of several runs' (a pipeline's
//! shards) for the same renderers.

pub mod ending;
pub mod files;
pub mod gate;
pub mod github;
pub mod grid;
pub mod history;
pub mod html;
pub mod junit;
pub mod merge;
pub mod summary;
pub mod terminal;

use tokio::sync::mpsc::UnboundedReceiver;

use crate::model::event::Event;
use crate::model::record::RunRecord;

pub use ending::{Ended, Ending};
use terminal::Terminal;

/// Shows every event on the terminal and folds it into the record until the engine drops its
/// sender, then ends the run's reporting.
pub async fn drive(
    mut rx: UnboundedReceiver<Event>,
    mut record: RunRecord,
    mut terminal: Terminal,
    ending: Ending,
) -> Ended {
    while let Some(event) = rx.recv().await {
        record.apply(&event);
        terminal.on_event(&event);
    }
    terminal.clear();
    ending.finish(record)
}
