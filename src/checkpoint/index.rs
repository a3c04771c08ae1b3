//! The index of a sharded checkpoint (`model.safetensors.index.json`), read as the safetensors
//! crate's `index.rs` and transformers read it: `weight_map` names each key's shard; `metadata`
//! may be missing, its `total_size` too, and any other metadata entries are kept as they are.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::layout::{checked_shard, Format};
use crate::{Error, Result};

/// A shard index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// `metadata`: `total_size` and whatever else the writer put there.
    #[serde(default)]
    pub metadata: IndexMetadata,
    /// Each key (for msgpack, the dict path joined with `/`) and the name of its shard.
    pub weight_map: BTreeMap<String, String>,
}

/// The `metadata` object of an index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexMetadata {
    /// The tensor bytes of all shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size: Option<u64>,
    /// Other entries, kept as written.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Index {
    /// Parses an index; `name` (its path) is for the error message.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Index> {
        serde_json::from_slice(bytes).map_err(|e| Error::InvalidIndex {
            reason: format!("{name}: not a shard index: {e}"),
        })
    }

    /// The index as transformers writes it: `json.dumps(index, indent=2, sort_keys=True)` and a
    /// newline.
    pub fn to_json(&self) -> Result<String> {
        let mut json =
            serde_json::to_string_pretty(self).map_err(|e| Error::msg(format_args!("cannot write the index: {e}")))?;
        json.push('\n');
        Ok(json)
    }

    /// The shard file names the index lists, each once, sorted; each checked to be a plain file
    /// name of `format` beside the index.
    pub fn shards(&self, format: Format) -> Result<Vec<String>> {
        let mut files = BTreeSet::new();
        for shard in self.weight_map.values() {
            files.insert(checked_shard(shard, format)?);
        }
        if files.is_empty() {
            return Err(Error::InvalidIndex {
                reason: "the index lists no shard".to_owned(),
            });
        }
        Ok(files.into_iter().map(str::to_owned).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_size_is_optional_and_other_metadata_is_kept() {
        let text = r#"{"metadata": {"format": "pt", "nested": {"a": 1}}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}"#;
        let index = Index::parse(text.as_bytes(), "x").unwrap();
        assert_eq!(index.metadata.total_size, None);
        assert_eq!(index.metadata.extra["format"], "pt");
        let back = Index::parse(index.to_json().unwrap().as_bytes(), "x").unwrap();
        assert_eq!(back, index);
        let bare = Index::parse(br#"{"weight_map": {}}"#, "x").unwrap();
        assert_eq!(bare.metadata, IndexMetadata::default());
        assert!(bare.shards(Format::Safetensors).is_err());
    }

    #[test]
    fn it_is_written_as_transformers_writes_it() {
        let index = Index {
            metadata: IndexMetadata {
                total_size: Some(12),
                extra: BTreeMap::new(),
            },
            weight_map: [("b".to_owned(), "s2".to_owned()), ("a".to_owned(), "s1".to_owned())].into(),
        };
        assert_eq!(
            index.to_json().unwrap(),
            "{\n  \"metadata\": {\n    \"total_size\": 12\n  },\n  \"weight_map\": {\n    \"a\": \"s1\",\n    \"b\": \"s2\"\n  }\n}\n"
        );
    }
}
