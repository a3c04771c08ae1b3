//! The one error type of the crate.

use std::fmt::{self, Display};
use std::path::{Path, PathBuf};

use crate::Dtype;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while writing or reading params.
///
/// Messages name the full key as written in the file and, for mismatches, what the Rust type expected
/// and what the file holds; [`Error::key`] gives that key to code. Match on the variants (and on an
/// I/O error's [`kind`](std::io::Error::kind)), never on the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file, a directory or a writer failed.
    #[error("{}{source}", io_prefix(path.as_deref()))]
    Io {
        /// The file or directory, or `None` for a writer or reader the caller handed over.
        path: Option<PathBuf>,
        /// What the system said.
        source: std::io::Error,
    },

    /// An object store request failed (a missing object, a refused or broken connection).
    #[cfg(feature = "object-store")]
    #[error("object `{path}`: {source}")]
    Remote {
        /// The object's path in the store.
        path: String,
        /// What the store said.
        source: object_store::Error,
    },

    /// An error in one file or object of several (a shard of a checkpoint, an object in a store).
    #[error("`{path}`: {source}")]
    InFile {
        /// The file, or the object's path in its store.
        path: String,
        /// The error, which names the key if it has one ([`Error::key`] looks through).
        source: Box<Error>,
    },

    /// An upload of one object of a checkpoint stopped because another object's failed.
    #[error("upload cancelled: another object of the checkpoint failed")]
    Cancelled,

    /// A directory or store prefix holds no checkpoint this crate reads.
    #[error("`{path}`: no checkpoint: none of {}", Alternatives(looked_for))]
    NoCheckpoint {
        /// The directory or prefix.
        path: String,
        /// The file names looked for, in order.
        looked_for: Vec<&'static str>,
    },

    /// The input is in the other format this crate reads (flax msgpack given to a safetensors
    /// reader, or the reverse).
    #[error("{}looks like {found}, not {expected}: read it with `{instead}`", input_prefix(path.as_deref()))]
    WrongFormat {
        /// The file, if the input came from one.
        path: Option<PathBuf>,
        /// The format the input looks like.
        found: &'static str,
        /// The format the reader expected.
        expected: &'static str,
        /// The function that reads it.
        instead: &'static str,
    },

    /// The input ends before the header or the data it announces.
    #[error("truncated file: {what} needs {needed} bytes, found {found}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        found: u64,
    },

    /// The header length exceeds the limit read before any allocation.
    #[error("header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge {
        /// The length announced by the file.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// The JSON header is malformed.
    #[error("invalid header: {reason}")]
    InvalidHeader {
        /// What is wrong.
        reason: String,
    },

    /// A sharded checkpoint's index is malformed, names a shard outside its directory, or disagrees
    /// with its shards.
    #[error("invalid checkpoint index: {reason}")]
    InvalidIndex {
        /// What is wrong.
        reason: String,
    },

    /// A msgpack file is malformed (cut short, a wrong marker, a bad extension or array header,
    /// bytes after the top-level dict), or holds what no tensor can (strings, complex128).
    #[error("invalid msgpack at byte {offset}{}: {reason}", in_key(key))]
    InvalidMsgpack {
        /// The key path of the value being read (`params.h.0.attn.kernel`, list elements by
        /// index), or empty at the top level.
        key: String,
        /// Where in the input the value or field that is wrong starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// An Orbax checkpoint is malformed or hostile: `path` names the file (or the array, within
    /// the checkpoint) and `reason` what was expected and what was found.
    #[error("invalid Orbax checkpoint at `{path}`: {reason}")]
    InvalidOrbax {
        /// The file, key or array, relative to the checkpoint directory.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// One header entry is malformed (shape, dtype size, offsets).
    /// The header's `__metadata__` is not a map of strings to strings (or `null`).
    #[error("invalid `__metadata__`: expected a map of strings to strings, found {reason}")]
    InvalidMetadata {
        /// What was found instead.
        reason: String,
    },

    /// One header entry is malformed (its fields, its offsets, a shape of too many dimensions).
    #[error("invalid entry `{key}`: {reason}")]
    InvalidEntry {
        /// The entry's key.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A header entry names a dtype that safetensors does not define.
    #[error("unknown dtype at `{key}`: found `{found}`")]
    UnknownDtype {
        /// The entry's key.
        key: String,
        /// The dtype as written.
        found: String,
    },

    /// A header entry's shape holds more elements, or bytes, than a `usize` counts.
    #[error("shape overflow at `{key}`: {shape:?} holds more bytes than fit in memory")]
    ShapeOverflow {
        /// The entry's key.
        key: String,
        /// The shape as written.
        shape: Vec<u64>,
    },

    /// A header entry's byte range is not the size of its dtype and shape.
    #[error("size mismatch at `{key}`: {dtype} shape {shape:?} needs {expected} bytes, found {found}")]
    DataSizeMismatch {
        /// The entry's key.
        key: String,
        /// Its dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<u64>,
        /// Bytes that the dtype and shape need.
        expected: u64,
        /// Bytes that the data offsets span.
        found: u64,
    },

    /// Two tensors' byte ranges overlap.
    #[error("invalid layout: `{key}` starts at byte {start}, inside `{previous}`, which ends at {previous_end}")]
    OverlappingData {
        /// The tensor that starts inside another.
        key: String,
        /// Where it starts in the data section.
        start: u64,
        /// The tensor it starts inside.
        previous: String,
        /// Where that one ends.
        previous_end: u64,
    },

    /// Bytes of the data section that belong to no tensor, between two tensors.
    #[error("invalid layout: bytes {start}..{end} belong to no tensor (before `{next}`)")]
    DataGap {
        /// The first byte of the gap in the data section.
        start: u64,
        /// The end of the gap.
        end: u64,
        /// The tensor after the gap.
        next: String,
    },

    /// Bytes after the last tensor.
    #[error("invalid layout: {len} trailing byte{} after the last tensor", if *len == 1 { "" } else { "s" })]
    TrailingBytes {
        /// How many.
        len: u64,
    },

    /// A leaf's dtype in the file is not the Rust leaf's, and conversion is off or impossible.
    #[error("dtype mismatch at `{key}`: expected {expected}, found {found}")]
    DtypeMismatch {
        /// The full key.
        key: String,
        /// The dtype of the Rust leaf.
        expected: Dtype,
        /// The dtype in the file.
        found: Dtype,
    },

    /// A leaf's shape does not fit the Rust leaf (a scalar that is not 0-d, a wrong rank).
    #[error("shape mismatch at `{key}`: expected {expected}, found {found:?}")]
    ShapeMismatch {
        /// The full key.
        key: String,
        /// What the Rust leaf accepts, in words.
        expected: String,
        /// The shape in the file.
        found: Vec<usize>,
    },

    /// A leaf's shape is not the one its field declares with `#[safejax(shape = [...])]`: a
    /// different rank, a different size, or a named size bound to another value by an earlier leaf
    /// of the same load or write.
    #[error(
        "shape mismatch at `{key}`: expected {}, found {found:?}{}",
        DimList(expected),
        BoundBy(expected)
    )]
    DeclaredShapeMismatch {
        /// The full key.
        key: String,
        /// The declared shape, with the sizes its named dimensions were bound to so far.
        expected: Vec<ExpectedDim>,
        /// The shape in the file, or of the tensor being written.
        found: Vec<usize>,
    },

    /// A value does not fit the dtype it is converted to.
    #[error("cannot convert `{key}` from {from} to {to}: {reason}")]
    Conversion {
        /// The full key.
        key: String,
        /// The dtype in the file.
        from: Dtype,
        /// The dtype of the Rust leaf.
        to: Dtype,
        /// Why.
        reason: String,
    },

    /// Keys the type needs are absent from the file; every one is listed, sorted. The keys of the
    /// file that the type does not use are listed with them (unless unknown keys are allowed), so
    /// that one error shows both sides of a file that does not fit its type. The message counts
    /// each list and shows its first few keys.
    #[error("{}{}", KeyList { what: "missing", keys, hints }, UnknownPart { keys: unknown, hints: unknown_hints })]
    MissingKeys {
        /// The missing keys.
        keys: Vec<String>,
        /// For each missing key, the nearest key the file has that the type does not use.
        hints: Vec<Option<String>>,
        /// The file's keys that the type does not use, sorted; empty if there are none or unknown
        /// keys are allowed.
        unknown: Vec<String>,
        /// For each unknown key, the nearest key the type expects.
        unknown_hints: Vec<Option<String>>,
    },

    /// The file holds keys the type does not use (and unknown keys are not allowed); every one is
    /// listed, sorted. The message counts them and shows the first few.
    #[error("{}", KeyList { what: "unknown", keys, hints })]
    UnknownKeys {
        /// The unknown keys.
        keys: Vec<String>,
        /// For each, the nearest key the type expects.
        hints: Vec<Option<String>>,
    },

    /// Part of an `Option` subtree is in the file and part is not.
    #[error("`{key}` is partly present: {}", Quoted(missing))]
    PartlyPresent {
        /// Where the optional subtree starts.
        key: String,
        /// The keys of the subtree that are absent.
        missing: Vec<String>,
    },

    /// The file's keys nest a recursive type deeper than the loader follows.
    #[error("`{key}` nests deeper than {max} levels")]
    NestingTooDeep {
        /// The key where the limit was reached.
        key: String,
        /// The limit.
        max: usize,
    },

    /// Two leaves under one key: in a file's header, or about to be written.
    #[error("duplicate key `{key}`")]
    DuplicateKey {
        /// The key.
        key: String,
    },

    /// A key that cannot be written (empty, or `__metadata__`).
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },

    /// A tensor built from parts whose sizes disagree.
    #[error("shape {shape:?} holds {expected} elements, but the data has {found}")]
    ShapeDataMismatch {
        /// The shape.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        found: usize,
    },

    /// A list declared with a fixed count (`#[safejax(len = N)]` on a `Vec` field) holds another
    /// count of elements when it is written.
    #[error("length mismatch at `{key}`: expected {expected} elements, found {found}")]
    LengthMismatch {
        /// The list's key.
        key: String,
        /// The count its field declares.
        expected: usize,
        /// The count the value holds.
        found: usize,
    },

    /// Writing serializes the params twice (once to lay the file out, once to write its data), and
    /// the second pass gave other keys or tensor sizes than the first: a `Serialize` impl that is not
    /// deterministic.
    #[error("the params serialized differently on the second pass (a `Serialize` impl that is not deterministic?)")]
    SerializedDifferently,

    /// A URL that is not one, or from which object_store makes no store: a scheme or host it does
    /// not know (or was built without), or settings its store builder refuses.
    #[cfg(feature = "object-store")]
    #[error("invalid URL `{url}`: {source}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why: a [`url::ParseError`] for text that is not a URL, an [`object_store::Error`] for
        /// one that makes no store.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A function of [`remote::blocking`](crate::remote::blocking), which runs its own runtime,
    /// was called on a thread that is already inside an async runtime (where blocking on it would
    /// panic); async code uses [`remote::Remote`](crate::remote::Remote).
    #[cfg(feature = "object-store")]
    #[error("safejax::remote::blocking called inside an async runtime: use safejax::remote::Remote")]
    BlockingInAsync,

    /// Keys that a layout conversion ([`torch::Mapping`](crate::torch::Mapping)) cannot convert
    /// without the caller's decision (a `keep` or a `permute` by pattern): kernels whose axes could go
    /// more than one way, of a rank no rule takes, or with a permutation that does not fit. Every one
    /// is listed, in the order given, each with why.
    #[error(
        "{} key{} cannot be converted without a decision (keep or permute them by pattern): {}",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        reasons.join("; ")
    )]
    UndecidedKeys {
        /// The source keys.
        keys: Vec<String>,
        /// For each, why (which names the key).
        reasons: Vec<String>,
    },

    /// Two source keys of a layout conversion ([`torch::Mapping`](crate::torch::Mapping)) map to
    /// one target name.
    #[error("`{first}` and `{second}` both become `{target}`")]
    TargetCollision {
        /// The source key that took the name first.
        first: String,
        /// The source key that maps onto it too; [`Error::key`] returns it.
        second: String,
        /// The target name.
        target: String,
    },

    /// The Rust value does not follow its `Params` schema (a hand-written `Serialize` or
    /// `Deserialize` that disagrees with the derive), or another serde-level error.
    #[error("{}{msg}", at(key))]
    Message {
        /// The key where it happened, if known.
        key: Option<String>,
        /// What happened.
        msg: String,
    },
}

