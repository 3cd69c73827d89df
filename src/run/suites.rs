//! Running suites inside the connected VMs: setup steps, tests judged against their
//! expectations, benchmarks sampled, teardown steps, artifacts collected. Every command's output
//! goes to its own log under `artifacts/<run-id>/<suite>/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::VM_LAB_DIR;
use super::log::LogSink;
use crate::budget::Budget;
use crate::config::Timeouts;
use crate::exit::Status;
use crate::ids::RunId;
use crate::images::BuiltImage;
use crate::model::event::{EventKind, Events};
use crate::model::record::{Attempt, BenchRecord, MetricSamples, TestOutcome, TestRecord};
use crate::suite::{Benchmark, Expect, Step, Suite, Test};
use crate::transport::unpack::Unpacked;
use crate::transport::{Command, Exit, Outcome, Transport, TransportError, files};
use crate::vm::Vm;

/// What running a suite needs of its run: the event stream, the run's id and artifacts
/// directory, and the timeouts.
pub(super) struct SuiteEnv<'a> {
    pub events: &'a Events,
    pub run_id: &'a RunId,
    pub artifacts: &'a Path,
    pub timeouts: &'a Timeouts,
    /// `--fail-fast`: set at the first failure, after which nothing more runs.
    pub fail_fast: Option<&'a AtomicBool>,
    /// The runner's `LAB_*` variables the suites get (see [`crate::suite::lab_variables`]).
    pub lab_variables: &'a [(String, String)],
    /// How many bytes of the VMs' output the run keeps.
    pub budget: &'a Arc<Budget>,
    /// The container images the suites name, built.
    pub images: &'a [BuiltImage],
}

/// Why what comes after a failure with `--fail-fast` is not run.
pub(super) const FAIL_FAST: &str = "not run: --fail-fast after a failure";

impl SuiteEnv<'_> {
    /// Whether `--fail-fast` has stopped the run.
    pub fn stopped(&self) -> bool {
        self.fail_fast.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    fn failed(&self) {
        if let Some(f) = self.fail_fast {
            f.store(true, Ordering::SeqCst);
        }
    }
}

/// Runs one suite on its VMs (`snapshot`: what they were put back to first). `Err` means a VM
/// was lost.
pub(super) async fn run_suite(
    env: &SuiteEnv<'_>,
    suite: &Suite,
    vms: &[Vm],
    snapshot: Option<&str>,
) -> Result<Status, String> {
    SuiteRun::new(env, suite, vms, snapshot).run().await
}

pub(super) fn skip_suite(env: &SuiteEnv<'_>, suite: &Suite, reason: &str) {
    env.events.emit(EventKind::SuiteStarted {
        suite: suite.name.clone(),
        tests: suite.tests.len(),
        benchmarks: suite.benchmarks.len(),
        snapshot: None,
    });
    for t in &suite.tests {
        env.events
            .emit(EventKind::TestFinished(skipped(suite, t, reason)));
    }
    env.events.emit(EventKind::SuiteFinished {
        suite: suite.name.clone(),
        duration: Duration::ZERO,
        error: Some(format!("not run: {reason}")),
    });
}

fn skipped(suite: &Suite, t: &Test, reason: &str) -> TestRecord {
    TestRecord {
        suite: suite.name.clone(),
        name: t.name.clone(),
        vm: t.step.vm.clone(),
        command: t.step.run.clone(),
        outcome: TestOutcome::Skipped,
        infra: false,
        duration: Duration::ZERO,
        message: Some(format!("not run: {reason}")),
        log: PathBuf::new(),
        failed_attempts: Vec::new(),
    }
}

/// One suite's run.
struct SuiteRun<'e, 'a> {
    ctx: &'e SuiteEnv<'a>,
    suite: &'e Suite,
    vms: &'e [Vm],
    env: Vec<(String, String)>,
    /// The snapshot the VMs were put back to before this suite, if any.
    snapshot: Option<&'e str>,
}

