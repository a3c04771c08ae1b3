//! `safejax codegen` on every fixture: the generated code, pasted into a crate with only the
//! `use` lines its first comment names in scope, compiles without warnings (an unused import is
//! one), loads its file, and writes it back (safetensors, and msgpack without chunked arrays: the
//! very bytes; otherwise the same tensors).
//!
//! One scratch crate holds every fixture's code in a module of its own and is built once, in a
//! target directory kept between runs (under `target/tmp`), so that only the first run compiles
//! safejax's dependencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use safejax::{Dtype, DynTensor};

mod support;
use support::{crate_root, BIN};

/// How a fixture is loaded and checked.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A `.safetensors` file: written back byte for byte.
    Safetensors,
    /// A flax `.msgpack` file: written back with the same tensors.
    Msgpack,
    /// A checkpoint directory: loaded with `from_dir`.
    Dir,
    /// A `.safetensors` file that loads but is written back differently (objax keys without
    /// `::VarType` get one): what is written loads again and writes the same bytes.
    Reload,
}

struct Case {
    /// The module of the scratch crate.
    module: String,
    /// What `codegen` reads.
    path: PathBuf,
    kind: Kind,
    borrowed: bool,
    root: &'static str,
    /// What `codegen` must say on stderr (a fallback), if anything.
    note: Option<&'static str>,
}

fn module_name(rel: &Path) -> String {
    let text = rel
        .with_extension("")
        .to_string_lossy()
        .replace(['/', '\\', '-', '.'], "_");
    text.trim_end_matches('_').to_owned()
}

/// Every fixture, owned and (for single files) borrowed.
fn cases() -> Vec<Case> {
    let root = crate_root();
    let fixtures = root.join("tests/fixtures");
    let mut cases = Vec::new();
    let sorted = |dir: &Path| {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        entries
    };
    let mut add = |path: PathBuf, kind: Kind, single: bool| {
        let rel = path.strip_prefix(&fixtures).unwrap().to_owned();
        let module = module_name(&rel);
        cases.push(Case {
            module: module.clone(),
            path: path.clone(),
            kind,
            borrowed: false,
            root: "Checkpoint",
            note: None,
        });
        if single {
            cases.push(Case {
                module: format!("{module}_borrowed"),
                path,
                kind,
                borrowed: true,
                root: "Checkpoint",
                note: None,
            });
        }
    };
    for path in sorted(&fixtures) {
        if path.extension().is_some_and(|e| e == "safetensors") {
            add(path, Kind::Safetensors, true);
        }
    }
    for path in sorted(&fixtures.join("msgpack")) {
        if path.extension().is_some_and(|e| e == "msgpack") {
            add(path, Kind::Msgpack, true);
        }
    }
    for path in sorted(&fixtures.join("hf_bert")) {
        if path.is_dir() {
            add(path, Kind::Dir, false);
        }
    }
    // The single files of the Hugging Face directories, borrowed too.
    cases.push(Case {
        module: "hf_bert_model_safetensors_borrowed".to_owned(),
        path: fixtures.join("hf_bert/safetensors/model.safetensors"),
        kind: Kind::Safetensors,
        borrowed: true,
        root: "Checkpoint",
        note: None,
    });
    cases.push(Case {
        module: "hf_bert_flax_model_msgpack_borrowed".to_owned(),
        path: fixtures.join("hf_bert/msgpack/flax_model.msgpack"),
        kind: Kind::Msgpack,
        borrowed: true,
        root: "Checkpoint",
        note: None,
    });
    // GPT-2, whose generated structs must also refuse broken copies (see `refusals`).
    cases.push(Case {
        module: "hf_gpt2_model_safetensors".to_owned(),
        path: fixtures.join("hf_gpt2/safetensors/model.safetensors"),
        kind: Kind::Safetensors,
        borrowed: false,
        root: "Checkpoint",
        note: None,
    });
    // Another root name.
    cases.push(Case {
        module: "haiku_mlp_root".to_owned(),
        path: fixtures.join("haiku_mlp.safetensors"),
        kind: Kind::Safetensors,
        borrowed: false,
        root: "HaikuMlp",
        note: None,
    });
    cases
}

