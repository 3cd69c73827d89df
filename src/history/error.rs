//! What can go wrong with the history file. Every error names the file: the person reading it
//! must know which database to look at, move aside or retry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "history database {} is locked: another process kept it busy for more than {}",
        path.display(), humantime::format_duration(*waited)
    )]
    Locked { path: PathBuf, waited: Duration },
    #[error(
        "history database {} is not a readable SQLite database ({detail}); move it aside and \
         re-import the runs with `metalab history import artifacts/*/results.json`",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "history database {} has schema version {found}, but this metalab knows only up to \
         version {supported}: it was written by a newer metalab",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("history database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("history database {}: cannot create its directory: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("history database {}: stored run {run_id} cannot be read: {source}", path.display())]
    BadRecord {
        path: PathBuf,
        run_id: String,
        source: serde_json::Error,
    },
    #[error(
        "run {run_id} is of an untrusted change: its numbers are never a baseline, so the \
         history {} does not take it", path.display()
    )]
    Untrusted { path: PathBuf, run_id: String },
    #[error("no run `{query}` in the history {}", path.display())]
    NoSuchRun { path: PathBuf, query: String },
    #[error("`{query}` matches several runs in the history {}: {}", path.display(), matches.join(", "))]
    AmbiguousRun {
        path: PathBuf,
        query: String,
        matches: Vec<String>,
    },
}

impl HistoryError {
    /// Classifies a SQLite error on `path`: busy, corrupt, or anything else.
    pub(super) fn sqlite(path: &Path, busy_timeout: Duration, e: rusqlite::Error) -> HistoryError {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => HistoryError::Locked {
                path,
                waited: busy_timeout,
            },
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => HistoryError::Corrupt {
                path,
                detail: e.to_string(),
            },
            _ => HistoryError::Sqlite { path, source: e },
        }
    }

    /// True for errors of the caller's input (an unknown run), not of the database.
    pub fn is_lookup(&self) -> bool {
        matches!(
            self,
            HistoryError::NoSuchRun { .. }
                | HistoryError::AmbiguousRun { .. }
                | HistoryError::Untrusted { .. }
        )
    }
}
