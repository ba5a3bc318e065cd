//! The multi-task model: a shared backbone, a regression head and an optional classification
//! head; fine-tuning modes, parameter groups, gradient probes, and saving/loading a run's
//! `model/` folder.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::backbone::{load_backbone, BackboneInfo, Depth, LoadOptions, LoadedBackbone, Pooling};
use crate::heads::{ClassificationHead, Head, HeadsConfig, RegressionHead};
use crate::layers::LoraConfig;
use crate::tokenize::{Batch, InputMode, PaddingSide, PairStyle, TextEncoder};
use crate::weights::{self, Checkpoint};
use crate::{Error, Result};

/// Which backbone parameters are trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// Every backbone parameter (the default).
    #[default]
    Full,
    /// None: only the heads train (the backbone runs without autograd).
    Frozen,
    /// The top N layers (and the final norm of decoders); embeddings and lower layers frozen.
    Top(usize),
    /// LoRA adapters on a frozen backbone.
    Lora(LoraConfig),
}

impl FromStr for Tuning {
    type Err = Error;
    /// `full`, `frozen`, `top:N` or `lora:R` (LoRA with rank R, alpha 2R, default targets).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Invalid(format!("bad tuning `{s}`: {why} (full, frozen, top:N, lora:R)"))
        };
        match s.split_once(':') {
            None if s == "full" => Ok(Tuning::Full),
            None if s == "frozen" => Ok(Tuning::Frozen),
            Some(("top", n)) => n
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .map(Tuning::Top)
                .ok_or_else(|| bad("N must be >= 1")),
            Some(("lora", r)) => r
                .parse()
                .ok()
                .filter(|&r| r >= 1)
                .map(|r| Tuning::Lora(LoraConfig::with_rank(r)))
                .ok_or_else(|| bad("R must be >= 1")),
            _ => Err(bad("unknown mode")),
        }
    }
}

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tuning::Full => f.write_str("full"),
            Tuning::Frozen => f.write_str("frozen"),
            Tuning::Top(n) => write!(f, "top:{n}"),
            Tuning::Lora(l) => write!(f, "lora:{}", l.rank),
        }
    }
}

/// Where per-task gradient norms are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// The pooled representation (cheap: a backward pass through the heads only).
    #[default]
    Representation,
    /// The trainable parameters of the last shared layer.
    LastLayer,
    /// Every trainable shared parameter (one full backward pass per task).
    All,
}

impl FromStr for Probe {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "representation" => Ok(Probe::Representation),
            "last-layer" => Ok(Probe::LastLayer),
            "all" => Ok(Probe::All),
            other => Err(Error::Invalid(format!(
                "unknown probe `{other}` (representation, last-layer, all)"
            ))),
        }
    }
}

/// What a [`ModelSpec`] builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Pooling of the backbone's hidden states. Default: the family's (mean / last token).
    pub pooling: Option<Pooling>,
    /// Heads.
    pub heads: HeadsConfig,
    /// Fine-tuning mode.
    pub tuning: Tuning,
    /// Truncation length in tokens.
    pub max_len: usize,
    /// Gradient checkpointing: keep only each layer's input during the forward pass and
    /// recompute the layer during the backward pass ([`MultiTaskModel::backward_backbone`]);
    /// less memory for about one more forward pass. Default: false.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Backbone weights and activations in bfloat16 (for CUDA); heads, LoRA adapters and the
    /// pooled representation stay float32, and the optimiser keeps float32 master copies of
    /// trainable bf16 weights. Default: false.
    #[serde(default)]
    pub bf16: bool,
    /// What rows are encoded from (`text`, or `text+target` as a segment pair); folders
    /// saved before this field read as `text`. Default: `text`.
    #[serde(default, skip_serializing_if = "InputMode::is_text")]
    pub input: InputMode,
}

impl ModelSpec {
    /// The backbone's floating-point kind.
    pub fn kind(&self) -> Kind {
        if self.bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            pooling: None,
            heads: HeadsConfig::default(),
            tuning: Tuning::Full,
            max_len: 128,
            gradient_checkpointing: false,
            bf16: false,
            input: InputMode::Text,
        }
    }
}

