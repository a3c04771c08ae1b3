//! `safejax`: look into JAX checkpoints (safetensors, flax msgpack, sharded or not), compare and
//! convert them, and write the typed Rust structs that load them.

mod codegen;
mod convert;
mod diff;
mod fmt;
mod inspect;
mod layout;
mod source;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use safejax::__private::Style;

use crate::source::Checkpoint;

/// Inspect, diff, convert JAX checkpoints (flax, NNX, haiku, objax) and generate typed Rust
/// structs that load them.
///
/// A CHECKPOINT is a `.safetensors` or flax `.msgpack` file, a sharded checkpoint's
/// `*.index.json`, or a directory in the Hugging Face layout (`model.safetensors`,
/// `model-0000k-of-0000n.safetensors` with `model.safetensors.index.json`, or the same for
/// `flax_model.msgpack`).
#[derive(Parser)]
#[command(name = "safejax", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the key tree, folded by module, with dtype and shape per tensor, parameter counts and
    /// sizes per subtree, and the metadata.
    Inspect {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// Cut keys into modules by this style (detected from the keys by default).
        #[arg(long, default_value = "auto", value_parser = style_arg())]
        style: StyleArg,
        /// Show this many levels of the tree (all by default).
        #[arg(long, value_name = "N")]
        depth: Option<usize>,
        /// Print JSON for scripts: totals, per-dtype counts, every key, and the tree.
        #[arg(long)]
        json: bool,
    },
    /// Compare two checkpoints: keys only in one, and keys whose dtype, shape or values differ.
    ///
    /// Exits with 0 when they hold the same tensors (values within the tolerance), 1 when they
    /// differ, 2 on errors. Metadata differences are shown but do not count.
    Diff {
        /// The first checkpoint.
        a: PathBuf,
        /// The second checkpoint.
        b: PathBuf,
        /// Values that differ by at most this much are equal (dtypes must still agree).
        #[arg(long, default_value_t = 0.0, value_name = "X", value_parser = parse_tolerance)]
        tolerance: f64,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Convert between safetensors, flax msgpack and Orbax, between one file and shards, and cast
    /// float tensors.
    ///
    /// OUT is a file (`*.safetensors` or `*.msgpack`) or, with --shard-size or when it is a
    /// directory (or ends with `/`), a checkpoint directory in the Hugging Face layout. With
    /// `--to orbax`, OUT is an Orbax checkpoint directory (Orbax's default layout, which
    /// `ocp.StandardCheckpointer().restore(OUT)` reads), written whole: a new path, an empty
    /// directory or an Orbax item it replaces. The input's metadata is carried over (safetensors
    /// only; msgpack and Orbax have none).
    Convert {
        /// The checkpoint to read.
        input: PathBuf,
        /// Where to write.
        out: PathBuf,
        /// The output format (by default from OUT's extension; for a directory, the input's, or
        /// safetensors with --layout torch).
        #[arg(long, value_enum)]
        to: Option<convert::OutputFormat>,
        /// Write shards of at most this size: 5GB (10^9 bytes), 500MiB (2^20), 1048576.
        #[arg(long, value_name = "SIZE", value_parser = convert::parse_size)]
        shard_size: Option<u64>,
        /// Cast float tensors (f16, bf16, f32, f64) to this dtype; other tensors stay as they are.
        #[arg(long, value_enum)]
        dtype: Option<convert::FloatDtype>,
        /// Set a metadata entry (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = convert::parse_metadata)]
        metadata: Vec<(String, String)>,
        /// Do not carry the input's metadata over.
        #[arg(long)]
        drop_metadata: bool,
        /// Never show a progress bar (shown on a terminal for outputs over 256 MiB).
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        layout: layout::Args,
    },
    /// Print Rust structs with `#[derive(Serialize, Deserialize, Params)]` that load the
    /// checkpoint.
    ///
    /// The code compiles with `use safejax::{Params, Tensor, TensorView};` and
    /// `use serde::{Deserialize, Serialize};` in scope.
    Codegen {
        /// The checkpoint.
        checkpoint: PathBuf,
        /// The key style (detected from the keys by default).
        #[arg(long, default_value = "auto", value_parser = style_arg())]
        style: StyleArg,
        /// Tensors as `TensorView<'a, T>`, borrowing the file's bytes, instead of `Tensor<T>`.
        #[arg(long)]
        borrowed: bool,
        /// The name of the root struct.
        #[arg(long, value_name = "NAME", default_value = "Checkpoint")]
        root: String,
        /// Lists as `Vec<T>`, which load any number of elements, instead of fixed-length arrays
        /// `[T; N]` (used where every list of a field has the same N, 1 to 32, with no gaps) and
        /// `Vec<T>` with `#[safejax(len = N)]` (the same past 32), which refuse a file with fewer
        /// or more.
        #[arg(long)]
        vec: bool,
    },
}

