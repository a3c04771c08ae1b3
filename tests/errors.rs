//! Errors name the full key, and what was expected and found: each test matches the variant and
//! its fields; `display_texts_the_contract_specifies` checks the `Display` text the contract spells.

use std::collections::BTreeMap;

mod common;

use safejax::{bf16, Dtype, Error, Options, Params, Tensor, Value};
use serde::{Deserialize, Serialize};

fn t<T: safejax::Element>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    Tensor::new(shape.to_vec(), data).unwrap()
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Dense<T: safejax::Element> {
    kernel: Tensor<T>,
    bias: Tensor<T>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Variables<T: safejax::Element> {
    params: Model<T>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Model<T: safejax::Element> {
    #[serde(rename = "Dense_0")]
    dense_0: Dense<T>,
}

fn variables_bf16() -> Vec<u8> {
    let dense = Dense {
        kernel: t(&[1, 2], vec![bf16::ONE, bf16::ZERO]),
        bias: t(&[2], vec![bf16::ZERO; 2]),
    };
    safejax::to_bytes(&Variables {
        params: Model { dense_0: dense },
    })
    .unwrap()
}

fn error<T: std::fmt::Debug>(result: Result<T, Error>) -> Error {
    result.expect_err("an error")
}

/// The same error, variant and fields (`Error` holds an `io::Error`, so it has no `PartialEq`; its
/// derived `Debug` spells every field).
#[track_caller]
fn assert_same(a: &Error, b: &Error, context: &str) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{context}");
}

#[test]
fn dtype_mismatch_names_key_expected_and_found() {
    let err = error(safejax::from_bytes::<Variables<f32>>(&variables_bf16()));
    assert!(
        matches!(&err, Error::DtypeMismatch { key, expected: Dtype::F32, found: Dtype::BF16 } if key == "params.Dense_0.kernel"),
        "{err:?}"
    );
}

/// The `Display` texts the contract spells out: the full key as written in the file, and for a
/// mismatch what was expected and what was found; every missing key listed.
#[test]
fn display_texts_the_contract_specifies() {
    let err = error(safejax::from_bytes::<Variables<f32>>(&variables_bf16()));
    assert_eq!(
        err.to_string(),
        "dtype mismatch at `params.Dense_0.kernel`: expected F32, found BF16"
    );
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Other {
        other: Tensor<f32>,
        more: Tensor<f32>,
    }
    let err = error(safejax::from_bytes::<Other>(&variables_bf16()));
    assert_eq!(
        err.to_string(),
        "2 missing keys: `more`, `other`; 2 unknown keys: `params.Dense_0.bias`, `params.Dense_0.kernel`"
    );
    let typo = BTreeMap::from([
        ("kernal".to_owned(), t(&[1], vec![0.0f32])),
        ("bias".to_owned(), t(&[1], vec![0.0f32])),
    ]);
    let err = error(safejax::from_bytes::<Dense<f32>>(&safejax::to_bytes(&typo).unwrap()));
    assert_eq!(
        err.to_string(),
        "1 missing key: `kernel` (did you mean `kernal`?); 1 unknown key: `kernal`"
    );
}

#[test]
fn every_missing_key_is_listed() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Wider {
        params: Model<bf16>,
        batch_stats: Stats,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Stats {
        mean: Tensor<f32>,
        var: Tensor<f32>,
    }
    let err = error(safejax::from_bytes::<Wider>(&variables_bf16()));
    assert!(
        matches!(&err, Error::MissingKeys { keys, hints, .. } if keys == &["batch_stats.mean", "batch_stats.var"] && hints == &[None, None]),
        "{err:?}"
    );
}

#[test]
fn a_missing_key_suggests_the_near_miss_in_the_file() {
    #[derive(Serialize, Params)]
    struct Typo {
        kernal: Tensor<f32>,
        bias: Tensor<f32>,
    }
    let bytes = safejax::to_bytes(&Typo {
        kernal: t(&[1], vec![1.0]),
        bias: t(&[1], vec![0.0]),
    })
    .unwrap();
    let err = error(safejax::from_bytes::<Dense<f32>>(&bytes));
    assert!(
        matches!(&err, Error::MissingKeys { keys, hints, unknown, .. }
            if keys == &["kernel"] && hints == &[Some("kernal".to_owned())] && unknown == &["kernal"]),
        "{err:?}"
    );
}

#[test]
fn unknown_keys_are_an_error_unless_allowed() {
    #[derive(Serialize, Params)]
    struct Extra {
        kernel: Tensor<f32>,
        bias: Tensor<f32>,
        scale: Tensor<f32>,
    }
    let bytes = safejax::to_bytes(&Extra {
        kernel: t(&[1], vec![1.0]),
        bias: t(&[1], vec![0.0]),
        scale: t(&[1], vec![2.0]),
    })
    .unwrap();
    let err = error(safejax::from_bytes::<Dense<f32>>(&bytes));
    assert!(
        matches!(&err, Error::UnknownKeys { keys, hints } if keys == &["scale"] && hints == &[None]),
        "{err:?}"
    );
    let dense: Dense<f32> = Options::new().allow_unknown_keys(true).from_bytes(&bytes).unwrap();
    assert_eq!(dense.kernel.as_slice(), &[1.0]);
}

#[test]
fn a_partly_present_option_names_what_is_missing() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Head {
        proj: Option<Dense<f32>>,
    }
    #[derive(Serialize, Params)]
    struct Half {
        proj: HalfDense,
    }
    #[derive(Serialize, Params)]
    struct HalfDense {
        kernel: Tensor<f32>,
    }
    let bytes = safejax::to_bytes(&Half {
        proj: HalfDense {
            kernel: t(&[1], vec![1.0]),
        },
    })
    .unwrap();
    let err = error(safejax::from_bytes::<Head>(&bytes));
    assert!(
        matches!(&err, Error::PartlyPresent { key, missing } if key == "proj" && missing == &["proj.bias"]),
        "{err:?}"
    );
    let empty = safejax::to_bytes(&BTreeMap::<String, Tensor<f32>>::new()).unwrap();
    assert!(safejax::from_bytes::<Head>(&empty).unwrap().proj.is_none());
}

