//! The listeners' security: TLS (rustls, certificates generated at start unless given) and
//! SASL (PLAIN, SCRAM-SHA-256/512 with salted credentials, OAUTHBEARER with unsecured
//! JWTs), with re-authentication (KIP-368) and faults for tests.
//!
//! Per connection ([`Session`]): before authentication only ApiVersions, SaslHandshake and
//! SaslAuthenticate are served, anything else closes the connection, as Kafka's
//! `SaslServerAuthenticator` does; a failed exchange is answered (SASL_AUTHENTICATION_FAILED
//! or UNSUPPORTED_SASL_MECHANISM with Kafka's message) and the connection closed. A
//! session gets a lifetime when the token expires or `connections.max.reauth.ms` is set;
//! its first request after that must be a SaslHandshake (re-authentication), or the
//! connection is closed.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod certs;
pub mod mechanisms;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use franzy::proto::{ErrorCode, ResponseKind, StrBytes};
pub use franzy::security::SecurityProtocol;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

pub use mechanisms::Mechanism;
use mechanisms::{Refused, ScramCredential, ScramHash, ScramServer};

use crate::HarnessError;

/// How a cluster's listeners are secured ([`crate::ClusterBuilder::security`]).
#[derive(Debug, Clone)]
pub struct ListenerSecurity {
    protocol: SecurityProtocol,
    mechanisms: Vec<Mechanism>,
    users: Vec<(String, String)>,
    certificate: Option<(String, String)>,
    tls_dir: Option<PathBuf>,
    require_client_certificates: bool,
    reauthentication: Option<Duration>,
    iterations: u32,
}

impl ListenerSecurity {
    /// Listeners speaking `protocol`, with every mechanism enabled, no users, generated
    /// certificates.
    pub fn new(protocol: SecurityProtocol) -> Self {
        Self {
            protocol,
            mechanisms: Mechanism::ALL.to_vec(),
            users: Vec::new(),
            certificate: None,
            tls_dir: None,
            require_client_certificates: false,
            reauthentication: None,
            iterations: mechanisms::MIN_ITERATIONS,
        }
    }

    /// The protocol.
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// A user for PLAIN and both SCRAM mechanisms (SCRAM credentials are stored salted).
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }

    /// The enabled mechanisms (`sasl.enabled.mechanisms`). Default: all four.
    pub fn mechanisms(mut self, mechanisms: &[Mechanism]) -> Self {
        self.mechanisms = mechanisms.to_vec();
        self
    }

    /// The brokers' certificate chain and private key (PEM) instead of generated ones.
    pub fn certificate(mut self, chain_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.certificate = Some((chain_pem.into(), key_pem.into()));
        self
    }

    /// Where the generated `ca.pem` (and `broker.pem`, `broker-key.pem`) are written.
    /// Default: a new directory under the system's temporary directory.
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls_dir = Some(dir.into());
        self
    }

    /// Require client certificates signed by the CA (mTLS, `ssl.client.auth=required`).
    pub fn require_client_certificates(mut self, required: bool) -> Self {
        self.require_client_certificates = required;
        self
    }

    /// `connections.max.reauth.ms`: every session (any mechanism) lasts at most this long
    /// and clients must re-authenticate. Default: none (only tokens expire).
    pub fn connections_max_reauth(mut self, lifetime: Duration) -> Self {
        self.reauthentication = Some(lifetime);
        self
    }

    /// SCRAM iterations of the stored credentials, 4096 to 16384. Default 4096.
    pub fn scram_iterations(mut self, iterations: u32) -> Self {
        self.iterations = iterations;
        self
    }

    /// Starts the listeners' security: certificates made and written, credentials salted.
    /// The SCRAM credentials the listeners hold: per user, (mechanism code, iterations) of
    /// each SCRAM mechanism enabled (`ScramMechanism`: 1 SHA-256, 2 SHA-512), for
    /// DescribeUserScramCredentials.
    pub(crate) fn scram_users(&self) -> std::collections::BTreeMap<String, Vec<(i8, i32)>> {
        let mut credentials: Vec<(i8, i32)> = Vec::new();
        let iterations = i32::try_from(self.iterations).unwrap_or(i32::MAX);
        for (mechanism, code) in [(Mechanism::ScramSha256, 1), (Mechanism::ScramSha512, 2)] {
            if self.mechanisms.contains(&mechanism) {
                credentials.push((code, iterations));
            }
        }
        if credentials.is_empty() {
            return std::collections::BTreeMap::new();
        }
        self.users
            .iter()
            .map(|(user, _)| (user.clone(), credentials.clone()))
            .collect()
    }

    pub(crate) fn start(self, hosts: &[String], seed: u64) -> Result<ServerSecurity, HarnessError> {
        if !(mechanisms::MIN_ITERATIONS..=mechanisms::MAX_ITERATIONS).contains(&self.iterations) {
            return Err(HarnessError::Config(format!(
                "SCRAM iterations must be 4096 to 16384, got {}",
                self.iterations
            )));
        }
        let mut scram = HashMap::new();
        let mut passwords = HashMap::new();
        for (index, (user, password)) in self.users.iter().enumerate() {
            for hash in [ScramHash::Sha256, ScramHash::Sha512] {
                let salt = derive(seed, &format!("salt/{index}/{user}/{hash:?}"));
                scram.insert(
                    (user.clone(), hash),
                    ScramCredential::new(hash, password, &salt[..16], self.iterations),
                );
            }
            passwords.insert(user.clone(), password.clone());
        }
        let tls = if self.protocol.uses_tls() {
            Some(tls::start(&self, hosts)?)
        } else {
            None
        };
        Ok(ServerSecurity {
            protocol: self.protocol,
            mechanisms: self.mechanisms,
            passwords,
            scram,
            reauthentication: self.reauthentication,
            tls,
            seed,
            nonces: AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            fail_next: AtomicUsize::new(0),
            expired_before: AtomicU64::new(0),
            sessions: AtomicU64::new(1),
        })
    }
}

