//! The safetensors element types.

use std::fmt;
use std::str::FromStr;

use crate::{bf16, f16};

/// What the bytes of a dtype mean, for the conversions that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Unsigned,
    Signed,
    Float,
    Complex,
    /// Sub-byte and 8-bit floats: bytes that no Rust type here holds.
    Opaque,
}

/// Appends an integer as one element, or `None` if it does not fit.
type WriteInt = fn(i128, &mut Vec<u8>) -> Option<()>;

/// One row of the dtype table.
struct Row {
    bits: usize,
    kind: Kind,
    /// The Rust element type, as generated code names it.
    rust: Option<&'static str>,
    /// numpy's (and ml_dtypes') name, as flax msgpack writes it.
    numpy: Option<&'static str>,
    /// The zarr v2 `dtype` (numpy's array-protocol string, or tensorstore's name for the
    /// ml_dtypes types): what Orbax writes with zarr v2.
    zarr2: Option<&'static str>,
    /// The zarr v3 `data_type`.
    zarr3: Option<&'static str>,
    /// One element read as `f64` (numbers and bool).
    to_f64: Option<fn(&[u8]) -> f64>,
    /// One element written from `f64`, rounded (floats).
    from_f64: Option<fn(f64, &mut Vec<u8>)>,
    /// One element read as `i128` (integers).
    to_i128: Option<fn(&[u8]) -> i128>,
    /// One element written from `i128`; `None` if it does not fit (integers).
    from_i128: Option<WriteInt>,
}

/// The one place that lists the dtypes: each row gives the safetensors name (the variant), the size
/// in bits, the kind, the Rust element type (which also gets its `Element` impl), and the numpy,
/// zarr v2 and zarr v3 names (`-` where there is none). Adding a dtype is adding a row.
macro_rules! dtypes {
    ($(
        $(#[$doc:meta])*
        $variant:ident: $bits:literal bits, $kind:ident, rust $rust:tt, numpy $numpy:tt, zarr2 $zarr2:tt, zarr3 $zarr3:tt;
    )*) => {
        /// The element type of a tensor, as named in a safetensors header.
        ///
        /// The variants are declared in the order of the reference safetensors writer, whose layout
        /// sorts tensors by this order (descending), then by key; `Ord` follows it so that our
        /// layout matches.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Dtype {
            $( $(#[$doc])* $variant, )*
        }

        const ALL: &[Dtype] = &[$(Dtype::$variant),*];

        impl Dtype {
            /// The dtype named `name` in safetensors headers: one `match`, compiled to a
            /// comparison by length and bytes (a header names one dtype per tensor).
            fn from_name(name: &str) -> Option<Dtype> {
                match name {
                    $(stringify!($variant) => Some(Dtype::$variant),)*
                    _ => None,
                }
            }

            /// The name used in safetensors headers (`"F32"`, `"BF16"`, ...).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Dtype::$variant => stringify!($variant),)*
                }
            }

            /// Hands one little-endian element of this dtype to `visitor` as its Rust element
            /// type deserializes (`visit_f32`; half's types as a `u16` of their bits); `None` if
            /// no Rust type holds the dtype. A BOOL byte other than 0 and 1 is an error.
            pub(crate) fn visit_element<'de, V: serde::de::Visitor<'de>, E: serde::de::Error>(
                self,
                bytes: &[u8],
                visitor: V,
            ) -> Option<Result<V::Value, E>> {
                match self {
                    $(Dtype::$variant => dtypes!(@visit $rust, bytes, visitor),)*
                }
            }

            const fn row(self) -> &'static Row {
                match self {
                    $(Dtype::$variant => &Row {
                        bits: $bits,
                        kind: Kind::$kind,
                        rust: dtypes!(@name $rust),
                        numpy: dtypes!(@str $numpy),
                        zarr2: dtypes!(@str $zarr2),
                        zarr3: dtypes!(@str $zarr3),
                        to_f64: dtypes!(@hook $rust, to_f64, $kind),
                        from_f64: dtypes!(@hook $rust, from_f64, $kind),
                        to_i128: dtypes!(@hook $rust, to_i128, $kind),
                        from_i128: dtypes!(@hook $rust, from_i128, $kind),
                    },)*
                }
            }
        }

        $(dtypes!(@element $variant $rust);)*
    };
    (@visit -, $bytes:ident, $visitor:ident) => { None };
    (@visit ($ty:ty, $name:literal), $bytes:ident, $visitor:ident) => {
        Some(<$ty as Number>::visit($bytes, $visitor))
    };
    (@str -) => { None };
    (@str $s:literal) => { Some($s) };
    (@name -) => { None };
    (@name ($ty:ty, $name:literal)) => { Some($name) };
    (@element $variant:ident -) => {};
    (@element $variant:ident ($ty:ty, $name:literal)) => {
        impl crate::element::sealed::Sealed for $ty {}
        impl crate::Element for $ty {
            const DTYPE: Dtype = Dtype::$variant;
        }
    };
    (@hook -, $hook:ident, $kind:ident) => { None };
    (@hook ($ty:ty, $name:literal), to_f64, $kind:ident) => { Some(|b| <$ty as Number>::read(b).to_f64()) };
    (@hook ($ty:ty, $name:literal), from_f64, Float) => {
        Some(|v, out| out.extend_from_slice(&<$ty as Number>::from_f64(v).to_le()))
    };
    (@hook ($ty:ty, $name:literal), from_f64, $kind:ident) => { None };
    (@hook ($ty:ty, $name:literal), to_i128, Unsigned) => { Some(|b| <$ty as Number>::read(b).to_i128()) };
    (@hook ($ty:ty, $name:literal), to_i128, Signed) => { Some(|b| <$ty as Number>::read(b).to_i128()) };
    (@hook ($ty:ty, $name:literal), to_i128, $kind:ident) => { None };
    (@hook ($ty:ty, $name:literal), from_i128, Unsigned) => {
        Some(|v, out| Some(out.extend_from_slice(&<$ty>::try_from(v).ok()?.to_le_bytes())))
    };
    (@hook ($ty:ty, $name:literal), from_i128, Signed) => {
        Some(|v, out| Some(out.extend_from_slice(&<$ty>::try_from(v).ok()?.to_le_bytes())))
    };
    (@hook ($ty:ty, $name:literal), from_i128, $kind:ident) => { None };
}

