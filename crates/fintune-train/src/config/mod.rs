//! The training configuration: every option of `fintune train`, with its default, in one place.
//!
//! A TOML file (`--config run.toml`) may give any subset; command-line flags override it; the
//! resolved configuration is written to the run folder as `config.toml`.
//! `fintune train --print-config` prints the defaults as TOML.

use std::path::{Path, PathBuf};

use fintune_das::{Classes, DasConfig, TaskSampling};
use fintune_data::ReadOptions;
use fintune_dwa::{WeightingConfig, WeightingSpec};
use fintune_model::{HeadsConfig, InputMode, LoraConfig, Pooling, Probe, Tuning};
use serde::{Deserialize, Serialize};

use crate::metrics::MetricsConfig;

mod limits;
mod names;
pub mod tasks;

pub use limits::{check_max_len, check_threads, position_limit, MAX_THREADS};
pub(crate) use names::serde_as_text;
pub use names::{
    as_text, ClassWeights, DeviceSpec, Imbalance, Precision, Strata, TaskKind, TaskLoss,
    UnknownName,
};
pub use tasks::{Plan, TaskSpec};
/// Rows per batch of `fintune predict`, `eval` and `encode`.
pub const PREDICT_BATCH_SIZE: usize = 64;
/// Truncation length of `fintune encode`.
pub const ENCODE_MAX_LEN: usize = 128;

/// Input files and how to read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training files (any supported format). Required.
    pub train: Vec<PathBuf>,
    /// Validation file; without it a group-aware stratified split of the training data is used.
    pub val: Option<PathBuf>,
    /// Test file, evaluated once with the best (validation-selected) model.
    pub test: Option<PathBuf>,
    /// Share of the training data held out for validation when there is no `val`. Default 0.1.
    pub val_fraction: f64,
    /// Seed of the validation split; default: `optim.seed`. The members of a seed ensemble
    /// keep the ensemble's seed here, so they share one split.
    pub split_seed: Option<u64>,
    /// How files are read (`[data.read]`: format, column names, score range, skip_invalid,
    /// default groups; see fintune-data's `ReadOptions`).
    pub read: ReadOptions,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            train: vec![],
            val: None,
            test: None,
            val_fraction: 0.1,
            split_seed: None,
            read: ReadOptions::default(),
        }
    }
}

/// The backbone and heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A Hugging Face model folder. Default: `$FINTUNE_HOME/models/all-MiniLM-L6-v2`
    /// (`.fintune/models/all-MiniLM-L6-v2`, fetched by `cargo xtask setup`).
    pub backbone: PathBuf,
    /// `full`, `frozen`, `top:N` or `lora:R`. Default `full`.
    pub tuning: String,
    /// LoRA details for `lora:R` (alpha, dropout, targets; the rank comes from `tuning`).
    pub lora: LoraConfig,
    /// Pooling; default: the family's (mean for encoders, last token for decoders).
    pub pooling: Option<Pooling>,
    /// Truncation length in tokens. Default 128.
    pub max_len: usize,
    /// Heads (dropout 0.1, linear regression head bounded to [-1, 1] by a scaled tanh).
    pub heads: HeadsConfig,
    /// Recompute each layer in the backward pass instead of keeping its activations (less
    /// memory, about one more forward pass; needs the representation probe). Default false.
    pub gradient_checkpointing: bool,
    /// What the model reads: `text`, or `text+target` (the target column as the second
    /// segment of the tokenizer's pair template; a separator for decoders). Saved with the
    /// model, so `predict`/`eval` encode alike. Default `text`.
    #[serde(skip_serializing_if = "InputMode::is_text")]
    pub input: InputMode,
    /// A saved run's model folder (`RUN/model`) whose backbone weights (LoRA merged) replace
    /// the pretrained ones before training; its base model must be `backbone`. The heads
    /// start fresh. Default: none (see `crate::init`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// SHA-256 of `init`'s weights, filled in when the run starts (a run resumed or reused
    /// with other init weights differs in this key); when given, the folder must match it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_sha256: Option<String>,
}

/// Default backbone folder.
pub fn default_backbone() -> PathBuf {
    let home = std::env::var_os("FINTUNE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".fintune"));
    home.join("models/all-MiniLM-L6-v2")
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            backbone: default_backbone(),
            tuning: "full".into(),
            lora: LoraConfig::default(),
            pooling: None,
            max_len: 128,
            heads: HeadsConfig::default(),
            gradient_checkpointing: false,
            input: InputMode::Text,
            init: None,
            init_sha256: None,
        }
    }
}

impl ModelConfig {
    /// The tuning mode, with `[model.lora]` applied to `lora:R`.
    pub fn tuning(&self) -> Result<Tuning, fintune_model::Error> {
        match self.tuning.parse::<Tuning>()? {
            Tuning::Lora(l) => Ok(Tuning::Lora(LoraConfig { rank: l.rank, ..self.lora.clone() })),
            t => Ok(t),
        }
    }
}

/// Optimisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Epochs. Default 5.
    pub epochs: usize,
    /// Training batch size. Default 16.
    pub batch_size: usize,
    /// Evaluation batch size. Default 64.
    pub eval_batch_size: usize,
    /// Peak learning rate of the backbone. Default 5e-5.
    pub lr: f64,
    /// Peak learning rate of the heads. Default 1e-3.
    pub head_lr: f64,
    /// Peak learning rate of LoRA adapters. Default 5e-4.
    pub adapter_lr: f64,
    /// AdamW decoupled weight decay (not on biases and norms). Default 0.01.
    pub weight_decay: f64,
    /// Warm-up share of all steps (linear warm-up, then linear decay). Default 0.06.
    pub warmup: f64,
    /// Gradient clipping (global L2 norm). Default 1.0.
    pub clip: f64,
    /// Early stopping: epochs without a better validation MSE. Default 2.
    pub patience: usize,
    /// Seed of everything random (split, order, dropout, head init). Default 42.
    pub seed: u64,
    /// `cpu`, `cuda`, `cuda:N` or `auto`. Default `cpu`.
    pub device: DeviceSpec,
    /// libtorch intra-op threads (0: libtorch's default, one per core). Default 0.
    pub threads: usize,
    /// `f32` or `bf16` (backbone in bfloat16 with float32 master weights; for CUDA).
    /// Default `f32`.
    pub precision: Precision,
    /// AdamW's first-moment decay. Default 0.9.
    pub beta1: f64,
    /// AdamW's second-moment decay. Default 0.999.
    pub beta2: f64,
    /// AdamW's denominator epsilon. Default 1e-8.
    pub eps: f64,
    /// Layer-wise learning-rate decay factor F in (0, 1]: with L layers, layer i (0-based,
    /// bottom to top) learns at `lr * F^(L - i)`, the embeddings at `lr * F^(L + 1)`; LoRA
    /// adapters scale `adapter_lr` the same way; heads keep `head_lr`. Default 1 (off).
    pub layer_decay: f64,
    /// Members of a seed ensemble (seeds `seed`, `seed + 1`, ...; one validation split).
    /// Default 1 (a single model).
    pub ensemble: usize,
}

/// The most members `optim.ensemble` accepts.
pub const MAX_ENSEMBLE: usize = 64;

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            epochs: 5,
            batch_size: 16,
            eval_batch_size: 64,
            lr: 5e-5,
            head_lr: 1e-3,
            adapter_lr: 5e-4,
            weight_decay: 0.01,
            warmup: 0.06,
            clip: 1.0,
            patience: 2,
            seed: 42,
            device: DeviceSpec::Cpu,
            threads: 0,
            precision: Precision::F32,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            layer_decay: 1.0,
            ensemble: 1,
        }
    }
}

/// The multi-task set-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskConfig {
    /// Score classes: `das`, `quantile`, `uniform`, or `none` (single-task regression).
    /// Default `none`: single-task regression measured better than every score-class set-up
    /// (README, "Why single-task is the default").
    pub strata: Strata,
    /// Number of classes: `auto` (DAS chooses; 5 for quantile/uniform) or K. Default `auto`.
    pub classes: Classes,
    /// Task weighting (see fintune-dwa): `dwa`, `equal`, `static:a,b`, `uncertainty`,
    /// `gradnorm`, `dwa-liu`, `dao`, `famo`, `pcgrad`. Default `dwa`.
    pub weighting: WeightingSpec,
    /// Where gradient norms are measured: `representation`, `last-layer`, `all`.
    /// Default `representation`.
    pub probe: Probe,
    /// Regression loss: `none` (MSE), `lds`, `bmse`. Default `none`.
    pub imbalance: Imbalance,
    /// Class weights of the cross-entropy. Default `none`.
    pub class_weights: ClassWeights,
    /// Kernel width of the label density (LDS weights and the DWA batch term). Default 0.1.
    pub rarity_bandwidth: f64,
    /// Initial noise scale sigma of Balanced MSE. Default 0.2.
    pub bmse_sigma: f64,
    /// How the slots of a batch are shared between tasks with their own examples
    /// (`[[tasks]]`): `proportional` (to each task's `share`, by default its number of
    /// training examples), `uniform` or `temperature:<tau>` (shares raised to `1/tau`).
    /// Default `proportional`.
    #[serde(skip_serializing_if = "is_proportional")]
    pub sampling: TaskSampling,
}

