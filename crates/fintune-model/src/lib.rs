//! Backbones and heads.
