//! What can go wrong with the history. Every error names the store (a file's path, or a server's
//! URL without its password): the person reading it must know which history to look at, move
//! aside or retry.

use std::path::PathBuf;
use std::time::Duration;

use super::backend::{DbError, DbErrorKind};
use super::location::Location;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "history database {at} is locked: another process kept it busy for more than {}",
        humantime::format_duration(*waited)
    )]
    Locked { at: Location, waited: Duration },
    #[error(
        "history database {at} is not a readable SQLite database ({detail}); move it aside and \
         re-import the runs with `metalab history import artifacts/*/results.json`"
    )]
    Corrupt { at: Location, detail: String },
    #[error("history database {at} cannot be reached ({detail})")]
    Unreachable { at: Location, detail: String },
    #[error("history database {at} refused the credentials ({detail}){}", password_hint(.at))]
    Refused { at: Location, detail: String },
    #[error(
        "history database {at}: TLS failed ({detail}); the server must offer TLS when the URL \
         says sslmode=require, and its certificate must be signed by a CA in PGSSLROOTCERT (a \
         PEM file) or in the system's store"
    )]
    Tls { at: Location, detail: String },
    #[error(
        "history database {at} has schema version {found}, but this metalab knows only up to \
         version {supported}: it was written by a newer metalab"
    )]
    NewerSchema {
        at: Location,
        found: u32,
        supported: u32,
    },
    #[error("history database {at}: {detail}")]
    Store { at: Location, detail: String },
    #[error("history database {}: cannot create its directory: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("history database {at}: stored run {run_id} cannot be read: {source}")]
    BadRecord {
        at: Location,
        run_id: String,
        source: serde_json::Error,
    },
    #[error(
        "run {run_id} is of an untrusted change: its numbers are never a baseline, so the \
         history {at} does not take it"
    )]
    Untrusted { at: Location, run_id: String },
    #[error("no run `{query}` in the history {at}")]
    NoSuchRun { at: Location, query: String },
    #[error("`{query}` matches several runs in the history {at}: {}", matches.join(", "))]
    AmbiguousRun {
        at: Location,
        query: String,
        matches: Vec<String>,
    },
}

/// Where a refused login's password comes from, when none was given.
fn password_hint(at: &Location) -> &'static str {
    match at {
        Location::Server(s) if !s.has_password() => {
            "; no password was given: set PGPASSWORD, or put the URL with its password in \
             METALAB_HISTORY"
        }
        _ => "",
    }
}

impl HistoryError {
    /// A store's error on `at`, by its kind.
    pub(super) fn store(at: &Location, busy_timeout: Duration, e: DbError) -> HistoryError {
        let at = at.clone();
        let detail = e.detail;
        match e.kind {
            DbErrorKind::Busy => HistoryError::Locked {
                at,
                waited: busy_timeout,
            },
            DbErrorKind::Corrupt => HistoryError::Corrupt { at, detail },
            DbErrorKind::Unreachable => HistoryError::Unreachable { at, detail },
            DbErrorKind::Refused => HistoryError::Refused { at, detail },
            DbErrorKind::Tls => HistoryError::Tls { at, detail },
            DbErrorKind::Other => HistoryError::Store { at, detail },
        }
    }

    /// True for errors of the caller's input (an unknown run), not of the store.
    pub fn is_lookup(&self) -> bool {
        matches!(
            self,
            HistoryError::NoSuchRun { .. }
                | HistoryError::AmbiguousRun { .. }
                | HistoryError::Untrusted { .. }
        )
    }

    /// True when the server refused metalab's credentials or TLS failed: the configuration's
    /// fault, which a retry does not mend.
    pub fn is_refused(&self) -> bool {
        matches!(
            self,
            HistoryError::Refused { .. } | HistoryError::Tls { .. }
        )
    }
}
