//! The command line: `metalab run`, `up`, `exec`, `destroy`, `doctor`, `box build`, `list`,
//! `history`, `bench compare`, `report`.

mod bench;
mod box_cmd;
mod destroy;
mod doctor;
mod exec;
mod forward;
mod history;
mod hosts;
mod lab;
mod lab_hosts;
mod login;
mod merge;
mod plan;
mod reap;
mod report_cmd;
mod reproduce;
mod run;
mod shard;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Status;

/// metalab runs a lab's networking suites and benchmarks inside real Vagrant VMs, and always
/// destroys the VMs afterwards.
///
/// A lab is a directory with a metalab.toml, a Vagrantfile (the same one developers `vagrant up`
/// by hand), suites/ and boxes/. metalab finds metalab.toml in the current directory or above.
///
/// Exit codes: 0 all passed · 1 test failures · 2 bad input (config, suite file, arguments) ·
/// 3 infrastructure error (a VM did not come up, SSH failed, prerequisites missing) ·
/// 4 a benchmark regressed (`bench compare`, `run --baseline`) · 130 interrupted (SIGINT/SIGHUP) · 143 terminated (SIGTERM), both after cleanup.
#[derive(Parser, Debug)]
#[command(name = "metalab", version, max_term_width = 100)]
pub struct Cli {
    /// Path of metalab.toml (default: found in the current directory or a parent).
    #[arg(long, global = true, env = "METALAB_CONFIG")]
    config: Option<PathBuf>,
    /// Say more of what metalab does underneath: -v for its steps, -vv for every command.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Say only what went wrong while a run goes, then the summary.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Bring up the VMs, run suites, report, and destroy the VMs (always).
    ///
    /// With no SUITE, runs every suite in the suites directory. Results go to
    /// artifacts/<run-id>/ (results.json, junit.xml, one log per test); artifacts/latest points
    /// at the newest run. On a terminal progress is live; with CI set or no TTY, plain
    /// timestamped lines. Ctrl-C or SIGTERM stops the run and destroys the VMs; a second signal
    /// destroys them faster, by name.
    ///
    /// Examples:
    ///   metalab run                            every suite
    ///   metalab run policy throughput          two suites
    ///   metalab run policy/denied-port-dropped one test of a suite (with its setup)
    ///   metalab run --dry-run                  what would run, on which VMs; starts nothing
    ///   metalab run --on 20261122-200501-3fa2  the suites on the VMs `metalab up` kept
    ///   metalab run --junit out.xml            also write the JUnit file to out.xml
    #[command(verbatim_doc_comment)]
    Run(run::RunArgs),
    /// Bring up the VMs the suites need and keep them: the developer's loop.
    ///
    /// The VMs come up (and are provisioned) once; then, as often as needed:
    ///   metalab run --on RUN_ID [SUITE...]     the suites on them, from their pristine snapshot
    ///   metalab login [--run RUN_ID] VM        a shell in one
    ///   metalab exec [--run RUN_ID] VM -- CMD  a command in one
    /// and at the end `metalab destroy --run RUN_ID` (or `metalab reap` once --keep has passed).
    #[command(verbatim_doc_comment)]
    Up(run::UpArgs),
    /// Run a CI failure again here: the failed tests' suites, at the run's lab commit, with
    /// the run's LAB_* variables; the VMs are kept if it fails again.
    ///
    /// Takes the run's results.json, its artifacts directory, or its report (a path or a URL,
    /// e.g. the one Jenkins or a CI artifact shows). Refuses (exit 2) when this tree is not at
    /// the run's lab commit, saying what differs, unless --go-on. Says whether the box recipe
    /// is the run's. Then it is `metalab run --keep-on-failure`: exit codes as `run`'s.
    ///
    /// Examples:
    ///   metalab reproduce artifacts/20261122-200501-3fa2
    ///   metalab reproduce https://jenkins.example/job/lab/42/artifact/artifacts/20261122-200501-3fa2/report/index.html
    ///   metalab reproduce results.json --suite policy --dry-run
    #[command(verbatim_doc_comment)]
    Reproduce(reproduce::ReproduceArgs),
    /// Run a command in a VM of a running lab, over a native SSH connection.
    ///
    /// Examples:
    ///   metalab exec node1 -- ip -br addr
    ///   metalab exec --run 20261122-200501-3fa2 --sudo node2 -- nft list ruleset
    #[command(verbatim_doc_comment)]
    Exec(exec::ExecArgs),
    /// An interactive shell in a VM of a kept lab (OpenSSH's ssh, with the run's keys).
    ///
    /// Examples:
    ///   metalab login node1
    ///   metalab login --run 20261122-200501-3fa2 --sudo node2
    #[command(verbatim_doc_comment)]
    Login(login::LoginArgs),
    /// The labs kept on this machine (run id, VMs, their state, until when) and the inventory
    /// hosts, free or held by a run.
    Status(status::StatusArgs),
    /// Forward a local port to a port inside a VM of a running lab, like `ssh -L`.
    ///
    /// Example: metalab forward node1 8080:80   then open http://127.0.0.1:8080
    Forward(forward::ForwardArgs),
    /// Destroy the VMs of a kept lab (from `metalab up`).
    Destroy(destroy::DestroyArgs),
    /// Check this host's prerequisites and say how to fix what is missing.
    ///
    /// Checks vagrant, vagrant-libvirt, libvirtd, QEMU and the accelerator (a KVM guest must
    /// really boot), the storage pool and management network, the box, memory and disk space.
    /// Exits 3 when something is missing. `scripts/setup-host` fixes most of it.
    Doctor,
    /// The base box.
    #[command(subcommand)]
    Box(box_cmd::BoxCommand),
    /// Remove what earlier runs left behind: VMs of runs that died, kept VMs that expired.
    ///
    /// Finds leftovers from the run journals and from the real libvirt domains, networks and
    /// volumes (every name carries its run id), then destroys them and prunes Vagrant's index.
    /// Never touches a run whose metalab process still runs, or kept VMs before their expiry.
    /// `metalab run` does this by itself before it starts.
    ///
    /// With [provider.metal] or [provider.ec2], also removes the devices and keys, or the
    /// instances, security groups and key pairs, of runs that are over or past their expiry.
    Reap(reap::ReapArgs),
    /// List the Metal project's metalab devices, or the EC2 region's metalab instances: name,
    /// state, age, run id, expiry.
    ///
    /// Needs [provider.metal] and the API token in the environment, or [provider.ec2] and AWS
    /// credentials (the standard chain).
    Hosts,
    /// List the suites, their VMs, tests and benchmarks.
    List(lab::ListArgs),
    /// The benchmark history: every run's results, in SQLite (list, show, export, import).
    ///
    /// Without a subcommand, lists the newest runs. Every `metalab run` adds itself at its end.
    History(history::HistoryArgs),
    /// Benchmarks: the regression gate.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Rebuild a run's HTML report (artifacts/<run-id>/report/index.html) and the runs' index
    /// (artifacts/index.html); `report merge` makes one result of several shards'.
    Report(report_cmd::ReportArgs),
    /// Print a completion script for a shell.
    ///
    /// Examples:
    ///   metalab completions bash > /etc/bash_completion.d/metalab
    ///   metalab completions zsh > "${fpath[1]}/_metalab"
    ///   metalab completions fish > ~/.config/fish/completions/metalab.fish
    #[command(verbatim_doc_comment)]
    Completions { shell: clap_complete::Shell },
    /// Internal: holds a kept lab's SSH connections for `metalab exec`.
    #[command(hide = true)]
    MuxServe {
        #[arg(long)]
        run: String,
    },
}

