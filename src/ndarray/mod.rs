//! [`ndarray`] arrays as leaves, and conversions with [`Tensor`] (feature `ndarray`, on
//! by default).
//!
//! - **Owned arrays.** `Array<A, D>` (`Array1`..`Array6`, `ArrayD`) fields marked
//!   `#[serde(with = "safejax::ndarray::array")]` read and write the same keys as `Tensor<A>` fields
//!   would, the bytes moving in one piece. The element type fixes the dtype and the dimension type
//!   fixes the rank, both checked when the file is read: a 3-d tensor for an `Array2` is
//!   [`Error::ShapeMismatch`](crate::Error) naming the key. Plain `Array` and `ArcArray` fields, with
//!   no attribute, work too, through ndarray's own serde form (its `serde` feature, which this crate
//!   turns on); that form hands the elements over one by one, so it is slower on large arrays.
//! - **Borrowed views** need ndarray's views to be built from the input's bytes, which ndarray's serde
//!   support cannot do: mark the field `#[serde(borrow, with = "safejax::ndarray::view")]` for an
//!   `ArrayView<'a, A, D>` that borrows the input (an error where the tensor's bytes are not aligned
//!   for `A`), or `#[serde(borrow, with = "safejax::ndarray::cow")]` for a `CowArray<'a, A, D>` that
//!   borrows where it can and copies otherwise, like [`TensorView`].
//! - **Conversions** between [`Tensor`] and arrays move the elements' `Vec` without copying where
//!   ownership allows: [`Tensor::into_ndarray`], [`Tensor::from_ndarray`] (copies only an array that is
//!   not in standard layout), and views of both [`Tensor`] and [`TensorView`] as `ArrayViewD`.
//!
//! ```
//! use ndarray::{Array1, Array2, ArrayView2};
//! use safejax::Params;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Params)]
//! struct Dense {
//!     #[serde(with = "safejax::ndarray::array")]
//!     kernel: Array2<f32>,
//!     #[serde(with = "safejax::ndarray::array")]
//!     bias: Array1<f32>,
//! }
//!
//! #[derive(Serialize, Deserialize, Params)]
//! struct DenseView<'a> {
//!     #[serde(borrow, with = "safejax::ndarray::view")]
//!     kernel: ArrayView2<'a, f32>,
//!     bias: Array1<f32>,
//! }
//!
//! let dense = Dense {
//!     kernel: ndarray::arr2(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
//!     bias: ndarray::arr1(&[0.5, -0.5, 0.0]),
//! };
//! let bytes = safejax::to_bytes(&dense)?;
//! let y = ndarray::arr1(&[1.0f32, 1.0]).dot(&dense.kernel) + &dense.bias;
//! assert_eq!(y, ndarray::arr1(&[5.5, 6.5, 9.0]));
//!
//! let view: DenseView = safejax::from_bytes(&bytes)?;
//! assert_eq!(view.kernel, dense.kernel);
//!
//! // The same file holds a 1-d `bias`: reading it as 2-d fails, naming the key.
//! #[derive(Deserialize, Params)]
//! struct Wrong { kernel: Array2<f32>, bias: Array2<f32> }
//! let err = safejax::from_bytes::<Wrong>(&bytes).err().unwrap();
//! assert_eq!(err.to_string(), "shape mismatch at `bias`: expected 2 dimensions, found [3]");
//! # Ok::<(), safejax::Error>(())
//! ```

mod serde_form;

pub(crate) use serde_form::{deserialize_array, ArrayFields, SERDE_NAME};

use std::borrow::Cow;

use ::ndarray::{
    Array, ArrayBase, ArrayD, ArrayView, ArrayViewD, CowArray, Data, Dimension, IxDyn, OwnedRepr, RawData,
};

use crate::schema::{LeafSchema, Schema};
use crate::{Element, Params, Tensor, TensorView};

/// Any array, view or shared array of an [`Element`] is a leaf; its rank is the dimension type's
/// (`None`, any rank, for `IxDyn`).
impl<A: Element, S: RawData<Elem = A>, D: Dimension> Params for ArrayBase<S, D> {
    const SCHEMA: &'static Schema = &Schema::Leaf(LeafSchema {
        dtype: Some(A::DTYPE),
        rank: D::NDIM,
    });
    const IS_LEAFY: bool = true;
}

// ---- conversions ----

impl<T: Element> Tensor<T> {
    /// The tensor as an `ArrayD`, moving its elements (no copy).
    pub fn into_ndarray(self) -> ArrayD<T> {
        let (shape, data) = self.into_parts();
        Array::from_shape_vec(IxDyn(&shape), data).expect("a tensor's shape fits its data")
    }