/// One dimension of a declared shape, as [`Error::DeclaredShapeMismatch`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDim {
    /// The dimension's name (`d_model`), for a named dimension.
    pub name: Option<String>,
    /// The size it must have: the declared one, or the one a named dimension is bound to; `None` for
    /// `_` and for a named dimension not yet bound.
    pub size: Option<usize>,
    /// The key of the leaf that bound a named dimension to `size`.
    pub bound_by: Option<String>,
}

impl Display for ExpectedDim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.name, self.size) {
            (Some(name), Some(size)) => write!(f, "{name}={size}"),
            (Some(name), None) => f.write_str(name),
            (None, Some(size)) => write!(f, "{size}"),
            (None, None) => f.write_str("_"),
        }
    }
}

/// "[d_model=64, 192]".
struct DimList<'a>(&'a [ExpectedDim]);

impl Display for DimList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", dims.join(", "))
    }
}

/// " (d_model bound to 64 by `wte.embedding`)": where each named size came from, once per name.
struct BoundBy<'a>(&'a [ExpectedDim]);

impl Display for BoundBy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown: Vec<&str> = Vec::new();
        for dim in self.0 {
            let (Some(name), Some(size), Some(key)) = (&dim.name, dim.size, &dim.bound_by) else {
                continue;
            };
            if shown.contains(&name.as_str()) {
                continue;
            }
            f.write_str(if shown.is_empty() { " (" } else { ", " })?;
            write!(f, "{name} bound to {size} by `{key}`")?;
            shown.push(name);
        }
        if !shown.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// "1 dimension", "3 dimensions".
