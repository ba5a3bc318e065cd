use ndarray::{Array1, ArrayView1};
use proptest::prelude::*;

use super::*;
use crate::WeightingSpec;

fn close(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
}

fn arrays(g: &[&[f32]]) -> Vec<Array1<f32>> {
    g.iter().map(|v| Array1::from(v.to_vec())).collect()
}

/// One step with these gradients at `step` of 100.
fn step(m: &mut DwaMain, grads: &[&[f32]], step: u64) -> Result<Weights, Error> {
    let owned = arrays(grads);
    let views: Vec<ArrayView1<'_, f32>> = owned.iter().map(|a| a.view()).collect();
    let losses = vec![1.0; grads.len()];
    let mut obs = StepObservation::new(&losses).at(step, 100, 0);
    obs.grads = Some(&views);
    m.weights(&obs)
}

#[test]
fn two_steps_by_hand() {
    let cfg =
        DwaMainConfig { momentum: 0.5, schedule: Schedule::Linear, ..DwaMainConfig::default() };
    let mut m = DwaMain::new(3, cfg).unwrap();

    // Step at progress 0.5: linear schedule s = 1 - 0.5 = 0.5.
    // g0 = (1, 0), G0 = 1.
    // g1 = (1, 1): cos = 1 / sqrt 2, first step so a1 = cos; u1 = 1 * 0.7071 * 0.5 = 0.3536;
    //   bound = 1 * G0 / G1 = 1 / sqrt 2 = 0.7071 does not bind: w1 = 0.3536.
    // g2 = (-1, 0.5): cos < 0, clipped to 0: a2 = 0, w2 = 0; bound = 1 / sqrt 1.25.
    let w = step(&mut m, &[&[1.0, 0.0], &[1.0, 1.0], &[-1.0, 0.5]], 50).unwrap();
    let h = std::f64::consts::FRAC_1_SQRT_2;
    assert!(close(w.terms.get("cos").unwrap(), &[1.0, h, 0.0]));
    assert!(close(w.terms.get("agree").unwrap(), &[1.0, h, 0.0]));
    assert!(close(w.terms.get("schedule").unwrap(), &[1.0, 0.5, 0.5]));
    assert!(close(w.terms.get("u").unwrap(), &[1.0, 0.5 * h, 0.0]));
    assert!(close(w.terms.get("bound").unwrap(), &[1.0, h, 1.0 / 1.25f64.sqrt()]));
    assert!(close(&w.values, &[1.0, 0.5 * h, 0.0]), "{:?}", w.values);

    // Step at progress 0.8: s = 0.2. g0 = (2, 0), G0 = 2.
    // g1 = (0, 1): cos = 0, a1 = 0.5 * 0.7071 + 0.5 * 0 = 0.3536; u1 = 0.3536 * 0.2 = 0.0707;
    //   bound = 2 / 1 = 2: w1 = 0.0707.
    // g2 = (4, 0): cos = 1, a2 = 0.5 * 0 + 0.5 * 1 = 0.5; u2 = 0.5 * 0.2 = 0.1;
    //   bound = 2 / 4 = 0.5: w2 = 0.1.
    let w = step(&mut m, &[&[2.0, 0.0], &[0.0, 1.0], &[4.0, 0.0]], 80).unwrap();
    assert!(close(w.terms.get("cos").unwrap(), &[1.0, 0.0, 1.0]));
    assert!(close(w.terms.get("agree").unwrap(), &[1.0, 0.5 * h, 0.5]));
    assert!(close(w.terms.get("bound").unwrap(), &[1.0, 2.0, 0.5]));
    assert!(close(&w.values, &[1.0, 0.1 * h, 0.1]), "{:?}", w.values);
    // Numerically: (1, 0.0707, 0.1).
    assert!((w.values[1] - 0.070_710_678).abs() < 1e-8);
}

#[test]
fn the_norm_cap_binds() {
    // cap 0.25, g1 = 2 g0: full agreement, constant schedule, so u1 = w_max = 1; the cap allows
    // w1 G1 <= 0.25 G0, i.e. w1 <= 0.25 * 1 / 2 = 0.125.
    let cfg = DwaMainConfig { cap: 0.25, schedule: Schedule::Constant, ..DwaMainConfig::default() };
    let mut m = DwaMain::new(2, cfg).unwrap();
    let w = step(&mut m, &[&[1.0, 0.0], &[2.0, 0.0]], 0).unwrap();
    assert!(close(w.terms.get("u").unwrap(), &[1.0, 1.0]));
    assert!(close(&w.values, &[1.0, 0.125]), "{:?}", w.values);
    assert!((w.values[1] * 2.0 - 0.25 * 1.0).abs() < 1e-15, "w1 G1 = cap G0 exactly");
}

