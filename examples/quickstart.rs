//! Loads a checkpoint that Python safejax wrote from a flax CNN, reads a few values, and writes it
//! back byte for byte.
//!
//! Run with `cargo run --example quickstart`.

use safejax::{bf16, Params, Tensor};
use serde::{Deserialize, Serialize};

/// `CNN().init(...)` in flax: `{"params": ..., "batch_stats": ...}`.
#[derive(Serialize, Deserialize, Params)]
struct Variables {
    params: CnnParams,
    batch_stats: CnnStats,
}

#[derive(Serialize, Deserialize, Params)]
struct CnnParams {
    #[serde(rename = "Conv_0")]
    conv: Dense<f32>,
    #[serde(rename = "BatchNorm_0")]
    batch_norm: BatchNorm,
    /// The output layer, trained in bfloat16.
    #[serde(rename = "Dense_0")]
    head: Dense<bf16>,
    #[serde(rename = "Dense_1")]
    hidden: Dense<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Dense<T: safejax::Element> {
    kernel: Tensor<T>,
    bias: Tensor<T>,
}

#[derive(Serialize, Deserialize, Params)]
struct BatchNorm {
    scale: Tensor<f32>,
    bias: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct CnnStats {
    #[serde(rename = "BatchNorm_0")]
    batch_norm: Stats,
}

#[derive(Serialize, Deserialize, Params)]
struct Stats {
    mean: Tensor<f32>,
    var: Tensor<f32>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flax_cnn.safetensors");
    let variables: Variables = safejax::from_file(path)?;

    let conv = &variables.params.conv.kernel;
    println!("params.Conv_0.kernel: {:?} {}", conv.shape(), conv.dtype());
    let head = &variables.params.head.kernel;
    println!(
        "params.Dense_0.kernel: {:?} {}, first value {}",
        head.shape(),
        head.dtype(),
        head.as_slice()[0]
    );
    println!(
        "batch_stats.BatchNorm_0.var: {:?}",
        variables.batch_stats.batch_norm.var.as_slice()
    );

    let written = safejax::to_bytes(&variables)?;
    let original = std::fs::read(path)?;
    println!(
        "written back: {} bytes, {} the file Python safejax wrote",
        written.len(),
        if written == original {
            "identical to"
        } else {
            "DIFFERENT from"
        }
    );
    Ok(())
}