pub(crate) fn dimensions(rank: usize) -> String {
    format!("{rank} dimension{}", if rank == 1 { "" } else { "s" })
}

/// " in `key`", or nothing for the top level.
fn in_key(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!(" in `{key}`")
    }
}

fn at(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("at `{k}`: ")).unwrap_or_default()
}

/// What a message starts with: the quoted path and `then`, or `otherwise` without a path.
struct Prefix<'a> {
    path: Option<&'a Path>,
    then: &'static str,
    otherwise: &'static str,
}

/// An I/O error's prefix: "`/x/model.safetensors`: ", or "I/O error: " for a caller's writer.
fn io_prefix(path: Option<&Path>) -> Prefix<'_> {
    Prefix {
        path,
        then: ": ",
        otherwise: "I/O error: ",
    }
}

/// "`/x/model.msgpack` " before a sentence about the file, or "the input " for bytes.
fn input_prefix(path: Option<&Path>) -> Prefix<'_> {
    Prefix {
        path,
        then: " ",
        otherwise: "the input ",
    }
}

impl Display for Prefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path {
            Some(path) => write!(f, "`{}`{}", path.display(), self.then),
            None => f.write_str(self.otherwise),
        }
    }
}

/// "`a`, `b` or `c`".
struct Alternatives<'a>(&'a [&'static str]);

impl Display for Alternatives<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            match i {
                0 => {}
                _ if i + 1 == self.0.len() => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            write!(f, "`{name}`")?;
        }
        Ok(())
    }
}

