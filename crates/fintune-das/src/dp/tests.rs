//! Exactness of the DP against brute force over all cut sets (n <= 40, K <= 4).

use crate::strat::midpoint;
use crate::{Classes, DasConfig, Error, Stratification};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone)]
struct Setup {
    a: f64,
    min_count: usize,
    min_width: f64,
    zero_cut: bool,
}

impl Setup {
    fn config(&self, classes: Classes) -> DasConfig {
        DasConfig::default()
            .classes(classes)
            .balance_weight(self.a)
            .min_count(Some(self.min_count))
            .min_width(self.min_width)
            .zero_cut(self.zero_cut)
    }
}

/// A feasible partition as the brute force sees it.
#[derive(Debug, Clone)]
struct Cand {
    gaps: Vec<usize>,
    thresholds: Vec<f64>,
    j: f64,
    h: f64,
    ev: f64,
}

/// Every feasible cut set into `k` classes, computed directly from the raw scores (no prefix
/// sums, no DP).
fn enumerate(scores: &[f32], k: usize, s: &Setup) -> Vec<Cand> {
    let mut sorted: Vec<f64> = scores.iter().map(|&x| f64::from(x + 0.0)).collect();
    sorted.sort_by(f64::total_cmp);
    let mut vals: Vec<f32> = scores.iter().map(|&x| x + 0.0).collect();
    vals.sort_by(f32::total_cmp);
    vals.dedup();
    let d = vals.len();
    let n = sorted.len() as f64;
    let mean = sorted.iter().sum::<f64>() / n;
    let sst: f64 = sorted.iter().map(|x| (x - mean).powi(2)).sum();
    let z = vals.iter().filter(|&&v| v < 0.0).count();
    let thr = |g: usize| if s.zero_cut && g == z { 0.0 } else { midpoint(vals[g - 1], vals[g]) };

    let mut out = Vec::new();
    let mut combo: Vec<usize> = Vec::new();
    fn rec(
        start: usize,
        d: usize,
        left: usize,
        combo: &mut Vec<usize>,
        f: &mut dyn FnMut(&[usize]),
    ) {
        if left == 0 {
            f(combo);
            return;
        }
        for g in start..d {
            combo.push(g);
            rec(g + 1, d, left - 1, combo, f);
            combo.pop();
        }
    }
    rec(1, d, k - 1, &mut combo, &mut |gaps: &[usize]| {
        if s.zero_cut && !gaps.contains(&z) {
            return;
        }
        let ts: Vec<f64> = gaps.iter().map(|&g| thr(g)).collect();
        // Class members by threshold, lower-inclusive.
        let mut members: Vec<Vec<f64>> = vec![Vec::new(); k];
        for &x in &sorted {
            let c = ts.iter().filter(|&&t| t <= x).count();
            members[c].push(x);
        }
        if members.iter().any(|m| m.len() < s.min_count) {
            return;
        }
        for c in 1..k.saturating_sub(1) {
            if ts[c] - ts[c - 1] < s.min_width - 1e-9 {
                return;
            }
        }
        let (mut kl, mut h, mut sse) = (0.0, 0.0, 0.0);
        for m in &members {
            let p = m.len() as f64 / n;
            kl += p * (k as f64 * p).ln();
            h -= p * p.ln();
            let mu = m.iter().sum::<f64>() / m.len() as f64;
            sse += m.iter().map(|x| (x - mu).powi(2)).sum::<f64>();
        }
        let j = s.a * kl + (1.0 - s.a) * sse / sst;
        out.push(Cand { gaps: gaps.to_vec(), thresholds: ts, j, h, ev: 1.0 - sse / sst });
    });
    out
}

/// The brute-force optimum with the documented tie rule.
fn brute(scores: &[f32], k: usize, s: &Setup) -> Option<Cand> {
    let all = enumerate(scores, k, s);
    let jmin = all.iter().map(|c| c.j).fold(f64::INFINITY, f64::min);
    let ties: Vec<&Cand> = all.iter().filter(|c| c.j <= jmin + 1e-12).collect();
    let hmax = ties.iter().map(|c| c.h).fold(f64::NEG_INFINITY, f64::max);
    ties.into_iter().filter(|c| c.h >= hmax - 1e-12).min_by(|x, y| x.gaps.cmp(&y.gaps)).cloned()
}

