//! Where a checkpoint's files come from: one small trait (read a whole file, read a byte range,
//! list a directory) so that the reader does not care whether they are local files or objects
//! in a store (`remote::orbax`), and [`LocalDir`], which keeps every path inside the checkpoint
//! directory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use super::invalid;
use crate::error::IoAt;
use crate::{Error, Result};

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// A checkpoint's files, addressed by `/`-separated paths relative to the checkpoint's root.
pub(crate) trait Source: Sync {
    /// The whole file, or `None` if there is none; an error if it is larger than `limit` bytes.
    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>>;
    /// `len` bytes at `offset`; an error if the file is shorter.
    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// The entries of a directory (empty if there is none), sorted by name.
    fn list(&self, dir: &str) -> Result<Vec<DirEntry>>;
    /// Says which byte ranges of which files [`read_range`](Source::read_range) is about to be
    /// asked for, all at once, so that a store can fetch them in few requests. A local directory
    /// has nothing to gain from it.
    fn prefetch(&self, _ranges: &[(String, Range<u64>)]) -> Result<()> {
        Ok(())
    }
}

/// Refuses a path that could leave the checkpoint's root (`..`, an absolute path, a backslash),
/// wherever the checkpoint is: a data file name comes from the checkpoint, which may be hostile.
pub(crate) fn check_inside(path: &str) -> Result<()> {
    let escapes = path.contains('\\')
        || Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(invalid(path, "the path leaves the checkpoint directory"));
    }
    Ok(())
}

/// A checkpoint in a local directory. Paths that leave it (`..`, absolute paths, symlinks that
/// lead out) are refused.
pub(crate) struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub(crate) fn new(root: &Path) -> Result<Self> {
        let root = root.canonicalize().at(root)?;
        Ok(LocalDir { root })
    }

    /// The local path of `path`, if it stays inside the checkpoint; `None` if nothing is there.
    fn resolve(&self, path: &str) -> Result<Option<PathBuf>> {
        check_inside(path)?;
        let full = self.root.join(path);
        match full.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Ok(Some(real)),
            Ok(_) => Err(invalid(path, "a symlink leads out of the checkpoint directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&full, e)),
        }
    }
}

impl Source for LocalDir {
    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(full) = self.resolve(path)? else {
            return Ok(None);
        };
        if full.is_dir() {
            return Ok(None);
        }
        let mut file = File::open(&full).at(&full)?;
        let len = file.metadata().at(&full)?.len();
        if len > limit {
            return Err(invalid(
                path,
                format_args!("{len} bytes, more than the limit of {limit}"),
            ));
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes).at(&full)?;
        Ok(Some(bytes))
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let full = self
            .resolve(path)?
            .ok_or_else(|| invalid(path, "a data file that the database refers to is missing"))?;
        let mut file = File::open(&full).at(&full)?;
        let size = file.metadata().at(&full)?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(invalid(
                path,
                format_args!("bytes {offset}..+{len} asked for, the file has {size}"),
            ));
        }
        file.seek(SeekFrom::Start(offset)).at(&full)?;
        let mut bytes = vec![0; len as usize];
        file.read_exact(&mut bytes).at(&full)?;
        Ok(bytes)
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let Some(full) = self.resolve(if dir.is_empty() { "." } else { dir })? else {
            return Ok(Vec::new());
        };
        if !full.is_dir() {
            return Ok(Vec::new());
        }
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&full).at(&full)? {
            let entry = entry.at(&full)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Follows symlinks, as reading does; `resolve` refuses those leading out.
            let is_dir = entry.path().is_dir();
            entries.push(DirEntry { name, is_dir });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}
