//! Writes files for the Python side to check (`scripts/interop.sh` runs both):
//!
//! - `OUT/safetensors/<name>.safetensors`: each fixture made by the real frameworks, loaded into its
//!   typed Rust struct and written back;
//! - `OUT/safetensors/<name>.formula.safetensors`: params built in Rust, each value given by a formula
//!   of its key and index that `scripts/check_rust_files.py` computes again in Python;
//! - `OUT/msgpack/<name>.msgpack`: the flax msgpack fixtures, loaded and written back by Rust, for
//!   `scripts/check_rust_msgpack.py`;
//! - `OUT/hf/bert/{safetensors,safetensors_sharded,msgpack}/`: the tiny `FlaxBertModel` saved by
//!   transformers, loaded by Rust from its sharded msgpack and written back in each layout with its
//!   `config.json`, for `scripts/check_rust_hf.py` (`OUT/hf/<model>/<layout>/`,
//!   `FlaxBertModel.from_pretrained`).
//!
//! Usage: `cargo run --example interop_write -- OUT_DIR`

#[path = "../tests/common/models.rs"]
mod models;

use std::path::{Path, PathBuf};

use models::*;
use safejax::{bf16, Element, Params, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A float tensor whose element `j` is `((j * 31 + len(key)) % 17 + 1) / 16` (positive, so that
/// BatchNorm variances are valid and the models' outputs are numbers).
fn float<T: Element + From<f32>>(key: &str, shape: &[usize]) -> Tensor<T> {
    let n = shape.iter().product::<usize>();
    let data = (0..n)
        .map(|j| T::from((((j * 31 + key.len()) % 17) as f32 + 1.0) / 16.0))
        .collect();
    Tensor::new(shape.to_vec(), data).expect("shape and data agree")
}

fn bf16_tensor(key: &str, shape: &[usize]) -> Tensor<bf16> {
    let f: Tensor<f32> = float(key, shape);
    Tensor::new(
        shape.to_vec(),
        f.as_slice().iter().map(|&v| bf16::from_f32(v)).collect(),
    )
    .expect("same shape")
}

/// An integer leaf's formula: `(j + len(key)) % 5`.
fn int(key: &str, j: usize) -> usize {
    (j + key.len()) % 5
}

fn dense(prefix: &str, kernel: &[usize]) -> Dense<f32> {
    Dense {
        kernel: float(&format!("{prefix}.kernel"), kernel),
        bias: float(&format!("{prefix}.bias"), &kernel[1..]),
    }
}

fn hk_linear(prefix: &str, w: &[usize]) -> HkLinear {
    HkLinear {
        w: float(&format!("{prefix}.w"), w),
        b: float(&format!("{prefix}.b"), &w[1..]),
    }
}

fn obj_linear(prefix: &str, w: &[usize]) -> ObjLinear {
    ObjLinear {
        w: float(&format!("{prefix}.w::TrainVar"), w),
        b: float(&format!("{prefix}.b::TrainVar"), &w[1..]),
    }
}

fn ema(prefix: &str, shape: &[usize]) -> Ema {
    Ema {
        average: float(&format!("{prefix}.average"), shape),
        hidden: float(&format!("{prefix}.hidden"), shape),
        counter: int(&format!("{prefix}.counter"), 0) as i32,
    }
}

fn formula_models(out: &Path) -> safejax::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |name: &str, params: &dyn Fn(&Path) -> safejax::Result<()>| -> safejax::Result<()> {
        let path = out.join(format!("{name}.formula.safetensors"));
        params(&path)?;
        written.push(path);
        Ok(())
    };

    write("flax_cnn", &|p| {
        let cnn = FlaxCnn {
            params: CnnParams {
                conv: Conv {
                    kernel: float("params.Conv_0.kernel", &[3, 3, 1, 4]),
                    bias: float("params.Conv_0.bias", &[4]),
                },
                batch_norm: BatchNormParams {
                    scale: float("params.BatchNorm_0.scale", &[4]),
                    bias: float("params.BatchNorm_0.bias", &[4]),
                },
                head: Dense {
                    kernel: bf16_tensor("params.Dense_0.kernel", &[3, 2]),
                    bias: bf16_tensor("params.Dense_0.bias", &[2]),
                },
                hidden: dense("params.Dense_1", &[64, 3]),
            },
            batch_stats: CnnStats {
                batch_norm: BatchNormStats {
                    mean: float("batch_stats.BatchNorm_0.mean", &[4]),
                    var: float("batch_stats.BatchNorm_0.var", &[4]),
                },
            },
        };
        safejax::to_file(p, &cnn)
    })?;

    write("flax_setup_mlp", &|p| {
        let mlp = SetupMlp {
            layers: vec![dense("layers_0", &[4, 3]), dense("layers_1", &[3, 2])],
            head: dense("head", &[2, 1]),
        };
        safejax::to_file(p, &mlp)
    })?;

    write("nnx_model", &|p| {
        let model = NnxModel {
            layers: vec![dense("layers.0", &[4, 3]), dense("layers.1", &[3, 2])],
            bn: NnxBatchNorm {
                scale: float("bn.scale", &[2]),
                bias: float("bn.bias", &[2]),
                mean: float("bn.mean", &[2]),
                var: float("bn.var", &[2]),
            },
        };
        safejax::to_file(p, &model)
    })?;

    write("haiku_mlp", &|p| {
        let mlp = HaikuMlp {
            mlp: HkMlp {
                linear: vec![
                    hk_linear("mlp/~/linear_0", &[4, 3]),
                    hk_linear("mlp/~/linear_1", &[3, 2]),
                ],
            },
        };
        safejax::to_file(p, &mlp)
    })?;

    write("haiku_nested", &|p| {
        let nested = HaikuNested {
            nested: Nested {
                linear: hk_linear("nested/linear", &[4, 3]),
                inner: hk_linear("nested/inner", &[3, 2]),
            },
        };
        safejax::to_file(p, &nested)
    })?;

    write("haiku_bn_state", &|p| {
        let bn = [1, 1, 1, 4];
        let ckpt = HaikuBnState {
            params: BnParams {
                conv2_d: HkConv {
                    w: float("params.conv2_d.w", &[3, 3, 1, 4]),
                    b: float("params.conv2_d.b", &[4]),
                },
                batch_norm: HkBatchNorm {
                    scale: float("params.batch_norm.scale", &bn),
                    offset: float("params.batch_norm.offset", &bn),
                },
                linear: hk_linear("params.linear", &[64, 2]),
            },
            state: BnState {
                batch_norm: HkBatchNormState {
                    mean_ema: ema("state.batch_norm/~/mean_ema", &bn),
                    var_ema: ema("state.batch_norm/~/var_ema", &bn),
                },
            },
        };
        safejax::to_file(p, &ckpt)
    })?;

    write("objax_mlp", &|p| {
        let bn = [1, 3, 1];
        let key = "(MLP).drop(Dropout).keygen(Generator)._key::RandomState";
        let mlp = ObjaxMlp {
            l1: obj_linear("(MLP).l1(Linear)", &[4, 3]),
            bn: BatchNorm1D {
                beta: float("(MLP).bn(BatchNorm1D).beta::TrainVar", &bn),
                gamma: float("(MLP).bn(BatchNorm1D).gamma::TrainVar", &bn),
                running_mean: float("(MLP).bn(BatchNorm1D).running_mean::StateVar", &bn),
                running_var: float("(MLP).bn(BatchNorm1D).running_var::StateVar", &bn),
            },
            seq: vec![
                Some(obj_linear("(MLP).seq(Sequential)[0](Linear)", &[3, 2])),
                None,
                Some(obj_linear("(MLP).seq(Sequential)[2](Linear)", &[2, 2])),
            ],
            drop: Dropout {
                keygen: Generator {
                    key: Tensor::new(vec![2], vec![int(key, 0) as u32, int(key, 1) as u32])?,
                },
            },
            ml: vec![obj_linear("(MLP).ml(ModuleList)[0](Linear)", &[2, 2])],
        };
        safejax::to_file(p, &mlp)
    })?;
    Ok(written)
}

/// Loads the fixture into its typed struct and writes it back.
fn copy_fixture<T: Serialize + DeserializeOwned + Params>(name: &str, out: &Path) -> safejax::Result<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let params: T = safejax::from_file(fixtures.join(format!("{name}.safetensors")))?;
    let path = out.join(format!("{name}.safetensors"));
    safejax::to_file(&path, &params)?;
    Ok(path)
}