fn check_fixed(scores: &[f32], k: usize, s: &Setup) {
    let distinct = {
        let mut v: Vec<f32> = scores.iter().map(|&x| x + 0.0).collect();
        v.sort_by(f32::total_cmp);
        v.dedup();
        v.len()
    };
    let got = Stratification::fit(scores, &s.config(Classes::Fixed(k)));
    if distinct < k {
        assert!(matches!(got, Err(Error::TooFewDistinct { .. })), "{got:?}");
        return;
    }
    if s.zero_cut && (scores.iter().all(|&x| x < 0.0) || scores.iter().all(|&x| x >= 0.0)) {
        assert!(matches!(got, Err(Error::ZeroCutImpossible { .. })), "{got:?}");
        return;
    }
    match (brute(scores, k, s), got) {
        (None, Err(Error::Infeasible { k: ek, .. })) => assert_eq!(ek, k),
        (Some(b), Ok(das)) => {
            assert_eq!(
                das.thresholds, b.thresholds,
                "k={k} {s:?}\nscores {scores:?}\nDP J={} brute J={}",
                das.objective, b.j
            );
            assert!((das.objective - b.j).abs() < 1e-9, "{} vs {}", das.objective, b.j);
            assert!((das.explained_variance - b.ev).abs() < 1e-9);
            assert!(das.candidates_exact);
        }
        (b, got) => panic!("k={k} {s:?}\nscores {scores:?}\nbrute {b:?}\nfit {got:?}"),
    }
}

fn random_scores(rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = rng.random_range(2..=40);
    match rng.random_range(0..4) {
        // Three-decimal scores, few ties.
        0 => (0..n).map(|_| (rng.random_range(-1000..=1000) as f32) / 1000.0).collect(),
        // Heavy ties on a coarse grid.
        1 => (0..n).map(|_| (rng.random_range(-4..=4) as f32) / 4.0).collect(),
        // Mirror-symmetric (adversarial for tie-breaking): exact dyadic values and their negatives.
        2 => {
            let half: Vec<f32> =
                (0..n / 2).map(|_| (rng.random_range(1..=8) as f32) / 8.0).collect();
            half.iter().flat_map(|&x| [x, -x]).collect()
        }
        // Clustered with a few outliers.
        _ => (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    (rng.random_range(-1000..=1000) as f32) / 1000.0
                } else {
                    0.3 + (rng.random_range(-30..=30) as f32) / 1000.0
                }
            })
            .collect(),
    }
}

fn random_setup(rng: &mut ChaCha8Rng) -> Setup {
    Setup {
        a: [0.0, 0.3, 0.7, 1.0][rng.random_range(0..4)],
        min_count: rng.random_range(1..=5),
        min_width: [0.0, 0.05, 0.25][rng.random_range(0..3)],
        zero_cut: rng.random_bool(0.25),
    }
}

#[test]
fn dp_matches_brute_force_on_random_and_tied_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(20240601);
    for _ in 0..250 {
        let scores = random_scores(&mut rng);
        let s = random_setup(&mut rng);
        for k in 2..=4 {
            check_fixed(&scores, k, &s);
        }
    }
}

#[test]
fn auto_matches_brute_force_rule() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..120 {
        let scores = random_scores(&mut rng);
        let mut s = random_setup(&mut rng);
        s.zero_cut = false;
        let target = [0.5, 0.8, 0.95][rng.random_range(0..3)];
        let cfg = s.config(Classes::Auto).max_classes(4).explained_variance(target);
        let per_k: Vec<(usize, Cand)> =
            (2..=4).filter_map(|k| brute(&scores, k, &s).map(|c| (k, c))).collect();
        let in_range: Vec<&(usize, Cand)> = per_k.iter().filter(|(k, _)| *k >= 3).collect();
        let expect = in_range
            .iter()
            .find(|(_, c)| c.ev >= target - 1e-12)
            .or(in_range.last())
            .map(|(k, c)| (*k, c.clone()))
            .or_else(|| per_k.iter().find(|(k, _)| *k == 2).cloned());
        match (expect, Stratification::fit(&scores, &cfg)) {
            (Some((k, c)), Ok(das)) => {
                assert_eq!(das.num_classes(), k, "{scores:?} {s:?} target {target}");
                assert_eq!(das.thresholds, c.thresholds);
                let ks: Vec<usize> = das.k_scan.iter().map(|x| x.k).collect();
                let bk: Vec<usize> = per_k.iter().map(|(k, _)| *k).collect();
                assert_eq!(ks, bk);
            }
            (None, Err(Error::Infeasible { .. } | Error::TooFewDistinct { .. })) => {}
            (e, got) => panic!("{scores:?} {s:?}: expected {e:?}, got {got:?}"),
        }
    }
}