fn is_proportional(s: &TaskSampling) -> bool {
    *s == TaskSampling::Proportional
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            strata: Strata::None,
            classes: Classes::Auto,
            weighting: WeightingSpec::Dwa,
            probe: Probe::Representation,
            imbalance: Imbalance::None,
            class_weights: ClassWeights::None,
            rarity_bandwidth: 0.1,
            bmse_sigma: 0.2,
            sampling: TaskSampling::Proportional,
        }
    }
}

/// Everything `fintune train` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Run folder. Default `runs/<timestamp>-<name>`.
    pub out: Option<PathBuf>,
    /// Run name used in the default folder. Default: derived from the first training file.
    pub name: Option<String>,
    /// Input files and how to read them (`[data]`).
    pub data: DataConfig,
    /// The backbone and heads (`[model]`).
    pub model: ModelConfig,
    /// Optimisation (`[optim]`).
    pub optim: OptimConfig,
    /// The multi-task set-up (`[task]`).
    pub task: TaskConfig,
    /// DAS constants (see fintune-das).
    pub das: DasConfig,
    /// Constants of every weighting method (see fintune-dwa).
    pub weighting: WeightingConfig,
    /// Metric settings (neutral band, regions).
    pub metrics: MetricsConfig,
    /// Declared tasks (`[[tasks]]`, see [`TaskSpec`]); empty: `[data]` and `[task]` declare
    /// the score regression and, unless `task.strata = "none"`, its score classes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskSpec>,
}

/// A configuration after validation, with every string resolved once: what the trainer runs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The configuration as given (file-shaped).
    pub raw: TrainConfig,
    /// The tuning mode, `[model.lora]` applied.
    pub tuning: Tuning,
    /// The libtorch device.
    pub device: tch::Device,
    /// The backbone's position limit (tokens), when its `config.json` names one.
    pub position_limit: Option<usize>,
    /// Accepted but questionable settings (e.g. more threads than cores), for the log.
    pub warnings: Vec<String>,
}