fn derive(seed: u64, label: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(seed.to_be_bytes());
    hash.update(label.as_bytes());
    hash.finalize().to_vec()
}

fn alphanumeric(bytes: &[u8]) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    bytes
        .iter()
        .map(|b| char::from(DIGITS[usize::from(*b) % DIGITS.len()]))
        .collect()
}

#[derive(Debug, Default)]
struct Faults {
    refused: HashSet<Mechanism>,
}

/// The running listeners' security, shared by every connection.
pub(crate) struct ServerSecurity {
    protocol: SecurityProtocol,
    mechanisms: Vec<Mechanism>,
    passwords: HashMap<String, String>,
    scram: HashMap<(String, ScramHash), ScramCredential>,
    reauthentication: Option<Duration>,
    pub(crate) tls: Option<tls::ServerTls>,
    seed: u64,
    nonces: AtomicU64,
    faults: Mutex<Faults>,
    /// Authentications left to fail (fault injection).
    pub(crate) fail_next: AtomicUsize,
    /// Sessions numbered below this are expired (fault injection).
    expired_before: AtomicU64,
    sessions: AtomicU64,
}

impl ServerSecurity {
    pub(crate) fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    pub(crate) fn uses_sasl(&self) -> bool {
        self.protocol.uses_sasl()
    }

    /// Refuses (or allows again) a mechanism at the handshake.
    pub(crate) fn refuse_mechanism(&self, mechanism: Mechanism, refused: bool) {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if refused {
            faults.refused.insert(mechanism);
        } else {
            faults.refused.remove(&mechanism);
        }
    }

    /// Expires every session authenticated so far.
    pub(crate) fn expire_sessions(&self) {
        let next = self.sessions.load(Ordering::SeqCst);
        self.expired_before.fetch_max(next, Ordering::SeqCst);
    }

    fn enabled(&self) -> Vec<Mechanism> {
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        self.mechanisms
            .iter()
            .copied()
            .filter(|m| !faults.refused.contains(m))
            .collect()
    }

    /// Letters and digits only, as Kafka's (base 36): librdkafka 2.0 mangles nonces with
    /// `+` or `/` in them.
    fn server_nonce(&self) -> String {
        let n = self.nonces.fetch_add(1, Ordering::Relaxed);
        alphanumeric(&derive(self.seed, &format!("nonce/{n}")))
    }

