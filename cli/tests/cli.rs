//! The `safejax` command on the fixtures: `inspect` and `diff` output (exact text, and JSON
//! checked against the files), `convert` round trips, `codegen` output, and errors that end with
//! one line on stderr and a non-zero exit, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safejax::{Dtype, DynTensor};
use serde_json::Value as Json;

mod support;
use support::*;

/// Every fixture the command must handle: files, msgpack files, Hugging Face directories.
fn fixtures() -> Vec<String> {
    let root = crate_root();
    let mut out = Vec::new();
    for (dir, ext) in [("tests/fixtures", "safetensors"), ("tests/fixtures/msgpack", "msgpack")] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == ext) {
                out.push(format!("{dir}/{}", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    for layout in ["msgpack", "msgpack_sharded", "safetensors", "safetensors_sharded"] {
        out.push(format!("tests/fixtures/hf_bert/{layout}"));
    }
    out.sort();
    assert!(out.len() >= 15, "{out:?}");
    out
}

/// Every tensor of a checkpoint, through the library.
fn tensors(path: &str) -> BTreeMap<String, DynTensor> {
    safejax::from_dir(crate_root().join(path)).unwrap()
}

fn json(out: &Output) -> Json {
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn inspect_shows_the_key_tree_by_module() {
    let out = safejax(["inspect", "tests/fixtures/haiku_mlp.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "\
tests/fixtures/haiku_mlp.safetensors
  format:   safetensors
  style:    haiku
  tensors:  4
  params:   23
  size:     92 B of tensor data
  dtypes:   F32 (4 tensors, 23 params)
  metadata: none

KEY            DTYPE  SHAPE   PARAMS  SIZE
mlp                               23  92 B
  /~/linear_0                     15  60 B
    b          F32    [3]          3  12 B
    w          F32    [4, 3]      12  48 B
  /~/linear_1                      8  32 B
    b          F32    [2]          2   8 B
    w          F32    [3, 2]       6  24 B
"
    );
    assert!(out.stderr.is_empty());

    // Chains of single modules fold into one line; --depth cuts the tree.
    let out = safejax(["inspect", "--depth", "1", "tests/fixtures/haiku_bn_state.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with(
            "\
KEY               DTYPE  SHAPE  PARAMS   SIZE
params                             178  712 B
state.batch_norm                    18   72 B
"
        ),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("  dtypes:   F32 (10 tensors, 194 params), I32 (2 tensors, 2 params)\n"));

    // objax keys cut at classes and list elements; the variable type stays with the tensor.
    let out = safejax(["inspect", "tests/fixtures/objax_mlp.safetensors"]);
    for line in [
        "  style:    objax\n",
        "(MLP)                                                    49  196 B\n",
        "  seq(Sequential)                                        14   56 B\n",
        "    [2](Linear)                                           6   24 B\n",
        "      w::TrainVar                  F32    [2, 2]          4   16 B\n",
        "    running_mean::StateVar         F32    [1, 3, 1]       3   12 B\n",
    ] {
        assert!(out.stdout.contains(line), "{line:?} in\n{}", out.stdout);
    }
}

#[test]
fn inspect_json_agrees_with_the_files() {
    for path in fixtures() {
        let report = json(&safejax(["inspect", "--json", &path]));
        let expected = tensors(&path);
        let params: u64 = expected
            .values()
            .map(|t| t.shape().iter().map(|&d| d as u64).product::<u64>())
            .sum();
        let bytes: u64 = expected.values().map(|t| t.as_bytes().len() as u64).sum();
        assert_eq!(report["tensors"], expected.len(), "{path}");
        assert_eq!(report["params"], params, "{path}");
        assert_eq!(report["bytes"], bytes, "{path}");
        assert_eq!(report["tree"]["params"], params, "{path}");
        let keys = report["keys"].as_array().unwrap();
        assert_eq!(keys.len(), expected.len(), "{path}");
        for k in keys {
            let t = &expected[k["key"].as_str().unwrap()];
            assert_eq!(k["dtype"], t.dtype().name(), "{path}");
            assert_eq!(k["shape"], serde_json::json!(t.shape()), "{path}");
        }
        let dtype_total: u64 = report["dtypes"]
            .as_object()
            .unwrap()
            .values()
            .map(|d| d["tensors"].as_u64().unwrap())
            .sum();
        assert_eq!(dtype_total, expected.len() as u64, "{path}");
        // The text form works on every fixture too.
        let text = safejax(["inspect", &path]);
        assert_eq!(text.code, 0, "{path}: {}", text.stderr);
        assert!(
            text.stdout.contains(&format!("  tensors:  {}\n", expected.len())),
            "{path}"
        );
    }

    let cnn = json(&safejax(["inspect", "--json", "tests/fixtures/flax_cnn.safetensors"]));
    assert_eq!(cnn["style"], "flax");
    assert_eq!(cnn["format"], "safetensors");
    assert_eq!(cnn["sharded"], false);
    assert_eq!(cnn["dtypes"]["BF16"]["tensors"], 2);
    let top: Vec<&str> = cnn["tree"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["batch_stats", "params"]);

    let sharded = json(&safejax([
        "inspect",
        "--json",
        "tests/fixtures/hf_bert/safetensors_sharded",
    ]));
    assert_eq!(sharded["sharded"], true);
    assert_eq!(sharded["style"], "nnx");
    assert_eq!(sharded["files"].as_array().unwrap().len(), 4);
    assert_eq!(sharded["metadata"]["format"], "flax");
    let msgpack = json(&safejax([
        "inspect",
        "--json",
        "tests/fixtures/hf_bert/msgpack_sharded",
    ]));
    assert_eq!(
        (&msgpack["format"], &msgpack["sharded"]),
        (&"msgpack".into(), &true.into())
    );
}

/// `nnx_model` with one key gone, one added, one value changed and one dtype changed.
fn altered_nnx(dir: &Path) -> PathBuf {
    let mut t = tensors("tests/fixtures/nnx_model.safetensors");
    t.remove("bn.var");
    t.insert(
        "extra.w".to_owned(),
        DynTensor::new(Dtype::F32, vec![2], [1f32, 2.0].map(f32::to_le_bytes).concat()).unwrap(),
    );
    let mean = t["bn.mean"].clone();
    let mut values: Vec<f32> = mean
        .as_bytes()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    values[1] += 0.25;
    t.insert(
        "bn.mean".to_owned(),
        DynTensor::new(
            Dtype::F32,
            vec![2],
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .unwrap(),
    );
    let bias = t["layers.0.bias"].convert(Dtype::F64).unwrap();
    t.insert("layers.0.bias".to_owned(), bias);
    let path = dir.join("altered.safetensors");
    safejax::Options::new()
        .metadata("note", "altered")
        .to_file(&path, &t)
        .unwrap();
    path
}

#[test]
fn diff_lists_what_differs_and_exits_by_it() {
    let dir = scratch("diff");
    let altered = altered_nnx(&dir);
    let altered = altered.to_str().unwrap();
    let out = safejax(["diff", "tests/fixtures/nnx_model.safetensors", altered]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        format!(
            "\
a: tests/fixtures/nnx_model.safetensors
b: {altered}
only in a (1):
  bn.var  F32 [2]
only in b (1):
  extra.w  F32 [2]
different (2):
  bn.mean  F32 [2], max |a - b| = 0.25
  layers.0.bias  dtype F32 -> F64, max |a - b| = 0
metadata `note`: (none) -> \"altered\" (not compared)
differ: 1 only in a, 1 only in b, 2 different, 5 equal
"
        )
    );

    // Within the tolerance the changed value is equal; the dtype still differs.
    let out = safejax([
        "diff",
        "--tolerance",
        "0.5",
        "--json",
        "tests/fixtures/nnx_model.safetensors",
        altered,
    ]);
    assert_eq!(out.code, 1);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["equal"], false);
    assert_eq!(report["only_in_a"][0]["key"], "bn.var");
    assert_eq!(report["only_in_b"][0]["key"], "extra.w");
    let different = report["different"].as_array().unwrap();
    assert_eq!(different.len(), 1);
    assert_eq!(different[0]["key"], "layers.0.bias");
    assert_eq!(different[0]["b"]["dtype"], "F64");
    assert_eq!(report["equal_count"], 6);
    let max = report["equal_max_abs_diff"].as_f64().unwrap();
    assert!((max - 0.25).abs() < 1e-6, "{max}");

    // A file against itself, and the same params in every format and layout.
    let same = [
        (
            "tests/fixtures/objax_mlp.safetensors",
            "tests/fixtures/objax_mlp.safetensors",
        ),
        (
            "tests/fixtures/flax_cnn.safetensors",
            "tests/fixtures/msgpack/flax_cnn.msgpack",
        ),
        (
            "tests/fixtures/nnx_model.safetensors",
            "tests/fixtures/msgpack/nnx_model.msgpack",
        ),
        (
            "tests/fixtures/hf_bert/msgpack",
            "tests/fixtures/hf_bert/safetensors_sharded",
        ),
        (
            "tests/fixtures/hf_bert/msgpack_sharded/flax_model.msgpack.index.json",
            "tests/fixtures/hf_bert/safetensors/model.safetensors",
        ),
    ];
    for (a, b) in same {
        let out = safejax(["diff", a, b]);
        assert_eq!(out.code, 0, "{a} {b}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.lines().last().unwrap().starts_with("equal: "),
            "{}",
            out.stdout
        );
    }
    let out = safejax([
        "diff",
        "tests/fixtures/flax_cnn.safetensors",
        "tests/fixtures/haiku_mlp.safetensors",
    ]);
    assert_eq!(out.code, 1);
    assert!(out
        .stdout
        .ends_with("differ: 10 only in a, 4 only in b, 0 different, 0 equal\n"));
}

#[test]
fn convert_round_trips_every_fixture() {
    let dir = scratch("convert");
    for path in fixtures() {
        let name = path.replace('/', "_");
        let msgpack = dir.join(format!("{name}.msgpack"));
        let back = dir.join(format!("{name}.safetensors"));
        let shards = dir.join(format!("{name}_shards"));
        let single = dir.join(format!("{name}_single.safetensors"));
        for (from, to, extra) in [
            (PathBuf::from(&path), msgpack.clone(), vec![]),
            (msgpack.clone(), back.clone(), vec![]),
            (
                PathBuf::from(&path),
                shards.clone(),
                vec!["--shard-size", "1KB", "--to", "safetensors"],
            ),
            (shards.clone(), single.clone(), vec![]),
        ] {
            let mut args = vec!["convert".into(), from.into_os_string(), to.clone().into_os_string()];
            args.extend(extra.iter().map(Into::into));
            let out = safejax(&args);
            assert_eq!(out.code, 0, "{path} -> {}: {}", to.display(), out.stderr);
            assert!(
                out.stdout.lines().last().unwrap().starts_with("wrote "),
                "{}",
                out.stdout
            );
        }
        let expected = tensors(&path);
        for converted in [&msgpack, &back, &shards, &single] {
            let got: BTreeMap<String, DynTensor> = safejax::from_dir(converted).unwrap();
            assert!(got == expected, "{path} as {}", converted.display());
            let out = safejax(["diff", path.as_str(), converted.to_str().unwrap()]);
            assert_eq!(out.code, 0, "{path} vs {}: {}", converted.display(), out.stdout);
        }
        // Shards of at most 1 KB (a larger tensor alone), with an index.
        let index: Json = serde_json::from_str(
            &std::fs::read_to_string(shards.join("model.safetensors.index.json")).unwrap_or_else(|_| {
                // Small enough for one file.
                assert!(shards.join("model.safetensors").exists(), "{path}");
                r#"{"weight_map": {}}"#.to_owned()
            }),
        )
        .unwrap();
        let listed = index["weight_map"].as_object().unwrap().len();
        assert!(listed == 0 || listed == expected.len(), "{path}");
        // safetensors made from the original with no casts is the same file, metadata included.
        let original = crate_root().join(&path);
        let original = if original.is_dir() {
            original.join("model.safetensors")
        } else {
            original
        };
        if original.extension().is_some_and(|e| e == "safetensors") && original.exists() {
            assert!(
                std::fs::read(&single).unwrap() == std::fs::read(&original).unwrap(),
                "{path}"
            );
        }
    }
}

#[test]
fn convert_writes_sharded_msgpack_as_transformers_does() {
    let dir = scratch("msgpack_shards");
    let out = safejax([
        "convert",
        "tests/fixtures/hf_bert/safetensors",
        dir.to_str().unwrap(),
        "--to",
        "msgpack",
        "--shard-size",
        "3KB",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // msgpack holds no metadata: the `format` entry of the input is said to be dropped.
    assert!(out.stdout.contains("not written: format"), "{}", out.stdout);
    let index: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("flax_model.msgpack.index.json")).unwrap()).unwrap();
    let weight_map = index["weight_map"].as_object().unwrap();
    assert_eq!(weight_map.len(), 39);
    // Keys by their dict path, as transformers' sharded Flax checkpoints list them.
    let shard = weight_map["encoder/layer/1/attention/self/query/kernel"]
        .as_str()
        .unwrap();
    assert!(
        shard.starts_with("flax_model-0000") && shard.ends_with(".msgpack"),
        "{shard}"
    );
    let shards: std::collections::BTreeSet<&str> = weight_map.values().map(|v| v.as_str().unwrap()).collect();
    assert!(shards.len() > 1, "{shards:?}");
    for shard in &shards {
        assert!(
            std::fs::metadata(dir.join(shard)).unwrap().len() <= 3000 + 1024,
            "{shard}"
        );
    }
    let total: u64 = tensors("tests/fixtures/hf_bert/safetensors")
        .values()
        .map(|t| t.as_bytes().len() as u64)
        .sum();
    assert_eq!(index["metadata"]["total_size"], total);
    let back: BTreeMap<String, DynTensor> = safejax::from_dir(&dir).unwrap();
    assert!(back == tensors("tests/fixtures/hf_bert/safetensors"));

    // Written again with one shard, the stale shards and index go.
    let out = safejax([
        "convert",
        "tests/fixtures/hf_bert/safetensors",
        dir.to_str().unwrap(),
        "--to",
        "msgpack",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["flax_model.msgpack"]);
    assert!(safejax::from_dir::<BTreeMap<String, DynTensor>>(&dir).unwrap() == back);
}

#[test]
fn convert_casts_floats_and_sets_metadata() {
    let dir = scratch("cast");
    let out_path = dir.join("bn.safetensors");
    let out = safejax([
        "convert",
        "tests/fixtures/haiku_bn_state.safetensors",
        out_path.to_str().unwrap(),
        "--dtype",
        "bf16",
        "--metadata",
        "format=flax",
        "--metadata",
        "source=haiku",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("cast 10 tensors F32 -> BF16"), "{}", out.stdout);
    let bytes = std::fs::read(&out_path).unwrap();
    let meta = safejax::read_metadata(&bytes).unwrap();
    assert_eq!(meta["format"], "flax");
    assert_eq!(meta["source"], "haiku");
    let cast: BTreeMap<String, DynTensor> = safejax::from_bytes(&bytes).unwrap();
    for (key, t) in &tensors("tests/fixtures/haiku_bn_state.safetensors") {
        // Floats become bf16; the i32 counters stay.
        let expected = if t.dtype() == Dtype::F32 {
            Dtype::BF16
        } else {
            t.dtype()
        };
        assert_eq!(cast[key].dtype(), expected, "{key}");
        assert_eq!(cast[key].shape(), t.shape(), "{key}");
    }
    // Values within bf16's precision.
    let out = safejax([
        "diff",
        "--json",
        "tests/fixtures/haiku_bn_state.safetensors",
        out_path.to_str().unwrap(),
    ]);
    let report: Json = serde_json::from_str(&out.stdout).unwrap();
    for d in report["different"].as_array().unwrap() {
        assert!(d["max_abs_diff"].as_f64().unwrap() < 0.01, "{d}");
    }

    // Metadata passes through a conversion, unless dropped.
    let copy = dir.join("copy.safetensors");
    assert_eq!(
        safejax(["convert", out_path.to_str().unwrap(), copy.to_str().unwrap()]).code,
        0
    );
    assert_eq!(safejax::read_metadata(&std::fs::read(&copy).unwrap()).unwrap(), meta);
    let dropped = dir.join("dropped.safetensors");
    let out = safejax([
        "convert",
        out_path.to_str().unwrap(),
        dropped.to_str().unwrap(),
        "--drop-metadata",
        "--dtype",
        "f32",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bytes = std::fs::read(&dropped).unwrap();
    assert!(safejax::read_metadata(&bytes).unwrap().is_empty());
    // Back in f32, without metadata, bf16-rounded values aside it is the original layout.
    let back: BTreeMap<String, DynTensor> = safejax::from_bytes(&bytes).unwrap();
    assert!(back.values().all(|t| t.dtype() != Dtype::BF16));

    // msgpack has no metadata: said, not silently lost.
    let mp = dir.join("bn.msgpack");
    let out = safejax(["convert", out_path.to_str().unwrap(), mp.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("msgpack files hold no metadata; not written: format, source"),
        "{}",
        out.stdout
    );

    // An objax file: the u32 random key is not a float and stays.
    let ob = dir.join("objax.safetensors");
    let out = safejax([
        "convert",
        "tests/fixtures/objax_mlp.safetensors",
        ob.to_str().unwrap(),
        "--dtype",
        "f16",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let t: BTreeMap<String, DynTensor> = safejax::from_file(&ob).unwrap();
    assert_eq!(
        t["(MLP).drop(Dropout).keygen(Generator)._key::RandomState"].dtype(),
        Dtype::U32
    );
    assert_eq!(t["(MLP).l1(Linear).w::TrainVar"].dtype(), Dtype::F16);
}

#[test]
fn codegen_prints_structs_for_the_file() {
    let out = safejax(["codegen", "tests/fixtures/haiku_mlp.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        r#"// Generated by `safejax codegen` from "tests/fixtures/haiku_mlp.safetensors" (safetensors, haiku keys, 4 tensors).
// Needs `use safejax::{Params, Tensor};` and `use serde::{Deserialize, Serialize};`.
// Load: `let ckpt: Checkpoint = safejax::from_file("tests/fixtures/haiku_mlp.safetensors")?;`.

#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct Checkpoint {
    pub mlp: Mlp,
}

#[derive(Debug, Serialize, Deserialize, Params)]
pub struct Mlp {
    pub linear: [Linear; 2],
}

#[derive(Debug, Serialize, Deserialize, Params)]
pub struct Linear {
    #[safejax(shape = [_])]
    pub b: Tensor<f32>,
    #[safejax(shape = [_, _])]
    pub w: Tensor<f32>,
}
"#
    );
    // `--vec`: lists as `Vec`, whatever their length.
    let out = safejax(["codegen", "--vec", "tests/fixtures/haiku_mlp.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("    pub linear: Vec<Linear>,\n"), "{}", out.stdout);

    // objax: classes, variable types, a gap in a Sequential, a ModuleList.
    let out = safejax(["codegen", "--root", "Mlp", "tests/fixtures/objax_mlp.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for part in [
        "#[safejax(style = \"objax\", class = \"MLP\")]\npub struct Mlp {\n",
        "    #[safejax(class = \"ModuleList\")]\n    pub ml: [MlLinear; 1],\n",
        "    pub seq: Vec<Option<SeqLinear>>,\n",
        "    #[safejax(var = \"StateVar\", shape = [1, 3, 1])]\n    pub running_mean: Tensor<f32>,\n",
        "    #[serde(rename = \"_key\")]\n    #[safejax(var = \"RandomState\", shape = [2])]\n    pub key: Tensor<u32>,\n",
    ] {
        assert!(out.stdout.contains(part), "{part:?} in\n{}", out.stdout);
    }

    // Borrowed: views with lifetimes threaded through, scalars owned.
    let out = safejax(["codegen", "--borrowed", "tests/fixtures/haiku_bn_state.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for part in [
        "pub struct Checkpoint<'a> {\n    #[serde(borrow)]\n    pub params: CheckpointParams<'a>,\n",
        "pub struct Ema<'a> {\n    #[serde(borrow)]\n    #[safejax(shape = [1, 1, 1, 4])]\n    pub average: TensorView<'a, f32>,\n",
        "    pub counter: i32,\n",
        "let bytes = std::fs::read(\"tests/fixtures/haiku_bn_state.safetensors\")?;",
    ] {
        assert!(out.stdout.contains(part), "{part:?} in\n{}", out.stdout);
    }

    // The README shows this output pasted as is (and compiles it as a doctest): it must not drift.
    let out = safejax(["codegen", "tests/fixtures/objax_mlp.safetensors", "--root", "ObjaxMlp"]);
    let readme = std::fs::read_to_string(crate_root().join("README.md")).unwrap();
    let marker = "// $ safejax codegen tests/fixtures/objax_mlp.safetensors --root ObjaxMlp\n";
    let start = readme.find(marker).expect("the README shows codegen output") + marker.len();
    let pasted = &readme[start..start + readme[start..].find("\nlet file").unwrap()];
    let generated = out.stdout.split_once("\n\n").unwrap().1;
    assert_eq!(pasted, generated);

    // A style forced on keys of another: still structs that read every key.
    let out = safejax(["codegen", "--style", "flax", "tests/fixtures/haiku_mlp.safetensors"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("    #[serde(rename = \"mlp/~/linear\")]\n    pub mlp_linear: [MlpLinear; 2],\n"),
        "{}",
        out.stdout
    );
}

/// `tensors` written to a scratch file named `name`, and its path.
fn scratch_file(name: &str, tensors: impl IntoIterator<Item = (String, Vec<usize>)>) -> PathBuf {
    let tensors: BTreeMap<String, safejax::Tensor<f32>> = tensors
        .into_iter()
        .map(|(key, shape)| {
            let zeros = vec![0.0; shape.iter().product()];
            (key, safejax::Tensor::new(shape, zeros).unwrap())
        })
        .collect();
    let path = scratch(name).join(format!("{name}.safetensors"));
    safejax::to_file(&path, &tensors).unwrap();
    path
}

#[test]
fn codegen_declares_the_length_of_a_list_too_long_for_an_array() {
    // 40 layers of a tiny dense layer: more than serde's arrays hold (32), so a `Vec` with `len`.
    let path = scratch_file(
        "codegen_len",
        (0..40).flat_map(|i| {
            [
                (format!("layers.{i}.kernel"), vec![2, 3]),
                (format!("layers.{i}.bias"), vec![3]),
            ]
        }),
    );
    let out = ok(["codegen".as_ref(), path.as_os_str()]);
    assert!(
        out.contains("    #[safejax(len = 40)]\n    pub layers: Vec<Layer>,\n"),
        "{out}"
    );

    // The field's other marks and `len` share one attribute; `--vec` keeps a `Vec` of any length.
    let path = scratch_file("codegen_len_shape", (0..33).map(|i| (format!("w.{i}"), vec![4])));
    for (args, attr) in [
        (&["codegen"][..], "len = 33, shape = [4]"),
        (&["codegen", "--vec"][..], "shape = [4]"),
    ] {
        let out = ok(args.iter().map(std::ffi::OsStr::new).chain([path.as_os_str()]));
        let field = format!("    #[safejax({attr})]\n    pub w: Vec<Tensor<f32>>,\n");
        assert!(out.contains(&field), "{field:?} in\n{out}");
    }
}

/// Asserts a failure with one line on stderr and no panic.
fn fails(args: &[&str], message: &str) {
    let out = safejax(args);
    assert_ne!(out.code, 0, "{args:?} succeeded");
    assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    assert!(out.stderr.starts_with("safejax: error: "), "{args:?}: {}", out.stderr);
    assert!(
        out.stderr.contains(message),
        "{args:?}: {:?} not in {}",
        message,
        out.stderr
    );
}

#[test]
fn bad_paths_and_files_are_one_line_errors() {
    let dir = scratch("errors");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let garbage = write("garbage.safetensors", b"not a safetensors file at all");
    let empty = write("empty.safetensors", b"");
    let fixture = std::fs::read(crate_root().join("tests/fixtures/flax_cnn.safetensors")).unwrap();
    let truncated = write("truncated.safetensors", &fixture[..fixture.len() - 10]);
    let bad_msgpack = write("bad.msgpack", b"\xc1\xc1\xc1");
    let index_dir = dir.join("bad_index");
    std::fs::create_dir_all(&index_dir).unwrap();
    std::fs::write(index_dir.join("model.safetensors.index.json"), "{ not json").unwrap();
    let escape_dir = dir.join("escape");
    std::fs::create_dir_all(&escape_dir).unwrap();
    std::fs::write(
        escape_dir.join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 1}, "weight_map": {"a": "../outside.safetensors"}}"#,
    )
    .unwrap();
    let missing_shard = dir.join("missing_shard");
    std::fs::create_dir_all(&missing_shard).unwrap();
    std::fs::write(
        missing_shard.join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 1}, "weight_map": {"a": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let empty_dir = scratch("errors_empty_dir");
    let d = |p: &PathBuf| p.to_str().unwrap().to_owned();

    for command in ["inspect", "codegen"] {
        fails(&[command, "no/such/file.safetensors"], "no/such/file.safetensors");
        fails(&[command, &garbage], "header");
        fails(&[command, &empty], "truncated");
        fails(&[command, &truncated], "truncated");
        fails(&[command, &bad_msgpack], "msgpack");
        fails(&[command, &d(&index_dir)], "not a shard index");
        fails(&[command, &d(&escape_dir)], "not a `.safetensors` file beside it");
        fails(&[command, &d(&missing_shard)], "model-00001-of-00002.safetensors");
        fails(
            &[command, &d(&empty_dir)],
            "no checkpoint: none of `model.safetensors.index.json`",
        );
    }
    let ok = "tests/fixtures/haiku_mlp.safetensors";
    fails(&["diff", ok, &garbage], "header");
    fails(&["diff", "no/such/dir", ok], "no/such/dir");
    fails(&["convert", &truncated, &d(&dir.join("out.safetensors"))], "truncated");
    fails(
        &["convert", ok, &d(&dir.join("out.bin"))],
        "cannot tell the output format",
    );
    fails(
        &["convert", ok, &d(&dir.join("out.msgpack")), "--to", "safetensors"],
        "the extension says msgpack",
    );
    fails(
        &["convert", ok, &d(&dir.join("no/such/dir/out.safetensors"))],
        "out.safetensors",
    );
    fails(&["codegen", ok, "--root", "Self"], "--root `Self`");
    fails(&["codegen", ok, "--root", "my-model"], "--root `my-model`");
    // Nothing was left behind by the failed conversions.
    assert!(!dir.join("out.safetensors").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Usage errors are clap's (exit 2), not panics.
    for args in [
        &["convert", ok, "x.safetensors", "--shard-size", "5 parsecs"][..],
        &["diff", ok, ok, "--tolerance", "-1"],
        &["inspect"],
        &["codegen", ok, "--style", "pytorch"],
    ] {
        let out = safejax(args);
        assert_eq!(out.code, 2, "{args:?}");
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with("error: "), "{args:?}: {}", out.stderr);
    }
}

/// A flax msgpack source converted to safetensors gets `format: flax` (transformers refuses a Flax
/// safetensors file without it), and the output says so; a `format` given wins, without the note.
#[test]
fn convert_from_msgpack_writes_the_implied_flax_format() {
    let dir = scratch("implied_format");
    let src = crate_root().join("tests/fixtures/hf_bert/msgpack/flax_model.msgpack");
    let out_path = dir.join("model.safetensors");
    let out = safejax(["convert".as_ref(), src.as_os_str(), out_path.as_os_str()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("format=flax"), "{}", out.stdout);
    let meta = safejax::read_metadata(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("flax"));

    let pt_path = dir.join("pt.safetensors");
    let out = safejax([
        "convert".as_ref(),
        src.as_os_str(),
        pt_path.as_os_str(),
        "--metadata".as_ref(),
        "format=pt".as_ref(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("implies"), "{}", out.stdout);
    let meta = safejax::read_metadata(&std::fs::read(&pt_path).unwrap()).unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
}

#[test]
fn orbax_directories_are_checkpoints_for_every_command() {
    // An item directory: inspect names the format and every leaf of the sidecar.
    let out = safejax(["inspect", "--json", "tests/fixtures/orbax/flax_cnn"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: Json = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["format"], "orbax", "{json}");
    // A CheckpointManager root opens at its latest finished step.
    let out = safejax(["inspect", "tests/fixtures/orbax/manager"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // convert to safetensors, then diff against the Orbax source: the same tensors.
    let dir = scratch("orbax");
    let file = dir.join("flax_cnn.safetensors");
    let out = safejax(["convert", "tests/fixtures/orbax/flax_cnn", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = safejax(["diff", "tests/fixtures/orbax/flax_cnn", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("equal: 10 tensors"), "{}", out.stdout);
    // The converted file loads as the tree Orbax stored.
    let orbax: BTreeMap<String, DynTensor> =
        safejax::orbax::from_dir(crate_root().join("tests/fixtures/orbax/flax_cnn")).unwrap();
    let converted: BTreeMap<String, DynTensor> = safejax::from_file(&file).unwrap();
    assert_eq!(converted.len(), 10);
    assert!(converted == orbax);
    // A directory that is no checkpoint of any kind names both failures.
    let empty = scratch("orbax_empty");
    let out = safejax(["inspect", empty.to_str().unwrap()]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("nor is it an Orbax checkpoint"), "{}", out.stderr);
}

/// `safejax convert FROM TO --to orbax`.
fn convert_to_orbax(from: impl AsRef<Path>, to: &Path) -> Output {
    let from = from.as_ref().to_str().unwrap();
    safejax(["convert", from, to.to_str().unwrap(), "--to", "orbax"])
}

#[test]
fn convert_writes_orbax_checkpoints() {
    let dir = scratch("to_orbax");
    let fixture = "tests/fixtures/orbax/flax_cnn";
    let orbax: BTreeMap<String, DynTensor> = safejax::orbax::from_dir(crate_root().join(fixture)).unwrap();
    // Orbax to safetensors and back to Orbax: the same tensors, byte for byte, and diff agrees.
    let file = dir.join("flax_cnn.safetensors");
    ok(["convert", fixture, file.to_str().unwrap()]);
    let back = dir.join("flax_cnn_orbax");
    let out = convert_to_orbax(&file, &back);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("10 tensors"), "{}", out.stdout);
    assert!(out.stdout.contains("in orbax"), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "no metadata, nothing dropped: {}", out.stderr);
    assert!(back.join("_METADATA").is_file() && back.join("manifest.ocdbt").is_file());
    let written: BTreeMap<String, DynTensor> = safejax::orbax::from_dir(&back).unwrap();
    assert!(written == orbax);
    let out = safejax(["diff", fixture, back.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("equal: 10 tensors"), "{}", out.stdout);

    // Safetensors fixtures (flax's dotted keys, haiku's module names) to Orbax: the same tensors.
    for name in ["flax_cnn", "haiku_mlp"] {
        let source = format!("tests/fixtures/{name}.safetensors");
        let out_dir = dir.join(name);
        assert_eq!(convert_to_orbax(&source, &out_dir).code, 0, "{name}");
        let written: BTreeMap<String, DynTensor> = safejax::orbax::from_dir(&out_dir).unwrap();
        assert!(written == tensors(&source), "{name}");
        // Converting again replaces the Orbax checkpoint whole.
        assert_eq!(convert_to_orbax(fixture, &out_dir).code, 0, "{name} again");
        let written: BTreeMap<String, DynTensor> = safejax::orbax::from_dir(&out_dir).unwrap();
        assert!(written == orbax, "{name} replaced");
    }

    // A safetensors file's metadata has no place in Orbax: said on stderr, not silently lost.
    let source = "tests/fixtures/flax_cnn.safetensors";
    let with_metadata = dir.join("with_metadata.safetensors");
    ok([
        "convert",
        source,
        with_metadata.to_str().unwrap(),
        "--metadata",
        "source=test",
    ]);
    let out = convert_to_orbax(&with_metadata, &dir.join("from_metadata"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let note = "safejax: note: Orbax checkpoints have no place for safetensors metadata; not written: source";
    assert!(out.stderr.contains(note), "{}", out.stderr);

    // A flax msgpack file has no metadata to drop (the `format: flax` a safetensors twin gets is
    // not Orbax's).
    let out = convert_to_orbax("tests/fixtures/msgpack/flax_cnn.msgpack", &dir.join("from_msgpack"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let written: BTreeMap<String, DynTensor> = safejax::orbax::from_dir(dir.join("from_msgpack")).unwrap();
    assert!(written == tensors("tests/fixtures/msgpack/flax_cnn.msgpack"));

    // What convert refuses: a directory of other files (it would be replaced whole), a file, shards.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let refusals = [
        (
            other.to_str().unwrap(),
            None,
            "not an Orbax checkpoint item (no _METADATA)",
        ),
        (
            with_metadata.to_str().unwrap(),
            None,
            "is a file; --to orbax writes a checkpoint directory",
        ),
        ("sharded", Some("1MB"), "an Orbax checkpoint has no shards"),
    ];
    for (out, shard_size, message) in refusals {
        let mut args = vec!["convert", source, out, "--to", "orbax"];
        args.extend(shard_size.map(|size| ["--shard-size", size]).into_iter().flatten());
        fails(&args, message);
    }
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "keep me");

    // For scripts/check_rust_orbax.py (scripts/interop.sh): Orbax restores the CLI's checkpoint
    // as the tree of the fixture's sidecar.
    if let Some(orbax_out) = std::env::var_os("SAFEJAX_ORBAX_OUT") {
        let orbax_out = PathBuf::from(orbax_out);
        let out = convert_to_orbax(&file, &orbax_out.join("cli_flax_cnn"));
        assert_eq!(out.code, 0, "{}", out.stderr);
        let sidecar = crate_root().join("tests/fixtures/orbax/flax_cnn.json");
        std::fs::copy(sidecar, orbax_out.join("cli_flax_cnn.json")).unwrap();
    }
}
