//! OAUTHBEARER, client side (RFC 7628, KIP-255; Kafka's `OAuthBearerClientInitialResponse`,
//! `OAuthBearerSaslClient`), and unsecured JWTs (RFC 7515 with `"alg":"none"`, Kafka's
//! `OAuthBearerUnsecuredJws` and `OAuthBearerUnsecuredLoginCallbackHandler`) for tests.
//!
//! ```text
//! client   n,,%x01auth=Bearer <token>[%x01<key>=<value>]...%x01%x01
//! server   (empty: success)  or  {"status":"invalid_token",...} (an error challenge)
//! client   %x01              (after an error challenge; the server then fails the exchange)
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use base64::Engine;

use super::SaslError;

/// RFC 7628's key/value separator, `%x01`.
pub const SEPARATOR: u8 = 0x01;

/// The client's first (and only) message: the token and the SASL extensions.
pub fn client_first_message(
    token: &str,
    extensions: &[(String, String)],
) -> Result<Vec<u8>, SaslError> {
    // Kafka's AUTH_PATTERN: the token is b64token characters.
    let token_ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    if !token_ok {
        return Err(SaslError(
            "OAUTHBEARER token has characters a bearer token cannot have".into(),
        ));
    }
    let mut message = format!("n,,\u{1}auth=Bearer {token}");
    for (key, value) in extensions {
        let key_ok =
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic()) && key != "auth";
        let value_ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b));
        if !key_ok || !value_ok {
            return Err(SaslError(format!("SASL extension {key:?} is invalid")));
        }
        message.push('\u{1}');
        message.push_str(key);
        message.push('=');
        message.push_str(value);
    }
    message.push_str("\u{1}\u{1}");
    Ok(message.into_bytes())
}

/// A readable form of a server's error challenge (JSON, RFC 7628 3.2.2), bounded.
pub fn describe_server_error(message: &[u8]) -> String {
    String::from_utf8_lossy(&message[..message.len().min(512)]).into_owned()
}

/// An unsecured JWT's claims, as Kafka's unsecured login module makes them.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsecuredClaims {
    /// The principal claim's name (`unsecuredLoginPrincipalClaimName`, `sub` by default).
    pub principal_claim: String,
    /// The principal.
    pub principal: String,
    /// Issued at, in milliseconds since the epoch.
    pub issued_at_ms: u64,
    /// Lifetime (`unsecuredLoginLifetimeSeconds`, 3600 by default), in milliseconds.
    pub lifetime_ms: u64,
    /// Further string claims (`unsecuredLoginStringClaim_<name>`).
    pub string_claims: Vec<(String, String)>,
    /// Scope values (`unsecuredLoginListClaim_scope`).
    pub scope: Vec<String>,
}

/// The compact serialization of an unsecured JWT: `base64url(header).base64url(claims).`
/// (empty signature). Times are written in seconds with fractions, as Kafka writes them.
pub fn unsecured_jwt(claims: &UnsecuredClaims) -> String {
    let header = r#"{"alg":"none"}"#;
    let mut body = String::from("{");
    let seconds = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
    body.push_str(&format!(
        "\"iat\":{},\"exp\":{}",
        seconds(claims.issued_at_ms),
        seconds(claims.issued_at_ms.saturating_add(claims.lifetime_ms))
    ));
    body.push_str(&format!(
        ",{}:{}",
        json_string(&claims.principal_claim),
        json_string(&claims.principal)
    ));
    for (name, value) in &claims.string_claims {
        if *name != claims.principal_claim {
            body.push_str(&format!(",{}:{}", json_string(name), json_string(value)));
        }
    }
    if !claims.scope.is_empty() {
        let values: Vec<String> = claims.scope.iter().map(|s| json_string(s)).collect();
        body.push_str(&format!(",\"scope\":[{}]", values.join(",")));
    }
    body.push('}');
    format!("{}.{}.", BASE64URL.encode(header), BASE64URL.encode(body))
}

/// `value` as a JSON string literal.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsecured_jwts_are_kafkas_shape() {
        let token = unsecured_jwt(&UnsecuredClaims {
            principal_claim: "sub".into(),
            principal: "alice \"a\"".into(),
            issued_at_ms: 1_700_000_000_250,
            lifetime_ms: 3_600_000,
            string_claims: vec![("iss".into(), "me".into())],
            scope: vec!["read".into()],
        });
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "");
        let header = BASE64URL.decode(parts[0]).expect("base64url");
        assert_eq!(header, br#"{"alg":"none"}"#);
        let body = String::from_utf8(BASE64URL.decode(parts[1]).expect("base64url")).expect("utf8");
        assert_eq!(
            body,
            r#"{"iat":1700000000.250,"exp":1700003600.250,"sub":"alice \"a\"","iss":"me","scope":["read"]}"#
        );
        assert!(client_first_message(&token, &[]).is_ok());
    }

    #[test]
    fn tokens_and_extensions_are_checked() {
        assert!(client_first_message("", &[]).is_err());
        assert!(client_first_message("a b", &[]).is_err());
        let bad_key = [("auth".to_string(), "x".to_string())];
        assert!(client_first_message("t", &bad_key).is_err());
        let bad_value = [("k".to_string(), "\u{1}".to_string())];
        assert!(client_first_message("t", &bad_value).is_err());
    }
}
