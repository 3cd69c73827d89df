//! A real PostgreSQL server from the host's packages, as an unprivileged cluster of its own (no
//! system service): a private directory, a free loopback port, a role `metalab` with a random
//! password. Dropping it kills every process of the cluster and removes its directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rand::Rng as _;

use super::text;

/// Where the initdb'd cluster that each server copies is kept, one per PostgreSQL version:
/// initdb takes about 1.5 s, a copy about 0.15 s.
const TEMPLATES_DIR: &str = "/var/tmp/metalab-test-postgres";

/// Servers that fail to start because another process took their port meanwhile try again on
/// another port, this many times.
const PORT_ATTEMPTS: usize = 5;

/// The superuser, who reaches the server only through the unix socket in its private directory.
const SUPERUSER: &str = "postgres";

const PG_HBA: &str = "\
# The superuser sets up through the unix socket, which only root and the cluster's owner can reach.
local all postgres trust
# The role under test, over TCP and only with its password.
host all metalab 127.0.0.1/32 scram-sha-256
";

/// A running (or `stop()`ped) server, killed and removed when dropped.
pub struct PgServer {
    install: Install,
    /// Holds the data directory, the unix socket and the server's log.
    dir: tempfile::TempDir,
    port: u16,
    password: String,
}

impl PgServer {
    /// Starts a fresh cluster with a role `metalab` (password generated randomly per server)
    /// owning a database `metalab`.
    pub fn start() -> PgServer {
        let install = Install::find();
        let template = install.template();
        let dir = tempfile::Builder::new()
            .prefix("metalab-pg-")
            .tempdir_in(scratch())
            .unwrap();
        run(Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(dir.path().join("data")));
        // Written per server rather than into the template, which outlives changes to this file.
        std::fs::write(dir.path().join("data/pg_hba.conf"), PG_HBA).unwrap();
        install.user.take(dir.path());
        let mut server = PgServer {
            install,
            dir,
            port: 0,
            password: random_password(),
        };
        server.start_on_a_free_port();
        server.psql(
            "postgres",
            &format!("CREATE ROLE metalab LOGIN PASSWORD '{}'", server.password),
        );
        server.psql("postgres", "CREATE DATABASE metalab OWNER metalab");
        server
    }

    /// postgres://metalab:PASSWORD@127.0.0.1:PORT/metalab
    pub fn url(&self) -> String {
        self.url_of("metalab")
    }

    /// The same without the password (for tests that pass it through PGPASSWORD).
    pub fn url_without_password(&self) -> String {
        format!("postgres://metalab@127.0.0.1:{}/metalab", self.port)
    }

