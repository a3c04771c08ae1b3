//! Writes the committed seed corpus, `fuzz/corpus/<target>/`: the test fixtures, files of the fuzz
//! targets' own types, and a few hand-made edge cases.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`.

#[path = "../common/models.rs"]
mod models;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use safejax::{bf16, f16, Options, Params, Serializer, Tensor};
use serde::Serialize;

use models::*;

fn t<T: safejax::Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::new(shape.to_vec(), data).unwrap()
}

fn dense(n: usize) -> Dense {
    Dense {
        kernel: t(&[n, 1], (0..n).map(|i| i as f32 * 0.5).collect()),
        bias: t(&[1], vec![-1.0]),
    }
}

fn model(full: bool) -> Model {
    Model {
        dense: dense(2),
        embed: full.then(|| t(&[2], vec![bf16::ONE, bf16::NEG_ONE])),
        layers: if full { vec![dense(1), dense(3)] } else { vec![] },
        stats: BTreeMap::from([
            ("mean".to_owned(), t(&[2], vec![f16::ZERO, f16::ONE])),
            ("var".to_owned(), t(&[], vec![f16::ONE])),
        ]),
        step: 7,
        flag: full.then_some(true),
        ids: t(&[0], vec![]),
        pair: [t(&[1], vec![-3]), t(&[2, 1], vec![4, 5])],
        gaps: BTreeMap::from([(0, t(&[1], vec![1])), (3, t(&[1], vec![2]))]),
        mask: full.then(|| t(&[3], vec![true, false, true])),
        wide: full.then(|| t(&[1], vec![f64::MAX])),
        counts: vec![1, 2],
    }
}

fn u8s() -> Leaf {
    t(&[1], vec![9])
}