dtypes! {
    /// Boolean, one byte per element (0 or 1).
    BOOL: 8 bits, Bool, rust (bool, "bool"), numpy "bool", zarr2 "|b1", zarr3 "bool";
    /// MXFP4, 4 bits per element.
    F4: 4 bits, Opaque, rust -, numpy -, zarr2 -, zarr3 -;
    /// MXFP6 E2M3, 6 bits per element.
    F6_E2M3: 6 bits, Opaque, rust -, numpy -, zarr2 -, zarr3 -;
    /// MXFP6 E3M2, 6 bits per element.
    F6_E3M2: 6 bits, Opaque, rust -, numpy -, zarr2 -, zarr3 -;
    /// Unsigned 8-bit integer.
    U8: 8 bits, Unsigned, rust (u8, "u8"), numpy "uint8", zarr2 "|u1", zarr3 "uint8";
    /// Signed 8-bit integer.
    I8: 8 bits, Signed, rust (i8, "i8"), numpy "int8", zarr2 "|i1", zarr3 "int8";
    /// 8-bit float, E5M2.
    F8_E5M2: 8 bits, Opaque, rust -, numpy "float8_e5m2", zarr2 "float8_e5m2", zarr3 "float8_e5m2";
    /// 8-bit float, E4M3.
    F8_E4M3: 8 bits, Opaque, rust -, numpy "float8_e4m3fn", zarr2 "float8_e4m3fn", zarr3 "float8_e4m3fn";
    /// 8-bit float, E8M0 (scale).
    F8_E8M0: 8 bits, Opaque, rust -, numpy -, zarr2 "float8_e8m0fnu", zarr3 "float8_e8m0fnu";
    /// 8-bit float, E4M3 FNUZ.
    F8_E4M3FNUZ: 8 bits, Opaque, rust -, numpy "float8_e4m3fnuz", zarr2 "float8_e4m3fnuz", zarr3 "float8_e4m3fnuz";
    /// 8-bit float, E5M2 FNUZ.
    F8_E5M2FNUZ: 8 bits, Opaque, rust -, numpy "float8_e5m2fnuz", zarr2 "float8_e5m2fnuz", zarr3 "float8_e5m2fnuz";
    /// Signed 16-bit integer.
    I16: 16 bits, Signed, rust (i16, "i16"), numpy "int16", zarr2 "<i2", zarr3 "int16";
    /// Unsigned 16-bit integer.
    U16: 16 bits, Unsigned, rust (u16, "u16"), numpy "uint16", zarr2 "<u2", zarr3 "uint16";
    /// IEEE half precision.
    F16: 16 bits, Float, rust (f16, "safejax::f16"), numpy "float16", zarr2 "<f2", zarr3 "float16";
    /// Brain floating point.
    BF16: 16 bits, Float, rust (bf16, "safejax::bf16"), numpy "bfloat16", zarr2 "bfloat16", zarr3 "bfloat16";
    /// Signed 32-bit integer.
    I32: 32 bits, Signed, rust (i32, "i32"), numpy "int32", zarr2 "<i4", zarr3 "int32";
    /// Unsigned 32-bit integer.
    U32: 32 bits, Unsigned, rust (u32, "u32"), numpy "uint32", zarr2 "<u4", zarr3 "uint32";
    /// IEEE single precision.
    F32: 32 bits, Float, rust (f32, "f32"), numpy "float32", zarr2 "<f4", zarr3 "float32";
    /// Complex number of two `f32`.
    C64: 64 bits, Complex, rust -, numpy "complex64", zarr2 "<c8", zarr3 "complex64";
    /// IEEE double precision.
    F64: 64 bits, Float, rust (f64, "f64"), numpy "float64", zarr2 "<f8", zarr3 "float64";
    /// Signed 64-bit integer.
    I64: 64 bits, Signed, rust (i64, "i64"), numpy "int64", zarr2 "<i8", zarr3 "int64";
    /// Unsigned 64-bit integer.
    U64: 64 bits, Unsigned, rust (u64, "u64"), numpy "uint64", zarr2 "<u8", zarr3 "uint64";
}

