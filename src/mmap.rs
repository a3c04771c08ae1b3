//! Loading from a memory-mapped file: views borrow the mapping, so loading a model reads its header
//! and nothing else until a tensor's data is used.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use serde::Deserialize;

use crate::error::IoAt;
use crate::{Deserializer, Options, Params, Result};

/// A safetensors file mapped into memory.
///
/// [`TensorView`](crate::TensorView) leaves loaded from it borrow the mapping (the reference
/// layout aligns every tensor for its dtype, and the mapping starts on a page), so a load costs the
/// header and touches no tensor data; pages are read from disk when, and if, a tensor is read. (A
/// tensor that a file does not align is copied instead; [`TensorView::is_borrowed`](crate::TensorView::is_borrowed)
/// tells.) Owned [`Tensor`](crate::Tensor) leaves copy their data out of the mapping as they load.
///
/// # Soundness
///
/// What the compiler checks: views borrow the `MappedFile`, so it cannot be dropped (unmapped)
/// while any view lives.
///
/// What it cannot check: a mapping shows the file as it is *now*. If the file is written to or
/// truncated while mapped, by this process or another, the views' contents change under the
/// program (for Rust, undefined behaviour: `&[T]` promises that its contents do not change), or
/// reading them faults (`SIGBUS`, also the fate of a read error on a mapped page). So
/// [`MappedFile::open`] is `unsafe`, and its caller promises that the file is not modified while
/// the `MappedFile` lives. Files written by this crate are never modified in place: `to_file`
/// writes a new file and renames it over the old one, which leaves existing mappings of the old
/// file intact. Mapping checkpoints that only this crate writes is therefore sound; where other
/// programs may rewrite a file in place, use [`from_file`](crate::from_file), which reads it.
///
/// ```
/// # use safejax::{MappedFile, Params, TensorView};
/// # use serde::{Deserialize, Serialize};
/// #[derive(Serialize, Deserialize, Params)]
/// #[safejax(style = "haiku")]
/// struct Mlp<'a> { #[serde(borrow)] mlp: Layers<'a> }
///
/// #[derive(Serialize, Deserialize, Params)]
/// struct Layers<'a> { #[serde(borrow)] linear: Vec<Linear<'a>> }
///
/// #[derive(Serialize, Deserialize, Params)]
/// struct Linear<'a> { #[serde(borrow)] w: TensorView<'a, f32>, #[serde(borrow)] b: TensorView<'a, f32> }
///
/// // SAFETY: the fixture is not modified while mapped.
/// let file = unsafe { MappedFile::open("tests/fixtures/haiku_mlp.safetensors")? };
/// let mlp: Mlp = file.deserialize()?;
/// assert!(mlp.mlp.linear[0].w.is_borrowed());
/// # Ok::<(), safejax::Error>(())
/// ```
pub struct MappedFile {
    map: Mmap,
}

impl MappedFile {
    /// Maps the file at `path` for reading.
    ///
    /// # Safety
    ///
    /// The file must not be written to or truncated, by this process or another, while the
    /// returned value (or anything borrowed from it) lives; see the type's documentation.
    pub unsafe fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).at(path)?;
        // SAFETY: the caller promises the file is not modified while the map lives.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        Ok(MappedFile { map })
    }

    /// The mapped bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    /// Reads params; views borrow the mapping.
    pub fn deserialize<'a, T: Deserialize<'a> + Params>(&'a self) -> Result<T> {
        self.deserialize_with(&Options::new())
    }

    /// Reads params with [`Options`]; views borrow the mapping.
    pub fn deserialize_with<'a, T: Deserialize<'a> + Params>(&'a self, options: &Options) -> Result<T> {
        Deserializer::with_options(&self.map, options.clone())?.deserialize()
    }
}
