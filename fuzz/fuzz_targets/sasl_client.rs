//! The client's SASL parsers of what a broker sends: SCRAM server-first and server-final
//! (`engine::sasl::scram`), and a whole SCRAM exchange fed server messages from the input.
//! None may panic, whatever the bytes; a server-first that parses has a nonce extending
//! ours, a salt and iterations within Kafka's bounds.
//!
//! Input layout: byte 0 selects what the rest is: 0 a server-first, 1 a server-final,
//! else two server messages separated by the first 0xff byte, fed to an exchange.
#![no_main]

use franzy::engine::sasl::scram::{
    parse_server_final, parse_server_first, ScramClient, ScramHash, MAX_ITERATIONS,
    MIN_ITERATIONS,
};
use libfuzzer_sys::fuzz_target;

const NONCE: &str = "fuzznonce";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Ok(first) = parse_server_first(rest, NONCE) {
                assert!(first.nonce.starts_with(NONCE) && first.nonce.len() > NONCE.len());
                assert!(!first.salt.is_empty());
                assert!((MIN_ITERATIONS..=MAX_ITERATIONS).contains(&first.iterations));
            }
        }
        1 => {
            let _ = parse_server_final(rest);
        }
        _ => {
            let (first, last) = match rest.iter().position(|&b| b == 0xff) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &[][..]),
            };
            let hash = if mode & 1 == 0 { ScramHash::Sha256 } else { ScramHash::Sha512 };
            let mut client = ScramClient::new(hash, "user", "pencil", NONCE).expect("valid nonce");
            client.client_first().expect("first message");
            if let Ok(Some(_)) = client.handle_server(first) {
                // A made-up server cannot know the password: the signature never verifies.
                assert!(client.handle_server(last).is_err());
            }
        }
    }
});