/// A tensor of `n` elements of `dtype`, filled with `fill`.
fn tensor(dtype: Dtype, shape: &[usize], fill: u8) -> DynTensor {
    let n: usize = shape.iter().product();
    DynTensor::new(dtype, shape.to_vec(), vec![fill; dtype.byte_len(n).unwrap()]).unwrap()
}

/// A made-up file: its name, its tensors, and the note `codegen` must print for it.
type MadeUp = (&'static str, Vec<(&'static str, DynTensor)>, Option<&'static str>, Kind);

/// Files made here for what the fixtures do not show: lists longer than an array, names that are
/// not Rust names, gaps, scalars of every kind, dtypes `Tensor` cannot hold, and keys that structs
/// cannot express.
fn synthetic(dir: &Path) -> Vec<Case> {
    let files: [MadeUp; 8] = [
        // More layers than serde's arrays hold: a `Vec` with `len`, which refusals check too.
        ("deep", deep_layers(DEEP), None, Kind::Safetensors),
        // No tensors at all.
        ("empty", vec![], None, Kind::Safetensors),
        (
            "objax_wrapped",
            vec![
                // An objax tree inside a flax dict, lists of lists, and keys without `::VarType`
                // (which writing back adds: this file is not written back byte for byte).
                ("model.(MLP).l1(Linear).w::TrainVar", tensor(Dtype::F32, &[2, 2], 1)),
                ("model.(MLP).l1(Linear).b::TrainVar", tensor(Dtype::F32, &[2], 2)),
                (
                    "model.(MLP).seq(Sequential)[0](Sequential)[1](Linear).w",
                    tensor(Dtype::F32, &[1], 3),
                ),
                (
                    "model.(MLP).seq(Sequential)[1](Sequential)[0](Linear).w",
                    tensor(Dtype::F32, &[1], 4),
                ),
                ("model.(MLP).count::StateVar", tensor(Dtype::I32, &[], 4)),
                ("step", tensor(Dtype::I64, &[], 5)),
            ],
            Some("written back with one"),
            Kind::Reload,
        ),
        (
            "haiku_lists",
            vec![
                // haiku names repeated modules `linear`, `linear_1`: not a list; `block_0`,
                // `block_1` are; a lone `conv_0` stays a field.
                ("params.net/~/linear.w", tensor(Dtype::F32, &[2], 1)),
                ("params.net/~/linear_1.w", tensor(Dtype::F32, &[2], 2)),
                ("params.net/~/block_0/~/conv_0.w", tensor(Dtype::F32, &[2], 3)),
                ("params.net/~/block_1/~/conv_0.w", tensor(Dtype::F32, &[2], 4)),
                ("params.net/~/block_1/~/conv_1.w", tensor(Dtype::F32, &[2], 5)),
                ("params.net/~/block_1/gate.w", tensor(Dtype::F32, &[2], 6)),
                ("params.head/~/conv_0.w", tensor(Dtype::BF16, &[2], 7)),
                ("params.scale", tensor(Dtype::F32, &[], 8)),
                ("state.net/~/block_0.count", tensor(Dtype::I32, &[], 9)),
            ],
            None,
            Kind::Safetensors,
        ),
        (
            "flax_names",
            vec![
                ("params.self.type", tensor(Dtype::F32, &[2], 1)),
                ("params.Dense_0.kernel", tensor(Dtype::BF16, &[2, 2], 2)),
                ("params.Dense_1.kernel", tensor(Dtype::BF16, &[2, 3], 3)),
                ("params.dense_0.kernel", tensor(Dtype::F16, &[1], 4)),
                // A list with a gap, whose elements differ by a whole part.
                ("params.layers_0.kernel", tensor(Dtype::F32, &[2], 5)),
                ("params.layers_0.bias", tensor(Dtype::F32, &[2], 6)),
                ("params.layers_2.kernel", tensor(Dtype::F32, &[3], 7)),
                ("params.fp8.w", tensor(Dtype::F8_E4M3, &[4], 8)),
                ("step", tensor(Dtype::I64, &[], 9)),
                ("done", tensor(Dtype::BOOL, &[], 1)),
                ("lr", tensor(Dtype::F16, &[], 10)),
                ("0abc", tensor(Dtype::U8, &[3], 11)),
            ],
            None,
            Kind::Safetensors,
        ),
        (
            "nnx_mixed",
            vec![
                // List elements that share a part, and a list whose elements share nothing.
                ("layers.0.kernel", tensor(Dtype::F32, &[2], 1)),
                ("layers.0.bias", tensor(Dtype::F32, &[2], 2)),
                ("layers.1.scale", tensor(Dtype::F32, &[2], 3)),
                ("layers.1.bias", tensor(Dtype::F32, &[2], 4)),
                ("blocks.0.a", tensor(Dtype::F32, &[1], 5)),
                ("blocks.1.b", tensor(Dtype::I32, &[1], 6)),
            ],
            None,
            Kind::Safetensors,
        ),
        (
            "flax_conflict",
            vec![
                // `a.b` is a tensor and holds `a.b.c`: `a` is a map.
                ("a.b", tensor(Dtype::F32, &[2], 1)),
                ("a.b.c", tensor(Dtype::F32, &[2], 2)),
                ("x.y", tensor(Dtype::F32, &[1], 3)),
            ],
            Some("`BTreeMap` fields"),
            Kind::Safetensors,
        ),
        (
            "objax_mixed",
            vec![
                // An objax Sequential of different classes: no Vec holds it.
                (
                    "(Net).seq(Sequential)[0](Linear).w::TrainVar",
                    tensor(Dtype::F32, &[2], 1),
                ),
                (
                    "(Net).seq(Sequential)[1](BatchNorm).beta::TrainVar",
                    tensor(Dtype::F32, &[2], 2),
                ),
                (
                    "(Net).seq(Sequential)[1](BatchNorm).mean::StateVar",
                    tensor(Dtype::F32, &[2], 3),
                ),
            ],
            Some("one flat map"),
            Kind::Safetensors,
        ),
    ];
    let mut cases = Vec::new();
    for (name, tensors, note, kind) in files {
        let map: BTreeMap<String, DynTensor> = tensors.into_iter().map(|(k, t)| (k.to_owned(), t)).collect();
        let path = dir.join(format!("{name}.safetensors"));
        safejax::to_file(&path, &map).unwrap();
        for borrowed in [false, true] {
            cases.push(Case {
                module: if borrowed {
                    format!("{name}_borrowed")
                } else {
                    name.to_owned()
                },
                path: path.clone(),
                kind,
                borrowed,
                root: "Checkpoint",
                note,
            });
        }
    }
    cases
}

