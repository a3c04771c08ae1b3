//! Reading: each object's header with one ranged request (a speculative first read that usually
//! holds the whole header), then only the byte ranges of the tensors the type claims, adjacent
//! ranges merged, and the params deserialized from those buffers.

use std::collections::BTreeSet;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use serde::de::DeserializeOwned;

use crate::checkpoint::Index;
use crate::error::ObjectAt;
use crate::header::{read_header_len, Header, Span, MAX_HEADER_LEN};
use crate::resolve::resolve;
use crate::shard::merge_shards;
use crate::{Deserializer, Error, Params, Result};

use super::Remote;

const LEN_BYTES: u64 = 8;

/// One object's header, with entry offsets within the object, and the bytes read so far from its
/// start.
pub(super) struct ObjectHeader {
    pub header: Header,
    /// Bytes `0..prefix.len()` of the object: the speculative first read.
    pub prefix: Bytes,
}

/// Reads and checks the header of the safetensors object at `path`: one request of
/// `remote.first_read` bytes from the start, and a second only if the header is longer.
pub(super) async fn read_header(remote: &Remote, path: &Path) -> Result<ObjectHeader> {
    let store: &dyn ObjectStore = remote.store.as_ref();
    let first = (remote.first_read as u64).max(LEN_BYTES);
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..first)),
        ..GetOptions::default()
    };
    let result = match store.get_opts(path, options).await {
        Ok(result) => result,
        Err(error @ object_store::Error::NotFound { .. }) => return Err(error).at_object(path),
        Err(error) => {
            // A range the store refuses: an empty object. Say so, rather than quote the store.
            return match store.head(path).await {
                Ok(meta) if meta.size < LEN_BYTES => Err(truncated(path, "the header length", LEN_BYTES, meta.size)),
                _ => Err(error).at_object(path),
            };
        }
    };
    let size = result.meta.size;
    let mut prefix = result.bytes().await.at_object(path)?;
    let header_len = read_header_len(&prefix).map_err(|e| in_object(path, e))?;
    // header_len <= MAX_HEADER_LEN: the sum cannot overflow.
    debug_assert!(header_len <= MAX_HEADER_LEN);
    let data_start = LEN_BYTES + header_len;
    if size < data_start {
        return Err(truncated(path, "the header", data_start, size));
    }
    if (prefix.len() as u64) < data_start {
        let rest = store
            .get_range(path, prefix.len() as u64..data_start)
            .await
            .at_object(path)?;
        let mut whole = BytesMut::with_capacity(data_start as usize);
        whole.extend_from_slice(&prefix);
        whole.extend_from_slice(&rest);
        prefix = whole.freeze();
    }
    let mut header =
        Header::parse_json(&prefix[LEN_BYTES as usize..data_start as usize]).map_err(|e| in_object(path, e))?;
    let data_len = usize::try_from(size - data_start)
        .map_err(|_| Error::in_file(path, Error::io(path.as_ref(), std::io::ErrorKind::FileTooLarge.into())))?;
    header.check_coverage(data_len).map_err(|e| in_object(path, e))?;
    for entry in &mut header.entries {
        entry.start += data_start as usize;
        entry.end += data_start as usize;
    }
    Ok(ObjectHeader { header, prefix })
}

fn truncated(path: &Path, what: &'static str, needed: u64, found: u64) -> Error {
    in_object(path, Error::Truncated { what, needed, found })
}

/// Names the object in a header error: ``ckpt/model.safetensors`: invalid header: …`.
fn in_object(path: &Path, error: Error) -> Error {
    Error::in_file(path, error)
}