    fn take_injected_failure(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// What the server does with a request, as the session decides.
// Moved once per request to the encoder, as `Reply`: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Verdict {
    /// Serve it as usual.
    Pass,
    /// Answer this (and close after it, with the reason, when `close` is set).
    Respond {
        response: ResponseKind,
        close: Option<String>,
    },
    /// Close the connection.
    Close(String),
}

/// The answer's bytes, and when complete the principal and its credential's expiry.
type Step = (Vec<u8>, Option<(String, Option<i64>)>);

#[derive(Debug)]
enum Exchange {
    Plain,
    Scram(ScramHash, ScramServer),
    OAuth { error: Option<String> },
}

#[derive(Debug)]
enum State {
    /// Before any handshake.
    Start,
    /// Handshake done, exchange under way.
    Exchanging {
        mechanism: Mechanism,
        exchange: Exchange,
        previous: Option<String>,
    },
    /// Authenticated.
    Authenticated {
        mechanism: Mechanism,
        principal: String,
        /// Cluster time (ms of uptime) after which only SaslHandshake is accepted.
        expires_at_ms: Option<u128>,
        number: u64,
    },
}

/// One connection's authentication.
#[derive(Debug)]
pub(crate) struct Session {
    state: State,
}

impl Session {
    pub(crate) fn new() -> Self {
        Self {
            state: State::Start,
        }
    }

