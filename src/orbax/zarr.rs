//! The zarr subset Orbax writes: v2 `.zarray` (zstd or no compressor) and v3 `zarr.json` (`bytes`,
//! `zstd`, and `sharding_indexed` with a `crc32c` index), chunks decoded into one C-order buffer
//! per array, absent chunks left at the fill value.

use serde_json::Value as Json;

use super::codec::{crc32c, zstd_exact};
use super::invalid;
use super::kvstore::KvStore;
use crate::{Dtype, Error, Result};

/// The dtype a zarr v2 (`v3 == false`) or v3 name stands for, by the crate's dtype table;
/// single-byte kinds also accept numpy's `<` and `>` forms.
pub(crate) fn dtype_from_zarr(name: &str, v3: bool) -> Option<Dtype> {
    if v3 {
        return Dtype::from_zarr_v3_name(name);
    }
    match name.as_bytes() {
        [b'<' | b'>', kind @ (b'b' | b'u' | b'i'), b'1'] => Dtype::from_zarr_v2_name(&format!("|{}1", *kind as char)),
        _ => Dtype::from_zarr_v2_name(name),
    }
}

/// The encoding of one chunk's bytes.
#[derive(Debug, Clone, PartialEq)]
enum Codec {
    Raw,
    Zstd,
    /// zarr v3 `sharding_indexed`: the chunk is a shard of inner chunks of `inner` shape.
    Sharded {
        inner: Vec<usize>,
        inner_codec: Box<Codec>,
        index_at_end: bool,
        index_crc: bool,
    },
}

/// An array's metadata, as far as reading needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArrayMeta {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    chunks: Vec<usize>,
    codec: Codec,
    /// One element of the fill value, little-endian.
    fill: Vec<u8>,
    /// zarr v3 `default` chunk keys (`c/0/1`) or v2 ones (`0.1`, joined by `separator`).
    v3_keys: bool,
    separator: char,
}

fn field<'j>(json: &'j Json, name: &str, what: &str) -> Result<&'j Json> {
    json.get(name).ok_or_else(|| invalid(what, format_args!("no `{name}`")))
}

fn dims(json: &Json, name: &str, what: &str) -> Result<Vec<usize>> {
    field(json, name, what)?
        .as_array()
        .and_then(|a| {
            (a.len() <= 32)
                .then(|| {
                    a.iter()
                        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                        .collect()
                })
                .flatten()
        })
        .ok_or_else(|| invalid(what, format_args!("`{name}` is not a list of at most 32 sizes")))
}

/// The fill value's bytes: zero for `null`, else the number in the array's dtype.
fn fill_bytes(json: Option<&Json>, dtype: Dtype, what: &str) -> Result<Vec<u8>> {
    let size = dtype.bit_size() / 8;
    let number = match json {
        None | Some(Json::Null) => return Ok(vec![0; size]),
        Some(Json::Bool(b)) => f64::from(u8::from(*b)),
        Some(Json::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Json::String(s)) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => return Err(invalid(what, format_args!("fill value `{other}` is not supported"))),
        },
        Some(other) => return Err(invalid(what, format_args!("fill value {other} is not supported"))),
    };
    if number == 0.0 && number.is_sign_positive() {
        return Ok(vec![0; size]);
    }
    let exact_int = |min: f64, max: f64| number.fract() == 0.0 && number >= min && number <= max;
    let bytes = match dtype {
        Dtype::BOOL if number == 1.0 => vec![1],
        Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64 if exact_int(0.0, 2f64.powi(dtype.bit_size() as i32)) => {
            (number as u64).to_le_bytes()[..size].to_vec()
        }
        Dtype::I8 | Dtype::I16 | Dtype::I32 | Dtype::I64 if exact_int(-(2f64.powi(63)), 2f64.powi(63)) => {
            (number as i64).to_le_bytes()[..size].to_vec()
        }
        Dtype::F16 => half::f16::from_f64(number).to_le_bytes().to_vec(),
        Dtype::BF16 => half::bf16::from_f64(number).to_le_bytes().to_vec(),
        Dtype::F32 => (number as f32).to_le_bytes().to_vec(),
        Dtype::F64 => number.to_le_bytes().to_vec(),
        _ => {
            return Err(invalid(
                what,
                format_args!("fill value {number} for {dtype} is not supported (only 0 is)"),
            ))
        }
    };
    Ok(bytes)
}

