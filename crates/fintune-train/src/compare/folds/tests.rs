use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

/// Groups seen in more than one part of a cell.
fn straddling(cell: &Cell, groups: &[u32]) -> Vec<u32> {
    let mut part: HashMap<u32, usize> = HashMap::new();
    let mut bad = Vec::new();
    for (p, rows) in [&cell.train, &cell.val, &cell.test].into_iter().enumerate() {
        for &i in rows {
            if *part.entry(groups[i]).or_insert(p) != p {
                bad.push(groups[i]);
            }
        }
    }
    bad
}

fn check_structure(cells: &[Cell], labels: &[usize], groups: &[u32], spec: CvSpec) {
    let n = labels.len();
    assert_eq!(cells.len(), spec.cells());
    for (i, c) in cells.iter().enumerate() {
        assert_eq!((c.repeat, c.fold), (i / spec.folds, i % spec.folds), "repeat-major order");
        // The three parts partition the rows.
        let mut all: Vec<usize> = c.train.iter().chain(&c.val).chain(&c.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "cell {}", c.name());
        for p in [&c.train, &c.val, &c.test] {
            assert!(p.windows(2).all(|w| w[0] < w[1]), "parts are ascending");
            assert!(!p.is_empty());
        }
        assert!(straddling(c, groups).is_empty(), "cell {} splits a group", c.name());
    }
    // Every row is tested exactly once per repeat.
    for r in 0..spec.repeats {
        let mut tested = vec![0usize; n];
        for c in cells.iter().filter(|c| c.repeat == r) {
            for &i in &c.test {
                tested[i] += 1;
            }
        }
        assert!(tested.iter().all(|&t| t == 1), "repeat {r}: {tested:?}");
    }
}

fn spec_strategy() -> impl Strategy<Value = CvSpec> {
    (2usize..7, 1usize..4).prop_map(|(folds, repeats)| CvSpec { folds, repeats })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Singleton groups: every quintile's count in every test fold is the floor or the
    /// ceiling of its exact share (within 1 row), so fold sizes are within 5 rows of n/k.
    #[test]
    fn singleton_groups_give_folds_balanced_to_one_row_per_stratum(
        labels in prop::collection::vec(0usize..5, 40..300),
        spec in spec_strategy(),
        seed in any::<u64>(),
    ) {
        let groups: Vec<u32> = (0..labels.len() as u32).collect();
        let cells = cv_cells(&labels, &groups, spec, seed).unwrap();
        check_structure(&cells, &labels, &groups, spec);
        let k = spec.folds as f64;
        for c in &cells {
            for s in 0..5 {
                let total = labels.iter().filter(|&&l| l == s).count() as f64;
                let x = c.test.iter().filter(|&&i| labels[i] == s).count() as f64;
                prop_assert!((x - total / k).abs() < 1.0, "cell {} stratum {s}: {x} of {total}", c.name());
            }
            prop_assert!((c.test.len() as f64 - labels.len() as f64 / k).abs() < 5.0);
        }
        prop_assert_eq!(&cells, &cv_cells(&labels, &groups, spec, seed).unwrap());
    }

    /// Label-pure groups of up to 4 rows: no group straddles a cell's parts, and each
    /// quintile's count in each test fold is within its largest group of the exact share.
    #[test]
    fn grouped_folds_keep_groups_and_balance_to_group_granularity(
        sizes in prop::collection::vec((1usize..5, 0usize..5), 30..150),
        spec in spec_strategy(),
        seed in any::<u64>(),
    ) {
        let mut labels = Vec::new();
        let mut groups = Vec::new();
        for (g, &(size, label)) in sizes.iter().enumerate() {
            labels.extend(std::iter::repeat_n(label, size));
            groups.extend(std::iter::repeat_n(g as u32, size));
        }
        // Interleave rows so groups are not contiguous (7919 is a prime above the row count,
        // so this is a permutation).
        let order: Vec<usize> = (0..labels.len()).map(|i| (i * 7919) % labels.len()).collect();
        let labels: Vec<usize> = order.iter().map(|&i| labels[i]).collect();
        let groups: Vec<u32> = order.iter().map(|&i| groups[i]).collect();
        let cells = cv_cells(&labels, &groups, spec, seed).unwrap();
        check_structure(&cells, &labels, &groups, spec);
        let k = spec.folds as f64;
        for c in &cells {
            for s in 0..5 {
                let total = labels.iter().filter(|&&l| l == s).count() as f64;
                let largest = sizes.iter().filter(|(_, l)| *l == s).map(|(n, _)| *n).max().unwrap_or(0) as f64;
                let x = c.test.iter().filter(|&&i| labels[i] == s).count() as f64;
                prop_assert!(
                    (x - total / k).abs() < largest.max(1.0),
                    "cell {} stratum {s}: {x} of {total}, largest group {largest}", c.name()
                );
            }
        }
        // Identical across calls; another seed gives other folds.
        prop_assert_eq!(&cells, &cv_cells(&labels, &groups, spec, seed).unwrap());
        prop_assert_ne!(&cells, &cv_cells(&labels, &groups, spec, seed ^ 1).unwrap());
    }
}

#[test]
fn repeats_are_different_partitions_and_cells_have_the_inner_validation_share() {
    let labels: Vec<usize> = (0..500).map(|i| i % 5).collect();
    let groups: Vec<u32> = (0..500).collect();
    let cells = cv_cells(&labels, &groups, CvSpec::default(), 7).unwrap();
    assert_eq!(cells.len(), 10);
    assert_eq!(cells[7].name(), "r2f3");
    assert_ne!(cells[0].test, cells[5].test, "the second repeat is a new partition");
    for c in &cells {
        assert_eq!(c.test.len(), 100);
        // 400 training rows, 1/9 of them held out: 44.4 -> 44 or 45 (within 1 per stratum).
        assert!((c.val.len() as f64 - 400.0 / 9.0).abs() < 5.0, "{}", c.val.len());
    }
}

#[test]
fn bad_specs_and_too_few_groups_are_errors_naming_the_reason() {
    let labels = vec![0usize; 20];
    let groups: Vec<u32> = (0..20).map(|i| i / 10).collect();
    let e = cv_cells(&labels, &groups, CvSpec { folds: 1, repeats: 2 }, 1).unwrap_err();
    assert!(e.to_string().contains("folds must be at least 2"), "{e}");
    let e = cv_cells(&labels, &groups, CvSpec { folds: 5, repeats: 0 }, 1).unwrap_err();
    assert!(e.to_string().contains("repeats must be at least 1"), "{e}");
    // Two groups cannot fill five folds.
    let e = cv_cells(&labels, &groups, CvSpec::default(), 1).unwrap_err();
    assert!(e.to_string().contains("too few text groups"), "{e}");
}

#[test]
fn fixture_cells_keep_equal_texts_together() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/train.jsonl");
    let ds = fintune_data::read_dataset(&[&p], &fintune_data::ReadOptions::default()).unwrap();
    let spec = CvSpec { folds: 3, repeats: 2 };
    let cells = dataset_cells(&ds, spec, 11).unwrap();
    let groups = ds.groups();
    let ids: HashMap<&String, u32> =
        groups.iter().enumerate().map(|(i, g)| (g, i as u32)).collect();
    let gid: Vec<u32> = groups.iter().map(|g| ids[g]).collect();
    let labels = quintile_labels(ds.scores().unwrap());
    check_structure(&cells, &labels, &gid, spec);
    assert_eq!(cells, dataset_cells(&ds, spec, 11).unwrap());
}
