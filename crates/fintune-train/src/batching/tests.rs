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
