//! Variable-length integers as record batches use them (protocol guide, "Record": "varint"
//! and "varlong", which follow the zig-zag encoding of Protocol Buffers), plus the unsigned
//! varints of compact fields (KIP-482).
//!
//! Seven bits per byte, least significant group first, the high bit set on every byte but
//! the last. Signed values are zig-zag mapped first (0 → 0, -1 → 1, 1 → 2, -2 → 3, ...), so
//! that small negative numbers stay short.
//!
//! Decoding is bounded: a 32-bit value takes at most [`MAX_VARINT_LEN`] bytes and a 64-bit one
//! at most [`MAX_VARLONG_LEN`]. A value that does not fit its width is
//! [`VarintError::Overflow`]; a buffer that ends inside a value is
//! [`VarintError::Incomplete`], which a streaming reader may answer by waiting for more bytes.
//! Non-minimal encodings (`0x80 0x00` for zero) are accepted, as Kafka's own readers do.

use bytes::BufMut;

/// Most bytes a 32-bit varint takes.
pub const MAX_VARINT_LEN: usize = 5;
/// Most bytes a 64-bit varlong takes.
pub const MAX_VARLONG_LEN: usize = 10;

/// Why bytes are not a varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The buffer ends before the last byte of the value (every byte read had its
    /// continuation bit set).
    #[error("varint incomplete: buffer ends inside the value")]
    Incomplete,
    /// The value has more bytes than its width allows, or bits beyond its width.
    #[error("varint overflows {bits} bits")]
    Overflow {
        /// Width of the expected value: 32 or 64.
        bits: u32,
    },
}

/// Decodes an unsigned 32-bit varint at the start of `buf`; returns it and the bytes read.
pub fn decode_unsigned_varint(buf: &[u8]) -> Result<(u32, usize), VarintError> {
    let (value, len) = decode_unsigned(buf, 32)?;
    Ok((value as u32, len))
}

/// Decodes an unsigned 64-bit varint at the start of `buf`; returns it and the bytes read.
pub fn decode_unsigned_varlong(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    decode_unsigned(buf, 64)
}

/// Decodes a zig-zag 32-bit varint at the start of `buf`; returns it and the bytes read.
pub fn decode_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, len) = decode_unsigned_varint(buf)?;
    Ok((zigzag_decode_32(raw), len))
}

/// Decodes a zig-zag 64-bit varlong at the start of `buf`; returns it and the bytes read.
pub fn decode_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, len) = decode_unsigned_varlong(buf)?;
    Ok((zigzag_decode_64(raw), len))
}

/// Appends `value` as an unsigned varint.
pub fn encode_unsigned_varint(out: &mut impl BufMut, value: u32) {
    encode_unsigned(out, u64::from(value));
}

/// Appends `value` as an unsigned varlong.
pub fn encode_unsigned_varlong(out: &mut impl BufMut, value: u64) {
    encode_unsigned(out, value);
}

/// Appends `value` as a zig-zag varint.
pub fn encode_varint(out: &mut impl BufMut, value: i32) {
    encode_unsigned(out, u64::from(zigzag_encode_32(value)));
}

/// Appends `value` as a zig-zag varlong.
pub fn encode_varlong(out: &mut impl BufMut, value: i64) {
    encode_unsigned(out, zigzag_encode_64(value));
}

/// Bytes [`encode_unsigned_varint`] writes for `value`.
pub fn unsigned_varint_len(value: u32) -> usize {
    unsigned_len(u64::from(value))
}

/// Bytes [`encode_unsigned_varlong`] writes for `value`.
pub fn unsigned_varlong_len(value: u64) -> usize {
    unsigned_len(value)
}

/// Bytes [`encode_varint`] writes for `value`.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag_encode_32(value)))
}

/// Bytes [`encode_varlong`] writes for `value`.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag_encode_64(value))
}

/// Zig-zag maps a signed 32-bit value to an unsigned one: 0 → 0, -1 → 1, 1 → 2, ...
pub fn zigzag_encode_32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

/// Inverse of [`zigzag_encode_32`].
pub fn zigzag_decode_32(raw: u32) -> i32 {
    ((raw >> 1) as i32) ^ -((raw & 1) as i32)
}

