//! The exact dynamic programme over candidate thresholds.
//!
//! Classes are runs of consecutive *blocks* (a block is a run of distinct values between two
//! consecutive candidate thresholds). With prefix sums over blocks, the cost of one class is
//! `O(1)`, and because the objective is additive over classes the optimum over all cut sets is
//! found exactly by a suffix DP:
//!
//! `E[k][i] = min_j  c(i, j) + E[k-1][j]`, `E[1][i] = c(i, B)`,
//!
//! where `E[k][i]` is the best cost of cutting blocks `i..B` into `k` classes. Scanning `i`
//! downwards, the row `c(i, ·)` is computed once and shared by all layers `k`, so the whole
//! table for every `k <= kmax` costs `O(B^2)` class costs and `O(kmax B^2)` additions, with
//! `O(kmax B)` memory.
//!
//! Ties: values within [`TIE_TOL`] of the row minimum are ties; among them the larger entropy
//! `H = -sum p ln p` (also additive) wins, then the smaller `j`. Because the
//! reconstruction walks forward from block 0 and always took the smallest `j`, the result is the
//! lexicographically smallest threshold vector among the tied optima.

use crate::group::Grouped;

/// Objective values closer than this are treated as equal (the objective is `O(1)`: at most
/// `ln K + 1`; rounding errors are around `1e-15`).
pub(crate) const TIE_TOL: f64 = 1e-12;

/// Slack on the inner-class width constraint, so that decimal scores whose threshold distance is
/// exactly `min_width` in decimal arithmetic pass despite binary rounding.
pub(crate) const WIDTH_TOL: f64 = 1e-9;

/// Prefix sums over the distinct values, centred on the mean for numerical accuracy.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    /// `pn[g]`: number of scores in groups `0..g`.
    pub pn: Vec<u64>,
    /// `ps[g]`: sum of `(v - mean)` over those scores.
    pub ps: Vec<f64>,
    /// `pq[g]`: sum of `(v - mean)^2` over those scores.
    pub pq: Vec<f64>,
    /// Mean of all scores.
    pub mean: f64,
    /// Total sum of squares.
    pub sst: f64,
    /// Number of scores.
    pub n: u64,
}

impl Prefix {
    pub(crate) fn new(g: &Grouped) -> Prefix {
        let n = g.n as f64;
        let mean = g
            .values
            .iter()
            .zip(&g.counts)
            .map(|(&v, &c)| f64::from(v) * c as f64)
            .sum::<f64>()
            / n;
        let d = g.values.len();
        let mut pn = Vec::with_capacity(d + 1);
        let mut ps = Vec::with_capacity(d + 1);
        let mut pq = Vec::with_capacity(d + 1);
        let (mut cn, mut cs, mut cq) = (0u64, 0.0f64, 0.0f64);
        pn.push(0);
        ps.push(0.0);
        pq.push(0.0);
        for (&v, &c) in g.values.iter().zip(&g.counts) {
            let dv = f64::from(v) - mean;
            let cf = c as f64;
            cn += c;
            cs += cf * dv;
            cq += cf * dv * dv;
            pn.push(cn);
            ps.push(cs);
            pq.push(cq);
        }
        // Remove the tiny drift of the centred sum from the total sum of squares.
        let sst = (cq - cs * cs / n).max(0.0);
        Prefix { pn, ps, pq, mean, sst, n: g.n }
    }

    /// Number of scores in groups `a..b`.
    #[inline]
    pub(crate) fn count(&self, a: usize, b: usize) -> u64 {
        self.pn[b] - self.pn[a]
    }

    /// Within sum of squares of groups `a..b` (0 for an empty range).
    #[inline]
    pub(crate) fn sse(&self, a: usize, b: usize) -> f64 {
        let m = self.count(a, b);
        if m == 0 {
            return 0.0;
        }
        let s = self.ps[b] - self.ps[a];
        (self.pq[b] - self.pq[a] - s * s / m as f64).max(0.0)
    }

    /// Mean of the scores in groups `a..b` (`None` when empty).
    pub(crate) fn mean_of(&self, a: usize, b: usize) -> Option<f64> {
        let m = self.count(a, b);
        (m > 0).then(|| self.mean + (self.ps[b] - self.ps[a]) / m as f64)
    }
}

/// One DP instance.
#[derive(Debug)]
pub(crate) struct Problem<'a> {
    pub prefix: &'a Prefix,
    /// Group indices of the block boundaries: `0 = b_0 < b_1 < … < b_B = D`.
    pub bounds: &'a [usize],
    /// Threshold at each boundary (`len == bounds.len()`; the two ends are ignored).
    pub thresholds: &'a [f64],
    /// Index into `bounds` that must be a cut (zero cut), if any.
    pub forced: Option<usize>,
    /// Balance weight `a`.
    pub balance_weight: f64,
    pub min_count: u64,
    pub min_width: f64,
    /// Largest number of classes solved for.
    pub kmax: usize,
}