#[test]
fn scalars_must_be_zero_dimensional() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Counter {
        step: Tensor<i32>,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Scalar {
        step: i32,
    }
    let bytes = safejax::to_bytes(&Counter {
        step: t(&[2], vec![1, 2]),
    })
    .unwrap();
    let err = error(safejax::from_bytes::<Scalar>(&bytes));
    assert!(
        matches!(&err, Error::ShapeMismatch { key, expected, found } if key == "step" && expected == "a scalar (shape [])" && found == &[2]),
        "{err:?}"
    );
}

#[test]
fn conversions_that_do_not_fit_are_errors() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Wide {
        ids: Tensor<i32>,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Narrow {
        ids: Tensor<u8>,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Float {
        ids: Tensor<f32>,
    }
    let bytes = safejax::to_bytes(&Wide {
        ids: t(&[2], vec![7, 300]),
    })
    .unwrap();
    let convert = Options::new().convert_dtypes(true);
    let err = error(convert.from_bytes::<Narrow>(&bytes));
    assert!(
        matches!(&err, Error::Conversion { key, from: Dtype::I32, to: Dtype::U8, reason } if key == "ids" && reason == "element 1 (300) does not fit"),
        "{err:?}"
    );
    let err = error(convert.from_bytes::<Float>(&bytes));
    assert!(
        matches!(&err, Error::DtypeMismatch { key, expected: Dtype::F32, found: Dtype::I32 } if key == "ids"),
        "{err:?}"
    );
    let ok = safejax::to_bytes(&Wide {
        ids: t(&[2], vec![7, 255]),
    })
    .unwrap();
    assert_eq!(convert.from_bytes::<Narrow>(&ok).unwrap().ids.as_slice(), &[7, 255]);
}

#[test]
fn duplicate_keys_are_refused_on_write() {
    #[derive(Serialize, Params)]
    struct Renamed {
        #[serde(rename = "w")]
        a: Tensor<f32>,
        #[serde(rename = "w")]
        b: Tensor<f32>,
    }
    let err = error(safejax::to_bytes(&Renamed {
        a: t(&[1], vec![1.0]),
        b: t(&[1], vec![2.0]),
    }));
    assert!(matches!(&err, Error::DuplicateKey { key } if key == "w"), "{err:?}");

    #[derive(Serialize, Params)]
    struct Collide {
        a: BTreeMap<String, Tensor<f32>>,
        #[serde(rename = "a.b")]
        ab: Tensor<f32>,
    }
    let collide = Collide {
        a: BTreeMap::from([("b".to_owned(), t(&[1], vec![1.0]))]),
        ab: t(&[1], vec![2.0]),
    };
    let err = error(safejax::to_bytes(&collide));
    assert!(matches!(&err, Error::DuplicateKey { key } if key == "a.b"), "{err:?}");
}

#[test]
fn keys_that_cannot_be_written() {
    let empty = BTreeMap::from([(String::new(), t(&[1], vec![1.0f32]))]);
    let err = error(safejax::to_bytes(&empty));
    assert!(
        matches!(&err, Error::InvalidKey { key, reason: "keys cannot be empty" } if key.is_empty()),
        "{err:?}"
    );
    let meta = BTreeMap::from([("__metadata__".to_owned(), t(&[1], vec![1.0f32]))]);
    let err = error(safejax::to_bytes(&meta));
    assert!(
        matches!(&err, Error::InvalidKey { key, reason: "the header reserves this key for metadata" } if key == "__metadata__"),
        "{err:?}"
    );
}

#[test]
fn a_failed_write_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("params.safetensors");
    let good = Dense {
        kernel: t(&[1], vec![1.0f32]),
        bias: t(&[1], vec![0.0]),
    };
    safejax::to_file(&path, &good).unwrap();
    let before = std::fs::read(&path).unwrap();
    let bad = BTreeMap::from([(String::new(), t(&[1], vec![1.0f32]))]);
    assert!(safejax::to_file(&path, &bad).is_err());
    assert!(std::fs::read(&path).unwrap() == before);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}