#[test]
fn cosine_schedule_with_an_end_fraction() {
    // p = 0.25: d = (1 + cos(pi / 4)) / 2 = 0.853553; e = 0.2: s = 0.2 + 0.8 d = 0.882843.
    let cfg = DwaMainConfig { schedule_end: 0.2, ..DwaMainConfig::default() };
    let m = DwaMain::new(2, cfg.clone()).unwrap();
    assert!((m.schedule_factor(0.25) - 0.882_842_712_5).abs() < 1e-9);
    assert_eq!(m.schedule_factor(0.0), 1.0);
    assert!((m.schedule_factor(1.0) - 0.2).abs() < 1e-15);
    let mut m = DwaMain::new(2, cfg).unwrap();
    let w = step(&mut m, &[&[1.0], &[1.0]], 25).unwrap();
    assert!((w.values[1] - 0.882_842_712_5).abs() < 1e-9, "{:?}", w.values);
    assert_eq!(Schedule::Linear.decay(2.0), 0.0, "progress is clamped to [0, 1]");
}

#[test]
fn unknown_run_length_means_no_decay() {
    let mut m = DwaMain::new(2, DwaMainConfig::default()).unwrap();
    let g = arrays(&[&[1.0, 2.0], &[1.0, 2.0]]);
    let views: Vec<ArrayView1<'_, f32>> = g.iter().map(|a| a.view()).collect();
    let mut obs = StepObservation::new(&[0.3, 0.2]).at(500, 0, 3);
    obs.grads = Some(&views);
    let w = m.weights(&obs).unwrap();
    assert!(close(&w.values, &[1.0, 1.0]), "{:?}", w.values);
}

#[test]
fn zero_gradients_give_zero_auxiliary_weight() {
    let mut m = DwaMain::new(3, DwaMainConfig::default()).unwrap();
    let w = step(&mut m, &[&[0.0, 0.0], &[1.0, 0.0], &[0.0, 0.0]], 0).unwrap();
    assert_eq!(w.values, vec![1.0, 0.0, 0.0]);
    assert_eq!(w.terms.get("bound").unwrap(), &[1.0, 0.0, 1.0]);
}

#[test]
fn a_single_task_is_the_main_task_alone() {
    let mut m = DwaMain::new(1, DwaMainConfig::default()).unwrap();
    assert!(!m.needs_gradients());
    let w = m.weights(&StepObservation::new(&[0.4])).unwrap();
    assert_eq!(w.values, vec![1.0]);
}

#[test]
fn bad_observations_error_and_change_nothing() {
    let mut m = DwaMain::new(2, DwaMainConfig::default()).unwrap();
    step(&mut m, &[&[1.0], &[1.0]], 0).unwrap();
    let before = m.state();
    let e = m.weights(&StepObservation::new(&[1.0, 1.0])).unwrap_err().to_string();
    assert!(e.contains("dwa-main") && e.contains("grads"), "{e}");
    let e = step(&mut m, &[&[1.0], &[1.0, 2.0]], 1).unwrap_err().to_string();
    assert!(e.contains("grads[1] has 2 elements"), "{e}");
    let e = step(&mut m, &[&[1.0], &[f32::NAN]], 1).unwrap_err().to_string();
    assert!(e.contains("grads[1][0]") && e.contains("NaN"), "{e}");
    let e = step(&mut m, &[&[1.0], &[1.0], &[1.0]], 1).unwrap_err().to_string();
    assert!(e.contains("3 entries") && e.contains("2 tasks"), "{e}");
    assert_eq!(m.state(), before);
}

#[test]
fn bad_configs_name_the_field() {
    let bad = |c: DwaMainConfig, field: &str| {
        let e = DwaMain::new(2, c).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    };
    bad(DwaMainConfig { w_max: 0.0, ..Default::default() }, "w_max");
    bad(DwaMainConfig { cap: f64::INFINITY, ..Default::default() }, "cap");
    bad(DwaMainConfig { momentum: 1.0, ..Default::default() }, "momentum");
    bad(DwaMainConfig { schedule_end: 1.5, ..Default::default() }, "schedule_end");
    let sw = SampleWeightConfig { min: 1.5, ..Default::default() };
    bad(DwaMainConfig { sample_weights: sw, ..Default::default() }, "sample_weights.min");
    assert!(DwaMain::new(0, DwaMainConfig::default()).is_err());
}