/// What a forward pass with a manual backward keeps for [`MultiTaskModel::backward_backbone`].
#[derive(Debug)]
enum Pending {
    /// Gradient checkpointing: layer inputs to recompute from.
    Checkpoint(Saved),
    /// Fused mean pooling: the hidden states (with their graph) and the mask.
    Pooled { hidden: Tensor, mask: Tensor },
}

/// What a checkpointed forward pass keeps for its backward pass.
#[derive(Debug)]
struct Saved {
    batch: Batch,
    ctx: crate::backbone::LayerContext,
    /// Inputs of layers 0..L (detached).
    inputs: Vec<Tensor>,
    /// Output of the last layer as a leaf that tracks gradients (input of `finish`).
    last: Tensor,
    seed: i64,
    train: bool,
}

/// Which part of the model a parameter belongs to (for learning rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Pretrained backbone weights.
    Backbone,
    /// LoRA adapters.
    Adapter,
    /// Task heads.
    Head,
}

/// A trainable parameter with what the optimiser needs to know about it.
#[derive(Debug)]
pub struct Param {
    /// Unique name: `backbone.<key>`, `adapters.<key>` or `heads.<key>`.
    pub name: String,
    /// The variable (shares storage with the model).
    pub tensor: Tensor,
    /// Its part.
    pub part: Part,
    /// Whether weight decay applies (not for biases and norm weights).
    pub decay: bool,
    /// Its place in the backbone's stack (`Depth::Other` for heads).
    pub depth: Depth,
}

/// Outputs of [`MultiTaskModel::forward_t`].
#[derive(Debug)]
pub struct Outputs {
    /// Pooled representation `[B, H]` (the shared probe of `Probe::Representation`).
    pub pooled: Tensor,
    /// Predicted scores `[B]`.
    pub score: Tensor,
    /// Class logits `[B, K]`, when there is a classification head.
    pub logits: Option<Tensor>,
}

/// `fintune.json`: how to rebuild a saved model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedModel {
    /// Format version of this file (1).
    pub format: u32,
    /// Backbone `model_type` and facts.
    pub backbone: BackboneInfo,
    /// The folder the pretrained backbone was loaded from.
    pub base_dir: PathBuf,
    /// SHA-256 of the base weights (the file(s) in `base_dir`), checked when a LoRA run is
    /// loaded since it does not copy them.
    pub base_sha256: String,
    /// Whether `model.safetensors` in this folder holds the fine-tuned backbone (false for LoRA:
    /// only `adapters.safetensors` is saved).
    pub backbone_saved: bool,
    /// Pooling.
    pub pooling: Pooling,
    /// Padding side.
    pub padding_side: PaddingSide,
    /// The spec it was built from.
    pub spec: ModelSpec,
    /// Caller data (the trainer stores the DAS stratification and rarity model here).
    #[serde(default)]
    pub extra: serde_json::Value,
}

/// Shared backbone + regression head (the main head) + optional classification head + the
/// further heads of `spec.heads.extra` (variables `extra.<name>.*`).
#[derive(Debug)]
pub struct MultiTaskModel {
    backbone: LoadedBackbone,
    heads_vs: VarStore,
    regression: RegressionHead,
    classification: Option<ClassificationHead>,
    /// The heads of `spec.heads.extra`, in order.
    extra: Vec<Head>,
    pooling: Pooling,
    spec: ModelSpec,
    base_dir: PathBuf,
    /// The state a checkpointed forward pass leaves for `backward_backbone`.
    saved: std::cell::RefCell<Option<Pending>>,
}

fn decays(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !(lower.ends_with("bias") || lower.contains("norm"))
}

