use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax")]
struct BatchNorm {
    #[safejax(var = "BatchStats")]
    mean: Tensor<f32>,
}

fn main() {}
