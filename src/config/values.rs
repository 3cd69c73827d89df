//! Checks of single values, run by serde as it reads them, so that the toml deserializer
//! locates their errors at the value: for metalab.toml and suite files alike.

use std::time::Duration;

use super::located::refuse;

/// A duration (`"90s"`, `"5m"`, `"1h 30m"`) above zero: a timeout of zero would expire before
/// anything ran, a ttl of zero would delete what it is the ttl of at once.
pub fn positive_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t: Duration = humantime_serde::deserialize(d)?;
    check_positive(t)
}

/// [`positive_duration`], for a setting that may be left out.
pub fn positive_duration_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    let t: Option<Duration> = humantime_serde::deserialize(d)?;
    t.map(check_positive).transpose()
}

fn check_positive<E: serde::de::Error>(t: Duration) -> Result<Duration, E> {
    if t.is_zero() {
        return Err(refuse(
            format!(
                "{} is no time at all: this duration must be above zero",
                humantime::format_duration(t)
            ),
            "e.g. \"90s\", \"5m\" or \"1h 30m\"",
        ));
    }
    Ok(t)
}
