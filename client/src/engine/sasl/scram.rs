//! SCRAM-SHA-256 and SCRAM-SHA-512, client side (RFC 5802, RFC 7677; Kafka's
//! `ScramSaslClient`, `ScramMessages`, `ScramFormatter`).
//!
//! ```text
//! client-first   n,,n=<user>,r=<client nonce>
//! server-first   r=<client nonce + server nonce>,s=<base64 salt>,i=<iterations>[,ext]
//! client-final   c=biws,r=<nonce>,p=<base64 ClientKey XOR ClientSignature>
//! server-final   v=<base64 ServerSignature>[,ext]   or   e=<error>
//! ```
//!
//! The server's messages are parsed without trusting them: every attribute is checked, the
//! nonce must extend ours, the iteration count must lie between Kafka's minimum (4096) and
//! maximum (16384), and the server's signature is compared in constant time. The password
//! is used as its UTF-8 bytes, as Kafka's `ScramFormatter.normalize` does (no SASLprep).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::SaslError;

/// Kafka's `ScramMechanism` minimum iterations: fewer is refused by clients and servers.
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's `ScramMechanism` maximum iterations: a server asking more cannot be a Kafka
/// broker, and each iteration costs the client an HMAC.
pub const MAX_ITERATIONS: u32 = 16384;
/// The channel binding attribute for "n,," (no binding, no authorization id).
const GS2_HEADER: &str = "n,,";

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramHash {
    /// `H(data)`.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `HMAC(key, data)`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
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

    /// `Hi(password, salt, iterations)`: PBKDF2 with HMAC of this hash.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
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

/// Escapes a user name as RFC 5802's `saslname`: `,` as `=2C`, `=` as `=3D`.
pub fn sasl_name(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// The server's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// The combined nonce (client's then server's).
    pub nonce: String,
    /// The salt, decoded.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: u32,
}

/// Parses a server-first message; `client_nonce` must start its nonce. Never panics.
pub fn parse_server_first(message: &[u8], client_nonce: &str) -> Result<ServerFirst, SaslError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslError("SCRAM server-first message is not UTF-8".into()))?;
    let mut attributes = text.split(',');
    let mut next = attributes.next();
    if next.is_some_and(|a| a.starts_with("m=")) {
        return Err(SaslError(
            "SCRAM server-first message asks for a mandatory extension".into(),
        ));
    }
    let nonce = attribute(next, 'r', "server-first")?;
    next = attributes.next();
    let salt = attribute(next, 's', "server-first")?;
    next = attributes.next();
    let iterations = attribute(next, 'i', "server-first")?;
    // Extensions may follow (Kafka sends `tokenauth` that way); they are ignored.
    if !nonce.starts_with(client_nonce) || nonce.len() <= client_nonce.len() {
        return Err(SaslError(
            "SCRAM server nonce does not extend the client nonce".into(),
        ));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(SaslError("SCRAM nonce is not printable".into()));
    }
    let salt = BASE64
        .decode(salt)
        .map_err(|_| SaslError("SCRAM salt is not base64".into()))?;
    if salt.is_empty() {
        return Err(SaslError("SCRAM salt is empty".into()));
    }
    let iterations: u32 = iterations.parse().map_err(|_| {
        SaslError(format!(
            "SCRAM iteration count {iterations:?} is not a number"
        ))
    })?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(SaslError(format!(
            "SCRAM iteration count {iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
        )));
    }
    Ok(ServerFirst {
        nonce: nonce.to_string(),
        salt,
        iterations,
    })
}

/// The server's final message, parsed: its signature, or the error it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFinal {
    /// `v=`: the server's signature, decoded.
    Verifier(Vec<u8>),
    /// `e=`: the server's error.
    Error(String),
}

/// Parses a server-final message. Never panics.
pub fn parse_server_final(message: &[u8]) -> Result<ServerFinal, SaslError> {
    let text = std::str::from_utf8(message)
        .map_err(|_| SaslError("SCRAM server-final message is not UTF-8".into()))?;
    let first = text.split(',').next();
    if let Some(error) = first.and_then(|a| a.strip_prefix("e=")) {
        return Ok(ServerFinal::Error(error.chars().take(200).collect()));
    }
    let verifier = attribute(first, 'v', "server-final")?;
    BASE64
        .decode(verifier)
        .map(ServerFinal::Verifier)
        .map_err(|_| SaslError("SCRAM server signature is not base64".into()))
}

/// The value of attribute `name` in `attribute`, which must be `name=value`.
fn attribute<'a>(
    attribute: Option<&'a str>,
    name: char,
    message: &str,
) -> Result<&'a str, SaslError> {
    attribute
        .and_then(|a| a.strip_prefix(name))
        .and_then(|a| a.strip_prefix('='))
        .ok_or_else(|| {
            SaslError(format!(
                "SCRAM {message} message lacks its {name}= attribute"
            ))
        })
}

#[derive(Debug)]
enum Step {
    Start,
    SentClientFirst,
    SentClientFinal { server_signature: Vec<u8> },
    Done,
}

