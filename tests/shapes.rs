//! Declared shapes (`#[safejax(shape = [...])]`) and the list-length rule, on the real GPT-2
//! fixture (tests/fixtures/hf_gpt2, made by transformers' Flax GPT-2) and on copies of it with
//! layers removed or tensors reshaped, written to a temporary directory here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safejax::{DynTensor, Error, Params, Tensor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod common;

/// GPT-2 as someone porting it would write it: named dimensions, bound by the first leaf that has
/// them (`wte`, declared first), checked at every other.
#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Gpt2 {
    transformer: Transformer,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Transformer {
    wte: Embedding,
    wpe: Embedding,
    h: Vec<Block>,
    ln_f: LayerNorm,
}

/// The same with a fixed number of blocks: a file with fewer or more is refused.
#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Gpt2Fixed {
    transformer: TransformerFixed,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct TransformerFixed {
    wte: Embedding,
    wpe: Embedding,
    h: [Block; 2],
    ln_f: LayerNorm,
}

/// The same count as a `Vec`, declared with `len`: what `safejax codegen` prints for a model of
/// more blocks than an array may hold.
#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Gpt2Len {
    transformer: TransformerLen,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct TransformerLen {
    wte: Embedding,
    wpe: Embedding,
    #[safejax(len = 2)]
    h: Vec<Block>,
    ln_f: LayerNorm,
}

/// `len` with `shape`, on a list of tensors.
#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Stack {
    #[safejax(len = 3, shape = [2, _])]
    layers: Vec<Tensor<f32>>,
}

