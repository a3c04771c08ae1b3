//! The safetensors element types.

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor, as named in a safetensors header.
///
/// The variants are declared in the order of the reference safetensors writer, whose layout sorts
/// tensors by this order (descending), then by key; `Ord` follows it so that our layout matches.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte per element (0 or 1).
    BOOL,
    /// MXFP4, 4 bits per element.
    F4,
    /// MXFP6 E2M3, 6 bits per element.
    F6_E2M3,
    /// MXFP6 E3M2, 6 bits per element.
    F6_E3M2,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, E5M2.
    F8_E5M2,
    /// 8-bit float, E4M3.
    F8_E4M3,
    /// 8-bit float, E8M0 (scale).
    F8_E8M0,
    /// 8-bit float, E4M3 FNUZ.
    F8_E4M3FNUZ,
    /// 8-bit float, E5M2 FNUZ.
    F8_E5M2FNUZ,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// Brain floating point.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// Complex number of two `f32`.
    C64,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

const ALL: [Dtype; 22] = [
    Dtype::BOOL,
    Dtype::F4,
    Dtype::F6_E2M3,
    Dtype::F6_E3M2,
    Dtype::U8,
    Dtype::I8,
    Dtype::F8_E5M2,
    Dtype::F8_E4M3,
    Dtype::F8_E8M0,
    Dtype::F8_E4M3FNUZ,
    Dtype::F8_E5M2FNUZ,
    Dtype::I16,
    Dtype::U16,
    Dtype::F16,
    Dtype::BF16,
    Dtype::I32,
    Dtype::U32,
    Dtype::F32,
    Dtype::C64,
    Dtype::F64,
    Dtype::I64,
    Dtype::U64,
];

impl Dtype {
    /// The name used in safetensors headers (`"F32"`, `"BF16"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::BOOL => "BOOL",
            Dtype::F4 => "F4",
            Dtype::F6_E2M3 => "F6_E2M3",
            Dtype::F6_E3M2 => "F6_E3M2",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::F8_E5M2 => "F8_E5M2",
            Dtype::F8_E4M3 => "F8_E4M3",
            Dtype::F8_E8M0 => "F8_E8M0",
            Dtype::F8_E4M3FNUZ => "F8_E4M3FNUZ",
            Dtype::F8_E5M2FNUZ => "F8_E5M2FNUZ",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::C64 => "C64",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
        }
    }

    /// Size of one element in bits (4 and 6 for the sub-byte float formats).
    pub const fn bit_size(self) -> usize {
        match self {
            Dtype::F4 => 4,
            Dtype::F6_E2M3 | Dtype::F6_E3M2 => 6,
            Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::F8_E5M2
            | Dtype::F8_E4M3
            | Dtype::F8_E8M0
            | Dtype::F8_E4M3FNUZ
            | Dtype::F8_E5M2FNUZ => 8,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 16,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 32,
            Dtype::C64 | Dtype::F64 | Dtype::I64 | Dtype::U64 => 64,
        }
    }

    /// Number of bytes that `elements` elements of this dtype occupy, or `None` on overflow or when
    /// a sub-byte dtype does not fill whole bytes.
    pub fn byte_len(self, elements: usize) -> Option<usize> {
        let bits = elements.checked_mul(self.bit_size())?;
        (bits % 8 == 0).then_some(bits / 8)
    }

    /// Every dtype, in the reference writer's order.
    pub fn all() -> impl Iterator<Item = Dtype> {
        ALL.into_iter()
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
        ALL.into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDtype(s.to_owned()))
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

    #[test]
    fn order_matches_reference_writer() {
        // The safetensors crate's `Dtype` derives `Ord` in declaration order; ours must agree.
        let ours: Vec<&str> = Dtype::all().map(Dtype::name).collect();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|n| n.parse::<Dtype>().unwrap());
        assert_eq!(ours, sorted);
        assert!(Dtype::U64 > Dtype::F32 && Dtype::F32 > Dtype::BF16 && Dtype::BF16 > Dtype::BOOL);
    }

    #[test]
    fn byte_len_checks_overflow_and_sub_byte() {
        assert_eq!(Dtype::F32.byte_len(3), Some(12));
        assert_eq!(Dtype::F4.byte_len(4), Some(2));
        assert_eq!(Dtype::F4.byte_len(3), None);
        assert_eq!(Dtype::F64.byte_len(usize::MAX / 4), None);
    }
}
