//! `safejax diff`: which keys two checkpoints share, and where they differ in dtype, shape or
//! values.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::Result;
use safejax::{Dtype, DynTensorView};
use serde_json::{json, Value as Json};

use crate::fmt;
use crate::source::Checkpoint;

/// How `diff` compares and prints.
pub struct Options {
    /// Values that differ by at most this much are equal.
    pub tolerance: f64,
}

/// A key in both checkpoints whose tensors differ.
struct Difference {
    key: String,
    a: (Dtype, Vec<usize>),
    b: (Dtype, Vec<usize>),
    /// The largest absolute difference of the values, when the shapes agree and both dtypes are
    /// numbers; infinite where one value is NaN and the other not.
    max_diff: Option<f64>,
}

/// The comparison.
pub struct Report {
    only_a: Vec<(String, Dtype, Vec<usize>)>,
    only_b: Vec<(String, Dtype, Vec<usize>)>,
    different: Vec<Difference>,
    /// Keys whose tensors are equal (within the tolerance).
    equal: usize,
    /// The largest difference among the keys counted equal.
    equal_max_diff: f64,
    /// Metadata entries that differ: key, value in a, value in b.
    metadata: Vec<(String, Option<String>, Option<String>)>,
}

impl Report {
    /// Whether the checkpoints hold the same tensors (within the tolerance). Metadata does not count.
    pub fn is_equal(&self) -> bool {
        self.only_a.is_empty() && self.only_b.is_empty() && self.different.is_empty()
    }
}

/// One element as `f64`, for the dtypes that are numbers.
fn decoder(dtype: Dtype) -> Option<fn(&[u8]) -> f64> {
    dtype.f64_reader()
}

/// The largest absolute difference between the elements of two tensors of one shape, or `None`
/// when a dtype is not a number this can read.
fn max_abs_diff(a: &DynTensorView<'_>, b: &DynTensorView<'_>) -> Option<f64> {
    let (da, db) = (decoder(a.dtype())?, decoder(b.dtype())?);
    let (sa, sb) = (a.dtype().bit_size() / 8, b.dtype().bit_size() / 8);
    let mut max = 0.0f64;
    for (x, y) in a.as_bytes().chunks_exact(sa).zip(b.as_bytes().chunks_exact(sb)) {
        let (x, y) = (da(x), db(y));
        let d = if x == y || (x.is_nan() && y.is_nan()) {
            0.0
        } else if x.is_nan() || y.is_nan() {
            f64::INFINITY
        } else {
            (x - y).abs()
        };
        if d > max || d.is_nan() {
            max = if d.is_nan() { f64::INFINITY } else { d };
        }
    }
    Some(max)
}

/// Compares two opened checkpoints.
pub fn compare(a: &Checkpoint, b: &Checkpoint, options: &Options) -> Result<Report> {
    let (ca, cb) = (a.contents()?, b.contents()?);
    let (ma, mb) = (ca.by_key(), cb.by_key());
    let mut report = Report {
        only_a: Vec::new(),
        only_b: Vec::new(),
        different: Vec::new(),
        equal: 0,
        equal_max_diff: 0.0,
        metadata: Vec::new(),
    };
    let info = |t: &DynTensorView<'_>| (t.dtype(), t.shape().to_vec());
    for (key, ta) in &ma {
        let Some(tb) = mb.get(key) else {
            let (dtype, shape) = info(ta);
            report.only_a.push((key.to_string(), dtype, shape));
            continue;
        };
        let same_shape = ta.shape() == tb.shape();
        let max_diff = if !same_shape {
            None
        } else if ta.dtype() == tb.dtype() && ta.as_bytes() == tb.as_bytes() {
            Some(0.0)
        } else {
            max_abs_diff(ta, tb)
        };
        let equal_values = ta.dtype() == tb.dtype()
            && same_shape
            && (ta.as_bytes() == tb.as_bytes() || max_diff.is_some_and(|d| d <= options.tolerance));
        if equal_values {
            report.equal += 1;
            report.equal_max_diff = report.equal_max_diff.max(max_diff.unwrap_or(0.0));
        } else {
            report.different.push(Difference {
                key: key.to_string(),
                a: info(ta),
                b: info(tb),
                max_diff,
            });
        }
    }
    for (key, tb) in &mb {
        if !ma.contains_key(key) {
            let (dtype, shape) = info(tb);
            report.only_b.push((key.to_string(), dtype, shape));
        }
    }
    let natural = |x: &String, y: &String| fmt::natural(x, y);
    report.only_a.sort_by(|x, y| natural(&x.0, &y.0));
    report.only_b.sort_by(|x, y| natural(&x.0, &y.0));
    report.different.sort_by(|x, y| natural(&x.key, &y.key));
    let meta_keys: BTreeSet<&String> = ca.metadata.keys().chain(cb.metadata.keys()).collect();
    for k in meta_keys {
        let (va, vb) = (ca.metadata.get(k), cb.metadata.get(k));
        if va != vb {
            report.metadata.push((k.clone(), va.cloned(), vb.cloned()));
        }
    }
    Ok(report)
}

/// A difference as people read it: `0`, `0.5`, `1.25e-7`.
fn number(x: f64) -> String {
    if x == 0.0 || x.is_infinite() {
        return if x == 0.0 { "0".to_owned() } else { "inf".to_owned() };
    }
    if (1e-3..1e6).contains(&x.abs()) {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{x:.3e}")
    }
}

