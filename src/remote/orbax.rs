//! Orbax checkpoints under a prefix of an object store: the reader of [`crate::orbax`] over
//! objects instead of files. Listing finds a manager's latest step and a database's numbered
//! manifests; whole reads take the metadata; ranged reads the B-tree nodes and chunks. The chunks
//! of the arrays a type takes are announced before they are read ([`Source::prefetch`]) and
//! fetched as the safetensors reader fetches tensors: ranges merged across small gaps, several
//! requests in flight.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::{Path, PathPart};
use object_store::{ObjectStore, ObjectStoreExt};
use serde::de::DeserializeOwned;
use tokio::runtime::Handle;

use super::fetch::coalesce;
use super::Remote;
use crate::error::ObjectAt;
use crate::orbax::invalid;
use crate::orbax::source::{check_inside, DirEntry, Source};
use crate::orbax::Reader;
use crate::{Error, Params, Result};

/// Reads params with `reader` from the Orbax checkpoint under `prefix` (an item, a step or a
/// manager root, as [`crate::orbax::from_dir`] takes a directory).
///
/// The reader is synchronous (its chunk decoding runs on threads), so it runs on the runtime's
/// blocking pool and each of its reads blocks that thread, not the runtime, on the store.
pub(super) async fn from_dir<T>(remote: &Remote, reader: &Reader, prefix: &Path) -> Result<T>
where
    T: DeserializeOwned + Params + Send + 'static,
{
    let source = ObjectSource {
        remote: remote.clone(),
        prefix: prefix.clone(),
        handle: Handle::current(),
        fetched: Mutex::new(BTreeMap::new()),
    };
    let reader = reader.clone();
    match tokio::task::spawn_blocking(move || reader.read::<T>(&source)).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::Cancelled),
    }
}

/// The objects under `prefix`, as the files of a checkpoint directory.
struct ObjectSource {
    remote: Remote,
    prefix: Path,
    handle: Handle,
    /// What [`Source::prefetch`] fetched: per object, `(start, bytes)` sorted by start.
    fetched: Mutex<BTreeMap<String, Vec<(u64, Bytes)>>>,
}

impl ObjectSource {
    fn store(&self) -> &dyn ObjectStore {
        self.remote.store.as_ref()
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// The object of `path` (relative to the checkpoint, as the reader names files), refused if
    /// it would leave the prefix. Segments are taken as they are, not percent-encoded, so that
    /// a checkpoint copied up by any tool is found under the names Orbax gave its files.
    fn object(&self, path: &str) -> Result<Path> {
        check_inside(path)?;
        let mut parts: Vec<PathPart<'_>> = self.prefix.parts().collect();
        for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
            let part =
                PathPart::parse(segment).map_err(|e| invalid(path, format_args!("not a valid object name: {e}")))?;
            parts.push(part);
        }
        Ok(Path::from_iter(parts))
    }

    /// `len` bytes at `offset` of `path`, if [`Source::prefetch`] fetched them.
    fn prefetched(&self, path: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        let fetched = self.fetched.lock().expect("no reader panics holding the lock");
        let ranges = fetched.get(path)?;
        // The last range starting at or before `offset` is the only one that can hold it.
        let k = ranges.partition_point(|(start, _)| *start <= offset).checked_sub(1)?;
        let (start, bytes) = &ranges[k];
        let from = offset - start;
        let to = from.checked_add(len)?;
        (to <= bytes.len() as u64).then(|| bytes[from as usize..to as usize].to_vec())
    }

    /// The error for a range the object does not hold, as a local file's.
    fn short(&self, path: &str, object: &Path, offset: u64, len: u64) -> Error {
        match self.block_on(self.store().head(object)) {
            Ok(meta) => invalid(
                path,
                format_args!("bytes {offset}..+{len} asked for, the object has {}", meta.size),
            ),
            Err(object_store::Error::NotFound { .. }) => {
                invalid(path, "a data file that the database refers to is missing")
            }
            Err(source) => Error::Remote {
                path: object.to_string(),
                source,
            },
        }
    }
}

impl Source for ObjectSource {
    fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let object = self.object(path)?;
        self.block_on(async {
            let result = match self.store().get(&object).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(error).at_object(&object),
            };
            // Checked before the body is read: a hostile object's size is not fetched.
            let len = result.meta.size;
            if len > limit {
                return Err(invalid(
                    path,
                    format_args!("{len} bytes, more than the limit of {limit}"),
                ));
            }
            Ok(Some(result.bytes().await.at_object(&object)?.to_vec()))
        })
    }

    fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if let Some(bytes) = self.prefetched(path, offset, len) {
            return Ok(bytes);
        }
        let object = self.object(path)?;
        let Some(end) = offset.checked_add(len) else {
            return Err(self.short(path, &object, offset, len));
        };
        match self.block_on(self.store().get_range(&object, offset..end)) {
            Ok(bytes) if bytes.len() as u64 == len => Ok(bytes.to_vec()),
            Ok(_) | Err(_) => Err(self.short(path, &object, offset, len)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>> {
        let object = self.object(dir)?;
        let listing = self
            .block_on(self.store().list_with_delimiter(Some(&object)))
            .at_object(&object)?;
        let dirs = listing.common_prefixes.iter().map(|p| (p, true));
        let files = listing.objects.iter().map(|o| (&o.location, false));
        let mut entries: Vec<DirEntry> = dirs
            .chain(files)
            .filter_map(|(p, is_dir)| {
                p.filename().map(|name| DirEntry {
                    name: name.to_owned(),
                    is_dir,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn prefetch(&self, ranges: &[(String, Range<u64>)]) -> Result<()> {
        let mut by_object: BTreeMap<&str, Vec<Range<u64>>> = BTreeMap::new();
        for (path, range) in ranges {
            if range.start < range.end {
                by_object.entry(path).or_default().push(range.clone());
            }
        }
        let mut requests = Vec::new();
        for (path, mut ranges) in by_object {
            let object = self.object(path)?;
            for range in coalesce(&mut ranges, self.remote.coalesce_gap) {
                requests.push((path, object.clone(), range));
            }
        }
        let store = self.store();
        let fetched: Vec<Result<(&str, u64, Bytes)>> = self.block_on(
            futures_util::stream::iter(requests.into_iter().map(|(path, object, range)| async move {
                let bytes = store.get_range(&object, range.clone()).await.at_object(&object)?;
                Ok((path, range.start, bytes))
            }))
            .buffered(self.remote.concurrency)
            .collect(),
        );
        // A hint: a range that failed (one a hostile database places past an object's end, say)
        // is read again by `read_range`, whose error names the file and what it holds.
        let mut cache = self.fetched.lock().expect("no reader panics holding the lock");
        for (path, start, bytes) in fetched.into_iter().flatten() {
            let ranges = cache.entry(path.to_owned()).or_default();
            let at = ranges.partition_point(|(s, _)| *s < start);
            ranges.insert(at, (start, bytes));
        }
        Ok(())
    }
}
