//! Hostile files: each malformed file is loaded into typed structs and into flat maps of tensors,
//! and must fail with its specific error, without a panic, and without allocating more than a small
//! multiple of its own size (measured by a counting global allocator).

mod hostile {
    pub mod alloc;
    pub mod corpus;
}

use std::collections::{BTreeMap, HashMap};

use hostile::alloc::{live, peak_during, Counting};
use hostile::corpus::*;
use safejax::{Dtype, Error, Tensor, TensorView};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allowed peak allocation during a load: a small multiple of the input, and a constant for the
/// fixed costs (error messages, the resolver's bookkeeping).
fn allowance(input: usize) -> usize {
    4 * input + 64 * 1024
}

/// One way to load a file: its error, if it fails, and the bytes that what it returned (its value
/// or its error) held, counted before the value is dropped.
type Load = fn(&[u8]) -> (Option<Error>, usize);

/// Into typed structs, and into flat maps of owned and of borrowed tensors.
const LOADS: [(&str, Load); 3] = [
    ("typed", |b| held(safejax::from_bytes::<Small>(b))),
    ("flat f32", |b| {
        held(safejax::from_bytes::<BTreeMap<String, Tensor<f32>>>(b))
    }),
    ("flat views", |b| {
        held(safejax::from_bytes::<HashMap<String, TensorView<u8>>>(b))
    }),
];

fn held<T>(loaded: safejax::Result<T>) -> (Option<Error>, usize) {
    let bytes = live();
    (loaded.err(), bytes)
}

/// Loads `bytes` every way, checks each error with `expected`, and the allocation bound.
/// Returns the error of the typed load.
#[track_caller]
fn refused(name: &str, bytes: &[u8], expected: impl Fn(&Error) -> bool) -> Error {
    let mut first = None;
    for (how, load) in LOADS {
        let ((result, _), peak) = peak_during(|| load(bytes));
        let err = result.unwrap_or_else(|| panic!("{name}: the {how} load succeeded"));
        assert!(expected(&err), "{name}: the {how} load failed with {err:?}");
        assert!(!err.to_string().is_empty());
        assert!(
            peak <= allowance(bytes.len()),
            "{name}: the {how} load allocated {peak} bytes for {} bytes of input",
            bytes.len()
        );
        first.get_or_insert(err);
    }
    first.unwrap()
}

#[test]
fn the_small_file_is_valid() {
    let bytes = small_file();
    let (loaded, peak) = peak_during(|| safejax::from_bytes::<Small>(&bytes));
    assert_eq!(loaded.unwrap(), small());
    assert!(peak <= allowance(bytes.len()), "{peak}");
}

#[test]
fn every_truncation_point() {
    let bytes = small_file();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for len in 0..bytes.len() {
        let what = match len {
            0..8 => "the header length",
            _ if len < header_end => "the header",
            _ => "the tensor data",
        };
        let err = refused(
            &format!("cut at {len}"),
            &bytes[..len],
            |e| matches!(e, Error::Truncated { what: w, .. } if *w == what),
        );
        let needed = match what {
            "the header length" => 8,
            "the header" => header_end as u64,
            _ => (bytes.len() - header_end) as u64,
        };
        assert!(
            matches!(err, Error::Truncated { needed: n, .. } if n == needed),
            "cut at {len}: {err:?}"
        );
    }
}

#[test]
fn header_lengths() {
    let bytes = small_file();
    let invalid_header = |e: &Error| matches!(e, Error::InvalidHeader { .. });
    refused("length 0", &with_header_len(bytes.clone(), 0), invalid_header);
    // Seven bytes of the header are cut-off JSON.
    refused("length 7", &with_header_len(bytes.clone(), 7), invalid_header);
    for len in [bytes.len() as u64 - 7, bytes.len() as u64, 100_000_000] {
        refused(&format!("length {len}"), &with_header_len(bytes.clone(), len), |e| {
            matches!(e, Error::Truncated { what: "the header", .. })
        });
    }
    for len in [100_000_001, 1 << 63, u64::MAX] {
        let err = refused(&format!("length {len}"), &with_header_len(bytes.clone(), len), |e| {
            matches!(e, Error::HeaderTooLarge { .. })
        });
        assert!(matches!(err, Error::HeaderTooLarge { len: l, max: 100_000_000 } if l == len));
    }
}