#[test]
fn symmetric_tie_goes_to_the_lower_thresholds() {
    // Four equally spaced, equally frequent values; K = 3 has two mirror-image optima
    // {x1}{x2}{x3,x4} and {x1,x2}{x3}{x4} with equal J and entropy.
    let scores = [-0.75f32, -0.25, 0.25, 0.75];
    let s = Setup { a: 0.7, min_count: 1, min_width: 0.0, zero_cut: false };
    let das = Stratification::fit(&scores, &s.config(Classes::Fixed(3))).unwrap();
    assert_eq!(das.thresholds, vec![-0.5, 0.0]);
    check_fixed(&scores, 3, &s);
}

#[test]
fn equal_objective_ties_go_to_the_higher_entropy() {
    // With a = 0 (pure within-class variance) these scores have two K = 2 optima with the same
    // SSE (22/256): {3}|{7..12} (counts 1, 8) and {3..8}|{9..12} (counts 6, 3). The second is
    // more balanced and must win even though its threshold is higher.
    let scores: Vec<f32> = [3, 7, 7, 7, 8, 8, 9, 10, 12].iter().map(|&x| x as f32 / 16.0).collect();
    let s = Setup { a: 0.0, min_count: 1, min_width: 0.0, zero_cut: false };
    let das = Stratification::fit(&scores, &s.config(Classes::Fixed(2))).unwrap();
    assert_eq!(das.thresholds, vec![8.5 / 16.0]);
    assert_eq!(das.counts(), vec![6, 3]);
    check_fixed(&scores, 2, &s);
}

#[test]
fn prefix_sse_matches_two_pass() {
    let scores: Vec<f32> = (0..50).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
    let g = crate::group::group(&scores).unwrap();
    let p = super::Prefix::new(&g);
    let d = g.values.len();
    for (a, b) in [(0, d), (0, 1), (3, 17), (10, d)] {
        let xs: Vec<f64> = (a..b)
            .flat_map(|i| std::iter::repeat_n(f64::from(g.values[i]), g.counts[i] as usize))
            .collect();
        let mu = xs.iter().sum::<f64>() / xs.len() as f64;
        let sse: f64 = xs.iter().map(|x| (x - mu).powi(2)).sum();
        assert!((p.sse(a, b) - sse).abs() < 1e-12, "{a}..{b}");
        assert!((p.mean_of(a, b).unwrap() - mu).abs() < 1e-12);
    }
    assert!((p.sse(0, d) - p.sst).abs() < 1e-12);
}

/// Optimal cuts per K, as returned by the solvers.
type Cuts = Vec<Option<Vec<usize>>>;

/// Runs both DP variants on the same problem built from scores and a config.
fn both(scores: &[f32], cfg: &DasConfig, kmax: usize) -> (Cuts, Cuts) {
    let g = crate::group::group(scores).unwrap();
    let pre = super::Prefix::new(&g);
    let d = g.values.len();
    let z = cfg.get_zero_cut().then(|| g.values.partition_point(|&v| v < 0.0));
    let mut bounds: Vec<usize> = (0..=d).collect();
    if d - 1 > cfg.get_max_candidates() {
        // Keep every 3rd gap (plus the zero gap) to exercise coarse blocks too.
        bounds = (0..=d).filter(|&b| b == 0 || b == d || b % 3 == 0 || Some(b) == z).collect();
    }
    let thresholds: Vec<f64> = bounds
        .iter()
        .map(|&b| {
            if b == 0 {
                f64::NEG_INFINITY
            } else if b == d {
                f64::INFINITY
            } else if Some(b) == z {
                0.0
            } else {
                midpoint(g.values[b - 1], g.values[b])
            }
        })
        .collect();
    let forced = z.map(|z| bounds.binary_search(&z).unwrap());
    let p = super::Problem {
        prefix: &pre,
        bounds: &bounds,
        thresholds: &thresholds,
        forced,
        balance_weight: cfg.get_balance_weight(),
        min_count: cfg.effective_min_count(scores.len()) as u64,
        min_width: cfg.get_min_width(),
        kmax,
    };
    (super::solve(&p), super::solve_quadratic(&p))
}