#[test]
fn spec_parses_displays_builds_and_configures() {
    let spec: WeightingSpec = "dwa-main".parse().unwrap();
    assert_eq!(spec, WeightingSpec::DwaMain);
    assert_eq!(spec.to_string(), "dwa-main");
    let m = spec.build(3).unwrap();
    assert_eq!(m.name(), "dwa-main");
    assert_eq!(
        (m.needs_grad_norms(), m.needs_gradients(), m.needs_batch(), m.needs_post_step_losses()),
        (false, true, false, false)
    );
    assert!(!WeightingSpec::all_defaults().contains(&WeightingSpec::DwaMain));
    let cfg: crate::WeightingConfig = serde_json::from_value(serde_json::json!({
        "dwa-main": {"cap": 2.0, "schedule": "linear", "sample_weights": {"power": 1.0}}
    }))
    .unwrap();
    assert_eq!(cfg.dwa_main.cap, 2.0);
    assert_eq!(cfg.dwa_main.schedule, Schedule::Linear);
    assert_eq!(cfg.dwa_main.sample_weights.power, 1.0);
    assert_eq!(cfg.dwa_main.w_max, 1.0, "other fields keep their defaults");
    let e = serde_json::from_value::<crate::WeightingConfig>(serde_json::json!({
        "dwa-main": {"kap": 2.0}
    }))
    .unwrap_err()
    .to_string();
    assert!(e.contains("kap"), "{e}");
    let e = "dwa-mian".parse::<WeightingSpec>().unwrap_err().to_string();
    assert!(e.contains("dwa-main"), "the error lists the new name: {e}");
}

#[test]
fn main_sample_weights_use_the_config() {
    let cfg = DwaMainConfig {
        sample_weights: SampleWeightConfig { power: 1.0, ..Default::default() },
        ..Default::default()
    };
    let m = DwaMain::new(2, cfg).unwrap();
    let mut out = [0.0; 2];
    m.main_sample_weights(&[1.0, 3.0], &mut out).unwrap();
    assert!(close(&out, &[0.5, 1.5]), "{out:?}");
}

/// Random gradients for `t` tasks of length `n`; entries often exactly 0.
fn grads(t: usize) -> impl Strategy<Value = Vec<Vec<f32>>> {
    (1usize..6).prop_flat_map(move |n| {
        prop::collection::vec(
            prop::collection::vec(prop_oneof![1 => Just(0.0f32), 4 => -10.0f32..10.0], n),
            t,
        )
    })
}

fn config() -> impl Strategy<Value = DwaMainConfig> {
    (
        0.05f64..3.0,
        0.05f64..3.0,
        0.0f64..0.99,
        prop_oneof![Just(Schedule::Constant), Just(Schedule::Linear), Just(Schedule::Cosine)],
        0.0f64..=1.0,
    )
        .prop_map(|(w_max, cap, momentum, schedule, schedule_end)| DwaMainConfig {
            w_max,
            cap,
            momentum,
            schedule,
            schedule_end,
            ..DwaMainConfig::default()
        })
}

