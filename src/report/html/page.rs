//! Small HTML building blocks shared by the run page and the index: escaping, the page shell,
//! and the words and colour classes of statuses and outcomes.

use std::fmt::Write;

use crate::exit::Status;
use crate::model::record::TestOutcome;
use crate::stats::Verdict;

/// Text made safe for HTML bodies and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A name made safe for element ids and file names: letters, digits, `-`, `_` and `.` stay.
pub fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The id of a test's entry in its run's report.
pub fn test_anchor(suite: &str, name: &str) -> String {
    format!("{}-{}", slug(suite), slug(name))
}

/// The page shell around `body`; `style` is a `<link>` or an inline `<style>` element.
pub fn document(title: &str, style: &str, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n{style}\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        esc(title)
    );
    out
}

/// A coloured label.
pub fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

/// The colour class of a run status: good, bad, or stopped (neither).
pub fn status_class(s: Status) -> &'static str {
    match s {
        Status::Passed => "good",
        Status::Interrupted | Status::Terminated => "stopped",
        Status::Regressed | Status::TestsFailed | Status::BadInput | Status::InfraError => "bad",
    }
}

pub fn outcome_word(o: TestOutcome) -> &'static str {
    match o {
        TestOutcome::Passed => "PASSED",
        TestOutcome::Flaky => "FLAKY",
        TestOutcome::Failed => "FAILED",
        TestOutcome::TimedOut => "TIMED OUT",
        TestOutcome::Error => "ERROR",
        TestOutcome::Skipped => "SKIPPED",
    }
}

pub fn outcome_class(o: TestOutcome) -> &'static str {
    match o {
        TestOutcome::Passed => "good",
        TestOutcome::Flaky => "warn",
        TestOutcome::Failed | TestOutcome::TimedOut | TestOutcome::Error => "bad",
        TestOutcome::Skipped => "muted",
    }
}

/// Failures first, then flaky, skipped and passed tests: what needs reading comes first.
pub fn outcome_rank(o: TestOutcome) -> u8 {
    match o {
        TestOutcome::Failed | TestOutcome::TimedOut | TestOutcome::Error => 0,
        TestOutcome::Flaky => 1,
        TestOutcome::Skipped => 2,
        TestOutcome::Passed => 3,
    }
}

pub fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => "good",
        Verdict::Unchanged => "neutral",
        Verdict::Regressed => "bad",
        Verdict::NotComparable => "muted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn slugs_keep_safe_names() {
        assert_eq!(slug("tcp-1-stream"), "tcp-1-stream");
        assert_eq!(slug("a b/c"), "a_b_c");
    }
}
