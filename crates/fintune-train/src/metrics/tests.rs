use std::path::PathBuf;

use super::*;

fn golden() -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens/metrics.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn vecf(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn matches_numpy_and_scipy() {
    let g = golden();
    let (y, p) = (vecf(&g["y"]), vecf(&g["p"]));
    let r = RegressionMetrics::of(MetricsConfig::default(), &p, &y, None);
    let close = |a: f64, key: &str| {
        let want = g[key].as_f64().unwrap();
        assert!((a - want).abs() < 1e-6, "{key}: {a} vs {want}");
    };
    assert_eq!(r.n, 64);
    close(r.mse, "mse");
    close(r.rmse, "rmse");
    close(r.mae, "mae");
    close(r.r2.unwrap(), "r2");
    close(r.pearson.unwrap(), "pearson");
    close(r.spearman.unwrap(), "spearman");
    close(r.cosine.unwrap(), "cosine");
}

#[test]
fn hand_computed_small_case() {
    let gold = [-0.8f32, -0.1, 0.0, 0.3, 0.7];
    let pred = [-0.6f32, 0.02, 0.1, 0.2, 0.9];
    let cfg = MetricsConfig { thresholds: Some(vec![-0.5, 0.25]), ..Default::default() };
    let r = RegressionMetrics::of(cfg, &pred, &gold, Some(&[0, 1, 1, 1, 2]));
    // errors: 0.2, 0.12, 0.1, -0.1, 0.2 -> squares 0.04, 0.0144, 0.01, 0.01, 0.04
    assert!((r.mse - 0.1144 / 5.0).abs() < 1e-7);
    assert!((r.mae - 0.72 / 5.0).abs() < 1e-7);
    // polarity (band 0.05): gold -,-,0,+,+ ; pred -,0,+,+,+ -> 3 of 5
    assert!((r.acc_polarity - 0.6).abs() < 1e-12);
    // classes (thresholds -0.5, 0.25): gold 0,1,1,2,2 ; from score 0,1,1,1,2 -> 4 of 5
    assert!((r.acc_class_from_score.unwrap() - 0.8).abs() < 1e-12);
    // head: 0,1,1,1,2 vs gold 0,1,1,2,2 -> 0.8; F1: c0 1, c1 2*2/(4+1)=0.8, c2 2/(2+1)=0.667
    assert!((r.acc_class.unwrap() - 0.8).abs() < 1e-12);
    assert!((r.macro_f1_class.unwrap() - (1.0 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    let regions: Vec<(usize, Option<f64>)> = r.mse_by_region.iter().map(|e| (e.n, e.mse)).collect();
    assert_eq!(regions[0].0, 2); // |y| < 0.2: -0.1, 0.0
    assert_eq!(regions[1].0, 1); // 0.3
    assert_eq!(regions[2].0, 2); // -0.8, 0.7
    assert!((regions[2].1.unwrap() - 0.04).abs() < 1e-7);
}

#[test]
fn degenerate_inputs_give_none_not_nan() {
    let r =
        RegressionMetrics::of(MetricsConfig::default(), &[0.1, 0.1, 0.1], &[0.2, 0.3, 0.4], None);
    assert_eq!(r.pearson, None);
    assert_eq!(r.spearman, None);
    let r = RegressionMetrics::of(MetricsConfig::default(), &[0.0, 0.0], &[0.0, 0.0], None);
    assert_eq!(r.cosine, None);
    assert_eq!(r.r2, None);
    assert!(serde_json::to_string(&r).unwrap().contains("\"pearson\":null"));
}

#[test]
fn update_reset_accumulates_batches() {
    let mut m = RegressionMetrics::new(MetricsConfig::default());
    m.update(&EvalBatch { pred: &[0.5], gold: &[0.4], class_pred: None });
    m.update(&EvalBatch { pred: &[-0.5], gold: &[-0.2], class_pred: None });
    let whole = RegressionMetrics::of(MetricsConfig::default(), &[0.5, -0.5], &[0.4, -0.2], None);
    assert_eq!(m.compute(), whole);
    m.reset();
    assert_eq!(m.compute().n, 0);
}

#[test]
fn ranks_average_ties() {
    assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
}
