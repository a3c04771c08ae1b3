//! Helpers for the object store tests (`tests/remote.rs`, `tests/remote_s3.rs`): a store decorator
//! that counts the bytes moved and can fail an upload after some parts, and checks shared by the
//! in-memory and the S3 runs.
#![allow(dead_code)]

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use safejax::remote::Remote;
use safejax::{Error, Params, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::models::*;
use crate::common::{fixture_bytes, fixture_path, names_ending, orbax_case_dir, orbax_cases};

/// What a [`CountingStore`] saw.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes the store sent back to reads.
    pub bytes_read: AtomicU64,
    /// Read requests (each `get`, each range).
    pub reads: AtomicUsize,
    /// Bytes sent to the store by puts and parts.
    pub bytes_written: AtomicU64,
    /// Single-request puts.
    pub puts: AtomicUsize,
    /// Multipart uploads started.
    pub uploads: AtomicUsize,
    /// Parts sent.
    pub parts: AtomicUsize,
    /// Uploads completed.
    pub completed: AtomicUsize,
    /// Aborts asked for, and how many of them the store acknowledged.
    pub aborts: AtomicUsize,
    pub aborts_ok: AtomicUsize,
}

impl Counters {
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::SeqCst)
    }
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
    pub fn get(&self, counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
    pub fn reset_reads(&self) {
        self.bytes_read.store(0, Ordering::SeqCst);
        self.reads.store(0, Ordering::SeqCst);
    }
}

/// Wraps a store, counting what goes through it; with `fail_after_parts = Some(n)`, multipart
/// uploads (of paths containing `fail_only`, if set) fail at their part `n + 1`.
#[derive(Debug)]
pub struct CountingStore {
    pub inner: Arc<dyn ObjectStore>,
    pub counters: Arc<Counters>,
    pub fail_after_parts: Option<usize>,
    pub fail_only: Option<String>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        CountingStore {
            inner,
            counters: Arc::default(),
            fail_after_parts: None,
            fail_only: None,
        }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.counters.puts.fetch_add(1, Ordering::SeqCst);
        self.counters
            .bytes_written
            .fetch_add(payload.content_length() as u64, Ordering::SeqCst);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counters.uploads.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            counters: Arc::clone(&self.counters),
            parts: 0,
            fail_after_parts: self.fail_after_parts.filter(|_| {
                self.fail_only
                    .as_ref()
                    .is_none_or(|only| location.as_ref().contains(only.as_str()))
            }),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let result = self.inner.get_opts(location, options).await?;
        self.counters.reads.fetch_add(1, Ordering::SeqCst);
        // The bytes the store answers with (the caller reads them all).
        self.counters
            .bytes_read
            .fetch_add(result.range.end - result.range.start, Ordering::SeqCst);
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            out.push(self.get_range(location, range.clone()).await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Arc<Counters>,
    parts: usize,
    fail_after_parts: Option<usize>,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let n = self.parts;
        self.parts += 1;
        if self.fail_after_parts.is_some_and(|limit| n >= limit) {
            return Box::pin(async move {
                Err(object_store::Error::Generic {
                    store: "CountingStore",
                    source: format!("injected failure at part {n}").into(),
                })
            });
        }
        self.counters.parts.fetch_add(1, Ordering::SeqCst);
        self.counters
            .bytes_written
            .fetch_add(data.content_length() as u64, Ordering::SeqCst);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.counters.completed.fetch_add(1, Ordering::SeqCst);
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.counters.aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await?;
        self.counters.aborts_ok.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The object whose upload failed with the failure a `CountingStore` injects, if `err` is that.
pub fn injected_failure(err: &Error) -> Option<&str> {
    match err {
        Error::Remote {
            path,
            source: object_store::Error::Generic {
                store: "CountingStore", ..
            },
        } => Some(path),
        _ => None,
    }
}

/// Corrupt objects put in `store`, each loaded through `remote`: each fails with its error, inside
/// an `Error::InFile` that names the object.
pub fn corrupt_objects_are_refused(store: &dyn ObjectStore, remote: &Remote, rt: &tokio::runtime::Runtime) {
    let fixture = fixture_bytes("flax_cnn");
    let mut huge = fixture.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut bad_json = fixture.clone();
    bad_json[8] = b'[';
    type Check = fn(&Error) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty", vec![], |e| {
            matches!(
                e,
                Error::Truncated {
                    what: "the header length",
                    needed: 8,
                    found: 0
                }
            )
        }),
        ("short", vec![1, 2, 3], |e| {
            matches!(
                e,
                Error::Truncated {
                    what: "the header length",
                    needed: 8,
                    found: 3
                }
            )
        }),
        ("huge", huge, |e| {
            matches!(
                e,
                Error::HeaderTooLarge {
                    len: u64::MAX,
                    max: 100_000_000
                }
            )
        }),
        ("json", bad_json, |e| matches!(e, Error::InvalidHeader { .. })),
        ("cut", fixture[..fixture.len() - 10].to_vec(), |e| {
            matches!(
                e,
                Error::Truncated {
                    what: "the tensor data",
                    ..
                }
            )
        }),
        ("long", [&fixture[..], &[0; 4]].concat(), |e| {
            matches!(e, Error::TrailingBytes { len: 4 })
        }),
    ];
    for (name, bytes, expected) in cases {
        let path = Path::from(name);
        rt.block_on(store.put(&path, PutPayload::from(bytes))).unwrap();
        let err = rt.block_on(remote.from_object::<FlaxCnn>(&path)).unwrap_err();
        let Error::InFile { path, source } = &err else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(path, name);
        assert!(expected(source.as_ref()), "{name}: {source:?}");
    }
}

