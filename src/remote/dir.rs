//! Sharded checkpoints under a prefix, laid out as [`to_dir`](crate::to_dir) lays out a directory:
//! `model.safetensors`, or `model-0000k-of-0000n.safetensors` shards and
//! `model.safetensors.index.json`. Shards upload in parallel; the index goes last.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::store::Store;
use crate::checkpoint::{assign_shards, begin, clean, commit, Format, Index};
use crate::error::ObjectAt;
use crate::shard::{index_of, keys_and_sizes};
use crate::write::plan;
use crate::{Error, Params, Result};

use super::upload::{put_object, ObjectLayout};
use super::{fetch, Remote};

/// The objects directly under a prefix, as a checkpoint directory.
struct ObjectDir<'a> {
    store: &'a dyn ObjectStore,
    prefix: &'a Path,
}

impl Store for ObjectDir<'_> {
    async fn list(&self) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(self.prefix))
            .await
            .at_object(self.prefix)?;
        Ok(listing
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.prefix.clone().join(name);
        match self.store.get(&path).await {
            Ok(object) => Ok(Some(object.bytes().await.at_object(&path)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(Error::Remote {
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        // A put is atomic in every object store: readers see the old object or the new one.
        let path = self.prefix.clone().join(name);
        self.store.put(&path, PutPayload::from(bytes)).await.at_object(&path)?;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<()> {
        let path = self.prefix.clone().join(name);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Remote {
                path: path.to_string(),
                source,
            }),
        }
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// Writes `params` under `prefix` as a checkpoint directory, with the local directory's commit:
/// new shards take names the current index does not list, the index goes last (or, for one
/// object, the old index is deleted), and only then are the earlier save's objects deleted, so a
/// reader never finds an index naming missing or replaced shards. On an error, the objects this
/// save wrote are deleted again and no index is written.
pub(super) async fn to_dir<T: Serialize + Params + ?Sized>(
    remote: &Remote,
    prefix: &Path,
    params: &T,
    max_shard_bytes: u64,
) -> Result<()> {
    let planned = plan(params)?;
    let (shard_of, shards) = assign_shards(planned.iter().map(|p| p.len as u64), max_shard_bytes);
    let dir = ObjectDir {
        store: remote.store.as_ref(),
        prefix,
    };
    let begun = begin(&dir, Format::Safetensors, shards).await?;
    let mut objects = Vec::with_capacity(shards);
    for (k, name) in begun.names.iter().enumerate() {
        let members: Vec<usize> = (0..planned.len()).filter(|&i| shard_of[i] == k).collect();
        objects.push((
            prefix.clone().join(name.as_str()),
            ObjectLayout::new(&planned, &members, remote)?,
        ));
    }
    let cancel = AtomicBool::new(false);
    let results: Vec<(usize, Result<()>)> =
        futures_util::stream::iter(objects.iter().enumerate().map(|(k, (path, object))| {
            let (cancel, planned) = (&cancel, &planned);
            async move {
                let result = put_object(remote, path, params, planned, object, cancel).await;
                if result.is_err() {
                    // The other shards stop at their next part and abort.
                    cancel.store(true, Ordering::Relaxed);
                }
                (k, result)
            }
        }))
        .buffer_unordered(remote.concurrency)
        .collect()
        .await;
    let written: Vec<&Path> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(k, _)| &objects[*k].0)
        .collect();
    let failure = results
        .into_iter()
        .filter_map(|(_, r)| r.err())
        // The error that stopped the save, rather than the cancellations it caused.
        .min_by_key(|e| matches!(e, Error::Cancelled));
    if let Some(error) = failure {
        delete_all(remote.store.as_ref(), written).await;
        return Err(error);
    }
    let index = (shards > 1).then(|| index_of(keys_and_sizes(&planned), &shard_of, &begun.names));
    // A single object replaced the old one in place: it cannot be deleted again.
    if let Err(error) = commit(&dir, &begun, index.as_ref()).await {
        if shards > 1 {
            delete_all(remote.store.as_ref(), objects.iter().map(|(p, _)| p).collect()).await;
        }
        return Err(error);
    }
    clean(&dir, &begun, index.as_ref()).await
}

/// Deletes `paths`, best effort: this runs after a failure, whose error is the one to report.
async fn delete_all(store: &dyn ObjectStore, paths: Vec<&Path>) {
    for path in paths {
        let _ = store.delete(path).await;
    }
}

/// Reads params from a checkpoint under `path`: the prefix of a checkpoint directory (its index, or
/// its single `model.safetensors`), the index object itself, or a `.safetensors` object.
pub(super) async fn from_dir<T: DeserializeOwned + Params>(remote: &Remote, path: &Path) -> Result<T> {
    let name = path.filename().unwrap_or_default();
    if name.ends_with(".safetensors.index.json") {
        let dir = path.parent().unwrap_or_default();
        let index = read_index(remote, path).await?;
        return from_index(remote, &dir, &index).await;
    }
    if name.ends_with(".safetensors") {
        return fetch::load(remote, std::slice::from_ref(path), None).await;
    }
    let index_path = path.clone().join(Format::Safetensors.index());
    match read_index(remote, &index_path).await {
        Ok(index) => from_index(remote, path, &index).await,
        Err(Error::Remote {
            source: object_store::Error::NotFound { .. },
            ..
        }) => {
            let single = path.clone().join(Format::Safetensors.single());
            match fetch::load(remote, std::slice::from_ref(&single), None).await {
                Err(Error::Remote {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => Err(Error::NoCheckpoint {
                    path: format!("{}/{path}", remote.store),
                    looked_for: vec![Format::Safetensors.index(), Format::Safetensors.single()],
                }),
                other => other,
            }
        }
        Err(error) => Err(error),
    }
}

async fn read_index(remote: &Remote, path: &Path) -> Result<Index> {
    let bytes = remote
        .store
        .get(path)
        .await
        .at_object(path)?
        .bytes()
        .await
        .at_object(path)?;
    Index::parse(&bytes, path.as_ref())
}

async fn from_index<T: DeserializeOwned + Params>(remote: &Remote, dir: &Path, index: &Index) -> Result<T> {
    let files = index.shards(Format::Safetensors)?;
    let paths: Vec<Path> = files.iter().map(|f| dir.clone().join(f.as_str())).collect();
    fetch::load(remote, &paths, Some(index)).await
}
