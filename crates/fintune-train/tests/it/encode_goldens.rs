//! `fintune encode` against the sentence-transformers library itself, on sentences that occur in
//! no data set (`fixtures/goldens/encode_st.json`, made by `make_encode_goldens.py`).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use crate::{minilm, root};

/// The golden embeddings of `model` (`minilm` or `mpnet`) and the sentences.
fn goldens(model: &str) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(root().join("fixtures/goldens/encode_st.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sentences: Vec<String> = serde_json::from_value(v["sentences"].clone()).unwrap();
    let emb: Vec<Vec<f64>> =
        serde_json::from_value(v["models"][model]["embeddings"].clone()).unwrap();
    assert_eq!(emb.len(), sentences.len());
    (sentences, emb)
}

/// Runs `fintune encode --backbone dir` on the sentences and returns the embeddings in order.
fn encode(dir: &Path, sentences: &[String]) -> Vec<Vec<f64>> {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let rows: Vec<String> = sentences
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::json!({ "id": format!("s{i}"), "text": s }).to_string())
        .collect();
    std::fs::write(&input, rows.join("\n") + "\n").unwrap();
    let output = tmp.path().join("out.jsonl");
    Command::cargo_bin("fintune")
        .unwrap()
        .current_dir(root())
        .args(["encode", "--batch-size", "3", "--backbone"])
        .arg(dir)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .assert()
        .success();
    std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(row["id"], format!("s{i}"));
            serde_json::from_value(row["embedding"].clone()).unwrap()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn minilm_encode_matches_sentence_transformers() {
    let (sentences, want) = goldens("minilm");
    let got = encode(&minilm(), &sentences);
    let err = max_abs_diff(&got, &want);
    println!("all-MiniLM-L6-v2 encode vs sentence-transformers: max abs error {err:.3e}");
    assert!(err < 1e-4, "max abs error {err}");
}

#[test]
#[ignore = "needs .fintune/models/all-mpnet-base-v2 (cargo xtask setup --backbone mpnet)"]
fn mpnet_real_encode_matches_sentence_transformers() {
    let home = std::env::var_os("FINTUNE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".fintune"));
    let dir = home.join("models/all-mpnet-base-v2");
    assert!(dir.join("model.safetensors").exists(), "{} is missing", dir.display());
    let (sentences, want) = goldens("mpnet");
    let got = encode(&dir, &sentences);
    let err = max_abs_diff(&got, &want);
    println!("all-mpnet-base-v2 encode vs sentence-transformers: max abs error {err:.3e}");
    assert!(err < 1e-4, "max abs error {err}");
}
