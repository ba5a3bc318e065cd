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
