//! Errors that point into a file: `metalab.toml:12:5: key `vm.memory`: ...`, the offending line with
//! a caret under it, and a hint. Used for metalab.toml and for suite files alike.
//!
//! A check inside a serde deserializer can carry a hint too: [`refuse`] puts it after the message,
//! and [`SourceFile::toml_error`] takes it out again.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A text file kept in memory so that byte spans can be turned into line, column and key.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Why a file could not be read: the system's reason, or text that is not UTF-8 (located at its
/// first bad byte).
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Located(LocatedError),
}

/// The longest part of a line shown under an error; the rest is cut (and said to be).
const SHOWN_LINE: usize = 200;

/// The longest message shown as it is; longer ones (e.g. echoing a huge value) are cut.
const SHOWN_MESSAGE: usize = 300;

/// Between a message and its hint in the text of a serde error (see [`refuse`]).
const HINT_MARK: &str = "\n= hint: ";

/// An error for a check in a serde deserializer, with a hint; the toml deserializer attaches the
/// value's span, and [`SourceFile::toml_error`] shows the hint as a hint.
pub fn refuse<E: serde::de::Error>(message: impl std::fmt::Display, hint: &str) -> E {
    E::custom(format!("{message}{HINT_MARK}{hint}"))
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
    /// The line as shown: cut around the column when it is long.
    source_line: String,
    /// Where the caret goes in `source_line`, in characters.
    caret_at: usize,
    caret_len: usize,
}