struct Quoted<'a>(&'a [String]);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing ")?;
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{key}`")?;
        }
        Ok(())
    }
}

struct KeyList<'a> {
    what: &'static str,
    keys: &'a [String],
    hints: &'a [Option<String>],
}

/// How many keys of a list of missing or unknown keys a message shows; the error holds them all.
const SHOWN_KEYS: usize = 5;

impl Display for KeyList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.keys.len();
        write!(f, "{n} {} key{}: ", self.what, if n == 1 { "" } else { "s" })?;
        for (i, key) in self.keys.iter().take(SHOWN_KEYS).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{key}`")?;
            if let Some(Some(hint)) = self.hints.get(i) {
                write!(f, " (did you mean `{hint}`?)")?;
            }
        }
        if n > SHOWN_KEYS {
            write!(f, " and {} more", n - SHOWN_KEYS)?;
        }
        Ok(())
    }
}

/// "; 2 unknown keys: `a`, `b`" after the missing keys, or nothing.
struct UnknownPart<'a> {
    keys: &'a [String],
    hints: &'a [Option<String>],
}

impl Display for UnknownPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.keys.is_empty() {
            return Ok(());
        }
        let list = KeyList {
            what: "unknown",
            keys: self.keys,
            hints: self.hints,
        };
        write!(f, "; {list}")
    }
}

