//! Dataset summary statistics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::options::ScoreRange;

/// Number of histogram bins.
pub const BINS: usize = 10;

/// `|score|` below this counts as neutral in [`ScoreStats::share_neutral`].
pub const NEUTRAL_BELOW: f32 = 0.2;

/// `|score|` at or above this counts as extreme in [`ScoreStats::share_extreme`].
pub const EXTREME_FROM: f32 = 0.6;

/// Summary of a dataset: sizes, score distribution, text lengths. [`fmt::Display`] prints it
/// for people (the `fintune data check` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of rows.
    pub rows: usize,
    /// Number of rows with a score.
    pub labelled_rows: usize,
    /// Score statistics over the rows with a score; `None` if there are none.
    pub scores: Option<ScoreStats>,
    /// Text lengths in characters (Unicode scalar values).
    pub text_chars: LengthStats,
    /// Rows skipped while reading.
    pub skipped_rows: usize,
    /// Number of warnings (same text and target with different scores, suspicious CSV fields).
    pub warnings: usize,
}

/// Score statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreStats {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation (divides by n).
    pub std: f64,
    /// Smallest score.
    pub min: f32,
    /// Largest score.
    pub max: f32,
    /// The declared range the histogram covers.
    pub range: ScoreRange,
    /// Counts in [`BINS`] equal bins over `range`: `[lo, e1), [e1, e2), ..., [e9, hi]` (the
    /// last bin includes the upper end). Bin edges are compared in `f32`, so a score written
    /// as `-0.8` falls in `[-0.8, -0.6)`.
    pub histogram: Vec<u64>,
    /// Number of scores with `|score| <` [`NEUTRAL_BELOW`].
    pub neutral: u64,
    /// `neutral` as a share of the scored rows.
    pub share_neutral: f64,
    /// Number of scores with `|score| >=` [`EXTREME_FROM`].
    pub extreme: u64,
    /// `extreme` as a share of the scored rows.
    pub share_extreme: f64,
}

/// Length statistics (characters).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LengthStats {
    /// Shortest.
    pub min: usize,
    /// Mean.
    pub mean: f64,
    /// Median (the mean of the two middle values for an even count).
    pub median: f64,
    /// 95th percentile (nearest rank).
    pub p95: usize,
    /// Longest.
    pub max: usize,
}

/// The bin edges of [`ScoreStats::histogram`]: `BINS + 1` values from `range.min` to
/// `range.max`, computed in `f64` and rounded to `f32`.
pub fn bin_edges(range: ScoreRange) -> [f32; BINS + 1] {
    let (lo, hi) = (f64::from(range.min), f64::from(range.max));
    std::array::from_fn(|k| (lo + (hi - lo) * k as f64 / BINS as f64) as f32)
}

/// The histogram bin of `score` (see [`ScoreStats::histogram`]); scores outside the range go
/// to the first or last bin.
pub fn bin_of(score: f32, edges: &[f32; BINS + 1]) -> usize {
    edges[1..BINS].iter().take_while(|&&edge| edge <= score).count()
}

impl ScoreStats {
    /// Statistics of `scores` (empty: `None`).
    pub fn compute(scores: &[f32], range: ScoreRange) -> Option<ScoreStats> {
        if scores.is_empty() {
            return None;
        }
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
        let var = scores.iter().map(|&s| (f64::from(s) - mean).powi(2)).sum::<f64>() / n;
        let edges = bin_edges(range);
        let mut histogram = vec![0u64; BINS];
        let (mut neutral, mut extreme) = (0u64, 0u64);
        let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
        for &s in scores {
            histogram[bin_of(s, &edges)] += 1;
            neutral += u64::from(s.abs() < NEUTRAL_BELOW);
            extreme += u64::from(s.abs() >= EXTREME_FROM);
            min = min.min(s);
            max = max.max(s);
        }
        Some(ScoreStats {
            mean,
            std: var.sqrt(),
            min,
            max,
            range,
            histogram,
            neutral,
            share_neutral: neutral as f64 / n,
            extreme,
            share_extreme: extreme as f64 / n,
        })
    }
}

impl LengthStats {
    /// Statistics of `lengths` (empty: all zero).
    pub fn compute(mut lengths: Vec<usize>) -> LengthStats {
        if lengths.is_empty() {
            return LengthStats::default();
        }
        lengths.sort_unstable();
        let n = lengths.len();
        let median = if n % 2 == 1 {
            lengths[n / 2] as f64
        } else {
            (lengths[n / 2 - 1] + lengths[n / 2]) as f64 / 2.0
        };
        let rank = (0.95 * n as f64).ceil() as usize;
        LengthStats {
            min: lengths[0],
            mean: lengths.iter().sum::<usize>() as f64 / n as f64,
            median,
            p95: lengths[rank.clamp(1, n) - 1],
            max: lengths[n - 1],
        }
    }
}

impl Summary {
    /// The summary of parallel `texts` and `scores` (`None` for a row without a score).
    pub fn compute<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        scores: impl IntoIterator<Item = Option<f32>>,
        range: ScoreRange,
    ) -> Summary {
        let lengths: Vec<usize> = texts.into_iter().map(|t| t.chars().count()).collect();
        let present: Vec<f32> = scores.into_iter().flatten().collect();
        Summary {
            rows: lengths.len(),
            labelled_rows: present.len(),
            scores: ScoreStats::compute(&present, range),
            text_chars: LengthStats::compute(lengths),
            skipped_rows: 0,
            warnings: 0,
        }
    }
}

fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rows: {}", self.rows)?;
        if self.labelled_rows != self.rows {
            write!(f, " ({} with a score)", self.labelled_rows)?;
        }
        if self.skipped_rows > 0 {
            write!(f, "; {} invalid rows skipped", self.skipped_rows)?;
        }
        if let Some(s) = &self.scores {
            write!(
                f,
                "\nscore: mean {:.4}, std {:.4}, min {}, max {}",
                s.mean, s.std, s.min, s.max
            )?;
            write!(f, "\nhistogram over {} (last bin closed):", s.range)?;
            let edges = bin_edges(s.range);
            let width = s.histogram.iter().max().map_or(1, |m| m.to_string().len());
            for (k, count) in s.histogram.iter().enumerate() {
                let close = if k + 1 == BINS { ']' } else { ')' };
                let lo = format!("{:.2}", edges[k]);
                let hi = format!("{:.2}", edges[k + 1]);
                write!(f, "\n  [{lo:>5}, {hi:>5}{close} {count:>width$}")?;
            }
            write!(
                f,
                "\n|score| < {NEUTRAL_BELOW}: {} ({}); |score| >= {EXTREME_FROM}: {} ({})",
                s.neutral,
                pct(s.share_neutral),
                s.extreme,
                pct(s.share_extreme)
            )?;
        } else {
            write!(f, "\nscore: none")?;
        }
        let t = &self.text_chars;
        write!(
            f,
            "\ntext length (characters): min {}, median {}, mean {:.1}, p95 {}, max {}",
            t.min, t.median, t.mean, t.p95, t.max
        )?;
        if self.warnings > 0 {
            write!(f, "\nwarnings: {} (suspicious rows, kept as they are)", self.warnings)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