/// Loads a flax msgpack fixture into `T` and writes it back as msgpack.
fn copy_msgpack<T: Serialize + DeserializeOwned + Params>(name: &str, out: &Path) -> safejax::Result<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/msgpack");
    let params: T = safejax::msgpack::from_file(fixtures.join(format!("{name}.msgpack")))?;
    let path = out.join(format!("{name}.msgpack"));
    safejax::msgpack::to_file(&path, &params)?;
    Ok(path)
}

/// The BERT checkpoint, in each layout transformers reads.
fn write_hf(out: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf_bert");
    let bert: FlaxBert = safejax::from_dir(fixtures.join("msgpack_sharded"))?;
    let flax = safejax::Options::new().metadata("format", "flax");
    let mut written = Vec::new();
    for layout in ["safetensors", "safetensors_sharded", "msgpack"] {
        let dir = out.join(layout);
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(fixtures.join("msgpack/config.json"), dir.join("config.json"))?;
        match layout {
            "safetensors" => flax.to_file(dir.join("model.safetensors"), &bert)?,
            "safetensors_sharded" => flax.to_dir(&dir, &bert, 2500)?,
            _ => safejax::msgpack::to_file(dir.join("flax_model.msgpack"), &bert)?,
        }
        written.push(dir);
    }
    Ok(written)
}

