//! Saved state: a small JSON envelope around each method's state, with floats stored exactly.
//!
//! Layout: `{"method": "dwa", "version": 1, "num_tasks": 2, "config": {...}, "state": {...}}`.
//! Floats inside `state` are strings in Rust's shortest round-trip notation (`"0.1"`,
//! `"1e-12"`): Rust parses them back to the identical bits, which a JSON number read by a
//! generic parser does not guarantee. That is what makes a resumed run bit-identical.
//! `config` stays plain JSON for reading; it is compared with the running config on restore
//! (numbers to within 4 ulp).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Error;

#[cfg(test)]
mod tests;

/// Version of the envelope layout.
pub(crate) const STATE_VERSION: u64 = 1;

/// Builds the envelope.
pub(crate) fn save<C: Serialize, S: Serialize>(
    method: &'static str,
    num_tasks: usize,
    config: &C,
    state: &S,
) -> Value {
    json!({
        "method": method,
        "version": STATE_VERSION,
        "num_tasks": num_tasks,
        "config": serde_json::to_value(config).expect("configs serialise to JSON"),
        "state": serde_json::to_value(state).expect("states serialise to JSON"),
    })
}

/// Opens an envelope saved by [`save`] for the same method, task count and config.
pub(crate) fn load<C: Serialize, S: DeserializeOwned>(
    method: &'static str,
    num_tasks: usize,
    config: &C,
    value: &Value,
) -> Result<S, Error> {
    let bad = |reason: String| Error::InvalidState { method, reason, source: None };
    let obj =
        value.as_object().ok_or_else(|| bad(format!("expected a JSON object, got {value}")))?;
    let field = |name: &str| obj.get(name).ok_or_else(|| bad(format!("missing field `{name}`")));
    let saved_method = field("method")?;
    if saved_method.as_str() != Some(method) {
        return Err(bad(format!("state was saved by method {saved_method}, not {method:?}")));
    }
    let version = field("version")?;
    if version.as_u64() != Some(STATE_VERSION) {
        return Err(bad(format!(
            "state version {version} is not supported (expected {STATE_VERSION})"
        )));
    }
    let saved_tasks = field("num_tasks")?;
    if saved_tasks.as_u64() != Some(num_tasks as u64) {
        return Err(bad(format!("state was saved for {saved_tasks} tasks, not {num_tasks}")));
    }
    let current = serde_json::to_value(config).expect("configs serialise to JSON");
    let saved_config = field("config")?;
    if !values_match(saved_config, &current) {
        return Err(bad(format!(
            "state was saved with config {saved_config} but this method runs with {current}"
        )));
    }
    serde_json::from_value(field("state")?.clone()).map_err(|e| Error::InvalidState {
        method,
        reason: "malformed `state`".into(),
        source: Some(e),
    })
}

/// Structural equality, numbers compared to within 4 ulp (a config written to text and read
/// back by a generic JSON parser may be off by one ulp).
fn values_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                return x == y;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => {
                    x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                }
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_match(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| values_match(v, w)))
        }
        _ => a == b,
    }
}

/// Serde helpers storing `f64` as exact round-trip strings (numbers are accepted on input).
pub(crate) mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Str(String),
        Num(f64),
    }

    fn parse<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
        match r {
            Repr::Num(x) => Ok(x),
            Repr::Str(s) => s.parse().map_err(|_| E::custom(format!("{s:?} is not a float"))),
        }
    }

    /// A `Vec<f64>`.
    pub(crate) mod vec {
        use super::*;
        use serde::ser::SerializeSeq;

        pub(crate) fn serialize<S: Serializer>(xs: &[f64], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(xs.len()))?;
            for x in xs {
                seq.serialize_element(&format_args!("{x:?}").to_string())?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
            Vec::<Repr>::deserialize(d)?.into_iter().map(parse).collect()
        }
    }

    /// An `Option<Vec<f64>>`.
    pub(crate) mod opt_vec {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            xs: &Option<Vec<f64>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match xs {
                Some(xs) => super::vec::serialize(xs, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<f64>>, D::Error> {
            Option::<Vec<Repr>>::deserialize(d)?
                .map(|v| v.into_iter().map(parse).collect())
                .transpose()
        }
    }
}
