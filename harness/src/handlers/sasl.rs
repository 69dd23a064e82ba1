//! SaslHandshake and SaslAuthenticate outside an exchange: on a listener without SASL, or
//! after the connection authenticated (re-authentication's handshake is taken by the
//! connection's session first, `security::Session`). Kafka's `KafkaApis` answers both with
//! ILLEGAL_SASL_STATE.

use franzy::proto::{ErrorCode, StrBytes};
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

/// SaslHandshake where no exchange can start.
pub fn handshake_response(code: ErrorCode) -> SaslHandshakeResponse {
    SaslHandshakeResponse::default().with_error_code(code.code())
}

/// SaslAuthenticate where no exchange is under way.
pub fn authenticate_response(code: ErrorCode) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(code.code())
        .with_error_message(Some(StrBytes::from_static_str(
            "SaslAuthenticate request received after successful authentication",
        )))
}
