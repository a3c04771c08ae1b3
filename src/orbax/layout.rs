//! Finding the item directory (the one holding `_METADATA`) from what a user points at: the item
//! itself, a step directory (its one tree item, or one chosen by name), or a `CheckpointManager`
//! root (its latest finished step).

use super::invalid;
use super::source::Source;
use crate::Result;

const METADATA: &str = "_METADATA";
/// Orbax writes a save into `<name>.orbax-checkpoint-tmp[-<timestamp>]` and renames it when done:
/// such directories are unfinished saves.
const TMP_MARK: &str = ".orbax-checkpoint-tmp";

fn has_file(source: &dyn Source, dir: &str, name: &str) -> Result<bool> {
    Ok(source.list(dir)?.iter().any(|e| !e.is_dir && e.name == name))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// A directory as errors name it: the checkpoint's own is `.`.
fn shown(dir: &str) -> &str {
    if dir.is_empty() {
        "."
    } else {
        dir
    }
}

/// The step number of a step directory's name: `1000`, or `<prefix>_1000` (`step_prefix`).
fn step_number(name: &str) -> Option<u64> {
    if name.contains(TMP_MARK) {
        return None;
    }
    let digits = name.rsplit_once('_').map_or(name, |(_, d)| d);
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The item directory, as a prefix (`""` or ending with `/`) relative to the source's root.
pub(crate) fn find_item(source: &dyn Source, item: Option<&str>) -> Result<String> {
    if has_file(source, "", METADATA)? {
        return Ok(String::new());
    }
    if let Some(found) = item_of_step(source, "", item)? {
        return Ok(found);
    }
    let latest = source
        .list("")?
        .into_iter()
        .filter(|e| e.is_dir)
        .filter_map(|e| step_number(&e.name).map(|n| (n, e.name)))
        .max();
    let Some((_, step)) = latest else {
        return Err(invalid(
            ".",
            "not an Orbax checkpoint: no _METADATA, no item directory holding one, and no step directory",
        ));
    };
    item_of_step(source, &step, item)?.ok_or_else(|| invalid(&step, "the latest step holds no item with a _METADATA"))
}

/// In step directory `dir`: the item named `item`, or its only tree item; `None` if `dir` has no
/// item at all.
fn item_of_step(source: &dyn Source, dir: &str, item: Option<&str>) -> Result<Option<String>> {
    let mut items = Vec::new();
    for entry in source.list(dir)? {
        if entry.is_dir && !entry.name.contains(TMP_MARK) && has_file(source, &join(dir, &entry.name), METADATA)? {
            items.push(entry.name);
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    let chosen = match item {
        Some(name) => items.iter().find(|i| *i == name).ok_or_else(|| {
            invalid(
                shown(dir),
                format_args!("no item `{name}`; the step holds {}", items.join(", ")),
            )
        })?,
        None if items.len() == 1 => &items[0],
        None => {
            return Err(invalid(
                shown(dir),
                format_args!(
                    "a step of several items ({}): choose one with `Reader::item`",
                    items.join(", ")
                ),
            ))
        }
    };
    Ok(Some(format!("{}/", join(dir, chosen))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names() {
        assert_eq!(step_number("1000"), Some(1000));
        assert_eq!(step_number("checkpoint_7"), Some(7));
        assert_eq!(step_number("4.orbax-checkpoint-tmp"), None);
        assert_eq!(step_number("4.orbax-checkpoint-tmp-1234"), None);
        assert_eq!(step_number("default"), None);
    }
}
