//! Methods by name, and the configuration of all of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::{
    Dao, DaoConfig, Dwa, DwaConfig, DwaLiu, DwaLiuConfig, DwaMain, DwaMainConfig, Equal, Famo,
    FamoConfig, GradNorm, GradNormConfig, PcGrad, PcGradConfig, Static, TaskKind, TaskWeighting,
    Uncertainty, UncertaintyConfig,
};

#[cfg(test)]
mod tests;

/// A task-weighting method by name: `dwa`, `equal`, `static:<w1>,<w2>,...`, `uncertainty`,
/// `gradnorm`, `dwa-liu`, `dao`, `famo`, `pcgrad` or `dwa-main`.
///
/// [`FromStr`] parses those names (surrounding whitespace ignored, names case-sensitive);
/// [`fmt::Display`] writes the canonical form back (`static:0.70,0.3` displays as
/// `static:0.7,0.3`), and serde uses that string, so a config file says
/// `weighting = "static:0.7,0.3"`. Static weights must be finite and > 0; their count is
/// checked against the number of tasks by [`WeightingSpec::build`].
#[derive(Debug, Clone, PartialEq)]
pub enum WeightingSpec {
    /// [`Dwa`], ours.
    Dwa,
    /// [`Equal`].
    Equal,
    /// [`Static`] with these weights (before normalisation).
    Static(Vec<f64>),
    /// [`Uncertainty`].
    Uncertainty,
    /// [`GradNorm`].
    GradNorm,
    /// [`DwaLiu`].
    DwaLiu,
    /// [`Dao`].
    Dao,
    /// [`Famo`].
    Famo,
    /// [`PcGrad`].
    PcGrad,
    /// [`DwaMain`]: main-task-first DWA (task 0 main). Not in
    /// [`all_defaults`](WeightingSpec::all_defaults): its weights do not sum to `T`.
    DwaMain,
}

impl WeightingSpec {
    /// Every method with a default argument (static: `1,1`), in the order of the issue.
    pub fn all_defaults() -> Vec<WeightingSpec> {
        use WeightingSpec::*;
        vec![Dwa, Equal, Static(vec![1.0, 1.0]), Uncertainty, GradNorm, DwaLiu, Dao, Famo, PcGrad]
    }

    /// Builds the method for `num_tasks` tasks with default constants and the fintune task
    /// kinds ([`TaskKind::fintune_default`]: task 0 regression, the rest classification).
    pub fn build(&self, num_tasks: usize) -> Result<Box<dyn TaskWeighting + Send>, Error> {
        self.build_with(num_tasks, &WeightingConfig::default())
    }

    /// Builds the method for `num_tasks` tasks with the constants of `config`.
    pub fn build_with(
        &self,
        num_tasks: usize,
        config: &WeightingConfig,
    ) -> Result<Box<dyn TaskWeighting + Send>, Error> {
        let kinds = config.task_kinds(num_tasks)?;
        Ok(match self {
            WeightingSpec::Dwa => Box::new(Dwa::new(&kinds, config.dwa.clone())?),
            WeightingSpec::Equal => Box::new(Equal::new(num_tasks)?),
            WeightingSpec::Static(w) => {
                if w.len() != num_tasks {
                    return Err(Error::TaskCount {
                        method: "static",
                        what: "static weights",
                        expected: num_tasks,
                        got: w.len(),
                    });
                }
                Box::new(Static::new(w)?)
            }
            WeightingSpec::Uncertainty => {
                Box::new(Uncertainty::new(&kinds, config.uncertainty.clone())?)
            }
            WeightingSpec::GradNorm => Box::new(GradNorm::new(num_tasks, config.gradnorm.clone())?),
            WeightingSpec::DwaLiu => Box::new(DwaLiu::new(num_tasks, config.dwa_liu.clone())?),
            WeightingSpec::Dao => Box::new(Dao::new(num_tasks, config.dao.clone())?),
            WeightingSpec::Famo => Box::new(Famo::new(num_tasks, config.famo.clone())?),
            WeightingSpec::PcGrad => Box::new(PcGrad::new(num_tasks, config.pcgrad.clone())?),
            WeightingSpec::DwaMain => Box::new(DwaMain::new(num_tasks, config.dwa_main.clone())?),
        })
    }
}

pub(crate) fn static_name(w: &[f64]) -> String {
    let parts: Vec<String> = w.iter().map(|x| x.to_string()).collect();
    format!("static:{}", parts.join(","))
}

