//! Proportional normalisation under per-weight bounds.

#[cfg(test)]
mod tests;

/// Writes `w_i = clamp(lambda * u_i, lo, hi)` into `out`, with the one `lambda > 0` that makes
/// `sum_i w_i = total`.
///
/// This is the fixed point of "normalise to `total`, clamp to `[lo, hi]`, renormalise the
/// unclamped weights" repeated until no bound is violated: weights keep their proportions except
/// where a bound binds. `u` must be finite and non-negative; if it sums to zero it is treated as
/// uniform. Callers guarantee `len * lo <= total <= len * hi` (`hi` may be infinite).
///
/// Exact: the piecewise-linear `f(lambda) = sum clamp(lambda u_i, lo, hi)` is evaluated at its
/// `2 len` breakpoints (O(len^2), no allocation; `len` is the number of tasks), and solved
/// linearly on the segment that contains `total`.
pub(crate) fn scale_clamped(u: &[f64], total: f64, lo: f64, hi: f64, out: &mut [f64]) {
    debug_assert_eq!(u.len(), out.len());
    let n = u.len();
    if n == 0 {
        return;
    }
    // Work on v = u / max(u), in [0, 1] with maximum exactly 1, so the sum lies in [1, n] and
    // no scale factor can overflow whatever the magnitude of u. `out` holds v until the end.
    let umax = u.iter().copied().fold(0.0, f64::max);
    if !(umax > 0.0 && umax.is_finite()) {
        out.fill((total / n as f64).clamp(lo, hi));
        return;
    }
    for (o, &x) in out.iter_mut().zip(u) {
        *o = x / umax;
    }
    let v: &[f64] = out;
    let sum: f64 = v.iter().sum();
    // Fast path: nothing binds.
    let lambda0 = total / sum;
    let lam = if v.iter().all(|&x| {
        let w = lambda0 * x;
        w >= lo && w <= hi
    }) {
        lambda0
    } else {
        solve(v, total, lo, hi)
    };
    for o in out.iter_mut() {
        *o = (lam * *o).clamp(lo, hi);
    }
}

/// The `lambda` with `sum_i clamp(lambda v_i, lo, hi) = total`.
fn solve(v: &[f64], total: f64, lo: f64, hi: f64) -> f64 {
    let f = |lam: f64| v.iter().map(|&x| (lam * x).clamp(lo, hi)).sum::<f64>();
    let mut below = 0.0f64; // largest breakpoint with f < total (f(0) = n lo <= total)
    let mut above = f64::INFINITY; // smallest breakpoint with f > total
    for &x in v {
        if x <= 0.0 {
            continue;
        }
        for b in [lo / x, hi / x] {
            if !b.is_finite() {
                continue;
            }
            let fb = f(b);
            if fb == total {
                return b;
            }
            if fb < total {
                below = below.max(b);
            } else {
                above = above.min(b);
            }
        }
    }
    // No breakpoint lies strictly inside (below, above): there f is linear. Classify each weight
    // at an interior point and solve for lambda.
    let mid = if above.is_finite() { 0.5 * (below + above) } else { 2.0 * below + 1.0 };
    let (mut fixed, mut free) = (0.0, 0.0);
    for &x in v {
        let w = mid * x;
        if w <= lo {
            fixed += lo;
        } else if w >= hi {
            fixed += hi;
        } else {
            free += x;
        }
    }
    if free > 0.0 {
        (total - fixed) / free
    } else {
        mid
    }
}
