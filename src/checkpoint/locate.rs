//! Which files a reader opens for a path: a checkpoint directory (its index, else its one file,
//! safetensors before msgpack), an index file, or a single file.

use std::path::{Path, PathBuf};

use super::index::Index;
use super::layout::Format;
use crate::error::IoAt;
use crate::{Error, Result};

/// The files of a checkpoint.
#[derive(Debug)]
pub struct Located {
    /// The format of its files.
    pub format: Format,
    /// The files holding the tensors: the one file, or the shards the index lists (sorted).
    pub files: Vec<PathBuf>,
    /// The index and its path, for a sharded checkpoint.
    pub index: Option<(PathBuf, Index)>,
}

/// Finds the files of the checkpoint at `path`: a directory, an `*.index.json`, or one file.
pub fn locate(path: &Path) -> Result<Located> {
    let meta = std::fs::metadata(path).at(path)?;
    if meta.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(format) = Format::of_index(name) {
            return read_index(path, format);
        }
        return Ok(Located {
            format: Format::of_file(name),
            files: vec![path.to_owned()],
            index: None,
        });
    }
    for format in Format::SEARCH_ORDER {
        let index = path.join(format.index());
        if index.is_file() {
            return read_index(&index, format);
        }
        let single = path.join(format.single());
        if single.is_file() {
            return Ok(Located {
                format,
                files: vec![single],
                index: None,
            });
        }
    }
    let looked_for: Vec<&'static str> = Format::SEARCH_ORDER
        .iter()
        .flat_map(|f| [f.index(), f.single()])
        .collect();
    Err(Error::NoCheckpoint {
        path: path.display().to_string(),
        looked_for,
    })
}

/// Reads the index at `path` and lists its shards, beside it.
fn read_index(path: &Path, format: Format) -> Result<Located> {
    let bytes = std::fs::read(path).at(path)?;
    let index = Index::parse(&bytes, &path.display().to_string())?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let files = index.shards(format)?.into_iter().map(|f| dir.join(f)).collect();
    Ok(Located {
        format,
        files,
        index: Some((path.to_owned(), index)),
    })
}
