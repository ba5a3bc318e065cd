//! Safetensors checkpoints: memory-mapped reading (single file or sharded with an index),
//! name-for-name loading into a [`VarStore`] with shape checks, and atomic writing.
//!
//! Only safetensors are read, never pickle. A truncated or corrupted file is an
//! [`Error::Safetensors`], never a crash; a weight holding NaN or infinity is an
//! [`Error::NonFinite`] naming it; an index may only name shards inside the model folder.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, TensorInfo};
use safetensors::SafeTensors;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// One memory-mapped safetensors file.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    map: Mmap,
    header_len: usize,
    meta: Metadata,
}

/// A checkpoint: one or several memory-mapped safetensors files and the index of their tensors.
#[derive(Debug)]
pub struct Checkpoint {
    shards: Vec<Shard>,
    /// Tensor name -> shard index.
    index: BTreeMap<String, usize>,
}

impl Checkpoint {
    /// Opens the weights of a Hugging Face model folder: `model.safetensors`, or the shards
    /// listed by `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.exists() {
            return Self::open_files(&[single]);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.exists() {
            return Err(Error::io(
                &single,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json in the folder",
                ),
            ));
        }
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
        let index: Index = serde_json::from_str(&text).map_err(|e| Error::json(&index_path, e))?;
        let mut files: Vec<String> = index.weight_map.values().cloned().collect();
        files.sort();
        files.dedup();
        // Shards live in the folder itself: `../x.safetensors` or `/etc/x` would read files the
        // model does not own. (Symbolic links inside the folder, as in the Hugging Face cache,
        // stay allowed: only the names are checked.)
        if let Some(bad) = files.iter().find(|f| !inside_folder(f)) {
            return Err(Error::config(
                &index_path,
                format!(
                    "weight_map names shard `{bad}`, which is outside the model folder (shards must be relative paths inside it)"
                ),
            ));
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        let ckpt = Self::open_files(&paths)?;
        for (name, file) in &index.weight_map {
            let shard = &ckpt.shards[ckpt.index.get(name).copied().ok_or_else(|| {
                Error::MissingTensor { path: dir.join(file), name: name.clone() }
            })?];
            if shard.path != dir.join(file) {
                return Err(Error::config(
                    &index_path,
                    format!(
                        "tensor `{name}` is listed in {file} but found in {}",
                        shard.path.display()
                    ),
                ));
            }
        }
        Ok(ckpt)
    }

    /// Opens explicit safetensors files (memory-mapped; nothing is copied).
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut index = BTreeMap::new();
        for path in paths {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the file is opened read-only; fintune never writes a checkpoint in place
            // (writers use a temporary file and a rename), so the mapping stays valid.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
                Error::Safetensors { path: path.clone(), reason: describe(&e, map.len()) }
            })?;
            for name in meta.tensors().keys() {
                if index.insert(name.clone(), shards.len()).is_some() {
                    return Err(Error::Safetensors {
                        path: path.clone(),
                        reason: format!("tensor `{name}` appears in more than one shard"),
                    });
                }
            }
            shards.push(Shard { path: path.clone(), map, header_len, meta });
        }
        Ok(Checkpoint { shards, index })
    }

    /// The names of all tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Whether the checkpoint has a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The first of `candidates` such that `candidates + probe` is a tensor name.
    pub fn detect_prefix<'a>(&self, probe: &str, candidates: &[&'a str]) -> Option<&'a str> {
        candidates.iter().copied().find(|p| self.contains(&format!("{p}{probe}")))
    }

    fn info(&self, name: &str) -> Result<(&Shard, &TensorInfo)> {
        let shard = self.index.get(name).map(|&i| &self.shards[i]).ok_or_else(|| {
            Error::MissingTensor { path: self.describe_path(), name: name.to_owned() }
        })?;
        let info = shard.meta.info(name).expect("indexed names exist in their shard");
        Ok((shard, info))
    }

    /// The distinct `i` of the tensors named `{prefix}{i}.…` (the layers a checkpoint holds
    /// below `prefix`, e.g. `encoder.layer.`).
    pub fn layer_indices(&self, prefix: &str) -> BTreeSet<usize> {
        self.index
            .range(prefix.to_owned()..)
            .map(|(name, _)| name)
            .take_while(|name| name.starts_with(prefix))
            .filter_map(|name| name[prefix.len()..].split_once('.')?.0.parse().ok())
            .collect()
    }

    /// Checks that tensor `name` has the shape `expected`, which a config.json implies:
    /// a [`Error::Config`] on `config` naming `what` (the config fields) otherwise.
    pub fn expect_shape(
        &self,
        config: &Path,
        name: &str,
        expected: &[i64],
        what: &str,
    ) -> Result<()> {
        let found = self.shape(name)?;
        if found != expected {
            return Err(Error::config(
                config,
                format!(
                    "tensor `{name}` has shape {found:?}, the model expects {expected:?} (from {what})"
                ),
            ));
        }
        Ok(())
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<i64>> {
        Ok(self.info(name)?.1.shape.iter().map(|&d| d as i64).collect())
    }

    /// A CPU tensor holding a copy of `name`, in its stored dtype.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let (shard, info) = self.info(name)?;
        let kind = kind_of(info.dtype).ok_or_else(|| Error::Safetensors {
            path: shard.path.clone(),
            reason: format!("tensor `{name}` has unsupported dtype {:?}", info.dtype),
        })?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        Ok(Tensor::f_from_data_size(&shard.map[start..end], &shape, kind)?)
    }

    /// Copies tensor `name` into `dst` (converting dtype and device), checking the shape,
    /// without an intermediate copy when the mapped bytes are suitably aligned.
    pub fn copy_into(&self, name: &str, dst: &mut Tensor) -> Result<()> {
        let (shard, info) = self.info(name)?;
        let found: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let expected = dst.size();
        if found != expected {
            return Err(Error::ShapeMismatch {
                path: shard.path.clone(),
                name: name.to_owned(),
                expected,
                found,
            });
        }
        let kind = kind_of(info.dtype).ok_or_else(|| Error::Safetensors {
            path: shard.path.clone(),
            reason: format!("tensor `{name}` has unsupported dtype {:?}", info.dtype),
        })?;
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        let bytes = &shard.map[start..end];
        tch::no_grad(|| -> Result<()> {
            if (bytes.as_ptr() as usize).is_multiple_of(kind.elt_size_in_bytes()) {
                // SAFETY: `bytes` is a live, read-only mapping holding exactly `numel * elt_size`
                // bytes (validated by `read_metadata`) and is aligned for `kind`; the borrowed
                // tensor is only read by `copy_` and dropped before this function returns.
                let src =
                    unsafe { Tensor::f_from_blob(bytes.as_ptr(), &found, &[], kind, Device::Cpu)? };
                dst.f_copy_(&src)?;
            } else {
                let src = Tensor::f_from_data_size(bytes, &found, kind)?;
                dst.f_copy_(&src)?;
            }
            Ok(())
        })
    }

    /// Loads every variable of `vs` from the tensor `prefix + name`; a missing tensor or a
    /// wrong shape is an error naming the tensor. Tensors of the checkpoint that the model does
    /// not use (a pooler, an LM head, buffers) are ignored.
    pub fn load_into(&self, vs: &VarStore, prefix: &str) -> Result<()> {
        let mut vars = vs.variables_.lock().expect("var store lock");
        let mut names: Vec<String> = vars.named_variables.keys().cloned().collect();
        names.sort();
        for name in names {
            let dst = vars.named_variables.get_mut(&name).expect("listed above");
            let full = format!("{prefix}{name}");
            self.copy_into(&full, dst)?;
            if dst.is_floating_point() && !tch::no_grad(|| all_finite(dst))? {
                let (shard, _) = self.info(&full)?;
                return Err(Error::NonFinite { path: shard.path.clone(), name: full });
            }
        }
        Ok(())
    }

    fn describe_path(&self) -> PathBuf {
        match self.shards.as_slice() {
            [one] => one.path.clone(),
            many => {
                let dir = many.first().and_then(|s| s.path.parent()).unwrap_or(Path::new("."));
                dir.join("model.safetensors.index.json")
            }
        }
    }
}

