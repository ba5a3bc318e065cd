//! Method names, parsing, display, serde and building.

use fintune_dwa::{Error, WeightingConfig, WeightingSpec};

const NAMES: [&str; 9] = [
    "dwa",
    "equal",
    "static:0.7,0.3",
    "uncertainty",
    "gradnorm",
    "dwa-liu",
    "dao",
    "famo",
    "pcgrad",
];

#[test]
fn every_name_parses_displays_and_builds() {
    for name in NAMES {
        let spec: WeightingSpec = name.parse().unwrap();
        assert_eq!(spec.to_string(), name);
        let m = spec.build(2).unwrap();
        assert_eq!(m.name(), name, "name() is the spec string");
        assert_eq!(m.num_tasks(), 2);
        assert_eq!(m.name().parse::<WeightingSpec>().unwrap(), spec);
    }
    assert_eq!(
        " static: 0.70 , 0.3 ".parse::<WeightingSpec>().unwrap().to_string(),
        "static:0.7,0.3"
    );
}

#[test]
fn requirements_are_declared() {
    let needs = |n: &str| {
        let m = n.parse::<WeightingSpec>().unwrap().build(2).unwrap();
        (m.needs_grad_norms(), m.needs_gradients(), m.needs_batch(), m.needs_post_step_losses())
    };
    assert_eq!(needs("dwa"), (true, false, true, false));
    assert_eq!(needs("gradnorm"), (true, false, false, false));
    assert_eq!(needs("dao"), (true, false, false, false));
    assert_eq!(needs("pcgrad"), (false, true, false, false));
    for n in ["equal", "static:1,2", "uncertainty", "dwa-liu", "famo"] {
        assert_eq!(needs(n), (false, false, false, false), "{n}");
    }
}