    /// Authenticated at least once (the pre-authentication frame limit no longer applies).
    pub(crate) fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated { .. })
    }

    /// Decides about a request of `api` (`body` decoded) on a SASL listener, at cluster
    /// uptime `uptime` and wall-clock `now_ms`.
    pub(crate) fn decide(
        &mut self,
        security: &ServerSecurity,
        api: franzy::proto::ApiKey,
        version: i16,
        body: &franzy::proto::RequestKind,
        uptime: Duration,
        now_ms: i64,
    ) -> Verdict {
        use franzy::proto::{ApiKey, RequestKind};
        if api == ApiKey::SaslHandshake && version == 0 {
            // Its tokens would follow unframed (before KIP-152); Kafka 4.0 removed it.
            return Verdict::Respond {
                response: ResponseKind::SaslHandshake(
                    SaslHandshakeResponse::default()
                        .with_error_code(ErrorCode::UnsupportedVersion.code()),
                ),
                close: Some("SaslHandshake v0 (unframed tokens) is not supported".into()),
            };
        }
        match (&self.state, api, body) {
            (
                State::Authenticated {
                    expires_at_ms,
                    number,
                    mechanism,
                    principal,
                },
                _,
                _,
            ) => {
                let expired = expires_at_ms.is_some_and(|at| uptime.as_millis() >= at)
                    || *number < security.expired_before.load(Ordering::SeqCst);
                if let RequestKind::SaslHandshake(request) = body {
                    let (mechanism, principal) = (*mechanism, principal.clone());
                    return self.handshake(
                        security,
                        request.mechanism.as_str(),
                        Some((mechanism, principal)),
                    );
                }
                if expired {
                    return Verdict::Close(format!(
                        "{api:?} after the session expired without re-authentication"
                    ));
                }
                Verdict::Pass
            }
            (State::Start, ApiKey::ApiVersions, _) => Verdict::Pass,
            (State::Start, _, RequestKind::SaslHandshake(request)) => {
                self.handshake(security, request.mechanism.as_str(), None)
            }
            (State::Exchanging { .. }, _, RequestKind::SaslAuthenticate(request)) => {
                self.authenticate(security, &request.auth_bytes, uptime, now_ms)
            }
            _ => Verdict::Close(format!(
                "Unexpected Kafka request of type {api:?} during SASL authentication"
            )),
        }
    }

    fn handshake(
        &mut self,
        security: &ServerSecurity,
        name: &str,
        previous: Option<(Mechanism, String)>,
    ) -> Verdict {
        let enabled = security.enabled();
        let names: Vec<StrBytes> = enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let chosen = Mechanism::from_name(name).filter(|m| enabled.contains(m));
        let reauth_mismatch = previous.as_ref().is_some_and(|(m, _)| Some(*m) != chosen);
        let Some(mechanism) = chosen.filter(|_| !reauth_mismatch) else {
            return Verdict::Respond {
                response: ResponseKind::SaslHandshake(
                    SaslHandshakeResponse::default()
                        .with_error_code(ErrorCode::UnsupportedSaslMechanism.code())
                        .with_mechanisms(names),
                ),
                close: Some(format!("Unsupported SASL mechanism {name}")),
            };
        };
        let exchange = match mechanism {
            Mechanism::Plain => Exchange::Plain,
            Mechanism::ScramSha256 => Exchange::Scram(ScramHash::Sha256, ScramServer::Start),
            Mechanism::ScramSha512 => Exchange::Scram(ScramHash::Sha512, ScramServer::Start),
            Mechanism::OAuthBearer => Exchange::OAuth { error: None },
        };
        self.state = State::Exchanging {
            mechanism,
            exchange,
            previous: previous.map(|(_, principal)| principal),
        };
        Verdict::Respond {
            response: ResponseKind::SaslHandshake(
                SaslHandshakeResponse::default().with_mechanisms(names),
            ),
            close: None,
        }
    }

    fn authenticate(
        &mut self,
        security: &ServerSecurity,
        bytes: &Bytes,
        uptime: Duration,
        now_ms: i64,
    ) -> Verdict {
        let State::Exchanging {
            mechanism,
            exchange,
            previous,
        } = &mut self.state
        else {
            return Verdict::Close("SaslAuthenticate out of turn".into());
        };
        let mechanism = *mechanism;
        let reauthenticating = previous.is_some();
        let failed = |message: String| Verdict::Respond {
            response: ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(ErrorCode::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message.clone()))),
            ),
            close: Some(message),
        };
        let generic =
            || {
                format!(
                "Authentication failed during {} due to invalid credentials with SASL mechanism {}",
                if reauthenticating { "re-authentication" } else { "authentication" },
                mechanism.name()
            )
            };
        // (answer bytes, Some(principal, credential expiry) when complete)
        let step: Result<Step, Refused> = match exchange {
            Exchange::Plain => mechanisms::parse_plain(bytes).and_then(|(user, password)| {
                let known = security.passwords.get(&user).is_some_and(|p| {
                    p.len() == password.len()
                        && p.bytes()
                            .zip(password.bytes())
                            .fold(0u8, |a, (x, y)| a | (x ^ y))
                            == 0
                });
                if known {
                    Ok((Vec::new(), Some((user, None))))
                } else {
                    Err(Refused(generic()))
                }
            }),
            Exchange::Scram(hash, server) => {
                let hash = *hash;
                match server {
                    ScramServer::Start => {
                        let nonce = security.server_nonce();
                        server
                            .client_first(
                                bytes,
                                |user| security.scram.get(&(user.to_string(), hash)).cloned(),
                                &nonce,
                            )
                            .map(|first| (first, None))
                    }
                    _ => server
                        .client_final(hash, bytes)
                        .map(|(last, user)| (last, Some((user, None))))
                        .map_err(|Refused(why)| {
                            tracing::debug!(%why, "SCRAM client-final refused");
                            Refused(generic())
                        }),
                }
            }
            Exchange::OAuth { error } => {
                if let Some(message) = error.take() {
                    // The client acknowledged our error challenge with %x01.
                    Err(Refused(message))
                } else {
                    match mechanisms::parse_oauth_initial(bytes) {
                        Err(refused) => Err(refused),
                        Ok((token, _)) => {
                            match mechanisms::validate_unsecured_jwt(&token, now_ms) {
                                Ok(valid) => Ok((
                                    Vec::new(),
                                    Some((valid.principal, Some(valid.expires_ms))),
                                )),
                                Err(status) => {
                                    *error = Some(format!("Authentication failed: {status}"));
                                    Ok((status.into_bytes(), None))
                                }
                            }
                        }
                    }
                }
            }
        };
        let (answer, done) = match step {
            Ok(step) => step,
            Err(Refused(message)) => return failed(message),
        };
        let Some((principal, credential_expires_ms)) = done else {
            return Verdict::Respond {
                response: ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(answer)),
                ),
                close: None,
            };
        };
        if security.take_injected_failure() {
            return failed("Authentication failed: injected by the harness".into());
        }
        if let Some(previous) = previous {
            if *previous != principal {
                return failed(format!(
                    "Cannot change principals during re-authentication from User:{previous}: User:{principal}"
                ));
            }
        }
        // KIP-368: the lifetime is the credential's remaining life, capped by
        // connections.max.reauth.ms.
        let remaining = credential_expires_ms.map(|at| at.saturating_sub(now_ms).max(0) as u128);
        let max = security.reauthentication.map(|d| d.as_millis());
        let lifetime = match (remaining, max) {
            (Some(r), Some(m)) => Some(r.min(m)),
            (r, m) => r.or(m),
        };
        let number = security.sessions.fetch_add(1, Ordering::SeqCst);
        self.state = State::Authenticated {
            mechanism,
            principal,
            expires_at_ms: lifetime.map(|l| uptime.as_millis() + l),
            number,
        };
        Verdict::Respond {
            response: ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(answer))
                    .with_session_lifetime_ms(
                        lifetime.map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
                    ),
            ),
            close: None,
        }
    }
}