fn keys_of<T: Serialize + Params>(params: &T) -> String {
    let mut keys = Vec::new();
    params
        .serialize(&mut Serializer::new::<T>(|leaf| {
            keys.push(leaf.key.to_owned());
            Ok(())
        }))
        .unwrap();
    keys.join("\n")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// A file with `header` as its JSON and `data` after it.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");
    let fixtures = root.join("../tests/fixtures");
    let (typed, flat, resolve) = (
        corpus.join("load_typed"),
        corpus.join("load_flat"),
        corpus.join("resolve_keys"),
    );

    let mut fixture_files: Vec<_> = fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    fixture_files.sort();
    for path in &fixture_files {
        let bytes = fs::read(path).unwrap();
        if bytes.len() > 4096 {
            continue; // keeps inputs within libFuzzer's default length
        }
        let name = path.file_name().unwrap().to_str().unwrap();
        write(&typed, name, &bytes);
        write(&flat, name, &bytes);
        let de = safejax::Deserializer::from_slice(&bytes).unwrap();
        let keys: Vec<&str> = de.keys().collect();
        write(&resolve, &format!("{name}.keys"), keys.join("\n").as_bytes());
    }

    let with_meta = Options::new().metadata("format", "flax");
    write(&typed, "model_full", &safejax::to_bytes(&model(true)).unwrap());
    write(&typed, "model_min", &safejax::to_bytes(&model(false)).unwrap());
    write(&typed, "model_meta", &with_meta.to_bytes(&model(false)).unwrap());

    let floats = BTreeMap::from([
        ("a".to_owned(), t(&[2], vec![1.0f32, f32::NAN])),
        ("b.c".to_owned(), t(&[], vec![0.25f32])),
        ("e".to_owned(), t(&[0, 3], vec![])),
    ]);
    write(&flat, "f32_map", &safejax::to_bytes(&floats).unwrap());
    write(&flat, "f32_map_meta", &with_meta.to_bytes(&floats).unwrap());
    let bytes_map = BTreeMap::from([("x".to_owned(), t(&[3], vec![1u8, 2, 3]))]);
    write(&flat, "u8_map", &safejax::to_bytes(&bytes_map).unwrap());
    let bf = BTreeMap::from([("w".to_owned(), t(&[2], vec![bf16::ONE, bf16::MAX]))]);
    write(&flat, "bf16_map", &safejax::to_bytes(&bf).unwrap());

    // Hand-made edge cases, for both loaders.
    let edge: [(&str, Vec<u8>); 8] = [
        ("empty", vec![]),
        ("len_only", 8u64.to_le_bytes().to_vec()),
        ("empty_header", raw("{}", b"")),
        ("padded_header", raw("{}      ", b"")),
        ("null_metadata", raw(r#"{"__metadata__":null}"#, b"")),
        (
            "zero_sized",
            raw(
                r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                &[0, 0, 128, 63],
            ),
        ),
        (
            "sub_byte",
            raw(
                r#"{"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}"#,
                &[0x12],
            ),
        ),
        (
            "huge_len",
            u64::MAX.to_le_bytes().into_iter().chain(*b"{}").collect(),
        ),
    ];
    for (name, bytes) in &edge {
        write(&typed, name, bytes);
        write(&flat, name, bytes);
    }

    let hk = HkCheckpoint {
        params: HkParams {
            mlp: Some(HkMlp {
                linear: vec![HkLinear { w: u8s(), b: Some(u8s()) }],
                inner: Some(HkLinear { w: u8s(), b: None }),
                sub: Some(Box::new(HkMlp { linear: vec![], inner: Some(HkLinear { w: u8s(), b: None }), sub: None })),
            }),
            linear: Some(HkLinear { w: u8s(), b: None }),
            blocks: BTreeMap::from([("res_0".to_owned(), HkLinear { w: u8s(), b: None })]),
            extra: BTreeMap::from([("x/y.z".to_owned(), u8s())]),
        },
        state: Some(BTreeMap::from([(
            "bn".to_owned(),
            BTreeMap::from([("mean_ema".to_owned(), u8s())]),
        )])),
    };
    write(&resolve, "haiku", keys_of(&hk).as_bytes());
    let linear = || ObLinear { w: u8s(), b: Some(u8s()) };
    let ob = ObMlp {
        l1: Some(linear()),
        seq: vec![Some(linear()), None, Some(linear())],
        ml: BTreeMap::from([(1, linear())]),
        named: BTreeMap::from([("head".to_owned(), linear())]),
        stat: Some(u8s()),
        keys: BTreeMap::from([("_key".to_owned(), u8s())]),
        rec: vec![ObMlp {
            l1: None,
            seq: vec![],
            ml: BTreeMap::new(),
            named: BTreeMap::new(),
            stat: Some(u8s()),
            keys: BTreeMap::new(),
            rec: vec![],
        }],
    };
    write(&resolve, "objax", keys_of(&ob).as_bytes());
    let nnx_linear = || NnxLinear { kernel: u8s(), bias: Some(u8s()) };
    let nnx = NnxModel {
        layers: vec![nnx_linear(), nnx_linear()],
        blocks: BTreeMap::from([(2, nnx_linear())]),
        bn: Some(BTreeMap::from([("scale".to_owned(), u8s())])),
        children: vec![NnxModel { layers: vec![nnx_linear()], blocks: BTreeMap::new(), bn: None, children: vec![] }],
    };
    write(&resolve, "nnx", keys_of(&nnx).as_bytes());
    let leafless = || Chain { w: None, next: None, kids: vec![], named: BTreeMap::new(), dense: None };
    let chain = Chain {
        w: Some(u8s()),
        next: Some(Box::new(Chain { w: Some(u8s()), ..leafless() })),
        kids: vec![Chain { w: Some(u8s()), ..leafless() }],
        named: BTreeMap::from([("n".to_owned(), Chain { dense: Some(BTreeMap::from([(0, u8s())])), ..leafless() })]),
        dense: None,
    };
    write(&resolve, "chain", keys_of(&chain).as_bytes());
    write(&resolve, "odd_keys", "\n.\n..\n_0\n[0]\n(MLP)\n::TrainVar\nw/~/\n0.0\na_01\n".as_bytes());
    println!("seeds written under {}", corpus.display());
}