/// An in-memory store that counts what moves, and a `Remote` on it.
pub fn counting() -> (Arc<CountingStore>, Remote) {
    let store = Arc::new(CountingStore::new(Arc::new(object_store::memory::InMemory::new())));
    let remote = Remote::new(store.clone());
    (store, remote)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether `path` names an object in `store`.
pub async fn exists(store: &dyn ObjectStore, path: &Path) -> bool {
    match store.head(path).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("head {path}: {e}"),
    }
}

/// The names of every object under `prefix`, sorted.
pub async fn list(store: &dyn ObjectStore, prefix: &Path) -> Vec<String> {
    use futures_util::TryStreamExt;
    let mut names: Vec<String> = store
        .list(Some(prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    names.sort();
    names
}

/// Writes every fixture to `remote` under `prefix` through its typed struct, checks the object
/// holds the very bytes Python safejax wrote, and reads it back into the struct.
pub async fn fixtures_round_trip(remote: &Remote, prefix: &str) {
    async fn one<T>(remote: &Remote, prefix: &str, name: &str)
    where
        T: Serialize + for<'de> Deserialize<'de> + Params + PartialEq + fmt::Debug,
    {
        let bytes = fixture_bytes(name);
        let params: T = safejax::from_bytes(&bytes).unwrap();
        let path = Path::from(format!("{prefix}/{name}.safetensors"));
        remote.to_object(&path, &params).await.unwrap();
        let stored = remote.store().get(&path).await.unwrap().bytes().await.unwrap();
        assert!(stored == bytes, "{name}: the stored object differs from the fixture");
        let back: T = remote.from_object(&path).await.unwrap();
        assert_eq!(back, params, "{name}");
    }
    one::<FlaxCnn>(remote, prefix, "flax_cnn").await;
    one::<SetupMlp>(remote, prefix, "flax_setup_mlp").await;
    one::<NnxModel>(remote, prefix, "nnx_model").await;
    one::<HaikuMlp>(remote, prefix, "haiku_mlp").await;
    one::<HaikuNested>(remote, prefix, "haiku_nested").await;
    one::<HaikuBnState>(remote, prefix, "haiku_bn_state").await;
    one::<HaikuResNet>(remote, prefix, "haiku_resnet").await;
    one::<ObjaxMlp>(remote, prefix, "objax_mlp").await;
    // Every fixture file is covered.
    let names = names_ending(&fixture_path(""), ".safetensors");
    assert_eq!(
        names,
        [
            "flax_cnn",
            "flax_setup_mlp",
            "haiku_bn_state",
            "haiku_mlp",
            "haiku_nested",
            "haiku_resnet",
            "nnx_model",
            "objax_mlp"
        ]
    );
}

/// A checkpoint of `layers` dense layers of `width`×`width` f32, for transfer counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Stack {
    pub layers: Vec<Dense<f32>>,
}

pub fn stack(layers: usize, width: usize) -> Stack {
    Stack {
        layers: (0..layers)
            .map(|l| Dense {
                kernel: Tensor::new(
                    vec![width, width],
                    (0..width * width).map(|i| (l * 1_000_000 + i) as f32).collect(),
                )
                .unwrap(),
                bias: Tensor::new(vec![width], (0..width).map(|i| -(i as f32) - l as f32).collect()).unwrap(),
            })
            .collect(),
    }
}

/// One layer of a [`Stack`]: a type that names a subset of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct ThirdLayer {
    #[serde(rename = "layers_3")]
    pub layer: Dense<f32>,
}

