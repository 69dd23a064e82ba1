//! franzy addition: structure-aware generation of every message at every version.
//!
//! [`ArbitraryAt`] is `arbitrary::Arbitrary` with the version as an argument: a message
//! generated at version `v` sets only the fields that exist at `v` (the others keep the value
//! decoding gives them), and carries unknown tagged fields only at flexible versions, with
//! tags no known field uses. So every generated message encodes at its version and decodes
//! back to itself. The per-struct impls are in `generated.rs`, written by `gen_arbitrary.py`
//! from the generated message files.
//!
//! Values lean towards the edges: integers are often 0, -1, 1 or their type's extremes, and
//! lists and strings stay short, so that a generated request reaches a handler's checks
//! instead of a size limit.

#![allow(missing_docs)]

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};
use bytes::Bytes;
use uuid::Uuid;

use crate::messages::{BrokerId, GroupId, ProducerId, TopicName, TransactionalId};
use crate::protocol::StrBytes;

#[rustfmt::skip]
#[allow(unused_parens, clippy::all)]
mod generated;

pub use generated::{
    arbitrary_request, arbitrary_response, decode_request_from, decode_response_from,
    request_versions, response_versions,
};

/// Longest list a generator makes.
pub const MAX_LIST: usize = 4;
/// Longest string or byte array a generator makes.
pub const MAX_BYTES: usize = 24;

/// A value generated for a given protocol version.
pub trait ArbitraryAt: Sized {
    /// Draws a value valid at `version` from `u`.
    fn arbitrary_at(u: &mut Unstructured<'_>, version: i16) -> Result<Self>;
}

macro_rules! edgy_ints {
    ($($t:ty),*) => {$(
        impl ArbitraryAt for $t {
            fn arbitrary_at(u: &mut Unstructured<'_>, _version: i16) -> Result<Self> {
                Ok(match u.int_in_range(0u8..=15)? {
                    0 => 0,
                    1 => 1,
                    2 => <$t>::MAX,
                    3 => <$t>::MIN,
                    4 => (0 as $t).wrapping_sub(1),
                    5 => <$t>::MAX - 1,
                    6..=9 => u.int_in_range(0..=16)?,
                    _ => u.arbitrary()?,
                })
            }
        }
    )*};
}

edgy_ints!(i8, i16, i32, i64, u16, u32);

impl ArbitraryAt for bool {
    fn arbitrary_at(u: &mut Unstructured<'_>, _version: i16) -> Result<Self> {
        u.arbitrary()
    }
}

impl ArbitraryAt for f64 {
    /// Finite values only: NaN is not equal to itself, so it cannot round-trip by `==`.
    fn arbitrary_at(u: &mut Unstructured<'_>, _version: i16) -> Result<Self> {
        let value: f64 = u.arbitrary()?;
        Ok(if value.is_finite() { value } else { 0.5 })
    }
}

impl ArbitraryAt for Uuid {
    fn arbitrary_at(u: &mut Unstructured<'_>, _version: i16) -> Result<Self> {
        Ok(match u.int_in_range(0u8..=3)? {
            0 => Uuid::nil(),
            _ => Uuid::from_bytes(u.arbitrary()?),
        })
    }
}

impl ArbitraryAt for StrBytes {
    fn arbitrary_at(u: &mut Unstructured<'_>, _version: i16) -> Result<Self> {
        let len = u.int_in_range(0..=MAX_BYTES)?;
        let mut s = String::with_capacity(len);
        for _ in 0..len {
            // Mostly the characters of topic and group names; sometimes anything.
            let c = match u.int_in_range(0u8..=7)? {
                0 => u.arbitrary::<char>()?,
                _ => *u.choose(b"abcxyz019._-")? as char,
            };
            s.push(c);
        }
        Ok(StrBytes::from_string(s))
    }
}

impl ArbitraryAt for Bytes {
    fn arbitrary_at(u: &mut Unstructured<'_>, _version: i16) -> Result<Self> {
        let len = u.int_in_range(0..=MAX_BYTES)?;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(u.arbitrary::<u8>()?);
        }
        Ok(Bytes::from(out))
    }
}

impl<T: ArbitraryAt> ArbitraryAt for Option<T> {
    fn arbitrary_at(u: &mut Unstructured<'_>, version: i16) -> Result<Self> {
        Ok(match u.int_in_range(0u8..=5)? {
            0 => None,
            _ => Some(T::arbitrary_at(u, version)?),
        })
    }
}

impl<T: ArbitraryAt> ArbitraryAt for Vec<T> {
    fn arbitrary_at(u: &mut Unstructured<'_>, version: i16) -> Result<Self> {
        let len = u.int_in_range(0..=MAX_LIST)?;
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(T::arbitrary_at(u, version)?);
        }
        Ok(out)
    }
}

macro_rules! newtypes {
    ($($t:ident($inner:ty)),*) => {$(
        impl ArbitraryAt for $t {
            fn arbitrary_at(u: &mut Unstructured<'_>, version: i16) -> Result<Self> {
                Ok($t(<$inner>::arbitrary_at(u, version)?))
            }
        }
    )*};
}

newtypes!(
    BrokerId(i32),
    GroupId(StrBytes),
    ProducerId(i64),
    TopicName(StrBytes),
    TransactionalId(StrBytes)
);

/// Unknown tagged fields with tags from `first_free` up (no known field uses them).
pub fn unknown_tagged_fields(
    u: &mut Unstructured<'_>,
    first_free: i32,
) -> Result<BTreeMap<i32, Bytes>> {
    let mut out = BTreeMap::new();
    // Most messages carry none, as real clients send them.
    if u.int_in_range(0u8..=3)? != 0 {
        return Ok(out);
    }
    let count = u.int_in_range(1..=3)?;
    for _ in 0..count {
        let tag = match u.int_in_range(0u8..=5)? {
            0 => i32::MAX,
            _ => first_free.saturating_add(u.int_in_range(0..=8)?),
        };
        out.insert(tag, Bytes::arbitrary_at(u, 0)?);
    }
    Ok(out)
}
