//! Debian's headless Chromium, for the tests that look at metalab's pages as a person would.

#![allow(dead_code)] // each test binary uses its own subset

use std::process::Command;

/// Runs headless Chromium on `url` with `args`; returns (stdout, stderr).
pub fn chromium(url: &str, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The page's console messages, as Chromium logs them (`INFO:CONSOLE...`).
pub fn console(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// Chromium, installed with apt when missing and possible; `false` only when it cannot be had.
pub fn have_chromium() -> bool {
    let present = || {
        Command::new("chromium")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present() {
        return true;
    }
    let root = nix::unistd::Uid::effective().is_root();
    if root {
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        let _ = apt(&["install", "-y", "-q", "--no-install-recommends", "chromium"])
            || (apt(&["update", "-q"])
                && apt(&["install", "-y", "-q", "--no-install-recommends", "chromium"]));
    }
    present()
}