/// Copies every file below the local directory `dir` to objects under `prefix`, named as the
/// files are (object names taken as they are, as a copy by any tool gives them); the bytes copied.
pub async fn upload_dir(store: &dyn ObjectStore, dir: &std::path::Path, prefix: &str) -> u64 {
    let mut total = 0;
    let mut pending = vec![(dir.to_path_buf(), prefix.to_owned())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}/{}", entry.file_name().to_str().unwrap());
            if entry.file_type().unwrap().is_dir() {
                pending.push((entry.path(), name));
            } else {
                let bytes = std::fs::read(entry.path()).unwrap();
                total += bytes.len() as u64;
                store
                    .put(&Path::parse(&name).unwrap(), PutPayload::from(bytes))
                    .await
                    .unwrap();
            }
        }
    }
    total
}

/// Uploads every Orbax fixture under `prefix` and loads each from the store as a `Value`: the
/// same tree as `orbax::from_dir` gives from the local directory, or an error of the same kind
/// at the same key. The number of fixtures that loaded.
pub async fn orbax_fixtures_load_as_locally(remote: &Remote, prefix: &str) -> usize {
    let mut loaded = 0;
    for name in orbax_cases() {
        let dir = orbax_case_dir(&name);
        let at = format!("{prefix}/{name}");
        upload_dir(remote.store().as_ref(), &dir, &at).await;
        let local = safejax::orbax::from_dir::<safejax::Value>(&dir);
        let fetched = remote.orbax_from_dir::<safejax::Value>(&Path::from(at)).await;
        match (local, fetched) {
            (Ok(local), Ok(fetched)) => {
                assert_eq!(fetched, local, "{name}");
                loaded += 1;
            }
            (Err(local), Err(fetched)) => {
                assert_eq!(
                    std::mem::discriminant(&fetched),
                    std::mem::discriminant(&local),
                    "{name}: {fetched} (locally: {local})"
                );
                assert_eq!(fetched.key(), local.key(), "{name}");
            }
            (local, fetched) => panic!("{name}: locally {local:?}, from the store {fetched:?}"),
        }
    }
    loaded
}

/// One layer of the `mlp8` Orbax fixture: a type that names a subset of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Mlp8Layer {
    pub params: Mlp8Layer3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
pub struct Mlp8Layer3 {
    pub layer_3: Dense<f32>,
}

/// What loading one layer of `mlp8` from a store moved.
#[derive(Debug)]
pub struct PartialLoad {
    /// The bytes of every object of the checkpoint.
    pub total: u64,
    /// Bytes and requests of the one-layer load.
    pub layer: (u64, usize),
    /// Bytes and requests of the whole load (as a `Value`).
    pub whole: (u64, usize),
}

/// Uploads `mlp8` under `prefix` of `store` (which `remote` reads through), loads one layer and
/// then the whole tree, each checked against the local read, and counts what each moved.
pub async fn orbax_one_layer_of_eight(store: &CountingStore, remote: &Remote, prefix: &str) -> PartialLoad {
    let dir = orbax_case_dir("mlp8");
    let total = upload_dir(store, &dir, prefix).await;
    let path = Path::from(prefix);
    let options = safejax::Options::new().allow_unknown_keys(true);
    let remote = remote.clone().options(options.clone());

    store.counters.reset_reads();
    let layer: Mlp8Layer = remote.orbax_from_dir(&path).await.unwrap();
    let layer_moved = (store.counters.bytes_read(), store.counters.reads());
    let local: Mlp8Layer = safejax::orbax::Reader::new().options(options).from_dir(&dir).unwrap();
    assert_eq!(layer, local);

    store.counters.reset_reads();
    let whole: safejax::Value = remote.orbax_from_dir(&path).await.unwrap();
    let whole_moved = (store.counters.bytes_read(), store.counters.reads());
    assert_eq!(whole, safejax::orbax::from_dir::<safejax::Value>(&dir).unwrap());
    let loads = PartialLoad {
        total,
        layer: layer_moved,
        whole: whole_moved,
    };
    eprintln!("mlp8 from the store: {loads:?}");
    loads
}
