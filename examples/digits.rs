//! Inference in Rust from checkpoints trained in JAX.
//!
//! `scripts/train_digits.py` trained the same small MLP (64 -> 32 relu -> 10) on scikit-learn's
//! digits in flax linen, haiku and objax, saved each with Python safejax 0.5.0, and recorded the
//! held-out test images with each framework's logits and predictions. This loads every checkpoint
//! into typed structs in its framework's key style, runs the forward pass with ndarray, and compares
//! with what JAX computed.
//!
//! Run with `cargo run --release --example digits`.

use std::path::Path;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use safejax::Params;
use serde::{Deserialize, Serialize};

// ---- flax linen: safejax.flax.serialize({"params": params}) ----

/// `params.Dense_0.kernel`, `params.Dense_0.bias`, `params.Dense_1.kernel`, ...
#[derive(Serialize, Deserialize, Params)]
pub struct FlaxVariables {
    pub params: FlaxParams,
}

#[derive(Serialize, Deserialize, Params)]
pub struct FlaxParams {
    #[serde(rename = "Dense_0")]
    pub hidden: FlaxDense,
    #[serde(rename = "Dense_1")]
    pub output: FlaxDense,
}

#[derive(Serialize, Deserialize, Params)]
pub struct FlaxDense {
    #[serde(with = "safejax::ndarray::array")]
    pub kernel: Array2<f32>,
    #[serde(with = "safejax::ndarray::array")]
    pub bias: Array1<f32>,
}

// ---- haiku: safejax.haiku.serialize(params) of hk.nets.MLP([32, 10]) ----

/// `mlp/~/linear_0.w`, `mlp/~/linear_0.b`, `mlp/~/linear_1.w`, ...
#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
pub struct HaikuParams {
    pub mlp: HaikuMlp,
}

#[derive(Serialize, Deserialize, Params)]
pub struct HaikuMlp {
    pub linear: [HaikuLinear; 2],
}

#[derive(Serialize, Deserialize, Params)]
pub struct HaikuLinear {
    #[serde(with = "safejax::ndarray::array")]
    pub w: Array2<f32>,
    #[serde(with = "safejax::ndarray::array")]
    pub b: Array1<f32>,
}

// ---- objax: safejax.objax.serialize(model.vars()) ----

/// `(MLP).layers(Sequential)[0](Linear).w::TrainVar`, ...; index 1 of the `Sequential` is the relu,
/// which holds no variables.
#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "MLP")]
pub struct ObjaxMlp {
    pub layers: Vec<Option<ObjaxLinear>>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(class = "Linear")]
pub struct ObjaxLinear {
    #[serde(with = "safejax::ndarray::array")]
    pub w: Array2<f32>,
    #[serde(with = "safejax::ndarray::array")]
    pub b: Array1<f32>,
}

// ---- the test split, and what each framework computed on it ----

/// `x`, `y`, `flax.logits`, `flax.pred`, `haiku.logits`, ...
#[derive(Serialize, Deserialize, Params)]
pub struct TestSet {
    /// Pixels / 16, one image of 8x8 per row.
    #[serde(with = "safejax::ndarray::array")]
    pub x: Array2<f32>,
    /// The digit each image shows.
    #[serde(with = "safejax::ndarray::array")]
    pub y: Array1<i64>,
    pub flax: Outputs,
    pub haiku: Outputs,
    pub objax: Outputs,
}

#[derive(Serialize, Deserialize, Params)]
pub struct Outputs {
    #[serde(with = "safejax::ndarray::array")]
    pub logits: Array2<f32>,
    #[serde(with = "safejax::ndarray::array")]
    pub pred: Array1<i64>,
}

// ---- the model, in Rust ----

/// One dense layer, whatever its framework calls its weights.
pub struct Dense<'a> {
    pub w: &'a Array2<f32>,
    pub b: &'a Array1<f32>,
}

/// The MLP's forward pass: `x · w + b` per layer, relu between layers.
pub fn forward(x: ArrayView2<'_, f32>, layers: &[Dense<'_>]) -> Array2<f32> {
    let mut h = x.to_owned();
    for (i, layer) in layers.iter().enumerate() {
        h = h.dot(layer.w) + layer.b;
        if i + 1 < layers.len() {
            h.mapv_inplace(|v| v.max(0.0));
        }
    }
    h
}

/// The index of each row's largest value (the first, on ties, as numpy's argmax).
pub fn argmax(logits: ArrayView2<'_, f32>) -> Array1<i64> {
    logits
        .rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as i64
        })
        .collect()
}

