//! The stores the history can live in, behind one small interface: a query, and a write
//! transaction that holds the store's write lock. The history's own code ([`super::store`]) is
//! written once against it, in SQL both stores accept, with parameters numbered `$1`, `$2`...
//!
//! - [`sqlite`]: one file, the default; for one host.
//! - [`postgres`]: a server that many hosts share.

pub mod postgres;
pub mod sqlite;

use super::value::{Row, Value};

/// Which SQL a store speaks, where the two differ (the schema's types, its catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// What went wrong in a store, in terms the history's errors are made of.
#[derive(Debug)]
pub struct DbError {
    pub kind: DbErrorKind,
    /// The store's own words (never a password: the stores' errors do not hold the URL).
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// Another writer held the write lock longer than the busy timeout.
    Busy,
    /// The file is not a database (SQLite).
    Corrupt,
    /// The server cannot be reached, or the connection to it was lost.
    Unreachable,
    /// The server refused the credentials.
    Refused,
    /// TLS could not be set up: the server does not offer it, or its certificate is not
    /// trusted.
    Tls,
    Other,
}

impl DbError {
    pub fn new(kind: DbErrorKind, detail: impl Into<String>) -> DbError {
        DbError {
            kind,
            detail: detail.into(),
        }
    }

    pub fn other(detail: impl Into<String>) -> DbError {
        DbError::new(DbErrorKind::Other, detail)
    }
}

/// Statements inside a write transaction.
pub trait Tx {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
}

/// The work of one write transaction.
pub type Work<'a> = dyn FnMut(&mut dyn Tx) -> Result<(), DbError> + Send + 'a;

/// An open store.
pub trait Backend: Send {
    fn dialect(&self) -> Dialect;
    /// A read, outside any transaction.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
    /// Runs `work` in one transaction that takes the store's write lock first, so that writers
    /// from every process and host take turns (waiting at most the busy timeout) and readers
    /// see a write whole or not at all. An error rolls everything back.
    fn write(&mut self, work: &mut Work<'_>) -> Result<(), DbError>;
}
