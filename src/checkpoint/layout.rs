//! The file names of a checkpoint directory, as Hugging Face lays them out: one file
//! (`model.safetensors`, `flax_model.msgpack`), or shards (`model-00001-of-00003.safetensors`, ...)
//! and an index (`model.safetensors.index.json`) naming each key's shard.
//!
//! A save that would reuse a shard name the current index references (same shard count) tags its
//! names instead (`model-00001-of-00003-5f3a9c1e.safetensors`): a shard the committed index lists
//! is never overwritten, which is what makes the index the commit point. transformers loads
//! whatever names the index lists, so tagged names load there as plain ones do.

use std::path::Path;

use crate::{Error, Result};

/// The file format of a checkpoint's files. New layouts (Orbax directories) get a variant here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// safetensors files.
    Safetensors,
    /// flax msgpack files (`flax.serialization.to_bytes`).
    Msgpack,
}

impl Format {
    /// The formats in the order a directory is searched: safetensors first, as transformers does.
    pub const SEARCH_ORDER: [Format; 2] = [Format::Safetensors, Format::Msgpack];

    /// The name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Msgpack => "msgpack",
        }
    }

    /// The file extension, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Safetensors => ".safetensors",
            Format::Msgpack => ".msgpack",
        }
    }

    /// The stem of the file names: `model` or `flax_model`.
    pub fn stem(self) -> &'static str {
        match self {
            Format::Safetensors => "model",
            Format::Msgpack => "flax_model",
        }
    }

    /// The one-file name: `model.safetensors`, `flax_model.msgpack`.
    pub fn single(self) -> &'static str {
        match self {
            Format::Safetensors => "model.safetensors",
            Format::Msgpack => "flax_model.msgpack",
        }
    }

    /// The index name: `model.safetensors.index.json`, `flax_model.msgpack.index.json`.
    pub fn index(self) -> &'static str {
        match self {
            Format::Safetensors => "model.safetensors.index.json",
            Format::Msgpack => "flax_model.msgpack.index.json",
        }
    }

    /// The format of a file by its name: `.msgpack` is msgpack, anything else safetensors.
    pub fn of_file(name: &str) -> Format {
        if name.ends_with(".msgpack") {
            Format::Msgpack
        } else {
            Format::Safetensors
        }
    }

    /// The format whose index is named `name` (any `*.safetensors.index.json` or
    /// `*.msgpack.index.json`).
    pub fn of_index(name: &str) -> Option<Format> {
        Format::SEARCH_ORDER
            .into_iter()
            .find(|f| name.ends_with(&format!("{}.index.json", f.extension())))
    }

    /// Shard `n` of `of` (from 1): `model-00002-of-00003.safetensors`, or with a tag
    /// `model-00002-of-00003-5f3a9c1e.safetensors`.
    pub fn shard_name(self, n: usize, of: usize, tag: Option<&str>) -> String {
        let (stem, ext) = (self.stem(), self.extension());
        match tag {
            Some(tag) => format!("{stem}-{n:05}-of-{of:05}-{tag}{ext}"),
            None => format!("{stem}-{n:05}-of-{of:05}{ext}"),
        }
    }

    /// Whether `name` is a shard name of this format, tagged or not.
    pub fn is_shard(self, name: &str) -> bool {
        let Some(rest) = name
            .strip_prefix(self.stem())
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(self.extension()))
        else {
            return false;
        };
        let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
        let numbered = rest.len() >= 14 && digits(&rest[..5]) && &rest[5..9] == "-of-" && digits(&rest[9..14]);
        let tag = &rest[rest.len().min(14)..];
        numbered
            && (tag.is_empty()
                || (tag.len() > 1 && tag.starts_with('-') && tag[1..].bytes().all(|b| b.is_ascii_hexdigit())))
    }

    /// Whether `name` is a file of this format's layout: a shard, the one file or the index.
    pub fn owns(self, name: &str) -> bool {
        name == self.single() || name == self.index() || self.is_shard(name)
    }

    /// Whether `name` is a temporary file that a write of this layout made (`.NAME.XXXXXX.tmp`,
    /// NAME one of [`owns`](Format::owns)): a killed write leaves them, the next write removes
    /// them.
    pub fn is_temporary(self, name: &str) -> bool {
        let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            return false;
        };
        let Some((target, random)) = inner.rsplit_once('.') else {
            return false;
        };
        !random.is_empty() && self.owns(target)
    }
}

/// Checks a shard file name from an index: a plain file name in the index's directory, with the
/// extension of the format.
pub(crate) fn checked_shard(name: &str, format: Format) -> Result<&str> {
    let extension = format.extension();
    let plain = !name.is_empty()
        && !name.contains(['/', '\\', '\0'])
        && name != "."
        && name != ".."
        && !Path::new(name).is_absolute()
        && name.ends_with(extension);
    if plain {
        Ok(name)
    } else {
        Err(Error::InvalidIndex {
            reason: format!("the index names shard `{name}`, which is not a `{extension}` file beside it"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_recognized() {
        let st = Format::Safetensors;
        assert_eq!(st.shard_name(2, 13, None), "model-00002-of-00013.safetensors");
        assert_eq!(
            st.shard_name(2, 13, Some("0af3")),
            "model-00002-of-00013-0af3.safetensors"
        );
        assert!(st.is_shard("model-00002-of-00013.safetensors"));
        assert!(st.is_shard("model-00002-of-00013-0af3.safetensors"));
        assert!(!st.is_shard("model-00002-of-00013-.safetensors"));
        assert!(!st.is_shard("model-00002-of-00013-xyz.safetensors"));
        assert!(!st.is_shard("model-2-of-13.safetensors"));
        assert!(!st.is_shard("model.safetensors"));
        assert!(!st.is_shard("model-00002-of-00013.safetensors.tmp"));
        assert!(Format::Msgpack.is_shard("flax_model-00003-of-00004.msgpack"));
        assert!(!Format::Msgpack.is_shard("model-00003-of-00004.safetensors"));
    }

    #[test]
    fn temporary_files_of_a_layout_are_recognized() {
        let st = Format::Safetensors;
        assert!(st.is_temporary(".model-00001-of-00002.safetensors.Ab12Cd.tmp"));
        assert!(st.is_temporary(".model.safetensors.index.json.Ab12Cd.tmp"));
        assert!(st.is_temporary(".model.safetensors.x.tmp"));
        assert!(!st.is_temporary(".config.json.Ab12Cd.tmp"));
        assert!(!st.is_temporary(".model.safetensors.tmp"));
        assert!(!st.is_temporary("model.safetensors"));
        assert!(!Format::Msgpack.is_temporary(".model.safetensors.x.tmp"));
    }

    #[test]
    fn shard_names_from_an_index_stay_in_its_directory() {
        assert!(checked_shard("model-00001-of-00002.safetensors", Format::Safetensors).is_ok());
        for bad in [
            "../model.safetensors",
            "/etc/passwd.safetensors",
            "a/b.safetensors",
            "model.bin",
            "",
            "..",
        ] {
            assert!(checked_shard(bad, Format::Safetensors).is_err(), "{bad}");
        }
    }
}
