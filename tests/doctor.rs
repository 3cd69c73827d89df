//! `metalab doctor` on a host where nothing is installed: every missing piece is named with its
//! fix, and the exit code says something is missing.

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
