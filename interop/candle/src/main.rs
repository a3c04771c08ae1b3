//! Loads checkpoints that `safejax convert --layout torch` wrote from transformers' Flax models
//! (tests/fixtures/hf_*) with candle's own model code, through a `VarBuilder` over the converted
//! safetensors (no renaming here), runs them on the inputs in the fixtures' `expected.json` and
//! compares the outputs with what the Flax models computed (the same file). `scripts/candle_check.sh`
//! converts and runs this.
//!
//! Usage: `safejax-candle-check FIXTURES CONVERTED [TOLERANCE]`, where CONVERTED/<model>/ holds a
//! converted checkpoint (one `model.safetensors`, or shards and their index) per model and layout
//! named on the command line's output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, vit};
use serde_json::Value as Json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A tensor of `expected.json` (`{"dtype", "shape", "values"}`).
fn golden(doc: &Json, group: &str, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let t = &doc[group][name];
    let shape = t["shape"]
        .as_array()
        .ok_or_else(|| format!("expected.json: no {group}.{name}"))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or("a shape of numbers"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let values = t["values"]
        .as_array()
        .ok_or_else(|| format!("expected.json: {group}.{name} has no values"))?
        .iter()
        .map(|v| v.as_f64().ok_or("a number"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((shape, values))
}

fn input_f32(doc: &Json, name: &str) -> Result<Tensor> {
    let (shape, values) = golden(doc, "inputs", name)?;
    let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

fn input_u32(doc: &Json, name: &str) -> Result<Tensor> {
    let (shape, values) = golden(doc, "inputs", name)?;
    let values: Vec<u32> = values.iter().map(|&v| v as u32).collect();
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// The largest absolute difference between `got` and the golden output `name`.
fn max_abs_diff(doc: &Json, name: &str, got: &Tensor) -> Result<f64> {
    let (shape, want) = golden(doc, "outputs", name)?;
    if got.dims() != shape.as_slice() {
        return Err(format!("{name}: candle gave shape {:?}, flax {:?}", got.dims(), shape).into());
    }
    let got: Vec<f32> = got.flatten_all()?.to_vec1()?;
    Ok(got
        .iter()
        .zip(&want)
        .map(|(g, w)| (f64::from(*g) - w).abs())
        // A NaN is a failure, never skipped (f64::max would drop it).
        .fold(0.0, |m, d| if d.is_nan() || m.is_nan() { f64::NAN } else { m.max(d) }))
}

/// A VarBuilder over every `*.safetensors` of a converted checkpoint directory (one file or shards).
fn var_builder(dir: &Path) -> Result<VarBuilder<'static>> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "safetensors") {
            tensors.extend(candle_core::safetensors::load(&path, &Device::Cpu)?);
            files += 1;
        }
    }
    if files == 0 {
        return Err(format!("{}: no safetensors file", dir.display()).into());
    }
    Ok(VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu))
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// candle-transformers' BERT: `last_hidden_state`.
fn bert(fixture: &Path, vb: VarBuilder, doc: &Json) -> Result<f64> {
    let config: bert::Config = serde_json::from_value(read_json(&fixture.join("safetensors/config.json"))?)?;
    let model = bert::BertModel::load(vb, &config)?;
    let ids = input_u32(doc, "input_ids")?;
    let mask = input_u32(doc, "attention_mask")?;
    // The Flax model's default token types: zeros.
    let types = ids.zeros_like()?;
    let out = model.forward(&ids, &types, Some(&mask))?;
    max_abs_diff(doc, "last_hidden_state", &out)
}

/// candle-transformers' ViT embeddings and encoder, and the final LayerNorm of transformers'
/// ViTModel (candle's `vit::Model` adds a classifier head that a base model does not have):
/// `last_hidden_state`.
fn vit(fixture: &Path, vb: VarBuilder, doc: &Json) -> Result<f64> {
    let config: vit::Config = serde_json::from_value(read_json(&fixture.join("safetensors/config.json"))?)?;
    let embeddings = vit::Embeddings::new(&config, false, vb.pp("embeddings"))?;
    let encoder = vit::Encoder::new(&config, vb.pp("encoder"))?;
    let layernorm = candle_nn::layer_norm(config.hidden_size, config.layer_norm_eps, vb.pp("layernorm"))?;
    let pixels = input_f32(doc, "pixel_values")?;
    let hidden = encoder.forward(&embeddings.forward(&pixels, None, false)?)?;
    max_abs_diff(doc, "last_hidden_state", &layernorm.forward(&hidden)?)
}

/// transformers' ResNet (bottleneck layers), built from candle-nn's Conv2d, BatchNorm and Linear
/// under transformers' names: candle-transformers' own `resnet` is timm's (other names, fixed
/// channel counts), so no candle-transformers model loads transformers' ResNet names. The
/// BatchNorm statistics (`running_mean` / `running_var`) and OIHW kernels are read by candle-nn.
mod resnet {
    use candle_core::{Module, ModuleT, Result, Tensor};
    use candle_nn::{
        batch_norm, conv2d_no_bias, linear, BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Linear, VarBuilder,
    };

    /// `ResNetConvLayer`: a convolution without bias (padding `kernel / 2`), a BatchNorm, an
    /// optional ReLU.
    struct ConvLayer {
        padding: usize,
        conv: Conv2d,
        norm: BatchNorm,
        relu: bool,
    }

    impl ConvLayer {
        fn new(vb: VarBuilder, c_in: usize, c_out: usize, kernel: usize, stride: usize, relu: bool) -> Result<Self> {
            // The padding is applied before the convolution: candle-core 0.9.2's CPU conv2d with
            // both padding 1 and stride 2 (a 3x3 kernel on a 4x4 input) gives other values than
            // PyTorch's and numpy's, while padding first and convolving unpadded agrees with them.
            let cfg = Conv2dConfig {
                stride,
                ..Default::default()
            };
            let conv = conv2d_no_bias(c_in, c_out, kernel, cfg, vb.pp("convolution"))?;
            let norm = batch_norm(c_out, BatchNormConfig::default(), vb.pp("normalization"))?;
            Ok(Self {
                padding: kernel / 2,
                conv,
                norm,
                relu,
            })
        }

        fn forward(&self, xs: &Tensor) -> Result<Tensor> {
            let p = self.padding;
            let padded = xs.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
            let ys = self.norm.forward_t(&self.conv.forward(&padded)?, false)?;
            if self.relu {
                ys.relu()
            } else {
                Ok(ys)
            }
        }
    }

    /// `ResNetBottleNeckLayer` (reduction 4, stride on the 3×3 convolution).
    struct Bottleneck {
        shortcut: Option<ConvLayer>,
        layers: [ConvLayer; 3],
    }

    impl Bottleneck {
        fn new(vb: VarBuilder, c_in: usize, c_out: usize, stride: usize) -> Result<Self> {
            let reduced = c_out / 4;
            let shortcut = if c_in != c_out || stride != 1 {
                Some(ConvLayer::new(vb.pp("shortcut"), c_in, c_out, 1, stride, false)?)
            } else {
                None
            };
            let l = vb.pp("layer");
            let layers = [
                ConvLayer::new(l.pp(0), c_in, reduced, 1, 1, true)?,
                ConvLayer::new(l.pp(1), reduced, reduced, 3, stride, true)?,
                ConvLayer::new(l.pp(2), reduced, c_out, 1, 1, false)?,
            ];
            Ok(Self { shortcut, layers })
        }

        fn forward(&self, xs: &Tensor) -> Result<Tensor> {
            let residual = match &self.shortcut {
                Some(s) => s.forward(xs)?,
                None => xs.clone(),
            };
            let mut ys = xs.clone();
            for layer in &self.layers {
                ys = layer.forward(&ys)?;
            }
            (ys + residual)?.relu()
        }
    }

    pub struct Config {
        pub num_channels: usize,
        pub embedding_size: usize,
        pub hidden_sizes: Vec<usize>,
        pub depths: Vec<usize>,
        pub downsample_in_first_stage: bool,
        pub num_labels: usize,
    }

    /// `ResNetForImageClassification`: logits.
    pub struct Model {
        embedder: ConvLayer,
        stages: Vec<Vec<Bottleneck>>,
        classifier: Linear,
    }

    impl Model {
        pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
            let r = vb.pp("resnet");
            let embedder = ConvLayer::new(
                r.pp("embedder.embedder"),
                cfg.num_channels,
                cfg.embedding_size,
                7,
                2,
                true,
            )?;
            let mut stages = Vec::new();
            let mut c_in = cfg.embedding_size;
            for (s, (&c_out, &depth)) in cfg.hidden_sizes.iter().zip(&cfg.depths).enumerate() {
                let stride = if s == 0 && !cfg.downsample_in_first_stage { 1 } else { 2 };
                let vb_s = r.pp("encoder.stages").pp(s).pp("layers");
                let mut layers = Vec::new();
                for d in 0..depth {
                    let (i, st) = if d == 0 { (c_in, stride) } else { (c_out, 1) };
                    layers.push(Bottleneck::new(vb_s.pp(d), i, c_out, st)?);
                }
                stages.push(layers);
                c_in = c_out;
            }
            let classifier = linear(c_in, cfg.num_labels, vb.pp("classifier.1"))?;
            Ok(Self {
                embedder,
                stages,
                classifier,
            })
        }

        pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
            let xs = self.embedder.forward(pixels)?;
            // MaxPool2d(3, stride 2, padding 1): after the ReLU every value is >= 0, so zero
            // padding gives the same maxima as PyTorch's (and flax's) -inf padding.
            let mut xs = xs
                .pad_with_zeros(2, 1, 1)?
                .pad_with_zeros(3, 1, 1)?
                .max_pool2d_with_stride(3, 2)?;
            for stage in &self.stages {
                for layer in stage {
                    xs = layer.forward(&xs)?;
                }
            }
            let pooled = xs.mean_keepdim(3)?.mean_keepdim(2)?.flatten_from(1)?;
            self.classifier.forward(&pooled)
        }
    }
}

