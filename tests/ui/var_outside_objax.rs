use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct BatchNorm {
    #[safejax(var = "StateVar")]
    mean: Tensor<f32>,
}

fn main() {}
