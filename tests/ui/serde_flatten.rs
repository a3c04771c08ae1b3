use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Model {
    #[serde(flatten)]
    linear: Linear,
}

fn main() {}
