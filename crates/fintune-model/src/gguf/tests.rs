//! Unit tests of the GGUF reader, dequantizers, Q/K permutation, tokenizer and conversion,
//! on small GGUF images written by the in-test writer below.

use std::path::Path;

use half::f16;

use super::*;
use crate::Error;

// ---------------------------------------------------------------------------------------
// A small GGUF writer (little-endian, version 3 by default).

fn enc_str(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

/// One metadata value: its type tag and encoded payload.
#[derive(Clone)]
struct Kv(u32, Vec<u8>);

fn kv_u32(x: u32) -> Kv {
    Kv(4, x.to_le_bytes().to_vec())
}
fn kv_f32(x: f32) -> Kv {
    Kv(6, x.to_le_bytes().to_vec())
}
fn kv_bool(x: bool) -> Kv {
    Kv(7, vec![u8::from(x)])
}
fn kv_str(s: &str) -> Kv {
    Kv(8, enc_str(s))
}
fn kv_str_array(items: &[&str]) -> Kv {
    let mut v = 8u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for s in items {
        v.extend(enc_str(s));
    }
    Kv(9, v)
}
fn kv_i32_array(items: &[i32]) -> Kv {
    let mut v = 5u32.to_le_bytes().to_vec();
    v.extend((items.len() as u64).to_le_bytes());
    for x in items {
        v.extend(x.to_le_bytes());
    }
    Kv(9, v)
}

struct TensorSpec {
    name: String,
    /// GGUF order (`ne[0]` is the contiguous dimension).
    ne: Vec<u64>,
    ty: u32,
    data: Vec<u8>,
}

struct Writer {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, Kv)>,
    tensors: Vec<TensorSpec>,
}

impl Writer {
    fn new() -> Self {
        Writer { version: 3, alignment: 32, kvs: Vec::new(), tensors: Vec::new() }
    }
    fn kv(mut self, key: &str, v: Kv) -> Self {
        self.kvs.push((key.to_owned(), v));
        self
    }
    fn tensor(mut self, name: &str, ne: &[u64], ty: u32, data: Vec<u8>) -> Self {
        self.tensors.push(TensorSpec { name: name.to_owned(), ne: ne.to_vec(), ty, data });
        self
    }
    fn f32_tensor(self, name: &str, ne: &[u64], values: &[f32]) -> Self {
        self.tensor(name, ne, 0, values.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
    /// The image; the file ends exactly where the last tensor's data ends.
    fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, Kv(t, payload)) in &self.kvs {
            b.extend(enc_str(k));
            b.extend(t.to_le_bytes());
            b.extend(payload);
        }
        let align = |x: u64| x.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            b.extend(enc_str(&t.name));
            b.extend((t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.ty.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = align(offset + t.data.len() as u64);
        }
        if !self.tensors.is_empty() {
            b.resize(align(b.len() as u64) as usize, 0);
        }
        let start = b.len() as u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            b.resize((start + off) as usize, 0);
            b.extend(&t.data);
        }
        b
    }
    fn parse(&self) -> crate::Result<GgufFile> {
        GgufFile::from_bytes(self.bytes(), "test.gguf")
    }
}

fn err_of(r: crate::Result<GgufFile>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(Error::Gguf { path, reason }) => {
            assert_eq!(path, Path::new("test.gguf"));
            reason
        }
        Err(other) => panic!("expected Error::Gguf, got {other:?}"),
    }
}

fn f16_bytes(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_bits().to_le_bytes()
}

