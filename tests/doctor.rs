//! `metalab doctor` on a host where nothing is installed: every missing piece is named with its
//! fix, and the exit code says something is missing; and its check of a shared history server.

mod common;

#[test]
fn missing_prerequisites_are_named_with_their_fix_and_exit_3() {
    let empty = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_metalab"))
        .arg("doctor")
        .current_dir(empty.path())
        .env("PATH", empty.path())
        .env("METALAB_HOME", state.path())
        .output()
        .unwrap();
    let shown = common::text(&out);
    assert_eq!(out.status.code(), Some(3), "{shown}");
    for name in [
        "vagrant",
        "vagrant-libvirt",
        "qemu",
        "libvirtd",
        "storage pool",
    ] {
        let line = shown
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{shown}"));
        assert!(line.starts_with("MISS"), "{line}");
    }
    assert!(shown.contains("fix: run scripts/setup-host"), "{shown}");
}

/// With a shared history server, doctor says whether it answers to metalab's credentials, naming
/// it without the password.
#[test]
fn doctor_checks_the_history_server_and_never_shows_its_password() {
    let server = common::postgres::PgServer::start();
    let empty = tempfile::tempdir().unwrap();
    let doctor = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_metalab"))
            .arg("doctor")
            .current_dir(empty.path())
            .env("METALAB_HOME", empty.path().join("state"))
            .env("METALAB_HISTORY", url)
            .output()
            .unwrap();
        let shown = common::text(&out);
        let line = shown
            .lines()
            .find(|l| l.contains(" history "))
            .unwrap_or_else(|| panic!("no history line:\n{shown}"))
            .to_string();
        assert!(!shown.contains(server.password()), "{shown}");
        line
    };
    let line = doctor(&server.url());
    assert!(line.starts_with("ok"), "{line}");
    assert!(
        line.contains("postgres://metalab@127.0.0.1:") && line.contains("0 run(s)"),
        "{line}"
    );
    let wrong = server.url().replace(server.password(), "wrong");
    let line = doctor(&wrong);
    assert!(line.starts_with("MISS"), "{line}");
    assert!(line.contains("refused the credentials"), "{line}");
}
