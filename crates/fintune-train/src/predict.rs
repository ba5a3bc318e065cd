//! Scoring and embedding texts: [`Predictor`] (a saved model: `fintune predict` and `eval`)
//! and [`Encoder`] (a backbone's sentence embeddings: `fintune encode`).
//!
//! Both turn an input batch (validated, with `id` and `text` columns) into a typed output
//! ([`PredictedBatch`], [`EmbeddedBatch`]) that becomes an Arrow batch for files
//! ([`OutputBatch::record_batch`]) or JSON lines through serde ([`OutputBatch::json_rows`]).

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use fintune_data::Dataset;
use fintune_model::tokenize::present;
use fintune_model::{InputMode, MultiTaskModel, PaddingSide, Pooling, SavedModel, TextEncoder};
use serde::Serialize;
use tch::Device;

use crate::batching::Example;
use crate::config::PREDICT_BATCH_SIZE;
use crate::eval::{predict_examples, ModelExtra, Predictions};
use crate::metrics::{MetricReport, RegressionMetrics};
use crate::{Error, Result};

/// A typed output batch, written as Arrow (files) or JSON lines (standard output).
pub trait OutputBatch {
    /// The rows as an Arrow batch with `schema`.
    fn record_batch(&self, schema: SchemaRef) -> Result<RecordBatch>;
    /// The rows as JSON values.
    fn json_rows(&self) -> Vec<serde_json::Value>;
}

fn string_column<'b>(input: &'b RecordBatch, name: &str) -> Result<&'b StringArray> {
    input
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::Config(format!("input batch has no string column `{name}`")))
}

/// The targets of a validated batch (None where null; all None without the column).
pub fn batch_targets(input: &RecordBatch) -> Vec<Option<&str>> {
    match input.column_by_name("target").and_then(|c| c.as_any().downcast_ref::<StringArray>()) {
        Some(col) => col.iter().collect(),
        None => vec![None; input.num_rows()],
    }
}

fn texts(input: &RecordBatch) -> Result<(Vec<String>, Vec<&str>)> {
    let ids = string_column(input, "id")?;
    let texts = string_column(input, "text")?;
    Ok((
        (0..ids.len()).map(|i| ids.value(i).to_owned()).collect(),
        (0..texts.len()).map(|i| texts.value(i)).collect(),
    ))
}

fn list_field(name: &str, len: usize) -> Field {
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    Field::new(name, DataType::FixedSizeList(item, len as i32), false)
}

fn list_column(rows: &[Vec<f32>], len: usize) -> ArrayRef {
    let mut b = FixedSizeListBuilder::new(Float32Builder::new(), len as i32);
    for row in rows {
        b.values().append_slice(row);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn batch(schema: SchemaRef, cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// One row of prediction output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionRow<'a> {
    /// The input row's id.
    pub id: &'a str,
    /// The predicted score.
    pub score: f32,
    /// The most probable class (models with classes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<u32>,
    /// The class probabilities (models with classes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_probs: Option<&'a [f32]>,
}

/// Predictions for one input batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictedBatch {
    /// Ids of the input rows.
    pub ids: Vec<String>,
    /// Their predictions.
    pub predictions: Predictions,
}

impl PredictedBatch {
    /// The rows.
    pub fn rows(&self) -> impl Iterator<Item = PredictionRow<'_>> {
        let p = &self.predictions;
        self.ids.iter().enumerate().map(move |(i, id)| PredictionRow {
            id,
            score: p.score[i],
            class: p.class.as_ref().map(|c| c[i] as u32),
            class_probs: p.probs.as_ref().map(|pr| pr[i].as_slice()),
        })
    }
}

impl OutputBatch for PredictedBatch {
    fn record_batch(&self, schema: SchemaRef) -> Result<RecordBatch> {
        let p = &self.predictions;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.ids.clone())),
            Arc::new(Float32Array::from(p.score.clone())),
        ];
        if let (Some(classes), Some(probs)) = (&p.class, &p.probs) {
            cols.push(Arc::new(UInt32Array::from(
                classes.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            )));
            let k = probs.first().map_or(0, Vec::len);
            cols.push(list_column(probs, k));
        }
        batch(schema, cols)
    }

    fn json_rows(&self) -> Vec<serde_json::Value> {
        self.rows().map(|r| serde_json::to_value(r).expect("rows serialise")).collect()
    }
}

/// Input rows with a model's scores in place of any score they had (clipped to [-1, 1]), in
/// the labelled data schema ([`fintune_data::schema::dataset_schema`]): a file another model
/// can train on, which is how a large model teaches a small one (`fintune predict --as-data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRows {
    /// The rows: `id, text, score, target, source, group`.
    pub batch: RecordBatch,
}

