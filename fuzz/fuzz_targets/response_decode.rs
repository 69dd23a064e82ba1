//! A response frame as a client reads it: the API and version are those of the request it
//! sent, here chosen by the first four input bytes (see `franzy_fuzz::api`), and the rest is
//! the frame. Whatever decodes must re-encode with `encode_response` and decode again to the
//! same body and correlation id, and the re-encoding must be a fixed point.
//!
//! `encode_response` writes a default header carrying only the correlation id, so unknown
//! tagged fields of a flexible response header are not compared.
#![no_main]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use franzy::proto::message::{decode_response, encode_response, peek_correlation_id};
use franzy::proto::{ApiKey, ResponseKind};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static [ApiKey] {
    static KEYS: OnceLock<Vec<ApiKey>> = OnceLock::new();
    KEYS.get_or_init(franzy_fuzz::api::keys)
}

fn encode(api: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Bytes {
    let mut out = BytesMut::new();
    if let Err(e) = encode_response(&mut out, api, version, correlation_id, body) {
        panic!("decoded {api:?} v{version} response does not re-encode: {e}");
    }
    let length = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(
        usize::try_from(length).ok(),
        Some(out.len() - 4),
        "frame prefix"
    );
    out.freeze().slice(4..)
}

fuzz_target!(|data: &[u8]| {
    let Some((api, version, frame)) = franzy_fuzz::api::select(keys(), data) else {
        return;
    };
    let Ok((header, body)) = decode_response(Bytes::copy_from_slice(frame), api, version) else {
        return;
    };
    assert_eq!(peek_correlation_id(frame).ok(), Some(header.correlation_id));

    let encoded = encode(api, version, header.correlation_id, &body);
    let (header2, body2) = match decode_response(encoded.clone(), api, version) {
        Ok(decoded) => decoded,
        Err(e) => panic!("re-encoded {api:?} v{version} response does not decode: {e}"),
    };
    assert_eq!(header2.correlation_id, header.correlation_id);
    // NaN in f64 fields is not equal to itself: fall back to the printed form.
    if body != body2 {
        assert_eq!(
            format!("{body:?}"),
            format!("{body2:?}"),
            "round trip changed the response"
        );
    }
    let again = encode(api, version, header2.correlation_id, &body2);
    if again != encoded {
        assert_eq!(again, encoded, "re-encoding is not a fixed point");
    }
});
