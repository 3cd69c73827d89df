//! The history on a PostgreSQL server that many hosts share.
//!
//! Writers take turns through one transaction-scoped advisory lock, the same discipline as
//! SQLite's single writer: a run is stored whole or not at all, and two hosts storing at once
//! both succeed, one after the other. Text columns that are sorted use the "C" collation, so
//! the order is the same as SQLite's whatever the server's locale.
//!
//! The connection uses TLS as the URL's `sslmode` says (`prefer` by default: TLS when the server
//! offers it; `require`; `disable`), verifying the server's certificate against the CA in
//! `PGSSLROOTCERT` (libpq's variable) or else the system's CAs, and the name or address the URL
//! gives.
//!
//! The `postgres` client drives its own small tokio runtime and must not be called from within
//! another one (metalab's commands are async), so each call runs on a short-lived thread of its
//! own: [`outside_runtime`].

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Statement};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Backend, DbError, DbErrorKind, Dialect, Tx, Work};
use crate::history::value::{Row, Value};

/// The advisory lock every writer takes: any number, the same for every metalab.
const WRITE_LOCK: i64 = 0x006d_6574_616c_6162; // "metalab"

pub struct Postgres {
    /// Always there but while being dropped (see the `Drop` impl).
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    busy_timeout: Duration,
}

impl Postgres {
    /// Connects to the server `config` names.
    pub fn connect(config: &postgres::Config, busy_timeout: Duration) -> Result<Postgres, DbError> {
        let config = config.clone();
        let tls = tls()?;
        let client = outside_runtime(move || config.connect(tls)).map_err(classify)?;
        Ok(Postgres {
            client: Some(client),
            statements: HashMap::new(),
            busy_timeout,
        })
    }
}

/// The variable naming the PEM file of the CAs that sign the server's certificate, as libpq.
pub const ROOT_CERT_ENV: &str = "PGSSLROOTCERT";

/// TLS for the connection: the CAs of `PGSSLROOTCERT`, else the system's.
fn tls() -> Result<MakeRustlsConnect, DbError> {
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os(ROOT_CERT_ENV) {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                DbError::new(
                    DbErrorKind::Other,
                    format!("{ROOT_CERT_ENV}={}: {e}", path.to_string_lossy()),
                )
            };
            let certs = CertificateDer::pem_file_iter(&path).map_err(|e| bad(&e))?;
            for cert in certs {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(bad(&"no certificate in it"));
            }
        }
        None => {
            // A certificate the system store holds but rustls cannot parse is skipped.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::other(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

impl Backend for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let Postgres {
            client, statements, ..
        } = self;
        let client = client.as_mut().ok_or_else(closed)?;
        outside_runtime(move || query(client, statements, sql, params))
    }

    fn write(&mut self, work: &mut Work<'_>) -> Result<(), DbError> {
        let Postgres {
            client,
            statements,
            busy_timeout,
        } = self;
        let client = client.as_mut().ok_or_else(closed)?;
        let lock_timeout = format!("SET LOCAL lock_timeout = {}", busy_timeout.as_millis());
        outside_runtime(move || {
            let mut tx = client.transaction().map_err(classify)?;
            tx.batch_execute(&lock_timeout).map_err(classify)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(classify)?;
            work(&mut PgTx {
                tx: &mut tx,
                statements,
            })?;
            tx.commit().map_err(classify)
        })
    }
}

impl Drop for Postgres {
    /// Closing the connection blocks on the client's runtime too.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            outside_runtime(move || drop(client));
        }
    }
}

fn closed() -> DbError {
    DbError::new(DbErrorKind::Unreachable, "the connection is closed")
}

/// Runs `f` on a thread of its own, where no tokio runtime is entered.
fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    statements: &'a mut HashMap<String, Statement>,
}

impl Tx for PgTx<'_, '_> {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        query(self.tx, self.statements, sql, params)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        let stmt = prepared(self.tx, self.statements, sql)?;
        self.tx.execute(&stmt, &refs(params)).map_err(classify)
    }
}

fn query(
    client: &mut impl postgres::GenericClient,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
    params: &[Value],
) -> Result<Vec<Row>, DbError> {
    let stmt = prepared(client, statements, sql)?;
    let rows = client.query(&stmt, &refs(params)).map_err(classify)?;
    rows.iter().map(row).collect()
}

/// The statement for `sql`, prepared once per connection.
fn prepared(
    client: &mut impl postgres::GenericClient,
    statements: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, DbError> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let stmt = client.prepare(sql).map_err(classify)?;
    statements.insert(sql.to_string(), stmt.clone());
    Ok(stmt)
}

fn refs(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn row(r: &postgres::Row) -> Result<Row, DbError> {
    let bad = |e: postgres::Error| DbError::other(e.to_string());
    let values =
        r.columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Ok(match *c.type_() {
                    Type::INT8 => r.try_get::<_, Option<i64>>(i).map_err(bad)?.map(Value::Int),
                    Type::INT4 => {
                        (r.try_get::<_, Option<i32>>(i).map_err(bad)?).map(|v| Value::Int(v.into()))
                    }
                    Type::INT2 => {
                        (r.try_get::<_, Option<i16>>(i).map_err(bad)?).map(|v| Value::Int(v.into()))
                    }
                    Type::BOOL => (r.try_get::<_, Option<bool>>(i).map_err(bad)?)
                        .map(|v| Value::Int(v.into())),
                    Type::FLOAT8 => (r.try_get::<_, Option<f64>>(i).map_err(bad)?).map(Value::Real),
                    Type::FLOAT4 => (r.try_get::<_, Option<f32>>(i).map_err(bad)?)
                        .map(|v| Value::Real(v.into())),
                    _ => (r.try_get::<_, Option<String>>(i).map_err(bad)?).map(Value::Text),
                }
                .unwrap_or(Value::Null))
            })
            .collect::<Result<Vec<Value>, DbError>>()?;
    Ok(Row(values))
}

/// A [`Value`] as the parameter's type asks: the schema's BIGINT, DOUBLE PRECISION and TEXT.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Value::Int(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            (Value::Int(v), _) => v.to_sql(ty, out),
            (Value::Real(v), _) => v.to_sql(ty, out),
            (Value::Text(v), _) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Refused credentials, a busy lock, a lost server, or anything else.
fn classify(e: postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let kind = if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            DbErrorKind::Refused
        } else if *code == SqlState::LOCK_NOT_AVAILABLE {
            DbErrorKind::Busy
        } else if code.code().starts_with("57P") || code.code().starts_with("08") {
            DbErrorKind::Unreachable // the server is shutting down, or the connection failed
        } else {
            DbErrorKind::Other
        };
        return DbError::new(kind, format!("{} ({})", db.message(), code.code()));
    }
    // Not the server's answer: the connection could not be made or was lost (an I/O error, a
    // closed connection), or a value did not convert.
    let lost = e.is_closed()
        || e.source()
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
    let mut detail = e.to_string();
    if let Some(cause) = e.source() {
        let cause = cause.to_string();
        if !detail.contains(&cause) {
            detail = format!("{detail}: {cause}");
        }
    }
    // The server asked for a password and none was given: a login refused before it was tried.
    let no_password = detail.contains("password missing");
    let kind = if no_password {
        DbErrorKind::Refused
    } else if detail.contains("TLS") {
        DbErrorKind::Tls
    } else if lost {
        DbErrorKind::Unreachable
    } else {
        DbErrorKind::Other
    };
    DbError::new(kind, detail)
}
