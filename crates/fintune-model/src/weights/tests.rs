use std::collections::HashMap;

use tch::{Kind, Tensor};

use super::*;

fn tensors() -> Vec<(String, Tensor)> {
    vec![
        ("a.weight".to_owned(), Tensor::arange(12, (Kind::Float, Device::Cpu)).view([3, 4]) / 7.0),
        ("a.bias".to_owned(), Tensor::from_slice(&[1.5f32, -2.0, 0.25])),
        ("ids".to_owned(), Tensor::from_slice(&[3i64, 1, 4, 1, 5])),
    ]
}

#[test]
fn save_then_open_round_trips_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let meta = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    save(&path, &tensors(), Some(meta)).unwrap();
    let ck = Checkpoint::open_files(std::slice::from_ref(&path)).unwrap();
    assert_eq!(ck.names().collect::<Vec<_>>(), ["a.bias", "a.weight", "ids"]);
    for (name, t) in tensors() {
        let back = ck.tensor(&name).unwrap();
        assert_eq!(back.kind(), t.kind());
        assert_eq!(back.size(), t.size());
        assert!(back.equal(&t), "{name} differs");
    }
    // No temporary file is left behind.
    let left: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["w.safetensors"]);
}

#[test]
fn copy_into_checks_shape_and_converts_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save(&path, &tensors(), None).unwrap();
    let ck = Checkpoint::open_files(std::slice::from_ref(&path)).unwrap();
    let mut dst = Tensor::zeros([3, 4], (Kind::Double, Device::Cpu));
    ck.copy_into("a.weight", &mut dst).unwrap();
    assert_eq!(dst.kind(), Kind::Double);
    assert!((dst.to_kind(Kind::Float) - &tensors()[0].1).abs().max().double_value(&[]) == 0.0);
    let mut wrong = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    let err = ck.copy_into("a.weight", &mut wrong).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{msg}");
    assert!(msg.contains("a.weight") && msg.contains("[3, 4]") && msg.contains("[4, 3]"), "{msg}");
    let err = ck.tensor("nope").unwrap_err();
    assert!(matches!(err, Error::MissingTensor { ref name, .. } if name == "nope"), "{err}");
}

#[test]
fn truncated_and_garbage_files_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save(&path, &tensors(), None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 5, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.path().join(format!("cut{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = Checkpoint::open_files(std::slice::from_ref(&p)).unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "cut at {cut}: {err}");
        assert!(err.to_string().contains(&format!("cut{cut}.safetensors")), "{err}");
    }
    let p = dir.path().join("garbage.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    assert!(matches!(Checkpoint::open_files(&[p]).unwrap_err(), Error::Safetensors { .. }));
}

#[test]
fn detect_prefix_prefers_the_first_candidate_present() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let t = vec![(
        "bert.embeddings.word_embeddings.weight".to_owned(),
        Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
    )];
    save(&path, &t, None).unwrap();
    let ck = Checkpoint::open_files(&[path]).unwrap();
    assert_eq!(
        ck.detect_prefix("embeddings.word_embeddings.weight", &["", "bert."]),
        Some("bert.")
    );
    assert_eq!(ck.detect_prefix("embeddings.word_embeddings.weight", &["roberta."]), None);
}

#[test]
fn sha256_matches_a_known_digest() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        sha256_file(&p).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
