//! `safejax::remote` against a real S3-protocol server on loopback (moto's server, started by
//! `scripts/s3_tests.sh`, which sets `SAFEJAX_S3_ENDPOINT`). Feature `s3-tests`; without the
//! variable every test fails, never passes silently.
//!
//! Round trips of every fixture, large multipart uploads, sharded checkpoints, partial loads, a
//! server that goes away during an upload, aborted uploads, missing and corrupt objects; every
//! Orbax fixture read from the server, and one layer of eight moving a fraction of it.

mod common;
mod remote_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use remote_support::*;
use safejax::remote::Remote;
use safejax::{Error, Options, Value};

use common::models::HaikuResNet;
use common::{fixture_path, orbax_cases};

fn endpoint() -> String {
    std::env::var("SAFEJAX_S3_ENDPOINT").expect(
        "SAFEJAX_S3_ENDPOINT is not set: these tests need the S3 server that scripts/s3_tests.sh starts \
         (bash scripts/s3_tests.sh)",
    )
}

/// Makes a bucket of its own for a test (moto takes unsigned requests).
fn create_bucket(name: &str) -> String {
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect to the S3 server");
    write!(
        stream,
        "PUT /{name} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "create bucket {name}: {response}");
    name.to_owned()
}

/// The S3 store for `bucket` at `endpoint`, with dummy credentials and few, quick retries.
fn s3_at(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id("safejax-test")
        .with_secret_access_key("safejax-test-secret")
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        })
        .build()
        .unwrap();
    Arc::new(store)
}

fn s3(bucket: &str) -> Arc<dyn ObjectStore> {
    s3_at(&endpoint(), bucket)
}

#[test]
fn every_fixture_round_trips_through_s3_by_url() {
    let bucket = create_bucket("fixtures");
    let endpoint = endpoint();
    // The store from a URL and options, as a user would name it.
    let (remote, path) = Remote::parse_url_opts(
        &format!("s3://{bucket}/ckpt/flax_cnn.safetensors"),
        [
            ("endpoint", endpoint.as_str()),
            ("allow_http", "true"),
            ("virtual_hosted_style_request", "false"),
            ("region", "us-east-1"),
            ("access_key_id", "safejax-test"),
            ("secret_access_key", "safejax-test-secret"),
        ],
    )
    .unwrap();
    assert_eq!(path.as_ref(), "ckpt/flax_cnn.safetensors");
    let rt = runtime();
    rt.block_on(fixtures_round_trip(&remote, "ckpt"));
    // And in parts (S3 takes parts of 5 MiB at least, but the last: one part each).
    let remote = remote.part_size(5 << 20);
    rt.block_on(fixtures_round_trip(&remote, "again"));
    let listed = rt.block_on(list(remote.store().as_ref(), &Path::from("ckpt")));
    assert_eq!(listed.len(), 8, "{listed:?}");
}

#[test]
fn orbax_checkpoints_load_from_s3_as_from_their_directories() {
    let bucket = create_bucket("orbax");
    let store = Arc::new(CountingStore::new(s3(&bucket)));
    let remote = Remote::new(store.clone());
    let rt = runtime();
    let loaded = rt.block_on(orbax_fixtures_load_as_locally(&remote, "fixtures"));
    // All but the five of dtypes safejax has no name for (refused alike).
    assert_eq!(loaded, orbax_cases().len() - 5);
    let loads = rt.block_on(orbax_one_layer_of_eight(&store, &remote, "mlp8"));
    assert!(loads.layer.0 * 4 < loads.total, "{loads:?}");
    assert!(loads.layer.0 * 3 < loads.whole.0, "{loads:?}");
}

#[test]
fn a_large_checkpoint_uploads_in_parts_and_loads_in_part() {
    let bucket = create_bucket("large");
    let store = Arc::new(CountingStore::new(s3(&bucket)));
    let remote = Remote::new(store.clone())
        .part_size(5 << 20)
        .concurrency(4)
        .options(Options::new().allow_unknown_keys(true));
    // 12 layers of 512×512 f32: 12.6 MB, three parts.
    let params = stack(12, 512);
    let path = Path::from("models/stack.safetensors");
    let rt = runtime();
    rt.block_on(remote.to_object(&path, &params)).unwrap();
    let c = &store.counters;
    assert_eq!(
        (c.get(&c.uploads), c.get(&c.parts), c.get(&c.completed)),
        (1, 3, 1),
        "{c:?}"
    );
    let file_len = rt.block_on(store.head(&path)).unwrap().size;
    assert_eq!(file_len, safejax::to_bytes(&params).unwrap().len() as u64);

    store.counters.reset_reads();
    let all: Stack = rt.block_on(remote.from_object(&path)).unwrap();
    assert_eq!(all, params);

    store.counters.reset_reads();
    let layer: ThirdLayer = rt.block_on(remote.from_object(&path)).unwrap();
    assert_eq!(layer.layer, params.layers[3]);
    let subset = (512 * 512 + 512) * 4;
    let moved = store.counters.bytes_read();
    eprintln!(
        "S3 subset load: {moved} bytes in {} requests (subset {subset}, file {file_len})",
        c.reads()
    );
    assert_eq!(c.reads(), 2);
    assert!(moved <= subset + (64 << 10), "{moved}");
    assert!(moved * 10 < file_len, "{moved} of {file_len}");
}

