//! Paths taken from data metalab did not just write (a results file read back, a tar stream from
//! a VM) must stay inside the directory they belong to: relative, and without `..`.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// Whether `path`, joined to a directory, stays inside it.
pub fn stays_inside(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// `path` under `dir`, without its `.` components (`mkdir("d/.")` needs `d`), when it stays
/// inside.
pub fn join_inside(dir: &Path, path: &Path) -> Option<PathBuf> {
    if !stays_inside(path) {
        return None;
    }
    let normal: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Some(dir.join(normal))
}

/// A path field of a file read back, refused when it would leave its directory.
pub fn inside<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    checked(PathBuf::deserialize(d)?)
}

/// [`inside`], for a field that may be absent.
pub fn inside_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Option::<PathBuf>::deserialize(d)?.map(checked).transpose()
}

/// A name that becomes a directory (a suite's), refused when it would leave its directory.
pub fn inside_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    checked(PathBuf::from(&name))?;
    Ok(name)
}

fn checked<E: serde::de::Error>(path: PathBuf) -> Result<PathBuf, E> {
    if stays_inside(&path) {
        return Ok(path);
    }
    Err(E::custom(format!(
        "{:?} leaves the directory it belongs to: it must be relative, without `..`",
        path.display().to_string()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_without_parents_stay_inside() {
        for ok in ["a.log", "suite/t.log", "./x", "", "a/./b"] {
            assert!(stays_inside(Path::new(ok)), "{ok}");
        }
        for bad in ["../escape", "a/../../b", "/etc/passwd", "a/.."] {
            assert!(!stays_inside(Path::new(bad)), "{bad}");
            assert_eq!(join_inside(Path::new("/d"), Path::new(bad)), None);
        }
        let joined = join_inside(Path::new("/d"), Path::new("./a/./b")).unwrap();
        assert_eq!(joined.as_os_str(), "/d/a/b");
        assert_eq!(
            join_inside(Path::new("/d"), Path::new("./")),
            Some("/d".into())
        );
    }

    #[test]
    fn a_field_that_leaves_is_refused_naming_the_path() {
        #[derive(Deserialize, Debug)]
        struct Record {
            #[serde(deserialize_with = "inside")]
            #[allow(dead_code)]
            log: PathBuf,
        }
        let e = serde_json::from_str::<Record>(r#"{"log": "../../etc/shadow"}"#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"../../etc/shadow\" leaves the directory it belongs to"),
            "{e}"
        );
        assert!(serde_json::from_str::<Record>(r#"{"log": "s/t.log"}"#).is_ok());
    }
}