fn resnet(fixture: &Path, vb: VarBuilder, doc: &Json) -> Result<f64> {
    let c = read_json(&fixture.join("safetensors/config.json"))?;
    let usizes = |name: &str| -> Result<Vec<usize>> {
        c[name]
            .as_array()
            .ok_or_else(|| format!("config.json: no {name}"))?
            .iter()
            .map(|v| v.as_u64().map(|v| v as usize).ok_or_else(|| "a number".into()))
            .collect()
    };
    if c["layer_type"] != "bottleneck" || c["hidden_act"] != "relu" || c["downsample_in_bottleneck"] != false {
        return Err(
            "config.json: this check builds bottleneck ReLU ResNets, downsampling in the 3x3 convolution".into(),
        );
    }
    let cfg = resnet::Config {
        num_channels: c["num_channels"].as_u64().ok_or("num_channels")? as usize,
        embedding_size: c["embedding_size"].as_u64().ok_or("embedding_size")? as usize,
        hidden_sizes: usizes("hidden_sizes")?,
        depths: usizes("depths")?,
        downsample_in_first_stage: c["downsample_in_first_stage"]
            .as_bool()
            .ok_or("downsample_in_first_stage")?,
        num_labels: c["id2label"].as_object().ok_or("id2label")?.len(),
    };
    let model = resnet::Model::new(vb, &cfg)?;
    let pixels = input_f32(doc, "pixel_values")?;
    max_abs_diff(doc, "logits", &model.forward(&pixels)?)
}

