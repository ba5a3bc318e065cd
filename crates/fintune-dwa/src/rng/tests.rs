use super::SplitMix64;

#[test]
fn reference_sequence() {
    // Reference outputs of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
    let mut r = SplitMix64::new(1_234_567);
    let got: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
    assert_eq!(
        got,
        vec![
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ]
    );
}

#[test]
fn below_is_in_range_and_covers_it() {
    let mut r = SplitMix64::new(7);
    let mut seen = [0u32; 5];
    for _ in 0..5000 {
        let x = r.below(5) as usize;
        seen[x] += 1;
    }
    // Each bucket expects 1000; 5 sigma is about 140.
    assert!(seen.iter().all(|&c| (860..1140).contains(&c)), "{seen:?}");
}

#[test]
fn shuffle_is_a_permutation_and_reproducible() {
    let mut a: Vec<usize> = (0..10).collect();
    let mut b = a.clone();
    SplitMix64::new(3).shuffle(&mut a);
    SplitMix64::new(3).shuffle(&mut b);
    assert_eq!(a, b);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_ne!(a, (0..10).collect::<Vec<_>>());
}
