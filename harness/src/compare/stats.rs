//! Summary statistics of repeated measurements: every sample kept, the
//! median with a bootstrap 95% confidence interval, quartiles.
//!
//! The bootstrap is the percentile bootstrap of the median (2,000
//! resamples, drawn from a ChaCha stream seeded by the run seed and the
//! figure's name, so a run's intervals are reproducible from its samples).

use e2elab_core::Env;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 2000;

/// Repeated measurements of one figure.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    /// Samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Lower end of the bootstrap 95% confidence interval of the median.
    pub ci_lo: f64,
    /// Upper end.
    pub ci_hi: f64,
    /// Every sample, in measurement order.
    pub samples: Vec<f64>,
}

fn quantile(sorted: &[f64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(v, 0.5)
}

impl Stat {
    /// Summary of `v` (non-finite samples dropped; all zero when empty),
    /// with the bootstrap interval drawn from `seed` and `label`.
    pub fn of(v: &[f64], seed: u64, label: &str) -> Stat {
        let samples: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if samples.is_empty() {
            return Stat::default();
        }
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let (ci_lo, ci_hi) = bootstrap_median(&samples, seed, label);
        Stat {
            n: s.len(),
            median: quantile(&s, 0.5),
            min: s[0],
            max: s[s.len() - 1],
            q1: quantile(&s, 0.25),
            q3: quantile(&s, 0.75),
            ci_lo,
            ci_hi,
            samples,
        }
    }

    /// [`Stat::of`] with the interval drawn from a fixed stream (for
    /// figures without a run seed at hand).
    pub fn summarize(v: &[f64]) -> Stat {
        Stat::of(v, 1, "")
    }

    /// Interquartile range.
    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }

    /// Half the width of the confidence interval relative to the median.
    pub fn rel_ci(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.ci_hi - self.ci_lo) / 2.0 / self.median.abs()
        }
    }
}

/// Percentile bootstrap 95% interval of the median of `v`.
pub fn bootstrap_median(v: &[f64], seed: u64, label: &str) -> (f64, f64) {
    if v.len() < 2 {
        let x = v.first().copied().unwrap_or(0.0);
        return (x, x);
    }
    let mut rng = Env::for_party(seed, &format!("bootstrap:{label}"));
    let mut meds = Vec::with_capacity(RESAMPLES);
    let mut buf = vec![0.0; v.len()];
    for _ in 0..RESAMPLES {
        for b in buf.iter_mut() {
            *b = v[(rng.next_u64() % v.len() as u64) as usize];
        }
        meds.push(median_of(&mut buf));
    }
    meds.sort_by(f64::total_cmp);
    (quantile(&meds, 0.025), quantile(&meds, 0.975))
}

/// A seeded shuffle (Fisher-Yates) of `v`.
pub fn shuffle<T>(v: &mut [T], rng: &mut Env) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_and_interval() {
        let s = Stat::of(&[5.0, 1.0, 3.0, 2.0, 4.0], 1, "t");
        assert_eq!(s.n, 5);
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max), (1.0, 5.0));
        assert_eq!((s.q1, s.q3), (2.0, 4.0));
        assert_eq!(s.iqr(), 2.0);
        assert_eq!(s.samples, vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert!(s.ci_lo <= s.median && s.median <= s.ci_hi);
        assert!(s.ci_lo >= 1.0 && s.ci_hi <= 5.0);
        assert_eq!(Stat::of(&[], 1, "t").n, 0);
        assert_eq!(Stat::of(&[1.0, 2.0], 1, "t").median, 1.5);
        // Reproducible from the seed and label; a constant has a point interval.
        assert_eq!(
            bootstrap_median(&[1.0, 9.0, 3.0, 4.0], 7, "x"),
            bootstrap_median(&[1.0, 9.0, 3.0, 4.0], 7, "x")
        );
        assert_eq!(bootstrap_median(&[2.0; 9], 7, "x"), (2.0, 2.0));
    }

    #[test]
    fn interval_narrows_with_more_samples() {
        let mut rng = Env::for_party(3, "noise");
        let draw = |n: usize, rng: &mut Env| -> Vec<f64> {
            (0..n)
                .map(|_| 100.0 + (rng.next_u64() % 1000) as f64 / 100.0)
                .collect()
        };
        let small = Stat::of(&draw(9, &mut rng), 1, "a");
        let large = Stat::of(&draw(400, &mut rng), 1, "a");
        assert!(large.ci_hi - large.ci_lo < small.ci_hi - small.ci_lo);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..50).collect();
        shuffle(&mut v, &mut Env::for_party(1, "s"));
        let mut w = v.clone();
        w.sort();
        assert_eq!(w, (0..50).collect::<Vec<_>>());
        assert_ne!(v, w);
    }
}
