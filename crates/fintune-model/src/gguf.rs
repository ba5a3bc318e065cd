//! GGUF files (llama.cpp's model format): a memory-mapped reader, dequantization to f32, and
//! conversion of a `llama` GGUF into a Hugging Face model folder that [`crate::load_backbone`]
//! and [`crate::TextEncoder`] read.
//!
//! - [`GgufFile::open`] parses GGUF v2/v3 (little-endian): header, metadata ([`Value`], typed
//!   getters such as [`GgufFile::get_u32`] and [`GgufFile::get_str_array`]), tensor infos
//!   ([`TensorInfo`], shapes in row-major order, i.e. GGUF's `ne` reversed), the alignment and
//!   the data section. Every malformed input is an [`Error::Gguf`] saying what is wrong; no
//!   count read from the file is allocated before it is checked against the file length.
//! - [`dequantize`] / [`GgufFile::tensor_f32`] turn F32, F16, BF16, Q8_0, Q4_0 and Q4_1 data
//!   into f32 (ggml's block layouts and arithmetic).
//! - [`convert`] writes `model.safetensors` (f32, Hugging Face Llama key names, llama.cpp's
//!   Q/K row permutation undone), `config.json` (`model_type = "llama"`), `tokenizer.json`
//!   (byte-level BPE built with the `tokenizers` crate from the GGUF vocabulary),
//!   `tokenizer_config.json` and `generation_config.json`, atomically.
//!
//! ```no_run
//! use fintune_model::gguf;
//! use std::path::Path;
//!
//! # fn main() -> Result<(), fintune_model::Error> {
//! let src = Path::new(".fintune/downloads/SmolLM2-135M-Instruct-gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
//! let file = gguf::GgufFile::open(src)?;
//! assert_eq!(file.get_str("general.architecture")?, "llama");
//! let report = gguf::convert(src, Path::new("/tmp/SmolLM2-135M-Instruct"))?;
//! println!("{report}");
//! # Ok(()) }
//! ```

mod convert;
mod dequant;
mod ggml;
mod reader;
mod tokenizer;

pub use convert::{convert, llama_cpp_permute_rows, undo_llama_cpp_permute_rows, ConvertReport};
pub use dequant::dequantize;
pub use ggml::GgmlType;
pub use reader::{Array, GgufFile, TensorInfo, Value, ValueType};
pub use tokenizer::tokenizer_from_gguf;

#[cfg(test)]
mod tests;
