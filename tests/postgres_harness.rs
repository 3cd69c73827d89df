//! The PostgreSQL test harness (tests/common/postgres.rs) against itself: a client reaches the
//! server over TCP only with the right password, stop and resume keep the data, and nothing of
//! the cluster survives the harness.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::postgres::PgServer;

/// `psql` over TCP as a test's client would connect: `url`, and the password through PGPASSWORD
/// (never from a prompt or a password file).
fn client(url: &str, password: Option<&str>, sql: &str) -> Output {
    let mut psql = Command::new("psql");
    psql.args(["-X", "-q", "-A", "-t", "-w", "-d", url, "-c", sql])
        .env("PGPASSFILE", "/nonexistent")
        .env_remove("PGPASSWORD");
    if let Some(password) = password {
        psql.env("PGPASSWORD", password);
    }
    psql.output().unwrap()
}

fn answer(out: &Output) -> String {
    assert!(out.status.success(), "psql: {}", common::text(out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_role_connects_over_tcp_with_its_password() {
    let pg = PgServer::start();
    let with_env = client(&pg.url_without_password(), Some(pg.password()), "select 1");
    assert_eq!(answer(&with_env), "1");
    let in_url = client(&pg.url(), None, "select current_user");
    assert_eq!(answer(&in_url), "metalab");
}

#[test]
fn a_wrong_or_missing_password_is_refused() {
    let pg = PgServer::start();
    let wrong = client(
        &pg.url_without_password(),
        Some("not-the-password"),
        "select 1",
    );
    assert!(!wrong.status.success());
    assert!(
        common::text(&wrong).contains("password authentication failed"),
        "{}",
        common::text(&wrong)
    );
    let missing = client(&pg.url_without_password(), None, "select 1");
    assert!(!missing.status.success());
    assert!(
        common::text(&missing).contains("no password supplied"),
        "{}",
        common::text(&missing)
    );
}

#[test]
fn a_new_database_belongs_to_the_role() {
    let pg = PgServer::start();
    let url = pg.database("isolated");
    let sql = "create table t (n int); insert into t values (1), (2); select current_database()";
    assert_eq!(answer(&client(&url, None, sql)), "isolated");
    assert_eq!(pg.psql("isolated", "select count(*) from t"), "2");
    assert_eq!(
        pg.psql(
            "isolated",
            "select tableowner from pg_tables where tablename = 't'"
        ),
        "metalab"
    );
}

#[test]
fn stop_refuses_connections_and_resume_keeps_the_data() {
    let pg = PgServer::start();
    answer(&client(
        &pg.url(),
        None,
        "create table kept (word text); insert into kept values ('still here')",
    ));
    pg.stop();
    let stopped = client(&pg.url(), None, "select 1");
    assert!(
        common::text(&stopped).contains("Connection refused"),
        "{}",
        common::text(&stopped)
    );
    pg.resume();
    assert_eq!(
        answer(&client(&pg.url(), None, "select word from kept")),
        "still here"
    );
}

#[test]
fn servers_run_side_by_side() {
    let (a, b) = (PgServer::start(), PgServer::start());
    assert_ne!(a.url(), b.url());
    a.psql("metalab", "create table only_in_a ()");
    assert_eq!(
        b.psql(
            "metalab",
            "select count(*) from pg_tables where tablename = 'only_in_a'"
        ),
        "0"
    );
    assert_eq!(answer(&client(&b.url(), None, "select 1")), "1");
}

#[test]
fn nothing_of_the_cluster_survives_the_harness() {
    let pg = PgServer::start();
    let data = pg.data_dir();
    assert!(
        !processes_of(&data).is_empty(),
        "no process runs in {data:?}"
    );
    drop(pg);
    assert_eq!(processes_of(&data), Vec::<String>::new());
    assert!(!data.exists());
}

/// The processes of the cluster in `data`: the postmaster names it on its command line, and its
/// children run in it (once it is removed, their working directory reads "<data> (deleted)").
fn processes_of(data: &Path) -> Vec<String> {
    let data = data.to_string_lossy();
    let mut found = Vec::new();
    for pid in std::fs::read_dir("/proc").unwrap().flatten() {
        let proc = pid.path();
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(proc.join("cwd")).unwrap_or_default();
        if cmdline.contains(&*data) || cwd.to_string_lossy().starts_with(&*data) {
            found.push(format!("{}: {cmdline}", pid.file_name().to_string_lossy()));
        }
    }
    found
}
