//! Sharded checkpoints under a prefix, laid out as [`to_dir`](crate::to_dir) lays out a directory:
//! `model.safetensors`, or `model-0000k-of-0000n.safetensors` shards and
//! `model.safetensors.index.json`. Shards upload in parallel; the index goes last.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ObjectAt;
use crate::shard::{assign_shards, checked_shard, index_json, is_shard_name, Index, INDEX, SINGLE};
use crate::write::plan;
use crate::{Error, Params, Result};

use super::upload::{put_object, ObjectLayout};
use super::{fetch, Remote};

/// Writes `params` under `prefix` as a checkpoint directory. On an error, the objects this save
/// wrote are deleted again and no index is written.
pub(super) async fn to_dir<T: Serialize + Params + ?Sized>(
    remote: &Remote,
    prefix: &Path,
    params: &T,
    max_shard_bytes: u64,
) -> Result<()> {
    let planned = plan(params)?;
    let (shard_of, names) = assign_shards(&planned, max_shard_bytes);
    let mut objects = Vec::with_capacity(names.len());
    for (k, name) in names.iter().enumerate() {
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
    if names.len() > 1 {
        let json = index_json(&planned, &shard_of, &names)?;
        let index_path = prefix.clone().join(INDEX);
        if let Err(error) = remote.store.put(&index_path, PutPayload::from(json)).await {
            delete_all(remote.store.as_ref(), objects.iter().map(|(p, _)| p).collect()).await;
            return Err(Error::Remote {
                path: index_path.to_string(),
                source: error,
            });
        }
    }
    remove_stale(remote.store.as_ref(), prefix, &names).await
}

/// Deletes `paths`, best effort: this runs after a failure, whose error is the one to report.
async fn delete_all(store: &dyn ObjectStore, paths: Vec<&Path>) {
    for path in paths {
        let _ = store.delete(path).await;
    }
}

/// Deletes the objects of an earlier save under `prefix` that the new one does not use: other
/// shard files, and the index when the new save is a single file.
async fn remove_stale(store: &dyn ObjectStore, prefix: &Path, written: &[String]) -> Result<()> {
    let keep: BTreeSet<&str> = written.iter().map(String::as_str).collect();
    let sharded = written.len() > 1;
    let listing = store.list_with_delimiter(Some(prefix)).await.at_object(prefix)?;
    for object in listing.objects {
        let Some(name) = object.location.filename() else {
            continue;
        };
        let stale = !keep.contains(name) && (is_shard_name(name) || name == SINGLE || (name == INDEX && !sharded));
        if stale {
            store.delete(&object.location).await.at_object(&object.location)?;
        }
    }
    Ok(())
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
    let index_path = path.clone().join(INDEX);
    match read_index(remote, &index_path).await {
        Ok(index) => from_index(remote, path, &index).await,
        Err(Error::Remote {
            source: object_store::Error::NotFound { .. },
            ..
        }) => {
            let single = path.clone().join(SINGLE);
            match fetch::load(remote, std::slice::from_ref(&single), None).await {
                Err(Error::Remote {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => Err(Error::NoCheckpoint {
                    path: format!("{}/{path}", remote.store),
                    looked_for: vec![INDEX, SINGLE],
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
    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidIndex {
        reason: format!("{path}: not a shard index: {e}"),
    })
}

async fn from_index<T: DeserializeOwned + Params>(remote: &Remote, dir: &Path, index: &Index) -> Result<T> {
    let mut files = BTreeSet::new();
    for shard in index.weight_map.values() {
        files.insert(checked_shard(shard, ".safetensors")?);
    }
    let paths: Vec<Path> = files.into_iter().map(|f| dir.clone().join(f)).collect();
    fetch::load(remote, &paths, Some(index)).await
}
