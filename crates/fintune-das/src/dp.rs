//! The exact dynamic programme over candidate thresholds.
//!
//! Classes are runs of consecutive *blocks* (a block is a run of distinct values between two
//! consecutive candidate thresholds). With prefix sums over blocks, the cost of one class is
//! `O(1)`, and because the objective is additive over classes the optimum over all cut sets is
//! found exactly by a suffix DP:
//!
//! `E[k][i] = min_j  c(i, j) + E[k-1][j]`, `E[1][i] = c(i, B)`,
//!
//! where `E[k][i]` is the best cost of cutting blocks `i..B` into `k` classes. Each layer is
//! solved by divide and conquer over `i` (the optimal next cut is monotone in `i` because the
//! class cost satisfies the quadrangle inequality; see [`solve`]): `O(kmax B log B)` class costs
//! and `O(kmax B)` memory, against `O(kmax B^2)` for the plain scan that the tests keep as a
//! reference.
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
        let mean =
            g.values.iter().zip(&g.counts).map(|(&v, &c)| f64::from(v) * c as f64).sum::<f64>() / n;
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

/// Block-level prefix sums and the per-class cost.
struct Tables<'a> {
    p: &'a Problem<'a>,
    nb: usize,
    cn: Vec<u64>,
    cs: Vec<f64>,
    cq: Vec<f64>,
    n: f64,
    ln_n: f64,
    inv_sst: f64,
}

impl<'a> Tables<'a> {
    fn new(p: &'a Problem<'a>) -> Self {
        let n = p.prefix.n as f64;
        Tables {
            p,
            nb: p.bounds.len() - 1,
            cn: p.bounds.iter().map(|&g| p.prefix.pn[g]).collect(),
            cs: p.bounds.iter().map(|&g| p.prefix.ps[g]).collect(),
            cq: p.bounds.iter().map(|&g| p.prefix.pq[g]).collect(),
            n,
            ln_n: n.ln(),
            inv_sst: if p.prefix.sst > 0.0 { 1.0 / p.prefix.sst } else { 0.0 },
        }
    }

    /// `a p ln p + (1 - a) SSE / SST` of the class of blocks `i..j` (non-empty), without the
    /// constant `a p ln K` whose sum over classes is `a ln K`.
    #[inline]
    fn cost(&self, i: usize, j: usize) -> f64 {
        let mf = (self.cn[j] - self.cn[i]) as f64;
        let plogp = mf / self.n * (mf.ln() - self.ln_n);
        let s = self.cs[j] - self.cs[i];
        let sse = (self.cq[j] - self.cq[i] - s * s / mf).max(0.0);
        self.p.balance_weight * plogp + (1.0 - self.p.balance_weight) * sse * self.inv_sst
    }

    /// `-p ln p` of the class of blocks `i..j`.
    #[inline]
    fn entropy(&self, i: usize, j: usize) -> f64 {
        let mf = (self.cn[j] - self.cn[i]) as f64;
        -(mf / self.n) * (mf.ln() - self.ln_n)
    }

    /// The ends `j` allowed for a class starting at block `i` that is followed by at least one
    /// more class (so `j < nb`), as an inclusive range; `None` when empty.
    fn range(&self, i: usize) -> Option<(usize, usize)> {
        let (p, nb, t) = (self.p, self.nb, self.p.thresholds);
        let need = self.cn[i] + p.min_count;
        let jc = self.cn.partition_point(|&c| c < need);
        // The first class (i = 0) is exempt from the width constraint.
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
        (lo <= hi).then_some((lo, hi))
    }

    /// Best `j` in `lo..=hi` for a class starting at `i` followed by the layer `prev`:
    /// values within [`TIE_TOL`] of the minimum tie; then the larger entropy, then the smaller
    /// `j`. Returns `(j, value, entropy)`, or `None` when every candidate is infeasible.
    fn pick(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        prev: &[f64],
        prev_h: &[f64],
        scratch: &mut [f64],
    ) -> Option<(usize, f64, f64)> {
        let mut best = f64::INFINITY;
        for j in lo..=hi {
            let v = if prev[j].is_finite() { self.cost(i, j) + prev[j] } else { f64::INFINITY };
            scratch[j] = v;
            if v < best {
                best = v;
            }
        }
        if !best.is_finite() {
            return None;
        }
        let lim = best + TIE_TOL;
        let mut out: Option<(usize, f64, f64)> = None;
        for (j, &v) in scratch.iter().enumerate().take(hi + 1).skip(lo) {
            if v <= lim {
                let hj = self.entropy(i, j) + prev_h[j];
                if out.is_none_or(|(_, _, bh)| hj > bh + TIE_TOL) {
                    out = Some((j, v, hj));
                }
            }
        }
        out
    }
}

/// DP tables: value, entropy and chosen next cut per layer and start block.
struct Layers {
    e: Vec<Vec<f64>>,
    h: Vec<Vec<f64>>,
    arg: Vec<Vec<u32>>,
}

