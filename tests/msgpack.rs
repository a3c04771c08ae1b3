//! Flax's msgpack format, against files that the real `flax.serialization.to_bytes` wrote
//! (`scripts/gen_msgpack_fixtures.py`): bf16 arrays, chunked arrays, numpy scalars, lists as dicts.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;

use common::models::{FlaxCnn, NnxModel};
use common::{fixture_path, leaves_of, value_leaves, Leaf};
use safejax::{msgpack, Error, Params, Tensor, Value};
use serde::{Deserialize, Serialize};

fn msgpack_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("msgpack/{name}.msgpack"))).unwrap()
}

fn expected(name: &str) -> BTreeMap<String, Leaf> {
    common::expected_leaves(&format!("msgpack/{name}"))
}

#[test]
fn flax_variables_load_typed_and_write_back_the_same_bytes() {
    let file = msgpack_fixture("flax_cnn");
    let cnn: FlaxCnn = msgpack::from_bytes(&file).unwrap();
    assert_eq!(leaves_of(&cnn), expected("flax_cnn"));
    assert_eq!(cnn.params.head.kernel.dtype(), safejax::Dtype::BF16);
    // The struct declares its fields in the order flax created them, so even the dict order agrees.
    assert!(
        msgpack::to_bytes(&cnn).unwrap() == file,
        "written differently from flax"
    );
    // The same model saved by Python safejax as safetensors holds the same tensors.
    let from_safetensors: FlaxCnn = safejax::from_file(fixture_path("flax_cnn.safetensors")).unwrap();
    assert_eq!(from_safetensors, cnn);
}

