//! The security settings of a `Config`, as set (by key or typed), and what they resolve to
//! when a client starts: a rustls configuration and SASL credentials.

use std::sync::Arc;
use std::time::Duration;

use super::jaas;
use super::sasl::{Sasl, SaslMechanism, UnsecuredJwt};
use super::tls::{self, TlsConfig};
use super::SecurityProtocol;
use crate::error::Error;

/// What `security.protocol` and the `ssl.*` and `sasl.*` keys were set to.
#[derive(Clone)]
pub(crate) struct SecuritySettings {
    pub protocol: SecurityProtocol,
    pub truststore_location: Option<String>,
    pub truststore_certificates: Option<String>,
    /// librdkafka's `ssl.ca.location`.
    pub ca_location: Option<String>,
    pub keystore_location: Option<String>,
    pub keystore_certificate_chain: Option<String>,
    pub keystore_key: Option<String>,
    /// librdkafka's `ssl.certificate.location` and `ssl.key.location`.
    pub certificate_location: Option<String>,
    pub key_location: Option<String>,
    pub endpoint_identification: bool,
    pub verify_certificates: bool,
    /// `Config::tls`: wins over the keys.
    pub tls: Option<TlsConfig>,
    /// `sasl.mechanism` as given (`GSSAPI` by default, as Kafka).
    pub mechanism: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub jaas: Option<String>,
    /// `Config::sasl`: wins over the keys.
    pub sasl: Option<Sasl>,
}

impl std::fmt::Debug for SecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "[hidden]");
        f.debug_struct("SecuritySettings")
            .field("protocol", &self.protocol)
            .field("truststore_location", &self.truststore_location)
            .field("ca_location", &self.ca_location)
            .field("keystore_location", &self.keystore_location)
            .field("keystore_key", &hidden(&self.keystore_key))
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("endpoint_identification", &self.endpoint_identification)
            .field("verify_certificates", &self.verify_certificates)
            .field("tls", &self.tls)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("jaas", &hidden(&self.jaas))
            .field("sasl", &self.sasl)
            .finish_non_exhaustive()
    }
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            truststore_location: None,
            truststore_certificates: None,
            ca_location: None,
            keystore_location: None,
            keystore_certificate_chain: None,
            keystore_key: None,
            certificate_location: None,
            key_location: None,
            endpoint_identification: true,
            verify_certificates: true,
            tls: None,
            mechanism: "GSSAPI".into(),
            username: None,
            password: None,
            jaas: None,
            sasl: None,
        }
    }
}