#[test]
fn divide_and_conquer_matches_the_quadratic_dp() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for case in 0..60 {
        let n = rng.random_range(50..3000);
        let scale = [1000.0f32, 100.0, 8.0][case % 3];
        let skew = rng.random_range(0.3f64..3.0);
        let scores: Vec<f32> = (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                let x = (u.powf(skew) * 2.0 - 1.0) as f32;
                (x * scale).round() / scale
            })
            .collect();
        if scores.iter().all(|&x| x < 0.0) || scores.iter().all(|&x| x >= 0.0) {
            continue;
        }
        let cfg = DasConfig::default()
            .balance_weight([0.0, 0.3, 0.7, 1.0][rng.random_range(0..4)])
            .min_count(if rng.random_bool(0.5) { None } else { Some(rng.random_range(1..20)) })
            .min_width([0.0, 0.05, 0.2][rng.random_range(0..3)])
            .zero_cut(rng.random_bool(0.3))
            .max_candidates(if rng.random_bool(0.3) { 100 } else { 2048 });
        let distinct = {
            let mut v = scores.clone();
            v.sort_by(f32::total_cmp);
            v.dedup();
            v.len()
        };
        if distinct < 2 {
            continue;
        }
        let kmax = rng.random_range(2..=8);
        let (dc, quad) = both(&scores, &cfg, kmax);
        assert_eq!(dc, quad, "case {case}: n={n} {cfg:?}");
    }
}

/// Issue 16 asks for many narrow classes (K up to 16). Nothing in the crate caps K
/// (`Classes::Fixed(k)` takes any `k >= 2`, `max_classes` any value >= 2); these check that the
/// DP stays exact at K = 12, 14 and 16 against brute force (small inputs, where enumerating every
/// cut set is cheap) and against the quadratic DP (larger inputs).
#[test]
fn k_up_to_16_matches_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let mut solved16 = 0;
    for _ in 0..12 {
        let n = rng.random_range(16..=18);
        let scores: Vec<f32> =
            (0..n).map(|_| (rng.random_range(-1000..=1000) as f32) / 1000.0).collect();
        let s = Setup {
            a: [0.0, 0.3, 0.7, 1.0][rng.random_range(0..4)],
            min_count: 1,
            min_width: [0.0, 0.01][rng.random_range(0..2)],
            zero_cut: rng.random_bool(0.25),
        };
        for k in [12, 14, 16] {
            check_fixed(&scores, k, &s);
        }
        solved16 +=
            usize::from(Stratification::fit(&scores, &s.config(Classes::Fixed(16))).is_ok());
    }
    assert!(solved16 >= 6, "only {solved16} of 12 cases had a feasible K = 16");
}

#[test]
fn k_16_divide_and_conquer_matches_the_quadratic_dp() {
    let mut rng = ChaCha8Rng::seed_from_u64(1616);
    for case in 0..12 {
        let n = rng.random_range(200..1500);
        let scores: Vec<f32> = (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                let x = (u.powf(rng.random_range(0.5f64..2.0)) * 2.0 - 1.0) as f32;
                (x * 1000.0).round() / 1000.0
            })
            .collect();
        let cfg = DasConfig::default()
            .balance_weight([0.0, 0.7, 1.0][case % 3])
            .min_width([0.0, 0.02, 0.05][rng.random_range(0..3)])
            .zero_cut(case % 4 == 0);
        let (dc, quad) = both(&scores, &cfg, 16);
        assert_eq!(dc, quad, "case {case}: n={n} {cfg:?}");
        assert!(dc[16].is_some(), "case {case}: K = 16 is feasible here");
    }
}

#[test]
fn sixteen_narrow_classes_fit_with_the_default_constraints() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let scores: Vec<f32> =
        (0..2000).map(|_| (rng.random_range(-1000..=1000) as f32) / 1000.0).collect();
    let das =
        Stratification::fit(&scores, &DasConfig::default().classes(Classes::Fixed(16))).unwrap();
    assert_eq!(das.num_classes(), 16);
    assert!(das.counts().iter().all(|&c| c >= 40), "min_count max(8, 2% of 2000) holds");
    for w in das.thresholds.windows(2) {
        assert!(w[1] - w[0] >= 0.05 - 1e-12, "inner classes at least min_width wide");
    }
    let auto = Stratification::fit(
        &scores,
        &DasConfig::default().max_classes(16).explained_variance(0.999),
    )
    .unwrap();
    assert!(auto.num_classes() <= 16 && auto.k_scan.iter().any(|k| k.k == 16));
}
