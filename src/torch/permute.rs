//! Axis permutation of row-major tensors, on their bytes, for any element size.
//!
//! A per-element walk (unravel the output index, find the input offset) is simple but spends most of
//! its time in index arithmetic and misses the cache on every read of a transposed axis. Here the
//! shape is first simplified (axes of size 1 dropped, axes that stay neighbours merged), then:
//! - when the innermost axis stays innermost, whole rows are copied with `copy_from_slice`;
//! - otherwise the two axes that matter (the input's innermost and the output's innermost) are
//!   transposed in square tiles, so that both the reads and the writes of a tile stay in cache, with
//!   an element copy of a size known at compile time.

/// Tile side, in elements: 16 × 16 elements of up to 8 bytes stay well inside L1.
const TILE: usize = 16;

/// Whether `perm` holds each of `0..rank` once.
pub(crate) fn is_permutation(perm: &[usize], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    perm.len() == rank && perm.iter().all(|&a| a < rank && !std::mem::replace(&mut seen[a], true))
}

/// The inverse of a permutation: `inverse(p)[p[k]] == k`.
pub(crate) fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (k, &a) in perm.iter().enumerate() {
        inv[a] = k;
    }
    inv
}

/// The shape after permuting: `out[k] = shape[perm[k]]`.
pub(crate) fn permuted_shape(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    perm.iter().map(|&a| shape[a]).collect()
}

/// Row-major strides of `shape`, in elements.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// The same permutation on fewer axes: size-1 axes go, and input axes `a`, `a + 1` that are also
/// neighbours in the output become one axis.
fn simplify(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    // Input axes kept (size > 1), renumbered.
    let kept: Vec<usize> = (0..shape.len()).filter(|&a| shape[a] != 1).collect();
    let mut renumber = vec![usize::MAX; shape.len()];
    for (new, &old) in kept.iter().enumerate() {
        renumber[old] = new;
    }
    let shape1: Vec<usize> = kept.iter().map(|&a| shape[a]).collect();
    let perm1: Vec<usize> = perm.iter().filter(|&&a| shape[a] != 1).map(|&a| renumber[a]).collect();
    // Group output positions whose input axes are consecutive.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &a in &perm1 {
        match groups.last_mut() {
            Some(g) if *g.last().expect("non-empty") + 1 == a => g.push(a),
            _ => groups.push(vec![a]),
        }
    }
    // Each group is one new input axis, numbered in input order.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let mut new_shape = vec![0; groups.len()];
    let mut axis_of_group = vec![0; groups.len()];
    for (new_axis, &g) in order.iter().enumerate() {
        axis_of_group[g] = new_axis;
        new_shape[new_axis] = groups[g].iter().map(|&a| shape1[a]).product();
    }
    let new_perm = (0..groups.len()).map(|g| axis_of_group[g]).collect();
    (new_shape, new_perm)
}

/// Calls `f(input_offset, output_offset)` (in elements) for every index of the axes `axes`, the
/// others held at 0; the last of `axes` varies fastest.
fn odometer(
    shape: &[usize],
    axes: &[usize],
    in_strides: &[usize],
    out_strides: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    if axes.iter().any(|&a| shape[a] == 0) {
        return;
    }
    let mut index = vec![0usize; axes.len()];
    let (mut i, mut o) = (0usize, 0usize);
    loop {
        f(i, o);
        // Advance the last axis, carrying into the earlier ones.
        let mut k = axes.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            let a = axes[k];
            index[k] += 1;
            i += in_strides[a];
            o += out_strides[a];
            if index[k] < shape[a] {
                break;
            }
            i -= in_strides[a] * shape[a];
            o -= out_strides[a] * shape[a];
            index[k] = 0;
        }
    }
}

/// Permutes the axes of a row-major tensor of `dtype` and `shape` held in `bytes` (numpy's
/// `transpose(perm)`): the result has shape `shape[perm[0]], shape[perm[1]], ...`. Any dtype whose
/// elements are whole bytes; an error when `perm` does not order `shape`'s axes or the byte count is
/// not the tensor's.
pub fn permute_bytes_checked(
    bytes: &[u8],
    dtype: crate::Dtype,
    shape: &[usize],
    perm: &[usize],
) -> crate::Result<Vec<u8>> {
    if !is_permutation(perm, shape.len()) {
        return Err(crate::Error::msg(format_args!(
            "{perm:?} is not a permutation of the {} axes of shape {shape:?}",
            shape.len()
        )));
    }
    let bits = dtype.bit_size();
    if bits % 8 != 0 {
        return Err(crate::Error::msg(format_args!(
            "cannot permute {dtype} tensors: their elements are not whole bytes"
        )));
    }
    let expected = shape.iter().try_fold(bits / 8, |n, &d| n.checked_mul(d));
    if expected != Some(bytes.len()) {
        return Err(crate::Error::msg(format_args!(
            "{dtype} shape {shape:?} needs {expected:?} bytes, found {}",
            bytes.len()
        )));
    }
    Ok(permute_bytes(bytes, bits / 8, shape, perm))
}

