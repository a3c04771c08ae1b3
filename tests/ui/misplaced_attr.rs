use safejax::{Params, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
#[safejax(join = "/")]
struct Linear {
    #[safejax(style = "haiku")]
    w: Tensor<f32>,
}

// A newtype's keys are its field's: marks on it would have nothing to mark.
#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct Wrapper(#[safejax(join = "/")] Linear);

#[derive(Serialize, Deserialize, Params)]
struct Skipped {
    w: Tensor<f32>,
    #[serde(skip)]
    #[safejax(var = "StateVar")]
    cache: Vec<f32>,
}

fn main() {}