/// Whether every element of a floating-point tensor is finite (no NaN, no infinity).
fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.f_isfinite()?.f_all()?.f_int64_value(&[])? == 1)
}

/// Whether a shard name from an index is a relative path that stays inside the folder.
fn inside_folder(name: &str) -> bool {
    use std::path::Component;
    let path = Path::new(name);
    !name.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn describe(err: &safetensors::SafeTensorError, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match err {
        E::HeaderTooSmall => format!("file is too small ({len} bytes) to hold a header"),
        E::MetadataIncompleteBuffer => {
            format!("the data section does not match the header (truncated or padded file, {len} bytes)")
        }
        E::InvalidHeaderLength => {
            format!("header length exceeds the file size ({len} bytes): truncated?")
        }
        other => other.to_string(),
    }
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        other => {
            return Err(Error::Invalid(format!("cannot store {other:?} tensors in safetensors")))
        }
    })
}

/// A tensor to serialise. Its bytes are read when the writer asks for them, one tensor at a
/// time: a contiguous CPU tensor is written straight from its own memory, any other (a CUDA
/// tensor, a strided view) through a copy of that tensor alone. Saving a model or a checkpoint
/// therefore adds at most one tensor to the peak memory, not a copy of everything saved
/// (measured on MPNet: a checkpoint of parameters and moments used to add 1.3 GB).
struct View {
    dtype: Dtype,
    shape: Vec<usize>,
    len: usize,
    tensor: Tensor,
}

