//! A saved model that scores texts: `fintune predict` and `fintune eval`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use fintune_data::Dataset;
use fintune_model::{MultiTaskModel, PaddingSide, SavedModel, TextEncoder};
use tch::Device;

use crate::batching::Example;
use crate::metrics::{MetricReport, RegressionMetrics};
use crate::trainer::{predict_examples, ModelExtra, Predictions};
use crate::{Error, Result};

/// A fine-tuned model loaded from a run's `model/` folder.
#[derive(Debug)]
pub struct Predictor {
    pub model: MultiTaskModel,
    pub saved: SavedModel,
    pub extra: ModelExtra,
    pub encoder: TextEncoder,
    pub batch_size: usize,
}

impl Predictor {
    /// Loads `dir` (a run's `model/`) on `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let (model, saved) = MultiTaskModel::load(dir, device)?;
        let extra: ModelExtra = serde_json::from_value(saved.extra.clone())
            .map_err(|e| Error::Json { path: dir.join("fintune.json"), source: e })?;
        let encoder =
            TextEncoder::from_file(dir, saved.spec.max_len)?.with_padding_side(saved.padding_side);
        Ok(Predictor { model, saved, extra, encoder, batch_size: 64 })
    }

    fn side(&self) -> PaddingSide {
        self.saved.padding_side
    }

    /// Tokenized examples of `texts` (scores from `scores`, NaN when absent).
    pub fn examples(
        &self,
        ids: &[&str],
        texts: &[&str],
        scores: Option<&[f32]>,
    ) -> Result<Vec<Example>> {
        let enc = self.encoder.encode(texts)?;
        Ok(enc
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let score = scores.map_or(f32::NAN, |s| s[i]);
                Example {
                    id: ids[i].to_owned(),
                    enc: e,
                    score,
                    class: match (&self.extra.strat, score.is_finite()) {
                        (Some(s), true) => s.assign(score),
                        _ => 0,
                    },
                    rarity: 1.0,
                }
            })
            .collect())
    }

    /// Scores, classes and class probabilities for `texts`.
    pub fn predict(&self, texts: &[&str]) -> Result<Predictions> {
        let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ex = self.examples(&ids, texts, None)?;
        predict_examples(&self.model, &ex, self.batch_size, self.encoder.pad_id(), self.side())
    }

    /// The metrics on a labelled dataset.
    pub fn evaluate(&self, ds: &Dataset) -> Result<MetricReport> {
        let scores = ds.scores().ok_or_else(|| {
            Error::Config("evaluation needs labelled data (a score column)".into())
        })?;
        let ex = self.examples(&ds.ids(), &ds.texts(), Some(scores))?;
        let p = predict_examples(
            &self.model,
            &ex,
            self.batch_size,
            self.encoder.pad_id(),
            self.side(),
        )?;
        Ok(RegressionMetrics::of(self.extra.metrics.clone(), &p.score, scores, p.class.as_deref()))
    }

    /// The schema of prediction output: `id`, `score`, and with classes `class`, `class_probs`.
    pub fn output_schema(&self) -> SchemaRef {
        let mut fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("score", DataType::Float32, false),
        ];
        if let Some(k) = self.model.num_classes() {
            fields.push(Field::new("class", DataType::UInt32, false));
            fields.push(Field::new(
                "class_probs",
                DataType::FixedSizeList(
                    Arc::new(Field::new("item", DataType::Float32, true)),
                    k as i32,
                ),
                false,
            ));
        }
        Arc::new(Schema::new(fields))
    }

    /// Predictions for one input batch (a validated batch with `id` and `text` columns) as an
    /// output batch.
    pub fn predict_batch(&self, input: &RecordBatch) -> Result<RecordBatch> {
        let col = |name: &str| -> Result<&StringArray> {
            input
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| Error::Config(format!("input batch has no string column `{name}`")))
        };
        let ids = col("id")?;
        let texts = col("text")?;
        let text_vec: Vec<&str> = (0..texts.len()).map(|i| texts.value(i)).collect();
        let p = self.predict(&text_vec)?;
        let mut cols: Vec<ArrayRef> =
            vec![Arc::new(ids.clone()), Arc::new(Float32Array::from(p.score.clone()))];
        if let (Some(k), Some(classes), Some(probs)) =
            (self.model.num_classes(), &p.class, &p.probs)
        {
            cols.push(Arc::new(UInt32Array::from(
                classes.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            )));
            let mut b = FixedSizeListBuilder::new(Float32Builder::new(), k as i32);
            for row in probs {
                b.values().append_slice(row);
                b.append(true);
            }
            cols.push(Arc::new(b.finish()));
        }
        RecordBatch::try_new(self.output_schema(), cols)
            .map_err(|e| Error::Config(format!("building the output batch: {e}")))
    }
}
