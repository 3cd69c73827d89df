//! `[bench]`: the regression gate's defaults.

use serde::Deserialize;

/// The smallest change of a metric's median that counts, by default: 5%.
pub const DEFAULT_MIN_EFFECT: f64 = 0.05;

/// The regression gate's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Bench {
    /// Smallest relative change of a metric's median that counts as a regression or an
    /// improvement, as a fraction: 0.05 is 5%. Default 0.05.
    #[serde(deserialize_with = "fraction")]
    pub min_effect: f64,
}

impl Default for Bench {
    fn default() -> Self {
        Bench {
            min_effect: DEFAULT_MIN_EFFECT,
        }
    }
}

/// A fraction in [0, 1); the toml deserializer attaches the value's span to the error.
fn fraction<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let x = f64::deserialize(d)?;
    if !(0.0..1.0).contains(&x) {
        return Err(serde::de::Error::custom(format!(
            "{x} is not a fraction between 0 and 1 (0.05 is 5%)"
        )));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    use super::*;

    #[test]
    fn the_default_effect_is_five_percent() {
        assert_eq!(loaded("").bench.min_effect, 0.05);
        assert_eq!(DEFAULT_MIN_EFFECT, 0.05);
    }

    #[test]
    fn a_fraction_is_read() {
        assert_eq!(loaded("[bench]\nmin_effect = 0.0\n").bench.min_effect, 0.0);
        assert_eq!(loaded("[bench]\nmin_effect = 0.1\n").bench.min_effect, 0.1);
    }

    #[test]
    fn a_percentage_is_not_a_fraction() {
        for bad in ["1.5", "1.0", "-0.1"] {
            let e = rejected(&format!("[bench]\nmin_effect = {bad}\n"));
            assert_eq!((e.line, e.column), (2, 14), "{bad}");
            assert_eq!(e.key.as_deref(), Some("bench.min_effect"));
            assert!(
                e.message
                    .ends_with("is not a fraction between 0 and 1 (0.05 is 5%)"),
                "{}",
                e.message
            );
        }
    }
}