impl TrainConfig {
    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| crate::Error::ConfigFile { path: path.to_owned(), source: e })
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises")
    }

    /// The seed of the validation split: `data.split_seed`, else `optim.seed`.
    pub fn split_seed(&self) -> u64 {
        self.data.split_seed.unwrap_or(self.optim.seed)
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> crate::Result<()> {
        self.resolve().map(|_| ())
    }

    /// Validates the configuration and resolves its names once (tuning, device, the
    /// backbone's position limit).
    pub fn resolve(&self) -> crate::Result<Resolved> {
        let bad = |m: String| crate::Error::Config(m);
        if !self.tasks.is_empty() {
            self.task_specs()?;
            if self.data != DataConfig::default() {
                return Err(bad(
                    "[[tasks]] name their own data and read options: leave [data] (and --data, \
                     --val, --test and the column flags) out"
                        .into(),
                ));
            }
            let d = TaskConfig::default();
            if (self.task.strata, self.task.classes, self.task.imbalance)
                != (d.strata, d.classes, d.imbalance)
            {
                return Err(bad(
                    "with [[tasks]], score classes and losses are set in the task tables \
                     (`kind = \"derived\"`, `strata`, `classes`, `loss`): leave task.strata, \
                     task.classes and task.imbalance (--strata, --classes, --imbalance) out"
                        .into(),
                ));
            }
        } else if self.data.train.is_empty() {
            return Err(bad(
                "no training data: pass --data PATH (or [data] train = [...] in the config)".into(),
            ));
        }
        if !(0.0..0.9).contains(&self.data.val_fraction)
            || self.data.val_fraction == 0.0 && self.data.val.is_none()
        {
            return Err(bad(format!(
                "data.val_fraction must be in (0, 0.9), got {}",
                self.data.val_fraction
            )));
        }
        let o = &self.optim;
        if o.epochs == 0 || o.batch_size == 0 || o.eval_batch_size == 0 {
            return Err(bad("epochs, batch_size and eval_batch_size must be >= 1".into()));
        }
        for (name, v) in [("lr", o.lr), ("head_lr", o.head_lr), ("adapter_lr", o.adapter_lr)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(format!("optim.{name} must be > 0, got {v}")));
            }
        }
        if !(0.0..1.0).contains(&o.warmup) {
            return Err(bad(format!("optim.warmup must be in [0, 1), got {}", o.warmup)));
        }
        if o.clip.is_nan() || o.clip <= 0.0 {
            return Err(bad(format!("optim.clip must be > 0, got {}", o.clip)));
        }
        for (name, v) in [("beta1", o.beta1), ("beta2", o.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(format!("optim.{name} must be in [0, 1), got {v}")));
            }
        }
        if !(o.eps.is_finite() && o.eps > 0.0) {
            return Err(bad(format!("optim.eps must be > 0, got {}", o.eps)));
        }
        if !(o.layer_decay > 0.0 && o.layer_decay <= 1.0) {
            return Err(bad(format!("optim.layer_decay must be in (0, 1], got {}", o.layer_decay)));
        }
        if !(1..=MAX_ENSEMBLE).contains(&o.ensemble) {
            return Err(bad(format!(
                "optim.ensemble must be in 1..={MAX_ENSEMBLE}, got {}",
                o.ensemble
            )));
        }
        let mut warnings = Vec::new();
        warnings.extend(check_threads(o.threads).map_err(bad)?);
        let position_limit =
            check_max_len(self.model.max_len, &self.model.backbone).map_err(bad)?;
        let tuning = self.model.tuning()?;
        if self.model.gradient_checkpointing
            && self.task.probe != Probe::Representation
            && self.task.strata != Strata::None
        {
            return Err(bad(
                "model.gradient_checkpointing needs task.probe = \"representation\"".into()
            ));
        }
        let device = o.device.resolve()?;
        if [self.task.rarity_bandwidth, self.task.bmse_sigma]
            .iter()
            .any(|v| v.is_nan() || *v <= 0.0)
        {
            return Err(bad("task.rarity_bandwidth and task.bmse_sigma must be > 0".into()));
        }
        let mut raw = self.clone();
        raw.model.init_sha256 = crate::init::resolve(&self.model)?;
        Ok(Resolved { raw, tuning, device, position_limit, warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = TrainConfig {
            data: DataConfig { train: vec!["a.jsonl".into()], ..Default::default() },
            ..Default::default()
        };
        let text = c.to_toml();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert!(text.contains("weighting = \"dwa\""), "{text}");
    }

    #[test]
    fn partial_files_take_defaults_and_typos_are_errors() {
        let c: TrainConfig =
            toml::from_str("[optim]\nepochs = 2\n[task]\nweighting = \"static:0.7,0.3\"\n")
                .unwrap();
        assert_eq!(c.optim.epochs, 2);
        assert_eq!(c.optim.batch_size, 16);
        assert_eq!(c.task.weighting, WeightingSpec::Static(vec![0.7, 0.3]));
        let err = toml::from_str::<TrainConfig>("[optim]\nepoch = 2\n").unwrap_err().to_string();
        assert!(err.contains("epoch"), "{err}");
        let err = toml::from_str::<TrainConfig>("[task]\nweighting = \"dwaa\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dwaa"), "{err}");
    }

    #[test]
    fn one_name_table_serves_toml_and_the_command_line() {
        // `fp32` used to work on the command line but not in TOML.
        let c: TrainConfig = toml::from_str("[optim]\nprecision = \"fp32\"\n").unwrap();
        assert_eq!(c.optim.precision, Precision::F32);
        assert_eq!("fp32".parse::<Precision>().unwrap(), Precision::F32);
        assert!(c.to_toml().contains("precision = \"f32\""));
        for (name, v) in Strata::NAMES {
            assert_eq!(name.parse::<Strata>().unwrap(), *v);
        }
        assert_eq!(ClassWeights::InverseSqrt.to_string(), "inverse-sqrt");
        let err = toml::from_str::<TrainConfig>("[task]\nstrata = \"dass\"\n").unwrap_err();
        assert!(err.to_string().contains("das, quantile, uniform, none"), "{err}");
        for d in ["cpu", "cuda", "cuda:1", "auto"] {
            assert_eq!(d.parse::<DeviceSpec>().unwrap().to_string(), d);
        }
    }

    #[test]
    fn threads_100000_is_refused() {
        let mut c = TrainConfig {
            data: DataConfig { train: vec!["a.jsonl".into()], ..Default::default() },
            ..Default::default()
        };
        c.optim.threads = 100_000;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("threads") && err.contains("100000"), "{err}");
        c.optim.threads = 1;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn position_limits_follow_the_family() {
        let d = tempfile::tempdir().unwrap();
        let write = |json: &str| std::fs::write(d.path().join("config.json"), json).unwrap();
        write(r#"{"model_type": "bert", "max_position_embeddings": 512}"#);
        assert_eq!(position_limit(d.path()), Some(512));
        write(r#"{"model_type": "roberta", "max_position_embeddings": 514, "pad_token_id": 1}"#);
        assert_eq!(position_limit(d.path()), Some(512));
        write(r#"{"model_type": "llama", "max_position_embeddings": 8192}"#);
        assert_eq!(position_limit(d.path()), Some(8192));
        assert!(check_max_len(8193, d.path()).unwrap_err().contains("8192"));
    }

    #[test]
    fn lora_rank_comes_from_tuning() {
        let m = ModelConfig { tuning: "lora:4".into(), ..Default::default() };
        match m.tuning().unwrap() {
            Tuning::Lora(l) => assert_eq!((l.rank, l.alpha), (4, 16.0)),
            t => panic!("{t:?}"),
        }
    }
}
