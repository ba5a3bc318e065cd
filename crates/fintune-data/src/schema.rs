//! The validated dataset schema.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// Name of the id column in validated batches (`Utf8`, non-null, unique).
pub const ID: &str = "id";
/// Name of the text column in validated batches (`Utf8`, non-null, not blank).
pub const TEXT: &str = "text";
/// Name of the score column in validated batches (`Float32`, finite, within the declared range;
/// non-null for labelled input, nullable for unlabelled input).
pub const SCORE: &str = "score";
/// Name of the optional target (aspect, company, cashtag) column (`Utf8`, nullable).
pub const TARGET: &str = "target";
/// Name of the optional source column (`Utf8`, nullable).
pub const SOURCE: &str = "source";
/// Name of the optional group column (`Utf8`, nullable): rows sharing a group must never be
/// split across train/validation/test.
pub const GROUP: &str = "group";

/// The schema of every validated batch: `id, text, score, target, source, group` in this
/// order, whatever the input's column names and order were.
///
/// `target`, `source` and `group` are always present (all-null when the input has no such
/// column), so batches from different files and formats share one schema. `score` is nullable
/// only when `labelled` is false.
pub fn dataset_schema(labelled: bool) -> SchemaRef {
    static LABELLED: OnceLock<SchemaRef> = OnceLock::new();
    static UNLABELLED: OnceLock<SchemaRef> = OnceLock::new();
    let cell = if labelled { &LABELLED } else { &UNLABELLED };
    cell.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(ID, DataType::Utf8, false),
            Field::new(TEXT, DataType::Utf8, false),
            Field::new(SCORE, DataType::Float32, !labelled),
            Field::new(TARGET, DataType::Utf8, true),
            Field::new(SOURCE, DataType::Utf8, true),
            Field::new(GROUP, DataType::Utf8, true),
        ]))
    })
    .clone()
}