impl MultiTaskModel {
    /// Loads the pretrained backbone from `backbone_dir` and adds freshly initialised heads
    /// (seed libtorch with `tch::manual_seed` first for reproducible heads).
    pub fn new(backbone_dir: &Path, spec: &ModelSpec, device: Device) -> Result<Self> {
        spec.heads.validate()?;
        let lora = match &spec.tuning {
            Tuning::Lora(l) => Some(l.clone()),
            _ => None,
        };
        let backbone =
            load_backbone(backbone_dir, &LoadOptions { device, kind: spec.kind(), lora })?;
        Self::assemble(backbone, spec, backbone_dir.to_owned(), device)
    }

    fn assemble(
        mut backbone: LoadedBackbone,
        spec: &ModelSpec,
        base_dir: PathBuf,
        device: Device,
    ) -> Result<Self> {
        let info = backbone.net.info().clone();
        match &spec.tuning {
            Tuning::Full | Tuning::Lora(_) => {}
            Tuning::Frozen => backbone.base.freeze(),
            Tuning::Top(n) => {
                if *n > info.num_layers {
                    return Err(Error::Invalid(format!(
                        "tuning top:{n} asks for more layers than the backbone has ({})",
                        info.num_layers
                    )));
                }
                let keep: Vec<String> = (info.num_layers - n..info.num_layers)
                    .map(|i| format!("{}{i}.", info.layer_prefix))
                    .chain(info.final_prefixes.iter().cloned())
                    .collect();
                for (name, t) in weights::named_variables(&backbone.base) {
                    if !keep.iter().any(|k| name.starts_with(k)) {
                        let _ = t.set_requires_grad(false);
                    }
                }
            }
        }
        // The heads are initialised on the CPU and then moved, so a run draws the same initial
        // heads on every device (a GPU's generator differs from the CPU's).
        let mut heads_vs = VarStore::new(Device::Cpu);
        let (regression, classification, extra) = {
            let root = heads_vs.root();
            let regression =
                RegressionHead::new(&root / "regression", info.hidden_size, &spec.heads);
            let classification = spec.heads.num_classes.map(|k| {
                ClassificationHead::new(&root / "classification", info.hidden_size, k, &spec.heads)
            });
            // Built after the two heads above, so their initialisation draws stay today's.
            let extra: Vec<Head> = spec
                .heads
                .extra
                .iter()
                .map(|h| {
                    Head::new(&root / "extra" / h.name.as_str(), info.hidden_size, h, &spec.heads)
                })
                .collect();
            (regression, classification, extra)
        };
        heads_vs.set_device(device);
        let pooling = spec.pooling.unwrap_or(info.default_pooling);
        Ok(MultiTaskModel {
            backbone,
            heads_vs,
            regression,
            classification,
            extra,
            pooling,
            spec: spec.clone(),
            base_dir,
            saved: std::cell::RefCell::new(None),
        })
    }

    /// Backbone facts.
    pub fn info(&self) -> &BackboneInfo {
        self.backbone.net.info()
    }
    /// The spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    /// The device of the weights.
    pub fn device(&self) -> Device {
        self.heads_vs.device()
    }
    /// The number of classes of the classification head (None: single-task).
    pub fn num_classes(&self) -> Option<i64> {
        self.spec.heads.num_classes
    }

    /// A text encoder for this backbone: the tokenizer in `dir` (the backbone or a saved model
    /// folder), the spec's max length and input mode, the family's padding side and pair style.
    pub fn text_encoder(&self, dir: &Path) -> Result<TextEncoder> {
        let enc = TextEncoder::from_file(dir, self.spec.max_len)?
            .with_input(self.spec.input)
            .with_pair_style(PairStyle::of_model_type(&self.info().model_type));
        let enc = match crate::backbone::position_limit(&self.backbone.config_json) {
            Some(limit) => enc.with_position_limit(limit)?,
            None => enc,
        };
        Ok(enc.with_padding_side(self.info().padding_side))
    }

    /// Runs the model. `train` enables dropout. Gradients flow by ordinary autograd.
    pub fn forward_t(&self, batch: &Batch, train: bool) -> Outputs {
        let pooled = self.pooled(batch, train, false);
        let (score, logits) = self.forward_heads(&pooled, train);
        Outputs { pooled, score, logits }
    }