impl View {
    fn new(t: &Tensor) -> Result<View> {
        let t = t.detach();
        Ok(View {
            dtype: dtype_of(t.kind())?,
            shape: t.size().iter().map(|&d| d as usize).collect(),
            len: t.numel() * t.kind().elt_size_in_bytes(),
            tensor: t,
        })
    }
}

impl safetensors::View for &View {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let t = &self.tensor;
        if self.len == 0 {
            return std::borrow::Cow::Borrowed(&[]);
        }
        if t.device() == Device::Cpu && t.is_contiguous() {
            // SAFETY: a contiguous CPU tensor's storage holds `numel * element size` bytes
            // from `data_ptr()` (which accounts for the storage offset); `self.tensor` keeps
            // that storage alive for the borrow, and nothing writes to it while the file is
            // written (the caller holds the tensors and the write is synchronous).
            let bytes = unsafe {
                std::slice::from_raw_parts(t.data_ptr().cast::<u8>().cast_const(), self.len)
            };
            return std::borrow::Cow::Borrowed(bytes);
        }
        let c = t.to_device(Device::Cpu).contiguous();
        let mut data = vec![0u8; self.len];
        c.f_copy_data_u8(&mut data, c.numel())
            .expect("a contiguous CPU copy holds exactly numel elements of its kind");
        std::borrow::Cow::Owned(data)
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

/// Writes named tensors to a safetensors file atomically (a temporary file in the same folder,
/// then a rename), with optional string metadata in the header.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let views: Vec<(String, View)> =
        tensors.iter().map(|(name, t)| Ok((name.clone(), View::new(t)?))).collect::<Result<_>>()?;
    let tmp = tmp_path(path);
    let result =
        safetensors::serialize_to_file(views.iter().map(|(n, v)| (n.as_str(), v)), metadata, &tmp)
            .map_err(|source| Error::SafetensorsWrite { path: path.to_owned(), source })
            .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The named variables of a var store, sorted by name (shallow clones).
pub fn named_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let vars = vs.variables_.lock().expect("var store lock");
    let mut out: Vec<(String, Tensor)> =
        vars.named_variables.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A sibling temporary path for atomic writes.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// SHA-256 of a file, hex-encoded (used to pin the base weights a LoRA run refers to).
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests;
