//! ndarray arrays and views as leaves: loading real fixtures, rank and dtype checks word for word,
//! round trips of every dtype and rank, layouts, zero-copy conversions and borrowed views.
#![cfg(feature = "ndarray")]

mod common;

use std::collections::BTreeMap;

use ndarray::{
    arr1, arr2, s, ArcArray, Array, Array0, Array1, Array2, Array3, Array4, Array5, Array6, ArrayD, ArrayView1,
    ArrayView2, ArrayViewD, CowArray, Ix2, IxDyn,
};
use safejax::{bf16, f16, Dtype, Error, Options, Params, Tensor};
use serde::{Deserialize, Serialize};

// ---- a real fixture: haiku's hk.nets.MLP([3, 2]) ----

#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkMlp {
    mlp: Mlp,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Mlp {
    linear: Vec<Linear>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct Linear {
    w: Array2<f32>,
    b: Array1<f32>,
}

/// The same model with `Tensor` leaves, for comparison.
#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkMlpTensors {
    mlp: MlpTensors,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct MlpTensors {
    linear: Vec<LinearTensors>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct LinearTensors {
    w: Tensor<f32>,
    b: Tensor<f32>,
}

#[test]
fn plain_array_fields_load_a_python_fixture_and_write_it_back_byte_for_byte() {
    let file = common::fixture_bytes("haiku_mlp");
    let mlp: HkMlp = safejax::from_bytes(&file).unwrap();
    let expected = common::expected_leaves("haiku_mlp");
    assert_eq!(mlp.mlp.linear.len(), 2);
    for (i, layer) in mlp.mlp.linear.iter().enumerate() {
        let w = &expected[&format!("mlp/~/linear_{i}.w")];
        assert_eq!(layer.w.shape(), &w.shape[..]);
        assert_eq!(common::widen(layer.w.as_slice().unwrap()), w.values);
        let b = &expected[&format!("mlp/~/linear_{i}.b")];
        assert_eq!(common::widen(layer.b.as_slice().unwrap()), b.values);
    }
    assert_eq!(mlp.mlp.linear[0].w.dim(), (4, 3));
    // Written back through ndarray's serde form, the file is the one Python safejax wrote.
    assert!(safejax::to_bytes(&mlp).unwrap() == file);

    // A forward pass: the fixture records the model's output on a fixed input.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::fixture_path("haiku_mlp.json")).unwrap()).unwrap();
    let input: Vec<f32> = json["input"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let output: Vec<f64> = json["output"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let x = Array2::from_shape_vec((2, 4), input).unwrap();
    let [l0, l1] = &mlp.mlp.linear[..] else {
        panic!("two layers")
    };
    let h = (x.dot(&l0.w) + &l0.b).mapv(|v| v.max(0.0));
    let y = h.dot(&l1.w) + &l1.b;
    for (got, want) in y.iter().zip(&output) {
        assert!((f64::from(*got) - want).abs() < 1e-5, "{got} vs {want}");
    }
}

#[test]
fn array_leaves_read_the_same_values_as_tensor_leaves() {
    let file = common::fixture_bytes("haiku_mlp");
    let arrays: HkMlp = safejax::from_bytes(&file).unwrap();
    let tensors: HkMlpTensors = safejax::from_bytes(&file).unwrap();
    for (a, t) in arrays.mlp.linear.iter().zip(&tensors.mlp.linear) {
        assert_eq!(a.w.shape(), t.w.shape());
        assert_eq!(a.w.as_slice().unwrap(), t.w.as_slice());
        assert_eq!(a.b.as_slice().unwrap(), t.b.as_slice());
    }
}

// ---- rank and dtype checks ----
// (Types read only to see them refused keep their fields unread.)

#[allow(dead_code)]
#[derive(Debug, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkMlpRank3 {
    mlp: MlpRank3,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize, Params)]
struct MlpRank3 {
    linear: Vec<LinearRank3>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize, Params)]
struct LinearRank3 {
    w: Array3<f32>,
    b: Array1<f32>,
}

#[test]
fn a_wrong_rank_is_an_error_naming_the_key_the_rank_and_the_shape() {
    let file = common::fixture_bytes("haiku_mlp");
    let err = safejax::from_bytes::<HkMlpRank3>(&file).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { key, found, .. } if key == "mlp/~/linear_0.w" && *found == [4, 3]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "shape mismatch at `mlp/~/linear_0.w`: expected 3 dimensions, found [4, 3]"
    );

    #[allow(dead_code)]
    #[derive(Debug, Deserialize, Params)]
    struct Bias {
        bias: Array2<f32>,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize, Params)]
    struct BiasView<'a> {
        #[serde(borrow, with = "safejax::ndarray::view")]
        bias: ArrayView2<'a, f32>,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize, Params)]
    struct BiasCow<'a> {
        #[serde(borrow, with = "safejax::ndarray::cow")]
        bias: CowArray<'a, f32, Ix2>,
    }
    #[allow(dead_code)]
    #[derive(Debug, Deserialize, Params)]
    struct BiasScalar {
        bias: Array0<f32>,
    }
    let bytes = safejax::to_bytes(&BTreeMap::from([(
        "bias".to_owned(),
        Tensor::new(vec![3], vec![1.0f32, 2.0, 3.0]).unwrap(),
    )]))
    .unwrap();
    let shape_mismatch = |err: Error, expected: &str| {
        assert!(
            matches!(&err, Error::ShapeMismatch { key, found, .. } if key == "bias" && *found == [3]),
            "{err:?}"
        );
        assert_eq!(err.to_string(), expected);
    };
    let expected = "shape mismatch at `bias`: expected 2 dimensions, found [3]";
    shape_mismatch(safejax::from_bytes::<Bias>(&bytes).unwrap_err(), expected);
    shape_mismatch(safejax::from_bytes::<BiasView>(&bytes).unwrap_err(), expected);
    shape_mismatch(safejax::from_bytes::<BiasCow>(&bytes).unwrap_err(), expected);
    shape_mismatch(
        safejax::from_bytes::<BiasScalar>(&bytes).unwrap_err(),
        "shape mismatch at `bias`: expected a scalar (shape []), found [3]",
    );
    // IxDyn takes any rank.
    #[derive(Debug, Deserialize, Params)]
    struct BiasDyn {
        bias: ArrayD<f32>,
    }
    let dynamic: BiasDyn = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(dynamic.bias, arr1(&[1.0f32, 2.0, 3.0]).into_dyn());
}

