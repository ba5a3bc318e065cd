use super::*;

#[test]
fn histogram_edges_follow_the_written_decimals() {
    let range = ScoreRange::default();
    let edges = bin_edges(range);
    assert_eq!(edges[0], -1.0);
    assert_eq!(edges[10], 1.0);
    assert_eq!(edges[1], -0.8);
    assert_eq!(edges[6], 0.2);
    // Lower edges are inclusive, the last bin is closed.
    assert_eq!(bin_of(-1.0, &edges), 0);
    assert_eq!(bin_of(-0.8, &edges), 1);
    assert_eq!(bin_of(-0.800_000_1, &edges), 0);
    assert_eq!(bin_of(0.0, &edges), 5);
    assert_eq!(bin_of(-0.0, &edges), 5);
    assert_eq!(bin_of(0.2, &edges), 6);
    assert_eq!(bin_of(0.999, &edges), 9);
    assert_eq!(bin_of(1.0, &edges), 9);
}

#[test]
fn score_stats_by_hand() {
    let scores = [-1.0f32, -0.5, 0.0, 0.1, 0.6, 1.0];
    let s = ScoreStats::compute(&scores, ScoreRange::default()).unwrap();
    let mean = (-1.0 - 0.5 + 0.0 + 0.1 + 0.6 + 1.0) / 6.0;
    assert!((s.mean - mean).abs() < 1e-7, "{}", s.mean);
    let var = scores.iter().map(|&x| (f64::from(x) - s.mean).powi(2)).sum::<f64>() / 6.0;
    assert!((s.std - var.sqrt()).abs() < 1e-12);
    assert_eq!((s.min, s.max), (-1.0, 1.0));
    assert_eq!(s.histogram, [1, 0, 1, 0, 0, 2, 0, 0, 1, 1]);
    assert_eq!(s.histogram.iter().sum::<u64>(), 6);
    assert_eq!((s.neutral, s.extreme), (2, 3));
    assert!((s.share_neutral - 2.0 / 6.0).abs() < 1e-12);
    assert!((s.share_extreme - 0.5).abs() < 1e-12);
    assert!(ScoreStats::compute(&[], ScoreRange::default()).is_none());
}

#[test]
fn custom_range_histogram() {
    let range = ScoreRange::new(0.0, 10.0);
    let s = ScoreStats::compute(&[0.0, 0.99, 1.0, 9.5, 10.0], range).unwrap();
    assert_eq!(s.histogram, [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
}

#[test]
fn text_lengths_count_characters() {
    let l = LengthStats::compute(vec![1, 2, 3, 4]);
    assert_eq!((l.min, l.max, l.median, l.p95), (1, 4, 2.5, 4));
    assert!((l.mean - 2.5).abs() < 1e-12);
    let summary = Summary::compute(
        ["héllo", "日本", "a"],
        [Some(0.5), None, Some(-0.5)],
        ScoreRange::default(),
    );
    assert_eq!(summary.rows, 3);
    assert_eq!(summary.labelled_rows, 2);
    assert_eq!((summary.text_chars.min, summary.text_chars.max), (1, 5));
    assert_eq!(summary.text_chars.median, 2.0);
    let p95 = LengthStats::compute((1..=100).collect());
    assert_eq!(p95.p95, 95);
}

#[test]
fn display_shows_every_part() {
    let summary = Summary::compute(["ab", "cde"], [Some(0.5), Some(-0.9)], ScoreRange::default());
    let text = summary.to_string();
    assert!(text.starts_with("rows: 2\n"), "{text}");
    assert!(text.contains("score: mean -0.2000, std 0.7000, min -0.9, max 0.5"), "{text}");
    assert!(text.contains("histogram over [-1, 1] (last bin closed):"), "{text}");
    assert!(text.contains("[-1.00, -0.80) 1"), "{text}");
    assert!(text.contains("[ 0.80,  1.00] 0"), "{text}");
    assert!(text.contains("|score| < 0.2: 0 (0.0%); |score| >= 0.6: 1 (50.0%)"), "{text}");
    assert!(
        text.contains("text length (characters): min 2, median 2.5, mean 2.5, p95 3, max 3"),
        "{text}"
    );
    let unlabelled = Summary::compute(["x"], [None], ScoreRange::default()).to_string();
    assert!(unlabelled.contains("rows: 1 (0 with a score)\nscore: none"), "{unlabelled}");
}