/// The number of layers of the `deep` file: past serde's 32-element arrays.
const DEEP: usize = 40;

/// `count` layers of a tiny dense layer, `layers.{i}.kernel` and `layers.{i}.bias`.
fn deep_layers(count: usize) -> Vec<(&'static str, DynTensor)> {
    (0..count)
        .flat_map(|i| {
            [
                (
                    format!("layers.{i}.kernel").leak() as &'static str,
                    tensor(Dtype::F32, &[2, 3], 1),
                ),
                (format!("layers.{i}.bias").leak(), tensor(Dtype::F32, &[3], 2)),
            ]
        })
        .collect()
}

/// A copy of a fixture that the code generated for the fixture must refuse to load.
struct Refusal {
    /// The module whose code loads it.
    module: &'static str,
    path: PathBuf,
    /// `MissingKeys` naming this key, or, with `shape`, `DeclaredShapeMismatch` at it.
    key: &'static str,
    shape: bool,
}

/// Copies of GPT-2 that its generated structs must refuse: without any block, without the last
/// one, with a transposed kernel; and the `deep` file without its last layer. Written to `dir`.
fn refusals(dir: &Path) -> Vec<Refusal> {
    let deep: BTreeMap<String, DynTensor> = deep_layers(DEEP - 1)
        .into_iter()
        .map(|(k, t)| (k.to_owned(), t))
        .collect();
    let deep_path = dir.join("deep_no_last_layer.safetensors");
    safejax::to_file(&deep_path, &deep).unwrap();
    let original = crate_root().join("tests/fixtures/hf_gpt2/safetensors/model.safetensors");
    let tensors: BTreeMap<String, DynTensor> = safejax::from_file(&original).unwrap();
    let write = |name: &str, edit: &dyn Fn(&mut BTreeMap<String, DynTensor>)| {
        let mut copy = tensors.clone();
        edit(&mut copy);
        let path = dir.join(format!("gpt2_{name}.safetensors"));
        safejax::to_file(&path, &copy).unwrap();
        path
    };
    let kernel = "transformer.h.0.attn.c_attn.kernel";
    let module = "hf_gpt2_model_safetensors";
    vec![
        Refusal {
            module,
            path: write("no_blocks", &|t| t.retain(|k, _| !k.starts_with("transformer.h."))),
            key: "transformer.h.0.attn.c_attn.kernel",
            shape: false,
        },
        Refusal {
            module,
            path: write("no_last_block", &|t| {
                t.retain(|k, _| !k.starts_with("transformer.h.1."))
            }),
            key: "transformer.h.1.attn.c_attn.kernel",
            shape: false,
        },
        Refusal {
            module,
            path: write("transposed", &|t| {
                let k = &t[kernel];
                let shape: Vec<usize> = k.shape().iter().rev().copied().collect();
                let transposed = DynTensor::new(k.dtype(), shape, k.as_bytes().to_vec()).unwrap();
                t.insert(kernel.to_owned(), transposed);
            }),
            key: kernel,
            shape: true,
        },
        Refusal {
            module: "deep",
            path: deep_path,
            key: "layers.39.kernel",
            shape: false,
        },
    ]
}

