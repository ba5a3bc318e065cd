//! Prediction and evaluation of a model over tokenized examples (used by the trainer after
//! every epoch, by [`crate::predict::Predictor`] and by `fintune eval`).
//!
//! A non-finite prediction (a model with broken weights) is an error, never a `null` score or
//! a NaN MSE.

use fintune_das::{Rarity, Stratification};
use fintune_model::{MultiTaskModel, PaddingSide};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::batching::{eval_batches, Example, TrainBatch};
use crate::metrics::{MetricReport, MetricsConfig, RegressionMetrics};
use crate::{Error, Result};

/// Predictions of a model over examples: scores, classes and class probabilities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// Predicted scores, in the examples' order.
    pub score: Vec<f32>,
    /// Most probable class per example (models with a classification head).
    pub class: Option<Vec<usize>>,
    /// Class probabilities per example (models with a classification head).
    pub probs: Option<Vec<Vec<f32>>>,
}

impl Predictions {
    /// Fails on the first non-finite score or class probability, naming the example.
    pub fn check_finite(&self, ids: impl Fn(usize) -> String) -> Result<()> {
        if let Some((i, &v)) = self.score.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinitePrediction { what: "score", value: v, id: ids(i) });
        }
        for (i, row) in self.probs.iter().flatten().enumerate() {
            if let Some(&v) = row.iter().find(|v| !v.is_finite()) {
                return Err(Error::NonFinitePrediction {
                    what: "class probability",
                    value: v,
                    id: ids(i),
                });
            }
        }
        Ok(())
    }
}

/// Prediction fusion (soft ordinal runs): the final score is `(1 - mix) r + mix E[m]`, with
/// `r` the regression head's score and `E[m]` the classification head's expected class mean
/// (fintune-das `fuse`); `mix` was picked on the validation data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fusion {
    /// The mix (0: the regression head alone).
    pub mix: f64,
    /// The mean training score of each class.
    pub class_means: Vec<f64>,
    /// Validation MSE of every mix of the grid, `(mix, mse)`.
    pub grid: Vec<(f64, f64)>,
}

impl Predictions {
    /// Replaces the scores with the fused scores of `fusion` (nothing without one).
    pub fn fuse(&mut self, fusion: Option<&Fusion>) -> Result<()> {
        let Some(f) = fusion else { return Ok(()) };
        let probs = self
            .probs
            .as_ref()
            .ok_or_else(|| Error::Config("prediction fusion needs a classification head".into()))?;
        for (s, p) in self.score.iter_mut().zip(probs) {
            let p: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
            *s = fintune_das::fuse(f64::from(*s), &p, &f.class_means, f.mix)? as f32;
        }
        Ok(())
    }
}

/// Runs `model` in evaluation mode over `examples` (in their order). Errors on a non-finite
/// prediction.
pub fn predict_examples(
    model: &MultiTaskModel,
    examples: &[Example],
    batch_size: usize,
    pad_id: i64,
    side: PaddingSide,
) -> Result<Predictions> {
    if batch_size == 0 {
        return Err(Error::Config("the batch size must be >= 1".into()));
    }
    let device = model.device();
    let lengths: Vec<usize> = examples.iter().map(|e| e.enc.len()).collect();
    let mut score = vec![0f32; examples.len()];
    let k = model.num_classes();
    let mut probs: Option<Vec<Vec<f32>>> = k.map(|_| vec![vec![]; examples.len()]);
    tch::no_grad(|| -> Result<()> {
        for idx in eval_batches(&lengths, batch_size) {
            let b = TrainBatch::new(examples, &idx, pad_id, side, device);
            let out = model.forward_t(&b.inputs, false);
            let s = Vec::<f32>::try_from(out.score.to_kind(Kind::Float).to_device(Device::Cpu))?;
            for (j, &i) in idx.iter().enumerate() {
                score[i] = s[j];
            }
            if let (Some(lg), Some(pr)) = (&out.logits, probs.as_mut()) {
                let p = lg.softmax(-1, Kind::Float).to_device(Device::Cpu);
                let kk = p.size()[1] as usize;
                let flat = Vec::<f32>::try_from(p.reshape([-1]))?;
                for (j, &i) in idx.iter().enumerate() {
                    pr[i] = flat[j * kk..(j + 1) * kk].to_vec();
                }
            }
        }
        Ok(())
    })?;
    let class = probs.as_ref().map(|p| {
        p.iter()
            .map(|row| {
                row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
            })
            .collect()
    });
    let p = Predictions { score, class, probs };
    p.check_finite(|i| examples[i].id.clone())?;
    Ok(p)
}

/// Metrics of `model` on labelled `examples`.
pub fn evaluate(
    model: &MultiTaskModel,
    examples: &[Example],
    batch_size: usize,
    pad_id: i64,
    side: PaddingSide,
    cfg: &MetricsConfig,
) -> Result<(MetricReport, Predictions)> {
    let p = predict_examples(model, examples, batch_size, pad_id, side)?;
    let gold: Vec<f32> = examples.iter().map(|e| e.score).collect();
    let report = RegressionMetrics::of(cfg.clone(), &p.score, &gold, p.class.as_deref());
    Ok((report, p))
}

/// The `extra` stored in `model/fintune.json`: the stratification (to label new data) and
/// the rarity model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelExtra {
    /// The score classes (None for single-task models).
    pub strat: Option<Stratification>,
    /// The label density of the training scores.
    pub rarity: Rarity,
    /// The metric settings (with the class thresholds).
    pub metrics: MetricsConfig,
    /// Prediction fusion, when the run picked a mix above 0 on validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_predictions_are_errors() {
        let ok = Predictions { score: vec![0.1, -0.2], class: None, probs: None };
        assert!(ok.check_finite(|i| i.to_string()).is_ok());
        let bad = Predictions { score: vec![0.1, f32::NAN], class: None, probs: None };
        let e = bad.check_finite(|i| format!("row{i}")).unwrap_err().to_string();
        assert!(e.contains("row1") && e.contains("non-finite"), "{e}");
        let bad = Predictions {
            score: vec![0.1],
            class: Some(vec![0]),
            probs: Some(vec![vec![f32::NAN, 0.5]]),
        };
        assert!(bad.check_finite(|i| i.to_string()).is_err());
    }
}