    /// A view of the tensor as an `ArrayViewD` (no copy).
    pub fn as_ndarray(&self) -> ArrayViewD<'_, T> {
        ArrayView::from_shape(IxDyn(self.shape()), self.as_slice()).expect("a tensor's shape fits its data")
    }

    /// A tensor holding `array`'s elements in row-major order: its `Vec` moves without a copy when
    /// the array is in standard layout and uses all of it, and the elements are copied otherwise (a
    /// transposed or sliced array).
    pub fn from_ndarray<D: Dimension>(array: Array<T, D>) -> Self {
        let shape = array.shape().to_vec();
        let data = if array.is_standard_layout() {
            let len = array.len();
            let (data, offset) = array.into_raw_vec_and_offset();
            if offset.unwrap_or(0) == 0 && data.len() == len {
                data
            } else {
                // Standard layout over part of the allocation: the elements start at `offset`.
                let start = offset.unwrap_or(0);
                data[start..start + len].to_vec()
            }
        } else {
            array.iter().copied().collect()
        };
        Tensor::new(shape, data).expect("an array's shape fits its elements")
    }
}

impl<T: Element> TensorView<'_, T> {
    /// A view of the tensor as an `ArrayViewD` (no copy).
    pub fn as_ndarray(&self) -> ArrayViewD<'_, T> {
        ArrayView::from_shape(IxDyn(self.shape()), self.as_slice()).expect("a tensor's shape fits its data")
    }
}

impl<'a, T: Element> TensorView<'a, T> {
    /// The view as a `CowArray`: borrowing what the view borrows, owning what it holds (no copy).
    pub fn into_cow_array(self) -> CowArray<'a, T, IxDyn> {
        let (shape, data) = self.into_cow_parts();
        cow_array(&shape, data).expect("a tensor's shape fits its data")
    }
}

fn cow_array<'a, T: Element, D: Dimension>(
    shape: &[usize],
    data: Cow<'a, [T]>,
) -> Result<CowArray<'a, T, D>, ::ndarray::ShapeError> {
    Ok(match data {
        Cow::Borrowed(slice) => ArrayView::from_shape(IxDyn(shape), slice)?
            .into_dimensionality::<D>()?
            .into(),
        Cow::Owned(vec) => Array::from_shape_vec(IxDyn(shape), vec)?
            .into_dimensionality::<D>()?
            .into(),
    })
}

/// Moves the elements (no copy).
impl<T: Element> From<Tensor<T>> for ArrayD<T> {
    fn from(tensor: Tensor<T>) -> Self {
        tensor.into_ndarray()
    }
}

/// Moves the elements when the array is in standard layout, as [`Tensor::from_ndarray`].
impl<T: Element, D: Dimension> From<ArrayBase<OwnedRepr<T>, D>> for Tensor<T> {
    fn from(array: Array<T, D>) -> Self {
        Tensor::from_ndarray(array)
    }
}

/// Copies the elements, in row-major order.
impl<T: Element, D: Dimension> From<ArrayView<'_, T, D>> for Tensor<T> {
    fn from(view: ArrayView<'_, T, D>) -> Self {
        let shape = view.shape().to_vec();
        Tensor::new(shape, view.iter().copied().collect()).expect("an array's shape fits its elements")
    }
}

// ---- serde `with` modules for borrowed arrays ----

/// Writes an array of any layout as a tensor (row-major; one piece when in standard layout).
fn serialize_array<A, S, D, Se>(array: &ArrayBase<S, D>, serializer: Se) -> Result<Se::Ok, Se::Error>
where
    A: Element,
    S: Data<Elem = A>,
    D: Dimension,
    Se: serde::Serializer,
{
    match array.as_slice() {
        Some(data) => {
            crate::tensor::serialize_raw(serializer, A::DTYPE, array.shape(), &crate::element::to_le_bytes(data))
        }
        None => {
            let data: Vec<A> = array.iter().copied().collect();
            crate::tensor::serialize_raw(serializer, A::DTYPE, array.shape(), &crate::element::to_le_bytes(&data))
        }
    }
}

/// Builds an array from a tensor's shape and elements, or says why it cannot.
type Build<'de, A, R> = fn(Vec<usize>, Cow<'de, [A]>) -> Result<R, String>;

/// Reads a tensor's shape and elements (borrowed where they can be) and builds an array from them
/// with `build`, which may refuse; errors happen inside the tensor's visitor, so that this crate's
/// deserializer names the key.
fn deserialize_with<'de, A, R, De>(deserializer: De, build: Build<'de, A, R>) -> Result<R, De::Error>
where
    A: Element,
    De: serde::Deserializer<'de>,
{
    use serde::de::{self, value::MapAccessDeserializer, MapAccess, Visitor};
    use serde::Deserialize;
    use std::marker::PhantomData;

    struct ArrayVisitor<'de, A: Clone + 'static, R> {
        build: Build<'de, A, R>,
        marker: PhantomData<A>,
    }

    impl<'de, A: Element, R> Visitor<'de> for ArrayVisitor<'de, A, R> {
        type Value = R;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a {} tensor", A::DTYPE)
        }

        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<R, M::Error> {
            let view = TensorView::<'de, A>::deserialize(MapAccessDeserializer::new(map))?;
            let (shape, data) = view.into_cow_parts();
            (self.build)(shape, data).map_err(de::Error::custom)
        }
    }

    deserializer.deserialize_struct(
        crate::tensor::TENSOR_MAGIC,
        crate::tensor::FIELDS,
        ArrayVisitor {
            build,
            marker: PhantomData,
        },
    )
}

