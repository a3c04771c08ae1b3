use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "")]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "objax.nn.Linear")]
struct Conv {
    w: Tensor<f32>,
    #[safejax(class = "Module List")]
    layers: Vec<Linear>,
}

fn main() {}
