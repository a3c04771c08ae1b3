//! `safejax convert`: between safetensors and flax msgpack, between one file and shards, and into
//! an Orbax checkpoint, with float tensors cast to another dtype on the way if asked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use safejax::{Dtype, DynTensor, DynTensorView, Value};

use crate::fmt;
use crate::source::{Checkpoint, Format};

/// Outputs this large (in tensor bytes) show a progress bar, when stderr is a terminal.
pub const PROGRESS_THRESHOLD: u64 = 256 << 20;

/// A float dtype to cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloatDtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
    /// 64-bit float.
    F64,
}

impl FloatDtype {
    fn dtype(self) -> Dtype {
        match self {
            FloatDtype::F32 => Dtype::F32,
            FloatDtype::Bf16 => Dtype::BF16,
            FloatDtype::F16 => Dtype::F16,
            FloatDtype::F64 => Dtype::F64,
        }
    }
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// safetensors.
    Safetensors,
    /// flax msgpack.
    Msgpack,
    /// An Orbax checkpoint directory (what `ocp.StandardCheckpointer().save` writes).
    Orbax,
}

impl OutputFormat {
    /// The file format of the Hugging Face layouts; `None` for Orbax, a directory of its own.
    fn file_format(self) -> Option<Format> {
        match self {
            OutputFormat::Safetensors => Some(Format::Safetensors),
            OutputFormat::Msgpack => Some(Format::Msgpack),
            OutputFormat::Orbax => None,
        }
    }
}

/// What `convert` does.
pub struct Options {
    /// The output format; from the output's extension (or, for a directory, the input's format)
    /// when `None`.
    pub to: Option<OutputFormat>,
    /// Write a checkpoint directory with shards of at most this many tensor bytes.
    pub shard_size: Option<u64>,
    /// Cast float tensors to this dtype.
    pub dtype: Option<FloatDtype>,
    /// Metadata entries to set (after the input's, unless `drop_metadata`).
    pub metadata: Vec<(String, String)>,
    /// Do not carry the input's metadata over.
    pub drop_metadata: bool,
    /// Never show a progress bar.
    pub no_progress: bool,
    /// Change names and axis orders to this layout (its `format` metadata replaces the input's).
    pub layout: Option<crate::layout::Options>,
}

/// Parses a size: `5GB` (10^9 bytes, as Hugging Face counts), `500MiB` (2^20), `1.5G`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (like 5GB, 500MiB or 1048576)"))?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use B, KB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    let bytes = (value * scale).round();
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("`{text}`: a shard size must be at least one byte"));
    }
    Ok(bytes as u64)
}

/// Parses a `key=value` metadata entry.
pub fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not `key=value`")),
    }
}

/// A progress bar on stderr, for outputs large enough to wait for.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(total_bytes: u64, disabled: bool) -> Progress {
        if disabled || total_bytes < PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:>8} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress(Some(bar))
    }

    fn phase(&self, message: &'static str, len: u64) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
            bar.set_length(len);
            bar.set_position(0);
        }
    }

    fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A writer that advances the progress bar.
struct Counting<'p, W> {
    inner: W,
    progress: &'p Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the output goes.
enum Target {
    File(PathBuf, Format),
    Dir(PathBuf, Format, u64),
    /// An Orbax checkpoint directory, written whole by `safejax::orbax`.
    Orbax(PathBuf),
}

