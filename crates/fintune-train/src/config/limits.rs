//! Limits that depend on the machine (threads) and on the backbone (its position limit).

use std::path::Path;

/// Most threads allowed: 4x the cores, and never more than this.
pub const MAX_THREADS: usize = 256;

/// Checks `--threads`: refused above 4x the cores or [`MAX_THREADS`]; a warning above the
/// cores.
pub fn check_threads(threads: usize) -> Result<Option<String>, String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let limit = (4 * cores).min(MAX_THREADS);
    if threads > limit {
        return Err(format!(
            "optim.threads = {threads} is absurd on this machine ({cores} cores): at most {limit} \
             (4 x cores, and never above {MAX_THREADS}); 0 means one per core"
        ));
    }
    Ok((threads > cores).then(|| {
        format!("optim.threads = {threads} is more than the {cores} cores: expect it to be slower")
    }))
}

/// The longest input (in tokens, special tokens included) the backbone in `dir` can embed,
/// from its `config.json`: `max_position_embeddings`, less `pad_token_id + 1` for
/// RoBERTa-style encoders (roberta, xlm-roberta, camembert, mpnet...), whose positions start
/// after the padding index. None when `dir` has no readable `config.json` (loading the model
/// reports that) or it names no limit.
pub fn position_limit(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let max = ["max_position_embeddings", "n_positions", "max_seq_len"]
        .iter()
        .find_map(|k| v.get(k).and_then(serde_json::Value::as_u64))?;
    let offset_family = matches!(
        v.get("model_type").and_then(serde_json::Value::as_str),
        Some("roberta" | "xlm-roberta" | "camembert" | "mpnet" | "longformer" | "bart")
    );
    let offset = if offset_family {
        v.get("pad_token_id").and_then(serde_json::Value::as_u64).unwrap_or(1) + 1
    } else {
        0
    };
    usize::try_from(max.saturating_sub(offset)).ok()
}

/// Checks a truncation length against the backbone in `dir`.
pub fn check_max_len(max_len: usize, dir: &Path) -> Result<Option<usize>, String> {
    if max_len < 2 {
        return Err(format!("model.max_len must be >= 2, got {max_len}"));
    }
    let limit = position_limit(dir);
    if let Some(limit) = limit {
        if max_len > limit {
            return Err(format!(
                "model.max_len = {max_len} is above the backbone's position limit of {limit} \
                 tokens ({}: max_position_embeddings)",
                dir.join("config.json").display()
            ));
        }
    }
    Ok(limit)
}
