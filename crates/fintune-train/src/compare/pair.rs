//! `fintune pair`: two methods of `results.json` files (of one matrix or of two, for example
//! two backbones run on the same cross-validation cells) paired over the cells and seeds they
//! share, with the statistics of the matrix's own tables: mean ± std, the relative change of
//! the mean with its paired bootstrap 95% interval, the paired t-test, the Wilcoxon
//! signed-rank test and the number of pairs where the second method is better.
//!
//! Runs are matched by data set, cell and seed (the cross-validation seed is a function of
//! the cell, the same for every method and backbone), never by their order in the files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::results::{mean_std, MeanStd, Reported, Results, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED};
use super::RunResult;
use crate::stats::{bootstrap_rel_change, paired_t, wilcoxon, wilcoxon_auto, Interval, TestResult};
use crate::{Error, Result};

/// One side of a pairing: a method of a `results.json` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// The `results.json` file.
    pub file: PathBuf,
    /// The method id.
    pub method: String,
}

/// One metric of the two methods over their pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedMetric {
    /// The metric.
    pub metric: Reported,
    /// Number of pairs with a value on both sides.
    pub n: usize,
    /// The first method (the baseline).
    pub base: MeanStd,
    /// The second method.
    pub other: MeanStd,
    /// `mean(other) / mean(base) - 1` and its paired percentile bootstrap 95% interval
    /// ([`BOOTSTRAP_RESAMPLES`] resamples, seed [`BOOTSTRAP_SEED`]); none when the baseline's
    /// mean is zero in a resample.
    pub change: Option<Interval>,
    /// Paired t-test.
    pub t: Option<TestResult>,
    /// Wilcoxon signed-rank test: scipy's defaults with cross-validation cells, exact over
    /// seeds of the fixed protocol (as in `results.json`).
    pub wilcoxon: Option<TestResult>,
    /// Pairs where the second method is better (lower for errors, higher otherwise).
    pub better_in: usize,
}

/// Two methods on one data set, paired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pairing {
    /// The data set.
    pub dataset: String,
    /// The baseline.
    pub base: Side,
    /// The method compared with it.
    pub other: Side,
    /// The pairs, as `<cell>/seed<S>` (or `seed<S>` with the fixed protocol).
    pub pairs: Vec<String>,
    /// Runs of the baseline without a partner.
    pub unpaired_base: Vec<String>,
    /// Runs of the other method without a partner.
    pub unpaired_other: Vec<String>,
    /// Every metric both sides report, in table order.
    pub metrics: Vec<PairedMetric>,
}

fn key(r: &RunResult) -> String {
    match &r.cell {
        Some(c) => format!("{c}/seed{}", r.seed),
        None => format!("seed{}", r.seed),
    }
}

/// Refuses a method the file has no runs of, naming the ones it has.
fn has_method(results: &Results, side: &Side) -> Result<()> {
    if results.runs.iter().any(|r| r.method == side.method) {
        return Ok(());
    }
    let mut methods: Vec<&str> = results.runs.iter().map(|r| r.method.as_str()).collect();
    methods.sort_unstable();
    methods.dedup();
    Err(Error::Pair(format!(
        "{} has no runs of method `{}` (it has: {})",
        side.file.display(),
        side.method,
        methods.join(", ")
    )))
}

/// The runs of `side` on `dataset` by key; an error names what the file holds instead.
fn runs_of<'a>(
    results: &'a Results,
    side: &Side,
    dataset: &str,
) -> Result<BTreeMap<String, &'a RunResult>> {
    has_method(results, side)?;
    let mut out = BTreeMap::new();
    for r in results.runs.iter().filter(|r| r.method == side.method && r.dataset == dataset) {
        if r.variant.is_some() {
            return Err(Error::Pair(format!(
                "{}: `{}` has static-grid runs (one per weight); pair a method with one run per cell and seed",
                side.file.display(),
                side.method
            )));
        }
        if out.insert(key(r), r).is_some() {
            return Err(Error::Pair(format!(
                "{}: `{}` on {dataset} has two runs for {}",
                side.file.display(),
                side.method,
                key(r)
            )));
        }
    }
    if out.is_empty() {
        return Err(Error::Pair(format!(
            "{} has no runs of `{}` on {dataset}",
            side.file.display(),
            side.method
        )));
    }
    Ok(out)
}