fn codegen(case: &Case) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("codegen").arg(&case.path).args(["--root", case.root]);
    if case.borrowed {
        cmd.arg("--borrowed");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "codegen {}: {}",
        case.path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let source = String::from_utf8(out.stdout).unwrap();
    match case.note {
        // Every fixture has structs: no fallback to a map, no note.
        None => {
            assert!(stderr.is_empty(), "codegen {}: {stderr}", case.path.display());
            assert!(source.contains(&format!("pub struct {}", case.root)), "{source}");
        }
        Some(note) => assert!(stderr.contains(note), "codegen {}: {stderr}", case.path.display()),
    }
    if case.module.starts_with("empty") {
        assert!(source.contains(&format!("pub struct {} {{}}", case.root)), "{source}");
    }
    source
}

/// The `use` lines that the generated `source` says it needs ("// Needs `use a::b;` and ...").
fn needed_imports(source: &str) -> Vec<&str> {
    let line = source
        .lines()
        .find(|l| l.starts_with("// Needs "))
        .unwrap_or_else(|| panic!("no `// Needs` line in\n{source}"));
    line.split('`').skip(1).step_by(2).collect()
}

/// The scratch crate's `main.rs`.
fn scratch_main(cases: &[(Case, String)], refusals: &[Refusal]) -> String {
    let mut main = String::from(
        "//! Generated by cli/tests/codegen_fixtures.rs.\n#![deny(warnings, unused_imports)]\n\nuse safejax::Value;\n\n",
    );
    for (case, source) in cases {
        let imports: String = needed_imports(source).iter().map(|u| format!("    {u}\n")).collect();
        let _ = writeln!(
            main,
            "mod {} {{\n{imports}\n{}}}\n",
            case.module,
            source
                .lines()
                .map(|l| format!("    {l}\n").replace("    \n", "\n"))
                .collect::<String>()
        );
    }
    main.push_str(HELPERS);
    main.push_str("\nfn main() {\n    let mut failed = 0;\n");
    for (case, _) in cases {
        let path = format!("{:?}", case.path.display().to_string());
        let ty = format!("{}::{}", case.module, case.root);
        let call = match (case.kind, case.borrowed) {
            (Kind::Safetensors, false) => format!("safetensors_file::<{ty}>({path})"),
            (Kind::Safetensors, true) => {
                format!("{{ let bytes = std::fs::read({path}).unwrap(); safetensors_bytes::<{ty}>(&bytes) }}")
            }
            (Kind::Msgpack, false) => format!("msgpack_file::<{ty}>({path})"),
            (Kind::Msgpack, true) => {
                format!("{{ let bytes = std::fs::read({path}).unwrap(); msgpack_bytes::<{ty}>(&bytes) }}")
            }
            (Kind::Dir, _) => format!("dir::<{ty}>({path})"),
            (Kind::Reload, false) => format!("reload::<{ty}>({path})"),
            (Kind::Reload, true) => {
                format!("{{ let bytes = std::fs::read({path}).unwrap(); reload_bytes::<{ty}>(&bytes) }}")
            }
        };
        let _ = writeln!(
            main,
            "    match {call} {{\n        Ok(()) => println!(\"ok {}\"),\n        Err(e) => {{ failed += 1; println!(\"FAILED {}: {{e}}\"); }}\n    }}",
            case.module, case.module
        );
    }
    for (i, refusal) in refusals.iter().enumerate() {
        let _ = writeln!(
            main,
            "    match refuses::<{}::Checkpoint>({:?}, {:?}, {}) {{\n        Ok(()) => println!(\"ok refusal {i}\"),\n        Err(e) => {{ failed += 1; println!(\"FAILED refusal {i}: {{e}}\"); }}\n    }}",
            refusal.module,
            refusal.path.display().to_string(),
            refusal.key,
            refusal.shape
        );
    }
    main.push_str("    std::process::exit(if failed == 0 { 0 } else { 1 });\n}\n");
    main
}

