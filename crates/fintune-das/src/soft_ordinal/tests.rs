use ndarray::Array2;
use proptest::prelude::*;

use super::*;

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
}

// Standard normal CDF values: Phi(-2) = 0.0227501319, Phi(-1) = 0.1586552539 (statrs erfc
// agrees to about 1e-12).
const PHI_M2: f64 = 0.022_750_131_948_179_2;
const PHI_M1: f64 = 0.158_655_253_931_457_05;

#[test]
fn soft_targets_by_hand() {
    // Score 0 in the middle of [-0.2, 0.2), sigma 0.1: two sigmas to either threshold.
    let q = soft_targets(&[-0.2, 0.2], 0.0, 0.1).unwrap();
    assert!(close(&q, &[PHI_M2, 1.0 - 2.0 * PHI_M2, PHI_M2], 1e-9), "{q:?}");
    // Score 0.1 between thresholds 0 and 0.2: one sigma each way.
    let q = soft_targets(&[0.0, 0.2], 0.1, 0.1).unwrap();
    assert!(close(&q, &[PHI_M1, 1.0 - 2.0 * PHI_M1, PHI_M1], 1e-7), "{q:?}");
    // On a threshold: half and half.
    let q = soft_targets(&[0.25], 0.25, 0.3).unwrap();
    assert!(close(&q, &[0.5, 0.5], 1e-15), "{q:?}");
    // Open outer classes: the mass beyond the domain stays in the last class.
    let q = soft_targets(&[0.0], 1.0, 0.5).unwrap();
    assert!(close(&q, &[PHI_M2, 1.0 - PHI_M2], 1e-9), "{q:?}");
    // sigma = 0: the hard class of Stratification::assign (a score on a threshold goes up).
    assert_eq!(soft_targets(&[-0.2, 0.2], 0.2, 0.0).unwrap(), vec![0.0, 0.0, 1.0]);
    assert_eq!(soft_targets(&[-0.2, 0.2], -0.5, 0.0).unwrap(), vec![1.0, 0.0, 0.0]);
    // One class.
    assert_eq!(soft_targets(&[], 0.3, 0.1).unwrap(), vec![1.0]);
}

#[test]
fn soft_targets_of_a_stratification() {
    let scores = [-0.8f32, -0.5, -0.1, 0.0, 0.2, 0.6, 0.9];
    let strat = Stratification::from_thresholds(&scores, &[-0.3, 0.3]).unwrap();
    let rows = soft_targets_all(&strat, &[0.0, 0.9], 0.1).unwrap();
    assert_eq!(rows.len(), 6);
    let q0 = soft_targets(&[-0.3, 0.3], 0.0, 0.1).unwrap();
    let q1 = soft_targets(&[-0.3, 0.3], 0.9, 0.1).unwrap();
    assert_eq!(&rows[..3], &q0[..]);
    assert_eq!(&rows[3..], &q1[..]);
    let e = soft_targets_all(&strat, &[0.0, f32::NAN], 0.1).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 1, .. }), "{e}");
}

#[test]
fn soft_target_errors() {
    for sigma in [-0.1, f64::NAN, f64::INFINITY] {
        let e = soft_targets(&[0.0], 0.0, sigma).unwrap_err().to_string();
        assert!(e.contains("sigma"), "{e}");
    }
    let e = soft_targets(&[0.2, 0.1], 0.0, 0.1).unwrap_err().to_string();
    assert!(e.contains("threshold 0 (0.2) >= threshold 1 (0.1)"), "{e}");
    let e = soft_targets(&[0.0], f32::INFINITY, 0.1).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
}

#[test]
fn class_means_by_hand() {
    let s = Stratification::from_thresholds(&[-0.5, -0.3, 0.1, 0.5], &[0.0]).unwrap();
    assert!(close(&class_means(&s), &[-0.4, 0.3], 1e-7), "{:?}", class_means(&s));
    // Uniform width over [-1, 1] with K = 4: the two middle classes are empty and get the
    // midpoints of [-0.5, 0) and [0, 0.5).
    let s = Stratification::uniform_width(&[-1.0, -0.9, 1.0], 4).unwrap();
    let m = class_means(&s);
    assert!(close(&m, &[-0.95, -0.25, 0.25, 1.0], 1e-7), "{m:?}");
}