fn run_steps(m: &mut DwaMain, steps: &[Vec<Vec<f32>>], scale: f32) -> Vec<(Weights, Vec<f64>)> {
    let total = steps.len() as u64;
    steps
        .iter()
        .enumerate()
        .map(|(k, g)| {
            let owned: Vec<Array1<f32>> =
                g.iter().map(|v| Array1::from_iter(v.iter().map(|x| x * scale))).collect();
            let views: Vec<ArrayView1<'_, f32>> = owned.iter().map(|a| a.view()).collect();
            let norms: Vec<f64> = owned
                .iter()
                .map(|a| a.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt())
                .collect();
            let losses = vec![0.5; g.len()];
            let mut obs = StepObservation::new(&losses).at(k as u64, total, 0);
            obs.grads = Some(&views);
            (m.weights(&obs).unwrap(), norms)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn main_is_one_aux_bounded_and_capped(
        t in 2usize..=5,
        cfg in config(),
        seed_steps in prop::collection::vec(grads(5), 1..12),
    ) {
        // Keep the first t tasks (and one common length) of each drawn step.
        let steps: Vec<Vec<Vec<f32>>> = seed_steps.into_iter().map(|g| g[..t].to_vec()).collect();
        let mut m = DwaMain::new(t, cfg.clone()).unwrap();
        for (w, norms) in run_steps(&mut m, &steps, 1.0) {
            prop_assert_eq!(w.values.len(), t);
            prop_assert_eq!(w.values[0], 1.0);
            for i in 1..t {
                let x = w.values[i];
                prop_assert!(x.is_finite() && (0.0..=cfg.w_max).contains(&x), "w = {:?}", w.values);
                prop_assert!(x * norms[i] <= cfg.cap * norms[0] * (1.0 + 1e-12) + 1e-300,
                    "cap: w {x} G_i {} G_0 {}", norms[i], norms[0]);
            }
            for (_, v) in w.terms.iter() {
                prop_assert!(v.iter().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn invariant_to_scaling_all_gradients(
        t in 2usize..=5,
        cfg in config(),
        seed_steps in prop::collection::vec(grads(5), 1..8),
        scale in prop_oneof![Just(1e-3f32), Just(0.5f32), Just(4.0f32), Just(1e3f32)],
    ) {
        let steps: Vec<Vec<Vec<f32>>> = seed_steps.into_iter().map(|g| g[..t].to_vec()).collect();
        let mut a = DwaMain::new(t, cfg.clone()).unwrap();
        let mut b = DwaMain::new(t, cfg).unwrap();
        let wa = run_steps(&mut a, &steps, 1.0);
        let wb = run_steps(&mut b, &steps, scale);
        // Scaling f32 gradients rounds each element anew (relative 6e-8), so a cosine moves by
        // about 1e-7 absolute; a weight proportional to a cosine near 0 (w = 7.3e-4 in the
        // committed regression case) then moves by about 1e-4 relative. Hence the absolute floor
        // of 1e-6, still far below what a missing normalisation would change (order 1).
        for ((x, _), (y, _)) in wa.iter().zip(&wb) {
            for (p, q) in x.values.iter().zip(&y.values) {
                prop_assert!((p - q).abs() <= 1e-5 * p.abs().max(0.1), "{:?} vs {:?}", x.values, y.values);
            }
        }
    }

    #[test]
    fn disagreeing_auxiliaries_get_zero_without_smoothing(
        t in 2usize..=5,
        g in grads(5),
    ) {
        let g = g[..t].to_vec();
        // Every auxiliary points against the main gradient: g_i = -g_0 (or zero).
        let flipped: Vec<Vec<f32>> = (0..t)
            .map(|i| if i == 0 { g[0].clone() } else { g[0].iter().map(|x| -x * (i as f32)).collect() })
            .collect();
        let cfg = DwaMainConfig { momentum: 0.0, ..DwaMainConfig::default() };
        let mut m = DwaMain::new(t, cfg).unwrap();
        let (w, _) = run_steps(&mut m, &[flipped], 1.0).remove(0);
        prop_assert!(w.values[1..].iter().all(|&x| x == 0.0), "{:?}", w.values);
    }

    #[test]
    fn schedules_fall_from_one_to_the_end_fraction(
        p in 0.0f64..=1.0,
        q in 0.0f64..=1.0,
        end in 0.0f64..=1.0,
    ) {
        for schedule in [Schedule::Constant, Schedule::Linear, Schedule::Cosine] {
            let m = DwaMain::new(2, DwaMainConfig { schedule, schedule_end: end, ..Default::default() }).unwrap();
            let (lo, hi) = (p.min(q), p.max(q));
            prop_assert!(m.schedule_factor(hi) <= m.schedule_factor(lo) + 1e-15);
            let s = m.schedule_factor(p);
            prop_assert!(s >= end - 1e-15 && s <= 1.0 + 1e-15);
        }
    }

    #[test]
    fn resumes_bit_identically(
        cfg in config(),
        seed_steps in prop::collection::vec(grads(3), 2..10),
        split_at in 0usize..10,
    ) {
        let split = split_at.min(seed_steps.len() - 1);
        let mut a = DwaMain::new(3, cfg.clone()).unwrap();
        let all = run_steps(&mut a, &seed_steps, 1.0);
        let mut b = DwaMain::new(3, cfg.clone()).unwrap();
        run_steps(&mut b, &seed_steps[..split], 1.0);
        let text = serde_json::to_string(&b.state()).unwrap();
        let mut c = DwaMain::new(3, cfg).unwrap();
        c.restore(&serde_json::from_str(&text).unwrap()).unwrap();
        // Replay the tail with the same step indices (and so the same progress) as `all`.
        let total = seed_steps.len() as u64;
        for (k, g) in seed_steps.iter().enumerate().skip(split) {
            let owned: Vec<Array1<f32>> = g.iter().map(|v| Array1::from(v.clone())).collect();
            let views: Vec<ArrayView1<'_, f32>> = owned.iter().map(|x| x.view()).collect();
            let losses = vec![0.5; 3];
            let mut obs = StepObservation::new(&losses).at(k as u64, total, 0);
            obs.grads = Some(&views);
            let w = c.weights(&obs).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&w.values), bits(&all[k].0.values));
        }
    }
}

#[test]
fn tampered_state_is_rejected() {
    let m = DwaMain::new(2, DwaMainConfig::default()).unwrap();
    let mut s = m.state();
    s["state"]["agree"] = serde_json::json!(["1.0", "2.0"]);
    let mut n = DwaMain::new(2, DwaMainConfig::default()).unwrap();
    let e = n.restore(&s).unwrap_err().to_string();
    assert!(e.contains("agree"), "{e}");
}