fn unknown_dtype(key: &str, name: &str) -> Error {
    Error::UnknownDtype {
        key: key.to_owned(),
        found: name.to_owned(),
    }
}

/// Parses array metadata of zarr `format` (2 or 3) and its dtype, named by field `dtype_field`.
fn open_metadata(text: &[u8], key: &str, what: &str, format: u64, dtype_field: &str) -> Result<(Json, Dtype)> {
    let json: Json = serde_json::from_slice(text).map_err(|e| invalid(what, format_args!("not JSON: {e}")))?;
    if json.get("zarr_format").and_then(Json::as_u64) != Some(format) {
        return Err(invalid(what, format_args!("`zarr_format` is not {format}")));
    }
    let name = field(&json, dtype_field, what)?.as_str().ok_or_else(|| {
        invalid(
            what,
            format_args!("`{dtype_field}` is not a string (structured dtypes are not supported)"),
        )
    })?;
    let dtype = dtype_from_zarr(name, format == 3).ok_or_else(|| unknown_dtype(key, name))?;
    Ok((json, dtype))
}

/// Parses a zarr v2 `.zarray`. `key` is the array's name, for errors.
pub(crate) fn parse_zarray(text: &[u8], key: &str) -> Result<ArrayMeta> {
    let what = &format!("{key}/.zarray");
    let (json, dtype) = open_metadata(text, key, what, 2, "dtype")?;
    let codec = match json.get("compressor") {
        None | Some(Json::Null) => Codec::Raw,
        Some(c) if c.get("id").and_then(Json::as_str) == Some("zstd") => Codec::Zstd,
        Some(c) => {
            return Err(invalid(
                what,
                format_args!("compressor {c} is not supported (zstd or none are)"),
            ))
        }
    };
    if !matches!(json.get("filters"), None | Some(Json::Null)) {
        return Err(invalid(what, "filters are not supported"));
    }
    if json.get("order").and_then(Json::as_str).unwrap_or("C") != "C" {
        return Err(invalid(what, "only C order is supported"));
    }
    let separator = match json.get("dimension_separator").and_then(Json::as_str).unwrap_or(".") {
        "." => '.',
        "/" => '/',
        other => return Err(invalid(what, format_args!("dimension separator `{other}`"))),
    };
    let meta = ArrayMeta {
        dtype,
        shape: dims(&json, "shape", what)?,
        chunks: dims(&json, "chunks", what)?,
        codec,
        fill: fill_bytes(json.get("fill_value"), dtype, what)?,
        v3_keys: false,
        separator,
    };
    check_grid(&meta, what)?;
    Ok(meta)
}

/// The inner codecs of a v3 array or shard: `bytes` (little-endian) then optionally `zstd`.
fn v3_codecs(codecs: &Json, what: &str, depth: usize) -> Result<Codec> {
    let list = codecs
        .as_array()
        .ok_or_else(|| invalid(what, "`codecs` is not a list"))?;
    let mut codec = None;
    for c in list {
        let name = c.get("name").and_then(Json::as_str).unwrap_or("");
        let conf = c.get("configuration").unwrap_or(&Json::Null);
        codec = Some(match (name, codec) {
            ("bytes", None) => {
                if conf.get("endian").and_then(Json::as_str).unwrap_or("little") != "little" {
                    return Err(invalid(what, "big-endian `bytes` is not supported"));
                }
                Codec::Raw
            }
            ("zstd", Some(Codec::Raw)) => Codec::Zstd,
            ("sharding_indexed", None) if depth == 0 => {
                let inner = dims(conf, "chunk_shape", what)?;
                let inner_codec = v3_codecs(field(conf, "codecs", what)?, what, depth + 1)?;
                let index = field(conf, "index_codecs", what)?
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let names: Vec<&str> = index
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Json::as_str))
                    .collect();
                let index_crc = match names.as_slice() {
                    ["bytes"] => false,
                    ["bytes", "crc32c"] => true,
                    _ => {
                        return Err(invalid(
                            what,
                            format_args!("shard index codecs {names:?} are not supported"),
                        ))
                    }
                };
                let index_at_end = match conf.get("index_location").and_then(Json::as_str).unwrap_or("end") {
                    "end" => true,
                    "start" => false,
                    other => return Err(invalid(what, format_args!("index location `{other}`"))),
                };
                Codec::Sharded {
                    inner,
                    inner_codec: Box::new(inner_codec),
                    index_at_end,
                    index_crc,
                }
            }
            (other, _) => return Err(invalid(what, format_args!("codec `{other}` here is not supported"))),
        });
    }
    codec.ok_or_else(|| invalid(what, "no codecs"))
}

