//! Writing that fails: a writer failing midway, keys that could not be read back, a file that cannot
//! be put in place. Each returns its error and leaves nothing behind.

use std::collections::BTreeMap;
use std::io::{self, Write};

use safejax::{Error, Params, Tensor};
use serde::{Deserialize, Serialize};

fn t(data: Vec<f32>) -> Tensor<f32> {
    Tensor::new(vec![data.len()], data).unwrap()
}

#[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
struct Dense {
    kernel: Tensor<f32>,
    bias: Tensor<f32>,
}

fn dense() -> Dense {
    Dense {
        kernel: t((0..1000).map(|i| i as f32).collect()),
        bias: t(vec![0.5]),
    }
}

/// Accepts `left` bytes, then fails (or, with `zero`, stops accepting any).
struct FailingWriter {
    written: Vec<u8>,
    left: usize,
    zero: bool,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return if self.zero {
                Ok(0)
            } else {
                Err(io::Error::other("disk on fire"))
            };
        }
        let n = buf.len().min(self.left).min(7);
        self.written.extend_from_slice(&buf[..n]);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_writer_failing_midway_returns_its_error() {
    let full = safejax::to_bytes(&dense()).unwrap();
    for left in [0, 1, 8, 9, 100, full.len() / 2, full.len() - 1] {
        for zero in [false, true] {
            let mut writer = FailingWriter {
                written: Vec::new(),
                left,
                zero,
            };
            let err = safejax::to_writer(&mut writer, &dense()).unwrap_err();
            // A writer the caller hands over has no path to name.
            let Error::Io { path: None, source: io } = &err else {
                panic!("after {left} bytes: {err:?}");
            };
            let kind = if zero {
                io::ErrorKind::WriteZero
            } else {
                io::ErrorKind::Other
            };
            assert_eq!(io.kind(), kind, "after {left} bytes");
            assert_eq!(writer.written, full[..left], "after {left} bytes");
        }
    }
    let mut whole = FailingWriter {
        written: Vec::new(),
        left: full.len(),
        zero: false,
    };
    safejax::to_writer(&mut whole, &dense()).unwrap();
    assert!(whole.written == full);
}

fn invalid_key(result: Result<Vec<u8>, Error>) -> (String, &'static str) {
    match result {
        Err(Error::InvalidKey { key, reason }) => (key, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn map_keys_that_would_not_read_back_are_refused() {
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Model {
        blocks: BTreeMap<String, Dense>,
    }
    let model = |name: &str| Model {
        blocks: BTreeMap::from([(name.to_owned(), dense())]),
    };
    // Read back, `blocks.a.b.kernel` would be the entry `a` holding `b.kernel`.
    let (key, reason) = invalid_key(safejax::to_bytes(&model("a.b")));
    assert_eq!(key, "blocks.a.b");
    assert!(reason.contains("separator"), "{reason}");
    let (key, reason) = invalid_key(safejax::to_bytes(&model("")));
    assert_eq!((key.as_str(), reason), ("blocks.", "map keys cannot be empty"));
    let bytes = safejax::to_bytes(&model("a_b-c")).unwrap();
    assert_eq!(safejax::from_bytes::<Model>(&bytes).unwrap(), model("a_b-c"));

    // haiku cuts module names at `/`, objax at `(`, `[`, `.` and `::`.
    #[derive(Serialize, Params)]
    #[safejax(style = "haiku")]
    struct Haiku {
        mods: BTreeMap<String, Dense>,
    }
    let haiku = Haiku {
        mods: BTreeMap::from([("mlp/~/linear".to_owned(), dense())]),
    };
    assert!(invalid_key(safejax::to_bytes(&haiku)).1.contains("separator"));
    #[derive(Serialize, Params)]
    #[safejax(style = "objax")]
    struct Objax {
        mods: BTreeMap<String, Dense>,
    }
    for name in ["l(Linear)", "l[0]", "a::b"] {
        let objax = Objax {
            mods: BTreeMap::from([(name.to_owned(), dense())]),
        };
        assert!(invalid_key(safejax::to_bytes(&objax)).1.contains("separator"));
    }

    // A map of leaves takes the whole rest of each key: any non-empty name reads back.
    let flat = BTreeMap::from([("a.b/c(d)[0]::e".to_owned(), t(vec![1.0]))]);
    let bytes = safejax::to_bytes(&flat).unwrap();
    assert_eq!(
        safejax::from_bytes::<BTreeMap<String, Tensor<f32>>>(&bytes).unwrap(),
        flat
    );
    let nested = BTreeMap::from([("m".to_owned(), BTreeMap::from([(String::new(), t(vec![1.0]))]))]);
    let (key, reason) = invalid_key(safejax::to_bytes(&nested));
    assert_eq!((key.as_str(), reason), ("m.", "map keys cannot be empty"));
}

#[test]
fn keys_that_collide_after_joining_are_refused() {
    // The map entry `a` holding `b.kernel`... and a field renamed `a.b`.
    #[derive(Serialize, Params)]
    struct Collide {
        a: BTreeMap<String, Tensor<f32>>,
        #[serde(rename = "a.kernel")]
        other: Tensor<f32>,
    }
    let collide = Collide {
        a: BTreeMap::from([("kernel".to_owned(), t(vec![1.0]))]),
        other: t(vec![2.0]),
    };
    let err = safejax::to_bytes(&collide).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateKey { key } if key == "a.kernel"),
        "{err:?}"
    );
    // A flax list element and a field named like one.
    #[derive(Serialize, Params)]
    struct ListAndField {
        layers: Vec<Tensor<f32>>,
        #[serde(rename = "layers_1")]
        extra: Tensor<f32>,
    }
    let both = ListAndField {
        layers: vec![t(vec![1.0]), t(vec![2.0])],
        extra: t(vec![3.0]),
    };
    let err = safejax::to_bytes(&both).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateKey { key } if key == "layers_1"),
        "{err:?}"
    );
    let meta = BTreeMap::from([("__metadata__".to_owned(), t(vec![1.0]))]);
    assert!(matches!(
        safejax::to_bytes(&meta),
        Err(Error::InvalidKey { key, .. }) if key == "__metadata__"
    ));
}

