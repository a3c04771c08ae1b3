use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = 1)]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = haiku)]
struct Conv {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style)]
struct Norm {
    scale: Tensor<f32>,
}

fn main() {}
