//! Dtype conversion on load (`Options::convert_dtypes`): among the floats (f16, bf16, f32, f64), and
//! among the integers where every value fits. Nothing else converts: turning floats into integers,
//! or integers into floats, changes what the numbers mean.

use crate::Dtype;

/// Converts little-endian elements of `from` into `to`. `Err` names the first value that does not
/// fit, or says that the dtypes do not convert. The per-element reads and writes are the dtype
/// table's (`dtype.rs`).
pub(crate) fn convert(data: &[u8], from: Dtype, to: Dtype) -> Result<Vec<u8>, String> {
    let (from_size, to_size) = (from.bit_size() / 8, to.bit_size() / 8);
    let elements = data.chunks_exact(from_size.max(1));
    let mut out = Vec::with_capacity(elements.len() * to_size);
    if let (Some(read), Some(write)) = (from.f64_reader().filter(|_| from.is_float()), to.f64_writer()) {
        for element in elements {
            write(read(element), &mut out);
        }
    } else if let (Some(read), Some(write)) = (from.i128_reader(), to.i128_writer()) {
        for (i, element) in elements.enumerate() {
            let value = read(element);
            write(value, &mut out).ok_or_else(|| format!("element {i} ({value}) does not fit"))?;
        }
    } else {
        return Err("only floats convert to floats, and integers to integers".to_owned());
    }
    Ok(out)
}

/// Whether `from` converts to `to` at all (values may still not fit).
pub(crate) fn convertible(from: Dtype, to: Dtype) -> bool {
    (from.is_float() && to.is_float()) || (from.i128_reader().is_some() && to.i128_writer().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16;

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
