//! `metalab.toml`: the lab's description, typed and validated before anything starts.
//!
//! Every error names the file, line, column and key (see [`located`]). Paths in the file are
//! relative to the directory that holds it, the lab root.

pub mod located;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use located::{LocatedError, SourceFile};

/// The file name metalab looks for in the current directory and its parents.
pub const FILE_NAME: &str = "metalab.toml";

/// The box recipe a lab has when `lab.box` is not set and this directory exists.
pub const DEFAULT_BOX_RECIPE: &str = "boxes/debian12";

/// A loaded and validated lab configuration, with every path made absolute.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory holding it: the lab root, synced to hosts as a whole.
    pub root: PathBuf,
    pub vagrantfile: PathBuf,
    pub suites_dir: PathBuf,
    pub artifacts_dir: PathBuf,
    /// The recipe of the box metalab builds (`lab.box`, or `boxes/debian12` when that exists);
    /// `None`: the Vagrantfile's box is used as Vagrant finds it.
    pub box_recipe: Option<PathBuf>,
    /// Whether the Vagrantfile's provisioners run after `vagrant up` (`lab.provision`).
    pub provision: bool,
    pub provider: ProviderKind,
    /// The inventory of the `ssh` provider, paths resolved.
    pub ssh_hosts: Vec<SshHostConfig>,
    /// The settings of the `metal` provider.
    pub metal: Option<MetalConfig>,
    pub vm: VmDefaults,
    pub timeouts: Timeouts,
    pub retries: Retries,
    pub capacity: Capacity,
    /// `[history] path`: the benchmark history, made absolute; `None` means the default in the
    /// state directory (see [`crate::history::default_path`]).
    pub history_path: Option<PathBuf>,
    pub bench: Bench,
}

/// The smallest change of a metric's median that counts, by default: 5%.
pub const DEFAULT_MIN_EFFECT: f64 = 0.05;

/// The regression gate's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bench {
    /// Smallest relative change of a metric's median that counts as a regression or an
    /// improvement, as a fraction: 0.05 is 5%. Default 0.05.
    #[serde(deserialize_with = "fraction")]
    pub min_effect: f64,
}

impl Default for Bench {
    fn default() -> Self {
        Bench {
            min_effect: DEFAULT_MIN_EFFECT,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    path: Option<PathBuf>,
}

/// How much a host may run at once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// At most this many VMs at once on one host. Default: what the host's cores and free
    /// memory allow (under TCG each VM keeps a core busy).
    pub vms: Option<usize>,
}

/// How often failures are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retries {
    /// Infrastructure failures before any suite ran (a VM that does not boot, SSH that does not
    /// answer): retried with fresh VMs this many times. Default 1.
    pub infra: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { infra: 1 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// This machine.
    Local,
    /// Machines of an SSH inventory (`[[provider.hosts]]`).
    Ssh,
    /// Bare-metal devices made for the run through the Packet / Equinix Metal API v1
    /// (`[provider.metal]`).
    Metal,
}

/// The `metal` provider: devices created per run, deleted after it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetalConfig {
    pub project: String,
    pub plan: String,
    /// Tried in order when one has no capacity; `"any"` lets the API choose.
    #[serde(default = "default_metros")]
    pub metros: Vec<String>,
    pub operating_system: String,
    /// How many devices to create (the suites are spread over them). Default 1.
    #[serde(default = "one")]
    pub devices: usize,
    /// Each device gets `termination_time = now + ttl`: the platform deletes it even if metalab
    /// dies. Default 3h.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Extra tags; `metalab` and `run:<run-id>` are always set.
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// The environment variable holding the API token. Default `METAL_AUTH_TOKEN` (with
    /// `PACKET_AUTH_TOKEN` accepted). The token itself never goes in a file.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// How long a device may take to become active. Default 30m.
    #[serde(default = "default_provision_timeout", with = "humantime_serde")]
    pub provision_timeout: Duration,
    /// How often a provisioning device is looked at. Default 10s.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// metalab's state directory on the devices. Default `/var/lib/metalab`.
    #[serde(default = "default_remote_home")]
    pub home: String,
}

fn default_metros() -> Vec<String> {
    vec!["any".into()]
}
fn one() -> usize {
    1
}
fn default_ttl() -> Duration {
    Duration::from_secs(3 * 3600)
}
fn default_api_url() -> String {
    crate::metal::DEFAULT_BASE_URL.into()
}
fn default_token_env() -> String {
    "METAL_AUTH_TOKEN".into()
}
fn default_provision_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_poll() -> Duration {
    Duration::from_secs(10)
}

