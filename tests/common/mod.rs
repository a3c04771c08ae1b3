//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod models;
pub mod ocdbt;

use std::collections::BTreeMap;
use std::path::PathBuf;

use safejax::{bf16, f16, Dtype, Params, Serializer};
use serde::Serialize;

/// A leaf as the tests compare it: dtype, shape, and every value widened to f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The directory of the Orbax fixture `name` (`""`: the directory of them all).
pub fn orbax_case_dir(name: &str) -> PathBuf {
    fixture_path("orbax").join(name)
}

/// Every Orbax fixture: the directories beside their sidecars (`<case>.json`).
pub fn orbax_cases() -> Vec<String> {
    names_ending(&orbax_case_dir(""), ".json")
}

/// The names of the files in `dir` that end with `suffix`, without it, sorted.
pub fn names_ending(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
        .collect();
    names.sort();
    names
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("{name}.safetensors"))).expect("fixture file")
}

/// The tensors a fixture's JSON records, as the real framework computed them.
pub fn expected_leaves(name: &str) -> BTreeMap<String, Leaf> {
    let text = std::fs::read_to_string(fixture_path(&format!("{name}.json"))).expect("fixture json");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    leaves_from_json(&json["tensors"])
}

/// The leaves of a sidecar's `tensors` object (values as numbers, or booleans as 0 and 1).
pub fn leaves_from_json(tensors: &serde_json::Value) -> BTreeMap<String, Leaf> {
    tensors
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, t)| {
            let leaf = Leaf {
                dtype: t["dtype"].as_str().unwrap().parse().unwrap(),
                shape: t["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
                values: t["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().or_else(|| v.as_bool().map(f64::from)).unwrap())
                    .collect(),
            };
            (key.clone(), leaf)
        })
        .collect()
}

/// Decodes little-endian bytes of `dtype` into f64 values.
pub fn decode(dtype: Dtype, data: &[u8]) -> Vec<f64> {
    let size = dtype.bit_size() / 8;
    data.chunks_exact(size)
        .map(|b| match dtype {
            Dtype::BOOL | Dtype::U8 => b[0] as f64,
            Dtype::I8 => b[0] as i8 as f64,
            Dtype::U16 => u16::from_le_bytes([b[0], b[1]]) as f64,
            Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            Dtype::F16 => f16::from_le_bytes([b[0], b[1]]).to_f64(),
            Dtype::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f64(),
            Dtype::U32 => u32::from_le_bytes(b.try_into().unwrap()) as f64,
            Dtype::I32 => i32::from_le_bytes(b.try_into().unwrap()) as f64,
            Dtype::F32 => f32::from_le_bytes(b.try_into().unwrap()) as f64,
            Dtype::U64 => u64::from_le_bytes(b.try_into().unwrap()) as f64,
            Dtype::I64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
            Dtype::F64 => f64::from_le_bytes(b.try_into().unwrap()),
            Dtype::F8_E4M3 | Dtype::F8_E5M2 | Dtype::F8_E4M3FNUZ | Dtype::F8_E5M2FNUZ | Dtype::F8_E8M0 => {
                float8(dtype, b[0])
            }
            other => panic!("no decoder for {other}"),
        })
        .collect()
}

/// Decodes the 8-bit float kinds (ml_dtypes' definitions) to f64.
fn float8(dtype: Dtype, b: u8) -> f64 {
    let (exp_bits, bias, fnuz) = match dtype {
        Dtype::F8_E4M3 => (4, 7, false),
        Dtype::F8_E5M2 => (5, 15, false),
        Dtype::F8_E4M3FNUZ => (4, 8, true),
        Dtype::F8_E5M2FNUZ => (5, 16, true),
        Dtype::F8_E8M0 => {
            return if b == 0xff {
                f64::NAN
            } else {
                2f64.powi(i32::from(b) - 127)
            }
        }
        other => panic!("not a float8: {other}"),
    };
    if fnuz && b == 0x80 {
        return f64::NAN;
    }
    let man_bits = 7 - exp_bits;
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((b >> man_bits) & ((1 << exp_bits) - 1));
    let scale = f64::from(1u32 << man_bits);
    let man = f64::from(b & ((1 << man_bits) - 1)) / scale;
    if exp == 0 {
        sign * 2f64.powi(1 - bias) * man
    } else {
        sign * 2f64.powi(exp - bias) * (1.0 + man)
    }
}

/// Every leaf of a `Value`, as the tests compare them.
pub fn value_leaves(value: &safejax::Value) -> BTreeMap<String, Leaf> {
    value
        .leaves()
        .map(|(key, t)| {
            let leaf = Leaf {
                dtype: t.dtype(),
                shape: t.shape().to_vec(),
                values: decode(t.dtype(), t.as_bytes()),
            };
            (key, leaf)
        })
        .collect()
}

/// Every leaf of typed params, keyed as the serializer keys it.
pub fn leaves_of<T: Serialize + Params>(params: &T) -> BTreeMap<String, Leaf> {
    let mut out = BTreeMap::new();
    params
        .serialize(&mut Serializer::new::<T>(|leaf| {
            let previous = out.insert(
                leaf.key.to_owned(),
                Leaf {
                    dtype: leaf.dtype,
                    shape: leaf.shape.to_vec(),
                    values: decode(leaf.dtype, leaf.data),
                },
            );
            assert!(previous.is_none(), "key {} twice", leaf.key);
            Ok(())
        }))
        .unwrap();
    out
}

/// The values of one recorded tensor.
pub fn expected_values(name: &str, key: &str) -> Vec<f64> {
    expected_leaves(name)
        .remove(key)
        .unwrap_or_else(|| panic!("{key} not in {name}"))
        .values
}

pub fn widen<T: Copy + Into<f64>>(values: &[T]) -> Vec<f64> {
    values.iter().map(|&v| v.into()).collect()
}