pub(crate) mod tls {
    //! The listeners' rustls configuration and the files it was made from.

    use std::path::PathBuf;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    use super::ListenerSecurity;
    use crate::HarnessError;

    /// What TLS listeners serve with.
    pub(crate) struct ServerTls {
        pub(crate) acceptor: tokio_rustls::TlsAcceptor,
        /// The CA's PEM file, when the certificates were generated.
        pub(crate) ca_path: Option<PathBuf>,
        pub(crate) ca_pem: Option<String>,
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        pub(crate) authority: Option<super::certs::Authority>,
    }

    fn config_error(what: impl std::fmt::Display) -> HarnessError {
        HarnessError::Config(format!("TLS: {what}"))
    }

    pub(crate) fn start(
        security: &ListenerSecurity,
        hosts: &[String],
    ) -> Result<ServerTls, HarnessError> {
        let provider = franzy::security::tls::default_provider().map_err(config_error)?;
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        let mut authority = None;
        let mut ca_pem = None;
        let mut ca_path = None;
        let (chain_pem, key_pem) = match &security.certificate {
            Some((chain, key)) => (chain.clone(), key.clone()),
            None => {
                #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
                {
                    let ca = super::certs::Authority::new().map_err(config_error)?;
                    let mut names: Vec<String> = hosts.to_vec();
                    for name in ["localhost", "127.0.0.1", "::1"] {
                        if !names.iter().any(|n| n == name) {
                            names.push(name.to_string());
                        }
                    }
                    let issued = ca.issue_server(&names).map_err(config_error)?;
                    let dir = match &security.tls_dir {
                        Some(dir) => dir.clone(),
                        None => temporary_dir(),
                    };
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| config_error(format!("{}: {e}", dir.display())))?;
                    let write = |name: &str, text: &str| {
                        let path = dir.join(name);
                        std::fs::write(&path, text)
                            .map(|()| path.clone())
                            .map_err(|e| config_error(format!("{}: {e}", path.display())))
                    };
                    ca_path = Some(write("ca.pem", &ca.certificate_pem)?);
                    write("broker.pem", &issued.certificate_pem)?;
                    write("broker-key.pem", &issued.key_pem)?;
                    ca_pem = Some(ca.certificate_pem.clone());
                    authority = Some(ca);
                    (issued.certificate_pem, issued.key_pem)
                }
                #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
                {
                    let _ = hosts;
                    return Err(config_error(
                        "generating certificates needs x86_64 or aarch64: give certificates",
                    ));
                }
            }
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(config_error)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(config_error)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?;
        let builder = if security.require_client_certificates {
            let Some(ca) = &ca_pem else {
                return Err(config_error("client certificates need the generated CA"));
            };
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots
                    .add(certificate.map_err(config_error)?)
                    .map_err(config_error)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(config_error)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder.with_single_cert(chain, key).map_err(config_error)?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_path,
            ca_pem,
            #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
            authority,
        })
    }

    fn temporary_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::env::temp_dir().join(format!(
            "franzy-harness-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }
}