/// Parses a zarr v3 `zarr.json`.
pub(crate) fn parse_zarr_json(text: &[u8], key: &str) -> Result<ArrayMeta> {
    let what = &format!("{key}/zarr.json");
    let (json, dtype) = open_metadata(text, key, what, 3, "data_type")?;
    let grid = field(&json, "chunk_grid", what)?;
    if grid.get("name").and_then(Json::as_str) != Some("regular") {
        return Err(invalid(what, "only the `regular` chunk grid is supported"));
    }
    let chunks = dims(field(grid, "configuration", what)?, "chunk_shape", what)?;
    let encoding = json.get("chunk_key_encoding").unwrap_or(&Json::Null);
    let separator_of = |default| {
        encoding
            .get("configuration")
            .and_then(|c| c.get("separator"))
            .and_then(Json::as_str)
            .unwrap_or(default)
    };
    let (v3_keys, separator) = match encoding.get("name").and_then(Json::as_str).unwrap_or("default") {
        "default" => (true, separator_of("/")),
        "v2" => (false, separator_of(".")),
        other => return Err(invalid(what, format_args!("chunk key encoding `{other}`"))),
    };
    let separator = match separator {
        "/" => '/',
        "." => '.',
        other => return Err(invalid(what, format_args!("chunk key separator `{other}`"))),
    };
    let meta = ArrayMeta {
        dtype,
        shape: dims(&json, "shape", what)?,
        chunks,
        codec: v3_codecs(field(&json, "codecs", what)?, what, 0)?,
        fill: fill_bytes(json.get("fill_value"), dtype, what)?,
        v3_keys,
        separator,
    };
    check_grid(&meta, what)?;
    Ok(meta)
}

fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The chunk shape must match the rank, have no zero, and (with the element size) fit in memory;
/// inner chunks must tile the shard.
fn check_grid(meta: &ArrayMeta, what: &str) -> Result<()> {
    let size = meta.dtype.bit_size() / 8;
    if meta.chunks.len() != meta.shape.len() || meta.chunks.contains(&0) {
        return Err(invalid(
            what,
            format_args!("chunk shape {:?} does not fit shape {:?}", meta.chunks, meta.shape),
        ));
    }
    if product(&meta.shape)
        .and_then(|n| n.checked_mul(size))
        .is_none_or(|n| n > isize::MAX as usize)
    {
        return Err(invalid(
            what,
            format_args!("shape {:?} holds more bytes than fit in memory", meta.shape),
        ));
    }
    if product(&meta.chunks)
        .and_then(|n| n.checked_mul(size))
        .is_none_or(|n| n > isize::MAX as usize)
    {
        return Err(invalid(
            what,
            format_args!("chunk shape {:?} is too large", meta.chunks),
        ));
    }
    if let Codec::Sharded { inner, .. } = &meta.codec {
        let tiles =
            inner.len() == meta.chunks.len() && inner.iter().zip(&meta.chunks).all(|(&i, &c)| i > 0 && c % i == 0);
        if !tiles {
            return Err(invalid(
                what,
                format_args!("inner chunks {inner:?} do not tile shards of {:?}", meta.chunks),
            ));
        }
    }
    Ok(())
}

impl ArrayMeta {
    pub(crate) fn byte_len(&self) -> usize {
        product(&self.shape).expect("checked") * (self.dtype.bit_size() / 8)
    }

