//! `[outputs]`: how much of what the VMs send back a run keeps, per log and over the whole run.

use serde::Deserialize;
use serde::de::{self, Visitor};

use crate::config::located::refuse;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Caps on what a run writes from its VMs' output: each command's log, and all logs and
/// artifacts of the run together. A suite is code from a pull request, trusted or not: whatever
/// it prints or leaves behind, the host's disk and metalab's memory stay bounded. What goes
/// over a cap is dropped, and the log says where and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    /// Bytes one log keeps (a test's, a step's, a phase's). Default 16 MiB: hundreds of times
    /// what an honest networking test prints (a ping, an iperf3 JSON report), a size a person
    /// can still open, and small enough that the copy metalab keeps in memory to judge a
    /// command, with several commands running side by side, stays small.
    #[serde(deserialize_with = "byte_size")]
    pub log_cap: u64,
    /// Bytes a run keeps over all its logs and artifacts. Default 1 GiB: room for packet
    /// captures and journals of every suite, about the size of one box image, and within what
    /// CI systems accept as a job's archived artifacts.
    #[serde(deserialize_with = "byte_size")]
    pub run_cap: u64,
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            log_cap: 16 * MIB,
            run_cap: GIB,
        }
    }
}

/// The units a size may be written in: binary, as the defaults are.
const UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", MIB),
    ("GiB", GIB),
    ("TiB", 1 << 40),
];

const SIZE_HINT: &str = "a number of bytes, or e.g. \"512 KiB\", \"16 MiB\", \"1 GiB\"";

/// A size above zero: bytes as an integer, or a number and a binary unit (`"16 MiB"`).
fn byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let bytes = d.deserialize_any(SizeVisitor)?;
    if bytes == 0 {
        return Err(refuse(
            "0 bytes would keep nothing: this cap must be above zero",
            SIZE_HINT,
        ));
    }
    Ok(bytes)
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a size: a number of bytes, or a string like \"16 MiB\"")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| refuse(format!("{n} is below zero"), SIZE_HINT))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
        parse_size(text).ok_or_else(|| refuse(format!("`{text}` is not a size"), SIZE_HINT))
    }
}

/// `"16 MiB"`, `"16MiB"`, `"1 gib"`, `"4096"`: bytes, or `None`.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = unit.trim();
    let scale = match unit {
        "" => 1,
        _ => {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))?
                .1
        }
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    use super::*;

    #[test]
    fn defaults_are_16_mib_a_log_and_1_gib_a_run() {
        let o = loaded("").outputs;
        assert_eq!(o.log_cap, 16 << 20);
        assert_eq!(o.run_cap, 1 << 30);
    }

    #[test]
    fn sizes_take_binary_units_or_plain_bytes() {
        let o = loaded("[outputs]\nlog_cap = \"512 KiB\"\nrun_cap = \"2GiB\"\n").outputs;
        assert_eq!(o.log_cap, 512 << 10);
        assert_eq!(o.run_cap, 2 << 30);
        let o = loaded("[outputs]\nlog_cap = 4096\n").outputs;
        assert_eq!(o.log_cap, 4096);
        assert_eq!(o.run_cap, 1 << 30, "the other keeps its default");
        assert_eq!(parse_size(" 3 mib "), Some(3 << 20));
    }

    #[test]
    fn a_zero_cap_is_located_at_its_value() {
        for (key, value) in [("log_cap", "0"), ("run_cap", "\"0 MiB\"")] {
            let e = rejected(&format!("[outputs]\n{key} = {value}\n"));
            assert_eq!((e.line, e.column), (2, key.len() + 4), "{key}");
            assert_eq!(e.key, Some(format!("outputs.{key}")));
            assert_eq!(
                e.message,
                "0 bytes would keep nothing: this cap must be above zero"
            );
        }
    }

    #[test]
    fn a_size_without_a_known_unit_is_refused_with_examples() {
        for bad in ["\"16M\"", "\"MiB\"", "\"-1 GiB\"", "\"99999999999 TiB\""] {
            let e = rejected(&format!("[outputs]\nrun_cap = {bad}\n"));
            assert_eq!((e.line, e.column), (2, 11), "{bad}");
            assert_eq!(e.key.as_deref(), Some("outputs.run_cap"));
            assert!(e.message.ends_with("is not a size"), "{}", e.message);
            assert_eq!(e.hint.as_deref(), Some(SIZE_HINT));
        }
        let e = rejected("[outputs]\nlog_cap = -5\n");
        assert_eq!(e.message, "-5 is below zero");
    }

    #[test]
    fn an_unknown_key_is_located_and_names_the_known_ones() {
        let e = rejected("[outputs]\nlog_max = 5\n");
        assert_eq!((e.line, e.column), (2, 1));
        assert_eq!(e.key.as_deref(), Some("outputs.log_max"));
        assert_eq!(
            e.message,
            "unknown field `log_max`, expected `log_cap` or `run_cap`"
        );
    }
}