    /// The shared part: backbone and pooling, `[B, H]`, for a training step that finishes with
    /// [`Self::backward_backbone`]. With a frozen backbone it runs without autograd and returns
    /// a leaf that tracks gradients (when `train`), so the representation probe still works.
    /// With gradient checkpointing (and `train`) the layers run without autograd and keep only
    /// their inputs. On CUDA with the fused kernels, mean pooling is the fused kernel and its
    /// gradient is applied by `backward_backbone`.
    pub fn forward_backbone(&self, batch: &Batch, train: bool) -> Tensor {
        self.pooled(batch, train, true)
    }

    fn pool(&self, h: &Tensor, mask: &Tensor) -> Tensor {
        // Pooling (a sum over the sequence) and the heads run in f32 whatever the backbone's kind.
        let h = &h.to_kind(Kind::Float);
        if self.pooling == Pooling::Mean
            && !h.requires_grad()
            && crate::kernels::enabled_for(h.device())
        {
            return crate::kernels::mean_pool(h, mask)
                .expect("the CUDA mean-pooling kernel failed");
        }
        self.pooling.pool(h, mask)
    }

    fn pooled(&self, batch: &Batch, train: bool, manual_backward: bool) -> Tensor {
        let net = &self.backbone.net;
        if matches!(self.spec.tuning, Tuning::Frozen) {
            let p = tch::no_grad(|| self.pool(&net.forward_t(batch, train), &batch.attention_mask));
            p.detach().set_requires_grad(train)
        } else if manual_backward && self.spec.gradient_checkpointing && train {
            // Seeds for replaying each layer's dropout exactly in the backward pass.
            let seed = Tensor::randint(i64::from(i32::MAX), [1], (Kind::Int64, Device::Cpu))
                .int64_value(&[0]);
            let (inputs, last, ctx) = tch::no_grad(|| {
                tch::manual_seed(seed);
                let (mut x, ctx) = net.embed_t(batch, train);
                let mut inputs = Vec::with_capacity(net.info().num_layers);
                for i in 0..net.info().num_layers {
                    inputs.push(x.shallow_clone());
                    tch::manual_seed(seed + 1 + i as i64);
                    x = net.layer_t(i, &x, &ctx, train);
                }
                (inputs, x, ctx)
            });
            let last = last.detach().set_requires_grad(true);
            let pooled =
                self.pooling.pool(&net.finish(&last).to_kind(Kind::Float), &batch.attention_mask);
            let batch = Batch {
                input_ids: batch.input_ids.shallow_clone(),
                attention_mask: batch.attention_mask.shallow_clone(),
                token_type_ids: batch.token_type_ids.shallow_clone(),
            };
            *self.saved.borrow_mut() =
                Some(Pending::Checkpoint(Saved { batch, ctx, inputs, last, seed, train }));
            tch::manual_seed(seed ^ 0x5DEE_CE66);
            pooled
        } else {
            let h = net.forward_t(batch, train);
            if manual_backward
                && train
                && self.pooling == Pooling::Mean
                && crate::kernels::enabled_for(h.device())
            {
                let pooled = crate::kernels::mean_pool(
                    &h.detach().to_kind(Kind::Float),
                    &batch.attention_mask,
                )
                .expect("the CUDA mean-pooling kernel failed")
                .set_requires_grad(true);
                *self.saved.borrow_mut() =
                    Some(Pending::Pooled { hidden: h, mask: batch.attention_mask.shallow_clone() });
                pooled
            } else {
                self.pool(&h, &batch.attention_mask)
            }
        }
    }

