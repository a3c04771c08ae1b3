use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "flax", class = "Linear")]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct Mlp {
    #[safejax(class = "ModuleList")]
    layers: Vec<Linear>,
}

fn main() {}