/// Converts the checkpoint `input` into `out`; returns the summary to print.
pub fn run(input: &Checkpoint, out: &Path, options: &Options) -> Result<String> {
    let target = target(input, out, options)?;
    let contents = input.contents()?;

    // Metadata: the input's, then the entries given.
    let mut metadata = if options.drop_metadata {
        BTreeMap::new()
    } else {
        contents.metadata.clone()
    };
    metadata.extend(options.metadata.iter().cloned());
    // A flax msgpack file is flax's: its safetensors twin says so, as transformers requires of a
    // Flax model's file, unless the user set `format` or dropped the metadata.
    let mut implied = None;
    if input.format == Format::Msgpack && !options.drop_metadata && !metadata.contains_key("format") {
        metadata.insert("format".to_owned(), "flax".to_owned());
        implied = Some("note: metadata format=flax written, as the flax msgpack input implies (--metadata format=... to set another, --drop-metadata for none)");
    }

    // Casts: float tensors of another dtype than the one asked for.
    let cast_to = options.dtype.map(FloatDtype::dtype);
    let is_float = Dtype::is_float;
    let to_cast = |t: &DynTensorView<'_>| cast_to.filter(|&to| is_float(t.dtype()) && t.dtype() != to);
    let cast_bytes: u64 = contents
        .entries
        .iter()
        .filter(|e| to_cast(&e.tensor).is_some())
        .map(|e| e.tensor.as_bytes().len() as u64)
        .sum();
    let total: u64 = contents.entries.iter().map(|e| e.tensor.as_bytes().len() as u64).sum();
    let progress = Progress::new(total.max(cast_bytes), options.no_progress);
    progress.phase("casting", cast_bytes);
    let mut casts: BTreeMap<usize, DynTensor> = BTreeMap::new();
    let mut cast_from = BTreeSet::new();
    for (i, e) in contents.entries.iter().enumerate() {
        if let Some(to) = to_cast(&e.tensor) {
            let cast = e
                .tensor
                .to_owned_tensor()
                .convert(to)
                .with_context(|| format!("casting `{}`", e.key))?;
            progress.inc(e.tensor.as_bytes().len() as u64);
            cast_from.insert(e.tensor.dtype());
            casts.insert(i, cast);
        }
    }
    let mut tensors: BTreeMap<String, DynTensorView<'_>> = BTreeMap::new();
    for (i, e) in contents.entries.iter().enumerate() {
        let view = match casts.get(&i) {
            Some(t) => DynTensorView::new(t.dtype(), t.shape().to_vec(), t.as_bytes())?,
            None => e.tensor.clone(),
        };
        tensors.insert(e.key.clone(), view);
    }
    // A layout change: the library maps names and moves axes; the output is the mapped tensors.
    let mapped = match &options.layout {
        Some(layout) => {
            metadata.insert("format".to_owned(), layout.layout.format().to_owned());
            Some(layout.apply(&tensors)?)
        }
        None => None,
    };
    let tensors = match &mapped {
        Some(mapped) => mapped
            .tensors
            .iter()
            .map(|(k, t)| {
                Ok((
                    k.clone(),
                    DynTensorView::new(t.dtype(), t.shape().to_vec(), t.as_bytes())?,
                ))
            })
            .collect::<Result<BTreeMap<_, _>>>()?,
        None => tensors,
    };
    let out_bytes: u64 = tensors.values().map(|t| t.as_bytes().len() as u64).sum();

    let format = match &target {
        Target::File(_, f) | Target::Dir(_, f, _) => Some(*f),
        Target::Orbax(_) => None,
    };
    let mut notes = Vec::new();
    if let Some(note) = implied.filter(|_| format == Some(Format::Safetensors) && options.layout.is_none()) {
        notes.push(note.to_owned());
    }
    if format.is_none() && implied.is_some() {
        // Implied for a safetensors twin only: nothing of the input is lost.
        metadata.remove("format");
    }
    if format.is_none() && !metadata.is_empty() {
        // A warning, not part of the summary: the metadata is lost.
        let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
        let _ = writeln!(
            std::io::stderr(),
            "safejax: note: Orbax checkpoints have no place for safetensors metadata; not written: {}",
            keys.join(", ")
        );
        metadata.clear();
    }
    if format == Some(Format::Msgpack) && !metadata.is_empty() {
        let keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
        notes.push(format!(
            "note: msgpack files hold no metadata; not written: {}",
            keys.join(", ")
        ));
        metadata.clear();
    }
    progress.phase("writing", out_bytes);
    let written = match &target {
        Target::File(path, format) => {
            write_file(path, *format, &tensors, &metadata, &progress)?;
            path.display().to_string()
        }
        Target::Dir(dir, format, max) => {
            let files = write_dir(dir, *format, &tensors, &metadata, *max)?;
            let names: Vec<String> = files.iter().map(|f| f.to_string()).collect();
            format!("{} ({})", dir.display(), names.join(", "))
        }
        Target::Orbax(dir) => {
            // The tree as Orbax saves it: nested dicts, keys cut at `.` as Orbax joins them.
            safejax::orbax::to_dir(dir, &nested(&tensors, "an Orbax checkpoint")?)
                .with_context(|| format!("{}: cannot write", dir.display()))?;
            progress.inc(out_bytes);
            dir.display().to_string()
        }
    };
    progress.finish();

    let mut summary = format!(
        "wrote {written}: {} tensors, {} in {}",
        tensors.len(),
        fmt::bytes(out_bytes),
        format.map_or("orbax", Format::name)
    );
    if let Some(to) = cast_to {
        let from: Vec<String> = cast_from.iter().map(Dtype::to_string).collect();
        if casts.is_empty() {
            summary.push_str(&format!("; no tensor to cast to {to}"));
        } else {
            summary.push_str(&format!("; cast {} tensors {} -> {to}", casts.len(), from.join(", ")));
        }
    }
    notes.push(summary);
    Ok(notes.join("\n") + "\n")
}