/// Zig-zag maps a signed 64-bit value to an unsigned one.
pub fn zigzag_encode_64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag_encode_64`].
pub fn zigzag_decode_64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Reads an unsigned varint of at most `bits` (32 or 64) bits.
fn decode_unsigned(buf: &[u8], bits: u32) -> Result<(u64, usize), VarintError> {
    let max_len = bits.div_ceil(7) as usize;
    let mut value = 0u64;
    for (index, &byte) in buf.iter().enumerate().take(max_len) {
        let shift = 7 * index as u32;
        let payload = u64::from(byte & 0x7f);
        // Only the last permitted byte can carry bits past the width: 32 = 4 * 7 + 4 and
        // 64 = 9 * 7 + 1, so the final byte may hold 4 (or 1) bits and no continuation.
        if index + 1 == max_len {
            let room = bits - shift;
            if byte & 0x80 != 0 || payload >> room != 0 {
                return Err(VarintError::Overflow { bits });
            }
        }
        value |= payload << shift;
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    // Every byte read had its continuation bit set and the width is not exhausted.
    Err(VarintError::Incomplete)
}

fn encode_unsigned(out: &mut impl BufMut, mut value: u64) {
    if value < 0x80 {
        out.put_u8(value as u8);
        return;
    }
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn unsigned_len(value: u64) -> usize {
    // Record fields are mostly one or two bytes long: answer those with a comparison.
    if value < 1 << 7 {
        1
    } else if value < 1 << 14 {
        2
    } else {
        let significant_bits = 64 - value.leading_zeros() as usize;
        significant_bits.div_ceil(7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zigzag_vectors_from_the_spec() {
        let vectors: [(i32, u32); 7] = [
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2, 4),
            (2_147_483_647, 4_294_967_294),
            (-2_147_483_648, 4_294_967_295),
        ];
        for (signed, unsigned) in vectors {
            assert_eq!(zigzag_encode_32(signed), unsigned, "{signed}");
            assert_eq!(zigzag_decode_32(unsigned), signed, "{unsigned}");
            assert_eq!(zigzag_encode_64(i64::from(signed)), u64::from(unsigned));
        }
        assert_eq!(zigzag_encode_64(i64::MAX), u64::MAX - 1);
        assert_eq!(zigzag_encode_64(i64::MIN), u64::MAX);
    }

    #[test]
    fn byte_vectors() {
        // (value, wire bytes), worked out by hand: zig-zag, then 7-bit groups, low first.
        let vectors: [(i64, &[u8]); 9] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i64::from(i32::MAX), &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i64::from(i32::MIN), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, wire) in vectors {
            let narrow = i32::try_from(value).expect("test vectors fit 32 bits");
            let mut out = Vec::new();
            encode_varint(&mut out, narrow);
            assert_eq!(out, wire, "encode {value}");
            assert_eq!(
                decode_varint(wire),
                Ok((narrow, wire.len())),
                "decode {value}"
            );
            assert_eq!(decode_varlong(wire), Ok((value, wire.len())));
            assert_eq!(varint_len(narrow), wire.len());
        }
        let mut out = Vec::new();
        encode_varlong(&mut out, i64::MIN);
        assert_eq!(
            out,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(decode_varlong(&out), Ok((i64::MIN, MAX_VARLONG_LEN)));
        assert_eq!(varlong_len(i64::MIN), MAX_VARLONG_LEN);
    }

    #[test]
    fn unsigned_vectors() {
        let mut out = Vec::new();
        encode_unsigned_varint(&mut out, 0);
        encode_unsigned_varint(&mut out, 127);
        encode_unsigned_varint(&mut out, 128);
        encode_unsigned_varint(&mut out, u32::MAX);
        assert_eq!(out, [0x00, 0x7f, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(decode_unsigned_varint(&out[4..]), Ok((u32::MAX, 5)));
        assert_eq!(unsigned_varlong_len(u64::MAX), MAX_VARLONG_LEN);
    }

    #[test]
    fn incomplete_is_not_overflow() {
        assert_eq!(decode_varint(&[]), Err(VarintError::Incomplete));
        assert_eq!(decode_varint(&[0x80]), Err(VarintError::Incomplete));
        assert_eq!(decode_varint(&[0xff; 4]), Err(VarintError::Incomplete));
        assert_eq!(decode_varlong(&[0xff; 9]), Err(VarintError::Incomplete));
        // A fifth byte with its continuation bit set: six or more bytes for 32 bits.
        assert_eq!(
            decode_varint(&[0xff; 5]),
            Err(VarintError::Overflow { bits: 32 })
        );
        assert_eq!(
            decode_varint(&[0xff; 20]),
            Err(VarintError::Overflow { bits: 32 })
        );
        // A fifth byte carrying bits 32 and up.
        assert_eq!(
            decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x10]),
            Err(VarintError::Overflow { bits: 32 })
        );
        assert_eq!(
            decode_varlong(&[0xff; 11]),
            Err(VarintError::Overflow { bits: 64 })
        );
        let mut too_wide = [0xff; 10];
        too_wide[9] = 0x02;
        assert_eq!(
            decode_varlong(&too_wide),
            Err(VarintError::Overflow { bits: 64 })
        );
    }

    #[test]
    fn non_minimal_encodings_are_accepted_and_trailing_bytes_ignored() {
        assert_eq!(decode_varint(&[0x80, 0x00]), Ok((0, 2)));
        assert_eq!(decode_varint(&[0x02, 0xff, 0xff]), Ok((1, 1)));
    }

    proptest! {
        #[test]
        fn varint_round_trip(value: i32, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            encode_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            prop_assert!(out.len() <= MAX_VARINT_LEN);
            let len = out.len();
            out.extend(tail);
            prop_assert_eq!(decode_varint(&out), Ok((value, len)));
            // Every strict prefix is incomplete, never an error of another kind.
            for cut in 0..len {
                prop_assert_eq!(decode_varint(&out[..cut]), Err(VarintError::Incomplete));
            }
        }

        #[test]
        fn varlong_round_trip(value: i64) {
            let mut out = Vec::new();
            encode_varlong(&mut out, value);
            prop_assert_eq!(out.len(), varlong_len(value));
            prop_assert_eq!(decode_varlong(&out), Ok((value, out.len())));
            for cut in 0..out.len() {
                prop_assert_eq!(decode_varlong(&out[..cut]), Err(VarintError::Incomplete));
            }
        }

        #[test]
        fn unsigned_round_trip(value: u32, wide: u64) {
            let mut out = Vec::new();
            encode_unsigned_varint(&mut out, value);
            prop_assert_eq!(out.len(), unsigned_varint_len(value));
            prop_assert_eq!(decode_unsigned_varint(&out), Ok((value, out.len())));
            let mut out = Vec::new();
            encode_unsigned_varlong(&mut out, wide);
            prop_assert_eq!(decode_unsigned_varlong(&out), Ok((wide, out.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode_varint(&bytes);
            let _ = decode_varlong(&bytes);
            if let Ok((_, len)) = decode_varint(&bytes) {
                prop_assert!(len <= MAX_VARINT_LEN && len <= bytes.len());
            }
            if let Ok((_, len)) = decode_varlong(&bytes) {
                prop_assert!(len <= MAX_VARLONG_LEN && len <= bytes.len());
            }
        }
    }
}
