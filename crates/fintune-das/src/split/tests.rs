use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn per_stratum(parts: &[Vec<usize>], labels: &[usize], label: usize) -> Vec<usize> {
    parts.iter().map(|p| p.iter().filter(|&&i| labels[i] == label).count()).collect()
}

fn assert_partition(parts: &[Vec<usize>], n: usize) {
    let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    for p in parts {
        assert!(p.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn ungrouped_split_is_exact_to_one_per_stratum() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..50 {
        let n = rng.random_range(1..300);
        let k = rng.random_range(1..8);
        let labels: Vec<usize> = (0..n).map(|_| rng.random_range(0..k) * 3).collect();
        let fr: &[f64] = if rng.random_bool(0.5) { &[0.8, 0.2] } else { &[0.7, 0.15, 0.15] };
        let parts = stratified_split(&labels, None, fr, rng.random()).unwrap();
        assert_eq!(parts.len(), fr.len());
        assert_partition(&parts, n);
        for l in 0..k {
            let c = labels.iter().filter(|&&x| x == l * 3).count() as f64;
            for (p, &x) in per_stratum(&parts, &labels, l * 3).iter().enumerate() {
                assert!(
                    (x as f64 - c * fr[p]).abs() < 1.0 + 1e-9,
                    "label {l} part {p}: {x} vs {}",
                    c * fr[p]
                );
            }
        }
    }
}

#[test]
fn same_seed_same_split_other_seed_other_split() {
    let labels: Vec<usize> = (0..200).map(|i| i % 4).collect();
    let a = stratified_split(&labels, None, &[0.8, 0.2], 11).unwrap();
    let b = stratified_split(&labels, None, &[0.8, 0.2], 11).unwrap();
    let c = stratified_split(&labels, None, &[0.8, 0.2], 12).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a[1].len(), 40);
}

#[test]
fn groups_stay_together_and_pure_groups_meet_their_bound() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..40 {
        // Label-pure groups of size 1..=4.
        let ngroups = rng.random_range(1..80);
        let mut labels = Vec::new();
        let mut groups = Vec::new();
        for g in 0..ngroups {
            let l = rng.random_range(0..3usize);
            for _ in 0..rng.random_range(1..=4) {
                labels.push(l);
                groups.push(format!("doc-{g}"));
            }
        }
        let fr = [0.75, 0.25];
        let parts = stratified_split(&labels, Some(&groups), &fr, 9).unwrap();
        assert_partition(&parts, labels.len());
        for g in &groups {
            let homes: Vec<usize> =
                (0..2).filter(|&p| parts[p].iter().any(|&i| &groups[i] == g)).collect();
            assert_eq!(homes.len(), 1, "group {g} split");
        }
        for l in 0..3 {
            let c = labels.iter().filter(|&&x| x == l).count() as f64;
            let gmax = (0..ngroups)
                .map(|g| {
                    let key = format!("doc-{g}");
                    (0..labels.len()).filter(|&i| groups[i] == key && labels[i] == l).count()
                })
                .max()
                .unwrap_or(0) as f64;
            for (p, &x) in per_stratum(&parts, &labels, l).iter().enumerate() {
                assert!(
                    (x as f64 - c * fr[p]).abs() < gmax.max(1.0) + 1e-9,
                    "label {l} part {p}: {x} vs {}, gmax {gmax}",
                    c * fr[p]
                );
            }
        }
    }
}

#[test]
fn mixed_groups_are_kept_whole_and_deterministic() {
    let labels: Vec<usize> = (0..100).map(|i| (i * 7) % 3).collect();
    let groups: Vec<u32> = (0..100).map(|i| i / 5).collect();
    let a = stratified_split_by(&labels, &groups, &[0.6, 0.2, 0.2], 1).unwrap();
    let b = stratified_split_by(&labels, &groups, &[0.6, 0.2, 0.2], 1).unwrap();
    assert_eq!(a, b);
    assert_partition(&a, 100);
    for part in &a {
        for &i in part {
            for j in 0..100 {
                if groups[j] == groups[i] {
                    assert!(part.contains(&j));
                }
            }
        }
    }
    // 20 groups of 5: sizes 60/20/20 are reachable exactly and the greedy finds them.
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![60, 20, 20]);
    // Same split whether groups are u32 or String keys.
    let sg: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    assert_eq!(stratified_split(&labels, Some(&sg), &[0.6, 0.2, 0.2], 1).unwrap(), a);
}

#[test]
fn bad_inputs_are_rejected() {
    assert!(matches!(stratified_split(&[], None, &[1.0], 0), Err(Error::Empty { .. })));
    assert!(matches!(
        stratified_split(&[0, 1], Some(&["a".to_string()]), &[0.5, 0.5], 0),
        Err(Error::LengthMismatch { left: 2, right: 1, .. })
    ));
    for fr in [&[][..], &[0.5, 0.4][..], &[1.2, -0.2][..], &[f64::NAN, 1.0][..], &[1.0, 0.0][..]] {
        assert!(
            matches!(stratified_split(&[0, 1], None, fr, 0), Err(Error::InvalidFractions { .. })),
            "{fr:?}"
        );
    }
    assert_eq!(stratified_split(&[4, 4, 4], None, &[1.0], 0).unwrap(), vec![vec![0, 1, 2]]);
}
