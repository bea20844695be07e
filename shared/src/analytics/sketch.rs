//! A mergeable latency histogram with a stated relative error (DDSketch, Masson, Rim & Lee, VLDB 2019): a duration
//! `x > 0` is counted in bin `i = ceil(log_γ x)`, γ = (1 + α) / (1 − α), and a bin answers `2γⁱ / (γ + 1)`, which
//! is within α of every value the bin holds. Bins add, so hours merge into days and windows exactly: a percentile
//! over any window is within α of the exact one, never an average of percentiles. Only bins that were hit are
//! stored (one table attribute each), so an hour of similar tasks is a few dozen attributes.

use std::collections::BTreeMap;

use crate::store::{Item, Number, Update, Value};

/// The relative error of every quantile answered: 2 %.
pub const ACCURACY: f64 = 0.02;
const GAMMA: f64 = (1.0 + ACCURACY) / (1.0 - ACCURACY);

/// The attribute of the zero bin (durations of 0 ms: tasks that finished within the millisecond).
const ZERO: &str = "kz";
const BIN_PREFIX: &str = "k";

/// Durations in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sketch {
    zero: u64,
    bins: BTreeMap<i32, u64>,
}

fn bin_of(ms: f64) -> i32 {
    // Bins are in ms; sub-millisecond values do not occur (durations are whole milliseconds).
    (ms.ln() / GAMMA.ln()).ceil() as i32
}

fn value_of(bin: i32) -> f64 {
    2.0 * GAMMA.powi(bin) / (GAMMA + 1.0)
}

impl Sketch {
    pub fn add(&mut self, ms: u64) {
        if ms == 0 {
            self.zero += 1;
        } else {
            *self.bins.entry(bin_of(ms as f64)).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &Self) {
        self.zero += other.zero;
        for (bin, n) in &other.bins {
            *self.bins.entry(*bin).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.zero + self.bins.values().sum::<u64>()
    }

    /// The q-quantile (0 < q ≤ 1) by rank `ceil(q·n)`, within [`ACCURACY`] of the exact value; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        if rank <= self.zero {
            return Some(0.0);
        }
        let mut seen = self.zero;
        for (bin, n) in &self.bins {
            seen += n;
            if seen >= rank {
                return Some(value_of(*bin));
            }
        }
        None
    }

    /// Adds this sketch's counts to a table update (`ADD` per bin: atomic across instances).
    pub fn add_to(&self, mut update: Update) -> Update {
        if self.zero > 0 {
            update = update.add(ZERO, i64::try_from(self.zero).unwrap_or(i64::MAX));
        }
        for (bin, n) in &self.bins {
            update = update.add(&format!("{BIN_PREFIX}{bin}"), i64::try_from(*n).unwrap_or(i64::MAX));
        }
        update
    }

    /// The sketch stored in an item by [`Sketch::add_to`].
    pub fn from_item(item: &Item) -> Self {
        let mut sketch = Self::default();
        for (name, value) in &item.0 {
            let Some(n) = value.as_number().and_then(Number::as_i64).and_then(|n| u64::try_from(n).ok()) else {
                continue;
            };
            if name == ZERO {
                sketch.zero = n;
            } else if let Some(bin) = name.strip_prefix(BIN_PREFIX).and_then(|b| b.parse::<i32>().ok()) {
                sketch.bins.insert(bin, n);
            }
        }
        sketch
    }
}

/// A count stored as a number attribute (0 when absent).
pub fn count(item: &Item, name: &str) -> u64 {
    item.get(name).and_then(Value::as_number).and_then(Number::as_i64).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact q-quantile by the same rank rule.
    fn exact(sorted: &[u64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64
    }

    #[test]
    fn quantiles_are_within_the_stated_error_of_the_exact_ones() {
        // A skewed spread from 1 ms to ~2 minutes, deterministic.
        let mut values: Vec<u64> = (0..20_000u64).map(|i| 1 + (i * i * 7919) % 120_000 / (1 + i % 37)).collect();
        let mut sketch = Sketch::default();
        for v in &values {
            sketch.add(*v);
        }
        values.sort_unstable();
        for q in [0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let (got, want) = (sketch.quantile(q).unwrap(), exact(&values, q));
            assert!((got - want).abs() <= ACCURACY * want, "q={q}: {got} vs {want}");
        }
    }

    #[test]
    fn merged_sketches_answer_as_one_over_all_values() {
        let (mut a, mut b, mut all) = (Sketch::default(), Sketch::default(), Sketch::default());
        for v in 0..500u64 {
            a.add(v);
            all.add(v);
        }
        for v in (0..500u64).map(|v| v * 40) {
            b.add(v);
            all.add(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.count(), 1000);
        assert_eq!(Sketch::default().quantile(0.5), None);
        let mut zeros = Sketch::default();
        zeros.add(0);
        assert_eq!(zeros.quantile(0.99), Some(0.0));
    }
}
