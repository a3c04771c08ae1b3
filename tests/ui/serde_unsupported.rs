use safejax::Params;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Raw {
    w: f32,
}

// serde would write `Raw`'s fields, not these: the derive cannot describe them.
#[derive(Clone, Serialize, Deserialize, Params)]
#[serde(from = "Raw", into = "Raw")]
struct Linear {
    weight: f32,
}

impl From<Raw> for Linear {
    fn from(raw: Raw) -> Self {
        Linear { weight: raw.w }
    }
}

impl From<Linear> for Raw {
    fn from(linear: Linear) -> Self {
        Raw { w: linear.weight }
    }
}

// A tag is a string entry, which a param file cannot hold.
#[derive(Serialize, Deserialize, Params)]
#[serde(tag = "type")]
struct Tagged {
    w: f32,
}

fn main() {}