impl Layers {
    /// Layer 1 (one class, the last: no width constraint) filled, the others infeasible.
    fn new(tb: &Tables<'_>, kmax: usize) -> Layers {
        let nb = tb.nb;
        let mut l = Layers {
            e: vec![vec![f64::INFINITY; nb + 1]; kmax + 1],
            h: vec![vec![0.0; nb + 1]; kmax + 1],
            arg: vec![vec![u32::MAX; nb + 1]; kmax + 1],
        };
        for i in 0..nb {
            let straddles = tb.p.forced.is_some_and(|z| i < z);
            if tb.cn[nb] - tb.cn[i] >= tb.p.min_count && !straddles {
                l.e[1][i] = tb.cost(i, nb);
                l.h[1][i] = tb.entropy(i, nb);
                l.arg[1][i] = nb as u32;
            }
        }
        l
    }

    fn set(&mut self, k: usize, i: usize, (j, v, h): (usize, f64, f64)) {
        self.e[k][i] = v;
        self.h[k][i] = h;
        self.arg[k][i] = j as u32;
    }

    /// Walks the chosen cuts forward from block 0 for every feasible k.
    fn reconstruct(&self, kmax: usize) -> Vec<Option<Vec<usize>>> {
        let mut out = vec![None; kmax + 1];
        for (k, slot) in out.iter_mut().enumerate().skip(1) {
            if !self.e[k][0].is_finite() {
                continue;
            }
            let mut cuts = Vec::with_capacity(k - 1);
            let mut i = 0usize;
            for kk in (2..=k).rev() {
                let j = self.arg[kk][i] as usize;
                cuts.push(j);
                i = j;
            }
            *slot = Some(cuts);
        }
        out
    }
}

/// Optimal cuts for every `k` in `0..=kmax` (`None` when infeasible; entry 1 is `Some(vec![])`
/// when the single class is feasible). Cuts are indices into `Problem::bounds`, strictly
/// increasing, excluding the two ends.
///
/// Each layer is computed by divide and conquer over the start block `i`: the class cost (a
/// weighted sum of `p ln p`, convex in the class count, and the within-class SSE of sorted
/// data) satisfies the quadrangle inequality, and the constraints (minimum count and width,
/// forced cut) only forbid classes whose sub-intervals are forbidden too, so the chosen next cut
/// `opt(i)` (smallest among ties in `(J, -H)`) is non-decreasing in `i`. Solving the middle row
/// first halves the `j` range of the two halves: `O(B log B)` class costs per layer instead of
/// `O(B^2)`. A test checks it against the plain quadratic DP (`solve_quadratic`) and against
/// brute force.
pub(crate) fn solve(p: &Problem<'_>) -> Vec<Option<Vec<usize>>> {
    let tb = Tables::new(p);
    let nb = tb.nb;
    let kmax = p.kmax.max(1);
    let mut layers = Layers::new(&tb, kmax);
    let mut scratch = vec![0.0f64; nb + 1];
    for k in 2..=kmax {
        let prev = &layers.e[k - 1];
        let prev_h = &layers.h[k - 1];
        let mut found: Vec<(usize, (usize, f64, f64))> = Vec::new();
        if k == kmax {
            // The top layer is only read at block 0.
            if let Some((lo, hi)) = tb.range(0) {
                if let Some(b) = tb.pick(0, lo, hi, prev, prev_h, &mut scratch) {
                    found.push((0, b));
                }
            }
        } else {
            // Explicit stack of (i_lo, i_hi, j_lo, j_hi) ranges.
            let mut stack = vec![(0usize, nb - 1, 1usize, nb - 1)];
            while let Some((ilo, ihi, jlo, jhi)) = stack.pop() {
                if ilo > ihi {
                    continue;
                }
                let mid = ilo + (ihi - ilo) / 2;
                let choice = tb.range(mid).and_then(|(lo, hi)| {
                    let (lo, hi) = (lo.max(jlo), hi.min(jhi));
                    (lo <= hi).then(|| tb.pick(mid, lo, hi, prev, prev_h, &mut scratch)).flatten()
                });
                let (left_hi, right_lo) = match choice {
                    Some(b) => {
                        found.push((mid, b));
                        (b.0, b.0)
                    }
                    None => (jhi, jlo),
                };
                if mid > ilo {
                    stack.push((ilo, mid - 1, jlo, left_hi));
                }
                stack.push((mid + 1, ihi, right_lo, jhi));
            }
        }
        for (i, b) in found {
            layers.set(k, i, b);
        }
    }
    layers.reconstruct(kmax)
}

/// The plain `O(kmax B^2)` DP, scanning every `j` for every `i`: the reference for [`solve`].
#[cfg(test)]
pub(crate) fn solve_quadratic(p: &Problem<'_>) -> Vec<Option<Vec<usize>>> {
    let tb = Tables::new(p);
    let nb = tb.nb;
    let kmax = p.kmax.max(1);
    let mut layers = Layers::new(&tb, kmax);
    let mut scratch = vec![0.0f64; nb + 1];
    for k in 2..=kmax {
        for i in 0..nb {
            if let Some((lo, hi)) = tb.range(i) {
                let b = tb.pick(i, lo, hi, &layers.e[k - 1], &layers.h[k - 1], &mut scratch);
                if let Some(b) = b {
                    layers.set(k, i, b);
                }
            }
        }
    }
    layers.reconstruct(kmax)
}

#[cfg(test)]
mod tests;
