//! The sync lag: from the moment the datapath reported a flow until the
//! peer acknowledged having installed it, measured on this node's clock
//! alone (no clock sync needed). Kept as a log-linear histogram: four
//! buckets per power of two of microseconds, so quantiles are within 19%.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const SUB: u32 = 4;
const BUCKETS: usize = 4 * 40;

#[derive(Debug, Clone)]
pub struct LagHistogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: u64,
    max_us: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

/// Bucket of `us` microseconds: values below 4 have their own, then four
/// per doubling.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros();
    let sub = (us >> (power - 2)) & (SUB as u64 - 1);
    ((power - 1) * SUB + sub as u32) as usize
}

/// The `q` quantile of a histogram's bucket `counts` (as
/// [`LagSummary::counts`] has them, or the difference of two), as the
/// upper bound of its bucket.
pub fn quantile_of(counts: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(Duration::from_micros(upper_us(i)));
        }
    }
    None
}

/// Upper bound (exclusive) of bucket `i`, in microseconds.
fn upper_us(i: usize) -> u64 {
    if i < SUB as usize {
        return i as u64 + 1;
    }
    let power = i as u32 / SUB + 1;
    let sub = i as u64 % SUB as u64;
    (1u64 << power) + (sub + 1) * (1u64 << (power - 2))
}

impl LagHistogram {
    pub fn record(&mut self, lag: Duration) {
        let us = lag.as_micros().min(u64::MAX as u128) as u64;
        self.counts[bucket(us).min(BUCKETS - 1)] += 1;
        self.total += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile_of(&self.counts, q).map(|d| d.min(Duration::from_micros(self.max_us.max(1))))
    }

    /// Counts at or below each of `bounds` (cumulative, as Prometheus
    /// histograms want), with the total and sum.
    pub fn cumulative(&self, bounds: &[Duration]) -> Vec<u64> {
        bounds
            .iter()
            .map(|b| {
                let us = b.as_micros() as u64;
                self.counts
                    .iter()
                    .enumerate()
                    .take_while(|(i, _)| upper_us(*i) <= us)
                    .map(|(_, n)| n)
                    .sum()
            })
            .collect()
    }

    pub fn summary(&self) -> LagSummary {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        let bounds: Vec<Duration> = BUCKET_BOUNDS_S
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect();
        LagSummary {
            counts: self.counts.clone(),
            buckets: BUCKET_BOUNDS_S
                .iter()
                .copied()
                .zip(self.cumulative(&bounds))
                .collect(),
            samples: self.total,
            p50_ms: ms(self.quantile(0.5)),
            p99_ms: ms(self.quantile(0.99)),
            max_ms: (self.total > 0).then(|| self.max_us as f64 / 1000.0),
            sum_seconds: self.sum_us as f64 / 1e6,
        }
    }
}

/// Upper bounds (seconds) of the buckets metrics export.
pub const BUCKET_BOUNDS_S: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What status shows of a histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagSummary {
    /// Cumulative counts at or below each of [`BUCKET_BOUNDS_S`] (as
    /// Prometheus histograms have them): (bound in seconds, count).
    #[serde(default)]
    pub buckets: Vec<(f64, u64)>,
    /// Every bucket's count (log-linear, see [`quantile_of`]), so that a
    /// reader can take the quantiles of an interval from two readings.
    #[serde(default)]
    pub counts: Vec<u64>,
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub sum_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bound_their_values() {
        for us in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1000,
            12_345,
            1_000_000,
            1 << 40,
        ] {
            let i = bucket(us);
            assert!(
                us < upper_us(i),
                "{us} in bucket {i} bounded by {}",
                upper_us(i)
            );
            if i > 0 {
                assert!(us >= upper_us(i - 1), "{us} below bucket {i}");
            }
        }
    }

    #[test]
    fn quantiles_come_within_a_bucket_of_the_truth() {
        let mut h = LagHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1000.0;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1000.0;
        assert!((50.0..=60.0).contains(&p50), "p50 {p50}");
        assert!((99.0..=100.0).contains(&p99), "p99 {p99}");
        // 1..=9 ms lie wholly below 10 ms; the bucket holding 10 ms may not.
        let below = h.cumulative(&[Duration::from_millis(10)])[0];
        assert!((8..=10).contains(&below), "{below}");
        assert_eq!(LagHistogram::default().quantile(0.5), None);
    }
}
