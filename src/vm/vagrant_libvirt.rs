//! The [`Driver`] of Vagrant with vagrant-libvirt: a Vagrant project (the lab's own Vagrantfile
//! through metalab's run-scoped wrapper) driven over a host's transport, and the libvirt
//! resources every one of whose names carries the lane's prefix.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::driver::{Destroyed, Driver, Hurry};
use crate::libvirt::{self, Leftovers};
use crate::transport::ssh::SshTarget;
use crate::transport::{Command, OutputSink, Stream, Transport, sh_quote};
use crate::vagrant::Project;

#[derive(Clone)]
pub struct VagrantLibvirt {
    host: Arc<dyn Transport>,
    project: Project,
    /// `metalab-<run-id>-` (and the lane): the start of every libvirt name of the lab.
    prefix: String,
}

impl VagrantLibvirt {
    pub fn new(host: Arc<dyn Transport>, project: Project, prefix: String) -> VagrantLibvirt {
        VagrantLibvirt {
            host,
            project,
            prefix,
        }
    }

    fn domain(&self, vm: &str) -> String {
        format!("{}{vm}", self.prefix)
    }
}

#[async_trait]
impl Driver for VagrantLibvirt {
    async fn up(
        &self,
        vms: &[String],
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<()> {
        self.project.install_wrapper(self.host.as_ref()).await?;
        let mut tail = Tail::new(sink);
        let outcome = self
            .project
            .up(self.host.as_ref(), vms, timeout, &mut tail)
            .await?;
        if !outcome.success() {
            anyhow::bail!(
                "vagrant up failed ({}){}",
                outcome.describe(),
                tail.last_words()
            );
        }
        Ok(())
    }

    async fn provision(
        &self,
        vm: &str,
        timeout: Duration,
        sink: &mut dyn OutputSink,
    ) -> anyhow::Result<Result<(), String>> {
        let mut tail = Tail::new(sink);
        let outcome = self
            .project
            .provision(
                self.host.as_ref(),
                std::slice::from_ref(&vm.to_string()),
                timeout,
                &mut tail,
            )
            .await?;
        Ok(match outcome.success() {
            true => Ok(()),
            false => Err(format!("{vm}: {}{}", outcome.describe(), tail.last_words())),
        })
    }

    async fn ssh_targets(&self, vms: &[String]) -> anyhow::Result<Vec<(String, SshTarget)>> {
        Ok(self.project.ssh_config(self.host.as_ref(), vms).await?)
    }

    async fn snapshot(&self, vm: &str, name: &str) -> anyhow::Result<()> {
        libvirt::snapshot(self.host.as_ref(), &self.domain(vm), name).await
    }

    async fn revert(&self, vm: &str, name: &str) -> anyhow::Result<()> {
        libvirt::revert(self.host.as_ref(), &self.domain(vm), name).await
    }

    async fn resources(&self) -> anyhow::Result<Leftovers> {
        libvirt::find(self.host.as_ref(), &self.prefix).await
    }

    async fn diagnostics(&self, vm: &str) -> String {
        let d = sh_quote(&self.domain(vm));
        let script = format!(
            "echo \"===== virsh domstate --reason\"; virsh -c qemu:///system domstate {d} --reason 2>&1; \
             echo \"===== QEMU's log\"; tail -n 40 /var/log/libvirt/qemu/{d}.log 2>&1; true"
        );
        let cmd = Command::new(script, Duration::from_secs(30)).sudo(true);
        let mut out = crate::transport::Collect::default();
        match self.host.exec(&cmd, &mut out).await {
            Ok(_) => out.stdout_text(),
            Err(e) => format!("the host did not answer: {e}\n"),
        }
    }

    async fn destroy(
        &self,
        timeout: Duration,
        sink: &mut dyn OutputSink,
        hurry: Hurry,
    ) -> anyhow::Result<Destroyed> {
        let host = self.host.as_ref();
        let problem = tokio::select! {
            r = self.project.destroy(host, timeout, sink) => match r {
                Ok(o) if o.success() => None,
                Ok(o) => Some(format!("vagrant destroy: {}", o.describe())),
                Err(e) => Some(format!("vagrant destroy: {e}")),
            },
            _ = hurry => Some("vagrant destroy skipped: fast teardown".to_string()),
        };
        let swept = libvirt::sweep(host, &self.prefix).await?;
        let left = libvirt::find(host, &self.prefix).await?;
        if !left.is_empty() {
            anyhow::bail!("still present after teardown: {}", left.describe());
        }
        // A destroy that failed leaves its machines in Vagrant's index, domains or not.
        crate::vagrant::index::forget(host, &self.project.vagrant_home, &self.project.dotfile_dir)
            .await?;
        Ok(Destroyed { swept, problem })
    }
}

/// Passes output on, keeping its end: Vagrant's last words are its error.
struct Tail<'a> {
    inner: &'a mut dyn OutputSink,
    kept: Vec<u8>,
}

