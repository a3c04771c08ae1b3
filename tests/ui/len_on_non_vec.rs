use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Dense {
    kernel: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Model {
    // An array has its length already.
    #[safejax(len = 2)]
    fixed: [Dense; 2],
    #[safejax(len = 2)]
    tensor: Tensor<f32>,
    #[safejax(len = 2)]
    module: Dense,
    #[safejax(len = 2)]
    optional: Option<Vec<Dense>>,
}

#[derive(Serialize, Deserialize, Params)]
struct Lengths {
    #[safejax(len = 0)]
    empty: Vec<Dense>,
    #[safejax(len = "2")]
    string: Vec<Dense>,
    #[safejax(len = 2, len = 3)]
    twice: Vec<Dense>,
}

fn main() {}