/// Reads params of type `T` from the safetensors objects `paths` (one file, or the shards of a
/// checkpoint with their `index`), fetching only the tensors `T` takes.
pub(super) async fn load<T: DeserializeOwned + Params>(
    remote: &Remote,
    paths: &[Path],
    index: Option<&Index>,
) -> Result<T> {
    let headers: Vec<ObjectHeader> = futures_util::stream::iter(paths.iter().map(|p| read_header(remote, p)))
        .buffered(remote.concurrency)
        .try_collect()
        .await?;
    let (prefixes, headers): (Vec<Bytes>, Vec<Header>) = headers.into_iter().map(|h| (h.prefix, h.header)).unzip();
    let names: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    let mut merged = merge_shards(headers, &names, index)?;
    // The entries the type takes: the only tensor bytes fetched.
    let tree = resolve(T::SCHEMA, &merged, remote.options.allow_unknown_keys)?;
    let mut claimed = Vec::new();
    tree.entries(&mut claimed);
    drop(tree);
    let claimed: BTreeSet<usize> = claimed.into_iter().collect();

    // Per object, the claimed byte ranges not in the first read, sorted and merged.
    let mut wanted: Vec<Vec<Range<u64>>> = vec![Vec::new(); paths.len()];
    for &i in &claimed {
        let entry = &merged.entries[i];
        let Span::Input(n) = entry.span() else { continue };
        if entry.start < entry.end && entry.end > prefixes[n].len() {
            wanted[n].push(entry.start as u64..entry.end as u64);
        }
    }
    let mut requests: Vec<(usize, Range<u64>)> = Vec::new();
    for (n, ranges) in wanted.iter_mut().enumerate() {
        requests.extend(coalesce(ranges, remote.coalesce_gap).into_iter().map(|r| (n, r)));
    }
    let fetched: Vec<Bytes> = futures_util::stream::iter(requests.iter().map(|(n, range)| async move {
        remote
            .store
            .get_range(&paths[*n], range.clone())
            .await
            .at_object(&paths[*n])
    }))
    .buffered(remote.concurrency)
    .try_collect()
    .await?;
    for ((n, range), bytes) in requests.iter().zip(&fetched) {
        if bytes.len() as u64 != range.end - range.start {
            return Err(truncated(
                &paths[*n],
                "the tensor data",
                range.end,
                range.start + bytes.len() as u64,
            ));
        }
    }

    // Inputs: each object's first read, each fetched range, and an empty input for the entries
    // nothing was fetched for (they are never read).
    let mut inputs: Vec<&[u8]> = prefixes.iter().map(|p| &p[..]).collect();
    let fetched_base = inputs.len();
    inputs.extend(fetched.iter().map(|b| &b[..]));
    let empty = inputs.len();
    inputs.push(&[]);
    for (i, entry) in merged.entries.iter_mut().enumerate() {
        let Span::Input(n) = entry.span() else { continue };
        let (start, end) = (entry.start as u64, entry.end as u64);
        let at = if !claimed.contains(&i) || start == end {
            None
        } else if end <= prefixes[n].len() as u64 {
            Some((n, 0))
        } else {
            // Requests are sorted by object, then start: the one holding the entry is the last
            // that starts at or before it.
            let k = requests.partition_point(|(m, r)| (*m, r.start) <= (n, start));
            k.checked_sub(1)
                .filter(|&k| requests[k].0 == n && end <= requests[k].1.end)
                .map(|k| (fetched_base + k, requests[k].1.start))
        };
        match at {
            Some((input, base)) => {
                entry.set_span(Span::Input(input))?;
                entry.start = (start - base) as usize;
                entry.end = (end - base) as usize;
            }
            None => {
                entry.set_span(Span::Input(empty))?;
                entry.start = 0;
                entry.end = 0;
            }
        }
    }
    Deserializer::from_header(inputs, merged, remote.options.clone()).deserialize()
}

/// Sorts `ranges` and merges those that touch or lie at most `gap` bytes apart.
pub(super) fn coalesce(ranges: &mut [Range<u64>], gap: u64) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for range in ranges.iter() {
        match merged.last_mut() {
            Some(last) if range.start <= last.end.saturating_add(gap) => last.end = last.end.max(range.end),
            _ => merged.push(range.clone()),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_when_they_touch_or_are_near() {
        let mut ranges = vec![20..30, 0..10, 10..15, 40..50];
        assert_eq!(coalesce(&mut ranges, 0), [0..15, 20..30, 40..50]);
        assert_eq!(coalesce(&mut ranges, 5), [0..30, 40..50]);
        assert_eq!(coalesce(&mut ranges, 10), vec![Range { start: 0, end: 50 }]);
        assert_eq!(coalesce(&mut [], 10), Vec::<Range<u64>>::new());
    }
}