/// `--style`: a style, or `auto` (`None`) to detect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StyleArg(Option<Style>);

impl StyleArg {
    fn style(self) -> Option<Style> {
        self.0
    }
}

/// `auto` or one of the library's style names.
fn style_arg() -> impl clap::builder::TypedValueParser<Value = StyleArg> {
    use clap::builder::TypedValueParser;
    let names = std::iter::once("auto").chain(Style::NAMES.iter().copied());
    clap::builder::PossibleValuesParser::new(names).map(|name: String| StyleArg(Style::parse(&name)))
}

/// `--tolerance`: a number, at least 0.
fn parse_tolerance(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x >= 0.0 => Ok(x),
        _ => Err(format!("`{text}` is not a number >= 0")),
    }
}

/// The exit status for errors: `diff` uses 1 for "different", so its errors are 2; so are all.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // One line: the chain of causes, each said once (a cause that an error's message
            // already quotes is not repeated).
            let mut message = String::new();
            for cause in err.chain() {
                let text = cause.to_string().replace('\n', " ");
                if !message.contains(&text) {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&text);
                }
            }
            let _ = writeln!(std::io::stderr(), "safejax: error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Prints `text` on stdout; a closed pipe (`safejax inspect x | head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Inspect {
            checkpoint,
            style,
            depth,
            json,
        } => {
            let ckpt = Checkpoint::open(&checkpoint)?;
            let options = inspect::Options {
                style: style.style(),
                depth,
                json,
            };
            print(&inspect::run(&ckpt, &options)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b, tolerance, json } => {
            let (a, b) = (Checkpoint::open(&a)?, Checkpoint::open(&b)?);
            let options = diff::Options { tolerance };
            let report = diff::compare(&a, &b, &options)?;
            if json {
                let mut text = serde_json::to_string_pretty(&diff::to_json(&a, &b, &report, &options))?;
                text.push('\n');
                print(&text)?;
            } else {
                print(&diff::text(&a, &b, &report, &options))?;
            }
            Ok(if report.is_equal() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Convert {
            input,
            out,
            to,
            shard_size,
            dtype,
            metadata,
            drop_metadata,
            no_progress,
            layout,
        } => {
            let ckpt = Checkpoint::open(&input)?;
            let (layout, dry_run) = layout.options();
            if let (Some(layout), Some(json)) = (&layout, dry_run) {
                print(&layout.dry_run(&ckpt, json)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let options = convert::Options {
                to,
                shard_size,
                dtype,
                metadata,
                drop_metadata,
                no_progress,
                layout,
            };
            print(&convert::run(&ckpt, &out, &options)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Codegen {
            checkpoint,
            style,
            borrowed,
            root,
            vec,
        } => {
            let ckpt = Checkpoint::open(&checkpoint)?;
            let options = codegen::Options {
                style: style.style(),
                borrowed,
                root,
                arrays: !vec,
            };
            let generated = codegen::run(&ckpt, &options)?;
            for note in &generated.notes {
                let _ = writeln!(std::io::stderr(), "safejax: note: {note}");
            }
            print(&generated.source)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