#[test]
fn chunked_arrays_numpy_scalars_and_lists() {
    let file = msgpack_fixture("chunked");
    let value: Value = msgpack::from_bytes(&file).unwrap();
    assert_eq!(value_leaves(&value), expected("chunked"));

    // Typed: the list `layers` is stored as a dict keyed '0', '1', which the nnx style reads as a Vec.
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    #[safejax(style = "nnx")]
    struct Tree {
        params: Inner,
        layers: Vec<Wb>,
        step: i32,
        count: Tensor<i32>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Inner {
        dense: Dense,
        odd: Tensor<f32>,
        embed_bf16: Tensor<safejax::bf16>,
        big_bf16: Tensor<safejax::bf16>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Dense {
        kernel: Tensor<f32>,
        bias: Tensor<f32>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Wb {
        w: Tensor<f32>,
        b: Tensor<f32>,
    }
    let tree: Tree = msgpack::from_bytes(&file).unwrap();
    assert_eq!(leaves_of(&tree), expected("chunked"));
    assert_eq!(tree.params.odd.shape(), &[5, 7], "a chunked array reads whole");
    assert_eq!((tree.step, tree.count.shape()), (7, &[][..]));
    assert!(msgpack::to_bytes(&tree).is_ok());
    // Written by Rust with flax's 1 GiB chunk size, nothing is chunked, and it reads back the same.
    let rewritten = msgpack::to_bytes(&value).unwrap();
    assert!(!String::from_utf8_lossy(&rewritten).contains("__msgpack_chunked_array__"));
    assert_eq!(
        value_leaves(&msgpack::from_bytes::<Value>(&rewritten).unwrap()),
        expected("chunked")
    );
}

#[test]
fn nnx_state_with_list_indices() {
    let file = msgpack_fixture("nnx_model");
    let model: NnxModel = msgpack::from_bytes(&file).unwrap();
    assert_eq!(leaves_of(&model), expected("nnx_model"));
    let again: NnxModel = msgpack::from_bytes(&msgpack::to_bytes(&model).unwrap()).unwrap();
    assert_eq!(again, model);
}

#[test]
fn msgpack_and_safetensors_carry_the_same_params() {
    let cnn: FlaxCnn = msgpack::from_bytes(&msgpack_fixture("flax_cnn")).unwrap();
    let st = safejax::to_bytes(&cnn).unwrap();
    let back: FlaxCnn = safejax::from_bytes(&st).unwrap();
    assert!(msgpack::to_bytes(&back).unwrap() == msgpack_fixture("flax_cnn"));
}

#[test]
fn typed_errors_name_the_key() {
    // Only the error matters here, not the fields.
    #![allow(dead_code)]
    #[derive(Debug, Deserialize, Params)]
    struct Wrong {
        params: WrongParams,
    }
    #[derive(Debug, Deserialize, Params)]
    struct WrongParams {
        #[serde(rename = "Dense_0")]
        dense: WrongDense,
    }
    #[derive(Debug, Deserialize, Params)]
    struct WrongDense {
        kernel: Tensor<f32>,
    }
    let err = msgpack::from_bytes_with::<Wrong>(
        &msgpack_fixture("flax_cnn"),
        &safejax::Options::new().allow_unknown_keys(true),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dtype mismatch at `params.Dense_0.kernel`: expected F32, found BF16"
    );
}

#[test]
fn malformed_msgpack_is_an_error_not_a_panic() {
    let file = msgpack_fixture("flax_cnn");
    for cut in [0, 1, 2, 10, file.len() / 2, file.len() - 1] {
        assert!(msgpack::from_bytes::<Value>(&file[..cut]).is_err(), "cut at {cut}");
    }
    // A string where a tensor should be.
    let mut text = Vec::new();
    rmp::encode::write_map_len(&mut text, 1).unwrap();
    rmp::encode::write_str(&mut text, "name").unwrap();
    rmp::encode::write_str(&mut text, "bert").unwrap();
    let err = msgpack::from_bytes::<Value>(&text).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidMsgpack { key, offset: 6, .. } if key == "name"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid msgpack at byte 6 in `name`: a string or bytes, not a tensor"
    );
    // Nesting deeper than any checkpoint is refused before it exhausts the stack.
    let deep: Vec<u8> = std::iter::repeat_n([0x81u8, 0xa1, b'a'], 100_000)
        .flatten()
        .chain([0xc0])
        .collect();
    assert!(msgpack::from_bytes::<Value>(&deep).is_err());
    // A huge announced length with no bytes behind it allocates nothing.
    assert!(msgpack::from_bytes::<Value>(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
}

/// A leaf of a msgpack file of dicts and extensions, as an independent reader finds it.
struct LeafSpan {
    key: String,
    /// The bytes of its value, from its extension's marker.
    value: Range<usize>,
    /// Where the extension's payload, the (shape, dtype, data) tuple, starts.
    payload: usize,
}

/// Every leaf of `file` (nested maps of string keys, extensions at the leaves), in file order.
fn leaf_spans(file: &[u8]) -> Vec<LeafSpan> {
    fn walk(file: &[u8], rest: &mut &[u8], path: &str, out: &mut Vec<LeafSpan>) {
        let start = file.len() - rest.len();
        match rmp::Marker::from_u8(rest[0]) {
            rmp::Marker::FixMap(_) | rmp::Marker::Map16 | rmp::Marker::Map32 => {
                let n = rmp::decode::read_map_len(rest).unwrap();
                for _ in 0..n {
                    let len = rmp::decode::read_str_len(rest).unwrap() as usize;
                    let name = std::str::from_utf8(&rest[..len]).unwrap().to_owned();
                    *rest = &rest[len..];
                    let key = if path.is_empty() {
                        name
                    } else {
                        format!("{path}.{name}")
                    };
                    walk(file, rest, &key, out);
                }
            }
            _ => {
                let meta = rmp::decode::read_ext_meta(rest).unwrap();
                let payload = file.len() - rest.len();
                *rest = &rest[meta.size as usize..];
                out.push(LeafSpan {
                    key: path.to_owned(),
                    value: start..payload + meta.size as usize,
                    payload,
                });
            }
        }
    }
    let mut rest = file;
    let mut out = Vec::new();
    walk(file, &mut rest, "", &mut out);
    assert!(rest.is_empty());
    out
}

/// The key path and byte offset of a msgpack error.
fn where_invalid(bytes: &[u8]) -> (String, u64) {
    match msgpack::from_bytes::<Value>(bytes) {
        Err(Error::InvalidMsgpack { key, offset, .. }) => (key, offset),
        other => panic!("{other:?}"),
    }
}

fn gpt2_msgpack() -> Vec<u8> {
    std::fs::read(fixture_path("hf_gpt2/msgpack/flax_model.msgpack")).unwrap()
}

/// A file cut inside a tensor names that tensor's key, and an offset inside its value, at or
/// before the cut; cut between entries, the dict that was being read.
#[test]
fn a_cut_msgpack_file_names_the_key_and_offset_being_read() {
    let file = gpt2_msgpack();
    let leaves = leaf_spans(&file);
    assert_eq!(leaves.len(), 28);
    for leaf in [&leaves[0], &leaves[13], &leaves[27]] {
        let span = &leaf.value;
        for cut in [
            span.start,
            span.start + 1,
            leaf.payload + 2,
            (span.start + span.end) / 2,
            span.end - 1,
        ] {
            let (key, offset) = where_invalid(&file[..cut]);
            assert_eq!(key, leaf.key, "cut at {cut}");
            assert!(
                (span.start as u64..=cut as u64).contains(&offset),
                "cut at {cut}: offset {offset}"
            );
        }
        // Cut inside the entry's own key: the dict that holds it.
        let name_len = leaf.key.rsplit('.').next().unwrap().len();
        let cut = span.start - name_len / 2;
        let (key, offset) = where_invalid(&file[..cut]);
        assert_eq!(key, leaf.key[..leaf.key.len() - name_len - 1], "cut at {cut}");
        assert!(offset <= cut as u64);
        let err = msgpack::from_bytes::<Value>(&file[..cut]).unwrap_err();
        assert_eq!(err.key(), Some(key.as_str()));
    }
    assert_eq!(where_invalid(&file[..0]), (String::new(), 0));
}

/// A wrong marker, a bad extension or ndarray header, and bytes after the top-level dict: each
/// named by where it starts and the key being read.
#[test]
fn corrupt_msgpack_names_the_key_and_offset_of_the_fault() {
    let file = gpt2_msgpack();
    let leaves = leaf_spans(&file);
    let leaf = &leaves[5];
    let corrupt = |at: usize, byte: u8| {
        let mut bytes = file.clone();
        bytes[at] = byte;
        where_invalid(&bytes)
    };
    // 0xc1 is never used by msgpack.
    assert_eq!(
        corrupt(leaf.value.start, 0xc1),
        (leaf.key.clone(), leaf.value.start as u64)
    );
    // The extension's type byte, just before its payload.
    assert_eq!(
        corrupt(leaf.payload - 1, 42),
        (leaf.key.clone(), leaf.value.start as u64)
    );
    // The payload is not a 3-tuple; its shape is not a list.
    assert_eq!(corrupt(leaf.payload, 0x92), (leaf.key.clone(), leaf.payload as u64));
    assert_eq!(
        corrupt(leaf.payload + 1, 0xc3),
        (leaf.key.clone(), leaf.payload as u64 + 1)
    );
    // A top-level dict announcing more entries than there are bytes.
    let mut huge = vec![0xdf, 0xff, 0xff, 0xff, 0xff];
    huge.extend_from_slice(&file[1..]);
    assert_eq!(where_invalid(&huge), (String::new(), 0));
    // Trailing bytes start where the top-level dict ends.
    let mut long = file.clone();
    long.extend_from_slice(&[0, 0, 0]);
    assert_eq!(where_invalid(&long), (String::new(), file.len() as u64));
    let err = msgpack::from_bytes::<Value>(&long).unwrap_err();
    assert_eq!(err.key(), None);
    assert_eq!(
        err.to_string(),
        format!(
            "invalid msgpack at byte {}: 3 trailing bytes after the top-level dict",
            file.len()
        )
    );
}
