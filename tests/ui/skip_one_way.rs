use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
    #[serde(skip_serializing)]
    step: i32,
    #[serde(skip_deserializing)]
    seed: u32,
}

fn main() {}
