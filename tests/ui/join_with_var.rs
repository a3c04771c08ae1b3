use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
}

// No style of its own: either mark could apply, but not both.
#[derive(Serialize, Deserialize, Params)]
struct Block {
    #[safejax(join = "/", var = "StateVar")]
    gate: Linear,
    #[safejax(join = "/")]
    #[safejax(class = "ModuleList")]
    layers: Vec<Linear>,
}

fn main() {}