/// The result of a command run as part of a suite; `Err` means the VM was lost.
type StepResult = Result<(Outcome, String, String), TransportError>;

impl<'e, 'a> SuiteRun<'e, 'a> {
    fn new(
        ctx: &'e SuiteEnv<'a>,
        suite: &'e Suite,
        vms: &'e [Vm],
        snapshot: Option<&'e str>,
    ) -> Self {
        let mut env = vec![
            ("METALAB_RUN_ID".to_string(), ctx.run_id.to_string()),
            ("METALAB_SUITE".to_string(), suite.name.clone()),
            ("METALAB_ARTIFACTS".to_string(), remote_artifacts(suite)),
            (
                "METALAB_VMS".to_string(),
                vms.iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ];
        env.extend(ctx.lab_variables.iter().cloned());
        for vm in vms {
            if let Some(ip) = &vm.lab_address {
                env.push((format!("METALAB_IP_{}", env_name(&vm.name)), ip.clone()));
            }
        }
        SuiteRun {
            ctx,
            suite,
            vms,
            env,
            snapshot,
        }
    }

    fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .expect("the plan brings up every VM a suite names")
    }

    fn log(&self, file: &str) -> (PathBuf, PathBuf) {
        let rel = PathBuf::from(&self.suite.name).join(format!("{file}.log"));
        (self.ctx.artifacts.join(&rel), rel)
    }

    /// Runs one step in its VM, logging to `log`. Returns the outcome, and the stdout and all
    /// output the log kept.
    async fn exec(&self, step: &Step, default_timeout: Duration, log: &Path) -> StepResult {
        let cmd = Command::new(step.run.clone(), step.timeout.unwrap_or(default_timeout))
            .cwd(format!("{VM_LAB_DIR}/suites/{}", self.suite.name))
            .envs(&self.env)
            .env("METALAB_VM", step.vm.clone())
            .sudo(true);
        let mut sink = LogSink::append(log, self.ctx.budget);
        sink.note(&format!("$ {}   # on {}", step.run, step.vm));
        let outcome = self.vm(&step.vm).session.exec(&cmd, &mut sink).await?;
        sink.note(&format!("# {}", outcome.describe()));
        let (stdout, combined) = sink.take_texts();
        Ok((outcome, stdout, combined))
    }

    async fn run(&self) -> Result<Status, String> {
        let s = self.suite;
        self.ctx.events.emit(EventKind::SuiteStarted {
            suite: s.name.clone(),
            tests: s.tests.len(),
            benchmarks: s.benchmarks.len(),
            snapshot: self.snapshot.map(str::to_string),
        });
        let started = Instant::now();
        let result = self.body().await;
        self.teardown().await;
        self.collect().await;
        let error = match &result {
            Ok((_, e)) => e.clone(),
            Err(e) => Some(e.clone()),
        };
        self.ctx.events.emit(EventKind::SuiteFinished {
            suite: s.name.clone(),
            duration: started.elapsed(),
            error,
        });
        result.map(|(status, _)| status)
    }

