//! Dtype conversion on load (`Options::convert_dtypes`): among the floats (f16, bf16, f32, f64), and
//! among the integers where every value fits. Nothing else converts: turning floats into integers,
//! or integers into floats, changes what the numbers mean.

use crate::{bf16, f16, Dtype};

fn float_kind(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
}

fn int_kind(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::U8 | Dtype::I8 | Dtype::U16 | Dtype::I16 | Dtype::U32 | Dtype::I32 | Dtype::U64 | Dtype::I64
    )
}

/// Whether `from` converts to `to` at all (values may still not fit).
pub(crate) fn convertible(from: Dtype, to: Dtype) -> bool {
    (float_kind(from) && float_kind(to)) || (int_kind(from) && int_kind(to))
}

fn read_float(dtype: Dtype, b: &[u8]) -> f64 {
    match dtype {
        Dtype::F16 => f16::from_le_bytes([b[0], b[1]]).to_f64(),
        Dtype::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f64(),
        Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]).into(),
        _ => f64::from_le_bytes(b.try_into().expect("8 bytes")),
    }
}

fn write_float(dtype: Dtype, v: f64, out: &mut Vec<u8>) {
    match dtype {
        Dtype::F16 => out.extend_from_slice(&f16::from_f64(v).to_le_bytes()),
        Dtype::BF16 => out.extend_from_slice(&bf16::from_f64(v).to_le_bytes()),
        Dtype::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
        _ => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn read_int(dtype: Dtype, b: &[u8]) -> i128 {
    match dtype {
        Dtype::U8 => b[0].into(),
        Dtype::I8 => (b[0] as i8).into(),
        Dtype::U16 => u16::from_le_bytes([b[0], b[1]]).into(),
        Dtype::I16 => i16::from_le_bytes([b[0], b[1]]).into(),
        Dtype::U32 => u32::from_le_bytes(b.try_into().expect("4 bytes")).into(),
        Dtype::I32 => i32::from_le_bytes(b.try_into().expect("4 bytes")).into(),
        Dtype::U64 => u64::from_le_bytes(b.try_into().expect("8 bytes")).into(),
        _ => i64::from_le_bytes(b.try_into().expect("8 bytes")).into(),
    }
}

fn write_int(dtype: Dtype, v: i128, out: &mut Vec<u8>) -> Option<()> {
    match dtype {
        Dtype::U8 => out.extend_from_slice(&u8::try_from(v).ok()?.to_le_bytes()),
        Dtype::I8 => out.extend_from_slice(&i8::try_from(v).ok()?.to_le_bytes()),
        Dtype::U16 => out.extend_from_slice(&u16::try_from(v).ok()?.to_le_bytes()),
        Dtype::I16 => out.extend_from_slice(&i16::try_from(v).ok()?.to_le_bytes()),
        Dtype::U32 => out.extend_from_slice(&u32::try_from(v).ok()?.to_le_bytes()),
        Dtype::I32 => out.extend_from_slice(&i32::try_from(v).ok()?.to_le_bytes()),
        Dtype::U64 => out.extend_from_slice(&u64::try_from(v).ok()?.to_le_bytes()),
        _ => out.extend_from_slice(&i64::try_from(v).ok()?.to_le_bytes()),
    }
    Some(())
}

/// Converts little-endian elements of `from` into `to`. `Err` names the first value that does not
/// fit, or says that the dtypes do not convert.
pub(crate) fn convert(data: &[u8], from: Dtype, to: Dtype) -> Result<Vec<u8>, String> {
    if !convertible(from, to) {
        return Err("only floats convert to floats, and integers to integers".to_owned());
    }
    let (from_size, to_size) = (from.bit_size() / 8, to.bit_size() / 8);
    let mut out = Vec::with_capacity(data.len() / from_size * to_size);
    for (i, element) in data.chunks_exact(from_size).enumerate() {
        if float_kind(from) {
            write_float(to, read_float(from, element), &mut out);
        } else {
            let value = read_int(from, element);
            write_int(to, value, &mut out).ok_or_else(|| format!("element {i} ({value}) does not fit"))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_convert_with_rounding() {
        let data: Vec<u8> = [1.5f32, -2.0, 1.0e-3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = convert(&data, Dtype::F32, Dtype::BF16).unwrap();
        let back: Vec<f32> = out
            .chunks(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect();
        assert_eq!(back, [1.5, -2.0, bf16::from_f32(1.0e-3).to_f32()]);
        let wide = convert(&out, Dtype::BF16, Dtype::F64).unwrap();
        assert_eq!(f64::from_le_bytes(wide[..8].try_into().unwrap()), 1.5);
    }

    #[test]
    fn integers_convert_only_when_they_fit() {
        let data: Vec<u8> = [1i32, 300].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(convert(&data, Dtype::I32, Dtype::I64).unwrap().len(), 16);
        assert_eq!(
            convert(&data, Dtype::I32, Dtype::U8).unwrap_err(),
            "element 1 (300) does not fit"
        );
        let negative = (-1i8).to_le_bytes();
        assert!(convert(&negative, Dtype::I8, Dtype::U32).is_err());
    }

    #[test]
    fn kinds_do_not_mix() {
        assert!(!convertible(Dtype::F32, Dtype::I32));
        assert!(!convertible(Dtype::U8, Dtype::BOOL));
        assert!(convert(&[0; 4], Dtype::I32, Dtype::F32).is_err());
    }
}
