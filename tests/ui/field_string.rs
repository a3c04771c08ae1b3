use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Layer {
    w: Tensor<f32>,
    name: String,
}

fn main() {}