/// A command's failure: what to print, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub status: Status,
    pub message: String,
}

impl Failure {
    pub fn new(status: Status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// An error from below: bad input when it is something the user must fix (settings,
    /// credentials), an infrastructure error otherwise.
    pub fn from_error(e: anyhow::Error) -> Failure {
        let status = if e.downcast_ref::<crate::provider::InputError>().is_some() {
            Status::BadInput
        } else {
            Status::InfraError
        };
        Failure::new(status, format!("{e:#}"))
    }
}

/// A run id given with `--run`, checked.
pub fn parse_run(run: Option<&str>) -> Result<Option<crate::ids::RunId>, Failure> {
    run.map(|r| {
        crate::ids::RunId::parse(r).ok_or_else(|| {
            Failure::new(
                Status::BadInput,
                format!("`{r}` is not a run id (like 20261122-200501-3fa2)"),
            )
        })
    })
    .transpose()
}

/// Bad input when a file cannot be written where asked (`--junit /nonexistent/x.xml`), found out
/// before anything starts: the nearest existing directory on the way must be writable.
pub fn check_writable(paths: &[PathBuf]) -> Result<(), Failure> {
    for p in paths {
        let dir = p
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.exists())
            .map(|a| {
                if a.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    a
                }
            });
        // An unnamed file made and dropped at once: root may write anywhere by the permission
        // bits, but not in /proc or on a read-only file system.
        let ok = dir.is_some_and(|d| d.is_dir() && tempfile::tempfile_in(d).is_ok());
        if !ok || p.is_dir() {
            return Err(Failure::new(
                Status::BadInput,
                format!(
                    "cannot write {}: {}",
                    p.display(),
                    match dir {
                        _ if p.is_dir() => "it is a directory".to_string(),
                        Some(d) if !d.is_dir() => format!("{} is not a directory", d.display()),
                        Some(d) => format!("{} is not writable", d.display()),
                        None => "no directory to write it in".to_string(),
                    }
                ),
            ));
        }
    }
    Ok(())
}

