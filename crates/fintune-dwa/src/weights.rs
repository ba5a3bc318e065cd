//! The per-step result: task weights plus named diagnostic terms.

use serde::Serialize;

/// Named per-task diagnostic values of one step (e.g. DWA's `g`, `r`, `c`, `u`, `target`).
///
/// A method always returns the same names in the same order
/// ([`TaskWeighting::term_names`](crate::TaskWeighting::term_names)), one value per task each,
/// so a trainer can write CSV headers before the first step and columns stay stable.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Terms {
    names: &'static [&'static str],
    num_tasks: usize,
    /// Row-major: `values[k * num_tasks + i]` is term `k` of task `i`.
    values: Vec<f64>,
}

impl Terms {
    /// Term names, in their stable order.
    pub fn names(&self) -> &'static [&'static str] {
        self.names
    }

    /// Number of tasks each term has a value for.
    pub fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    /// `true` when the method reports no terms.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `(name, per-task values)` in the stable order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'static str, &[f64])> + '_ {
        let t = self.num_tasks;
        self.names
            .iter()
            .enumerate()
            .map(move |(k, &name)| (name, &self.values[k * t..(k + 1) * t]))
    }

    /// The per-task values of term `name`, if the method reports it.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        let k = self.names.iter().position(|&n| n == name)?;
        Some(&self.values[k * self.num_tasks..(k + 1) * self.num_tasks])
    }

    /// Prepares the buffer for `names` x `num_tasks` values, keeping its allocation.
    pub(crate) fn reset(&mut self, names: &'static [&'static str], num_tasks: usize) {
        self.names = names;
        self.num_tasks = num_tasks;
        self.values.clear();
        self.values.resize(names.len() * num_tasks, 0.0);
    }

    /// All term rows as disjoint mutable slices, in name order (no allocation).
    pub(crate) fn rows(&mut self) -> std::slice::ChunksExactMut<'_, f64> {
        self.values.chunks_exact_mut(self.num_tasks.max(1))
    }
}

/// Task weights of one step and the diagnostic terms that produced them.
///
/// The trainer minimises `sum_i values[i] * L_i`. Unless a method documents otherwise
/// (uncertainty weighting), the values are finite, positive and sum to the number of tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Weights {
    /// One weight per task.
    pub values: Vec<f64>,
    /// Named per-task diagnostics, for history.csv.
    pub terms: Terms,
}

impl Weights {
    /// An empty buffer, to be filled by
    /// [`TaskWeighting::weights_into`](crate::TaskWeighting::weights_into).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.values.len()
    }

    /// Sum of the weights.
    pub fn sum(&self) -> f64 {
        self.values.iter().sum()
    }

    /// Resizes for `num_tasks` weights and `names` terms, keeping allocations.
    pub(crate) fn reset(&mut self, num_tasks: usize, names: &'static [&'static str]) {
        self.values.clear();
        self.values.resize(num_tasks, 0.0);
        self.terms.reset(names, num_tasks);
    }
}