/// Row `i` of `c`, or None where it is null.
fn valid(c: &StringArray, i: usize) -> Option<&str> {
    c.is_valid(i).then(|| c.value(i))
}

/// One row of [`ScoredRows`] as JSON (absent optional columns omitted).
#[derive(Serialize)]
struct ScoredRow<'a> {
    id: &'a str,
    text: &'a str,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
}

impl OutputBatch for ScoredRows {
    fn record_batch(&self, schema: SchemaRef) -> Result<RecordBatch> {
        Ok(self.batch.clone().with_schema(schema)?)
    }

    fn json_rows(&self) -> Vec<serde_json::Value> {
        use fintune_data::schema::{GROUP, ID, SCORE, SOURCE, TARGET, TEXT};
        let b = &self.batch;
        let text = |name| string_column(b, name).expect("ScoredRows has the dataset schema");
        let (id, txt, target, source, group) =
            (text(ID), text(TEXT), text(TARGET), text(SOURCE), text(GROUP));
        let score = b
            .column_by_name(SCORE)
            .and_then(|c| c.as_any().downcast_ref::<Float32Array>())
            .expect("ScoredRows has the dataset schema");
        (0..b.num_rows())
            .map(|i| {
                let row = ScoredRow {
                    id: id.value(i),
                    text: txt.value(i),
                    score: score.value(i),
                    target: valid(target, i),
                    source: valid(source, i),
                    group: valid(group, i),
                };
                serde_json::to_value(row).expect("rows serialise")
            })
            .collect()
    }
}

/// A fine-tuned model loaded from a run's `model/` folder, or a seed ensemble's (the first
/// member in `model`, the others in `members`; their predictions are averaged).
#[derive(Debug)]
pub struct Predictor {
    /// The model (an ensemble's first member).
    pub model: MultiTaskModel,
    /// An ensemble's other members (empty for one model).
    pub members: Vec<MultiTaskModel>,
    /// The prediction fusion of `model` and of each member, in that order.
    pub fusions: Vec<Option<crate::eval::Fusion>>,
    /// Its `fintune.json`.
    pub saved: SavedModel,
    /// The stratification, rarity model and metric settings it was trained with.
    pub extra: ModelExtra,
    /// The tokenizer.
    pub encoder: TextEncoder,
    /// Rows per forward pass (>= 1).
    pub batch_size: usize,
}