#[test]
fn a_wrong_element_type_is_a_dtype_mismatch_or_a_conversion() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct W64 {
        w: Array2<f64>,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct W32 {
        w: Array2<f32>,
    }
    let bytes = safejax::to_bytes(&W32 {
        w: arr2(&[[1.5f32, -2.0], [0.25, 8.0]]),
    })
    .unwrap();
    let err = safejax::from_bytes::<W64>(&bytes).unwrap_err();
    assert!(
        matches!(&err, Error::DtypeMismatch { key, expected: Dtype::F64, found: Dtype::F32 } if key == "w"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "dtype mismatch at `w`: expected F64, found F32");
    let converted: W64 = Options::new().convert_dtypes(true).from_bytes(&bytes).unwrap();
    assert_eq!(converted.w, arr2(&[[1.5f64, -2.0], [0.25, 8.0]]));
}

// ---- round trips ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
struct AllDtypes {
    b: Array1<bool>,
    u8: Array1<u8>,
    i8: Array1<i8>,
    u16: Array2<u16>,
    i16: Array1<i16>,
    u32: Array1<u32>,
    i32: Array2<i32>,
    u64: Array1<u64>,
    i64: Array1<i64>,
    f16: Array1<f16>,
    bf16: Array1<bf16>,
    f32: Array2<f32>,
    f64: Array1<f64>,
}

/// The same values in `Tensor` leaves.
use common::models::AllDtypes as AllDtypesTensors;

fn all_dtypes() -> AllDtypes {
    AllDtypes {
        b: arr1(&[true, false, true]),
        u8: arr1(&[0, 255]),
        i8: arr1(&[-128, 127]),
        u16: arr2(&[[1, u16::MAX]]),
        i16: arr1(&[i16::MIN, 7]),
        u32: arr1(&[u32::MAX, 3]),
        i32: arr2(&[[-5], [i32::MAX]]),
        u64: arr1(&[u64::MAX]),
        i64: arr1(&[i64::MIN, -1]),
        f16: arr1(&[f16::from_f32(0.5), f16::NEG_INFINITY]),
        bf16: arr1(&[bf16::from_f32(-1.5), bf16::MAX, bf16::from_f32(3.0e-3)]),
        f32: arr2(&[[0.1, -0.0], [f32::MIN_POSITIVE, 1e30]]),
        f64: arr1(&[std::f64::consts::PI, -1e-300]),
    }
}

fn to_tensors(a: &AllDtypes) -> AllDtypesTensors {
    fn t<T: safejax::Element, D: ndarray::Dimension>(a: &Array<T, D>) -> Tensor<T> {
        Tensor::from_ndarray(a.clone())
    }
    AllDtypesTensors {
        b: t(&a.b),
        u8: t(&a.u8),
        i8: t(&a.i8),
        u16: t(&a.u16),
        i16: t(&a.i16),
        u32: t(&a.u32),
        i32: t(&a.i32),
        u64: t(&a.u64),
        i64: t(&a.i64),
        f16: t(&a.f16),
        bf16: t(&a.bf16),
        f32: t(&a.f32),
        f64: t(&a.f64),
    }
}

#[test]
fn every_dtype_round_trips_and_writes_the_file_that_tensor_leaves_write() {
    let arrays = all_dtypes();
    let bytes = safejax::to_bytes(&arrays).unwrap();
    let tensors = to_tensors(&arrays);
    assert!(bytes == safejax::to_bytes(&tensors).unwrap());
    let back: AllDtypes = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(back, arrays);
    // -0.0 and infinities survive bit for bit.
    assert!(back.f32[[0, 1]].is_sign_negative());
    assert_eq!(back.f16[1], f16::NEG_INFINITY);
    // And tensors read what arrays wrote.
    let as_tensors: AllDtypesTensors = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(as_tensors, tensors);
    // The reference safetensors reader agrees on every leaf.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let u16 = st.tensor("u16").unwrap();
    assert_eq!(u16.shape(), &[1, 2]);
    assert_eq!(u16.data(), &[1, 0, 0xff, 0xff]);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Params)]
