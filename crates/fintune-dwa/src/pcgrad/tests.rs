use super::*;
use ndarray::array;

fn combine(p: &mut PcGrad, g: &[Array1<f32>]) -> GradientCombination {
    let views: Vec<ArrayView1<'_, f32>> = g.iter().map(|a| a.view()).collect();
    p.combine_gradients(&views).unwrap().unwrap()
}

#[test]
fn conflicting_pair_by_hand() {
    // g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1.
    // g1_pc = g1 - (-1 / 2) g2 = (0.5, 0.5); g2_pc = g2 - (-1 / 1) g1 = (0, 1); sum (0.5, 1.5).
    let mut p = PcGrad::new(2, PcGradConfig::default()).unwrap();
    let c = combine(&mut p, &[array![1.0, 0.0], array![-1.0, 1.0]]);
    assert_eq!(c.gradient, array![0.5, 1.5]);
    assert_eq!(c.coefficients, vec![2.0, 1.5]);
    assert_eq!(c.projections, 2);
    // The combination conflicts with neither task.
    assert!(c.gradient[0] * 1.0 >= 0.0 && -c.gradient[0] + c.gradient[1] >= 0.0);
}

#[test]
fn agreeing_gradients_are_summed() {
    let mut p = PcGrad::new(2, PcGradConfig::default()).unwrap();
    let c = combine(&mut p, &[array![1.0, 0.0], array![1.0, 1.0]]);
    assert_eq!(c.gradient, array![2.0, 1.0]);
    assert_eq!(c.coefficients, vec![1.0, 1.0]);
    assert_eq!(c.projections, 0);
}

/// The paper's algorithm on explicit vectors (f64), drawing the same orders.
fn reference(g: &[Vec<f64>], seed: u64) -> (Vec<f64>, u64) {
    let t = g.len();
    let mut rng = SplitMix64::new(seed);
    let mut sum = vec![0.0; g[0].len()];
    for i in 0..t {
        let mut gi = g[i].clone();
        let mut order: Vec<usize> = (0..t).filter(|&j| j != i).collect();
        rng.shuffle(&mut order);
        for j in order {
            let d: f64 = gi.iter().zip(&g[j]).map(|(a, b)| a * b).sum();
            let n2: f64 = g[j].iter().map(|x| x * x).sum();
            if d < 0.0 {
                for (a, b) in gi.iter_mut().zip(&g[j]) {
                    *a -= d / n2 * b;
                }
            }
        }
        for (s, x) in sum.iter_mut().zip(&gi) {
            *s += x;
        }
    }
    (sum, rng.state)
}

#[test]
fn gram_space_algorithm_matches_the_vector_algorithm() {
    // Five tasks with random, often conflicting gradients, many seeds: the order matters here.
    let mut gen = SplitMix64::new(42);
    let mut uniform = || (gen.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let mut orders_mattered = false;
    for seed in 0..50u64 {
        let g: Vec<Vec<f64>> = (0..5).map(|_| (0..40).map(|_| uniform()).collect()).collect();
        let g32: Vec<Array1<f32>> =
            g.iter().map(|v| v.iter().map(|&x| x as f32).collect()).collect();
        let g: Vec<Vec<f64>> =
            g32.iter().map(|v| v.iter().map(|&x| f64::from(x)).collect()).collect();
        let (want, rng_after) = reference(&g, seed);
        let mut p = PcGrad::new(5, PcGradConfig { seed }).unwrap();
        let got = combine(&mut p, &g32);
        assert_eq!(p.rng.state, rng_after, "same random draws");
        for (a, b) in got.gradient.iter().zip(&want) {
            assert!((f64::from(*a) - b).abs() < 1e-5 * (1.0 + b.abs()), "seed {seed}: {a} vs {b}");
        }
        let (other, _) = reference(&g, seed + 1000);
        if other.iter().zip(&want).any(|(a, b)| (a - b).abs() > 1e-6) {
            orders_mattered = true;
        }
    }
    assert!(orders_mattered, "the test must exercise order-dependent cases");
}

#[test]
fn shape_errors_are_reported() {
    let mut p = PcGrad::new(2, PcGradConfig::default()).unwrap();
    let a = array![1.0f32, 2.0];
    let b = array![1.0f32];
    let e = p.combine_gradients(&[a.view(), b.view()]).unwrap_err().to_string();
    assert!(e.contains("gradient 1 has 1 elements, expected 2"), "{e}");
    let e = p.combine_gradients(&[a.view()]).unwrap_err().to_string();
    assert!(e.contains("1 entries but there are 2 tasks"), "{e}");
    let n = array![f32::NAN, 1.0];
    let e = p.combine_gradients(&[a.view(), n.view()]).unwrap_err().to_string();
    assert!(e.contains("gradient 1 has non-finite"), "{e}");
}

#[test]
fn strided_views_work() {
    let mut p = PcGrad::new(2, PcGradConfig::default()).unwrap();
    let a = array![1.0f32, 9.0, 0.0, 9.0];
    let b = array![-1.0f32, 9.0, 1.0, 9.0];
    let views = [a.slice(ndarray::s![..;2]), b.slice(ndarray::s![..;2])];
    let c = p.combine_gradients(&views).unwrap().unwrap();
    assert_eq!(c.gradient, array![0.5, 1.5]);
}

#[test]
fn weights_are_equal_and_gradients_are_needed() {
    let mut p = PcGrad::new(2, PcGradConfig::default()).unwrap();
    assert!(p.needs_gradients());
    assert_eq!(p.weights(&StepObservation::new(&[0.1, 0.2])).unwrap().values, vec![1.0, 1.0]);
}

#[test]
fn combine_into_matches_combine_gradients() {
    for t in [2usize, 3] {
        let g: Vec<Array1<f32>> = (0..t)
            .map(|i| Array1::from_iter((0..19).map(|k| ((k * 7 + i * 5) % 11) as f32 - 5.0)))
            .collect();
        let mut p = PcGrad::new(t, PcGradConfig { seed: 9 }).unwrap();
        let mut q = PcGrad::new(t, PcGradConfig { seed: 9 }).unwrap();
        let c = combine(&mut p, &g);
        let slices: Vec<&[f32]> = g.iter().map(|a| a.as_slice().unwrap()).collect();
        let mut out = vec![0.0f32; 19];
        let (coefs, projections) = q.combine_into(&slices, &mut out).unwrap();
        assert_eq!(c.gradient.to_vec(), out);
        assert_eq!((c.coefficients, c.projections), (coefs, projections));
        assert!(projections > 0, "t = {t}: the data must conflict");
    }
}