    /// The role `metalab`'s password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's data directory (its processes run in it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A new, empty database owned by `metalab` on this server, and its URL (tests isolate
    /// themselves by database). `name`: lowercase letters, digits and underscores, so that it
    /// needs no quoting in SQL or in the URL.
    pub fn database(&self, name: &str) -> String {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database name {name:?}: only [a-z0-9_]"
        );
        self.psql("postgres", &format!("CREATE DATABASE {name} OWNER metalab"));
        self.url_of(name)
    }

    /// Turns TLS on, with a server certificate for 127.0.0.1 from a CA made for this server,
    /// and admits `metalab` over TLS only (`hostssl`): a connection without TLS is refused.
    /// Returns the CA's certificate, which a client must trust.
    pub fn require_tls(&self) -> PathBuf {
        let tls = self.dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let openssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(&tls));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=metalab test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(tls.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        let data = self.data_dir();
        for file in ["server.crt", "server.key"] {
            std::fs::copy(tls.join(file), data.join(file)).unwrap();
        }
        run(Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key")));
        self.install.user.take(&data);
        std::fs::write(
            data.join("pg_hba.conf"),
            PG_HBA.replace("\nhost all metalab", "\nhostssl all metalab"),
        )
        .unwrap();
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
        // The reload is asynchronous: wait until the server takes TLS.
        let started = Instant::now();
        while self.psql("postgres", "SHOW ssl") != "on" {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "ssl never came on"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tls.join("ca.crt")
    }

    /// Stops the server (fast shutdown) and waits until it no longer accepts connections;
    /// `resume()` starts it again on the same port with the same data.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast"]);
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the server still accepts connections after pg_ctl stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again after `stop()`.
    pub fn resume(&self) {
        if let Err(log) = self.launch() {
            panic!(
                "PostgreSQL did not start again on port {}:\n{log}",
                self.port
            );
        }
    }

    /// Runs SQL through psql as the superuser and returns stdout (handy for assertions such as
    /// counting rows): unaligned rows without headers, the last newline trimmed.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.install.bin("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout.strip_suffix('\n').unwrap_or(&stdout).to_string()
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://metalab:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The port is free when picked but may be taken before the server binds it: by then
    /// another test's server picked the same one, for example.
    fn start_on_a_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            self.port = super::sshd::free_port();
            match self.launch() {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") && attempt < PORT_ATTEMPTS => {}
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
    }

    /// Starts the server on `self.port`; on failure, the log of this attempt.
    fn launch(&self) -> Result<(), String> {
        self.write_settings();
        let log = self.dir.path().join("server.log");
        let _ = std::fs::remove_file(&log);
        let out = self.pg_ctl(&["start", "-l", &log.to_string_lossy()]);
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        Err(format!("{}{log}", text(&out)))
    }

    /// postgresql.auto.conf is read after postgresql.conf, so these win over initdb's settings.
    fn write_settings(&self) {
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             # Test data: a crash may lose it, and no test needs it to survive one.\n\
             fsync = off\nfull_page_writes = off\n",
            self.port,
            self.dir.path().display()
        );
        std::fs::write(self.data_dir().join("postgresql.auto.conf"), settings).unwrap();
    }

    /// `pg_ctl ACTION` on this cluster as its owner, waiting for the action to complete.
    fn pg_ctl(&self, action: &[&str]) -> Output {
        self.install
            .user
            .command(&self.install.bin("pg_ctl"))
            .args(action)
            .args(["-w", "-t", "30", "-s", "-D"])
            .arg(self.data_dir())
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        // pg_ctl signals only the postmaster of postmaster.pid, and gives up after its timeout:
        // whatever is left of the cluster is killed before its directory goes.
        let data = self.data_dir();
        for pid in processes_in(&data) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Every process whose working directory is `dir`: the postmaster changes into its data
/// directory and its children inherit it, while only the postmaster names it on its command line.
fn processes_in(dir: &Path) -> Vec<nix::unistd::Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .map(nix::unistd::Pid::from_raw)
        .collect()
}

/// The PostgreSQL binaries and the unprivileged user that runs them (initdb and postgres refuse
/// to run as root).
struct Install {
    bin_dir: PathBuf,
    user: RunAs,
}

impl Install {
    fn find() -> Install {
        Install {
            bin_dir: bin_dir(),
            user: RunAs::unprivileged(),
        }
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A cluster initdb'd once per PostgreSQL version. Test processes run side by side (cargo
    /// nextest), so one of them makes it under a lock while the others wait, and a rename
    /// publishes it whole.
    fn template(&self) -> PathBuf {
        let dir = Path::new(TEMPLATES_DIR);
        std::fs::create_dir_all(dir).unwrap();
        let version = self.version();
        let lock = File::create(dir.join(format!("{version}.lock"))).unwrap();
        lock.lock().unwrap();
        let template = dir.join(&version);
        if !template.exists() {
            let partial = dir.join(format!("{version}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            self.initdb(&partial);
            std::fs::rename(&partial, &template).unwrap();
        }
        template
    }

    fn initdb(&self, data: &Path) {
        std::fs::create_dir(data).unwrap();
        self.user.take(data);
        let out = self
            .user
            .command(&self.bin("initdb"))
            .args([
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(data)
            .current_dir(data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", text(&out));
    }

    /// "15.18", from "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".
    fn version(&self) -> String {
        let out = run(Command::new(self.bin("postgres")).arg("--version"));
        let version = out.split_whitespace().nth(2);
        version.expect("postgres --version").to_string()
    }
}

/// Debian installs each major version under /usr/lib/postgresql/<version>/bin, off the PATH:
/// the highest there, else wherever the PATH has initdb.
fn bin_dir() -> PathBuf {
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten();
    let newest = versions
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, dir)| dir.join("bin/initdb").exists())
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, dir)) => dir.join("bin"),
        None => {
            let initdb = which::which("initdb").expect("PostgreSQL is not installed (no initdb)");
            initdb.parent().unwrap().to_path_buf()
        }
    }
}

/// The user that owns and runs the clusters: `postgres` when the packages made one, else nobody.
struct RunAs {
    /// The command that runs the rest of its command line as this user.
    prefix: Vec<String>,
    uid: u32,
    gid: u32,
}

impl RunAs {
    fn unprivileged() -> RunAs {
        use nix::unistd::{Group, User};
        if let Some(postgres) = User::from_name("postgres").unwrap() {
            return RunAs {
                prefix: ["runuser", "-u", "postgres", "--"]
                    .map(String::from)
                    .to_vec(),
                uid: postgres.uid.as_raw(),
                gid: postgres.gid.as_raw(),
            };
        }
        let nobody = User::from_name("nobody").unwrap().expect("no user nobody");
        let nogroup = Group::from_name("nogroup")
            .unwrap()
            .expect("no group nogroup");
        RunAs {
            prefix: [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
            ]
            .map(String::from)
            .to_vec(),
            uid: nobody.uid.as_raw(),
            gid: nogroup.gid.as_raw(),
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(&self.prefix[0]);
        command.args(&self.prefix[1..]).arg(program);
        command
    }

    /// Makes `path` (recursively) this user's.
    fn take(&self, path: &Path) {
        run(Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path));
    }
}

/// Where the servers' directories go: a cluster is about a thousand files, which this host's
/// ext4 takes about a second to create under load and a tmpfs a tenth of that.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn random_password() -> String {
    let chars = rand::rng().sample_iter(rand::distr::Alphanumeric).take(24);
    chars.map(char::from).collect()
}

/// Runs `command`, which must succeed, and returns its stdout.
fn run(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(out.status.success(), "{command:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
