//! Structured fuzzing with franzy's `fuzzing` feature: libFuzzer's bytes become a request of
//! any API at any version (`GeneratedRequest`, valid by construction) and targeted mutations
//! of its frame. The request must round-trip through `encode_request`/`decode_request`; every
//! mutation of it must decode or fail cleanly, never panic; and whatever a mutated frame
//! decodes to must re-encode. The same `Arbitrary` inputs serve anyone's decoder: this target
//! is the template.
#![no_main]

use bytes::{Bytes, BytesMut};
use franzy::fuzzing::{FieldMap, GeneratedRequest, Mutation};
use franzy::proto::message::{decode_request, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (GeneratedRequest, Vec<Mutation>)| {
    let (request, mutations) = input;
    let Ok(frame) = request.encode() else {
        panic!(
            "a generated {:?} v{} does not encode",
            request.api_key,
            request.version()
        );
    };
    let body = frame.slice(4..);
    let decoded = decode_request(body.clone()).expect("a generated request decodes");
    assert_eq!(
        (&decoded.header, &decoded.body),
        (&request.header, &request.body)
    );

    let map = FieldMap::of_request(&body);
    let mut bytes = body.to_vec();
    for mutation in mutations.iter().take(4) {
        if let Some(mutated) = mutation.apply(&bytes, &map) {
            bytes = mutated;
        }
    }
    if let Ok(mutated) = decode_request(Bytes::from(bytes)) {
        let mut out = BytesMut::new();
        // A request that decodes may still hold a value its version cannot carry (a field
        // set at a version that lacks it is refused by the encoder): not a crash.
        let _ = encode_request(&mut out, &mutated.header, &mutated.body);
    }
});
