//! A real OpenSSH server on loopback, with a host key and a client key generated per test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use metalab::transport::ssh::SshTarget;

pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The AuthorizedKeysCommand script of a Metal "device", removed with the server.
    keys_command: Option<PathBuf>,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
}

impl Sshd {
    /// Starts sshd on a free loopback port; `reuse` keeps the keys of an earlier server.
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        Self::launch(dir, free_port())
    }

    /// Another server on the same port with a new host key: what a different machine answering
    /// at a known address looks like.
    pub fn impostor_on(port: u16, client_key_from: &Sshd) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        std::fs::copy(
            client_key_from.dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        Self::launch(dir, port)
    }

    /// A server that, like a fresh Metal device, lets in every key registered with the project
    /// of the Metal API server at `admin_url` (read through its `/_admin/state`).
    pub fn metal_device(admin_url: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        // sshd runs the command only from a root-owned path nobody else can write to.
        let bin = Path::new("/usr/local/lib/metalab-test");
        std::fs::create_dir_all(bin).unwrap();
        let port = free_port();
        let script = bin.join(format!("metal-keys-{port}"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n/usr/bin/curl -sf {admin_url}/state | /usr/bin/jq -r '.ssh_keys[] | select(.deleted_at == null) | .key.key'\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let extra = format!(
            "AuthorizedKeysCommand {} %u\nAuthorizedKeysCommandUser root\n",
            script.display()
        );
        let mut sshd = Self::launch_with(dir, port, &extra);
        sshd.keys_command = Some(script);
        sshd
    }

    /// A server on `port` set up as cloud-init sets up an EC2 instance from its first boot: the
    /// host key its user data gives, and the launch's key pair let in.
    pub fn ec2_instance(host_private_key: &str, authorized_key: &str, port: u16) -> Sshd {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        std::fs::write(&host_key, host_private_key).unwrap();
        std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), authorized_key).unwrap();
        Self::launch(dir, port)
    }

    fn launch(dir: tempfile::TempDir, port: u16) -> Sshd {
        Self::launch_with(dir, port, "")
    }

    fn launch_with(dir: tempfile::TempDir, port: u16, extra: &str) -> Sshd {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let d = dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n{extra}"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            child,
            port,
            dir,
            keys_command: None,
        }
    }

    /// This server as an inventory host of the ssh provider, for metalab.toml: reached at `port`
    /// (its own, or a relay's), checked against `known_hosts`, with metalab's state under `home`.
    pub fn inventory_host(&self, name: &str, port: u16, known_hosts: &Path, home: &str) -> String {
        format!(
            "\n[[provider.hosts]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nport = {port}\n\
             user = \"root\"\nidentity = \"{}\"\nknown_hosts = \"{}\"\nhome = \"{home}\"\n",
            self.client_key().display(),
            known_hosts.display()
        )
    }

    /// A known_hosts file that lists this server under `[127.0.0.1]:<port>`.
    pub fn known_hosts(&self, port: u16) -> PathBuf {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let path = self.dir.path().join(format!("known_hosts-{port}"));
        std::fs::write(&path, format!("[127.0.0.1]:{port} {}\n", key.join(" "))).unwrap();
        path
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The target as root on this server (the test runs as root).
    pub fn target(&self) -> SshTarget {
        self.target_on(self.port)
    }

    pub fn target_on(&self, port: u16) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "root".into(),
            identity_files: vec![self.client_key()],
        }
    }
}

impl Sshd {
    /// The machine goes away: the server and every session it serves end at once.
    pub fn vanish(self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(script) = &self.keys_command {
            let _ = std::fs::remove_file(script);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
