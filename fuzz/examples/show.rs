//! Prints what a fuzz target makes of one input, without libFuzzer or sanitizers, to read a
//! finding: the decoded values, the bytes they re-encode to, and the second decode.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example show -- <target> <input file>
//! ```

use std::error::Error;

use bytes::{Bytes, BytesMut};
use franzy::proto::batch_header::{validate_batch, BatchHeader, Batches};
use franzy::proto::frame::FrameDecoder;
use franzy::proto::message::{decode_request, decode_response, encode_request, encode_response};
use franzy_fuzz::chunks::Plan;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, path] = &args[..] else {
        return Err("usage: show <target> <input file>".into());
    };
    let data = std::fs::read(path)?;
    println!("input ({} bytes): {}", data.len(), hex(&data));
    match target.as_str() {
        "request_decode" => {
            let first = decode_request(Bytes::copy_from_slice(&data))?;
            println!("decoded: {first:#?}");
            let mut out = BytesMut::new();
            encode_request(&mut out, &first.header, &first.body)?;
            println!("re-encoded body: {}", hex(&out[4..]));
            println!(
                "decoded again: {:#?}",
                decode_request(out.freeze().slice(4..))
            );
        }
        "response_decode" => {
            let keys = franzy_fuzz::api::keys();
            let (api, version, frame) =
                franzy_fuzz::api::select(&keys, &data).ok_or("shorter than the selector")?;
            println!("selects {api:?} v{version}; frame: {}", hex(frame));
            let (header, body) = decode_response(Bytes::copy_from_slice(frame), api, version)?;
            println!("decoded: {header:?}\n{body:#?}");
            let mut out = BytesMut::new();
            encode_response(&mut out, api, version, header.correlation_id, &body)?;
            println!("re-encoded frame: {}", hex(&out[4..]));
            println!(
                "decoded again: {:#?}",
                decode_response(out.freeze().slice(4..), api, version)
            );
        }
        "frame_decode" => {
            let plan = Plan::from_input(&data);
            println!(
                "max {} bytes, chunk sizes {:?}",
                plan.max_frame_size, plan.sizes
            );
            let decoder = FrameDecoder::new(plan.max_frame_size);
            let mut buf = BytesMut::new();
            for chunk in plan.chunks() {
                buf.extend_from_slice(chunk);
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(frame)) => println!("frame: {}", hex(&frame)),
                        Ok(None) => break,
                        Err(e) => {
                            println!("error: {e}");
                            return Ok(());
                        }
                    }
                }
            }
            println!("left over: {}", hex(&buf));
        }
        "batch_header" => {
            let (&mode, records) = data.split_first().ok_or("empty input")?;
            let mut records = records.to_vec();
            if mode & 1 != 0 {
                println!(
                    "fixed {} crc(s)",
                    franzy_fuzz::batch::fix_crcs(&mut records)
                );
            }
            println!("parse: {:#?}", BatchHeader::parse(&records));
            println!("validate: {:?}", validate_batch(&records).map(|_| "ok"));
            let mut batches = Batches::new(&records);
            for item in batches.by_ref() {
                println!("batch: {:?}", item.map(|(h, b)| (h.base_offset, b.len())));
            }
            println!("truncated tail: {}", batches.truncated_tail());
        }
        "fetcher" => {
            println!("{:#?}", franzy_fuzz::fetcher::run(&data));
        }
        other => return Err(format!("unknown target {other}").into()),
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
