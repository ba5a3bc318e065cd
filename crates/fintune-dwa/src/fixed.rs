//! Fixed weights: `equal` and `static:w1,w2,...`.

use crate::error::Error;
use crate::observation::StepObservation;
use crate::persist;
use crate::weights::Weights;
use crate::TaskWeighting;

#[cfg(test)]
mod tests;

const NO_TERMS: &[&str] = &[];

/// Equal weighting: every weight is 1 (the plain sum of the task losses; "linear
/// scalarisation"). Cost: O(T).
#[derive(Debug, Clone)]
pub struct Equal {
    num_tasks: usize,
}

impl Equal {
    /// Equal weights for `num_tasks` tasks (at least 1).
    pub fn new(num_tasks: usize) -> Result<Self, Error> {
        if num_tasks == 0 {
            return Err(Error::TaskCount { method: "equal", what: "tasks", expected: 1, got: 0 });
        }
        Ok(Equal { num_tasks })
    }
}

impl TaskWeighting for Equal {
    fn name(&self) -> &str {
        "equal"
    }

    fn num_tasks(&self) -> usize {
        self.num_tasks
    }

    fn term_names(&self) -> &'static [&'static str] {
        NO_TERMS
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        obs.check_losses("equal", self.num_tasks)?;
        out.reset(self.num_tasks, NO_TERMS);
        out.values.fill(1.0);
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save("equal", self.num_tasks, &(), &())
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        persist::load::<_, ()>("equal", self.num_tasks, &(), state)
    }
}

/// A fixed weight vector, normalised to sum `T`: `static:0.7,0.3`, `static:1.4,0.6` and
/// `static:7,3` all give weights (1.4, 0.6), so a grid over static weights varies the task
/// balance, not the effective learning rate. A well-tuned static weighting is a strong
/// baseline (Kurin et al., "In Defense of the Unitary Scalarization for Deep Multi-Task
/// Learning", NeurIPS 2022). Cost: O(T).
#[derive(Debug, Clone)]
pub struct Static {
    name: String,
    given: Vec<f64>,
    normalised: Vec<f64>,
}

impl Static {
    /// Static weights `given` (one per task, finite and > 0; normalised to sum to their count).
    pub fn new(given: &[f64]) -> Result<Self, Error> {
        let spec = crate::spec::static_name(given);
        crate::spec::check_static(&spec, given)?;
        let t = given.len() as f64;
        let s: f64 = given.iter().sum();
        Ok(Static {
            name: spec,
            given: given.to_vec(),
            normalised: given.iter().map(|w| w * t / s).collect(),
        })
    }

    /// The weights as given.
    pub fn given(&self) -> &[f64] {
        &self.given
    }
}

impl TaskWeighting for Static {
    fn name(&self) -> &str {
        &self.name
    }

    fn num_tasks(&self) -> usize {
        self.given.len()
    }

    fn term_names(&self) -> &'static [&'static str] {
        NO_TERMS
    }

    fn weights_into(&mut self, obs: &StepObservation<'_>, out: &mut Weights) -> Result<(), Error> {
        obs.check_losses("static", self.given.len())?;
        out.reset(self.given.len(), NO_TERMS);
        out.values.copy_from_slice(&self.normalised);
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        persist::save("static", self.given.len(), &self.given, &())
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<(), Error> {
        persist::load::<_, ()>("static", self.given.len(), &self.given, state)
    }
}
