//! Errors that point into a file: `metalab.toml:12:5: key `vm.memory`: ...`, the offending line with
//! a caret under it, and a hint. Used for metalab.toml and for suite files alike.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A text file kept in memory so that byte spans can be turned into line, column and key.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// An error located at a line and column of a file, naming the key it is about.
#[derive(Debug, Clone)]
pub struct LocatedError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    source_line: String,
    caret_len: usize,
}

impl SourceFile {
    pub fn read(path: &Path) -> std::io::Result<SourceFile> {
        Ok(SourceFile {
            path: path.to_path_buf(),
            text: std::fs::read_to_string(path)?,
        })
    }

    /// An error at a byte span of this file. The key is worked out from the text at the span.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> LocatedError {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let source_line = self.text[line_start..line_end].to_string();
        let caret_len = span.end.min(line_end).saturating_sub(start).max(1);
        LocatedError {
            path: self.path.clone(),
            line: self.text[..start].matches('\n').count() + 1,
            column: self.text[line_start..start].chars().count() + 1,
            key: key_at(&self.text, line_start, &source_line),
            message: message.into(),
            hint: None,
            source_line,
            caret_len,
        }
    }

    /// An error about the file as a whole (e.g. a default that points at a missing file).
    pub fn error_at_start(&self, message: impl Into<String>) -> LocatedError {
        let mut e = self.error_at(0..0, message);
        e.key = None;
        e
    }

    /// Converts a `toml` parse or type error, keeping its span and making serde's wording friendlier.
    pub fn toml_error(&self, err: &toml::de::Error) -> LocatedError {
        let span = err.span().unwrap_or(0..0);
        let message = err.message().trim().to_string();
        let hint = unknown_field_hint(&message, &self.text[span.clone()]);
        self.error_at(span, message).with_hint_opt(hint)
    }
}

impl LocatedError {
    pub fn with_hint(mut self, hint: impl Into<String>) -> LocatedError {
        self.hint = Some(hint.into());
        self
    }

    fn with_hint_opt(mut self, hint: Option<String>) -> LocatedError {
        self.hint = hint.or(self.hint);
        self
    }

    /// Overrides the key worked out from the text, for errors about a value inside an array.
    pub fn with_key(mut self, key: impl Into<String>) -> LocatedError {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for LocatedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: ",
            shown_path(&self.path).display(),
            self.line,
            self.column
        )?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        writeln!(f, "{}", self.message)?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        write!(
            f,
            "{:gutter$} | {}{}",
            "",
            " ".repeat(self.column - 1),
            "^".repeat(self.caret_len)
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n{:gutter$} = hint: {hint}", "")?;
        }
        Ok(())
    }
}

impl std::error::Error for LocatedError {}

/// The path relative to the current directory when it lies below it: what an editor or a CI log
/// link expects.
fn shown_path(path: &Path) -> &Path {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
}

/// The dotted key a line belongs to: the table header above it plus the key on the line.
fn key_at(text: &str, line_start: usize, line: &str) -> Option<String> {
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) if line.trim_start().starts_with('[') => Some(t),
        (t, None) => t,
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": suggest the closest known field.
fn unknown_field_hint(message: &str, found: &str) -> Option<String> {
    let expected = message.split_once("expected one of ")?.1;
    let candidates: Vec<&str> = expected
        .split(',')
        .map(|s| s.trim().trim_matches('`'))
        .collect();
    let found = found.trim().trim_matches('"');
    let best = candidates
        .iter()
        .min_by_key(|c| strsim::levenshtein(c, found))?;
    Some(if strsim::levenshtein(best, found) <= 3 {
        format!("did you mean `{best}`?")
    } else {
        format!("known keys here: {}", candidates.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceFile {
        SourceFile {
            path: "metalab.toml".into(),
            text: text.to_string(),
        }
    }

    #[test]
    fn spans_become_line_column_and_dotted_key() {
        let f = file("[lab]\nsuites = \"x\"\n\n[vm]\nmemory = \"lots\"\n");
        let at = f.text.find("\"lots\"").unwrap();
        let e = f.error_at(at..at + 6, "expected an integer");
        assert_eq!((e.line, e.column), (5, 10));
        assert_eq!(e.key.as_deref(), Some("vm.memory"));
        let shown = e.to_string();
        assert!(shown.starts_with("metalab.toml:5:10: key `vm.memory`: expected an integer"));
        assert!(
            shown.contains("5 | memory = \"lots\"\n  |          ^^^^^^"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_fields_get_a_did_you_mean() {
        let hint = unknown_field_hint(
            "unknown field `memroy`, expected one of `cpus`, `memory`",
            "memroy",
        );
        assert_eq!(hint.as_deref(), Some("did you mean `memory`?"));
    }
}
