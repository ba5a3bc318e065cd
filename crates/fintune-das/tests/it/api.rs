//! The flows the trainer and the CLI use.

use anyhow::Result;
use fintune_das::{
    stratified_split, ClassWeighting, Classes, DasConfig, Method, Rarity, Stratification,
};

fn scores(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let u = (i as f64 * 0.618_033_988_75).fract();
            let x = (u * 2.0 - 1.0).powi(3) + 0.2 * (u - 0.5);
            ((x.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0) as f32
        })
        .collect()
}

#[test]
fn das_json_labels_new_data_like_the_fitted_model() -> Result<()> {
    let train = scores(900);
    let cfg = DasConfig::default().classes("auto".parse::<Classes>()?);
    let das = Stratification::fit(&train, &cfg)?;
    let rar = Rarity::fit(&train, Rarity::DEFAULT_BANDWIDTH)?;
    let json = serde_json::json!({ "strata": das, "rarity": rar }).to_string();

    let saved: serde_json::Value = serde_json::from_str(&json)?;
    let das2: Stratification = serde_json::from_value(saved["strata"].clone())?;
    let rar2: Rarity = serde_json::from_value(saved["rarity"].clone())?;
    let new = scores(333).iter().map(|x| x * 0.97).collect::<Vec<_>>();
    assert_eq!(das2.assign_all(&new)?, das.assign_all(&new)?);
    assert_eq!(rar2.weights(&new), rar.weights(&new));
    Ok(())
}

#[test]
fn strata_option_maps_to_one_type() -> Result<()> {
    let train = scores(500);
    for name in ["das", "quantile", "uniform"] {
        let s = match name.parse::<Method>()? {
            Method::Das => Stratification::fit(&train, &DasConfig::default())?,
            Method::Quantile => Stratification::quantile(&train, 5)?,
            Method::UniformWidth => Stratification::uniform_width(&train, 5)?,
            Method::Manual => unreachable!(),
        };
        assert_eq!(s.method.to_string(), name);
        let labels = s.assign_all(&train)?;
        assert!(labels.iter().all(|&l| l < s.num_classes()));
        let w = s.class_weights(ClassWeighting::EffectiveNumber { beta: 0.999 })?;
        assert_eq!(w.len(), s.num_classes());
        let parts = stratified_split(&labels, None, &[0.9, 0.1], 0)?;
        assert_eq!(parts[0].len() + parts[1].len(), train.len());
        assert!((parts[1].len() as i64 - 50).abs() <= s.num_classes() as i64);
    }
    Ok(())
}

#[test]
fn errors_are_readable() {
    let e = Stratification::fit(&[0.1, f32::NAN], &DasConfig::default()).unwrap_err();
    assert_eq!(e.to_string(), "score at index 1 is not finite (NaN)");
    let e = "x".parse::<Classes>().unwrap_err();
    assert!(e.to_string().contains("expected \"auto\" or an integer >= 2"), "{e}");
    let e =
        Stratification::fit(&[0.1, 0.2], &DasConfig::default().balance_weight(2.0)).unwrap_err();
    assert_eq!(e.to_string(), "invalid balance_weight = 2: must be in [0, 1]");
}
