//! GitHub Actions: each test failure and infrastructure error as an `::error` workflow command
//! (pointing at the test's line in its suite.toml, so it shows on the file in the pull request),
//! and a Markdown summary of the run appended to `$GITHUB_STEP_SUMMARY`.
//!
//! Only under GitHub Actions (`GITHUB_ACTIONS=true`); other CI systems read the plain log lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::summary::human;
use crate::exit::Status;
use crate::model::event::Phase;
use crate::model::record::{BenchRecord, RunRecord, TestOutcome, TestRecord};
use crate::suite::{MANIFEST, Suite};

/// True when running as a GitHub Actions step.
pub fn active() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Where the summary goes: `$GITHUB_STEP_SUMMARY`, when set.
pub fn summary_path() -> Option<PathBuf> {
    std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Annotations and the step summary, at the end of a run, from its record.
pub struct GitHubActions {
    /// Each suite's file as annotations name it, and the line of each test and benchmark in it.
    suites: BTreeMap<String, SuiteFile>,
    summary: Option<PathBuf>,
    /// Where the workflow commands go: standard output, which the runner reads.
    out: Box<dyn Write + Send>,
}

struct SuiteFile {
    path: PathBuf,
    /// `(table, name)` → the line of its `name`: ("test", "ping") → 12.
    lines: BTreeMap<(&'static str, String), usize>,
}

impl GitHubActions {
    /// Annotations on the files of `suites` (named relative to `workspace` when inside it) to
    /// `out`, the summary to `summary`.
    pub fn new(
        suites: &[Suite],
        workspace: Option<&Path>,
        summary: Option<PathBuf>,
        out: Box<dyn Write + Send>,
    ) -> GitHubActions {
        let suites = suites
            .iter()
            .map(|s| {
                let tests = s.tests.iter().map(|t| (("test", t.name.clone()), t.line));
                let benches = s
                    .benchmarks
                    .iter()
                    .map(|b| (("benchmark", b.name.clone()), b.line));
                let file = SuiteFile {
                    path: relative_to(&s.dir.join(MANIFEST), workspace),
                    lines: tests.chain(benches).collect(),
                };
                (s.name.clone(), file)
            })
            .collect();
        GitHubActions {
            suites,
            summary,
            out,
        }
    }

    /// For a run of `suites` in this step: annotations on stdout, the summary to
    /// `$GITHUB_STEP_SUMMARY`.
    pub fn from_env(suites: &[Suite]) -> GitHubActions {
        let workspace = std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from);
        GitHubActions::new(
            suites,
            workspace.as_deref(),
            summary_path(),
            Box::new(std::io::stdout()),
        )
    }

    /// Annotates every failure and infrastructure error of the run, and writes its summary.
    pub fn finish(mut self, record: &RunRecord) {
        for a in self.annotations(record) {
            let _ = writeln!(self.out, "{}", a.command());
        }
        let _ = self.out.flush();
        if let Some(path) = &self.summary
            && let Err(e) = append_summary(path, record)
        {
            eprintln!(
                "metalab: error: cannot write the step summary {}: {e}",
                path.display()
            );
        }
    }

    /// Failed tests, then failed benchmarks, suites that could not run all their tests, and
    /// failed phases.
    fn annotations(&self, r: &RunRecord) -> Vec<Annotation> {
        let tests = r.tests().filter_map(|t| self.test_failed(t));
        let benches = r.benchmarks().filter_map(|b| self.bench_failed(b));
        let suites = r.suites.iter().filter_map(|s| {
            let error = s.error.as_deref()?;
            Some(Annotation {
                file: self.suites.get(&s.name).map(|f| f.path.clone()),
                line: None,
                title: format!("{} (suite)", s.name),
                message: format!("suite {} could not run all its tests: {error}", s.name),
            })
        });
        let phases = r.phases.iter().filter_map(|p| {
            let error = p.error.as_deref()?;
            let kind = match p.phase {
                Phase::Provision => "the lab's provisioning failed",
                Phase::Acquire
                | Phase::Prepare
                | Phase::Box
                | Phase::Images
                | Phase::Up
                | Phase::Connect
                | Phase::Snapshot
                | Phase::Collect
                | Phase::Destroy
                | Phase::Release => "infrastructure error",
            };
            Some(Annotation {
                file: None,
                line: None,
                title: format!("metalab {}", scoped(p.phase.name(), &p.scope)),
                message: format!("{kind} in {}: {error}", p.phase.name()),
            })
        });
        tests.chain(benches).chain(suites).chain(phases).collect()
    }

    fn test_failed(&self, t: &TestRecord) -> Option<Annotation> {
        let what = match t.outcome {
            TestOutcome::Failed => "failed",
            TestOutcome::TimedOut => "timed out",
            TestOutcome::Error if t.infra => "infrastructure error",
            TestOutcome::Error => "error",
            TestOutcome::Passed | TestOutcome::Flaky | TestOutcome::Skipped => return None,
        };
        let message = format!(
            "{}/{} {what} on {}: {}",
            t.suite,
            t.name,
            t.vm,
            t.message.as_deref().unwrap_or("no message")
        );
        Some(self.at_entry(&t.suite, "test", &t.name, message))
    }

    fn bench_failed(&self, b: &BenchRecord) -> Option<Annotation> {
        let error = b.error.as_deref()?;
        let kind = if b.infra {
            "infrastructure error"
        } else {
            "failed"
        };
        let message = format!(
            "benchmark {}/{} {kind} on {}: {error}",
            b.suite, b.name, b.vm
        );
        Some(self.at_entry(&b.suite, "benchmark", &b.name, message))
    }

    /// An annotation on the `[[table]]` entry named `name` in the suite's file.
    fn at_entry(
        &self,
        suite: &str,
        table: &'static str,
        name: &str,
        message: String,
    ) -> Annotation {
        let file = self.suites.get(suite);
        Annotation {
            file: file.map(|f| f.path.clone()),
            line: file.and_then(|f| f.lines.get(&(table, name.to_string())).copied()),
            title: format!("{suite}/{name}"),
            message,
        }
    }
}

/// Appends the run's Markdown summary to `path` (the step summary file).
pub fn append_summary(path: &Path, r: &RunRecord) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(markdown(r).as_bytes()))
}

