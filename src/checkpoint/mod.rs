//! Checkpoints on storage, for every format and both kinds of storage: the layouts (one file;
//! Hugging Face's sharded safetensors and sharded flax msgpack; Orbax directories, committed whole), the
//! shard index, shard naming, and the multi-file commit that a killed save cannot tear.
//!
//! - [`layout`]: file names, and which files of a directory belong to a layout.
//! - [`index`]: `*.index.json`, read as transformers and the safetensors crate read it.
//! - `commit`: the order of writes that makes the index (or the one file) the commit point, and
//!   the commit of a directory whole.
//! - `store`: the storage trait, and the local directory.
//! - `locate`: which files a reader opens for a path.
//!
//! Public but hidden: the command-line tool uses it; it is not part of the stable API.

mod commit;
pub mod index;
pub mod layout;
mod locate;
pub(crate) mod store;

pub(crate) use commit::{assign_shards, begin, commit_dir, finish};
#[cfg(feature = "object-store")]
pub(crate) use commit::{clean, commit};
pub use index::{Index, IndexMetadata};
pub use layout::Format;
pub use locate::{locate, Located};

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes the file at `path` atomically and durably, through a buffer that `fill` writes into: a
/// temporary file beside it (`.NAME.XXXXXX.tmp`), synced, renamed over `path`, and the directory
/// synced. A failed write removes the temporary file and leaves `path` as it was.
pub fn write_file(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    store::write_atomic_with(path, |file| {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        fill(&mut writer)?;
        writer.flush().map_err(Error::stream)?;
        Ok(())
    })
}