/// Writes a command's output to stdout. A reader that went away (`| head`) is not an error.
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// "run-id (node1, node2)".
pub fn describe_lab(l: &crate::lab::LabState) -> String {
    let vms: Vec<&str> = l.vms.iter().map(|v| v.name.as_str()).collect();
    format!("{} ({})", l.run_id, vms.join(", "))
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("metalab: error: cannot start the async runtime: {e}");
            return Status::InfraError.into();
        }
    };
    let result = runtime.block_on(dispatch(cli));
    let status = match result {
        Ok(status) => status,
        Err(f) => {
            eprintln!("metalab: error: {}", f.message);
            f.status
        }
    };
    status.into()
}

/// What users of Test Kitchen, Molecule and Vagrant type, and what metalab calls it.
const PEER_WORDS: &[(&str, &str)] = &[
    (
        "test",
        "`metalab run` brings up the VMs, runs the suites and destroys the VMs",
    ),
    ("create", "`metalab up` brings up the VMs and keeps them"),
    (
        "converge",
        "`metalab up` brings up and provisions the VMs and keeps them",
    ),
    ("provision", "`metalab up` provisions the VMs it brings up"),
    (
        "verify",
        "`metalab run --on RUN_ID` runs the suites on VMs `metalab up` kept",
    ),
    (
        "ssh",
        "`metalab login VM` opens a shell in a kept VM, `metalab exec VM -- CMD` runs a command",
    ),
    ("shell", "`metalab login VM` opens a shell in a kept VM"),
    ("halt", "`metalab destroy` removes kept VMs"),
    ("down", "`metalab destroy` removes kept VMs"),
    ("clean", "`metalab reap` removes what dead runs left behind"),
    (
        "prune",
        "`metalab box prune` removes old box versions; `metalab reap` what dead runs left",
    ),
    ("global-status", "`metalab status` lists the kept labs"),
    (
        "ls",
        "`metalab status` lists the kept labs; `metalab list` the suites",
    ),
    (
        "check",
        "`metalab doctor` checks the host; `metalab run --dry-run` checks the lab",
    ),
];

/// A command line clap refused: said like every other metalab error, with a pointer for the
/// words of other tools, and exit 2 (0 for --help and --version).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            Status::BadInput.into()
        } else {
            Status::Passed.into()
        };
    }
    let typed = match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(s)) if e.kind() == ErrorKind::InvalidSubcommand => Some(s),
        _ => None,
    };
    if let Some((word, hint)) = typed.and_then(|t| PEER_WORDS.iter().find(|(w, _)| w == t)) {
        eprintln!(
            "metalab: error: there is no `metalab {word}`: {hint}\n\nmetalab --help lists the commands"
        );
        return Status::BadInput.into();
    }
    let text = e.render().to_string();
    eprint!(
        "metalab: {}",
        text.strip_prefix("metalab: ").unwrap_or(&text)
    );
    Status::BadInput.into()
}

async fn dispatch(cli: Cli) -> Result<Status, Failure> {
    let config = cli.config.as_deref();
    match cli.command {
        Commands::Run(args) => run::run(config, args, cli.quiet).await,
        Commands::Up(args) => run::up(config, args, cli.quiet).await,
        Commands::Reproduce(args) => reproduce::reproduce(config, args, cli.quiet).await,
        Commands::Exec(args) => exec::exec(args).await,
        Commands::Login(args) => login::login(args),
        Commands::Status(args) => status::status(config, args).await,
        Commands::Forward(args) => forward::forward(args).await,
        Commands::Destroy(args) => destroy::destroy(args).await,
        Commands::Doctor => doctor::doctor(config).await,
        Commands::Box(cmd) => box_cmd::run(config, cmd).await,
        Commands::Reap(args) => reap::reap(config, args).await,
        Commands::Hosts => hosts::hosts(config).await,
        Commands::List(args) => lab::list(config, args).await,
        Commands::History(args) => history::history(config, args).await,
        Commands::Bench(cmd) => bench::run(config, cmd).await,
        Commands::Report(args) => report_cmd::report(config, args).await,
        Commands::MuxServe { run } => exec::serve(run).await,
        Commands::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "metalab", &mut out);
            print(&String::from_utf8_lossy(&out));
            Ok(Status::Passed)
        }
    }
}

/// `-v`, `-vv` (or `RUST_LOG=metalab=debug`) show what metalab does underneath; only warnings
/// by default.
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "warn,metalab=info",
        _ => "info,metalab=debug",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    // Colour only for a person: a CI log shows escape codes as they are.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
