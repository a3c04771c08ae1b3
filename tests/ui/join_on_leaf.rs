use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct Linear {
    #[safejax(join = "/")]
    w: Tensor<f32>,
    #[safejax(join = "/~/")]
    b: Option<Vec<Tensor<f32>>>,
}

fn main() {}
