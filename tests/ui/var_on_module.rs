use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax")]
struct Mlp {
    #[safejax(var = "StateVar")]
    l1: Linear,
}

fn main() {}
