use super::*;

fn grid_scores(n: usize) -> Vec<f32> {
    // Deterministic, skewed, 3-decimal scores in [-1, 1].
    (0..n)
        .map(|i| {
            let u = (i as f64 + 0.5) / n as f64;
            let x = (2.0 * u - 1.0).powi(3) * 0.8 + 0.15 * (u * 17.0).sin();
            ((x.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0) as f32
        })
        .collect()
}

#[test]
fn midpoint_uses_the_decimal_forms() {
    assert_eq!(midpoint(0.1, 0.101), 0.1005);
    assert_eq!(midpoint(-0.25, 0.25), 0.0);
    assert_eq!(midpoint(-0.938, -0.5), -0.719);
    // Adjacent f32 values: no decimal fits, the exact midpoint is used.
    let a = 0.1f32;
    let b = f32::from_bits(a.to_bits() + 1);
    let m = midpoint(a, b);
    assert!(f64::from(a) < m && m < f64::from(b));
}

#[test]
fn assign_is_lower_inclusive() {
    let s = Stratification::from_thresholds(&[-0.5, 0.0, 0.5], &[-0.2, 0.3]).unwrap();
    assert_eq!(s.num_classes(), 3);
    assert_eq!(s.assign(-1.0), 0);
    assert_eq!(s.assign(-0.2), 1);
    assert_eq!(s.assign(0.299), 1);
    assert_eq!(s.assign(0.3), 2);
    assert_eq!(s.assign(5.0), 2);
    assert_eq!(s.assign_all(&[-0.3, 0.0, 0.9]).unwrap(), vec![0, 1, 2]);
    match s.assign_all(&[0.0, f32::NAN]) {
        Err(Error::NonFinite { index, .. }) => assert_eq!(index, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.counts(), vec![1, 1, 1]);
}

#[test]
fn from_thresholds_rejects_bad_thresholds() {
    for ts in [&[][..], &[0.1, 0.1][..], &[0.2, 0.1][..], &[f64::NAN][..]] {
        assert!(matches!(
            Stratification::from_thresholds(&[0.0, 1.0], ts),
            Err(Error::InvalidThresholds { .. })
        ));
    }
}

#[test]
fn quantile_baseline_is_balanced_and_respects_ties() {
    let scores = grid_scores(1000);
    let q = Stratification::quantile(&scores, 5).unwrap();
    assert_eq!(q.method, Method::Quantile);
    assert_eq!(q.num_classes(), 5);
    for c in &q.classes {
        assert!((c.count as i64 - 200).abs() <= 10, "{:?}", q.counts());
    }
    // Heavy ties: classes are as balanced as ties allow, never empty, never straddling.
    let tied = [0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0];
    let q = Stratification::quantile(&tied, 3).unwrap();
    assert_eq!(q.counts(), vec![6, 1, 1]);
    assert!(matches!(Stratification::quantile(&tied, 4), Err(Error::TooFewDistinct { .. })));
    assert!(matches!(Stratification::quantile(&tied, 1), Err(Error::InvalidParameter { .. })));
}

#[test]
fn uniform_baseline_has_equal_widths_and_may_have_empty_classes() {
    let s = [-1.0f32, -0.9, 0.95, 1.0];
    let u = Stratification::uniform_width(&s, 4).unwrap();
    assert_eq!(u.method, Method::UniformWidth);
    assert_eq!(u.thresholds, vec![-0.5, 0.0, 0.5]);
    assert_eq!(u.counts(), vec![2, 0, 0, 2]);
    assert_eq!(u.classes[1].mean, None);
    let w = u.class_weights(ClassWeighting::InverseFrequency).unwrap();
    assert_eq!(w, vec![1.0, 0.0, 0.0, 1.0]);
    // Entropy ignores empty classes: two equal classes out of 4 -> ln 2 / ln 4.
    assert!((u.normalized_entropy - 0.5).abs() < 1e-12);
    assert!(matches!(
        Stratification::uniform_width(&[0.3, 0.3], 3),
        Err(Error::TooFewDistinct { .. })
    ));
}

#[test]
fn statistics_match_hand_computations() {
    // Counts 10, 20, 30 at values -1, 0, 1.
    let mut scores = vec![-1.0f32; 10];
    scores.extend(vec![0.0f32; 20]);
    scores.extend(vec![1.0f32; 30]);
    let s = Stratification::from_thresholds(&scores, &[-0.5, 0.5]).unwrap();
    // Chi-square vs uniform (expected 20): (100 + 0 + 100) / 20 = 10, df 2, p = exp(-5).
    assert!((s.chi_square.statistic - 10.0).abs() < 1e-12);
    assert_eq!(s.chi_square.dof, 2);
    assert!((s.chi_square.p_value - (-5.0f64).exp()).abs() < 1e-9, "{}", s.chi_square.p_value);
    // Classes are pure: all variance explained.
    assert!((s.explained_variance - 1.0).abs() < 1e-12);
    let p: [f64; 3] = [1.0 / 6.0, 1.0 / 3.0, 0.5];
    let h: f64 = -p.iter().map(|x| x * x.ln()).sum::<f64>();
    assert!((s.normalized_entropy - h / 3f64.ln()).abs() < 1e-12);
    assert!((s.balance_term - (3f64.ln() - h)).abs() < 1e-12);
    assert!((s.objective - 0.7 * s.balance_term).abs() < 1e-12);
    // Moments: mean 1/3, values in {-1, 0, 1}.
    let mean: f64 = 1.0 / 3.0;
    let m = |k: i32| {
        (10.0 * (-1.0 - mean).powi(k) + 20.0 * (-mean).powi(k) + 30.0 * (1.0 - mean).powi(k)) / 60.0
    };
    assert!((s.skewness - m(3) / m(2).powf(1.5)).abs() < 1e-12);
    assert!((s.kurtosis - (m(4) / (m(2) * m(2)) - 3.0)).abs() < 1e-12);
    let c = &s.classes[2];
    assert_eq!(
        (c.count, c.mean, c.std, c.min, c.max),
        (30, Some(1.0), Some(0.0), Some(1.0), Some(1.0))
    );
    assert_eq!((s.classes[0].lo, s.classes[2].hi), (-1.0, 1.0));
    let r = s.clone().with_balance_weight(0.2).unwrap();
    assert!((r.objective - 0.2 * s.balance_term).abs() < 1e-12);
    assert!(s.clone().with_balance_weight(-0.1).is_err());
}

#[test]
fn class_weights_have_mean_one_and_favour_small_classes() {
    let mut scores = vec![-0.5f32; 10];
    scores.extend(vec![0.0f32; 40]);
    scores.extend(vec![0.5f32; 150]);
    let s = Stratification::from_thresholds(&scores, &[-0.25, 0.25]).unwrap();
    for kind in [
        ClassWeighting::InverseFrequency,
        ClassWeighting::InverseSqrt,
        ClassWeighting::EffectiveNumber { beta: 0.99 },
        ClassWeighting::EffectiveNumber { beta: 0.0 },
    ] {
        let w = s.class_weights(kind).unwrap();
        let mean = w.iter().sum::<f32>() / 3.0;
        assert!((mean - 1.0).abs() < 1e-6, "{kind:?} {w:?}");
        assert!(w[0] >= w[1] && w[1] >= w[2], "{kind:?} {w:?}");
    }
    let inv = s.class_weights(ClassWeighting::InverseFrequency).unwrap();
    assert!((inv[0] / inv[2] - 15.0).abs() < 1e-4);
    let sq = s.class_weights(ClassWeighting::InverseSqrt).unwrap();
    assert!((sq[0] / sq[1] - 2.0).abs() < 1e-5);
    let en = s.class_weights(ClassWeighting::EffectiveNumber { beta: 0.99 }).unwrap();
    let eff = |m: f64| (1.0 - 0.99) / (1.0 - 0.99f64.powf(m));
    assert!((f64::from(en[0] / en[2]) - eff(10.0) / eff(150.0)).abs() < 1e-4);
    let flat = s.class_weights(ClassWeighting::EffectiveNumber { beta: 0.0 }).unwrap();
    assert_eq!(flat, vec![1.0, 1.0, 1.0]);
    assert!(s.class_weights(ClassWeighting::EffectiveNumber { beta: 1.0 }).is_err());
}

#[test]
fn fit_defaults_on_smooth_data_meet_the_quality_bar() {
    let scores = grid_scores(2000);
    let das = Stratification::fit(&scores, &DasConfig::default()).unwrap();
    assert_eq!(das.method, Method::Das);
    assert!((3..=7).contains(&das.num_classes()));
    assert!(das.explained_variance >= 0.9, "{das}");
    assert!(das.normalized_entropy >= 0.95, "{das}");
    // Auto picks the smallest K reaching the target.
    let first = das.k_scan.iter().find(|k| k.k >= 3 && k.explained_variance >= 0.9).unwrap();
    assert_eq!(first.k, das.num_classes());
    let c = das.constraints.unwrap();
    assert_eq!(c.min_count, 40);
    assert!(das.classes.iter().all(|cl| cl.count >= 40));
}

#[test]
fn fixed_k_infeasible_is_an_error_and_auto_falls_back_to_two() {
    // 20 scores, min_count 8: K = 3 needs 24.
    let scores: Vec<f32> = (0..20).map(|i| i as f32 / 20.0).collect();
    let e =
        Stratification::fit(&scores, &DasConfig::default().classes(Classes::Fixed(3))).unwrap_err();
    assert!(matches!(e, Error::Infeasible { k: 3, n: 20, min_count: 8, .. }), "{e:?}");
    assert!(e.to_string().contains("3 classes"), "{e}");
    let das = Stratification::fit(&scores, &DasConfig::default()).unwrap();
    assert_eq!(das.num_classes(), 2);
    assert_eq!(das.counts(), vec![10, 10]);
    // 10 scores cannot give two classes of 8.
    let e = Stratification::fit(&scores[..10], &DasConfig::default()).unwrap_err();
    assert!(matches!(e, Error::Infeasible { k: 2, .. }), "{e:?}");
}

#[test]
fn min_width_forces_wider_inner_classes() {
    // A dense cluster between 0.2 and 0.24 that a balanced fit would cut finely.
    let mut scores: Vec<f32> = (0..400).map(|i| 0.2 + (i % 41) as f32 / 1000.0).collect();
    scores.extend((0..100).map(|i| -0.9 + i as f32 / 200.0));
    let cfg = DasConfig::default().classes(Classes::Fixed(5)).min_count(Some(5));
    let narrow = Stratification::fit(&scores, &cfg.clone().min_width(0.0)).unwrap();
    let min_inner = |s: &Stratification| {
        s.thresholds.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min)
    };
    assert!(min_inner(&narrow) < 0.05, "{narrow}");
    let wide = Stratification::fit(&scores, &cfg.min_width(0.05)).unwrap();
    assert!(min_inner(&wide) >= 0.05 - 1e-9, "{wide}");
    assert!(wide.objective >= narrow.objective - 1e-12);
}

#[test]
fn zero_cut_puts_a_threshold_at_zero_and_zeros_above_it() {
    let scores = grid_scores(500);
    let zeros = scores.iter().filter(|&&x| x == 0.0).count();
    let mut with_zero = scores.clone();
    with_zero.extend(vec![0.0f32; 10]);
    let das = Stratification::fit(&with_zero, &DasConfig::default().zero_cut(true)).unwrap();
    assert!(das.thresholds.contains(&0.0), "{das}");
    let z = das.thresholds.iter().position(|&t| t == 0.0).unwrap();
    assert_eq!(das.assign(0.0), z + 1);
    assert_eq!(das.assign(-0.001), z);
    assert!(das.constraints.unwrap().zero_cut);
    let neg = with_zero.iter().filter(|&&x| x < 0.0).count();
    let below: usize = das.classes[..=z].iter().map(|c| c.count).sum();
    assert_eq!(below, neg, "{zeros} zeros originally");
    let e =
        Stratification::fit(&[0.0, 0.5, 0.7], &DasConfig::default().zero_cut(true)).unwrap_err();
    assert!(matches!(e, Error::ZeroCutImpossible { negative: 0, non_negative: 3 }), "{e:?}");
}

#[test]
fn many_distinct_values_use_quantile_candidates() {
    let scores: Vec<f32> = (0..5000).map(|i| -1.0 + 2.0 * i as f32 / 4999.0).collect();
    let cfg = DasConfig::default().max_candidates(100);
    let das = Stratification::fit(&scores, &cfg).unwrap();
    assert!(!das.candidates_exact);
    assert!(das.num_candidates <= 100, "{}", das.num_candidates);
    let exact = Stratification::fit(&scores, &DasConfig::default().max_candidates(5000)).unwrap();
    assert!(exact.candidates_exact);
    assert_eq!(exact.num_candidates, 4999);
    // Coarser candidates can only do as well as the exact search.
    if das.num_classes() == exact.num_classes() {
        assert!(exact.objective <= das.objective + 1e-12);
    }
    // zero_cut keeps the zero gap among thinned candidates.
    let z = Stratification::fit(&scores, &cfg.zero_cut(true)).unwrap();
    assert!(z.thresholds.contains(&0.0));
}

#[test]
fn too_few_distinct_values_is_an_error() {
    let e = Stratification::fit(&[0.5; 30], &DasConfig::default()).unwrap_err();
    assert!(matches!(e, Error::TooFewDistinct { distinct: 1, .. }), "{e:?}");
    let e = Stratification::fit(&[0.1, 0.2, 0.3], &DasConfig::default().classes(Classes::Fixed(4)))
        .unwrap_err();
    assert!(matches!(e, Error::TooFewDistinct { distinct: 3, k: 4 }), "{e:?}");
    assert!(matches!(Stratification::fit(&[], &DasConfig::default()), Err(Error::Empty { .. })));
}

#[test]
fn json_round_trip_and_validation() {
    let scores = grid_scores(600);
    let das = Stratification::fit(&scores, &DasConfig::default()).unwrap();
    let json = serde_json::to_string_pretty(&das).unwrap();
    assert!(json.contains("\"method\": \"das\""));
    let back: Stratification = serde_json::from_str(&json).unwrap();
    // serde_json's default float parser may be off by one ulp on long mantissas (enable its
    // `float_roundtrip` feature for bit-exact), but the decimal thresholds come back exactly.
    assert_eq!(back.thresholds, das.thresholds);
    assert_eq!(back.counts(), das.counts());
    assert_eq!(back.constraints, das.constraints);
    assert_eq!(back.k_scan.len(), das.k_scan.len());
    assert!((back.objective - das.objective).abs() < 1e-15);
    assert_eq!(back.assign_all(&scores).unwrap(), das.assign_all(&scores).unwrap());
    let u = Stratification::uniform_width(&scores, 4).unwrap();
    let back: Stratification = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
    assert_eq!(back.method, Method::UniformWidth);

    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let t = v["thresholds"].as_array_mut().unwrap();
    t.swap(0, 1);
    let e = serde_json::from_value::<Stratification>(v).unwrap_err();
    assert!(e.to_string().contains("strictly increasing"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["n"] = serde_json::json!(1);
    let e = serde_json::from_value::<Stratification>(v).unwrap_err();
    assert!(e.to_string().contains("sum to"), "{e}");
}

#[test]
fn display_prints_a_row_per_class() {
    let das = Stratification::fit(&grid_scores(800), &DasConfig::default()).unwrap();
    let text = das.to_string();
    assert!(text.starts_with("das: K = "), "{text}");
    assert!(text.contains("normalized entropy"));
    assert!(text.contains("explained variance"));
    let rows =
        text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count();
    assert_eq!(rows, das.num_classes(), "{text}");
}

#[test]
fn method_parses_cli_names() {
    for m in [Method::Das, Method::Quantile, Method::UniformWidth, Method::Manual] {
        assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, format!("\"{m}\""));
    }
    assert!("jenks".parse::<Method>().is_err());
}

#[test]
fn outer_bounds_are_the_decimal_extremes() {
    let s = Stratification::quantile(&[-0.938f32, 0.1, 0.2, 0.975], 2).unwrap();
    assert_eq!(s.classes[0].lo, -0.938);
    assert_eq!(s.classes[1].hi, 0.975);
    assert_eq!(s.classes[0].lo as f32, -0.938f32);
}
