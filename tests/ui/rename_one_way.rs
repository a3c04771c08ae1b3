use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[serde(rename(serialize = "Dense"))]
struct Linear {
    #[serde(rename(serialize = "kernel", deserialize = "w"))]
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[serde(rename_all(serialize = "camelCase", deserialize = "snake_case"))]
struct Norm {
    batch_scale: Tensor<f32>,
}

fn main() {}