/// One `::error` workflow command.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub title: String,
    pub message: String,
}

impl Annotation {
    /// `::error file=F,line=L,title=T::MESSAGE`, escaped as the runner expects.
    pub fn command(&self) -> String {
        let mut props = Vec::new();
        if let Some(f) = &self.file {
            props.push(format!("file={}", escape_property(&f.to_string_lossy())));
        }
        if let Some(l) = self.line {
            props.push(format!("line={l}"));
        }
        props.push(format!("title={}", escape_property(&self.title)));
        format!(
            "::error {}::{}",
            props.join(","),
            escape_data(&self.message)
        )
    }
}

/// A path as the annotation should name it: relative to the workspace when inside it.
fn relative_to(path: &Path, workspace: Option<&Path>) -> PathBuf {
    workspace
        .and_then(|w| path.strip_prefix(w).ok())
        .map_or_else(|| path.to_path_buf(), Path::to_path_buf)
}

fn scoped(name: &str, scope: &str) -> String {
    if scope.is_empty() {
        name.to_string()
    } else {
        format!("{name}[{scope}]")
    }
}

/// The message of a workflow command: `%`, CR and LF escaped.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property of a workflow command: as data, and `:` and `,` too.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The run in Markdown: status, counts, failures, benchmarks.
pub fn markdown(r: &RunRecord) -> String {
    let mut out = String::new();
    let what = match &r.shard {
        Some(s) => format!("metalab run {} (shard {})", r.run_id, s.label()),
        None => format!("metalab run {}", r.run_id),
    };
    let _ = writeln!(
        out,
        "## {} {what}: {} (exit {})\n",
        icon(r.status),
        r.status.word(),
        r.status.code()
    );
    let _ = writeln!(out, "{}\n", counts(r));
    failures(r, &mut out);
    benchmarks(r, &mut out);
    if !r.notices.is_empty() {
        let _ = writeln!(out, "### Notes\n");
        for n in &r.notices {
            let _ = writeln!(out, "- {}", inline(n));
        }
        out.push('\n');
    }
    out
}

