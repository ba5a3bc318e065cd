//! Deterministic stratified (and grouped) train/validation/test splits.
//!
//! The split assigns whole groups (a sample is its own group when no groups are given) to
//! parts, one group at a time, largest groups first (ties in a seeded shuffle order). Each
//! group goes to the part where it reduces the squared deviation from the exact per-stratum
//! targets `count_s * fraction_p` most, i.e. the part minimising
//! `sum_s m_s (2 e_ps + m_s)` with `e_ps` the part's current excess over the target of
//! stratum `s` and `m_s` the group's members in stratum `s`. Ties go to the part with the
//! smaller total excess, then the lower part index.
//!
//! Guarantees (all are tested):
//! - the parts are disjoint, cover every index, and each part is sorted ascending;
//! - a group is never split;
//! - the result depends only on `(labels, groups, fractions, seed)`: groups are numbered by
//!   first appearance, never by hash order;
//! - without groups (or with singleton groups), each stratum's count in each part is within 1
//!   of exact: `|x_ps - count_s * f_p| < 1` (so it is the floor or the ceiling);
//! - when every group is label-pure (all members share a label), `|x_ps - count_s * f_p| < g_s`,
//!   where `g_s` is the size of the largest group of stratum `s` (this reduces to the previous
//!   bound for singletons);
//! - with groups that mix labels no per-stratum bound is possible in general (a single group
//!   can hold most of a stratum); the greedy rule above is applied and nothing more is promised.

use std::collections::HashMap;
use std::hash::Hash;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::Error;

/// Tolerance for comparing part costs (targets are fractional).
const TOL: f64 = 1e-9;

/// Splits sample indices `0..labels.len()` into `fractions.len()` parts (e.g. `[0.8, 0.2]` for
/// train/validation or `[0.8, 0.1, 0.1]`), stratified by `labels` and keeping every group
/// (samples with equal `groups[i]`) in one part. See the module docs for what is guaranteed.
///
/// `groups` are strings here for a CLI-friendly signature; use [`stratified_split_by`] for any
/// `Hash + Eq` key.
///
/// ```
/// let labels = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2];
/// let parts = fintune_das::stratified_split(&labels, None, &[0.5, 0.5], 7).unwrap();
/// assert_eq!(parts[0].len() + parts[1].len(), 10);
/// ```
///
/// # Errors
/// Empty labels, `groups` of a different length, or fractions that are not all positive and
/// finite or do not sum to 1 (within `1e-6`).
pub fn stratified_split(
    labels: &[usize],
    groups: Option<&[String]>,
    fractions: &[f64],
    seed: u64,
) -> Result<Vec<Vec<usize>>, Error> {
    match groups {
        Some(g) => stratified_split_by(labels, g, fractions, seed),
        None => {
            let fr = check(labels, None, fractions)?;
            let members = Members {
                starts: (0..=labels.len()).collect(),
                indices: (0..labels.len()).collect(),
            };
            Ok(assign_groups(labels, &members, &fr, seed))
        }
    }
}

/// [`stratified_split`] with any hashable group key (e.g. a `u64` document id or `&str`).
///
/// # Errors
/// As [`stratified_split`].
pub fn stratified_split_by<G: Hash + Eq>(
    labels: &[usize],
    groups: &[G],
    fractions: &[f64],
    seed: u64,
) -> Result<Vec<Vec<usize>>, Error> {
    let fr = check(labels, Some(groups.len()), fractions)?;
    let mut id: HashMap<&G, usize> = HashMap::new();
    let mut gid = Vec::with_capacity(groups.len());
    let mut sizes: Vec<usize> = Vec::new();
    for g in groups {
        let next = sizes.len();
        let id = *id.entry(g).or_insert(next);
        if id == next {
            sizes.push(0);
        }
        sizes[id] += 1;
        gid.push(id);
    }
    // Counting sort of the indices by group id.
    let mut starts = Vec::with_capacity(sizes.len() + 1);
    starts.push(0);
    for &c in &sizes {
        starts.push(starts.last().copied().unwrap_or(0) + c);
    }
    let mut fill = starts.clone();
    let mut indices = vec![0usize; groups.len()];
    for (i, &g) in gid.iter().enumerate() {
        indices[fill[g]] = i;
        fill[g] += 1;
    }
    Ok(assign_groups(labels, &Members { starts, indices }, &fr, seed))
}

