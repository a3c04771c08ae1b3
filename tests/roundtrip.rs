//! Round trips through bytes for every leaf type and container, checked value for value.

mod common;

use std::collections::{BTreeMap, HashMap};

use safejax::{bf16, f16, Dtype, Error, Options, Params, Tensor, TensorView};
use serde::{Deserialize, Serialize};

use common::models::AllDtypes;

fn t<T: safejax::Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// `params` written to bytes and read back, checked equal to what was written.
fn round_trip<T>(params: &T) -> T
where
    T: Serialize + serde::de::DeserializeOwned + Params + PartialEq + std::fmt::Debug,
{
    let back: T = safejax::from_bytes(&safejax::to_bytes(params).unwrap()).unwrap();
    assert_eq!(&back, params);
    back
}

fn all_dtypes() -> AllDtypes {
    AllDtypes {
        b: t(&[3], vec![true, false, true]),
        u8: t(&[2], vec![0, 255]),
        i8: t(&[2], vec![-128, 127]),
        u16: t(&[1, 2], vec![1, u16::MAX]),
        i16: t(&[2], vec![i16::MIN, 7]),
        u32: t(&[2], vec![u32::MAX, 3]),
        i32: t(&[2, 1], vec![-5, i32::MAX]),
        u64: t(&[1], vec![u64::MAX]),
        i64: t(&[2], vec![i64::MIN, -1]),
        f16: t(&[2], vec![f16::from_f32(0.5), f16::NEG_INFINITY]),
        bf16: t(&[3], vec![bf16::from_f32(-1.5), bf16::MAX, bf16::from_f32(3.0e-3)]),
        f32: t(&[2, 2], vec![0.1, -0.0, f32::MIN_POSITIVE, 1e30]),
        f64: t(&[2], vec![std::f64::consts::PI, -1e-300]),
    }
}

#[test]
fn every_dtype_round_trips_exactly() {
    let params = all_dtypes();
    let back = round_trip(&params);
    let leaves = common::leaves_of(&back);
    let dtypes: Vec<Dtype> = leaves.values().map(|l| l.dtype).collect();
    assert_eq!(dtypes.len(), 13);
    assert_eq!(leaves["bf16"].dtype, Dtype::BF16);
    assert_eq!(leaves["b"].values, [1.0, 0.0, 1.0]);
}

