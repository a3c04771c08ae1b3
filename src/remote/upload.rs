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
use crate::header::{Layout, Planned};
use crate::{Error, Params, Result, Serializer};

use super::Remote;

/// Where the leaves of the params go in one object.
pub(super) struct ObjectLayout {
    /// The length prefix and the JSON header.
    head: Vec<u8>,
    /// For each leaf of the walk (an index into the planned leaves), its offset in the object, or
    /// `None` when it belongs to another object (another shard).
    place: Vec<Option<u64>>,
    /// The object's size.
    pub len: u64,
}

impl ObjectLayout {
    /// The object that holds the planned leaves `members` (indices into `planned`), laid out as
    /// the reference writer lays out a file.
    pub(super) fn new(planned: &[Planned], members: &[usize], remote: &Remote) -> Result<ObjectLayout> {
        let subset: Vec<Planned> = members.iter().map(|&i| planned[i].clone()).collect();
        let layout = Layout::new(&subset, remote.options.metadata_over(None).as_deref())?;
        let head_len = layout.head.len() as u64;
        let mut place = vec![None; planned.len()];
        for (j, &i) in members.iter().enumerate() {
            place[i] = Some(head_len + layout.offsets[j] as u64);
        }
        Ok(ObjectLayout {
            len: layout.file_len() as u64,
            head: layout.head,
            place,
        })
    }

    /// The object's bytes in `range`: the part of the head and of each leaf that falls in it,
    /// copied from one walk of the params.
    fn fill<T: Serialize + Params + ?Sized>(
        &self,
        params: &T,
        planned: &[Planned],
        range: Range<u64>,
    ) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        copy_overlap(&self.head, 0, &range, &mut buf);
        if range.end <= self.head.len() as u64 {
            return Ok(buf);
        }
        let mut next = 0;
        params.serialize(&mut Serializer::new::<T>(|leaf| {
            let i = next;
            next += 1;
            if planned
                .get(i)
                .is_none_or(|p| p.key != leaf.key || p.len != leaf.data.len())
            {
                return Err(changed());
            }
            if let Some(offset) = self.place[i] {
                copy_overlap(leaf.data, offset, &range, &mut buf);
            }
            Ok(())
        }))?;
        if next != planned.len() {
            return Err(changed());
        }
        Ok(buf)
    }
}

/// Copies the bytes of `src` (which sits at `offset` in the object) that fall in `range` into
/// `buf` (which holds `range`).
fn copy_overlap(src: &[u8], offset: u64, range: &Range<u64>, buf: &mut [u8]) {
    let start = offset.max(range.start);
    let end = (offset + src.len() as u64).min(range.end);
    if start < end {
        let from = (start - offset) as usize..(end - offset) as usize;
        let to = (start - range.start) as usize..(end - range.start) as usize;
        buf[to].copy_from_slice(&src[from]);
    }
}

fn changed() -> Error {
    Error::msg("the params serialized differently on a later pass (a `Serialize` impl that is not deterministic?)")
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
    planned: &[Planned],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_are_copied_to_their_place() {
        let mut buf = vec![0u8; 4];
        // The source sits at 2..6, the buffer holds 4..8: bytes 4 and 5 overlap.
        copy_overlap(&[1, 2, 3, 4], 2, &(4..8), &mut buf);
        assert_eq!(buf, [3, 4, 0, 0]);
        copy_overlap(&[9, 9], 8, &(4..8), &mut buf);
        assert_eq!(buf, [3, 4, 0, 0]);
        copy_overlap(&[7, 8, 9], 5, &(4..8), &mut buf);
        assert_eq!(buf, [3, 7, 8, 9]);
    }
}