/// Decides what `out` is: a file whose extension names the format, or a checkpoint directory.
fn target(input: &Checkpoint, out: &Path, options: &Options) -> Result<Target> {
    if options.to == Some(OutputFormat::Orbax) {
        return orbax_target(out, options);
    }
    let text = out.to_string_lossy();
    let is_dir = options.shard_size.is_some() || out.is_dir() || text.ends_with('/') || text.ends_with('\\');
    if is_dir {
        if out.is_file() {
            bail!(
                "{}: is a file, but --shard-size writes a checkpoint directory",
                out.display()
            );
        }
        // PyTorch's layout is read from safetensors; flax msgpack is flax's own format.
        let default = match options.layout.as_ref().map(|l| l.layout) {
            Some(crate::layout::Layout::Torch) => Format::Safetensors,
            _ => input.format,
        };
        let format = options.to.and_then(OutputFormat::file_format).unwrap_or(default);
        return Ok(Target::Dir(
            out.to_owned(),
            format,
            options.shard_size.unwrap_or(u64::MAX),
        ));
    }
    let by_extension = if text.ends_with(".safetensors") {
        Some(Format::Safetensors)
    } else if text.ends_with(".msgpack") {
        Some(Format::Msgpack)
    } else {
        None
    };
    let format = match (options.to.and_then(OutputFormat::file_format), by_extension) {
        (Some(to), Some(ext)) if to != ext => bail!(
            "{}: the extension says {}, but --to says {}",
            out.display(),
            ext.name(),
            to.name()
        ),
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => bail!(
            "{}: cannot tell the output format; name it *.safetensors or *.msgpack, or pass --to",
            out.display()
        ),
    };
    Ok(Target::File(out.to_owned(), format))
}

/// An Orbax checkpoint directory at `out`. It replaces whatever directory is there, so only a new
/// path, an empty directory or an Orbax checkpoint item (a directory holding `_METADATA`) is
/// taken: never a directory of other files, nor a step or `CheckpointManager` root.
fn orbax_target(out: &Path, options: &Options) -> Result<Target> {
    if options.shard_size.is_some() {
        bail!("--shard-size: an Orbax checkpoint has no shards (--to orbax writes one directory)");
    }
    if out.is_file() {
        bail!("{}: is a file; --to orbax writes a checkpoint directory", out.display());
    }
    if out.is_dir() {
        let empty = std::fs::read_dir(out)
            .with_context(|| format!("{}", out.display()))?
            .next()
            .is_none();
        if !empty && !out.join("_METADATA").is_file() {
            bail!(
                "{}: is a directory but not an Orbax checkpoint item (no _METADATA); --to orbax \
                 replaces the whole directory, so it writes only to a new path, an empty directory \
                 or an Orbax item",
                out.display()
            );
        }
    }
    Ok(Target::Orbax(out.to_owned()))
}

