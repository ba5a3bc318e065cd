use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{exact, load, save, values_match};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct S {
    #[serde(with = "exact::vec")]
    x: Vec<f64>,
    #[serde(with = "exact::vec")]
    v: Vec<f64>,
    #[serde(with = "exact::opt_vec")]
    o: Option<Vec<f64>>,
}

#[test]
fn floats_survive_a_text_round_trip_bit_for_bit() {
    // Values whose shortest decimal has 17 digits, subnormals and extremes.
    let xs = vec![
        0.1 + 0.2,
        1.0 / 3.0,
        f64::MIN_POSITIVE / 3.0,
        f64::MAX,
        -2.2250738585072014e-308,
        1e-12,
        123_456_789.123_456_78,
    ];
    let s = S { x: vec![std::f64::consts::PI], v: xs.clone(), o: Some(xs) };
    let text = serde_json::to_string(&save("m", 2, &json!({"a": 0.9}), &s)).unwrap();
    let back: S = load("m", 2, &json!({"a": 0.9}), &serde_json::from_str(&text).unwrap()).unwrap();
    assert_eq!(back.x[0].to_bits(), s.x[0].to_bits());
    for (a, b) in back.v.iter().zip(&s.v) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
    }
    assert_eq!(back, s);
}

#[test]
fn mismatches_are_named() {
    let s = S { x: vec![1.0], v: vec![], o: None };
    let saved = save("dwa", 2, &json!({"a": 0.9}), &s);
    let e = load::<_, S>("famo", 2, &json!({"a": 0.9}), &saved).unwrap_err().to_string();
    assert!(e.contains("famo") && e.contains("dwa"), "{e}");
    let e = load::<_, S>("dwa", 3, &json!({"a": 0.9}), &saved).unwrap_err().to_string();
    assert!(e.contains("2 tasks") && e.contains("not 3"), "{e}");
    let e = load::<_, S>("dwa", 2, &json!({"a": 0.8}), &saved).unwrap_err().to_string();
    assert!(e.contains("config"), "{e}");
    let e = load::<_, S>("dwa", 2, &json!({"a": 0.9}), &json!([1])).unwrap_err().to_string();
    assert!(e.contains("JSON object"), "{e}");
    let mut broken = saved.clone();
    broken["state"]["x"] = json!(["one"]);
    let e = load::<_, S>("dwa", 2, &json!({"a": 0.9}), &broken).unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
    let source = std::error::Error::source(&e).expect("the JSON error is kept").to_string();
    // Display does not repeat the source (anyhow's `{:#}` prints the chain).
    assert!(!e.to_string().contains(&source), "{e} repeats {source}");
}

#[test]
fn config_comparison_tolerates_one_ulp_only() {
    let a = json!({"x": 0.9, "n": 3, "v": [1.5, 2.0]});
    let b = json!({"x": f64::from_bits(0.9f64.to_bits() + 1), "n": 3, "v": [1.5, 2.0]});
    assert!(values_match(&a, &b));
    let c = json!({"x": 0.9000001, "n": 3, "v": [1.5, 2.0]});
    assert!(!values_match(&a, &c));
    let d = json!({"x": 0.9, "n": 4, "v": [1.5, 2.0]});
    assert!(!values_match(&a, &d));
}
