//! An item's `_METADATA`: which tree paths hold arrays, and how the item is stored.

use serde_json::Value as Json;

use super::invalid;
use crate::Result;

/// How an item's arrays are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemMetadata {
    /// `None` when `_METADATA` does not say (then: whether `manifest.ocdbt` exists).
    pub use_ocdbt: Option<bool>,
    pub use_zarr3: bool,
    /// The arrays: each as its tree path's parts.
    pub arrays: Vec<Vec<String>>,
}

/// Value types stored as arrays (`jax.Array`, `np.ndarray`, and Python scalars as 0-d arrays).
/// Strings (`_strings.json`), `None` and empty containers are not tensors and are skipped.
const ARRAY_TYPES: [&str; 3] = ["jax.Array", "np.ndarray", "scalar"];

pub(crate) fn parse(text: &[u8], what: &str) -> Result<ItemMetadata> {
    let json: Json = serde_json::from_slice(text).map_err(|e| invalid(what, format_args!("not JSON: {e}")))?;
    let tree = json
        .get("tree_metadata")
        .and_then(Json::as_object)
        .ok_or_else(|| invalid(what, "no `tree_metadata` object"))?;
    let mut arrays = Vec::new();
    for (name, entry) in tree {
        let value = entry.get("value_metadata").unwrap_or(&Json::Null);
        let value_type = value.get("value_type").and_then(Json::as_str).unwrap_or("");
        let skip = value.get("skip_deserialize").and_then(Json::as_bool).unwrap_or(false);
        if skip || !ARRAY_TYPES.contains(&value_type) {
            continue;
        }
        let keys = entry
            .get("key_metadata")
            .and_then(Json::as_array)
            .ok_or_else(|| invalid(what, format_args!("`{name}` has no `key_metadata` list")))?;
        let parts = keys
            .iter()
            .map(|k| match k.get("key") {
                Some(Json::String(s)) => Some(s.clone()),
                Some(Json::Number(n)) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| invalid(what, format_args!("`{name}`: a key is neither a string nor a number")))?;
        if parts.is_empty() {
            return Err(invalid(what, format_args!("`{name}`: an empty tree path")));
        }
        arrays.push(parts);
    }
    arrays.sort();
    Ok(ItemMetadata {
        use_ocdbt: json.get("use_ocdbt").and_then(Json::as_bool),
        use_zarr3: json.get("use_zarr3").and_then(Json::as_bool).unwrap_or(false),
        arrays,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_listed_and_the_rest_skipped() {
        let text = br#"{"tree_metadata": {
            "('params', 'w')": {"key_metadata": [{"key": "params", "key_type": 2}, {"key": "w", "key_type": 2}],
                                "value_metadata": {"value_type": "jax.Array", "skip_deserialize": false}},
            "('layers', 0, 'b')": {"key_metadata": [{"key": "layers", "key_type": 2}, {"key": 0, "key_type": 1}, {"key": "b", "key_type": 2}],
                                "value_metadata": {"value_type": "scalar", "skip_deserialize": false}},
            "('name',)": {"key_metadata": [{"key": "name", "key_type": 2}], "value_metadata": {"value_type": "string"}},
            "('opt', '1')": {"key_metadata": [{"key": "opt", "key_type": 2}], "value_metadata": {"value_type": "None", "skip_deserialize": true}}
        }, "use_ocdbt": true, "use_zarr3": false}"#;
        let meta = parse(text, "_METADATA").unwrap();
        assert_eq!(meta.use_ocdbt, Some(true));
        assert_eq!(meta.arrays, vec![vec!["layers", "0", "b"], vec!["params", "w"]]);
    }
}