/// Optimal cuts for every `k` in `0..=kmax` (`None` when infeasible; entries 0 and 1 are
/// `None` and `Some(vec![])` respectively when the single class is feasible). Cuts are indices
/// into `Problem::bounds`, strictly increasing, excluding the two ends.
pub(crate) fn solve(p: &Problem<'_>) -> Vec<Option<Vec<usize>>> {
    let nb = p.bounds.len() - 1;
    debug_assert!(nb >= 1);
    let kmax = p.kmax.max(1);
    let n = p.prefix.n as f64;
    let ln_n = n.ln();
    let inv_sst = if p.prefix.sst > 0.0 { 1.0 / p.prefix.sst } else { 0.0 };
    let a = p.balance_weight;
    let b = 1.0 - a;

    let cn: Vec<u64> = p.bounds.iter().map(|&g| p.prefix.pn[g]).collect();
    let cs: Vec<f64> = p.bounds.iter().map(|&g| p.prefix.ps[g]).collect();
    let cq: Vec<f64> = p.bounds.iter().map(|&g| p.prefix.pq[g]).collect();
    let t = p.thresholds;

    let cost = |i: usize, j: usize| -> f64 {
        let mf = (cn[j] - cn[i]) as f64;
        let plogp = mf / n * (mf.ln() - ln_n);
        let s = cs[j] - cs[i];
        let sse = (cq[j] - cq[i] - s * s / mf).max(0.0);
        a * plogp + b * sse * inv_sst
    };
    let entropy = |i: usize, j: usize| -> f64 {
        let mf = (cn[j] - cn[i]) as f64;
        -(mf / n) * (mf.ln() - ln_n)
    };

    let inf = f64::INFINITY;
    let mut e = vec![vec![inf; nb + 1]; kmax + 1];
    let mut h = vec![vec![0.0f64; nb + 1]; kmax + 1];
    let mut arg = vec![vec![u32::MAX; nb + 1]; kmax + 1];

    // One class: blocks i..nb (the last class; no width constraint).
    for i in 0..nb {
        let straddles = p.forced.is_some_and(|z| i < z);
        if cn[nb] - cn[i] >= p.min_count && !straddles {
            e[1][i] = cost(i, nb);
            h[1][i] = entropy(i, nb);
            arg[1][i] = nb as u32;
        }
    }

    let mut row = vec![0.0f64; nb + 1];
    for i in (0..nb).rev() {
        // First j meeting min_count.
        let need = cn[i] + p.min_count;
        let jc = cn.partition_point(|&c| c < need);
        // First j meeting the width (inner classes only; the first class starts at i = 0).
        let jw = if i == 0 {
            1
        } else {
            let lim = t[i] + p.min_width - WIDTH_TOL;
            1 + t[1..nb].partition_point(|&x| x < lim)
        };
        let lo = jc.max(jw).max(i + 1);
        let mut hi = nb - 1;
        if let Some(z) = p.forced {
            if i < z {
                hi = hi.min(z);
            }
        }
        if lo > hi {
            continue;
        }
        for j in lo..=hi {
            row[j] = cost(i, j);
        }
        for k in 2..=kmax {
            if k == kmax && i != 0 {
                continue; // the top layer is only read at block 0
            }
            let (done, rest) = e.split_at_mut(k);
            let prev = &done[k - 1];
            let mut best = inf;
            for j in lo..=hi {
                let v = row[j] + prev[j];
                if v < best {
                    best = v;
                }
            }
            if !best.is_finite() {
                continue;
            }
            let lim = best + TIE_TOL;
            let mut bj = usize::MAX;
            let mut bh = f64::NEG_INFINITY;
            let mut bv = inf;
            for j in lo..=hi {
                let v = row[j] + prev[j];
                if v <= lim {
                    let hj = entropy(i, j) + h[k - 1][j];
                    if bj == usize::MAX || hj > bh + TIE_TOL {
                        bj = j;
                        bh = hj;
                        bv = v;
                    }
                }
            }
            rest[0][i] = bv;
            h[k][i] = bh;
            arg[k][i] = bj as u32;
        }
    }

    let mut out = vec![None; kmax + 1];
    for (k, slot) in out.iter_mut().enumerate().skip(1) {
        if !e[k][0].is_finite() {
            continue;
        }
        let mut cuts = Vec::with_capacity(k - 1);
        let mut i = 0usize;
        for kk in (2..=k).rev() {
            let j = arg[kk][i] as usize;
            cuts.push(j);
            i = j;
        }
        *slot = Some(cuts);
    }
    out
}

#[cfg(test)]
mod tests;