/// The element types' conversions that the table's hooks are made of.
trait Number: Copy {
    /// Reads one element from the start of little-endian `bytes`.
    fn read(bytes: &[u8]) -> Self;
    fn to_le(self) -> Vec<u8>;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn to_i128(self) -> i128;
    /// Hands the element at the start of `bytes` to `visitor` as serde sees the Rust type.
    fn visit<'de, V: serde::de::Visitor<'de>, E: serde::de::Error>(bytes: &[u8], visitor: V) -> Result<V::Value, E>;
}

macro_rules! numbers {
    ($($ty:ty: $to_f64:expr, $from_f64:expr, $to_i128:expr, $visit:ident $(($bits:ident))?;)*) => {$(
        impl Number for $ty {
            fn read(bytes: &[u8]) -> Self {
                <$ty>::from_le_bytes(bytes[..size_of::<$ty>()].try_into().expect("one element"))
            }
            fn to_le(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }
            fn to_f64(self) -> f64 {
                ($to_f64)(self)
            }
            fn from_f64(v: f64) -> Self {
                ($from_f64)(v)
            }
            fn to_i128(self) -> i128 {
                ($to_i128)(self)
            }
            fn visit<'de, V: serde::de::Visitor<'de>, E: serde::de::Error>(
                bytes: &[u8],
                visitor: V,
            ) -> Result<V::Value, E> {
                visitor.$visit(Self::read(bytes)$(.$bits())?)
            }
        }
    )*};
}

numbers! {
    u8: f64::from, |v| v as u8, i128::from, visit_u8;
    i8: f64::from, |v| v as i8, i128::from, visit_i8;
    u16: f64::from, |v| v as u16, i128::from, visit_u16;
    i16: f64::from, |v| v as i16, i128::from, visit_i16;
    u32: f64::from, |v| v as u32, i128::from, visit_u32;
    i32: f64::from, |v| v as i32, i128::from, visit_i32;
    u64: |v| v as f64, |v| v as u64, i128::from, visit_u64;
    i64: |v| v as f64, |v| v as i64, i128::from, visit_i64;
    // half's `f16` and `bf16` deserialize as a newtype around their bits.
    f16: f16::to_f64, f16::from_f64, |v: f16| v.to_f64() as i128, visit_u16(to_bits);
    bf16: bf16::to_f64, bf16::from_f64, |v: bf16| v.to_f64() as i128, visit_u16(to_bits);
    f32: f64::from, |v| v as f32, |v| v as i128, visit_f32;
    f64: |v| v, |v| v, |v| v as i128, visit_f64;
}

