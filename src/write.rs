//! Writing files: learn every key and size, lay the file out as the reference safetensors writer
//! does, then copy each tensor's bytes once, to its final place.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::header::{Layout, Planned, MAX_RANK, METADATA_KEY};
use crate::{Error, Options, Params, Result, Serializer};

/// The first walk: every leaf's key, dtype, shape and size, in the order serde visits them.
fn plan<T: Serialize + Params + ?Sized>(params: &T) -> Result<Vec<Planned>> {
    let mut planned = Vec::new();
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        let reason = if leaf.key.is_empty() {
            Some("keys cannot be empty")
        } else if leaf.key == METADATA_KEY {
            Some("the header reserves this key for metadata")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidKey {
                key: leaf.key.to_owned(),
                reason,
            });
        }
        if leaf.shape.len() > MAX_RANK {
            // The reader refuses such files, as numpy refuses such arrays.
            return Err(Error::ShapeMismatch {
                key: leaf.key.to_owned(),
                expected: format!("at most {MAX_RANK} dimensions"),
                found: leaf.shape.to_vec(),
            });
        }
        planned.push(Planned {
            key: leaf.key.to_owned(),
            dtype: leaf.dtype,
            shape: leaf.shape.to_vec(),
            len: leaf.data.len(),
        });
        Ok(())
    }))?;
    let mut seen = HashSet::with_capacity(planned.len());
    if let Some(dup) = planned.iter().find(|p| !seen.insert(p.key.as_str())) {
        return Err(Error::DuplicateKey {
            key: dup.key.clone(),
        });
    }
    Ok(planned)
}

/// The second walk: copies each leaf's bytes to its offset in `data`.
fn fill<T: Serialize + Params + ?Sized>(
    params: &T,
    planned: &[Planned],
    layout: &Layout,
    data: &mut [u8],
) -> Result<()> {
    let mut next = 0;
    params.serialize(&mut Serializer::new::<T>(|leaf| {
        let matches = planned
            .get(next)
            .is_some_and(|p| p.key == leaf.key && p.len == leaf.data.len());
        if !matches {
            return Err(changed());
        }
        let offset = layout.offsets[next];
        data[offset..offset + leaf.data.len()].copy_from_slice(leaf.data);
        next += 1;
        Ok(())
    }))?;
    if next != planned.len() {
        return Err(changed());
    }
    Ok(())
}

fn changed() -> Error {
    Error::msg("the params serialized differently on the second pass (a `Serialize` impl that is not deterministic?)")
}

pub(crate) fn to_bytes<T: Serialize + Params + ?Sized>(
    params: &T,
    options: &Options,
) -> Result<Vec<u8>> {
    let planned = plan(params)?;
    let layout = Layout::new(&planned, options.metadata_map())?;
    let mut bytes = Vec::with_capacity(layout.file_len());
    bytes.extend_from_slice(&layout.head);
    bytes.resize(layout.file_len(), 0);
    fill(params, &planned, &layout, &mut bytes[layout.head.len()..])?;
    Ok(bytes)
}

pub(crate) fn to_writer<W: Write, T: Serialize + Params + ?Sized>(
    mut writer: W,
    params: &T,
    options: &Options,
) -> Result<()> {
    let bytes = to_bytes(params, options)?;
    writer.write_all(&bytes)?;
    writer.flush()?;
    Ok(())
}

/// Writes next to the target and renames over it, so that a reader, or a crash, sees the old file or
/// the new one, never a part. Nothing touches the disk until the params have serialized.
pub(crate) fn to_file<T: Serialize + Params + ?Sized>(
    path: &Path,
    params: &T,
    options: &Options,
) -> Result<()> {
    let bytes = to_bytes(params, options)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dropping the temporary file on any error below removes it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| Error::Io(e.error))?;
    sync_dir(dir)?;
    Ok(())
}

/// Makes the rename durable: on Unix a directory's entries are synced through the directory.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
