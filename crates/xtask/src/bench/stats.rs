//! Median, minimum and maximum of repeated measurements.

use serde::{Deserialize, Serialize};

/// Median of `values`; the mean of the two middle ones for an even count.
/// `None` when empty. NaN never occurs here (durations), and sorts last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Successful measurements summarised.
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        let median = median(values)?;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Summary {
            n: values.len(),
            median,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[4.0]), Some(4.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0, 5.0, 1.0]), Some(5.0));
    }

    #[test]
    fn median_ignores_input_order_and_resists_an_outlier() {
        assert_eq!(median(&[0.1, 100.0, 0.2]), Some(0.2));
        assert_eq!(median(&[100.0, 0.2, 0.1]), Some(0.2));
    }

    #[test]
    fn summary_has_min_and_max() {
        assert_eq!(
            Summary::of(&[2.0, 9.0, 1.5]),
            Some(Summary {
                n: 3,
                median: 2.0,
                min: 1.5,
                max: 9.0
            })
        );
        assert_eq!(Summary::of(&[]), None);
    }
}
