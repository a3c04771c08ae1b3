use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
enum Layer {
    Dense { w: Tensor<f32> },
    Conv { kernel: Tensor<f32> },
}

fn main() {}
