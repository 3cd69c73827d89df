//! CSV export of every benchmark sample, one row each, for spreadsheets and notebooks.

use std::io::Write;

use chrono::SecondsFormat;

use super::store::SampleRow;

/// The header, in column order.
pub const COLUMNS: [&str; 12] = [
    "time",
    "run_id",
    "commit",
    "host_fingerprint",
    "conditions",
    "suite",
    "benchmark",
    "metric",
    "unit",
    "direction",
    "sample",
    "value",
];

/// Writes `rows` as RFC 4180 CSV with a header line. `time` is the run's start (UTC);
/// `conditions` is the key shared by runs whose numbers are comparable.
pub fn write_csv(rows: &[SampleRow], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}", COLUMNS.join(","))?;
    for r in rows {
        let fields = [
            r.started.to_rfc3339_opts(SecondsFormat::Secs, true),
            r.run_id.clone(),
            r.commit.clone().unwrap_or_default(),
            r.host_fingerprint.clone().unwrap_or_default(),
            r.conditions_key.clone().unwrap_or_default(),
            r.suite.clone(),
            r.benchmark.clone(),
            r.metric.clone(),
            r.unit.clone(),
            r.direction.clone(),
            r.index.to_string(),
            r.value.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| field(f)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    out.flush()
}

/// A field, quoted when it holds a comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(field("Gbit/s"), "Gbit/s");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