/// Validates the inputs; returns the fractions normalised to sum exactly 1.
fn check(
    labels: &[usize],
    groups_len: Option<usize>,
    fractions: &[f64],
) -> Result<Vec<f64>, Error> {
    if labels.is_empty() {
        return Err(Error::Empty { what: "labels" });
    }
    if let Some(len) = groups_len {
        if len != labels.len() {
            return Err(Error::LengthMismatch {
                what: "stratified split",
                left: labels.len(),
                right: len,
            });
        }
    }
    let bad = |reason| Error::InvalidFractions { fractions: fractions.to_vec(), reason };
    if fractions.is_empty() {
        return Err(bad("at least one fraction is needed"));
    }
    if fractions.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
        return Err(bad("every fraction must be finite and > 0"));
    }
    let sum: f64 = fractions.iter().sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(bad("fractions must sum to 1"));
    }
    Ok(fractions.iter().map(|f| f / sum).collect())
}

/// Group members in compressed form: group `g` is `indices[starts[g]..starts[g + 1]]`.
struct Members {
    starts: Vec<usize>,
    indices: Vec<usize>,
}

impl Members {
    fn len(&self) -> usize {
        self.starts.len() - 1
    }
    fn of(&self, g: usize) -> &[usize] {
        &self.indices[self.starts[g]..self.starts[g + 1]]
    }
}

fn assign_groups(
    labels: &[usize],
    members: &Members,
    fractions: &[f64],
    seed: u64,
) -> Vec<Vec<usize>> {
    // Dense stratum ids in ascending label order.
    let mut uniq: Vec<usize> = labels.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let stratum = |l: usize| uniq.binary_search(&l).expect("label is present");
    let ns = uniq.len();
    let np = fractions.len();
    let mut count = vec![0usize; ns];
    for &l in labels {
        count[stratum(l)] += 1;
    }
    // excess[p][s] = x_ps - count_s f_p; total[p] = sum_s excess[p][s].
    let mut excess: Vec<Vec<f64>> =
        fractions.iter().map(|&f| count.iter().map(|&c| -(c as f64) * f).collect()).collect();
    let mut total: Vec<f64> = excess.iter().map(|row| row.iter().sum()).collect();

    let mut order: Vec<usize> = (0..members.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    order.sort_by_key(|&g| std::cmp::Reverse(members.of(g).len())); // stable: ties keep the shuffle

    let mut parts: Vec<Vec<usize>> = vec![Vec::new(); np];
    let mut comp: Vec<(usize, f64)> = Vec::new();
    for g in order {
        // Composition of the group: (stratum, members).
        comp.clear();
        for &i in members.of(g) {
            let s = stratum(labels[i]);
            match comp.iter_mut().find(|(t, _)| *t == s) {
                Some((_, m)) => *m += 1.0,
                None => comp.push((s, 1.0)),
            }
        }
        let mut best = 0usize;
        let mut best_cost = f64::INFINITY;
        for p in 0..np {
            let cost: f64 = comp.iter().map(|&(s, m)| m * (2.0 * excess[p][s] + m)).sum();
            let better =
                cost < best_cost - TOL || (cost <= best_cost + TOL && total[p] < total[best] - TOL);
            if p == 0 || better {
                best = p;
                best_cost = cost;
            }
        }
        for &(s, m) in &comp {
            excess[best][s] += m;
            total[best] += m;
        }
        parts[best].extend_from_slice(members.of(g));
    }
    for part in &mut parts {
        part.sort_unstable();
    }
    parts
}

#[cfg(test)]
mod tests;