/// Every HF fixture converted to the PyTorch layout by `safejax::torch` (GPT-2's Conv1D kernels
/// transposed, as transformers' PyTorch Conv1D wants), one file and sharded, as
/// `scripts/check_rust_hf.py` reads `<model>/pytorch/` and `<model>/pytorch_sharded/`.
fn write_hf_pytorch(out: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let pt = safejax::Options::new().metadata("format", "pt");
    let mut written = Vec::new();
    for model in ["bert", "gpt2", "llama", "t5", "vit", "resnet"] {
        let fixture = fixtures.join(format!("hf_{model}"));
        let value: safejax::Value = safejax::from_dir(fixture.join("msgpack"))?;
        let conv1d = |k: &str| {
            [".c_attn.kernel", ".c_proj.kernel", ".c_fc.kernel"]
                .iter()
                .any(|s| k.ends_with(s))
        };
        let converted = safejax::torch::Mapping::to_torch()
            .permute(conv1d, vec![1, 0])
            .apply(&value)?;
        for layout in ["pytorch", "pytorch_sharded"] {
            let dir = out.join(model).join(layout);
            std::fs::create_dir_all(&dir)?;
            std::fs::copy(fixture.join("msgpack/config.json"), dir.join("config.json"))?;
            match layout {
                "pytorch" => pt.to_file(dir.join("model.safetensors"), &converted.tensors)?,
                _ => pt.to_dir(&dir, &converted.tensors, 2500)?,
            }
            written.push(dir);
        }
    }
    Ok(written)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::args().nth(1).ok_or("usage: interop_write OUT_DIR")?);
    let out = root.join("safetensors");
    let msgpack_out = root.join("msgpack");
    std::fs::create_dir_all(&out)?;
    std::fs::create_dir_all(&msgpack_out)?;
    let mut written = vec![
        copy_fixture::<FlaxCnn>("flax_cnn", &out)?,
        copy_fixture::<SetupMlp>("flax_setup_mlp", &out)?,
        copy_fixture::<NnxModel>("nnx_model", &out)?,
        copy_fixture::<HaikuMlp>("haiku_mlp", &out)?,
        copy_fixture::<HaikuNested>("haiku_nested", &out)?,
        copy_fixture::<HaikuBnState>("haiku_bn_state", &out)?,
        copy_fixture::<HaikuResNet>("haiku_resnet", &out)?,
        copy_fixture::<ObjaxMlp>("objax_mlp", &out)?,
    ];
    written.extend(formula_models(&out)?);
    written.push(copy_msgpack::<FlaxCnn>("flax_cnn", &msgpack_out)?);
    written.push(copy_msgpack::<NnxModel>("nnx_model", &msgpack_out)?);
    written.push(copy_msgpack::<safejax::Value>("chunked", &msgpack_out)?);
    written.extend(write_hf(&root.join("hf/bert"))?);
    written.extend(write_hf_pytorch(&root.join("hf"))?);
    for path in &written {
        println!("wrote {}", path.display());
    }
    Ok(())
}