    /// The chunk index a chunk key names, if it is one of this array's chunks.
    fn chunk_index(&self, key: &str) -> Option<Vec<usize>> {
        let rest = if self.v3_keys {
            match key.strip_prefix('c') {
                Some("") if self.shape.is_empty() => return Some(Vec::new()),
                Some(rest) => rest.strip_prefix(self.separator)?,
                None => return None,
            }
        } else {
            key
        };
        if self.shape.is_empty() {
            return (!self.v3_keys && rest == "0").then(Vec::new);
        }
        let index: Vec<usize> = rest
            .split(self.separator)
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let in_grid = index.len() == self.shape.len()
            && index
                .iter()
                .zip(self.shape.iter().zip(&self.chunks))
                .all(|(&i, (&s, &c))| i < s.div_ceil(c));
        in_grid.then_some(index)
    }

    /// Reads the array `key` from `store` into a buffer of its own (`byte_len()` bytes, C order):
    /// the fill value, with every chunk present decoded over it. A chunk that is the whole array
    /// (Orbax's default) is decoded straight into the buffer's fresh memory, and a chunk that is a
    /// whole block of rows straight into its place; only other chunks (cut at the array's edge,
    /// or split along inner dimensions) go through a chunk-sized buffer.
    pub(crate) fn read(&self, store: &KvStore, key: &str) -> Result<Vec<u8>> {
        let len = self.byte_len();
        let size = self.dtype.bit_size() / 8;
        let chunk_bytes = product(&self.chunks).expect("checked") * size;
        // A stored chunk is never much larger than its decoded size (zstd adds a few bytes per
        // block; a shard adds its index).
        let limit = chunk_bytes as u64 + chunk_bytes as u64 / 8 + 1024 + 16 * 1024;
        let mut chunks = Vec::new();
        for name in store.keys_under(key)? {
            if name == ".zarray" || name == "zarr.json" || name == ".zattrs" {
                continue;
            }
            let what = format!("{key}/{name}");
            let index = self
                .chunk_index(&name)
                .ok_or_else(|| invalid(&what, format_args!("not a chunk of an array of shape {:?}", self.shape)))?;
            chunks.push((what, index));
        }
        let sharded = matches!(self.codec, Codec::Sharded { .. });
        if let ([(what, _)], true, false) = (chunks.as_slice(), self.chunks == self.shape, sharded) {
            match (&self.codec, store.get(what, limit)?) {
                (Codec::Raw, Some(stored)) if stored.len() == len => return Ok(stored),
                (Codec::Zstd, Some(stored)) => {
                    let mut out = allocate(len, what)?;
                    zstd_exact(&stored, &mut out, len, what)?;
                    return Ok(out);
                }
                (_, None) => chunks.clear(), // absent: the fill value
                _ => {}                      // a raw chunk of the wrong size: refused below
            }
        }
        let mut out = allocate(len, key)?;
        out.resize(len, 0);
        if self.fill.iter().any(|&b| b != 0) {
            fill_like(&mut out, &self.fill);
        }
        let mut scratch = Vec::new();
        for (what, index) in chunks {
            let Some(stored) = store.get(&what, limit)? else {
                continue;
            };
            if let Some(place) = self.rows_of(&index, chunk_bytes) {
                // `out` holds the fill value here, as a shard's absent inner chunks need.
                self.decode_stored(&stored, &mut out[place], &what)?;
                continue;
            }
            if scratch.is_empty() {
                scratch = vec![0u8; chunk_bytes];
            }
            fill_like(&mut scratch, &self.fill);
            self.decode_stored(&stored, &mut scratch, &what)?;
            let origin: Vec<usize> = index.iter().zip(&self.chunks).map(|(i, c)| i * c).collect();
            copy_chunk(&scratch, &self.chunks, &origin, &mut out, &self.shape, size);
        }
        Ok(out)
    }

    /// Where in the array the chunk at `index` lies, if it is one contiguous run of whole rows
    /// (every dimension but the first is whole, and the chunk is not cut at the array's end).
    fn rows_of(&self, index: &[usize], chunk_bytes: usize) -> Option<std::ops::Range<usize>> {
        let first = *index.first()?;
        if self.chunks[1..] != self.shape[1..] || (first + 1) * self.chunks[0] > self.shape[0] {
            return None;
        }
        let start = first * chunk_bytes;
        Some(start..start + chunk_bytes)
    }

