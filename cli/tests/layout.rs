//! `safejax convert --layout torch|flax` on transformers' Flax models (tests/fixtures/hf_*): the
//! names, shapes and permutations that transformers' own Flax-to-PyTorch rules give (each
//! fixture's `pytorch.json`), the values moved as those permutations say, sharded inputs and
//! outputs, the refusals, `--dry-run --json`, `--reference`, and the way back.

use std::collections::BTreeMap;
use std::path::Path;

use safejax::{DynTensor, Value};
use serde_json::Value as Json;

mod support;
use support::*;

const MODELS: [&str; 6] = ["bert", "gpt2", "llama", "t5", "vit", "resnet"];
/// GPT-2's Conv1D kernels are refused without a decision; transformers' PyTorch GPT-2 (Conv1D,
/// weight [in, out]) wants them transposed.
const GPT2_CONV1D: &str = r"\.c_(attn|proj|fc)\.kernel$=1,0";

fn fixture(model: &str, layout: &str) -> String {
    format!("tests/fixtures/hf_{model}/{layout}")
}

fn pytorch_json(model: &str) -> Json {
    let path = crate_root().join(format!("tests/fixtures/hf_{model}/pytorch.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The layout arguments a model needs.
fn decisions(model: &str) -> Vec<String> {
    if model == "gpt2" {
        vec!["--permute".into(), GPT2_CONV1D.into()]
    } else {
        vec![]
    }
}

/// `convert INPUT OUT --layout torch` with the decisions the model needs, and `extra`.
fn to_torch_args(model: &str, input: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["convert".to_owned(), fixture(model, input), out.display().to_string()];
    args.extend(["--layout".to_owned(), "torch".to_owned()]);
    args.extend(decisions(model));
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Every tensor of a checkpoint (file or directory), flat.
fn load(path: &Path) -> BTreeMap<String, DynTensor> {
    let value: Value = if path.is_dir() {
        safejax::from_dir(path).unwrap()
    } else {
        safejax::from_file(path).unwrap()
    };
    value.leaves().map(|(k, t)| (k, t.clone())).collect()
}

fn shape_of(j: &Json) -> Vec<usize> {
    j.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// The values of `source` permuted by `perm`, the definition (element by element).
fn permuted(source: &DynTensor, perm: &[usize]) -> Vec<f32> {
    let values = source.to_tensor::<f32>().unwrap().into_vec();
    let shape = source.shape();
    let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    (0..values.len())
        .map(|flat| {
            let (mut rem, mut offset) = (flat, 0);
            for k in (0..out_shape.len()).rev() {
                offset += (rem % out_shape[k]) * strides[perm[k]];
                rem /= out_shape[k];
            }
            values[offset]
        })
        .collect()
}

/// The converted tensors are exactly pytorch.json's keys and shapes, each the source's values moved
/// by pytorch.json's permutation.
fn assert_pytorch_layout(model: &str, converted: &BTreeMap<String, DynTensor>) {
    let doc = pytorch_json(model);
    let source = load(&crate_root().join(fixture(model, "safetensors")));
    let keys = doc["keys"].as_object().unwrap();
    let mut expected: Vec<&str> = keys.values().map(|v| v["pytorch"].as_str().unwrap()).collect();
    expected.sort();
    let got: Vec<&str> = converted.keys().map(String::as_str).collect();
    assert_eq!(got, expected, "{model}: keys");
    for (flax, v) in keys {
        let target = v["pytorch"].as_str().unwrap();
        let t = &converted[target];
        assert_eq!(t.shape(), shape_of(&v["shape"]), "{model}: {target}");
        let want = match v["permutation"].as_array() {
            Some(p) => permuted(
                &source[flax],
                &p.iter().map(|a| a.as_u64().unwrap() as usize).collect::<Vec<_>>(),
            ),
            None => source[flax].to_tensor::<f32>().unwrap().into_vec(),
        };
        assert_eq!(
            t.to_tensor::<f32>().unwrap().into_vec(),
            want,
            "{model}: {target} values"
        );
    }
}

#[test]
fn every_model_converts_to_the_names_shapes_and_values_transformers_gives() {
    let dir = scratch("single");
    for model in MODELS {
        let out = dir.join(format!("{model}.safetensors"));
        let text = ok(to_torch_args(model, "safetensors", &out, &[]));
        assert!(text.contains("wrote"), "{text}");
        assert_pytorch_layout(model, &load(&out));
        let meta = safejax::read_metadata(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"), "{model}");
    }
}

#[test]
fn sharded_inputs_give_sharded_outputs() {
    let dir = scratch("sharded");
    for model in MODELS {
        for input in ["safetensors_sharded", "msgpack_sharded"] {
            let out = dir.join(format!("{model}_{input}"));
            ok(to_torch_args(model, input, &out, &["--shard-size", "2KB"]));
            let shards = std::fs::read_dir(&out).unwrap().count();
            assert!(shards > 2, "{model} {input}: {shards} files");
            assert!(out.join("model.safetensors.index.json").is_file());
            assert_pytorch_layout(model, &load(&out));
        }
    }
}

#[test]
fn dry_run_json_reports_the_rules_transformers_applies() {
    for model in MODELS {
        let args = to_torch_args(
            model,
            "safetensors",
            Path::new("unused.safetensors"),
            &["--dry-run", "--json"],
        );
        let doc: Json = serde_json::from_str(&ok(&args)).unwrap();
        assert_eq!(doc["metadata"]["format"], "pt");
        let expected = pytorch_json(model);
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), expected["keys"].as_object().unwrap().len(), "{model}");
        for k in keys {
            let source = k["source"].as_str().unwrap();
            let want = &expected["keys"][source];
            assert_eq!(k["target"], want["pytorch"], "{model}: {source}");
            assert_eq!(k["target_shape"], want["shape"], "{model}: {source}");
            assert_eq!(k["shape"], want["flax_shape"], "{model}: {source}");
            assert_eq!(k["permutation"], want["permutation"], "{model}: {source}");
            // GPT-2's Conv1D kernels were decided by --permute, every other key by the table.
            let rule = if model == "gpt2" && want["rule"] == "linear" && !source.starts_with("lm_head") {
                "permuted"
            } else {
                want["rule"].as_str().unwrap()
            };
            assert_eq!(k["rule"], rule, "{model}: {source}");
        }
        assert!(!crate_root().join("unused.safetensors").exists());
    }
}

#[test]
fn gpt2_conv1d_kernels_are_refused_without_a_decision() {
    let dir = scratch("refused");
    let out = dir.join("gpt2.safetensors");
    let run = safejax([
        "convert",
        &fixture("gpt2", "safetensors"),
        out.to_str().unwrap(),
        "--layout",
        "torch",
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty());
    let err = run.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("8 keys cannot be converted without a decision"), "{err}");
    assert!(
        err.contains("`transformer.h.0.attn.c_attn.kernel` is GPT-2's Conv1D kernel"),
        "{err}"
    );
    assert!(err.contains("`transformer.h.1.mlp.c_fc.kernel`"), "{err}");
    assert!(!out.exists());
    // Kept as stored instead (the layout nn.Linear wants): [out, in] = the Flax kernel itself.
    ok([
        "convert",
        &fixture("gpt2", "safetensors"),
        out.to_str().unwrap(),
        "--layout",
        "torch",
        "--keep",
        r"\.c_(attn|proj|fc)\.kernel$",
    ]);
    let converted = load(&out);
    let source = load(&crate_root().join(fixture("gpt2", "safetensors")));
    assert_eq!(
        converted["transformer.h.0.attn.c_attn.weight"],
        source["transformer.h.0.attn.c_attn.kernel"]
    );
}

#[test]
fn prefix_rename_and_list_names_shape_the_keys() {
    let text = ok([
        "convert",
        &fixture("bert", "safetensors"),
        "x.safetensors",
        "--layout",
        "torch",
        "--prefix",
        "bert",
        "--rename",
        r"\.LayerNorm\.weight$=.LayerNorm.gamma",
        "--dry-run",
    ]);
    assert!(
        text.contains("embeddings.LayerNorm.scale [8] -> bert.embeddings.LayerNorm.gamma [8] (weight)"),
        "{text}"
    );
    assert!(
        text.contains("encoder.layer.0.attention.self.query.kernel [8, 8] -> bert.encoder.layer.0.attention.self.query.weight [8, 8] (linear permute [1, 0])"),
        "{text}"
    );
    // A haiku checkpoint: `/~/` joins and list names.
    let text = ok([
        "convert",
        "tests/fixtures/haiku_mlp.safetensors",
        "x.safetensors",
        "--layout",
        "torch",
        "--list-names",
        "--dry-run",
    ]);
    assert!(text.contains("-> mlp.linear.0.weight"), "{text}");
    assert!(text.contains("-> mlp.linear.0.bias"), "{text}");
}

#[test]
fn a_reference_checks_keys_and_shapes() {
    let dir = scratch("reference");
    let good = dir.join("vit.safetensors");
    ok([
        "convert",
        &fixture("vit", "safetensors"),
        good.to_str().unwrap(),
        "--layout",
        "torch",
    ]);
    // The converted file is its own reference.
    let again = dir.join("again.safetensors");
    ok([
        "convert",
        &fixture("vit", "msgpack"),
        again.to_str().unwrap(),
        "--layout",
        "torch",
        "--reference",
        good.to_str().unwrap(),
    ]);
    // Against the Flax checkpoint, every difference is listed.
    let run = safejax([
        "convert",
        &fixture("vit", "safetensors"),
        dir.join("bad.safetensors").to_str().unwrap(),
        "--layout",
        "torch",
        "--reference",
        &fixture("vit", "safetensors"),
    ]);
    assert_eq!(run.code, 2);
    let err = run.stderr.trim();
    assert!(err.contains("does not match --reference"), "{err}");
    assert!(
        err.contains("19 missing: ") && err.contains("`embeddings.patch_embeddings.projection.kernel`"),
        "{err}"
    );
    assert!(
        err.contains("19 unexpected: ") && err.contains("`encoder.layer.0.layernorm_before.weight`"),
        "{err}"
    );
    assert!(!dir.join("bad.safetensors").exists());
    // A mis-shaped key: a conv kept HWIO.
    let run = safejax([
        "convert",
        &fixture("vit", "safetensors"),
        dir.join("bad.safetensors").to_str().unwrap(),
        "--layout",
        "torch",
        "--keep",
        "projection",
        "--reference",
        good.to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("1 mis-shaped: `embeddings.patch_embeddings.projection.weight` is [4, 4, 3, 8], the reference has [8, 3, 4, 4]"),
        "{}",
        run.stderr
    );
}

#[test]
fn torch_layouts_convert_back_to_the_flax_checkpoint() {
    let dir = scratch("back");
    for model in MODELS {
        let torch = dir.join(format!("{model}_pt.safetensors"));
        ok(to_torch_args(model, "safetensors", &torch, &[]));
        let flax = dir.join(format!("{model}_flax.safetensors"));
        let mut args = vec![
            "convert".to_owned(),
            torch.display().to_string(),
            flax.display().to_string(),
        ];
        args.extend(["--layout", "flax", "--reference"].map(String::from));
        // No decision needed back: GPT-2's transposed Conv1D kernels transpose back.
        args.push(fixture(model, "safetensors"));
        ok(&args);
        assert_eq!(
            load(&flax),
            load(&crate_root().join(fixture(model, "safetensors"))),
            "{model}"
        );
        let meta = safejax::read_metadata(&std::fs::read(&flax).unwrap()).unwrap();
        assert_eq!(meta.get("format").map(String::as_str), Some("flax"));
    }
}
