use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
#[safejax(style = "haiku")]
struct Linear {
    w: Tensor<f32>,
}

#[derive(Serialize, Deserialize, Params)]
struct Mlp {
    // A duplicate is reported even when the first value is refused.
    #[safejax(join = "~", join = "/")]
    linear: Linear,
}

fn main() {}
