//! The names of the configuration's enums: one table per enum, used by the command line
//! (`FromStr`), TOML and JSON (serde) and `Display` alike.

use std::fmt;
use std::str::FromStr;

/// Implements `Serialize` and `Deserialize` for a type through its `Display` and `FromStr`.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::config::as_text::serialize(self, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::config::as_text::deserialize(d)
            }
        }
    };
}
pub(crate) use serde_as_text;

/// Defines a unit enum whose names live in ONE table, used by the command line (`FromStr`),
/// TOML and JSON (serde) and `Display` alike. The first name of a variant is canonical (the one
/// written); the others are accepted aliases.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = [$canon:literal $(, $alias:literal)*] ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every accepted name with its value (canonical names first per value).
            pub const NAMES: &'static [(&'static str, $name)] =
                &[ $( ($canon, $name::$variant), $( ($alias, $name::$variant), )* )+ ];

            /// The canonical name.
            pub fn name(self) -> &'static str {
                match self { $( $name::$variant => $canon ),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, v)| *v).ok_or_else(|| {
                    UnknownName {
                        what: $what,
                        got: s.to_owned(),
                        known: vec![$($canon),+],
                    }
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        serde_as_text!($name);
    };
}

/// A name that is not in an enum's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    /// What was parsed (`strata`, `precision`...).
    pub what: &'static str,
    /// The name given.
    pub got: String,
    /// The canonical names.
    pub known: Vec<&'static str>,
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}` ({})", self.what, self.got, self.known.join(", "))
    }
}

impl std::error::Error for UnknownName {}

/// Serde through `Display` and `FromStr` (for `#[serde(with = "as_text")]`).
pub mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    /// Writes `v` as its `Display` text.
    pub fn serialize<T: Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Parses a string with `FromStr`.
    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: serde::Deserializer<'de>,
    {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

named_enum! {
    /// How score classes for the auxiliary task are cut.
    pub enum Strata ("strata") {
        /// Data-aware stratification (ours).
        #[default]
        Das = ["das"],
        /// Equal-frequency classes.
        Quantile = ["quantile"],
        /// Equal-width classes.
        Uniform = ["uniform"],
        /// No classes: single-task regression (the baseline).
        None = ["none"],
    }
}

named_enum! {
    /// Imbalanced-regression comparators on the regression loss.
    pub enum Imbalance ("imbalance option") {
        /// Plain MSE.
        #[default]
        None = ["none"],
        /// Label-distribution smoothing (Yang et al. 2021): per-sample weights 1 / smoothed
        /// density.
        Lds = ["lds"],
        /// Batch-based Balanced MSE (Ren et al. 2022) with a learned noise scale.
        Bmse = ["bmse"],
    }
}

named_enum! {
    /// Class weights in the cross-entropy of the auxiliary task.
    pub enum ClassWeights ("class weighting") {
        /// Unweighted.
        #[default]
        None = ["none"],
        /// Inverse class frequency.
        Inverse = ["inverse"],
        /// Inverse square root of the frequency.
        InverseSqrt = ["inverse-sqrt"],
        /// Effective number of samples (Cui et al. 2019) with beta 0.999.
        Effective = ["effective"],
    }
}

named_enum! {
    /// Numeric precision of the backbone.
    pub enum Precision ("precision") {
        /// float32 everywhere.
        #[default]
        F32 = ["f32", "fp32", "float32"],
        /// bfloat16 backbone weights and activations (for CUDA; slow on CPU) with float32
        /// heads, adapters, pooled representation and optimiser master copies.
        Bf16 = ["bf16", "bfloat16"],
    }
}

/// Where a run computes: `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA device N (`cuda` is `cuda:0`).
    Cuda(usize),
    /// CUDA device 0 when libtorch sees one, else the CPU.
    Auto,
}

impl FromStr for DeviceSpec {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "auto" => Ok(DeviceSpec::Auto),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            o => o.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceSpec::Cuda).ok_or(
                UnknownName {
                    what: "device",
                    got: o.to_owned(),
                    known: vec!["cpu", "cuda", "cuda:N", "auto"],
                },
            ),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cuda(0) => f.write_str("cuda"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

serde_as_text!(DeviceSpec);

impl DeviceSpec {
    /// The libtorch device (errors when CUDA is asked for and absent).
    pub fn resolve(self) -> Result<tch::Device, fintune_model::Error> {
        fintune_model::device_from_str(&self.to_string())
    }
}

named_enum! {
    /// What a declared task (`[[tasks]]`) predicts.
    pub enum TaskKind ("task kind") {
        /// A score in [-1, 1] (one output).
        #[default]
        Regression = ["regression"],
        /// Classes named in a label column of the task's data.
        Classification = ["classification"],
        /// Score classes cut (DAS, quantile, uniform) from another task's scores.
        Derived = ["derived"],
    }
}

named_enum! {
    /// The loss of a declared task.
    pub enum TaskLoss ("task loss") {
        /// Mean squared error (regression).
        #[default]
        Mse = ["mse"],
        /// LDS-weighted MSE (regression).
        Lds = ["lds"],
        /// Balanced MSE (regression).
        Bmse = ["bmse"],
        /// Cross-entropy (classification, derived).
        Ce = ["ce"],
        /// Cross-entropy against Gaussian-smoothed class targets (derived, with `sigma`).
        SoftOrdinal = ["soft-ordinal"],
    }
}