pub(crate) fn check_static(spec: &str, w: &[f64]) -> Result<(), Error> {
    if w.is_empty() {
        return Err(Error::BadStaticWeights {
            spec: spec.into(),
            reason: "no weights given".into(),
            source: None,
        });
    }
    for (i, &x) in w.iter().enumerate() {
        if !x.is_finite() {
            return Err(Error::BadStaticWeights {
                spec: spec.into(),
                reason: format!("weight {} ({x}) is not finite", i + 1),
                source: None,
            });
        }
        if x <= 0.0 {
            return Err(Error::BadStaticWeights {
                spec: spec.into(),
                reason: format!("weight {} ({x}) must be > 0", i + 1),
                source: None,
            });
        }
    }
    Ok(())
}

impl FromStr for WeightingSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let name = s.trim();
        Ok(match name {
            "dwa" => WeightingSpec::Dwa,
            "equal" => WeightingSpec::Equal,
            "uncertainty" => WeightingSpec::Uncertainty,
            "gradnorm" => WeightingSpec::GradNorm,
            "dwa-liu" => WeightingSpec::DwaLiu,
            "dao" => WeightingSpec::Dao,
            "famo" => WeightingSpec::Famo,
            "pcgrad" => WeightingSpec::PcGrad,
            "dwa-main" => WeightingSpec::DwaMain,
            _ => {
                let Some(list) = name.strip_prefix("static:") else {
                    if name == "static" {
                        return Err(Error::BadStaticWeights {
                            spec: s.into(),
                            reason: "expected static:<w1>,<w2>,... (one weight per task)".into(),
                            source: None,
                        });
                    }
                    return Err(Error::UnknownMethod { name: s.into() });
                };
                let mut w = Vec::new();
                for (i, part) in list.split(',').enumerate() {
                    let part = part.trim();
                    if part.is_empty() {
                        return Err(Error::BadStaticWeights {
                            spec: s.into(),
                            reason: format!("weight {} is empty", i + 1),
                            source: None,
                        });
                    }
                    let x: f64 = part.parse().map_err(|e| Error::BadStaticWeights {
                        spec: s.into(),
                        reason: format!("weight {} ({part:?}) is not a number", i + 1),
                        source: Some(e),
                    })?;
                    w.push(x);
                }
                check_static(s, &w)?;
                WeightingSpec::Static(w)
            }
        })
    }
}

impl fmt::Display for WeightingSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            WeightingSpec::Dwa => "dwa",
            WeightingSpec::Equal => "equal",
            WeightingSpec::Static(w) => return f.write_str(&static_name(w)),
            WeightingSpec::Uncertainty => "uncertainty",
            WeightingSpec::GradNorm => "gradnorm",
            WeightingSpec::DwaLiu => "dwa-liu",
            WeightingSpec::Dao => "dao",
            WeightingSpec::Famo => "famo",
            WeightingSpec::PcGrad => "pcgrad",
            WeightingSpec::DwaMain => "dwa-main",
        };
        f.write_str(name)
    }
}

impl Serialize for WeightingSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WeightingSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The constants of every method, each section defaulting to its method's defaults, so a
/// trainer's TOML may give any subset:
///
/// ```toml
/// task_kinds = ["regression", "classification"]
/// [dwa]
/// beta = 0.25
/// [famo]
/// update = "same-batch"
/// ```
///
/// Unknown keys are errors (a typo never silently falls back to a default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightingConfig {
    /// Kind of each task; `None` means [`TaskKind::fintune_default`] (task 0 regression, the
    /// rest classification). Used by `dwa` (batch term) and `uncertainty` (1/2 vs 1).
    /// Default `None`.
    pub task_kinds: Option<Vec<TaskKind>>,
    /// [`Dwa`] constants.
    pub dwa: DwaConfig,
    /// [`Uncertainty`] constants.
    pub uncertainty: UncertaintyConfig,
    /// [`GradNorm`] constants.
    pub gradnorm: GradNormConfig,
    /// [`DwaLiu`] constants.
    #[serde(rename = "dwa-liu", alias = "dwa_liu")]
    pub dwa_liu: DwaLiuConfig,
    /// [`Dao`] constants.
    pub dao: DaoConfig,
    /// [`Famo`] constants.
    pub famo: FamoConfig,
    /// [`PcGrad`] constants.
    pub pcgrad: PcGradConfig,
    /// [`DwaMain`] constants.
    #[serde(rename = "dwa-main", alias = "dwa_main")]
    pub dwa_main: DwaMainConfig,
}

impl WeightingConfig {
    /// The task kinds for `num_tasks` tasks (checked against `task_kinds` when given).
    pub fn task_kinds(&self, num_tasks: usize) -> Result<Vec<TaskKind>, Error> {
        match &self.task_kinds {
            None => Ok(TaskKind::fintune_default(num_tasks)),
            Some(k) if k.len() == num_tasks => Ok(k.clone()),
            Some(k) => Err(Error::TaskCount {
                method: "weighting",
                what: "task_kinds",
                expected: num_tasks,
                got: k.len(),
            }),
        }
    }
}
