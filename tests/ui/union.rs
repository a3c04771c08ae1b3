use safejax::Params;

#[derive(Params)]
union Bits {
    f: f32,
    i: u32,
}

fn main() {}