/// What a client connects with.
#[derive(Clone, Default)]
pub(crate) struct Resolved {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

/// `PEM` is the only store type franzy reads; Java's default (`JKS`) and `PKCS12` are
/// refused when set, naming the key.
pub(crate) fn check_store_type(value: &str) -> Result<(), String> {
    if value.eq_ignore_ascii_case("PEM") {
        Ok(())
    } else {
        Err(format!(
            "{value} stores are not supported: only PEM (convert with keytool and openssl)"
        ))
    }
}

fn none_if_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

impl SecuritySettings {
    pub fn set_protocol(&mut self, value: &str) -> Result<(), String> {
        self.protocol = SecurityProtocol::from_name(value).ok_or_else(|| {
            format!("{value:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
        })?;
        Ok(())
    }

    pub fn set_mechanism(&mut self, value: &str) -> Result<(), String> {
        // librdkafka's `sasl.mechanisms` may list one only, as Kafka's key.
        self.mechanism = value.to_string();
        Ok(())
    }

    pub fn set_optional(field: &mut Option<String>, value: &str) -> Result<(), String> {
        *field = none_if_empty(value);
        Ok(())
    }

    pub fn set_endpoint_identification(&mut self, value: &str) -> Result<(), String> {
        self.endpoint_identification = match value.to_ascii_lowercase().as_str() {
            "https" => true,
            "" | "none" => false,
            other => return Err(format!("{other:?} is not https or empty")),
        };
        Ok(())
    }

    /// The settings resolved for a client: files read, credentials found. Errors name the
    /// key at fault.
    pub fn resolve(&self) -> Result<Resolved, Error> {
        let tls = if self.protocol.uses_tls() {
            Some(self.tls_config()?.client_config()?)
        } else {
            None
        };
        let sasl = if self.protocol.uses_sasl() {
            Some(self.sasl()?)
        } else {
            None
        };
        Ok(Resolved { tls, sasl })
    }

    fn tls_config(&self) -> Result<TlsConfig, Error> {
        if let Some(tls) = &self.tls {
            return Ok(tls.clone());
        }
        let mut config = TlsConfig::new()
            .verify_hostname(self.endpoint_identification)
            .verify_certificates(self.verify_certificates);
        let mut roots: Vec<(&str, Vec<u8>)> = Vec::new();
        if let Some(pem) = &self.truststore_certificates {
            roots.push(("ssl.truststore.certificates", pem.clone().into_bytes()));
        }
        if let Some(path) = &self.truststore_location {
            let key = "ssl.truststore.location";
            roots.push((key, tls::read(key, path.as_ref())?));
        }
        if let Some(path) = &self.ca_location {
            let key = "ssl.ca.location";
            let path = std::path::Path::new(path);
            if path.is_dir() {
                let entries = std::fs::read_dir(path).map_err(|e| {
                    Error::config(key, format!("cannot read {}: {e}", path.display()))
                })?;
                for entry in entries.flatten() {
                    let file = entry.path();
                    if file.extension().is_some_and(|e| e == "pem" || e == "crt") {
                        roots.push((key, tls::read(key, &file)?));
                    }
                }
            } else {
                roots.push((key, tls::read(key, path)?));
            }
        }
        for (key, pem) in roots {
            config = config.ca_pem(pem).map_err(|error| match error {
                Error::Config { reason, .. } => Error::config(key, reason),
                other => other,
            })?;
        }
        let (chain, private_key) = self.client_certificate()?;
        if let (Some((chain_key, chain)), Some((key_key, private_key))) = (chain, private_key) {
            let certificates =
                tls::certificates(&chain).map_err(|r| Error::config(chain_key, r))?;
            let _ = certificates;
            tls::private_key_pem(&private_key).map_err(|r| Error::config(key_key, r))?;
            config = config.client_auth_pem(chain, private_key)?;
        }
        Ok(config)
    }

    /// The client certificate chain and key, each with the key it came from.
    #[allow(clippy::type_complexity)]
    fn client_certificate(
        &self,
    ) -> Result<
        (
            Option<(&'static str, Vec<u8>)>,
            Option<(&'static str, Vec<u8>)>,
        ),
        Error,
    > {
        if let Some(path) = &self.keystore_location {
            // A PEM keystore file holds the key and the chain together.
            let key = "ssl.keystore.location";
            let pem = tls::read(key, path.as_ref())?;
            return Ok((Some((key, pem.clone())), Some((key, pem))));
        }
        let chain = match (&self.keystore_certificate_chain, &self.certificate_location) {
            (Some(pem), _) => Some(("ssl.keystore.certificate.chain", pem.clone().into_bytes())),
            (None, Some(path)) => {
                let key = "ssl.certificate.location";
                Some((key, tls::read(key, path.as_ref())?))
            }
            (None, None) => None,
        };
        let private_key = match (&self.keystore_key, &self.key_location) {
            (Some(pem), _) => Some(("ssl.keystore.key", pem.clone().into_bytes())),
            (None, Some(path)) => {
                let key = "ssl.key.location";
                Some((key, tls::read(key, path.as_ref())?))
            }
            (None, None) => None,
        };
        match (&chain, &private_key) {
            (Some((key, _)), None) => Err(Error::config(*key, "a client certificate needs its private key (ssl.keystore.key or ssl.key.location)")),
            (None, Some((key, _))) => Err(Error::config(*key, "a private key needs its certificate (ssl.keystore.certificate.chain or ssl.certificate.location)")),
            _ => Ok((chain, private_key)),
        }
    }

    fn sasl(&self) -> Result<Sasl, Error> {
        if let Some(sasl) = &self.sasl {
            return Ok(sasl.clone());
        }
        let key = "sasl.mechanism";
        let mechanism = SaslMechanism::from_name(&self.mechanism).ok_or_else(|| {
            Error::config(
                key,
                format!(
                    "{} is not supported: franzy speaks PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 \
                     and OAUTHBEARER{}",
                    self.mechanism,
                    if self.mechanism == "GSSAPI" {
                        " (GSSAPI, Kerberos, is Kafka's default when no mechanism is set)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        let module = match &self.jaas {
            Some(text) => Some(
                jaas::parse(text).map_err(|reason| Error::config("sasl.jaas.config", reason))?,
            ),
            None => None,
        };
        match mechanism {
            SaslMechanism::OAuthBearer => {
                let Some(module) = module else {
                    return Err(Error::config(
                        "sasl.jaas.config",
                        "OAUTHBEARER needs OAuthBearerLoginModule with unsecuredLogin options, \
                         or a token provider (Config::sasl(Sasl::oauthbearer(..)))",
                    ));
                };
                unsecured_login(&module).map(|jwt| Sasl::oauthbearer(Arc::new(jwt)))
            }
            _ => {
                let (username, password) = match module {
                    Some(module) => {
                        let expected = if mechanism == SaslMechanism::Plain {
                            "PlainLoginModule"
                        } else {
                            "ScramLoginModule"
                        };
                        if module.simple_name() != expected {
                            return Err(Error::config(
                                "sasl.jaas.config",
                                format!("{mechanism} needs {expected}, not {}", module.class),
                            ));
                        }
                        let get = |option: &str| {
                            module.option(option).map(str::to_string).ok_or_else(|| {
                                Error::config(
                                    "sasl.jaas.config",
                                    format!("{expected} lacks {option}"),
                                )
                            })
                        };
                        (get("username")?, get("password")?)
                    }
                    None => match (&self.username, &self.password) {
                        (Some(user), Some(password)) => (user.clone(), password.clone()),
                        _ => {
                            return Err(Error::config(
                                "sasl.jaas.config",
                                format!(
                                    "{mechanism} needs a user name and password: \
                                     sasl.jaas.config, or sasl.username and sasl.password"
                                ),
                            ))
                        }
                    },
                };
                Ok(Sasl::password(mechanism, username, password))
            }
        }
    }
}

/// `OAuthBearerLoginModule`'s unsecured options (Kafka's
/// `OAuthBearerUnsecuredLoginCallbackHandler`).
fn unsecured_login(module: &jaas::LoginModule) -> Result<UnsecuredJwt, Error> {
    let key = "sasl.jaas.config";
    if module.simple_name() != "OAuthBearerLoginModule" {
        return Err(Error::config(
            key,
            format!(
                "OAUTHBEARER needs OAuthBearerLoginModule, not {}",
                module.class
            ),
        ));
    }
    let principal_claim = module
        .option("unsecuredLoginPrincipalClaimName")
        .unwrap_or("sub")
        .to_string();
    let principal = module
        .option(&format!("unsecuredLoginStringClaim_{principal_claim}"))
        .ok_or_else(|| {
            Error::config(
                key,
                format!(
                    "OAuthBearerLoginModule needs unsecuredLoginStringClaim_{principal_claim} \
                     (franzy makes unsecured tokens only; give other tokens with a TokenProvider)"
                ),
            )
        })?;
    let mut jwt = UnsecuredJwt::new(principal).principal_claim(principal_claim.clone());
    if let Some(seconds) = module.option("unsecuredLoginLifetimeSeconds") {
        let seconds: u64 = seconds.parse().map_err(|_| {
            Error::config(
                key,
                format!("unsecuredLoginLifetimeSeconds {seconds:?} is not a number"),
            )
        })?;
        jwt = jwt.lifetime(Duration::from_secs(seconds));
    }
    for (option, value) in &module.options {
        if let Some(name) = option.strip_prefix("unsecuredLoginStringClaim_") {
            if name != principal_claim {
                jwt = jwt.string_claim(name, value);
            }
        } else if let Some(name) = option.strip_prefix("unsecuredLoginExtension_") {
            jwt = jwt.extension(name, value);
        } else if option == "unsecuredLoginListClaim_scope" {
            // Kafka's list syntax: the first character separates the values.
            let mut chars = value.chars();
            let scope = match chars.next() {
                Some(separator) => chars
                    .as_str()
                    .split(separator)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                None => Vec::new(),
            };
            jwt = jwt.scope(scope);
        }
    }
    Ok(jwt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> SecuritySettings {
        let mut s = SecuritySettings::default();
        for (key, value) in pairs {
            match *key {
                "security.protocol" => s.set_protocol(value).expect("protocol"),
                "sasl.mechanism" => s.set_mechanism(value).expect("mechanism"),
                "sasl.jaas.config" => s.jaas = Some(value.to_string()),
                "sasl.username" => s.username = Some(value.to_string()),
                "sasl.password" => s.password = Some(value.to_string()),
                other => panic!("{other}"),
            }
        }
        s
    }

    fn error_key(result: Result<Resolved, Error>) -> String {
        match result {
            Err(Error::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn sasl_credentials_come_from_jaas_or_librdkafka_keys() {
        let plain = settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" password="pw";"#,
            ),
        ])
        .resolve()
        .expect("resolves");
        let sasl = plain.sasl.expect("sasl");
        assert_eq!(sasl.mechanism(), SaslMechanism::Plain);
        assert!(plain.tls.is_none());
        let scram = settings(&[
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "bob"),
            ("sasl.password", "pw"),
        ])
        .resolve()
        .expect("resolves");
        assert_eq!(
            scram.sasl.expect("sasl").mechanism(),
            SaslMechanism::ScramSha512
        );
        let oauth = settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                 unsecuredLoginStringClaim_sub=\"alice\";",
            ),
        ])
        .resolve()
        .expect("resolves");
        assert!(oauth.sasl.expect("sasl").token_provider().is_some());
    }

    #[test]
    fn what_cannot_work_names_its_key() {
        let gssapi = settings(&[("security.protocol", "SASL_PLAINTEXT")]);
        assert_eq!(error_key(gssapi.resolve()), "sasl.mechanism");
        let no_password = settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
        ]);
        assert_eq!(error_key(no_password.resolve()), "sasl.jaas.config");
        let wrong_module = settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-256"),
            (
                "sasl.jaas.config",
                r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b";"#,
            ),
        ]);
        assert_eq!(error_key(wrong_module.resolve()), "sasl.jaas.config");
        let mut missing_file = settings(&[("security.protocol", "SSL")]);
        missing_file.truststore_location = Some("/nonexistent/ca.pem".into());
        assert_eq!(error_key(missing_file.resolve()), "ssl.truststore.location");
        let mut lone_key = settings(&[("security.protocol", "SSL")]);
        lone_key.keystore_key = Some("x".into());
        assert_eq!(error_key(lone_key.resolve()), "ssl.keystore.key");
        assert!(check_store_type("JKS").is_err());
        assert!(check_store_type("pem").is_ok());
    }
}