impl SourceFile {
    /// Reads a file, which must be UTF-8: a bad byte is located at its line and column.
    pub fn read(path: &Path) -> Result<SourceFile, ReadError> {
        let bytes = std::fs::read(path).map_err(ReadError::Io)?;
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let byte = e.as_bytes()[at];
                // The valid part is kept as it is, so `at` is the same place in the lossy text.
                let file = SourceFile {
                    path: path.to_path_buf(),
                    text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                Err(ReadError::Located(
                    file.error_at(
                        at..at + char::REPLACEMENT_CHARACTER.len_utf8(),
                        format!("byte 0x{byte:02x} is not UTF-8: {name} must be UTF-8 text"),
                    )
                    .with_hint("save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"),
                ))
            }
        }
    }

    /// An error at a byte span of this file. The key is worked out from the text at the span.
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> LocatedError {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line = &self.text[line_start..line_end];
        let column = self.text[line_start..start].chars().count() + 1;
        let caret_chars = self.text[start..span.end.clamp(start, line_end)]
            .chars()
            .count();
        let (source_line, caret_at, caret_len) = shown_line(line, column - 1, caret_chars);
        LocatedError {
            path: self.path.clone(),
            line: self.text[..start].matches('\n').count() + 1,
            column,
            key: key_at(&self.text, line_start, line),
            message: shown_message(&message.into()),
            hint: None,
            source_line,
            caret_at,
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
        let (message, hint) = match err.message().trim().split_once(HINT_MARK) {
            Some((message, hint)) => (message.to_string(), Some(hint.to_string())),
            None => (err.message().trim().to_string(), None),
        };
        if let Some(missing) = missing_field(&message) {
            return self.missing_key(span, missing);
        }
        let hint = hint.or_else(|| unknown_field_hint(&message, &self.text[span.clone()]));
        self.error_at(span, message).with_hint_opt(hint)
    }

    /// serde's "missing field `x`" at the span of the table it is missing from: says which key
    /// is missing from which table.
    fn missing_key(&self, span: Range<usize>, missing: &str) -> LocatedError {
        let e = self.error_at(span.clone(), "");
        let line = self.text[span.start.min(self.text.len())..]
            .lines()
            .next()
            .unwrap_or("")
            .trim();
        let (key, table) = match (&e.key, header(line)) {
            // No span: the top level of the file.
            _ if span.is_empty() => (missing.to_string(), "at the top level of the file".into()),
            // At a header: the table it opens, as written.
            (Some(key), Some(_)) => (
                format!("{key}.{missing}"),
                format!("in {}", header_text(line)),
            ),
            // An inline table, the value of a key.
            (Some(key), None) => (format!("{key}.{missing}"), format!("in `{key}`")),
            (None, _) => (missing.to_string(), "at the top level of the file".into()),
        };
        let mut e = self.error_at(span, format!("missing required key `{missing}` {table}"));
        e.key = Some(key);
        e
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

    /// Masks `secret` in the line shown, one `*` per character so the caret stays put: an
    /// error must not copy a password into a CI log.
    pub fn hiding(mut self, secret: &str) -> LocatedError {
        if !secret.is_empty() {
            let mask = "*".repeat(secret.chars().count());
            self.source_line = self.source_line.replace(secret, &mask);
        }
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
            " ".repeat(self.caret_at),
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
pub fn shown_path(path: &Path) -> &Path {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
}

/// `line` cut to at most [`SHOWN_LINE`] characters around `column` (0-based, in characters),
/// saying so when it is cut; with where the caret goes in it and how long it is.
fn shown_line(line: &str, column: usize, caret: usize) -> (String, usize, usize) {
    let chars = line.chars().count();
    if chars <= SHOWN_LINE {
        return (line.to_string(), column, caret.max(1));
    }
    let from = column
        .saturating_sub(SHOWN_LINE / 2)
        .min(chars - SHOWN_LINE);
    let to = from + SHOWN_LINE;
    let mut shown = String::new();
    if from > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(from).take(SHOWN_LINE));
    if to < chars {
        shown.push('…');
    }
    shown.push_str(&format!(" (line cut: it is {chars} characters long)"));
    let at = column - from + usize::from(from > 0);
    (shown, at, caret.min(to.saturating_sub(column)).max(1))
}

/// A message cut when it is very long (it echoes a huge value, which the source line shows
/// already): its start and its end (serde names what it expected last), and how much was left
/// out.
fn shown_message(message: &str) -> String {
    let chars = message.chars().count();
    if chars <= SHOWN_MESSAGE {
        return message.to_string();
    }
    let (head, tail) = (60, 40);
    format!(
        "{}… ({} characters cut) …{}",
        message.chars().take(head).collect::<String>(),
        chars - head - tail,
        message.chars().skip(chars - tail).collect::<String>()
    )
}

/// The name of a table header line (`[a.b]` or `[[a.b]]`, comments after it allowed): `None`
/// when the line is not one, or does not close (a syntax error: no key can be named).
fn header(line: &str) -> Option<&str> {
    let line = line.trim();
    let (open, close) = if line.starts_with("[[") {
        ("[[", "]]")
    } else {
        ("[", "]")
    };
    let rest = line.strip_prefix(open)?;
    Some(rest[..rest.find(close)?].trim())
}

/// A header line as written, without what follows it: `[[provider.hosts]]`.
fn header_text(line: &str) -> String {
    let close = if line.trim().starts_with("[[") {
        "]]"
    } else {
        "]"
    };
    match line.find(close) {
        Some(end) => line[..end + close.len()].trim().to_string(),
        None => line.trim().to_string(),
    }
}

/// The `x` of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// The dotted key a line belongs to: the table header above it plus the key on the line, or the
/// table a header line opens. `None` where it cannot be known (a header that does not close).
fn key_at(text: &str, line_start: usize, line: &str) -> Option<String> {
    if line.trim_start().starts_with('[') {
        return header(line).map(str::to_string);
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty());
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(header);
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (t, None) => t.map(str::to_string),
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
    fn a_long_line_is_shown_around_the_column() {
        let line = format!("x = [{}\"s\"]", "1, ".repeat(2_000));
        let at = line.find('"').unwrap();
        let f = file(&format!("{line}\n"));
        let e = f.error_at(at..at + 3, "invalid type");
        assert_eq!((e.line, e.column), (1, at + 1));
        let shown = e.to_string();
        let [_, _, source, caret] = shown.lines().collect::<Vec<_>>()[..] else {
            panic!("{shown}")
        };
        assert!(source.starts_with("1 | … 1, 1, "), "{source}");
        assert!(
            source.ends_with("\"s\"] (line cut: it is 6009 characters long)"),
            "{source}"
        );
        let caret_at = caret.find('^').unwrap();
        let under: String = source.chars().skip(caret_at).take(3).collect();
        assert_eq!(under, "\"s\"");
        assert_eq!(caret.len() - caret_at, 3);
    }

    #[test]
    fn header_lines_name_their_own_table_or_none() {
        let text = "[lab]\nprovision = true\n[[provider.hosts]] # one\n[vm\n";
        let f = file(text);
        let at = |s: &str| text.find(s).unwrap();
        let e = f.error_at(at("[[provider") + 2..at("[[provider") + 16, "x");
        assert_eq!(e.key.as_deref(), Some("provider.hosts"));
        assert_eq!(f.error_at(at("[vm")..at("[vm") + 3, "x").key, None);
    }

    #[test]
    fn a_hint_from_a_deserializer_is_a_hint() {
        let f = file("[t]\nn = 0\n");
        fn nonzero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
            match <u8 as serde::Deserialize>::deserialize(d)? {
                0 => Err(refuse("zero", "use one")),
                n => Ok(n),
            }
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            #[serde(deserialize_with = "nonzero")]
            n: u8,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Top {
            t: T,
        }
        let err = toml::from_str::<Top>(&f.text).unwrap_err();
        let e = f.toml_error(&err);
        assert_eq!((e.line, e.column, e.key.as_deref()), (2, 5, Some("t.n")));
        assert_eq!(
            (e.message.as_str(), e.hint.as_deref()),
            ("zero", Some("use one"))
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
