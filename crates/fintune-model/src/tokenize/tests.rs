use tch::Device;

use super::*;

fn enc(ids: &[i64]) -> Encoded {
    Encoded { ids: ids.to_vec(), type_ids: vec![0; ids.len()] }
}

#[test]
fn right_padding_puts_tokens_first() {
    let a = enc(&[5, 6, 7]);
    let b = enc(&[8]);
    let batch = Batch::pad(&[&a, &b], 0, PaddingSide::Right, Device::Cpu);
    assert_eq!(batch.input_ids.size(), [2, 3]);
    assert_eq!(Vec::<i64>::try_from(batch.input_ids.view([-1])).unwrap(), [5, 6, 7, 8, 0, 0]);
    assert_eq!(Vec::<i64>::try_from(batch.attention_mask.view([-1])).unwrap(), [1, 1, 1, 1, 0, 0]);
}

#[test]
fn left_padding_puts_tokens_last() {
    let a = enc(&[5, 6, 7]);
    let b = enc(&[8]);
    let batch = Batch::pad(&[&a, &b], 9, PaddingSide::Left, Device::Cpu);
    assert_eq!(Vec::<i64>::try_from(batch.input_ids.view([-1])).unwrap(), [5, 6, 7, 9, 9, 8]);
    assert_eq!(Vec::<i64>::try_from(batch.attention_mask.view([-1])).unwrap(), [1, 1, 1, 0, 0, 1]);
}

#[test]
fn empty_encodings_still_make_a_valid_batch() {
    let batch = Batch::pad(&[&enc(&[])], 0, PaddingSide::Right, Device::Cpu);
    assert_eq!(batch.input_ids.size(), [1, 1]);
    assert_eq!(batch.attention_mask.int64_value(&[0, 0]), 0);
}

/// A word-level tokenizer whose pre-tokenizer splits on `pattern` (an onig regex), keeping
/// the matches (`Isolated`) or dropping them (`Removed`).
fn regex_tokenizer(pattern: &str, behavior: &str) -> Tokenizer {
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": pattern},
            "behavior": behavior,
            "invert": false
        },
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2}, "unk_token": "[UNK]"}
    });
    json.to_string().parse().unwrap()
}

/// Issue 15, defect 9: a pre-tokenizer regex that exhausts onig's retry limit panicked inside
/// `tokenizers` (and took the process down). It is an `Error::Tokenizer` keeping the cause,
/// and the encoder stays usable.
#[test]
fn a_regex_that_exhausts_its_retry_limit_is_an_error_not_a_panic() {
    let enc = TextEncoder::new(regex_tokenizer("(a+)+b", "Isolated"), 16).unwrap();
    let bomb = "a".repeat(40);
    let err = enc.encode(&[bomb.as_str()]).unwrap_err();
    let Error::Tokenizer { source, .. } = &err else { panic!("{err:?}") };
    assert!(source.to_string().contains("retry-limit"), "{source}");
    assert!(err.to_string().starts_with("tokenizer: cannot encode a text of 40 bytes"), "{err}");
    assert!(enc.batch(&[bomb.as_str(), "b"], Device::Cpu).is_err());
    assert_eq!(enc.encode(&["ab"]).unwrap()[0].ids.len(), 1);
}

#[test]
fn texts_are_cut_on_a_char_boundary_before_tokenization() {
    assert_eq!(clip("héllo wörld", 4), "héll");
    assert_eq!(clip("héllo", 5), "héllo");
    assert_eq!(clip("héllo", 50), "héllo");
    assert_eq!(clip("", 3), "");
    let enc = TextEncoder::new(regex_tokenizer(r"\s+", "Removed"), 4).unwrap();
    assert_eq!(enc.max_chars(), 4 * CHARS_PER_TOKEN);
    // 200 one-character words: only the first max_chars characters are tokenized, and
    // the truncation to max_len tokens still applies.
    let words = "a ".repeat(200);
    assert_eq!(enc.encode(&[words.as_str()]).unwrap()[0].ids, [1, 1, 1, 1]);
    assert!(enc.clone().with_position_limit(4).is_ok());
    let err = enc.with_position_limit(3).unwrap_err().to_string();
    assert!(err.contains("max_len 4 exceeds") && err.contains("hold 3 tokens"), "{err}");
}