struct Ranks {
    r0: Array0<i32>,
    r1: Array1<i32>,
    r2: Array2<i32>,
    r3: Array3<i32>,
    r4: Array4<i32>,
    r5: Array5<i32>,
    r6: Array6<i32>,
    dynamic: ArrayD<i32>,
    empty: Array2<f32>,
    shared: ArcArray<f32, Ix2>,
}

#[test]
fn every_rank_round_trips_with_its_shape() {
    let n = |shape: &[usize]| (0..shape.iter().product::<usize>() as i32).collect::<Vec<_>>();
    let ranks = Ranks {
        r0: Array0::from_elem((), 7),
        r1: Array1::from_vec(n(&[3])),
        r2: Array2::from_shape_vec((2, 3), n(&[2, 3])).unwrap(),
        r3: Array3::from_shape_vec((2, 1, 3), n(&[2, 1, 3])).unwrap(),
        r4: Array4::from_shape_vec((1, 2, 2, 1), n(&[1, 2, 2, 1])).unwrap(),
        r5: Array5::from_shape_vec((1, 1, 2, 1, 2), n(&[1, 1, 2, 1, 2])).unwrap(),
        r6: Array6::from_shape_vec((2, 1, 1, 1, 1, 2), n(&[2, 1, 1, 1, 1, 2])).unwrap(),
        dynamic: ArrayD::from_shape_vec(IxDyn(&[3, 1, 2, 1, 1, 1, 1]), n(&[6])).unwrap(),
        empty: Array2::zeros((0, 3)),
        shared: arr2(&[[1.0, 2.0]]).into_shared(),
    };
    let bytes = safejax::to_bytes(&ranks).unwrap();
    let back: Ranks = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(back, ranks);
    let leaves = common::leaves_of(&back);
    assert_eq!(leaves["r0"].shape, Vec::<usize>::new());
    assert_eq!(leaves["r0"].values, [7.0]);
    assert_eq!(leaves["r6"].shape, [2, 1, 1, 1, 1, 2]);
    assert_eq!(leaves["dynamic"].shape, [3, 1, 2, 1, 1, 1, 1]);
    assert_eq!(leaves["empty"].shape, [0, 3]);
    assert!(leaves["empty"].values.is_empty());
}

