use proptest::prelude::*;

use super::*;

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
}

#[test]
fn probabilities_by_hand() {
    // Proportional: 100 : 300 : 600.
    let p = task_probabilities(&[100, 300, 600], 1.0).unwrap();
    assert!(close(&p, &[0.1, 0.3, 0.6], 1e-15), "{p:?}");
    // tau = 2: square roots 10 : 20 : 30 of sizes 100, 400, 900.
    let p = task_probabilities(&[100, 400, 900], 2.0).unwrap();
    assert!(close(&p, &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0], 1e-12), "{p:?}");
    // tau = 0.5: squares 1 : 4.
    let p = task_probabilities(&[1, 2], 0.5).unwrap();
    assert!(close(&p, &[0.2, 0.8], 1e-12), "{p:?}");
    // Uniform over the non-empty tasks; an empty task gets 0 whatever tau.
    let p = task_probabilities(&[5, 0, 5000], f64::INFINITY).unwrap();
    assert_eq!(p, vec![0.5, 0.0, 0.5]);
    // Huge sizes and a tiny tau stay finite.
    let p = task_probabilities(&[usize::MAX, usize::MAX / 2], 1e-3).unwrap();
    assert!(p.iter().all(|x| x.is_finite()) && p[0] > 0.999, "{p:?}");
}

#[test]
fn bad_inputs_error() {
    assert!(matches!(task_probabilities(&[], 1.0), Err(Error::Empty { .. })));
    let e = task_probabilities(&[0, 0], 1.0).unwrap_err().to_string();
    assert!(e.contains("every task is empty"), "{e}");
    for tau in [0.0, -1.0, f64::NAN] {
        let e = task_probabilities(&[1, 2], tau).unwrap_err().to_string();
        assert!(e.contains("tau"), "{e}");
    }
}

#[test]
fn sampling_rules_parse_and_display() {
    for (text, rule) in [
        ("proportional", TaskSampling::Proportional),
        ("uniform", TaskSampling::Uniform),
        ("temperature:2", TaskSampling::Temperature(2.0)),
        ("temperature:0.5", TaskSampling::Temperature(0.5)),
    ] {
        assert_eq!(text.parse::<TaskSampling>().unwrap(), rule);
        assert_eq!(rule.to_string(), text);
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(serde_json::from_str::<TaskSampling>(&json).unwrap(), rule);
    }
    assert_eq!(TaskSampling::Proportional.tau(), 1.0);
    assert_eq!(TaskSampling::Uniform.tau(), f64::INFINITY);
    for bad in ["temperature:0", "temperature:-1", "temperature:inf", "temperature:", "temp", ""] {
        let e = bad.parse::<TaskSampling>().unwrap_err().to_string();
        assert!(e.contains("temperature:<tau>"), "{bad}: {e}");
    }
}

#[test]
fn empty_tasks_are_never_drawn() {
    let mut s = TaskSampler::new(&[0, 3, 0, 1, 0], TaskSampling::Uniform, 1).unwrap();
    let mut counts = [0; 5];
    s.fill_batch(2000, &mut counts);
    assert_eq!((counts[0], counts[2], counts[4]), (0, 0, 0), "{counts:?}");
    assert!(counts[1] > 850 && counts[3] > 850, "{counts:?}");
}

