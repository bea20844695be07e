//! Anomalies in a series: each point's z-score against the trailing baseline before it (the `window` points just
//! before, of which at least `min_samples` must have a value), with a severity by |z|. A point with too few
//! points before it is never flagged: a new deployment's first hour is not an anomaly.

/// How points are judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyRules {
    /// Points of the trailing baseline.
    pub window: usize,
    /// The fewest baseline points with a value that can judge a point.
    pub min_samples: usize,
    /// |z| at or above which a point is a warning…
    pub warning: f64,
    /// …and a critical anomaly.
    pub critical: f64,
}

impl Default for AnomalyRules {
    fn default() -> Self {
        Self { window: 24, min_samples: 8, warning: 2.0, critical: 3.0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Critical,
}

/// A flagged point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flag {
    /// The point's index in the series.
    pub index: usize,
    pub value: f64,
    pub mean: f64,
    /// The baseline's standard deviation (population).
    pub deviation: f64,
    pub z: f64,
    pub severity: Severity,
}

/// Flags the points of `series` from `first` on (earlier points only serve as baseline). `None` is a point with
/// no value (an hour without timed tasks has no latency): it is neither judged nor part of a baseline. `unit` is
/// the smallest deviation that means anything in this series (one task per bucket, one percentage point, a
/// millisecond): a baseline that never moved is taken to deviate by at least that much, so a jump off a flat line
/// gets a z that says how many units it jumped, not a division by zero.
pub fn detect(series: &[Option<f64>], first: usize, unit: f64, rules: &AnomalyRules) -> Vec<Flag> {
    let mut flags = Vec::new();
    for index in first..series.len() {
        let Some(value) = series[index] else { continue };
        let baseline: Vec<f64> = series[index.saturating_sub(rules.window)..index].iter().flatten().copied().collect();
        if baseline.len() < rules.min_samples.max(2) {
            continue;
        }
        let n = baseline.len() as f64;
        let mean = baseline.iter().sum::<f64>() / n;
        let deviation = (baseline.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        // A perfectly flat baseline has no deviation: a floor of 5 % of its level (or one unit) keeps a jump from
        // it finite and flagged, and flat points at z = 0.
        let scale = deviation.max(0.05 * mean.abs()).max(unit).max(f64::MIN_POSITIVE);
        let z = (value - mean) / scale;
        let severity = if z.abs() >= rules.critical {
            Severity::Critical
        } else if z.abs() >= rules.warning {
            Severity::Warning
        } else {
            continue;
        };
        flags.push(Flag { index, value, mean, deviation, z, severity });
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_is_flagged_and_a_flat_or_noisy_series_is_not() {
        let rules = AnomalyRules::default();
        // Hourly throughput with a gentle ±10 % wobble, then one hour at 5× the level.
        let mut series: Vec<Option<f64>> = (0..48).map(|i| Some(100.0 + f64::from(i % 5 - 2) * 5.0)).collect();
        assert!(detect(&series, 0, 0.01, &rules).is_empty(), "noise within the baseline's own spread");
        series[40] = Some(500.0);
        let flags = detect(&series, 0, 0.01, &rules);
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert_eq!((flags[0].index, flags[0].severity), (40, Severity::Critical));
        assert!((flags[0].mean - 100.0).abs() < 5.0 && flags[0].z > 3.0);
        let flat = vec![Some(7.0); 48];
        assert!(detect(&flat, 0, 0.01, &rules).is_empty());
        let mut stepped = flat.clone();
        stepped[30] = Some(9.0);
        assert_eq!(detect(&stepped, 0, 0.01, &rules)[0].severity, Severity::Critical, "a jump off a flat line");
        stepped[30] = Some(7.5);
        assert!(detect(&stepped, 0, 0.01, &rules).is_empty(), "within 5 % of a flat line's level is not an anomaly");
    }

    #[test]
    fn too_few_points_judge_nothing_and_gaps_are_skipped() {
        let rules = AnomalyRules::default();
        let mut series = vec![Some(1.0); 5];
        series.push(Some(1000.0));
        assert!(detect(&series, 0, 0.01, &rules).is_empty(), "five points are too few");
        let mut gappy: Vec<Option<f64>> = (0..30).map(|i| (i % 2 == 0).then_some(10.0 + f64::from(i % 4))).collect();
        gappy.push(Some(40.0));
        let flags = detect(&gappy, 0, 0.01, &rules);
        assert_eq!(flags.iter().map(|f| f.index).collect::<Vec<_>>(), [30]);
        assert_eq!(detect(&gappy, 31, 0.01, &rules), [], "only points from `first` are judged");
    }

    #[test]
    fn a_first_burst_after_silence_is_measured_in_units() {
        let rules = AnomalyRules::default();
        let mut series = vec![Some(0.0); 24];
        series.push(Some(202.0));
        let flags = detect(&series, 0, 1.0, &rules);
        assert_eq!((flags.len(), flags[0].severity), (1, Severity::Critical));
        assert!((flags[0].z - 202.0).abs() < 1e-9, "202 units above a silent baseline: {}", flags[0].z);
    }

    #[test]
    fn warning_between_the_thresholds() {
        let rules = AnomalyRules::default();
        let mut series: Vec<Option<f64>> = (0..24).map(|i| Some(if i % 2 == 0 { 90.0 } else { 110.0 })).collect();
        series.push(Some(125.0)); // mean 100, deviation 10: z = 2.5
        let flags = detect(&series, 0, 0.01, &rules);
        assert_eq!(flags.len(), 1);
        assert_eq!(flags[0].severity, Severity::Warning);
        assert!((flags[0].z - 2.5).abs() < 1e-9);
    }
}
