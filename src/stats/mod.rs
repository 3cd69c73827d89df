//! Statistics for benchmark results gathered on noisy machines.
//!
//! Everything here is pure: no I/O, no clocks, and every random step (bootstrap,
//! permutation tests) uses a seeded [`rand::rngs::StdRng`], so the same input and
//! configuration always give the same answer. Inputs containing NaN or infinity are
//! rejected with [`StatsError::NonFinite`] instead of silently poisoning a result.
//!
//! - [`Summary`]: describe one metric's samples (median, spread, bootstrap CI, outliers).
//! - [`mann_whitney_u`]: rank test for "do these two sets of samples differ?".
//! - [`compare`]: the regression gate's verdict for a run against a baseline.
//! - [`RunNoiseBand`]: how far a run's median may stray from earlier runs' by chance.
//! - [`change_points`]: where a metric's history shifted (E-divisive with means).
//! - [`quantile`]: the one quantile definition used throughout (type 7).

#![warn(missing_docs)]

mod bootstrap;
mod change_point;
mod compare;
mod error;
mod mann_whitney;
mod normal;
mod outliers;
mod quantile;
mod run_noise;
mod summary;
#[cfg(test)]
mod test_data;

pub use bootstrap::{BootstrapConfig, ConfidenceInterval};
pub use change_point::{ChangePoint, ChangePointConfig, change_points};
pub use compare::{Comparison, Direction, Verdict, compare};
pub use error::StatsError;
pub use mann_whitney::{
    EXACT_MAX_SIZE, MannWhitney, Method, mann_whitney_u, min_achievable_p_value,
};
pub use outliers::{Outlier, TukeyFences};
pub use quantile::quantile;
pub use run_noise::RunNoiseBand;
pub use summary::Summary;

/// Seed used by default for every random step (bootstrap resampling, permutation
/// tests), so that results are reproducible run to run. The value is arbitrary.
pub const DEFAULT_SEED: u64 = 0x6d65_7461_6c61_6221;
