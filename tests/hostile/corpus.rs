//! Builders of malformed safetensors files, and the small valid file they start from.

use std::collections::BTreeMap;

use safejax::{bf16, f16, Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
pub struct Small {
    pub dense: Dense,
    pub layers: Vec<Dense>,
    pub step: i32,
    pub ids: Option<Tensor<u64>>,
    pub stats: BTreeMap<String, Tensor<f16>>,
    pub head: [Tensor<bf16>; 1],
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
pub struct Dense {
    pub kernel: Tensor<f32>,
    pub bias: Tensor<f32>,
}

fn t<T: safejax::Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::new(shape.to_vec(), data).unwrap()
}

pub fn small() -> Small {
    Small {
        dense: Dense {
            kernel: t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            bias: t(&[2], vec![0.5, -0.5]),
        },
        layers: vec![Dense {
            kernel: t(&[1, 1], vec![7.0]),
            bias: t(&[1], vec![0.0]),
        }],
        step: 3,
        ids: Some(t(&[2], vec![1, u64::MAX])),
        stats: BTreeMap::from([("mean".to_owned(), t(&[1], vec![f16::ONE]))]),
        head: [t(&[2], vec![bf16::ONE, bf16::MIN])],
    }
}

/// [`Small`] with a kernel of 2^20 floats: 4 MB of data.
pub fn big_file() -> Vec<u8> {
    let mut big = small();
    big.dense.kernel = t(&[1024, 1024], (0..1 << 20).map(|i| i as f32).collect());
    safejax::to_bytes(&big).unwrap()
}

pub fn small_file() -> Vec<u8> {
    safejax::to_bytes(&small()).unwrap()
}

/// A file whose header is `header` verbatim (its length prefix matching) followed by `data`.
pub fn file(header: &str, data: &[u8]) -> Vec<u8> {
    file_bytes(header.as_bytes(), data)
}

/// As [`file`], for headers that are not text.
pub fn file_bytes(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(data);
    bytes
}

/// `bytes` with its length prefix replaced by `len`.
pub fn with_header_len(mut bytes: Vec<u8>, len: u64) -> Vec<u8> {
    bytes[..8].copy_from_slice(&len.to_le_bytes());
    bytes
}

/// One header entry as JSON.
pub fn entry(key: &str, dtype: &str, shape: &str, start: u64, end: u64) -> String {
    format!(r#""{key}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{start},{end}]}}"#)
}

/// A header object of `entries`.
pub fn header(entries: &[String]) -> String {
    format!("{{{}}}", entries.join(","))
}

/// A header of `n` zero-sized F32 tensors with distinct keys: many entries in few bytes.
pub fn many_entries(n: usize) -> Vec<u8> {
    let entries: Vec<String> = (0..n).map(|i| entry(&format!("{i:x}"), "F32", "[0]", 0, 0)).collect();
    file(&header(&entries), b"")
}

/// A header of `n` entries, each a zero-sized U8 tensor of 64 dimensions: the largest shapes.
pub fn many_dimensions(n: usize) -> Vec<u8> {
    let shape = format!("[0{}]", ",9".repeat(63));
    let entries: Vec<String> = (0..n).map(|i| entry(&format!("{i:x}"), "U8", &shape, 0, 0)).collect();
    file(&header(&entries), b"")
}

/// A `__metadata__` of `n` short pairs.
pub fn many_metadata(n: usize) -> Vec<u8> {
    let pairs: Vec<String> = (0..n).map(|i| format!(r#""{i:x}":"""#)).collect();
    file(&format!(r#"{{"__metadata__":{{{}}}}}"#, pairs.join(",")), b"")
}

/// `n` one-byte U8 tensors under the module name `module`, which the type `Small` lacks in full.
pub fn many_partial_modules(n: usize) -> Vec<u8> {
    let entries: Vec<String> = (0..n)
        .map(|i| entry(&format!("layers_{i}.kernel"), "F32", "[0]", 0, 0))
        .collect();
    file(&header(&entries), b"")
}