    /// Decodes one stored chunk into `out`, the chunk's `chunk_bytes`, which holds the fill value
    /// where a shard may leave inner chunks absent.
    fn decode_stored(&self, stored: &[u8], out: &mut [u8], what: &str) -> Result<()> {
        match &self.codec {
            Codec::Sharded {
                inner,
                inner_codec,
                index_at_end,
                index_crc,
            } => self.read_shard(stored, inner, inner_codec, *index_at_end, *index_crc, out, what),
            codec => decode_chunk(codec, stored, out, what),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read_shard(
        &self,
        shard: &[u8],
        inner: &[usize],
        codec: &Codec,
        index_at_end: bool,
        index_crc: bool,
        out: &mut [u8],
        what: &str,
    ) -> Result<()> {
        let size = self.dtype.bit_size() / 8;
        let grid: Vec<usize> = self.chunks.iter().zip(inner).map(|(c, i)| c / i).collect();
        let n = product(&grid).expect("fits: a divisor of the chunk");
        let index_len = n
            .checked_mul(16)
            .and_then(|l| l.checked_add(if index_crc { 4 } else { 0 }))
            .filter(|&l| l <= shard.len())
            .ok_or_else(|| {
                invalid(
                    what,
                    format_args!("a shard of {} bytes cannot hold the index of {n} chunks", shard.len()),
                )
            })?;
        // Offsets in the index count from the start of the shard wherever the index is.
        let index = if index_at_end {
            &shard[shard.len() - index_len..]
        } else {
            &shard[..index_len]
        };
        let (entries, crc) = index.split_at(n * 16);
        if index_crc {
            let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
            let actual = crc32c(entries);
            if stored != actual {
                return Err(invalid(
                    what,
                    format_args!("shard index CRC-32C mismatch: stored {stored:08x}, computed {actual:08x}"),
                ));
            }
        }
        let inner_bytes = product(inner).expect("fits") * size;
        let mut buffer = vec![0u8; inner_bytes];
        for i in 0..n {
            let entry = &entries[i * 16..i * 16 + 16];
            let offset = u64::from_le_bytes(entry[..8].try_into().expect("8"));
            let len = u64::from_le_bytes(entry[8..].try_into().expect("8"));
            if offset == u64::MAX && len == u64::MAX {
                continue; // absent: the fill value
            }
            let bytes = offset
                .checked_add(len)
                .filter(|&end| end <= shard.len() as u64)
                .map(|end| &shard[offset as usize..end as usize])
                .ok_or_else(|| {
                    invalid(
                        what,
                        format_args!(
                            "inner chunk {i} at {offset}..+{len} lies outside the shard of {} bytes",
                            shard.len()
                        ),
                    )
                })?;
            decode_chunk(codec, bytes, &mut buffer, &format!("{what} (inner chunk {i})"))?;
            // The inner chunk's position within the shard, in C order of the inner grid.
            let mut rest = i;
            let mut origin = vec![0; grid.len()];
            for d in (0..grid.len()).rev() {
                origin[d] = (rest % grid[d]) * inner[d];
                rest /= grid[d];
            }
            copy_chunk(&buffer, inner, &origin, out, &self.chunks, size);
        }
        Ok(())
    }
}

/// An empty buffer with room for an array of `len` bytes, or an error naming `what`.
fn allocate(len: usize, what: &str) -> Result<Vec<u8>> {
    crate::pages::try_buffer(len).ok_or_else(|| invalid(what, format_args!("cannot allocate {len} bytes")))
}

fn fill_like(buffer: &mut [u8], fill: &[u8]) {
    if fill.iter().all(|&b| b == 0) {
        buffer.fill(0);
    } else {
        for element in buffer.chunks_exact_mut(fill.len()) {
            element.copy_from_slice(fill);
        }
    }
}

fn decode_chunk(codec: &Codec, stored: &[u8], out: &mut [u8], what: &str) -> Result<()> {
    match codec {
        Codec::Raw if stored.len() == out.len() => {
            out.copy_from_slice(stored);
            Ok(())
        }
        Codec::Raw => Err(invalid(
            what,
            format_args!(
                "an uncompressed chunk of {} bytes, its shape needs {}",
                stored.len(),
                out.len()
            ),
        )),
        Codec::Zstd => zstd_exact(stored, out, out.len(), what),
        Codec::Sharded { .. } => Err(invalid(what, "nested sharding is not supported")),
    }
}

/// Copies the part of a C-order chunk of shape `chunk` at `origin` that lies within an array of
/// `shape` into the array. Edge chunks are full-sized; their outside part is dropped.
fn copy_chunk(chunk_data: &[u8], chunk: &[usize], origin: &[usize], out: &mut [u8], shape: &[usize], size: usize) {
    let rank = shape.len();
    if rank == 0 {
        out[..size].copy_from_slice(&chunk_data[..size]);
        return;
    }
    let extent: Vec<usize> = (0..rank)
        .map(|d| chunk[d].min(shape[d].saturating_sub(origin[d])))
        .collect();
    if extent.contains(&0) {
        return;
    }
    let row = extent[rank - 1] * size;
    let mut position = vec![0usize; rank - 1];
    loop {
        let mut src = 0;
        let mut dst = 0;
        for d in 0..rank {
            let p = if d < rank - 1 { position[d] } else { 0 };
            src = src * chunk[d] + p;
            dst = dst * shape[d] + origin[d] + p;
        }
        out[dst * size..dst * size + row].copy_from_slice(&chunk_data[src * size..src * size + row]);
        // The next row: an odometer over the leading dimensions.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            position[d] += 1;
            if position[d] < extent[d] {
                break;
            }
            position[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_chunks_are_cut_to_the_array() {
        // A 3x5 array of u8 in 2x2 chunks: the chunk at (1, 2) covers only element (2, 4).
        let shape = [3, 5];
        let mut out = vec![0u8; 15];
        for (ci, cj) in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)] {
            let chunk: Vec<u8> = (0..4).map(|k| (10 * (ci * 2 + k / 2) + cj * 2 + k % 2) as u8).collect();
            copy_chunk(&chunk, &[2, 2], &[ci * 2, cj * 2], &mut out, &shape, 1);
        }
        let expected: Vec<u8> = (0..3).flat_map(|i| (0..5).map(move |j| (10 * i + j) as u8)).collect();
        assert_eq!(out, expected);
    }

    /// A `u8` array of `shape` in `chunks`, zstd-compressed or raw, with fill value `fill`, whose
    /// element at C-order position `i` is `i + 1` (a chunk's elements outside the array are 99),
    /// stored with the chunks `present`.
    fn read_array(shape: &[usize], chunks: &[usize], zstd: bool, fill: u8, present: &[&[usize]]) -> Result<Vec<u8>> {
        let compressor = if zstd { r#"{"id":"zstd","level":1}"# } else { "null" };
        let meta = format!(
            r#"{{"zarr_format":2,"dtype":"|u1","shape":{shape:?},"chunks":{chunks:?},"compressor":{compressor},"fill_value":{fill}}}"#
        );
        let array = parse_zarray(meta.as_bytes(), "a").unwrap();
        let mut files = std::collections::BTreeMap::new();
        for index in present {
            let mut chunk = vec![0u8; chunks.iter().product()];
            for (k, byte) in chunk.iter_mut().enumerate() {
                // The element's position in the array, in C order, or none past its edge.
                let (mut rest, mut flat, mut inside) = (k, 0, true);
                for d in 0..shape.len() {
                    let inner: usize = chunks[d + 1..].iter().product();
                    let at = index[d] * chunks[d] + rest / inner;
                    rest %= inner;
                    inside &= at < shape[d];
                    flat = flat * shape[d] + at;
                }
                *byte = if inside { flat as u8 + 1 } else { 99 };
            }
            let stored = if zstd {
                zstd::bulk::compress(&chunk, 1).unwrap()
            } else {
                chunk
            };
            let name = match index.iter().map(ToString::to_string).collect::<Vec<_>>().join(".") {
                scalar if scalar.is_empty() => "0".to_owned(),
                name => name,
            };
            files.insert(format!("a/{name}"), stored);
        }
        let memory = super::super::fuzz::Memory(files);
        array.read(&KvStore::files(&memory, String::new()), "a")
    }

    #[test]
    fn chunks_decode_into_their_place() {
        let whole: Vec<u8> = (1..=15).collect();
        // One chunk that is the whole array, compressed or raw.
        assert_eq!(read_array(&[3, 5], &[3, 5], true, 0, &[&[0, 0]]).unwrap(), whole);
        assert_eq!(read_array(&[3, 5], &[3, 5], false, 0, &[&[0, 0]]).unwrap(), whole);
        // Blocks of whole rows, the last cut at the array's edge.
        assert_eq!(
            read_array(&[3, 5], &[2, 5], true, 0, &[&[0, 0], &[1, 0]]).unwrap(),
            whole
        );
        // Chunks split along the inner dimension, cut at both edges.
        let all: &[&[usize]] = &[&[0, 0], &[0, 1], &[0, 2], &[1, 0], &[1, 1], &[1, 2]];
        assert_eq!(read_array(&[3, 5], &[2, 2], true, 0, all).unwrap(), whole);
        // Absent chunks keep the fill value: the whole array, a block of rows, a cut block.
        assert_eq!(read_array(&[3, 5], &[3, 5], true, 7, &[]).unwrap(), vec![7; 15]);
        let mut second_missing = whole.clone();
        second_missing[10..].fill(7);
        assert_eq!(
            read_array(&[3, 5], &[2, 5], true, 7, &[&[0, 0]]).unwrap(),
            second_missing
        );
        let mut first_missing = whole.clone();
        first_missing[..10].fill(7);
        assert_eq!(
            read_array(&[3, 5], &[2, 5], false, 7, &[&[1, 0]]).unwrap(),
            first_missing
        );
        // A scalar.
        assert_eq!(read_array(&[], &[], true, 0, &[&[]]).unwrap(), vec![1]);
    }

    #[test]
    fn a_raw_chunk_of_the_wrong_size_is_refused() {
        let meta = br#"{"zarr_format":2,"dtype":"|u1","shape":[4],"chunks":[4],"compressor":null}"#;
        let array = parse_zarray(meta, "a").unwrap();
        let memory = super::super::fuzz::Memory([("a/0".to_owned(), vec![1, 2, 3])].into_iter().collect());
        let err = array.read(&KvStore::files(&memory, String::new()), "a").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidOrbax { path, reason }
            if path == "a/0" && reason.contains("uncompressed chunk of 3 bytes, its shape needs 4")),
            "{err}"
        );
    }

    #[test]
    fn dtype_names() {
        assert_eq!(dtype_from_zarr("<f4", false), Some(Dtype::F32));
        assert_eq!(dtype_from_zarr("<b1", false), Some(Dtype::BOOL));
        assert_eq!(dtype_from_zarr("bfloat16", false), Some(Dtype::BF16));
        assert_eq!(dtype_from_zarr("float32", true), Some(Dtype::F32));
        assert_eq!(dtype_from_zarr("<f4", true), None);
        assert_eq!(dtype_from_zarr("int4", false), None);
    }

    #[test]
    fn fill_values() {
        assert_eq!(
            fill_bytes(Some(&Json::from(1.5)), Dtype::F32, "t").unwrap(),
            1.5f32.to_le_bytes()
        );
        assert_eq!(
            fill_bytes(Some(&Json::from(-2)), Dtype::I16, "t").unwrap(),
            (-2i16).to_le_bytes()
        );
        assert_eq!(fill_bytes(None, Dtype::BF16, "t").unwrap(), vec![0, 0]);
        assert!(fill_bytes(Some(&Json::from(0.5)), Dtype::I32, "t").is_err());
    }

    #[test]
    fn hostile_metadata_is_refused() {
        let huge =
            br#"{"zarr_format":2,"dtype":"<f4","shape":[4611686018427387904,4],"chunks":[1,1],"compressor":null}"#;
        let err = crate::orbax::invalid_orbax(parse_zarray(huge, "k"));
        assert!(err.contains("more bytes than fit in memory"), "{err}");
        let zero = br#"{"zarr_format":2,"dtype":"<f4","shape":[4],"chunks":[0],"compressor":null}"#;
        assert!(crate::orbax::invalid_orbax(parse_zarray(zero, "k")).contains("does not fit shape"));
        let int4 = br#"{"zarr_format":2,"dtype":"int4","shape":[4],"chunks":[4],"compressor":null}"#;
        let err = parse_zarray(int4, "params.kernel").unwrap_err();
        assert!(
            matches!(&err, Error::UnknownDtype { key, found } if key == "params.kernel" && found == "int4"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "unknown dtype at `params.kernel`: found `int4`");
    }
}