fn tensor(dtype: Dtype, shape: &[usize]) -> String {
    format!("{dtype} {}", fmt::shape(shape))
}

/// The report as text.
pub fn text(a: &Checkpoint, b: &Checkpoint, report: &Report, options: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "a: {}", a.path.display());
    let _ = writeln!(out, "b: {}", b.path.display());
    for (side, list) in [("a", &report.only_a), ("b", &report.only_b)] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "only in {side} ({}):", list.len());
        for (key, dtype, shape) in list {
            let _ = writeln!(out, "  {key}  {}", tensor(*dtype, shape));
        }
    }
    if !report.different.is_empty() {
        let _ = writeln!(out, "different ({}):", report.different.len());
        for d in &report.different {
            let mut what = Vec::new();
            if d.a.0 != d.b.0 {
                what.push(format!("dtype {} -> {}", d.a.0, d.b.0));
            }
            if d.a.1 != d.b.1 {
                what.push(format!("shape {} -> {}", fmt::shape(&d.a.1), fmt::shape(&d.b.1)));
            } else if d.a.0 == d.b.0 {
                what.push(tensor(d.a.0, &d.a.1));
            }
            match d.max_diff {
                Some(m) => what.push(format!("max |a - b| = {}", number(m))),
                None if d.a.1 == d.b.1 && d.a.0 == d.b.0 => what.push("bytes differ".to_owned()),
                None => {}
            }
            let _ = writeln!(out, "  {}  {}", d.key, what.join(", "));
        }
    }
    for (k, va, vb) in &report.metadata {
        let show = |v: &Option<String>| v.as_deref().map_or("(none)".to_owned(), |v| format!("{v:?}"));
        let _ = writeln!(out, "metadata `{k}`: {} -> {} (not compared)", show(va), show(vb));
    }
    let within = if report.equal_max_diff > 0.0 {
        format!(
            " (max |a - b| = {} within tolerance {})",
            number(report.equal_max_diff),
            number(options.tolerance)
        )
    } else {
        String::new()
    };
    let n = report.equal;
    let s = if n == 1 { "" } else { "s" };
    if report.is_equal() {
        let _ = writeln!(out, "equal: {n} tensor{s}{within}");
    } else {
        let _ = writeln!(
            out,
            "differ: {} only in a, {} only in b, {} different, {n} equal{within}",
            report.only_a.len(),
            report.only_b.len(),
            report.different.len(),
        );
    }
    out
}

/// The report as JSON.
pub fn to_json(a: &Checkpoint, b: &Checkpoint, report: &Report, options: &Options) -> Json {
    let side = |list: &Vec<(String, Dtype, Vec<usize>)>| -> Json {
        list.iter()
            .map(|(key, dtype, shape)| json!({"key": key, "dtype": dtype.name(), "shape": shape}))
            .collect()
    };
    let different: Vec<Json> = report
        .different
        .iter()
        .map(|d| {
            json!({
                "key": d.key,
                "a": {"dtype": d.a.0.name(), "shape": d.a.1},
                "b": {"dtype": d.b.0.name(), "shape": d.b.1},
                // JSON has no infinity: a NaN against a number is `null` with `nan_mismatch`.
                "max_abs_diff": d.max_diff.filter(|m| m.is_finite()),
                "nan_mismatch": d.max_diff.is_some_and(f64::is_infinite),
            })
        })
        .collect();
    let metadata: Vec<Json> = report
        .metadata
        .iter()
        .map(|(k, va, vb)| json!({"key": k, "a": va, "b": vb}))
        .collect();
    json!({
        "a": a.path.display().to_string(),
        "b": b.path.display().to_string(),
        "equal": report.is_equal(),
        "tolerance": options.tolerance,
        "only_in_a": side(&report.only_a),
        "only_in_b": side(&report.only_b),
        "different": different,
        "equal_count": report.equal,
        "equal_max_abs_diff": report.equal_max_diff,
        "metadata_differences": metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use safejax::bf16;

    #[test]
    fn differences_read_well() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.25e-7), "1.250e-7");
        assert_eq!(number(f64::INFINITY), "inf");
    }

    #[test]
    fn nan_against_nan_is_equal_and_against_a_number_is_not() {
        let nan = f32::NAN.to_le_bytes();
        let one = 1f32.to_le_bytes();
        let (nan_one, one_one) = ([nan, one].concat(), [one, one].concat());
        let a = DynTensorView::new(Dtype::F32, vec![2], &nan_one).unwrap();
        let b = DynTensorView::new(Dtype::F32, vec![2], &nan_one).unwrap();
        let c = DynTensorView::new(Dtype::F32, vec![2], &one_one).unwrap();
        assert_eq!(max_abs_diff(&a, &b), Some(0.0));
        assert_eq!(max_abs_diff(&a, &c), Some(f64::INFINITY));
        // Across dtypes the values are compared as numbers.
        let (half, quarter) = (bf16::from_f32(0.5).to_le_bytes(), 0.25f32.to_le_bytes());
        let h = DynTensorView::new(Dtype::BF16, vec![1], &half).unwrap();
        let f = DynTensorView::new(Dtype::F32, vec![1], &quarter).unwrap();
        assert_eq!(max_abs_diff(&h, &f), Some(0.25));
    }
}