const HELPERS: &str = r#"
type R = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Writes `params` as safetensors with `bytes`' metadata, as the file had it.
fn written<T: serde::Serialize + safejax::Params>(params: &T, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let metadata = safejax::read_metadata(bytes).map_err(err)?;
    let options = metadata.iter().fold(safejax::Options::new(), |o, (k, v)| o.metadata(k, v));
    options.to_bytes(params).map_err(err)
}

fn safetensors_bytes<'de, T: serde::Deserialize<'de> + serde::Serialize + safejax::Params>(bytes: &'de [u8]) -> R {
    let params: T = safejax::from_bytes(bytes).map_err(err)?;
    if written(&params, bytes)? != bytes {
        return Err("written back, the bytes differ".into());
    }
    Ok(())
}

fn safetensors_file<T: serde::de::DeserializeOwned + serde::Serialize + safejax::Params>(path: &str) -> R {
    let bytes = std::fs::read(path).map_err(err)?;
    let params: T = safejax::from_file(path).map_err(err)?;
    if written(&params, &bytes)? != bytes {
        return Err("written back, the bytes differ".into());
    }
    Ok(())
}

fn reload<T: serde::de::DeserializeOwned + serde::Serialize + safejax::Params>(path: &str) -> R {
    let params: T = safejax::from_file(path).map_err(err)?;
    let once = safejax::to_bytes(&params).map_err(err)?;
    let again: T = safejax::from_bytes(&once).map_err(err)?;
    if safejax::to_bytes(&again).map_err(err)? != once {
        return Err("written twice, the bytes differ".into());
    }
    Ok(())
}