/// Permutes the axes of a row-major tensor of `shape` whose elements are `elem` bytes each: the
/// result has shape `shape[perm[0]], shape[perm[1]], ...` and element `out[j0, j1, ...]` is
/// `input[i]` with `i[perm[k]] = j[k]` (numpy's `transpose(perm)`).
///
/// `perm` must be a permutation of `0..shape.len()` and `input` exactly the tensor's bytes; both are
/// checked by the caller.
pub(crate) fn permute_bytes(input: &[u8], elem: usize, shape: &[usize], perm: &[usize]) -> Vec<u8> {
    debug_assert!(is_permutation(perm, shape.len()));
    debug_assert_eq!(input.len(), shape.iter().product::<usize>() * elem);
    let (shape, perm) = simplify(shape, perm);
    let mut out = vec![0u8; input.len()];
    let n = shape.len();
    if n <= 1 || perm.iter().enumerate().all(|(k, &a)| k == a) {
        out.copy_from_slice(input);
        return out;
    }
    let in_strides = strides(&shape);
    let out_shape = permuted_shape(&shape, &perm);
    let out_strides_by_out = strides(&out_shape);
    // The output stride of each INPUT axis.
    let mut out_strides = vec![0; n];
    for (k, &a) in perm.iter().enumerate() {
        out_strides[a] = out_strides_by_out[k];
    }
    let inner_in = n - 1;
    let inner_out = perm[n - 1];
    if inner_in == inner_out {
        // Rows stay whole: copy each one.
        let row = shape[inner_in] * elem;
        let others: Vec<usize> = (0..n - 1).collect();
        odometer(&shape, &others, &in_strides, &out_strides, |i, o| {
            out[o * elem..o * elem + row].copy_from_slice(&input[i * elem..i * elem + row]);
        });
        return out;
    }
    let walk = Walk {
        shape: &shape,
        rest: (0..n).filter(|&a| a != inner_in && a != inner_out).collect(),
        in_strides: &in_strides,
        out_strides: &out_strides,
        inner_in,
        inner_out,
    };
    match elem {
        1 => tiles::<1>(input, &mut out, &walk),
        2 => tiles::<2>(input, &mut out, &walk),
        4 => tiles::<4>(input, &mut out, &walk),
        8 => tiles::<8>(input, &mut out, &walk),
        16 => tiles::<16>(input, &mut out, &walk),
        _ => {
            // Odd element sizes (no safetensors dtype has one today): the same walk, element by
            // element through a slice copy.
            let (rows, cols, row_in, col_out) = walk.plane();
            odometer(&shape, &walk.rest, &in_strides, &out_strides, |i0, o0| {
                for r in 0..rows {
                    for c in 0..cols {
                        let i = (i0 + r * row_in + c) * elem;
                        let o = (o0 + r + c * col_out) * elem;
                        out[o..o + elem].copy_from_slice(&input[i..i + elem]);
                    }
                }
            });
        }
    }
    out
}

/// How to walk a simplified permute: the two axes that are transposed (`inner_out`, the output's
/// innermost, is the rows; `inner_in`, the input's innermost, the columns) and the `rest`.
struct Walk<'a> {
    shape: &'a [usize],
    rest: Vec<usize>,
    in_strides: &'a [usize],
    out_strides: &'a [usize],
    inner_in: usize,
    inner_out: usize,
}

impl Walk<'_> {
    /// Rows, columns, the input's step between rows, the output's step between columns.
    fn plane(&self) -> (usize, usize, usize, usize) {
        (
            self.shape[self.inner_out],
            self.shape[self.inner_in],
            self.in_strides[self.inner_out],
            self.out_strides[self.inner_in],
        )
    }
}