#[test]
fn truncated_and_malformed_files() {
    let bytes = variables_bf16();
    let err = error(safejax::from_bytes::<Variables<bf16>>(&bytes[..3]));
    assert!(
        matches!(
            err,
            Error::Truncated {
                what: "the header length",
                needed: 8,
                found: 3
            }
        ),
        "{err:?}"
    );
    let cut = &bytes[..bytes.len() - 1];
    assert!(matches!(
        safejax::from_bytes::<Variables<bf16>>(cut),
        Err(Error::Truncated { .. })
    ));
    let mut long = bytes.clone();
    long.push(0);
    let err = error(safejax::from_bytes::<Variables<bf16>>(&long));
    assert!(matches!(err, Error::TrailingBytes { len: 1 }), "{err:?}");
}

#[test]
fn from_file_reads_and_fails_as_from_bytes_does() {
    let bytes = variables_bf16();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.safetensors");
    let mut long = bytes.clone();
    long.push(0);
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cases: Vec<&[u8]> = vec![
        &[],
        &bytes[..3],
        &bytes[..8],
        &bytes[..header_end - 1],
        &bytes[..header_end],
        &bytes[..bytes.len() - 1],
        &long,
    ];
    for case in cases {
        std::fs::write(&path, case).unwrap();
        assert_same(
            &error(safejax::from_file::<Variables<bf16>>(&path)),
            &error(safejax::from_bytes::<Variables<bf16>>(case)),
            &format!("{} bytes", case.len()),
        );
    }
    std::fs::write(&path, &bytes).unwrap();
    let from_file: Variables<bf16> = safejax::from_file(&path).unwrap();
    assert!(safejax::to_bytes(&from_file).unwrap() == bytes);
    // Converted on the way, and the same errors.
    let opts = Options::new().convert_dtypes(true);
    let converted: Variables<f32> = opts.from_file(&path).unwrap();
    assert_eq!(converted.params.dense_0.kernel.as_slice(), &[1.0, 0.0]);
    assert_same(
        &error(safejax::from_file::<Variables<f32>>(&path)),
        &error(safejax::from_bytes::<Variables<f32>>(&bytes)),
        "a dtype mismatch",
    );
}

