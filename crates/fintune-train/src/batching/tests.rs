use super::*;

fn lengths(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7919) % 61 + 3).collect()
}

#[test]
fn epoch_batches_cover_every_example_once() {
    let l = lengths(1003);
    let b = epoch_batches(&l, 16, 7, 0);
    let mut all: Vec<usize> = b.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1003).collect::<Vec<_>>());
    assert!(b.iter().all(|x| !x.is_empty() && x.len() <= 16));
    assert_eq!(b.iter().filter(|x| x.len() < 16).count(), 1, "only one partial batch");
}

#[test]
fn epoch_batches_are_deterministic_per_seed_and_epoch() {
    let l = lengths(500);
    assert_eq!(epoch_batches(&l, 8, 1, 2), epoch_batches(&l, 8, 1, 2));
    assert_ne!(epoch_batches(&l, 8, 1, 2), epoch_batches(&l, 8, 1, 3));
    assert_ne!(epoch_batches(&l, 8, 1, 2), epoch_batches(&l, 8, 2, 2));
}

#[test]
fn bucketing_reduces_padding() {
    let l = lengths(800);
    let pad = |b: &[Vec<usize>]| -> usize {
        b.iter()
            .map(|x| {
                x.iter().map(|&i| l[i]).max().unwrap() * x.len()
                    - x.iter().map(|&i| l[i]).sum::<usize>()
            })
            .sum()
    };
    let bucketed = pad(&epoch_batches(&l, 16, 3, 0));
    let random: Vec<Vec<usize>> =
        (0..800).collect::<Vec<_>>().chunks(16).map(<[usize]>::to_vec).collect();
    assert!(bucketed * 3 < pad(&random), "bucketed {bucketed} vs random {}", pad(&random));
}

#[test]
fn eval_batches_sort_by_length() {
    let l = vec![5, 1, 9, 3];
    assert_eq!(eval_batches(&l, 3), vec![vec![1, 3, 0], vec![2]]);
}

#[test]
fn mixed_batches_without_streams_are_the_plain_epoch_batches() {
    let lengths: Vec<usize> = (0..37).map(|i| 3 + (i * 7) % 11).collect();
    for epoch in 0..3 {
        assert_eq!(
            mixed_epoch_batches(&lengths, 8, &[], 5, epoch),
            epoch_batches(&lengths, 8, 5, epoch)
        );
    }
}

#[test]
fn mixed_batches_give_every_task_its_quota_and_cycle_without_repeats() {
    let lengths = vec![4usize; 10];
    let streams =
        [AuxStream { offset: 10, len: 7, quota: 3 }, AuxStream { offset: 17, len: 50, quota: 2 }];
    let batches = mixed_epoch_batches(&lengths, 4, &streams, 9, 1);
    assert_eq!(batches.len(), 3);
    let mut main: Vec<usize> = vec![];
    let mut first: Vec<usize> = vec![];
    for b in &batches {
        main.extend(b.iter().filter(|&&i| i < 10));
        let a: Vec<usize> = b.iter().copied().filter(|&i| (10..17).contains(&i)).collect();
        assert_eq!(a.len(), 3);
        assert_eq!(b.iter().filter(|&&i| i >= 17).count(), 2);
        first.extend(a);
    }
    main.sort_unstable();
    assert_eq!(main, (0..10).collect::<Vec<_>>());
    // 9 draws from 7 examples: the first 7 are a permutation, then a new cycle starts.
    let mut cycle: Vec<usize> = first[..7].to_vec();
    cycle.sort_unstable();
    assert_eq!(cycle, (10..17).collect::<Vec<_>>());
    // Deterministic in (seed, epoch), different across epochs.
    assert_eq!(batches, mixed_epoch_batches(&lengths, 4, &streams, 9, 1));
    assert_ne!(batches, mixed_epoch_batches(&lengths, 4, &streams, 9, 2));
}

#[test]
fn task_slots_follow_the_shares_and_fill_the_batch() {
    // Proportional: 32, 24, 22 examples in 16 slots.
    assert_eq!(task_slots(&[32.0, 24.0, 22.0], 1.0, 16).unwrap(), [7, 5, 4]);
    // Uniform: equal shares.
    assert_eq!(task_slots(&[900.0, 4846.0], f64::INFINITY, 16).unwrap(), [8, 8]);
    // Temperature flattens: tau = 2 gives the small main task more than its size share.
    let t1 = task_slots(&[900.0, 4846.0], 1.0, 16).unwrap();
    let t2 = task_slots(&[900.0, 4846.0], 2.0, 16).unwrap();
    assert!(t2[0] > t1[0], "{t1:?} {t2:?}");
    // Every task keeps one slot, and the batch is always full.
    for w in [[1.0, 1000.0, 1000.0], [1000.0, 1.0, 1.0], [5.0, 5.0, 5.0]] {
        let s = task_slots(&w, 1.0, 4).unwrap();
        assert!(s.iter().all(|&x| x >= 1), "{s:?}");
        assert_eq!(s.iter().sum::<usize>(), 4);
    }
    assert!(task_slots(&[1.0, 1.0, 1.0], 1.0, 2).unwrap_err().contains("--batch-size"));
}