fn counts(r: &RunRecord) -> String {
    let mut parts = vec![format!("{} passed", r.count(TestOutcome::Passed))];
    for (outcome, word) in [
        (TestOutcome::Flaky, "flaky"),
        (TestOutcome::Failed, "failed"),
        (TestOutcome::TimedOut, "timed out"),
        (TestOutcome::Error, "errors"),
        (TestOutcome::Skipped, "skipped"),
    ] {
        let n = r.count(outcome);
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    format!(
        "**{}** in {} suite(s), {} benchmark(s); took {} on {}",
        parts.join(", "),
        r.suites.len(),
        r.benchmarks().count(),
        human(r.duration),
        inline(&r.host)
    )
}

fn failures(r: &RunRecord, out: &mut String) {
    let mut rows: Vec<String> = r
        .suites
        .iter()
        .filter_map(|s| Some((s, s.error.as_deref()?)))
        .map(|(s, e)| format!("| `{}` (suite) | error | {} |", s.name, cell(e)))
        .collect();
    rows.extend(
        r.tests()
            .filter(|t| {
                !matches!(
                    t.outcome,
                    TestOutcome::Passed | TestOutcome::Flaky | TestOutcome::Skipped
                )
            })
            .map(|t| {
                format!(
                    "| `{}/{}` | {} | {} |",
                    t.suite,
                    t.name,
                    outcome_word(t),
                    cell(t.message.as_deref().unwrap_or(""))
                )
            }),
    );
    rows.extend(r.benchmarks().filter_map(|b| {
        let e = b.error.as_deref()?;
        Some(format!(
            "| `{}/{}` (benchmark) | failed | {} |",
            b.suite,
            b.name,
            cell(e)
        ))
    }));
    rows.extend(r.phases.iter().filter_map(|p| {
        let e = p.error.as_deref()?;
        Some(format!(
            "| {} (lifecycle) | infrastructure | {} |",
            scoped(p.phase.name(), &p.scope),
            cell(e)
        ))
    }));
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Failures\n\n| what | outcome | message |\n|---|---|---|"
    );
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
}

fn benchmarks(r: &RunRecord, out: &mut String) {
    let rows: Vec<String> = r
        .benchmarks()
        .flat_map(|b| b.metrics.iter().map(move |m| (b, m)))
        .map(|(b, m)| {
            let stat = |f: fn(&[f64]) -> Option<f64>| {
                f(&m.samples).map_or("-".to_string(), crate::gate::format_value)
            };
            format!(
                "| `{}/{}` | {} | {} | {} | {} | {} | {} |",
                b.suite,
                b.name,
                cell(&m.spec.name),
                stat(|s| crate::stats::quantile(s, 0.5).ok()),
                cell(&m.spec.unit),
                m.samples.len(),
                stat(|s| s.iter().copied().reduce(f64::min)),
                stat(|s| s.iter().copied().reduce(f64::max)),
            )
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Benchmarks\n\n| benchmark | metric | median | unit | n | min | max |\n|---|---|---:|---|---:|---:|---:|"
    );
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
}

fn outcome_word(t: &TestRecord) -> &'static str {
    match t.outcome {
        TestOutcome::Failed => "failed",
        TestOutcome::TimedOut => "timed out",
        TestOutcome::Error if t.infra => "infrastructure",
        TestOutcome::Error => "error",
        TestOutcome::Passed => "passed",
        TestOutcome::Flaky => "flaky",
        TestOutcome::Skipped => "skipped",
    }
}

fn icon(s: Status) -> &'static str {
    if s == Status::Passed { "✅" } else { "❌" }
}

/// Text for a table cell: one line, no column breaks.
fn cell(s: &str) -> String {
    inline(s).replace('|', "\\|")
}

/// Text on one Markdown line.
fn inline(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_escape_what_the_runner_would_misread() {
        let a = Annotation {
            file: Some(PathBuf::from("suites/a,b/suite.toml")),
            line: Some(7),
            title: "s/t: x".into(),
            message: "100% lost\nsecond line".into(),
        };
        assert_eq!(
            a.command(),
            "::error file=suites/a%2Cb/suite.toml,line=7,title=s/t%3A x::100%25 lost%0Asecond line"
        );
    }
}
