use super::*;

#[test]
fn classes_parse_and_display_round_trip() {
    assert_eq!("auto".parse::<Classes>().unwrap(), Classes::Auto);
    assert_eq!(" AUTO ".parse::<Classes>().unwrap(), Classes::Auto);
    assert_eq!("5".parse::<Classes>().unwrap(), Classes::Fixed(5));
    for c in [Classes::Auto, Classes::Fixed(2), Classes::Fixed(12)] {
        assert_eq!(c.to_string().parse::<Classes>().unwrap(), c);
    }
}

#[test]
fn classes_parse_rejects_bad_text_with_source() {
    let e = "1".parse::<Classes>().unwrap_err();
    assert!(matches!(e, Error::ParseClasses { source: None, .. }), "{e:?}");
    let e = "five".parse::<Classes>().unwrap_err();
    assert!(matches!(e, Error::ParseClasses { source: Some(_), .. }), "{e:?}");
    assert!(e.to_string().contains("five"));
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = DasConfig::default();
    assert_eq!(c.get_classes(), Classes::Auto);
    assert_eq!(c.get_balance_weight(), 0.7);
    assert_eq!(c.get_min_count(), None);
    assert_eq!(c.get_min_width(), 0.05);
    assert!(!c.get_zero_cut());
    assert_eq!(c.get_max_classes(), 7);
    assert_eq!(c.get_explained_variance(), 0.9);
    assert_eq!(c.get_max_candidates(), 2048);
    c.validate().unwrap();
}

#[test]
fn effective_min_count_is_max_of_8_and_two_percent_rounded_up() {
    let c = DasConfig::default();
    assert_eq!(c.effective_min_count(10), 8);
    assert_eq!(c.effective_min_count(400), 8);
    assert_eq!(c.effective_min_count(401), 9); // 8.02 -> 9
    assert_eq!(c.effective_min_count(608), 13); // 12.16 -> 13
    assert_eq!(c.effective_min_count(1_000_000), 20_000);
    assert_eq!(c.clone().min_count(Some(3)).effective_min_count(1_000_000), 3);
}

#[test]
fn validate_names_the_bad_parameter() {
    let cases = [
        (DasConfig::default().classes(Classes::Fixed(1)), "classes"),
        (DasConfig::default().balance_weight(1.5), "balance_weight"),
        (DasConfig::default().balance_weight(f64::NAN), "balance_weight"),
        (DasConfig::default().min_count(Some(0)), "min_count"),
        (DasConfig::default().min_width(-0.1), "min_width"),
        (DasConfig::default().max_classes(1), "max_classes"),
        (DasConfig::default().explained_variance(1.1), "explained_variance"),
        (DasConfig::default().max_candidates(0), "max_candidates"),
    ];
    for (cfg, name) in cases {
        match cfg.validate() {
            Err(Error::InvalidParameter { name: got, .. }) => assert_eq!(got, name),
            other => panic!("{name}: expected InvalidParameter, got {other:?}"),
        }
    }
}

#[test]
fn serde_fills_missing_fields_with_defaults() {
    let c: DasConfig =
        serde_json::from_str(r#"{"classes": {"fixed": 4}, "zero_cut": true}"#).unwrap();
    assert_eq!(c, DasConfig::default().classes(Classes::Fixed(4)).zero_cut(true));
    let c: DasConfig = serde_json::from_str(r#"{"classes": "auto"}"#).unwrap();
    assert_eq!(c, DasConfig::default());
    assert!(serde_json::from_str::<DasConfig>(r#"{"clases": "auto"}"#).is_err());
    let back: DasConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}
