//! Opening a checkpoint, whatever its layout: one safetensors file, one flax msgpack file, or a
//! directory (or index file) of a sharded checkpoint in the Hugging Face layout, or an Orbax
//! directory (item, step or `CheckpointManager` root). Files are mapped, and tensors are listed as
//! views of the mappings, so that looking at a checkpoint reads its headers and nothing else; an
//! Orbax checkpoint's arrays are compressed chunks, so it is decoded in full by `safejax::orbax`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safejax::checkpoint::{locate, Located};
use safejax::{Deserializer, DynTensorView, MappedFile, Options, Value};

/// The file format of a checkpoint: the library's, which also names its files.
pub use safejax::checkpoint::Format;

/// One mapped file of a checkpoint.
pub struct File {
    /// Where it is.
    pub path: PathBuf,
    map: MappedFile,
}

impl File {
    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_bytes()
    }
}

/// An opened checkpoint: its files, mapped.
pub struct Checkpoint {
    /// The path the user gave.
    pub path: PathBuf,
    /// The format of its files.
    pub format: Format,
    /// The index of a sharded checkpoint.
    pub index: Option<PathBuf>,
    /// The files holding the tensors (one, or the shards).
    pub files: Vec<File>,
    /// The index's `weight_map`: key to shard file name.
    weight_map: BTreeMap<String, String>,
    /// The tree of an Orbax checkpoint (then `files` is empty), decoded when opened.
    orbax: Option<Value>,
}

/// One tensor of a checkpoint.
pub struct Entry<'a> {
    /// The flat key (`.` between the levels of nested msgpack dicts).
    pub key: String,
    /// Its dtype, shape and bytes, borrowed from the mapped file.
    pub tensor: DynTensorView<'a>,
    /// Which of [`Checkpoint::files`] holds it.
    pub file: usize,
}

/// The tensors and metadata of a checkpoint.
pub struct Contents<'a> {
    /// Every tensor, in file order (header order; for msgpack, dict order), shard after shard.
    pub entries: Vec<Entry<'a>>,
    /// The `__metadata__` of the safetensors file, or of the first shard that has one.
    pub metadata: BTreeMap<String, String>,
}

impl Contents<'_> {
    /// The keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// The tensors by key.
    pub fn by_key(&self) -> BTreeMap<&str, &DynTensorView<'_>> {
        self.entries.iter().map(|e| (e.key.as_str(), &e.tensor)).collect()
    }
}

impl Checkpoint {
    /// Opens `path`: a `.safetensors` or `.msgpack` file, an `*.index.json`, or a checkpoint
    /// directory.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let Located { format, index, files } = match locate(path) {
            Ok(located) => located,
            Err(err) if path.is_dir() => return Checkpoint::open_orbax(path, err),
            Err(err) => return Err(err.into()),
        };
        let (index, weight_map) = index.map(|(path, index)| (path, index.weight_map)).unzip();
        let files = files
            .into_iter()
            .map(|path| {
                // SAFETY: the mapping is only read while the command runs. Another process
                // rewriting the checkpoint in place at the same time could change what is read;
                // safejax itself never rewrites a file in place (it renames a new file over it).
                let map = unsafe { MappedFile::open(&path) }.with_context(|| format!("{}", path.display()))?;
                Ok(File { path, map })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Checkpoint {
            path: path.to_owned(),
            format,
            index,
            files,
            weight_map: weight_map.unwrap_or_default(),
            orbax: None,
        })
    }

    /// Opens a directory with no safetensors or msgpack checkpoint as an Orbax one; if it is not
    /// one either, says both.
    fn open_orbax(path: &Path, not_hf: safejax::Error) -> Result<Checkpoint> {
        let tree: Value = safejax::orbax::from_dir(path)
            .map_err(|not_orbax| anyhow::anyhow!("{not_hf}; nor is it an Orbax checkpoint: {not_orbax}"))?;
        Ok(Checkpoint {
            path: path.to_owned(),
            // What `convert` writes by default from an Orbax checkpoint.
            format: Format::Safetensors,
            index: None,
            files: Vec::new(),
            weight_map: BTreeMap::new(),
            orbax: Some(tree),
        })
    }

    /// Whether the checkpoint is an Orbax directory.
    pub fn is_orbax(&self) -> bool {
        self.orbax.is_some()
    }

    /// The name of its format: `safetensors`, `msgpack` or `orbax`.
    pub fn format_name(&self) -> &'static str {
        if self.is_orbax() {
            "orbax"
        } else {
            self.format.name()
        }
    }

    /// Whether the checkpoint is sharded (has an index).
    pub fn is_sharded(&self) -> bool {
        self.index.is_some()
    }

    /// Reads the headers: every tensor, as a view of the mapped files, and the metadata.
    pub fn contents(&self) -> Result<Contents<'_>> {
        if let Some(tree) = &self.orbax {
            let entries = tree
                .leaves()
                .map(|(key, t)| {
                    let tensor = DynTensorView::new(t.dtype(), t.shape().to_vec(), t.as_bytes())
                        .with_context(|| format!("`{key}`"))?;
                    Ok(Entry { key, tensor, file: 0 })
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Contents {
                entries,
                metadata: BTreeMap::new(),
            });
        }
        let mut entries = Vec::new();
        let mut metadata = None;
        let mut seen = BTreeSet::new();
        for (n, file) in self.files.iter().enumerate() {
            let context = || file.path.display().to_string();
            let de = match self.format {
                Format::Safetensors => Deserializer::from_slice(file.bytes()),
                Format::Msgpack => Deserializer::from_msgpack(file.bytes(), Options::new()),
            }
            .with_context(context)?;
            if metadata.is_none() {
                metadata = de.metadata().cloned();
            }
            let order: Vec<String> = de.keys().map(str::to_owned).collect();
            let mut tensors: BTreeMap<String, DynTensorView<'_>> = de.deserialize().with_context(context)?;
            for key in order {
                let Some(tensor) = tensors.remove(&key) else {
                    bail!("{}: `{key}` is listed but cannot be read", file.path.display());
                };
                if !seen.insert(key.clone()) {
                    bail!("`{key}` is in more than one shard (again in {})", file.path.display());
                }
                if self.format == Format::Safetensors && self.index.is_some() {
                    let listed = self.weight_map.get(&key).map(String::as_str);
                    let name = file.path.file_name().and_then(|n| n.to_str());
                    if listed != name {
                        bail!(
                            "`{key}` is in {}, but the index lists it in {}",
                            file.path.display(),
                            listed.unwrap_or("no shard")
                        );
                    }
                }
                entries.push(Entry { key, tensor, file: n });
            }
        }
        if self.format == Format::Safetensors {
            if let Some(missing) = self.weight_map.keys().find(|k| !seen.contains(k.as_str())) {
                bail!("the index lists `{missing}`, which no shard holds");
            }
        }
        Ok(Contents {
            entries,
            metadata: metadata.unwrap_or_default(),
        })
    }

    /// A short description of the layout: `safetensors`, `msgpack, 4 shards`, `orbax`.
    pub fn layout(&self) -> String {
        if self.is_orbax() {
            return "orbax".to_owned();
        }
        match &self.index {
            Some(_) => format!("{}, {} shards", self.format.name(), self.files.len()),
            None => self.format.name().to_owned(),
        }
    }
}
