//! What the model reads: the text alone, or the text with its target (company, ticker) as a
//! second segment ([`InputMode`]), and how a family joins the two ([`PairStyle`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a row is encoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InputMode {
    /// The text alone (`text`; the default).
    #[default]
    Text,
    /// The text, and its target as a second segment when the row has one (`text+target`);
    /// rows without a target (null or blank) are encoded as single texts.
    TextTarget,
}

impl InputMode {
    /// Names and values, for parsing, `Display` and serde.
    pub const NAMES: &'static [(&'static str, InputMode)] =
        &[("text", InputMode::Text), ("text+target", InputMode::TextTarget)];

    /// Whether this is [`InputMode::Text`] (serde's `skip_serializing_if`).
    pub fn is_text(&self) -> bool {
        *self == InputMode::Text
    }
}

impl fmt::Display for InputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES.iter().find(|(_, v)| v == self).map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

impl FromStr for InputMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).ok_or_else(|| {
            Error::Invalid(format!("unknown input `{s}`: expected one of text, text+target"))
        })
    }
}

impl Serialize for InputMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InputMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a text and its target become one token sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PairStyle {
    /// The tokenizer's own pair template: BERT `[CLS] text [SEP] target [SEP]` (token type 1
    /// for the target segment), RoBERTa/MPNet `<s> text </s></s> target </s>`. Truncation is
    /// longest-first, so the text is cut before a (shorter) target.
    #[default]
    Template,
    /// Decoders, whose tokenizers have no pair template: one sequence
    /// `text + TARGET_SEPARATOR + target`; when it is too long the text is cut (on a token
    /// boundary of the text alone), never the separator or the target.
    Separator,
}

/// What [`PairStyle::Separator`] puts between a text and its target.
pub const TARGET_SEPARATOR: &str = "\nTarget: ";

impl PairStyle {
    /// The style of a `model_type` (`config.json`): [`PairStyle::Separator`] for the decoders
    /// (`llama`, `qwen2`), [`PairStyle::Template`] otherwise.
    pub fn of_model_type(model_type: &str) -> PairStyle {
        match model_type {
            "llama" | "qwen2" => PairStyle::Separator,
            _ => PairStyle::Template,
        }
    }
}

/// The target of a row when it has one: `Some` for a non-blank string.
pub fn present(target: Option<&str>) -> Option<&str> {
    target.filter(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for (name, v) in InputMode::NAMES {
            assert_eq!(name.parse::<InputMode>().unwrap(), *v);
            assert_eq!(v.to_string(), *name);
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{name}\""));
        }
        let err = "target".parse::<InputMode>().unwrap_err().to_string();
        assert!(err.contains("`target`") && err.contains("text+target"), "{err}");
        assert!(serde_json::from_str::<InputMode>("\"text+targets\"").is_err());
        assert_eq!(PairStyle::of_model_type("qwen2"), PairStyle::Separator);
        assert_eq!(PairStyle::of_model_type("mpnet"), PairStyle::Template);
        assert_eq!(present(Some("  ")), None);
        assert_eq!(present(Some("AAPL")), Some("AAPL"));
    }
}