#[test]
fn sharded_checkpoints_round_trip_through_s3() {
    let bucket = create_bucket("sharded");
    let store = Arc::new(CountingStore::new(s3(&bucket)));
    let remote = Remote::new(store.clone()).options(Options::new().allow_unknown_keys(true));
    let value: Value = safejax::from_file(fixture_path("haiku_resnet.safetensors")).unwrap();
    let rt = runtime();
    let prefix = Path::from("resnet");
    rt.block_on(remote.to_dir(&prefix, &value, 4 * 1024)).unwrap();

    let local = tempfile::tempdir().unwrap();
    safejax::to_dir(local.path(), &value, 4 * 1024).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(local.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        rt.block_on(list(store.as_ref(), &prefix)),
        names.iter().map(|n| format!("resnet/{n}")).collect::<Vec<_>>()
    );
    for name in &names {
        let stored = rt
            .block_on(async { store.get(&prefix.clone().join(name.as_str())).await?.bytes().await })
            .unwrap();
        assert!(stored == std::fs::read(local.path().join(name)).unwrap(), "{name}");
    }
    assert_eq!(rt.block_on(remote.from_dir::<Value>(&prefix)).unwrap(), value);
    let typed: HaikuResNet = rt.block_on(remote.from_dir(&prefix)).unwrap();
    assert_eq!(
        typed,
        safejax::from_file(fixture_path("haiku_resnet.safetensors")).unwrap()
    );

    // A subset of the sharded stack: the index, each shard's header, one range.
    let stacked = Path::from("stack");
    let params = stack(6, 128);
    rt.block_on(remote.to_dir(&stacked, &params, 70 << 10)).unwrap();
    assert_eq!(rt.block_on(list(store.as_ref(), &stacked)).len(), 7);
    let small_reads = remote.clone().first_read(1024);
    store.counters.reset_reads();
    let layer: ThirdLayer = rt.block_on(small_reads.from_dir(&stacked)).unwrap();
    assert_eq!(layer.layer, params.layers[3]);
    assert_eq!(store.counters.reads(), 1 + 6 + 1);
    assert!(store.counters.bytes_read() < 2 * (128 * 128 + 128) * 4);
}

#[test]
fn an_aborted_multipart_upload_leaves_no_object_on_the_server() {
    let bucket = create_bucket("aborted");
    let server = s3(&bucket);
    let mut failing = CountingStore::new(server.clone());
    failing.fail_after_parts = Some(1);
    let failing = Arc::new(failing);
    let remote = Remote::new(failing.clone()).part_size(5 << 20);
    let path = Path::from("ckpt/model.safetensors");
    let rt = runtime();
    let err = rt.block_on(remote.to_object(&path, &stack(12, 512))).unwrap_err();
    assert_eq!(injected_failure(&err), Some("ckpt/model.safetensors"), "{err:?}");
    let c = &failing.counters;
    // The server took the first part, then the abort.
    assert_eq!(
        (c.get(&c.parts), c.get(&c.aborts), c.get(&c.aborts_ok)),
        (1, 1, 1),
        "{c:?}"
    );
    assert!(!rt.block_on(exists(server.as_ref(), &path)));
    assert_eq!(
        rt.block_on(list(server.as_ref(), &Path::from("ckpt"))),
        Vec::<String>::new()
    );
}

/// A TCP proxy in front of the server that goes away, as a dying server does, once `limit` bytes
/// went from the client to the server: every connection is cut and new ones are refused.
struct DyingProxy {
    port: u16,
    sent: Arc<AtomicU64>,
    dead: Arc<AtomicBool>,
}