impl Predictor {
    /// Loads `dir` (a run's `model/`, or an ensemble's: see [`crate::ensemble`]) on `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        if crate::ensemble::is_ensemble(dir) {
            let manifest = crate::ensemble::Manifest::read(dir)?;
            let mut loaded = Vec::new();
            for d in manifest.member_dirs(dir)? {
                loaded.push((Self::load(&d, device)?, d));
            }
            let (first, first_dir) = loaded.remove(0);
            let mut members = Vec::with_capacity(loaded.len());
            let mut fusions = first.fusions.clone();
            for (p, d) in loaded {
                let same = p.saved.spec.max_len == first.saved.spec.max_len
                    && p.saved.padding_side == first.saved.padding_side
                    && p.model.num_classes() == first.model.num_classes()
                    && p.saved.base_dir == first.saved.base_dir;
                if !same {
                    return Err(Error::Config(format!(
                        "the ensemble members {} and {} differ in backbone, max_len, padding \
                         or classes",
                        first_dir.display(),
                        d.display()
                    )));
                }
                fusions.push(p.extra.fusion.clone());
                members.push(p.model);
            }
            return Ok(Predictor { members, fusions, ..first });
        }
        let (model, saved) = MultiTaskModel::load(dir, device)?;
        let extra: ModelExtra = serde_json::from_value(saved.extra.clone())
            .map_err(|e| Error::Json { path: dir.join("fintune.json"), source: e })?;
        let encoder = TextEncoder::from_file(dir, saved.spec.max_len)?
            .with_padding_side(saved.padding_side)
            .with_input(saved.spec.input);
        Ok(Predictor {
            model,
            members: vec![],
            fusions: vec![extra.fusion.clone()],
            saved,
            extra,
            encoder,
            batch_size: PREDICT_BATCH_SIZE,
        })
    }

    /// Sets the batch size; 0 is refused.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::Config("the batch size must be >= 1, got 0".into()));
        }
        self.batch_size = batch_size;
        Ok(self)
    }

    fn side(&self) -> PaddingSide {
        self.saved.padding_side
    }

    /// Whether the model reads targets (it was trained with `--input text+target`).
    pub fn reads_targets(&self) -> bool {
        self.encoder.input() == InputMode::TextTarget
    }

    /// For a model that reads targets, an [`Error::MissingTargets`] naming `file` and `column`
    /// when no row of `targets` has one (the column is absent or empty).
    pub fn check_targets(&self, targets: &[Option<&str>], file: &Path, column: &str) -> Result<()> {
        if self.reads_targets() && !targets.iter().any(|t| present(*t).is_some()) {
            return Err(Error::MissingTargets { file: file.to_owned(), column: column.to_owned() });
        }
        Ok(())
    }

    /// Tokenized examples of `texts` with their `targets` (used when the model reads them;
    /// scores from `scores`, NaN when absent).
    pub fn examples(
        &self,
        ids: &[&str],
        texts: &[&str],
        targets: &[Option<&str>],
        scores: Option<&[f32]>,
    ) -> Result<Vec<Example>> {
        let enc = self.encoder.encode_with_targets(texts, targets)?;
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
                    src: 0,
                }
            })
            .collect())
    }

    /// Predictions for tokenized examples: the model's, or the mean of an ensemble's members'.
    pub fn predict_examples(&self, ex: &[Example]) -> Result<Predictions> {
        let (pad, side) = (self.encoder.pad_id(), self.side());
        let mut first = predict_examples(&self.model, ex, self.batch_size, pad, side)?;
        first.fuse(self.fusions[0].as_ref())?;
        if self.members.is_empty() {
            return Ok(first);
        }
        let mut all = vec![first];
        for (m, f) in self.members.iter().zip(&self.fusions[1..]) {
            let mut p = predict_examples(m, ex, self.batch_size, pad, side)?;
            p.fuse(f.as_ref())?;
            all.push(p);
        }
        Ok(crate::ensemble::average(&all))
    }

    fn run(&self, ex: &[Example]) -> Result<Predictions> {
        self.predict_examples(ex)
    }

    /// Scores, classes and class probabilities for `texts` (an error when the model predicts
    /// a non-finite value). Without targets: see [`Self::predict_with_targets`].
    pub fn predict(&self, texts: &[&str]) -> Result<Predictions> {
        self.predict_with_targets(texts, &vec![None; texts.len()])
    }

    /// [`Self::predict`] for rows with targets (read when the model reads them).
    pub fn predict_with_targets(
        &self,
        texts: &[&str],
        targets: &[Option<&str>],
    ) -> Result<Predictions> {
        let ids: Vec<String> = (0..texts.len()).map(|i| i.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.run(&self.examples(&ids, texts, targets, None)?)
    }

    /// The metrics on a labelled dataset.
    pub fn evaluate(&self, ds: &Dataset) -> Result<MetricReport> {
        let scores = ds.scores().ok_or_else(|| {
            Error::Config("evaluation needs labelled data (a score column)".into())
        })?;
        let p = self.run(&self.examples(&ds.ids(), &ds.texts(), &ds.targets(), Some(scores))?)?;
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
            fields.push(list_field("class_probs", k as usize));
        }
        Arc::new(Schema::new(fields))
    }

    /// Predictions for one input batch (a validated batch with `id` and `text` columns, and
    /// `target` for a model that reads targets).
    pub fn predict_batch(&self, input: &RecordBatch) -> Result<PredictedBatch> {
        let (ids, texts) = texts(input)?;
        let predictions = self.predict_with_targets(&texts, &batch_targets(input))?;
        Ok(PredictedBatch { ids, predictions })
    }

    /// The rows of `input` (a validated batch, labelled or not) with this model's scores in
    /// place of any score they had, clipped to [-1, 1]: [`ScoredRows`].
    pub fn score_rows(&self, input: &RecordBatch) -> Result<ScoredRows> {
        let (_, texts) = texts(input)?;
        let p = self.predict_with_targets(&texts, &batch_targets(input))?;
        let scores: ArrayRef =
            Arc::new(p.score.iter().map(|v| Some(v.clamp(-1.0, 1.0))).collect::<Float32Array>());
        let schema = fintune_data::schema::dataset_schema(true);
        let cols = schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == fintune_data::schema::SCORE {
                    return Ok(scores.clone());
                }
                input.column_by_name(f.name()).cloned().ok_or_else(|| {
                    Error::Config(format!("input batch has no column `{}`", f.name()))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ScoredRows { batch: batch(schema, cols)? })
    }
}

/// One row of embedding output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingRow<'a> {
    /// The input row's id.
    pub id: &'a str,
    /// The sentence embedding.
    pub embedding: &'a [f32],
}

/// Embeddings of one input batch.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedBatch {
    /// Ids of the input rows.
    pub ids: Vec<String>,
    /// One embedding per row.
    pub embeddings: Vec<Vec<f32>>,
}