/// One framework's checkpoint, run in Rust and compared with JAX.
pub struct Evaluation {
    pub framework: &'static str,
    /// The checkpoint's keys, in the order of the struct's fields.
    pub keys: Vec<String>,
    /// Test images classified correctly by the Rust forward pass.
    pub correct: usize,
    /// Test images classified correctly by the framework itself (its recorded predictions).
    pub framework_correct: usize,
    /// Images where Rust's prediction is the framework's.
    pub agree: usize,
    pub total: usize,
    /// The largest |Rust logit - JAX logit| over the test set.
    pub max_logit_diff: f32,
}

/// The keys that `params` reads and writes, in field order.
fn keys_of<T: Serialize + Params>(params: &T) -> safejax::Result<Vec<String>> {
    let mut keys = Vec::new();
    params.serialize(&mut safejax::Serializer::new::<T>(|leaf| {
        keys.push(leaf.key.to_owned());
        Ok(())
    }))?;
    Ok(keys)
}

fn evaluate(
    framework: &'static str,
    keys: Vec<String>,
    layers: &[Dense<'_>],
    test: &TestSet,
    jax: &Outputs,
) -> safejax::Result<Evaluation> {
    let logits = forward(test.x.view(), layers);
    let pred = argmax(logits.view());
    let count = |a: ArrayView1<'_, i64>, b: ArrayView1<'_, i64>| a.iter().zip(b.iter()).filter(|(a, b)| a == b).count();
    let max_logit_diff = (&logits - &jax.logits).iter().fold(0.0f32, |m, d| m.max(d.abs()));
    Ok(Evaluation {
        framework,
        keys,
        correct: count(pred.view(), test.y.view()),
        framework_correct: count(jax.pred.view(), test.y.view()),
        agree: count(pred.view(), jax.pred.view()),
        total: test.y.len(),
        max_logit_diff,
    })
}

/// Loads the three checkpoints and the test set from `dir` and evaluates each.
pub fn evaluate_all(dir: &Path) -> safejax::Result<Vec<Evaluation>> {
    let test: TestSet = safejax::from_file(dir.join("test.safetensors"))?;

    let flax: FlaxVariables = safejax::from_file(dir.join("flax_mlp.safetensors"))?;
    let p = &flax.params;
    let layers = [
        Dense {
            w: &p.hidden.kernel,
            b: &p.hidden.bias,
        },
        Dense {
            w: &p.output.kernel,
            b: &p.output.bias,
        },
    ];
    let keys = keys_of(&flax)?;
    let mut out = vec![evaluate("flax", keys, &layers, &test, &test.flax)?];

    let haiku: HaikuParams = safejax::from_file(dir.join("haiku_mlp.safetensors"))?;
    let layers = haiku.mlp.linear.each_ref().map(|l| Dense { w: &l.w, b: &l.b });
    out.push(evaluate("haiku", keys_of(&haiku)?, &layers, &test, &test.haiku)?);

    let objax: ObjaxMlp = safejax::from_file(dir.join("objax_mlp.safetensors"))?;
    let layers: Vec<Dense<'_>> = objax
        .layers
        .iter()
        .flatten()
        .map(|l| Dense { w: &l.w, b: &l.b })
        .collect();
    out.push(evaluate("objax", keys_of(&objax)?, &layers, &test, &test.objax)?);
    Ok(out)
}

fn percent(n: usize, total: usize) -> f64 {
    100.0 * n as f64 / total as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digits");
    let evaluations = evaluate_all(&dir)?;
    println!(
        "MLP 64 -> 32 -> 10 trained in JAX on sklearn's digits; {} held-out test images",
        evaluations[0].total
    );
    let mut ok = true;
    for e in &evaluations {
        println!("{:<6} {}, ... ({} tensors)", e.framework, e.keys[0], e.keys.len());
        println!(
            "       accuracy {:.2}% ({}/{}), agreement with {} {:.2}% ({}/{}), max |logit diff| {:.1e}",
            percent(e.correct, e.total),
            e.correct,
            e.total,
            e.framework,
            percent(e.agree, e.total),
            e.agree,
            e.total,
            e.max_logit_diff,
        );
        ok &= e.agree == e.total && e.max_logit_diff <= 1e-4;
    }
    if !ok {
        return Err("Rust's forward pass disagrees with JAX".into());
    }
    Ok(())
}
