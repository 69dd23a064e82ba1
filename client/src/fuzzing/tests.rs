use super::*;
use crate::proto::message::{decode_request, decode_response};
use crate::proto::record_batch::{DecodeLimits, RecordBatch};
use proptest::prelude::*;

/// Bytes for an `Unstructured` from a seed (SplitMix64), so that a sweep is reproducible.
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

fn request_round_trips(data: &[u8], api_key: ApiKey, version: i16) -> Result<(), String> {
    let mut u = Unstructured::new(data);
    let generated = GeneratedRequest::arbitrary_for(&mut u, api_key, version)
        .map_err(|e| format!("{api_key:?} v{version}: generation failed: {e}"))?;
    let frame = generated
        .encode()
        .map_err(|e| format!("{api_key:?} v{version}: {e}\n{generated:?}"))?;
    let decoded = decode_request(frame.slice(4..))
        .map_err(|e| format!("{api_key:?} v{version}: {e}\n{generated:?}"))?;
    if (decoded.api_key, &decoded.header, &decoded.body)
        != (api_key, &generated.header, &generated.body)
    {
        return Err(format!(
            "{api_key:?} v{version} changed:\n{generated:?}\n{decoded:?}"
        ));
    }
    // The field map of a valid frame tiles it: every byte read exactly once, in order.
    let map = FieldMap::of_request(&frame.slice(4..));
    let mut end = 0;
    for field in map.fields.iter().filter(|f| f.kind != FieldKind::Batch) {
        if field.at.start != end {
            return Err(format!(
                "{api_key:?} v{version}: field map gap at {end}: {map:?}"
            ));
        }
        end = field.at.end;
    }
    if end != frame.len() - 4 {
        return Err(format!(
            "{api_key:?} v{version}: field map ends at {end} of {}",
            frame.len() - 4
        ));
    }
    Ok(())
}

fn response_round_trips(data: &[u8], api_key: ApiKey, version: i16) -> Result<(), String> {
    let mut u = Unstructured::new(data);
    let generated = GeneratedResponse::arbitrary_for(&mut u, api_key, version)
        .map_err(|e| format!("{api_key:?} v{version}: generation failed: {e}"))?;
    let frame = generated
        .encode()
        .map_err(|e| format!("{api_key:?} v{version}: {e}\n{generated:?}"))?;
    let (header, body) = decode_response(frame.slice(4..), api_key, version)
        .map_err(|e| format!("{api_key:?} v{version}: {e}\n{generated:?}"))?;
    if (header.correlation_id, &body) != (generated.correlation_id, &generated.body) {
        return Err(format!(
            "{api_key:?} v{version} changed:\n{generated:?}\n{body:?}"
        ));
    }
    Ok(())
}

