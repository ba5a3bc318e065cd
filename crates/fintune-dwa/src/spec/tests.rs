use super::*;

#[test]
fn all_defaults_covers_every_variant_once() {
    let names: Vec<String> = WeightingSpec::all_defaults().iter().map(|s| s.to_string()).collect();
    assert_eq!(
        names,
        [
            "dwa",
            "equal",
            "static:1,1",
            "uncertainty",
            "gradnorm",
            "dwa-liu",
            "dao",
            "famo",
            "pcgrad"
        ]
    );
}

#[test]
fn static_display_is_shortest_round_trip() {
    let s = WeightingSpec::Static(vec![0.1 + 0.2, 1e-3, 2.0]);
    let text = s.to_string();
    assert_eq!(text, "static:0.30000000000000004,0.001,2");
    assert_eq!(text.parse::<WeightingSpec>().unwrap(), s);
}

#[test]
fn default_task_kinds() {
    let c = WeightingConfig::default();
    assert_eq!(c.task_kinds(2).unwrap(), vec![TaskKind::Regression, TaskKind::Classification]);
    assert_eq!(c.task_kinds(3).unwrap()[2], TaskKind::Classification);
}