/// One machine of an SSH inventory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshHostConfig {
    /// For messages and reports; default: the address.
    pub name: Option<String>,
    pub address: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// The private key to log in with (relative to the lab root, or `~/`).
    pub identity: PathBuf,
    /// The OpenSSH known_hosts file the host's key must be in. Default `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Add a host that is not in `known_hosts` yet on first contact (never a changed key).
    #[serde(default)]
    pub trust_first_use: bool,
    /// metalab's state directory on the host. Default `/var/lib/metalab`.
    #[serde(default = "default_remote_home")]
    pub home: String,
}

fn default_ssh_port() -> u16 {
    22
}
fn default_ssh_user() -> String {
    "root".into()
}
fn default_remote_home() -> String {
    crate::state::DEFAULT_HOME.into()
}

impl SshHostConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.address.clone())
    }
}

/// `kvm` where it works, `tcg` (software emulation) otherwise; `auto` probes once per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

/// Resources of each lab VM, handed to the Vagrantfile through `METALAB_*` variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmDefaults {
    /// vCPUs per VM. Default 1.
    #[serde(deserialize_with = "at_least::<1, _>")]
    pub cpus: u32,
    /// MiB of memory per VM. Default 768; a Debian VM needs at least 256.
    #[serde(deserialize_with = "at_least::<256, _>")]
    pub memory: u32,
    /// Accelerator. Default `auto`.
    pub accel: Accel,
}

/// Deadlines of each phase. A test or step may set its own `timeout` in its suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Bringing the VMs up, until each answers SSH. Default 15m.
    #[serde(with = "humantime_serde")]
    pub up: Duration,
    /// One setup or teardown step of a suite. Default 5m.
    #[serde(with = "humantime_serde")]
    pub setup: Duration,
    /// One test. Default 5m.
    #[serde(with = "humantime_serde")]
    pub test: Duration,
    /// Destroying the VMs. Default 3m.
    #[serde(with = "humantime_serde")]
    pub destroy: Duration,
}

impl Default for VmDefaults {
    fn default() -> Self {
        VmDefaults {
            cpus: 1,
            memory: 768,
            accel: Accel::Auto,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            up: Duration::from_secs(15 * 60),
            setup: Duration::from_secs(5 * 60),
            test: Duration::from_secs(5 * 60),
            destroy: Duration::from_secs(3 * 60),
        }
    }
}

/// The file as written, before paths are resolved and checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    lab: RawLab,
    #[serde(default)]
    provider: RawProvider,
    #[serde(default)]
    vm: VmDefaults,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    retries: Retries,
    #[serde(default)]
    capacity: Capacity,
    #[serde(default)]
    history: RawHistory,
    #[serde(default)]
    bench: Bench,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLab {
    vagrantfile: Option<Spanned<PathBuf>>,
    suites: Option<Spanned<PathBuf>>,
    artifacts: Option<Spanned<PathBuf>>,
    #[serde(rename = "box")]
    box_recipe: Option<Spanned<PathBuf>>,
    provision: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    kind: Spanned<ProviderKind>,
    #[serde(default)]
    hosts: Vec<SshHostConfig>,
    metal: Option<RawMetal>,
}

/// `[provider.metal]` as written: a token here is refused with its location.
#[derive(Deserialize)]
struct RawMetal {
    token: Option<Spanned<toml::Value>>,
    #[serde(flatten)]
    _rest: toml::Table,
}

impl Default for RawProvider {
    fn default() -> Self {
        RawProvider {
            kind: Spanned::new(0..0, ProviderKind::Local),
            hosts: Vec::new(),
            metal: None,
        }
    }
}