#[test]
fn fuse_by_hand() {
    // E = 0.5 * 0 + 0.5 * 0.4 = 0.2; fused = 0.5 * 0.2 + 0.5 * 0.2.
    assert!((fuse(0.2, &[0.0, 0.5, 0.5], &[-0.5, 0.0, 0.4], 0.5).unwrap() - 0.2).abs() < 1e-15);
    // Unnormalised probabilities are normalised: E = (1 * -1 + 3 * 1) / 4 = 0.5;
    // fused = 0.75 * 0 + 0.25 * 0.5.
    assert!((fuse(0.0, &[1.0, 3.0], &[-1.0, 1.0], 0.25).unwrap() - 0.125).abs() < 1e-15);
    assert_eq!(fuse(0.3, &[0.2, 0.8], &[-1.0, 1.0], 0.0).unwrap(), 0.3);
    assert!((fuse(0.3, &[0.2, 0.8], &[-1.0, 1.0], 1.0).unwrap() - 0.6).abs() < 1e-15);
}

#[test]
fn fuse_errors() {
    let e = fuse(0.0, &[1.0], &[0.0], 1.5).unwrap_err().to_string();
    assert!(e.contains("mix"), "{e}");
    let e = fuse(0.0, &[1.0, 0.0], &[0.0], 0.5).unwrap_err().to_string();
    assert!(e.contains("2 class probabilities but 1 class means"), "{e}");
    let e = fuse(0.0, &[0.5, -0.1], &[0.0, 1.0], 0.5).unwrap_err().to_string();
    assert!(e.contains("class probability 1 = -0.1"), "{e}");
    let e = fuse(0.0, &[0.0, 0.0], &[0.0, 1.0], 0.5).unwrap_err().to_string();
    assert!(e.contains("sum to 0"), "{e}");
    let e = fuse(f64::NAN, &[1.0], &[0.0], 0.5).unwrap_err().to_string();
    assert!(e.contains("reg_score"), "{e}");
}

#[test]
fn pick_mix_by_hand() {
    // Regression says 0 for both; the class head's expected means are +1 and -1; the targets
    // +-0.5 sit half-way: mix 0.5 is exact, 0 and 1 both have MSE 0.25.
    let probs = Array2::from_shape_vec((2, 2), vec![0.0, 1.0, 1.0, 0.0]).unwrap();
    let c =
        pick_mix(&[0.0, 0.0], probs.view(), &[-1.0, 1.0], &[0.5, -0.5], &[0.0, 0.5, 1.0]).unwrap();
    assert_eq!(c.mix, 0.5);
    assert!(c.mse.abs() < 1e-15);
    assert_eq!(c.grid.len(), 3);
    assert!((c.grid[0].1 - 0.25).abs() < 1e-15 && (c.grid[2].1 - 0.25).abs() < 1e-15);

    // A class head that adds nothing (expected mean = regression): every mix ties, 0 wins.
    let probs = Array2::from_shape_vec((2, 2), vec![0.5, 0.5, 0.5, 0.5]).unwrap();
    let c = pick_mix(&[0.0, 0.0], probs.view(), &[-1.0, 1.0], &[0.3, -0.1], &default_mix_grid())
        .unwrap();
    assert_eq!(c.mix, 0.0);
    assert_eq!(c.grid.len(), 11);
}