fn reload_bytes<'de, T: serde::Deserialize<'de> + serde::Serialize + safejax::Params>(bytes: &'de [u8]) -> R {
    let params: T = safejax::from_bytes(bytes).map_err(err)?;
    let once = safejax::to_bytes(&params).map_err(err)?;
    let flat: std::collections::BTreeMap<String, safejax::DynTensor> = safejax::from_bytes(&once).map_err(err)?;
    let original: std::collections::BTreeMap<String, safejax::DynTensor> = safejax::from_bytes(bytes).map_err(err)?;
    if flat.len() != original.len() {
        return Err("written back, tensors went missing".into());
    }
    Ok(())
}

/// Writes `params` as msgpack: the same tensors as `expected`; and, when the file is given and
/// flax did not split its arrays into chunks (which are written whole), the very bytes, since the
/// fields follow the file's order.
fn same_msgpack<T: serde::Serialize + safejax::Params>(params: &T, expected: &Value, file: Option<&[u8]>) -> R {
    let out = safejax::msgpack::to_bytes(params).map_err(err)?;
    let back: Value = safejax::msgpack::from_bytes(&out).map_err(err)?;
    if &back != expected {
        return Err("written back, the tensors differ".into());
    }
    if let Some(file) = file {
        let chunked = file.windows(25).any(|w| w == b"__msgpack_chunked_array__");
        if !chunked && out != file {
            return Err("written back, the bytes differ".into());
        }
    }
    Ok(())
}

fn msgpack_bytes<'de, T: serde::Deserialize<'de> + serde::Serialize + safejax::Params>(bytes: &'de [u8]) -> R {
    let params: T = safejax::msgpack::from_bytes(bytes).map_err(err)?;
    same_msgpack(&params, &safejax::msgpack::from_bytes(bytes).map_err(err)?, Some(bytes))
}

fn msgpack_file<T: serde::de::DeserializeOwned + serde::Serialize + safejax::Params>(path: &str) -> R {
    let bytes = std::fs::read(path).map_err(err)?;
    let params: T = safejax::msgpack::from_file(path).map_err(err)?;
    same_msgpack(&params, &safejax::msgpack::from_bytes(&bytes).map_err(err)?, Some(&bytes))
}

/// Loading `path` must fail: with `MissingKeys` naming `key`, or, with `shape`, with
/// `DeclaredShapeMismatch` at `key`.
fn refuses<T: serde::de::DeserializeOwned + safejax::Params>(path: &str, key: &str, shape: bool) -> R {
    match safejax::from_file::<T>(path) {
        Ok(_) => Err(format!("{path} loaded")),
        Err(safejax::Error::MissingKeys { keys, .. }) if !shape && keys.iter().any(|k| k == key) => Ok(()),
        Err(safejax::Error::DeclaredShapeMismatch { key: at, .. }) if shape && at == key => Ok(()),
        Err(e) => Err(format!("{path}: not the expected error: {e}")),
    }
}

fn dir<T: serde::de::DeserializeOwned + serde::Serialize + safejax::Params>(path: &str) -> R {
    let params: T = safejax::from_dir(path).map_err(err)?;
    let expected: Value = safejax::from_dir(path).map_err(err)?;
    let dir = std::path::Path::new(path);
    let single = dir.join("model.safetensors");
    if single.exists() {
        // One file: the very bytes.
        let bytes = std::fs::read(&single).map_err(err)?;
        if written(&params, &bytes)? != bytes {
            return Err("written back, the bytes differ".into());
        }
    }
    if dir.join("flax_model.msgpack.index.json").exists() {
        return same_msgpack(&params, &expected, None);
    }
    if dir.join("flax_model.msgpack").exists() {
        let bytes = std::fs::read(dir.join("flax_model.msgpack")).map_err(err)?;
        return same_msgpack(&params, &expected, Some(&bytes));
    }
    let out = safejax::to_bytes(&params).map_err(err)?;
    let back: Value = safejax::from_bytes(&out).map_err(err)?;
    if back != expected {
        return Err("written back, the tensors differ".into());
    }
    Ok(())
}
"#;

