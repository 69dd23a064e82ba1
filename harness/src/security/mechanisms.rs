//! The server side of each SASL mechanism (Kafka's `PlainSaslServer`, `ScramSaslServer`,
//! `OAuthBearerSaslServer` with the unsecured validator): parsing what clients send
//! without trusting it, and checking it against the cluster's users.
//!
//! Written apart from the client's side in `franzy::engine::sasl` on purpose: a codec
//! shared by client and harness could be wrong the same way on both sides; the RFC's test
//! vectors and librdkafka (the interop script) hold both to the spec.

use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

pub use franzy::security::SaslMechanism as Mechanism;

/// Kafka's `ScramMechanism` bounds on iterations.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's `ScramMechanism` bounds on iterations.
pub const MAX_ITERATIONS: u32 = 16384;

/// A failed exchange: what the client is told (Kafka's `SaslAuthenticationException`
/// message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            Self::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// What Kafka stores for a SCRAM user (`ScramCredential`): never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential of `password` with `salt` (Kafka's `ScramFormatter.generateCredential`).
    pub fn new(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        Self {
            salt: salt.to_vec(),
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            iterations,
        }
    }
}

/// PLAIN's message (RFC 4616): `[authzid] NUL user NUL password`. Kafka requires a user
/// and a password, and an authorization id, if any, equal to the user.
pub fn parse_plain(message: &[u8]) -> Result<(String, String), Refused> {
    let text = std::str::from_utf8(message)
        .map_err(|_| Refused("Invalid SASL/PLAIN response: not UTF-8".into()))?;
    let parts: Vec<&str> = text.split('\0').collect();
    let [authzid, user, password] = parts[..] else {
        return Err(Refused(
            "Invalid SASL/PLAIN response: expected 3 tokens".into(),
        ));
    };
    if user.is_empty() {
        return Err(Refused(
            "Authentication failed: username not specified".into(),
        ));
    }
    if password.is_empty() {
        return Err(Refused(
            "Authentication failed: password not specified".into(),
        ));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(Refused(
            "Authentication failed: Client requested an authorization id that is different from username"
                .into(),
        ));
    }
    Ok((user.to_string(), password.to_string()))
}

/// A SCRAM client-first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name, unescaped.
    pub username: String,
    /// The client nonce.
    pub nonce: String,
    /// The message without its GS2 header.
    pub bare: String,
}