impl OutputBatch for EmbeddedBatch {
    fn record_batch(&self, schema: SchemaRef) -> Result<RecordBatch> {
        let h = self.embeddings.first().map_or(0, Vec::len);
        let cols: Vec<ArrayRef> =
            vec![Arc::new(StringArray::from(self.ids.clone())), list_column(&self.embeddings, h)];
        batch(schema, cols)
    }

    fn json_rows(&self) -> Vec<serde_json::Value> {
        self.ids
            .iter()
            .zip(&self.embeddings)
            .map(|(id, e)| {
                serde_json::to_value(EmbeddingRow { id, embedding: e }).expect("rows serialise")
            })
            .collect()
    }
}

/// A pretrained backbone that embeds texts (feature extraction), as sentence-transformers
/// does: the backbone, the pooling, and an L2 normalisation when the folder's `modules.json`
/// lists `sentence_transformers.models.Normalize` (all-MiniLM-L6-v2 and all-mpnet-base-v2 do).
#[derive(Debug)]
pub struct Encoder {
    backbone: fintune_model::LoadedBackbone,
    encoder: TextEncoder,
    /// The pooling.
    pub pooling: Pooling,
    /// Whether embeddings are scaled to unit L2 norm (from `modules.json`).
    pub normalize: bool,
    device: Device,
}

/// Whether the sentence-transformers pipeline in `dir/modules.json` ends in a `Normalize`
/// module; false without the file.
pub fn lists_normalize(dir: &Path) -> Result<bool> {
    #[derive(serde::Deserialize)]
    struct Module {
        #[serde(rename = "type", default)]
        kind: String,
    }
    let path = dir.join("modules.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let modules: Vec<Module> =
        serde_json::from_str(&text).map_err(|source| Error::Json { path, source })?;
    Ok(modules.iter().any(|m| m.kind.ends_with("models.Normalize")))
}

impl Encoder {
    /// Loads the backbone in `dir` on `device`; `pooling` None: the family's. `max_len` is
    /// checked against the backbone's position limit.
    pub fn load(
        dir: &Path,
        pooling: Option<Pooling>,
        max_len: usize,
        device: Device,
    ) -> Result<Self> {
        if crate::ensemble::is_ensemble(dir) {
            return Err(Error::Config(format!(
                "{} is a seed ensemble ({}): encode embeds with one backbone; pass a \
                 pretrained model folder",
                dir.display(),
                crate::ensemble::MANIFEST
            )));
        }
        crate::config::check_max_len(max_len, dir).map_err(Error::Config)?;
        let backbone = fintune_model::load_backbone(
            dir,
            &fintune_model::LoadOptions { device, ..Default::default() },
        )?;
        let info = backbone.net.info().clone();
        let encoder = TextEncoder::from_file(dir, max_len)?.with_padding_side(info.padding_side);
        let normalize = lists_normalize(dir)?;
        let pooling = pooling.unwrap_or(info.default_pooling);
        Ok(Encoder { pooling, normalize, backbone, encoder, device })
    }

    /// The embedding size.
    pub fn dimensions(&self) -> usize {
        self.backbone.net.info().hidden_size as usize
    }

    /// The schema of embedding output: `id` and `embedding` (a fixed-size list).
    pub fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            list_field("embedding", self.dimensions()),
        ]))
    }

    /// Embeddings of one input batch (a validated batch with `id` and `text` columns).
    pub fn encode_batch(&self, input: &RecordBatch) -> Result<EmbeddedBatch> {
        let (ids, texts) = texts(input)?;
        let b = self.encoder.batch(&texts, self.device)?;
        let emb = tch::no_grad(|| {
            let e = self.pooling.pool(&self.backbone.net.forward_t(&b, false), &b.attention_mask);
            if self.normalize {
                // torch.nn.functional.normalize(e, p=2, dim=1), as sentence-transformers does.
                let norm = e.norm_scalaropt_dim(2, [-1].as_slice(), true).clamp_min(1e-12);
                e / norm
            } else {
                e
            }
        });
        let flat = Vec::<f32>::try_from(
            emb.to_kind(tch::Kind::Float).to_device(Device::Cpu).reshape([-1]),
        )?;
        let h = self.dimensions();
        let embeddings: Vec<Vec<f32>> = flat.chunks(h.max(1)).map(<[f32]>::to_vec).collect();
        if let Some((i, _)) =
            embeddings.iter().enumerate().find(|(_, e)| e.iter().any(|v| !v.is_finite()))
        {
            return Err(Error::NonFinitePrediction {
                what: "embedding",
                value: f32::NAN,
                id: ids[i].clone(),
            });
        }
        Ok(EmbeddedBatch { ids, embeddings })
    }
}
