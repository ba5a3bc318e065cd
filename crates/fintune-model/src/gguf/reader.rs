//! The GGUF container: header, metadata, tensor infos, data section.
//!
//! Layout (little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count, the metadata key/values, the tensor infos, padding to the alignment, tensor data.
//! Strings are a `u64` byte length then UTF-8 bytes; arrays are a `u32` element type, a `u64`
//! count, then the elements.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dequant::dequantize;
use super::ggml::{GgmlType, DEQUANTIZABLE};
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section and of tensor offsets when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Nesting limit for arrays of arrays (guards the parser's recursion).
const MAX_ARRAY_DEPTH: usize = 8;

/// A GGUF metadata value type (the `u32` tag before each value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type with GGUF tag `id`.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The GGUF tag.
    pub fn id(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// The fewest bytes one value of this type takes in a file.
    fn min_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: elements of one type, stored compactly.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    /// Nested arrays (each with its own element type).
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `i64` when the element type is an integer type whose values all fit.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Array::U64(v) => v.iter().map(|&x| i64::try_from(x).ok()).collect::<Option<_>>()?,
            Array::I64(v) => v.clone(),
            _ => return None,
        })
    }
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value, widened to `i128` (so every GGUF integer fits).
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An `F32` or `F64` value as `f64`.
    pub fn as_float(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Array(a) => format!("an array of {:?} ({} elements)", a.elem_type(), a.len()),
            other => format!("{:?}", other.value_type()),
        }
    }
}

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Row-major shape: GGUF's `ne` reversed, so `ne = [576, 49152]` becomes `[49152, 576]`
    /// (the last dimension is the contiguous one).
    pub shape: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements.
    pub n_elements: u64,
    /// Number of bytes of data.
    pub n_bytes: u64,
}

enum Storage {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Map(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file; tensor data stays in the (memory-mapped) file until it is asked for.
pub struct GgufFile {
    path: PathBuf,
    bytes: Storage,
    version: u32,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_start", &self.data_start)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bytes = if len == 0 {
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the mapping is read-only and fintune never writes a GGUF file in place.
            // Another process truncating the file while it is mapped would fault; that is the
            // usual caveat of memory-mapped model files (llama.cpp and safetensors share it).
            Storage::Map(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        parse(path.to_owned(), bytes)
    }

    /// Parses a GGUF image held in memory; `name` is used in error messages.
    pub fn from_bytes(bytes: Vec<u8>, name: impl Into<PathBuf>) -> Result<Self> {
        parse(name.into(), Storage::Owned(bytes))
    }

    /// The file's path (or the name given to [`GgufFile::from_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The alignment of the data section (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }
    /// Byte offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }
    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Metadata key/values in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// An error about this file.
    pub(crate) fn err(&self, reason: impl Into<String>) -> Error {
        Error::Gguf { path: self.path.clone(), reason: reason.into() }
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| self.err(format!("missing metadata key `{key}`")))
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                self.err(format!("metadata `{key}` is {}, expected {expected}", v.describe()))
            }),
        }
    }

    /// An integer key that fits `u32` (any integer type is accepted); `None` when absent.
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.typed(key, "an integer in u32 range", |v| v.as_int().and_then(|i| i.try_into().ok()))
    }
    /// An integer key that fits `u64`; `None` when absent.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "an integer in u64 range", |v| v.as_int().and_then(|i| i.try_into().ok()))
    }
    /// A float key (`F32` or `F64`, narrowed to `f32`); `None` when absent.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a float", |v| v.as_float().map(|f| f as f32))
    }
    /// A boolean key; `None` when absent.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", Value::as_bool)
    }
    /// A string key; `None` when absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", Value::as_str)
    }

    /// A required integer key that fits `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.required(key)?;
        Ok(self.opt_u32(key)?.expect("present"))
    }
    /// A required integer key that fits `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.required(key)?;
        Ok(self.opt_u64(key)?.expect("present"))
    }
    /// A required float key.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.required(key)?;
        Ok(self.opt_f32(key)?.expect("present"))
    }
    /// A required boolean key.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.required(key)?;
        Ok(self.opt_bool(key)?.expect("present"))
    }
    /// A required string key.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.required(key)?;
        Ok(self.opt_str(key)?.expect("present"))
    }
    /// A required array-of-strings key.
    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        self.required(key)?;
        let arr = self.typed(key, "an array of strings", |v| match v.as_array() {
            Some(Array::String(s)) => Some(s.as_slice()),
            _ => None,
        })?;
        Ok(arr.expect("present"))
    }
    /// A required array-of-integers key, widened to `i64`.
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>> {
        self.required(key)?;
        let arr = self.typed(key, "an array of integers", |v| v.as_array()?.to_i64_vec())?;
        Ok(arr.expect("present"))
    }

    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were checked when the file was opened).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_start + info.offset) as usize;
        &self.bytes[start..start + info.n_bytes as usize]
    }

    /// Tensor `name` dequantized to f32, in row-major order of [`TensorInfo::shape`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| self.err(format!("no tensor `{name}` in the file")))?;
        self.dequantize(info)
    }

    /// The data of `info` dequantized to f32.
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        if !info.ggml_type.can_dequantize() {
            return Err(self.err(format!(
                "tensor `{}` has type {}, which cannot be dequantized (supported: {DEQUANTIZABLE})",
                info.name, info.ggml_type
            )));
        }
        let mut out = vec![0f32; info.n_elements as usize];
        dequantize(info.ggml_type, self.tensor_data(info), &mut out)
            .map_err(|e| self.err(format!("tensor `{}`: {e}", info.name)))?;
        Ok(out)
    }
}

