//! `[lab]`: where the lab's files are, relative to the lab root (the directory holding
//! `metalab.toml`), and whether the Vagrantfile's provisioners run.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use crate::config::located::{LocatedError, SourceFile};

/// The box recipe a lab has when `lab.box` is not set and this directory exists.
pub const DEFAULT_BOX_RECIPE: &str = "boxes/debian12";

/// The directory of container image recipes when `lab.images` is not set.
pub const DEFAULT_IMAGES: &str = "images";

/// `[lab]` as written, before paths are resolved and checked.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawLab {
    vagrantfile: Option<Spanned<PathBuf>>,
    suites: Option<Spanned<PathBuf>>,
    artifacts: Option<Spanned<PathBuf>>,
    #[serde(rename = "box")]
    box_recipe: Option<Spanned<PathBuf>>,
    images: Option<Spanned<PathBuf>>,
    provision: Option<bool>,
}

/// `[lab]` resolved: absolute paths, each checked to exist but the artifacts directory (runs
/// make it).
pub(in crate::config) struct Lab {
    pub vagrantfile: PathBuf,
    pub suites_dir: PathBuf,
    pub artifacts_dir: PathBuf,
    pub box_recipe: Option<PathBuf>,
    pub images_dir: PathBuf,
    pub provision: bool,
}

impl RawLab {
    /// Resolves every path under `root` and applies the defaults: `Vagrantfile`, `suites`,
    /// `artifacts`, [`DEFAULT_BOX_RECIPE`] when that directory exists, `images` (which need not
    /// exist unless set), provisioners on.
    pub(in crate::config) fn resolve(
        &self,
        file: &SourceFile,
        root: &Path,
    ) -> Result<Lab, LocatedError> {
        let vagrantfile = existing(
            file,
            root,
            &self.vagrantfile,
            "Vagrantfile",
            "lab.vagrantfile",
            false,
        )?;
        let suites_dir = existing(file, root, &self.suites, "suites", "lab.suites", true)?;
        let box_recipe = match &self.box_recipe {
            None if !root.join(DEFAULT_BOX_RECIPE).is_dir() => None,
            given => Some(existing(
                file,
                root,
                given,
                DEFAULT_BOX_RECIPE,
                "lab.box",
                true,
            )?),
        };
        let images_dir = match &self.images {
            None => root.join(DEFAULT_IMAGES),
            given => existing(file, root, given, DEFAULT_IMAGES, "lab.images", true)?,
        };
        let artifacts_dir = root.join(
            self.artifacts
                .as_ref()
                .map_or(Path::new("artifacts"), |s| s.get_ref()),
        );
        Ok(Lab {
            vagrantfile,
            suites_dir,
            artifacts_dir,
            box_recipe,
            images_dir,
            provision: self.provision.unwrap_or(true),
        })
    }
}

/// Resolves a path setting and checks that it exists, pointing at the key (or its default).
fn existing(
    file: &SourceFile,
    root: &Path,
    value: &Option<Spanned<PathBuf>>,
    default: &str,
    key: &str,
    want_dir: bool,
) -> Result<PathBuf, LocatedError> {
    let rel = value.as_ref().map_or(Path::new(default), |s| s.get_ref());
    let abs = root.join(rel);
    let ok = if want_dir {
        abs.is_dir()
    } else {
        abs.is_file()
    };
    if ok {
        return Ok(abs);
    }
    let what = if want_dir { "directory" } else { "file" };
    let message = format!("{what} {} does not exist", abs.display());
    Err(match value {
        Some(s) => file.error_at(s.span(), message),
        None => file
            .error_at_start(format!("{message} (the default of `{key}`)"))
            .with_key(key),
    }
    .with_hint(format!(
        "set `{key}` to the {what}'s path, relative to {}",
        root.display()
    )))
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{lab, load, loaded, located, rejected};

    use super::*;

    #[test]
    fn defaults_are_under_the_lab_root() {
        let c = loaded("");
        assert_eq!(c.vagrantfile, c.root.join("Vagrantfile"));
        assert_eq!(c.suites_dir, c.root.join("suites"));
        assert_eq!(c.artifacts_dir, c.root.join("artifacts"));
        assert_eq!(c.box_recipe, None, "no boxes/debian12 here");
        assert_eq!(c.images_dir, c.root.join("images"), "need not exist");
        assert!(c.provision);
    }

    #[test]
    fn the_default_box_recipe_is_used_when_its_directory_exists() {
        let dir = lab("");
        std::fs::create_dir_all(dir.path().join(DEFAULT_BOX_RECIPE)).unwrap();
        let c = load(&dir).unwrap();
        assert_eq!(c.box_recipe, Some(c.root.join(DEFAULT_BOX_RECIPE)));
    }

    #[test]
    fn settings_are_relative_to_the_lab_root() {
        let dir = lab(
            "[lab]\nvagrantfile = \"vm/Vf\"\nartifacts = \"out\"\nimages = \"vm/img\"\nprovision = false\n",
        );
        std::fs::create_dir_all(dir.path().join("vm/img")).unwrap();
        std::fs::write(dir.path().join("vm/Vf"), "").unwrap();
        let c = load(&dir).unwrap();
        assert_eq!(c.vagrantfile, c.root.join("vm/Vf"));
        assert_eq!(c.artifacts_dir, c.root.join("out"));
        assert_eq!(c.images_dir, c.root.join("vm/img"));
        assert!(!c.provision);
    }

    #[test]
    fn a_missing_path_that_is_set_is_located_at_its_value() {
        let e = rejected("[lab]\nsuites = \"tests\"\n");
        assert_eq!((e.line, e.column), (2, 10));
        assert_eq!(e.key.as_deref(), Some("lab.suites"));
        assert!(e.message.starts_with("directory "), "{}", e.message);
        assert!(e.message.ends_with("tests does not exist"), "{}", e.message);
        assert!(
            e.hint
                .unwrap()
                .starts_with("set `lab.suites` to the directory's path")
        );
    }

    #[test]
    fn a_missing_default_names_the_key_it_is_the_default_of() {
        let dir = lab("");
        std::fs::remove_file(dir.path().join("Vagrantfile")).unwrap();
        let e = located(load(&dir));
        assert_eq!((e.line, e.column), (1, 1));
        assert_eq!(e.key.as_deref(), Some("lab.vagrantfile"));
        assert!(
            e.message
                .ends_with("Vagrantfile does not exist (the default of `lab.vagrantfile`)"),
            "{}",
            e.message
        );
    }
}
