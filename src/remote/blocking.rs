//! The [`Remote`](super::Remote) API for callers without an async runtime: each call runs on a
//! current-thread tokio runtime that the [`Remote`] owns.
//!
//! ```
//! use std::sync::Arc;
//! use safejax::remote::{blocking, object_store::{memory::InMemory, path::Path}};
//! use safejax::Value;
//!
//! let remote = blocking::Remote::new(Arc::new(InMemory::new()))?;
//! let value: Value = safejax::from_file("tests/fixtures/haiku_mlp.safetensors")?;
//! remote.to_object(&Path::from("ckpt/mlp.safetensors"), &value)?;
//! let back: Value = remote.from_object(&Path::from("ckpt/mlp.safetensors"))?;
//! assert_eq!(back, value);
//! # Ok::<(), safejax::Error>(())
//! ```

use std::future::Future;
use std::sync::Arc;

use object_store::path::Path;
use object_store::ObjectStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Options, Params, Result};

/// A [`super::Remote`] with its own runtime: the same calls, blocking.
#[derive(Debug)]
pub struct Remote {
    inner: super::Remote,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// Checkpoints on `store` (see [`super::Remote::new`]).
    pub fn new(store: Arc<dyn ObjectStore>) -> Result<Self> {
        Self::from_async(super::Remote::new(store))
    }

    /// Runs the calls of `remote` on a runtime of its own.
    pub fn from_async(remote: super::Remote) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::stream)?;
        Ok(Remote { inner: remote, runtime })
    }

    /// The store for `url` and the object path in it (see [`super::Remote::parse_url`]).
    pub fn parse_url(url: &str) -> Result<(Self, Path)> {
        let (remote, path) = super::Remote::parse_url(url)?;
        Ok((Self::from_async(remote)?, path))
    }

    /// As [`parse_url`](Remote::parse_url), with store settings (see
    /// [`super::Remote::parse_url_opts`]).
    pub fn parse_url_opts<K: AsRef<str>, V: Into<String>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(Self, Path)> {
        let (remote, path) = super::Remote::parse_url_opts(url, options)?;
        Ok((Self::from_async(remote)?, path))
    }

    /// Sets the [`Options`] (see [`super::Remote::options`]).
    pub fn options(mut self, options: Options) -> Self {
        self.inner = self.inner.options(options);
        self
    }

    /// The async [`Remote`](super::Remote), to change its transfer settings.
    pub fn remote_mut(&mut self) -> &mut super::Remote {
        &mut self.inner
    }

    fn run<F: Future>(&self, future: F) -> Result<F::Output> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::BlockingInAsync);
        }
        Ok(self.runtime.block_on(future))
    }

    /// See [`super::Remote::to_object`].
    pub fn to_object<T: Serialize + Params + ?Sized>(&self, path: &Path, params: &T) -> Result<()> {
        self.run(self.inner.to_object(path, params))?
    }

    /// See [`super::Remote::from_object`].
    pub fn from_object<T: DeserializeOwned + Params>(&self, path: &Path) -> Result<T> {
        self.run(self.inner.from_object(path))?
    }

    /// See [`super::Remote::to_dir`].
    pub fn to_dir<T: Serialize + Params + ?Sized>(&self, dir: &Path, params: &T, max_shard_bytes: u64) -> Result<()> {
        self.run(self.inner.to_dir(dir, params, max_shard_bytes))?
    }

    /// See [`super::Remote::from_dir`].
    pub fn from_dir<T: DeserializeOwned + Params>(&self, path: &Path) -> Result<T> {
        self.run(self.inner.from_dir(path))?
    }

    /// See [`super::Remote::orbax_from_dir`].
    pub fn orbax_from_dir<T: DeserializeOwned + Params + Send + 'static>(&self, path: &Path) -> Result<T> {
        self.run(self.inner.orbax_from_dir(path))?
    }

    /// See [`super::Remote::orbax_from_dir_with`].
    pub fn orbax_from_dir_with<T: DeserializeOwned + Params + Send + 'static>(
        &self,
        path: &Path,
        reader: &crate::orbax::Reader,
    ) -> Result<T> {
        self.run(self.inner.orbax_from_dir_with(path, reader))?
    }
}

/// Writes `params` to the object that `url` names (see [`super::to_url`]).
pub fn to_url<T: Serialize + Params + ?Sized>(url: &str, params: &T) -> Result<()> {
    let (remote, path) = Remote::parse_url(url)?;
    remote.to_object(&path, params)
}

/// Reads params from the checkpoint that `url` names (see [`super::from_url`]).
pub fn from_url<T: DeserializeOwned + Params>(url: &str) -> Result<T> {
    let (remote, path) = Remote::parse_url(url)?;
    remote.from_dir(&path)
}