#[test]
fn tensors_of_more_than_64_dimensions_are_refused() {
    let shape = vec![1; 65];
    let deep = BTreeMap::from([("w".to_owned(), Tensor::new(shape, vec![1.0f32]).unwrap())]);
    let err = safejax::to_bytes(&deep).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { key, .. } if key == "w"),
        "{err:?}"
    );
    let ok = BTreeMap::from([("w".to_owned(), Tensor::new(vec![1; 64], vec![1.0f32]).unwrap())]);
    let bytes = safejax::to_bytes(&ok).unwrap();
    assert_eq!(
        safejax::from_bytes::<BTreeMap<String, Tensor<f32>>>(&bytes).unwrap(),
        ok
    );
}

/// The temporary file is written, then cannot be renamed over the target (a directory): the error
/// comes back, and the temporary file is gone.
#[test]
fn a_failed_rename_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("params.safetensors");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("inside"), b"x").unwrap();
    let err = safejax::to_file(&target, &dense()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path: Some(p), .. } if *p == target),
        "{err:?}"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["params.safetensors"]);
}

/// A key that cannot be written fails before anything touches the disk.
#[test]
fn an_unwritable_key_leaves_the_old_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("params.safetensors");
    safejax::to_file(&target, &dense()).unwrap();
    let bad = BTreeMap::from([("m".to_owned(), BTreeMap::from([("a.b".to_owned(), dense())]))]);
    assert!(matches!(safejax::to_file(&target, &bad), Err(Error::InvalidKey { .. })));
    assert_eq!(safejax::from_file::<Dense>(&target).unwrap(), dense());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Serializes one tensor whose length grows with every call, as a `Serialize` impl that reads a
/// clock or a random source might: the write, which serializes the params once to lay the file out
/// and again to fill it, sees the second pass differ.
#[derive(Params)]
#[allow(dead_code)] // the field gives the derive its schema; `Serialize` below makes the values
struct Growing {
    w: Tensor<f32>,
}

static GROWING_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Serialize for Growing {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // Past 64 KiB, so that `to_bytes` too walks the params twice rather than staging the
        // tensor on the first walk.
        let len = (64 << 10) / 4 + 1 + GROWING_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut fields = serializer.serialize_struct("Growing", 1)?;
        fields.serialize_field("w", &t(vec![0.5; len]))?;
        fields.end()
    }
}

#[test]
fn params_that_serialize_differently_the_second_time_are_refused() {
    let growing = Growing { w: t(vec![]) };
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("params.safetensors");
    for result in [
        safejax::to_bytes(&growing).map(drop),
        safejax::to_writer(Vec::new(), &growing),
        safejax::to_file(&target, &growing),
    ] {
        let err = result.expect_err("written although the second pass differed");
        assert!(matches!(err, Error::SerializedDifferently), "{err:?}");
        assert!(err.to_string().contains("second pass"), "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
