//! The committed seeds are what they claim to be: requests and responses that franzy decodes,
//! streams of whole frames, record batches that validate and decompress. A seed that no longer
//! decodes (because the codec changed) would silently make the corpus worthless.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml`

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use franzy::proto::batch_header::{validate_batch, Batches, BATCH_HEADER_LEN};
use franzy::proto::compression::Compression;
use franzy::proto::frame::FrameDecoder;
use franzy::proto::message::{decode_request, decode_response};
use franzy_fuzz::chunks::Plan;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut out: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("readable seed directory").path();
            let bytes = fs::read(&path).expect("readable seed");
            (path, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

#[test]
fn request_seeds_decode() {
    for (path, bytes) in seeds("request_decode") {
        if let Err(e) = decode_request(Bytes::from(bytes)) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn response_seeds_decode_as_the_api_they_select() {
    let keys = franzy_fuzz::api::keys();
    for (path, bytes) in seeds("response_decode") {
        let (api, version, frame) = franzy_fuzz::api::select(&keys, &bytes).expect("selector");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(
            name.ends_with(&format!("_v{version}")),
            "{name} selects {api:?} v{version}"
        );
        if let Err(e) = decode_response(Bytes::copy_from_slice(frame), api, version) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn frame_seeds_hold_frames() {
    for (path, bytes) in seeds("frame_decode") {
        let plan = Plan::from_input(&bytes);
        let decoder = FrameDecoder::new(plan.max_frame_size);
        let mut buf = BytesMut::new();
        let mut frames = 0;
        for chunk in plan.chunks() {
            buf.extend_from_slice(chunk);
            while let Ok(Some(_)) = decoder.decode(&mut buf) {
                frames += 1;
            }
        }
        assert!(frames >= 1, "{}: no whole frame", path.display());
    }
}

#[test]
fn batch_seeds_validate() {
    for (path, bytes) in seeds("batch_header") {
        let mut records = bytes[1..].to_vec();
        if bytes[0] & 1 != 0 {
            franzy_fuzz::batch::fix_crcs(&mut records);
        }
        for item in Batches::new(&records) {
            let (_, batch) = item.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            validate_batch(batch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn record_batch_seeds_are_batches_of_their_codec() {
    let codecs = [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ];
    for (name, codec) in codecs {
        for (path, batch) in seeds(&format!("record_batch_{name}")) {
            let header =
                validate_batch(&batch).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                header.attributes.compression(),
                Ok(codec),
                "{}",
                path.display()
            );
            // `shaped` leaves a valid batch of its codec as it is.
            assert_eq!(
                franzy_fuzz::batch::shaped(&batch, codec).as_deref(),
                Some(&batch[..])
            );
            let records = decompress(codec, &batch[BATCH_HEADER_LEN..]);
            assert!(
                records.len() > 3 * 7,
                "{}: records section too short",
                path.display()
            );
        }
    }
}

fn decompress(codec: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        Compression::Snappy => {
            assert_eq!(&data[..8], b"\x82SNAPPY\x00", "xerial magic");
            let mut rest = &data[16..];
            while !rest.is_empty() {
                let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let block = &rest[4..4 + len];
                out.extend(
                    snap::raw::Decoder::new()
                        .decompress_vec(block)
                        .expect("snappy"),
                );
                rest = &rest[4 + len..];
            }
        }
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .read_to_end(&mut out)
                .expect("lz4");
        }
        Compression::Zstd => {
            ruzstd::decoding::StreamingDecoder::new(data)
                .expect("zstd frame header")
                .read_to_end(&mut out)
                .expect("zstd");
        }
    }
    out
}

#[test]
fn fetcher_seeds_run_and_reach_what_they_are_named_for() {
    use franzy_fuzz::fetcher::{run, Outcome};
    for (path, script) in seeds("fetcher") {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let outcome = run(&script);
        eprintln!("{name}: {outcome:?}");
        assert_ne!(outcome, Outcome::default(), "{name}: nothing happened");
        let Outcome {
            records,
            partition_errors,
            corrupt,
            outages,
            ..
        } = outcome;
        match name.as_str() {
            "batch_at_int64_max" => assert_eq!((records, corrupt), (3, 1), "{name}"),
            "batch_at_negative_offset" => assert_eq!(corrupt, 1, "{name}"),
            "stale_crc_fixed_and_corrupt" => assert_eq!((records, corrupt), (3, 1), "{name}"),
            "fetch_failures_until_an_outage" => {
                assert_eq!((outages, records), (1, 3), "{name}")
            }
            "lookup_failures_and_a_bogus_offset" => {
                assert_eq!((outages, corrupt), (1, 1), "{name}")
            }
            "lookup_then_fetch_every_codec" => assert_eq!(records, 15, "{name}"),
            "errors_reset_and_eof" => assert_eq!((records, partition_errors), (3, 1), "{name}"),
            "cut_tail_then_rest" | "two_brokers_pause_resume" => {
                assert_eq!(records, 6, "{name}")
            }
            _ => {}
        }
    }
}

#[test]
fn sasl_seeds_reach_what_they_are_named_for() {
    use franzy::engine::sasl::scram::parse_server_first;
    use franzy_harness::security::mechanisms::{
        parse_client_final, parse_client_first, parse_oauth_initial, parse_plain,
        validate_unsecured_jwt,
    };
    for (path, bytes) in seeds("sasl_client") {
        if path.ends_with("server_first") {
            parse_server_first(&bytes[1..], "fuzznonce").expect("server-first parses");
        }
    }
    for (path, bytes) in seeds("sasl_server") {
        let message = &bytes[1..];
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let parsed = match name {
            "plain" => parse_plain(message).is_ok(),
            "client_first" => parse_client_first(message).is_ok(),
            "client_final" => parse_client_final(message).is_ok(),
            "oauth_initial" => parse_oauth_initial(message).is_ok(),
            "jwt" => validate_unsecured_jwt(&String::from_utf8_lossy(message), 0).is_ok(),
            other => panic!("unexpected seed {other}"),
        };
        assert!(parsed, "{} does not parse", path.display());
    }
}
