//! Sorting and de-duplication of scores into distinct values with counts.
//!
//! Everything after this step works on the `D` distinct values, so its cost does not depend on
//! `n`. The sort is an LSD radix sort on order-preserving `u32` keys (three 11-bit passes, a
//! pass is skipped when all keys share that digit), `O(n)` whatever the number of ties; small
//! inputs use the standard unstable sort.

use crate::Error;

/// Distinct score values in ascending order with their multiplicities.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grouped {
    /// Distinct values, strictly increasing (`-0.0` is folded into `0.0`).
    pub values: Vec<f32>,
    /// How many scores equal each value (`>= 1`).
    pub counts: Vec<u64>,
    /// Total number of scores.
    pub n: u64,
}

/// Below this many scores the comparison sort is faster than radix passes.
const RADIX_MIN: usize = 2048;

/// Order-preserving map of a finite `f32` (with `-0.0` folded into `0.0`) to `u32`.
#[inline]
fn key(x: f32) -> u32 {
    let b = (x + 0.0).to_bits(); // -0.0 + 0.0 == +0.0
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[inline]
fn unkey(k: u32) -> f32 {
    if k & 0x8000_0000 != 0 {
        f32::from_bits(k & 0x7fff_ffff)
    } else {
        f32::from_bits(!k)
    }
}

/// Checks that every score is finite.
pub(crate) fn check_finite(scores: &[f32]) -> Result<(), Error> {
    if scores.is_empty() {
        return Err(Error::Empty { what: "scores" });
    }
    match scores.iter().position(|s| !s.is_finite()) {
        Some(index) => Err(Error::NonFinite { index, value: scores[index] }),
        None => Ok(()),
    }
}

/// Groups `scores` into distinct values and counts. Errors on an empty slice or a non-finite
/// score (naming its index).
pub(crate) fn group(scores: &[f32]) -> Result<Grouped, Error> {
    check_finite(scores)?;
    let mut keys: Vec<u32> = scores.iter().map(|&x| key(x)).collect();
    if keys.len() < RADIX_MIN {
        keys.sort_unstable();
    } else {
        radix_sort(&mut keys);
    }
    let mut values = Vec::new();
    let mut counts = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        let k = keys[i];
        let mut j = i + 1;
        while j < keys.len() && keys[j] == k {
            j += 1;
        }
        values.push(unkey(k));
        counts.push((j - i) as u64);
        i = j;
    }
    Ok(Grouped { values, counts, n: scores.len() as u64 })
}

/// LSD radix sort, digits of 11, 11 and 10 bits.
fn radix_sort(keys: &mut Vec<u32>) {
    const SHIFTS: [u32; 3] = [0, 11, 22];
    const BUCKETS: usize = 1 << 11;
    let n = keys.len();
    let mut hist = vec![[0usize; BUCKETS]; 3];
    for &k in keys.iter() {
        hist[0][(k & 0x7ff) as usize] += 1;
        hist[1][((k >> 11) & 0x7ff) as usize] += 1;
        hist[2][(k >> 22) as usize] += 1;
    }
    let mut buf = vec![0u32; n];
    for (pass, &shift) in SHIFTS.iter().enumerate() {
        let h = &mut hist[pass];
        if h.contains(&n) {
            continue; // every key has the same digit here
        }
        let mut sum = 0;
        for c in h.iter_mut() {
            let t = *c;
            *c = sum;
            sum += t;
        }
        for &k in keys.iter() {
            let d = ((k >> shift) & 0x7ff) as usize;
            buf[h[d]] = k;
            h[d] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

#[cfg(test)]
mod tests;