#[test]
fn pick_mix_errors_name_the_row() {
    let probs = Array2::from_shape_vec((2, 2), vec![0.5, 0.5, 0.0, 0.0]).unwrap();
    let e = pick_mix(&[0.0, 0.0], probs.view(), &[-1.0, 1.0], &[0.0, 0.0], &[0.5])
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1") && e.contains("sum to 0"), "{e}");
    let e = pick_mix(&[0.0], probs.view(), &[-1.0, 1.0], &[0.0], &[0.5]).unwrap_err().to_string();
    assert!(e.contains("1 regression predictions, 2 probability rows"), "{e}");
    let e =
        pick_mix(&[0.0, 0.0], probs.view(), &[1.0], &[0.0, 0.0], &[0.5]).unwrap_err().to_string();
    assert!(e.contains("2 probability columns but 1 class means"), "{e}");
    let e = pick_mix(&[0.0, 0.0], probs.view(), &[-1.0, 1.0], &[0.0, 0.0], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mix grid"), "{e}");
    let e = pick_mix(&[0.0, 0.0], probs.view(), &[-1.0, 1.0], &[0.0, 0.0], &[2.0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mix"), "{e}");
}

/// 0 to 15 strictly increasing thresholds in (-1, 1) (K = 1 to 16 classes).
fn thresholds() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::btree_set(-999i32..=999, 0..=15)
        .prop_map(|s| s.into_iter().map(|x| f64::from(x) / 1000.0).collect())
}

proptest! {
    #[test]
    fn rows_sum_to_one(ts in thresholds(), y in -1.0f32..=1.0, sigma in prop_oneof![Just(0.0), 1e-4f64..1.0]) {
        let q = soft_targets(&ts, y, sigma).unwrap();
        prop_assert_eq!(q.len(), ts.len() + 1);
        prop_assert!(q.iter().all(|&p| (0.0..=1.0).contains(&p)), "{:?}", q);
        prop_assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{:?}", q);
    }

    #[test]
    fn argmax_is_the_scores_class_for_small_sigma(ts in thresholds(), y in -1.0f32..=1.0, frac in 0.01f64..=1.0) {
        // Distance from the score to the nearest threshold; sigma at most that distance keeps
        // more than 68% of the mass in the score's own class.
        let yf = f64::from(y);
        let dist = ts.iter().map(|t| (t - yf).abs()).fold(f64::INFINITY, f64::min);
        prop_assume!(dist > 1e-5);
        let sigma = if dist.is_finite() { frac * dist } else { frac };
        let q = soft_targets(&ts, y, sigma).unwrap();
        let argmax = q.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        let class = ts.partition_point(|&t| t as f32 <= y);
        prop_assert_eq!(argmax, class, "{:?}", q);
        prop_assert!(q[class] > 0.68 - 1e-9);
    }

    #[test]
    fn a_higher_score_shifts_mass_upwards(ts in thresholds(), a in -1.0f32..=1.0, b in -1.0f32..=1.0, sigma in 1e-3f64..1.0) {
        // First-order stochastic dominance: every cumulative sum falls as the score rises.
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (ql, qh) = (soft_targets(&ts, lo, sigma).unwrap(), soft_targets(&ts, hi, sigma).unwrap());
        let (mut cl, mut ch) = (0.0, 0.0);
        for k in 0..ql.len() {
            cl += ql[k];
            ch += qh[k];
            prop_assert!(ch <= cl + 1e-12, "k {}: {:?} vs {:?}", k, ql, qh);
        }
    }

    #[test]
    fn fusion_is_a_convex_mix_and_mix_zero_is_the_regression(
        reg in -1.0f64..=1.0,
        probs in prop::collection::vec(0.0f64..1.0, 1..=16),
        mix in 0.0f64..=1.0,
    ) {
        prop_assume!(probs.iter().sum::<f64>() > 0.0);
        let k = probs.len();
        let means: Vec<f64> = (0..k).map(|i| -1.0 + 2.0 * (i as f64 + 0.5) / k as f64).collect();
        prop_assert_eq!(fuse(reg, &probs, &means, 0.0).unwrap(), reg);
        let e = fuse(reg, &probs, &means, 1.0).unwrap();
        let f = fuse(reg, &probs, &means, mix).unwrap();
        prop_assert!(f >= reg.min(e) - 1e-12 && f <= reg.max(e) + 1e-12);
    }

    #[test]
    fn picked_mix_is_no_worse_than_regression_alone(
        rows in prop::collection::vec((-1.0f64..=1.0, -1.0f64..=1.0, prop::collection::vec(0.01f64..1.0, 3)), 1..30),
    ) {
        let n = rows.len();
        let reg: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let targets: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let probs = Array2::from_shape_vec((n, 3), rows.iter().flat_map(|r| r.2.clone()).collect()).unwrap();
        let c = pick_mix(&reg, probs.view(), &[-0.6, 0.0, 0.6], &targets, &default_mix_grid()).unwrap();
        let mse0 = reg.iter().zip(&targets).map(|(r, t)| (r - t).powi(2)).sum::<f64>() / n as f64;
        prop_assert!(c.mse <= mse0 + 1e-12);
        prop_assert_eq!(c.grid[0], (0.0, mse0));
        prop_assert!(c.grid.iter().all(|g| g.1 >= c.mse - 1e-12));
    }
}