#[test]
fn arrays_in_any_layout_are_written_in_row_major_order() {
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct W {
        w: Array2<f32>,
    }
    let base = arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    let transposed = W {
        w: base.clone().reversed_axes(),
    };
    assert!(!transposed.w.is_standard_layout());
    let stepped = W {
        w: base.slice(s![.., ..;2]).to_owned(),
    };
    let mut sliced = base.clone();
    sliced.slice_collapse(s![1.., 1..]);
    let sliced = W { w: sliced };
    for (w, expected) in [
        (&transposed, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]),
        (&stepped, vec![1.0, 3.0, 4.0, 6.0]),
        (&sliced, vec![5.0, 6.0]),
    ] {
        let leaves = common::leaves_of(w);
        assert_eq!(leaves["w"].values, expected);
        assert_eq!(leaves["w"].shape, w.w.shape());
        let back: W = safejax::from_bytes(&safejax::to_bytes(w).unwrap()).unwrap();
        assert_eq!(back.w, w.w);
        assert!(back.w.is_standard_layout());
    }
}

#[test]
fn a_root_map_of_dynamic_arrays_loads_any_file() {
    let all: BTreeMap<String, ArrayD<f32>> = safejax::from_bytes(&common::fixture_bytes("haiku_mlp")).unwrap();
    assert_eq!(all["mlp/~/linear_1.w"].shape(), &[3, 2]);
    assert_eq!(all.len(), 4);
}

