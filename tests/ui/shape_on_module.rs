use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Dense {
    kernel: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Mlp {
    #[safejax(shape = [4, 4])]
    layers: Vec<Dense>,
}

fn main() {}
