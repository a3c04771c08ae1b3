//! Writing one object: its bytes are made part by part, straight from the params, and uploaded as
//! they are made. An object that fits in one part is one `put` (atomic); a larger one is a
//! multipart upload, completed only when every part is in and aborted on any error, so that a
//! failed write leaves no object behind.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::error::ObjectAt;
use crate::header::{Layout, Leaves, Room};
use crate::write::{stream, Clip, Framing, REORDER_BUDGET};
use crate::{Error, Params, Result};

use super::Remote;

/// Where the leaves of the params go in one object.
pub(super) struct ObjectLayout {
    framing: Framing,
    /// The object's size.
    pub len: u64,
}

impl ObjectLayout {
    /// The object that holds the planned leaves `members` (indices into `planned`), laid out as
    /// the reference writer lays out a file.
    pub(super) fn new(planned: &Leaves, members: &[usize], remote: &Remote) -> Result<ObjectLayout> {
        let layout = Layout::new(
            planned,
            members,
            remote.options.metadata_over(None).as_deref(),
            Room::HeadOnly,
        )?;
        let framing = Framing::safetensors(layout, planned, members);
        Ok(ObjectLayout {
            len: framing.len() as u64,
            framing,
        })
    }

    /// The object's bytes in `range`, streamed from the params: only the tensors that fall in it
    /// are written, into a buffer of the range's size (never filled with zeros first).
    fn fill<T: Serialize + Params + ?Sized>(&self, params: &T, planned: &Leaves, range: Range<u64>) -> Result<Vec<u8>> {
        let ranks = self.framing.ranks_within(&range);
        let mut part = Clip::new(range, self.framing.start(ranks.start));
        stream(params, planned, &self.framing, ranks, &mut part, REORDER_BUDGET)?;
        Ok(part.buf)
    }
}

/// The error of an upload stopped because another one of the same save failed.
pub(super) fn cancelled() -> Error {
    Error::Cancelled
}

/// Uploads the object laid out by `object` to `path`: one `put` if it fits in a part, else a
/// multipart upload with up to `remote.concurrency` parts in flight, aborted on any error (or when
/// `cancel` is set by a sibling upload).
pub(super) async fn put_object<T: Serialize + Params + ?Sized>(
    remote: &Remote,
    path: &Path,
    params: &T,
    planned: &Leaves,
    object: &ObjectLayout,
    cancel: &AtomicBool,
) -> Result<()> {
    let store: &dyn ObjectStore = remote.store.as_ref();
    let part_size = remote.part_size as u64;
    if object.len <= part_size {
        let bytes = object.fill(params, planned, 0..object.len)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled());
        }
        store.put(path, PutPayload::from(bytes)).await.at_object(path)?;
        return Ok(());
    }
    let mut upload = store.put_multipart(path).await.at_object(path)?;
    let result: Result<()> = async {
        let mut in_flight = FuturesUnordered::new();
        let mut start = 0;
        while start < object.len {
            if cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            while in_flight.len() >= remote.concurrency {
                let done: object_store::Result<()> = in_flight.next().await.expect("parts in flight");
                done.at_object(path)?;
            }
            let end = (start + part_size).min(object.len);
            let part = object.fill(params, planned, start..end)?;
            in_flight.push(upload.put_part(PutPayload::from(part)));
            start = end;
            // Start the new part's request, and collect parts already done, without waiting.
            while let Some(Some(done)) = in_flight.next().now_or_never() {
                done.at_object(path)?;
            }
        }
        while let Some(done) = in_flight.next().await {
            done.at_object(path)?;
        }
        upload.complete().await.at_object(path)?;
        Ok(())
    }
    .await;
    if let Err(error) = result {
        // The upload's parts are discarded and no object appears. If the abort itself fails
        // (the store is unreachable), the object still does not appear: S3 shows an object only
        // once its upload is completed; the stored parts wait for the bucket's lifecycle rule.
        let _ = upload.abort().await;
        return Err(error);
    }
    Ok(())
}
