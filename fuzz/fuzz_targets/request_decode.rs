//! A request frame body as a broker reads it: `decode_request` takes the API key and version
//! from the input's first four bytes. Whatever decodes must re-encode with `encode_request`
//! and decode again to the same request (round-trip stability), and the re-encoding must be
//! a fixed point (encoding the second decode gives the same bytes).
#![no_main]

use bytes::{Bytes, BytesMut};
use franzy::proto::message::{decode_request, encode_request, peek_request_prefix, DecodedRequest};
use libfuzzer_sys::fuzz_target;

fn encode(request: &DecodedRequest) -> Bytes {
    let mut out = BytesMut::new();
    if let Err(e) = encode_request(&mut out, &request.header, &request.body) {
        panic!(
            "decoded {:?} v{} request does not re-encode: {e}",
            request.api_key, request.header.request_api_version
        );
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
    let Ok(first) = decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    let prefix = peek_request_prefix(data).expect("a decoded request has a prefix");
    assert_eq!(first.header.request_api_key, prefix.api_key);
    assert_eq!(first.header.request_api_version, prefix.api_version);
    assert_eq!(first.header.correlation_id, prefix.correlation_id);
    assert_eq!(first.api_key as i16, prefix.api_key);

    let encoded = encode(&first);
    let second = match decode_request(encoded.clone()) {
        Ok(second) => second,
        Err(e) => panic!(
            "re-encoded {:?} v{} request does not decode: {e}",
            first.api_key, first.header.request_api_version
        ),
    };
    // Floats (f64 fields) may be NaN, which is not equal to itself: fall back to comparing
    // the printed form, where NaN matches NaN.
    if first != second {
        assert_eq!(
            format!("{first:?}"),
            format!("{second:?}"),
            "round trip changed the request"
        );
    }
    let again = encode(&second);
    if again != encoded {
        assert_eq!(again, encoded, "re-encoding is not a fixed point");
    }
});
