//! The one error type of the statistics module.

/// Why a statistic could not be computed.
///
/// Only bad input produces an error; data that merely makes a test weak (few
/// samples, all values equal) yields a valid, if uninformative, result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A sample set that must not be empty was empty; `what` names it.
    #[error("{what}: no samples")]
    Empty {
        /// Which input was empty (e.g. "baseline").
        what: &'static str,
    },
    /// A sample was NaN or infinite; such values have no rank and no mean.
    #[error("{what}: sample {index} is not a finite number ({value})")]
    NonFinite {
        /// Which input held the value.
        what: &'static str,
        /// Position of the first offending sample.
        index: usize,
        /// The offending value itself.
        value: f64,
    },
    /// A tuning parameter was outside its documented range.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What the valid range is.
        reason: String,
    },
}

/// Rejects empty or non-finite input, naming it `what` in the error.
pub(crate) fn check_samples(what: &'static str, samples: &[f64]) -> Result<(), StatsError> {
    if samples.is_empty() {
        return Err(StatsError::Empty { what });
    }
    check_finite(what, samples)
}

/// Rejects non-finite input (NaN, ±infinity), naming it `what` in the error.
pub(crate) fn check_finite(what: &'static str, samples: &[f64]) -> Result<(), StatsError> {
    match samples.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(StatsError::NonFinite {
            what,
            index,
            value: samples[index],
        }),
        None => Ok(()),
    }
}

/// Rejects a probability-like parameter outside the open interval (0, 1).
pub(crate) fn check_open_unit(name: &'static str, value: f64) -> Result<(), StatsError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidParameter {
            name,
            reason: format!("must lie strictly between 0 and 1, got {value}"),
        })
    }
}