    /// Setup, tests and benchmarks. Ok carries the status and why the suite stopped early, if it
    /// did; Err means the VM was lost.
    async fn body(&self) -> Result<(Status, Option<String>), String> {
        self.prepare_vms().await?;
        let why = match self.load_images().await? {
            Some(why) => Some(why),
            None => self.setup().await?,
        };
        if let Some(why) = why {
            for t in &self.suite.tests {
                self.ctx.events.emit(EventKind::TestFinished(skipped(
                    self.suite,
                    t,
                    "setup failed",
                )));
            }
            self.ctx.failed();
            return Ok((Status::TestsFailed, Some(why)));
        }
        let mut status = Status::Passed;
        for (i, t) in self.suite.tests.iter().enumerate() {
            if self.ctx.stopped() {
                for rest in &self.suite.tests[i..] {
                    self.ctx.events.emit(EventKind::TestFinished(skipped(
                        self.suite, rest, FAIL_FAST,
                    )));
                }
                return Ok((status, None));
            }
            let r = self.test(t).await;
            let lost = r.infra;
            if !matches!(r.outcome, TestOutcome::Passed | TestOutcome::Flaky) {
                status = Status::TestsFailed;
                self.ctx.failed();
            }
            let message = r.message.clone().unwrap_or_default();
            self.ctx.events.emit(EventKind::TestFinished(r));
            if lost {
                for rest in &self.suite.tests[i + 1..] {
                    self.ctx
                        .events
                        .emit(EventKind::TestFinished(skipped(self.suite, rest, &message)));
                }
                return Err(message);
            }
        }
        for b in &self.suite.benchmarks {
            if self.ctx.stopped() {
                return Ok((status, None));
            }
            let r = self.benchmark(b).await;
            if r.error.is_some() {
                status = Status::TestsFailed;
                self.ctx.failed();
            }
            let lost = r.infra.then(|| r.error.clone().unwrap_or_default());
            self.ctx.events.emit(EventKind::BenchmarkFinished(r));
            if let Some(message) = lost {
                return Err(message);
            }
        }
        Ok((status, None))
    }

