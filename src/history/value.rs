//! The values that cross between the history and its store, the same for SQLite and PostgreSQL:
//! the history's code builds its statements and reads its rows in these, and each store
//! translates them to and from its own types.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backend::DbError;
use crate::ids::RunId;

/// A parameter or a column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a parameter list: `&params![a, b]`.
macro_rules! params {
    ($($v:expr),* $(,)?) => { [$($crate::history::value::Value::from($v)),*] };
}
pub(crate) use params;

/// One row of a query's result, read by column index.
#[derive(Debug)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> Result<&Value, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::other(format!("column {i} missing from a result row")))
    }

    fn mismatch(&self, i: usize, wanted: &str) -> DbError {
        DbError::other(format!(
            "column {i}: expected {wanted}, found {:?}",
            self.0.get(i)
        ))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    pub fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.get(i)? {
            Value::Int(v) => Ok(*v),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// A whole number that fits in `T` (a count, a core count).
    pub fn count<T: TryFrom<i64>>(&self, i: usize) -> Result<T, DbError> {
        T::try_from(self.int(i)?).map_err(|_| self.mismatch(i, "a small whole number"))
    }

    pub fn flag(&self, i: usize) -> Result<bool, DbError> {
        Ok(self.int(i)? != 0)
    }

    pub fn real(&self, i: usize) -> Result<f64, DbError> {
        match self.get(i)? {
            Value::Real(v) => Ok(*v),
            // A REAL column holding a whole number reads back as an integer in SQLite.
            Value::Int(v) => Ok(*v as f64),
            _ => Err(self.mismatch(i, "a number")),
        }
    }

    pub fn time(&self, i: usize) -> Result<DateTime<Utc>, DbError> {
        let text = self.text(i)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| DbError::other(format!("column {i}: bad time {text:?}: {e}")))
    }

    pub fn run_id(&self, i: usize) -> Result<RunId, DbError> {
        let text = self.text(i)?;
        RunId::parse(&text).ok_or_else(|| DbError::other(format!("bad run id {text:?}")))
    }

    /// An enum stored under the name serde gives it (`passed`, `higher`).
    pub fn named<T: DeserializeOwned>(&self, i: usize) -> Result<T, DbError> {
        let text = self.text(i)?;
        serde_json::from_value(serde_json::Value::String(text.clone()))
            .map_err(|e| DbError::other(format!("column {i}: unknown value {text:?}: {e}")))
    }
}

/// Times as RFC 3339 in UTC with a fixed number of digits, so text order is time order.
pub fn stamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An enum's name as serde writes it (`passed`, `higher`): the same words as results.json.
pub fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
