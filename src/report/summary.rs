//! The readable summary printed at the end of a run: outcome, failures with their logs,
//! benchmarks, and where each phase's time went.

use std::fmt::Write;
use std::path::Path;

use console::Style;

use crate::exit::Status;
use crate::model::record::{RunRecord, TestOutcome};

/// The styles of the summary: plain unless it goes to a terminal.
struct Styles {
    bold: Style,
    red: Style,
    green: Style,
    yellow: Style,
    dim: Style,
}

impl Styles {
    fn new(color: bool) -> Styles {
        let style = |s: Style| {
            if color {
                s
            } else {
                Style::new().force_styling(false)
            }
        };
        Styles {
            bold: style(Style::new().bold()),
            red: style(Style::new().red().bold()),
            green: style(Style::new().green().bold()),
            yellow: style(Style::new().yellow()),
            dim: style(Style::new().dim()),
        }
    }
}

/// Renders the summary; `color` adds ANSI styles (terminals only).
pub fn render(r: &RunRecord, run_dir: &Path, color: bool) -> String {
    let st = Styles::new(color);
    let mut out = String::new();
    headline(&mut out, r, &st);
    failures(&mut out, r, run_dir, &st);
    flaky(&mut out, r, &st);
    benchmarks(&mut out, r, &st);
    lifecycle(&mut out, r, &st);
    let _ = writeln!(out, "  results   {}", run_dir.display());
    out
}

/// The outcome, the box, and a line per suite.
fn headline(out: &mut String, r: &RunRecord, st: &Styles) {
    let verdict = match r.status {
        Status::Passed => st.green.apply_to(r.status.word()),
        Status::Regressed
        | Status::TestsFailed
        | Status::BadInput
        | Status::InfraError
        | Status::Interrupted
        | Status::Terminated => st.red.apply_to(r.status.word()),
    };
    let _ = writeln!(
        out,
        "{} {}: {verdict} (exit {}) in {}",
        st.bold.apply_to(format!("metalab {}", r.command)),
        r.run_id,
        r.status.code(),
        human(r.duration)
    );
    if let Some(b) = &r.box_info {
        let _ = writeln!(
            out,
            "  box       {} {} (sha256 {})",
            b.name,
            b.version,
            &b.sha256[..16.min(b.sha256.len())]
        );
    }
    for s in &r.suites {
        let passed = s
            .tests
            .iter()
            .filter(|t| matches!(t.outcome, TestOutcome::Passed | TestOutcome::Flaky))
            .count();
        let mut line = format!(
            "  suite     {:<14} {passed}/{} passed",
            s.name,
            s.tests.len()
        );
        if !s.benchmarks.is_empty() {
            let _ = write!(line, ", {} benchmark(s)", s.benchmarks.len());
        }
        let _ = writeln!(out, "{line}  {}", st.dim.apply_to(human(s.duration)));
        if let Some(e) = &s.error {
            let _ = writeln!(out, "            {}", st.red.apply_to(e));
        }
    }
}

/// Every test that failed, with its log; and how many were skipped.
fn failures(out: &mut String, r: &RunRecord, run_dir: &Path, st: &Styles) {
    let problems: Vec<_> = r
        .tests()
        .filter(|t| {
            !matches!(
                t.outcome,
                TestOutcome::Passed | TestOutcome::Flaky | TestOutcome::Skipped
            )
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\n  {}", st.bold.apply_to("Failures"));
        for t in problems {
            let _ = writeln!(
                out,
                "  {} {}/{} on {}: {}",
                st.red.apply_to("✗"),
                t.suite,
                t.name,
                t.vm,
                t.message.as_deref().unwrap_or("")
            );
            let _ = writeln!(out, "      log: {}", run_dir.join(&t.log).display());
        }
    }
    let skipped = r.count(TestOutcome::Skipped);
    if skipped > 0 {
        let _ = writeln!(out, "  {skipped} test(s) skipped");
    }
}

/// Tests that passed only on a retry, and why they failed first.
fn flaky(out: &mut String, r: &RunRecord, st: &Styles) {
    let flaky: Vec<_> = r
        .tests()
        .filter(|t| t.outcome == TestOutcome::Flaky)
        .collect();
    if flaky.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  {}", st.bold.apply_to("Flaky (passed on a retry)"));
    for t in flaky {
        let _ = writeln!(
            out,
            "  {} {}/{}: failed {} time(s) first: {}",
            st.yellow.apply_to("~"),
            t.suite,
            t.name,
            t.failed_attempts.len(),
            t.failed_attempts
                .first()
                .and_then(|a| a.message.as_deref())
                .unwrap_or("")
        );
    }
}

/// Each metric's median, sample count and range.
fn benchmarks(out: &mut String, r: &RunRecord, st: &Styles) {
    let benches: Vec<_> = r.benchmarks().collect();
    if benches.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  {}", st.bold.apply_to("Benchmarks"));
    for b in benches {
        for m in &b.metrics {
            let _ = writeln!(
                out,
                "  {:<34} {:>10} {:<8} n={} min {} max {}",
                format!("{}/{} {}", b.suite, b.name, m.spec.name),
                fmt_num(median(&m.samples)),
                m.spec.unit,
                m.samples.len(),
                fmt_num(m.samples.iter().copied().fold(f64::NAN, f64::min)),
                fmt_num(m.samples.iter().copied().fold(f64::NAN, f64::max)),
            );
        }
        if let Some(e) = &b.error {
            let _ = writeln!(
                out,
                "  {} {}/{}: {e}",
                st.red.apply_to("✗"),
                b.suite,
                b.name
            );
        }
    }
}

/// Where the time went, phase by phase; the phases that failed, and the run's notices.
fn lifecycle(out: &mut String, r: &RunRecord, st: &Styles) {
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| {
            let mark = if p.error.is_some() { " ✗" } else { "" };
            format!("{} {}{mark}", p.phase.name(), human(p.duration))
        })
        .collect();
    let _ = writeln!(out, "\n  lifecycle {}", st.dim.apply_to(phases.join(" · ")));
    for p in r.phases.iter().filter(|p| p.error.is_some()) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            st.red.apply_to("✗"),
            p.phase.name(),
            p.error.as_deref().unwrap_or("")
        );
    }
    for n in &r.notices {
        let _ = writeln!(out, "  {} {n}", st.bold.apply_to("!"));
    }
}

/// "1m 32s" rather than "92.417s".
pub fn human(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}