/// Every API key at every version, with several seeds each: the sweep that makes sure no
/// (key, version) is left to chance.
#[test]
fn every_request_and_response_at_every_version_round_trips() {
    let mut checked = 0;
    for api_key in api_keys() {
        for (range, check) in [
            (
                request_versions(api_key),
                request_round_trips as fn(&[u8], ApiKey, i16) -> _,
            ),
            (response_versions(api_key), response_round_trips),
        ] {
            for version in range.min..=range.max {
                for seed in 0..6u64 {
                    let data = seeded_bytes(seed ^ ((api_key as u64) << 32) ^ version as u64, 4096);
                    check(&data, api_key, version).unwrap_or_else(|e| panic!("{e}"));
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked > 2 * 87 * 6,
        "swept only {checked} (key, version, seed) triples"
    );
}

fn api_and_version(
    versions: fn(ApiKey) -> kafka_protocol::protocol::VersionRange,
) -> impl Strategy<Value = (ApiKey, i16)> {
    (0..api_keys().len(), any::<u16>()).prop_map(move |(index, pick)| {
        let api_key = api_keys()[index];
        let range = versions(api_key);
        let span = (range.max - range.min + 1) as u16;
        (api_key, range.min + (pick % span) as i16)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Generated requests of every API key encode at their version and decode to themselves.
    #[test]
    fn generated_requests_round_trip(
        (api_key, version) in api_and_version(request_versions),
        data in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        prop_assert_eq!(request_round_trips(&data, api_key, version), Ok(()));
    }

    /// Generated responses of every API key encode at their version and decode to themselves.
    #[test]
    fn generated_responses_round_trip(
        (api_key, version) in api_and_version(response_versions),
        data in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        prop_assert_eq!(response_round_trips(&data, api_key, version), Ok(()));
    }

    /// Generated batches, of every codec, decode to the batch that was encoded.
    #[test]
    fn generated_batches_round_trip(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut u = Unstructured::new(&data);
        if let Ok(generated) = GeneratedBatch::arbitrary(&mut u) {
            let bytes = generated.encode();
            prop_assert!(!bytes.is_empty());
            let decoded = RecordBatch::decode(&bytes, &DecodeLimits::default());
            prop_assert_eq!(decoded.as_ref().ok(), Some(&generated.batch), "{:?}", decoded);
        }
    }

    /// Mutations never panic, and a frame mutated by one differs from the original or is
    /// refused as having nothing to target.
    #[test]
    fn mutations_apply_to_any_frame(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        mutation in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut u = Unstructured::new(&data);
        if let Ok(request) = GeneratedRequest::arbitrary(&mut u) {
            let frame = request.encode().expect("generated requests encode");
            let body = frame.slice(4..);
            let map = FieldMap::of_request(&body);
            let mut m = Unstructured::new(&mutation);
            if let Ok(mutation) = Mutation::arbitrary(&mut m) {
                let _ = mutation.apply(&body, &map);
            }
        }
    }
}

#[test]
fn produce_requests_carry_batches_the_map_finds() {
    let mut found = 0;
    for seed in 0..200u64 {
        let data = seeded_bytes(seed, 8192);
        let mut u = Unstructured::new(&data);
        let request =
            GeneratedRequest::arbitrary_for(&mut u, ApiKey::Produce, 9).expect("generates");
        let frame = request.encode().expect("encodes").slice(4..);
        let map = FieldMap::of_request(&frame);
        for batch in map.of_kind(FieldKind::Batch) {
            let bytes = frame.slice(batch.at.clone());
            RecordBatch::decode(&bytes, &DecodeLimits::default())
                .expect("a generated batch decodes");
            found += 1;
        }
    }
    assert!(found > 50, "only {found} batches in 200 Produce requests");
}

#[test]
fn a_batch_mutation_with_crc_fixed_keeps_the_crc_valid() {
    let data = seeded_bytes(7, 8192);
    let mut u = Unstructured::new(&data);
    let batch = GeneratedBatch::arbitrary_of(&mut u, Some((4, 0, 0)), false, 3).expect("generates");
    let bytes = batch.encode();
    let map = FieldMap {
        fields: vec![Field {
            at: 0..bytes.len(),
            kind: FieldKind::Batch,
        }],
    };
    for (field, fix_crc) in [
        (mutate::BatchField::BaseSequence, true),
        (mutate::BatchField::BaseSequence, false),
    ] {
        let mutation = Mutation::Batch {
            batch: 0,
            field,
            edge: 4,
            fix_crc,
        };
        let out = mutation.apply(&bytes, &map).expect("a batch to mutate");
        assert_eq!(&out[53..57], &i32::MAX.to_be_bytes());
        let valid = crate::proto::batch_header::validate_batch(&out).is_ok();
        assert_eq!(valid, fix_crc, "crc fixed: {fix_crc}");
    }
}

#[test]
fn producer_runs_break_the_order_they_say() {
    for seed in 0..100u64 {
        let data = seeded_bytes(seed, 4096);
        let mut u = Unstructured::new(&data);
        let run = ProducerRun::arbitrary(&mut u).expect("generates");
        let sequences: Vec<i32> = run.batches.iter().map(|b| b.base_sequence).collect();
        let in_order = run.batches.windows(2).all(|w| {
            let next = w[0].base_sequence.wrapping_add(w[0].records.len() as i32);
            let next = if next < 0 { next - i32::MIN } else { next };
            w[1].base_sequence == next && w[1].producer_epoch == w[0].producer_epoch
        });
        match run.disorder {
            Disorder::None | Disorder::Wrap => {
                assert!(in_order, "{:?} {sequences:?}", run.disorder)
            }
            Disorder::EpochBack => assert!(
                run.batches.iter().any(|b| b.producer_epoch == 1)
                    && run.batches.last().map(|b| b.producer_epoch) == Some(0)
            ),
            _ => assert!(!in_order, "{:?} {sequences:?}", run.disorder),
        }
    }
}