#[test]
fn every_io_error_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("model.safetensors");
    let not_found = |err: Error, expected: &std::path::Path| {
        let Error::Io {
            path: Some(path),
            source,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(path, expected);
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{err:?}");
        assert_eq!(err.to_string(), format!("`{}`: {source}", expected.display()));
    };
    not_found(safejax::from_file::<Value>(&missing).unwrap_err(), &missing);
    not_found(safejax::msgpack::from_file::<Value>(&missing).unwrap_err(), &missing);
    // SAFETY: the file does not exist; nothing is mapped.
    not_found(unsafe { safejax::MappedFile::open(&missing) }.err().unwrap(), &missing);
    let nowhere = dir.path().join("no/such/dir");
    let value = Value::Dict(BTreeMap::from([(
        "w".to_owned(),
        Value::Tensor(t(&[1], vec![1.0f32]).into()),
    )]));
    not_found(
        safejax::to_file(nowhere.join("x.safetensors"), &value).unwrap_err(),
        &nowhere,
    );
    not_found(
        safejax::msgpack::to_file(nowhere.join("x.msgpack"), &value).unwrap_err(),
        &nowhere,
    );

    let err = safejax::from_dir::<Value>(dir.path()).unwrap_err();
    let Error::NoCheckpoint { path, looked_for } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, &dir.path().display().to_string());
    assert!(looked_for.contains(&"model.safetensors"), "{looked_for:?}");
}

