//! The client side of SASL, without IO: which mechanism, each message the client sends, and
//! the checks of what the server answers (RFC 4422 framed by Kafka's SaslHandshake v1 and
//! SaslAuthenticate requests, KIP-43 and KIP-152).
//!
//! Call order: [`SaslClient::new`] with the mechanism's credentials (an OAUTHBEARER token
//! is fetched by the driver first, since token providers are async), then
//! [`SaslClient::start`] for the first message, then each server answer to
//! [`SaslClient::handle_server`], which returns the next message to send or `None` once the
//! exchange is complete. Any `Err` ends the exchange: authentication failed.
//!
//! Mechanisms: PLAIN (RFC 4616), SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677;
//! [`scram`]), OAUTHBEARER (RFC 7628, KIP-255; [`oauthbearer`]).

pub mod oauthbearer;
pub mod scram;

use std::fmt;

use scram::{ScramClient, ScramHash};

/// A SASL mechanism franzy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN`: user name and password in the clear (use it over TLS).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER`: a bearer token from a token provider.
    OAuthBearer,
}

impl Mechanism {
    /// Every mechanism, in the order the docs list them.
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::OAuthBearer,
    ];

    /// The name on the wire and in `sasl.mechanism`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism named `name` (exactly, as Kafka compares them).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one exchange authenticates with.
#[derive(Clone)]
pub enum Credentials {
    /// PLAIN and SCRAM: a user name and a password.
    Password {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// OAUTHBEARER: the compact token and the SASL extensions to send with it.
    Token {
        /// The token (a JWT's compact serialization).
        token: String,
        /// SASL extensions (`key=value`), sent as they are.
        extensions: Vec<(String, String)>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"[hidden]")
                .finish(),
            Self::Token { extensions, .. } => f
                .debug_struct("Token")
                .field("token", &"[hidden]")
                .field("extensions", extensions)
                .finish(),
        }
    }
}

/// Why an exchange failed on the client's side (the server's own refusals come as
/// SaslAuthenticate error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslError(pub String);

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SaslError {}

#[derive(Debug)]
enum State {
    Plain {
        message: Option<Vec<u8>>,
    },
    Scram(ScramClient),
    OAuthBearer {
        message: Option<Vec<u8>>,
        /// The server's error answer, after which the client sends `%x01` and the server
        /// fails the exchange (RFC 7628 3.2.3).
        error: Option<String>,
        sent_first: bool,
    },
}

/// One SASL exchange, client side.
#[derive(Debug)]
pub struct SaslClient {
    mechanism: Mechanism,
    state: State,
    complete: bool,
}

