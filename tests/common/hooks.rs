//! The run's side of a provider, for the providers' tests: a real journal, and every progress
//! line kept with its phase.

use std::sync::Mutex;

use metalab::ids::RunId;
use metalab::journal::{EntryId, Journal, Resource};
use metalab::provider::{RunHooks, Stage};
use metalab::state::StateDir;

pub struct Hooks {
    pub journal: Mutex<Journal>,
    pub said: Mutex<Vec<(Stage, String)>>,
}

impl Hooks {
    /// Hooks journaling into `run`'s journal in `state`.
    pub fn new(state: &StateDir, run: &RunId) -> Hooks {
        Hooks {
            journal: Mutex::new(Journal::open(&state.run(run)).unwrap()),
            said: Mutex::new(Vec::new()),
        }
    }

    /// The lines said in `stage`.
    pub fn said_in(&self, stage: Stage) -> Vec<String> {
        let said = self.said.lock().unwrap();
        said.iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl RunHooks for Hooks {
    fn journal(&self, r: Resource) -> anyhow::Result<EntryId> {
        Ok(self.journal.lock().unwrap().record(r)?)
    }
    fn journal_done(&self, e: EntryId) {
        self.journal.lock().unwrap().done(e).unwrap();
    }
    fn progress(&self, stage: Stage, m: String) {
        self.said.lock().unwrap().push((stage, m));
    }
}
