//! [`Sasl`]: the mechanism and credentials a client authenticates with, and the token
//! providers of OAUTHBEARER.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::engine::sasl::oauthbearer::{unsecured_jwt, UnsecuredClaims};
pub use crate::engine::sasl::Mechanism as SaslMechanism;

/// A future returned by [`TokenProvider::token`].
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<OAuthBearerToken, String>> + Send + 'a>>;

/// Where OAUTHBEARER tokens come from (Kafka's login callback handler). Called before every
/// authentication and re-authentication of every connection: cache tokens in the provider
/// if fetching one is costly.
pub trait TokenProvider: Send + Sync + 'static {
    /// A token valid now, or why there is none (the connection then fails to authenticate).
    fn token(&self) -> TokenFuture<'_>;
}

/// An OAUTHBEARER token and the SASL extensions sent with it.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthBearerToken {
    /// The compact token (a JWT's `header.claims.signature`).
    pub value: String,
    /// SASL extensions (`key=value`; keys letters only, e.g. Confluent Cloud's
    /// `logicalCluster` and `identityPoolId`).
    pub extensions: Vec<(String, String)>,
}

impl OAuthBearerToken {
    /// A token without extensions.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            extensions: Vec::new(),
        }
    }

    /// Adds a SASL extension.
    pub fn with_extension(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.push((key.into(), value.into()));
        self
    }
}

impl fmt::Debug for OAuthBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthBearerToken")
            .field("value", &"[hidden]")
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// Unsecured JWTs (`"alg":"none"`), as Kafka's `OAuthBearerUnsecuredLoginCallbackHandler`
/// makes them from the `unsecuredLogin*` options of `OAuthBearerLoginModule`: for tests and
/// development against brokers that accept them (the harness does). A new token each call,
/// issued now (the clock is tokio's, so paused-time tests and the harness agree).
#[derive(Debug, Clone)]
pub struct UnsecuredJwt {
    principal: String,
    principal_claim: String,
    lifetime: Duration,
    string_claims: Vec<(String, String)>,
    scope: Vec<String>,
    extensions: Vec<(String, String)>,
    clock: Clock,
}

impl UnsecuredJwt {
    /// Tokens for `principal` (the `sub` claim), valid for an hour
    /// (`unsecuredLoginStringClaim_sub`, `unsecuredLoginLifetimeSeconds=3600`).
    pub fn new(principal: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            principal_claim: "sub".into(),
            lifetime: Duration::from_secs(3600),
            string_claims: Vec::new(),
            scope: Vec::new(),
            extensions: Vec::new(),
            clock: Clock::new(),
        }
    }

    /// How long each token is valid (`unsecuredLoginLifetimeSeconds`).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The claim naming the principal (`unsecuredLoginPrincipalClaimName`, `sub`).
    pub fn principal_claim(mut self, name: impl Into<String>) -> Self {
        self.principal_claim = name.into();
        self
    }

    /// Adds a string claim (`unsecuredLoginStringClaim_<name>`).
    pub fn string_claim(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.string_claims.push((name.into(), value.into()));
        self
    }

    /// The `scope` claim's values (`unsecuredLoginListClaim_scope`).
    pub fn scope(mut self, scope: Vec<String>) -> Self {
        self.scope = scope;
        self
    }

    /// Adds a SASL extension (`unsecuredLoginExtension_<key>`).
    pub fn extension(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.push((key.into(), value.into()));
        self
    }

    /// A token issued now.
    pub fn make_token(&self) -> OAuthBearerToken {
        let claims = UnsecuredClaims {
            principal_claim: self.principal_claim.clone(),
            principal: self.principal.clone(),
            issued_at_ms: self.clock.now_ms(),
            lifetime_ms: u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX),
            string_claims: self.string_claims.clone(),
            scope: self.scope.clone(),
        };
        OAuthBearerToken {
            value: unsecured_jwt(&claims),
            extensions: self.extensions.clone(),
        }
    }
}

impl TokenProvider for UnsecuredJwt {
    fn token(&self) -> TokenFuture<'_> {
        let token = self.make_token();
        Box::pin(async move { Ok(token) })
    }
}

