//! What the kill tests share (`tests/crash_safe_write.rs` through `examples/overwrite_loop.rs`,
//! and `cli/tests/crash_safe_convert.rs`): the param sets they write, and the count of files an
//! unfinished save left in a checkpoint directory.
// Each includer uses a part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use safejax::Tensor;

/// The params of a checkpoint directory: eight layers.
pub type Layers = BTreeMap<String, Tensor<f32>>;

/// Set `which`: eight layers of `elements` floats, of contents unique to the set, so that any mix
/// of two sets is told apart from both.
pub fn layers(which: usize, elements: usize) -> Layers {
    (0..8)
        .map(|layer| {
            let mut data = vec![which as f32 + layer as f32 / 8.0; elements];
            // A few distinct values along the tensor, so that a torn copy would show.
            for (i, value) in data.iter_mut().enumerate().step_by(4099) {
                *value = (i + which) as f32;
            }
            (
                format!("layer_{layer:02}.kernel"),
                Tensor::new(vec![elements], data).unwrap(),
            )
        })
        .collect()
}

/// How many files of the `stem` layout (`model`, `flax_model`; temporary ones too) in `dir` the
/// committed checkpoint does not list: what an unfinished save left.
pub fn leftovers(dir: &Path, stem: &str, extension: &str) -> usize {
    let index_name = format!("{stem}{extension}.index.json");
    let committed: Vec<String> = match std::fs::read(dir.join(&index_name)) {
        Ok(bytes) => {
            let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let mut names: Vec<String> = index["weight_map"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            names.push(index_name);
            names
        }
        Err(_) => vec![format!("{stem}{extension}")],
    };
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (n.starts_with(stem) || n.starts_with(&format!(".{stem}"))) && !committed.contains(n))
        .count()
}

/// Which of `sets` the checkpoint directory `dir` holds after kill `kill`: it must load, and be
/// one of them exactly, not a mix.
pub fn which_set<'s>(dir: &Path, sets: impl IntoIterator<Item = &'s Layers>, kill: u32) -> usize {
    let loaded: Layers =
        safejax::from_dir(dir).unwrap_or_else(|e| panic!("kill {kill}: the checkpoint does not load: {e}"));
    which_of(&loaded, sets, kill)
}

/// Which of `sets` the params `loaded` after kill `kill` are, exactly, not a mix.
pub fn which_of<'s>(loaded: &Layers, sets: impl IntoIterator<Item = &'s Layers>, kill: u32) -> usize {
    sets.into_iter()
        .position(|set| set == loaded)
        .unwrap_or_else(|| panic!("kill {kill}: the checkpoint is no param set: a mix"))
}