    /// A clean, empty `METALAB_ARTIFACTS` directory in each of the suite's VMs.
    async fn prepare_vms(&self) -> Result<(), String> {
        let dir = remote_artifacts(self.suite);
        for name in &self.suite.vms {
            let cmd = Command::new(
                format!("rm -rf {dir} && mkdir -p {dir}"),
                Duration::from_secs(60),
            )
            .sudo(true);
            self.vm(name)
                .session
                .exec(&cmd, &mut crate::transport::Discard)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Loads the suite's images into each of its VMs, the VMs side by side; returns why a load
    /// failed, if one did (the suite's setup failed: its tests are not run).
    async fn load_images(&self) -> Result<Option<String>, String> {
        if self.suite.images.is_empty() {
            return Ok(None);
        }
        let (log, rel) = self.log("images");
        let (log, rel) = (&log, &rel);
        let jobs = self.suite.vms.iter().map(|name| async move {
            let mut sink = LogSink::append(log, self.ctx.budget);
            for image in self.images() {
                sink.note(&format!("loading image {} into {name}", image.name));
                let o = image
                    .load(
                        self.vm(name).session.as_ref(),
                        self.ctx.timeouts.setup,
                        &mut sink,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                sink.note(&format!("# {}", o.describe()));
                if !o.success() {
                    return Ok(Some(format!(
                        "loading image {} into {name} failed ({}); see {}",
                        image.name,
                        o.describe(),
                        rel.display()
                    )));
                }
            }
            Ok(None)
        });
        let results: Vec<Result<Option<String>, String>> = futures::future::join_all(jobs).await;
        let mut why = None;
        for r in results {
            why = why.or(r?);
        }
        Ok(why)
    }

    /// The built images this suite names.
    fn images(&self) -> impl Iterator<Item = &BuiltImage> {
        self.ctx
            .images
            .iter()
            .filter(|i| self.suite.images.contains(&i.name))
    }

    /// Runs the setup steps; returns why setup failed, if it did.
    async fn setup(&self) -> Result<Option<String>, String> {
        let lines = self
            .in_order("setup", &self.suite.setup, |i, step, log| async move {
                let (outcome, _, output) = self
                    .exec(step, self.ctx.timeouts.setup, &log)
                    .await
                    .map_err(|e| e.to_string())?;
                if outcome.success() {
                    return Ok(None);
                }
                Ok(Some(format!(
                    "setup step {} on {} failed ({}): {}",
                    i + 1,
                    step.vm,
                    outcome.describe(),
                    last_line(&output)
                )))
            })
            .await;
        lines.map(|why| why.into_iter().next())
    }

    /// Teardown steps run even after failures; their own failures are only noted.
    async fn teardown(&self) {
        let _ = self
            .in_order(
                "teardown",
                &self.suite.teardown,
                |_, step, log| async move {
                    let rel = log.strip_prefix(self.ctx.artifacts).unwrap_or(&log);
                    let (o, _, _) = self
                        .exec(step, self.ctx.timeouts.setup, &log)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !o.success() {
                        self.ctx.events.emit(EventKind::Notice {
                            message: format!(
                                "{}: a teardown step failed ({}); see {}",
                                self.suite.name,
                                o.describe(),
                                rel.display()
                            ),
                        });
                    }
                    Ok(None)
                },
            )
            .await;
    }

    /// Runs `steps` through `run` (given each step's index and its log) one after the other,
    /// logging to `<what>.log`; with `side_by_side`, each VM's steps in their order, the VMs'
    /// sequences side by side, each logging to `<what>-<vm>.log`. A sequence stops at the first
    /// step `run` returns a reason for, or an error (a lost VM). Returns the reasons, in the
    /// order of the VMs' first steps.
    async fn in_order<'s, F, Fut>(
        &'s self,
        what: &str,
        steps: &'s [Step],
        run: F,
    ) -> Result<Vec<String>, String>
    where
        F: Fn(usize, &'s Step, PathBuf) -> Fut + Copy,
        Fut: std::future::Future<Output = Result<Option<String>, String>>,
    {
        let mut sequences: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let vm = match self.suite.side_by_side {
                true => step.vm.clone(),
                false => String::new(),
            };
            match sequences.iter_mut().find(|(v, _)| *v == vm) {
                Some((_, indexes)) => indexes.push(i),
                None => sequences.push((vm, vec![i])),
            }
        }
        let jobs = sequences.into_iter().map(|(vm, indexes)| {
            let name = match vm.is_empty() {
                true => what.to_string(),
                false => format!("{what}-{vm}"),
            };
            let (log, _) = self.log(&name);
            async move {
                for i in indexes {
                    if let Some(why) = run(i, &steps[i], log.clone()).await? {
                        return Ok(Some(why));
                    }
                }
                Ok::<_, String>(None)
            }
        });
        let mut reasons = Vec::new();
        for done in futures::future::join_all(jobs).await {
            reasons.extend(done?);
        }
        Ok(reasons)
    }

    /// Copies `METALAB_ARTIFACTS` and the declared artifacts out of the VMs, best effort.
    async fn collect(&self) {
        let local = self.ctx.artifacts.join(&self.suite.name);
        let t = Duration::from_secs(120);
        let budget = self.ctx.budget;
        let contents = remote_artifacts(self.suite);
        for name in &self.suite.vms {
            let vm = self.vm(name).session.as_ref();
            let into = local.join(name);
            let got = files::get_dir_contents(vm, &contents, &into, true, t, budget);
            if let Ok(got) = got.await {
                self.note_collected(name, &contents, &got);
            }
        }
        for a in &self.suite.artifacts {
            let vm = self.vm(&a.vm).session.as_ref();
            match files::get_path(vm, &a.path, &local.join(&a.vm), true, t, budget).await {
                Ok(got) => self.note_collected(&a.vm, &a.path, &got),
                Err(e) => self.ctx.events.emit(EventKind::Notice {
                    message: format!(
                        "{}: cannot collect {} from {}: {e}",
                        self.suite.name, a.path, a.vm
                    ),
                }),
            }
        }
    }

    /// Writes what a collection left out (entries skipped, a cut) to the suite's
    /// `artifacts.log`, and says so in a notice.
    fn note_collected(&self, vm: &str, path: &str, got: &Unpacked) {
        let notes = got.notes();
        if notes.is_empty() {
            return;
        }
        let (log, rel) = self.log("artifacts");
        let mut sink = LogSink::append(&log, self.ctx.budget);
        sink.note(&format!("{vm}:{path}"));
        for line in &notes {
            sink.note(&format!("  {line}"));
        }
        let skipped = got.skipped.len() as u64 + got.more_skipped;
        let mut what = Vec::new();
        if skipped > 0 {
            what.push(format!(
                "{skipped} entries skipped, as only regular files and directories are kept"
            ));
        }
        if let Some(cut) = &got.cut {
            what.push(format!("cut at {}", cut.cap));
        }
        self.ctx.events.emit(EventKind::Notice {
            message: format!(
                "{}: artifacts {path} of {vm}: {}; see {}",
                self.suite.name,
                what.join("; "),
                rel.display()
            ),
        });
    }

    /// Runs a test, and again up to `retries` times while it fails; a lost VM is not retried.
    async fn test(&self, t: &Test) -> TestRecord {
        self.ctx.events.emit(EventKind::TestStarted {
            suite: self.suite.name.clone(),
            test: t.name.clone(),
        });
        let (log, rel) = self.log(&t.name);
        let started = Instant::now();
        let mut failed_attempts = Vec::new();
        let (outcome, message, infra) = loop {
            let attempt_started = Instant::now();
            let (outcome, message, infra) =
                match self.exec(&t.step, self.ctx.timeouts.test, &log).await {
                    Ok((o, _, output)) => {
                        let (outcome, message) = judge(&o, &output, &t.expect);
                        (outcome, message, false)
                    }
                    Err(e) => (TestOutcome::Error, Some(e.to_string()), true),
                };
            let retry = outcome != TestOutcome::Passed
                && !infra
                && failed_attempts.len() < t.retries as usize;
            if !retry {
                let flaky = outcome == TestOutcome::Passed && !failed_attempts.is_empty();
                break (
                    if flaky { TestOutcome::Flaky } else { outcome },
                    message,
                    infra,
                );
            }
            failed_attempts.push(Attempt {
                outcome,
                message,
                duration: attempt_started.elapsed(),
            });
            LogSink::append(&log, self.ctx.budget).note(&format!(
                "# retrying: attempt {}/{}",
                failed_attempts.len() + 1,
                t.retries + 1
            ));
        };
        TestRecord {
            suite: self.suite.name.clone(),
            name: t.name.clone(),
            vm: t.step.vm.clone(),
            command: t.step.run.clone(),
            outcome,
            infra,
            duration: started.elapsed(),
            message,
            log: rel,
            failed_attempts,
        }
    }

    async fn benchmark(&self, b: &Benchmark) -> BenchRecord {
        self.ctx.events.emit(EventKind::TestStarted {
            suite: self.suite.name.clone(),
            test: b.name.clone(),
        });
        let (log, rel) = self.log(&b.name);
        let started = Instant::now();
        let mut metrics: Vec<MetricSamples> = b
            .metrics
            .iter()
            .map(|m| MetricSamples {
                spec: m.spec.clone(),
                samples: Vec::new(),
                summary: None,
            })
            .collect();
        let sampled = self.sample(b, &log, &mut metrics).await;
        for m in &mut metrics {
            m.summary = crate::stats::Summary::of(&m.samples).ok();
        }
        let (error, infra) = match sampled {
            Ok(()) => (None, false),
            Err(SampleError::Run(e)) => (Some(e), false),
            Err(SampleError::Lost(e)) => (Some(e.to_string()), true),
        };
        BenchRecord {
            suite: self.suite.name.clone(),
            name: b.name.clone(),
            vm: b.step.vm.clone(),
            command: b.step.run.clone(),
            metrics,
            error,
            infra,
            duration: started.elapsed(),
            log: rel,
        }
    }

    /// Warm-up runs, then `repeats` runs whose metrics are recorded.
    async fn sample(
        &self,
        b: &Benchmark,
        log: &Path,
        metrics: &mut [MetricSamples],
    ) -> Result<(), SampleError> {
        let total = b.warmup + b.repeats;
        for i in 0..total {
            let (outcome, stdout, output) = self
                .exec(&b.step, self.ctx.timeouts.test, log)
                .await
                .map_err(SampleError::Lost)?;
            if !outcome.success() {
                let last = last_line(&output);
                return Err(SampleError::Run(format!(
                    "run {}/{total} failed ({}): {last}",
                    i + 1,
                    outcome.describe()
                )));
            }
            if i < b.warmup {
                continue;
            }
            for (m, samples) in b.metrics.iter().zip(metrics.iter_mut()) {
                let value = m.read(&stdout).map_err(|e| {
                    SampleError::Run(format!(
                        "run {}/{total}: metric {}: {e}",
                        i + 1,
                        m.spec.name
                    ))
                })?;
                samples.samples.push(value);
                self.ctx.events.emit(EventKind::BenchSample {
                    suite: self.suite.name.clone(),
                    benchmark: b.name.clone(),
                    metric: m.spec.name.clone(),
                    unit: m.spec.unit.clone(),
                    value,
                });
            }
        }
        Ok(())
    }
}

enum SampleError {
    /// A run failed or printed no metric: the benchmark fails.
    Run(String),
    /// The VM was lost: infrastructure.
    Lost(TransportError),
}

/// Decides a test's outcome from its command's result and output.
pub fn judge(o: &Outcome, output: &str, expect: &Expect) -> (TestOutcome, Option<String>) {
    if o.timed_out {
        return (TestOutcome::TimedOut, Some(o.describe()));
    }
    let last = output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if o.exit != Exit::Code(expect.exit) {
        let got = o.describe();
        return (
            TestOutcome::Failed,
            Some(format!("expected exit {}, got {got}: {last}", expect.exit)),
        );
    }
    if let Some(re) = &expect.output
        && !re.is_match(output)
    {
        return (
            TestOutcome::Failed,
            Some(format!("output does not match `{re}`: {last}")),
        );
    }
    if let Some(re) = &expect.no_output
        && let Some(m) = re.find(output)
    {
        return (
            TestOutcome::Failed,
            Some(format!(
                "output matches `{re}`, which it must not: `{}`",
                m.as_str().trim()
            )),
        );
    }
    (TestOutcome::Passed, None)
}

/// The last non-empty line of a command's output, to quote in a message.
fn last_line(output: &str) -> &str {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// Where a suite's commands drop files to collect: `$METALAB_ARTIFACTS`.
fn remote_artifacts(suite: &Suite) -> String {
    format!("{VM_LAB_DIR}/artifacts/{}", suite.name)
}

/// `node-1` → `NODE_1`, for `METALAB_IP_<VM>`.
fn env_name(vm: &str) -> String {
    vm.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn outcome(code: i32, timed_out: bool) -> Outcome {
        Outcome {
            exit: Exit::Code(code),
            timed_out,
            duration: Duration::from_secs(1),
        }
    }

    fn expect(exit: i32, output: Option<&str>, no_output: Option<&str>) -> Expect {
        Expect {
            exit,
            output: output.map(|r| Regex::new(r).unwrap()),
            no_output: no_output.map(|r| Regex::new(r).unwrap()),
        }
    }

    #[test]
    fn judging_covers_exit_output_and_timeouts() {
        let e = expect(0, Some("0% packet loss"), Some("Unreachable"));
        assert_eq!(
            judge(&outcome(0, false), "3 received, 0% packet loss", &e).0,
            TestOutcome::Passed
        );
        let (o, m) = judge(&outcome(1, false), "100% packet loss\n", &e);
        assert_eq!(o, TestOutcome::Failed);
        assert_eq!(m.unwrap(), "expected exit 0, got exit 1: 100% packet loss");
        assert_eq!(
            judge(&outcome(0, false), "nothing", &e).0,
            TestOutcome::Failed
        );
        assert_eq!(
            judge(
                &outcome(0, false),
                "0% packet loss, Destination Host Unreachable",
                &e
            )
            .0,
            TestOutcome::Failed
        );
        assert_eq!(judge(&outcome(124, true), "", &e).0, TestOutcome::TimedOut);
        assert_eq!(
            judge(&outcome(1, false), "", &expect(1, None, None)).0,
            TestOutcome::Passed
        );
    }
}
