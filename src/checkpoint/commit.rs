//! The multi-file commit: a save that is killed at any moment leaves a reader the complete old
//! checkpoint or the complete new one, and the next save removes what a killed one left.
//!
//! The rules, for one format's layout in a directory (readers prefer the index to the one file):
//! 1. New files never take a name the committed checkpoint uses (the names its index lists, or
//!    the one file when there is no index); [`begin`] picks tagged shard names when the plain ones
//!    are taken. The one file is the exception: it is replaced by a rename, atomically.
//! 2. The new files are written completely and durably (temporary file, fsync, rename, fsync of
//!    the directory) before the commit.
//! 3. The commit is one atomic step ([`finish`]): shards are committed by putting the index
//!    (atomic), the one file by removing the index (which makes readers fall back to it). A
//!    killed save before this step leaves the old index, or no index and the old file, in force.
//! 4. Only then are the files of the earlier save removed, and temporary files of killed saves.
//!    Files of other formats and unrelated files (`config.json`) are left alone.
//!
//! A checkpoint that is a directory of its own (Orbax's) is committed whole instead
//! ([`commit_dir`]): written into a temporary directory beside it, then swapped into place.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

use super::index::Index;
use super::layout::Format;
use super::store::{exchange, sync_dir, Store};
use crate::error::IoAt;
use crate::{Error, Result};

/// Which shard each tensor (of byte sizes `lens`, in visit order) goes to, and the number of
/// shards: greedy, in visit order, as transformers fills shards, except that a tensor larger than
/// `max_shard_bytes` gets a shard of its own rather than an empty shard before it.
pub(crate) fn assign_shards(lens: impl IntoIterator<Item = u64>, max_shard_bytes: u64) -> (Vec<usize>, usize) {
    let mut shard_of = Vec::new();
    let (mut shards, mut current) = (0usize, 0u64);
    for len in lens {
        if shards == 0 || (current > 0 && current.saturating_add(len) > max_shard_bytes) {
            shards += 1;
            current = 0;
        }
        current += len;
        shard_of.push(shards - 1);
    }
    (shard_of, shards.max(1))
}

/// A save under way: the names its files take, and what it replaces.
pub(crate) struct Begun {
    pub format: Format,
    /// The files to write: the one file, or the shards in order.
    pub names: Vec<String>,
    /// Whether the directory had this format's index when the save began.
    had_index: bool,
}

/// Starts a save of `shards` files of `format`: reads what is committed now and picks names that
/// do not overwrite it.
pub(crate) async fn begin<S: Store>(store: &S, format: Format, shards: usize) -> Result<Begun> {
    let listing: BTreeSet<String> = store.list().await?.into_iter().collect();
    let had_index = listing.contains(format.index());
    if shards <= 1 {
        return Ok(Begun {
            format,
            names: vec![format.single().to_owned()],
            had_index,
        });
    }
    let mut committed = BTreeSet::new();
    if had_index {
        if let Some(bytes) = store.read(format.index()).await? {
            // An index that does not parse commits nothing that could be read.
            if let Ok(index) = Index::parse(&bytes, format.index()) {
                committed.extend(index.weight_map.into_values());
            }
        }
    }
    let plain: Vec<String> = (1..=shards).map(|n| format.shard_name(n, shards, None)).collect();
    let names = if plain.iter().any(|n| committed.contains(n)) {
        tagged(format, shards, &listing)
    } else {
        plain
    };
    Ok(Begun {
        format,
        names,
        had_index,
    })
}

/// Shard names with a tag that no file in the directory has.
fn tagged(format: Format, shards: usize, listing: &BTreeSet<String>) -> Vec<String> {
    let state = std::collections::hash_map::RandomState::new();
    for attempt in 0u64.. {
        let mut hasher = state.build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        let tag = format!("{:08x}", hasher.finish() as u32);
        let names: Vec<String> = (1..=shards).map(|n| format.shard_name(n, shards, Some(&tag))).collect();
        if names.iter().all(|n| !listing.contains(n)) {
            return names;
        }
    }
    unreachable!("some tag is free")
}

/// Commits a save whose files are all written ([`commit`]), then removes what it replaced
/// ([`clean`]).
pub(crate) async fn finish<S: Store>(store: &S, begun: &Begun, index: Option<&Index>) -> Result<()> {
    commit(store, begun, index).await?;
    clean(store, begun, index).await
}