/// Bytes of output kept to find the last words in.
const TAIL: usize = 64 << 10;

impl<'a> Tail<'a> {
    fn new(inner: &'a mut dyn OutputSink) -> Tail<'a> {
        Tail {
            inner,
            kept: Vec::new(),
        }
    }

    fn last_words(&self) -> String {
        last_words(&String::from_utf8_lossy(&self.kept))
    }
}

impl OutputSink for Tail<'_> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        self.inner.output(stream, data);
        self.kept.extend_from_slice(data);
        if self.kept.len() > 2 * TAIL {
            self.kept.drain(..self.kept.len() - TAIL);
        }
    }
}

/// What a Vagrant command said last, on one line: its error. Vagrant prints the error as a block
/// after its last progress line (`==> vm: ...`), often over several lines and paragraphs that
/// end in a detail such as `Provider: libvirt`, so the whole block is given (up to
/// [`LAST_WORDS`] characters); the VMs' own output (indented) is not part of it. An exception
/// Vagrant did not handle says what it is before its backtrace (`file:1:in `x': what (Class)`).
fn last_words(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let after = lines
        .iter()
        .rposition(|l| l.starts_with("==>"))
        .map_or(0, |i| i + 1);
    let said: Vec<&str> = lines[after..]
        .iter()
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.trim())
        .filter(|t| !t.is_empty() && !t.starts_with("from "))
        .collect();
    let Some(first) = said.first() else {
        return String::new();
    };
    if first.contains(":in `") {
        let what = first.split_once("': ").map_or(*first, |(_, what)| what);
        return format!(": {what}");
    }
    let words = said.join(" ");
    match words.char_indices().nth(LAST_WORDS) {
        Some((cut, _)) => format!(": {}…", &words[..cut]),
        None => format!(": {words}"),
    }
}

/// The most of Vagrant's error that [`last_words`] gives.
const LAST_WORDS: usize = 400;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_words_are_the_error_not_the_backtrace() {
        let out = "==> edge-a: Creating image (snapshot of base box volume).\n\
                   /usr/lib/ruby/x.rb:6:in `lookup': Storage pool not found (Libvirt::RetrieveError)\n\
                   \tfrom /usr/lib/ruby/y.rb:1:in `z'\n    from /usr/lib/ruby/w.rb:2\n";
        assert_eq!(
            last_words(out),
            ": Storage pool not found (Libvirt::RetrieveError)"
        );
        assert_eq!(
            last_words("==> a: fine\nThe box 'x' could not be found.\n"),
            ": The box 'x' could not be found."
        );
        assert_eq!(last_words("==> a: only progress\n"), "");
    }

    #[test]
    fn an_error_over_several_lines_is_given_whole_not_its_last_detail() {
        let out = "==> node1: Waiting for machine to boot. This may take a few minutes...\n\
                   The guest machine entered an invalid state while waiting for it\n\
                   to boot.\n\nProvider: libvirt\n";
        assert_eq!(
            last_words(out),
            ": The guest machine entered an invalid state while waiting for it to boot. \
             Provider: libvirt"
        );
        let provision = "==> node1: Running provisioner: shell...\n    node1: no route to the NOC\n\
                         The SSH command responded with a non-zero exit status.\n";
        assert_eq!(
            last_words(provision),
            ": The SSH command responded with a non-zero exit status."
        );
        let long = format!("==> a: x\n{}\n", "word ".repeat(200));
        assert!(last_words(&long).ends_with('…'));
        assert!(last_words(&long).chars().count() <= LAST_WORDS + 3);
    }
}