/// The tiled transpose of the walk's plane (rows: the input steps over them, the output walks them
/// contiguously; columns: contiguous in the input), for each index of the other axes.
fn tiles<const E: usize>(input: &[u8], out: &mut [u8], walk: &Walk<'_>) {
    let (rows, cols, row_in, col_out) = walk.plane();
    odometer(walk.shape, &walk.rest, walk.in_strides, walk.out_strides, |i0, o0| {
        for r0 in (0..rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(rows);
            for c0 in (0..cols).step_by(TILE) {
                let c1 = (c0 + TILE).min(cols);
                for c in c0..c1 {
                    let o_base = o0 + c * col_out;
                    for r in r0..r1 {
                        let i = (i0 + r * row_in + c) * E;
                        let o = (o_base + r) * E;
                        let src: &[u8; E] = input[i..i + E].try_into().expect("E bytes");
                        out[o..o + E].copy_from_slice(src);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, element by element: the oracle for the fast path.
    fn naive(input: &[u8], elem: usize, shape: &[usize], perm: &[usize]) -> Vec<u8> {
        let out_shape = permuted_shape(shape, perm);
        let in_strides = strides(shape);
        let total: usize = shape.iter().product();
        let mut out = vec![0u8; input.len()];
        for flat in 0..total {
            let (mut rem, mut offset) = (flat, 0);
            for k in (0..out_shape.len()).rev() {
                offset += (rem % out_shape[k]) * in_strides[perm[k]];
                rem /= out_shape[k];
            }
            out[flat * elem..(flat + 1) * elem].copy_from_slice(&input[offset * elem..(offset + 1) * elem]);
        }
        out
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    /// Every permutation of `0..n`.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for pos in 0..n {
                let mut q = p.clone();
                q.insert(pos, n - 1);
                out.push(q);
            }
        }
        out
    }

    #[test]
    fn a_transpose_moves_elements_as_numpy_does() {
        // [[1, 2, 3], [4, 5, 6]] as u8, transposed: [[1, 4], [2, 5], [3, 6]].
        let out = permute_bytes(&[1, 2, 3, 4, 5, 6], 1, &[2, 3], &[1, 0]);
        assert_eq!(out, [1, 4, 2, 5, 3, 6]);
        // Two-byte elements move as units.
        let out = permute_bytes(&[1, 0, 2, 0, 3, 0, 4, 0], 2, &[2, 2], &[1, 0]);
        assert_eq!(out, [1, 0, 3, 0, 2, 0, 4, 0]);
    }

    #[test]
    fn every_permutation_of_up_to_five_axes_matches_the_definition() {
        let shapes: [&[usize]; 6] = [
            &[3, 17],
            &[2, 1, 5],
            &[3, 4, 2, 5],
            &[33, 1, 18, 2],
            &[2, 3, 1, 4, 3],
            &[1, 1, 7],
        ];
        for shape in shapes {
            for perm in permutations(shape.len()) {
                for elem in [1, 2, 3, 4, 8, 16] {
                    let input = bytes(shape.iter().product::<usize>() * elem);
                    assert_eq!(
                        permute_bytes(&input, elem, shape, &perm),
                        naive(&input, elem, shape, &perm),
                        "shape {shape:?} perm {perm:?} elem {elem}"
                    );
                }
            }
        }
    }

    #[test]
    fn large_tiles_with_ragged_edges_match_the_definition() {
        for (shape, perm) in [(&[37usize, 70][..], &[1usize, 0][..]), (&[5, 5, 19, 40], &[3, 2, 0, 1])] {
            let input = bytes(shape.iter().product::<usize>() * 4);
            assert_eq!(permute_bytes(&input, 4, shape, perm), naive(&input, 4, shape, perm));
        }
    }

    #[test]
    fn empty_tensors_and_inverse_permutations() {
        assert!(permute_bytes(&[], 4, &[0, 3], &[1, 0]).is_empty());
        let input = bytes(3 * 4 * 5 * 2);
        let p = [2, 0, 1];
        let there = permute_bytes(&input, 2, &[3, 4, 5], &p);
        let back = permute_bytes(&there, 2, &permuted_shape(&[3, 4, 5], &p), &inverse(&p));
        assert_eq!(back, input);
        assert!(is_permutation(&[1, 0, 2], 3));
        assert!(!is_permutation(&[1, 1, 2], 3));
        assert!(!is_permutation(&[0, 1], 3));
        assert!(!is_permutation(&[0, 3, 1], 3));
    }
}