/// A bounds-checked little-endian cursor.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Gguf { path: self.path.to_owned(), reason: reason.into() }
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated file: {} needs {n} bytes at offset {}, but the file ends at {} bytes",
                what(),
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Fails unless `count` items of at least `min_size` bytes each can fit in the rest of
    /// the file; called before anything is allocated for them.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<()> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(self.err(format!(
                "{} declares {count} entries, more than the {} bytes left in the file can hold (corrupt or truncated file)",
                what(),
                self.remaining()
            ))),
        }
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        let at = self.pos;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|e| self.err(format!("{} at offset {at} is not valid UTF-8: {e}", what())))
    }

    fn value(&mut self, ty: ValueType, what: &dyn Fn() -> String, depth: usize) -> Result<Value> {
        macro_rules! scalar {
            ($t:ty, $v:ident) => {
                Value::$v(<$t>::from_le_bytes(self.array(what)?))
            };
        }
        Ok(match ty {
            ValueType::U8 => scalar!(u8, U8),
            ValueType::I8 => scalar!(i8, I8),
            ValueType::U16 => scalar!(u16, U16),
            ValueType::I16 => scalar!(i16, I16),
            ValueType::U32 => scalar!(u32, U32),
            ValueType::I32 => scalar!(i32, I32),
            ValueType::F32 => scalar!(f32, F32),
            ValueType::U64 => scalar!(u64, U64),
            ValueType::I64 => scalar!(i64, I64),
            ValueType::F64 => scalar!(f64, F64),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(self.err(format!(
                            "{} at offset {at}: bool byte is {b} (must be 0 or 1)",
                            what()
                        )))
                    }
                }
            }
            ValueType::String => Value::String(self.string(what)?),
            ValueType::Array => Value::Array(self.array_value(what, depth)?),
        })
    }

    fn array_value(&mut self, what: &dyn Fn() -> String, depth: usize) -> Result<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(
                self.err(format!("{}: arrays nested more than {MAX_ARRAY_DEPTH} deep", what()))
            );
        }
        let at = self.pos;
        let tag = self.u32(&|| format!("the element type of {}", what()))?;
        let elem = ValueType::from_id(tag).ok_or_else(|| {
            self.err(format!("{} at offset {at}: unknown array element type {tag}", what()))
        })?;
        let count = self.u64(&|| format!("the length of {}", what()))?;
        self.check_count(count, elem.min_size(), what)?;
        let n = count as usize;
        macro_rules! fixed {
            ($t:ty, $v:ident) => {{
                const SIZE: usize = std::mem::size_of::<$t>();
                let bytes = self.take(count * SIZE as u64, what)?;
                Array::$v(
                    bytes
                        .chunks_exact(SIZE)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of SIZE")))
                        .collect(),
                )
            }};
        }
        Ok(match elem {
            ValueType::U8 => fixed!(u8, U8),
            ValueType::I8 => fixed!(i8, I8),
            ValueType::U16 => fixed!(u16, U16),
            ValueType::I16 => fixed!(i16, I16),
            ValueType::U32 => fixed!(u32, U32),
            ValueType::I32 => fixed!(i32, I32),
            ValueType::F32 => fixed!(f32, F32),
            ValueType::U64 => fixed!(u64, U64),
            ValueType::I64 => fixed!(i64, I64),
            ValueType::F64 => fixed!(f64, F64),
            ValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    match self.value(ValueType::Bool, &|| format!("{}[{i}]", what()), depth)? {
                        Value::Bool(b) => v.push(b),
                        _ => unreachable!("value(Bool) returns a Bool"),
                    }
                }
                Array::Bool(v)
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.string(&|| format!("{}[{i}]", what()))?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(self.array_value(&|| format!("{}[{i}]", what()), depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

fn parse(path: PathBuf, bytes: Storage) -> Result<GgufFile> {
    let buf: &[u8] = &bytes;
    let mut c = Cursor { buf, pos: 0, path: &path };
    if buf.len() < 4 {
        return Err(c.err(format!(
            "file is {} bytes long, too short to be a GGUF file (empty or truncated)",
            buf.len()
        )));
    }
    let magic = c.array::<4>(&|| "the magic".into())?;
    if &magic != MAGIC {
        return Err(c.err(format!(
            "bad magic {:?} (bytes {:02x?}), expected \"GGUF\": not a GGUF file",
            String::from_utf8_lossy(&magic),
            magic
        )));
    }
    let version = c.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(c.err(
                "GGUF version 1 is not supported (supported: 2, 3); re-convert the model with a current llama.cpp",
            ))
        }
        v if (1..=3).contains(&v.swap_bytes()) => {
            return Err(c.err(format!(
                "big-endian GGUF (version {}) is not supported",
                v.swap_bytes()
            )))
        }
        v => return Err(c.err(format!("unsupported GGUF version {v} (supported: 2, 3)"))),
    }
    let n_tensors = c.u64(&|| "the tensor count".into())?;
    let n_kv = c.u64(&|| "the metadata count".into())?;
    // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
    // 8 (name length) + 4 (dims) + 4 (type) + 8 (offset).
    c.check_count(n_kv, 13, &|| "the header's metadata count".into())?;
    c.check_count(n_tensors, 24, &|| "the header's tensor count".into())?;

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
    let mut meta_index = HashMap::with_capacity(n_kv as usize);
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let at = c.pos;
        let tag = c.u32(&|| format!("the type of metadata `{key}`"))?;
        let ty = ValueType::from_id(tag).ok_or_else(|| {
            c.err(format!("metadata `{key}` at offset {at}: unknown value type {tag}"))
        })?;
        let value = c.value(ty, &|| format!("metadata `{key}`"), 0)?;
        if meta_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(c.err(format!("metadata key `{key}` appears twice")));
        }
        metadata.push((key, value));
    }

    let alignment = match meta_index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_int().and_then(|a| u64::try_from(a).ok()) {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(c.err(format!("general.alignment is {v:?}; it must be a power of two")))
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("the name of tensor #{i}"))?;
        let n_dims = c.u32(&|| format!("the dimension count of tensor `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(c.err(format!(
                "tensor `{name}` has {n_dims} dimensions (ggml allows at most {MAX_DIMS})"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            ne.push(c.u64(&|| format!("dimension {d} of tensor `{name}`"))?);
        }
        let at = c.pos;
        let type_id = c.u32(&|| format!("the type of tensor `{name}`"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            c.err(format!(
                "tensor `{name}` (info at offset {at}) has unknown ggml type id {type_id}"
            ))
        })?;
        let offset = c.u64(&|| format!("the data offset of tensor `{name}`"))?;
        let n_elements = ne
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| c.err(format!("tensor `{name}` has absurd dimensions {ne:?}")))?;
        let block = ggml_type.block_size();
        if ne.first().copied().unwrap_or(1) % block != 0 {
            return Err(c.err(format!(
                "tensor `{name}`: row length {} is not a multiple of the {ggml_type} block size {block}",
                ne.first().copied().unwrap_or(1)
            )));
        }
        let n_bytes = (n_elements / block)
            .checked_mul(ggml_type.type_size())
            .ok_or_else(|| c.err(format!("tensor `{name}` has absurd dimensions {ne:?}")))?;
        if offset % alignment != 0 {
            return Err(c.err(format!(
                "tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"
            )));
        }
        if tensor_index.insert(name.clone(), tensors.len()).is_some() {
            return Err(c.err(format!("tensor `{name}` appears twice")));
        }
        ne.reverse();
        tensors.push(TensorInfo { name, shape: ne, ggml_type, offset, n_elements, n_bytes });
    }

    let header_end = c.pos as u64;
    let data_start = header_end.div_ceil(alignment) * alignment;
    let len = buf.len() as u64;
    for t in &tensors {
        let end = data_start.checked_add(t.offset).and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= len => {}
            _ => {
                return Err(c.err(format!(
                    "truncated file: tensor `{}` ({} {:?}, {} bytes at data offset {}) ends past the end of the file ({len} bytes, data section starts at {data_start})",
                    t.name, t.ggml_type, t.shape, t.n_bytes, t.offset
                )))
            }
        }
    }

    Ok(GgufFile {
        path,
        bytes,
        version,
        metadata,
        meta_index,
        tensors,
        tensor_index,
        alignment,
        data_start,
    })
}