#[test]
fn unknown_names_and_bad_static_weights_error_clearly() {
    let e = "dwaa".parse::<WeightingSpec>().unwrap_err();
    assert!(matches!(e, Error::UnknownMethod { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("\"dwaa\"") && msg.contains("gradnorm") && msg.contains("static:"),
        "{msg}"
    );
    assert!("DWA".parse::<WeightingSpec>().is_err(), "names are case-sensitive");
    assert!("".parse::<WeightingSpec>().is_err());

    for (bad, needle) in [
        ("static", "static:<w1>"),
        ("static:", "empty"),
        ("static:0.7,", "weight 2 is empty"),
        ("static:0.7,abc", "(\"abc\") is not a number"),
        ("static:0,1", "must be > 0"),
        ("static:1,-2", "must be > 0"),
        ("static:nan,1", "not finite"),
        ("static:1,inf", "not finite"),
    ] {
        let e = bad.parse::<WeightingSpec>().unwrap_err();
        assert!(matches!(e, Error::BadStaticWeights { .. }), "{bad}: {e:?}");
        assert!(e.to_string().contains(needle), "{bad}: {e}");
    }
    let e = "static:0.7,x".parse::<WeightingSpec>().unwrap_err();
    assert!(std::error::Error::source(&e).is_some(), "keeps the parse error as source");

    // The count is checked against the number of tasks when building.
    let spec: WeightingSpec = "static:0.5,0.3,0.2".parse().unwrap();
    let e = spec.build(2).unwrap_err().to_string();
    assert!(e.contains("3 entries") && e.contains("2 tasks"), "{e}");
    assert!(spec.build(3).is_ok());
}

#[test]
fn zero_tasks_are_rejected_by_every_method() {
    for name in ["dwa", "equal", "uncertainty", "gradnorm", "dwa-liu", "dao", "famo", "pcgrad"] {
        let spec: WeightingSpec = name.parse().unwrap();
        assert!(spec.build(0).is_err(), "{name}");
    }
}

#[test]
fn serde_uses_the_spec_string() {
    let spec: WeightingSpec = "static:0.7,0.3".parse().unwrap();
    assert_eq!(serde_json::to_string(&spec).unwrap(), "\"static:0.7,0.3\"");
    let back: WeightingSpec = serde_json::from_str("\"dwa-liu\"").unwrap();
    assert_eq!(back, WeightingSpec::DwaLiu);
    let e = serde_json::from_str::<WeightingSpec>("\"nope\"").unwrap_err().to_string();
    assert!(e.contains("unknown task-weighting method"), "{e}");
}

#[test]
fn config_sections_default_and_reject_typos() {
    let c: WeightingConfig = serde_json::from_str(
        r#"{"task_kinds": ["regression", "classification"], "dwa": {"beta": 0.25},
            "dwa-liu": {"temperature": 3.0}, "famo": {"update": "same-batch"}}"#,
    )
    .unwrap();
    assert_eq!(c.dwa.beta, 0.25);
    assert_eq!(c.dwa.alpha, 1.0, "unspecified fields keep their defaults");
    assert_eq!(c.dwa.warmup_steps, 10);
    assert_eq!(c.dwa_liu.temperature, 3.0);
    assert_eq!(c.gradnorm.alpha, 1.5);
    assert!(WeightingSpec::Famo.build_with(2, &c).unwrap().needs_post_step_losses());

    let e = serde_json::from_str::<WeightingConfig>(r#"{"dwa": {"betta": 0.25}}"#).unwrap_err();
    assert!(e.to_string().contains("betta"), "{e}");

    // Defaults round-trip.
    let d = WeightingConfig::default();
    let text = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<WeightingConfig>(&text).unwrap(), d);

    // task_kinds must match the task count.
    let e = WeightingSpec::Dwa.build_with(3, &c).unwrap_err().to_string();
    assert!(e.contains("task_kinds") && e.contains("3 tasks"), "{e}");
}

#[test]
fn invalid_configs_name_the_field() {
    type Edit = Box<dyn Fn(&mut WeightingConfig)>;
    let cases: Vec<(WeightingSpec, &str, Edit)> = vec![
        (WeightingSpec::Dwa, "momentum", Box::new(|c| c.dwa.momentum = 1.0)),
        (WeightingSpec::Dwa, "loss_ema", Box::new(|c| c.dwa.loss_ema = -0.1)),
        (WeightingSpec::Dwa, "warmup_steps", Box::new(|c| c.dwa.warmup_steps = 0)),
        (WeightingSpec::Dwa, "w_min", Box::new(|c| c.dwa.w_min = 1.5)),
        (WeightingSpec::Dwa, "w_max", Box::new(|c| c.dwa.w_max = Some(0.5))),
        (WeightingSpec::Dwa, "alpha", Box::new(|c| c.dwa.alpha = f64::NAN)),
        (
            WeightingSpec::Dwa,
            "initial_weights",
            Box::new(|c| c.dwa.initial_weights = Some(vec![1.0, 0.0])),
        ),
        (
            WeightingSpec::Dwa,
            "initial_weights",
            Box::new(|c| c.dwa.initial_weights = Some(vec![1.0, 100.0])),
        ),
        (
            WeightingSpec::Dwa,
            "initial_weights",
            Box::new(|c| c.dwa.initial_weights = Some(vec![1.0])),
        ),
        (WeightingSpec::GradNorm, "alpha", Box::new(|c| c.gradnorm.alpha = -1.0)),
        (WeightingSpec::GradNorm, "lr", Box::new(|c| c.gradnorm.lr = 0.0)),
        (WeightingSpec::Uncertainty, "adam_beta2", Box::new(|c| c.uncertainty.adam_beta2 = 1.0)),
        (WeightingSpec::DwaLiu, "temperature", Box::new(|c| c.dwa_liu.temperature = 0.0)),
        (WeightingSpec::Famo, "weight_decay", Box::new(|c| c.famo.weight_decay = -0.01)),
        (WeightingSpec::Famo, "min_losses", Box::new(|c| c.famo.min_losses = Some(vec![0.0]))),
        (WeightingSpec::Dao, "grad_floor", Box::new(|c| c.dao.grad_floor = 0.0)),
    ];
    for (spec, field, set) in cases {
        let mut c = WeightingConfig::default();
        set(&mut c);
        let e = spec.build_with(2, &c).unwrap_err().to_string();
        assert!(e.contains(field), "{spec} {field}: {e}");
    }
}

#[test]
fn bad_observations_are_reported_with_the_entry() {
    use fintune_dwa::StepObservation;
    let mut dwa = WeightingSpec::Dwa.build(2).unwrap();
    let e = dwa
        .weights(&StepObservation::new(&[0.1, f64::NAN]).with_grad_norms(&[1.0, 1.0]))
        .unwrap_err();
    assert!(e.to_string().contains("losses[1] = NaN"), "{e}");
    let e = dwa.weights(&StepObservation::new(&[0.1, 0.2])).unwrap_err();
    assert!(e.to_string().contains("grad_norms"), "{e}");
    let e =
        dwa.weights(&StepObservation::new(&[0.1, 0.2]).with_grad_norms(&[1.0, 1.0])).unwrap_err();
    assert!(e.to_string().contains("batch characteristics"), "{e}");
    let e = dwa.weights(&StepObservation::new(&[0.1]).with_grad_norms(&[1.0, 1.0])).unwrap_err();
    assert!(e.to_string().contains("1 entries but there are 2 tasks"), "{e}");
    let mut eq = WeightingSpec::Equal.build(2).unwrap();
    assert!(eq.weights(&StepObservation::new(&[-1.0, 0.2])).is_err());
}