#[test]
fn generated_code_loads_every_fixture_and_writes_it_back() {
    let mut cases = cases();
    // 8 safetensors and 3 msgpack fixtures (owned and borrowed), 4 directories, and extras.
    assert!(cases.len() >= 8 * 2 + 3 * 2 + 4, "found {} cases", cases.len());
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let files = tmp.join("codegen-files");
    std::fs::create_dir_all(&files).unwrap();
    cases.extend(synthetic(&files));
    let refusals = refusals(&files);
    let generated: Vec<(Case, String)> = cases
        .into_iter()
        .map(|case| {
            let source = codegen(&case);
            (case, source)
        })
        .collect();

    let project = tmp.join("codegen-scratch");
    std::fs::create_dir_all(project.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"codegen-scratch\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [dependencies]\nsafejax = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         [workspace]\n",
        crate_root().display().to_string()
    );
    std::fs::write(project.join("Cargo.toml"), manifest).unwrap();
    // The workspace's lock file pins the same versions, so nothing new is resolved.
    std::fs::copy(crate_root().join("Cargo.lock"), project.join("Cargo.lock")).unwrap();
    std::fs::write(project.join("src/main.rs"), scratch_main(&generated, &refusals)).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--manifest-path"])
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", tmp.join("codegen-target"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the scratch crate failed ({}):\n{stdout}\n{stderr}",
        project.display()
    );
    for (case, _) in &generated {
        assert!(
            stdout.lines().any(|l| l == format!("ok {}", case.module)),
            "{} was not checked:\n{stdout}",
            case.module
        );
    }
    for i in 0..refusals.len() {
        assert!(
            stdout.lines().any(|l| l == format!("ok refusal {i}")),
            "refusal {i} was not checked:\n{stdout}"
        );
    }
}

/// `safejax codegen PATH`'s output (owned tensors, root `Checkpoint`).
fn codegen_of(path: &Path) -> String {
    codegen(&Case {
        module: String::new(),
        path: path.to_owned(),
        kind: Kind::Safetensors,
        borrowed: false,
        root: "Checkpoint",
        note: None,
    })
}

fn hf_fixture(model: &str, format: &str) -> PathBuf {
    let file = match format {
        "msgpack" => "flax_model.msgpack",
        _ => "model.safetensors",
    };
    crate_root().join(format!("tests/fixtures/hf_{model}/{format}/{file}"))
}

/// The structs of generated code, each as its name line and its fields (a field with its
/// attributes), fields sorted: what the code declares, apart from the order of fields, which
/// follows the file (msgpack's dict order, so that the structs write the same bytes).
fn declarations(source: &str) -> Vec<(String, Vec<String>)> {
    let body = source.split_once("\n\n").expect("a header, then the structs").1;
    let mut structs: Vec<(String, Vec<String>)> = body
        .split("\n\n")
        .map(|block| {
            let mut lines = block.lines().filter(|l| !l.starts_with("#[derive"));
            let mut head = String::new();
            for l in lines.by_ref() {
                head.push_str(l);
                if l.starts_with("pub struct") {
                    break;
                }
            }
            let mut fields = Vec::new();
            let mut field = String::new();
            for l in lines {
                field.push_str(l);
                if l.starts_with("    pub ") {
                    fields.push(std::mem::take(&mut field));
                }
            }
            fields.sort();
            (head, fields)
        })
        .collect();
    structs.sort();
    structs
}

