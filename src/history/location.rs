//! Where the history lives: a SQLite file (one host's), or a PostgreSQL server that a fleet of
//! hosts shares, named by a `postgres://` URL.
//!
//! A server's password is a secret: it is never shown (errors and notices print the URL without
//! it), never written to metalab.toml (refused there), and comes from `METALAB_HISTORY` or
//! PostgreSQL's own `PGPASSWORD`, neither of which any child process inherits.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use postgres::config::Host;

/// How long connecting to the server may take, unless the URL says (`connect_timeout=`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long sent data may go unacknowledged before the connection counts as lost: a server that
/// vanishes mid-run must not hang the end of the run.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The history's store.
#[derive(Debug, Clone)]
pub enum Location {
    File(PathBuf),
    Server(Box<Server>),
}

impl Location {
    /// A `postgres://` or `postgresql://` URL is a server; anything else is a file's path.
    pub fn parse(text: &str) -> Result<Location, String> {
        if is_url(text) {
            Server::parse(text).map(|s| Location::Server(Box::new(s)))
        } else {
            Ok(Location::File(PathBuf::from(text)))
        }
    }

    /// The file, when the history is one.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Location::File(p) => Some(p),
            Location::Server(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::Server(s) => write!(f, "{s}"),
        }
    }
}

/// Whether `text` names a PostgreSQL server.
pub fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// A PostgreSQL server and database, with the credentials to reach it.
#[derive(Debug, Clone)]
pub struct Server {
    config: postgres::Config,
    shown: String,
}

impl Server {
    /// Reads a `postgres://user:password@host:port/database?param=value` URL. The error never
    /// repeats the URL, which may hold a password.
    pub fn parse(url: &str) -> Result<Server, String> {
        let config = url
            .parse()
            .map_err(|e| format!("not a usable PostgreSQL URL: {e}"))?;
        Server::from_config(config)
    }

    /// As [`Server::parse`], for a URL written in a file that is shared (metalab.toml): one
    /// that holds a password is refused.
    pub fn parse_without_password(url: &str) -> Result<Server, String> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| format!("not a usable PostgreSQL URL: {e}"))?;
        if config.get_password().is_some() {
            return Err(
                "a password here would be in the repository: remove it from the URL \
                        and set PGPASSWORD, or put the whole URL in METALAB_HISTORY"
                    .into(),
            );
        }
        Server::from_config(config)
    }

    fn from_config(mut config: postgres::Config) -> Result<Server, String> {
        if config.get_user().is_none() {
            return Err("the PostgreSQL URL names no user (postgres://USER@HOST/DATABASE)".into());
        }
        if config.get_password().is_none()
            && let Some(password) = std::env::var_os("PGPASSWORD")
        {
            config.password(password.as_encoded_bytes());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.application_name("metalab");
        let shown = shown(&config);
        Ok(Server { config, shown })
    }

    pub fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// Whether a password was given (in the URL or `PGPASSWORD`).
    pub fn has_password(&self) -> bool {
        self.config.get_password().is_some()
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `postgres://user@host:port/database`: the URL without its password or parameters.
fn shown(config: &postgres::Config) -> String {
    let user = config.get_user().unwrap_or_default();
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{}/{db}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_shown_without_its_password() {
        let loc = Location::parse("postgres://ci:hunter2@db.lab:6432/bench?connect_timeout=3")
            .expect("a URL");
        let shown = loc.to_string();
        assert_eq!(shown, "postgres://ci@db.lab:6432/bench");
        assert!(!format!("{loc:?}").contains("hunter2"), "{loc:?}");
    }

    #[test]
    fn anything_but_a_url_is_a_file() {
        assert!(matches!(
            Location::parse("bench/history.sqlite"),
            Ok(Location::File(_))
        ));
        let err = Location::parse("postgresql://db.lab:notaport/x").expect_err("a bad port");
        assert!(err.starts_with("not a usable PostgreSQL URL"), "{err}");
    }
}
