//! What a person watching sees while the run goes: on a terminal, a live spinner per VM, phase
//! and test; in CI (`CI` set) or without a TTY, plain timestamped lines that read well in a
//! Jenkins console. The summary at the end is the ending's (see [`super::ending`]).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::summary::human;
use crate::ids::RunId;
use crate::model::event::{Event, EventKind};
use crate::model::record::{TestOutcome, TestRecord};

pub struct Terminal {
    live: Option<Live>,
    /// `-q`: only what went wrong, and the summary at the end.
    quiet: bool,
}

/// The spinners on a terminal, keyed by what they track ("up node1", "test policy/deny").
struct Live {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

/// True when output should be plain lines: `CI` is set or stderr is not a terminal.
pub fn plain_output() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
        || !std::io::stderr().is_terminal()
}

/// What an event shows.
enum Show {
    /// A finished line.
    Line(String),
    /// Something under way: a spinner on a terminal, a line in plain mode.
    Spin { key: String, text: String },
    /// Something over: its spinners (those whose key starts with `key`) stop, and a line says how.
    Done { key: String, text: String },
}

impl Terminal {
    pub fn new(quiet: bool) -> Terminal {
        let live = (!plain_output() && !quiet).then(|| Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
        });
        Terminal { live, quiet }
    }

    /// Whether the terminal is live (and colours are wanted).
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    pub fn on_event(&mut self, event: &Event) {
        if self.quiet && !went_wrong(&event.kind) {
            return;
        }
        match show(&event.kind) {
            None => {}
            Some(Show::Line(text)) => self.line(event, text),
            Some(Show::Spin { key, text }) if self.live.is_some() => self.spin(&key, text),
            Some(Show::Spin { text, .. }) => self.line(event, text),
            Some(Show::Done { key, text }) => {
                self.stop_prefix(&key);
                self.line(event, text);
            }
        }
    }

    /// Removes every spinner: the run is over.
    pub fn clear(&mut self) {
        if let Some(live) = &mut self.live {
            for (_, bar) in live.bars.drain() {
                bar.finish_and_clear();
            }
        }
    }

    /// A finished line: above the spinners on a terminal, timestamped in plain mode.
    fn line(&self, event: &Event, text: String) {
        match &self.live {
            Some(live) => {
                let _ = live.multi.println(text);
            }
            None => {
                let stamp = event.time.format("%Y-%m-%dT%H:%M:%SZ");
                let _ = writeln!(
                    std::io::stderr(),
                    "{stamp} {}",
                    console::strip_ansi_codes(&text)
                );
            }
        }
    }

    fn spin(&mut self, key: &str, message: String) {
        let Some(live) = &mut self.live else { return };
        let bar = live.bars.entry(key.to_string()).or_insert_with(|| {
            let b = live.multi.add(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {elapsed:>4} {msg}")
                    .expect("static template"),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        bar.set_message(message);
    }

    fn stop_prefix(&mut self, prefix: &str) {
        let Some(live) = &mut self.live else { return };
        let keys: Vec<String> = live
            .bars
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            if let Some(bar) = live.bars.remove(&k) {
                bar.finish_and_clear();
                live.multi.remove(&bar);
            }
        }
    }
}

/// What `-q` still shows: failures, notices and signals.
fn went_wrong(kind: &EventKind) -> bool {
    match kind {
        EventKind::PhaseFinished { error, .. } => error.is_some(),
        EventKind::TestFinished(t) => !matches!(
            t.outcome,
            TestOutcome::Passed | TestOutcome::Flaky | TestOutcome::Skipped
        ),
        EventKind::BenchmarkFinished(b) => b.error.is_some(),
        EventKind::SuiteFinished { error, .. } => error.is_some(),
        EventKind::Cancelling { .. } | EventKind::Notice { .. } => true,
        EventKind::RunStarted { .. }
        | EventKind::PhaseStarted { .. }
        | EventKind::PhaseProgress { .. }
        | EventKind::BoxReady(_)
        | EventKind::ImagesReady(_)
        | EventKind::Conditions(_)
        | EventKind::VmReady { .. }
        | EventKind::SuiteStarted { .. }
        | EventKind::TestStarted { .. }
        | EventKind::BenchSample { .. }
        | EventKind::RunFinished { .. } => false,
    }
}

/// What each event shows; every kind is decided here, with no catch-all.
fn show(kind: &EventKind) -> Option<Show> {
    Some(match kind {
        EventKind::RunStarted {
            run_id,
            suites,
            vms,
            host,
            artifacts,
        } => Show::Line(run_started(run_id, suites, vms, host, artifacts)),
        EventKind::PhaseStarted {
            phase,
            scope,
            detail,
        } => {
            let label = label(phase.name(), scope);
            Show::Spin {
                text: format!("{label:<8} {detail}"),
                key: label,
            }
        }
        EventKind::PhaseProgress {
            phase,
            scope,
            message,
        } => {
            let label = label(phase.name(), scope);
            // A line about one VM gets a spinner of its own.
            let key = match message.split_once(": ") {
                Some((vm, _)) => format!("{label} {vm}"),
                None => label.clone(),
            };
            Show::Spin {
                key,
                text: format!("{label:<8} {message}"),
            }
        }
        EventKind::PhaseFinished {
            phase,
            scope,
            duration,
            error,
            ..
        } => {
            let label = label(phase.name(), scope);
            Show::Done {
                text: phase_finished(&label, *duration, error.as_deref()),
                key: label,
            }
        }
        EventKind::BoxReady(b) => Show::Line(format!(
            "box      {} {} (sha256 {})",
            b.name, b.version, b.sha256
        )),
        EventKind::ImagesReady(images) => Show::Line(format!(
            "images   {}",
            images
                .iter()
                .map(|i| format!("{} (recipe {})", i.name, &i.recipe_hash[..16]))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        EventKind::Conditions(c) => Show::Line(format!(
            "host     {} ({} cores, {}), kernel {}; VMs {} vCPU, {} MiB, {}",
            c.host.hostname,
            c.host.cores,
            c.host.cpu_model,
            c.host.kernel,
            c.vm_cpus,
            c.vm_memory_mib,
            c.accel
        )),
        EventKind::VmReady { vm, scope, address } => {
            Show::Line(format!("{:<8} {vm} ready at {address}", label("vm", scope)))
        }
        EventKind::SuiteStarted {
            suite,
            tests,
            benchmarks,
            snapshot,
        } => Show::Line(format!(
            "{} {suite}: {tests} test(s), {benchmarks} benchmark(s){}",
            style("suite").bold(),
            snapshot
                .as_deref()
                .map(|s| format!(", VMs from snapshot {s}"))
                .unwrap_or_default()
        )),
        EventKind::TestStarted { suite, test } => Show::Spin {
            key: format!("test {suite}/{test}"),
            text: format!("test     {suite}/{test} started"),
        },
        EventKind::TestFinished(t) => Show::Done {
            key: format!("test {}/{}", t.suite, t.name),
            text: test_finished(t),
        },
        EventKind::BenchSample {
            suite,
            benchmark,
            metric,
            unit,
            value,
        } => Show::Spin {
            key: format!("test {suite}/{benchmark}"),
            text: format!("bench    {suite}/{benchmark}: {metric} = {value:.3} {unit}"),
        },
        EventKind::BenchmarkFinished(b) => Show::Done {
            key: format!("test {}/{}", b.suite, b.name),
            text: match &b.error {
                None => format!(
                    "{}     {}/{} ({})",
                    style("DONE").green().bold(),
                    b.suite,
                    b.name,
                    human(b.duration)
                ),
                Some(e) => format!(
                    "{}     {}/{}: {e}",
                    style("FAIL").red().bold(),
                    b.suite,
                    b.name
                ),
            },
        },
        EventKind::SuiteFinished {
            suite,
            duration,
            error,
        } => Show::Line(match error {
            None => format!("suite    {suite} finished in {}", human(*duration)),
            Some(e) => format!("suite    {suite} {}: {e}", style("aborted").red().bold()),
        }),
        EventKind::Cancelling { signal, fast } => Show::Line(cancelling(signal, *fast)),
        EventKind::Notice { message } => Show::Line(format!("{} {message}", style("!").bold())),
        // The summary comes from the whole record, at the end (see `ending`).
        EventKind::RunFinished { .. } => return None,
    })
}

fn run_started(
    run_id: &RunId,
    suites: &[String],
    vms: &[String],
    host: &str,
    artifacts: &std::path::Path,
) -> String {
    // A run without suites is `metalab up`, which only brings VMs up.
    match suites.is_empty() {
        true => format!(
            "{} {run_id}: VMs {} ({host}); artifacts in {}",
            style("metalab up").bold(),
            vms.join(", "),
            artifacts.display()
        ),
        false => format!(
            "{} {run_id}: suites {} on {} ({host}); artifacts in {}",
            style("metalab run").bold(),
            suites.join(", "),
            vms.join(", "),
            artifacts.display()
        ),
    }
}

fn phase_finished(label: &str, duration: Duration, error: Option<&str>) -> String {
    match error {
        None => format!(
            "{label:<8} {} in {}",
            style("done").green(),
            human(duration)
        ),
        Some(e) => format!(
            "{label:<8} {} after {}: {e}",
            style("FAILED").red().bold(),
            human(duration)
        ),
    }
}

fn test_finished(t: &TestRecord) -> String {
    let mark = match t.outcome {
        TestOutcome::Passed => style("PASS").green().bold(),
        TestOutcome::Flaky => style("FLAKY").yellow().bold(),
        TestOutcome::Failed => style("FAIL").red().bold(),
        TestOutcome::TimedOut => style("TIME").red().bold(),
        TestOutcome::Error => style("ERR ").red().bold(),
        TestOutcome::Skipped => style("SKIP").yellow(),
    };
    let why = t
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    format!(
        "{mark}     {}/{} ({}){why}",
        t.suite,
        t.name,
        human(t.duration)
    )
}

fn cancelling(signal: &str, fast: bool) -> String {
    let bang = style("!").red().bold();
    if fast {
        format!("{bang} received {signal} again: fast teardown (virsh destroy by name)")
    } else {
        format!(
            "{bang} received {signal}: stopping and destroying the VMs (send it again for a fast teardown)"
        )
    }
}

/// A phase's name, with the host or lane it ran for when a run has several: `up[l2]`.
fn label(name: &str, scope: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{name}[{scope}]")
    }
}
