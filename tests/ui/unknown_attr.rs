use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(stlye = "haiku")]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Mlp {
    #[safejax(joint = "/")]
    linear: Linear,
}

fn main() {}
