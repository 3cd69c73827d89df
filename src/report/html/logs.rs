//! A log inlined into the report, one element per line with its own anchor
//! (`#<prefix>-L<n>`), so a failure can be shared as a link to the exact line.

use std::fmt::Write;
use std::path::Path;

use super::page::esc;

/// Lines inlined per log; the rest is a link away.
const MAX_LINES: usize = 3000;

/// The id of line `n` (1-based) of the log with this prefix.
pub fn line_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-L{n}")
}

/// Words that mark where a failing test's log first goes wrong.
const FAILING_WORDS: [&str; 7] = [
    "error",
    "fail",
    "assert",
    "panic",
    "denied",
    "timed out",
    "not ok",
];

/// The line (1-based) where a failing test's log first says something went wrong, else its last
/// line (metalab's `# exit N`); `None` for an empty log, or a line past what the report inlines.
pub fn first_failing_line(text: &str) -> Option<usize> {
    let lines: Vec<String> = text.lines().map(str::to_lowercase).collect();
    let found = lines
        .iter()
        .position(|l| !l.starts_with("$ ") && FAILING_WORDS.iter().any(|w| l.contains(w)))
        .or_else(|| lines.len().checked_sub(1))?;
    (found < MAX_LINES).then_some(found + 1)
}

/// The log at `path` as numbered, linkable lines, or a note saying why there is none.
pub fn render(path: &Path, prefix: &str) -> String {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return format!(
                "<p class=\"note\">No log at {}: {e}</p>",
                esc(&path.display().to_string())
            );
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return "<p class=\"note\">The log is empty.</p>".to_string();
    }
    let mut out = String::from("<pre class=\"log\">");
    let total = text.lines().count();
    for (i, line) in text.lines().take(MAX_LINES).enumerate() {
        let id = line_id(prefix, i + 1);
        let _ = write!(
            out,
            "<span class=\"line\" id=\"{id}\"><a class=\"ln\" href=\"#{id}\">{}</a>{}</span>",
            i + 1,
            esc(line)
        );
    }
    out.push_str("</pre>");
    if total > MAX_LINES {
        let _ = write!(
            out,
            "<p class=\"note\">{} more lines in the raw log.</p>",
            total - MAX_LINES
        );
    }
    out
}