/// The commit point: puts `index` (shards), or removes the old index (one file), so that readers
/// see the new save.
pub(crate) async fn commit<S: Store>(store: &S, begun: &Begun, index: Option<&Index>) -> Result<()> {
    let format = begun.format;
    match index {
        Some(index) => store.put(format.index(), index.to_json()?.into_bytes()).await,
        None if begun.had_index => {
            store.remove(format.index()).await?;
            store.sync().await
        }
        None => Ok(()),
    }
}

/// After the commit: removes the files of the earlier save and the temporary files of killed
/// saves, nothing else.
pub(crate) async fn clean<S: Store>(store: &S, begun: &Begun, index: Option<&Index>) -> Result<()> {
    let format = begun.format;
    let keep: BTreeSet<&str> = begun.names.iter().map(String::as_str).collect();
    let mut removed = false;
    for name in store.list().await? {
        let ours = format.owns(&name) && !keep.contains(name.as_str()) && !(index.is_some() && name == format.index());
        if ours || format.is_temporary(&name) {
            store.remove(&name).await?;
            removed = true;
        }
    }
    if removed {
        store.sync().await?;
    }
    Ok(())
}

/// Writes the directory `target` whole: `fill` writes every file of the new one, durably (see
/// [`write_synced`](super::store::write_synced)), into the empty temporary directory
/// `<target><temporary_mark>` beside it, which is then synced and moved into place. An existing
/// `target` is swapped out in one step ([`exchange`]) and then removed, so that a reader, or a
/// crash, sees the old directory or the new one whole. A temporary directory that a killed write
/// left under the same name is removed first; a failed write removes its own and leaves `target`
/// as it was.
pub(crate) fn commit_dir(target: &Path, temporary_mark: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = target.file_name().ok_or_else(|| {
        Error::io(
            target,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no directory name to write"),
        )
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(temporary_mark);
    let tmp: PathBuf = target.with_file_name(tmp_name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).at(&tmp)?;
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).at(parent)?;
    std::fs::create_dir(&tmp).at(&tmp)?;
    let written = fill(&tmp)
        .and_then(|()| sync_dir(&tmp))
        .and_then(|()| swap_in(&tmp, target));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    sync_dir(parent)
}

/// Moves the finished `tmp` to `target`, swapping out and removing what was there.
fn swap_in(tmp: &Path, target: &Path) -> Result<()> {
    if !target.exists() {
        return std::fs::rename(tmp, target).at(target);
    }
    exchange(tmp, target)?;
    // `tmp` now holds the old directory.
    std::fs::remove_dir_all(tmp).at(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many entries `dir` has.
    fn entries(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn a_directory_is_committed_whole_and_a_failed_write_leaves_the_old_one() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("ckpt");
        let write = |text: &'static str| {
            move |dir: &Path| super::super::store::write_synced(&dir.join("data"), text.as_bytes())
        };
        commit_dir(&target, ".tmp", write("old")).unwrap();
        // What a killed write left under the temporary name is removed by the next write.
        std::fs::create_dir(root.path().join("ckpt.tmp")).unwrap();
        std::fs::write(root.path().join("ckpt.tmp/data"), "torn").unwrap();
        let failed = commit_dir(&target, ".tmp", |dir| {
            write("half")(dir)?;
            Err(Error::msg("the writer failed"))
        });
        assert!(matches!(failed, Err(Error::Message { .. })), "{failed:?}");
        assert_eq!(std::fs::read_to_string(target.join("data")).unwrap(), "old");
        assert_eq!(entries(root.path()), 1, "only ckpt");
        // An existing directory is replaced whole: none of its files stay.
        std::fs::write(target.join("stale"), "").unwrap();
        commit_dir(&target, ".tmp", write("new")).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("data")).unwrap(), "new");
        assert_eq!(entries(&target), 1, "only data");
        assert_eq!(entries(root.path()), 1, "only ckpt");
        let nameless = commit_dir(Path::new("/"), ".tmp", write("x"));
        assert!(matches!(nameless, Err(Error::Io { .. })), "{nameless:?}");
    }

    #[test]
    fn shards_fill_greedily_and_a_large_tensor_gets_its_own() {
        assert_eq!(assign_shards([4, 4, 4, 20, 1], 8), (vec![0, 0, 1, 2, 3], 4));
        assert_eq!(assign_shards([20, 1], 8), (vec![0, 1], 2));
        assert_eq!(assign_shards([], 8), (vec![], 1));
        assert_eq!(assign_shards([3, 3], u64::MAX), (vec![0, 0], 1));
    }
}