/// Why a configuration could not be loaded. Every variant means "bad input" (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no {FILE_NAME} and no Vagrantfile in {0} or any parent directory (pass --config PATH)"
    )]
    NotFound(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Located(#[from] LocatedError),
}

impl Config {
    /// Finds the lab from `start`: the nearest directory (itself or a parent) with a
    /// `metalab.toml`, or else with a `Vagrantfile` (a lab that is only a Vagrantfile and its
    /// suites runs with the defaults).
    pub fn discover(start: &Path) -> Result<Config, ConfigError> {
        for dir in start.ancestors() {
            let file = dir.join(FILE_NAME);
            if file.is_file() {
                return Config::load(&file);
            }
            if dir.join("Vagrantfile").is_file() {
                return Config::defaults(dir);
            }
        }
        Err(ConfigError::NotFound(start.to_path_buf()))
    }

    /// The lab's configuration: the file given (`--config`), or else the one [`Config::discover`]
    /// finds from the current directory.
    pub fn find(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Config::load(path),
            None => Config::discover(&std::env::current_dir().unwrap_or_default()),
        }
    }

    /// [`Config::find`], with `None` when there is no lab here at all.
    pub fn find_optional(explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
        match Config::find(explicit) {
            Err(ConfigError::NotFound(_)) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Every setting at its default, for the lab in `dir`.
    pub fn defaults(dir: &Path) -> Result<Config, ConfigError> {
        let file = SourceFile {
            path: dir.join(FILE_NAME),
            text: String::new(),
        };
        Config::parse(file)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if path.is_dir() {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::other("is a directory, not a file"),
            });
        }
        let file = SourceFile::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(file)
    }

    fn parse(file: SourceFile) -> Result<Config, ConfigError> {
        let path = file.path.clone();
        let path = path.as_path();
        let raw: RawConfig = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
        let root = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .canonicalize()
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let lab = &raw.lab;
        let vagrantfile = existing(
            &file,
            &root,
            &lab.vagrantfile,
            "Vagrantfile",
            "lab.vagrantfile",
            false,
        )?;
        let suites_dir = existing(&file, &root, &lab.suites, "suites", "lab.suites", true)?;
        let box_recipe = match &lab.box_recipe {
            None if !root.join(DEFAULT_BOX_RECIPE).is_dir() => None,
            given => Some(existing(
                &file,
                &root,
                given,
                DEFAULT_BOX_RECIPE,
                "lab.box",
                true,
            )?),
        };
        let artifacts_dir = root.join(
            lab.artifacts
                .as_ref()
                .map_or(Path::new("artifacts"), |s| s.get_ref()),
        );
        let ssh_hosts = ssh_hosts(&file, &root, &raw.provider)?;
        let metal = metal(&file, &raw.provider)?;
        let history_path = raw.history.path.map(|p| root.join(p));
        Ok(Config {
            path: path.to_path_buf(),
            root,
            vagrantfile,
            suites_dir,
            artifacts_dir,
            box_recipe,
            provision: lab.provision.unwrap_or(true),
            provider: *raw.provider.kind.get_ref(),
            ssh_hosts,
            metal,
            vm: raw.vm,
            timeouts: raw.timeouts,
            retries: raw.retries,
            capacity: raw.capacity,
            history_path,
            bench: raw.bench,
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

/// A fraction in [0, 1); the toml deserializer attaches the value's span to the error.
fn fraction<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    if !(0.0..1.0).contains(&x) {
        return Err(serde::de::Error::custom(format!(
            "{x} is not a fraction between 0 and 1 (0.05 is 5%)"
        )));
    }
    Ok(x)
}

/// Rejects numbers below `MIN`; the toml deserializer attaches the value's span to the error.
fn at_least<'de, const MIN: u32, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if n < MIN {
        return Err(serde::de::Error::custom(format!(
            "{n} is below the minimum of {MIN}"
        )));
    }
    Ok(n)
}

/// The `ssh` provider needs an inventory; paths in it are resolved like every other path.
fn ssh_hosts(
    file: &SourceFile,
    root: &Path,
    p: &RawProvider,
) -> Result<Vec<SshHostConfig>, LocatedError> {
    if *p.kind.get_ref() == ProviderKind::Ssh && p.hosts.is_empty() {
        return Err(file
            .error_at(p.kind.span(), "the ssh provider needs at least one host")
            .with_key("provider.kind")
            .with_hint("add [[provider.hosts]] with address, user and identity"));
    }
    Ok(p.hosts
        .iter()
        .map(|h| SshHostConfig {
            identity: expand(root, &h.identity),
            known_hosts: h.known_hosts.as_ref().map(|k| expand(root, k)),
            ..h.clone()
        })
        .collect())
}

/// `~/x` → the home directory; relative → under the lab root.
fn expand(root: &Path, p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        Err(_) => root.join(p),
    }
}

/// `[provider.metal]`, required by the metal provider. A token in the file is refused: it would
/// end up in version control, logs and archives.
fn metal(file: &SourceFile, p: &RawProvider) -> Result<Option<MetalConfig>, LocatedError> {
    let Some(raw) = &p.metal else {
        if *p.kind.get_ref() == ProviderKind::Metal {
            return Err(file
                .error_at(
                    p.kind.span(),
                    "the metal provider needs a [provider.metal] table",
                )
                .with_key("provider.kind")
                .with_hint("set project, plan, operating_system (and metros)"));
        }
        return Ok(None);
    };
    if let Some(token) = &raw.token {
        return Err(file
            .error_at(token.span(), "the API token must not be written in a file")
            .with_key("provider.metal.token")
            .with_hint("remove it, and set METAL_AUTH_TOKEN (or the variable `token_env` names) in the environment"));
    }
    // Deserialized again from the text, so that errors keep their place in the file.
    #[derive(Deserialize)]
    struct Outer {
        provider: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        metal: MetalConfig,
    }
    let outer: Outer = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
    Ok(Some(outer.provider.metal))
}