    /// Backpropagates `grad` (the gradient of the loss with respect to `pooled`, the output of
    /// [`Self::forward_backbone`]) into the backbone's parameters. With gradient checkpointing
    /// the layers are recomputed one at a time, from the last to the first, each with the
    /// dropout masks of the forward pass.
    pub fn backward_backbone(&self, pooled: &Tensor, grad: &Tensor) {
        if matches!(self.spec.tuning, Tuning::Frozen) {
            return;
        }
        let pending = self.saved.borrow_mut().take();
        let saved = match pending {
            None => {
                (pooled * grad.detach()).sum(Kind::Float).backward();
                return;
            }
            Some(Pending::Pooled { hidden, mask }) => {
                let l = hidden.size()[1];
                let gh = crate::kernels::mean_pool_backward(grad, &mask, l)
                    .expect("the CUDA mean-pooling kernel failed");
                (hidden * gh.detach()).sum(Kind::Float).backward();
                return;
            }
            Some(Pending::Checkpoint(saved)) => {
                (pooled * grad.detach()).sum(Kind::Float).backward();
                saved
            }
        };
        let net = &self.backbone.net;
        let first_needed = self.first_trainable_layer();
        let mut g = saved.last.grad();
        for i in (0..net.info().num_layers).rev() {
            if i < first_needed || !g.defined() {
                break;
            }
            let x = saved.inputs[i].detach().set_requires_grad(true);
            tch::manual_seed(saved.seed + 1 + i as i64);
            let y = net.layer_t(i, &x, &saved.ctx, saved.train);
            (y * g.detach()).sum(Kind::Float).backward();
            g = x.grad();
        }
        if first_needed == 0 && g.defined() && self.embeddings_trainable() {
            tch::manual_seed(saved.seed);
            let (x0, _) = net.embed_t(&saved.batch, saved.train);
            (x0 * g.detach()).sum(Kind::Float).backward();
        }
        tch::manual_seed(saved.seed ^ 0x5DEE_CE66);
    }

    /// The lowest layer with a trainable parameter (0 when the embeddings train too).
    fn first_trainable_layer(&self) -> usize {
        let info = self.info();
        let trains = |prefix: &str| {
            weights::named_variables(&self.backbone.base)
                .into_iter()
                .chain(weights::named_variables(&self.backbone.adapters))
                .any(|(n, t)| n.starts_with(prefix) && t.requires_grad())
        };
        (0..info.num_layers)
            .find(|i| trains(&format!("{}{i}.", info.layer_prefix)))
            .unwrap_or(info.num_layers)
    }

    fn embeddings_trainable(&self) -> bool {
        let info = self.info();
        weights::named_variables(&self.backbone.base).into_iter().any(|(n, t)| {
            t.requires_grad()
                && !n.starts_with(&info.layer_prefix)
                && !info.final_prefixes.iter().any(|f| n.starts_with(f.as_str()))
        })
    }

    /// The task heads on a pooled representation: scores `[B]` and logits `[B, K]`.
    pub fn forward_heads(&self, pooled: &Tensor, train: bool) -> (Tensor, Option<Tensor>) {
        let score = self.regression.forward_t(pooled, train);
        let logits = self.classification.as_ref().map(|c| c.forward_t(pooled, train));
        (score, logits)
    }

    /// The further heads of `spec.heads.extra` on a pooled representation, in their order:
    /// scores `[B]` for regression heads, logits `[B, K]` for classification heads.
    pub fn forward_extra_heads(&self, pooled: &Tensor, train: bool) -> Vec<Tensor> {
        self.extra.iter().map(|h| h.forward_t(pooled, train)).collect()
    }

    /// Every trainable parameter, sorted by name within each part.
    pub fn parameters(&self) -> Vec<Param> {
        let mut out = Vec::new();
        for (vs, part, prefix) in [
            (&self.backbone.base, Part::Backbone, "backbone."),
            (&self.backbone.adapters, Part::Adapter, "adapters."),
            (&self.heads_vs, Part::Head, "heads."),
        ] {
            for (name, tensor) in weights::named_variables(vs) {
                if tensor.requires_grad() {
                    out.push(Param {
                        decay: decays(&name),
                        depth: match part {
                            Part::Head => Depth::Other,
                            _ => self.info().depth_of(&name),
                        },
                        name: format!("{prefix}{name}"),
                        tensor,
                        part,
                    });
                }
            }
        }
        out
    }