/// Parses client-first: `n,,n=<saslname>,r=<nonce>[,ext]`. Channel binding (`p=`) and
/// authorization ids are refused, as Kafka refuses them.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, Refused> {
    let bad = |why: &str| Refused(format!("Invalid SCRAM client first message: {why}"));
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    let bare = text
        .strip_prefix("n,,")
        .or_else(|| text.strip_prefix("y,,"))
        .ok_or_else(|| bad("unsupported GS2 header (channel binding or authzid)"))?;
    let mut attributes = bare.split(',');
    let user = attributes
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or_else(|| bad("no n= attribute"))?;
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| bad("no r= attribute"))?;
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(bad("nonce is not printable"));
    }
    let username = unescape_sasl_name(user).ok_or_else(|| bad("malformed user name"))?;
    if username.is_empty() {
        return Err(bad("empty user name"));
    }
    Ok(ClientFirst {
        username,
        nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

fn unescape_sasl_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// A SCRAM client-final message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinal {
    /// `c=`: base64 of the GS2 header.
    pub channel_binding: String,
    /// `r=`: the combined nonce.
    pub nonce: String,
    /// `p=`: the proof, decoded.
    pub proof: Vec<u8>,
    /// The message up to (without) `,p=`.
    pub without_proof: String,
}

/// Parses client-final: `c=<b64>,r=<nonce>[,ext],p=<b64 proof>`.
pub fn parse_client_final(message: &[u8]) -> Result<ClientFinal, Refused> {
    let bad = |why: &str| Refused(format!("Invalid SCRAM client final message: {why}"));
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    let at = text.rfind(",p=").ok_or_else(|| bad("no proof"))?;
    let without_proof = &text[..at];
    let proof = BASE64
        .decode(&text[at + 3..])
        .map_err(|_| bad("proof is not base64"))?;
    let mut attributes = without_proof.split(',');
    let channel_binding = attributes
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or_else(|| bad("no c= attribute"))?;
    let nonce = attributes
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or_else(|| bad("no r= attribute"))?;
    Ok(ClientFinal {
        channel_binding: channel_binding.to_string(),
        nonce: nonce.to_string(),
        proof,
        without_proof: without_proof.to_string(),
    })
}

/// The server's side of one SCRAM exchange.
#[derive(Debug)]
pub enum ScramServer {
    /// Waiting for client-first.
    Start,
    /// server-first sent.
    SentFirst {
        /// The user.
        username: String,
        /// client-first-bare.
        client_first_bare: String,
        /// server-first as sent.
        server_first: String,
        /// The combined nonce.
        nonce: String,
        /// The user's credential.
        credential: ScramCredential,
    },
    /// Done.
    Done,
}

impl ScramServer {
    /// Handles client-first: the server-first message and the user, or a refusal.
    /// `lookup` finds the user's credential; `server_nonce` extends the client's nonce.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Vec<u8>, Refused> {
        let first = parse_client_first(message)?;
        let credential = lookup(&first.username)
            .ok_or_else(|| Refused("Authentication failed: Invalid user credentials".into()))?;
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        *self = Self::SentFirst {
            username: first.username,
            client_first_bare: first.bare,
            server_first: server_first.clone(),
            nonce,
            credential,
        };
        Ok(server_first.into_bytes())
    }

    /// Handles client-final: the server-final message and the authenticated user, or a
    /// refusal (a wrong password shows as a proof that does not verify).
    pub fn client_final(
        &mut self,
        hash: ScramHash,
        message: &[u8],
    ) -> Result<(Vec<u8>, String), Refused> {
        let Self::SentFirst {
            username,
            client_first_bare,
            server_first,
            nonce,
            credential,
        } = std::mem::replace(self, Self::Done)
        else {
            return Err(Refused("Unexpected SCRAM message".into()));
        };
        let last = parse_client_final(message)?;
        // Kafka's ScramSaslServer checks `endsWith`, not equality: librdkafka 2.0 sends
        // its own nonce again in front of the combined one.
        if !last.nonce.ends_with(&nonce) {
            return Err(Refused(
                "Invalid SCRAM client final message: nonce mismatch".into(),
            ));
        }
        if last.channel_binding != BASE64.encode("n,,")
            && last.channel_binding != BASE64.encode("y,,")
        {
            return Err(Refused(
                "Invalid SCRAM client final message: channel binding".into(),
            ));
        }
        let auth_message = format!("{client_first_bare},{server_first},{}", last.without_proof);
        let signature = hash.hmac(&credential.stored_key, auth_message.as_bytes());
        if last.proof.len() != signature.len() {
            return Err(Refused("Invalid client credentials".into()));
        }
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = hash.hash(&client_key);
        let equal = stored.len() == credential.stored_key.len()
            && stored
                .iter()
                .zip(&credential.stored_key)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !equal {
            return Err(Refused("Invalid client credentials".into()));
        }
        let server_signature = hash.hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            username,
        ))
    }
}

/// The token of an OAUTHBEARER client-first message (Kafka's
/// `OAuthBearerClientInitialResponse`): `n,[a=authzid],%x01(key=value%x01)*%x01`, with
/// `auth=Bearer <token>` among the pairs.
pub fn parse_oauth_initial(message: &[u8]) -> Result<(String, Vec<(String, String)>), Refused> {
    let bad = || Refused("Invalid OAUTHBEARER client first message".into());
    let text = std::str::from_utf8(message).map_err(|_| bad())?;
    let rest = text.strip_prefix("n,").ok_or_else(bad)?;
    let (_authzid, rest) = rest.split_once(',').ok_or_else(bad)?;
    let pairs = rest
        .strip_prefix('\u{1}')
        .and_then(|r| r.strip_suffix('\u{1}'))
        .ok_or_else(bad)?;
    let mut token = None;
    let mut extensions = Vec::new();
    for pair in pairs.split('\u{1}').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(bad)?;
        if key == "auth" {
            let (scheme, value) = value.split_once(' ').ok_or_else(bad)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Refused(format!(
                    "Invalid scheme in OAUTHBEARER client first message: {scheme}"
                )));
            }
            token = Some(value.trim_start_matches(' ').to_string());
        } else {
            extensions.push((key.to_string(), value.to_string()));
        }
    }
    let token = token.ok_or_else(|| {
        Refused("Invalid OAUTHBEARER client first message: 'auth' not specified".into())
    })?;
    Ok((token, extensions))
}

/// An unsecured JWT, validated as Kafka's `OAuthBearerUnsecuredValidatorCallbackHandler`
/// does: `"alg":"none"`, an empty signature, a `sub` string, an `exp` in the future.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidToken {
    /// The principal (`sub`).
    pub principal: String,
    /// When it expires, milliseconds since the epoch.
    pub expires_ms: i64,
}

