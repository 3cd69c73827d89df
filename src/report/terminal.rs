//! What a person watching sees: on a terminal, a live spinner per VM, phase and test; in CI (`CI`
//! set) or without a TTY, plain timestamped lines that read well in a Jenkins console. Either
//! way the summary is printed at the end.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Reporter;
use super::summary::{self, human};
use crate::model::event::{Event, EventKind};
use crate::model::record::{RunRecord, TestOutcome};

pub struct Terminal {
    live: Option<Live>,
    record: RunRecord,
    run_dir: PathBuf,
    color: bool,
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

impl Terminal {
    pub fn new(record: RunRecord, run_dir: PathBuf) -> Terminal {
        let plain = plain_output();
        let live = (!plain).then(|| Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
        });
        Terminal {
            live,
            record,
            run_dir,
            color: !plain,
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

    fn stop(&mut self, key: &str) {
        if let Some(live) = &mut self.live
            && let Some(bar) = live.bars.remove(key)
        {
            bar.finish_and_clear();
            live.multi.remove(&bar);
        }
    }

    fn stop_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .live
            .as_ref()
            .map(|l| {
                l.bars
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for k in keys {
            self.stop(&k);
        }
    }
}

impl Reporter for Terminal {
    fn on_event(&mut self, event: &Event) {
        self.record.apply(event);
        match &event.kind {
            EventKind::RunStarted {
                run_id,
                suites,
                vms,
                host,
                artifacts,
            } => self.line(
                event,
                format!(
                    "{} {run_id}: suites {} on {} ({host}); artifacts in {}",
                    style("metalab run").bold(),
                    suites.join(", "),
                    vms.join(", "),
                    artifacts.display()
                ),
            ),
            EventKind::PhaseStarted {
                phase,
                scope,
                detail,
            } => {
                let label = label(phase.name(), scope);
                let text = format!("{label:<8} {detail}");
                if self.live.is_some() {
                    self.spin(&label, text);
                } else {
                    self.line(event, text);
                }
            }
            EventKind::PhaseProgress {
                phase,
                scope,
                message,
            } => {
                let label = label(phase.name(), scope);
                let text = format!("{label:<8} {message}");
                match message.split_once(": ") {
                    Some((vm, _)) if self.live.is_some() => {
                        self.spin(&format!("{label} {vm}"), text)
                    }
                    _ if self.live.is_some() => self.spin(&label, text),
                    _ => self.line(event, text),
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
                self.stop_prefix(&label);
                let text = match error {
                    None => format!(
                        "{label:<8} {} in {}",
                        style("done").green(),
                        human(*duration)
                    ),
                    Some(e) => format!(
                        "{label:<8} {} after {}: {e}",
                        style("FAILED").red().bold(),
                        human(*duration)
                    ),
                };
                self.line(event, text);
            }
            EventKind::BoxReady(b) => self.line(
                event,
                format!("box      {} {} (sha256 {})", b.name, b.version, b.sha256),
            ),
            EventKind::Conditions(c) => self.line(
                event,
                format!(
                    "host     {} ({} cores, {}), kernel {}; VMs {} vCPU, {} MiB, {}",
                    c.host.hostname,
                    c.host.cores,
                    c.host.cpu_model,
                    c.host.kernel,
                    c.vm_cpus,
                    c.vm_memory_mib,
                    c.accel
                ),
            ),
            EventKind::VmReady { vm, scope, address } => self.line(
                event,
                format!("{:<8} {vm} ready at {address}", label("vm", scope)),
            ),
            EventKind::SuiteStarted {
                suite,
                tests,
                benchmarks,
                snapshot,
            } => self.line(
                event,
                format!(
                    "{} {suite}: {tests} test(s), {benchmarks} benchmark(s){}",
                    style("suite").bold(),
                    snapshot
                        .as_deref()
                        .map(|s| format!(", VMs from snapshot {s}"))
                        .unwrap_or_default()
                ),
            ),
            EventKind::TestStarted { suite, test } => {
                let key = format!("test {suite}/{test}");
                if self.live.is_some() {
                    self.spin(&key, key.clone());
                } else {
                    self.line(event, format!("test     {suite}/{test} started"));
                }
            }
            EventKind::TestFinished(t) => {
                self.stop(&format!("test {}/{}", t.suite, t.name));
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
                self.line(
                    event,
                    format!(
                        "{mark}     {}/{} ({}){why}",
                        t.suite,
                        t.name,
                        human(t.duration)
                    ),
                );
            }
            EventKind::BenchSample {
                suite,
                benchmark,
                metric,
                unit,
                value,
            } => {
                let key = format!("test {suite}/{benchmark}");
                let text = format!("bench    {suite}/{benchmark}: {metric} = {value:.3} {unit}");
                if self.live.is_some() {
                    self.spin(&key, text);
                } else {
                    self.line(event, text);
                }
            }
            EventKind::BenchmarkFinished(b) => {
                self.stop(&format!("test {}/{}", b.suite, b.name));
                let text = match &b.error {
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
                };
                self.line(event, text);
            }
            EventKind::SuiteFinished {
                suite,
                duration,
                error,
            } => {
                let text = match error {
                    None => format!("suite    {suite} finished in {}", human(*duration)),
                    Some(e) => format!("suite    {suite} {}: {e}", style("aborted").red().bold()),
                };
                self.line(event, text);
            }
            EventKind::Cancelling { signal, fast } => {
                let text = if *fast {
                    format!(
                        "{} received {signal} again: fast teardown (virsh destroy by name)",
                        style("!").red().bold()
                    )
                } else {
                    format!(
                        "{} received {signal}: stopping and destroying the VMs (send it again for a fast teardown)",
                        style("!").red().bold()
                    )
                };
                self.line(event, text);
            }
            EventKind::Notice { message } => {
                self.line(event, format!("{} {message}", style("!").bold()))
            }
            EventKind::RunFinished { .. } => {
                if let Some(live) = &mut self.live {
                    for (_, bar) in live.bars.drain() {
                        bar.finish_and_clear();
                    }
                }
                print!(
                    "\n{}",
                    summary::render(&self.record, &self.run_dir, self.color)
                );
                let _ = std::io::stdout().flush();
            }
        }
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