#[test]
fn the_layout_is_the_reference_writers() {
    // The safetensors crate's own writer, given the same tensors, writes the same bytes.
    let params = all_dtypes();
    let ours = safejax::to_bytes(&params).unwrap();
    let leaves = common::leaves_of(&params);
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    params
        .serialize(&mut safejax::Serializer::new::<AllDtypes>(|leaf| {
            owned.push((leaf.key.to_owned(), leaf.dtype, leaf.shape.to_vec(), leaf.data.to_vec()));
            Ok(())
        }))
        .unwrap();
    assert_eq!(owned.len(), leaves.len());
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(k, d, s, b)| {
            let dtype: safetensors::Dtype = serde_json::from_value(serde_json::json!(d.name())).unwrap();
            (
                k.clone(),
                safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let reference = safetensors::serialize(views, None).unwrap();
    assert!(ours == reference, "layout differs from the safetensors crate's");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
struct Scalars {
    flag: bool,
    step: i32,
    count: u64,
    small: i8,
    lr: f32,
    eps: f64,
    half: f16,
    brain: bf16,
}

#[test]
fn scalars_are_zero_dimensional_tensors() {
    let params = Scalars {
        flag: true,
        step: -3,
        count: 1 << 40,
        small: -1,
        lr: 1e-3,
        eps: 1e-12,
        half: f16::from_f32(0.25),
        brain: bf16::from_f32(-2.5),
    };
    let back = round_trip(&params);
    let leaves = common::leaves_of(&back);
    assert!(leaves.values().all(|l| l.shape.is_empty()));
    assert_eq!(leaves["half"].dtype, Dtype::F16);
    assert_eq!(leaves["brain"].values, [-2.5]);
    // And a 0-d tensor reads as a scalar, and back.
    #[derive(Serialize, Deserialize, Params)]
    struct AsTensor {
        step: Tensor<i32>,
    }
    #[derive(Serialize, Deserialize, Params)]
    struct AsScalar {
        step: i32,
    }
    let bytes = safejax::to_bytes(&params).unwrap();
    let as_tensor: AsTensor = Options::new().allow_unknown_keys(true).from_bytes(&bytes).unwrap();
    assert_eq!(
        (as_tensor.step.shape(), as_tensor.step.as_slice()),
        (&[][..], &[-3][..])
    );
    let again: AsScalar = safejax::from_bytes(&safejax::to_bytes(&as_tensor).unwrap()).unwrap();
    assert_eq!(again.step, -3);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
struct Shapes {
    empty: Tensor<f32>,
    empty_2d: Tensor<i64>,
    zero_d: Tensor<f64>,
    big_rank: Tensor<u8>,
}

#[test]
fn empty_and_zero_d_tensors() {
    let params = Shapes {
        empty: t(&[0], vec![]),
        empty_2d: t(&[3, 0], vec![]),
        zero_d: Tensor::scalar(2.0),
        big_rank: t(&[1, 1, 1, 1, 1, 1, 2], vec![1, 2]),
    };
    let back = round_trip(&params);
    assert_eq!(back.empty_2d.shape(), &[3, 0]);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
struct Dense {
    kernel: Tensor<f32>,
    bias: Tensor<f32>,
}

fn dense(seed: f32) -> Dense {
    Dense {
        kernel: t(&[1, 2], vec![seed, seed + 1.0]),
        bias: t(&[2], vec![-seed, 0.0]),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
struct Containers {
    layers: Vec<Dense>,
    pair: [Dense; 2],
    maybe: Option<Dense>,
    absent: Option<Dense>,
    boxed: Box<Dense>,
    named: BTreeMap<String, Dense>,
    hashed: HashMap<String, Tensor<i32>>,
    gaps: Vec<Option<Dense>>,
    indexed: BTreeMap<usize, Dense>,
    nested: Vec<Vec<Tensor<u8>>>,
    leaf_list: Vec<Tensor<f32>>,
}

fn containers() -> Containers {
    Containers {
        layers: vec![dense(1.0), dense(2.0), dense(3.0)],
        pair: [dense(4.0), dense(5.0)],
        maybe: Some(dense(6.0)),
        absent: None,
        boxed: Box::new(dense(7.0)),
        named: BTreeMap::from([("encoder".to_owned(), dense(8.0)), ("decoder".to_owned(), dense(9.0))]),
        hashed: HashMap::from([("a.b".to_owned(), t(&[1], vec![1])), ("c".to_owned(), t(&[1], vec![2]))]),
        gaps: vec![Some(dense(10.0)), None, Some(dense(11.0))],
        indexed: BTreeMap::from([(0, dense(12.0)), (3, dense(13.0))]),
        nested: vec![vec![t(&[1], vec![1])], vec![t(&[1], vec![2]), t(&[1], vec![3])]],
        leaf_list: vec![t(&[1], vec![0.5])],
    }
}

#[test]
fn every_container_round_trips() {
    let params = containers();
    let back = round_trip(&params);
    let keys: Vec<String> = common::leaves_of(&back).into_keys().collect();
    for key in [
        "layers_2.kernel",
        "pair_1.bias",
        "maybe.kernel",
        "boxed.kernel",
        "named.encoder.bias",
        "hashed.a.b",
        "gaps_0.kernel",
        "gaps_2.kernel",
        "indexed_3.bias",
        "nested_1_1",
        "leaf_list_0",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.starts_with("absent") || k.starts_with("gaps_1")));
}

#[test]
fn a_root_map_is_a_flat_dict() {
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Tree {
        layers: Vec<Dense>,
        named: BTreeMap<String, Dense>,
    }
    let tree = Tree {
        layers: vec![dense(1.0)],
        named: containers().named,
    };
    let bytes = safejax::to_bytes(&tree).unwrap();
    let flat: BTreeMap<String, Tensor<f32>> = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(
        flat.keys().collect::<Vec<_>>(),
        [
            "layers_0.bias",
            "layers_0.kernel",
            "named.decoder.bias",
            "named.decoder.kernel",
            "named.encoder.bias",
            "named.encoder.kernel"
        ]
    );
    assert_eq!(flat["named.decoder.kernel"].as_slice(), &[9.0, 10.0]);
    // The flat map writes the same file, and reads back as the tree.
    assert!(safejax::to_bytes(&flat).unwrap() == bytes);
    let again: Tree = safejax::from_bytes(&safejax::to_bytes(&flat).unwrap()).unwrap();
    assert_eq!(again, tree);
    // A map of maps splits keys at the first `.`.
    let nested: BTreeMap<String, BTreeMap<String, Tensor<f32>>> = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(nested["named"]["decoder.bias"].as_slice(), &[-9.0, 0.0]);
    assert_eq!(nested["layers_0"].len(), 2);
}

#[test]
fn views_borrow_aligned_input() {
    #[derive(Serialize, Deserialize, Params)]
    struct View<'a> {
        #[serde(borrow)]
        kernel: TensorView<'a, f32>,
        #[serde(borrow)]
        bias: TensorView<'a, f32>,
    }
    let bytes = safejax::to_bytes(&dense(1.0)).unwrap();
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    let aligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()];
    aligned.copy_from_slice(&bytes);
    let view: View = safejax::from_bytes(aligned).unwrap();
    assert!(view.kernel.is_borrowed() && view.bias.is_borrowed());
    assert_eq!(view.kernel.as_slice(), &[1.0, 2.0]);
    // Shifted by one byte, the same file still loads, by copying.
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let copied: View = safejax::from_bytes(&shifted[1..]).unwrap();
    assert!(!copied.kernel.is_borrowed());
    assert_eq!(copied.bias.as_slice(), &[-1.0, 0.0]);
}

#[test]
fn metadata_is_written_and_read() {
    let opts = Options::new().metadata("format", "flax").metadata("step", "10");
    let bytes = opts.to_bytes(&dense(1.0)).unwrap();
    let meta = safejax::read_metadata(&bytes).unwrap();
    assert_eq!(meta.len(), 2);
    assert_eq!(meta["format"], "flax");
    assert!(safejax::read_metadata(&safejax::to_bytes(&dense(1.0)).unwrap())
        .unwrap()
        .is_empty());
    let back: Dense = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(back, dense(1.0));
}

#[test]
fn dtypes_convert_when_asked() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Wide {
        kernel: Tensor<f64>,
        bias: Tensor<bf16>,
    }
    let bytes = safejax::to_bytes(&dense(1.5)).unwrap();
    let wide: Wide = Options::new().convert_dtypes(true).from_bytes(&bytes).unwrap();
    assert_eq!(wide.kernel.as_slice(), &[1.5, 2.5]);
    assert_eq!(wide.bias.as_slice(), &[bf16::from_f32(-1.5), bf16::from_f32(0.0)]);
}

#[test]
fn files_and_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("params.safetensors");
    safejax::to_file(&path, &containers()).unwrap();
    let back: Containers = safejax::from_file(&path).unwrap();
    assert_eq!(back, containers());
    let mut buffer = Vec::new();
    safejax::to_writer(&mut buffer, &containers()).unwrap();
    assert!(buffer == std::fs::read(&path).unwrap());
    // Only the target is left in the directory: the temporary file was renamed over it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// `from_file` reads tensors over 1 MiB in chunks, straight into the leaves: the values, the
/// dtype checks and conversions, and bool validation are those of `from_bytes`.
#[test]
fn from_file_reads_large_tensors_in_chunks() {
    use safejax::{DynTensor, Value};

    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Big {
        wide: Tensor<f64>,
        odd: Tensor<u16>,
        flags: Tensor<bool>,
        small: Tensor<f32>,
    }
    // Sizes that split elements across chunk boundaries only where elements allow it.
    let n64 = (1 << 18) + 3; // 2 MiB + 24 bytes of f64
    let n16 = (3 << 19) + 1; // 3 MiB + 2 bytes of u16
    let big = Big {
        wide: Tensor::new(vec![n64], (0..n64).map(|i| i as f64 * 0.5).collect()).unwrap(),
        odd: Tensor::new(vec![n16], (0..n16).map(|i| (i * 7) as u16).collect()).unwrap(),
        flags: Tensor::new(vec![3 << 19], (0..3 << 19).map(|i| i % 3 == 0).collect()).unwrap(),
        small: Tensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.safetensors");
    safejax::to_file(&path, &big).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let back: Big = safejax::from_file(&path).unwrap();
    assert!(back == big);
    let value: Value = safejax::from_file(&path).unwrap();
    assert!(value == safejax::from_bytes::<Value>(&bytes).unwrap());
    let flat: std::collections::BTreeMap<String, DynTensor> = safejax::from_file(&path).unwrap();
    assert_eq!(flat["odd"].shape(), &[n16]);

    // A large tensor converted on the way.
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Narrow {
        wide: Tensor<f32>,
        odd: Tensor<u16>,
        flags: Tensor<bool>,
        small: Tensor<f32>,
    }
    let narrow: Narrow = Options::new().convert_dtypes(true).from_file(&path).unwrap();
    assert_eq!(narrow.wide.as_slice()[n64 - 1], (n64 - 1) as f32 * 0.5);

    // A byte that is not a bool, far into a large tensor, is found as from_bytes finds it.
    let mut bad = bytes.clone();
    let header_len = u64::from_le_bytes(bad[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bad[8..8 + header_len]).unwrap();
    let start = 8 + header_len + header["flags"]["data_offsets"][0].as_u64().unwrap() as usize;
    bad[start + (3 << 19) - 5] = 7;
    std::fs::write(&path, &bad).unwrap();
    let from_file = safejax::from_file::<Big>(&path).unwrap_err();
    let from_bytes = safejax::from_bytes::<Big>(&bad).unwrap_err();
    // serde's error of the tensor's `Deserialize`: a message, at the tensor's key.
    assert!(matches!(&from_file, Error::Message { .. }), "{from_file:?}");
    assert_eq!(from_file.key(), Some("flags"), "{from_file:?}");
    assert_eq!(from_file.to_string(), from_bytes.to_string());
    assert!(from_file.to_string().contains("BOOL"), "{from_file}");
}
