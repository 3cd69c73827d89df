//! The gate's verdicts as a plain-text table, for `metalab bench compare` and the end of
//! `metalab run --baseline`.

use std::fmt::Write;

use super::{GateReport, MetricVerdict, format_percent, format_value, verdict_word};
use crate::stats::Verdict;

const HEADER: [&str; 6] = [
    "metric", "baseline", "this run", "change", "p-value", "verdict",
];

/// The table, one row per metric, each followed by indented notes: the baseline runs, change
/// points, and why a verdict is what it is.
pub fn render(report: &GateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} against {} (minimum effect {}, alpha {})\n",
        report.run_id,
        report.baseline.describe(report.allow_different_conditions),
        format_percent(report.min_effect),
        super::ALPHA,
    );
    if report.metrics.is_empty() {
        out.push_str("this run has no benchmark samples (`metalab history` lists the runs)\n");
        return out;
    }
    let rows: Vec<[String; 6]> = report.metrics.iter().map(row).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([HEADER[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = writeln!(out, "{}", line(&HEADER.map(String::from), &widths));
    for (m, r) in report.metrics.iter().zip(&rows) {
        let _ = writeln!(out, "{}", line(r, &widths));
        for note in notes(m) {
            let _ = writeln!(out, "    {note}");
        }
    }
    let _ = writeln!(out, "\n{}", tally(report));
    out
}

fn row(m: &MetricVerdict) -> [String; 6] {
    let with_unit = |v: f64| format!("{} {}", format_value(v), m.unit);
    let (base, this, change, p) = match &m.comparison {
        Some(c) => (
            with_unit(c.baseline_median),
            with_unit(c.current_median),
            c.change
                .map_or("n/a".into(), |x| format!("{:+.1}%", x * 100.0)),
            format!("{:.3}", c.p_value),
        ),
        None => {
            let this = m.current_median().map_or("n/a".into(), with_unit);
            ("n/a".into(), this, "n/a".into(), "n/a".into())
        }
    };
    [
        m.key.to_string(),
        base,
        this,
        change,
        p,
        verdict_word(m.verdict).to_uppercase(),
    ]
}

fn line(cells: &[String; 6], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(i, (c, w))| {
            let pad = w.saturating_sub(c.chars().count());
            // Numbers right-aligned, words left-aligned.
            if (1..=4).contains(&i) {
                format!("{}{c}", " ".repeat(pad))
            } else {
                format!("{c}{}", " ".repeat(pad))
            }
        })
        .collect();
    padded.join("  ").trim_end().to_string()
}

fn notes(m: &MetricVerdict) -> Vec<String> {
    let mut notes = Vec::new();
    if !m.baseline_runs.is_empty() {
        let runs: Vec<&str> = m.baseline_runs.iter().map(|r| r.as_str()).collect();
        notes.push(format!(
            "baseline: {} run(s), {} samples: {}",
            runs.len(),
            m.baseline.len(),
            runs.join(" ")
        ));
    }
    if let Some(reason) = &m.reason
        && m.verdict != Verdict::Improved
        && m.verdict != Verdict::Regressed
    {
        notes.push(format!("why: {reason}"));
    }
    if let Some(note) = &m.conditions_note {
        notes.push(format!("conditions: {note}"));
    }
    for cp in &m.change_points {
        notes.push(format!(
            "change point at run {} ({}): {} → {} {} (p {:.3})",
            cp.run_id,
            cp.started.format("%Y-%m-%d %H:%M"),
            format_value(cp.before),
            format_value(cp.after),
            m.unit,
            cp.p_value
        ));
    }
    notes
}

fn tally(report: &GateReport) -> String {
    let count = |v: Verdict| report.metrics.iter().filter(|m| m.verdict == v).count();
    format!(
        "{} regressed, {} improved, {} unchanged, {} not comparable",
        count(Verdict::Regressed),
        count(Verdict::Improved),
        count(Verdict::Unchanged),
        count(Verdict::NotComparable)
    )
}
