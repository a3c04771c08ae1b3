use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Dense {
    // Each bad dimension is reported on its own token.
    #[safejax(shape = [192, "d_model", -1, a::b])]
    kernel: Tensor<f32>,
    #[safejax(shape = "192, 64")]
    bias: Tensor<f32>,
    #[safejax(shape)]
    scale: Tensor<f32>,
}

fn main() {}
