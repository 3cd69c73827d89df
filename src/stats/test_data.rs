//! Seeded synthetic data for the tests of this module.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` draws from Normal(mean, sd) by the Box–Muller transform, reproducible from
/// `seed` (rand 0.9 alone has no normal distribution).
pub(crate) fn normal_samples(n: usize, mean: f64, sd: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1], so ln is finite
            let u2: f64 = rng.random();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            mean + sd * z
        })
        .collect()
}
