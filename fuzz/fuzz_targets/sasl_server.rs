//! The harness's SASL parsers of what a client sends (`franzy_harness::security::mechanisms`):
//! PLAIN tokens, SCRAM client-first and client-final, OAUTHBEARER initial responses and
//! unsecured JWTs. None may panic; what parses is consistent.
//!
//! Input layout: byte 0 selects the parser (modulo 5), the rest is the message.
#![no_main]

use franzy_harness::security::mechanisms::{
    parse_client_final, parse_client_first, parse_oauth_initial, parse_plain,
    validate_unsecured_jwt,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok((user, password)) = parse_plain(rest) {
                assert!(!user.is_empty() && !password.is_empty());
                assert!(!user.contains('\0') && !password.contains('\0'));
            }
        }
        1 => {
            if let Ok(first) = parse_client_first(rest) {
                assert!(!first.username.is_empty() && !first.nonce.is_empty());
                assert!(!first.nonce.contains(','));
            }
        }
        2 => {
            if let Ok(last) = parse_client_final(rest) {
                assert!(!last.without_proof.contains(",p="));
            }
        }
        3 => {
            if let Ok((_, extensions)) = parse_oauth_initial(rest) {
                assert!(extensions.iter().all(|(key, _)| key != "auth"));
            }
        }
        _ => {
            if let Ok(valid) = validate_unsecured_jwt(&String::from_utf8_lossy(rest), 0) {
                assert!(valid.expires_ms > 0 && !valid.principal.is_empty());
            }
        }
    }
});