#[test]
fn a_file_in_the_other_format_is_named_as_such() {
    let msgpack = common::fixture_path("msgpack/flax_cnn.msgpack");
    let err = safejax::from_file::<Value>(&msgpack).unwrap_err();
    assert!(
        matches!(&err, Error::WrongFormat { path: Some(p), found: "flax msgpack", expected: "safetensors", instead: "safejax::msgpack::from_file" } if *p == msgpack),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` looks like flax msgpack, not safetensors: read it with `safejax::msgpack::from_file`",
            msgpack.display()
        )
    );
    let bytes = std::fs::read(&msgpack).unwrap();
    let err = safejax::from_bytes::<Value>(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongFormat {
                path: None,
                instead: "safejax::msgpack::from_bytes",
                ..
            }
        ),
        "{err:?}"
    );

    let safetensors = common::fixture_path("flax_cnn.safetensors");
    let err = safejax::msgpack::from_file::<Value>(&safetensors).unwrap_err();
    assert!(
        matches!(&err, Error::WrongFormat { path: Some(p), found: "safetensors", expected: "flax msgpack", instead: "safejax::from_file" } if *p == safetensors),
        "{err:?}"
    );
    let bytes = std::fs::read(&safetensors).unwrap();
    let err = safejax::msgpack::from_bytes::<Value>(&bytes).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongFormat {
                path: None,
                instead: "safejax::from_bytes",
                ..
            }
        ),
        "{err:?}"
    );
    // A corrupt file of the right format is still reported as what is wrong with it.
    let err = safejax::msgpack::from_bytes::<Value>(&[0x81, 0xa1]).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidMsgpack { key, offset: 2, .. } if key.is_empty()),
        "{err:?}"
    );
}

#[test]
fn key_names_the_key_of_the_error() {
    let err = safejax::from_bytes::<Variables<f32>>(&variables_bf16()).unwrap_err();
    assert!(matches!(err, Error::DtypeMismatch { .. }), "{err:?}");
    assert_eq!(err.key(), Some("params.Dense_0.kernel"));

    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Other {
        other: Tensor<f32>,
    }
    let err = safejax::from_bytes::<Other>(&variables_bf16()).unwrap_err();
    assert!(matches!(err, Error::MissingKeys { .. }), "{err:?}");
    assert_eq!(err.key(), Some("other"));

    let err = safejax::from_bytes::<Value>(&variables_bf16()[..3]).unwrap_err();
    assert_eq!(err.key(), None);

    // Through the shard that holds it.
    let dir = tempfile::tempdir().unwrap();
    let value = Value::Dict(BTreeMap::from([
        ("a".to_owned(), Value::Tensor(t(&[4], vec![1.0f32; 4]).into())),
        ("b".to_owned(), Value::Tensor(t(&[4], vec![1.0f32; 4]).into())),
    ]));
    safejax::to_dir(dir.path(), &value, 16).unwrap();
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.windows(5).position(|w| w == b"\"F32\"").unwrap();
    bytes[at + 1..at + 4].copy_from_slice(b"F99");
    std::fs::write(&shard, bytes).unwrap();
    let err = safejax::from_dir::<Value>(dir.path()).unwrap_err();
    let Error::InFile { path, source } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, &shard.display().to_string());
    assert!(matches!(**source, Error::UnknownDtype { .. }), "{source:?}");
    assert_eq!(err.key(), Some("b"));
}

/// Structs that load the T5 checkpoint (tests/fixtures/hf_t5), with one layer struct for every
/// sublayer of both stacks (each holds one of the optional parts).
mod t5 {
    use safejax::{Params, Tensor};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize, Params)]
    #[safejax(style = "nnx")]
    pub struct Checkpoint {
        pub decoder: Stack,
        pub encoder: Stack,
        pub shared: Embed,
    }

    #[derive(Debug, Serialize, Deserialize, Params)]
    pub struct Stack {
        pub block: Vec<Block>,
        pub final_layer_norm: LayerNorm,
    }

    #[derive(Debug, Serialize, Deserialize, Params)]
    pub struct Block {
        pub layer: Vec<Layer>,
    }

    #[derive(Debug, Serialize, Deserialize, Params)]
    pub struct Layer {
        #[serde(rename = "SelfAttention")]
        pub self_attention: Option<Attention>,
        pub layer_norm: LayerNorm,
        #[serde(rename = "EncDecAttention")]
        pub enc_dec_attention: Option<Attention>,
        #[serde(rename = "DenseReluDense")]
        pub dense_relu_dense: Option<DenseReluDense>,
    }

    #[derive(Debug, Serialize, Deserialize, Params)]
    pub struct Attention {
        pub k: DenseNoBias,
        pub o: DenseNoBias,
        pub q: DenseNoBias,
        pub relative_attention_bias: Option<Embed>,
        pub v: DenseNoBias,
    }

    #[derive(Debug, Serialize, Deserialize, Params)]
    pub struct DenseReluDense {
        pub wi: DenseNoBias,
        pub wo: DenseNoBias,
    }

    /// A module of one f32 tensor.
    macro_rules! one_tensor {
        ($name:ident, $field:ident) => {
            #[derive(Debug, Serialize, Deserialize, Params)]
            pub struct $name {
                pub $field: Tensor<f32>,
            }
        };
    }
    one_tensor!(DenseNoBias, kernel);
    one_tensor!(Embed, embedding);
    one_tensor!(LayerNorm, weight);
}

/// GPT-2's file in T5's structs: the 3 keys T5 needs and GPT-2 lacks, and the 28 keys of GPT-2
/// that T5 does not know, in one error.
#[test]
fn missing_and_unknown_keys_are_reported_together() {
    let t5 = common::fixture_path("hf_t5/safetensors/model.safetensors");
    let loaded = safejax::from_file::<t5::Checkpoint>(&t5).unwrap();
    assert_eq!(loaded.decoder.block[0].layer.len(), 3);
    let gpt2 = common::fixture_path("hf_gpt2/safetensors/model.safetensors");
    let err = safejax::from_file::<t5::Checkpoint>(&gpt2).unwrap_err();
    let Error::MissingKeys {
        keys,
        hints,
        unknown,
        unknown_hints,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        keys,
        &[
            "decoder.final_layer_norm.weight",
            "encoder.final_layer_norm.weight",
            "shared.embedding"
        ]
    );
    assert_eq!(hints.len(), keys.len());
    assert_eq!(err.key(), Some("decoder.final_layer_norm.weight"));
    assert_eq!(unknown.len(), 28);
    assert_eq!(unknown_hints.len(), 28);
    assert!(unknown.windows(2).all(|w| w[0] < w[1]), "sorted: {unknown:?}");
    assert_eq!(unknown[0], "transformer.h.0.attn.c_attn.bias");
    assert!(unknown.iter().any(|k| k == "transformer.wte.embedding"));

    // Unknown keys allowed: only what is missing.
    let allowed = Options::new()
        .allow_unknown_keys(true)
        .from_file::<t5::Checkpoint>(&gpt2);
    assert!(
        matches!(&allowed, Err(Error::MissingKeys { keys: k, unknown, .. }) if k == keys && unknown.is_empty()),
        "{allowed:?}"
    );
}

#[test]
fn missing_and_unknown_keys_display_counts_and_the_first_five() {
    let gpt2 = common::fixture_path("hf_gpt2/safetensors/model.safetensors");
    assert_eq!(
        error(safejax::from_file::<t5::Checkpoint>(&gpt2)).to_string(),
        "3 missing keys: `decoder.final_layer_norm.weight`, `encoder.final_layer_norm.weight`, \
         `shared.embedding`; 28 unknown keys: `transformer.h.0.attn.c_attn.bias`, \
         `transformer.h.0.attn.c_attn.kernel`, `transformer.h.0.attn.c_proj.bias`, \
         `transformer.h.0.attn.c_proj.kernel`, `transformer.h.0.ln_1.bias` and 23 more"
    );
}