#[test]
fn headers_that_are_not_utf8_or_not_json() {
    let reason_has =
        |needle: &'static str| move |e: &Error| matches!(e, Error::InvalidHeader { reason } if reason.contains(needle));
    let not_utf8 = file_bytes(b"{\"a\xff\":{}}", b"");
    refused("not UTF-8", &not_utf8, reason_has("not UTF-8"));
    let cases: [(&str, &str); 7] = [
        ("not JSON", "{not json}"),
        ("an array", "[1, 2]"),
        ("a string", r#""{}""#),
        ("unclosed", r#"{"a":{"dtype":"F32""#),
        ("trailing text", "{} x"),
        ("two objects", "{}{}"),
        ("NUL padding", "{}\0\0"),
    ];
    for (name, text) in cases {
        refused(name, &file(text, b""), |e| matches!(e, Error::InvalidHeader { .. }));
    }
    // JSON nested past serde_json's recursion limit.
    let deep = format!(
        r#"{{"a":{{"dtype":"U8","shape":{}{},"data_offsets":[0,0]}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    refused(
        "deep JSON",
        &file(&deep, b""),
        |e| matches!(e, Error::InvalidEntry { key, .. } if key == "a"),
    );
}

#[test]
fn offsets_overlapping_gaps_reversed_and_past_the_end() {
    let data = [0u8; 8];
    let overlap = header(&[entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[1]", 2, 6)]);
    refused(
        "overlap",
        &file(&overlap, &data[..6]),
        |e| matches!(e, Error::OverlappingData { key, start: 2, previous, previous_end: 4 } if key == "b" && previous == "a"),
    );
    let same = header(&[entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[1]", 0, 4)]);
    refused(
        "same range",
        &file(&same, &data[..4]),
        |e| matches!(e, Error::OverlappingData { key, previous, .. } if key == "b" && previous == "a"),
    );
    let gap = header(&[entry("a", "F32", "[1]", 0, 4), entry("b", "U8", "[2]", 6, 8)]);
    let err = refused(
        "gap",
        &file(&gap, &data),
        |e| matches!(e, Error::DataGap { start: 4, end: 6, next } if next == "b"),
    );
    assert_eq!(err.key(), Some("b"));
    let leading_gap = header(&[entry("a", "F32", "[1]", 4, 8)]);
    refused("leading gap", &file(&leading_gap, &data), |e| {
        matches!(e, Error::DataGap { start: 0, end: 4, .. })
    });
    let reversed = header(&[entry("a", "U8", "[0]", 4, 0)]);
    refused(
        "reversed",
        &file(&reversed, &data[..4]),
        |e| matches!(e, Error::InvalidEntry { key, reason } if key == "a" && reason.contains("not a valid range")),
    );
    let negative = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[-1,0]}}"#;
    refused(
        "negative offset",
        &file(negative, b""),
        |e| matches!(e, Error::InvalidEntry { key, .. } if key == "a"),
    );
    let past = header(&[entry("a", "F32", "[1]", 0, 4), entry("b", "F32", "[1]", 4, 8)]);
    refused("past the end", &file(&past, &data[..6]), |e| {
        matches!(
            e,
            Error::Truncated {
                what: "the tensor data",
                needed: 8,
                found: 6
            }
        )
    });
    // A huge tensor announced, a few bytes present: nothing is allocated for the claim.
    let huge = header(&[entry("a", "U8", "[1099511627776]", 0, 1 << 40)]);
    refused("huge claim", &file(&huge, &data), |e| {
        matches!(
            e,
            Error::Truncated {
                what: "the tensor data",
                ..
            }
        )
    });
    let huge_offsets = header(&[entry("a", "U8", "[1]", u64::MAX - 1, u64::MAX)]);
    refused("offsets near u64::MAX", &file(&huge_offsets, &data), |e| {
        matches!(e, Error::DataGap { .. })
    });
}

/// Entries listed in another order than their data are fine: a JSON object is unordered, and the
/// reference writer orders data by dtype but the header by key.
#[test]
fn header_order_is_not_data_order() {
    let listed = header(&[entry("b", "U8", "[2]", 4, 6), entry("a", "U8", "[4]", 0, 4)]);
    let flat: BTreeMap<String, Tensor<u8>> = safejax::from_bytes(&file(&listed, &[1, 2, 3, 4, 5, 6])).unwrap();
    assert_eq!(flat["a"].as_slice(), &[1, 2, 3, 4]);
    assert_eq!(flat["b"].as_slice(), &[5, 6]);
}

#[test]
fn shapes_that_overflow() {
    let shapes = [
        ("U8", "[4294967296,4294967296]"),
        ("F32", "[18446744073709551615]"),
        ("F64", "[4611686018427387904]"),
        ("U8", "[2,9223372036854775808]"),
    ];
    for (dtype, shape) in shapes {
        let h = header(&[entry("w", dtype, shape, 0, 0)]);
        refused(
            shape,
            &file(&h, b""),
            |e| matches!(e, Error::ShapeOverflow { key, .. } if key == "w"),
        );
    }
    let too_big = r#"{"w":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0]}}"#;
    refused(
        "a dimension past u64",
        &file(too_big, b""),
        |e| matches!(e, Error::InvalidEntry { key, .. } if key == "w"),
    );
    let rank = format!("[{}]", vec!["1"; 65].join(","));
    let h = header(&[entry("w", "U8", &rank, 0, 1)]);
    refused(
        "65 dimensions",
        &file(&h, &[0]),
        |e| matches!(e, Error::InvalidEntry { reason, .. } if reason.contains("at most 64 dimensions")),
    );
    let sub_byte = header(&[entry("w", "F4", "[3]", 0, 1)]);
    refused(
        "half a byte",
        &file(&sub_byte, &[0]),
        |e| matches!(e, Error::InvalidEntry { reason, .. } if reason.contains("whole number of bytes")),
    );
}

#[test]
fn dtype_sizes_that_do_not_match_the_range() {
    /// The dtype as written and as parsed, the shape as written and as parsed, the bytes it
    /// needs, and the end of its range.
    type Case = (&'static str, Dtype, &'static str, &'static [u64], u64, u64);
    let cases: [Case; 3] = [
        ("F32", Dtype::F32, "[2]", &[2], 8, 4),
        ("F64", Dtype::F64, "[]", &[], 8, 4),
        ("U8", Dtype::U8, "[0]", &[0], 0, 1),
    ];
    for (name, dtype, shape, dims, needed, end) in cases {
        let h = header(&[entry("w", name, shape, 0, end)]);
        refused(name, &file(&h, &vec![0; end as usize]), |e| {
            matches!(
                e,
                Error::DataSizeMismatch { key, dtype: d, shape: s, expected, found }
                    if key == "w" && *d == dtype && s == dims && *expected == needed && *found == end
            )
        });
    }
}

#[test]
fn unknown_dtypes() {
    for dtype in ["F31", "f32", "", "FLOAT", "U128"] {
        let h = header(&[entry("w", dtype, "[1]", 0, 4)]);
        refused(
            dtype,
            &file(&h, &[0; 4]),
            |e| matches!(e, Error::UnknownDtype { key, found } if key == "w" && found == dtype),
        );
    }
    let not_a_string = r#"{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}"#;
    refused(
        "dtype 4",
        &file(not_a_string, &[0; 4]),
        |e| matches!(e, Error::InvalidEntry { key, .. } if key == "w"),
    );
}

#[test]
fn entries_that_are_not_entries() {
    let cases = [
        ("a number", r#"{"w":1}"#),
        ("no dtype", r#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#),
        ("no offsets", r#"{"w":{"dtype":"F32","shape":[1]}}"#),
        (
            "three offsets",
            r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#,
        ),
        (
            "shape of strings",
            r#"{"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}"#,
        ),
        (
            "float dimension",
            r#"{"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}"#,
        ),
    ];
    for (name, text) in cases {
        refused(
            name,
            &file(text, &[0; 4]),
            |e| matches!(e, Error::InvalidEntry { key, .. } if key == "w"),
        );
    }
}

#[test]
fn duplicate_keys_in_the_header() {
    let h = header(&[
        entry("w", "U8", "[1]", 0, 1),
        entry("v", "U8", "[1]", 1, 2),
        entry("w", "U8", "[1]", 2, 3),
    ]);
    let err = refused(
        "duplicate w",
        &file(&h, &[0; 3]),
        |e| matches!(e, Error::DuplicateKey { key } if key == "w"),
    );
    assert_eq!(err.key(), Some("w"));
    let meta = r#"{"__metadata__":{},"__metadata__":{}}"#;
    refused(
        "duplicate metadata",
        &file(meta, b""),
        |e| matches!(e, Error::DuplicateKey { key } if key == "__metadata__"),
    );
}

#[test]
fn metadata_that_is_not_a_string_map() {
    for value in [
        r#"{"a":1}"#,
        r#"{"a":null}"#,
        r#"{"a":{"b":"c"}}"#,
        r#"["a","b"]"#,
        r#""a""#,
        "7",
    ] {
        let text = format!(r#"{{"__metadata__":{value}}}"#);
        refused(value, &file(&text, b""), |e| matches!(e, Error::InvalidMetadata { .. }));
        let err = safejax::read_metadata(&file(&text, b"")).unwrap_err();
        assert!(matches!(err, Error::InvalidMetadata { .. }), "{err:?}");
    }
    let null = file(r#"{"__metadata__":null}"#, b"");
    assert!(safejax::read_metadata(&null).unwrap().is_empty());
}

#[test]
fn trailing_bytes() {
    let mut bytes = small_file();
    bytes.extend_from_slice(&[0; 3]);
    refused("3 trailing", &bytes, |e| matches!(e, Error::TrailingBytes { len: 3 }));
    refused("data without tensors", &file("{}", &[1]), |e| {
        matches!(e, Error::TrailingBytes { len: 1 })
    });
}

/// A file of several MB of tensor data, cut or padded: refused before any tensor is copied; loaded
/// whole, it costs about its own size.
#[test]
fn big_files_cut_or_padded() {
    let bytes = big_file();
    let (loaded, peak) = peak_during(|| safejax::from_bytes::<Small>(&bytes));
    assert_eq!(loaded.unwrap().dense.kernel.len(), 1 << 20);
    assert!(peak <= allowance(bytes.len()), "{peak}");
    let data_start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [data_start, data_start + 1, bytes.len() / 2, bytes.len() - 1] {
        refused(&format!("big file cut at {cut}"), &bytes[..cut], |e| {
            matches!(
                e,
                Error::Truncated {
                    what: "the tensor data",
                    ..
                }
            )
        });
    }
    let mut padded = bytes;
    padded.push(0);
    refused("big file padded", &padded, |e| {
        matches!(e, Error::TrailingBytes { len: 1 })
    });
}

/// What a big header may cost to load: 4x its size. Each entry becomes a 40-byte entry, its key
/// and its shape (each dimension in as many bytes as it has digits, at most), a 24-byte node of
/// the resolved tree (12 bytes in a map of leaves), and the output the type asks for. Only where
/// that output alone is more than 3x the header, as a map of views of 64-dimension shapes is (each
/// shape 512 bytes as `usize`s, 128 as JSON), does the load go past 4x, and then by no more than the
/// header's size on top of the output. Nothing is sized by what the file claims, and the header is
/// capped at 100 MB before anything is allocated.
fn header_allowance(input: usize, output: usize) -> usize {
    (4 * input).max(output + input) + 64 * 1024
}

/// `__metadata__` is checked on load but kept as its text until asked for: it costs its size.
fn metadata_allowance(input: usize) -> usize {
    input + 64 * 1024
}

/// Big headers made to cost the most memory per byte of input: their loads stay in bounds too,
/// whether they fail or not.
#[test]
fn costly_headers_stay_within_bounds() {
    let files = [
        ("many entries", many_entries(20_000)),
        ("many dimensions", many_dimensions(2_000)),
        ("many metadata pairs", many_metadata(20_000)),
        ("many partial modules", many_partial_modules(5_000)),
    ];
    for (name, bytes) in &files {
        for (how, load) in LOADS {
            let ((_, output), peak) = peak_during(|| load(bytes));
            let (ratio, output_ratio) = (peak as f64 / bytes.len() as f64, output as f64 / bytes.len() as f64);
            println!(
                "{name}, {how}: {peak} bytes for {} ({ratio:.2}x; what it returns {output_ratio:.2}x)",
                bytes.len()
            );
            let allowance = if name.contains("metadata") {
                metadata_allowance(bytes.len())
            } else {
                header_allowance(bytes.len(), output)
            };
            assert!(
                peak <= allowance,
                "{name}, {how}: {peak} bytes allocated for {} bytes of input",
                bytes.len()
            );
        }
    }
}
