//! The toolchain works: libtorch runs forward and backward on CPU, CUDA is reported cleanly,
//! and the cached backbone's tokenizer matches the Python `tokenizers` package.

use fintune_model::TextEncoder;
use tch::{Device, Kind, Tensor};

use crate::{golden_json, minilm_dir};

#[test]
fn tch_forward_and_backward_on_cpu() {
    let _serial = crate::serial();
    tch::manual_seed(0);
    let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let y = x.matmul(&w).pow_tensor_scalar(2).sum(Kind::Float);
    y.backward();
    // d/dw sum((xw)^2) = 2 x^T (x w)
    let expected = x.transpose(0, 1).matmul(&x.matmul(&w.detach())) * 2.0;
    let diff = (w.grad() - expected).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "gradient differs by {diff}");
}

#[test]
fn cuda_availability_is_reported_cleanly() {
    let available = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    println!("tch::Cuda::is_available() = {available}, device_count = {count}");
    assert_eq!(available, count > 0);
    if !available {
        let err = fintune_model::device_from_str("cuda").unwrap_err().to_string();
        assert!(err.contains("no CUDA device"), "{err}");
        assert_eq!(fintune_model::device_from_str("auto").unwrap(), Device::Cpu);
    }
}

#[test]
fn minilm_tokenizer_matches_python_tokenizers() {
    let g = golden_json("minilm_tokenizer.json");
    let enc = TextEncoder::from_file(&minilm_dir(), 128).unwrap();
    let texts: Vec<&str> =
        g["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let ids = enc.encode(&texts).unwrap();
    for (i, e) in ids.iter().enumerate() {
        let want: Vec<i64> =
            g["ids"][i].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(e.ids, want, "text {i}: {}", texts[i]);
    }
    // The sentence the workspace issue names, for the record.
    assert_eq!(texts[0], "Shares of XYZ plunged 20% after an earnings miss");
    assert_eq!(ids[0].ids.first(), Some(&101));
    assert_eq!(ids[0].ids.last(), Some(&102));
}

#[test]
fn truncation_and_per_batch_padding() {
    let enc = TextEncoder::from_file(&minilm_dir(), 8).unwrap();
    let long = "revenue ".repeat(50);
    let batch = enc.batch(&[long.as_str(), "up"], Device::Cpu).unwrap();
    assert_eq!(batch.input_ids.size(), [2, 8], "truncated to max_len");
    let enc = TextEncoder::from_file(&minilm_dir(), 128).unwrap();
    let batch = enc.batch(&["up", "down"], Device::Cpu).unwrap();
    assert_eq!(batch.input_ids.size(), [2, 3], "padded to the longest text, not to 128");
}

/// `--input text+target` on MiniLM: `[CLS] text [SEP] target [SEP]` with token types 1 for
/// the target, as `tokenizers`/`transformers` encode the pair; null and blank targets are
/// single texts; at max_len 16 the long text is cut and the target kept.
#[test]
fn minilm_text_target_pairs_match_python_tokenizers() {
    assert_eq!(
        crate::check_pair_golden("all-MiniLM-L6-v2", |l| {
            TextEncoder::from_file(&minilm_dir(), l).unwrap()
        }),
        14
    );
    let enc = TextEncoder::from_file(&minilm_dir(), 16)
        .unwrap()
        .with_input(fintune_model::InputMode::TextTarget);
    let long = "revenue ".repeat(50);
    let target = enc.encode(&["Tesco PLC"]).unwrap().remove(0).ids;
    let got = enc.encode_with_targets(&[long.as_str()], &[Some("Tesco PLC")]).unwrap().remove(0);
    assert_eq!(got.len(), 16);
    // [CLS] revenue x ... [SEP] tesco plc [SEP]: the target's tokens end the sequence intact.
    assert_eq!(got.ids[16 - target.len() + 1..], target[1..]);
    assert_eq!(got.type_ids.iter().filter(|&&t| t == 1).count(), target.len() - 1);
    // The input mode `text` ignores targets: the encodings of today, bit for bit.
    let plain = TextEncoder::from_file(&minilm_dir(), 16).unwrap();
    assert_eq!(
        plain.encode_with_targets(&[long.as_str()], &[Some("Tesco PLC")]).unwrap(),
        plain.encode(&[long.as_str()]).unwrap()
    );
    let err = enc.encode_with_targets(&["a", "b"], &[None]).unwrap_err().to_string();
    assert!(err.contains("2 texts but 1 targets"), "{err}");
}
