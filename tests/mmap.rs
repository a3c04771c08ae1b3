//! A mapped load reads the header and no tensor data: the views borrow the mapping, and the
//! process's resident memory does not grow with the model until the tensors are read.
//!
//! Alone in its test binary, so that no other test maps or touches memory meanwhile.

use safejax::{MappedFile, Params, Tensor, TensorView};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Params)]
struct Model<L> {
    layer: Vec<Layer<L>>,
}

#[derive(Serialize, Deserialize, Params)]
struct Layer<L> {
    kernel: L,
    bias: L,
}

const LAYERS: usize = 16;
const KERNEL: usize = 1 << 20; // f32 elements: 4 MiB a kernel, 64 MiB in all

/// The file-backed memory this process has mapped in, in bytes: `RssFile` of /proc/self/status,
/// and `RssShmem` for a temporary directory on tmpfs.
#[cfg(target_os = "linux")]
fn rss_file() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |field: &str| -> usize {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (kib("RssFile:") + kib("RssShmem:")) << 10
}

#[test]
#[cfg(target_os = "linux")]
fn a_mapped_load_reads_no_tensor_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    {
        let model = Model {
            layer: (0..LAYERS)
                .map(|i| Layer {
                    kernel: Tensor::new(vec![KERNEL], vec![i as f32; KERNEL]).unwrap(),
                    bias: Tensor::new(vec![4], vec![1.0f32; 4]).unwrap(),
                })
                .collect(),
        };
        safejax::to_file(&path, &model).unwrap();
    }
    let data_bytes = LAYERS * (KERNEL + 4) * 4;

    let before = rss_file();
    // SAFETY: the test's own file, not modified while mapped.
    let map = unsafe { MappedFile::open(&path) }.unwrap();
    let model: Model<TensorView<'_, f32>> = map.deserialize().unwrap();
    let loaded = rss_file();

    // Every leaf borrows the mapping.
    let range = map.as_bytes().as_ptr_range();
    for layer in &model.layer {
        for view in [&layer.kernel, &layer.bias] {
            assert!(view.is_borrowed());
            let data = view.as_slice().as_ptr_range();
            assert!(range.start <= data.start.cast() && data.end.cast() <= range.end);
        }
    }
    // The load mapped in the header's pages (and the kernel's fault-around of them), no data.
    let grown = loaded.saturating_sub(before);
    eprintln!("mapped load of {data_bytes} bytes: RssFile grew by {grown} bytes");
    assert!(
        grown < 1 << 20,
        "a mapped load of {data_bytes} bytes grew RssFile by {grown} bytes"
    );

    // Reading the tensors maps them in: the measure sees data when it is read.
    let sum: f32 = model
        .layer
        .iter()
        .map(|l| l.kernel.as_slice().iter().sum::<f32>())
        .sum();
    assert_eq!(sum, (0..LAYERS).map(|i| (i * KERNEL) as f32).sum::<f32>());
    let read = rss_file().saturating_sub(before);
    eprintln!("after reading every tensor: RssFile grew by {read} bytes");
    assert!(
        read >= data_bytes * 9 / 10,
        "reading {data_bytes} bytes grew RssFile by {read} bytes"
    );
}