impl Error {
    /// The key the error is about, as written in the file, if it is about one: the leaf of a
    /// mismatch, the entry of a malformed header, the first of a list of missing or unknown keys.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::InvalidEntry { key, .. }
            | Error::UnknownDtype { key, .. }
            | Error::ShapeOverflow { key, .. }
            | Error::DataSizeMismatch { key, .. }
            | Error::OverlappingData { key, .. }
            | Error::DtypeMismatch { key, .. }
            | Error::ShapeMismatch { key, .. }
            | Error::DeclaredShapeMismatch { key, .. }
            | Error::Conversion { key, .. }
            | Error::PartlyPresent { key, .. }
            | Error::NestingTooDeep { key, .. }
            | Error::DuplicateKey { key }
            | Error::InvalidKey { key, .. }
            | Error::LengthMismatch { key, .. }
            | Error::TargetCollision { second: key, .. } => Some(key),
            Error::DataGap { next, .. } => Some(next),
            Error::InvalidMsgpack { key, .. } => Some(key.as_str()).filter(|k| !k.is_empty()),
            Error::MissingKeys { keys, .. } | Error::UnknownKeys { keys, .. } | Error::UndecidedKeys { keys, .. } => {
                keys.first().map(String::as_str)
            }
            Error::Message { key, .. } => key.as_deref(),
            Error::InFile { source, .. } => source.key(),
            _ => None,
        }
    }

    /// An I/O error on the file or directory `path` (also for code that writes checkpoint files
    /// through [`crate::checkpoint::write_file`], such as the command-line tool).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: Some(path.into()),
            source,
        }
    }

    /// An I/O error on a writer or reader the caller handed over, which has no path.
    pub(crate) fn stream(source: std::io::Error) -> Self {
        Error::Io { path: None, source }
    }

    /// Names `path` in an I/O error that has no path yet (one from a writer over that file).
    pub(crate) fn or_path(self, path: &Path) -> Self {
        match self {
            Error::Io { path: None, source } => Error::io(path, source),
            other => other,
        }
    }

    /// `error`, which happened in the file or object `path` of several.
    pub(crate) fn in_file(path: impl Display, error: Error) -> Self {
        Error::InFile {
            path: path.to_string(),
            source: Box::new(error),
        }
    }

    pub(crate) fn msg(msg: impl Display) -> Self {
        Error::Message {
            key: None,
            msg: msg.to_string(),
        }
    }

    pub(crate) fn at(key: impl Into<String>, msg: impl Display) -> Self {
        Error::Message {
            key: Some(key.into()),
            msg: msg.to_string(),
        }
    }

    /// Gives a keyless message the key where it happened.
    pub(crate) fn with_key(self, key: &str) -> Self {
        match self {
            Error::Message { key: None, msg } => Error::Message {
                key: Some(key.to_owned()),
                msg,
            },
            other => other,
        }
    }

    pub(crate) fn header(reason: impl Display) -> Self {
        Error::InvalidHeader {
            reason: reason.to_string(),
        }
    }
}

impl serde::ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::msg(msg)
    }
}

impl serde::de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error::msg(msg)
    }
}

/// Names the path of a failed I/O operation: `std::fs::read(path).at(path)?`.
pub(crate) trait IoAt<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoAt<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Names the object of a failed store request: `store.get(path).await.at_object(path)?`.
#[cfg(feature = "object-store")]
pub(crate) trait ObjectAt<T> {
    fn at_object(self, path: &object_store::path::Path) -> Result<T>;
}

#[cfg(feature = "object-store")]
impl<T> ObjectAt<T> for std::result::Result<T, object_store::Error> {
    fn at_object(self, path: &object_store::path::Path) -> Result<T> {
        self.map_err(|source| Error::Remote {
            path: path.to_string(),
            source,
        })
    }
}
