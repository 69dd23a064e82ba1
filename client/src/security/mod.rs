//! TLS and SASL: how a client proves who it is and checks whom it talks to.
//!
//! `security.protocol` chooses: `PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` (SASL without
//! TLS) or `SASL_SSL`. Set it with Kafka's property names ([`crate::Config::set`]: every
//! `ssl.*` and `sasl.*` key of the Java client that franzy implements, and librdkafka's
//! names) or typed ([`crate::Config::security_protocol`], [`crate::Config::tls`],
//! [`crate::Config::sasl`]):
//!
//! ```no_run
//! use franzy::security::{Sasl, SecurityProtocol, TlsConfig};
//! # fn demo() -> Result<(), franzy::Error> {
//! let config = franzy::Config::new("broker:9093")
//!     .security_protocol(SecurityProtocol::SaslSsl)
//!     .tls(TlsConfig::new().ca_file("/etc/kafka/ca.pem")?)
//!     .sasl(Sasl::scram_sha512("alice", "alice-secret"));
//! # let _ = config;
//! # Ok(())
//! # }
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`tls`] | [`TlsConfig`]: trusted CAs (the system's roots by default, or PEM), a client certificate for mTLS, hostname verification, the crypto provider |
//! | [`sasl`] | [`Sasl`]: PLAIN, SCRAM-SHA-256/512, OAUTHBEARER with a [`TokenProvider`] ([`UnsecuredJwt`] for tests) |
//!
//! TLS is rustls. Its cryptography comes from graviola by default (pure Rust and inline
//! assembly: nothing is compiled with a C compiler), on x86_64 and aarch64; the `tls-ring`
//! and `tls-aws-lc-rs` features use rustls's own providers instead (they build C), and a
//! provider installed with `CryptoProvider::install_default` or given to
//! [`TlsConfig::crypto_provider`] wins over both.
//!
//! SASL runs inside the connection's state machine (SaslHandshake v1, then SaslAuthenticate
//! requests), and re-authenticates on the same connection before the session lifetime the
//! broker gives ends (KIP-368), for every mechanism.

mod jaas;
pub mod sasl;
pub(crate) mod settings;
pub mod tls;

pub use sasl::{OAuthBearerToken, Sasl, SaslMechanism, TokenFuture, TokenProvider, UnsecuredJwt};
pub(crate) use settings::{check_store_type, SecuritySettings};
pub use tls::TlsConfig;

/// `security.protocol`: how connections to brokers are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS (`SSL` in Kafka's naming).
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The value as `security.protocol` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol `name` spells (any case, as Kafka reads it).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Plaintext,
            Self::Ssl,
            Self::SaslPlaintext,
            Self::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