/// One SCRAM exchange, client side.
pub struct ScramClient {
    hash: ScramHash,
    username: String,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    step: Step,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .field("username", &self.username)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// An exchange for `username` with `password`; `nonce` is the client nonce
    /// (printable ASCII without `,`).
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: &str,
        nonce: &str,
    ) -> Result<Self, SaslError> {
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(SaslError(
                "SCRAM client nonce must be printable ASCII without ','".into(),
            ));
        }
        let client_first_bare = format!("n={},r={nonce}", sasl_name(username));
        Ok(Self {
            hash,
            username: username.to_string(),
            password: password.to_string(),
            client_nonce: nonce.to_string(),
            client_first_bare,
            step: Step::Start,
        })
    }

    /// client-first.
    pub fn client_first(&mut self) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.step, Step::Start) {
            return Err(SaslError("SCRAM exchange already started".into()));
        }
        self.step = Step::SentClientFirst;
        Ok(format!("{GS2_HEADER}{}", self.client_first_bare).into_bytes())
    }

    /// The server's message after ours: client-final after server-first, `None` after a
    /// verified server-final.
    pub fn handle_server(&mut self, message: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::SentClientFirst => {
                let first = parse_server_first(message, &self.client_nonce)?;
                let server_first = std::str::from_utf8(message)
                    .map_err(|_| SaslError("SCRAM server-first message is not UTF-8".into()))?;
                let (client_final, server_signature) = self.client_final(&first, server_first);
                self.step = Step::SentClientFinal { server_signature };
                Ok(Some(client_final.into_bytes()))
            }
            Step::SentClientFinal { server_signature } => match parse_server_final(message)? {
                ServerFinal::Error(error) => {
                    Err(SaslError(format!("SCRAM server refused: {error}")))
                }
                ServerFinal::Verifier(signature) => {
                    if constant_time_eq(&signature, &server_signature) {
                        Ok(None)
                    } else {
                        Err(SaslError(
                            "SCRAM server signature does not verify: the server does not know \
                             the password"
                                .into(),
                        ))
                    }
                }
            },
            Step::Start => Err(SaslError("SCRAM answer before the first message".into())),
            Step::Done => Err(SaslError("SCRAM exchange already complete".into())),
        }
    }

    /// client-final and the server signature to expect.
    fn client_final(&self, first: &ServerFirst, server_first: &str) -> (String, Vec<u8>) {
        let hash = self.hash;
        let without_proof = format!("c={},r={}", BASE64.encode(GS2_HEADER), first.nonce);
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = hash.salted_password(self.password.as_bytes(), &first.salt, first.iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.hash(&client_key);
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        let server_signature = hash.hmac(&server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            server_signature,
        )
    }
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_sha256_exchange() {
        let mut client =
            ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO")
                .expect("client");
        assert_eq!(
            client.client_first().expect("first"),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = client
            .handle_server(server_first)
            .expect("server-first")
            .expect("client-final");
        assert_eq!(
            String::from_utf8(client_final).expect("text"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let done = client
            .handle_server(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("verified");
        assert_eq!(done, None);
    }

    #[test]
    fn a_wrong_server_signature_or_an_error_fails() {
        let run = |server_final: &[u8]| {
            let mut client =
                ScramClient::new(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO")
                    .expect("client");
            client.client_first().expect("first");
            client
                .handle_server(
                    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                      s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                )
                .expect("server-first");
            client.handle_server(server_final)
        };
        assert!(run(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").is_err());
        let refused = run(b"e=invalid-proof").expect_err("refused");
        assert!(refused.0.contains("invalid-proof"), "{refused}");
        assert!(run(b"x=1").is_err());
        assert!(run(b"v=***").is_err());
    }

    #[test]
    fn server_first_is_checked_attribute_by_attribute() {
        let nonce = "abc";
        let ok = parse_server_first(b"r=abcdef,s=c2FsdA==,i=4096,ext=1", nonce).expect("ok");
        assert_eq!(ok.salt, b"salt");
        assert_eq!(ok.iterations, 4096);
        for bad in [
            &b"r=abc,s=c2FsdA==,i=4096"[..],      // no server part
            b"r=xyzdef,s=c2FsdA==,i=4096",        // not our nonce
            b"m=x,r=abcdef,s=c2FsdA==,i=4096",    // mandatory extension
            b"r=abcdef,s=,i=4096",                // empty salt
            b"r=abcdef,s=!!,i=4096",              // not base64
            b"r=abcdef,s=c2FsdA==,i=4095",        // too few iterations
            b"r=abcdef,s=c2FsdA==,i=99999999999", // too many
            b"r=abcdef,s=c2FsdA==,i=-1",
            b"r=abcdef,s=c2FsdA==",
            b"s=c2FsdA==,r=abcdef,i=4096",
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                parse_server_first(bad, nonce).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn user_names_are_escaped() {
        assert_eq!(sasl_name("a,b=c"), "a=2Cb=3Dc");
        let mut client = ScramClient::new(ScramHash::Sha512, "a,b", "p", "nonce").expect("client");
        assert_eq!(client.client_first().expect("first"), b"n,,n=a=2Cb,r=nonce");
        assert!(ScramClient::new(ScramHash::Sha512, "a", "p", "no,nce").is_err());
    }

    proptest::proptest! {
        #[test]
        fn server_messages_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_server_first(&bytes, "abc");
            let _ = parse_server_final(&bytes);
        }
    }
}