/// Wall-clock time as of creation plus tokio time since, so that tokens agree with a
/// harness under a paused clock (which computes its own time the same way).
#[derive(Debug, Clone, Copy)]
struct Clock {
    wall_ms: u64,
    base: Option<tokio::time::Instant>,
}

impl Clock {
    fn new() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Outside a runtime tokio's clock is the system's anyway.
        let base = tokio::runtime::Handle::try_current()
            .ok()
            .map(|_| tokio::time::Instant::now());
        Self { wall_ms, base }
    }

    fn now_ms(&self) -> u64 {
        let elapsed = match self.base {
            Some(base) if tokio::runtime::Handle::try_current().is_ok() => base.elapsed(),
            _ => return Self::new().wall_ms,
        };
        self.wall_ms
            .saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
    }
}

#[derive(Clone)]
pub(crate) enum SaslCredentials {
    Password { username: String, password: String },
    Tokens(Arc<dyn TokenProvider>),
}

/// The SASL mechanism and credentials of a client (`sasl.mechanism` with
/// `sasl.jaas.config`, or librdkafka's `sasl.username` and `sasl.password`).
#[derive(Clone)]
pub struct Sasl {
    pub(crate) mechanism: SaslMechanism,
    pub(crate) credentials: SaslCredentials,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Sasl");
        out.field("mechanism", &self.mechanism);
        match &self.credentials {
            SaslCredentials::Password { username, .. } => out
                .field("username", username)
                .field("password", &"[hidden]"),
            SaslCredentials::Tokens(_) => out.field("tokens", &"TokenProvider"),
        };
        out.finish()
    }
}

impl Sasl {
    /// PLAIN with this user name and password (send it over TLS: the password travels as
    /// it is).
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::password(SaslMechanism::Plain, username, password)
    }

    /// SCRAM-SHA-256 with this user name and password.
    pub fn scram_sha256(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::password(SaslMechanism::ScramSha256, username, password)
    }

    /// SCRAM-SHA-512 with this user name and password.
    pub fn scram_sha512(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::password(SaslMechanism::ScramSha512, username, password)
    }

    /// OAUTHBEARER with tokens from `provider`.
    pub fn oauthbearer(provider: Arc<dyn TokenProvider>) -> Self {
        Self {
            mechanism: SaslMechanism::OAuthBearer,
            credentials: SaslCredentials::Tokens(provider),
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    pub(crate) fn password(
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            mechanism,
            credentials: SaslCredentials::Password {
                username: username.into(),
                password: password.into(),
            },
        }
    }

    /// The token provider, for OAUTHBEARER.
    pub(crate) fn token_provider(&self) -> Option<Arc<dyn TokenProvider>> {
        match &self.credentials {
            SaslCredentials::Tokens(provider) => Some(provider.clone()),
            SaslCredentials::Password { .. } => None,
        }
    }

    /// The engine's credentials for PLAIN and SCRAM.
    pub(crate) fn engine_credentials(&self) -> Option<crate::engine::sasl::Credentials> {
        match &self.credentials {
            SaslCredentials::Password { username, password } => {
                Some(crate::engine::sasl::Credentials::Password {
                    username: username.clone(),
                    password: password.clone(),
                })
            }
            SaslCredentials::Tokens(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let shown = format!("{:?}", Sasl::scram_sha512("alice", "s3cret"));
        assert!(
            shown.contains("alice") && !shown.contains("s3cret"),
            "{shown}"
        );
        let token = OAuthBearerToken::new("abc.def.").with_extension("traceId", "1");
        assert!(!format!("{token:?}").contains("abc"));
    }

    #[test]
    fn unsecured_tokens_carry_the_principal() {
        let token = UnsecuredJwt::new("alice")
            .lifetime(Duration::from_secs(60))
            .extension("traceId", "7")
            .make_token();
        assert!(token.value.ends_with('.'));
        assert_eq!(
            token.extensions,
            vec![("traceId".to_string(), "7".to_string())]
        );
    }
}