#[test]
fn arrays_and_options_and_lists_nest_like_tensors() {
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Block {
        layers: Vec<Layer>,
        #[serde(default)]
        extra: Option<Array1<f32>>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Layer {
        kernel: Array2<f32>,
    }
    let block = Block {
        layers: vec![
            Layer { kernel: arr2(&[[1.0]]) },
            Layer {
                kernel: arr2(&[[2.0, 3.0]]),
            },
        ],
        extra: None,
    };
    let bytes = safejax::to_bytes(&block).unwrap();
    let keys: Vec<String> = safejax::Deserializer::from_slice(&bytes)
        .unwrap()
        .keys()
        .map(str::to_owned)
        .collect();
    assert_eq!(keys, ["layers_0.kernel", "layers_1.kernel"]);
    let back: Block = safejax::from_bytes(&bytes).unwrap();
    assert_eq!(back, block);
}

// ---- conversions ----

#[test]
fn tensor_to_array_moves_the_elements() {
    let tensor = Tensor::new(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let ptr = tensor.as_slice().as_ptr();
    let view = tensor.as_ndarray();
    assert_eq!(view.as_ptr(), ptr);
    assert_eq!(view[[1, 0]], 4.0);
    let array: ArrayD<f32> = tensor.into_ndarray();
    assert_eq!(array.as_ptr(), ptr);
    assert_eq!(array.shape(), &[2, 3]);
    let fixed = array.into_dimensionality::<Ix2>().unwrap();
    assert_eq!(fixed.as_ptr(), ptr);
    assert_eq!(fixed[[0, 2]], 3.0);

    let scalar = ArrayD::from(Tensor::scalar(9u8));
    assert_eq!(scalar.ndim(), 0);
    assert_eq!(scalar.first(), Some(&9));
}

#[test]
fn array_to_tensor_moves_the_elements_in_standard_layout_and_copies_otherwise() {
    let array = Array2::from_shape_vec((2, 3), vec![1i64, 2, 3, 4, 5, 6]).unwrap();
    let ptr = array.as_ptr();
    let tensor = Tensor::from(array);
    assert_eq!(tensor.as_slice().as_ptr(), ptr);
    assert_eq!(tensor.shape(), &[2, 3]);

    let dynamic = ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![7u16, 8, 9]).unwrap();
    let ptr = dynamic.as_ptr();
    let tensor = Tensor::from_ndarray(dynamic);
    assert_eq!(tensor.as_slice().as_ptr(), ptr);

    let transposed = arr2(&[[1i64, 2, 3], [4, 5, 6]]).reversed_axes();
    let tensor = Tensor::from(transposed);
    assert_eq!(tensor.shape(), &[3, 2]);
    assert_eq!(tensor.as_slice(), &[1, 4, 2, 5, 3, 6]);

    let mut sliced = arr2(&[[1i64, 2, 3], [4, 5, 6]]);
    sliced.slice_collapse(s![1.., ..]);
    assert!(sliced.is_standard_layout());
    let tensor = Tensor::from(sliced);
    assert_eq!(tensor.shape(), &[1, 3]);
    assert_eq!(tensor.as_slice(), &[4, 5, 6]);

    let owner = arr2(&[[1i64, 2], [3, 4]]);
    let tensor = Tensor::from(owner.column(1));
    assert_eq!((tensor.shape(), tensor.as_slice()), (&[2][..], &[2, 4][..]));
}

// ---- views ----

#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkMlpViews<'a> {
    #[serde(borrow)]
    mlp: MlpViews<'a>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct MlpViews<'a> {
    #[serde(borrow)]
    linear: Vec<LinearViews<'a>>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct LinearViews<'a> {
    #[serde(borrow, with = "safejax::ndarray::view")]
    w: ArrayView2<'a, f32>,
    #[serde(borrow, with = "safejax::ndarray::view")]
    b: ArrayView1<'a, f32>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkMlpCows<'a> {
    #[serde(borrow)]
    mlp: MlpCows<'a>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct MlpCows<'a> {
    #[serde(borrow)]
    linear: Vec<LinearCows<'a>>,
}

#[derive(Debug, Serialize, Deserialize, Params)]
struct LinearCows<'a> {
    #[serde(borrow, with = "safejax::ndarray::cow")]
    w: CowArray<'a, f32, Ix2>,
    #[serde(borrow, with = "safejax::ndarray::cow")]
    b: CowArray<'a, f32, ndarray::Ix1>,
}

/// A copy of `bytes` whose first byte sits at `offset` from an 8-aligned address.
fn at_offset(bytes: &[u8], offset: usize) -> (Vec<u64>, usize, usize) {
    let mut backing = vec![0u64; bytes.len() / 8 + 2];
    let all: &mut [u8] = bytemuck::cast_slice_mut(&mut backing);
    all[offset..offset + bytes.len()].copy_from_slice(bytes);
    (backing, offset, bytes.len())
}

fn within(ptr: *const f32, input: &[u8]) -> bool {
    let range = input.as_ptr_range();
    (ptr as *const u8) >= range.start && (ptr as *const u8) < range.end
}

#[test]
fn views_borrow_the_aligned_input() {
    let file = common::fixture_bytes("haiku_mlp");
    let (backing, offset, len) = at_offset(&file, 0);
    let input = &bytemuck::cast_slice::<u64, u8>(&backing)[offset..offset + len];
    let views: HkMlpViews = safejax::from_bytes(input).unwrap();
    let owned: HkMlp = safejax::from_bytes(input).unwrap();
    for (v, o) in views.mlp.linear.iter().zip(&owned.mlp.linear) {
        assert!(within(v.w.as_ptr(), input));
        assert!(within(v.b.as_ptr(), input));
        assert_eq!(v.w, o.w);
        assert_eq!(v.b, o.b);
    }
    // Views write the same file.
    assert!(safejax::to_bytes(&views).unwrap() == file);

    let cows: HkMlpCows = safejax::from_bytes(input).unwrap();
    for (c, o) in cows.mlp.linear.iter().zip(&owned.mlp.linear) {
        assert!(c.w.is_view() && c.b.is_view());
        assert!(within(c.w.as_ptr(), input));
        assert_eq!(c.w, o.w);
    }
    assert!(safejax::to_bytes(&cows).unwrap() == file);
}

#[test]
fn views_of_unaligned_input_are_an_error_and_cow_arrays_copy() {
    let file = common::fixture_bytes("haiku_mlp");
    let (backing, offset, len) = at_offset(&file, 1);
    let input = &bytemuck::cast_slice::<u64, u8>(&backing)[offset..offset + len];
    // The view's `Deserialize` refuses through serde: a message, at the tensor's key.
    let err = safejax::from_bytes::<HkMlpViews>(input).unwrap_err();
    assert!(matches!(err, Error::Message { .. }), "{err:?}");
    assert_eq!(err.key(), Some("mlp/~/linear_0.w"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "at `mlp/~/linear_0.w`: an ArrayView cannot borrow this tensor's data (not aligned for F32 \
         in the input, converted, or on a big-endian host); read it with `safejax::ndarray::cow` or \
         as an owned array"
    );
    let cows: HkMlpCows = safejax::from_bytes(input).unwrap();
    let owned: HkMlp = safejax::from_bytes(&file).unwrap();
    for (c, o) in cows.mlp.linear.iter().zip(&owned.mlp.linear) {
        assert!(c.w.is_owned() && c.b.is_owned());
        assert_eq!(c.w, o.w);
        assert_eq!(c.b, o.b);
    }
}

#[test]
fn tensor_views_convert_to_arrays_without_copying() {
    #[derive(Debug, Deserialize, Params)]
    struct W<'a> {
        #[serde(borrow)]
        w: safejax::TensorView<'a, f32>,
    }
    let bytes = safejax::to_bytes(&BTreeMap::from([(
        "w".to_owned(),
        Tensor::new(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap(),
    )]))
    .unwrap();
    let (backing, offset, len) = at_offset(&bytes, 0);
    let input = &bytemuck::cast_slice::<u64, u8>(&backing)[offset..offset + len];
    let w: W = safejax::from_bytes(input).unwrap();
    assert!(w.w.is_borrowed());
    let view: ArrayViewD<'_, f32> = w.w.as_ndarray();
    assert!(within(view.as_ptr(), input));
    assert_eq!(view[[1, 0]], 3.0);
    let cow = w.w.into_cow_array();
    assert!(cow.is_view());
    assert!(within(cow.as_ptr(), input));
    assert_eq!(cow.shape(), &[2, 2]);
}

#[test]
fn other_serde_formats_still_see_ndarrays_own_form() {
    // The plain-field support lives in this crate's serializer; serde_json writes ndarray's form.
    let json = serde_json::to_string(&arr1(&[1.0f32, 2.0])).unwrap();
    assert_eq!(json, r#"{"v":1,"dim":[2],"data":[1.0,2.0]}"#);
}

#[test]
fn the_array_with_module_moves_bytes_in_one_piece_and_checks_the_rank() {
    #[derive(Debug, PartialEq, Serialize, Deserialize, Params)]
    struct Dense {
        #[serde(with = "safejax::ndarray::array")]
        kernel: ndarray::Array2<f32>,
        #[serde(with = "safejax::ndarray::array")]
        bias: ndarray::Array1<f32>,
    }
    #[derive(Debug, Serialize, Deserialize, Params)]
    struct Tensors {
        kernel: Tensor<f32>,
        bias: Tensor<f32>,
    }
    let dense = Dense {
        kernel: ndarray::arr2(&[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
        bias: ndarray::arr1(&[0.5, -0.5]),
    };
    let bytes = safejax::to_bytes(&dense).unwrap();
    // The same file as tensor leaves write.
    let tensors = Tensors {
        kernel: Tensor::new(vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
        bias: Tensor::new(vec![2], vec![0.5, -0.5]).unwrap(),
    };
    assert!(bytes == safejax::to_bytes(&tensors).unwrap());
    assert_eq!(safejax::from_bytes::<Dense>(&bytes).unwrap(), dense);
    // A transposed (non-standard layout) array is written row-major.
    let transposed = Dense {
        kernel: ndarray::arr2(&[[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]]).reversed_axes(),
        bias: dense.bias.clone(),
    };
    assert!(safejax::to_bytes(&transposed).unwrap() == bytes);
    #[derive(Debug, Deserialize, Params)]
    struct Wrong {
        #[serde(with = "safejax::ndarray::array")]
        #[allow(dead_code)]
        kernel: ndarray::Array1<f32>,
        #[serde(with = "safejax::ndarray::array")]
        #[allow(dead_code)]
        bias: ndarray::Array1<f32>,
    }
    let err = safejax::from_bytes::<Wrong>(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape mismatch at `kernel`: expected 1 dimension, found [3, 2]"
    );
}