#[test]
fn same_seed_same_sequence_other_seed_another() {
    let draw = |seed| {
        let mut s = TaskSampler::new(&[10, 20, 30], TaskSampling::Proportional, seed).unwrap();
        (0..64).map(|_| s.next_task()).collect::<Vec<_>>()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
}

#[test]
fn restore_continues_exactly_and_checks_the_seed() {
    let mut a = TaskSampler::new(&[10, 20, 30], TaskSampling::Temperature(3.0), 9).unwrap();
    let all: Vec<usize> = (0..100).map(|_| a.next_task()).collect();
    let mut b = TaskSampler::new(&[10, 20, 30], TaskSampling::Temperature(3.0), 9).unwrap();
    for _ in 0..37 {
        b.next_task();
    }
    let saved = serde_json::to_string(&b.state()).unwrap();
    let mut c = TaskSampler::new(&[10, 20, 30], TaskSampling::Temperature(3.0), 9).unwrap();
    c.restore(serde_json::from_str(&saved).unwrap()).unwrap();
    let rest: Vec<usize> = (37..100).map(|_| c.next_task()).collect();
    assert_eq!(rest, all[37..]);
    let mut other = TaskSampler::new(&[10, 20, 30], TaskSampling::Temperature(3.0), 10).unwrap();
    let e = other.restore(b.state()).unwrap_err().to_string();
    assert!(e.contains("seed 9") && e.contains("seed 10"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn probabilities_are_a_distribution_ordered_by_size(
        sizes in prop::collection::vec(0usize..100_000, 1..8),
        tau in prop_oneof![Just(1.0), Just(f64::INFINITY), 0.1f64..20.0],
    ) {
        prop_assume!(sizes.iter().any(|&n| n > 0));
        let p = task_probabilities(&sizes, tau).unwrap();
        prop_assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..sizes.len() {
            prop_assert!(p[i].is_finite() && p[i] >= 0.0);
            prop_assert_eq!(p[i] == 0.0, sizes[i] == 0);
            for j in 0..sizes.len() {
                if sizes[i] <= sizes[j] {
                    prop_assert!(p[i] <= p[j] + 1e-15);
                }
            }
        }
        if tau == 1.0 {
            let total: usize = sizes.iter().sum();
            for i in 0..sizes.len() {
                prop_assert!((p[i] - sizes[i] as f64 / total as f64).abs() < 1e-12);
            }
        }
        if tau == f64::INFINITY {
            let nonempty = sizes.iter().filter(|&&n| n > 0).count() as f64;
            for i in 0..sizes.len() {
                if sizes[i] > 0 {
                    prop_assert!((p[i] - 1.0 / nonempty).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn large_tau_tends_to_uniform_and_flattens_monotonically(
        sizes in prop::collection::vec(1usize..100_000, 2..6),
        tau in 0.2f64..10.0,
    ) {
        let p = task_probabilities(&sizes, tau).unwrap();
        let flatter = task_probabilities(&sizes, 2.0 * tau).unwrap();
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        prop_assert!(max(&flatter) <= max(&p) + 1e-12, "{:?} vs {:?}", flatter, p);
        let far = task_probabilities(&sizes, 1e9).unwrap();
        let u = 1.0 / sizes.len() as f64;
        prop_assert!(far.iter().all(|&x| (x - u).abs() < 1e-6), "{:?}", far);
    }

    #[test]
    fn shares_converge_to_the_probabilities(
        sizes in prop::collection::vec(0usize..1000, 2..5),
        tau in prop_oneof![Just(1.0), Just(f64::INFINITY), 0.5f64..5.0],
        seed in any::<u64>(),
    ) {
        prop_assume!(sizes.iter().any(|&n| n > 0));
        let sampling = if tau == f64::INFINITY { TaskSampling::Uniform } else { TaskSampling::Temperature(tau) };
        let mut s = TaskSampler::new(&sizes, sampling, seed).unwrap();
        let draws = 20_000usize;
        let mut counts = vec![0usize; sizes.len()];
        for _ in 0..draws / 50 {
            let mut batch = vec![0usize; sizes.len()];
            s.fill_batch(50, &mut batch);
            prop_assert_eq!(batch.iter().sum::<usize>(), 50);
            for (c, b) in counts.iter_mut().zip(&batch) {
                *c += b;
            }
        }
        for (i, &p) in s.probabilities().iter().enumerate() {
            let share = counts[i] as f64 / draws as f64;
            // Six binomial standard deviations (a false alarm has probability ~2e-9).
            let sd = (p * (1.0 - p) / draws as f64).sqrt();
            prop_assert!((share - p).abs() <= 6.0 * sd + 1e-12, "task {}: share {} p {}", i, share, p);
        }
    }
}
