use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

// Serde alone is not enough: the struct's schema comes from `#[derive(Params)]`.
#[derive(Serialize, Deserialize)]
struct Dense {
    kernel: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Model {
    dense: Dense,
}

fn main() {}