impl Number for bool {
    fn read(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn to_le(self) -> Vec<u8> {
        vec![u8::from(self)]
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn to_i128(self) -> i128 {
        i128::from(self)
    }
    fn visit<'de, V: serde::de::Visitor<'de>, E: serde::de::Error>(bytes: &[u8], visitor: V) -> Result<V::Value, E> {
        match bytes[0] {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            other => Err(E::custom(format_args!("{other} is not a valid BOOL"))),
        }
    }
}

impl Dtype {
    /// Size of one element in bits (4 and 6 for the sub-byte float formats).
    pub const fn bit_size(self) -> usize {
        self.row().bits
    }

    /// Number of bytes that `elements` elements of this dtype occupy, or `None` on overflow or when
    /// a sub-byte dtype does not fill whole bytes.
    pub fn byte_len(self, elements: usize) -> Option<usize> {
        let bits = elements.checked_mul(self.bit_size())?;
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Every dtype, in the reference writer's order.
    pub fn all() -> impl Iterator<Item = Dtype> {
        ALL.iter().copied()
    }

    pub(crate) const fn kind(self) -> Kind {
        self.row().kind
    }

    /// Whether this is a floating-point type that `Tensor<T>` holds (F16, BF16, F32, F64): the
    /// dtypes that convert among themselves.
    pub fn is_float(self) -> bool {
        self.kind() == Kind::Float
    }

    /// The Rust element type of `Tensor<T>` for this dtype, as generated code writes it
    /// (`"f32"`, `"safejax::bf16"`), or `None` if no `Element` holds it.
    pub const fn rust_type(self) -> Option<&'static str> {
        self.row().rust
    }

    /// numpy's name for this dtype (`"float32"`, `"bfloat16"`), as flax msgpack files name it.
    pub const fn numpy_name(self) -> Option<&'static str> {
        self.row().numpy
    }

    /// The dtype numpy calls `name`.
    pub fn from_numpy_name(name: &str) -> Option<Dtype> {
        Dtype::all().find(|d| d.numpy_name() == Some(name))
    }

    /// The zarr v2 `dtype` of this dtype (`"<f4"`, `"bfloat16"`).
    pub const fn zarr_v2_name(self) -> Option<&'static str> {
        self.row().zarr2
    }

    /// The dtype of the zarr v2 `dtype` `name`.
    pub fn from_zarr_v2_name(name: &str) -> Option<Dtype> {
        Dtype::all().find(|d| d.zarr_v2_name() == Some(name))
    }

    /// The zarr v3 `data_type` of this dtype (`"float32"`, `"bfloat16"`).
    pub const fn zarr_v3_name(self) -> Option<&'static str> {
        self.row().zarr3
    }

    /// The dtype of the zarr v3 `data_type` `name`.
    pub fn from_zarr_v3_name(name: &str) -> Option<Dtype> {
        Dtype::all().find(|d| d.zarr_v3_name() == Some(name))
    }

    /// A function that reads one little-endian element of this dtype as `f64`, for the dtypes that
    /// are numbers (and BOOL, as 0 and 1).
    pub fn f64_reader(self) -> Option<fn(&[u8]) -> f64> {
        self.row().to_f64
    }

    /// Appends `v`, rounded to this float dtype, in little-endian order.
    pub(crate) fn f64_writer(self) -> Option<fn(f64, &mut Vec<u8>)> {
        self.row().from_f64
    }

    /// Reads one element of this integer dtype.
    pub(crate) fn i128_reader(self) -> Option<fn(&[u8]) -> i128> {
        self.row().to_i128
    }

    /// Appends `v` as this integer dtype, or `None` if it does not fit.
    pub(crate) fn i128_writer(self) -> Option<WriteInt> {
        self.row().from_i128
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The header named a dtype that safetensors does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDtype(pub String);

impl fmt::Display for UnknownDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown dtype `{}`", self.0)
    }
}

impl std::error::Error for UnknownDtype {}