impl DyingProxy {
    fn start(upstream: String, limit: u64) -> DyingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let dead = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (sent2, dead2) = (sent.clone(), dead.clone());
        std::thread::spawn(move || {
            // Dropping the listener when dead refuses new connections.
            while !dead2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let server = TcpStream::connect(&upstream).unwrap();
                        open.lock()
                            .unwrap()
                            .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                        let kill = {
                            let (open, dead) = (open.clone(), dead2.clone());
                            move || {
                                dead.store(true, Ordering::SeqCst);
                                for s in open.lock().unwrap().iter() {
                                    let _ = s.shutdown(Shutdown::Both);
                                }
                            }
                        };
                        pump(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            Some((sent2.clone(), limit, kill)),
                        );
                        pump(server, client, None::<(Arc<AtomicU64>, u64, fn())>);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("proxy accept: {e}"),
                }
            }
        });
        DyingProxy { port, sent, dead }
    }
}

/// Copies `from` to `to` on a thread; with a budget, calls `kill` once the total passes it.
fn pump<K: Fn() + Send + 'static>(mut from: TcpStream, mut to: TcpStream, budget: Option<(Arc<AtomicU64>, u64, K)>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some((sent, limit, kill)) = &budget {
                if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > *limit {
                    kill();
                    break;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_server_that_goes_away_mid_upload_leaves_no_object() {
    let bucket = create_bucket("dying");
    let server = s3(&bucket);
    let host = endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // The server dies 7 MB into a 12.6 MB upload: during the second part.
    let proxy = DyingProxy::start(host, 7 << 20);
    let through_proxy = Arc::new(CountingStore::new(s3_at(
        &format!("http://127.0.0.1:{}", proxy.port),
        &bucket,
    )));
    let remote = Remote::new(through_proxy.clone()).part_size(5 << 20).concurrency(1);
    let path = Path::from("ckpt/model.safetensors");
    let rt = runtime();
    let err = rt.block_on(remote.to_object(&path, &stack(12, 512))).unwrap_err();
    assert!(proxy.dead.load(Ordering::SeqCst));
    assert!(
        proxy.sent.load(Ordering::SeqCst) > 5 << 20,
        "the first part went through"
    );
    assert!(
        matches!(&err, Error::Remote { path, .. } if path == "ckpt/model.safetensors"),
        "{err:?}"
    );
    eprintln!("upload error: {err}");
    let c = &through_proxy.counters;
    assert_eq!(
        (c.get(&c.uploads), c.get(&c.completed), c.get(&c.aborts)),
        (1, 0, 1),
        "{c:?}"
    );
    // The server, asked directly, has no object: an upload shows only once completed.
    assert!(!rt.block_on(exists(server.as_ref(), &path)));
    assert_eq!(
        rt.block_on(list(server.as_ref(), &Path::from("ckpt"))),
        Vec::<String>::new()
    );
    // And a sharded save through a dead server fails without an index.
    let err = rt
        .block_on(remote.to_dir(&Path::from("dir"), &stack(2, 8), 1))
        .unwrap_err();
    assert!(matches!(err, Error::Remote { .. }), "{err:?}");
    assert_eq!(
        rt.block_on(list(server.as_ref(), &Path::from("dir"))),
        Vec::<String>::new()
    );
}

#[test]
fn missing_and_corrupt_objects_on_s3_are_clear_errors() {
    let bucket = create_bucket("errors");
    let store = s3(&bucket);
    let remote = Remote::new(store.clone());
    let rt = runtime();
    let err = rt
        .block_on(remote.from_object::<Stack>(&Path::from("none/model.safetensors")))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote { path, source: object_store::Error::NotFound { .. } }
            if path == "none/model.safetensors"),
        "{err:?}"
    );
    let err = rt.block_on(remote.from_dir::<Stack>(&Path::from("none"))).unwrap_err();
    assert!(
        matches!(&err, Error::NoCheckpoint { path, .. } if path.ends_with("/none")),
        "{err:?}"
    );

    corrupt_objects_are_refused(store.as_ref(), &remote, &rt);
    // A shard index naming a file outside its prefix is refused before any shard is read.
    let index = r#"{"metadata": {"total_size": 4}, "weight_map": {"a": "../escape.safetensors"}}"#;
    rt.block_on(store.put(&Path::from("bad/model.safetensors.index.json"), PutPayload::from(index)))
        .unwrap();
    let err = rt.block_on(remote.from_dir::<Value>(&Path::from("bad"))).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidIndex { reason } if reason.contains("`../escape.safetensors`")),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a `.safetensors` file beside it"), "{err}");
}
