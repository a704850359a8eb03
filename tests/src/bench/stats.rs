//! Summaries of measured samples: medians and percentiles, as plain
//! functions over values.

use std::time::Duration;

/// The median of `samples` (the mean of the middle two for an even count),
/// or `None` when there are none.
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2),
    }
}

/// The `percent` percentile of `samples` by the nearest-rank method (the
/// smallest sample at least `percent`% of the samples are not above), or
/// `None` when there are none.
pub fn percentile(samples: &[Duration], percent: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Milliseconds, rounded to microseconds, for reports.
pub fn millis(duration: Duration) -> f64 {
    round(duration.as_secs_f64() * 1000.0, 3)
}

/// Seconds, rounded to milliseconds, for reports.
pub fn seconds(duration: Duration) -> f64 {
    round(duration.as_secs_f64(), 3)
}

/// `value` rounded to `digits` decimal places.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().copied().map(Duration::from_millis).collect()
    }

    #[test]
    fn medians() {
        let cases: [(&str, &[u64], Option<u64>); 4] = [
            ("none", &[], None),
            ("one", &[7], Some(7)),
            ("odd count, unsorted", &[9, 1, 5], Some(5)),
            (
                "even count: mean of the middle two",
                &[4, 1, 10, 2],
                Some(3),
            ),
        ];
        for (case, samples, expected) in cases {
            assert_eq!(
                median(&ms(samples)),
                expected.map(Duration::from_millis),
                "{case}"
            );
        }
    }

    #[test]
    fn percentiles() {
        let hundred: Vec<u64> = (1..=100).rev().collect();
        let cases: [(&str, &[u64], f64, Option<u64>); 6] = [
            ("none", &[], 50.0, None),
            ("p50 of 1..=100", &hundred, 50.0, Some(50)),
            ("p99 of 1..=100", &hundred, 99.0, Some(99)),
            ("p100 is the maximum", &hundred, 100.0, Some(100)),
            ("p0 is the minimum", &hundred, 0.0, Some(1)),
            (
                "p99 of few samples is the maximum",
                &[3, 1, 2],
                99.0,
                Some(3),
            ),
        ];
        for (case, samples, percent, expected) in cases {
            assert_eq!(
                percentile(&ms(samples), percent),
                expected.map(Duration::from_millis),
                "{case}"
            );
        }
    }

    #[test]
    fn rounding() {
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
        assert_eq!(seconds(Duration::from_micros(1_234_567)), 1.235);
        assert_eq!(round(0.8349, 2), 0.83);
    }
}