/// Every Hugging Face model saved both ways gives the same structs, with the same names, from its
/// safetensors and its msgpack file.
#[test]
fn both_formats_of_a_model_give_the_same_structs() {
    let mut models: Vec<String> = std::fs::read_dir(crate_root().join("tests/fixtures"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_prefix("hf_").map(str::to_owned))
        .filter(|m| hf_fixture(m, "msgpack").exists() && hf_fixture(m, "safetensors").exists())
        .collect();
    models.sort();
    assert!(models.len() >= 6, "{models:?}");
    for model in &models {
        let safetensors = codegen_of(&hf_fixture(model, "safetensors"));
        let msgpack = codegen_of(&hf_fixture(model, "msgpack"));
        assert_eq!(
            declarations(&safetensors),
            declarations(&msgpack),
            "{model}:\n{safetensors}\n{msgpack}"
        );
    }
}

/// Structs are named by what holds them or what they are, never after a field that happens to sort
/// first: structs that several differently named fields share take the JAX convention of their
/// tensors, and tensors of another shape make another struct (each with its own `shape`); the
/// printed `use` line names only what the code uses.
#[test]
fn shared_structs_are_named_by_what_they_hold() {
    let has = |source: &str, parts: &[&str]| {
        for part in parts {
            assert!(source.contains(part), "{part:?} in\n{source}");
        }
    };
    let t5 = codegen_of(&hf_fixture("t5", "safetensors"));
    has(
        &t5,
        &[
            // `shared` ([64, 8]) and `relative_attention_bias` ([8, 2]) are different structs, each
            // named after the one field that holds it.
            "    pub shared: Shared,\n",
            "    pub relative_attention_bias: Option<RelativeAttentionBias>,\n",
            "pub struct Shared {\n    #[safejax(shape = [64, 8])]\n    pub embedding: Tensor<f32>,\n}\n",
            // q, k, v and o share one struct of their JAX convention.
            "    pub k: DenseNoBias,\n",
            "    pub q: DenseNoBias,\n",
            "pub struct DenseNoBias {\n    #[safejax(shape = [8, 8])]\n    pub kernel: Tensor<f32>,\n}\n",
            // Its own name, where the fields that hold it agree.
            "    pub final_layer_norm: LayerNorm,\n",
            "// Needs `use safejax::{Params, Tensor};` and `use serde::{Deserialize, Serialize};`.\n",
        ],
    );
    // Its sublayers hold different things: each a struct of its own, named after its part.
    has(
        &t5,
        &[
            "    #[serde(rename = \"0\")]\n    pub field_0: SelfAttentionLayer,\n",
            "    #[serde(rename = \"1\")]\n    pub field_1: EncDecAttentionLayer,\n",
            "    #[serde(rename = \"2\")]\n    pub field_2: DenseReluDenseLayer,\n",
            "    #[serde(rename = \"EncDecAttention\")]\n    pub enc_dec_attention: EncDecAttention,\n",
        ],
    );
    assert!(!t5.contains("Option<EncDecAttention>"), "{t5}");

    // Llama's projections are not named after `lm_head`, which has a struct of its own.
    let llama = codegen_of(&hf_fixture("llama", "safetensors"));
    has(&llama, &["    pub lm_head: LmHead,\n", "pub struct LmHead {\n"]);
    for projection in [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ] {
        assert!(!llama.contains(&format!("pub {projection}: LmHead")), "{llama}");
    }

    // GPT-2's embeddings are named after their own fields, the same from both formats.
    for format in ["safetensors", "msgpack"] {
        let gpt2 = codegen_of(&hf_fixture("gpt2", format));
        has(
            &gpt2,
            &[
                "    pub wte: Wte,\n",
                "    pub wpe: Wpe,\n",
                "    pub c_attn: CAttn,\n",
                "    pub ln_1: LayerNorm,\n",
                "    pub ln_2: LayerNorm,\n",
            ],
        );
    }

    let borrowed = Command::new(BIN)
        .arg("codegen")
        .arg("--borrowed")
        .arg(hf_fixture("t5", "safetensors"))
        .output()
        .unwrap();
    let borrowed = String::from_utf8(borrowed.stdout).unwrap();
    has(
        &borrowed,
        &["// Needs `use safejax::{Params, TensorView};` and `use serde::{Deserialize, Serialize};`.\n"],
    );
}