    /// The shared parameters a probe differentiates against (empty for
    /// `Probe::Representation`, which uses [`Outputs::pooled`]).
    pub fn probe_parameters(&self, probe: Probe) -> Result<Vec<Tensor>> {
        let info = self.info();
        let last = format!("{}{}.", info.layer_prefix, info.num_layers.saturating_sub(1));
        let in_last = |n: &str| {
            n.starts_with(&last) || info.final_prefixes.iter().any(|f| n.starts_with(f.as_str()))
        };
        let params: Vec<Tensor> = match probe {
            Probe::Representation => return Ok(vec![]),
            Probe::LastLayer => self
                .parameters()
                .into_iter()
                .filter(|p| {
                    p.part != Part::Head && in_last(p.name.split_once('.').map_or("", |x| x.1))
                })
                .map(|p| p.tensor)
                .collect(),
            Probe::All => self
                .parameters()
                .into_iter()
                .filter(|p| p.part != Part::Head)
                .map(|p| p.tensor)
                .collect(),
        };
        if params.is_empty() {
            return Err(Error::Invalid(format!(
                "probe {probe:?} has no trainable shared parameters with tuning `{}`; use the representation probe",
                self.spec.tuning
            )));
        }
        Ok(params)
    }

    /// Folds LoRA adapters into the base weights for inference.
    pub fn merge_lora(&mut self) {
        self.backbone.net.merge_lora();
    }

    /// Copies the backbone weights of `other` (a saved run's model, LoRA merged first) into
    /// this model's backbone: every name must exist in both with the same shape. Heads and
    /// adapters are left as they are. Returns the number of tensors copied.
    pub fn copy_backbone_from(&self, other: &MultiTaskModel) -> Result<usize> {
        let src: std::collections::BTreeMap<String, Tensor> =
            weights::named_variables(&other.backbone.base).into_iter().collect();
        let dst = weights::named_variables(&self.backbone.base);
        if let Some(extra) = src.keys().find(|n| !dst.iter().any(|(d, _)| d == *n)) {
            return Err(Error::Invalid(format!(
                "the source backbone has a weight `{extra}` this one lacks"
            )));
        }
        for (name, t) in &dst {
            let s = src.get(name).ok_or_else(|| {
                Error::Invalid(format!("the source backbone has no weight `{name}`"))
            })?;
            if s.size() != t.size() {
                return Err(Error::Invalid(format!(
                    "weight `{name}` has shape {:?} in the source backbone, {:?} here",
                    s.size(),
                    t.size()
                )));
            }
        }
        tch::no_grad(|| {
            for (name, t) in &dst {
                let mut t = t.shallow_clone();
                t.copy_(&src[name]);
            }
        });
        Ok(dst.len())
    }