/// With `#[serde(default)]`, a file without any block loads, with none.
#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Gpt2Default {
    transformer: TransformerDefault,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct TransformerDefault {
    wte: Embedding,
    wpe: Embedding,
    #[serde(default)]
    h: Vec<Block>,
    ln_f: LayerNorm,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Embedding {
    #[safejax(shape = [_, d_model])]
    embedding: Tensor<f32>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct LayerNorm {
    #[safejax(shape = [d_model])]
    scale: Tensor<f32>,
    #[safejax(shape = [d_model])]
    bias: Tensor<f32>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Attention {
    c_attn: Qkv,
    c_proj: Square,
}

/// transformers' `Conv1D` kernels are stored (out, in).
#[derive(Debug, Serialize, Deserialize, Params)]
struct Qkv {
    #[safejax(shape = [24, d_model])]
    kernel: Tensor<f32>,
    #[safejax(shape = [24])]
    bias: Tensor<f32>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Square {
    #[safejax(shape = [d_model, d_model])]
    kernel: Tensor<f32>,
    #[safejax(shape = [d_model])]
    bias: Tensor<f32>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Mlp {
    c_fc: Up,
    c_proj: Down,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Up {
    #[safejax(shape = [d_ff, d_model])]
    kernel: Tensor<f32>,
    #[safejax(shape = [d_ff])]
    bias: Tensor<f32>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Down {
    #[safejax(shape = [d_model, d_ff])]
    kernel: Tensor<f32>,
    #[safejax(shape = [d_model])]
    bias: Tensor<f32>,
}

fn gpt2_path() -> PathBuf {
    common::fixture_path("hf_gpt2/safetensors/model.safetensors")
}

/// Every tensor of the GPT-2 fixture, by key.
fn gpt2_tensors() -> BTreeMap<String, DynTensor> {
    safejax::from_file(gpt2_path()).unwrap()
}

/// A copy of the fixture changed by `edit`, written to `dir`.
fn gpt2_copy(dir: &Path, name: &str, edit: impl FnOnce(&mut BTreeMap<String, DynTensor>)) -> PathBuf {
    let mut tensors = gpt2_tensors();
    edit(&mut tensors);
    let path = dir.join(format!("{name}.safetensors"));
    safejax::to_file(&path, &tensors).unwrap();
    path
}

/// A copy of the fixture with the tensor at `key` replaced by `replace(tensor)`, written to `dir`.
fn gpt2_replacing(dir: &Path, name: &str, key: &str, replace: impl FnOnce(&DynTensor) -> DynTensor) -> PathBuf {
    gpt2_copy(dir, name, |t| {
        let new = replace(&t[key]);
        t.insert(key.to_owned(), new);
    })
}

/// `tensor` with another shape of as many elements (its bytes unchanged).
fn reshaped(tensor: &DynTensor, shape: &[usize]) -> DynTensor {
    DynTensor::new(tensor.dtype(), shape.to_vec(), tensor.as_bytes().to_vec()).unwrap()
}

/// A tensor of zeros of `tensor`'s dtype in `shape`.
fn zeros_like(tensor: &DynTensor, shape: &[usize]) -> DynTensor {
    let len = tensor.dtype().byte_len(shape.iter().product()).unwrap();
    DynTensor::new(tensor.dtype(), shape.to_vec(), vec![0; len]).unwrap()
}

#[test]
fn the_intact_file_loads_with_every_shape_checked() {
    let gpt2: Gpt2 = safejax::from_file(gpt2_path()).unwrap();
    assert_eq!(gpt2.transformer.h.len(), 2);
    assert_eq!(gpt2.transformer.h[1].mlp.c_fc.kernel.shape(), &[32, 8]);
    let fixed: Gpt2Fixed = safejax::from_file(gpt2_path()).unwrap();
    assert_eq!(fixed.transformer.h[0].attn.c_attn.kernel.shape(), &[24, 8]);
}

#[test]
fn a_file_without_any_block_is_refused_naming_the_first_blocks_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = gpt2_copy(dir.path(), "no_blocks", |t| {
        t.retain(|k, _| !k.starts_with("transformer.h."))
    });
    for err in [
        safejax::from_file::<Gpt2>(&path).unwrap_err(),
        safejax::from_file::<Gpt2Fixed>(&path).unwrap_err(),
    ] {
        let Error::MissingKeys { keys, .. } = &err else {
            panic!("not a missing-keys error: {err:?}");
        };
        // Missing keys are reported sorted: the first is the first of the block's keys by name.
        assert_eq!(err.key(), Some("transformer.h.0.attn.c_attn.bias"));
        assert!(
            keys.contains(&"transformer.h.0.mlp.c_proj.kernel".to_owned()),
            "{keys:?}"
        );
    }
    // Unless the field says an empty list is fine.
    let gpt2: Gpt2Default = safejax::from_file(&path).unwrap();
    assert!(gpt2.transformer.h.is_empty());
}

/// A `[Block; 2]` or a `Vec<Block>` with `len = 2`: a file without the last block is its missing
/// keys, one with a third block is its unknown keys (unless they are allowed). `blocks` counts the
/// blocks loaded.
fn refuses_a_file_without_its_last_block_or_with_one_more<T: DeserializeOwned + Params + std::fmt::Debug>(
    blocks: fn(&T) -> usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = gpt2_copy(dir.path(), "one_block", |t| {
        t.retain(|k, _| !k.starts_with("transformer.h.1."))
    });
    let err = safejax::from_file::<T>(&path).unwrap_err();
    let Error::MissingKeys { keys, .. } = &err else {
        panic!("not a missing-keys error: {err:?}");
    };
    // Every key of the missing block, and no other.
    assert_eq!(keys.len(), 12, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("transformer.h.1.")), "{keys:?}");

    let path = gpt2_copy(dir.path(), "three_blocks", |t| {
        let extra: Vec<(String, DynTensor)> = t
            .iter()
            .filter(|(k, _)| k.starts_with("transformer.h.1."))
            .map(|(k, v)| (k.replacen("h.1.", "h.2.", 1), v.clone()))
            .collect();
        t.extend(extra);
    });
    let err = safejax::from_file::<T>(&path).unwrap_err();
    let Error::UnknownKeys { keys, .. } = &err else {
        panic!("not an unknown-keys error: {err:?}");
    };
    assert_eq!(keys.len(), 12, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("transformer.h.2.")), "{keys:?}");
    let options = safejax::Options::new().allow_unknown_keys(true);
    let loaded: T = options.from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(blocks(&loaded), 2);
}

#[test]
fn a_fixed_count_refuses_a_file_without_its_last_block_or_with_one_more() {
    refuses_a_file_without_its_last_block_or_with_one_more::<Gpt2Fixed>(|m| m.transformer.h.len());
}

#[test]
fn a_transposed_kernel_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "transformer.h.0.attn.c_attn.kernel";
    let path = gpt2_replacing(dir.path(), "transposed", key, |kernel| reshaped(kernel, &[8, 24]));
    let bytes = std::fs::read(&path).unwrap();
    // Every loader reads through the same check.
    let errors = [
        safejax::from_file::<Gpt2>(&path).unwrap_err(),
        safejax::from_bytes::<Gpt2>(&bytes).unwrap_err(),
        safejax::Deserializer::from_slice(&bytes)
            .unwrap()
            .deserialize::<Gpt2>()
            .unwrap_err(),
    ];
    for err in &errors {
        let Error::DeclaredShapeMismatch {
            key: at,
            expected,
            found,
        } = err
        else {
            panic!("not a declared-shape mismatch: {err:?}");
        };
        assert_eq!(at, key);
        assert_eq!(found, &[8, 24]);
        assert_eq!(expected[0].size, Some(24));
        assert_eq!(expected[1].bound_by.as_deref(), Some("transformer.wte.embedding"));
    }
    assert_eq!(
        errors[0].to_string(),
        "shape mismatch at `transformer.h.0.attn.c_attn.kernel`: expected [24, d_model=8], found [8, 24] \
         (d_model bound to 8 by `transformer.wte.embedding`)"
    );
}

#[test]
fn sharded_msgpack_and_orbax_loads_check_shapes_too() {
    let dir = tempfile::tempdir().unwrap();
    let key = "transformer.h.1.attn.c_attn.kernel";
    let mut tensors = gpt2_tensors();
    let kernel = reshaped(&tensors[key], &[8, 24]);
    tensors.insert(key.to_owned(), kernel);
    let shape_error_at = |err: Error| match err {
        Error::DeclaredShapeMismatch { key: at, .. } => assert_eq!(at, key),
        Error::InFile { source, .. } => match *source {
            Error::DeclaredShapeMismatch { key: at, .. } => assert_eq!(at, key),
            other => panic!("not a declared-shape mismatch: {other:?}"),
        },
        other => panic!("not a declared-shape mismatch: {other:?}"),
    };

    let sharded = dir.path().join("sharded");
    safejax::to_dir(&sharded, &tensors, 2048).unwrap();
    assert!(std::fs::read_dir(&sharded).unwrap().count() > 2, "not sharded");
    shape_error_at(safejax::from_dir::<Gpt2>(&sharded).unwrap_err());

    let msgpack = safejax::msgpack::to_bytes(&tensors).unwrap();
    shape_error_at(safejax::msgpack::from_bytes::<Gpt2>(&msgpack).unwrap_err());

    let orbax = dir.path().join("orbax");
    safejax::orbax::to_dir(&orbax, &tensors).unwrap();
    shape_error_at(safejax::orbax::from_dir::<Gpt2>(&orbax).unwrap_err());
}

#[test]
fn a_named_dimension_bound_elsewhere_is_refused_naming_both_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let key = "transformer.h.1.mlp.c_proj.kernel";
    // A block whose MLP is half as wide as the first block's.
    let path = gpt2_replacing(dir.path(), "inconsistent", key, |kernel| zeros_like(kernel, &[8, 16]));
    let err = safejax::from_file::<Gpt2>(&path).unwrap_err();
    let Error::DeclaredShapeMismatch {
        key: at,
        expected,
        found,
    } = &err
    else {
        panic!("not a declared-shape mismatch: {err:?}");
    };
    assert_eq!(at, key);
    assert_eq!(found, &[8, 16]);
    assert_eq!(expected[1].name.as_deref(), Some("d_ff"));
    assert_eq!(expected[1].size, Some(32));
    assert_eq!(expected[1].bound_by.as_deref(), Some("transformer.h.0.mlp.c_fc.kernel"));
    assert_eq!(err.key(), Some(key));
}

#[test]
fn writing_a_tensor_of_another_shape_fails_before_any_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut gpt2: Gpt2 = safejax::from_file(gpt2_path()).unwrap();
    gpt2.transformer.ln_f.bias = Tensor::new(vec![4], vec![0.0; 4]).unwrap();
    let path = dir.path().join("out.safetensors");
    for err in [
        safejax::to_file(&path, &gpt2).unwrap_err(),
        safejax::to_bytes(&gpt2).unwrap_err(),
        safejax::msgpack::to_bytes(&gpt2).unwrap_err(),
    ] {
        let Error::DeclaredShapeMismatch { key, found, .. } = &err else {
            panic!("not a declared-shape mismatch: {err:?}");
        };
        assert_eq!(key, "transformer.ln_f.bias");
        assert_eq!(found, &[4]);
    }
    assert!(!path.exists(), "a file was written");
}

#[test]
fn a_vec_with_len_refuses_a_file_without_its_last_block_and_a_write_of_another_count() {
    refuses_a_file_without_its_last_block_or_with_one_more::<Gpt2Len>(|m| m.transformer.h.len());

    // A third block pushed onto the loaded model: the write names the list and writes nothing.
    let mut gpt2: Gpt2Len = safejax::from_file(gpt2_path()).unwrap();
    assert_eq!(gpt2.transformer.h.len(), 2);
    let third: Gpt2 = safejax::from_file(gpt2_path()).unwrap();
    gpt2.transformer.h.extend(third.transformer.h.into_iter().take(1));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    for err in [
        safejax::to_file(&out, &gpt2).unwrap_err(),
        safejax::to_bytes(&gpt2).unwrap_err(),
        safejax::msgpack::to_bytes(&gpt2).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::LengthMismatch { key, expected: 2, found: 3 } if key == "transformer.h"),
            "{err:?}"
        );
        assert_eq!(err.key(), Some("transformer.h"), "{err:?}");
    }
    assert!(!out.exists(), "a file was written");
}

#[test]
fn len_composes_with_shape_on_a_list_of_tensors() {
    let layer = |rows: usize| Tensor::new(vec![rows, 4], vec![0.0f32; rows * 4]).unwrap();
    let stack = Stack {
        layers: vec![layer(2), layer(2), layer(2)],
    };
    let bytes = safejax::to_bytes(&stack).unwrap();
    let back: Stack = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(back.layers.len(), 3);

    // Each element's shape is checked.
    let wrong = Stack {
        layers: vec![layer(2), layer(5), layer(2)],
    };
    let err = safejax::to_bytes(&wrong).unwrap_err();
    let Error::DeclaredShapeMismatch { key, .. } = &err else {
        panic!("not a declared-shape mismatch: {err:?}");
    };
    assert_eq!(key, "layers.1");

    // And the count: a file of two layers misses the third.
    let two: BTreeMap<String, Tensor<f32>> = [("layers.0", layer(2)), ("layers.1", layer(2))]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let err = safejax::from_bytes::<Stack>(&safejax::to_bytes(&two).unwrap()).unwrap_err();
    let Error::MissingKeys { keys, .. } = &err else {
        panic!("not a missing-keys error: {err:?}");
    };
    assert_eq!(keys, &["layers.2".to_owned()]);
}
