//! `[history]`: where the benchmark history is kept: a file (`path`) or a PostgreSQL server
//! (`url`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::located::{LocatedError, SourceFile};
use crate::history::{Location, Server, is_url};

/// `[history]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawHistory {
    /// The history database, relative to the lab root. Default: in the state directory (see
    /// [`crate::history::default_path`]).
    path: Option<Spanned<PathBuf>>,
    /// A PostgreSQL server shared by several hosts: `postgres://USER@HOST:PORT/DATABASE`, its
    /// password in `PGPASSWORD` (or the whole URL in `METALAB_HISTORY`), never here.
    url: Option<Spanned<String>>,
}

impl RawHistory {
    /// The configured history; `None` means the default file in the state directory.
    pub(in crate::config) fn resolve(
        self,
        file: &SourceFile,
        root: &Path,
    ) -> Result<Option<Location>, LocatedError> {
        match (self.path, self.url) {
            (Some(_), Some(url)) => Err(file
                .error_at(
                    url.span(),
                    "`path` and `url` both set: the history is one or the other",
                )
                .with_key("history.url")
                .with_hint("keep `path` for a file on this host, `url` for a shared server")),
            (Some(path), None) => Ok(Some(Location::File(root.join(path.get_ref())))),
            (None, Some(url)) => server(file, &url).map(|s| Some(Location::Server(Box::new(s)))),
            (None, None) => Ok(None),
        }
    }
}

fn server(file: &SourceFile, url: &Spanned<String>) -> Result<Server, LocatedError> {
    let at = |message: String, hint: &str| {
        file.error_at(url.span(), message)
            .with_key("history.url")
            .with_hint(hint.to_string())
    };
    let hint = "postgres://USER@HOST:PORT/DATABASE, its password in PGPASSWORD";
    if !is_url(url.get_ref()) {
        return Err(at("not a postgres:// URL".into(), hint));
    }
    Server::parse_without_password(url.get_ref())
        .map_err(|why| at(why, hint).hiding(&password_in(url.get_ref())))
}

/// The password written in a URL, if any: what the error must not show.
fn password_in(url: &str) -> String {
    url.parse::<postgres::Config>()
        .ok()
        .and_then(|c| {
            c.get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};
    use crate::history::Location;

    #[test]
    fn unset_means_the_state_directory() {
        assert!(loaded("").history.is_none());
    }

    #[test]
    fn a_path_is_under_the_lab_root() {
        let c = loaded("[history]\npath = \"bench/history.db\"\n");
        match c.history {
            Some(Location::File(p)) => assert_eq!(p, c.root.join("bench/history.db")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_url_names_a_server_and_shows_no_password() {
        let c = loaded("[history]\nurl = \"postgres://ci@db.lab:6432/bench\"\n");
        let shown = c.history.expect("a server").to_string();
        assert_eq!(shown, "postgres://ci@db.lab:6432/bench");
    }

    #[test]
    fn a_password_in_the_file_is_refused_at_its_key() {
        let e = rejected("[history]\nurl = \"postgres://ci:hunter2@db.lab/bench\"\n");
        assert_eq!((e.line, e.key.as_deref()), (2, Some("history.url")));
        assert!(e.message.contains("PGPASSWORD"), "{}", e.message);
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("ci:*******@db.lab"), "{e}");
    }

    #[test]
    fn path_and_url_together_are_refused() {
        let e = rejected("[history]\npath = \"h.db\"\nurl = \"postgres://ci@db/bench\"\n");
        assert!(e.message.contains("both set"), "{}", e.message);
    }
}