    /// Named tensors of every part, for checkpoints: `backbone.*`, `adapters.*`, `heads.*`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let lora = matches!(self.spec.tuning, Tuning::Lora(_));
        for (vs, prefix, include) in [
            (&self.backbone.base, "backbone.", !lora),
            (&self.backbone.adapters, "adapters.", true),
            (&self.heads_vs, "heads.", true),
        ] {
            if include {
                out.extend(
                    weights::named_variables(vs)
                        .into_iter()
                        .map(|(n, t)| (format!("{prefix}{n}"), t)),
                );
            }
        }
        out
    }

    /// Restores tensors written by [`Self::state`] (shapes checked, names must match).
    pub fn load_state(&self, ckpt: &Checkpoint) -> Result<()> {
        let lora = matches!(self.spec.tuning, Tuning::Lora(_));
        if !lora {
            ckpt.load_into(&self.backbone.base, "backbone.")?;
        }
        ckpt.load_into(&self.backbone.adapters, "adapters.")?;
        ckpt.load_into(&self.heads_vs, "heads.")?;
        Ok(())
    }

    /// Writes the model folder: `model.safetensors` (backbone, checkpoint names; not for LoRA),
    /// `adapters.safetensors` (LoRA), `heads.safetensors`, `config.json`, `tokenizer.json` and
    /// `fintune.json` (with `extra`). The folder is written beside `dir` and then renamed over it.
    pub fn save(&self, dir: &Path, extra: serde_json::Value) -> Result<()> {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = weights::tmp_path(dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let lora = matches!(self.spec.tuning, Tuning::Lora(_));
        if !lora {
            weights::save(
                &tmp.join("model.safetensors"),
                &weights::named_variables(&self.backbone.base),
                None,
            )?;
        } else {
            weights::save(
                &tmp.join("adapters.safetensors"),
                &weights::named_variables(&self.backbone.adapters),
                None,
            )?;
        }
        weights::save(
            &tmp.join("heads.safetensors"),
            &weights::named_variables(&self.heads_vs),
            None,
        )?;
        for f in ["config.json", "tokenizer.json"] {
            let src = self.backbone.dir.join(f);
            std::fs::copy(&src, tmp.join(f)).map_err(|e| Error::io(&src, e))?;
        }
        let saved = SavedModel {
            format: 1,
            backbone: self.info().clone(),
            base_dir: std::fs::canonicalize(&self.base_dir)
                .unwrap_or_else(|_| self.base_dir.clone()),
            base_sha256: base_hash(&self.base_dir)?,
            backbone_saved: !lora,
            pooling: self.pooling,
            padding_side: self.info().padding_side,
            spec: self.spec.clone(),
            extra,
        };
        let json = serde_json::to_string_pretty(&saved)
            .map_err(|e| Error::json(tmp.join("fintune.json"), e))?;
        std::fs::write(tmp.join("fintune.json"), json)
            .map_err(|e| Error::io(tmp.join("fintune.json"), e))?;
        if dir.exists() {
            let old = dir.with_file_name(format!(
                ".{}.old-{}",
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                std::process::id()
            ));
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    }

    /// Loads a folder written by [`Self::save`]. Returns the model and its `fintune.json`.
    pub fn load(dir: &Path, device: Device) -> Result<(Self, SavedModel)> {
        let meta_path = dir.join("fintune.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let saved: SavedModel =
            serde_json::from_str(&text).map_err(|e| Error::json(&meta_path, e))?;
        if saved.format != 1 {
            return Err(Error::config(
                &meta_path,
                format!("unsupported format {} (this build reads 1)", saved.format),
            ));
        }
        let lora = match &saved.spec.tuning {
            Tuning::Lora(l) => Some(l.clone()),
            _ => None,
        };
        let opts = LoadOptions { device, kind: saved.spec.kind(), lora };
        let backbone = if saved.backbone_saved {
            load_backbone(dir, &opts)?
        } else {
            let found = base_hash(&saved.base_dir)?;
            if found != saved.base_sha256 {
                return Err(Error::config(
                    &meta_path,
                    format!(
                        "the base weights in {} changed (sha256 {found}, the run used {}); LoRA adapters only fit the original",
                        saved.base_dir.display(),
                        saved.base_sha256
                    ),
                ));
            }
            let mut b = load_backbone(&saved.base_dir, &opts)?;
            b.dir = dir.to_owned();
            let ad = Checkpoint::open_files(&[dir.join("adapters.safetensors")])?;
            ad.load_into(&b.adapters, "")?;
            b
        };
        let mut model = Self::assemble(backbone, &saved.spec, saved.base_dir.clone(), device)?;
        model.pooling = saved.pooling;
        let heads = Checkpoint::open_files(&[dir.join("heads.safetensors")])?;
        heads.load_into(&model.heads_vs, "")?;
        Ok((model, saved))
    }
}

/// SHA-256 of a model folder's weights (`model.safetensors`, or the index and its shards).
pub fn base_hash(dir: &Path) -> Result<String> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return weights::sha256_file(&single);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "safetensors")
                || p.ends_with("model.safetensors.index.json")
        })
        .collect();
    files.sort();
    let parts: Vec<String> =
        files.iter().map(|f| weights::sha256_file(f)).collect::<Result<_>>()?;
    Ok(parts.join("+"))
}