fn rank_error<D: Dimension>(shape: &[usize]) -> String {
    match D::NDIM {
        Some(rank) => format!("expected {}, found {shape:?}", crate::error::dimensions(rank)),
        None => format!("shape {shape:?} does not fit its data"),
    }
}

/// `#[serde(borrow, with = "safejax::ndarray::view")]` on an `ArrayView<'a, A, D>` field
/// (`ArrayView1`..`ArrayView6`, `ArrayViewD`): the view borrows the input of
/// [`from_bytes`](crate::from_bytes), without copying.
///
/// Reading fails where the tensor's bytes cannot be borrowed: not aligned for `A` in the input (files
/// laid out by safetensors writers are aligned when the input buffer is), a big-endian host, or a
/// dtype conversion ([`Options::convert_dtypes`](crate::Options::convert_dtypes)). Use
/// [`cow`] to fall back to a copy. Writing takes a view of any layout.
pub mod view {
    use std::borrow::Cow;

    use ::ndarray::{ArrayView, Dimension, IxDyn};

    use crate::Element;

    /// Writes the view as a tensor.
    pub fn serialize<A, D, Se>(array: &ArrayView<'_, A, D>, serializer: Se) -> Result<Se::Ok, Se::Error>
    where
        A: Element,
        D: Dimension,
        Se: serde::Serializer,
    {
        super::serialize_array(array, serializer)
    }

    /// Reads a tensor as a view borrowing the input.
    pub fn deserialize<'de: 'a, 'a, A, D, De>(deserializer: De) -> Result<ArrayView<'a, A, D>, De::Error>
    where
        A: Element,
        D: Dimension,
        De: serde::Deserializer<'de>,
    {
        super::deserialize_with(deserializer, |shape, data| {
            let Cow::Borrowed(data) = data else {
                return Err(format!(
                    "an ArrayView cannot borrow this tensor's data (not aligned for {} in the input, \
                     converted, or on a big-endian host); read it with `safejax::ndarray::cow` or as \
                     an owned array",
                    A::DTYPE
                ));
            };
            ArrayView::from_shape(IxDyn(&shape), data)
                .and_then(|view| view.into_dimensionality::<D>())
                .map_err(|_| super::rank_error::<D>(&shape))
        })
    }
}

/// `#[serde(borrow, with = "safejax::ndarray::cow")]` on a `CowArray<'a, A, D>` field: the array
/// borrows the input of [`from_bytes`](crate::from_bytes) where the tensor's bytes are aligned for
/// `A`, and holds a copy otherwise (as [`TensorView`] does). Writing takes an
/// array of any layout.
pub mod cow {
    use ::ndarray::{CowArray, Dimension};

    use crate::Element;

    /// Writes the array as a tensor.
    pub fn serialize<A, D, Se>(array: &CowArray<'_, A, D>, serializer: Se) -> Result<Se::Ok, Se::Error>
    where
        A: Element,
        D: Dimension,
        Se: serde::Serializer,
    {
        super::serialize_array(array, serializer)
    }

    /// Reads a tensor, borrowing the input where it can.
    pub fn deserialize<'de: 'a, 'a, A, D, De>(deserializer: De) -> Result<CowArray<'a, A, D>, De::Error>
    where
        A: Element,
        D: Dimension,
        De: serde::Deserializer<'de>,
    {
        super::deserialize_with(deserializer, |shape, data| {
            super::cow_array(&shape, data).map_err(|_| super::rank_error::<D>(&shape))
        })
    }
}

/// `#[serde(with = "safejax::ndarray::array")]` on an owned `Array<A, D>` field (`Array1`..`Array6`,
/// `ArrayD`): the tensor's bytes move in one piece, as for [`Tensor`], into the array's own `Vec`
/// (plain array fields work too, but ndarray's serde form hands the elements over one by one).
pub mod array {
    use ::ndarray::{Array, ArrayBase, Data, Dimension, IxDyn};

    use crate::Element;

    /// Writes the array as a tensor (row-major whatever its layout).
    pub fn serialize<A, S, D, Se>(array: &ArrayBase<S, D>, serializer: Se) -> Result<Se::Ok, Se::Error>
    where
        A: Element,
        S: Data<Elem = A>,
        D: Dimension,
        Se: serde::Serializer,
    {
        super::serialize_array(array, serializer)
    }

    /// Reads a tensor into an owned array, checking its rank.
    pub fn deserialize<'de, A, D, De>(deserializer: De) -> Result<Array<A, D>, De::Error>
    where
        A: Element,
        D: Dimension,
        De: serde::Deserializer<'de>,
    {
        super::deserialize_with(deserializer, |shape, data| {
            Array::from_shape_vec(IxDyn(&shape), data.into_owned())
                .and_then(|array| array.into_dimensionality::<D>())
                .map_err(|_| super::rank_error::<D>(&shape))
        })
    }
}
