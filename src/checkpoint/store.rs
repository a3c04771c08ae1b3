//! Where a checkpoint directory lives: a small trait over the few things the commit needs (list,
//! read, an atomic put, remove), with a local-directory implementation here and an
//! `object_store` one (feature `object-store`) in `remote/dir.rs`. Writing the shards themselves
//! is each storage's own business (a file streamed from the params; a parallel multipart upload).
//!
//! The trait is async so that both implementations share one commit; the local one never waits,
//! and [`ready`] runs it without a runtime.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::error::IoAt;
use crate::{Error, Result};

/// A directory of files, by plain names.
pub(crate) trait Store {
    /// The names of the files directly in the directory.
    async fn list(&self) -> Result<Vec<String>>;
    /// The bytes of file `name`, or `None` if there is none.
    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// Writes file `name`, atomically and durably: a reader sees the old file or the new one.
    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()>;
    /// Removes file `name`; a missing file is not an error.
    async fn remove(&self, name: &str) -> Result<()>;
    /// Makes the removals and renames so far durable.
    async fn sync(&self) -> Result<()>;
}

/// Runs a future that never waits (the local store's), without a runtime.
pub(crate) fn ready<F: Future>(future: F) -> Result<F::Output> {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => Ok(output),
        // Only futures of `LocalDir` are run here, and those do not wait.
        Poll::Pending => Err(Error::msg("a local directory operation waited (a bug in safejax)")),
    }
}

/// A local directory.
pub(crate) struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    /// The directory `dir`, made if missing.
    pub(crate) fn create(dir: &Path) -> Result<LocalDir> {
        std::fs::create_dir_all(dir).at(dir)?;
        Ok(LocalDir { dir: dir.to_owned() })
    }

    /// Has `fill` write file `name` through a buffer, atomically and durably (see
    /// [`write_atomic_with`]).
    pub(crate) fn write_with(&self, name: &str, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
        write_atomic_with(&self.dir.join(name), |file| {
            // Small tensors gather in the buffer; large ones go straight through it.
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            fill(&mut writer)?;
            writer.flush().map_err(Error::stream)?;
            Ok(())
        })
    }
}

impl Store for LocalDir {
    async fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let entry = entry.at(&self.dir)?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        write_atomic_with(&self.dir.join(name), |file| {
            file.write_all(&bytes).map_err(Error::stream)
        })
    }

    async fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }

    async fn sync(&self) -> Result<()> {
        sync_dir(&self.dir)
    }
}

/// Has `write` fill a temporary file next to `path` (`.NAME.XXXXXX.tmp`), then syncs it, renames
/// it over `path` and syncs the directory, so that a reader, or a crash, sees the old file or the
/// new one, never a part. On an error the temporary file is removed and `path` is untouched; a
/// killed write leaves the temporary file, which the next checkpoint write removes.
pub(crate) fn write_atomic_with(path: &Path, write: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Dropping the temporary file on any error below removes it.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .at(dir)?;
    // An error of the writer has no path yet: it is the file being written.
    write(tmp.as_file_mut()).map_err(|e| e.or_path(path))?;
    tmp.as_file().sync_all().at(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(dir)
}

/// Writes file `path` and syncs it, in place: for the files of a directory that becomes visible
/// only when it is committed as a whole ([`commit_dir`](super::commit::commit_dir)), where a
/// temporary file per file would be redundant.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).at(path)?;
    file.write_all(bytes).at(path)?;
    file.sync_all().at(path)?;
    Ok(())
}

/// Swaps the directories `a` and `b` in one atomic step (Linux's `renameat2(RENAME_EXCHANGE)`):
/// after a crash each path holds one of the two whole.
#[cfg(target_os = "linux")]
pub(crate) fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::msg("a path holds a NUL byte"));
    let (a_c, b_c) = (c(a)?, c(b)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call; AT_FDCWD makes
    // them relative to the working directory, as `std::fs::rename` does.
    let code = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a_c.as_ptr(),
            libc::AT_FDCWD,
            b_c.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if code != 0 {
        return Err(Error::io(b, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Without an atomic exchange: `b` moves aside (to `<b>.old`), `a` takes its place, and the old
/// `b` takes `a`'s. A crash between the first two renames leaves `b` missing and the old one
/// beside it.
#[cfg(not(target_os = "linux"))]
pub(crate) fn exchange(a: &Path, b: &Path) -> Result<()> {
    let mut aside = b.as_os_str().to_owned();
    aside.push(".old");
    let aside = std::path::PathBuf::from(aside);
    std::fs::rename(b, &aside).at(b)?;
    std::fs::rename(a, b).at(b)?;
    std::fs::rename(&aside, a).at(a)?;
    Ok(())
}

/// Makes renames and removals durable: on Unix a directory's entries are synced through the
/// directory.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