impl FromStr for Dtype {
    type Err = UnknownDtype;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dtype::from_name(s).ok_or_else(|| UnknownDtype(s.to_owned()))
    }
}

impl serde::Serialize for Dtype {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Dtype {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DtypeVisitor;
        impl serde::de::Visitor<'_> for DtypeVisitor {
            type Value = Dtype;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a safetensors dtype name")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dtype, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(DtypeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dtype::all() {
            assert_eq!(d.name().parse::<Dtype>(), Ok(d));
        }
        assert_eq!("F31".parse::<Dtype>(), Err(UnknownDtype("F31".to_owned())));
    }

    /// One tensor of every dtype, written by the safetensors crate and by us: the same bytes, so
    /// the same order (the writer sorts by dtype, descending), names and sizes.
    #[test]
    fn every_dtype_is_written_as_the_reference_writer_writes_it() {
        use std::collections::BTreeMap;

        let data: Vec<(String, Dtype, Vec<u8>)> = Dtype::all()
            .enumerate()
            .map(|(i, d)| {
                let len = d.byte_len(8).unwrap();
                // Keys in the reverse of the dtype order, so that only the dtype sorts them right.
                (
                    format!("t{:02}", 30 - i),
                    d,
                    (0..len).map(|b| (b * 7 + i) as u8).collect(),
                )
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
            .iter()
            .map(|(key, d, bytes)| {
                let theirs: safetensors::Dtype = serde_json::from_str(&format!("\"{d}\"")).unwrap();
                assert_eq!(theirs.bitsize(), d.bit_size(), "{d}");
                let view = safetensors::tensor::TensorView::new(theirs, vec![8], bytes).unwrap();
                (key.clone(), view)
            })
            .collect();
        let reference = safetensors::serialize(views, None).unwrap();

        let ours: BTreeMap<String, crate::Value> = data
            .iter()
            .map(|(key, d, bytes)| {
                let tensor = crate::DynTensor::new(*d, vec![8], bytes.clone()).unwrap();
                (key.clone(), crate::Value::Tensor(tensor))
            })
            .collect();
        let ours = crate::to_bytes(&crate::Value::Dict(ours)).unwrap();
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&reference));
        assert!(ours == reference);
    }

    #[test]
    fn the_table_agrees_with_the_element_types() {
        use crate::Element;
        fn check<T: Element>(name: &str) {
            assert_eq!(T::DTYPE.rust_type(), Some(name));
            assert_eq!(T::DTYPE.bit_size(), 8 * size_of::<T>());
        }
        check::<bool>("bool");
        check::<u8>("u8");
        check::<i64>("i64");
        check::<crate::bf16>("safejax::bf16");
        check::<f32>("f32");
        let held: Vec<Dtype> = Dtype::all().filter(|d| d.rust_type().is_some()).collect();
        assert_eq!(held.len(), 13);
        for d in Dtype::all() {
            // Every name the table gives reads back to its dtype.
            for (name, back) in [
                (d.numpy_name(), d.numpy_name().and_then(Dtype::from_numpy_name)),
                (d.zarr_v2_name(), d.zarr_v2_name().and_then(Dtype::from_zarr_v2_name)),
                (d.zarr_v3_name(), d.zarr_v3_name().and_then(Dtype::from_zarr_v3_name)),
            ] {
                assert_eq!(back, name.map(|_| d), "{d}");
            }
        }
        assert_eq!(Dtype::from_zarr_v2_name("<f4"), Some(Dtype::F32));
        assert_eq!(Dtype::from_zarr_v2_name("bfloat16"), Some(Dtype::BF16));
        assert_eq!(Dtype::from_zarr_v3_name("float32"), Some(Dtype::F32));
        let half = crate::bf16::from_f32(1.5).to_le_bytes();
        assert_eq!(Dtype::BF16.f64_reader().unwrap()(&half), 1.5);
        assert!(Dtype::F8_E4M3.f64_reader().is_none());
    }

    #[test]
    fn byte_len_checks_overflow_and_sub_byte() {
        assert_eq!(Dtype::F32.byte_len(3), Some(12));
        assert_eq!(Dtype::F4.byte_len(4), Some(2));
        assert_eq!(Dtype::F4.byte_len(3), None);
        assert_eq!(Dtype::F64.byte_len(usize::MAX / 4), None);
    }
}