/// The nested dicts of flax msgpack and of Orbax trees (for `what`, the errors): keys cut at `.`.
fn nested(tensors: &BTreeMap<String, DynTensorView<'_>>, what: &str) -> Result<Value> {
    let mut root = BTreeMap::new();
    for (key, t) in tensors {
        let parts: Vec<&str> = key.split('.').collect();
        let mut dict = &mut root;
        for (depth, part) in parts[..parts.len() - 1].iter().enumerate() {
            let slot = dict
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Dict(BTreeMap::new()));
            dict = match slot {
                Value::Dict(d) => d,
                Value::Tensor(_) => bail!(
                    "cannot write {what}: `{}` is a tensor and also holds `{key}`",
                    parts[..=depth].join(".")
                ),
            };
        }
        let last = parts[parts.len() - 1].to_owned();
        if dict.contains_key(&last) {
            bail!("cannot write {what}: `{key}` is a tensor and also holds other keys");
        }
        dict.insert(last, Value::Tensor(t.to_owned_tensor()));
    }
    Ok(Value::Dict(root))
}

/// Writes one file, atomically (the library's commit: a temporary file beside it, synced and
/// renamed over it).
fn write_file(
    path: &Path,
    format: Format,
    tensors: &BTreeMap<String, DynTensorView<'_>>,
    metadata: &BTreeMap<String, String>,
    progress: &Progress,
) -> Result<()> {
    let msgpack = match format {
        Format::Msgpack => Some(safejax::msgpack::to_bytes(&nested(tensors, "msgpack")?)?),
        Format::Safetensors => None,
    };
    safejax::checkpoint::write_file(path, |out| {
        let mut writer = Counting { inner: out, progress };
        match &msgpack {
            None => safejax_options(metadata).to_writer(&mut writer, tensors),
            Some(bytes) => {
                for chunk in bytes.chunks(8 << 20) {
                    writer.write_all(chunk).map_err(|e| safejax::Error::io(path, e))?;
                }
                Ok(())
            }
        }
    })
    .with_context(|| format!("{}: cannot write", path.display()))
}

fn safejax_options(metadata: &BTreeMap<String, String>) -> safejax::Options {
    metadata
        .iter()
        .fold(safejax::Options::new(), |o, (k, v)| o.metadata(k, v))
}

/// Writes a checkpoint directory in the Hugging Face layout through the library (`to_dir`,
/// `msgpack::to_dir`: shards filled in key order, a crash-safe commit, stale files removed).
/// Returns the names of the checkpoint's files.
fn write_dir(
    dir: &Path,
    format: Format,
    tensors: &BTreeMap<String, DynTensorView<'_>>,
    metadata: &BTreeMap<String, String>,
    max: u64,
) -> Result<Vec<String>> {
    match format {
        Format::Safetensors => safejax_options(metadata).to_dir(dir, tensors, max)?,
        Format::Msgpack => safejax::msgpack::to_dir(dir, &nested(tensors, "msgpack")?, max)?,
    }
    let index = dir.join(format.index());
    if !index.is_file() {
        return Ok(vec![format.single().to_owned()]);
    }
    let located = safejax::checkpoint::locate(&index)?;
    let mut names: Vec<String> = located
        .files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.push(format.index().to_owned());
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_hugging_face_counts_them() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2 kb"), Ok(2000));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("GB").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn metadata_entries_are_key_value() {
        assert_eq!(parse_metadata("format=flax"), Ok(("format".into(), "flax".into())));
        assert_eq!(parse_metadata("note=a=b"), Ok(("note".into(), "a=b".into())));
        assert!(parse_metadata("format").is_err());
        assert!(parse_metadata("=x").is_err());
    }
}