/// The data sets both sides have runs on.
fn shared_datasets(a: (&Results, &Side), b: (&Results, &Side)) -> Vec<String> {
    let sets = |(r, s): (&Results, &Side)| -> Vec<String> {
        let mut v: Vec<String> =
            r.runs.iter().filter(|x| x.method == s.method).map(|x| x.dataset.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let sb = sets(b);
    sets(a).into_iter().filter(|d| sb.contains(d)).collect()
}

/// Pairs `other` with `base` on `dataset` (or on the one data set both have runs on).
/// Refused: a method a file lacks, no or several shared data sets without `dataset`, one file
/// of the fixed protocol and one of cross-validation, no shared cell and seed, grid methods.
pub fn pair(
    base: (&Results, Side),
    other: (&Results, Side),
    dataset: Option<&str>,
) -> Result<Pairing> {
    let ((rb, sb), (ro, so)) = (base, other);
    if rb.cv.is_some() != ro.cv.is_some() {
        return Err(Error::Pair(format!(
            "{} and {} come from different protocols (one fixed split, one cross-validation)",
            sb.file.display(),
            so.file.display()
        )));
    }
    let dataset = match dataset {
        Some(d) => d.to_owned(),
        None => {
            let shared = shared_datasets((rb, &sb), (ro, &so));
            match shared.as_slice() {
                [one] => one.clone(),
                [] => {
                    has_method(rb, &sb)?;
                    has_method(ro, &so)?;
                    return Err(Error::Pair(format!(
                        "`{}` and `{}` share no data set",
                        sb.method, so.method
                    )));
                }
                many => {
                    return Err(Error::Pair(format!(
                        "`{}` and `{}` share the data sets {}; choose one with --dataset",
                        sb.method,
                        so.method,
                        many.join(", ")
                    )))
                }
            }
        }
    };
    let a = runs_of(rb, &sb, &dataset)?;
    let b = runs_of(ro, &so, &dataset)?;
    let pairs: Vec<String> = a.keys().filter(|k| b.contains_key(*k)).cloned().collect();
    if pairs.is_empty() {
        return Err(Error::Pair(format!(
            "`{}` ({}) and `{}` ({}) share no cell and seed on {dataset}",
            sb.method,
            a.keys().cloned().collect::<Vec<_>>().join(", "),
            so.method,
            b.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let mut metrics = Vec::new();
    for k in Reported::ALL {
        let (mut xa, mut xb) = (Vec::new(), Vec::new());
        for p in &pairs {
            if let (Some(x), Some(y)) = (k.of(&a[p].test), k.of(&b[p].test)) {
                xa.push(x);
                xb.push(y);
            }
        }
        if xa.is_empty() {
            continue;
        }
        let better_in = xa
            .iter()
            .zip(&xb)
            .filter(|(x, y)| if k.lower_is_better() { y < x } else { y > x })
            .count();
        let wilcoxon = if rb.cv.is_some() { wilcoxon_auto(&xa, &xb) } else { wilcoxon(&xa, &xb) };
        metrics.push(PairedMetric {
            metric: k,
            n: xa.len(),
            base: mean_std(&xa),
            other: mean_std(&xb),
            change: bootstrap_rel_change(&xa, &xb, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED),
            t: paired_t(&xa, &xb),
            wilcoxon,
            better_in,
        });
    }
    let unpaired = |m: &BTreeMap<String, &RunResult>, o: &BTreeMap<String, &RunResult>| {
        m.keys().filter(|k| !o.contains_key(*k)).cloned().collect()
    };
    Ok(Pairing {
        dataset,
        unpaired_base: unpaired(&a, &b),
        unpaired_other: unpaired(&b, &a),
        base: sb,
        other: so,
        pairs,
        metrics,
    })
}

/// A p-value: three decimals, or two significant digits below 0.001.
fn p(t: Option<&TestResult>) -> String {
    t.map_or("n/a".into(), |t| {
        if t.p_value >= 0.001 {
            format!("{:.3}", t.p_value)
        } else {
            format!("{:.1e}", t.p_value)
        }
    })
}

/// The pairing as a Markdown table (one row per metric) with a line naming the sides.
pub fn markdown(p_: &Pairing) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: `{}` ({}) against `{}` ({}), {} pairs{}\n",
        p_.dataset,
        p_.other.method,
        p_.other.file.display(),
        p_.base.method,
        p_.base.file.display(),
        p_.pairs.len(),
        if p_.unpaired_base.is_empty() && p_.unpaired_other.is_empty() {
            String::new()
        } else {
            format!(
                " (unpaired: {} of the baseline, {} of the other)",
                p_.unpaired_base.len(),
                p_.unpaired_other.len()
            )
        }
    );
    let _ = writeln!(
        s,
        "| metric | n | `{}` | `{}` | change [95% bootstrap] | p (t / Wilcoxon) | better in |",
        p_.base.method, p_.other.method
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for m in &p_.metrics {
        let change = m.change.map_or("n/a".into(), |c| {
            format!("{:+.1}% [{:+.1}, {:+.1}]", 100.0 * c.estimate, 100.0 * c.low, 100.0 * c.high)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {:.4} ± {:.4} | {:.4} ± {:.4} | {} | {} / {} | {} of {} |",
            m.metric.name(),
            m.n,
            m.base.mean,
            m.base.std,
            m.other.mean,
            m.other.std,
            change,
            p(m.t.as_ref()),
            p(m.wilcoxon.as_ref()),
            m.better_in,
            m.n
        );
    }
    s
}
