use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "jax")]
struct Linear {
    w: Tensor<f32>,
}

fn main() {}