impl SaslClient {
    /// An exchange with `credentials` (which must suit `mechanism`); `nonce` is the SCRAM
    /// client nonce (printable ASCII without `,`), from the driver's randomness.
    pub fn new(
        mechanism: Mechanism,
        credentials: &Credentials,
        nonce: &str,
    ) -> Result<Self, SaslError> {
        let state = match (mechanism, credentials) {
            (Mechanism::Plain, Credentials::Password { username, password }) => State::Plain {
                message: Some(plain_message(username, password)?),
            },
            (
                Mechanism::ScramSha256 | Mechanism::ScramSha512,
                Credentials::Password { username, password },
            ) => {
                let hash = if mechanism == Mechanism::ScramSha256 {
                    ScramHash::Sha256
                } else {
                    ScramHash::Sha512
                };
                State::Scram(ScramClient::new(hash, username, password, nonce)?)
            }
            (Mechanism::OAuthBearer, Credentials::Token { token, extensions }) => {
                State::OAuthBearer {
                    message: Some(oauthbearer::client_first_message(token, extensions)?),
                    error: None,
                    sent_first: false,
                }
            }
            (mechanism, _) => {
                return Err(SaslError(format!(
                    "{mechanism} needs {}",
                    if mechanism == Mechanism::OAuthBearer {
                        "a token"
                    } else {
                        "a user name and password"
                    }
                )))
            }
        };
        Ok(Self {
            mechanism,
            state,
            complete: false,
        })
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The exchange ended successfully.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The client's first message.
    pub fn start(&mut self) -> Result<Vec<u8>, SaslError> {
        match &mut self.state {
            State::Plain { message } => message
                .take()
                .ok_or_else(|| SaslError("PLAIN exchange already started".into())),
            State::Scram(scram) => scram.client_first(),
            State::OAuthBearer {
                message,
                sent_first,
                ..
            } => {
                *sent_first = true;
                message
                    .take()
                    .ok_or_else(|| SaslError("OAUTHBEARER exchange already started".into()))
            }
        }
    }

    /// The server's answer to the last message: the next message to send, or `None` when
    /// the exchange is complete.
    pub fn handle_server(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        if self.complete {
            return Err(SaslError(format!(
                "{} exchange already complete, yet the server sent more",
                self.mechanism
            )));
        }
        let next = match &mut self.state {
            State::Plain { .. } => {
                // Kafka's PlainSaslServer answers with nothing.
                None
            }
            State::Scram(scram) => scram.handle_server(server)?,
            State::OAuthBearer {
                error, sent_first, ..
            } => {
                if !*sent_first {
                    return Err(SaslError(
                        "OAUTHBEARER answer before the first message".into(),
                    ));
                }
                if let Some(error) = error {
                    return Err(SaslError(format!("OAUTHBEARER token refused: {error}")));
                }
                if server.is_empty() {
                    None
                } else {
                    // An error challenge (RFC 7628 3.2.2): acknowledge with %x01; the
                    // server then fails the exchange with its message.
                    *error = Some(oauthbearer::describe_server_error(server));
                    Some(vec![oauthbearer::SEPARATOR])
                }
            }
        };
        if next.is_none() {
            self.complete = true;
        }
        Ok(next)
    }
}

/// PLAIN's one message (RFC 4616): empty authorization id, NUL, user, NUL, password.
fn plain_message(username: &str, password: &str) -> Result<Vec<u8>, SaslError> {
    if username.contains('\0') || password.contains('\0') {
        return Err(SaslError(
            "PLAIN user names and passwords cannot contain NUL".into(),
        ));
    }
    let mut message = Vec::with_capacity(2 + username.len() + password.len());
    message.push(0);
    message.extend_from_slice(username.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(user: &str, pass: &str) -> Credentials {
        Credentials::Password {
            username: user.into(),
            password: pass.into(),
        }
    }

    #[test]
    fn plain_sends_one_message_and_completes_on_the_empty_answer() {
        let mut client =
            SaslClient::new(Mechanism::Plain, &password("alice", "s3cret"), "n").expect("client");
        assert_eq!(client.start().expect("first"), b"\0alice\0s3cret");
        assert_eq!(client.handle_server(b"").expect("answer"), None);
        assert!(client.is_complete());
        assert!(client.handle_server(b"").is_err());
    }

    #[test]
    fn mechanism_names_round_trip_and_credentials_must_fit() {
        for mechanism in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
        }
        assert_eq!(Mechanism::from_name("plain"), None);
        assert_eq!(Mechanism::from_name("GSSAPI"), None);
        let token = Credentials::Token {
            token: "t".into(),
            extensions: vec![],
        };
        assert!(SaslClient::new(Mechanism::Plain, &token, "n").is_err());
        assert!(SaslClient::new(Mechanism::OAuthBearer, &password("a", "b"), "n").is_err());
        assert!(SaslClient::new(Mechanism::Plain, &password("a\0", "b"), "n").is_err());
        let shown = format!("{:?}", password("alice", "s3cret"));
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn oauthbearer_acknowledges_an_error_challenge_then_fails() {
        let token = Credentials::Token {
            token: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.".into(),
            extensions: vec![("traceId".into(), "123".into())],
        };
        let mut client = SaslClient::new(Mechanism::OAuthBearer, &token, "n").expect("client");
        let first = client.start().expect("first");
        assert_eq!(
            first,
            b"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.\x01traceId=123\x01\x01"
        );
        let next = client
            .handle_server(br#"{"status":"invalid_token"}"#)
            .expect("acknowledged");
        assert_eq!(next, Some(vec![1]));
        let error = client.handle_server(b"").expect_err("fails");
        assert!(error.0.contains("invalid_token"), "{error}");
        let mut ok = SaslClient::new(Mechanism::OAuthBearer, &token, "n").expect("client");
        ok.start().expect("first");
        assert_eq!(ok.handle_server(b"").expect("done"), None);
        assert!(ok.is_complete());
    }
}