/// Validates an unsecured JWT at wall-clock `now_ms`; the error is the JSON status Kafka
/// sends back (RFC 7628 3.2.2).
pub fn validate_unsecured_jwt(token: &str, now_ms: i64) -> Result<ValidToken, String> {
    const INVALID: &str = r#"{"status":"invalid_token"}"#;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(INVALID.into());
    };
    if !signature.is_empty() {
        return Err(INVALID.into());
    }
    let json = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = BASE64URL
            .decode(part.trim_end_matches('='))
            .map_err(|_| INVALID.to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| INVALID.to_string())
    };
    let header = json(header)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("none") {
        return Err(INVALID.into());
    }
    let claims = json(claims)?;
    let principal = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| INVALID.to_string())?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| INVALID.to_string())?;
    if !exp.is_finite() {
        return Err(INVALID.into());
    }
    let expires_ms = (exp * 1000.0).clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    if expires_ms <= now_ms {
        return Err(INVALID.into());
    }
    Ok(ValidToken {
        principal: principal.to_string(),
        expires_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3, from the server's side.
    #[test]
    fn rfc7677_exchange_verifies_and_signs() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let credential = ScramCredential::new(ScramHash::Sha256, "pencil", &salt, 4096);
        let mut server = ScramServer::Start;
        let first = server
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |user| (user == "user").then(|| credential.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .expect("server-first");
        assert_eq!(
            first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (last, user) = server
            .client_final(
                ScramHash::Sha256,
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .expect("verified");
        assert_eq!(last, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(user, "user");
    }

    #[test]
    fn a_wrong_proof_or_unknown_user_is_refused() {
        let credential = ScramCredential::new(ScramHash::Sha512, "right", b"salt", 4096);
        let mut server = ScramServer::Start;
        assert!(server
            .client_first(b"n,,n=bob,r=abc", |_| None, "def")
            .is_err());
        let mut server = ScramServer::Start;
        server
            .client_first(b"n,,n=alice,r=abc", |_| Some(credential.clone()), "def")
            .expect("first");
        let proof = BASE64.encode([0u8; 64]);
        let message = format!("c=biws,r=abcdef,p={proof}");
        assert!(server
            .client_final(ScramHash::Sha512, message.as_bytes())
            .is_err());
    }

    #[test]
    fn plain_and_oauth_messages_are_parsed_as_kafka_does() {
        assert_eq!(
            parse_plain(b"\0alice\0pw").expect("plain"),
            ("alice".to_string(), "pw".to_string())
        );
        assert!(parse_plain(b"bob\0alice\0pw").is_err());
        assert!(parse_plain(b"\0alice\0").is_err());
        assert!(parse_plain(b"\0alice").is_err());
        let (token, extensions) =
            parse_oauth_initial(b"n,,\x01auth=Bearer abc.def.\x01traceId=1\x01\x01")
                .expect("oauth");
        assert_eq!(token, "abc.def.");
        assert_eq!(extensions, vec![("traceId".to_string(), "1".to_string())]);
        assert!(parse_oauth_initial(b"n,,\x01traceId=1\x01\x01").is_err());
        assert_eq!(
            parse_client_first(b"n,,n=a=2Cb,r=x")
                .expect("first")
                .username,
            "a,b"
        );
        assert!(parse_client_first(b"p=tls-unique,,n=a,r=x").is_err());
        assert!(parse_client_first(b"n,,n=a=2,r=x").is_err());
    }

    #[test]
    fn unsecured_jwts_are_checked() {
        let token = |header: &str, claims: &str| {
            format!("{}.{}.", BASE64URL.encode(header), BASE64URL.encode(claims))
        };
        let ok = validate_unsecured_jwt(
            &token(
                r#"{"alg":"none"}"#,
                r#"{"sub":"alice","exp":2000.5,"iat":1000}"#,
            ),
            1_000_000,
        )
        .expect("valid");
        assert_eq!(
            ok,
            ValidToken {
                principal: "alice".into(),
                expires_ms: 2_000_500
            }
        );
        for (header, claims) in [
            (r#"{"alg":"HS256"}"#, r#"{"sub":"a","exp":2000}"#),
            (r#"{"alg":"none"}"#, r#"{"exp":2000}"#),
            (r#"{"alg":"none"}"#, r#"{"sub":"a"}"#),
            (r#"{"alg":"none"}"#, r#"{"sub":"a","exp":999}"#),
            (r#"{"alg":"none"}"#, "not json"),
        ] {
            assert!(
                validate_unsecured_jwt(&token(header, claims), 1_000_000).is_err(),
                "{claims}"
            );
        }
        assert!(validate_unsecured_jwt("a.b.c", 0).is_err());
        assert!(validate_unsecured_jwt("", 0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn client_messages_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_plain(&bytes);
            let _ = parse_client_first(&bytes);
            let _ = parse_client_final(&bytes);
            let _ = parse_oauth_initial(&bytes);
            let _ = validate_unsecured_jwt(&String::from_utf8_lossy(&bytes), 0);
        }
    }
}
