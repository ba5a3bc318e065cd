//! Dequantization of ggml blocks to f32, with ggml's block layouts and arithmetic:
//!
//! - `Q8_0`: f16 `d`, 32 × i8 `q`; `x = q * d`.
//! - `Q4_0`: f16 `d`, 16 bytes; element `j < 16` is the low nibble of byte `j`, element
//!   `j + 16` its high nibble; `x = (q - 8) * d`.
//! - `Q4_1`: f16 `d`, f16 `m`, 16 bytes of nibbles as in `Q4_0`; `x = q * d + m`.
//! - `F32`, `F16`, `BF16`: element-wise conversion.
//!
//! Large tensors are split across threads by whole blocks.

use half::f16;

use super::ggml::{GgmlType, DEQUANTIZABLE};
use crate::{Error, Result};

/// Below this many elements a tensor is dequantized on the calling thread.
const PARALLEL_MIN: usize = 1 << 20;

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantizes `data` (whole blocks of type `ty`) into `out`, whose length is the number of
/// elements. Fails when the type is not supported or the lengths do not agree.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    if !ty.can_dequantize() {
        return Err(Error::Invalid(format!(
            "ggml type {ty} cannot be dequantized (supported: {DEQUANTIZABLE})"
        )));
    }
    let block = ty.block_size() as usize;
    let size = ty.type_size() as usize;
    if !out.len().is_multiple_of(block) || data.len() != out.len() / block * size {
        return Err(Error::Invalid(format!(
            "{ty}: {} bytes of data do not hold {} elements ({} bytes per {} elements)",
            data.len(),
            out.len(),
            size,
            block
        )));
    }
    let n_blocks = out.len() / block;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    if out.len() < PARALLEL_MIN || threads < 2 {
        run(ty, data, out);
        return Ok(());
    }
    let per = n_blocks.div_ceil(threads);
    std::thread::scope(|s| {
        for (d, o) in data.chunks(per * size).zip(out.chunks_mut(per * block)) {
            s.spawn(move || run(ty, d, o));
        }
    });
    Ok(())
}

/// Dequantizes matching whole blocks (lengths already checked).
fn run(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(34)) {
                let d = f16_at(b, 0);
                for (x, &q) in o.iter_mut().zip(&b[2..34]) {
                    *x = f32::from(q as i8) * d;
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(18)) {
                let d = f16_at(b, 0);
                let (lo, hi) = o.split_at_mut(16);
                for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&b[2..18]) {
                    *l = f32::from(i16::from(q & 0x0f) - 8) * d;
                    *h = f32::from(i16::from(q >> 4) - 8) * d;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(32).zip(data.chunks_exact(20)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                let (lo, hi) = o.split_at_mut(16);
                for ((l, h), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&b[4..20]) {
                    *l = f32::from(q & 0x0f) * d + m;
                    *h = f32::from(q >> 4) * d + m;
                }
            }
        }
        other => unreachable!("{other} was checked by can_dequantize"),
    }
}