/// A Q8_0 block: d, then 32 signed bytes.
fn q8_0_block(d: f32, q: &[i8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend(q.iter().map(|&x| x as u8));
    b
}

/// A Q4_1 block: d, m, then 16 bytes whose low nibbles are elements 0..16, high 16..32.
fn q4_1_block(d: f32, m: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = f16_bytes(d).to_vec();
    b.extend(f16_bytes(m));
    b.extend((0..16).map(|j| q[j] | (q[j + 16] << 4)));
    b
}

/// A file with metadata of every value type and tensors of several types.
fn sample() -> Writer {
    let mut nested = 9u32.to_le_bytes().to_vec(); // array of arrays
    nested.extend(2u64.to_le_bytes());
    for row in [[1u16, 2], [3, 4]] {
        nested.extend(2u32.to_le_bytes()); // of u16
        nested.extend(2u64.to_le_bytes());
        for x in row {
            nested.extend(x.to_le_bytes());
        }
    }
    let q: [i8; 32] = std::array::from_fn(|i| i as i8 - 16);
    Writer::new()
        .kv("general.architecture", kv_str("llama"))
        .kv("t.u8", Kv(0, vec![200]))
        .kv("t.i8", Kv(1, vec![0xfe]))
        .kv("t.u16", Kv(2, 65_000u16.to_le_bytes().to_vec()))
        .kv("t.i16", Kv(3, (-300i16).to_le_bytes().to_vec()))
        .kv("t.u32", kv_u32(4_000_000_000))
        .kv("t.i32", Kv(5, (-5i32).to_le_bytes().to_vec()))
        .kv("t.f32", kv_f32(1.5))
        .kv("t.bool", kv_bool(true))
        .kv("t.str", kv_str("héllo"))
        .kv("t.u64", Kv(10, u64::MAX.to_le_bytes().to_vec()))
        .kv("t.i64", Kv(11, i64::MIN.to_le_bytes().to_vec()))
        .kv("t.f64", Kv(12, 0.1f64.to_le_bytes().to_vec()))
        .kv("t.strs", kv_str_array(&["a", "", "ü b"]))
        .kv("t.ints", kv_i32_array(&[-1, 0, 7]))
        .kv("t.nested", Kv(9, nested))
        .f32_tensor("w", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .tensor(
            "h",
            &[4],
            1,
            [0.5f32, -2.0, 1024.0, 1e-3].iter().flat_map(|&x| f16_bytes(x)).collect(),
        )
        .tensor("q", &[32, 1], 8, q8_0_block(0.25, &q))
}

// ---------------------------------------------------------------------------------------
// Reader.

#[test]
fn reads_every_value_type_and_tensor_infos() {
    let f = sample().parse().unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(f.get("t.u8"), Some(&Value::U8(200)));
    assert_eq!(f.get("t.i8"), Some(&Value::I8(-2)));
    assert_eq!(f.get_u32("t.u16").unwrap(), 65_000);
    assert_eq!(f.get("t.i16"), Some(&Value::I16(-300)));
    assert_eq!(f.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get("t.i32"), Some(&Value::I32(-5)));
    assert_eq!(f.get_f32("t.f32").unwrap(), 1.5);
    assert!(f.get_bool("t.bool").unwrap());
    assert_eq!(f.get_str("t.str").unwrap(), "héllo");
    assert_eq!(f.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(f.get("t.i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(f.get_f32("t.f64").unwrap(), 0.1);
    assert_eq!(f.get_str_array("t.strs").unwrap(), ["a", "", "ü b"]);
    assert_eq!(f.get_int_array("t.ints").unwrap(), [-1, 0, 7]);
    assert_eq!(
        f.get("t.nested").and_then(Value::as_array),
        Some(&Array::Array(vec![Array::U16(vec![1, 2]), Array::U16(vec![3, 4])]))
    );
    assert_eq!(f.metadata().count(), 16);
    assert_eq!(f.metadata().next().unwrap().0, "general.architecture");

    // Typed getters reject other types and missing keys with the key's name.
    let e = f.get_u32("t.i32").unwrap_err().to_string();
    assert!(e.contains("t.i32") && e.contains("u32"), "{e}");
    let e = f.get_str("t.u8").unwrap_err().to_string();
    assert!(e.contains("t.u8") && e.contains("expected a string"), "{e}");
    let e = f.get_f32("nope").unwrap_err().to_string();
    assert!(e.contains("missing metadata key `nope`"), "{e}");
    assert_eq!(f.opt_u32("nope").unwrap(), None);
    assert!(f.get_str_array("t.ints").is_err());

    // Tensor infos: shapes are GGUF's ne reversed; offsets are aligned.
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w", "h", "q"]);
    let w = f.tensor_info("w").unwrap();
    assert_eq!(w.shape, [2, 3]);
    assert_eq!((w.ggml_type, w.offset, w.n_elements, w.n_bytes), (GgmlType::F32, 0, 6, 24));
    let q = f.tensor_info("q").unwrap();
    assert_eq!((q.shape.as_slice(), q.ggml_type, q.n_bytes), (&[1u64, 32][..], GgmlType::Q8_0, 34));
    assert_eq!(f.tensor_info("h").unwrap().offset, 32);
    assert_eq!(q.offset, 64);
    assert_eq!(f.data_start() % 32, 0);
    assert_eq!(f.file_len(), f.data_start() + 64 + 34);

    assert_eq!(f.tensor_f32("w").unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let h = f.tensor_f32("h").unwrap();
    assert_eq!(&h[..3], [0.5, -2.0, 1024.0]);
    assert!((h[3] - 1e-3).abs() < 1e-6);
    let qv = f.tensor_f32("q").unwrap();
    assert_eq!(qv, (0..32).map(|i| (i as f32 - 16.0) * 0.25).collect::<Vec<_>>());
    let e = f.tensor_f32("nope").unwrap_err().to_string();
    assert!(e.contains("no tensor `nope`"), "{e}");
}

#[test]
fn version_2_and_a_custom_alignment_are_read() {
    let mut w = sample().kv("general.alignment", kv_u32(64));
    w.version = 2;
    w.alignment = 64;
    let f = w.parse().unwrap();
    assert_eq!((f.version(), f.alignment()), (2, 64));
    assert_eq!(f.data_start() % 64, 0);
    assert_eq!(f.tensor_info("q").unwrap().offset, 128);
    assert_eq!(f.tensor_f32("w").unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn open_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.gguf");
    std::fs::write(&good, sample().bytes()).unwrap();
    let f = GgufFile::open(&good).unwrap();
    assert_eq!(f.path(), good);
    assert_eq!(f.tensor_f32("w").unwrap().len(), 6);

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    match GgufFile::open(&empty).unwrap_err() {
        Error::Gguf { path, reason } => {
            assert_eq!(path, empty);
            assert!(reason.contains("0 bytes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("missing.gguf");
    assert!(matches!(GgufFile::open(&missing).unwrap_err(), Error::Io { .. }));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample().bytes();
    for n in 0..bytes.len() {
        let r = GgufFile::from_bytes(bytes[..n].to_vec(), "test.gguf");
        let reason = err_of(r);
        assert!(
            reason.contains("truncated")
                || reason.contains("too short")
                || reason.contains("more than the"),
            "cut at {n}: {reason}"
        );
    }
    assert!(GgufFile::from_bytes(bytes, "test.gguf").is_ok());
}

/// xorshift64*, so the fuzz test needs no dependency and is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = sample().bytes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] = match rng.next() % 3 {
                0 => rng.next() as u8,
                1 => 0xff,
                _ => b[i] ^ (1 << (rng.next() % 8)),
            };
        }
        match GgufFile::from_bytes(b, "test.gguf") {
            Ok(f) => {
                ok += 1;
                for t in f.tensors() {
                    // Must not panic either; unsupported types are errors.
                    let _ = f.dequantize(t);
                }
            }
            Err(Error::Gguf { .. }) => failed += 1,
            Err(other) => panic!("unexpected error kind {other:?}"),
        }
    }
    // Both outcomes occur (corrupting tensor data keeps the file valid).
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
}

#[test]
fn malformed_headers_are_named() {
    let good = sample().bytes();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        err_of(GgufFile::from_bytes(b, "test.gguf"))
    };
    let e = with(&|b| b[..4].copy_from_slice(b"GGML"));
    assert!(e.contains("bad magic") && e.contains("not a GGUF file"), "{e}");
    let e = with(&|b| b[4..8].copy_from_slice(&1u32.to_le_bytes()));
    assert!(e.contains("version 1 is not supported"), "{e}");
    let e = with(&|b| b[4..8].copy_from_slice(&7u32.to_le_bytes()));
    assert!(e.contains("unsupported GGUF version 7"), "{e}");
    let e = with(&|b| b[4..8].copy_from_slice(&3u32.to_be_bytes()));
    assert!(e.contains("big-endian"), "{e}");
    let e = with(&|b| b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()));
    assert!(e.contains("tensor count declares 18446744073709551615 entries"), "{e}");
    let e = with(&|b| b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()));
    assert!(e.contains("metadata count declares"), "{e}");
    // The first key's length.
    let e = with(&|b| b[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes()));
    assert!(e.contains("truncated") && e.contains("metadata key #0"), "{e}");
}

#[test]
fn malformed_values_and_tensors_are_named() {
    let base = || Writer::new().kv("a", kv_u32(1));
    let e = err_of(base().kv("b", Kv(13, vec![0; 8])).parse());
    assert!(e.contains("metadata `b`") && e.contains("unknown value type 13"), "{e}");
    let e = err_of(base().kv("b", kv_bool(false)).kv("c", Kv(7, vec![2])).parse());
    assert!(e.contains("metadata `c`") && e.contains("bool byte is 2"), "{e}");
    let e = err_of(
        base().kv("b", Kv(8, [2u64.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat())).parse(),
    );
    assert!(e.contains("metadata `b`") && e.contains("not valid UTF-8"), "{e}");
    let e = err_of(base().kv("a", kv_u32(2)).parse());
    assert!(e.contains("`a` appears twice"), "{e}");
    // An array claiming more elements than the file could hold.
    let mut huge = 4u32.to_le_bytes().to_vec();
    huge.extend((u64::MAX / 2).to_le_bytes());
    let e = err_of(base().kv("arr", Kv(9, huge)).parse());
    assert!(e.contains("metadata `arr` declares") && e.contains("entries"), "{e}");
    // Arrays nested too deep.
    let mut deep = Vec::new();
    for _ in 0..20 {
        deep.extend(9u32.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    deep.extend(0u32.to_le_bytes());
    deep.extend(0u64.to_le_bytes());
    let e = err_of(base().kv("deep", Kv(9, deep)).parse());
    assert!(e.contains("nested more than"), "{e}");
    let e = err_of(base().kv("general.alignment", kv_u32(48)).parse());
    assert!(e.contains("general.alignment") && e.contains("power of two"), "{e}");

    let e = err_of(base().tensor("t", &[32], 99, vec![0; 32]).parse());
    assert!(e.contains("tensor `t`") && e.contains("unknown ggml type id 99"), "{e}");
    let e = err_of(base().tensor("t", &[1, 1, 1, 1, 1], 0, vec![0; 4]).parse());
    assert!(e.contains("tensor `t` has 5 dimensions"), "{e}");
    let e = err_of(base().tensor("t", &[16, 2], 8, vec![0; 34]).parse());
    assert!(e.contains("row length 16 is not a multiple of the Q8_0 block size 32"), "{e}");
    let e = err_of(base().tensor("t", &[u64::MAX, 4], 0, vec![]).parse());
    assert!(e.contains("absurd dimensions"), "{e}");
    let e = err_of(base().f32_tensor("t", &[1], &[1.0]).f32_tensor("t", &[1], &[2.0]).parse());
    assert!(e.contains("tensor `t` appears twice"), "{e}");

    // Data beyond the end of the file: shrink the data section.
    let mut b = base().f32_tensor("t", &[8], &[0.0; 8]).bytes();
    b.truncate(b.len() - 4);
    let e = err_of(GgufFile::from_bytes(b, "test.gguf"));
    assert!(e.contains("truncated file: tensor `t`") && e.contains("ends past the end"), "{e}");
    // A misaligned offset: patch the offset field of the only tensor.
    let mut b = base().f32_tensor("t", &[8], &[0.0; 8]).bytes();
    let name_at = b.windows(3).rposition(|w| w == b"\x00\x00t").unwrap() + 3;
    // name, n_dims (4), ne[0] (8), type (4), offset (8)
    let off_at = name_at + 4 + 8 + 4;
    b[off_at..off_at + 8].copy_from_slice(&4u64.to_le_bytes());
    let e = err_of(GgufFile::from_bytes(b, "test.gguf"));
    assert!(e.contains("data offset 4 is not a multiple of the alignment 32"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Dequantization against hand-made blocks.

#[test]
fn q8_0_block_by_hand() {
    let mut q = [0i8; 32];
    q[..6].copy_from_slice(&[-128, -1, 0, 1, 2, 127]);
    let mut out = [f32::NAN; 32];
    dequantize(GgmlType::Q8_0, &q8_0_block(0.5, &q), &mut out).unwrap();
    assert_eq!(&out[..6], [-64.0, -0.5, 0.0, 0.5, 1.0, 63.5]);
    assert!(out[6..].iter().all(|&x| x == 0.0));
}

#[test]
fn q4_0_block_by_hand() {
    // d = 2; byte j holds element j (low nibble j) and element j + 16 (high nibble 15 - j).
    let mut b = f16_bytes(2.0).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut out = [f32::NAN; 32];
    dequantize(GgmlType::Q4_0, &b, &mut out).unwrap();
    // (q - 8) * d
    assert_eq!(out[0], -16.0); // q = 0
    assert_eq!(out[8], 0.0); // q = 8
    assert_eq!(out[15], 14.0); // q = 15
    assert_eq!(out[16], 14.0); // high nibble of byte 0: q = 15
    assert_eq!(out[31], -16.0); // high nibble of byte 15: q = 0
    for j in 0..16 {
        assert_eq!(out[j], (j as f32 - 8.0) * 2.0);
        assert_eq!(out[j + 16], (7.0 - j as f32) * 2.0);
    }
}

#[test]
fn q4_1_block_by_hand() {
    let q: [u8; 32] = std::array::from_fn(|i| (i * 7 % 16) as u8);
    let block = q4_1_block(0.25, -1.5, &q);
    assert_eq!(block.len(), 20);
    assert_eq!(block[4], q[0] | (q[16] << 4));
    let mut out = [f32::NAN; 32];
    dequantize(GgmlType::Q4_1, &block, &mut out).unwrap();
    // q * d + m
    assert_eq!(out[0], -1.5); // q = 0
    assert_eq!(out[1], 0.25); // q = 7
    assert_eq!(out[16], -1.5 + 0.25 * 0.0); // q[16] = 112 % 16 = 0
    assert_eq!(out[17], -1.5 + 0.25 * 7.0); // q[17] = 119 % 16 = 7
    for (i, &x) in out.iter().enumerate() {
        assert_eq!(x, f32::from(q[i]) * 0.25 - 1.5, "element {i}");
    }
}

#[test]
fn plain_types_by_hand() {
    let mut out = [0f32; 5];
    let f16s: Vec<u8> =
        [0x3c00u16, 0xc000, 0x3800, 0x7bff, 0x0001].iter().flat_map(|x| x.to_le_bytes()).collect();
    dequantize(GgmlType::F16, &f16s, &mut out).unwrap();
    assert_eq!(out, [1.0, -2.0, 0.5, 65504.0, 5.960_464_5e-8]);
    let bf16s: Vec<u8> =
        [0x3f80u16, 0xc020, 0x4049, 0x0000, 0x8000].iter().flat_map(|x| x.to_le_bytes()).collect();
    dequantize(GgmlType::BF16, &bf16s, &mut out).unwrap();
    assert_eq!(out[..2], [1.0, -2.5]);
    assert_eq!(out[2], 3.140_625);
    assert_eq!((out[3], out[4].to_bits()), (0.0, 0x8000_0000));
    let f32s: Vec<u8> =
        [1.5f32, -0.0, f32::MAX, 1e-30, 7.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    dequantize(GgmlType::F32, &f32s, &mut out).unwrap();
    assert_eq!(out, [1.5, -0.0, f32::MAX, 1e-30, 7.0]);
}

#[test]
fn large_tensors_split_across_threads_match_block_by_block() {
    // 2^21 elements (65536 blocks) goes through the threaded path.
    let mut rng = Rng(7);
    let n_blocks = 1 << 16;
    let mut data = Vec::with_capacity(n_blocks * 20);
    for _ in 0..n_blocks {
        let d = (rng.next() % 1000) as f32 / 1e4;
        let m = -((rng.next() % 1000) as f32) / 1e3;
        let q: [u8; 32] = std::array::from_fn(|_| (rng.next() % 16) as u8);
        data.extend(q4_1_block(d, m, &q));
    }
    let mut all = vec![0f32; n_blocks * 32];
    dequantize(GgmlType::Q4_1, &data, &mut all).unwrap();
    for (i, block) in data.chunks(20).enumerate().step_by(997) {
        let mut one = [0f32; 32];
        dequantize(GgmlType::Q4_1, block, &mut one).unwrap();
        assert_eq!(&all[i * 32..(i + 1) * 32], one, "block {i}");
    }
}

#[test]
fn unsupported_types_and_bad_lengths_are_errors() {
    let e = dequantize(GgmlType::Q6_K, &[0; 210], &mut [0.0; 256]).unwrap_err().to_string();
    assert!(e.contains("Q6_K cannot be dequantized") && e.contains("Q4_1"), "{e}");
    let e = dequantize(GgmlType::Q8_0, &[0; 33], &mut [0.0; 32]).unwrap_err().to_string();
    assert!(e.contains("33 bytes"), "{e}");
    let e = dequantize(GgmlType::Q4_0, &[0; 18], &mut [0.0; 31]).unwrap_err().to_string();
    assert!(e.contains("31 elements"), "{e}");

    let f = Writer::new().tensor("blk.0.ffn_up.weight", &[32], 6, vec![0; 22]).parse().unwrap();
    let e = f.tensor_f32("blk.0.ffn_up.weight").unwrap_err().to_string();
    assert!(
        e.contains("test.gguf") && e.contains("blk.0.ffn_up.weight") && e.contains("Q5_0"),
        "{e}"
    );
}

#[test]
fn ggml_type_table() {
    assert_eq!(GgmlType::from_id(3), Some(GgmlType::Q4_1));
    assert_eq!(GgmlType::from_id(4), None);
    assert_eq!((GgmlType::Q8_0.block_size(), GgmlType::Q8_0.type_size()), (32, 34));
    assert_eq!((GgmlType::Q4_K.block_size(), GgmlType::Q4_K.type_size()), (256, 144));
    assert_eq!(GgmlType::BF16.id(), 30);
    assert_eq!(GgmlType::Q4_1.to_string(), "Q4_1");
    for id in 0..64 {
        if let Some(t) = GgmlType::from_id(id) {
            assert_eq!(t.id(), id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Q/K permutation.

#[test]
fn permutation_matches_llama_cpp_and_round_trips() {
    // One head of dimension 4, one column: llama.cpp's reshape(1, 2, 2, 1).swapaxes(1, 2)
    // turns rows [r0, r1, r2, r3] into [r0, r2, r1, r3].
    let w = [0.0, 1.0, 2.0, 3.0];
    assert_eq!(llama_cpp_permute_rows(&w, 4, 1, 1).unwrap(), [0.0, 2.0, 1.0, 3.0]);
    // Two heads of dimension 6, two columns.
    let w: Vec<f32> = (0..24).map(|x| x as f32).collect();
    let p = llama_cpp_permute_rows(&w, 12, 2, 2).unwrap();
    let rows: Vec<f32> = p.chunks(2).map(|r| r[0] / 2.0).collect();
    assert_eq!(rows, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0, 6.0, 9.0, 7.0, 10.0, 8.0, 11.0]);
    assert_eq!(undo_llama_cpp_permute_rows(&p, 12, 2, 2).unwrap(), w);
    assert!(llama_cpp_permute_rows(&w, 12, 2, 5).is_err());
    assert!(undo_llama_cpp_permute_rows(&w, 12, 3, 2).is_err());
}

// ---------------------------------------------------------------------------------------
// Tokenizer and conversion on a tiny llama GGUF.

/// GPT-2's byte-level alphabet in byte order.
fn byte_chars() -> Vec<String> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    printable.extend(0xa1..=0xac);
    printable.extend(0xae..=0xff);
    let mut n = 0;
    (0..256u32)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).unwrap().to_string()
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap().to_string()
            }
        })
        .collect()
}

/// Vocabulary: 3 control tokens, the 256 byte symbols, then merged tokens.
fn vocab() -> (Vec<String>, Vec<&'static str>, Vec<i32>) {
    let mut tokens: Vec<String> =
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend(byte_chars());
    tokens.extend(["Ġt", "he", "Ġthe", "12"].map(String::from));
    let merges = vec!["Ġ t", "h e", "Ġt he", "1 2"];
    let mut types = vec![1; tokens.len()];
    types[..3].fill(3);
    (tokens, merges, types)
}

fn with_tokenizer(w: Writer, pre: &str) -> Writer {
    let (tokens, merges, types) = vocab();
    let toks: Vec<&str> = tokens.iter().map(String::as_str).collect();
    w.kv("tokenizer.ggml.model", kv_str("gpt2"))
        .kv("tokenizer.ggml.pre", kv_str(pre))
        .kv("tokenizer.ggml.tokens", kv_str_array(&toks))
        .kv("tokenizer.ggml.merges", kv_str_array(&merges))
        .kv("tokenizer.ggml.token_type", kv_i32_array(&types))
        .kv("tokenizer.ggml.bos_token_id", kv_u32(1))
        .kv("tokenizer.ggml.eos_token_id", kv_u32(2))
        .kv("tokenizer.ggml.padding_token_id", kv_u32(2))
        .kv("tokenizer.ggml.unknown_token_id", kv_u32(0))
}

fn token_strings(tok: &tokenizers::Tokenizer, text: &str) -> Vec<String> {
    tok.encode(text, true).unwrap().get_tokens().to_vec()
}

#[test]
fn tokenizer_follows_llama_cpp_pre_tokenizer_rules() {
    let f = with_tokenizer(Writer::new(), "smollm").parse().unwrap();
    let tok = tokenizer_from_gguf(&f).unwrap();
    // smollm splits every digit before BPE, so the "1 2" merge never applies.
    assert_eq!(token_strings(&tok, " the 12"), ["Ġthe", "Ġ", "1", "2"]);
    // Control tokens are special added tokens, matched in text and skipped when decoding.
    let enc = tok.encode("<|im_start|>the<|im_end|>", true).unwrap();
    assert_eq!(enc.get_ids()[0], 1);
    assert_eq!(*enc.get_ids().last().unwrap(), 2);
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "the");
    // Byte-level decoding restores the text exactly, unicode included.
    let text = "  Ünïcödé €5 📉\tend";
    let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);

    // gpt-2 rules keep digits together.
    let f = with_tokenizer(Writer::new(), "gpt-2").parse().unwrap();
    let tok = tokenizer_from_gguf(&f).unwrap();
    assert_eq!(token_strings(&tok, " the 12"), ["Ġthe", "Ġ", "12"]);
}

#[test]
fn tokenizer_adds_bos_when_the_file_asks() {
    let w =
        with_tokenizer(Writer::new(), "smollm").kv("tokenizer.ggml.add_bos_token", kv_bool(true));
    let tok = tokenizer_from_gguf(&w.parse().unwrap()).unwrap();
    let t = tok.token_to_id("t").unwrap();
    assert_eq!(tok.encode("the", true).unwrap().get_ids()[..2], [1, t]);
    assert_eq!(tok.encode("the", false).unwrap().get_ids()[0], t);
}

#[test]
fn tokenizer_errors_name_the_problem() {
    let e = tokenizer_from_gguf(&with_tokenizer(Writer::new(), "qwen2").parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tokenizer.ggml.pre `qwen2` is not supported") && e.contains("smollm"),
        "{e}"
    );
    let w = Writer::new().kv("tokenizer.ggml.model", kv_str("llama"));
    let e = tokenizer_from_gguf(&w.parse().unwrap()).unwrap_err().to_string();
    assert!(e.contains("`llama`") && e.contains("gpt2"), "{e}");
    let w = Writer::new()
        .kv("tokenizer.ggml.model", kv_str("gpt2"))
        .kv("tokenizer.ggml.pre", kv_str("smollm"))
        .kv("tokenizer.ggml.tokens", kv_str_array(&["a", "b"]))
        .kv("tokenizer.ggml.merges", kv_str_array(&["ab"]));
    let e = tokenizer_from_gguf(&w.parse().unwrap()).unwrap_err().to_string();
    assert!(e.contains("tokenizer.ggml.merges[0]"), "{e}");
    let w = Writer::new()
        .kv("tokenizer.ggml.model", kv_str("gpt2"))
        .kv("tokenizer.ggml.pre", kv_str("smollm"))
        .kv("tokenizer.ggml.tokens", kv_str_array(&["a", "b", "a"]))
        .kv("tokenizer.ggml.merges", kv_str_array(&[]));
    let e = tokenizer_from_gguf(&w.parse().unwrap()).unwrap_err().to_string();
    assert!(e.contains("appears twice"), "{e}");
}

const H: u64 = 8;
const NH: u64 = 2;
const NKV: u64 = 1;
const HD: u64 = 4;
const FF: u64 = 32;
const LAYERS: u64 = 2;

fn values(rng: &mut Rng, n: u64) -> Vec<f32> {
    (0..n).map(|_| ((rng.next() % 2001) as f32 - 1000.0) / 4000.0).collect()
}

/// A tiny llama GGUF with random weights (F32, F16 and Q4_1 tensors) and its expected
/// Hugging Face tensors (before permutation handling: the GGUF rows).
fn tiny_llama(output: bool) -> (Writer, Vec<(String, Vec<f32>)>) {
    let (tokens, _, _) = vocab();
    let vocab = tokens.len() as u64;
    let mut rng = Rng(42);
    let mut w = with_tokenizer(Writer::new(), "smollm")
        .kv("general.architecture", kv_str("llama"))
        .kv("llama.block_count", kv_u32(LAYERS as u32))
        .kv("llama.context_length", kv_u32(128))
        .kv("llama.embedding_length", kv_u32(H as u32))
        .kv("llama.feed_forward_length", kv_u32(FF as u32))
        .kv("llama.attention.head_count", kv_u32(NH as u32))
        .kv("llama.attention.head_count_kv", kv_u32(NKV as u32))
        .kv("llama.rope.freq_base", kv_f32(100_000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", kv_f32(1e-5))
        .kv("llama.rope.dimension_count", kv_u32(HD as u32));
    let mut gguf_values = Vec::new();
    let mut add = |w: Writer, name: String, ne: &[u64], ty: u32| {
        let n: u64 = ne.iter().product();
        let v = values(&mut rng, n);
        let (data, exact): (Vec<u8>, Vec<f32>) = match ty {
            0 => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), v.clone()),
            1 => (
                v.iter().flat_map(|&x| f16_bytes(x)).collect(),
                v.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
            ),
            3 => {
                // Quantize by hand: d = 1/64, m = -1/4, q = round((x - m) / d) clamped.
                let q: Vec<u8> =
                    v.iter().map(|&x| ((x + 0.25) * 64.0).round().clamp(0.0, 15.0) as u8).collect();
                let data = q
                    .chunks(32)
                    .flat_map(|c| q4_1_block(1.0 / 64.0, -0.25, c.try_into().unwrap()))
                    .collect();
                (data, q.iter().map(|&x| f32::from(x) / 64.0 - 0.25).collect())
            }
            _ => unreachable!(),
        };
        gguf_values.push((name.clone(), exact));
        w.tensor(&name, ne, ty, data)
    };
    w = add(w, "token_embd.weight".into(), &[H, vocab], 0);
    for i in 0..LAYERS {
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        w = add(w, b("attn_norm"), &[H], 0);
        w = add(w, b("attn_q"), &[H, NH * HD], 1);
        w = add(w, b("attn_k"), &[H, NKV * HD], 1);
        w = add(w, b("attn_v"), &[H, NKV * HD], 0);
        w = add(w, b("attn_output"), &[NH * HD, H], 1);
        w = add(w, b("ffn_norm"), &[H], 0);
        w = add(w, b("ffn_gate"), &[H, FF], 0);
        w = add(w, b("ffn_up"), &[H, FF], 1);
        w = add(w, b("ffn_down"), &[FF, H], 3);
    }
    w = add(w, "output_norm.weight".into(), &[H], 0);
    if output {
        w = add(w, "output.weight".into(), &[H, vocab], 0);
    }
    (w, gguf_values)
}

fn checkpoint_values(ck: &crate::weights::Checkpoint, name: &str) -> Vec<f32> {
    let t = ck.tensor(name).unwrap();
    assert_eq!(t.kind(), tch::Kind::Float, "{name}");
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

#[test]
fn converts_a_tiny_llama_into_a_loadable_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (w, expected) = tiny_llama(false);
    let src = dir.path().join("tiny.gguf");
    std::fs::write(&src, w.bytes()).unwrap();
    let out = dir.path().join("models/tiny");
    let report = convert(&src, &out).unwrap();
    assert_eq!(report.architecture, "llama");
    assert_eq!(report.tensors_written, 2 + 9 * LAYERS as usize);
    assert_eq!(report.tensors_by_type.get("Q4_1"), Some(&(LAYERS as usize)));
    assert_eq!(report.tensors_by_type.values().sum::<usize>(), report.tensors_written);
    assert!(report.tied_embeddings);
    assert_eq!(report.vocab_size, 263);
    let params: usize = expected.iter().map(|(_, v)| v.len()).sum();
    assert_eq!(report.parameters, params as u64);
    assert!(report.to_string().contains("tied embeddings"), "{report}");

    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["tiny"], "no temporary folder is left behind");

    let ck = crate::weights::Checkpoint::open_dir(&out).unwrap();
    assert!(!ck.contains("lm_head.weight"));
    for (gguf_name, values) in &expected {
        let (hf, n_head) = match gguf_name.as_str() {
            "token_embd.weight" => ("model.embed_tokens.weight".to_owned(), None),
            "output_norm.weight" => ("model.norm.weight".to_owned(), None),
            n => {
                let (layer, rest) = n.strip_prefix("blk.").unwrap().split_once('.').unwrap();
                let (part, heads) = match rest {
                    "attn_norm.weight" => ("input_layernorm", None),
                    "attn_q.weight" => ("self_attn.q_proj", Some(NH)),
                    "attn_k.weight" => ("self_attn.k_proj", Some(NKV)),
                    "attn_v.weight" => ("self_attn.v_proj", None),
                    "attn_output.weight" => ("self_attn.o_proj", None),
                    "ffn_norm.weight" => ("post_attention_layernorm", None),
                    "ffn_gate.weight" => ("mlp.gate_proj", None),
                    "ffn_up.weight" => ("mlp.up_proj", None),
                    "ffn_down.weight" => ("mlp.down_proj", None),
                    other => panic!("{other}"),
                };
                (format!("model.layers.{layer}.{part}.weight"), heads)
            }
        };
        let got = checkpoint_values(&ck, &hf);
        match n_head {
            // Q/K come back in Hugging Face order: permuting them again gives the GGUF rows.
            Some(nh) => {
                let rows = got.len() / H as usize;
                let again = llama_cpp_permute_rows(&got, rows, H as usize, nh as usize).unwrap();
                assert_eq!(&again, values, "{hf}");
                assert_ne!(&got, values, "{hf} must be un-permuted");
            }
            None => assert_eq!(&got, values, "{hf}"),
        }
    }
    assert_eq!(ck.shape("model.layers.1.mlp.down_proj.weight").unwrap(), [H as i64, FF as i64]);

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["num_key_value_heads"], 1);
    assert_eq!(config["rms_norm_eps"], 1e-5);
    assert_eq!(config["rope_theta"], 100_000.0);
    assert_eq!(config["tie_word_embeddings"], true);
    assert_eq!(
        (config["bos_token_id"].clone(), config["eos_token_id"].clone()),
        (1.into(), 2.into())
    );
    let tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tc["eos_token"], "<|im_end|>");

    // The folder loads as a backbone and its tokenizer as a TextEncoder.
    let bb = crate::load_backbone(&out, &crate::LoadOptions::default()).unwrap();
    let enc = crate::TextEncoder::from_file(&out, 16).unwrap();
    let batch = enc.batch(&["the 12", "<|im_start|>the"], tch::Device::Cpu).unwrap();
    let h = bb.net.forward_t(&batch, false);
    // "the 12" is t, he, Ġ, 1, 2 (smollm splits digits).
    assert_eq!(h.size(), [2, 5, H as i64]);

    // Converting again replaces the folder; a folder with foreign files is refused.
    convert(&src, &out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let e = convert(&src, &out).unwrap_err().to_string();
    assert!(e.contains("notes.txt"), "{e}");
    assert!(out.join("notes.txt").exists());
}

#[test]
fn untied_output_becomes_lm_head() {
    let dir = tempfile::tempdir().unwrap();
    let (w, expected) = tiny_llama(true);
    let src = dir.path().join("tiny.gguf");
    std::fs::write(&src, w.bytes()).unwrap();
    let report = convert(&src, &dir.path().join("out")).unwrap();
    assert!(!report.tied_embeddings);
    let ck = crate::weights::Checkpoint::open_dir(&dir.path().join("out")).unwrap();
    let want = &expected.iter().find(|(n, _)| n == "output.weight").unwrap().1;
    assert_eq!(&checkpoint_values(&ck, "lm_head.weight"), want);
    let config = std::fs::read_to_string(dir.path().join("out/config.json")).unwrap();
    assert!(config.contains("\"tie_word_embeddings\": false"), "{config}");
}

#[test]
fn conversion_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let run = |w: Writer| {
        let src = dir.path().join("bad.gguf");
        std::fs::write(&src, w.bytes()).unwrap();
        let e = convert(&src, &dir.path().join("out")).unwrap_err().to_string();
        assert!(e.contains("bad.gguf"), "{e}");
        assert!(!dir.path().join("out").exists());
        e
    };
    let (mut w, _) = tiny_llama(false);
    let at = w.kvs.iter().position(|(k, _)| k == "general.architecture").unwrap();
    w.kvs[at].1 = kv_str("qwen2");
    let e = run(w);
    assert!(e.contains("general.architecture is `qwen2`"), "{e}");

    let (mut w, _) = tiny_llama(false);
    w.tensors.retain(|t| t.name != "blk.1.ffn_up.weight");
    let e = run(w);
    assert!(e.contains("missing tensor `blk.1.ffn_up.weight`"), "{e}");

    let (w, _) = tiny_llama(false);
    let e = run(w.f32_tensor("rope_freqs.weight", &[2], &[1.0, 1.0]));
    assert!(
        e.contains("rope_freqs.weight") && e.contains("no Hugging Face Llama counterpart"),
        "{e}"
    );

    let (mut w, _) = tiny_llama(false);
    w.kvs.retain(|(k, _)| k != "llama.attention.head_count");
    let e = run(w);
    assert!(e.contains("missing metadata key `llama.attention.head_count`"), "{e}");

    let (mut w, _) = tiny_llama(false);
    let q = w.tensors.iter_mut().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    q.ne = vec![H, NH * HD / 2];
    q.data.truncate(q.data.len() / 2);
    let e = run(w);
    assert!(e.contains("blk.0.attn_q.weight") && e.contains("shape [4, 8]"), "{e}");
}