type Check = fn(&Path, VarBuilder, &Json) -> Result<f64>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: safejax-candle-check FIXTURES CONVERTED [TOLERANCE]");
        return ExitCode::from(2);
    }
    let (fixtures, converted) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let tolerance: f64 = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1e-5);
    let checks: [(&str, Check); 3] = [("bert", bert), ("vit", vit), ("resnet", resnet)];
    let (mut passed, mut failed) = (0, 0);
    for (model, check) in checks {
        let fixture = fixtures.join(format!("hf_{model}"));
        let mut outputs: Vec<PathBuf> = match std::fs::read_dir(&converted) {
            Ok(dir) => dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{model}_")))
                })
                .collect(),
            Err(e) => {
                eprintln!("{}: {e}", converted.display());
                return ExitCode::from(2);
            }
        };
        outputs.sort();
        if outputs.is_empty() {
            println!(
                "FAIL {model}: no converted checkpoint {model}_* in {}",
                converted.display()
            );
            failed += 1;
        }
        for out in outputs {
            let name = out.file_name().expect("a name").to_string_lossy().into_owned();
            let result = read_json(&fixture.join("expected.json"))
                .and_then(|doc| var_builder(&out).and_then(|vb| check(&fixture, vb, &doc)));
            match result {
                Ok(diff) if diff <= tolerance => {
                    println!("ok   {name}: max abs difference {diff:.3e} (tolerance {tolerance:e})");
                    passed += 1;
                }
                Ok(diff) => {
                    println!("FAIL {name}: max abs difference {diff:.3e}, more than {tolerance:e}");
                    failed += 1;
                }
                Err(e) => {
                    println!("FAIL {name}: {e}");
                    failed += 1;
                }
            }
        }
    }
    println!("candle: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
