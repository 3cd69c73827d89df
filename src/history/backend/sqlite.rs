//! The history in one SQLite file: WAL mode lets readers and one writer proceed together, and a
//! busy timeout makes a second writer wait its turn instead of failing.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{Backend, DbError, DbErrorKind, Dialect, Tx, Work};
use crate::history::value::{Row, Value};

pub struct Sqlite {
    conn: Connection,
}

impl Sqlite {
    /// Opens (creating it if needed) the file at `path`.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Sqlite, DbError> {
        let conn = Connection::open(path).map_err(classify)?;
        conn.busy_timeout(busy_timeout).map_err(classify)?;
        write_ahead_log(&conn, busy_timeout)?;
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(classify)?;
        Ok(Sqlite { conn })
    }
}

/// WAL: readers never block the writer, and a crash mid-write leaves the file whole. A new file
/// is switched to it by its first connection; another that asks meanwhile (while the first
/// switches, or creates the tables) is told "locked" at once, its busy handler bypassed, so it
/// asks again until `busy_timeout` has passed.
fn write_ahead_log(conn: &Connection, busy_timeout: Duration) -> Result<(), DbError> {
    let deadline = std::time::Instant::now() + busy_timeout;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(classify(e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl Backend for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        query(&self.conn, sql, params)
    }

    fn write(&mut self, work: &mut Work<'_>) -> Result<(), DbError> {
        // Immediate: take the write lock up front, so the busy timeout applies to waiting for it.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(classify)?;
        work(&mut SqliteTx(&tx))?;
        tx.commit().map_err(classify)
    }
}

struct SqliteTx<'a>(&'a rusqlite::Transaction<'a>);

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        query(self.0, sql, params)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.0.prepare_cached(&numbered(sql)).map_err(classify)?;
        let changed = stmt
            .execute(rusqlite::params_from_iter(params.iter().map(to_sql)))
            .map_err(classify)?;
        Ok(changed as u64)
    }
}

fn query(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
    let mut stmt = conn.prepare_cached(&numbered(sql)).map_err(classify)?;
    let columns = stmt.column_count();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params.iter().map(to_sql)), |r| {
            (0..columns).map(|i| r.get_ref(i).map(from_sql)).collect()
        })
        .map_err(classify)?;
    rows.map(|r| r.map(Row).map_err(classify)).collect()
}

/// `$1` as SQLite numbers its parameters, `?1`: a `$` name would be numbered by where it first
/// appears rather than by its digits.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Real(f) => rusqlite::types::Value::Real(*f),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into()),
    }
}

/// Busy, not a database, or anything else.
fn classify(e: rusqlite::Error) -> DbError {
    let kind = match e.sqlite_error_code() {
        _ if is_busy(&e) => DbErrorKind::Busy,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DbErrorKind::Corrupt,
        _ => DbErrorKind::Other,
    };
    DbError::new(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opening_a_new_file_at_once_all_wait_their_turn() {
        // Each switches the new file to WAL and brings its schema up to date: none may fail
        // for another being at it.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("history.sqlite");
            let start = std::sync::Barrier::new(6);
            std::thread::scope(|s| {
                let opened: Vec<_> = (0..6)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            crate::history::History::open_with(
                                crate::history::Location::File(path.clone()),
                                Duration::from_secs(10),
                            )
                            .map(drop)
                        })
                    })
                    .collect();
                for o in opened {
                    o.join().unwrap().unwrap();
                }
            });
        }
    }

    #[test]
    fn dollar_parameters_become_numbered_ones() {
        assert_eq!(
            numbered("SELECT $2 WHERE a = $1 AND b = $10"),
            "SELECT ?2 WHERE a = ?1 AND b = ?10"
        );
        assert_eq!(numbered("SELECT '$' || x$y"), "SELECT '$' || x$y");
    }
}
